//! The run loop's steps: apply what fell due and wait for work, and write
//! the next batch of decided entries to the ledger.

use super::projector::{Projector, Written};
use super::run_end::should_continue;
use super::sleep::Sleep;
use super::{Ctx, LoyaltyEntityWorkflow, log, now_ms};
use crate::domain::{Command, Ignored, ProjectionReply, Reply};
use temporalio_sdk::workflows::select;
use temporalio_sdk::{CancellableFuture, WorkflowCancellationError};

/// Applies what fell due, then returns true when the run loop has work,
/// or sleeps until work arrives, something comes due sooner, or the timer
/// fires, and returns false (look again).
pub(super) async fn until_work_or_due<'a>(
    ctx: &'a Ctx,
    sleep: &mut Sleep<'a>,
) -> Result<bool, WorkflowCancellationError> {
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

/// Writes the next batch and checks the next queued accruals; returns how
/// long to wait before the next try, if the ledger failed or is held.
pub(super) async fn project_once(ctx: &Ctx) -> Option<std::time::Duration> {
    let mut batch = ctx.state(|s| s.projector.next(&s.state))?;
    let pause = ctx.state(|s| s.writes.pause(&s.state, &batch, s.is_pressed() || s.projector.is_failing()));
    batch.pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
    let reply = if pause.is_zero() {
        Projector::write(ctx, batch.clone()).await
    } else {
        match paused_write(ctx, &batch).await {
            Some(reply) => reply,
            // Called off: whatever it did, the next write finds out.
            None => return None,
        }
    };
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

/// A paused write, called off (`None`) when the run loop is needed
/// meanwhile ([`LoyaltyEntityWorkflow::is_pressed`]).
async fn paused_write(ctx: &Ctx, batch: &crate::domain::ProjectionBatch) -> Option<Result<ProjectionReply, String>> {
    let mut write = Projector::start(ctx, batch.clone());
    select! {
        reply = &mut write => Some(reply.map_err(|e| e.to_string())),
        _ = ctx.wait_condition(LoyaltyEntityWorkflow::is_pressed) => {
            write.cancel();
            None
        }
    }
}

pub(super) fn log_ignored(customer: &str, ignored: &[(String, Ignored)]) {
    for (event_id, why) in ignored {
        tracing::info!(customer, event_id, %why, "accrual ignored");
    }
}
