//! Calls to an account while its run continues-as-new.
//!
//! A continue-as-new refused because a signal came in during its workflow
//! task is tried again after the worker replays the run (sdk-core evicts
//! it). Meanwhile Temporal answers the account's signals and updates with
//! RESOURCE_EXHAUSTED "Workflow is closing." (cause BUSY_WORKFLOW), but the
//! mark that makes it do so lives only in its cached mutable state, and a
//! refused update drops that cache: the next signal is let in, and the
//! continue-as-new is refused again. temporalio-client retries any
//! RESOURCE_EXHAUSTED only after its throttle backoff (about 1 s, then 2,
//! 4, 8 s), so every call that met a continue-as-new used to wait a second
//! or more; retried at once instead, calls kept the cycle going (52 refused
//! continue-as-new in one storm, BENCHMARKS.md).
//!
//! So a call goes out with the client's retries off, and a "closing" answer
//! holds every call of this replica to that account until the account's
//! current run is another than the one that was closing (Temporal's
//! describe, every [`WATCH_EVERY`], at most [`MAX_HOLD`]); then the call is
//! tried again. Any other failure is sent once more with the client's own
//! retries, as before. The caller's deadline bounds it all.
//!
//! The same hold starts before Temporal has anything to refuse when an
//! update's result carries the run's notice that it is about to
//! continue-as-new ([`ClosingRetry::hold_until_continued`]); a replica that
//! had no update answered in the notice period keeps sending, and its call
//! may still meet a refused continue-as-new, held as above.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use temporalio_client::errors::{WorkflowQueryError, WorkflowStartError, WorkflowUpdateError};
use temporalio_client::{Client, RetryOptions, RpcOptions, WorkflowDescribeOptions};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use tokio::sync::watch;
use tonic::{Code, Status};

use crate::domain::CustomerId;
use crate::workflow::LoyaltyEntityWorkflow;

/// How often a closing account is described until its run has changed.
pub const WATCH_EVERY: Duration = Duration::from_millis(10);
/// Longest a "closing" answer holds the account's calls.
pub const MAX_HOLD: Duration = Duration::from_millis(1_500);
/// Longest the run's notice holds them: the continue-as-new follows its
/// 30 ms notice at once (its episode measured 110-200 ms), and a notice the
/// run withdrew (its state outgrew what it may carry) must not hold calls
/// for long.
pub const MAX_NOTICE_HOLD: Duration = Duration::from_millis(500);
/// Without a client to watch with (unit tests), how long a hold lasts.
const FIXED_HOLD: Duration = Duration::from_millis(25);
/// A run this short when first described is already the new one: the
/// continue-as-new went through before the look.
const NEW_RUN_EVENTS: i64 = 100;

/// Retries of calls to accounts that are continuing-as-new; cheap to clone.
#[derive(Clone)]
pub struct ClosingRetry {
    /// Off: every call gets the client's retries (its 1 s throttle backoff),
    /// to measure what this does.
    enabled: bool,
    /// Describes a closing account to see its new run; `None` holds for
    /// [`FIXED_HOLD`].
    client: Option<Client>,
    /// Accounts that answered "closing": told when their calls may go again.
    closing: Arc<Mutex<HashMap<String, watch::Receiver<bool>>>>,
}

impl ClosingRetry {
    /// Holds and brief retries when `enabled`, watching the account's runs
    /// through `client`; the client's own retries otherwise.
    pub fn new(enabled: bool, client: Option<Client>) -> Self {
        Self { enabled, client, closing: Arc::default() }
    }

    /// Makes `attempt` (given the RPC options to send it with) until it
    /// ends with anything but "closing"; see the module.
    pub async fn call<T, E, Fut>(
        &self,
        customer: &CustomerId,
        mut attempt: impl FnMut(RpcOptions) -> Fut,
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        E: TemporalFailure,
    {
        if !self.enabled {
            return attempt(RpcOptions::default()).await;
        }
        loop {
            self.wait_while_closing(customer).await;
            let once = RpcOptions::builder().retry_options(RetryOptions::no_retries()).build();
            let r = attempt(once).await;
            match r {
                Err(e) if e.status().is_some_and(is_closing) => self.mark(customer, MAX_HOLD),
                Err(e) if e.status().is_some_and(|s| s.code() != Code::NotFound) => {
                    if let Some(status) = e.status() {
                        tracing::warn!(customer = %customer, code = ?status.code(), message = status.message(),
                            "a call to the account failed; sending it again with the client's retries");
                    }
                    return attempt(RpcOptions::default()).await;
                }
                other => return other,
            }
        }
    }

    /// Waits while this replica holds the account's calls. A query waits
    /// too: sent to a run that is closing, it is answered only after that
    /// run has ended, by a worker replaying the whole of it.
    pub async fn wait_while_closing(&self, customer: &CustomerId) {
        let released = self.closing.lock().expect("closing lock").get(customer.as_str()).cloned();
        if let Some(mut released) = released {
            let _ = tokio::time::timeout(MAX_HOLD, released.wait_for(|done| *done)).await;
        }
    }

    /// Holds the account's calls until its run has changed: its run said
    /// it is about to continue-as-new (`workflow`, the run's notice), and a
    /// call reaching Temporal during that continue-as-new's task would make
    /// Temporal refuse it.
    pub fn hold_until_continued(&self, customer: &CustomerId) {
        if self.enabled {
            self.mark(customer, MAX_NOTICE_HOLD);
        }
    }

    /// Holds the account's calls until its run has changed, `max_hold` at
    /// most (one watcher per account).
    fn mark(&self, customer: &CustomerId, max_hold: Duration) {
        let mut closing = self.closing.lock().expect("closing lock");
        if closing.contains_key(customer.as_str()) {
            return;
        }
        let (release, released) = watch::channel(false);
        closing.insert(customer.as_str().to_owned(), released);
        let this = self.clone();
        let customer = customer.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(max_hold, this.until_continued(&customer)).await;
            this.closing.lock().expect("closing lock").remove(customer.as_str());
            let _ = release.send(true);
        });
    }

    /// Returns once the account's current run is not the one that was
    /// closing (or it is not running, or Temporal cannot tell).
    async fn until_continued(&self, customer: &CustomerId) {
        let Some(client) = &self.client else {
            tokio::time::sleep(FIXED_HOLD).await;
            return;
        };
        let handle = client.get_workflow_handle::<LoyaltyEntityWorkflow>(customer.workflow_id());
        let look = || async {
            let info = handle.describe(WorkflowDescribeOptions::default()).await.ok()?.raw_description;
            let info = info.workflow_execution_info?;
            let running = info.status() == WorkflowExecutionStatus::Running;
            running.then(|| (info.execution.map(|e| e.run_id).unwrap_or_default(), info.history_length))
        };
        // Released at once, calls that meet "closing" again would come back
        // every few milliseconds: hold them one look's interval at least.
        let Some((closing_run, events)) = look().await else {
            tokio::time::sleep(WATCH_EVERY).await;
            return;
        };
        if events < NEW_RUN_EVENTS {
            tokio::time::sleep(WATCH_EVERY).await;
            return;
        }
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            match look().await {
                Some((run, _)) if run == closing_run => {}
                _ => return,
            }
        }
    }
}

