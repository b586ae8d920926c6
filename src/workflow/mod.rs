//! `LoyaltyEntityWorkflow`: one long-lived workflow per customer.
//!
//! One writer, one order. Every handler builds a domain [`Command`] and
//! hands it to [`LoyaltyState::apply`], synchronously, in arrival order:
//! an accrual in its signal, a redemption, correction or hold in its
//! update, whose caller is answered as soon as the workflow task that
//! decided it completes. Every handler is synchronous, so none can wait on
//! the run loop and the run loop never waits on a handler. Refusals are made
//! by the updates' validators, at the task's time ([`interceptors`]), so none
//! is kept under an update's id.
//!
//! An update's result hands our API the entries decided since the previous
//! result, which it writes to the ledger before answering; the run loop
//! writes what was decided too ([`Projector`]), after a pause that lets one
//! write follow many decisions ([`WriteBehind`]), wakes for what falls due
//! (`Sleep`), and continues-as-new when the run
//! has taken its share ([`RunBudget`]), after telling our API so through
//! the updates it decides meanwhile ([`budget::ENDING_NOTICE`]), or
//! completes after `shutdown`.
//! Temporal's history is the record of decisions; the ledger is their
//! projection, and the account never adopts totals it did not decide.

mod budget;
mod clock;
mod projector;
mod run_end;
mod sleep;
mod steps;
mod write_behind;

use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ApplicationFailure, ContinueAsNewOptions, ContinueAsNewVersioningBehavior, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

pub use budget::{
    ENDING_NOTICE, FORCE_EVENTS_PER_RUN, MAX_ACCRUALS_PER_RUN, MAX_CARRY_BYTES, MAX_EVENTS_PER_RUN,
    MAX_SIGNALS_PER_RUN, MAX_UPDATES_PER_RUN, RUN_END_PATCH, RunBudget, SHORT_RUNS_PATCH,
};
pub use clock::interceptors;
pub use projector::Projector;
pub use sleep::IDLE_WAKE_MS;
pub use write_behind::{HANDED_PAUSE, WRITE_BEHIND_PATCH, WRITE_PAUSE, WriteBehind};

use self::run_end::{back_off, give_notice, is_long, should_continue};
use self::sleep::Sleep;
use self::steps::{log_ignored, project_once, until_work_or_due};
use crate::domain::ids::customer_of_workflow;
use crate::domain::{
    AdjustmentRequest, BalanceChange, CaptureRequest, Command, HoldResult, LoyaltyState, LoyaltySummary, Millis,
    PointsEvent, RedemptionRequest, RedemptionResult, Rejection, ReleaseRequest, Reply, ReserveRequest,
    ReversalRequest, Tier,
};
pub use crate::payload::WorkflowInput;
use crate::payload::{Noticed, Nullable};

type HandlerError = Box<dyn std::error::Error + Send + Sync>;
type Ctx = WorkflowContext<LoyaltyEntityWorkflow>;

/// The entity workflow of one customer account.
#[workflow]
pub struct LoyaltyEntityWorkflow {
    state: LoyaltyState,
    /// `shutdown` received: write everything, then complete.
    closing: bool,
    budget: RunBudget,
    projector: Projector,
    /// The run is about to continue-as-new: the updates it decides say so.
    ending: bool,
    /// The history's length as the handlers last saw it (the run loop's
    /// waits cannot ask Temporal's).
    events: u32,
    /// When the run loop writes, and what an update's result hands our API.
    writes: WriteBehind,
}

impl LoyaltyEntityWorkflow {
    /// Whether the run loop has something to do: entries to write, a close,
    /// or a full run that has yet to look at whether it can carry its state.
    fn has_work(&self, suggested: bool) -> bool {
        self.state.has_projection_work() || self.closing || self.budget.wants_to_look(&self.state, suggested)
    }

    /// Whether the run loop must not sit in a paused write: the account
    /// closes, accruals wait for their check, the run is full or long, or
    /// the backlog is.
    fn is_pressed(&self) -> bool {
        self.closing
            || !self.state.pending_events.is_empty()
            || self.budget.wants_to_look(&self.state, false)
            || self.events >= MAX_EVENTS_PER_RUN
            || self.state.unprojected.len() >= write_behind::WRITE_NOW_ENTRIES
    }

    /// Takes accruals from a signal; an invalid or resent one is dropped
    /// (and logged): its caller was answered already.
    fn take_accruals(&mut self, ctx: &SyncWorkflowContext<Self>, accruals: usize, command: Command) {
        self.budget.signal(accruals);
        self.events = ctx.history_length();
        if let Ok(Reply::Accrued(ignored)) = self.state.apply(command, now_ms(ctx.workflow_time()))
            && !ctx.is_replaying()
        {
            log_ignored(&self.state.customer_id, &ignored);
        }
    }

