//! What an entry asks for and what it does: the movement a caller's request
//! becomes, its effect on the account's totals, and the refusals a
//! reversal can meet. The account decides effects (`correct`, `checkout`,
//! `due`); the ledger stores them as decided.

use serde::{Deserialize, Serialize};

use super::kind::EntryKind;

/// An account's running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Spendable points.
    pub balance: i64,
    /// Points ever earned, net of clawbacks and corrections.
    pub lifetime: i64,
}

/// One change as asked: what the ledger records beside its effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    /// Idempotency key, unique per account across every kind.
    pub event_id: String,
    /// What the event is.
    pub kind: EntryKind,
    /// As requested: accrual and redemption a positive amount, adjustment a
    /// signed amount, reversal the amount to reverse or 0 for all that remains.
    pub points: i64,
    /// Reason, or the reward of a redemption.
    pub reason: String,
    /// Originating service, if any.
    pub source: String,
    /// The event a reversal undoes.
    #[serde(default)]
    pub reverses: Option<String>,
}

/// At most how many bytes free text `s` takes inside a JSON string.
pub fn json_text(s: &str) -> usize {
    2 * s.len()
}

/// What a stored entry was asked to do, to compare a resent event with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    /// The entry's kind.
    pub kind: EntryKind,
    /// Its requested amount, a reversal's resolved to the amount it took.
    pub requested: i64,
    /// Its reason or reward.
    pub reason: String,
    /// Its source.
    pub source: String,
    /// The event it reverses.
    pub reverses: Option<String>,
}

impl Movement {
    /// At most how many bytes this movement takes in JSON: a fixed
    /// allowance for the numbers and names, its ids as they are (their
    /// alphabet needs no escaping) and its free texts twice (escaping at
    /// most doubles a text: control characters are refused).
    pub fn approximate_size(&self) -> usize {
        const FIELDS: usize = 200;
        FIELDS
            + self.event_id.len()
            + json_text(&self.reason)
            + json_text(&self.source)
            + self.reverses.as_ref().map_or(0, String::len)
    }

    /// Whether a stored entry is this same event (a resend), rather than
    /// another event that reused the id. A reversal that asked for "all that
    /// remains" matches whatever amount that resolved to.
    pub fn same_as(&self, stored: &StoredRequest) -> bool {
        let amount_matches = match self.kind {
            EntryKind::Reversal if self.points == 0 => true,
            _ => self.points == stored.requested,
        };
        self.kind == stored.kind
            && amount_matches
            && self.reason == stored.reason
            && self.source == stored.source
            && self.reverses == stored.reverses
    }
}

/// The entry a reversal names, with what earlier reversals took from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    /// Its kind.
    pub kind: EntryKind,
    /// The amount it moved as requested (an accrual's or redemption's points).
    pub requested: i64,
    /// How much earlier reversals already took back from it.
    pub reversed: i64,
}

/// How one entry changes the totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    /// The amount as resolved: a reversal's "all that remains" made concrete.
    pub requested: i64,
    /// Signed change of the balance.
    pub balance_delta: i64,
    /// Signed change of lifetime points.
    pub lifetime_delta: i64,
    /// Points a clawback could not take because the balance was too low.
    pub shortfall: i64,
}

impl Effect {
    /// An effect that adds `points` to the balance and to lifetime points.
    pub fn earn(points: i64) -> Self {
        Self { requested: points, balance_delta: points, lifetime_delta: points, shortfall: 0 }
    }

    /// An effect that moves the balance by `delta` and leaves lifetime points.
    pub fn balance(requested: i64, delta: i64) -> Self {
        Self { requested, balance_delta: delta, lifetime_delta: 0, shortfall: 0 }
    }

    /// The totals after this effect.
    pub fn apply(&self, totals: Totals) -> Totals {
        Totals {
            balance: totals.balance.saturating_add(self.balance_delta),
            lifetime: totals.lifetime.saturating_add(self.lifetime_delta),
        }
    }
}

/// Why a reversal or a deduction is refused. Nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// A deduction larger than the balance.
    #[error("Insufficient points: requested {requested}, available {available}")]
    Insufficient {
        /// Points asked for.
        requested: i64,
        /// Balance at the time.
        available: i64,
    },
    /// A reversal names an event the account does not have.
    #[error("original_event_id: no event {0} on this account")]
    OriginalNotFound(String),
    /// A reversal names an event that cannot be reversed.
    #[error("original_event_id: {kind} {event_id} cannot be reversed")]
    NotReversible {
        /// The original event.
        event_id: String,
        /// Its kind.
        kind: String,
    },
    /// A reversal asks for more than the original still holds.
    #[error("points: {requested} exceeds the {remaining} points event {event_id} still holds")]
    ExceedsOriginal {
        /// The original event.
        event_id: String,
        /// Points asked for.
        requested: i64,
        /// What is left to reverse.
        remaining: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resend_is_told_from_a_reused_id() {
        let m = Movement {
            event_id: "e".into(),
            kind: EntryKind::Accrual,
            points: 50,
            reason: "r".into(),
            source: String::new(),
            reverses: None,
        };
        let stored = StoredRequest {
            kind: EntryKind::Accrual,
            requested: 50,
            reason: "r".into(),
            source: String::new(),
            reverses: None,
        };
        assert!(m.same_as(&stored));
        assert!(!m.same_as(&StoredRequest { requested: 51, ..stored.clone() }));
        assert!(!m.same_as(&StoredRequest { kind: EntryKind::Redemption, ..stored.clone() }));
        let all = Movement { kind: EntryKind::Reversal, points: 0, reverses: Some("o".into()), ..m };
        let resolved =
            StoredRequest { kind: EntryKind::Reversal, requested: 120, reverses: Some("o".into()), ..stored };
        assert!(all.same_as(&resolved), "a reversal of all that remains matches its resolved amount");
    }
}
