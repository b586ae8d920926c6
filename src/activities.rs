//! Activities: every side effect of the entity workflow (all I/O lives here).
//! Each one is idempotent, because Temporal may run it more than once.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::domain::messages::{LedgerEntry, TierChange};
use crate::ledger::Ledger;

/// Input of `void_redemptions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoidRequest {
    /// The account.
    pub customer_id: String,
    /// Redemptions whose rows must not stand.
    pub event_ids: Vec<String>,
}

/// The activities of the loyalty worker, sharing one ledger.
pub struct LoyaltyActivities {
    ledger: Ledger,
}

impl LoyaltyActivities {
    /// Activities writing to `ledger`.
    pub fn new(ledger: Ledger) -> Self {
        Self { ledger }
    }
}

#[activities]
impl LoyaltyActivities {
    /// Records a batch of accruals in one transaction.
    #[activity(name = "record_points_transactions")]
    pub async fn record_points_transactions(
        self: Arc<Self>,
        _ctx: ActivityContext,
        entries: Vec<LedgerEntry>,
    ) -> Result<(), ActivityError> {
        self.ledger.record_entries(&entries).await?;
        Ok(())
    }

    /// Records one redemption.
    #[activity(name = "record_redemption")]
    pub async fn record_redemption(
        self: Arc<Self>,
        _ctx: ActivityContext,
        entry: LedgerEntry,
    ) -> Result<(), ActivityError> {
        self.ledger.record_entries(std::slice::from_ref(&entry)).await?;
        Ok(())
    }

    /// Drops rows of redemptions that were given back.
    #[activity(name = "void_redemptions")]
    pub async fn void_redemptions(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: VoidRequest,
    ) -> Result<(), ActivityError> {
        self.ledger.void_redemptions(&request.customer_id, &request.event_ids).await?;
        Ok(())
    }

    /// Queues a tier-change notification in the outbox.
    #[activity(name = "send_tier_change_notification")]
    pub async fn send_tier_change_notification(
        self: Arc<Self>,
        _ctx: ActivityContext,
        change: TierChange,
    ) -> Result<(), ActivityError> {
        self.ledger.record_tier_change(&change).await?;
        Ok(())
    }
}
