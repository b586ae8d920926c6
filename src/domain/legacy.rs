//! The previous version's account commands, kept so that runs recorded
//! before the one-writer core (no `one-writer` patch marker) replay and
//! finish exactly as they were written. New runs never call these.
//!
//! Each command is split into a pure plan and a finish, so the legacy
//! workflow can write the ledger between the two. The ledger decides against
//! durable data and answers with a [`BatchOutcome`]; finishing adopts the
//! ledger's totals. A `None` answer comes from a history recorded by an even
//! earlier version whose activities returned nothing: the plan's own
//! arithmetic is used then, as that version did.

use std::collections::HashSet;

use super::account::{Rejection, validate_accrual};
use super::dedup::DEDUP_WINDOW;
use super::ids::EventId;
use super::messages::{
    BalanceChange, BatchOutcome, InDoubtRedemption, LoyaltyState, Outcome, Recorded, RedemptionRecord,
    RedemptionRequest, RedemptionResult, TierChange,
};
use super::movement::{Movement, Totals};
use super::points::Points;
use super::text::BoundedText;
use super::tier::Tier;

/// The accruals of one batch, computed before the ledger write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccrualPlan {
    /// How many pending events (from the front) this plan covers.
    pub consumed: usize,
    /// The events to record, in order.
    pub movements: Vec<Movement>,
    /// Events skipped as duplicates or invalid, with the reason.
    pub ignored: Vec<(String, String)>,
    /// Totals if every movement applies (used for histories of the earlier
    /// version, whose ledger did not answer).
    pub expected: Totals,
}

/// What committing a batch did, for the workflow's logs and notifications.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Events the ledger already held from an earlier write (resends).
    pub duplicates: Vec<String>,
    /// Events whose id the ledger holds for different content.
    pub conflicts: Vec<String>,
    /// The tier change the batch caused, if any.
    pub tier_change: Option<TierChange>,
}

/// How to answer an acceptable redemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemDecision {
    /// Already applied with the same content: return the original result.
    Replay(RedemptionResult),
    /// New: reserve the points and write the ledger.
    Apply,
}

/// The first step of an accepted redemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemStep {
    /// Already applied: answer with the original result, write nothing.
    Done(RedemptionResult),
    /// Points reserved: record this movement, then finish.
    Write(Movement),
}

impl LoyaltyState {
    /// Takes the ledger's totals; returns the tier change they cause.
    fn adopt(&mut self, totals: Totals, caused_by: &str) -> Option<TierChange> {
        self.points_balance = totals.balance;
        self.lifetime_points = totals.lifetime;
        let old_tier = self.tier;
        self.tier = Tier::for_lifetime(totals.lifetime);
        (self.tier != old_tier).then(|| TierChange {
            customer_id: self.customer_id.clone(),
            old_tier,
            new_tier: self.tier,
            lifetime_points: totals.lifetime,
            caused_by: caused_by.to_owned(),
        })
    }

    /// Plans the first `max` pending accruals: skips duplicates (in the window
    /// or earlier in the batch) and invalid events. The ledger catches the
    /// duplicates the window has forgotten.
    pub fn plan_accruals(&self, max: usize) -> AccrualPlan {
        let consumed = self.pending_events.len().min(max);
        let mut seen = HashSet::new();
        let mut plan = AccrualPlan { consumed, movements: Vec::new(), ignored: Vec::new(), expected: self.totals() };
        for event in &self.pending_events[..consumed] {
            let points = match validate_accrual(event) {
                Ok(points) => points,
                Err(e) => {
                    plan.ignored.push((event.event_id.clone(), e.to_string()));
                    continue;
                }
            };
            if self.processed_event_ids.contains(&event.event_id) || !seen.insert(event.event_id.as_str()) {
                plan.ignored.push((event.event_id.clone(), "duplicate event_id".into()));
                continue;
            }
            plan.expected.balance = plan.expected.balance.saturating_add(points);
            plan.expected.lifetime = plan.expected.lifetime.saturating_add(points);
            plan.movements.push(event.movement());
        }
        plan
    }

