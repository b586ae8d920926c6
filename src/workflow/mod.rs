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
//! The run loop only writes what was decided to the ledger ([`Projector`]),
//! wakes for what falls due (`Sleep`), and continues-as-new when the run
//! has taken its share ([`RunBudget`]), after telling our API so through
//! the updates it decides meanwhile ([`budget::ENDING_NOTICE`]), or
//! completes after `shutdown`.
//! Temporal's history is the record of decisions; the ledger is their
//! projection, and the account never adopts totals it did not decide.

mod budget;
mod clock;
mod projector;
mod sleep;

use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, ContinueAsNewOptions, ContinueAsNewVersioningBehavior, SyncWorkflowContext,
    WorkflowCancellationError, WorkflowContext, WorkflowContextView, WorkflowResult,
};

pub use budget::{
    ENDING_NOTICE, FORCE_EVENTS_PER_RUN, MAX_ACCRUALS_PER_RUN, MAX_CARRY_BYTES, MAX_EVENTS_PER_RUN,
    MAX_SIGNALS_PER_RUN, MAX_UPDATES_PER_RUN, RUN_END_PATCH, RunBudget, SHORT_RUNS_PATCH,
};
pub use clock::interceptors;
pub use projector::Projector;
pub use sleep::IDLE_WAKE_MS;

use self::projector::Written;
use self::sleep::Sleep;
use crate::domain::ids::customer_of_workflow;
use crate::domain::{
    AdjustmentRequest, BalanceChange, CaptureRequest, Command, HoldResult, Ignored, LoyaltyState, LoyaltySummary,
    Millis, PointsEvent, RedemptionRequest, RedemptionResult, Rejection, ReleaseRequest, Reply, ReserveRequest,
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
}

impl LoyaltyEntityWorkflow {
    /// Whether the run loop has something to do: entries to write, a close,
    /// or a full run that has yet to look at whether it can carry its state.
    fn has_work(&self, suggested: bool) -> bool {
        self.state.has_projection_work() || self.closing || self.budget.wants_to_look(&self.state, suggested)
    }

    /// Takes accruals from a signal; an invalid or resent one is dropped
    /// (and logged): its caller was answered already.
    fn take_accruals(&mut self, ctx: &SyncWorkflowContext<Self>, accruals: usize, command: Command) {
        self.budget.signal(accruals);
        if let Ok(Reply::Accrued(ignored)) = self.state.apply(command, now_ms(ctx.workflow_time()))
            && !ctx.is_replaying()
        {
            log_ignored(&self.state.customer_id, &ignored);
        }
    }

    /// Decides an update's command; a refusal becomes its typed failure.
    fn decide(&mut self, ctx: &SyncWorkflowContext<Self>, command: Command) -> Result<Reply, HandlerError> {
        self.budget.update();
        self.state.apply(command, now_ms(ctx.workflow_time())).map_err(rejection)
    }

    /// A validator's verdict, at the task's time: a refusal here never
    /// enters history.
    fn vet(&self, view: &WorkflowContextView, command: Command) -> Result<(), HandlerError> {
        self.state.vet(&command, clock::task_time(view)).map_err(rejection)
    }

    /// An update's result with the run's notice.
    fn noticed<T>(&self, value: T) -> Noticed<T> {
        Noticed { value, run_ending: self.ending }
    }

    /// A hold operation's result with the run's notice.
    fn hold(&self, reply: Reply) -> Result<Noticed<HoldResult>, HandlerError> {
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
        Self { state, closing: false, budget: RunBudget::default(), projector: Projector::default(), ending: false }
    }

