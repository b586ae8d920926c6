//! Account commands: what an accrual batch or a redemption does to the state.
//!
//! Each command is split into a pure decision (or plan) and a commit, so the
//! workflow can write the ledger between the two and commit only on success.

use std::collections::HashSet;

use super::dedup::DEDUP_WINDOW;
use super::error::FieldError;
use super::ids::EventId;
use super::messages::{
    EntryKind, LedgerEntry, LoyaltyState, LoyaltySummary, PointsEvent, RedemptionRecord, RedemptionRequest,
    RedemptionResult, TierChange,
};
use super::points::Points;
use super::text::BoundedText;
use super::tier::Tier;

/// The accruals of one batch, computed before the ledger write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccrualPlan {
    /// How many pending events (from the front) this plan covers.
    pub consumed: usize,
    /// The rows to write, one per applied event, in order.
    pub entries: Vec<LedgerEntry>,
    /// Events skipped as duplicates or invalid, with the reason.
    pub ignored: Vec<(String, String)>,
    /// Balance after the batch.
    pub balance: i64,
    /// Lifetime points after the batch.
    pub lifetime: i64,
    /// The tier change the batch causes, if any.
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
    /// Points reserved: write this row, then confirm or release.
    Write(LedgerEntry),
}

/// Failure type names carried to Temporal clients: the guide's three plus
/// ours. The workflow sets them and the gRPC layer reads them.
pub mod failure_type {
    /// A malformed redemption (the guide's).
    pub const VALIDATION_ERROR: &str = "ValidationError";
    /// Not enough points (the guide's).
    pub const INSUFFICIENT_POINTS: &str = "InsufficientPoints";
    /// A closed account (the guide's).
    pub const INACTIVE_ACCOUNT: &str = "InactiveAccount";
    /// An event id used before with different content.
    pub const EVENT_ID_REUSED: &str = "EventIdReused";
}

/// Why a redemption is refused. Each maps to a failure type of the wire contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemRejection {
    /// A malformed field.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// The account is closed.
    #[error("Cannot redeem points: account is inactive")]
    Inactive,
    /// Not enough points.
    #[error("Insufficient points: requested {requested}, available {available}")]
    Insufficient {
        /// Points asked for.
        requested: i64,
        /// Balance at the time.
        available: i64,
    },
    /// The event id was already used for a different accrual or redemption.
    #[error("event_id {0} was already used with different content")]
    EventIdReused(String),
}

impl RedeemRejection {
    /// The Temporal failure type carried to clients.
    pub fn failure_type(&self) -> &'static str {
        match self {
            RedeemRejection::Invalid(_) => failure_type::VALIDATION_ERROR,
            RedeemRejection::Inactive => failure_type::INACTIVE_ACCOUNT,
            RedeemRejection::Insufficient { .. } => failure_type::INSUFFICIENT_POINTS,
            RedeemRejection::EventIdReused(_) => failure_type::EVENT_ID_REUSED,
        }
    }
}

/// Checks an `add_points` payload the way the gRPC layer would; the workflow
/// also receives signals from other clients and must not trust them.
fn validate_accrual(event: &PointsEvent) -> Result<i64, FieldError> {
    EventId::parse(&event.event_id)?;
    BoundedText::parse("reason", &event.reason)?;
    BoundedText::parse("source", &event.source)?;
    Ok(Points::parse(event.points)?.get())
}

impl LoyaltyState {
    /// A new, empty, active account.
    pub fn open(customer_id: &str) -> Self {
        Self {
            customer_id: customer_id.to_owned(),
            points_balance: 0,
            lifetime_points: 0,
            tier: Tier::Bronze,
            is_active: true,
            processed_event_ids: Default::default(),
            pending_events: Vec::new(),
            recent_redemptions: Vec::new(),
            pending_voids: Vec::new(),
        }
    }

    /// The read model returned by queries.
    pub fn summary(&self) -> LoyaltySummary {
        LoyaltySummary {
            customer_id: self.customer_id.clone(),
            points_balance: self.points_balance,
            lifetime_points: self.lifetime_points,
            tier: self.tier,
            is_active: self.is_active,
        }
    }

    /// Marks the account closed; redemptions are refused from now on.
    pub fn close(&mut self) {
        self.is_active = false;
    }

