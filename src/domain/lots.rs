//! Lots: where an account's points came from, when they become spendable and
//! when they expire. Every accrual (and every positive correction or
//! returned redemption) is one lot; spending takes from the active lots that
//! expire soonest, oldest first among equal dates, and records which lots it
//! drew from, so a refund or an expiry acts on the right points.
//!
//! The balance is `sum(active lots) - debt`. Debt exists only when a
//! clawback is allowed below zero; while there is debt every active lot is
//! empty, and points that arrive pay it first.

use serde::{Deserialize, Serialize};

use super::time::Millis;

/// One lot. Serialized as a compact array: an account may carry thousands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "LotTuple", into = "LotTuple")]
pub struct Lot {
    /// The event that created it (an accrual's event id, or a correction's).
    pub id: String,
    /// Points left in it (not spent, not held, not expired).
    pub remaining: i64,
    /// When it was earned.
    pub earned_at_ms: Millis,
    /// While pending: when it becomes spendable. `None` once active.
    pub pending_until_ms: Option<Millis>,
    /// When what remains of it expires; `None`: never.
    pub expires_at_ms: Option<Millis>,
}

type LotTuple = (String, i64, Millis, Option<Millis>, Option<Millis>);

impl From<LotTuple> for Lot {
    fn from((id, remaining, earned_at_ms, pending_until_ms, expires_at_ms): LotTuple) -> Self {
        Self { id, remaining, earned_at_ms, pending_until_ms, expires_at_ms }
    }
}

impl From<Lot> for LotTuple {
    fn from(l: Lot) -> Self {
        (l.id, l.remaining, l.earned_at_ms, l.pending_until_ms, l.expires_at_ms)
    }
}

impl Lot {
    /// Whether its points are spendable.
    pub fn is_active(&self) -> bool {
        self.pending_until_ms.is_none()
    }

    /// About how many bytes it takes in JSON.
    pub(super) fn approximate_size(&self) -> usize {
        self.id.len() + 48
    }

    /// Sort key of the spending order: soonest expiry first, never last.
    pub(super) fn spend_key(&self) -> Millis {
        self.expires_at_ms.unwrap_or(Millis::MAX)
    }
}

/// Points one entry took from (or gave to) one lot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(String, i64)", into = "(String, i64)")]
pub struct Draw {
    /// The lot's id.
    pub lot: String,
    /// How many points.
    pub points: i64,
}

impl From<(String, i64)> for Draw {
    fn from((lot, points): (String, i64)) -> Self {
        Self { lot, points }
    }
}

impl From<Draw> for (String, i64) {
    fn from(d: Draw) -> Self {
        (d.lot, d.points)
    }
}

/// Id under which points without a lot of their own are tracked: the
/// balance of a state another worker made, never expiring.
pub const CARRIED_LOT: &str = "carried/";

/// An account's lots and its debt. The sums of active and pending points
/// are kept beside the lots (and recounted when a state is read), so the
/// hot path of an accrual never walks thousands of lots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "LotsWire")]
pub struct Lots {
    /// Live lots in spending order: soonest expiry first, never-expiring
    /// last, oldest first among equal dates; so a spend walks from the front
    /// and stops. Change them only through the methods, which keep the
    /// order and the sums.
    pub lots: Vec<Lot>,
    /// Points owed after a clawback allowed below zero.
    #[serde(skip_serializing_if = "is_zero")]
    pub debt: i64,
    #[serde(skip)]
    pub(super) active_sum: i64,
    #[serde(skip)]
    pub(super) pending_sum: i64,
    /// Pending lots with points.
    #[serde(skip)]
    pub(super) pending_count: usize,
    /// Lots with nothing left, not dropped yet.
    #[serde(skip)]
    pub(super) empties: usize,
    /// About how many bytes the lots take in JSON.
    #[serde(skip)]
    pub(super) bytes: usize,
    /// Bytes right after the last compaction: when the newest lots alone
    /// exceed the budget, merging again waits until a quarter more arrived.
    #[serde(skip)]
    pub(super) compacted_bytes: usize,
}

#[derive(Deserialize)]
struct LotsWire {
    #[serde(default)]
    lots: Vec<Lot>,
    #[serde(default)]
    debt: i64,
}

