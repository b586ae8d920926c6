//! Orders on the account: an accrual that carries its order's evaluation
//! (one per tier outcome, pinned by the API with the rule set version) is
//! settled here against the account's tier and campaign usage at the
//! moment it is decided; a return names lines of such an order.

use serde::{Deserialize, Serialize};

use super::answers::ChangeRecord;
use super::corrections::{BalanceChange, ReversalRequest};
use super::earning::{CampaignUsage, Earned, Evaluation, Order, ReturnedLine, Version, evaluate, settle};
use super::error::FieldError;
use super::kind::EntryKind;
use super::movement::{Effect, Refusal};
use super::points::MAX_POINTS;
use super::rejection::Rejection;
use super::state::LoyaltyState;
use super::tier::Tier;
use super::time::Millis;

/// An order's evaluation for the tiers it can be decided at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// The tiers this evaluation is for.
    pub tiers: Vec<Tier>,
    /// What the order earns at them, before per-customer caps.
    pub evaluation: Evaluation,
}

/// The order an accrual was evaluated from, as the API pinned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAccrual {
    /// The order's id.
    pub order_id: String,
    /// Digest of the order's content (a resend carries the same).
    pub digest: String,
    /// Each line's SKU and units, by index.
    pub lines: Vec<(String, i64)>,
    /// One evaluation per distinct outcome, covering every tier.
    pub variants: Vec<Variant>,
}

impl OrderAccrual {
    /// Evaluates a checked `order` under `version` for every tier, keeping
    /// one evaluation per distinct outcome. Fails, naming the field, on an
    /// unknown currency, an overflow, or more points than one accrual may
    /// credit.
    pub fn evaluate(order: &Order, version: &Version) -> Result<Self, FieldError> {
        let mut variants: Vec<Variant> = Vec::new();
        for tier in Tier::ALL {
            let evaluation = evaluate(order, version, tier)?;
            let most = evaluation.uncapped_points().ok_or_else(|| FieldError::new("order", "amounts overflow"))?;
            if most > i128::from(MAX_POINTS) {
                return Err(FieldError::new("order", format!("earns {most} points, more than {MAX_POINTS}")));
            }
            match variants.iter_mut().find(|v| v.evaluation == evaluation) {
                Some(v) => v.tiers.push(tier),
                None => variants.push(Variant { tiers: vec![tier], evaluation }),
            }
        }
        let lines = order.lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect();
        Ok(Self { order_id: order.order_id.clone(), digest: order.digest(), lines, variants })
    }

    /// The most points the order can earn (at any tier, before per-customer caps).
    pub fn most_points(&self) -> i64 {
        self.variants.iter().filter_map(|v| v.evaluation.uncapped_points()).max().unwrap_or(0) as i64
    }

    /// What the order earns for a customer in `tier` who used `usage` of
    /// the capped campaigns, decided at `now`: the one function the preview
    /// and the account share.
    pub fn earned(&self, tier: Tier, usage: &CampaignUsage, now: Millis) -> Result<Earned, FieldError> {
        let mut earned = settle(&self.order_id, &self.lines, self.for_tier(tier)?, usage, now);
        earned.digest.clone_from(&self.digest);
        Ok(earned)
    }

    /// The evaluation for a customer in `tier`.
    pub fn for_tier(&self, tier: Tier) -> Result<&Evaluation, FieldError> {
        self.variants
            .iter()
            .find(|v| v.tiers.contains(&tier))
            .map(|v| &v.evaluation)
            .ok_or_else(|| FieldError::new("order", format!("has no evaluation for tier {tier}")))
    }

    /// About how many bytes it takes in JSON (at least: every exact amount
    /// counts its eight decimals).
    pub fn approximate_size(&self) -> usize {
        let eval = |e: &Evaluation| {
            300 + 3 * 14 * e.lines.len()
                + e.campaigns.iter().map(|c| 120 + c.id.len() + 24 * c.lines.len()).sum::<usize>()
        };
        let lines: usize = self.lines.iter().map(|(sku, _)| sku.len() + 16).sum();
        100 + self.order_id.len() + lines + self.variants.iter().map(|v| 40 + eval(&v.evaluation)).sum::<usize>()
    }

