//! A tower layer that admits or refuses each call before it reaches a gRPC
//! service. The API-key check and the concurrency cap are both gates: they
//! differ only in how they decide and in what an admitted call holds until
//! its response is ready.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;

/// Decides whether a call may proceed.
pub trait Gate: Clone {
    /// What an admitted call holds until its response is ready (a permit, or nothing).
    type Pass: Send + 'static;

    /// Admits the call to gRPC method `path` with `headers`, or refuses it with a status.
    fn admit(&self, path: &str, headers: &http::HeaderMap) -> Result<Self::Pass, Status>;
}

/// Tower layer putting `G` in front of the routes.
#[derive(Debug, Clone)]
pub struct GateLayer<G> {
    gate: G,
}

impl<G> GateLayer<G> {
    /// A layer deciding with `gate`.
    pub fn with(gate: G) -> Self {
        Self { gate }
    }
}

impl<S, G: Clone> tower::Layer<S> for GateLayer<G> {
    type Service = Gated<S, G>;

    fn layer(&self, inner: S) -> Gated<S, G> {
        Gated { inner, gate: self.gate.clone() }
    }
}

/// The service [`GateLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct Gated<S, G> {
    inner: S,
    gate: G,
}

impl<S, G, B, R> tower::Service<http::Request<B>> for Gated<S, G>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    G: Gate,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.gate.admit(req.uri().path(), req.headers()) {
            // Refused before any work: the service never sees the call.
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
            Ok(pass) => {
                let call = self.inner.call(req);
                Box::pin(async move {
                    let response = call.await;
                    drop(pass);
                    response
                })
            }
        }
    }
}
