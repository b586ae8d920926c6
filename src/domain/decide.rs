//! One writer, one order: every change of an account is decided here,
//! synchronously, against the account's own state, in the order the workflow
//! receives it. A decision appends a numbered [`Entry`]; the ledger receives
//! the entries later, in order (`entry`). Nothing here waits for anything.
//!
//! Exactly once: the gRPC layer looks every event id up in the ledger before
//! it reaches the account (the lifelong guard); the account's window of
//! recent ids covers at least every entry the ledger does not hold yet, so a
//! resend racing its own write is caught here.

use super::account::{Rejection, validate_accrual};
use super::dedup::DEDUP_WINDOW;
use super::entry::{ChangeRecord, Entry, Known, LedgerView, ProjectionBatch, RESULTS_WINDOW, reversible};
use super::ids::EventId;
use super::lifecycle::{Terms, is_system_id};
use super::lots::{Draw, Lot, Millis};
use super::messages::{
    BalanceChange, EntryKind, LoyaltyState, PointsEvent, RedemptionRecord, RedemptionRequest, RedemptionResult,
    TierChange,
};
use super::movement::{Effect, Movement, Original, effect};
use super::points::Points;
use super::text::BoundedText;
use super::tier::Tier;

/// How a correction is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorrectionPlan {
    /// A resend: the original answer.
    Replay(BalanceChange),
    /// New: this effect (and, for a reversal, the original it acts on).
    Apply(Effect, Option<Original>),
}

/// What a vetting round did with the accruals received without a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VetReport {
    /// Event ids decided now.
    pub applied: Vec<String>,
    /// Event ids not applied, with why.
    pub ignored: Vec<(String, String)>,
}

impl LoyaltyState {
    /// Whether the account still has to take over from the previous version
    /// (its redemptions in doubt, voids, and the ledger's totals): until it
    /// has, it decides nothing new.
    pub fn needs_settling(&self) -> bool {
        !self.handed_over || !self.in_doubt.is_empty() || !self.pending_voids.is_empty()
    }

    /// Whether the ledger is behind the account's decisions, or accruals
    /// wait for their check.
    pub fn has_projection_work(&self) -> bool {
        !self.unprojected.is_empty() || !self.pending_events.is_empty() || self.needs_settling()
    }

    /// Decides an accrual now, at `now` on the workflow's clock: it becomes a
    /// lot, pending until its `active_from_ms` if that is later. `Err` says
    /// why it is ignored (an invalid signal from another client, or a resend).
    pub fn accrue(&mut self, event: &PointsEvent, now: Millis) -> Result<u64, String> {
        let points = validate_accrual(event).map_err(|e| e.to_string())?;
        if self.processed_event_ids.contains(&event.event_id) {
            return Err("duplicate event_id".into());
        }
        if let Some(after) = event.expire_inactive_after_ms {
            self.expire_inactive_after_ms = after.max(0);
        }
        if let Some(warning) = event.expiry_warning_ms.map(|w| w.max(0))
            && warning != self.expiry_warning_ms
        {
            // Every lot's announcement moves: look again.
            self.expiry_warning_ms = warning;
            self.forget_due();
        }
        let pending_until_ms = event.active_from_ms.filter(|&at| at > now);
        let effect = if pending_until_ms.is_some() {
            Effect { requested: points, ..Effect::default() }
        } else {
            Effect { requested: points, balance_delta: points, lifetime_delta: points, shortfall: 0 }
        };
        self.lots.add(Lot {
            id: event.event_id.clone(),
            remaining: points,
            earned_at_ms: now,
            pending_until_ms,
            expires_at_ms: event.expires_at_ms,
        });
        self.last_activity_ms = now;
        self.may_be_due(pending_until_ms.or(event.expires_at_ms));
        self.may_be_due(self.warning_time(event.expires_at_ms));
        if self.expire_inactive_after_ms > 0 {
            self.may_be_due(Some(now.saturating_add(self.expire_inactive_after_ms)));
        }
        Ok(self.push_entry(event.movement(), effect, Vec::new(), now))
    }