    /// Applies a plan whose write finished, with the ledger's answer.
    pub fn commit_accruals(
        &mut self,
        plan: &AccrualPlan,
        reply: Option<&BatchOutcome>,
        write_id: &str,
    ) -> CommitReport {
        self.pending_events.drain(..plan.consumed);
        let mut report = CommitReport::default();
        let totals = match reply {
            Some(reply) => {
                for (movement, outcome) in plan.movements.iter().zip(&reply.outcomes) {
                    match outcome {
                        Outcome::Applied(_) | Outcome::Recovered(_) => {}
                        Outcome::Duplicate(_) => report.duplicates.push(movement.event_id.clone()),
                        Outcome::Conflict | Outcome::Refused(_) => {
                            report.conflicts.push(movement.event_id.clone());
                            continue;
                        }
                    }
                    self.processed_event_ids.remember(movement.event_id.clone());
                }
                reply.totals
            }
            None => {
                for movement in &plan.movements {
                    self.processed_event_ids.remember(movement.event_id.clone());
                }
                plan.expected
            }
        };
        report.tier_change = self.adopt(totals, write_id);
        report
    }

    /// Decides a redemption: idempotency first, then the request, then the account.
    pub fn decide_redemption(&self, req: &RedemptionRequest) -> Result<RedeemDecision, Rejection> {
        if let Some(done) = self.recent_redemptions.iter().find(|r| r.request.event_id == req.event_id) {
            return if done.request == *req {
                Ok(RedeemDecision::Replay(done.result.clone()))
            } else {
                Err(Rejection::EventIdReused(req.event_id.clone()))
            };
        }
        if !self.in_doubt.is_empty() {
            return Err(Rejection::Settling);
        }
        if self.processed_event_ids.contains(&req.event_id) {
            return Err(Rejection::EventIdReused(req.event_id.clone()));
        }
        EventId::parse(&req.event_id)?;
        let points = Points::parse(req.points)?.get();
        BoundedText::parse("reward", &req.reward)?;
        if !self.is_active {
            return Err(Rejection::Inactive);
        }
        if points > self.points_balance {
            return Err(Rejection::Insufficient { requested: points, available: self.points_balance });
        }
        Ok(RedeemDecision::Apply)
    }

    /// Whether a redemption refused with `rejection` could be afforded once the
    /// accruals already acknowledged (still pending) are applied: it should
    /// wait for them rather than be refused, since an acknowledged accrual
    /// counts from the moment it was acknowledged.
    pub fn waits_for_pending(&self, rejection: &Rejection) -> bool {
        match rejection {
            Rejection::Insufficient { requested, available } => {
                let pending =
                    self.pending_events.iter().filter_map(|e| validate_accrual(e).ok()).fold(0i64, i64::saturating_add);
                requested.saturating_sub(*available) <= pending
            }
            _ => false,
        }
    }

    /// Decides a redemption and, when it is new, reserves its points. After a
    /// [`RedeemStep::Write`], call [`Self::finish_redemption`] with the
    /// ledger's answer, or [`Self::redemption_in_doubt`] if the write failed.
    pub fn begin_redemption(&mut self, req: &RedemptionRequest) -> Result<RedeemStep, Rejection> {
        Ok(match self.decide_redemption(req)? {
            RedeemDecision::Replay(done) => RedeemStep::Done(done),
            RedeemDecision::Apply => {
                self.points_balance -= req.points;
                RedeemStep::Write(req.movement())
            }
        })
    }

