//! Keeping an account's lots small enough to carry: spent and expired lots
//! leave the state, and past a budget, old active lots expiring on the same
//! day merge into one.

use std::collections::HashSet;

use super::lots::{Lot, Lots};
use super::time::{DAY_MS, Millis};

/// Most bytes (about) an account's lots may take in its carried state; past
/// it, active lots expiring on the same day merge (see [`Lots::compact`]),
/// so the state always fits Temporal's 2 MB payload limit.
pub const LOTS_BYTES_BUDGET: usize = 64 * 1024;
/// The newest lots never merge: a refund of a recent purchase (the usual
/// one) always finds its own lot.
pub const UNMERGED_LOTS: usize = 500;

/// Empty lots tolerated before the run loop drops them: a spend skips them.
pub const EMPTY_LOTS_SLACK: usize = 256;

impl Lots {
    /// Whether [`Lots::compact`] has work: many empty lots, or over budget.
    pub fn needs_compaction(&self) -> bool {
        self.empties >= EMPTY_LOTS_SLACK || self.bytes > LOTS_BYTES_BUDGET.max(self.compacted_bytes * 5 / 4)
    }

    /// Drops lots with nothing left that no hold still draws on, so the
    /// carried state holds only live points.
    ///
    /// Past [`LOTS_BYTES_BUDGET`], active lots older than the newest
    /// [`UNMERGED_LOTS`] that no hold draws on and that expire on the same
    /// UTC day become one lot (`merged/<day>`) expiring at the latest of
    /// their times: no point is lost or expires earlier than promised, and a
    /// refund of a merged purchase takes from the soonest-expiring lots
    /// instead of its own.
    pub fn compact(&mut self, held_from: &HashSet<&str>) {
        self.lots.retain(|l| l.remaining > 0 || held_from.contains(l.id.as_str()));
        self.recount();
        self.compacted_bytes = self.bytes;
        if self.bytes <= LOTS_BYTES_BUDGET {
            return;
        }
        let day = |l: &Lot| l.expires_at_ms.map(|at| at.div_euclid(DAY_MS));
        let mut merged: Vec<Lot> = Vec::new();
        let mut kept = Vec::with_capacity(self.lots.len());
        let mut by_age: Vec<(Millis, usize)> = self.lots.iter().enumerate().map(|(i, l)| (l.earned_at_ms, i)).collect();
        by_age.sort_unstable_by(|a, b| b.cmp(a));
        let newest: HashSet<usize> = by_age.into_iter().take(UNMERGED_LOTS).map(|(_, i)| i).collect();
        for (i, lot) in std::mem::take(&mut self.lots).into_iter().enumerate() {
            if newest.contains(&i) || !lot.is_active() || held_from.contains(lot.id.as_str()) {
                kept.push(lot);
                continue;
            }
            let key = day(&lot);
            match merged.iter_mut().find(|m| day(m) == key) {
                Some(m) => {
                    m.remaining += lot.remaining;
                    m.expires_at_ms = m.expires_at_ms.max(lot.expires_at_ms);
                }
                None => merged.push(Lot {
                    // The day and its first lot's date: apart from an earlier
                    // merged lot of that day that a hold keeps out of the merge.
                    id: format!(
                        "merged/{}/{}",
                        key.map_or_else(|| "never".to_owned(), |d| d.to_string()),
                        lot.earned_at_ms
                    ),
                    ..lot
                }),
            }
        }
        merged.extend(kept);
        merged.sort_by_key(Lot::spend_key);
        self.lots = merged;
        self.recount();
        self.compacted_bytes = self.bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lots::tests::lot;

    #[test]
    fn past_the_budget_lots_expiring_the_same_day_merge_and_no_point_expires_earlier() {
        let mut l = Lots::default();
        let long = "order-".repeat(3);
        let day = 86_400_000;
        for i in 0..5_000 {
            l.add(Lot { earned_at_ms: i, ..lot(&format!("{long}{i}"), 1, None, Some(day * (i % 10) + i)) });
        }
        l.add(lot("pending", 3, Some(1), None));
        l.add(lot("never", 2, None, None));
        let before = (l.active(), l.pending());
        l.compact(&HashSet::new());
        assert_eq!((l.active(), l.pending()), before, "merging keeps every point");
        // Ten expiry days and "never" merged; the newest 1,000 and the pending lot as they were.
        assert_eq!(l.lots.len(), 11 + UNMERGED_LOTS + 1);
        let tail: Vec<_> =
            l.lots.iter().rev().take(2).map(|l| l.id.split('/').take(2).collect::<Vec<_>>().join("/")).collect();
        assert_eq!(tail, ["pending", "merged/never"], "spending order: never-expiring last, oldest first");
        assert!(l.get(&format!("{long}4999")).is_some() && l.get(&format!("{long}3999")).is_none());
        assert!(l.approximate_bytes() < LOTS_BYTES_BUDGET);
        let first = l.lots.iter().find(|m| m.id.starts_with("merged/0/")).unwrap();
        assert_eq!(first.expires_at_ms, Some(4_490), "the latest time of the day among the merged");
    }
}