    /// Plans the first `max` pending accruals: skips duplicates (in the window
    /// or earlier in the batch) and invalid events, and computes the ledger rows.
    pub fn plan_accruals(&self, max: usize) -> AccrualPlan {
        let consumed = self.pending_events.len().min(max);
        let mut seen = HashSet::new();
        let mut plan = AccrualPlan {
            consumed,
            entries: Vec::new(),
            ignored: Vec::new(),
            balance: self.points_balance,
            lifetime: self.lifetime_points,
            tier_change: None,
        };
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
            plan.balance = plan.balance.saturating_add(points);
            plan.lifetime = plan.lifetime.saturating_add(points);
            plan.entries.push(LedgerEntry {
                customer_id: self.customer_id.clone(),
                event_id: event.event_id.clone(),
                kind: EntryKind::Accrual,
                points,
                balance_after: plan.balance,
                reason: event.reason.clone(),
                source: event.source.clone(),
            });
        }
        let new_tier = Tier::for_lifetime(plan.lifetime);
        if new_tier != self.tier {
            plan.tier_change = Some(TierChange {
                customer_id: self.customer_id.clone(),
                old_tier: self.tier,
                new_tier,
                lifetime_points: plan.lifetime,
            });
        }
        plan
    }

    /// Applies a plan whose ledger rows were written.
    pub fn commit_accruals(&mut self, plan: &AccrualPlan) {
        self.pending_events.drain(..plan.consumed);
        for entry in &plan.entries {
            self.processed_event_ids.remember(entry.event_id.clone());
        }
        self.points_balance = plan.balance;
        self.lifetime_points = plan.lifetime;
        self.tier = Tier::for_lifetime(plan.lifetime);
    }

    /// Decides a redemption: idempotency first, then the request, then the account.
    pub fn decide_redemption(&self, req: &RedemptionRequest) -> Result<RedeemDecision, RedeemRejection> {
        if let Some(done) = self.recent_redemptions.iter().find(|r| r.request.event_id == req.event_id) {
            return if done.request == *req {
                Ok(RedeemDecision::Replay(done.result.clone()))
            } else {
                Err(RedeemRejection::EventIdReused(req.event_id.clone()))
            };
        }
        if self.processed_event_ids.contains(&req.event_id) {
            return Err(RedeemRejection::EventIdReused(req.event_id.clone()));
        }
        EventId::parse(&req.event_id)?;
        let points = Points::parse(req.points)?.get();
        BoundedText::parse("reward", &req.reward)?;
        if !self.is_active {
            return Err(RedeemRejection::Inactive);
        }
        if points > self.points_balance {
            return Err(RedeemRejection::Insufficient { requested: points, available: self.points_balance });
        }
        Ok(RedeemDecision::Apply)
    }

    /// Decides a redemption and, when it is new, reserves its points. After a
    /// [`RedeemStep::Write`], call [`Self::confirm_redemption`] or
    /// [`Self::release_redemption`] once the row's write is known.
    pub fn begin_redemption(&mut self, req: &RedemptionRequest) -> Result<RedeemStep, RedeemRejection> {
        Ok(match self.decide_redemption(req)? {
            RedeemDecision::Replay(done) => RedeemStep::Done(done),
            RedeemDecision::Apply => RedeemStep::Write(self.reserve_redemption(req)),
        })
    }

    fn reserve_redemption(&mut self, req: &RedemptionRequest) -> LedgerEntry {
        self.points_balance -= req.points;
        LedgerEntry {
            customer_id: self.customer_id.clone(),
            event_id: req.event_id.clone(),
            kind: EntryKind::Redemption,
            points: -req.points,
            balance_after: self.points_balance,
            reason: req.reward.clone(),
            source: String::new(),
        }
    }

    /// Records a reserved redemption as done and returns its result.
    pub fn confirm_redemption(&mut self, req: &RedemptionRequest) -> RedemptionResult {
        let result = RedemptionResult {
            redeemed: req.points,
            remaining_balance: self.points_balance,
            reward: req.reward.clone(),
        };
        self.processed_event_ids.remember(req.event_id.clone());
        self.pending_voids.retain(|id| id != &req.event_id);
        self.recent_redemptions.push(RedemptionRecord { request: req.clone(), result: result.clone() });
        if self.recent_redemptions.len() > DEDUP_WINDOW {
            self.recent_redemptions.remove(0);
        }
        result
    }

    /// Gives back the points of a reserved redemption whose write failed, and
    /// remembers to void whatever row the failed write may have left.
    pub fn release_redemption(&mut self, req: &RedemptionRequest) {
        self.points_balance += req.points;
        if !self.pending_voids.contains(&req.event_id) {
            self.pending_voids.push(req.event_id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, points: i64) -> PointsEvent {
        PointsEvent { event_id: id.into(), points, reason: "purchase".into(), source: "web".into() }
    }

    fn redeem(id: &str, points: i64) -> RedemptionRequest {
        RedemptionRequest { event_id: id.into(), points, reward: "coffee".into() }
    }

    fn account_with(balance_events: &[(&str, i64)]) -> LoyaltyState {
        let mut s = LoyaltyState::open("c1");
        s.pending_events = balance_events.iter().map(|(id, p)| event(id, *p)).collect();
        let plan = s.plan_accruals(usize::MAX);
        s.commit_accruals(&plan);
        s
    }

    #[test]
    fn accruals_apply_in_order_with_running_balance() {
        let mut s = LoyaltyState::open("c1");
        s.pending_events = vec![event("a", 600), event("b", 500)];
        let plan = s.plan_accruals(10);
        assert_eq!(plan.entries.iter().map(|e| e.balance_after).collect::<Vec<_>>(), vec![600, 1_100]);
        assert_eq!(plan.tier_change.as_ref().map(|c| (c.old_tier, c.new_tier)), Some((Tier::Bronze, Tier::Silver)));
        s.commit_accruals(&plan);
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
    fn duplicates_in_window_and_within_a_batch_apply_once() {
        let mut s = account_with(&[("a", 100)]);
        s.pending_events = vec![event("a", 100), event("b", 10), event("b", 10)];
        let plan = s.plan_accruals(10);
        assert_eq!(plan.entries.len(), 1);
        assert_eq!(plan.ignored.len(), 2);
        s.commit_accruals(&plan);
        assert_eq!(s.points_balance, 110);
    }

    #[test]
    fn invalid_signals_are_ignored_not_applied() {
        let mut s = LoyaltyState::open("c1");
        s.pending_events = vec![event("neg", -5), event("zero", 0), event("bad id", 5), event("ok", 5)];
        let plan = s.plan_accruals(10);
        assert_eq!(plan.ignored.len(), 3);
        s.commit_accruals(&plan);
        assert_eq!(s.points_balance, 5);
    }

    #[test]
    fn batches_are_bounded_and_keep_the_rest_pending() {
        let mut s = LoyaltyState::open("c1");
        s.pending_events = (0..5).map(|i| event(&format!("e{i}"), 1)).collect();
        let plan = s.plan_accruals(2);
        s.commit_accruals(&plan);
        assert_eq!(s.points_balance, 2);
        assert_eq!(s.pending_events.first().map(|e| e.event_id.as_str()), Some("e2"));
    }

    #[test]
    fn redemption_checks() {
        let s = account_with(&[("a", 100)]);
        assert_eq!(s.decide_redemption(&redeem("r", 100)), Ok(RedeemDecision::Apply));
        assert_eq!(
            s.decide_redemption(&redeem("r", 101)),
            Err(RedeemRejection::Insufficient { requested: 101, available: 100 })
        );
        assert_eq!(s.decide_redemption(&redeem("r", 0)).unwrap_err().failure_type(), "ValidationError");
        assert_eq!(s.decide_redemption(&redeem("r", -3)).unwrap_err().failure_type(), "ValidationError");
        assert_eq!(s.decide_redemption(&redeem("a", 1)), Err(RedeemRejection::EventIdReused("a".into())));
        let mut closed = s.clone();
        closed.close();
        assert_eq!(closed.decide_redemption(&redeem("r", 1)), Err(RedeemRejection::Inactive));
    }

    #[test]
    fn a_retried_redemption_returns_the_original_result_and_deducts_once() {
        let mut s = account_with(&[("a", 100)]);
        let req = redeem("r", 30);
        assert!(matches!(s.begin_redemption(&req), Ok(RedeemStep::Write(_))));
        let first = s.confirm_redemption(&req);
        assert_eq!(first.remaining_balance, 70);
        // Even once the balance no longer covers it, the retry replays.
        s.points_balance = 0;
        assert_eq!(s.decide_redemption(&req), Ok(RedeemDecision::Replay(first.clone())));
        assert_eq!(s.begin_redemption(&req), Ok(RedeemStep::Done(first)));
        assert_eq!(s.points_balance, 0, "a replay reserves nothing");
        let mut other = req.clone();
        other.points = 31;
        assert_eq!(s.decide_redemption(&other), Err(RedeemRejection::EventIdReused("r".into())));
    }

    #[test]
    fn a_released_redemption_restores_the_balance_and_can_be_retried() {
        let mut s = account_with(&[("a", 100)]);
        let req = redeem("r", 40);
        let Ok(RedeemStep::Write(entry)) = s.begin_redemption(&req) else { panic!("must write") };
        assert_eq!((entry.points, entry.balance_after), (-40, 60));
        s.release_redemption(&req);
        assert_eq!(s.points_balance, 100);
        assert_eq!(s.pending_voids, vec!["r".to_string()]);
        assert!(matches!(s.begin_redemption(&req), Ok(RedeemStep::Write(_))));
        s.confirm_redemption(&req);
        assert!(s.pending_voids.is_empty(), "a confirmed retry must cancel the void");
    }

    #[test]
    fn state_from_the_guide_decodes_with_defaults() {
        let guide = r#"{"customer_id":"c1","points_balance":5,"lifetime_points":5,"tier":"Bronze",
            "is_active":true,"processed_event_ids":["a"],"pending_events":[{"event_id":"b","points":1,"reason":"x"}]}"#;
        let s: LoyaltyState = serde_json::from_str(guide).unwrap();
        assert_eq!(s.pending_events[0].source, "");
        assert!(s.recent_redemptions.is_empty());
    }
}
