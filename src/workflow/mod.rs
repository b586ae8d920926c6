//! `LoyaltyEntityWorkflow`: one long-lived workflow per customer.
//!
//! One writer, one order. Every change of the account is decided by the
//! domain rules (`domain::decide`) inside the handler that receives it,
//! synchronously, in arrival order: an accrual in its signal, a redemption or
//! correction in its update, whose caller gets the answer as soon as the
//! workflow task that decided it completes. No handler awaits anything, so
//! none can wait on the run loop, and the run loop never waits on a handler
//! that is waiting on it.
//!
//! Invariants kept here:
//! - Temporal's history is the record of decisions; the ledger is their
//!   projection. The run loop writes decided entries behind, in order, in
//!   batches, each write fenced by the account's sequence number
//!   (`domain::entry`). The account never adopts totals it did not decide.
//! - A ledger outage delays the projection, never a decision: entries wait
//!   in the state (carried across continue-as-new) and are written when the
//!   ledger returns. A ledger whose sequence or totals do not match is not
//!   written at all ("held"), loudly, until an operator puts it right.
//! - Continue-as-new happens only from the run loop, when the run has used
//!   its share of signals or updates (or Temporal suggests it), and only when
//!   at most one write's worth of entries waits for the ledger (any backlog
//!   once the run nears Temporal's limits), and only a state that fits
//!   [`MAX_CARRY_BYTES`]; every handler has finished by then because none
//!   awaits.
//! - Histories recorded before this design (no [`ONE_WRITER`] patch marker)
//!   run the previous code (`legacy`) to the end of their run.

mod legacy;

use std::time::Duration;

use futures::future::FusedFuture;
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, CancellableFuture, ContinueAsNewOptions, ContinueAsNewVersioningBehavior,
    SyncWorkflowContext, WorkflowCancellationError, WorkflowContext, WorkflowContextView, WorkflowResult,
    workflows::select,
};

pub use crate::payload::WorkflowInput;

use crate::activities::{LoyaltyActivities, SettleRequest};
use crate::domain::ids::customer_of_workflow;
use crate::domain::messages::{LoyaltyState, LoyaltySummary, PointsEvent, RedemptionRequest, RedemptionResult};
use crate::domain::{
    AdjustmentRequest, BalanceChange, CaptureRequest, HoldResult, Millis, ProjectionReply, Rejection, ReleaseRequest,
    ReserveRequest, ReversalRequest, Terms, Tier,
};
use crate::payload::Nullable;

/// Most entries written (and accruals checked) in one ledger write.
pub const MAX_BATCH: usize = 500;
/// Signals after which a run continues-as-new, well before Temporal's
/// 10,000-signals-per-run limit and its history-size suggestion.
pub const MAX_SIGNALS_PER_RUN: u32 = 2_000;
/// Accruals after which a run continues-as-new (batch signals carry many,
/// and each adds to the history's size).
pub const MAX_ACCRUALS_PER_RUN: u32 = 2_000;
/// Accepted updates after which a run continues-as-new, well before
/// Temporal's 2,000 updates per run (`history.maxTotalUpdates`).
pub const MAX_UPDATES_PER_RUN: u32 = 1_000;
/// Largest state carried into the next run, in bytes of JSON: half of
/// Temporal's 2 MB payload limit. A larger one (a long ledger outage under
/// load) keeps the run going until the ledger takes the backlog.
pub const MAX_CARRY_BYTES: usize = 1024 * 1024;
/// Largest state a [`LIFECYCLE`] run carries: its lots (at most
/// `LOTS_BYTES_BUDGET`) come on top of the windows, still well within
/// Temporal's 2 MB payload limit.
pub const MAX_CARRY_BYTES_LIFECYCLE: usize = 1536 * 1024;
/// A run continues-as-new with at most one write's worth of unwritten
/// entries: while the ledger is behind it keeps going (it has room:
/// Temporal allows 10,000 signals and 2,000 updates) until the backlog is
/// written, or until the run nears those limits or Temporal suggests a new
/// run (history size), when any state up to [`MAX_CARRY_BYTES`] goes along.
pub const FORCE_SIGNALS_PER_RUN: u32 = 8_000;
/// See [`FORCE_SIGNALS_PER_RUN`].
pub const FORCE_UPDATES_PER_RUN: u32 = 1_600;
/// See [`FORCE_SIGNALS_PER_RUN`]: accruals arrive many to a signal.
pub const FORCE_ACCRUALS_PER_RUN: u32 = 8_000;
/// Previous version: past this many signals a run continues-as-new even
/// with a large backlog.
pub const FORCE_CONTINUE_SIGNALS: u32 = 8_000;
/// Previous version: largest backlog carried into the next run when the
/// ledger is healthy.
pub const MAX_PENDING_CARRY: usize = 500;
/// Runs with this marker decide in handlers and project to the ledger;
/// histories without it run the previous code.
pub const ONE_WRITER: &str = "one-writer";
/// Runs with this marker sleep on a timer until the account's next due
/// time (a pending lot, an expiry, a hold's deadline) or a daily wake;
/// histories without it never start timers.
pub const LIFECYCLE: &str = "lifecycle";
/// [`LIFECYCLE`] runs with this marker announce points before they expire
/// (an `expiring` entry, a `points.expiring` event); histories without it
/// never do, so their timers and entries replay as recorded.
pub const EXPIRY_WARNINGS: &str = "expiry-warnings";
/// An idle account wakes at least this often to learn that the Worker
/// Deployment's current version changed (and continue-as-new onto it).
pub const IDLE_WAKE_MS: Millis = 86_400_000;
/// Most bytes of text one ledger write carries (the activity's input stays
/// far below Temporal's 2 MB, and so does each history event).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// First wait before writing again after the ledger failed a write's
/// retries; it doubles with every failure in a row up to
/// [`LEDGER_RETRY_MAX`], and while it fails each try carries one entry, so a
/// long outage adds little to the run's history.
const LEDGER_RETRY: Duration = Duration::from_secs(5);
/// First wait of a [`LIFECYCLE`] run: shorter, so a short outage leaves a
/// short backlog (each try carries one entry, so trying often is cheap).
const LEDGER_RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between tries of a failing ledger.
const LEDGER_RETRY_MAX: Duration = Duration::from_secs(300);
/// Wait before trying a held (fenced) ledger again.
const LEDGER_HOLD_RETRY: Duration = Duration::from_secs(60);
/// Previous version: wait before retrying ledger writes.
const LEDGER_BACKOFF: Duration = Duration::from_secs(30);

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Which code this run executes, fixed once per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not known yet: no handler or run loop has asked.
    Unknown,
    /// A run recorded before the one-writer core.
    Legacy,
    /// The one-writer core.
    OneWriter,
}