    /// Queues an accrual that arrived without a ledger check, for the run
    /// loop to check and decide; an invalid one is refused here, so nothing
    /// malformed or oversized is carried or sent to the ledger.
    pub fn queue_unchecked(&mut self, event: PointsEvent) -> Result<(), String> {
        validate_accrual(&event).map_err(|e| e.to_string())?;
        self.pending_events.push(event);
        Ok(())
    }

    /// Decides a redemption without changing anything: `Some` is the answer
    /// to a resend, `None` a new redemption the account can afford.
    pub fn plan_redeem(&self, req: &RedemptionRequest) -> Result<Option<RedemptionResult>, Rejection> {
        if let Some(done) = self.recent_redemptions.iter().find(|r| r.request.event_id == req.event_id) {
            return if done.request == *req {
                Ok(Some(done.result.clone()))
            } else {
                Err(Rejection::EventIdReused(req.event_id.clone()))
            };
        }
        self.check_new_id(&req.event_id)?;
        EventId::parse(&req.event_id)?;
        let points = Points::parse(req.points)?.get();
        BoundedText::parse("reward", &req.reward)?;
        if !self.is_active {
            return Err(Rejection::Inactive);
        }
        if points > self.points_balance {
            return Err(Rejection::Insufficient { requested: points, available: self.points_balance });
        }
        Ok(None)
    }

    /// Decides and applies a redemption; a resend gets the original answer.
    pub fn redeem(&mut self, req: &RedemptionRequest, now: Millis) -> Result<RedemptionResult, Rejection> {
        if let Some(done) = self.plan_redeem(req)? {
            return Ok(done);
        }
        let effect = Effect { requested: req.points, balance_delta: -req.points, lifetime_delta: 0, shortfall: 0 };
        let draws = self.lots.spend(req.points, None);
        self.last_activity_ms = now;
        let seq = self.push_entry(req.movement(), effect, draws, now);
        let result = RedemptionResult {
            redeemed: req.points,
            remaining_balance: self.points_balance,
            reward: req.reward.clone(),
        };
        self.recent_redemptions.push(RedemptionRecord { request: req.clone(), result: result.clone(), seq });
        Ok(result)
    }

    /// Decides a reversal or adjustment without changing anything.
    /// `view` is the ledger's view of a reversal's original, if the caller
    /// read it.
    pub fn plan_correction(&self, m: &Movement, view: Option<&LedgerView>) -> Result<CorrectionPlan, Rejection> {
        if let Some(done) = self.recent_changes.iter().find(|r| r.movement.event_id == m.event_id) {
            return if done.movement == *m {
                Ok(CorrectionPlan::Replay(done.result.clone()))
            } else {
                Err(Rejection::EventIdReused(m.event_id.clone()))
            };
        }
        self.check_new_id(&m.event_id)?;
        if !self.is_active {
            return Err(Rejection::Inactive);
        }
        let original = match &m.reverses {
            Some(id) => match self.originals.resolve(id, view) {
                Some(original) => original,
                None => Some(self.correction_in_memory(id).ok_or_else(|| Rejection::OriginalUnknown(id.clone()))?),
            },
            None => None,
        };
        let e = effect(m, self.totals(), original).map_err(Rejection::Refused)?;
        Ok(CorrectionPlan::Apply(e, original))
    }

