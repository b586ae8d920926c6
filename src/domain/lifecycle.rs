//! The lifecycle of a point on the account's own clock: pending points
//! activate, lots and idle balances expire, holds release themselves; and
//! holds at checkout are made, captured and released.
//!
//! Time is the workflow's: every decision is taken at `now` from the
//! workflow context, and [`LoyaltyState::advance`] first applies everything
//! due by then, in due order, each entry dated at its due time. So an
//! account whose worker was down applies a missed expiry when it returns,
//! dated when it was due, and a redemption never spends points that expired
//! before it arrived. The run loop sleeps on one timer until
//! [`LoyaltyState::next_due`].

use std::collections::HashSet;

use super::account::Rejection;
use super::entry::RESULTS_WINDOW;
use super::holds::{
    CaptureRequest, FINISHED_HOLDS_WINDOW, Hold, HoldEnd, HoldRecord, HoldResult, HoldStatus, MAX_OPEN_HOLDS,
    ReleaseRequest, ReserveRequest, capture_movement, hold_entry_id, split_draws,
};
use super::lots::{CARRIED_LOT, Lot, Millis, drawn};
use super::messages::{EntryKind, LoyaltyState};
use super::movement::{Effect, Movement};
use super::program::DAY_MS;

/// Most lots an announcement lists (its amount counts every lot).
pub const ANNOUNCED_LOTS: usize = 100;

/// The window of "expiring soon" in the summary: 30 days.
pub const EXPIRING_SOON_MS: Millis = 30 * 86_400_000;

/// How a correction treats lots, set by the gRPC layer from the program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Terms {
    /// A clawback beyond the balance takes it below zero.
    pub allow_negative: bool,
    /// When points a correction adds expire.
    pub expires_at_ms: Option<Millis>,
}

/// Whether `id` is one the account makes for its own entries (it contains
/// `/`, which the event id alphabet does not allow).
pub fn is_system_id(id: &str) -> bool {
    id.contains('/')
}

impl LoyaltyState {
    /// Points set aside by open holds.
    pub fn held_points(&self) -> i64 {
        self.holds.iter().map(|h| h.points).sum()
    }

    /// The earliest time something is due: a pending lot, a lot's expiry,
    /// a hold's deadline or the inactivity deadline.
    pub fn next_due(&self) -> Option<Millis> {
        let holds = self.holds.iter().map(|h| h.expires_at_ms).min();
        [self.lots.next_due(), holds, self.inactivity_deadline(), self.next_warning()].into_iter().flatten().min()
    }

    /// When points expiring at `expires_at` are announced, if this run
    /// announces expiries.
    pub(super) fn warning_time(&self, expires_at: Option<Millis>) -> Option<Millis> {
        let on = self.expiry_warnings && self.expiry_warning_ms > 0;
        expires_at.filter(|&at| on && at > self.warned_until_ms).map(|at| at.saturating_sub(self.expiry_warning_ms))
    }

    /// When the next announcement is due: the soonest active lot with points
    /// that expires after what was announced.
    fn next_warning(&self) -> Option<Millis> {
        if !self.expiry_warnings || self.expiry_warning_ms == 0 {
            return None;
        }
        // Lots are in expiry order, never-expiring last: stop there.
        let lot = self.lots.lots.iter().take_while(|l| l.expires_at_ms.is_some()).find(|l| {
            l.is_active() && l.remaining > 0 && l.expires_at_ms.is_some_and(|at| at > self.warned_until_ms)
        })?;
        // A lot earned inside its warning period is announced when earned.
        self.warning_time(lot.expires_at_ms).map(|at| at.max(lot.earned_at_ms))
    }

    /// Lets this run announce expiries (the workflow's `expiry-warnings`
    /// marker); what is due is looked at again.
    pub fn enable_expiry_warnings(&mut self) {
        self.expiry_warnings = true;
        self.forget_due();
    }

    /// Announces, at `at`, the active points expiring within the warning
    /// period from then (and up to a day more, so lots earned on the same
    /// day make one announcement): one `expiring` entry that moves nothing.
    fn warn(&mut self, at: Millis) {
        let group = self.expiry_warning_ms.min(DAY_MS);
        let until = at.saturating_add(self.expiry_warning_ms).saturating_add(group);
        let mut draws = Vec::new();
        let (mut first, mut points): (Option<Millis>, i64) = (None, 0);
        for lot in self.lots.lots.iter().filter(|l| l.is_active() && l.remaining > 0) {
            match lot.expires_at_ms {
                Some(exp) if exp > self.warned_until_ms && exp <= until => {
                    first = Some(first.map_or(exp, |f| f.min(exp)));
                    points += lot.remaining;
                    // The soonest lots name it; the amount counts them all.
                    if draws.len() < ANNOUNCED_LOTS {
                        draws.push(super::lots::Draw { lot: lot.id.clone(), points: lot.remaining });
                    }
                }
                _ => {}
            }
        }
        self.warned_until_ms = until;
        let Some(first) = first else { return };
        let effect = Effect { requested: points, balance_delta: 0, lifetime_delta: 0, shortfall: 0 };
        let reason = format!("expiring from {}", super::events::rfc3339(first));
        let m = self.own_movement(EntryKind::Expiring, "expiring", points, &reason);
        self.push_entry(m, effect, draws, at);
        if let Some(entry) = self.unprojected.last_mut() {
            entry.expires_at_ms = Some(first);
        }
    }