    /// Decides an update's command; a refusal becomes its typed failure.
    fn decide(&mut self, ctx: &SyncWorkflowContext<Self>, command: Command) -> Result<Reply, HandlerError> {
        self.budget.update();
        self.events = ctx.history_length();
        self.state.apply(command, now_ms(ctx.workflow_time())).map_err(rejection)
    }

    /// A validator's verdict, at the task's time: a refusal here never
    /// enters history.
    fn vet(&self, view: &WorkflowContextView, command: Command) -> Result<(), HandlerError> {
        self.state.vet(&command, clock::task_time(view)).map_err(rejection)
    }

    /// An update's result with the run's notice and the entries decided
    /// since the last result, for our API to write.
    fn noticed<T>(&mut self, value: T) -> Noticed<T> {
        Noticed { value, run_ending: self.ending, entries: self.writes.hand_out(&self.state) }
    }

    /// A hold operation's result with the run's notice.
    fn hold(&mut self, reply: Reply) -> Result<Noticed<HoldResult>, HandlerError> {
        match reply {
            Reply::Hold(result) => Ok(self.noticed(result)),
            other => Err(unexpected(other)),
        }
    }
}

#[workflow_methods]
impl LoyaltyEntityWorkflow {
    /// A new account, or the carried state after continue-as-new, brought
    /// to this version (a state another worker made keeps its totals).
    #[init]
    pub fn new(ctx: &WorkflowContextView, input: WorkflowInput) -> Self {
        let started = ctx.start_time().map_or(0, crate::clock::unix_ms);
        let state = LoyaltyState::upgrade(input.0, customer_of_workflow(ctx.workflow_id()), started);
        Self {
            state,
            closing: false,
            budget: RunBudget::default(),
            projector: Projector::default(),
            ending: false,
            events: 0,
            writes: WriteBehind::default(),
        }
    }

