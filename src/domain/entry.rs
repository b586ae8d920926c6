//! A decided change of an account, numbered in the order it was decided:
//! what the ledger records and the event stream tells.

use serde::{Deserialize, Serialize};

use super::earning::{Earned, ReturnedLine};
use super::lots::Draw;
use super::movement::{Effect, Movement, Totals};
use super::tier::Tier;
use super::time::Millis;

/// One decided change of an account, as the ledger will record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The account's sequence number of this entry, from 1.
    pub seq: u64,
    /// What was asked.
    pub movement: Movement,
    /// What it did.
    pub effect: Effect,
    /// The account's totals right after it.
    pub after: Totals,
    /// The tier change it caused, recorded with it so none is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_change: Option<TierChange>,
    /// The lots it took points from or gave points to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draws: Vec<Draw>,
    /// When it took effect on the workflow's clock. An activation or expiry
    /// applied late is dated at its due time; no entry is dated before the
    /// entry decided before it.
    #[serde(default)]
    pub at_ms: Millis,
    /// Pending points right after it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending_after: i64,
    /// Held points right after it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held_after: i64,
    /// An `expiring` entry's soonest expiry (for its event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<Millis>,
    /// An order accrual's points and their breakdown (the lot's record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earned: Option<Box<Earned>>,
    /// A return's lines of the order it reverses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub returned: Vec<ReturnedLine>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Entry {
    /// About how many bytes this entry takes in JSON: what bounds a write.
    pub fn approximate_size(&self) -> usize {
        self.movement.approximate_size()
            + self.draws.iter().map(|d| d.lot.len() + 24).sum::<usize>()
            + self.earned.as_ref().map_or(0, |e| e.approximate_size())
            + 40 * self.returned.len()
    }

    /// The totals right before this entry.
    pub fn before(&self) -> Totals {
        Totals {
            balance: self.after.balance.saturating_sub(self.effect.balance_delta),
            lifetime: self.after.lifetime.saturating_sub(self.effect.lifetime_delta),
        }
    }
}

/// A change of tier, recorded with the entry that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierChange {
    /// The customer.
    pub customer_id: String,
    /// Tier before.
    pub old_tier: Tier,
    /// Tier after.
    pub new_tier: Tier,
    /// Lifetime points after the change.
    pub lifetime_points: i64,
    /// The event id of the entry that caused it.
    #[serde(default)]
    pub caused_by: String,
}
