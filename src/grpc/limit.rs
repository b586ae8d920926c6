//! A cap on RPCs in progress: past it, calls are refused at once with
//! RESOURCE_EXHAUSTED (retry later, or on another replica) instead of queueing
//! without bound. Health checks are never refused, so a busy pod stays alive.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status};

use super::gate::{Gate, GateLayer};

/// The concurrency gate: one permit per call in progress.
#[derive(Debug, Clone)]
pub struct ConcurrencyGate {
    permits: Arc<Semaphore>,
}

impl Gate for ConcurrencyGate {
    /// Held until the call's response is ready; health checks hold none.
    type Pass = Option<OwnedSemaphorePermit>;

    fn admit(&self, path: &str, _headers: &http::HeaderMap) -> Result<Self::Pass, Status> {
        if path.starts_with("/grpc.health.v1.Health/") {
            return Ok(None);
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => Err(super::error::retryable(Code::ResourceExhausted, "too many RPCs in progress; retry")),
        }
    }
}

/// Tower layer limiting the RPCs in progress across all connections.
pub type ConcurrencyLimitLayer = GateLayer<ConcurrencyGate>;

impl ConcurrencyLimitLayer {
    /// At most `max` RPCs at once.
    pub fn new(max: usize) -> Self {
        Self::with(ConcurrencyGate { permits: Arc::new(Semaphore::new(max)) })
    }
}