    fn inactivity_deadline(&self) -> Option<Millis> {
        (self.expire_inactive_after_ms > 0 && self.lots.active() > 0)
            .then(|| self.last_activity_ms.saturating_add(self.expire_inactive_after_ms))
    }

    /// Moves the account's clock to `now` and applies, in due order, every
    /// activation, expiry and hold deadline due by then. Returns how many
    /// entries that made. Does nothing while the account waits to take over
    /// from the previous version (its totals are not final yet).
    pub fn advance(&mut self, now: Millis) -> usize {
        if self.needs_settling() {
            return 0;
        }
        self.clock_ms = self.clock_ms.max(now);
        let now = self.clock_ms;
        if !self.lots_tracked {
            self.track_lots(now);
            self.due_hint = None;
        }
        if self.due_hint.is_some_and(|hint| now < hint) {
            return 0;
        }
        let seq = self.seq;
        loop {
            let activation = self.lots.next_activation();
            let expiry = self.lots.next_expiry();
            let hold = self.holds.iter().map(|h| h.expires_at_ms).min();
            let idle = self.inactivity_deadline();
            let warning = self.next_warning();
            // Ties: activate first, then give holds back, then expire; an
            // announcement last, so it counts only points still there.
            let Some((at, what)) = [(activation, 0), (hold, 1), (expiry, 2), (idle, 3), (warning, 4)]
                .into_iter()
                .filter_map(|(at, what)| at.map(|at| (at, what)))
                .min()
                .filter(|&(at, _)| at <= now)
            else {
                break;
            };
            match what {
                0 => {
                    let due = self.lots.activate_due(at).expect("due");
                    let points = drawn(&due.draws);
                    let effect =
                        Effect { requested: points, balance_delta: points, lifetime_delta: points, shortfall: 0 };
                    let m = self.own_movement(EntryKind::Activation, "activation", points, "pending period over");
                    self.push_entry(m, effect, due.draws, at);
                }
                1 => {
                    let i = self.holds.iter().position(|h| h.expires_at_ms == at).expect("due");
                    self.end_hold(i, HoldEnd::Expired, at);
                }
                2 => {
                    let due = self.lots.expire_due(at).expect("due");
                    self.expire(due.draws, "lot expired", at);
                }
                3 => {
                    let draws = self.lots.expire_all();
                    self.expire(draws, "inactivity", at);
                }
                _ => self.warn(at),
            }
        }
        self.due_hint = Some(self.next_due().unwrap_or(Millis::MAX));
        (self.seq - seq) as usize
    }

    /// Something may now be due at `at`: the hint must not be later.
    pub(super) fn may_be_due(&mut self, at: Option<Millis>) {
        if let (Some(hint), Some(at)) = (self.due_hint, at) {
            self.due_hint = Some(hint.min(at));
        }
    }

    /// What is due may have changed in any way: look again next time.
    pub(super) fn forget_due(&mut self) {
        self.due_hint = None;
    }

    /// A state carried from before lots existed: its balance becomes one
    /// never-expiring lot, and its inactivity clock starts now.
    pub(super) fn track_lots(&mut self, now: Millis) {
        // Whatever the lots do not account for (the whole balance, in a state
        // carried from before lots) is one never-expiring lot.
        let untracked = self.points_balance - (self.lots.active() - self.lots.debt);
        if untracked > 0 {
            self.lots.add(Lot {
                id: CARRIED_LOT.into(),
                remaining: untracked,
                earned_at_ms: now,
                pending_until_ms: None,
                expires_at_ms: None,
            });
        }
        self.last_activity_ms = self.last_activity_ms.max(now);
        self.lots_tracked = true;
    }

    fn expire(&mut self, draws: Vec<super::lots::Draw>, why: &str, at: Millis) {
        let points = drawn(&draws);
        if points == 0 {
            return;
        }
        let effect = Effect { requested: points, balance_delta: -points, lifetime_delta: 0, shortfall: 0 };
        let m = self.own_movement(EntryKind::Expiry, "expiry", points, why);
        self.push_entry(m, effect, draws, at);
    }

    /// An entry the account makes itself, named by its sequence number.
    fn own_movement(&self, kind: EntryKind, name: &str, points: i64, reason: &str) -> Movement {
        Movement {
            event_id: format!("{name}/{}", self.seq + 1),
            kind,
            points,
            reason: reason.into(),
            source: String::new(),
            reverses: None,
        }
    }

