//! The write-behind: decided entries go to the ledger in order, in
//! batches, fenced by their sequence numbers (`domain::projection`). A
//! failing ledger delays the projection, never a decision: each try after
//! a failure carries one entry and waits longer; a ledger that does not
//! match is held, loudly, and tried again every minute.

use std::time::Duration;

use temporalio_common::RetryPolicy;
use temporalio_sdk::{ActivityExecutionError, ActivityOptions, CancellableFuture, WorkflowContext};

use crate::activities::LoyaltyActivities;
use crate::domain::projection::{MAX_BATCH, MAX_BATCH_BYTES};
use crate::domain::{Known, LoyaltyState, ProjectionBatch, ProjectionReply};

/// First wait after the ledger failed a write's retries; it doubles with
/// every failure in a row up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between tries of a failing ledger.
const RETRY_MAX: Duration = Duration::from_secs(300);
/// Wait before trying a held (fenced) ledger again.
const HOLD_RETRY: Duration = Duration::from_secs(60);

/// Where the projection stands: failures in a row, and why the ledger is
/// held, if it is. Not carried: a new run tries the ledger afresh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projector {
    failures: u32,
    held: Option<String>,
}

/// How one write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// In the ledger. The checked accruals' verdicts are for the account;
    /// `duplicates` lists entries stored under a suffixed id.
    Done {
        /// What the ledger holds of each checked accrual.
        known: Vec<Known>,
        /// Entries whose event id the ledger already held.
        duplicates: Vec<u64>,
    },
    /// A ledger holding exactly the carried totals; the account continues on it.
    Rebased(u64),
    /// The ledger failed after its retries: wait, then try again.
    Failed(String),
    /// The ledger does not match the account: held.
    Held(String),
}

impl Projector {
    /// The next write, if anything waits for the ledger. While the ledger
    /// fails or is held each try carries one entry, so a long outage (or a
    /// ledger an operator must put right) adds little history.
    pub fn next(&self, state: &LoyaltyState) -> Option<ProjectionBatch> {
        let max = if self.failures > 0 || self.held.is_some() { 1 } else { MAX_BATCH };
        let batch = state.projection(max, MAX_BATCH_BYTES);
        (!batch.entries.is_empty() || !batch.check.is_empty()).then_some(batch)
    }

    /// Whether the last write failed or the ledger is held: writes then go
    /// one entry at a time through a regular activity, paced by the run loop.
    pub fn is_failing(&self) -> bool {
        self.failures > 0 || self.held.is_some()
    }

    /// Writes `batch` through the activity (after its pause).
    pub async fn write<W>(ctx: &WorkflowContext<W>, batch: ProjectionBatch) -> Result<ProjectionReply, String> {
        Self::start(ctx, batch).await.map_err(|e| e.to_string())
    }

    /// The activity that writes `batch`, to await or cancel.
    pub fn start<W>(
        ctx: &WorkflowContext<W>,
        batch: ProjectionBatch,
    ) -> impl CancellableFuture<Output = Result<ProjectionReply, ActivityExecutionError>> {
        let options = options(Duration::from_millis(batch.pause_ms));
        ctx.execute_activity(LoyaltyActivities::project_entries, batch, options)
    }

    /// Takes the ledger's answer to `batch` into `state`.
    pub fn settle(
        &mut self,
        state: &mut LoyaltyState,
        batch: &ProjectionBatch,
        reply: Result<ProjectionReply, String>,
    ) -> Written {
        match reply {
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                Written::Failed(e)
            }
            Ok(ProjectionReply::Written { duplicates, known }) => {
                (self.held, self.failures) = (None, 0);
                state.written(batch);
                Written::Done { known, duplicates }
            }
            Ok(ProjectionReply::Fenced { ledger_seq, ledger_totals, ledger_pending_and_held }) => {
                if state.rebase(ledger_seq, ledger_totals, ledger_pending_and_held) {
                    (self.held, self.failures) = (None, 0);
                    return Written::Rebased(ledger_seq);
                }
                let why = format!(
                    "ledger holds entry {ledger_seq} with balance {} and lifetime {}, the account expected entry {} \
                     with {:?}",
                    ledger_totals.balance, ledger_totals.lifetime, batch.after_seq, batch.totals_before
                );
                self.held = Some(why.clone());
                Written::Held(why)
            }
        }
    }

    /// How long to wait after a write that ended so.
    pub fn wait_after(&self, written: &Written) -> Option<Duration> {
        match written {
            Written::Done { .. } | Written::Rebased(_) => None,
            Written::Failed(_) => {
                let doublings = self.failures.min(10).saturating_sub(1);
                Some(RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX))
            }
            Written::Held(_) => Some(HOLD_RETRY),
        }
    }

    /// Why the ledger is not written, while it does not match.
    pub fn held(&self) -> Option<&str> {
        self.held.as_deref()
    }
}

/// Ledger writes: a few retries, then the run loop waits and writes again;
/// each try may take `pause` more than a write.
fn options(pause: Duration) -> ActivityOptions {
    let retry = RetryPolicy::builder()
        .initial_interval(Duration::from_millis(200))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(5))
        .maximum_attempts(5)
        .build();
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10) + pause).retry_policy(retry).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_ledger_is_tried_with_one_entry_and_ever_longer_waits() {
        let mut p = Projector::default();
        let mut state = LoyaltyState::open("c");
        for i in 0..3 {
            let e = crate::domain::PointsEvent {
                event_id: format!("e{i}"),
                points: 1,
                ledger_checked: true,
                ..Default::default()
            };
            state.apply(crate::domain::Command::Accrue(e), 0).unwrap();
        }
        let mut waits = Vec::new();
        for i in 0..12 {
            let batch = p.next(&state).unwrap();
            assert_eq!(batch.entries.len(), if i == 0 { 3 } else { 1 });
            let w = p.settle(&mut state, &batch, Err("down".into()));
            waits.push(p.wait_after(&w).unwrap().as_secs());
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        let batch = p.next(&state).unwrap();
        let ok = ProjectionReply::Written { duplicates: vec![], known: vec![] };
        assert!(matches!(p.settle(&mut state, &batch, Ok(ok)), Written::Done { .. }));
        assert_eq!((state.projected_seq, p.next(&state).unwrap().entries.len()), (1, 2), "back to full writes");
        let batch = p.next(&state).unwrap();
        let fenced = ProjectionReply::Fenced {
            ledger_seq: 9,
            ledger_totals: Default::default(),
            ledger_pending_and_held: (0, 0),
        };
        let held = p.settle(&mut state, &batch, Ok(fenced));
        assert!(matches!(held, Written::Held(_)) && p.held().is_some());
        assert_eq!(p.wait_after(&held), Some(HOLD_RETRY));
        assert_eq!(p.next(&state).unwrap().entries.len(), 1, "a held ledger is tried with one entry");
    }
}
