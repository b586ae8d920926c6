//! Accruals to one customer travel as few signals as possible.
//!
//! Temporal refuses a workflow's continue-as-new while signals arrive during
//! the workflow task that asks for it, evicts the run and replays it before
//! the next try; an account receiving hundreds of signals a second can then
//! keep trying for many seconds (temporalio/temporal#1289). So each replica
//! keeps at most one signal-with-start in flight per customer and at least
//! [`SPACING`] between two: accruals that arrive meanwhile wait and go
//! together as one `add_points_batch` signal. A lone accrual goes at once,
//! as `add_points`, the reference guide's signal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::trace::FutureExt as _;
use temporalio_client::{Client, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowStartOptions};
use tokio::sync::oneshot;
use tonic::Status;

use super::error::ApiError;
use crate::domain::{CustomerId, PointsEvent};
use crate::workflow::{LoyaltyEntityWorkflow, WorkflowInput};

/// Least time between two signals to one customer from this replica.
pub const SPACING: Duration = Duration::from_millis(25);
/// Most accruals in one signal (its payload stays small).
pub const MAX_EVENTS_PER_SIGNAL: usize = 200;

type Waiter = oneshot::Sender<Result<(), Status>>;
/// Accruals waiting for their signal, each with its caller and the caller's
/// trace context.
type Queue = Vec<(PointsEvent, Waiter, Context)>;

/// Per-customer queues of accruals waiting for their signal; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    client: Client,
    task_queue: String,
    batching: bool,
    queues: Arc<Mutex<HashMap<String, Queue>>>,
}

impl Batcher {
    /// Signals accounts of `task_queue` through `client`; without `batching`
    /// every accrual is its own `add_points` signal, sent at once (for a
    /// worker written from the reference guide).
    pub fn new(client: Client, task_queue: String, batching: bool) -> Self {
        Self { client, task_queue, batching, queues: Arc::default() }
    }

    /// The Temporal client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Delivers `event` to the customer's account (starting it if needed)
    /// and returns once Temporal has accepted the signal that carries it.
    pub async fn accrue(&self, customer: &CustomerId, event: PointsEvent) -> Result<(), ApiError> {
        if !self.batching {
            return self.signal(customer, vec![event]).await;
        }
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut queues = self.queues.lock().expect("batcher lock");
            match queues.get_mut(customer.as_str()) {
                Some(queue) => {
                    queue.push((event, tx, Context::current()));
                    false
                }
                None => {
                    queues.insert(customer.as_str().to_owned(), vec![(event, tx, Context::current())]);
                    true
                }
            }
        };
        if first {
            // The queue's sender runs on its own, so a caller that gives up
            // does not strand the accruals queued behind it.
            tokio::spawn(self.clone().send_all(customer.clone()));
        }
        match rx.await {
            Ok(result) => result.map_err(ApiError::Relayed),
            Err(_) => Err(ApiError::Internal("the accrual's sender stopped".into())),
        }
    }

    /// Sends the customer's queue, batch after batch, until it stays empty.
    async fn send_all(self, customer: CustomerId) {
        loop {
            let batch: Queue = {
                let mut queues = self.queues.lock().expect("batcher lock");
                let Some(queue) = queues.get_mut(customer.as_str()) else { return };
                if queue.is_empty() {
                    queues.remove(customer.as_str());
                    return;
                }
                let n = queue.len().min(MAX_EVENTS_PER_SIGNAL);
                queue.drain(..n).collect()
            };
            let spacing = tokio::time::sleep(SPACING);
            // A signal carrying several callers' accruals joins the first one's trace.
            let context = batch.first().map(|(_, _, c)| c.clone()).unwrap_or_default();
            let (events, waiters): (Vec<_>, Vec<_>) = batch.into_iter().map(|(e, w, _)| (e, w)).unzip();
            let result = self.signal(&customer, events).with_context(context).await.map_err(Status::from);
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
            spacing.await;
        }
    }

    async fn signal(&self, customer: &CustomerId, mut events: Vec<PointsEvent>) -> Result<(), ApiError> {
        // Reuse of a closed account's id is refused, so a late accrual never
        // re-creates it blank.
        let options = WorkflowStartOptions::new(self.task_queue.clone(), customer.workflow_id())
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .build();
        let sent = if events.len() == 1 {
            let event = events.pop().expect("one event");
            self.client
                .signal_with_start_workflow(
                    LoyaltyEntityWorkflow::run,
                    WorkflowInput::new_account(),
                    LoyaltyEntityWorkflow::add_points,
                    event,
                    options,
                )
                .await
        } else {
            self.client
                .signal_with_start_workflow(
                    LoyaltyEntityWorkflow::run,
                    WorkflowInput::new_account(),
                    LoyaltyEntityWorkflow::add_points_batch,
                    events,
                    options,
                )
                .await
        };
        sent.map(drop).map_err(|e| ApiError::from_start(customer, e))
    }
}