    /// Drops spent and expired lots (and merges lots past the budget) when
    /// enough have piled up; the run loop calls it once per turn, and
    /// [`LoyaltyState::compact_lots`] before carrying the state over.
    pub fn tidy_lots(&mut self) {
        if self.lots.needs_compaction() {
            self.compact_lots();
        }
    }

    /// Drops spent and expired lots (and merges lots past the budget).
    pub fn compact_lots(&mut self) {
        let held: HashSet<&str> = self.holds.iter().flat_map(|h| h.draws.iter().map(|d| d.lot.as_str())).collect();
        self.lots.compact(&held);
    }

    /// The answer to a resent Reserve, or `None` for a new hold the account
    /// can afford.
    pub fn plan_reserve(&self, req: &ReserveRequest) -> Result<Option<HoldResult>, Rejection> {
        req.validate()?;
        let same = |h: &Hold| h.points == req.points && h.ttl_ms == req.ttl_ms;
        if let Some(h) = self.holds.iter().find(|h| h.hold_id == req.hold_id) {
            return if same(h) { Ok(Some(self.open_result(h))) } else { Err(self.reused(&req.hold_id)) };
        }
        if let Some(r) = self.finished_holds.iter().find(|r| r.hold.hold_id == req.hold_id) {
            return if same(&r.hold) { Ok(Some(self.finished_result(r))) } else { Err(self.reused(&req.hold_id)) };
        }
        if req.ledger_known {
            // The ledger has a hold under this id that the account no longer remembers.
            return Err(self.reused(&req.hold_id));
        }
        if !self.is_active {
            return Err(Rejection::Inactive);
        }
        if self.holds.len() >= MAX_OPEN_HOLDS {
            return Err(Rejection::TooManyHolds(MAX_OPEN_HOLDS));
        }
        if req.points > self.points_balance {
            return Err(Rejection::Insufficient { requested: req.points, available: self.points_balance });
        }
        Ok(None)
    }

    /// Sets points aside for a checkout; idempotent by `hold_id`.
    pub fn reserve(&mut self, req: &ReserveRequest, now: Millis) -> Result<HoldResult, Rejection> {
        if let Some(done) = self.plan_reserve(req)? {
            return Ok(done);
        }
        let draws = self.lots.spend(req.points, None);
        let hold = Hold {
            hold_id: req.hold_id.clone(),
            points: req.points,
            ttl_ms: req.ttl_ms,
            expires_at_ms: now.saturating_add(req.ttl_ms),
            draws: draws.clone(),
        };
        self.may_be_due(Some(hold.expires_at_ms));
        self.holds.push(hold.clone());
        let effect = Effect { requested: req.points, balance_delta: -req.points, lifetime_delta: 0, shortfall: 0 };
        let m = hold_movement(EntryKind::Hold, hold_entry_id(&req.hold_id), req.points, "");
        self.push_entry(m, effect, draws, now);
        Ok(self.open_result(&hold))
    }

    /// The answer to a resent Capture, or `None` for a capture of an open hold.
    pub fn plan_capture(&self, req: &CaptureRequest) -> Result<Option<HoldResult>, Rejection> {
        req.validate()?;
        if let Some(h) = self.holds.iter().find(|h| h.hold_id == req.hold_id) {
            if req.points > h.points {
                return Err(super::error::FieldError::new(
                    "points",
                    format!("{} exceeds the {} points hold {} sets aside", req.points, h.points, h.hold_id),
                )
                .into());
            }
            if self.processed_event_ids.contains(&req.event_id) {
                return Err(Rejection::EventIdReused(req.event_id.clone()));
            }
            return if self.is_active { Ok(None) } else { Err(Rejection::Inactive) };
        }
        match self.finished_holds.iter().find(|r| r.hold.hold_id == req.hold_id) {
            Some(r) => match &r.end {
                HoldEnd::Captured { event_id, points, reward }
                    if *event_id == req.event_id && *points == req.points && *reward == req.reward =>
                {
                    Ok(Some(self.finished_result(r)))
                }
                HoldEnd::Captured { event_id, .. } if *event_id == req.event_id => Err(self.reused(&req.event_id)),
                HoldEnd::Captured { .. } => {
                    Err(Rejection::HoldNotOpen { hold_id: req.hold_id.clone(), status: HoldStatus::Captured })
                }
                _ => Err(Rejection::HoldNotOpen { hold_id: req.hold_id.clone(), status: r.status().0 }),
            },
            None => Err(Rejection::HoldNotFound(req.hold_id.clone())),
        }
    }

    /// Spends (part of) a hold; the rest goes back. Idempotent by `event_id`.
    pub fn capture(&mut self, req: &CaptureRequest, now: Millis) -> Result<HoldResult, Rejection> {
        if let Some(done) = self.plan_capture(req)? {
            return Ok(done);
        }
        let i = self.holds.iter().position(|h| h.hold_id == req.hold_id).expect("planned");
        let end = HoldEnd::Captured { event_id: req.event_id.clone(), points: req.points, reward: req.reward.clone() };
        self.last_activity_ms = now;
        Ok(self.end_hold(i, end, now))
    }

