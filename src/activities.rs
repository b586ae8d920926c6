//! The workflow's activities: writing what the account decided to the
//! ledger (all I/O lives here), idempotent because Temporal may run it more
//! than once (a retry of a committed write is recognised); and the notice
//! period before a continue-as-new, which only waits.

use std::sync::Arc;
use std::time::Duration;

use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::domain::{ProjectionBatch, ProjectionReply};
use crate::ledger::{Ledger, LedgerError};
use crate::metrics::Metrics;

/// How long one ledger write may take: less than the activity's 10 s
/// start-to-close timeout, so a write stuck on a connection that went dead
/// is dropped here (a transaction either committed or did not, and the
/// retry finds out) instead of running on after Temporal gave up on it.
const LEDGER_WRITE_TIMEOUT: Duration = Duration::from_secs(8);

/// The activities of the loyalty worker, sharing one ledger.
pub struct LoyaltyActivities {
    ledger: Ledger,
    metrics: Metrics,
}

impl LoyaltyActivities {
    /// Activities writing to `ledger`, counting what it did in `metrics`.
    pub fn new(ledger: Ledger, metrics: Metrics) -> Self {
        Self { ledger, metrics }
    }
}

#[activities]
impl LoyaltyActivities {
    /// Writes decided entries on top of the sequence the ledger must hold,
    /// and checks accruals that arrived without a ledger check. A ledger that
    /// does not match answers `Fenced` (not an error: retrying cannot help).
    #[activity(name = "project_entries")]
    pub async fn project_entries(
        self: Arc<Self>,
        ctx: ActivityContext,
        batch: ProjectionBatch,
    ) -> Result<ProjectionReply, ActivityError> {
        // The run's paused write (`workflow::write_behind`): what it carries
        // is mostly in the ledger by then, written by our API. A retry (the
        // ledger failed the first try) does not pause again.
        if batch.pause_ms > 0 && ctx.info().attempt <= 1 {
            tokio::time::sleep(Duration::from_millis(batch.pause_ms)).await;
        }
        if !batch.entries.is_empty() {
            crate::crash::point(crate::crash::WRITE_BEHIND);
        }
        let write = tokio::time::timeout(LEDGER_WRITE_TIMEOUT, self.ledger.project(&batch));
        let (reply, recovered) = write.await.unwrap_or(Err(LedgerError::TimedOut(LEDGER_WRITE_TIMEOUT)))?;
        if !batch.entries.is_empty() && !recovered {
            crate::crash::point(crate::crash::WRITE_BEHIND_COMMITTED);
        }
        self.metrics.projection("run", &batch, &reply, recovered);
        // The workflow says whether it holds its writes (or continues on a
        // ledger holding exactly the totals a state from another worker carried).
        if let ProjectionReply::Fenced { ledger_seq, ledger_totals, .. } = &reply {
            tracing::warn!(
                customer = %batch.customer_id, ledger_seq, ?ledger_totals, expected_seq = batch.after_seq,
                expected_totals = ?batch.totals_before, "ledger does not match the write; nothing written"
            );
        }
        Ok(reply)
    }

    /// Waits `millis` milliseconds: the run's notice period before it
    /// continues-as-new (`workflow::ENDING_NOTICE`).
    #[activity(name = "notice_period")]
    pub async fn notice_period(self: Arc<Self>, _ctx: ActivityContext, millis: u64) -> Result<(), ActivityError> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(())
    }
}