    /// Finishes a reserved redemption with the ledger's answer: the ledger's
    /// totals replace the reservation, whatever the outcome.
    pub fn finish_redemption(
        &mut self,
        req: &RedemptionRequest,
        reply: Option<&BatchOutcome>,
    ) -> Result<RedemptionResult, Rejection> {
        let Some(reply) = reply else {
            let result = RedemptionResult {
                redeemed: req.points,
                remaining_balance: self.points_balance,
                reward: req.reward.clone(),
            };
            return Ok(self.remember_redemption(req, result));
        };
        self.adopt(reply.totals, "");
        match reply.outcomes.first() {
            Some(Outcome::Applied(r) | Outcome::Recovered(r) | Outcome::Duplicate(r)) => {
                Ok(self.remember_redemption(req, redemption_result(req, r)))
            }
            Some(Outcome::Refused(refusal)) => Err(Rejection::Refused(refusal.clone())),
            Some(Outcome::Conflict) | None => Err(Rejection::EventIdReused(req.event_id.clone())),
        }
    }

    fn remember_redemption(&mut self, req: &RedemptionRequest, result: RedemptionResult) -> RedemptionResult {
        self.processed_event_ids.remember(req.event_id.clone());
        self.pending_voids.retain(|id| id != &req.event_id);
        self.recent_redemptions.push(RedemptionRecord { request: req.clone(), result: result.clone(), seq: 0 });
        if self.recent_redemptions.len() > DEDUP_WINDOW {
            self.recent_redemptions.remove(0);
        }
        result
    }

    /// Keeps a reserved redemption whose write failed with an unknown outcome:
    /// its points stay reserved until [`Self::settle_in_doubt`].
    pub fn redemption_in_doubt(&mut self, req: &RedemptionRequest, write_id: &str) {
        self.in_doubt.push(InDoubtRedemption { request: req.clone(), write_id: write_id.to_owned() });
    }

    /// Settles every in-doubt redemption with what the ledger holds: `found[i]`
    /// is the row the i-th one's write left, if any. Found ones are confirmed,
    /// the others released; the ledger's totals replace the reservations.
    pub fn settle_in_doubt(&mut self, found: &[Option<Recorded>], totals: Totals) -> Option<TierChange> {
        let settled: Vec<_> = self.in_doubt.drain(..found.len().min(self.in_doubt.len())).collect();
        for (doubt, row) in settled.iter().zip(found) {
            if let Some(r) = row {
                self.remember_redemption(&doubt.request, redemption_result(&doubt.request, r));
            }
        }
        self.adopt(totals, "")
    }

    /// Checks that the account takes corrections now.
    pub fn check_correction(&self) -> Result<(), Rejection> {
        if !self.is_active {
            return Err(Rejection::Inactive);
        }
        if !self.in_doubt.is_empty() {
            return Err(Rejection::Settling);
        }
        Ok(())
    }

    /// Finishes a reversal or adjustment with the ledger's answer.
    pub fn finish_correction(
        &mut self,
        event_id: &str,
        reply: &BatchOutcome,
        write_id: &str,
    ) -> Result<(BalanceChange, Option<TierChange>), Rejection> {
        let tier_change = self.adopt(reply.totals, write_id);
        match reply.outcomes.first() {
            Some(outcome @ (Outcome::Applied(r) | Outcome::Recovered(r) | Outcome::Duplicate(r))) => {
                let change = BalanceChange {
                    balance_delta: r.effect.balance_delta,
                    lifetime_delta: r.effect.lifetime_delta,
                    shortfall: r.effect.shortfall,
                    balance_after: r.balance_after,
                    points_balance: self.points_balance,
                    lifetime_points: self.lifetime_points,
                    tier: self.tier,
                };
                // A resend announces nothing new.
                let announce = !matches!(outcome, Outcome::Duplicate(_));
                Ok((change, tier_change.filter(|_| announce)))
            }
            Some(Outcome::Refused(refusal)) => Err(Rejection::Refused(refusal.clone())),
            Some(Outcome::Conflict) | None => Err(Rejection::EventIdReused(event_id.to_owned())),
        }
    }
}

