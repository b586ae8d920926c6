//! What every account command shares: the failure types of the wire
//! contract, why a command is refused, and how each request becomes a ledger
//! movement once its fields are checked. The one-writer decisions live in
//! `decide`, the previous version's two-step commands in `legacy`.

use super::entry::Originals;
use super::error::FieldError;
use super::holds::HoldStatus;
use super::ids::EventId;
use super::lifecycle::EXPIRING_SOON_MS;
use super::messages::{
    AdjustmentRequest, EntryKind, LoyaltyState, LoyaltySummary, PointsEvent, RedemptionRequest, ReversalRequest,
};
use super::movement::{Movement, Refusal, Totals};
use super::points::{MAX_POINTS, Points};
use super::text::BoundedText;
use super::tier::Tier;

/// Failure type names carried to Temporal clients: the guide's three plus
/// ours. The workflow sets them and the gRPC layer reads them.
pub mod failure_type {
    /// A malformed request (the guide's).
    pub const VALIDATION_ERROR: &str = "ValidationError";
    /// Not enough points (the guide's).
    pub const INSUFFICIENT_POINTS: &str = "InsufficientPoints";
    /// A closed account (the guide's).
    pub const INACTIVE_ACCOUNT: &str = "InactiveAccount";
    /// An event id used before with different content.
    pub const EVENT_ID_REUSED: &str = "EventIdReused";
    /// The ledger could not be written or its last write is being settled;
    /// retrying with the same event id is safe.
    pub const LEDGER_UNAVAILABLE: &str = "LedgerUnavailable";
    /// A reversal names an event the account does not have.
    pub const ORIGINAL_NOT_FOUND: &str = "OriginalNotFound";
    /// A reversal the original does not allow (kind or amount).
    pub const NOT_REVERSIBLE: &str = "NotReversible";
    /// A capture or release names a hold the account does not have.
    pub const HOLD_NOT_FOUND: &str = "HoldNotFound";
    /// A capture or release of a hold that has ended otherwise.
    pub const HOLD_NOT_OPEN: &str = "HoldNotOpen";
}

/// Why a redemption, reversal or adjustment is refused. Each maps to a
/// failure type of the wire contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A malformed field.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// The account is closed.
    #[error("Cannot change points: account is inactive")]
    Inactive,
    /// Not enough points.
    #[error("Insufficient points: requested {requested}, available {available}")]
    Insufficient {
        /// Points asked for.
        requested: i64,
        /// Balance at the time.
        available: i64,
    },
    /// The event id was already used for a different event.
    #[error("event_id {0} was already used with different content")]
    EventIdReused(String),
    /// A redemption's ledger write has an unknown outcome; the account settles
    /// it with the ledger before taking new redemptions or corrections.
    #[error("the ledger is settling an earlier write; retry with the same event_id")]
    Settling,
    /// The ledger refused a reversal.
    #[error("{0}")]
    Refused(Refusal),
    /// The account has used this event id, but no longer holds what it
    /// decided for it (the entry is in the ledger only) and the caller could
    /// not read the ledger: retrying once the ledger answers finds it there.
    #[error("event_id {0} was decided earlier and is in the ledger only; retry with the same event_id")]
    Forgotten(String),
    /// A reversal names an event the account no longer holds in memory, and
    /// the ledger's view of it (read by the caller) is missing or older than
    /// what the account has decided since: retrying reads it afresh.
    #[error("original_event_id {0} must be read from the ledger first; retry with the same event_id")]
    OriginalUnknown(String),
    /// No open or recently finished hold has this id.
    #[error("hold_id: no hold {0} on this account")]
    HoldNotFound(String),
    /// The account has as many open holds as it may.
    #[error("too many open holds (at most {0}): capture or release one first")]
    TooManyHolds(usize),
    /// The hold ended in another way (captured, released or expired).
    #[error("hold {hold_id} is {status:?}, not open")]
    HoldNotOpen {
        /// The hold.
        hold_id: String,
        /// How it ended.
        status: HoldStatus,
    },
}

