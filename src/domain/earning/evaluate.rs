//! The evaluation of an order under one rule set version for one tier: the
//! first half of the one earning function (`settle` is the second). The
//! API runs it, never the workflow, and hands the account the result with
//! its version pinned; the preview runs the same code.
//!
//! The order of evaluation (README, "Earning rules"):
//! 1. each line's earning amount: net of its discount (or gross), zero if
//!    excluded; non-earning tenders come off the lines in order, then off
//!    shipping and tax when those earn;
//! 2. below the minimum order, nothing earns;
//! 3. base points per line, exact: amount x rate points / rate per;
//! 4. the tier multiplier on base points;
//! 5. campaigns by priority (higher first), then id: each matched line's
//!    bonus (a line matches only if it earns: amount above zero), the
//!    per-order cap taken off the lines in order;
//! 6. (`settle`) per-customer caps, in the period of the decision, then
//!    rounding once.

use serde::{Deserialize, Serialize};

use super::calendar::{Period, Weekday};
use super::exact::{Exact, Factor, Rounding, SCALE};
use super::order::Order;
use super::rules::{Campaign, Effect, Rate, RuleRef, Stacking, Version};
use crate::domain::error::FieldError;
use crate::domain::tier::Tier;
use crate::domain::time::Millis;

/// One line's exact points at one tier: base, what the tier multiplier
/// added, and what campaigns without a per-customer cap added. Serialized
/// as a three-item array: an order's evaluation rides on its signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(Exact, Exact, Exact)", into = "(Exact, Exact, Exact)")]
pub struct LinePoints {
    /// Earning amount at the rate.
    pub base: Exact,
    /// What the tier multiplier added.
    pub tier: Exact,
    /// What uncapped campaigns added.
    pub bonus: Exact,
}

impl From<(Exact, Exact, Exact)> for LinePoints {
    fn from((base, tier, bonus): (Exact, Exact, Exact)) -> Self {
        Self { base, tier, bonus }
    }
}

impl From<LinePoints> for (Exact, Exact, Exact) {
    fn from(l: LinePoints) -> Self {
        (l.base, l.tier, l.bonus)
    }
}

impl LinePoints {
    /// The line's points before per-customer caps.
    pub fn total(&self) -> Option<Exact> {
        self.base.plus(self.tier)?.plus(self.bonus)
    }
}

/// A campaign's per-customer cap, as the account applies it: the period
/// is the one containing the moment the account decides the accrual (its
/// clock only moves forward, so it keeps one period per campaign).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapRule {
    /// Most points per customer in a period.
    pub points: i64,
    /// The period.
    pub period: Period,
    /// The campaign's window (a `campaign` period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_ms: Option<Millis>,
    /// End of the campaign's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_ms: Option<Millis>,
}

/// The period a cap counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapWindow {
    /// Most points per customer in the period.
    pub points: i64,
    /// Start of the period (Unix ms).
    pub start_ms: Millis,
    /// End of the period, exclusive; `None`: open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<Millis>,
    /// The period is the campaign's window (fixed, so an order decided after
    /// it ended still counts in it); calendar periods follow the clock.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whole_campaign: bool,
}

impl CapRule {
    /// The period containing `now`.
    pub fn window(&self, now: Millis) -> CapWindow {
        let (start_ms, end_ms) = self.period.bounds(now, (self.starts_ms, self.ends_ms));
        CapWindow { points: self.points, start_ms, end_ms, whole_campaign: self.period == Period::Campaign }
    }
}

/// What one campaign gives the order (after its per-order cap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignResult {
    /// The campaign.
    pub id: String,
    /// Its points (after its per-order cap).
    pub total: Exact,
    /// With a per-customer cap: its points per matched line (line index,
    /// points), which the cap lowers in line order; empty otherwise (they
    /// are in the lines' `bonus`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<(u32, Exact)>,
    /// With a per-customer cap: its points for the order as a whole (a
    /// fixed bonus); otherwise they are in the evaluation's `order`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub order: Exact,
    /// Its per-customer cap, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<CapRule>,
}

fn is_zero(e: &Exact) -> bool {
    *e == Exact::ZERO
}