    /// Bytes of its JSON: what its signal carries.
    pub fn json_size(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |v| v.len())
    }
}

impl LoyaltyState {
    /// What `order` earns if decided at `now`: the evaluation for the
    /// account's tier, settled against its campaign usage.
    pub fn earn(&self, order: &OrderAccrual, now: Millis) -> Result<Earned, FieldError> {
        order.earned(self.tier, &self.campaign_usage, now)
    }

    /// A return of lines must be decided on a ledger view that saw every
    /// entry touching its order, since the API computed the clawback from
    /// it: otherwise it is refused, retryable, and the API reads again.
    pub(super) fn check_return(&self, req: &ReversalRequest) -> Result<(), Rejection> {
        if req.lines.is_empty() || self.recent_changes.iter().any(|r| r.movement.event_id == req.event_id) {
            return Ok(());
        }
        let touched =
            self.originals.records.iter().find(|r| r.event_id == req.original_event_id).map(|r| r.touched_seq);
        match (touched, &req.ledger) {
            (Some(seq), Some(view)) if view.as_of_seq >= seq => Ok(()),
            (None, Some(_)) => Ok(()),
            _ => Err(Rejection::OriginalUnknown(req.original_event_id.clone())),
        }
    }

    /// A return of lines that claws back nothing, decided without changing
    /// anything: `Some` is a resend's answer, `None` a new return to record.
    pub(super) fn plan_return_nothing(&self, req: &ReversalRequest) -> Result<Option<BalanceChange>, Rejection> {
        let m = req.movement()?;
        if let Some(done) = self.recent_changes.iter().find(|r| r.movement.event_id == m.event_id) {
            return if done.movement == m {
                Ok(Some(done.result.clone()))
            } else {
                Err(Rejection::EventIdReused(m.event_id))
            };
        }
        self.check_new_id(&m.event_id)?;
        if !self.is_active {
            return Err(Rejection::Inactive);
        }
        let id = &req.original_event_id;
        match self.originals.resolve(id, req.ledger.as_ref()) {
            Some(Some(o)) if o.kind == EntryKind::Accrual => Ok(None),
            Some(Some(o)) => Err(Rejection::Refused(Refusal::NotReversible {
                event_id: id.clone(),
                kind: o.kind.as_str().to_owned(),
            })),
            Some(None) => Err(Rejection::Refused(Refusal::OriginalNotFound(id.clone()))),
            None => Err(Rejection::OriginalUnknown(id.clone())),
        }
    }

    /// Records a return of lines that claws back nothing (see
    /// `ReversalRequest::is_lines_only`): an entry of 0 points.
    pub(super) fn return_nothing(&mut self, req: &ReversalRequest, now: Millis) -> Result<BalanceChange, Rejection> {
        if let Some(answer) = self.plan_return_nothing(req)? {
            return Ok(answer);
        }
        let m = req.movement()?;
        // An original read from the ledger is tracked from now on, so the
        // next return of the order is fenced by this one (as `correct` does).
        let id = &req.original_event_id;
        if self.originals.get(id).is_none()
            && let Some(Some(original)) = self.originals.resolve(id, req.ledger.as_ref())
        {
            self.originals.put(id, original, self.seq);
        }
        let seq = self.record(m.clone(), Effect::default(), Vec::new(), now);
        let result = BalanceChange {
            balance_delta: 0,
            lifetime_delta: 0,
            shortfall: 0,
            balance_after: self.points_balance,
            points_balance: self.points_balance,
            lifetime_points: self.lifetime_points,
            tier: self.tier,
        };
        self.recent_changes.push(ChangeRecord { movement: m, result: result.clone(), seq });
        Ok(result)
    }

    /// Records the returned lines on the entry a return just made.
    pub(super) fn note_return(&mut self, lines: &[ReturnedLine], seq: u64) {
        if let Some(entry) = self.unprojected.iter_mut().rev().find(|e| e.seq == seq) {
            entry.returned = lines.to_vec();
        }
    }
}
