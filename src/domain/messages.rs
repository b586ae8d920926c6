//! The wire contract with Temporal: JSON shapes shared with any client or
//! worker written from the reference guide. Field names must not change;
//! new fields need `#[serde(default)]` so older payloads still decode.

use serde::{Deserialize, Serialize};

use super::dedup::RecentIds;
use super::tier::Tier;

/// Payload of the `add_points` signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsEvent {
    /// Idempotency key.
    pub event_id: String,
    /// Points to credit; the workflow ignores events outside 1..=1e9.
    pub points: i64,
    /// Why the points were earned.
    #[serde(default)]
    pub reason: String,
    /// Originating service or channel.
    #[serde(default)]
    pub source: String,
}

/// Input of the `redeem_points` update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionRequest {
    /// Idempotency key.
    pub event_id: String,
    /// Points to spend.
    pub points: i64,
    /// What the points buy.
    #[serde(default)]
    pub reward: String,
}

/// Output of the `redeem_points` update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionResult {
    /// Points spent.
    pub redeemed: i64,
    /// Balance right after this redemption.
    pub remaining_balance: i64,
    /// What the points bought.
    pub reward: String,
}

/// Output of the `get_loyalty_summary` query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoyaltySummary {
    /// The customer.
    pub customer_id: String,
    /// Spendable points.
    pub points_balance: i64,
    /// Points ever earned; drives the tier.
    pub lifetime_points: i64,
    /// Current tier.
    pub tier: Tier,
    /// False once the account is closed.
    pub is_active: bool,
}

/// A redemption the account remembers, so a retry returns the original
/// result and a reused id with other content is told apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionRecord {
    /// The request as first applied.
    pub request: RedemptionRequest,
    /// Its result.
    pub result: RedemptionResult,
}

/// The workflow input after continue-as-new (`null` for a new account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoyaltyState {
    /// The customer.
    pub customer_id: String,
    /// Spendable points.
    #[serde(default)]
    pub points_balance: i64,
    /// Points ever earned.
    #[serde(default)]
    pub lifetime_points: i64,
    /// Current tier.
    #[serde(default)]
    pub tier: Tier,
    /// False once the account is closed.
    #[serde(default = "active")]
    pub is_active: bool,
    /// Recent event ids (accruals and redemptions), oldest first.
    #[serde(default)]
    pub processed_event_ids: RecentIds,
    /// Accruals received but not yet applied, in arrival order.
    #[serde(default)]
    pub pending_events: Vec<PointsEvent>,
    /// Recent redemptions with their results (same window as the ids).
    #[serde(default)]
    pub recent_redemptions: Vec<RedemptionRecord>,
    /// Redemptions that were given back after their ledger write failed; the
    /// ledger must drop any row such a write may still have left behind.
    #[serde(default)]
    pub pending_voids: Vec<String>,
}

fn active() -> bool {
    true
}

/// What kind of change a ledger row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Points earned.
    Accrual,
    /// Points spent.
    Redemption,
}

impl EntryKind {
    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Accrual => "accrual",
            EntryKind::Redemption => "redemption",
        }
    }
}

/// One row for the ledger, computed by the workflow so the ledger records
/// exactly what the account applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The customer.
    pub customer_id: String,
    /// Idempotency key; unique per account in the ledger.
    pub event_id: String,
    /// Accrual or redemption.
    pub kind: EntryKind,
    /// Signed change of the balance.
    pub points: i64,
    /// Balance right after this entry.
    pub balance_after: i64,
    /// Reason (accrual) or reward (redemption).
    pub reason: String,
    /// Originating service, if any.
    pub source: String,
}

/// A tier change to announce (the `send_tier_change_notification` input).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierChange {
    /// The customer.
    pub customer_id: String,
    /// Tier before.
    pub old_tier: Tier,
    /// Tier after.
    pub new_tier: Tier,
    /// Lifetime points that caused the change; with the customer, the
    /// notification's idempotency key.
    pub lifetime_points: i64,
}
