//! `LoyaltyEntityWorkflow`: one long-lived workflow per customer.
//!
//! The handlers are thin: rules live in `domain`, side effects in
//! `activities`. Names and JSON shapes follow the reference guide's wire
//! contract so clients and workers from any SDK interoperate.
//!
//! Invariants kept here:
//! - The ledger is the durable record: every write goes through it, and the
//!   state adopts the totals it answers. Writes of one account are serialized
//!   by `ledger_busy`, so every row's `balance_after` is exact.
//! - No activity failure fails the workflow: accrual batches stay pending and
//!   are retried after a backoff; a redemption whose write has an unknown
//!   outcome holds its points until the run loop settles it with the ledger.
//! - Continue-as-new happens only from the run loop, after in-flight handlers
//!   finished, carrying every unapplied event in the state.

use std::time::Duration;

use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, ContinueAsNewOptions, ContinueAsNewVersioningBehavior, SyncWorkflowContext,
    WorkflowCancellationError, WorkflowContext, WorkflowContextView, WorkflowResult,
};

pub use crate::payload::WorkflowInput;

use crate::activities::{LoyaltyActivities, SettleRequest, VoidRequest};
use crate::domain::account::failure_type::LEDGER_UNAVAILABLE;
use crate::domain::ids::customer_of_workflow;
use crate::domain::messages::{LoyaltyState, LoyaltySummary, PointsEvent, RedemptionRequest, RedemptionResult};
use crate::domain::{
    AdjustmentRequest, BalanceChange, LedgerBatch, Movement, RedeemStep, Rejection, ReversalRequest, Tier, TierChange,
};
use crate::payload::Nullable;
/// Most accruals applied (and written to the ledger) in one batch.
pub const MAX_BATCH: usize = 500;
/// Signals after which a run continues-as-new, well before Temporal's
/// 10,000-signals-per-run limit and its history-size suggestion.
pub const MAX_SIGNALS_PER_RUN: u32 = 2_000;
/// Past this many signals a run continues-as-new even with a large backlog.
pub const FORCE_CONTINUE_SIGNALS: u32 = 8_000;
/// Largest backlog carried into the next run when the ledger is healthy; a
/// bigger one is drained first to keep the continue-as-new input small.
pub const MAX_PENDING_CARRY: usize = 500;
/// Wait before retrying ledger writes that failed after their retries.
const LEDGER_BACKOFF: Duration = Duration::from_secs(30);
/// Runs with this marker let a redemption that the acknowledged, still
/// pending accruals would cover wait for them instead of failing; histories
/// recorded before it replay the old way.
const REDEEM_WAITS_FOR_ACCRUALS: &str = "redeem-waits-for-acknowledged-accruals";

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The entity workflow of one customer account.
#[workflow]
pub struct LoyaltyEntityWorkflow {
    state: LoyaltyState,
    /// `shutdown` received: drain, then complete.
    closing: bool,
    /// A ledger write and its balance change are in progress.
    ledger_busy: bool,
    /// Signals received by this run (not carried across continue-as-new).
    signals_this_run: u32,
    /// Accruals this run has taken off the pending queue: a correction waits
    /// until those pending when it arrived are taken.
    accruals_consumed: u64,
    /// Id of the accrual batch being written, kept until it commits so a
    /// retried write after a failure recognises the rows it already left.
    batch_write_id: Option<String>,
}

impl LoyaltyEntityWorkflow {
    fn has_ledger_work(&self) -> bool {
        !self.state.pending_events.is_empty() || !self.state.pending_voids.is_empty() || !self.state.in_doubt.is_empty()
    }

    fn run_is_full(&self, suggested: bool) -> bool {
        suggested || self.signals_this_run >= MAX_SIGNALS_PER_RUN
    }
}

#[workflow_methods]
impl LoyaltyEntityWorkflow {
    /// A new account, or the carried state after continue-as-new.
    #[init]
    pub fn new(ctx: &WorkflowContextView, input: WorkflowInput) -> Self {
        let state = input.0.unwrap_or_else(|| LoyaltyState::open(customer_of_workflow(ctx.workflow_id())));
        Self {
            state,
            closing: false,
            ledger_busy: false,
            signals_this_run: 0,
            accruals_consumed: 0,
            batch_write_id: None,
        }
    }