    /// Decides and applies a reversal or adjustment at `now`, moving points
    /// between lots as `terms` say.
    pub fn correct(
        &mut self,
        m: &Movement,
        view: Option<&LedgerView>,
        terms: Terms,
        now: Millis,
    ) -> Result<BalanceChange, Rejection> {
        let (effect, original) = match self.plan_correction(m, view)? {
            CorrectionPlan::Replay(change) => return Ok(change),
            CorrectionPlan::Apply(effect, original) => (effect, original),
        };
        if let (Some(id), Some(original)) = (&m.reverses, original) {
            // A reversal of an original read from the ledger is tracked from now on.
            if self.originals.get(id).is_none() {
                self.originals.put(id, original, self.seq);
            }
        }
        let (effect, draws) = self.move_lots(m, effect, original, terms, now);
        self.forget_due();
        let seq = self.push_entry(m.clone(), effect, draws, now);
        let result = BalanceChange {
            balance_delta: effect.balance_delta,
            lifetime_delta: effect.lifetime_delta,
            shortfall: effect.shortfall,
            balance_after: self.points_balance,
            points_balance: self.points_balance,
            lifetime_points: self.lifetime_points,
            tier: self.tier,
        };
        self.recent_changes.push(ChangeRecord { movement: m.clone(), result: result.clone(), seq });
        Ok(result)
    }

    /// Which lots a correction takes from or adds to, and its final effect.
    /// A clawback takes the accrual's own lot first (pending or active),
    /// then the soonest-expiring others; beyond the balance it records a
    /// shortfall or, when allowed, takes the balance below zero. Points given
    /// back (a cancelled redemption, a positive adjustment) are a new lot.
    fn move_lots(
        &mut self,
        m: &Movement,
        effect: Effect,
        original: Option<Original>,
        terms: Terms,
        now: Millis,
    ) -> (Effect, Vec<Draw>) {
        let new_lot = |points| Lot {
            id: m.event_id.clone(),
            remaining: points,
            earned_at_ms: now,
            pending_until_ms: None,
            expires_at_ms: terms.expires_at_ms,
        };
        match (m.kind, original) {
            (EntryKind::Reversal, Some(o)) if o.kind == EntryKind::Accrual => {
                let own = m.reverses.as_deref().unwrap_or_default();
                let amount = effect.requested;
                let from_pending = self.lots.take_pending(own, amount);
                let rest = amount - from_pending;
                let available = self.points_balance.max(0).min(rest);
                let mut draws = Vec::new();
                if from_pending > 0 {
                    draws.push(Draw { lot: own.to_owned(), points: from_pending });
                }
                draws.extend(self.lots.spend(available, Some(own)));
                let beyond = rest - available;
                let owed = if terms.allow_negative { beyond } else { 0 };
                self.lots.owe(owed);
                let effect = Effect {
                    requested: amount,
                    balance_delta: -(available + owed),
                    lifetime_delta: -rest.min(self.lifetime_points.max(0)),
                    shortfall: beyond - owed,
                };
                (effect, draws)
            }
            (EntryKind::Reversal, _) | (EntryKind::Adjustment, _) if effect.balance_delta > 0 => {
                self.lots.add(new_lot(effect.balance_delta));
                (effect, Vec::new())
            }
            _ => {
                let draws = self.lots.spend(-effect.balance_delta, None);
                (effect, draws)
            }
        }
    }

    /// The next write to the ledger: at most `max` entries on top of what it
    /// holds, and at most `max` accruals to check, within `max_bytes` of
    /// text (the activity's input must stay well below Temporal's 2 MB).
    /// A run recorded before lots (`lifecycle` false) cut its writes by the
    /// movements' text alone, and its replay must cut them the same way.
    pub fn projection(&self, max: usize, max_bytes: usize, lifecycle: bool) -> ProjectionBatch {
        let mut budget = max_bytes;
        let mut fits = |size: usize| {
            let ok = size <= budget;
            budget = budget.saturating_sub(size);
            ok
        };
        let mut taken = 0;
        for entry in self.unprojected.iter().take(max) {
            if lifecycle {
                // The first entry always goes: one drawing on thousands of lots may exceed the budget alone.
                if !fits(entry.approximate_size()) && taken > 0 {
                    break;
                }
            } else if !fits(entry.movement.approximate_size()) {
                break;
            }
            taken += 1;
        }
        let entries: Vec<Entry> = self.unprojected.iter().take(taken).cloned().collect();
        let check = self
            .pending_events
            .iter()
            .take(max)
            .map(PointsEvent::movement)
            .take_while(|m| fits(m.approximate_size()))
            .collect();
        let totals_before = entries.first().map_or_else(|| self.totals(), Entry::before);
        ProjectionBatch {
            customer_id: self.customer_id.clone(),
            after_seq: self.projected_seq,
            totals_before,
            entries,
            check,
        }
    }