impl Rejection {
    /// The Temporal failure type carried to clients.
    pub fn failure_type(&self) -> &'static str {
        match self {
            Rejection::Invalid(_) => failure_type::VALIDATION_ERROR,
            Rejection::Inactive => failure_type::INACTIVE_ACCOUNT,
            Rejection::Insufficient { .. } | Rejection::Refused(Refusal::Insufficient { .. }) => {
                failure_type::INSUFFICIENT_POINTS
            }
            Rejection::EventIdReused(_) => failure_type::EVENT_ID_REUSED,
            Rejection::Settling | Rejection::Forgotten(_) | Rejection::OriginalUnknown(_) => {
                failure_type::LEDGER_UNAVAILABLE
            }
            Rejection::Refused(Refusal::OriginalNotFound(_)) => failure_type::ORIGINAL_NOT_FOUND,
            Rejection::Refused(Refusal::NotReversible { .. } | Refusal::ExceedsOriginal { .. }) => {
                failure_type::NOT_REVERSIBLE
            }
            Rejection::HoldNotFound(_) => failure_type::HOLD_NOT_FOUND,
            Rejection::HoldNotOpen { .. } | Rejection::TooManyHolds(_) => failure_type::HOLD_NOT_OPEN,
        }
    }
}

/// Checks an `add_points` payload the way the gRPC layer would; the workflow
/// also receives signals from other clients and must not trust them.
pub(super) fn validate_accrual(event: &PointsEvent) -> Result<i64, FieldError> {
    EventId::parse(&event.event_id)?;
    BoundedText::parse("reason", &event.reason)?;
    BoundedText::parse("source", &event.source)?;
    Ok(Points::parse(event.points)?.get())
}

impl ReversalRequest {
    /// Checks the fields and makes the ledger movement.
    pub fn movement(&self) -> Result<Movement, FieldError> {
        EventId::parse(&self.event_id)?;
        EventId::parse(&self.original_event_id).map_err(|e| FieldError::new("original_event_id", e.reason))?;
        if self.event_id == self.original_event_id {
            return Err(FieldError::new("original_event_id", "must differ from event_id"));
        }
        let points = match self.points {
            Some(p) => Points::parse(p)?.get(),
            None => 0,
        };
        BoundedText::parse("reason", &self.reason)?;
        Ok(Movement {
            event_id: self.event_id.clone(),
            kind: EntryKind::Reversal,
            points,
            reason: self.reason.clone(),
            source: String::new(),
            reverses: Some(self.original_event_id.clone()),
        })
    }
}

impl AdjustmentRequest {
    /// Checks the fields and makes the ledger movement.
    pub fn movement(&self) -> Result<Movement, FieldError> {
        EventId::parse(&self.event_id)?;
        if self.points == 0 || self.points.unsigned_abs() > MAX_POINTS as u64 {
            return Err(FieldError::new(
                "points",
                format!("must be non-zero and between -{MAX_POINTS} and {MAX_POINTS}, got {}", self.points),
            ));
        }
        BoundedText::parse("reason", &self.reason)?;
        if self.reason.trim().is_empty() {
            return Err(FieldError::new("reason", "is required for an adjustment"));
        }
        Ok(Movement {
            event_id: self.event_id.clone(),
            kind: EntryKind::Adjustment,
            points: self.points,
            reason: self.reason.clone(),
            source: String::new(),
            reverses: None,
        })
    }
}

