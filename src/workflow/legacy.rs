//! The previous version's run loop and handlers, kept verbatim in behaviour
//! so that runs recorded before the one-writer core (histories without the
//! `one-writer` patch marker) replay and finish as they were written: the
//! ledger decided every write and the account adopted its totals, behind a
//! `ledger_busy` flag. Such a run ends at its next continue-as-new, and the
//! run after it is a one-writer run. New runs never come here.

use std::time::Duration;

use temporalio_sdk::{
    ActivityOptions, ContinueAsNewOptions, ContinueAsNewVersioningBehavior, WorkflowCancellationError, WorkflowResult,
};

use super::{
    Ctx, FORCE_CONTINUE_SIGNALS, HandlerError, LEDGER_BACKOFF, LoyaltyEntityWorkflow, MAX_BATCH, MAX_PENDING_CARRY,
    failure, ledger_options, log, rejection, retry, should_continue, wait_for_handlers,
};
use crate::activities::{LoyaltyActivities, SettleRequest, VoidRequest};
use crate::domain::account::failure_type::LEDGER_UNAVAILABLE;
use crate::domain::messages::{LoyaltyState, RedemptionRequest, RedemptionResult};
use crate::domain::{BalanceChange, LedgerBatch, Movement, RedeemStep, TierChange};
use crate::payload::Nullable;

/// Runs with this marker let a redemption that the acknowledged, still
/// pending accruals would cover wait for them instead of failing; histories
/// recorded before it replay the old way.
const REDEEM_WAITS_FOR_ACCRUALS: &str = "redeem-waits-for-acknowledged-accruals";

fn has_ledger_work(s: &LoyaltyEntityWorkflow) -> bool {
    !s.state.pending_events.is_empty() || !s.state.pending_voids.is_empty() || !s.state.in_doubt.is_empty()
}

fn run_is_full(s: &LoyaltyEntityWorkflow, suggested: bool) -> bool {
    suggested || s.signals_this_run >= super::MAX_SIGNALS_PER_RUN
}

/// The previous run loop: applies events until `shutdown`, continuing-as-new as history grows.
pub(super) async fn run(ctx: &mut Ctx) -> WorkflowResult<LoyaltyState> {
    loop {
        let c = ctx.clone();
        ctx.wait_condition(move |s: &LoyaltyEntityWorkflow| {
            has_ledger_work(s) || s.closing || run_is_full(s, should_continue(&c))
        })
        .await?;
        let healthy = drain_once(ctx).await?;
        if !healthy {
            ctx.timer(LEDGER_BACKOFF).await;
        }

        if ctx.state(|s| s.closing && !has_ledger_work(s)) {
            wait_for_handlers(ctx).await?;
            // Signals that arrived while handlers finished are applied first.
            if ctx.state(|s| !has_ledger_work(s)) {
                log(ctx, |s| tracing::info!(customer = %s.customer_id, balance = s.points_balance, "account closed"));
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
        if ctx.state(|s| run_is_full(s, suggested)) && carry_ok {
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

/// The previous `redeem_points`: reserves, writes the ledger, adopts its answer.
pub(super) async fn redeem_points(ctx: &mut Ctx, req: RedemptionRequest) -> Result<RedemptionResult, HandlerError> {
    ctx.wait_condition(|s: &LoyaltyEntityWorkflow| !s.ledger_busy).await?;
    let covered_by_pending =
        ctx.state(|s| matches!(s.state.decide_redemption(&req), Err(r) if s.state.waits_for_pending(&r)));
    if covered_by_pending && ctx.patched(REDEEM_WAITS_FOR_ACCRUALS) {
        let before = ctx.state(|s| s.accruals_consumed + s.state.pending_events.len() as u64);
        ctx.wait_condition(move |s: &LoyaltyEntityWorkflow| !s.ledger_busy && s.accruals_consumed >= before).await?;
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

/// The previous validation of `redeem_points`.
pub(super) fn validate_redeem_points(wf: &LoyaltyEntityWorkflow, req: &RedemptionRequest) -> Result<(), HandlerError> {
    match wf.state.decide_redemption(req) {
        Ok(_) => Ok(()),
        // Accepted: the handler waits for the accruals that cover it.
        Err(r) if wf.state.waits_for_pending(&r) => Ok(()),
        Err(r) => Err(rejection(r)),
    }
}

/// A one-write batch with a fresh write id.
fn new_batch(ctx: &Ctx, movement: Movement) -> LedgerBatch {
    let write_id = ctx.uuid4();
    ctx.state(|s| LedgerBatch { customer_id: s.state.customer_id.clone(), write_id, movements: vec![movement] })
}

/// Records a reversal or adjustment under the ledger lock and adopts the
/// ledger's answer. Accruals acknowledged before it are applied first, so a
/// refund right after its purchase finds the purchase.
pub(super) async fn correct(ctx: &Ctx, movement: Movement) -> Result<BalanceChange, HandlerError> {
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

pub(super) async fn settle_in_doubt(ctx: &Ctx) -> bool {
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

pub(super) async fn void_given_back(ctx: &Ctx) -> bool {
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
pub(super) async fn notify(ctx: &Ctx, change: TierChange) {
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
