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
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry::trace::FutureExt as _;
use temporalio_client::errors::WorkflowStartError;
use temporalio_client::{
    Client, RpcOptions, WorkflowDescribeOptions, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowStartOptions,
};
use tokio::sync::oneshot;
use tonic::Status;

use super::closing::ClosingRetry;
use super::error::ApiError;
use crate::domain::{CustomerId, PointsEvent};
use crate::workflow::{LoyaltyEntityWorkflow, WorkflowInput};

/// Least time between two signals to one customer from this replica.
pub const SPACING: Duration = Duration::from_millis(25);
/// Most accruals in one signal (its payload stays small).
pub const MAX_EVENTS_PER_SIGNAL: usize = 200;
/// Most bytes of accruals (roughly: orders' evaluations count whole) one
/// signal carries; a single accrual always goes, and the API refuses an
/// order whose evaluation is larger than `grpc::orders::MAX_ORDER_BYTES`.
pub const MAX_SIGNAL_BYTES: usize = 512 * 1024;
/// An accrual that waited longer than this in the queue is sent unchecked:
/// its ledger lookup is old, so the account checks it again itself.
const FRESH: Duration = Duration::from_secs(1);
/// Longest a signal may take; its callers then get UNAVAILABLE and retry.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Signals to one customer between two looks at its run's history.
const LOOK_EVERY: u32 = 50;
/// Accrual bytes (ids and texts, roughly) sent to one customer between two
/// looks, whichever of this and [`LOOK_EVERY`] comes first.
const LOOK_EVERY_BYTES: usize = 512 * 1024;
/// Customers whose sends since their last look this replica counts; past
/// it, those not sent to for [`LOOK_COUNT_IDLE`] are forgotten (and if that
/// is not enough, all counts start again).
const LOOK_COUNTS: usize = 10_000;
/// See [`LOOK_COUNTS`].
const LOOK_COUNT_IDLE: Duration = Duration::from_secs(60);
/// A run's history nearing what a replay can do inside the workflow task
/// timeout (1 s by default; 4,000 events took about 450 ms in the tests'
/// debug build), which a run reaches when its ledger is behind so long that
/// its state no longer fits a continue-as-new (`workflow::FORCE_EVENTS_PER_RUN`),
/// or while a write's retries last (a 4 s outage under the storm of
/// tests/liveness.rs took a run to 3,800-5,000+ events): a much longer one,
/// evicted, might never finish a task again. Accrue is refused
/// (RESOURCE_EXHAUSTED) for [`BACK_OFF`]. Temporal's own limits (51,200
/// events, 50 MB) are far above.
const HISTORY_EVENTS_LIMIT: i64 = 10_000;
/// See [`HISTORY_EVENTS_LIMIT`].
const HISTORY_BYTES_LIMIT: i64 = 16 * 1024 * 1024;
/// How long Accrue to such an account is refused before the next look.
const BACK_OFF: Duration = Duration::from_secs(5);

type Waiter = oneshot::Sender<Result<(), Status>>;

/// Signals and bytes sent to an account since its last look, and when last.
struct SinceLook {
    signals: u32,
    bytes: usize,
    at: Instant,
}
/// An accrual waiting for its signal, with its caller, the caller's trace
/// context and when it was queued.
struct Queued {
    event: PointsEvent,
    waiter: Waiter,
    context: Context,
    since: Instant,
}

/// Accruals waiting for their signal, oldest first.
type Queue = Vec<Queued>;

/// Per-customer queues of accruals waiting for their signal; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    client: Client,
    task_queue: String,
    batching: bool,
    task_timeout: Duration,
    closing: ClosingRetry,
    queues: Arc<Mutex<HashMap<String, Queue>>>,
    /// Accounts whose run's history is near Temporal's limits, until when.
    full: Arc<Mutex<HashMap<String, Instant>>>,
    /// Signals and bytes sent to each account since its last look, kept
    /// across its queue emptying and filling again.
    since_look: Arc<Mutex<HashMap<String, SinceLook>>>,
}