impl From<LotsWire> for Lots {
    fn from(w: LotsWire) -> Self {
        let mut lots = Self { lots: w.lots, debt: w.debt, ..Self::default() };
        lots.lots.sort_by_key(Lot::spend_key);
        lots.recount();
        lots
    }
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Lots {
    /// Spendable points in active lots (before debt).
    pub fn active(&self) -> i64 {
        self.active_sum
    }

    /// Points earned but not spendable yet.
    pub fn pending(&self) -> i64 {
        self.pending_sum
    }

    /// Recomputes the sums from the lots.
    pub fn recount(&mut self) {
        self.active_sum = self.lots.iter().filter(|l| l.is_active()).map(|l| l.remaining).sum();
        self.pending_sum = self.lots.iter().filter(|l| !l.is_active()).map(|l| l.remaining).sum();
        self.pending_count = self.lots.iter().filter(|l| !l.is_active() && l.remaining > 0).count();
        self.empties = self.lots.iter().filter(|l| l.remaining == 0).count();
        self.bytes = self.lots.iter().map(Lot::approximate_size).sum();
    }

    /// Whether the kept sums and counts match the lots (for tests).
    pub fn sums_hold(&self) -> bool {
        let mut fresh = self.clone();
        fresh.recount();
        fresh == *self
    }

    /// The lot `id`, if live.
    pub fn get(&self, id: &str) -> Option<&Lot> {
        self.lots.iter().find(|l| l.id == id)
    }

    /// Adds a lot. An active lot pays debt first; returns what it paid.
    pub fn add(&mut self, mut lot: Lot) -> i64 {
        let paid = if lot.is_active() { self.pay_debt(&mut lot.remaining) } else { 0 };
        if lot.is_active() {
            self.active_sum += lot.remaining;
        } else {
            self.pending_sum += lot.remaining;
            self.pending_count += usize::from(lot.remaining > 0);
        }
        self.empties += usize::from(lot.remaining == 0);
        self.insert(lot);
        paid
    }

    /// Inserts in spending order, after every lot of the same date (usually
    /// at the end: later lots expire later).
    fn insert(&mut self, lot: Lot) {
        let key = lot.spend_key();
        let at = self.lots.partition_point(|l| l.spend_key() <= key);
        self.bytes += lot.approximate_size();
        self.lots.insert(at, lot);
    }

    fn pay_debt(&mut self, points: &mut i64) -> i64 {
        let paid = (*points).min(self.debt).max(0);
        self.debt -= paid;
        *points -= paid;
        paid
    }

    /// Takes `points` from active lots: `first` (a reversal's own lot) before
    /// the others, then soonest expiry first. Takes what there is; the
    /// draws say how much that was.
    pub fn spend(&mut self, points: i64, first: Option<&str>) -> Vec<Draw> {
        let mut left = points;
        let mut draws = Vec::new();
        let mut emptied = 0;
        let mut take_from = |lot: &mut Lot, left: &mut i64| {
            let take = lot.remaining.min(*left);
            if take > 0 && lot.is_active() {
                lot.remaining -= take;
                *left -= take;
                emptied += usize::from(lot.remaining == 0);
                draws.push(Draw { lot: lot.id.clone(), points: take });
            }
        };
        if let Some(own) = first.and_then(|id| self.lots.iter_mut().find(|l| l.id == id)) {
            take_from(own, &mut left);
        }
        for lot in self.lots.iter_mut() {
            if left == 0 {
                break;
            }
            take_from(lot, &mut left);
        }
        self.active_sum -= points - left;
        self.empties += emptied;
        draws
    }

    /// Gives drawn points back to their lots (a released hold, the
    /// uncaptured rest of a hold): debt is paid first. A lot compacted away
    /// meanwhile is made again, never expiring, so no point is lost.
    pub fn give_back(&mut self, draws: &[Draw], now: Millis) {
        for d in draws {
            let mut points = d.points;
            self.pay_debt(&mut points);
            self.active_sum += points;
            match self.lots.iter_mut().find(|l| l.id == d.lot) {
                Some(lot) => {
                    if lot.remaining == 0 && points > 0 {
                        self.empties -= 1;
                    }
                    lot.remaining += points;
                }
                None if points > 0 => self.insert(Lot {
                    id: d.lot.clone(),
                    remaining: points,
                    earned_at_ms: now,
                    pending_until_ms: None,
                    expires_at_ms: None,
                }),
                None => {}
            }
        }
    }

    /// Takes `points` from the pending lot `id` (a reversal of an accrual
    /// not active yet). Returns what it took.
    pub fn take_pending(&mut self, id: &str, points: i64) -> i64 {
        match self.lots.iter_mut().find(|l| l.id == id && !l.is_active()) {
            Some(lot) => {
                let take = lot.remaining.min(points);
                lot.remaining -= take;
                self.pending_sum -= take;
                if take > 0 && lot.remaining == 0 {
                    self.pending_count -= 1;
                    self.empties += 1;
                }
                take
            }
            None => 0,
        }
    }

    /// Adds to the debt (a clawback allowed below zero).
    pub fn owe(&mut self, points: i64) {
        self.debt += points;
    }

    /// The earliest time something happens to the lots: an activation, or
    /// an expiry of a lot that still holds points.
    pub fn next_due(&self) -> Option<Millis> {
        [self.next_activation(), self.next_expiry()].into_iter().flatten().min()
    }

    /// When the next pending lot becomes active.
    pub fn next_activation(&self) -> Option<Millis> {
        if self.pending_count == 0 {
            return None;
        }
        self.lots.iter().filter(|l| l.remaining > 0).filter_map(|l| l.pending_until_ms).min()
    }

    /// When the next active points expire: the first active lot with points
    /// in spending order (the soonest expiry) says.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.lots.iter().find(|l| l.is_active() && l.remaining > 0).and_then(|l| l.expires_at_ms)
    }

