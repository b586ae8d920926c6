//! Activities: every side effect of the entity workflow (all I/O lives here).
//! Each one is idempotent, because Temporal may run it more than once.
//!
//! `project_entries` writes what the account decided. The others belong to
//! the previous version (the ledger decided, the account adopted its
//! answer) and stay registered so its runs finish; some answer
//! [`Nullable`], because older histories hold empty results for them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::domain::messages::InDoubtRedemption;
use crate::domain::{BatchOutcome, LedgerBatch, ProjectionBatch, ProjectionReply, Recorded, TierChange, Totals};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::payload::Nullable;

/// Input of `void_redemptions` (accounts of the previous version only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoidRequest {
    /// The account.
    pub customer_id: String,
    /// Redemptions whose rows must not stand.
    pub event_ids: Vec<String>,
}

/// Input of `settle_redemptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleRequest {
    /// The account.
    pub customer_id: String,
    /// The redemptions whose writes had an unknown outcome.
    pub in_doubt: Vec<InDoubtRedemption>,
}

/// Output of `settle_redemptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// Per in-doubt redemption, the row its write left, if any.
    pub found: Vec<Option<Recorded>>,
    /// The account's totals.
    pub totals: Totals,
}

/// How long one ledger write may take: less than the activities' 10 s
/// start-to-close timeout, so a write stuck on a connection that went dead
/// is dropped here (a transaction either committed or did not, and the
/// retry finds out) instead of running on after Temporal gave up on it.
const LEDGER_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// `write`, failed with [`LedgerError::TimedOut`] past [`LEDGER_WRITE_TIMEOUT`].
async fn bounded<T>(
    write: impl std::future::Future<Output = Result<T, crate::ledger::LedgerError>>,
) -> Result<T, crate::ledger::LedgerError> {
    tokio::time::timeout(LEDGER_WRITE_TIMEOUT, write)
        .await
        .unwrap_or(Err(crate::ledger::LedgerError::TimedOut(LEDGER_WRITE_TIMEOUT)))
}

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

    async fn apply(&self, batch: &LedgerBatch) -> Result<BatchOutcome, ActivityError> {
        let outcome = bounded(self.ledger.apply(batch)).await?;
        self.metrics.ledger_write(batch, &outcome);
        Ok(outcome)
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
        _ctx: ActivityContext,
        batch: ProjectionBatch,
    ) -> Result<ProjectionReply, ActivityError> {
        let (reply, recovered) = bounded(self.ledger.project(&batch)).await?;
        self.metrics.projection(&batch, &reply, recovered);
        if let ProjectionReply::Fenced { ledger_seq, ledger_totals } = &reply {
            tracing::error!(
                customer = %batch.customer_id, ledger_seq, ?ledger_totals, expected_seq = batch.after_seq,
                expected_totals = ?batch.totals_before,
                "ledger does not match the account; nothing written, the account holds its writes"
            );
        }
        Ok(reply)
    }

    /// Records a batch of accruals in one transaction.
    #[activity(name = "record_points_transactions")]
    pub async fn record_points_transactions(
        self: Arc<Self>,
        _ctx: ActivityContext,
        batch: LedgerBatch,
    ) -> Result<Nullable<BatchOutcome>, ActivityError> {
        Ok(Nullable(Some(self.apply(&batch).await?)))
    }

    /// Records one redemption.
    #[activity(name = "record_redemption")]
    pub async fn record_redemption(
        self: Arc<Self>,
        _ctx: ActivityContext,
        batch: LedgerBatch,
    ) -> Result<Nullable<BatchOutcome>, ActivityError> {
        Ok(Nullable(Some(self.apply(&batch).await?)))
    }

    /// Records one reversal or adjustment.
    #[activity(name = "record_correction")]
    pub async fn record_correction(
        self: Arc<Self>,
        _ctx: ActivityContext,
        batch: LedgerBatch,
    ) -> Result<BatchOutcome, ActivityError> {
        self.apply(&batch).await
    }

    /// Tells which in-doubt redemption writes landed.
    #[activity(name = "settle_redemptions")]
    pub async fn settle_redemptions(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: SettleRequest,
    ) -> Result<Settlement, ActivityError> {
        let writes: Vec<_> =
            request.in_doubt.iter().map(|d| (d.request.event_id.clone(), d.write_id.clone())).collect();
        let (found, totals) = bounded(self.ledger.written(&request.customer_id, &writes)).await?;
        Ok(Settlement { found, totals })
    }

    /// Drops rows of redemptions that a previous-version account gave back.
    #[activity(name = "void_redemptions")]
    pub async fn void_redemptions(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: VoidRequest,
    ) -> Result<Nullable<Totals>, ActivityError> {
        Ok(Nullable(Some(bounded(self.ledger.void_redemptions(&request.customer_id, &request.event_ids)).await?)))
    }

    /// Kept for runs of the previous version that still schedule it: the
    /// tier change is already an event, recorded with the write that caused
    /// it (`Ledger::apply`).
    #[activity(name = "send_tier_change_notification")]
    pub async fn send_tier_change_notification(
        self: Arc<Self>,
        _ctx: ActivityContext,
        change: TierChange,
    ) -> Result<(), ActivityError> {
        tracing::debug!(customer = %change.customer_id, to = %change.new_tier, "tier change already recorded as an event");
        Ok(())
    }
}