/// The entity workflow of one customer account.
#[workflow]
pub struct LoyaltyEntityWorkflow {
    state: LoyaltyState,
    mode: Mode,
    /// `shutdown` received: write everything, then complete.
    closing: bool,
    /// Signals received by this run (not carried across continue-as-new).
    signals_this_run: u32,
    /// Accruals received by this run (a batch signal carries many).
    accruals_this_run: u32,
    /// Updates accepted by this run.
    updates_this_run: u32,
    /// Why the ledger is not written, while its sequence does not match.
    held: Option<String>,
    /// Ledger writes failed in a row (0 when it answers).
    failures: u32,
    /// The decided sequence at which the run last found itself full but its
    /// state too large to carry: it does not look again until that changes.
    carry_refused_at: Option<u64>,
    /// This run sleeps on timers for the account's due times ([`LIFECYCLE`]).
    lifecycle: bool,
    /// Previous version: a ledger write and its balance change are in progress.
    ledger_busy: bool,
    /// Previous version: accruals this run has taken off the pending queue.
    accruals_consumed: u64,
    /// Previous version: id of the accrual batch being written.
    batch_write_id: Option<String>,
}

impl LoyaltyEntityWorkflow {
    /// A run of the account in `state`, nothing counted yet.
    fn with_state(state: LoyaltyState) -> Self {
        Self {
            state,
            mode: Mode::Unknown,
            closing: false,
            signals_this_run: 0,
            accruals_this_run: 0,
            updates_this_run: 0,
            held: None,
            failures: 0,
            carry_refused_at: None,
            lifecycle: false,
            ledger_busy: false,
            accruals_consumed: 0,
            batch_write_id: None,
        }
    }

    fn run_is_full(&self, suggested: bool) -> bool {
        suggested
            || self.signals_this_run >= MAX_SIGNALS_PER_RUN
            || self.accruals_this_run >= MAX_ACCRUALS_PER_RUN
            || self.updates_this_run >= MAX_UPDATES_PER_RUN
    }

    /// Whether the run loop has something to do: entries to write, a close,
    /// or a full run whose state it has not yet found too large as it is.
    fn has_work(&self, suggested: bool) -> bool {
        self.state.has_projection_work()
            || self.closing
            || (self.run_is_full(suggested) && self.carry_refused_at != Some(self.state.seq))
    }

    /// Whether to continue-as-new now: the run is full and the state fits
    /// the next run's input (an easy fit, or any fit once the run nears
    /// Temporal's limits). The backlog is checked before the state is
    /// serialized, so a run waiting for its ledger does not serialize a large
    /// state on every turn.
    ///
    /// The size decides what goes into history: a later version that
    /// changes what the state serializes to must keep this decision for
    /// replayed runs (a patch marker).
    fn should_carry_over(&self, suggested: bool) -> bool {
        if self.closing || !self.run_is_full(suggested) {
            return false;
        }
        // Temporal's suggestion comes far from its hard limits: a lifecycle run
        // writes its backlog down first, since a large carried state makes the
        // continue-as-new slow enough to keep losing the race with new signals.
        let forced = (suggested && !self.lifecycle)
            || self.signals_this_run >= FORCE_SIGNALS_PER_RUN
            || self.accruals_this_run >= FORCE_ACCRUALS_PER_RUN
            || self.updates_this_run >= FORCE_UPDATES_PER_RUN;
        let backlog = self.state.unprojected.len() + self.state.pending_events.len();
        if !forced && backlog > MAX_BATCH {
            return false;
        }
        let limit = if self.lifecycle { MAX_CARRY_BYTES_LIFECYCLE } else { MAX_CARRY_BYTES };
        self.carried_size().is_some_and(|size| size <= limit)
    }