    /// Writes decided entries to the ledger and wakes for what falls due,
    /// until `shutdown`, continuing-as-new as the run fills.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<LoyaltyState> {
        let ctx: &Ctx = ctx;
        let mut sleep = Sleep::default();
        let paused = ctx.patched(WRITE_BEHIND_PATCH);
        ctx.state_mut(|s| s.writes.paused = paused);
        loop {
            ctx.state_mut(|s| s.state.tidy_lots());
            if !until_work_or_due(ctx, &mut sleep).await? {
                continue;
            }
            if let Some(wait) = project_once(ctx).await {
                back_off(ctx, wait).await;
            }
            if ctx.state(|s| s.closing && !s.state.has_projection_work()) {
                sleep.cancel();
                log(ctx, |s| tracing::info!(customer = %s.customer_id, balance = s.points_balance, "account closed"));
                return Ok(ctx.state(|s| s.state.clone()));
            }
            let (suggested, long) = (should_continue(ctx), is_long(ctx));
            if ctx.state_mut(|s| !s.closing && s.budget.carry_now(&s.state, suggested, long)) && give_notice(ctx).await
            {
                sleep.cancel();
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

    /// Points earned: decided at once when our gRPC layer checked the id
    /// against the ledger, otherwise queued for the projection's check.
    #[signal]
    pub fn add_points(&mut self, ctx: &mut SyncWorkflowContext<Self>, event: PointsEvent) {
        self.take_accruals(ctx, 1, Command::Accrue(event));
    }

    /// Accruals our gRPC layer sent together (ours; the reference guide
    /// sends one `add_points` each), taken in order.
    #[signal]
    pub fn add_points_batch(&mut self, ctx: &mut SyncWorkflowContext<Self>, events: Vec<PointsEvent>) {
        self.take_accruals(ctx, events.len(), Command::AccrueBatch(events));
    }

    /// Closes the account: open holds give their points back, redemptions
    /// are refused, and the run writes everything and completes.
    #[signal]
    pub fn shutdown(&mut self, ctx: &mut SyncWorkflowContext<Self>) {
        self.closing = true;
        // Closing is never refused.
        let _ = self.state.apply(Command::Close, now_ms(ctx.workflow_time()));
    }

    /// Rejects, before it enters history, a redemption that cannot succeed.
    #[update_validator(redeem_points)]
    pub fn validate_redeem_points(
        &self,
        view: &WorkflowContextView,
        req: &RedemptionRequest,
    ) -> Result<(), HandlerError> {
        self.vet(view, Command::Redeem(req.clone()))
    }

    /// Spends points; idempotent by `event_id`.
    #[update]
    pub fn redeem_points(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        req: RedemptionRequest,
    ) -> Result<Noticed<RedemptionResult>, HandlerError> {
        match self.decide(ctx, Command::Redeem(req))? {
            Reply::Redeemed(result) => Ok(self.noticed(result)),
            other => Err(unexpected(other)),
        }
    }

    /// Rejects a malformed reversal, or one the account cannot take.
    #[update_validator(reverse_points)]
    pub fn validate_reverse_points(
        &self,
        view: &WorkflowContextView,
        req: &ReversalRequest,
    ) -> Result<(), HandlerError> {
        self.vet(view, Command::Reverse(req.clone()))
    }

    /// Claws back (part of) an accrual or returns (part of) a redemption's
    /// points; idempotent by `event_id`.
    #[update]
    pub fn reverse_points(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        req: ReversalRequest,
    ) -> Result<Noticed<BalanceChange>, HandlerError> {
        match self.decide(ctx, Command::Reverse(req))? {
            Reply::Changed(change) => Ok(self.noticed(change)),
            other => Err(unexpected(other)),
        }
    }

    /// Rejects a malformed adjustment, or one the account cannot take.
    #[update_validator(adjust_points)]
    pub fn validate_adjust_points(
        &self,
        view: &WorkflowContextView,
        req: &AdjustmentRequest,
    ) -> Result<(), HandlerError> {
        self.vet(view, Command::Adjust(req.clone()))
    }

    /// A support correction of balance and lifetime points; idempotent by `event_id`.
    #[update]
    pub fn adjust_points(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        req: AdjustmentRequest,
    ) -> Result<Noticed<BalanceChange>, HandlerError> {
        match self.decide(ctx, Command::Adjust(req))? {
            Reply::Changed(change) => Ok(self.noticed(change)),
            other => Err(unexpected(other)),
        }
    }

    /// Rejects a hold that cannot be made.
    #[update_validator(reserve_points)]
    pub fn validate_reserve_points(
        &self,
        view: &WorkflowContextView,
        req: &ReserveRequest,
    ) -> Result<(), HandlerError> {
        self.vet(view, Command::Reserve(req.clone()))
    }

    /// Sets points aside for a checkout (ours); idempotent by `hold_id`.
    #[update]
    pub fn reserve_points(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        req: ReserveRequest,
    ) -> Result<Noticed<HoldResult>, HandlerError> {
        let reply = self.decide(ctx, Command::Reserve(req))?;
        self.hold(reply)
    }

    /// Rejects a capture that cannot succeed.
    #[update_validator(capture_points)]
    pub fn validate_capture_points(
        &self,
        view: &WorkflowContextView,
        req: &CaptureRequest,
    ) -> Result<(), HandlerError> {
        self.vet(view, Command::Capture(req.clone()))
    }

    /// Spends (part of) a hold, giving back the rest (ours); idempotent by `event_id`.
    #[update]
    pub fn capture_points(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        req: CaptureRequest,
    ) -> Result<Noticed<HoldResult>, HandlerError> {
        let reply = self.decide(ctx, Command::Capture(req))?;
        self.hold(reply)
    }

    /// Rejects a release of an unknown or captured hold.
    #[update_validator(release_points)]
    pub fn validate_release_points(
        &self,
        view: &WorkflowContextView,
        req: &ReleaseRequest,
    ) -> Result<(), HandlerError> {
        self.vet(view, Command::Release(req.clone()))
    }

    /// Gives a hold's points back (ours); idempotent by `hold_id`.
    #[update]
    pub fn release_points(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        req: ReleaseRequest,
    ) -> Result<Noticed<HoldResult>, HandlerError> {
        let reply = self.decide(ctx, Command::Release(req))?;
        self.hold(reply)
    }

    /// The account summary (wire name `get_loyalty_summary`).
    #[query]
    pub fn get_loyalty_summary(&self, _ctx: &WorkflowContextView) -> LoyaltySummary {
        LoyaltySummary { ledger_held: self.projector.held().map(str::to_owned), ..self.state.summary() }
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

/// Logs only on first execution, not on replay.
fn log(ctx: &Ctx, f: impl FnOnce(&LoyaltyState)) {
    if !ctx.is_replaying() {
        ctx.state(|s| f(&s.state));
    }
}

/// The workflow's clock in Unix milliseconds (0 if the SDK has none yet).
fn now_ms(time: Option<std::time::SystemTime>) -> Millis {
    time.map_or(0, crate::clock::unix_ms)
}

/// A reply that does not answer the command: a bug, not the caller's.
fn unexpected(reply: Reply) -> HandlerError {
    format!("the account answered {reply:?}").into()
}

/// A refusal as a typed, non-retryable failure. Wrapped twice because the
/// SDK wraps a handler's error once more and drops the type of the
/// outermost layer; the client finds the type on the cause.
fn rejection(r: Rejection) -> HandlerError {
    let typed =
        ApplicationFailure::builder(r.to_string()).type_name(r.failure_type().to_owned()).non_retryable(true).build();
    Box::new(ApplicationFailure::new(typed))
}