/// An order evaluated for one tier, before per-customer caps and rounding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The version that decided it.
    pub rule_set: RuleRef,
    /// How it is rounded.
    pub rounding: Rounding,
    /// Every line, by index.
    pub lines: Vec<LinePoints>,
    /// Points of the order as a whole: shipping and tax when they earn
    /// (tier multiplier included) and uncapped fixed bonuses.
    pub order: Exact,
    /// False when the order is below the minimum: it earns nothing.
    pub minimum_met: bool,
    /// The campaigns that applied, in the order they did.
    pub campaigns: Vec<CampaignResult>,
}

fn overflow() -> FieldError {
    FieldError::new("order", "amounts overflow")
}

/// Exact base points of `amount` minor units at `rate`.
fn base(amount: i64, rate: Rate) -> Option<Exact> {
    let per_unit = SCALE / 100 / i128::from(rate.per) * 100;
    i128::from(amount).checked_mul(i128::from(rate.points))?.checked_mul(per_unit).map(Exact)
}

/// `points` times `factor` (hundredths); exact because every base is a
/// multiple of 10^4 units and a factor has two decimals.
fn scale(points: Exact, factor: Factor) -> Option<Exact> {
    points.0.checked_mul(factor.0).map(|v| Exact(v / 100))
}

impl Campaign {
    fn matches_order(&self, order: &Order, tier: Tier, window: (Option<Millis>, Option<Millis>)) -> bool {
        let at = order.occurred_at_ms;
        window.0.is_none_or(|s| at >= s)
            && window.1.is_none_or(|e| at < e)
            && (self.days.is_empty() || self.days.contains(&Weekday::of(at)))
            && (self.channels.is_empty() || self.channels.contains(&order.channel))
            && (self.tiers.is_empty() || self.tiers.contains(&tier))
    }

    fn matches_line(&self, sku: &str, categories: &[String]) -> bool {
        (self.skus.is_empty() && self.categories.is_empty())
            || self.skus.iter().any(|s| s == sku)
            || categories.iter().any(|c| self.categories.contains(c))
    }
}