    /// The size that decides whether the state is carried. A run recorded
    /// before lots existed measured a state without them, and its replay
    /// must take the same decision: for such a run the lifecycle fields are
    /// left out of the measure.
    fn carried_size(&self) -> Option<usize> {
        if self.lifecycle && (self.state.expiry_warnings || self.state.expiry_warning_ms == 0) {
            return serde_json::to_vec(&self.state).ok().map(|json| json.len());
        }
        if self.lifecycle {
            // A run from before announcements measured its state without
            // the warning period new accruals carry.
            let mut before = self.state.clone();
            (before.expiry_warning_ms, before.warned_until_ms) = (0, 0);
            return serde_json::to_vec(&before).ok().map(|json| json.len());
        }
        let mut before = self.state.clone();
        before.lots = Default::default();
        before.lots_tracked = false;
        before.holds.clear();
        before.finished_holds.clear();
        (before.clock_ms, before.last_activity_ms, before.expire_inactive_after_ms) = (0, 0, 0);
        (before.expiry_warning_ms, before.warned_until_ms) = (0, 0);
        for e in &mut before.unprojected {
            e.draws.clear();
            (e.at_ms, e.pending_after, e.held_after) = (0, 0, 0);
        }
        let mut json = serde_json::to_value(&before).ok()?;
        if let Some(map) = json.as_object_mut() {
            for field in [
                "lots",
                "lots_tracked",
                "holds",
                "finished_holds",
                "clock_ms",
                "last_activity_ms",
                "expire_inactive_after_ms",
            ] {
                map.remove(field);
            }
        }
        serde_json::to_vec(&json).ok().map(|json| json.len())
    }

    /// The mode for a handler that cannot record a marker (a validator).
    fn one_writer(&self) -> bool {
        self.mode != Mode::Legacy
    }

    /// Takes one accrual: decided at once when our gRPC layer checked its id
    /// against the ledger, otherwise queued for the run loop's check.
    fn receive(&mut self, ctx: &SyncWorkflowContext<Self>, event: PointsEvent) {
        self.accruals_this_run += 1;
        if self.mode == Mode::Unknown {
            self.mode = if ctx.patched(ONE_WRITER) { Mode::OneWriter } else { Mode::Legacy };
        }
        if self.mode == Mode::Legacy {
            self.state.pending_events.push(event);
            return;
        }
        let now = now_ms(ctx.workflow_time());
        self.state.advance(now);
        // An invalid or resent accrual is dropped: its caller was answered already.
        let ignored = if event.ledger_checked && !self.state.needs_settling() {
            self.state.accrue(&event, now).err()
        } else {
            self.state.queue_unchecked(event.clone()).err()
        };
        if let Some(why) = ignored
            && !ctx.is_replaying()
        {
            tracing::info!(customer = %self.state.customer_id, event_id = %event.event_id, why, "accrual ignored");
        }
    }

    /// Counts an accepted update, applies what is due by `now`, and refuses
    /// an update the account cannot decide yet.
    fn accept_update(&mut self, now: Millis) -> Result<(), Rejection> {
        self.updates_this_run += 1;
        if self.state.needs_settling() {
            return Err(Rejection::Settling);
        }
        self.state.advance(now);
        Ok(())
    }

    /// Whether the account can take a hold update now (holds need the
    /// one-writer core and a settled account).
    fn check_hold(&self) -> Result<(), HandlerError> {
        if !self.one_writer() || self.state.needs_settling() {
            return Err(rejection(Rejection::Settling));
        }
        Ok(())
    }
}

#[workflow_methods]
impl LoyaltyEntityWorkflow {
    /// A new account, or the carried state after continue-as-new.
    #[init]
    pub fn new(ctx: &WorkflowContextView, input: WorkflowInput) -> Self {
        Self::with_state(input.0.unwrap_or_else(|| LoyaltyState::open(customer_of_workflow(ctx.workflow_id()))))
    }

