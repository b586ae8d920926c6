//! Holds at checkout, as the account decides them: points set aside for
//! an order, then captured (spent, the rest given back), released, or
//! released by themselves at their deadline (`due`). A hold draws its
//! points from lots when made, so held points are neither spendable nor
//! expired while held; what it gives back returns to its lots.

use super::error::FieldError;
use super::holds::{
    CaptureRequest, Hold, HoldEnd, HoldRecord, HoldResult, HoldStatus, MAX_OPEN_HOLDS, ReleaseRequest, ReserveRequest,
    capture_movement, hold_entry_id, split_draws,
};
use super::kind::EntryKind;
use super::movement::{Effect, Movement};
use super::rejection::Rejection;
use super::state::LoyaltyState;
use super::time::Millis;

impl LoyaltyState {
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
    pub(super) fn reserve(&mut self, req: &ReserveRequest, now: Millis) -> Result<HoldResult, Rejection> {
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
        self.holds.push(hold.clone());
        let effect = Effect::balance(req.points, -req.points);
        let m = hold_movement(EntryKind::Hold, hold_entry_id(&req.hold_id), req.points, "");
        self.record(m, effect, draws, now);
        Ok(self.open_result(&hold))
    }

    /// The answer to a resent Capture, or `None` for a capture of an open hold.
    pub fn plan_capture(&self, req: &CaptureRequest) -> Result<Option<HoldResult>, Rejection> {
        req.validate()?;
        if let Some(h) = self.holds.iter().find(|h| h.hold_id == req.hold_id) {
            if req.points > h.points {
                return Err(FieldError::new(
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
    pub(super) fn capture(&mut self, req: &CaptureRequest, now: Millis) -> Result<HoldResult, Rejection> {
        if let Some(done) = self.plan_capture(req)? {
            return Ok(done);
        }
        let Some(i) = self.holds.iter().position(|h| h.hold_id == req.hold_id) else {
            return Err(Rejection::HoldNotFound(req.hold_id.clone()));
        };
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
    pub(super) fn release(&mut self, req: &ReleaseRequest, now: Millis) -> Result<HoldResult, Rejection> {
        if let Some(done) = self.plan_release(req)? {
            return Ok(done);
        }
        let Some(i) = self.holds.iter().position(|h| h.hold_id == req.hold_id) else {
            return Err(Rejection::HoldNotFound(req.hold_id.clone()));
        };
        Ok(self.end_hold(i, HoldEnd::Released, now))
    }

    /// Ends open hold `i`: a capture spends what it asks (soonest-expiring
    /// draws first) and gives back the rest; a release or deadline gives
    /// back everything. One entry records it.
    pub(super) fn end_hold(&mut self, i: usize, end: HoldEnd, at: Millis) -> HoldResult {
        let hold = self.holds.remove(i);
        let (m, effect, draws) = match &end {
            HoldEnd::Captured { event_id, points, reward } => {
                let (spent, back) = split_draws(&hold.draws, *points);
                self.lots.give_back(&back, at);
                let effect = Effect::balance(*points, hold.points - points);
                (capture_movement(&hold.hold_id, event_id, *points, reward), effect, spent)
            }
            HoldEnd::Released | HoldEnd::Expired => {
                self.lots.give_back(&hold.draws, at);
                let why = if end == HoldEnd::Expired { "hold expired" } else { "released" };
                let effect = Effect::balance(hold.points, hold.points);
                (
                    hold_movement(EntryKind::Release, format!("release/{}", hold.hold_id), hold.points, why),
                    effect,
                    hold.draws.clone(),
                )
            }
        };
        let seq = self.record(m, effect, draws, at);
        // A finished hold answers resends; its draws are in the ledger.
        let hold = Hold { draws: Vec::new(), ..hold };
        let record = HoldRecord { hold, end, seq };
        let result = self.finished_result(&record);
        self.finished_holds.push(record);
        result
    }

    /// Gives every open hold back (the account is closing).
    pub(super) fn release_all_holds(&mut self, now: Millis) {
        while !self.holds.is_empty() {
            self.end_hold(0, HoldEnd::Released, now);
        }
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
