//! The account's state: what Temporal carries from one run to the next
//! (the workflow's input after continue-as-new). The guide's seven fields
//! come first, under their names; ours follow, each defaulting, so a state
//! the guide's worker made decodes too (`upgrade` brings it to this version).

use serde::{Deserialize, Serialize};

use super::answers::{ChangeRecord, RedemptionRecord};
use super::dedup::RecentIds;
use super::earning::CampaignUsage;
use super::entry::Entry;
use super::holds::{Hold, HoldRecord};
use super::lots::{Draw, Lots};
use super::messages::{LoyaltySummary, PointsEvent};
use super::movement::{Totals, json_text};
use super::originals::Originals;
use super::tier::Tier;
use super::time::{DAY_MS, Millis};

/// The version of the carried state this build writes. A state without it
/// (0) was made by another worker; `upgrade` takes it in. 1: 1.0 to 1.3;
/// 2: 1.4, which adds `campaign_usage` (a build before it would drop it,
/// so the deployment rolls back only to a build of version 2).
pub const STATE_VERSION: u32 = 2;

/// The window of "expiring soon" in the summary: 30 days.
pub const EXPIRING_SOON_MS: Millis = 30 * DAY_MS;

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
    /// Recent event ids (accruals, redemptions, corrections), oldest first.
    #[serde(default)]
    pub processed_event_ids: RecentIds,
    /// Accruals received without a ledger check, in arrival order: the
    /// projection asks the ledger about them, then they are decided.
    #[serde(default)]
    pub pending_events: Vec<PointsEvent>,
    /// Which build's rules wrote this state ([`STATE_VERSION`]; 0: another worker's).
    #[serde(default)]
    pub version: u32,
    /// Sequence number of the newest decided entry.
    #[serde(default)]
    pub seq: u64,
    /// Newest entry the ledger confirmed holding.
    #[serde(default)]
    pub projected_seq: u64,
    /// Decided entries the ledger does not hold yet, oldest first
    /// (`projected_seq + 1 ..= seq`).
    #[serde(default)]
    pub unprojected: Vec<Entry>,
    /// Recent accruals and redemptions a reversal may name.
    #[serde(default)]
    pub originals: Originals,
    /// Recent redemptions with their answers.
    #[serde(default)]
    pub recent_redemptions: Vec<RedemptionRecord>,
    /// Recent reversals and adjustments with their answers.
    #[serde(default)]
    pub recent_changes: Vec<ChangeRecord>,
    /// Where the points came from and when they activate and expire.
    #[serde(default)]
    pub lots: Lots,
    /// Open holds, oldest first.
    #[serde(default)]
    pub holds: Vec<Hold>,
    /// Recently finished holds, so a resent Reserve, Capture or Release gets
    /// the original answer.
    #[serde(default)]
    pub finished_holds: Vec<HoldRecord>,
    /// The workflow's clock at the account's newest decision or wake.
    #[serde(default)]
    pub clock_ms: Millis,
    /// When the newest entry took effect: no later entry is dated before it.
    #[serde(default)]
    pub last_entry_at_ms: Millis,
    /// When the account last earned or spent points (inactivity expiry).
    #[serde(default)]
    pub last_activity_ms: Millis,
    /// Inactivity expiry: the balance expires after this long without
    /// activity (0: never).
    #[serde(default)]
    pub expire_inactive_after_ms: Millis,
    /// How long before points expire they are announced (an `expiring`
    /// entry and a `points.expiring` event); 0: never.
    #[serde(default)]
    pub expiry_warning_ms: Millis,
    /// Active points expiring at or before this time were announced.
    #[serde(default)]
    pub warned_until_ms: Millis,
    /// What capped campaigns gave this customer in their current periods.
    #[serde(default, skip_serializing_if = "CampaignUsage::is_empty")]
    pub campaign_usage: CampaignUsage,
}

fn active() -> bool {
    true
}

impl LoyaltyState {
    /// A new, empty, active account.
    pub fn open(customer_id: &str) -> Self {
        Self {
            customer_id: customer_id.to_owned(),
            points_balance: 0,
            lifetime_points: 0,
            tier: Tier::Bronze,
            is_active: true,
            processed_event_ids: RecentIds::default(),
            pending_events: Vec::new(),
            version: STATE_VERSION,
            seq: 0,
            projected_seq: 0,
            unprojected: Vec::new(),
            originals: Originals::default(),
            recent_redemptions: Vec::new(),
            recent_changes: Vec::new(),
            lots: Lots::default(),
            holds: Vec::new(),
            finished_holds: Vec::new(),
            clock_ms: 0,
            last_entry_at_ms: 0,
            last_activity_ms: 0,
            expire_inactive_after_ms: 0,
            expiry_warning_ms: 0,
            warned_until_ms: 0,
            campaign_usage: CampaignUsage::default(),
        }
    }

