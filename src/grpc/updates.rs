//! Updates of an account: an id derived from the call, sent through the
//! brief retry of an account that is continuing-as-new (`closing`), the
//! decided entries its result hands over written to the ledger before the
//! caller is answered, and a failure classified for the caller.

use temporalio_client::WorkflowExecuteUpdateOptions;
use temporalio_client::errors::WorkflowUpdateError;
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use temporalio_common::{HasWorkflowDefinition, UpdateDefinition};

use super::error::ApiError;
use super::service::LoyaltyApi;
use crate::domain::{CustomerId, ProjectionBatch, ProjectionReply};
use crate::payload::Noticed;
use crate::workflow::LoyaltyEntityWorkflow;

/// Longest one wait for an update's outcome before it is asked again. After a
/// worker was killed with the update's workflow task, Temporal completed the
/// update on another worker, yet the request that had admitted it was left
/// without an answer until its caller's 10 s deadline (tests/liveness.rs,
/// kill -9; the caller's next try got the result in 10 ms; asked again
/// after 2 s, the call took 3.1 s). An update is decided in one workflow
/// task, normally within tens of milliseconds.
const UPDATE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Longest the API waits for its write of an update's entries: past it the
/// caller is answered and the run's own write follows within about a second.
const EAGER_WRITE_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
/// Tries of a write refused because an earlier entry has yet to land.
const EAGER_WRITE_TRIES: u32 = 4;
/// The wait before such a try.
const EAGER_WRITE_AGAIN: std::time::Duration = std::time::Duration::from_millis(10);

impl LoyaltyApi {
    /// Runs the update `update()` names on the customer's account with
    /// `input` and waits for its result (a closure: an update's name is not
    /// `Clone`, and each try needs one); a "workflow is closing" answer is retried briefly (see
    /// `closing`), any other failure is classified by [`Self::update_error`].
    /// A result that says its run is about to continue-as-new holds this
    /// replica's calls to the account until the new run exists.
    pub(super) async fn update<U, T>(
        &self,
        customer: &CustomerId,
        update: impl Fn() -> U,
        input: U::Input,
        options: WorkflowExecuteUpdateOptions,
    ) -> Result<T, ApiError>
    where
        U: UpdateDefinition<Workflow = <LoyaltyEntityWorkflow as HasWorkflowDefinition>::Run, Output = Noticed<T>>,
        U::Input: Clone + Send,
        U::Output: 'static,
    {
        let handle = self.account(customer);
        let _in_flight = self.updates.enter(customer).await;
        let sent = loop {
            let attempt = self.batcher.closing().call(customer, |rpc| {
                let mut options = options.clone();
                options.rpc_options = rpc;
                handle.execute_update(update(), input.clone(), options)
            });
            match tokio::time::timeout(UPDATE_WAIT, attempt).await {
                Ok(sent) => break sent,
                // Sent again under the same update id, it joins the update
                // (or gets its recorded result); the caller's deadline ends it.
                Err(_) => {
                    tracing::warn!(customer = %customer, "an update got no answer within {UPDATE_WAIT:?}; asking again")
                }
            }
        };
        match sent {
            Ok(Noticed { value, run_ending, entries }) => {
                if run_ending {
                    self.batcher.closing().hold_until_continued(customer);
                }
                if let Some(batch) = entries {
                    self.write_eagerly(&batch).await;
                }
                Ok(value)
            }
            Err(e) => Err(self.update_error(customer, e).await),
        }
    }

    /// Writes the entries an update's result handed over, fenced on the
    /// entry before them like the run's own writes; a write refused because
    /// an earlier entry has yet to land (another call's write, on this
    /// replica or another) is tried again a few milliseconds later. Whatever
    /// happens, the run's own write follows (it finds these in place, or
    /// writes them): a failed, slow or refused write here only means the
    /// ledger has them a few seconds later.
    async fn write_eagerly(&self, batch: &ProjectionBatch) {
        let customer = &batch.customer_id;
        crate::crash::point(crate::crash::EAGER_WRITE);
        let writing = async {
            let mut tries = 0;
            loop {
                tries += 1;
                match self.ledger.project(batch).await {
                    Ok((ProjectionReply::Fenced { ledger_seq, .. }, _))
                        if ledger_seq < batch.after_seq && tries < EAGER_WRITE_TRIES =>
                    {
                        tokio::time::sleep(EAGER_WRITE_AGAIN).await
                    }
                    done => return done,
                }
            }
        };
        match tokio::time::timeout(EAGER_WRITE_WAIT, writing).await {
            Ok(Ok((reply, recovered))) => {
                self.metrics.projection("api", batch, &reply, recovered);
                match reply {
                    ProjectionReply::Written { duplicates, .. } => {
                        for entry in batch.entries.iter().filter(|e| duplicates.contains(&e.seq)) {
                            tracing::error!(%customer, event_id = %entry.movement.event_id, seq = entry.seq,
                                "event id applied again after the account forgot it; recorded under a suffixed id");
                        }
                    }
                    ProjectionReply::Fenced { ledger_seq, .. } => tracing::debug!(
                        %customer, ledger_seq, after = batch.after_seq, "eager write does not fit; the run writes"
                    ),
                }
            }
            Ok(Err(error)) => tracing::debug!(%customer, %error, "eager write failed; the run writes"),
            Err(_) => tracing::debug!(%customer, "eager write slow; the run writes"),
        }
    }

    /// Classifies a failed update; a completed workflow is reported as not found.
    pub(super) async fn update_error(&self, customer: &CustomerId, e: WorkflowUpdateError) -> ApiError {
        match ApiError::from_update(customer, e) {
            ApiError::NotFound(customer) => self.closed_or_missing(customer).await,
            other => other,
        }
    }

    /// Tells a closed account from one that never existed.
    async fn closed_or_missing(&self, customer: CustomerId) -> ApiError {
        let handle = self.account(&customer);
        match handle.describe(temporalio_client::WorkflowDescribeOptions::default()).await {
            Ok(d) => {
                let status = d.raw_description.workflow_execution_info.map(|i| i.status());
                if status == Some(WorkflowExecutionStatus::Running) {
                    ApiError::Unavailable(format!("account {customer} is between runs; retry"))
                } else {
                    ApiError::AccountClosed(customer)
                }
            }
            Err(e) => ApiError::from_interaction(&customer, e),
        }
    }
}

/// Update options whose id is derived from the event id and the request's
/// content: Temporal then joins a resend to the first update of the run
/// instead of admitting another (many updates racing on one workflow reach
/// a defect of sdk-core 0.10.1: "unprocessed protocol messages"), while a
/// reused id with other content reaches the account and gets
/// ALREADY_EXISTS. Refusals happen only in the validator, which decides at
/// the task's time (`workflow::interceptors`), so no refusal is kept under
/// the id and a resend of a refused call is decided afresh.
pub(super) fn update_options(
    kind: &str,
    event_id: &str,
    content: &impl serde::Serialize,
) -> WorkflowExecuteUpdateOptions {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(serde_json::to_vec(content).unwrap_or_default());
    let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    WorkflowExecuteUpdateOptions::builder().update_id(format!("{kind}:{event_id}:{short}")).build()
}
