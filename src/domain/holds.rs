//! Holds at checkout: points set aside for an order, then captured (spent),
//! released, or released by themselves when their time is up.
//!
//! A hold draws its points from lots when it is made (soonest expiry first),
//! so held points are neither spendable nor expired while held; what a hold
//! gives back returns to the lots it came from, and expires at once if its
//! lot's date passed meanwhile.

use serde::{Deserialize, Serialize};

use super::answers::Answer;
use super::error::FieldError;
use super::ids::EventId;
use super::kind::EntryKind;
use super::lots::Draw;
use super::movement::{Movement, json_text};
use super::points::Points;
use super::text::BoundedText;
use super::time::Millis;

/// Shortest hold: one second.
pub const MIN_HOLD_TTL_MS: Millis = 1_000;
/// Longest hold: 30 days; a checkout does not take longer.
pub const MAX_HOLD_TTL_MS: Millis = 30 * 24 * 3_600_000;
/// Most holds open at once on one account: a checkout holds one or two.
pub const MAX_OPEN_HOLDS: usize = 100;
/// How many finished holds an account remembers to answer a resend.
pub const FINISHED_HOLDS_WINDOW: usize = 256;

/// An open hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The caller's id for it.
    pub hold_id: String,
    /// Points held.
    pub points: i64,
    /// How long it was asked to last.
    pub ttl_ms: Millis,
    /// When it releases itself.
    pub expires_at_ms: Millis,
    /// The lots it holds points of, in spending order.
    pub draws: Vec<Draw>,
}

/// How a hold ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldEnd {
    /// Spent by a capture.
    Captured {
        /// The capture's event id.
        event_id: String,
        /// Points captured.
        points: i64,
        /// What they bought.
        #[serde(default)]
        reward: String,
    },
    /// Given back by a release.
    Released,
    /// Given back because its time was up.
    Expired,
}

impl HoldEnd {
    /// At most how many bytes it takes in JSON.
    pub fn size(&self) -> usize {
        match self {
            HoldEnd::Captured { event_id, reward, .. } => 80 + event_id.len() + json_text(reward),
            HoldEnd::Released | HoldEnd::Expired => 12,
        }
    }
}

/// A finished hold the account remembers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    /// The hold as it was.
    pub hold: Hold,
    /// How it ended.
    pub end: HoldEnd,
    /// The entry that ended it.
    pub seq: u64,
}

/// Input of the `reserve_points` update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveRequest {
    /// Idempotency key of the hold.
    pub hold_id: String,
    /// Points to set aside.
    pub points: i64,
    /// How long the hold lasts if not captured or released, in milliseconds.
    pub ttl_ms: Millis,
    /// Set by our gRPC layer when the ledger already has a hold under this
    /// id: the account refuses it unless it still remembers that hold.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ledger_known: bool,
}

/// Input of the `capture_points` update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRequest {
    /// The hold.
    pub hold_id: String,
    /// Points to spend, at most the hold's; the rest is given back.
    pub points: i64,
    /// Idempotency key of the spend (the ledger entry's id).
    pub event_id: String,
    /// What the points buy.
    #[serde(default)]
    pub reward: String,
}

/// Input of the `release_points` update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    /// The hold.
    pub hold_id: String,
}

/// Where a hold stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    /// Open.
    Held,
    /// Spent.
    Captured,
    /// Given back.
    Released,
    /// Given back at its deadline.
    Expired,
}

/// Output of the hold updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldResult {
    /// The hold.
    pub hold_id: String,
    /// Where it stands.
    pub status: HoldStatus,
    /// Points it set aside.
    pub held: i64,
    /// Points captured (0 unless captured).
    pub captured: i64,
    /// When it releases itself (Unix ms).
    pub expires_at_ms: Millis,
    /// The account's spendable balance now.
    pub points_balance: i64,
    /// Points all open holds set aside now.
    pub held_points: i64,
}