fn redemption_result(req: &RedemptionRequest, r: &Recorded) -> RedemptionResult {
    RedemptionResult { redeemed: req.points, remaining_balance: r.balance_after, reward: req.reward.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::messages::{EntryKind, PointsEvent};
    use crate::domain::movement::Effect;
    use crate::domain::movement::Refusal;

    fn event(id: &str, points: i64) -> PointsEvent {
        PointsEvent {
            event_id: id.into(),
            points,
            reason: "purchase".into(),
            source: "web".into(),
            ledger_checked: false,
            ..Default::default()
        }
    }

    fn redeem(id: &str, points: i64) -> RedemptionRequest {
        RedemptionRequest { event_id: id.into(), points, reward: "coffee".into() }
    }

    fn recorded(delta: i64, balance_after: i64) -> Recorded {
        Recorded { effect: Effect { requested: delta.abs(), balance_delta: delta, ..Effect::default() }, balance_after }
    }

    /// What a healthy ledger answers to a plan: every movement applied.
    fn ledger_applies(s: &LoyaltyState, plan: &AccrualPlan) -> BatchOutcome {
        let mut balance = s.points_balance;
        let outcomes = plan
            .movements
            .iter()
            .map(|m| {
                balance += m.points;
                Outcome::Applied(recorded(m.points, balance))
            })
            .collect();
        BatchOutcome { outcomes, totals: plan.expected }
    }

    fn account_with(balance_events: &[(&str, i64)]) -> LoyaltyState {
        let mut s = LoyaltyState::open("c1");
        s.pending_events = balance_events.iter().map(|(id, p)| event(id, *p)).collect();
        let plan = s.plan_accruals(usize::MAX);
        let reply = ledger_applies(&s, &plan);
        s.commit_accruals(&plan, Some(&reply), "w0");
        s
    }

    #[test]
    fn accruals_apply_in_order_and_report_the_tier_change() {
        let mut s = LoyaltyState::open("c1");
        s.pending_events = vec![event("a", 600), event("b", 500)];
        let plan = s.plan_accruals(10);
        assert_eq!(plan.movements.iter().map(|m| m.event_id.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
        let reply = ledger_applies(&s, &plan);
        let report = s.commit_accruals(&plan, Some(&reply), "w1");
        let change = report.tier_change.expect("tier change");
        assert_eq!((change.old_tier, change.new_tier, change.caused_by.as_str()), (Tier::Bronze, Tier::Silver, "w1"));
        assert_eq!((s.points_balance, s.lifetime_points, s.tier), (1_100, 1_100, Tier::Silver));
        assert!(s.pending_events.is_empty());
    }

    #[test]
    fn plan_leaves_state_untouched_until_commit() {
        let mut s = LoyaltyState::open("c1");
        s.pending_events = vec![event("a", 5)];
        let before = s.clone();
        let _ = s.plan_accruals(10);
        assert_eq!(s, before);
    }

    #[test]
    fn duplicates_in_window_and_within_a_batch_are_not_sent() {
        let mut s = account_with(&[("a", 100)]);
        s.pending_events = vec![event("a", 100), event("b", 10), event("b", 10)];
        let plan = s.plan_accruals(10);
        assert_eq!(plan.movements.len(), 1);
        assert_eq!(plan.ignored.len(), 2);
    }

    #[test]
    fn the_ledgers_totals_win_over_the_plan() {
        // "old" left the window long ago; the ledger knows it was applied.
        let mut s = account_with(&[("a", 100)]);
        s.pending_events = vec![event("old", 50), event("new", 10)];
        let plan = s.plan_accruals(10);
        assert_eq!(plan.movements.len(), 2, "the window has forgotten \"old\"");
        let reply = BatchOutcome {
            outcomes: vec![Outcome::Duplicate(recorded(50, 50)), Outcome::Applied(recorded(10, 110))],
            totals: Totals { balance: 110, lifetime: 110 },
        };
        let report = s.commit_accruals(&plan, Some(&reply), "w2");
        assert_eq!(report.duplicates, vec!["old".to_string()]);
        assert_eq!((s.points_balance, s.lifetime_points), (110, 110));
        assert!(s.processed_event_ids.contains("old"), "known again after the ledger said so");
    }

    #[test]
    fn conflicting_events_are_reported_and_not_remembered() {
        let mut s = account_with(&[("a", 100)]);
        s.pending_events = vec![event("x", 5)];
        let plan = s.plan_accruals(10);
        let reply = BatchOutcome { outcomes: vec![Outcome::Conflict], totals: s.totals() };
        let report = s.commit_accruals(&plan, Some(&reply), "w3");
        assert_eq!(report.conflicts, vec!["x".to_string()]);
        assert!(!s.processed_event_ids.contains("x"));
        assert_eq!(s.points_balance, 100);
    }

    #[test]
    fn without_a_ledger_answer_the_plan_is_applied() {
        let mut s = LoyaltyState::open("c1");
        s.pending_events = vec![event("a", 7)];
        let plan = s.plan_accruals(10);
        s.commit_accruals(&plan, None, "");
        assert_eq!(s.points_balance, 7);
    }

    #[test]
    fn invalid_signals_are_ignored_not_applied() {
        let mut s = LoyaltyState::open("c1");
        s.pending_events = vec![event("neg", -5), event("zero", 0), event("bad id", 5), event("ok", 5)];
        let plan = s.plan_accruals(10);
        assert_eq!(plan.ignored.len(), 3);
        assert_eq!(plan.expected.balance, 5);
    }

    #[test]
    fn batches_are_bounded_and_keep_the_rest_pending() {
        let mut s = LoyaltyState::open("c1");
        s.pending_events = (0..5).map(|i| event(&format!("e{i}"), 1)).collect();
        let plan = s.plan_accruals(2);
        let reply = ledger_applies(&s, &plan);
        s.commit_accruals(&plan, Some(&reply), "w");
        assert_eq!(s.points_balance, 2);
        assert_eq!(s.pending_events.first().map(|e| e.event_id.as_str()), Some("e2"));
    }

    #[test]
    fn redemption_checks() {
        let s = account_with(&[("a", 100)]);
        assert_eq!(s.decide_redemption(&redeem("r", 100)), Ok(RedeemDecision::Apply));
        assert_eq!(
            s.decide_redemption(&redeem("r", 101)),
            Err(Rejection::Insufficient { requested: 101, available: 100 })
        );
        assert_eq!(s.decide_redemption(&redeem("r", 0)).unwrap_err().failure_type(), "ValidationError");
        assert_eq!(s.decide_redemption(&redeem("r", -3)).unwrap_err().failure_type(), "ValidationError");
        assert_eq!(s.decide_redemption(&redeem("a", 1)), Err(Rejection::EventIdReused("a".into())));
        let mut closed = s.clone();
        closed.close();
        assert_eq!(closed.decide_redemption(&redeem("r", 1)), Err(Rejection::Inactive));
    }

    fn applied(s: &LoyaltyState, delta: i64) -> BatchOutcome {
        let balance = s.points_balance;
        BatchOutcome {
            outcomes: vec![Outcome::Applied(recorded(delta, balance))],
            totals: Totals { balance, lifetime: s.lifetime_points },
        }
    }

    #[test]
    fn a_redemption_the_pending_accruals_would_cover_waits_instead_of_failing() {
        let mut state = LoyaltyState::open("c");
        state.points_balance = 30;
        let req = |points| RedemptionRequest { event_id: "r1".into(), points, reward: String::new() };
        let refused = |state: &LoyaltyState, points| state.decide_redemption(&req(points)).unwrap_err();
        assert!(!state.waits_for_pending(&refused(&state, 50)), "nothing pending");
        let event = |id: &str, points| PointsEvent {
            event_id: id.into(),
            points,
            reason: String::new(),
            source: String::new(),
            ledger_checked: false,
            ..Default::default()
        };
        state.pending_events.push(event("a1", 15));
        state.pending_events.push(event("bad", -5));
        assert!(!state.waits_for_pending(&refused(&state, 50)), "30 + 15 < 50; invalid events count for nothing");
        state.pending_events.push(event("a2", 5));
        assert!(state.waits_for_pending(&refused(&state, 50)), "30 + 15 + 5 covers 50");
        assert!(!state.waits_for_pending(&Rejection::Inactive));
    }
    #[test]
    fn a_retried_redemption_returns_the_original_result_and_deducts_once() {
        let mut s = account_with(&[("a", 100)]);
        let req = redeem("r", 30);
        assert!(matches!(s.begin_redemption(&req), Ok(RedeemStep::Write(_))));
        let reply = applied(&s, -30);
        let first = s.finish_redemption(&req, Some(&reply)).unwrap();
        assert_eq!((first.remaining_balance, s.points_balance), (70, 70));
        // Even once the balance no longer covers it, the retry replays.
        s.points_balance = 0;
        assert_eq!(s.decide_redemption(&req), Ok(RedeemDecision::Replay(first.clone())));
        assert_eq!(s.begin_redemption(&req), Ok(RedeemStep::Done(first)));
        assert_eq!(s.points_balance, 0, "a replay reserves nothing");
        let mut other = req.clone();
        other.points = 31;
        assert_eq!(s.decide_redemption(&other), Err(Rejection::EventIdReused("r".into())));
    }

    #[test]
    fn a_redemption_the_ledger_refuses_gives_its_reservation_back() {
        let mut s = account_with(&[("a", 100)]);
        let req = redeem("r", 40);
        let Ok(RedeemStep::Write(m)) = s.begin_redemption(&req) else { panic!("must write") };
        assert_eq!((m.kind, m.points, s.points_balance), (EntryKind::Redemption, 40, 60));
        let reply = BatchOutcome { outcomes: vec![Outcome::Conflict], totals: Totals { balance: 100, lifetime: 100 } };
        assert_eq!(s.finish_redemption(&req, Some(&reply)), Err(Rejection::EventIdReused("r".into())));
        assert_eq!(s.points_balance, 100);
    }

    #[test]
    fn an_in_doubt_redemption_holds_its_points_until_settled() {
        let mut s = account_with(&[("a", 100)]);
        let req = redeem("r", 40);
        s.begin_redemption(&req).unwrap();
        s.redemption_in_doubt(&req, "w9");
        assert_eq!(s.points_balance, 60, "still reserved");
        assert_eq!(s.decide_redemption(&redeem("q", 1)), Err(Rejection::Settling));
        assert_eq!(s.decide_redemption(&req), Err(Rejection::Settling));
        assert_eq!(s.check_correction(), Err(Rejection::Settling));

        let mut released = s.clone();
        released.settle_in_doubt(&[None], Totals { balance: 100, lifetime: 100 });
        assert_eq!(released.points_balance, 100);
        assert_eq!(released.decide_redemption(&req), Ok(RedeemDecision::Apply), "the retry applies it");

        s.settle_in_doubt(&[Some(recorded(-40, 60))], Totals { balance: 60, lifetime: 100 });
        assert_eq!(s.points_balance, 60);
        assert!(matches!(s.decide_redemption(&req), Ok(RedeemDecision::Replay(r)) if r.remaining_balance == 60));
    }

    #[test]
    fn corrections_adopt_the_ledger_and_report_tier_changes() {
        let mut s = account_with(&[("a", 1_200)]);
        assert_eq!(s.tier, Tier::Silver);
        let effect = Effect { requested: 500, balance_delta: -500, lifetime_delta: -500, shortfall: 0 };
        let reply = BatchOutcome {
            outcomes: vec![Outcome::Applied(Recorded { effect, balance_after: 700 })],
            totals: Totals { balance: 700, lifetime: 700 },
        };
        let (change, tier) = s.finish_correction("rev", &reply, "w5").unwrap();
        assert_eq!((change.balance_delta, change.points_balance, change.tier), (-500, 700, Tier::Bronze));
        assert_eq!(tier.map(|t| t.new_tier), Some(Tier::Bronze));
        let refused = BatchOutcome {
            outcomes: vec![Outcome::Refused(Refusal::OriginalNotFound("zz".into()))],
            totals: s.totals(),
        };
        assert_eq!(s.finish_correction("rev2", &refused, "w6").unwrap_err().failure_type(), "OriginalNotFound");
    }
}