    /// The answer to a Release: `None` when the hold is open and is released now.
    pub fn plan_release(&self, req: &ReleaseRequest) -> Result<Option<HoldResult>, Rejection> {
        req.validate()?;
        if self.holds.iter().any(|h| h.hold_id == req.hold_id) {
            return Ok(None);
        }
        match self.finished_holds.iter().find(|r| r.hold.hold_id == req.hold_id) {
            Some(r) if matches!(r.end, HoldEnd::Captured { .. }) => {
                Err(Rejection::HoldNotOpen { hold_id: req.hold_id.clone(), status: HoldStatus::Captured })
            }
            Some(r) => Ok(Some(self.finished_result(r))),
            None => Err(Rejection::HoldNotFound(req.hold_id.clone())),
        }
    }

    /// Gives a hold's points back; releasing a released or expired hold
    /// answers as before.
    pub fn release(&mut self, req: &ReleaseRequest, now: Millis) -> Result<HoldResult, Rejection> {
        if let Some(done) = self.plan_release(req)? {
            return Ok(done);
        }
        let i = self.holds.iter().position(|h| h.hold_id == req.hold_id).expect("planned");
        Ok(self.end_hold(i, HoldEnd::Released, now))
    }

    /// Ends open hold `i`: a capture spends what it asks (soonest-expiring
    /// draws first) and gives back the rest; a release or deadline gives
    /// back everything. One entry records it.
    fn end_hold(&mut self, i: usize, end: HoldEnd, at: Millis) -> HoldResult {
        // Points given back may land in a lot whose date has passed.
        self.forget_due();
        let hold = self.holds.remove(i);
        let (m, effect, draws) = match &end {
            HoldEnd::Captured { event_id, points, reward } => {
                let (spent, back) = split_draws(&hold.draws, *points);
                self.lots.give_back(&back, at);
                let effect =
                    Effect { requested: *points, balance_delta: hold.points - points, lifetime_delta: 0, shortfall: 0 };
                (capture_movement(&hold.hold_id, event_id, *points, reward), effect, spent)
            }
            HoldEnd::Released | HoldEnd::Expired => {
                self.lots.give_back(&hold.draws, at);
                let why = if end == HoldEnd::Expired { "hold expired" } else { "released" };
                let effect =
                    Effect { requested: hold.points, balance_delta: hold.points, lifetime_delta: 0, shortfall: 0 };
                (
                    hold_movement(EntryKind::Release, format!("release/{}", hold.hold_id), hold.points, why),
                    effect,
                    hold.draws.clone(),
                )
            }
        };
        let seq = self.push_entry(m, effect, draws, at);
        // A finished hold answers resends; its draws are in the ledger.
        let hold = Hold { draws: Vec::new(), ..hold };
        self.finished_holds.push(HoldRecord { hold, end, seq });
        self.trim_finished_holds();
        let record = self.finished_holds.last().expect("just pushed").clone();
        self.finished_result(&record)
    }

    /// Gives every open hold back (the account is closing).
    pub fn release_all_holds(&mut self, now: Millis) {
        while !self.holds.is_empty() {
            self.end_hold(0, HoldEnd::Released, now);
        }
    }