/// Evaluates `order` under `version` for a customer in `tier`. Fails,
/// naming the field, when the version has no rate for the order's currency
/// or the amounts overflow.
pub fn evaluate(order: &Order, version: &Version, tier: Tier) -> Result<Evaluation, FieldError> {
    let rules = &version.rules;
    let rate = *rules.rates.get(&order.currency).ok_or_else(|| {
        FieldError::new(
            "order.currency",
            format!("rule set {} version {} has no rate for {}", rules.id, rules.version, order.currency),
        )
    })?;
    let excluded = |sku: &str, cats: &[String]| {
        rules.exclusions.skus.iter().any(|s| s == sku) || cats.iter().any(|c| rules.exclusions.categories.contains(c))
    };
    // 1. Earning amounts, then non-earning tenders taken off in order.
    let mut amounts: Vec<i64> = order
        .lines
        .iter()
        .map(|l| match excluded(&l.sku, &l.categories) {
            true => 0,
            false if rules.basis.subtract_discounts => l.gross() - l.discount,
            false => l.gross(),
        })
        .collect();
    let mut extra = [
        if rules.basis.include_shipping { order.shipping } else { 0 },
        if rules.basis.include_tax { order.tax } else { 0 },
    ];
    let mut unearned: i64 = order
        .tenders
        .iter()
        .filter(|t| rules.basis.non_earning_tenders.contains(&t.kind))
        .map(|t| t.amount)
        .fold(0i64, i64::saturating_add);
    for amount in amounts.iter_mut().chain(extra.iter_mut()) {
        let take = unearned.min(*amount);
        *amount -= take;
        unearned -= take;
    }
    // 2. The minimum order.
    let eligible = amounts.iter().chain(extra.iter()).fold(0i64, |a, b| a.saturating_add(*b));
    let minimum_met = eligible >= rules.minimum_order.get(&order.currency).copied().unwrap_or(0);
    if !minimum_met {
        amounts.iter_mut().chain(extra.iter_mut()).for_each(|a| *a = 0);
    }
    // 3-4. Base points and the tier multiplier.
    let factor = rules.tier_multipliers.get(&tier).copied().unwrap_or(Factor::ONE);
    let mut lines = Vec::with_capacity(order.lines.len());
    let mut tiered = Vec::with_capacity(order.lines.len());
    for &amount in &amounts {
        let b = base(amount, rate).ok_or_else(overflow)?;
        let t = scale(b, factor).ok_or_else(overflow)?;
        tiered.push(t);
        lines.push(LinePoints { base: b, tier: t.minus(b).ok_or_else(overflow)?, bonus: Exact::ZERO });
    }
    let order_base = base(extra[0].saturating_add(extra[1]), rate).ok_or_else(overflow)?;
    let mut order_points = scale(order_base, factor).ok_or_else(overflow)?;
    // 5. Campaigns by priority, then id.
    let mut campaigns = Vec::new();
    let mut rated = vec![false; order.lines.len()];
    if minimum_met {
        for &ci in &version.order {
            let c = &rules.campaigns[ci];
            let window = version.windows[ci];
            if !c.matches_order(order, tier, window) {
                continue;
            }
            let matched: Vec<usize> = (0..order.lines.len())
                .filter(|&i| amounts[i] > 0 && c.matches_line(&order.lines[i].sku, &order.lines[i].categories))
                .collect();
            if matched.is_empty() || (c.stacking == Stacking::Exclusive && !campaigns.is_empty()) {
                continue;
            }
            let mut result = CampaignResult {
                id: c.id.clone(),
                total: Exact::ZERO,
                lines: Vec::new(),
                order: Exact::ZERO,
                cap: None,
            };
            for &i in &matched {
                let points = match c.effect {
                    Effect::Multiply(m) => scale(tiered[i], Factor(m.0 - 100)),
                    Effect::PerUnit(u) => Exact::points(u).times(i128::from(order.lines[i].quantity)),
                    Effect::Rate(r) if !rated[i] => {
                        rated[i] = true;
                        base(amounts[i], r).and_then(|b| scale(b, factor)).and_then(|t| t.minus(tiered[i]))
                    }
                    Effect::Rate(_) | Effect::Bonus(_) => Some(Exact::ZERO),
                }
                .ok_or_else(overflow)?;
                result.lines.push((i as u32, points));
            }
            if let Effect::Bonus(b) = c.effect {
                result.order = Exact::points(b);
            }
            if let Some(cap) = c.max_per_order {
                take_off(&mut result, Exact::points(cap));
            }
            result.total = result.sum().ok_or_else(overflow)?;
            result.cap = c.max_per_customer.map(|cap| CapRule {
                points: cap.points,
                period: cap.period,
                starts_ms: window.0,
                ends_ms: window.1,
            });
            if result.cap.is_none() {
                // Nothing lowers it later: it folds into the lines and the order.
                for (i, p) in result.lines.drain(..) {
                    let line = &mut lines[i as usize];
                    line.bonus = line.bonus.plus(p).ok_or_else(overflow)?;
                }
                order_points = order_points.plus(result.order).ok_or_else(overflow)?;
                result.order = Exact::ZERO;
            }
            let exclusive = c.stacking == Stacking::Exclusive;
            campaigns.push(result);
            if exclusive {
                break;
            }
        }
    }
    Ok(Evaluation {
        rule_set: version.reference.clone(),
        rounding: rules.rounding,
        lines,
        order: order_points,
        minimum_met,
        campaigns,
    })
}

/// Lowers a campaign's positive points to at most `cap`: its lines keep
/// theirs in order until the cap is reached, then the order's part.
pub(super) fn take_off(result: &mut CampaignResult, cap: Exact) {
    let mut left = cap.0.max(0);
    for (_, points) in result.lines.iter_mut().filter(|(_, p)| p.0 > 0) {
        points.0 = points.0.min(left);
        left -= points.0;
    }
    result.order.0 = result.order.0.min(left);
}

impl CampaignResult {
    /// Its lines' and the order's points, `None` on overflow.
    pub fn sum(&self) -> Option<Exact> {
        Exact::sum(self.lines.iter().map(|(_, p)| *p).chain([self.order]))
    }
}

impl Evaluation {
    /// Exact points before per-customer caps, `None` on overflow.
    pub fn exact(&self) -> Option<Exact> {
        let lines = self.lines.iter().map(LinePoints::total);
        let capped = self.campaigns.iter().filter(|c| c.cap.is_some()).map(CampaignResult::sum);
        Exact::sum(lines.chain(capped).chain([Some(self.order)]).collect::<Option<Vec<_>>>()?)
    }

    /// Whole points before per-customer caps (the most the order can earn).
    pub fn uncapped_points(&self) -> Option<i128> {
        self.exact().map(|e| e.round(self.rounding).max(0))
    }
}
