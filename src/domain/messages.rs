//! The reference guide's wire types: the `add_points` signal, the
//! `redeem_points` update and the `get_loyalty_summary` query, with the
//! optional fields our gRPC layer adds. Field names must not change; a new
//! field needs `#[serde(default)]` so the guide's payloads still decode.

use serde::{Deserialize, Serialize};

use super::earning::CampaignUsage;
use super::error::FieldError;
use super::ids::EventId;
use super::kind::EntryKind;
use super::movement::Movement;
use super::orders::OrderAccrual;
use super::points::Points;
use super::text::BoundedText;
use super::tier::Tier;
use super::time::Millis;

/// Payload of the `add_points` signal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Set by our gRPC layer when it found the event id absent from the
    /// ledger just before signalling: the account may decide the accrual at
    /// once. Signals without it (other clients, or a ledger that did not
    /// answer) are checked against the ledger first, so an event id is
    /// never applied twice however old.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ledger_checked: bool,
    /// When the points become spendable (Unix ms); absent or past: at once.
    /// Our gRPC layer sets it from the program's pending period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_from_ms: Option<Millis>,
    /// When the lot's remaining points expire (Unix ms); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<Millis>,
    /// The program's inactivity rule, set on the account by each accrual
    /// that carries it: the whole balance expires after this long without
    /// an accrual or a spend (0: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_inactive_after_ms: Option<Millis>,
    /// The program's warning period, set by the gRPC layer on the accrual
    /// that carries it: points expiring within it are announced (0: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_warning_ms: Option<Millis>,
    /// Set by our gRPC layer for an Accrue with an order: the order's
    /// evaluation per tier, with the rule set version pinned. The account
    /// credits what it settles to at its tier when it decides (`points` is
    /// then the most the order can earn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Box<OrderAccrual>>,
}

impl PointsEvent {
    /// Checks the fields the way the gRPC layer does (the workflow also
    /// receives signals from other clients and must not trust them), and
    /// returns the points.
    pub fn validate(&self) -> Result<i64, FieldError> {
        EventId::parse(&self.event_id)?;
        BoundedText::parse("reason", &self.reason)?;
        BoundedText::parse("source", &self.source)?;
        Ok(Points::parse(self.points)?.get())
    }

    /// The movement of this accrual (fields already checked).
    pub fn movement(&self) -> Movement {
        Movement {
            event_id: self.event_id.clone(),
            kind: EntryKind::Accrual,
            points: self.points,
            reason: self.reason.clone(),
            source: self.source.clone(),
            reverses: None,
        }
    }
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

impl RedemptionRequest {
    /// Checks the fields.
    pub fn validate(&self) -> Result<i64, FieldError> {
        EventId::parse(&self.event_id)?;
        BoundedText::parse("reward", &self.reward)?;
        Ok(Points::parse(self.points)?.get())
    }

    /// The movement of this redemption (fields already checked).
    pub fn movement(&self) -> Movement {
        Movement {
            event_id: self.event_id.clone(),
            kind: EntryKind::Redemption,
            points: self.points,
            reason: self.reward.clone(),
            source: String::new(),
            reverses: None,
        }
    }
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

/// Output of the `get_loyalty_summary` query: the guide's five fields, then ours.
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
    /// Acknowledged accruals not applied yet: received without a ledger check
    /// and waiting for it (zero while the ledger answers).
    #[serde(default)]
    pub unapplied_points: i64,
    /// Sequence number of the account's newest decided entry.
    #[serde(default)]
    pub decided_seq: u64,
    /// Newest entry the ledger holds (entries decided but not written yet are
    /// `decided_seq - projected_seq`).
    #[serde(default)]
    pub projected_seq: u64,
    /// Why the account stopped writing to the ledger, when the ledger's
    /// sequence does not match its own (a lost or restored database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_held: Option<String>,
    /// Points earned but not spendable yet (and not counted for the tier).
    #[serde(default)]
    pub pending_points: i64,
    /// Points set aside by open holds (not spendable).
    #[serde(default)]
    pub held_points: i64,
    /// The next time points expire (Unix ms), if any will.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_expiry_at_ms: Option<Millis>,
    /// How many points expire then.
    #[serde(default)]
    pub next_expiry_points: i64,
    /// Points expiring within 30 days of `as_of_ms`.
    #[serde(default)]
    pub expiring_soon_points: i64,
    /// What capped campaigns gave in their current periods (for a preview).
    #[serde(default, skip_serializing_if = "CampaignUsage::is_empty")]
    pub campaign_usage: CampaignUsage,
    /// The account's clock when it last changed or woke (at most a day old).
    #[serde(default)]
    pub as_of_ms: Millis,
}
