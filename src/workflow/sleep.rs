//! The run loop's one timer: it sleeps until the account's next due time or
//! its daily wake, and is kept (not restarted) while that time stays the
//! same, so a busy account does not add a timer to its history per write.

use std::time::Duration;

use futures::future::FusedFuture;
use temporalio_sdk::{CancellableFuture, TimerResult, WorkflowCancellationError, WorkflowContext, workflows::select};

use crate::domain::Millis;

/// An idle account wakes at least this often to learn that the Worker
/// Deployment's current version changed (and continue-as-new onto it).
pub const IDLE_WAKE_MS: Millis = 86_400_000;

trait TimerFuture: FusedFuture<Output = TimerResult> + CancellableFuture + Unpin {}
impl<T: FusedFuture<Output = TimerResult> + CancellableFuture + Unpin> TimerFuture for T {}

/// The timer and the daily wake it serves.
#[derive(Default)]
pub struct Sleep<'a> {
    timer: Option<(Millis, Box<dyn TimerFuture + 'a>)>,
    wake_at: Option<Millis>,
}

impl<'a> Sleep<'a> {
    /// The next daily wake from `now`: the timer fires then at the latest,
    /// so the run loop looks at Temporal's flags (a new deployment version).
    pub fn daily_wake(&mut self, now: Millis) -> Millis {
        let wake_at = *self.wake_at.get_or_insert(now.saturating_add(IDLE_WAKE_MS));
        if now < wake_at {
            return wake_at;
        }
        let next = now.saturating_add(IDLE_WAKE_MS);
        self.wake_at = Some(next);
        next
    }

    /// Sleeps until `deadline`, or until `wake` holds of the workflow.
    pub async fn until<W: 'static>(
        &mut self,
        ctx: &'a WorkflowContext<W>,
        now: Millis,
        deadline: Millis,
        wake: impl FnMut(&W) -> bool,
    ) -> Result<(), WorkflowCancellationError> {
        if self.timer.as_ref().is_none_or(|(at, t)| *at != deadline || t.is_terminated()) {
            self.cancel();
            let wait = Duration::from_millis(deadline.saturating_sub(now).max(1) as u64);
            self.timer = Some((deadline, Box::new(ctx.timer(wait))));
        }
        let Some((_, timer)) = self.timer.as_mut() else { return Ok(()) };
        let mut timer = timer;
        select! {
            _ = timer => Ok(()),
            r = ctx.wait_condition(wake) => r,
        }
    }

    /// Cancels the outstanding timer (a dropped timer is not cancelled).
    pub fn cancel(&mut self) {
        if let Some((_, timer)) = self.timer.take()
            && !timer.is_terminated()
        {
            timer.cancel();
        }
    }
}