/// Temporal's answer while a run continues-as-new: "closing" to a new call,
/// and to an update that was in the workflow task refused for it, "unable to
/// perform workflow execution update due to unexpected workflow task
/// failure" (the update id joins it again on the next try).
pub fn is_closing(status: &Status) -> bool {
    let message = status.message().to_ascii_lowercase();
    match status.code() {
        Code::ResourceExhausted => message.contains("workflow is closing"),
        Code::FailedPrecondition => message.contains("unexpected workflow task failure"),
        _ => false,
    }
}

/// A client error that may carry Temporal's status.
pub trait TemporalFailure {
    /// The gRPC status Temporal answered, if that is what failed.
    fn status(&self) -> Option<&Status>;
}

impl TemporalFailure for WorkflowStartError {
    fn status(&self) -> Option<&Status> {
        match self {
            WorkflowStartError::Rpc(s) => Some(s),
            _ => None,
        }
    }
}

impl TemporalFailure for WorkflowUpdateError {
    fn status(&self) -> Option<&Status> {
        match self {
            WorkflowUpdateError::Rpc(s) => Some(s),
            _ => None,
        }
    }
}

impl TemporalFailure for WorkflowQueryError {
    fn status(&self) -> Option<&Status> {
        match self {
            WorkflowQueryError::Rpc(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_temporals_closing_answer_is_retried_briefly() {
        assert!(is_closing(&Status::resource_exhausted("Workflow is closing.")));
        assert!(!is_closing(&Status::resource_exhausted("namespace rate limit exceeded")));
        assert!(!is_closing(&Status::unavailable("Workflow is closing.")));
        assert!(is_closing(&Status::failed_precondition(
            "Unable to perform workflow execution update due to unexpected workflow task failure."
        )));
        assert!(!is_closing(&Status::failed_precondition("something else")));
    }

    #[tokio::test]
    async fn a_closing_account_holds_its_calls_briefly_then_tries_again() {
        let retry = ClosingRetry::new(true, None);
        let customer = CustomerId::parse("c").unwrap();
        let started = std::time::Instant::now();
        let mut tries = 0;
        let result: Result<u32, WorkflowUpdateError> = retry
            .call(&customer, |options| {
                tries += 1;
                let refused = tries < 4;
                assert!(options.retry_options.is_some(), "the client's retries are off");
                async move {
                    if refused {
                        Err(WorkflowUpdateError::Rpc(Status::resource_exhausted("Workflow is closing.")))
                    } else {
                        Ok(7)
                    }
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        // Three holds of 25 ms: far from the client's 1 s backoff.
        let took = started.elapsed();
        assert!(took >= FIXED_HOLD * 3 && took < Duration::from_millis(500), "{took:?}");
        assert!(!retry.closing.lock().unwrap().contains_key("c"), "the hold ends");

        // While the account is held, another call to it waits.
        retry.mark(&customer, MAX_HOLD);
        let started = std::time::Instant::now();
        let held: Result<u32, WorkflowUpdateError> = retry.call(&customer, |_| async { Ok(1) }).await;
        assert_eq!(held.unwrap(), 1);
        assert!(started.elapsed() >= Duration::from_millis(20), "{:?}", started.elapsed());

        let mut tries = 0;
        let failed: Result<u32, WorkflowUpdateError> = retry
            .call(&customer, |options| {
                tries += 1;
                let first = tries == 1;
                async move {
                    assert_eq!(options.retry_options.is_none(), !first, "sent again with the client's retries");
                    Err(WorkflowUpdateError::Rpc(Status::unavailable("down")))
                }
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(tries, 2);
    }
}
