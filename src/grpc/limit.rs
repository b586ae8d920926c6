//! A cap on RPCs in progress: past it, calls are refused at once with
//! RESOURCE_EXHAUSTED (retry later, or on another replica) instead of queueing
//! without bound. Health checks are never refused, so a busy pod stays alive.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tonic::Status;

/// Tower layer limiting the RPCs in progress across all connections.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    permits: Arc<Semaphore>,
}

impl ConcurrencyLimitLayer {
    /// At most `max` RPCs at once.
    pub fn new(max: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(max)) }
    }
}

impl<S> tower::Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> ConcurrencyLimit<S> {
        ConcurrencyLimit { inner, permits: self.permits.clone() }
    }
}

/// The service [`ConcurrencyLimitLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, B, R> tower::Service<http::Request<B>> for ConcurrencyLimit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path().starts_with("/grpc.health.v1.Health/") {
            return Box::pin(self.inner.call(req));
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Box::pin(async { Ok(Status::resource_exhausted("too many RPCs in progress; retry").into_http()) });
        };
        let call = self.inner.call(req);
        Box::pin(async move {
            let response = call.await;
            drop(permit);
            response
        })
    }
}
