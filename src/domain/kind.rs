//! What kind of change a ledger entry records.

use serde::{Deserialize, Serialize};

/// What kind of change a ledger row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Points earned.
    Accrual,
    /// Points spent.
    Redemption,
    /// An accrual clawed back or a redemption cancelled.
    Reversal,
    /// A support correction.
    Adjustment,
    /// Points that expired (a lot's date, or inactivity).
    Expiry,
    /// Pending points became spendable.
    Activation,
    /// Points set aside at checkout.
    Hold,
    /// Held points spent (the rest of the hold given back).
    Capture,
    /// Held points given back (released, or the hold expired).
    Release,
    /// Points about to expire were announced; moves nothing.
    Expiring,
    /// The totals of a state this service did not decide (another worker's
    /// continue-as-new onto ours), recorded once so the ledger adds up.
    Opening,
}

impl EntryKind {
    /// Every kind, in declaration order.
    pub const ALL: [EntryKind; 11] = [
        EntryKind::Accrual,
        EntryKind::Redemption,
        EntryKind::Reversal,
        EntryKind::Adjustment,
        EntryKind::Expiry,
        EntryKind::Activation,
        EntryKind::Hold,
        EntryKind::Capture,
        EntryKind::Release,
        EntryKind::Expiring,
        EntryKind::Opening,
    ];

    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Accrual => "accrual",
            EntryKind::Redemption => "redemption",
            EntryKind::Reversal => "reversal",
            EntryKind::Adjustment => "adjustment",
            EntryKind::Expiry => "expiry",
            EntryKind::Activation => "activation",
            EntryKind::Hold => "hold",
            EntryKind::Capture => "capture",
            EntryKind::Release => "release",
            EntryKind::Expiring => "expiring",
            EntryKind::Opening => "opening",
        }
    }

    /// The kind stored under `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether a reversal may name an entry of this kind: what was earned
    /// or spent, never a correction, an expiry or the account's own entries.
    pub fn is_reversible(self) -> bool {
        matches!(self, EntryKind::Accrual | EntryKind::Redemption | EntryKind::Capture)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_its_stored_name() {
        for kind in EntryKind::ALL {
            assert_eq!(EntryKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(EntryKind::parse("nope"), None);
    }
}