    /// The running totals.
    pub fn totals(&self) -> Totals {
        Totals { balance: self.points_balance, lifetime: self.lifetime_points }
    }

    /// Points set aside by open holds.
    pub fn held_points(&self) -> i64 {
        self.holds.iter().map(|h| h.points).sum()
    }

    /// Acknowledged accruals still waiting for their ledger check.
    pub fn unapplied_points(&self) -> i64 {
        self.pending_events.iter().filter_map(|e| e.validate().ok()).fold(0, i64::saturating_add)
    }

    /// Whether the ledger is behind the account's decisions, or accruals
    /// wait for their check.
    pub fn has_projection_work(&self) -> bool {
        !self.unprojected.is_empty() || !self.pending_events.is_empty()
    }

    /// Entries and accruals waiting for the ledger.
    pub fn backlog(&self) -> usize {
        self.unprojected.len() + self.pending_events.len()
    }

    /// The read model returned by queries (`ledger_held` is the workflow's).
    pub fn summary(&self) -> LoyaltySummary {
        let (expiring_soon_points, next) = self.lots.expiring(self.clock_ms, self.clock_ms + EXPIRING_SOON_MS);
        LoyaltySummary {
            customer_id: self.customer_id.clone(),
            points_balance: self.points_balance,
            lifetime_points: self.lifetime_points,
            tier: self.tier,
            is_active: self.is_active,
            unapplied_points: self.unapplied_points(),
            decided_seq: self.seq,
            projected_seq: self.projected_seq,
            ledger_held: None,
            pending_points: self.lots.pending(),
            held_points: self.held_points(),
            next_expiry_at_ms: next.map(|(at, _)| at),
            next_expiry_points: next.map_or(0, |(_, points)| points),
            expiring_soon_points,
            as_of_ms: self.clock_ms,
            campaign_usage: self.campaign_usage.clone(),
        }
    }

    /// At most how many bytes the state takes as JSON, from its parts: a
    /// fixed allowance per item, ids as they are, free texts twice (see
    /// `json_text`). What decides whether a run may carry it (`RunBudget`),
    /// without serializing it.
    pub fn approximate_size(&self) -> usize {
        let draws = |draws: &[Draw]| draws.iter().map(|d| d.lot.len() + 24).sum::<usize>();
        let ids: usize = self.processed_event_ids.iter().map(|id| id.len() + 3).sum();
        let redemptions: usize = self
            .recent_redemptions
            .iter()
            .map(|r| 150 + r.request.event_id.len() + 2 * json_text(&r.request.reward))
            .sum();
        let changes: usize = self.recent_changes.iter().map(|r| 260 + r.movement.approximate_size()).sum();
        let holds: usize = self.holds.iter().map(|h| 120 + h.hold_id.len() + draws(&h.draws)).sum();
        let finished: usize = self.finished_holds.iter().map(|r| 200 + r.hold.hold_id.len() + r.end.size()).sum();
        let tier_change =
            |e: &Entry| e.tier_change.as_ref().map_or(0, |t| 150 + t.customer_id.len() + t.caused_by.len());
        let entries: usize = self.unprojected.iter().map(|e| 300 + e.approximate_size() + tier_change(e)).sum();
        let pending: usize = self
            .pending_events
            .iter()
            .map(|e| 200 + e.movement().approximate_size() + e.order.as_ref().map_or(0, |o| o.approximate_size()))
            .sum();
        1_000
            + ids
            + self.originals.approximate_size()
            + redemptions
            + changes
            + self.lots.approximate_bytes()
            + holds
            + finished
            + entries
            + pending
            + self.campaign_usage.approximate_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_from_the_guide_decodes_with_defaults() {
        let guide = r#"{"customer_id":"c1","points_balance":5,"lifetime_points":5,"tier":"Bronze",
            "is_active":true,"processed_event_ids":["a"],"pending_events":[{"event_id":"b","points":1,"reason":"x"}]}"#;
        let s: LoyaltyState = serde_json::from_str(guide).unwrap();
        assert_eq!((s.version, s.seq, s.pending_events[0].source.as_str()), (0, 0, ""));
        assert!(s.recent_redemptions.is_empty() && s.lots.lots.is_empty());
    }
}