    /// Activates every pending lot due at the earliest pending time, if that
    /// is at or before `now`. Active points pay debt first.
    pub fn activate_due(&mut self, now: Millis) -> Option<Vec<Draw>> {
        let at = self.next_activation().filter(|&at| at <= now)?;
        let mut draws = Vec::new();
        let mut debt = self.debt;
        for lot in self.lots.iter_mut().filter(|l| l.remaining > 0 && l.pending_until_ms == Some(at)) {
            lot.pending_until_ms = None;
            draws.push(Draw { lot: lot.id.clone(), points: lot.remaining });
            let paid = lot.remaining.min(debt).max(0);
            debt -= paid;
            self.pending_sum -= lot.remaining;
            self.pending_count -= 1;
            lot.remaining -= paid;
            self.active_sum += lot.remaining;
            self.empties += usize::from(lot.remaining == 0);
        }
        self.debt = debt;
        Some(draws)
    }

    /// Expires what remains of every active lot due at the earliest expiry,
    /// if that is at or before `now`.
    pub fn expire_due(&mut self, now: Millis) -> Option<Vec<Draw>> {
        let at = self.next_expiry().filter(|&at| at <= now)?;
        let mut draws = Vec::new();
        for lot in self.lots.iter_mut().filter(|l| l.is_active() && l.remaining > 0 && l.expires_at_ms == Some(at)) {
            draws.push(Draw { lot: lot.id.clone(), points: lot.remaining });
            lot.remaining = 0;
        }
        self.active_sum -= drawn(&draws);
        self.empties += draws.len();
        Some(draws)
    }

    /// Expires every active point (inactivity).
    pub fn expire_all(&mut self) -> Vec<Draw> {
        let mut draws = Vec::new();
        for lot in self.lots.iter_mut().filter(|l| l.is_active() && l.remaining > 0) {
            draws.push(Draw { lot: lot.id.clone(), points: lot.remaining });
            lot.remaining = 0;
        }
        self.active_sum -= drawn(&draws);
        self.empties += draws.len();
        draws
    }

    /// About how many bytes the lots take in JSON.
    pub fn approximate_bytes(&self) -> usize {
        self.bytes
    }

    /// Points expiring in `[from, until)`, and the next expiry after `from`
    /// with its amount.
    pub fn expiring(&self, from: Millis, until: Millis) -> (i64, Option<(Millis, i64)>) {
        let live = self.lots.iter().filter(|l| l.is_active() && l.remaining > 0);
        let mut within = 0;
        let mut next: Option<(Millis, i64)> = None;
        for (at, points) in live.filter_map(|l| l.expires_at_ms.map(|at| (at, l.remaining))) {
            if at >= from && at < until {
                within += points;
            }
            next = match next {
                Some((n, p)) if n == at => Some((n, p + points)),
                Some((n, _)) if n < at => next,
                _ => Some((at, points)),
            };
        }
        (within, next)
    }
}