    /// Writes decided entries to the ledger until `shutdown`, continuing-as-new
    /// as the run fills.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<LoyaltyState> {
        if mode_of(ctx) == Mode::Legacy {
            return legacy::run(ctx).await;
        }
        let lifecycle = ctx.patched(LIFECYCLE);
        let warnings = lifecycle && ctx.patched(EXPIRY_WARNINGS);
        ctx.state_mut(|s| {
            s.lifecycle = lifecycle;
            if warnings {
                s.state.enable_expiry_warnings();
            }
        });
        let ctx: &Ctx = ctx;
        let mut sleep = Sleep::new(ctx);
        loop {
            ctx.state_mut(|s| s.state.tidy_lots());
            if lifecycle {
                if !sleep.until_work_or_due().await? {
                    continue;
                }
            } else {
                let c = ctx.clone();
                ctx.wait_condition(move |s: &Self| s.has_work(should_continue(&c))).await?;
            }
            match project_once(ctx).await {
                Projection::Done => {}
                Projection::Failed => {
                    let failures = ctx.state(|s| s.failures);
                    let first = if lifecycle { LEDGER_RETRY_FIRST } else { LEDGER_RETRY };
                    let wait = first.saturating_mul(1 << failures.min(9).saturating_sub(1));
                    ctx.timer(wait.min(LEDGER_RETRY_MAX)).await;
                }
                Projection::Held => {
                    ctx.timer(LEDGER_HOLD_RETRY).await;
                }
            }

            if ctx.state(|s| s.closing && !s.state.has_projection_work()) {
                sleep.cancel();
                wait_for_handlers(ctx).await?;
                log(ctx, |s| tracing::info!(customer = %s.customer_id, balance = s.points_balance, "account closed"));
                return Ok(ctx.state(|s| s.state.clone()));
            }

            let suggested = should_continue(ctx);
            let carry = ctx.state_mut(|s| {
                let carry = s.should_carry_over(suggested);
                s.carry_refused_at = (!carry && s.run_is_full(suggested)).then_some(s.state.seq);
                carry
            });
            if carry {
                sleep.cancel();
                wait_for_handlers(ctx).await?;
                ctx.state_mut(|s| s.state.compact_lots());
                let carried = ctx.state(|s| s.state.clone());
                log(ctx, |s| {
                    let behind = s.seq - s.projected_seq;
                    tracing::info!(customer = %s.customer_id, seq = s.seq, behind, "continuing as new")
                });
                // A pinned run moves to the deployment's current version here.
                let options = ContinueAsNewOptions::builder()
                    .initial_versioning_behavior(ContinueAsNewVersioningBehavior::AutoUpgrade)
                    .build();
                ctx.continue_as_new(Nullable(Some(carried)), options)?;
            }
        }
    }

    /// Decides an accrual at once when our gRPC layer checked its id against
    /// the ledger; otherwise queues it for the run loop's check.
    #[signal]
    pub fn add_points(&mut self, ctx: &mut SyncWorkflowContext<Self>, event: PointsEvent) {
        self.signals_this_run += 1;
        self.receive(ctx, event);
    }

    /// Accruals our gRPC layer sent together (ours; the reference guide
    /// sends one `add_points` each): each is taken as `add_points` takes it,
    /// in order.
    #[signal]
    pub fn add_points_batch(&mut self, ctx: &mut SyncWorkflowContext<Self>, events: Vec<PointsEvent>) {
        self.signals_this_run += 1;
        for event in events {
            self.receive(ctx, event);
        }
    }

    /// Closes the account: refuse redemptions, write everything, complete with the state.
    #[signal]
    pub fn shutdown(&mut self, ctx: &mut SyncWorkflowContext<Self>) {
        self.closing = true;
        if self.one_writer() && !self.state.needs_settling() {
            // Open holds give their points back, so none stay set aside for good.
            let now = now_ms(ctx.workflow_time());
            self.state.advance(now);
            self.state.release_all_holds(now);
        }
        self.state.close();
    }

    /// Rejects, before it enters history, a redemption that cannot succeed.
    #[update_validator(redeem_points)]
    pub fn validate_redeem_points(
        &self,
        _ctx: &WorkflowContextView,
        req: &RedemptionRequest,
    ) -> Result<(), HandlerError> {
        if !self.one_writer() {
            return legacy::validate_redeem_points(self, req);
        }
        if self.state.needs_settling() {
            return Err(rejection(Rejection::Settling));
        }
        unadvanced(&self.state, self.state.plan_redeem(req))
    }

    /// Spends points, decided against the account's state in this workflow
    /// task; idempotent by `event_id`.
    #[update]
    pub async fn redeem_points(
        ctx: &mut WorkflowContext<Self>,
        req: RedemptionRequest,
    ) -> Result<RedemptionResult, HandlerError> {
        if mode_of(ctx) == Mode::Legacy {
            return legacy::redeem_points(ctx, req).await;
        }
        let now = now_ms(ctx.workflow_time());
        ctx.state_mut(|s| s.accept_update(now).and_then(|()| s.state.redeem(&req, now))).map_err(rejection)
    }

    /// Rejects a malformed reversal, or one the account cannot take now.
    #[update_validator(reverse_points)]
    pub fn validate_reverse_points(
        &self,
        _ctx: &WorkflowContextView,
        req: &ReversalRequest,
    ) -> Result<(), HandlerError> {
        let movement = req.movement().map_err(|e| rejection(e.into()))?;
        if !self.one_writer() {
            return self.state.check_correction().map_err(rejection);
        }
        if self.state.needs_settling() {
            return Err(rejection(Rejection::Settling));
        }
        self.state.plan_correction(&movement, req.ledger.as_ref()).map(|_| ()).map_err(rejection)
    }

    /// Claws back (part of) an accrual or returns (part of) a redemption's
    /// points; idempotent by `event_id`.
    #[update]
    pub async fn reverse_points(
        ctx: &mut WorkflowContext<Self>,
        req: ReversalRequest,
    ) -> Result<BalanceChange, HandlerError> {
        let movement = req.movement().map_err(|e| rejection(e.into()))?;
        if mode_of(ctx) == Mode::Legacy {
            return legacy::correct(ctx, movement).await;
        }
        let terms = Terms { allow_negative: req.allow_negative, expires_at_ms: req.expires_at_ms };
        let now = now_ms(ctx.workflow_time());
        ctx.state_mut(|s| {
            s.accept_update(now).and_then(|()| s.state.correct(&movement, req.ledger.as_ref(), terms, now))
        })
        .map_err(rejection)
    }

    /// Rejects a malformed adjustment, or one the account cannot take now.
    #[update_validator(adjust_points)]
    pub fn validate_adjust_points(
        &self,
        _ctx: &WorkflowContextView,
        req: &AdjustmentRequest,
    ) -> Result<(), HandlerError> {
        let movement = req.movement().map_err(|e| rejection(e.into()))?;
        if !self.one_writer() {
            return self.state.check_correction().map_err(rejection);
        }
        if self.state.needs_settling() {
            return Err(rejection(Rejection::Settling));
        }
        self.state.plan_correction(&movement, None).map(|_| ()).map_err(rejection)
    }

    /// A support correction of balance and lifetime points; idempotent by `event_id`.
    #[update]
    pub async fn adjust_points(
        ctx: &mut WorkflowContext<Self>,
        req: AdjustmentRequest,
    ) -> Result<BalanceChange, HandlerError> {
        let movement = req.movement().map_err(|e| rejection(e.into()))?;
        if mode_of(ctx) == Mode::Legacy {
            return legacy::correct(ctx, movement).await;
        }
        let terms = Terms { allow_negative: false, expires_at_ms: req.expires_at_ms };
        let now = now_ms(ctx.workflow_time());
        ctx.state_mut(|s| s.accept_update(now).and_then(|()| s.state.correct(&movement, None, terms, now)))
            .map_err(rejection)
    }

    /// Rejects a hold that cannot be made.
    #[update_validator(reserve_points)]
    pub fn validate_reserve_points(
        &self,
        _ctx: &WorkflowContextView,
        req: &ReserveRequest,
    ) -> Result<(), HandlerError> {
        self.check_hold()?;
        unadvanced(&self.state, self.state.plan_reserve(req))
    }

    /// Sets points aside for a checkout (ours); idempotent by `hold_id`.
    #[update]
    pub async fn reserve_points(
        ctx: &mut WorkflowContext<Self>,
        req: ReserveRequest,
    ) -> Result<HoldResult, HandlerError> {
        hold_update(ctx, |s, now| s.reserve(&req, now))
    }

    /// Rejects a capture that cannot succeed.
    #[update_validator(capture_points)]
    pub fn validate_capture_points(
        &self,
        _ctx: &WorkflowContextView,
        req: &CaptureRequest,
    ) -> Result<(), HandlerError> {
        self.check_hold()?;
        self.state.plan_capture(req).map(|_| ()).map_err(rejection)
    }

    /// Spends (part of) a hold, giving back the rest (ours); idempotent by `event_id`.
    #[update]
    pub async fn capture_points(
        ctx: &mut WorkflowContext<Self>,
        req: CaptureRequest,
    ) -> Result<HoldResult, HandlerError> {
        hold_update(ctx, |s, now| s.capture(&req, now))
    }

    /// Rejects a release of an unknown or captured hold.
    #[update_validator(release_points)]
    pub fn validate_release_points(
        &self,
        _ctx: &WorkflowContextView,
        req: &ReleaseRequest,
    ) -> Result<(), HandlerError> {
        self.check_hold()?;
        self.state.plan_release(req).map(|_| ()).map_err(rejection)
    }

    /// Gives a hold's points back (ours); idempotent by `hold_id`.
    #[update]
    pub async fn release_points(
        ctx: &mut WorkflowContext<Self>,
        req: ReleaseRequest,
    ) -> Result<HoldResult, HandlerError> {
        hold_update(ctx, |s, now| s.release(&req, now))
    }

    /// The account summary (wire name `get_loyalty_summary`).
    #[query]
    pub fn get_loyalty_summary(&self, _ctx: &WorkflowContextView) -> LoyaltySummary {
        LoyaltySummary { ledger_held: self.held.clone(), ..self.state.summary() }
    }

    /// The spendable balance.
    #[query]
    pub fn get_points_balance(&self, _ctx: &WorkflowContextView) -> i64 {
        self.state.points_balance
    }

    /// The current tier.
    #[query]
    pub fn get_tier(&self, _ctx: &WorkflowContextView) -> Tier {
        self.state.tier
    }
}