    /// The ledger holds `batch`: its entries leave memory (their results stay
    /// a while for resends), and the checked accruals are decided, in order.
    pub fn projected(&mut self, batch: &ProjectionBatch, known: &[Known], now: Millis) -> VetReport {
        if !self.lots_tracked && !self.needs_settling() {
            self.track_lots(now);
        }
        let last = batch.last_seq();
        self.unprojected.retain(|e| e.seq > last);
        self.projected_seq = self.projected_seq.max(last);
        self.trim_results();
        let mut report = VetReport::default();
        let checked: Vec<PointsEvent> =
            self.pending_events.drain(..known.len().min(self.pending_events.len())).collect();
        for (event, known) in checked.iter().zip(known) {
            let outcome = match known {
                Known::New => self.accrue(event, now).map(|_| ()),
                Known::Same => Err("already in the ledger; not applied again".into()),
                Known::Other => Err("event_id reused with other content; ignored".into()),
            };
            match outcome {
                Ok(()) => report.applied.push(event.event_id.clone()),
                Err(why) => report.ignored.push((event.event_id.clone(), why)),
            }
        }
        report
    }

    /// A reversal or adjustment the account still holds in memory, as an
    /// original: a reversal naming it is refused as not reversible without
    /// asking the ledger.
    fn correction_in_memory(&self, event_id: &str) -> Option<Original> {
        let kind =
            self.recent_changes.iter().find(|r| r.movement.event_id == event_id).map(|r| r.movement.kind).or_else(
                || self.unprojected.iter().find(|e| e.movement.event_id == event_id).map(|e| e.movement.kind),
            )?;
        (!reversible(kind)).then_some(Original { kind, requested: 0, reversed: 0 })
    }

    /// A resend not answered from the results window: the caller read the
    /// ledger first (the lifelong guard), so an id still in the window is
    /// either another kind's (reused) or forgotten by this window only.
    fn check_new_id(&self, event_id: &str) -> Result<(), Rejection> {
        if !self.processed_event_ids.contains(event_id) {
            return Ok(());
        }
        if self.unprojected.iter().any(|e| e.movement.event_id == event_id) {
            return Err(Rejection::EventIdReused(event_id.to_owned()));
        }
        Err(Rejection::Forgotten(event_id.to_owned()))
    }

    /// Appends a decided entry and moves the totals and the tier with it.
    pub(super) fn push_entry(&mut self, movement: Movement, effect: Effect, draws: Vec<Draw>, at_ms: Millis) -> u64 {
        let after = effect.apply(self.totals());
        self.points_balance = after.balance;
        self.lifetime_points = after.lifetime;
        let old_tier = self.tier;
        self.tier = Tier::for_lifetime(after.lifetime);
        self.seq += 1;
        let seq = self.seq;
        let tier_change = (self.tier != old_tier).then(|| TierChange {
            customer_id: self.customer_id.clone(),
            old_tier,
            new_tier: self.tier,
            lifetime_points: after.lifetime,
            caused_by: movement.event_id.clone(),
        });
        // The account's own entries (activations, expiries, holds) have ids no
        // caller can send, and their own idempotency: they stay out of the window.
        if !is_system_id(&movement.event_id) {
            // Every unwritten entry (this one included) stays in the window on top of it.
            let capacity = DEDUP_WINDOW + self.unprojected.len() + 1;
            self.processed_event_ids.remember_within(movement.event_id.clone(), capacity);
        }
        if reversible(movement.kind) {
            let original = Original { kind: movement.kind, requested: effect.requested, reversed: 0 };
            self.originals.put_new(&movement.event_id, original, seq);
        } else if let (EntryKind::Reversal, Some(id)) = (movement.kind, &movement.reverses)
            && let Some(mut original) = self.originals.get(id)
        {
            original.reversed += effect.requested;
            self.originals.put(id, original, seq);
        }
        debug_assert!(
            !self.lots_tracked || self.points_balance == self.lots.active() - self.lots.debt,
            "balance {} and lots {} - {} agree after {movement:?}",
            self.points_balance,
            self.lots.active(),
            self.lots.debt
        );
        let (pending_after, held_after) = (self.lots.pending(), self.held_points());
        self.unprojected.push(Entry {
            seq,
            movement,
            effect,
            after,
            tier_change,
            draws,
            at_ms,
            pending_after,
            held_after,
            expires_at_ms: None,
        });
        seq
    }

