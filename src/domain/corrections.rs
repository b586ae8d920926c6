//! Our corrections of an account (not in the reference guide): the
//! `reverse_points` and `adjust_points` updates, their answer, and how the
//! program's refund policy reaches the account.

use serde::{Deserialize, Serialize};

use super::earning::ReturnedLine;
use super::error::FieldError;
use super::ids::EventId;
use super::kind::EntryKind;
use super::movement::Movement;
use super::originals::LedgerView;
use super::points::{MAX_POINTS, Points};
use super::text::BoundedText;
use super::tier::Tier;
use super::time::Millis;

/// Input of the `reverse_points` update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalRequest {
    /// Idempotency key of the reversal itself.
    pub event_id: String,
    /// The accrual or redemption to reverse.
    pub original_event_id: String,
    /// Points to reverse; absent for all that the original still holds.
    #[serde(default)]
    pub points: Option<i64>,
    /// Why (a refund, a cancelled order).
    #[serde(default)]
    pub reason: String,
    /// The original as the ledger held it when the gRPC layer read it, for
    /// an original older than the account keeps in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerView>,
    /// A clawback beyond the balance takes the balance below zero (the
    /// program's `allow_negative`) instead of recording a shortfall.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_negative: bool,
    /// When points a cancelled redemption returns expire (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<Millis>,
    /// The lines of the original's order this return gives back; `points`
    /// is then what they earned, computed by the API from the ledger view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<ReturnedLine>,
}

/// Input of the `adjust_points` update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentRequest {
    /// Idempotency key.
    pub event_id: String,
    /// Signed correction.
    pub points: i64,
    /// Why; required, it is the audit trail.
    pub reason: String,
    /// When points a positive adjustment adds expire (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<Millis>,
}

/// Output of `reverse_points` and `adjust_points`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceChange {
    /// Signed change of the balance.
    pub balance_delta: i64,
    /// Signed change of lifetime points.
    pub lifetime_delta: i64,
    /// Points a clawback could not take (the balance floors at zero).
    pub shortfall: i64,
    /// Balance right after the change.
    pub balance_after: i64,
    /// The account's balance now.
    pub points_balance: i64,
    /// The account's lifetime points now.
    pub lifetime_points: i64,
    /// The account's tier now.
    pub tier: Tier,
}

/// How a correction treats lots, set by the gRPC layer from the program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Terms {
    /// A clawback beyond the balance takes it below zero.
    pub allow_negative: bool,
    /// When points a correction adds expire.
    pub expires_at_ms: Option<Millis>,
}

impl ReversalRequest {
    /// Checks the fields and makes the movement.
    pub fn movement(&self) -> Result<Movement, FieldError> {
        EventId::parse(&self.event_id)?;
        EventId::parse(&self.original_event_id).map_err(|e| FieldError::new("original_event_id", e.reason))?;
        if self.event_id == self.original_event_id {
            return Err(FieldError::new("original_event_id", "must differ from event_id"));
        }
        let points = match self.points {
            Some(0) if self.is_lines_only() => 0,
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

    /// What the program says about the points this reversal moves.
    pub fn terms(&self) -> Terms {
        Terms { allow_negative: self.allow_negative, expires_at_ms: self.expires_at_ms }
    }

    /// A return of lines that earned nothing (rounding, excluded items):
    /// recorded with no points, so later returns of the order see it.
    pub fn is_lines_only(&self) -> bool {
        !self.lines.is_empty() && self.points == Some(0)
    }
}

impl AdjustmentRequest {
    /// Checks the fields and makes the movement.
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

    /// What the program says about the points this adjustment adds.
    pub fn terms(&self) -> Terms {
        Terms { allow_negative: false, expires_at_ms: self.expires_at_ms }
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
            ..Default::default()
        };
        assert_eq!(rev("o", None).movement().unwrap().points, 0);
        assert_eq!(rev("o", Some(0)).movement().unwrap_err().field, "points");
        assert_eq!(rev("bad id", None).movement().unwrap_err().field, "original_event_id");
        assert_eq!(rev("rv", None).movement().unwrap_err().field, "original_event_id");
    }
}