type Ctx = WorkflowContext<LoyaltyEntityWorkflow>;

/// The run's mode, recording the patch marker the first time it is asked.
fn mode_of(ctx: &Ctx) -> Mode {
    let mode = ctx.state(|s| s.mode);
    if mode != Mode::Unknown {
        return mode;
    }
    let mode = if ctx.patched(ONE_WRITER) { Mode::OneWriter } else { Mode::Legacy };
    ctx.state_mut(|s| s.mode = mode);
    mode
}

/// A validator's verdict on a state not advanced to the task's time (a
/// validator cannot read the clock): "not enough points" is left to the
/// handler, which advances first, while pending points or holds may have
/// come due since.
fn unadvanced<T>(state: &LoyaltyState, plan: Result<T, Rejection>) -> Result<(), HandlerError> {
    match plan {
        Err(Rejection::Insufficient { .. }) if state.lots.pending() > 0 || !state.holds.is_empty() => Ok(()),
        other => other.map(|_| ()).map_err(rejection),
    }
}

/// The workflow's clock in Unix milliseconds (0 if the SDK has none yet).
fn now_ms(time: Option<std::time::SystemTime>) -> Millis {
    time.map_or(0, crate::clock::unix_ms)
}

/// Runs a hold update: refused on a run of the previous version (it has
/// no holds; it continues-as-new into this one soon) or while settling.
fn hold_update(
    ctx: &Ctx,
    decide: impl FnOnce(&mut LoyaltyState, Millis) -> Result<HoldResult, Rejection>,
) -> Result<HoldResult, HandlerError> {
    if mode_of(ctx) == Mode::Legacy {
        return Err(rejection(Rejection::Settling));
    }
    let now = now_ms(ctx.workflow_time());
    ctx.state_mut(|s| s.accept_update(now).and_then(|()| decide(&mut s.state, now))).map_err(rejection)
}