    /// Keeps every result the ledger does not hold yet and the newest
    /// [`RESULTS_WINDOW`] of the others.
    fn trim_results(&mut self) {
        let projected = self.projected_seq;
        trim(&mut self.recent_redemptions, |r| r.seq <= projected);
        trim(&mut self.recent_changes, |r| r.seq <= projected);
    }
}

/// Drops the oldest items that `done` holds for beyond the newest [`RESULTS_WINDOW`] of them.
fn trim<T>(items: &mut Vec<T>, done: impl Fn(&T) -> bool) {
    let mut excess = items.iter().filter(|x| done(x)).count().saturating_sub(RESULTS_WINDOW);
    items.retain(|x| {
        if excess > 0 && done(x) {
            excess -= 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entry::ORIGINALS_WINDOW;
    use crate::domain::messages::{AdjustmentRequest, ReversalRequest};
    use crate::domain::movement::Refusal;

    fn event(id: &str, points: i64) -> PointsEvent {
        PointsEvent {
            event_id: id.into(),
            points,
            reason: "purchase".into(),
            source: "web".into(),
            ledger_checked: true,
            ..Default::default()
        }
    }

    fn redeem(id: &str, points: i64) -> RedemptionRequest {
        RedemptionRequest { event_id: id.into(), points, reward: "coffee".into() }
    }

    fn reverse(id: &str, original: &str, points: Option<i64>) -> Movement {
        ReversalRequest {
            event_id: id.into(),
            original_event_id: original.into(),
            points,
            reason: "refund".into(),
            ledger: None,
            ..Default::default()
        }
        .movement()
        .unwrap()
    }

    fn adjust(id: &str, points: i64) -> Movement {
        AdjustmentRequest { event_id: id.into(), points, reason: "goodwill".into(), ..Default::default() }
            .movement()
            .unwrap()
    }

    /// The ledger takes every entry: what a healthy projection does.
    fn project_all(s: &mut LoyaltyState) -> VetReport {
        let batch = s.projection(usize::MAX, usize::MAX, true);
        let known = vec![Known::New; batch.check.len()];
        s.projected(&batch, &known, 0)
    }

    #[test]
    fn decisions_are_numbered_in_arrival_order_and_move_totals_at_once() {
        let mut s = LoyaltyState::open("c");
        assert_eq!(s.accrue(&event("a", 600), 0), Ok(1));
        assert_eq!(s.redeem(&redeem("r", 100), 0).unwrap().remaining_balance, 500);
        assert_eq!(s.accrue(&event("b", 500), 0), Ok(3));
        assert_eq!((s.points_balance, s.lifetime_points, s.tier), (1_000, 1_100, Tier::Silver));
        let seqs: Vec<_> = s.unprojected.iter().map(|e| (e.seq, e.movement.event_id.as_str())).collect();
        assert_eq!(seqs, vec![(1, "a"), (2, "r"), (3, "b")]);
        let tier = s.unprojected[2].tier_change.as_ref().expect("the entry that crossed 1,000 carries the change");
        assert_eq!((tier.new_tier, tier.caused_by.as_str()), (Tier::Silver, "b"));
        assert_eq!(s.unprojected[2].before(), crate::domain::Totals { balance: 500, lifetime: 600 });
    }

    #[test]
    fn a_resend_is_caught_while_its_entry_waits_for_the_ledger_and_after() {
        let mut s = LoyaltyState::open("c");
        s.accrue(&event("a", 10), 0).unwrap();
        assert!(s.accrue(&event("a", 10), 0).is_err());
        let first = s.redeem(&redeem("r", 4), 0).unwrap();
        assert_eq!(s.redeem(&redeem("r", 4), 0), Ok(first.clone()), "the original answer");
        assert_eq!(s.redeem(&redeem("r", 5), 0), Err(Rejection::EventIdReused("r".into())));
        assert_eq!(s.redeem(&redeem("a", 1), 0), Err(Rejection::EventIdReused("a".into())), "an accrual's id");
        project_all(&mut s);
        assert_eq!(s.redeem(&redeem("r", 4), 0), Ok(first), "results outlive their projection");
        assert_eq!(s.redeem(&redeem("a", 1), 0), Err(Rejection::Forgotten("a".into())), "the ledger knows");
        assert_eq!(s.points_balance, 6);
    }

    #[test]
    fn redemptions_are_checked_before_anything_changes() {
        let mut s = LoyaltyState::open("c");
        s.accrue(&event("a", 100), 0).unwrap();
        let before = s.clone();
        assert_eq!(s.redeem(&redeem("r", 101), 0), Err(Rejection::Insufficient { requested: 101, available: 100 }));
        assert_eq!(s.redeem(&redeem("r", 0), 0).unwrap_err().failure_type(), "ValidationError");
        assert_eq!(s.redeem(&redeem("bad id", 1), 0).unwrap_err().failure_type(), "ValidationError");
        assert_eq!(s, before, "a refusal changes nothing");
        s.close();
        assert_eq!(s.redeem(&redeem("r", 1), 0), Err(Rejection::Inactive));
    }

    #[test]
    fn reversals_act_on_what_the_original_still_holds() {
        let mut s = LoyaltyState::open("c");
        s.accrue(&event("a", 100), 0).unwrap();
        s.redeem(&redeem("r", 30), 0).unwrap();
        let part = s.correct(&reverse("v1", "a", Some(40)), None, Terms::default(), 0).unwrap();
        assert_eq!((part.balance_delta, part.lifetime_delta, part.points_balance), (-40, -40, 30));
        let rest = s.correct(&reverse("v2", "a", None), None, Terms::default(), 0).unwrap();
        assert_eq!((rest.balance_delta, rest.shortfall, rest.points_balance), (-30, 30, 0), "floors at zero");
        assert!(matches!(
            s.correct(&reverse("v3", "a", None), None, Terms::default(), 0),
            Err(Rejection::Refused(Refusal::ExceedsOriginal { remaining: 0, .. }))
        ));
        assert_eq!(
            s.correct(&reverse("v2", "a", None), None, Terms::default(), 0),
            Ok(rest),
            "a resend is answered, not applied"
        );
        let back = s.correct(&reverse("v4", "r", None), None, Terms::default(), 0).unwrap();
        assert_eq!((back.balance_delta, back.lifetime_delta), (30, 0), "a cancelled reward returns its points");
        assert!(matches!(s.correct(&reverse("v5", "v1", None), None, Terms::default(), 0), Err(Rejection::Refused(_))));
        assert_eq!(
            s.correct(&adjust("j", -31), None, Terms::default(), 0).unwrap_err().failure_type(),
            "InsufficientPoints"
        );
        assert_eq!(s.correct(&adjust("j", 5), None, Terms::default(), 0).unwrap().points_balance, 35);
    }

    #[test]
    fn an_old_original_needs_a_ledger_view_newer_than_what_memory_forgot() {
        let mut s = LoyaltyState::open("c");
        s.accrue(&event("old", 50), 0).unwrap();
        for i in 0..ORIGINALS_WINDOW {
            s.accrue(&event(&format!("e{i}"), 1), 0).unwrap();
        }
        let m = reverse("v", "old", None);
        assert_eq!(s.correct(&m, None, Terms::default(), 0), Err(Rejection::OriginalUnknown("old".into())));
        let held = Original { kind: EntryKind::Accrual, requested: 50, reversed: 10 };
        let stale = LedgerView { as_of_seq: 0, original: Some(held) };
        assert_eq!(s.correct(&m, Some(&stale), Terms::default(), 0), Err(Rejection::OriginalUnknown("old".into())));
        let fresh = LedgerView { as_of_seq: 1, original: Some(held) };
        assert_eq!(
            s.correct(&m, Some(&fresh), Terms::default(), 0).unwrap().balance_delta,
            -40,
            "what the ledger says remains"
        );
        let again = reverse("v2", "old", None);
        assert!(
            matches!(
                s.correct(&again, Some(&fresh), Terms::default(), 0),
                Err(Rejection::Refused(Refusal::ExceedsOriginal { .. }))
            ),
            "memory now tracks it, whatever the (older) view says"
        );
        let none = LedgerView { as_of_seq: s.seq, original: None };
        assert!(matches!(
            s.correct(&reverse("v3", "nope", None), Some(&none), Terms::default(), 0),
            Err(Rejection::Refused(Refusal::OriginalNotFound(_)))
        ));
    }

    #[test]
    fn unchecked_accruals_wait_for_the_ledger_then_apply_in_order() {
        let mut s = LoyaltyState::open("c");
        let unchecked = |id: &str, p| PointsEvent { ledger_checked: false, ..event(id, p) };
        s.pending_events = vec![unchecked("x", 5), unchecked("y", 7), unchecked("z", 9), unchecked("bad", -1)];
        assert_eq!(s.unapplied_points(), 21);
        let batch = s.projection(10, usize::MAX, true);
        assert_eq!(batch.check.len(), 4);
        let report = s.projected(&batch, &[Known::New, Known::Same, Known::Other, Known::New], 0);
        assert_eq!(report.applied, vec!["x".to_string()]);
        assert_eq!(report.ignored.len(), 3);
        assert_eq!((s.points_balance, s.unapplied_points()), (5, 0));
        assert_eq!(s.unprojected.len(), 1, "x waits for the next write");
    }

    #[test]
    fn a_write_is_bounded_in_bytes_but_always_takes_something() {
        let mut s = LoyaltyState::open("c");
        let long = "\u{1F600}".repeat(256);
        for i in 0..10 {
            s.accrue(&PointsEvent { reason: long.clone(), source: long.clone(), ..event(&format!("e{i}"), 1) }, 0)
                .unwrap();
        }
        let one = s.unprojected[0].movement.approximate_size();
        assert!(one > 2_000, "two 256-character 4-byte texts: {one}");
        assert_eq!(s.projection(100, 3 * one, true).entries.len(), 3);
        assert_eq!(
            s.projection(100, 0, true).entries.len(),
            1,
            "a zero budget still takes one entry: a write always makes progress"
        );
    }

    #[test]
    fn every_unwritten_entry_stays_in_the_window() {
        let mut s = LoyaltyState::open("c");
        for i in 0..DEDUP_WINDOW + 50 {
            s.accrue(&event(&format!("e{i}"), 1), 0).unwrap();
        }
        assert!(s.accrue(&event("e0", 1), 0).is_err(), "e0 is not written yet: still known");
        project_all(&mut s);
        s.accrue(&event("next", 1), 0).unwrap();
        assert!(
            s.accrue(&event("e0", 1), 0).is_ok(),
            "written and out of the window: the gRPC layer's ledger check guards it"
        );
    }

    #[test]
    fn the_ledger_write_starts_where_the_ledger_is_and_results_are_bounded() {
        let mut s = LoyaltyState::open("c");
        s.accrue(&event("a", 1_000), 0).unwrap();
        project_all(&mut s);
        for i in 0..RESULTS_WINDOW + 10 {
            s.redeem(&redeem(&format!("r{i}"), 1), 0).unwrap();
        }
        let batch = s.projection(5, usize::MAX, true);
        assert_eq!((batch.after_seq, batch.entries.len()), (1, 5));
        assert_eq!(batch.totals_before, crate::domain::Totals { balance: 1_000, lifetime: 1_000 });
        assert_eq!(s.recent_redemptions.len(), RESULTS_WINDOW + 10, "unwritten results are all kept");
        s.projected(&batch, &[], 0);
        assert_eq!(s.projected_seq, 6);
        project_all(&mut s);
        assert_eq!(s.recent_redemptions.len(), RESULTS_WINDOW);
        assert_eq!(s.recent_redemptions[0].request.event_id, "r10", "the oldest go first");
        assert!(s.unprojected.is_empty());
    }

    /// The longest id (128 characters, all the alphabet allows) and the
    /// longest text (256 characters of 4 bytes each) in every field.
    fn longest(i: usize) -> (String, String) {
        let id = format!("{i:0>128}");
        (id, "\u{1F600}".repeat(256))
    }

    #[test]
    fn a_full_account_carries_a_bounded_state() {
        let mut s = LoyaltyState::open("c");
        for i in 0..2 * DEDUP_WINDOW {
            let (id, text) = longest(i);
            s.accrue(&PointsEvent { reason: text.clone(), source: text, ..event(&id, 1_000) }, 0).unwrap();
            project_all(&mut s);
        }
        for i in 0..2 * RESULTS_WINDOW {
            let (id, text) = longest(100_000 + i);
            s.redeem(&RedemptionRequest { event_id: id.clone(), points: 1, reward: text.clone() }, 0).unwrap();
            let (adjustment_id, _) = longest(300_000 + i);
            let m = AdjustmentRequest { event_id: adjustment_id, points: 1, reason: text, ..Default::default() }
                .movement()
                .unwrap();
            s.correct(&m, None, Terms::default(), 0).unwrap();
            project_all(&mut s);
        }
        let lots = serde_json::to_vec(&s.lots).unwrap().len();
        let windows = serde_json::to_vec(&s).unwrap().len() - lots;
        // Ids (1,000) and originals (1,000) of 128 characters, 64 redemption
        // and 64 correction results with 1 KiB texts: about 0.6 MB.
        assert!(windows < 640 * 1024, "windows {windows} bytes");
        // 2,000 live lots of 128-character ids; compaction bounds lots by bytes.
        s.compact_lots();
        // Past the budget, all but the newest 500 lots merge by expiry day (one "never" lot here).
        let newest = crate::domain::lots::UNMERGED_LOTS * (128 + 48);
        assert!(s.lots.approximate_bytes() <= newest + 1_024, "lots {} bytes", s.lots.approximate_bytes());
        let lots = serde_json::to_vec(&s.lots).unwrap().len();

        // A ledger outage: 500 entries of the longest texts wait unwritten.
        for i in 0..500 {
            let (id, text) = longest(200_000 + i);
            s.accrue(&PointsEvent { reason: text.clone(), source: text, ..event(&id, 1) }, 0).unwrap();
        }
        let with_backlog = serde_json::to_vec(&s).unwrap().len();
        println!(
            "carried state, longest values: windows {windows} bytes, lots {lots}, with 500 entries unwritten {with_backlog}"
        );
        assert!(with_backlog > 1024 * 1024, "the continue-as-new rule, not luck, bounds this: {with_backlog}");
    }
}