impl Batcher {
    /// Signals accounts of `task_queue` through `client`; without `batching`
    /// every accrual is its own `add_points` signal, sent at once (for a
    /// worker written from the reference guide). Signals and the API's
    /// updates to an account that is continuing-as-new go through `closing`.
    /// An account started here gets `task_timeout` as its workflow task
    /// timeout (its later runs inherit it).
    pub fn new(
        client: Client,
        task_queue: String,
        batching: bool,
        task_timeout: Duration,
        closing: ClosingRetry,
    ) -> Self {
        Self {
            client,
            task_queue,
            batching,
            task_timeout,
            closing,
            queues: Arc::default(),
            full: Arc::default(),
            since_look: Arc::default(),
        }
    }

    /// The retry of calls to accounts that are continuing-as-new.
    pub fn closing(&self) -> &ClosingRetry {
        &self.closing
    }

    /// The Temporal client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Delivers `event` to the customer's account (starting it if needed)
    /// and returns once Temporal has accepted the signal that carries it.
    pub async fn accrue(&self, customer: &CustomerId, event: PointsEvent) -> Result<(), ApiError> {
        let refusing = {
            let mut full = self.full.lock().expect("batcher lock");
            // An expired refusal is forgotten, so the map holds only accounts refused now.
            full.retain(|_, until| Instant::now() < *until);
            full.contains_key(customer.as_str())
        };
        if refusing {
            return Err(ApiError::Busy(format!(
                "account {customer} is far behind writing its ledger and its run is nearly full; retry later"
            )));
        }
        if !self.batching {
            let bytes = approximate_bytes(&event);
            let sent = self.signal(customer, vec![event], vec![Instant::now()]).await;
            self.count_send(customer, bytes);
            return sent;
        }
        let (tx, rx) = oneshot::channel();
        let queued = Queued { event, waiter: tx, context: Context::current(), since: Instant::now() };
        let first = {
            let mut queues = self.queues.lock().expect("batcher lock");
            match queues.get_mut(customer.as_str()) {
                Some(queue) => {
                    queue.push(queued);
                    false
                }
                None => {
                    queues.insert(customer.as_str().to_owned(), vec![queued]);
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
            Err(_) => Err(ApiError::Unavailable("the accrual's sender stopped; retry".into())),
        }
    }

    /// Sends the customer's queue, batch after batch, until it stays empty.
    /// An accrual whose caller gave up is dropped (it was never
    /// acknowledged; the caller's retry brings it again), a second copy of
    /// an event id in one batch rides with the first, and one that waited
    /// long goes unchecked.
    async fn send_all(self, customer: CustomerId) {
        loop {
            let batch: Queue = {
                let mut queues = self.queues.lock().expect("batcher lock");
                let Some(queue) = queues.get_mut(customer.as_str()) else { return };
                queue.retain(|q| !q.waiter.is_closed());
                if queue.is_empty() {
                    queues.remove(customer.as_str());
                    return;
                }
                // At most MAX_EVENTS_PER_SIGNAL, and orders' evaluations within
                // MAX_SIGNAL_BYTES: Temporal refuses a payload over 2 MB.
                let mut bytes = 0;
                let n = queue
                    .iter()
                    .take(MAX_EVENTS_PER_SIGNAL)
                    .take_while(|q| {
                        bytes += approximate_bytes(&q.event);
                        bytes <= MAX_SIGNAL_BYTES
                    })
                    .count()
                    .max(1);
                queue.drain(..n).collect()
            };
            let spacing = tokio::time::sleep(SPACING);
            // A signal carrying several callers' accruals joins the first one's trace.
            let context = batch.first().map(|q| q.context.clone()).unwrap_or_default();
            let mut events: Vec<PointsEvent> = Vec::with_capacity(batch.len());
            let mut looked_up = Vec::with_capacity(batch.len());
            let mut waiters = Vec::with_capacity(batch.len());
            let mut bytes = 0;
            for Queued { event, waiter, since, .. } in batch {
                bytes += approximate_bytes(&event);
                if !events.iter().any(|e| e.event_id == event.event_id) {
                    events.push(event);
                    looked_up.push(since);
                }
                waiters.push(waiter);
            }
            let signal =
                tokio::time::timeout(SIGNAL_TIMEOUT, self.signal(&customer, events, looked_up).with_context(context));
            let result = match signal.await {
                Ok(result) => result.map_err(Status::from),
                Err(_) => Err(Status::from(ApiError::Unavailable(format!(
                    "no answer from Temporal within {SIGNAL_TIMEOUT:?}; retry"
                )))),
            };
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
            self.count_send(&customer, bytes);
            spacing.await;
        }
    }

    /// Counts a signal of `bytes` to the account, and looks at its run's
    /// history after [`LOOK_EVERY`] signals or [`LOOK_EVERY_BYTES`] (in the
    /// background: the signal was accepted, and its caller need not wait).
    fn count_send(&self, customer: &CustomerId, bytes: usize) {
        let look = {
            let mut counts = self.since_look.lock().expect("batcher lock");
            if counts.len() >= LOOK_COUNTS && !counts.contains_key(customer.as_str()) {
                counts.retain(|_, c| c.at.elapsed() < LOOK_COUNT_IDLE);
                if counts.len() >= LOOK_COUNTS {
                    counts.clear();
                }
            }
            let count = counts.entry(customer.as_str().to_owned()).or_insert_with(|| SinceLook {
                signals: 0,
                bytes: 0,
                at: Instant::now(),
            });
            count.signals += 1;
            count.bytes += bytes;
            count.at = Instant::now();
            let look = count.signals >= LOOK_EVERY || count.bytes >= LOOK_EVERY_BYTES;
            if look {
                counts.remove(customer.as_str());
            }
            look
        };
        if look {
            let (this, customer) = (self.clone(), customer.clone());
            tokio::spawn(async move { this.look_at_history(&customer).await });
        }
    }

    /// Refuses Accrue to the account for a while if its run's history nears
    /// Temporal's limits; a failed look changes nothing.
    async fn look_at_history(&self, customer: &CustomerId) {
        let handle = self.client.get_workflow_handle::<LoyaltyEntityWorkflow>(customer.workflow_id());
        let Ok(Ok(description)) =
            tokio::time::timeout(SIGNAL_TIMEOUT, handle.describe(WorkflowDescribeOptions::default())).await
        else {
            return;
        };
        let Some(info) = description.raw_description.workflow_execution_info else { return };
        if info.history_length >= HISTORY_EVENTS_LIMIT || info.history_size_bytes >= HISTORY_BYTES_LIMIT {
            tracing::warn!(customer = %customer, events = info.history_length, bytes = info.history_size_bytes,
                "account's run nearly full and not continuing (its ledger is far behind): refusing Accrue for a while");
            self.full.lock().expect("batcher lock").insert(customer.as_str().to_owned(), Instant::now() + BACK_OFF);
        }
    }

    /// Sends `events` (each looked up in the ledger at its `looked_up`),
    /// again while the account is closing. An event goes unchecked in any
    /// try later than [`FRESH`] after its lookup: the lookup is old, or an
    /// earlier try may have been applied while the account's window of ids
    /// moved on, so the account must ask the ledger itself.
    async fn signal(
        &self,
        customer: &CustomerId,
        events: Vec<PointsEvent>,
        looked_up: Vec<Instant>,
    ) -> Result<(), ApiError> {
        let attempt = |rpc| {
            let mut events = events.clone();
            for (event, at) in events.iter_mut().zip(&looked_up) {
                if at.elapsed() > FRESH {
                    event.ledger_checked = false;
                }
            }
            self.signal_once(customer, events, rpc)
        };
        let sent = self.closing.call(customer, attempt).await;
        sent.map_err(|e| ApiError::from_start(customer, e))
    }

    async fn signal_once(
        &self,
        customer: &CustomerId,
        mut events: Vec<PointsEvent>,
        rpc: RpcOptions,
    ) -> Result<(), WorkflowStartError> {
        // Reuse of a closed account's id is refused, so a late accrual never
        // re-creates it blank.
        let options = WorkflowStartOptions::new(self.task_queue.clone(), customer.workflow_id())
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .task_timeout(self.task_timeout)
            .rpc_options(rpc)
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
        sent.map(drop)
    }
}

/// An accrual's weight in its signal: its id and texts plus the JSON around them.
fn approximate_bytes(event: &PointsEvent) -> usize {
    64 + event.event_id.len()
        + event.reason.len()
        + event.source.len()
        + event.order.as_ref().map_or(0, |o| o.approximate_size())
}