/// The run loop's one timer: it sleeps until the account's next due time
/// or its daily wake, and is kept (not restarted) while that time stays the
/// same, so a busy account does not add a timer to its history per write.
struct Sleep<'a> {
    ctx: &'a Ctx,
    timer: Option<(Millis, Box<dyn TimerFuture + 'a>)>,
    /// When the current daily wake is due.
    wake_at: Option<Millis>,
}

trait TimerFuture: FusedFuture<Output = temporalio_sdk::TimerResult> + CancellableFuture + Unpin {}
impl<T: FusedFuture<Output = temporalio_sdk::TimerResult> + CancellableFuture + Unpin> TimerFuture for T {}

impl<'a> Sleep<'a> {
    fn new(ctx: &'a Ctx) -> Self {
        Self { ctx, timer: None, wake_at: None }
    }

    /// Applies what is due, then returns true when the run loop has work,
    /// or waits for work, a change of the next due time, or the timer, and
    /// returns false (look again).
    async fn until_work_or_due(&mut self) -> Result<bool, WorkflowCancellationError> {
        let ctx = self.ctx;
        let now = now_ms(ctx.workflow_time());
        ctx.state_mut(|s| s.state.advance(now));
        let mut wake_at = *self.wake_at.get_or_insert(now.saturating_add(IDLE_WAKE_MS));
        let woke = now >= wake_at;
        if woke {
            // The daily wake: the run looks at whether its deployment moved on.
            wake_at = now.saturating_add(IDLE_WAKE_MS);
            self.wake_at = Some(wake_at);
        }
        // Temporal's flags (a suggested continue-as-new, a new deployment
        // version) are read only when the loop runs for an event in history
        // or at the daily wake: a task whose only news is a rejected update is
        // dropped from history, so nothing may change in it.
        if ctx.state(|s| s.has_work(should_continue(ctx))) {
            return Ok(true);
        }
        // The exact next due time: the hint becomes it, so the wait below
        // wakes only when something makes a due time earlier.
        let due = ctx.state_mut(|s| {
            let due = s.state.next_due();
            s.state.due_hint = Some(due.unwrap_or(Millis::MAX));
            due
        });
        let deadline = due.map_or(wake_at, |d| d.min(wake_at));
        if self.timer.as_ref().is_none_or(|(at, t)| *at != deadline || t.is_terminated()) {
            self.cancel();
            let wait = Duration::from_millis(deadline.saturating_sub(now).max(1) as u64);
            self.timer = Some((deadline, Box::new(ctx.timer(wait))));
        }
        let mut timer = &mut self.timer.as_mut().expect("set above").1;
        // Cheap to evaluate on every activation: the hint drops (or is
        // forgotten) whenever something may fall due before the deadline.
        select! {
            _ = timer => {}
            r = ctx.wait_condition(move |s: &LoyaltyEntityWorkflow| {
                s.has_work(false) || s.state.due_hint.is_none_or(|hint| hint < deadline)
            }) => r?,
        }
        Ok(false)
    }