impl ReserveRequest {
    /// Checks the fields.
    pub fn validate(&self) -> Result<(), FieldError> {
        EventId::parse(&self.hold_id).map_err(|e| FieldError::new("hold_id", e.reason))?;
        Points::parse(self.points)?;
        if !(MIN_HOLD_TTL_MS..=MAX_HOLD_TTL_MS).contains(&self.ttl_ms) {
            return Err(FieldError::new(
                "ttl",
                format!("must be between 1 second and 30 days, got {} ms", self.ttl_ms),
            ));
        }
        Ok(())
    }
}

impl CaptureRequest {
    /// Checks the fields.
    pub fn validate(&self) -> Result<(), FieldError> {
        EventId::parse(&self.hold_id).map_err(|e| FieldError::new("hold_id", e.reason))?;
        EventId::parse(&self.event_id)?;
        Points::parse(self.points)?;
        BoundedText::parse("reward", &self.reward)?;
        Ok(())
    }
}

impl ReleaseRequest {
    /// Checks the fields.
    pub fn validate(&self) -> Result<(), FieldError> {
        EventId::parse(&self.hold_id).map_err(|e| FieldError::new("hold_id", e.reason))?;
        Ok(())
    }
}

impl HoldRecord {
    /// The answer this finished hold gives.
    pub fn status(&self) -> (HoldStatus, i64) {
        match &self.end {
            HoldEnd::Captured { points, .. } => (HoldStatus::Captured, *points),
            HoldEnd::Released => (HoldStatus::Released, 0),
            HoldEnd::Expired => (HoldStatus::Expired, 0),
        }
    }
}

impl Answer for HoldRecord {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn seq_mut(&mut self) -> &mut u64 {
        &mut self.seq
    }
}

/// The ledger id of the entry that made hold `hold_id` (`/` keeps it apart
/// from every id a caller can send).
pub fn hold_entry_id(hold_id: &str) -> String {
    format!("hold/{hold_id}")
}

/// The ledger movement of a capture: what the account records and what the
/// gRPC layer compares a resend with, so the two can never differ.
pub fn capture_movement(hold_id: &str, event_id: &str, points: i64, reward: &str) -> Movement {
    Movement {
        event_id: event_id.to_owned(),
        kind: EntryKind::Capture,
        points,
        reason: reward.to_owned(),
        source: hold_entry_id(hold_id),
        reverses: None,
    }
}

/// Splits a hold's draws into what a capture of `points` spends (the
/// soonest-expiring first) and what it gives back.
pub fn split_draws(draws: &[Draw], points: i64) -> (Vec<Draw>, Vec<Draw>) {
    let mut left = points;
    let (mut spent, mut back) = (Vec::new(), Vec::new());
    for d in draws {
        let take = d.points.min(left);
        left -= take;
        if take > 0 {
            spent.push(Draw { lot: d.lot.clone(), points: take });
        }
        if d.points > take {
            back.push(Draw { lot: d.lot.clone(), points: d.points - take });
        }
    }
    (spent, back)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let ok = ReserveRequest { hold_id: "h1".into(), points: 5, ttl_ms: 60_000, ledger_known: false };
        assert!(ok.validate().is_ok());
        assert_eq!(ReserveRequest { ttl_ms: 0, ..ok.clone() }.validate().unwrap_err().field, "ttl");
        assert_eq!(ReserveRequest { ttl_ms: 365 * 86_400_000, ..ok.clone() }.validate().unwrap_err().field, "ttl");
        assert_eq!(ReserveRequest { hold_id: "a b".into(), ..ok.clone() }.validate().unwrap_err().field, "hold_id");
        assert_eq!(ReserveRequest { points: 0, ..ok }.validate().unwrap_err().field, "points");
        let c = CaptureRequest { hold_id: "h1".into(), points: 1, event_id: "bad id".into(), reward: String::new() };
        assert_eq!(c.validate().unwrap_err().field, "event_id");
    }

    #[test]
    fn a_capture_spends_the_soonest_expiring_draws_and_gives_back_the_rest() {
        let draws = vec![Draw { lot: "a".into(), points: 5 }, Draw { lot: "b".into(), points: 10 }];
        let (spent, back) = split_draws(&draws, 8);
        assert_eq!(spent, vec![Draw { lot: "a".into(), points: 5 }, Draw { lot: "b".into(), points: 3 }]);
        assert_eq!(back, vec![Draw { lot: "b".into(), points: 7 }]);
    }
}