/// Sum of draws.
pub fn drawn(draws: &[Draw]) -> i64 {
    draws.iter().map(|d| d.points).sum()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A lot earned at 0.
    pub(in crate::domain) fn lot(id: &str, points: i64, pending: Option<Millis>, expires: Option<Millis>) -> Lot {
        Lot { id: id.into(), remaining: points, earned_at_ms: 0, pending_until_ms: pending, expires_at_ms: expires }
    }

    #[test]
    fn spending_takes_the_soonest_expiry_first_and_oldest_among_equals() {
        let mut l = Lots::default();
        l.add(lot("never", 100, None, None));
        l.add(lot("late", 100, None, Some(50)));
        l.add(lot("soon-old", 10, None, Some(20)));
        l.add(lot("soon-new", 10, None, Some(20)));
        l.add(lot("pending", 100, Some(5), Some(1)));
        let draws = l.spend(130, None);
        let ids: Vec<_> = draws.iter().map(|d| (d.lot.as_str(), d.points)).collect();
        assert_eq!(ids, vec![("soon-old", 10), ("soon-new", 10), ("late", 100), ("never", 10)]);
        assert_eq!((l.active(), l.pending()), (90, 100), "pending points are never spent");
        assert_eq!(drawn(&l.spend(1_000, None)), 90, "takes what there is");
    }

    #[test]
    fn a_reversal_takes_its_own_lot_first() {
        let mut l = Lots::default();
        l.add(lot("a", 50, None, Some(10)));
        l.add(lot("b", 50, None, None));
        let draws = l.spend(60, Some("b"));
        assert_eq!(draws, vec![Draw { lot: "b".into(), points: 50 }, Draw { lot: "a".into(), points: 10 }]);
    }

    #[test]
    fn lots_activate_and_expire_at_their_times_and_pay_debt_first() {
        let mut l = Lots::default();
        l.owe(30);
        assert_eq!(l.add(lot("p", 100, Some(10), Some(20))), 0, "pending points do not pay debt");
        assert_eq!(l.next_due(), Some(10));
        assert_eq!(l.activate_due(9), None);
        assert_eq!(drawn(&l.activate_due(15).unwrap()), 100, "the lot due at 10");
        assert_eq!((l.active(), l.debt), (70, 0));
        assert_eq!(l.next_due(), Some(20));
        assert_eq!(drawn(&l.expire_due(25).unwrap()), 70, "what remains of the lot due at 20");
        assert_eq!(l.next_due(), None);
        l.compact(&std::collections::HashSet::new());
        assert!(l.lots.is_empty(), "an expired lot leaves the state");
    }

    #[test]
    fn given_back_points_return_to_their_lot_or_a_new_one() {
        let mut l = Lots::default();
        l.add(lot("a", 10, None, Some(5)));
        let held = l.spend(10, None);
        let keep: std::collections::HashSet<&str> = ["a"].into();
        l.compact(&keep);
        assert_eq!(l.lots.len(), 1, "a lot a hold draws on stays");
        l.give_back(&held, 3);
        assert_eq!(l.get("a").unwrap().remaining, 10);
        l.lots.clear();
        l.recount();
        l.give_back(&held, 3);
        assert_eq!((l.get("a").unwrap().remaining, l.get("a").unwrap().expires_at_ms), (10, None));
    }

    #[test]
    fn the_next_expiry_and_what_expires_in_a_window() {
        let mut l = Lots::default();
        l.add(lot("a", 10, None, Some(100)));
        l.add(lot("b", 5, None, Some(100)));
        l.add(lot("c", 7, None, Some(300)));
        l.add(lot("d", 9, Some(1), Some(50)));
        assert_eq!(l.expiring(0, 200), (15, Some((100, 15))));
    }

    #[test]
    fn a_lot_serializes_compactly() {
        let json = serde_json::to_string(&lot("order-1", 100, None, Some(1_800_000_000_000))).unwrap();
        assert_eq!(json, r#"["order-1",100,0,null,1800000000000]"#);
    }
}