    /// Cancels the outstanding timer (a dropped timer is not cancelled).
    fn cancel(&mut self) {
        if let Some((_, timer)) = self.timer.take()
            && !timer.is_terminated()
        {
            timer.cancel();
        }
    }
}

/// How one projection round ended.
enum Projection {
    /// Written (or nothing to write).
    Done,
    /// The ledger failed after its retries: try again shortly.
    Failed,
    /// The ledger's sequence or totals do not match: held.
    Held,
}

/// Settles what the previous version left, or writes the next batch of
/// entries and checks the next accruals that arrived unchecked.
async fn project_once(ctx: &Ctx) -> Projection {
    if ctx.state(|s| s.state.needs_settling()) {
        return if hand_over(ctx).await { Projection::Done } else { failed(ctx) };
    }
    // While the ledger fails, each try carries one entry.
    let max = if ctx.state(|s| s.failures) > 0 { 1 } else { MAX_BATCH };
    let batch = ctx.state(|s| s.state.projection(max, MAX_BATCH_BYTES, s.lifecycle));
    if batch.entries.is_empty() && batch.check.is_empty() {
        return Projection::Done;
    }
    let reply = match ctx.execute_activity(LoyaltyActivities::project_entries, batch.clone(), ledger_options()).await {
        Ok(reply) => reply,
        Err(e) => {
            log(ctx, |s| tracing::warn!(customer = %s.customer_id, error = %e, "ledger write failed; entries wait"));
            return failed(ctx);
        }
    };
    let now = now_ms(ctx.workflow_time());
    match reply {
        ProjectionReply::Written { duplicates, known } => {
            let report = ctx.state_mut(|s| {
                s.held = None;
                s.failures = 0;
                s.state.projected(&batch, &known, now)
            });
            log(ctx, |s| {
                for entry in batch.entries.iter().filter(|e| duplicates.contains(&e.seq)) {
                    tracing::error!(customer = %s.customer_id, event_id = %entry.movement.event_id, seq = entry.seq,
                        "event id applied again after the account forgot it; recorded under a suffixed id");
                }
                for change in batch.entries.iter().filter_map(|e| e.tier_change.as_ref()) {
                    tracing::info!(customer = %change.customer_id, from = %change.old_tier, to = %change.new_tier, "tier changed");
                }
                for (event_id, why) in &report.ignored {
                    tracing::info!(customer = %s.customer_id, event_id, why, "accrual ignored");
                }
            });
            Projection::Done
        }
        ProjectionReply::Fenced { ledger_seq, ledger_totals } => {
            let why = format!(
                "ledger holds entry {ledger_seq} with balance {} and lifetime {}, the account expected entry {} with {:?}",
                ledger_totals.balance, ledger_totals.lifetime, batch.after_seq, batch.totals_before
            );
            log(
                ctx,
                |s| tracing::error!(customer = %s.customer_id, %why, "ledger does not match the account; writes held"),
            );
            ctx.state_mut(|s| s.held = Some(why));
            Projection::Held
        }
    }
}

/// Counts a failed write; the run loop waits longer after each.
fn failed(ctx: &Ctx) -> Projection {
    ctx.state_mut(|s| s.failures = s.failures.saturating_add(1));
    Projection::Failed
}

/// Takes over an account the previous version carried over: voids the
/// redemptions it gave back, settles those whose write it never learned,
/// and takes the ledger's totals once, since that version's ledger decided
/// them (a write whose answer it lost may be in them). A tier change this
/// reveals is announced the previous version's way.
async fn hand_over(ctx: &Ctx) -> bool {
    if !legacy::void_given_back(ctx).await {
        return false;
    }
    let request =
        ctx.state(|s| SettleRequest { customer_id: s.state.customer_id.clone(), in_doubt: s.state.in_doubt.clone() });
    let settled = match ctx.execute_activity(LoyaltyActivities::settle_redemptions, request, ledger_options()).await {
        Ok(settled) => settled,
        Err(e) => {
            log(ctx, |s| tracing::warn!(customer = %s.customer_id, error = %e, "taking over from the ledger failed"));
            return false;
        }
    };
    let change = ctx.state_mut(|s| {
        let change = s.state.settle_in_doubt(&settled.found, settled.totals);
        s.state.handed_over = true;
        s.failures = 0;
        change
    });
    log(
        ctx,
        |s| tracing::info!(customer = %s.customer_id, balance = s.points_balance, "taken over from the previous version"),
    );
    if let Some(change) = change {
        legacy::notify(ctx, change).await;
    }
    true
}