    /// Writes decided entries to the ledger and wakes for what falls due,
    /// until `shutdown`, continuing-as-new as the run fills.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<LoyaltyState> {
        let ctx: &Ctx = ctx;
        let mut sleep = Sleep::default();
        loop {
            ctx.state_mut(|s| s.state.tidy_lots());
            if !until_work_or_due(ctx, &mut sleep).await? {
                continue;
            }
            if let Some(wait) = project_once(ctx).await {
                // A failed write waits (up to minutes) before the next try;
                // a long run that can carry its backlog continues-as-new
                // first instead of growing through the wait (long, it is
                // past the 500 events of `should_continue` too, which is not
                // asked here: a 1.1 run recorded its marker where it asked).
                let carry_first =
                    is_long(ctx) && ctx.state(|s| !s.closing && s.budget.would_carry(&s.state, true, true));
                if !carry_first {
                    ctx.timer(wait).await;
                }
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

/// Applies what fell due, then returns true when the run loop has work,
/// or sleeps until work arrives, something comes due sooner, or the timer
/// fires, and returns false (look again).
async fn until_work_or_due<'a>(ctx: &'a Ctx, sleep: &mut Sleep<'a>) -> Result<bool, WorkflowCancellationError> {
    let now = now_ms(ctx.workflow_time());
    ctx.state_mut(|s| s.state.apply(Command::TimerDue, now).map(drop).ok());
    let wake_at = sleep.daily_wake(now);
    // Temporal's flags (a suggested continue-as-new, a new deployment
    // version) are read only when the loop runs for an event in history or
    // at the daily wake: a task whose only news is a rejected update is
    // dropped from history, so nothing may change in it.
    let suggested = should_continue(ctx);
    if ctx.state(|s| s.has_work(suggested)) {
        return Ok(true);
    }
    let due = ctx.state(|s| s.state.next_due()).map(|(at, _)| at);
    let deadline = due.map_or(wake_at, |d| d.min(wake_at));
    // Wakes early only when something may now fall due before the deadline.
    let wake =
        move |s: &LoyaltyEntityWorkflow| s.has_work(false) || s.state.next_due().is_some_and(|(at, _)| at < deadline);
    sleep.until(ctx, now, deadline, wake).await?;
    Ok(false)
}

/// Before a continue-as-new: the updates the run decides say it is ending
/// for [`budget::ENDING_NOTICE`] (our API holds the account's calls on that
/// notice, so none races the continue-as-new's task); then whether to go on
/// (not if the account closed meanwhile or its state outgrew what a run may
/// carry: the notice is withdrawn and the run loop looks again). A run that
/// took no update has no one to tell, and a run without the patch marker
/// (1.1 recorded it) continues at once.
async fn give_notice(ctx: &Ctx) -> bool {
    if ctx.state(|s| s.budget.updates == 0) || !ctx.patched(budget::RUN_END_PATCH) {
        return true;
    }
    ctx.state_mut(|s| s.ending = true);
    // An activity, not a timer: Temporal fires timers to the second (a 50 ms
    // timer fired after 0.8 s here), and the account's calls wait as long.
    // Whether it ran or not, the period is over after its schedule-to-close
    // timeout at most (a worker that died in it, or one without it).
    let period = u64::try_from(budget::ENDING_NOTICE.as_millis()).unwrap_or(u64::MAX);
    let options = ActivityOptions::with_schedule_to_close_timeout(std::time::Duration::from_secs(1))
        .retry_policy(RetryPolicy::builder().maximum_attempts(1).build())
        .build();
    let waited = ctx.execute_activity(crate::activities::LoyaltyActivities::notice_period, period, options).await;
    if let Err(error) = waited {
        log(ctx, |s| tracing::warn!(customer = %s.customer_id, %error, "notice period failed; continuing-as-new"));
    }
    ctx.state_mut(|s| {
        s.ending = !s.closing && s.state.approximate_size() <= MAX_CARRY_BYTES;
        s.ending
    })
}

/// Writes the next batch and checks the next queued accruals; returns how
/// long to wait before the next try, if the ledger failed or is held.
async fn project_once(ctx: &Ctx) -> Option<std::time::Duration> {
    let batch = ctx.state(|s| s.projector.next(&s.state))?;
    let reply = Projector::write(ctx, batch.clone()).await;
    let now = now_ms(ctx.workflow_time());
    let (written, ignored, wait) = ctx.state_mut(|s| {
        let written = s.projector.settle(&mut s.state, &batch, reply);
        let ignored = match &written {
            Written::Done { known, .. } if !known.is_empty() => {
                let verdicts = known.iter().map(|k| k.verdict()).collect();
                match s.state.apply(Command::Checked(verdicts), now) {
                    Ok(Reply::Accrued(ignored)) => ignored,
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        let wait = s.projector.wait_after(&written);
        (written, ignored, wait)
    });
    log(ctx, |s| {
        let customer = &s.customer_id;
        match &written {
            Written::Done { duplicates, .. } => {
                for entry in batch.entries.iter().filter(|e| duplicates.contains(&e.seq)) {
                    tracing::error!(%customer, event_id = %entry.movement.event_id, seq = entry.seq,
                        "event id applied again after the account forgot it; recorded under a suffixed id");
                }
                for change in batch.entries.iter().filter_map(|e| e.tier_change.as_ref()) {
                    tracing::info!(%customer, from = %change.old_tier, to = %change.new_tier, "tier changed");
                }
            }
            Written::Rebased(seq) => {
                tracing::warn!(%customer, ledger_seq = seq, "the ledger holds the carried totals: continued on it")
            }
            Written::Failed(error) => tracing::warn!(%customer, %error, "ledger write failed; entries wait"),
            Written::Held(why) => tracing::error!(%customer, %why, "ledger does not match the account; writes held"),
        }
        log_ignored(customer, &ignored);
    });
    wait
}

fn log_ignored(customer: &str, ignored: &[(String, Ignored)]) {
    for (event_id, why) in ignored {
        tracing::info!(customer, event_id, %why, "accrual ignored");
    }
}

/// The run's history is as long as a cheap replay allows (in a run that
/// records [`budget::SHORT_RUNS_PATCH`]), Temporal suggests
/// a new run (history size), or, under Worker Versioning, the deployment's
/// current version moved on: a long-lived account upgrades at its next
/// continue-as-new.
fn should_continue(ctx: &Ctx) -> bool {
    (ctx.history_length() >= budget::MAX_EVENTS_PER_RUN && ctx.patched(budget::SHORT_RUNS_PATCH))
        || ctx.continue_as_new_suggested()
        || ctx.target_worker_deployment_version_changed()
}

/// The run is past [`budget::FORCE_EVENTS_PER_RUN`] (in a run that records
/// [`budget::RUN_END_PATCH`]): it carries its backlog rather than grow on.
fn is_long(ctx: &Ctx) -> bool {
    ctx.history_length() >= budget::FORCE_EVENTS_PER_RUN && ctx.patched(budget::RUN_END_PATCH)
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