    /// Applies events until `shutdown`, continuing-as-new as history grows.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<LoyaltyState> {
        loop {
            let c = ctx.clone();
            ctx.wait_condition(move |s: &Self| s.has_ledger_work() || s.closing || s.run_is_full(should_continue(&c)))
                .await?;
            let healthy = drain_once(ctx).await?;
            if !healthy {
                ctx.timer(LEDGER_BACKOFF).await;
            }

            if ctx.state(|s| s.closing && !s.has_ledger_work()) {
                wait_for_handlers(ctx).await?;
                // Signals that arrived while handlers finished are applied first.
                if ctx.state(|s| !s.has_ledger_work()) {
                    log(
                        ctx,
                        |s| tracing::info!(customer = %s.customer_id, balance = s.points_balance, "account closed"),
                    );
                    return Ok(ctx.state(|s| s.state.clone()));
                }
                continue;
            }

            let suggested = should_continue(ctx);
            let carry_ok = ctx.state(|s| {
                s.state.pending_events.len() <= MAX_PENDING_CARRY
                    || !healthy
                    || s.signals_this_run >= FORCE_CONTINUE_SIGNALS
            });
            if ctx.state(|s| s.run_is_full(suggested)) && carry_ok {
                wait_for_handlers(ctx).await?;
                // Captured after the wait, so no signal received before it is lost.
                let carried = ctx.state(|s| s.state.clone());
                log(
                    ctx,
                    |s| tracing::info!(customer = %s.customer_id, pending = s.pending_events.len(), "continuing as new"),
                );
                // A pinned run moves to the deployment's current version here.
                let options = ContinueAsNewOptions::builder()
                    .initial_versioning_behavior(ContinueAsNewVersioningBehavior::AutoUpgrade)
                    .build();
                ctx.continue_as_new(Nullable(Some(carried)), options)?;
            }
        }
    }

    /// Queues an accrual; the run loop applies it in order.
    #[signal]
    pub fn add_points(&mut self, _ctx: &mut SyncWorkflowContext<Self>, event: PointsEvent) {
        self.signals_this_run += 1;
        self.state.pending_events.push(event);
    }

    /// Closes the account: refuse redemptions, drain, complete with the state.
    #[signal]
    pub fn shutdown(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.closing = true;
        self.state.close();
    }

    /// Rejects a redemption before it enters history when it cannot succeed.
    #[update_validator(redeem_points)]
    pub fn validate_redeem_points(
        &self,
        _ctx: &WorkflowContextView,
        req: &RedemptionRequest,
    ) -> Result<(), HandlerError> {
        match self.state.decide_redemption(req) {
            Ok(_) => Ok(()),
            // Accepted: the handler waits for the accruals that cover it.
            Err(r) if self.state.waits_for_pending(&r) => Ok(()),
            Err(r) => Err(rejection(r)),
        }
    }

    /// Spends points synchronously; idempotent by `event_id`.
    #[update]
    pub async fn redeem_points(
        ctx: &mut WorkflowContext<Self>,
        req: RedemptionRequest,
    ) -> Result<RedemptionResult, HandlerError> {
        ctx.wait_condition(|s: &Self| !s.ledger_busy).await?;
        let covered_by_pending =
            ctx.state(|s| matches!(s.state.decide_redemption(&req), Err(r) if s.state.waits_for_pending(&r)));
        if covered_by_pending && ctx.patched(REDEEM_WAITS_FOR_ACCRUALS) {
            let before = ctx.state(|s| s.accruals_consumed + s.state.pending_events.len() as u64);
            ctx.wait_condition(move |s: &Self| !s.ledger_busy && s.accruals_consumed >= before).await?;
        }
        // Decided again: other handlers may have run since validation.
        let step = ctx.state_mut(|s| {
            let step = s.state.begin_redemption(&req);
            s.ledger_busy = matches!(step, Ok(RedeemStep::Write(_)));
            step
        });
        let movement = match step.map_err(rejection)? {
            RedeemStep::Done(done) => return Ok(done),
            RedeemStep::Write(movement) => movement,
        };
        let batch = new_batch(ctx, movement);
        let write_id = batch.write_id.clone();
        let written = ctx.execute_activity(LoyaltyActivities::record_redemption, batch, redemption_options()).await;
        ctx.state_mut(|s| {
            s.ledger_busy = false;
            match written {
                Ok(reply) => s.state.finish_redemption(&req, reply.0.as_ref()).map_err(rejection),
                Err(e) => {
                    // The row may have landed: hold the points until the run loop asks the ledger.
                    s.state.redemption_in_doubt(&req, &write_id);
                    Err(failure(
                        LEDGER_UNAVAILABLE,
                        format!("ledger write failed; retry with the same event_id to learn the outcome: {e}"),
                    ))
                }
            }
        })
    }

    /// Rejects a malformed reversal, or one the account cannot take now.
    #[update_validator(reverse_points)]
    pub fn validate_reverse_points(
        &self,
        _ctx: &WorkflowContextView,
        req: &ReversalRequest,
    ) -> Result<(), HandlerError> {
        req.movement().map_err(|e| rejection(e.into()))?;
        self.state.check_correction().map_err(rejection)
    }

    /// Claws back (part of) an accrual or returns (part of) a redemption's
    /// points; idempotent by `event_id`. The ledger decides against the original.
    #[update]
    pub async fn reverse_points(
        ctx: &mut WorkflowContext<Self>,
        req: ReversalRequest,
    ) -> Result<BalanceChange, HandlerError> {
        let movement = req.movement().map_err(|e| rejection(e.into()))?;
        correct(ctx, movement).await
    }

    /// Rejects a malformed adjustment, or one the account cannot take now.
    #[update_validator(adjust_points)]
    pub fn validate_adjust_points(
        &self,
        _ctx: &WorkflowContextView,
        req: &AdjustmentRequest,
    ) -> Result<(), HandlerError> {
        req.movement().map_err(|e| rejection(e.into()))?;
        self.state.check_correction().map_err(rejection)
    }

    /// A support correction of balance and lifetime points; idempotent by `event_id`.
    #[update]
    pub async fn adjust_points(
        ctx: &mut WorkflowContext<Self>,
        req: AdjustmentRequest,
    ) -> Result<BalanceChange, HandlerError> {
        let movement = req.movement().map_err(|e| rejection(e.into()))?;
        correct(ctx, movement).await
    }

    /// The account summary (wire name `get_loyalty_summary`).
    #[query]
    pub fn get_loyalty_summary(&self, _ctx: &WorkflowContextView) -> LoyaltySummary {
        self.state.summary()
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

/// A one-write batch with a fresh write id.
fn new_batch(ctx: &Ctx, movement: Movement) -> LedgerBatch {
    let write_id = ctx.uuid4();
    ctx.state(|s| LedgerBatch { customer_id: s.state.customer_id.clone(), write_id, movements: vec![movement] })
}

/// Records a reversal or adjustment under the ledger lock and adopts the
/// ledger's answer. Accruals acknowledged before it are applied first, so a
/// refund right after its purchase finds the purchase.
async fn correct(ctx: &Ctx, movement: Movement) -> Result<BalanceChange, HandlerError> {
    let before = ctx.state(|s| s.accruals_consumed + s.state.pending_events.len() as u64);
    ctx.wait_condition(move |s: &LoyaltyEntityWorkflow| !s.ledger_busy && s.accruals_consumed >= before).await?;
    ctx.state(|s| s.state.check_correction()).map_err(rejection)?;
    ctx.state_mut(|s| s.ledger_busy = true);
    let event_id = movement.event_id.clone();
    let batch = new_batch(ctx, movement);
    let write_id = batch.write_id.clone();
    let written = ctx.execute_activity(LoyaltyActivities::record_correction, batch, redemption_options()).await;
    let (change, tier_change) = ctx.state_mut(|s| {
        s.ledger_busy = false;
        match written {
            Ok(reply) => s.state.finish_correction(&event_id, &reply, &write_id).map_err(rejection),
            // Nothing is reserved: if the row landed, the next write's totals bring it in.
            Err(e) => Err(failure(
                LEDGER_UNAVAILABLE,
                format!("ledger write failed; retry with the same event_id to learn the outcome: {e}"),
            )),
        }
    })?;
    if let Some(change) = tier_change {
        notify(ctx, change).await;
    }
    Ok(change)
}

/// Settles in-doubt redemptions, voids given-back ones (previous version),
/// then applies one batch of accruals, holding the ledger lock. Returns false
/// when a ledger call failed after its retries.
async fn drain_once(ctx: &Ctx) -> Result<bool, WorkflowCancellationError> {
    ctx.wait_condition(|s: &LoyaltyEntityWorkflow| !s.ledger_busy).await?;
    ctx.state_mut(|s| s.ledger_busy = true);
    let healthy = settle_in_doubt(ctx).await && void_given_back(ctx).await && apply_batch(ctx).await;
    ctx.state_mut(|s| s.ledger_busy = false);
    Ok(healthy)
}

async fn settle_in_doubt(ctx: &Ctx) -> bool {
    let request =
        ctx.state(|s| SettleRequest { customer_id: s.state.customer_id.clone(), in_doubt: s.state.in_doubt.clone() });
    if request.in_doubt.is_empty() {
        return true;
    }
    match ctx.execute_activity(LoyaltyActivities::settle_redemptions, request, ledger_options()).await {
        Ok(settled) => {
            ctx.state_mut(|s| s.state.settle_in_doubt(&settled.found, settled.totals));
            true
        }
        Err(e) => {
            log(
                ctx,
                |s| tracing::warn!(customer = %s.customer_id, error = %e, "settling redemptions failed; will retry"),
            );
            false
        }
    }
}

async fn void_given_back(ctx: &Ctx) -> bool {
    let request = ctx
        .state(|s| VoidRequest { customer_id: s.state.customer_id.clone(), event_ids: s.state.pending_voids.clone() });
    if request.event_ids.is_empty() {
        return true;
    }
    let done = request.event_ids.len();
    match ctx.execute_activity(LoyaltyActivities::void_redemptions, request, ledger_options()).await {
        Ok(_) => {
            ctx.state_mut(|s| {
                s.state.pending_voids.drain(..done);
            });
            true
        }
        Err(e) => {
            log(
                ctx,
                |s| tracing::warn!(customer = %s.customer_id, error = %e, "voiding redemptions failed; will retry"),
            );
            false
        }
    }
}

async fn apply_batch(ctx: &Ctx) -> bool {
    let plan = ctx.state(|s| s.state.plan_accruals(MAX_BATCH));
    if plan.consumed == 0 {
        return true;
    }
    let write_id = match ctx.state(|s| s.batch_write_id.clone()) {
        Some(id) => id,
        None => {
            let id = ctx.uuid4();
            ctx.state_mut(|s| s.batch_write_id = Some(id.clone()));
            id
        }
    };
    let mut reply = Nullable(None);
    if !plan.movements.is_empty() {
        let batch = ctx.state(|s| LedgerBatch {
            customer_id: s.state.customer_id.clone(),
            write_id: write_id.clone(),
            movements: plan.movements.clone(),
        });
        match ctx.execute_activity(LoyaltyActivities::record_points_transactions, batch, ledger_options()).await {
            Ok(answer) => reply = answer,
            Err(e) => {
                log(
                    ctx,
                    |s| tracing::warn!(customer = %s.customer_id, error = %e, "ledger write failed; events stay pending"),
                );
                return false;
            }
        }
    }
    let report = ctx.state_mut(|s| {
        s.batch_write_id = None;
        s.accruals_consumed += plan.consumed as u64;
        s.state.commit_accruals(&plan, reply.0.as_ref(), &write_id)
    });
    for (event_id, why) in &plan.ignored {
        log(ctx, |s| tracing::info!(customer = %s.customer_id, event_id, why, "accrual ignored"));
    }
    for event_id in &report.duplicates {
        log(
            ctx,
            |s| tracing::info!(customer = %s.customer_id, event_id, "accrual already in the ledger; not applied again"),
        );
    }
    for event_id in &report.conflicts {
        log(
            ctx,
            |s| tracing::warn!(customer = %s.customer_id, event_id, "event_id reused with other content; ignored"),
        );
    }
    if let Some(change) = report.tier_change {
        notify(ctx, change).await;
    }
    true
}

/// Queues a tier-change notification. Best effort: its failure never holds
/// back points.
async fn notify(ctx: &Ctx, change: TierChange) {
    log(
        ctx,
        |_| tracing::info!(customer = %change.customer_id, from = %change.old_tier, to = %change.new_tier, "tier changed"),
    );
    if let Err(e) =
        ctx.execute_activity(LoyaltyActivities::send_tier_change_notification, change, notification_options()).await
    {
        log(ctx, |s| tracing::warn!(customer = %s.customer_id, error = %e, "tier notification failed"));
    }
}

fn retry(max_attempts: u32, max_interval: Duration) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(200))
        .backoff_coefficient(2.0)
        .maximum_interval(max_interval)
        .maximum_attempts(max_attempts)
        .build()
}

/// Accrual batches and voids: a few retries, then the run loop backs off.
fn ledger_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10))
        .retry_policy(retry(5, Duration::from_secs(5)))
        .build()
}

/// A caller is waiting (redemptions, corrections): fail fast.
fn redemption_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(5))
        .retry_policy(retry(3, Duration::from_secs(1)))
        .build()
}

fn notification_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10))
        .retry_policy(retry(5, Duration::from_secs(10)))
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
