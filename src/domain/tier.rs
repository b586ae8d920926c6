//! Tiers follow lifetime points: Silver from 1,000, Gold from 5,000, Platinum from 10,000.

use serde::{Deserialize, Serialize};

/// A loyalty tier. Serialized by name ("Bronze", ...), as in the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub enum Tier {
    /// Below 1,000 lifetime points.
    #[default]
    Bronze,
    /// 1,000 to 4,999.
    Silver,
    /// 5,000 to 9,999.
    Gold,
    /// 10,000 and above.
    Platinum,
}

impl Tier {
    /// Every tier, lowest first.
    pub const ALL: [Tier; 4] = [Tier::Bronze, Tier::Silver, Tier::Gold, Tier::Platinum];

    /// Every tier with the lifetime points where it starts, lowest first.
    const LADDER: [(Tier, i64); 4] =
        [(Tier::Bronze, 0), (Tier::Silver, 1_000), (Tier::Gold, 5_000), (Tier::Platinum, 10_000)];

    /// The tier earned by `lifetime` points.
    pub fn for_lifetime(lifetime: i64) -> Tier {
        Self::LADDER.iter().rev().find(|(_, from)| lifetime >= *from).map_or(Tier::Bronze, |(t, _)| *t)
    }

    /// Lifetime points still missing for the next tier; 0 at the top.
    pub fn points_to_next(lifetime: i64) -> i64 {
        Self::LADDER.iter().find(|(_, from)| *from > lifetime).map_or(0, |(_, from)| from - lifetime)
    }

    /// The tier's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Bronze => "Bronze",
            Tier::Silver => "Silver",
            Tier::Gold => "Gold",
            Tier::Platinum => "Platinum",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        let cases = [
            (0, Tier::Bronze),
            (999, Tier::Bronze),
            (1_000, Tier::Silver),
            (4_999, Tier::Silver),
            (5_000, Tier::Gold),
            (9_999, Tier::Gold),
            (10_000, Tier::Platinum),
            (i64::MAX, Tier::Platinum),
        ];
        for (lifetime, tier) in cases {
            assert_eq!(Tier::for_lifetime(lifetime), tier, "lifetime {lifetime}");
        }
    }

    #[test]
    fn points_to_next_tier() {
        assert_eq!(Tier::points_to_next(0), 1_000);
        assert_eq!(Tier::points_to_next(999), 1);
        assert_eq!(Tier::points_to_next(1_000), 4_000);
        assert_eq!(Tier::points_to_next(9_999), 1);
        assert_eq!(Tier::points_to_next(10_000), 0);
    }

    #[test]
    fn serializes_by_wire_name() {
        assert_eq!(serde_json::to_string(&Tier::Platinum).unwrap(), "\"Platinum\"");
        assert_eq!(serde_json::from_str::<Tier>("\"Silver\"").unwrap(), Tier::Silver);
    }
}