impl RedemptionRequest {
    /// The ledger movement of this redemption (fields already checked).
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

impl PointsEvent {
    /// The ledger movement of this accrual (fields already checked).
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

impl LoyaltyState {
    /// A new, empty, active account.
    pub fn open(customer_id: &str) -> Self {
        Self {
            customer_id: customer_id.to_owned(),
            points_balance: 0,
            lifetime_points: 0,
            tier: Tier::Bronze,
            is_active: true,
            processed_event_ids: Default::default(),
            pending_events: Vec::new(),
            recent_redemptions: Vec::new(),
            pending_voids: Vec::new(),
            in_doubt: Vec::new(),
            seq: 0,
            projected_seq: 0,
            unprojected: Vec::new(),
            originals: Originals::default(),
            recent_changes: Vec::new(),
            handed_over: true,
            lots: Default::default(),
            lots_tracked: true,
            holds: Vec::new(),
            finished_holds: Vec::new(),
            clock_ms: 0,
            last_activity_ms: 0,
            expire_inactive_after_ms: 0,
            expiry_warning_ms: 0,
            warned_until_ms: 0,
            expiry_warnings: false,
            due_hint: None,
        }
    }

    /// The read model returned by queries.
    pub fn summary(&self) -> LoyaltySummary {
        let (expiring_soon_points, next) = self.lots.expiring(self.clock_ms, self.clock_ms + EXPIRING_SOON_MS);
        LoyaltySummary {
            pending_points: self.lots.pending(),
            held_points: self.held_points(),
            next_expiry_at_ms: next.map(|(at, _)| at),
            next_expiry_points: next.map_or(0, |(_, points)| points),
            expiring_soon_points,
            as_of_ms: self.clock_ms,
            customer_id: self.customer_id.clone(),
            points_balance: self.points_balance,
            lifetime_points: self.lifetime_points,
            tier: self.tier,
            is_active: self.is_active,
            unapplied_points: self.unapplied_points(),
            decided_seq: self.seq,
            projected_seq: self.projected_seq,
            ledger_held: None,
        }
    }

    /// Acknowledged accruals still waiting for their ledger check.
    pub fn unapplied_points(&self) -> i64 {
        self.pending_events.iter().filter_map(|e| validate_accrual(e).ok()).fold(0, i64::saturating_add)
    }

    /// Marks the account closed; redemptions are refused from now on.
    pub fn close(&mut self) {
        self.is_active = false;
    }

    /// The running totals.
    pub fn totals(&self) -> Totals {
        Totals { balance: self.points_balance, lifetime: self.lifetime_points }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correction_requests_are_checked() {
        let adj = |points, reason: &str| AdjustmentRequest {
            event_id: "e".into(),
            points,
            reason: reason.into(),
            ..Default::default()
        };
        assert_eq!(adj(-5, "goodwill").movement().unwrap().points, -5);
        assert_eq!(adj(0, "x").movement().unwrap_err().field, "points");
        assert_eq!(adj(MAX_POINTS + 1, "x").movement().unwrap_err().field, "points");
        assert_eq!(adj(i64::MIN, "x").movement().unwrap_err().field, "points");
        assert_eq!(adj(5, " ").movement().unwrap_err().field, "reason");
        let rev = |original: &str, points| ReversalRequest {
            event_id: "rv".into(),
            original_event_id: original.into(),
            points,
            reason: "refund".into(),
            ledger: None,
            ..Default::default()
        };
        assert_eq!(rev("o", None).movement().unwrap().points, 0);
        assert_eq!(rev("o", Some(0)).movement().unwrap_err().field, "points");
        assert_eq!(rev("bad id", None).movement().unwrap_err().field, "original_event_id");
        assert_eq!(rev("rv", None).movement().unwrap_err().field, "original_event_id");
    }

    #[test]
    fn state_from_the_guide_decodes_with_defaults() {
        let guide = r#"{"customer_id":"c1","points_balance":5,"lifetime_points":5,"tier":"Bronze",
            "is_active":true,"processed_event_ids":["a"],"pending_events":[{"event_id":"b","points":1,"reason":"x"}]}"#;
        let s: LoyaltyState = serde_json::from_str(guide).unwrap();
        assert_eq!(s.pending_events[0].source, "");
        assert!(s.recent_redemptions.is_empty() && s.in_doubt.is_empty());
    }
}