    /// Keeps every finished hold the ledger does not hold yet and the newest
    /// [`FINISHED_HOLDS_WINDOW`] of the others.
    fn trim_finished_holds(&mut self) {
        let projected = self.projected_seq;
        let done = self.finished_holds.iter().filter(|r| r.seq <= projected).count();
        let mut excess = done.saturating_sub(FINISHED_HOLDS_WINDOW.max(RESULTS_WINDOW));
        self.finished_holds.retain(|r| {
            if excess > 0 && r.seq <= projected {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }

    fn reused(&self, id: &str) -> Rejection {
        Rejection::EventIdReused(id.to_owned())
    }

    fn open_result(&self, h: &Hold) -> HoldResult {
        HoldResult {
            hold_id: h.hold_id.clone(),
            status: HoldStatus::Held,
            held: h.points,
            captured: 0,
            expires_at_ms: h.expires_at_ms,
            points_balance: self.points_balance,
            held_points: self.held_points(),
        }
    }

    fn finished_result(&self, r: &HoldRecord) -> HoldResult {
        let (status, captured) = r.status();
        HoldResult {
            hold_id: r.hold.hold_id.clone(),
            status,
            held: r.hold.points,
            captured,
            expires_at_ms: r.hold.expires_at_ms,
            points_balance: self.points_balance,
            held_points: self.held_points(),
        }
    }
}

fn hold_movement(kind: EntryKind, event_id: String, points: i64, reason: &str) -> Movement {
    Movement { event_id, kind, points, reason: reason.into(), source: String::new(), reverses: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::messages::{PointsEvent, RedemptionRequest, ReversalRequest};
    use crate::domain::tier::Tier;

    fn accrual(id: &str, points: i64, active_from: Option<Millis>, expires: Option<Millis>) -> PointsEvent {
        PointsEvent {
            event_id: id.into(),
            points,
            ledger_checked: true,
            active_from_ms: active_from,
            expires_at_ms: expires,
            ..Default::default()
        }
    }

    fn reserve(id: &str, points: i64, ttl_ms: Millis) -> ReserveRequest {
        ReserveRequest { hold_id: id.into(), points, ttl_ms, ledger_known: false }
    }

    fn clawback(id: &str, original: &str) -> Movement {
        ReversalRequest {
            event_id: id.into(),
            original_event_id: original.into(),
            reason: "refund".into(),
            ..Default::default()
        }
        .movement()
        .unwrap()
    }

    impl LoyaltyState {
        fn hold_draws(&self, id: &str) -> Vec<(String, i64)> {
            let hold = self.holds.iter().find(|h| h.hold_id == id).unwrap();
            hold.draws.iter().map(|d| (d.lot.clone(), d.points)).collect()
        }
    }

    #[test]
    fn a_pending_lot_is_not_spendable_nor_counted_until_it_activates_at_its_time() {
        let mut s = LoyaltyState::open("c");
        s.accrue(&accrual("a", 1_000, Some(100), None), 10).unwrap();
        assert_eq!((s.points_balance, s.lifetime_points, s.lots.pending()), (0, 0, 1_000));
        assert_eq!(
            s.redeem(&RedemptionRequest { event_id: "r".into(), points: 1, reward: String::new() }, 50).unwrap_err(),
            Rejection::Insufficient { requested: 1, available: 0 }
        );
        assert_eq!(s.next_due(), Some(100));
        assert_eq!(s.advance(99), 0);
        // The worker was down: the activation is applied late, dated when due.
        assert_eq!(s.advance(5_000), 1);
        assert_eq!((s.points_balance, s.lifetime_points, s.tier), (1_000, 1_000, Tier::Silver));
        let activation = s.unprojected.last().unwrap();
        assert_eq!((activation.movement.kind, activation.at_ms), (EntryKind::Activation, 100));
        assert!(activation.tier_change.is_some(), "the tier is re-evaluated at activation");
        assert_eq!(s.summary().pending_points, 0);
    }

    #[test]
    fn points_are_announced_once_a_warning_period_before_they_expire() {
        let mut s = LoyaltyState::open("c");
        s.enable_expiry_warnings();
        let with_warning = |id: &str, points, expires| PointsEvent {
            expiry_warning_ms: Some(5_000),
            ..accrual(id, points, None, Some(expires))
        };
        s.accrue(&with_warning("a", 100, 100_000), 0).unwrap();
        s.accrue(&with_warning("b", 50, 103_000), 0).unwrap();
        s.accrue(&with_warning("c", 70, 200_000), 0).unwrap();
        s.accrue(&with_warning("d", 30, 300_000), 0).unwrap();
        assert_eq!(s.next_due(), Some(95_000));
        assert_eq!(s.advance(94_999), 0);
        // Lots expiring within the period (and as long again) make one announcement.
        assert_eq!(s.advance(95_000), 1);
        let e = s.unprojected.last().unwrap();
        assert_eq!((e.movement.kind, e.effect.requested, e.effect.balance_delta), (EntryKind::Expiring, 150, 0));
        assert_eq!((e.at_ms, e.expires_at_ms, e.draws.len()), (95_000, Some(100_000), 2));
        assert_eq!(s.points_balance, 250, "an announcement moves nothing");
        assert_eq!(s.advance(99_999), 0, "announced once");
        assert_eq!(s.advance(100_000), 1, "then they expire");
        // Points spent before their announcement are not announced.
        s.redeem(&RedemptionRequest { event_id: "r".into(), points: 120, reward: String::new() }, 150_000).unwrap();
        assert_eq!(s.next_due(), Some(295_000), "c was spent: only d is left to announce");
        // A longer period from a new accrual moves every lot's announcement.
        s.advance(150_000);
        s.accrue(&PointsEvent { expiry_warning_ms: Some(200_000), ..accrual("e", 1, None, None) }, 150_000).unwrap();
        assert_eq!(s.advance(150_000), 1, "d is inside the new period: announced now");
    }

    #[test]
    fn lots_expire_soonest_first_and_spent_points_never_expire() {
        let mut s = LoyaltyState::open("c");
        s.accrue(&accrual("old", 100, None, Some(1_000)), 0).unwrap();
        s.accrue(&accrual("new", 100, None, Some(2_000)), 0).unwrap();
        s.redeem(&RedemptionRequest { event_id: "r".into(), points: 150, reward: String::new() }, 10).unwrap();
        assert_eq!(s.unprojected.last().unwrap().draws.len(), 2, "the redemption records its lots");
        assert_eq!(s.summary().next_expiry_at_ms, Some(2_000), "old is spent; new has 50 left");
        assert_eq!(s.advance(3_000), 1, "one expiry");
        assert_eq!((s.points_balance, s.lifetime_points), (0, 200), "expiry leaves lifetime alone");
        let expiry = s.unprojected.last().unwrap();
        assert_eq!((expiry.movement.kind, expiry.effect.balance_delta, expiry.at_ms), (EntryKind::Expiry, -50, 2_000));
        s.compact_lots();
        assert!(s.lots.lots.is_empty(), "spent and expired lots leave the state");
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_redemption_after_a_missed_expiry_cannot_spend_the_expired_points() {
        let mut s = LoyaltyState::open("c");
        s.accrue(&accrual("a", 100, None, Some(1_000)), 0).unwrap();
        s.advance(1_500);
        let r = RedemptionRequest { event_id: "r".into(), points: 1, reward: String::new() };
        assert!(matches!(s.redeem(&r, 1_500), Err(Rejection::Insufficient { .. })));
    }

    #[test]
    fn a_clawback_takes_its_own_lot_first_pending_or_active() {
        let mut s = LoyaltyState::open("c");
        s.accrue(&accrual("active", 100, None, Some(5_000)), 0).unwrap();
        s.accrue(&accrual("pending", 40, Some(1_000), None), 0).unwrap();
        let change = s.correct(&clawback("v1", "pending"), None, Terms::default(), 10).unwrap();
        assert_eq!((change.balance_delta, change.lifetime_delta), (0, 0), "never counted, nothing to take back");
        assert_eq!((s.points_balance, s.lots.pending()), (100, 0));
        assert_eq!(s.advance(2_000), 0, "nothing left to activate");
        let change = s.correct(&clawback("v2", "active"), None, Terms::default(), 20).unwrap();
        assert_eq!((change.balance_delta, change.lifetime_delta, s.points_balance), (-100, -100, 0));
    }

    #[test]
    fn a_refund_beyond_the_balance_floors_or_goes_negative_as_the_program_says() {
        for allow_negative in [false, true] {
            let mut s = LoyaltyState::open("c");
            s.accrue(&accrual("a", 100, None, None), 0).unwrap();
            s.redeem(&RedemptionRequest { event_id: "r".into(), points: 80, reward: String::new() }, 1).unwrap();
            let terms = Terms { allow_negative, expires_at_ms: None };
            let change = s.correct(&clawback("v", "a"), None, terms, 2).unwrap();
            assert_eq!(s.lifetime_points, 0, "the purchase did not happen");
            if allow_negative {
                assert_eq!((change.balance_delta, change.shortfall, s.points_balance), (-100, 0, -80));
                let r = RedemptionRequest { event_id: "r2".into(), points: 1, reward: String::new() };
                assert!(matches!(s.redeem(&r, 3), Err(Rejection::Insufficient { .. })), "refused while negative");
                s.accrue(&accrual("b", 50, None, None), 3).unwrap();
                assert_eq!((s.points_balance, s.lots.active()), (-30, 0), "new points pay the debt first");
                s.accrue(&accrual("c", 50, None, None), 4).unwrap();
                assert_eq!((s.points_balance, s.lots.active(), s.lots.debt), (20, 20, 0));
            } else {
                assert_eq!((change.balance_delta, change.shortfall, s.points_balance), (-20, 80, 0));
            }
        }
    }

    #[test]
    fn holds_set_points_aside_then_capture_release_or_expire() {
        let mut s = LoyaltyState::open("c");
        s.accrue(&accrual("soon", 50, None, Some(10_000)), 0).unwrap();
        s.accrue(&accrual("late", 100, None, None), 0).unwrap();
        let held = s.reserve(&reserve("h1", 80, 5_000), 100).unwrap();
        assert_eq!((held.status, held.points_balance, held.held_points), (HoldStatus::Held, 70, 80));
        assert_eq!(s.reserve(&reserve("h1", 80, 5_000), 200), Ok(held.clone()), "a resend is answered");
        assert!(matches!(s.reserve(&reserve("h1", 81, 5_000), 200), Err(Rejection::EventIdReused(_))));
        assert!(matches!(s.reserve(&reserve("h2", 71, 5_000), 200), Err(Rejection::Insufficient { .. })));

        let capture = CaptureRequest { hold_id: "h1".into(), points: 60, event_id: "c1".into(), reward: "mug".into() };
        assert!(matches!(
            s.capture(&CaptureRequest { points: 81, ..capture.clone() }, 300),
            Err(Rejection::Invalid(_))
        ));
        let done = s.capture(&capture, 300).unwrap();
        assert_eq!(
            (done.status, done.captured, done.points_balance, done.held_points),
            (HoldStatus::Captured, 60, 90, 0)
        );
        let entry = s.unprojected.last().unwrap();
        assert_eq!((entry.movement.kind, entry.effect.balance_delta), (EntryKind::Capture, 20), "the rest given back");
        assert_eq!(entry.draws[0].lot, "soon", "the capture spent the soonest-expiring points");
        assert_eq!(s.capture(&capture, 400), Ok(done), "a resend is answered");
        let release = ReleaseRequest { hold_id: "h1".into() };
        assert!(matches!(s.release(&release, 400), Err(Rejection::HoldNotOpen { .. })));
        assert!(matches!(s.release(&ReleaseRequest { hold_id: "nope".into() }, 400), Err(Rejection::HoldNotFound(_))));

        s.reserve(&reserve("h2", 90, 1_000), 500).unwrap();
        assert_eq!(s.next_due(), Some(1_500));
        assert_eq!(s.advance(1_600), 1, "the hold released itself");
        assert_eq!((s.points_balance, s.held_points()), (90, 0));
        let expired = s.release(&ReleaseRequest { hold_id: "h2".into() }, 1_700).unwrap();
        assert_eq!(expired.status, HoldStatus::Expired, "releasing an expired hold answers as before");

        // Held points do not expire while held; given back late, they expire at once.
        s.accrue(&accrual("soon2", 40, None, Some(10_000)), 2_000).unwrap();
        s.reserve(&reserve("h3", 90, 20_000), 2_000).unwrap();
        assert_eq!(s.hold_draws("h3"), vec![("soon2".to_owned(), 40), ("late".to_owned(), 50)]);
        assert_eq!(s.advance(12_000), 0, "the soon2 lot's points are held");
        s.release(&ReleaseRequest { hold_id: "h3".into() }, 12_000).unwrap();
        assert_eq!(s.advance(12_000), 1);
        assert_eq!(s.points_balance, 90, "soon2's 40 points came back and expired at once");
    }

    #[test]
    fn an_idle_balance_expires_after_the_inactivity_period_and_activity_resets_it() {
        let mut s = LoyaltyState::open("c");
        let mut e = accrual("a", 100, None, None);
        e.expire_inactive_after_ms = Some(1_000);
        s.accrue(&e, 0).unwrap();
        s.redeem(&RedemptionRequest { event_id: "r".into(), points: 10, reward: String::new() }, 800).unwrap();
        assert_eq!(s.next_due(), Some(1_800), "the spend was activity");
        assert_eq!(s.advance(5_000), 1);
        assert_eq!((s.points_balance, s.unprojected.last().unwrap().at_ms), (0, 1_800));
        assert_eq!(s.next_due(), None, "nothing left to expire");
    }

    #[test]
    fn a_balance_carried_from_before_lots_becomes_one_never_expiring_lot() {
        let mut s = LoyaltyState::open("c");
        s.points_balance = 70;
        s.lifetime_points = 70;
        s.lots_tracked = false;
        s.advance(5);
        assert_eq!((s.lots.active(), s.lots.lots[0].id.as_str()), (70, crate::domain::lots::CARRIED_LOT));
        s.redeem(&RedemptionRequest { event_id: "r".into(), points: 70, reward: String::new() }, 6).unwrap();
    }

    #[test]
    fn a_carried_balance_is_tracked_even_when_the_run_loop_decides_first() {
        let mut s = LoyaltyState::open("c");
        (s.points_balance, s.lifetime_points, s.lots_tracked) = (500, 500, false);
        s.pending_events.push(PointsEvent { ledger_checked: false, ..accrual("q", 20, None, None) });
        let batch = s.projection(10, usize::MAX, true);
        s.projected(&batch, &[crate::domain::Known::New], 7);
        assert_eq!((s.points_balance, s.lots.active()), (520, 520), "the carried 500 has its lot");
    }

    #[test]
    fn finished_holds_forget_their_draws_a_closing_account_gives_holds_back_and_a_second_capture_is_refused() {
        let mut s = LoyaltyState::open("c");
        s.accrue(&accrual("a", 100, None, None), 0).unwrap();
        s.reserve(&reserve("h1", 30, 60_000), 1).unwrap();
        s.reserve(&reserve("h2", 20, 60_000), 1).unwrap();
        let capture = CaptureRequest { hold_id: "h1".into(), points: 30, event_id: "k1".into(), reward: String::new() };
        s.capture(&capture, 2).unwrap();
        assert!(s.finished_holds[0].hold.draws.is_empty());
        let again = CaptureRequest { event_id: "k2".into(), ..capture };
        assert!(matches!(s.capture(&again, 3), Err(Rejection::HoldNotOpen { status: HoldStatus::Captured, .. })));
        s.release_all_holds(4);
        assert_eq!((s.points_balance, s.held_points()), (70, 0));
        assert!(
            matches!(
                s.reserve(&ReserveRequest { ledger_known: true, ..reserve("old", 1, 60_000) }, 5),
                Err(Rejection::EventIdReused(_))
            ),
            "a hold id the ledger has"
        );
    }

    /// What an account that took 10,000 lots carries, each lot expiring on
    /// its own date over a year: the newest 500 as they are, the others
    /// merged per expiry day.
    #[test]
    fn ten_thousand_lots_carry_in_a_small_state() {
        let mut s = LoyaltyState::open("c");
        let year = 365 * 86_400_000;
        for i in 0..10_000_i64 {
            let expires = Some(86_400_000 + year * i / 10_000);
            s.accrue(&accrual(&format!("order-{i}"), 1, None, expires), i).unwrap();
            if i % 500 == 0 {
                let batch = s.projection(usize::MAX, usize::MAX, true);
                s.projected(&batch, &[], i);
                s.tidy_lots();
            }
        }
        let batch = s.projection(usize::MAX, usize::MAX, true);
        s.projected(&batch, &[], 10_000);
        s.compact_lots();
        let bytes = serde_json::to_vec(&s).unwrap().len();
        let lots = serde_json::to_vec(&s.lots).unwrap().len();
        println!("10,000 lots: {} carried, lots {lots} bytes, whole state {bytes} bytes", s.lots.lots.len());
        assert_eq!(s.lots.active(), 10_000, "every point kept");
        assert!(s.lots.lots.len() <= crate::domain::lots::UNMERGED_LOTS + 366, "{}", s.lots.lots.len());
        assert!(bytes < 192 * 1024, "{bytes}");
    }

    /// Many mixed operations at random times: after each, the totals equal
    /// the sum of the entries, the balance equals the lots, and no due time
    /// is left behind.
    #[test]
    fn mixed_operations_keep_the_books_exact() {
        let mut s = LoyaltyState::open("c");
        s.enable_expiry_warnings();
        s.expiry_warning_ms = 300;
        let mut rng = 0x9e3779b97f4a7c15_u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut now = 0;
        for i in 0..3_000 {
            now += next(50) as Millis;
            s.advance(now);
            let id = format!("e{i}");
            let pick = next(8);
            let target = format!("e{}", next(i as u64 + 1)).replace(&format!("e{i}"), "none");
            let _ = match pick {
                0 | 1 => {
                    let pending = (next(3) == 0).then(|| now + next(500) as Millis);
                    let expires = (next(2) == 0).then(|| now + 500 + next(2_000) as Millis);
                    s.accrue(&accrual(&id, 1 + next(100) as i64, pending, expires), now).map(|_| ()).map_err(|_| ())
                }
                2 => s
                    .redeem(
                        &RedemptionRequest { event_id: id, points: 1 + next(60) as i64, reward: String::new() },
                        now,
                    )
                    .map(|_| ())
                    .map_err(|_| ()),
                3 => s
                    .correct(
                        &clawback(&id, &target),
                        None,
                        Terms { allow_negative: next(2) == 0, expires_at_ms: None },
                        now,
                    )
                    .map(|_| ())
                    .map_err(|_| ()),
                4 => s
                    .reserve(&reserve(&id, 1 + next(40) as i64, 1_000 + next(1_000) as Millis), now)
                    .map(|_| ())
                    .map_err(|_| ()),
                5 => s
                    .capture(
                        &CaptureRequest {
                            hold_id: target,
                            points: 1 + next(20) as i64,
                            event_id: id,
                            reward: String::new(),
                        },
                        now,
                    )
                    .map(|_| ())
                    .map_err(|_| ()),
                6 => s.release(&ReleaseRequest { hold_id: target }, now).map(|_| ()).map_err(|_| ()),
                _ => s
                    .correct(
                        &crate::domain::AdjustmentRequest {
                            event_id: id,
                            points: next(41) as i64 - 20,
                            reason: "x".into(),
                            expires_at_ms: Some(now + 700),
                        }
                        .movement()
                        .unwrap_or_else(|_| clawback("skip", "none")),
                        None,
                        Terms { allow_negative: false, expires_at_ms: Some(now + 700) },
                        now,
                    )
                    .map(|_| ())
                    .map_err(|_| ()),
            };
            s.advance(now);
            let balance: i64 = s.unprojected.iter().map(|e| e.effect.balance_delta).sum();
            let lifetime: i64 = s.unprojected.iter().map(|e| e.effect.lifetime_delta).sum();
            assert_eq!((balance, lifetime), (s.points_balance, s.lifetime_points), "step {i}");
            assert_eq!(s.points_balance, s.lots.active() - s.lots.debt, "step {i}");
            assert!(s.lots.sums_hold(), "step {i}");
            let hint = s.due_hint;
            s.forget_due();
            s.advance(now);
            assert!(hint.is_none_or(|h| s.due_hint.is_some_and(|d| h <= d)), "the hint is a lower bound at step {i}");
            if next(10) == 0 {
                s.compact_lots();
            }
            let held: i64 = s.holds.iter().map(|h| crate::domain::lots::drawn(&h.draws)).sum();
            assert_eq!(held, s.held_points(), "a hold holds exactly its draws");
            assert!(s.next_due().is_none_or(|due| due > now), "nothing due is left behind at step {i}");
        }
        assert!(s.unprojected.iter().any(|e| e.movement.kind == EntryKind::Expiry));
        assert!(s.unprojected.iter().any(|e| e.movement.kind == EntryKind::Expiring));
        assert!(s.unprojected.iter().any(|e| e.movement.kind == EntryKind::Activation));
        assert!(s.unprojected.iter().any(|e| e.movement.kind == EntryKind::Capture));
        assert!(s.unprojected.iter().any(|e| e.movement.kind == EntryKind::Release));
    }
}