/// Temporal suggests a new run (history size), or, under Worker Versioning,
/// the deployment's current version moved on: a long-lived account upgrades
/// at its next continue-as-new.
fn should_continue(ctx: &Ctx) -> bool {
    ctx.continue_as_new_suggested() || ctx.target_worker_deployment_version_changed()
}

/// Logs only on first execution, not on replay.
fn log(ctx: &Ctx, f: impl FnOnce(&LoyaltyState)) {
    if !ctx.is_replaying() {
        ctx.state(|s| f(&s.state));
    }
}

async fn wait_for_handlers(ctx: &Ctx) -> Result<(), WorkflowCancellationError> {
    let c = ctx.clone();
    ctx.wait_condition(move |_| c.all_handlers_finished()).await
}

fn retry(max_attempts: u32, max_interval: Duration) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(200))
        .backoff_coefficient(2.0)
        .maximum_interval(max_interval)
        .maximum_attempts(max_attempts)
        .build()
}

/// Ledger writes: a few retries, then the run loop waits and writes again.
fn ledger_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10))
        .retry_policy(retry(5, Duration::from_secs(5)))
        .build()
}

fn rejection(r: Rejection) -> HandlerError {
    failure(r.failure_type(), r.to_string())
}

/// A typed, non-retryable failure. Wrapped twice because the SDK wraps a
/// handler's error once more and drops the type of the outermost layer; the
/// client finds the type on the cause.
fn failure(type_name: &str, message: String) -> HandlerError {
    let typed = ApplicationFailure::builder(message).type_name(type_name.to_owned()).non_retryable(true).build();
    Box::new(ApplicationFailure::new(typed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(state: LoyaltyState) -> LoyaltyEntityWorkflow {
        LoyaltyEntityWorkflow { mode: Mode::OneWriter, ..LoyaltyEntityWorkflow::with_state(state) }
    }

    fn accrual(i: usize, text: &str) -> PointsEvent {
        PointsEvent {
            event_id: format!("{i:0>128}"),
            points: 1,
            reason: text.into(),
            source: text.into(),
            ledger_checked: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_run_carries_over_only_a_state_that_fits() {
        let mut wf = account(LoyaltyState::open("c"));
        assert!(!wf.should_carry_over(false), "not full");
        assert!(wf.should_carry_over(true), "full and small");
        wf.closing = true;
        assert!(!wf.should_carry_over(true), "a closing account completes instead");
        wf.closing = false;

        // A ledger outage: more than one write's worth waits, the longest texts.
        let text = "\u{1F600}".repeat(256);
        for i in 0..MAX_BATCH + 1 {
            wf.state.accrue(&accrual(i, &text), 0).unwrap();
        }
        wf.signals_this_run = MAX_SIGNALS_PER_RUN;
        assert!(!wf.should_carry_over(false), "waits for the ledger while the run has room");
        wf.signals_this_run = FORCE_SIGNALS_PER_RUN;
        let size = serde_json::to_vec(&wf.state).unwrap().len();
        assert!(size > MAX_CARRY_BYTES, "{size}");
        assert!(!wf.should_carry_over(false), "never more than MAX_CARRY_BYTES, however full");

        // Nearing Temporal's limits, a backlog that fits goes along.
        let mut wf = account(LoyaltyState::open("c"));
        for i in 0..MAX_BATCH + 1 {
            wf.state.accrue(&accrual(i, "short"), 0).unwrap();
        }
        wf.updates_this_run = MAX_UPDATES_PER_RUN;
        assert!(!wf.should_carry_over(false));
        assert!(wf.should_carry_over(true), "Temporal suggests a new run: carried with its backlog");
        wf.lifecycle = true;
        assert!(!wf.should_carry_over(true), "a lifecycle run writes its backlog down first");
        wf.lifecycle = false;
        wf.updates_this_run = FORCE_UPDATES_PER_RUN;
        assert!(wf.should_carry_over(false), "forced: carried with its backlog");

        // Windows full of the longest ids (about 0.3 MB) still go along when nothing waits.
        let mut wf = account(LoyaltyState::open("c"));
        for i in 0..2_000 {
            wf.state.accrue(&accrual(i, ""), 0).unwrap();
            let batch = wf.state.projection(MAX_BATCH, usize::MAX, true);
            wf.state.projected(&batch, &[], 0);
        }
        wf.accruals_this_run = MAX_ACCRUALS_PER_RUN;
        assert!(wf.should_carry_over(false));
    }

    #[test]
    fn a_run_that_cannot_carry_over_waits_for_a_change_instead_of_spinning() {
        let mut wf = account(LoyaltyState::open("c"));
        wf.signals_this_run = MAX_SIGNALS_PER_RUN;
        assert!(wf.has_work(false), "full: look");
        wf.carry_refused_at = Some(wf.state.seq);
        assert!(!wf.has_work(false), "looked at this state already");
        wf.state.accrue(&accrual(1, "x"), 0).unwrap();
        assert!(wf.has_work(false), "something changed");
    }
}
