//! How a run ends: when it should continue-as-new, the notice it gives
//! first, and the failed write's backoff that a long run cuts short.

use std::time::Duration;

use temporalio_common::RetryPolicy;
use temporalio_sdk::workflows::select;
use temporalio_sdk::{ActivityOptions, CancellableFuture};

use super::budget::{self, MAX_CARRY_BYTES};
use super::{Ctx, LoyaltyEntityWorkflow, log};

/// The run's history is as long as a cheap replay allows (in a run that
/// records [`budget::SHORT_RUNS_PATCH`]), Temporal suggests
/// a new run (history size), or, under Worker Versioning, the deployment's
/// current version moved on: a long-lived account upgrades at its next
/// continue-as-new.
pub(super) fn should_continue(ctx: &Ctx) -> bool {
    (ctx.history_length() >= budget::MAX_EVENTS_PER_RUN && ctx.patched(budget::SHORT_RUNS_PATCH))
        || ctx.continue_as_new_suggested()
        || ctx.target_worker_deployment_version_changed()
}

/// The run is past [`budget::FORCE_EVENTS_PER_RUN`] (in a run that records
/// [`budget::RUN_END_PATCH`]): it carries its backlog rather than grow on.
pub(super) fn is_long(ctx: &Ctx) -> bool {
    ctx.history_length() >= budget::FORCE_EVENTS_PER_RUN && ctx.patched(budget::RUN_END_PATCH)
}

/// Whether the run, long by the history its handlers last saw, can carry
/// its state and backlog now.
fn can_carry_long(s: &LoyaltyEntityWorkflow) -> bool {
    !s.closing && s.events >= budget::FORCE_EVENTS_PER_RUN && s.budget.would_carry(&s.state, false, true)
}

/// Waits out a failed write's backoff (up to minutes), unless the run is,
/// or grows meanwhile, long enough to carry its backlog (in a run that
/// records [`budget::RUN_END_PATCH`]): then the run loop goes on to
/// continue-as-new instead of growing through the wait.
pub(super) async fn back_off(ctx: &Ctx, wait: Duration) {
    if !ctx.patched(budget::RUN_END_PATCH) {
        ctx.timer(wait).await;
        return;
    }
    // Long by Temporal's count now (the handlers' count may lag behind the
    // run loop's own events).
    if is_long(ctx) && ctx.state(|s| !s.closing && s.budget.would_carry(&s.state, false, true)) {
        return;
    }
    let mut timer = ctx.timer(wait);
    select! {
        _ = &mut timer => {}
        _ = ctx.wait_condition(can_carry_long) => timer.cancel(),
    }
}

/// Before a continue-as-new: the updates the run decides say it is ending
/// for [`budget::ENDING_NOTICE`] (our API holds the account's calls on that
/// notice, so none races the continue-as-new's task); then whether to go on
/// (not if the account closed meanwhile or its state outgrew what a run may
/// carry: the notice is withdrawn and the run loop looks again). A run that
/// took no update has no one to tell, and a run without the patch marker
/// (1.1 recorded it) continues at once.
pub(super) async fn give_notice(ctx: &Ctx) -> bool {
    if ctx.state(|s| s.budget.updates == 0) || !ctx.patched(budget::RUN_END_PATCH) {
        return true;
    }
    ctx.state_mut(|s| s.ending = true);
    // An activity, not a timer: Temporal fires timers to the second (a 50 ms
    // timer fired after 0.8 s here), and the account's calls wait as long.
    // Whether it ran or not, the period is over after its schedule-to-close
    // timeout at most (a worker that died in it, or one without it).
    let period = u64::try_from(budget::ENDING_NOTICE.as_millis()).unwrap_or(u64::MAX);
    let options = ActivityOptions::with_schedule_to_close_timeout(Duration::from_secs(1))
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
