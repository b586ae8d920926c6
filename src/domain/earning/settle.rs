//! The second half of the one earning function: an evaluation becomes the
//! points an account credits, after the per-customer caps it has used up,
//! rounded once. The account runs it when it decides the accrual; the
//! preview runs it with the account's usage as it stands.
//!
//! Exactly once under concurrent orders: the account decides accruals one
//! at a time, in arrival order, and an event id once; each decision reads
//! the usage the ones before it left and adds its own, in the same step.

use serde::{Deserialize, Serialize};

use super::evaluate::{CampaignResult, Evaluation, LinePoints, take_off};
use super::exact::{Exact, Rounding};
use super::rules::RuleRef;
use crate::domain::points::MAX_POINTS;
use crate::domain::time::Millis;

/// How long the usage of a period is kept after it ended: a `campaign`
/// period is the campaign's window, and an order dated inside it may be
/// decided after it closed. Past this, such an order gets none of that
/// campaign's points, so no cap is ever exceeded.
pub const USAGE_KEPT_MS: Millis = 90 * crate::domain::time::DAY_MS;

/// What a customer got from a capped campaign in one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The campaign.
    pub campaign: String,
    /// Start of the period.
    pub start_ms: Millis,
    /// End of the period; `None`: open (a campaign without an end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ms: Option<Millis>,
    /// The period is the campaign's window: kept `USAGE_KEPT_MS` past its end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub whole_campaign: bool,
    /// Points given in it.
    pub points: Exact,
}

/// The account's use of capped campaigns: one record per campaign and
/// period (a campaign's cap is the same in every version of the file, and
/// a calendar period is the one of the account's clock, so one per
/// campaign); a calendar period's record goes when it ends, a campaign
/// window's 90 days after, so the usage never outgrows the campaigns in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CampaignUsage(pub Vec<Usage>);

impl CampaignUsage {
    /// Points the campaign gave in the period starting at `start_ms`.
    pub fn used(&self, campaign: &str, start_ms: Millis) -> Exact {
        self.0.iter().find(|u| u.campaign == campaign && u.start_ms == start_ms).map_or(Exact::ZERO, |u| u.points)
    }

    /// Adds what `earned` gave from capped campaigns, and drops records of
    /// calendar periods that ended, and of campaign windows that ended
    /// `USAGE_KEPT_MS` before `now`.
    pub fn record(&mut self, earned: &Earned, now: Millis) {
        for c in &earned.campaigns {
            let Some(cap) = c.cap else { continue };
            // A rate below the currency's gives negative points: they never free a cap.
            let points = c.points.max(Exact::ZERO);
            match self.0.iter_mut().find(|u| u.campaign == c.id && u.start_ms == cap.start_ms) {
                Some(u) => u.points = u.points.plus(points).unwrap_or(u.points),
                None => self.0.push(Usage {
                    campaign: c.id.clone(),
                    start_ms: cap.start_ms,
                    end_ms: cap.end_ms,
                    whole_campaign: cap.whole_campaign,
                    points,
                }),
            }
        }
        // A calendar period that ended is never read again (the clock never
        // goes back); a campaign's window may be, by an order decided late.
        self.0.retain(|u| u.end_ms.is_none_or(|end| end > now - if u.whole_campaign { USAGE_KEPT_MS } else { 0 }));
    }

    /// Whether no capped campaign gave anything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// About how many bytes it takes in JSON.
    pub fn approximate_size(&self) -> usize {
        self.0.iter().map(|u| u.campaign.len() + 90).sum()
    }
}

/// One line's share of what an order earned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineEarned {
    /// The line's index in the order.
    pub line: u32,
    /// Its SKU.
    pub sku: String,
    /// Its units.
    pub quantity: i64,
    /// Its exact points: base, tier and campaigns.
    pub points: Exact,
}

/// One rule's share: `base`, `tier`, or a campaign's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleEarned {
    /// `base`, `tier`, or `campaign:<id>`.
    pub rule: String,
    /// Its exact points.
    pub points: Exact,
    /// A per-customer cap lowered it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capped: bool,
}

/// What a capped campaign gave, for the account's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignEarned {
    /// The campaign.
    pub id: String,
    /// Its exact points, after caps.
    pub points: Exact,
    /// Its per-customer cap's period, if capped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<super::evaluate::CapWindow>,
}

/// What an order earned: the points credited and their breakdown, recorded
/// with the accrual (the lot's entry) and told by `points.accrued`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Earned {
    /// The order's id.
    pub order_id: String,
    /// Digest of the order's content: a resent Accrue is the same order.
    #[serde(default)]
    pub digest: String,
    /// The version that decided it.
    pub rule_set: RuleRef,
    /// How it was rounded.
    pub rounding: Rounding,
    /// Whole points credited.
    pub points: i64,
    /// Exact points before rounding.
    pub exact: Exact,
    /// Per line (a line return claws back its share).
    pub lines: Vec<LineEarned>,
    /// Points of the order as a whole (shipping, tax, fixed bonuses): kept
    /// until every line is returned.
    pub order: Exact,
    /// Per rule.
    pub rules: Vec<RuleEarned>,
    /// Campaigns with a per-customer cap, for the usage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub campaigns: Vec<CampaignEarned>,
}

/// Settles `evaluation` of order `order_id` (whose lines are `lines`:
/// SKU and units) against `usage` at `now`: each capped campaign gives at
/// most what its cap has left in the period containing `now` (its lines
/// keep their points in order until that is reached), then the exact total
/// is rounded once, between 0 and the most one accrual may credit.
pub fn settle(
    order_id: &str,
    lines: &[(String, i64)],
    evaluation: &Evaluation,
    usage: &CampaignUsage,
    now: Millis,
) -> Earned {
    let mut earned: Vec<LineEarned> = evaluation
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (sku, quantity) = lines.get(i).cloned().unwrap_or_default();
            LineEarned { line: i as u32, sku, quantity, points: l.total().unwrap_or(Exact::ZERO) }
        })
        .collect();
    let sum = |f: fn(&LinePoints) -> Exact| Exact::sum(evaluation.lines.iter().map(f)).unwrap_or(Exact::ZERO);
    let mut rules = vec![RuleEarned { rule: "base".into(), points: sum(|l| l.base), capped: false }];
    let tier = sum(|l| l.tier);
    if tier != Exact::ZERO {
        rules.push(RuleEarned { rule: "tier".into(), points: tier, capped: false });
    }
    let mut order = evaluation.order;
    let mut campaigns = Vec::new();
    for c in &evaluation.campaigns {
        let Some(rule) = c.cap else {
            // Already in the lines and the order.
            rules.push(RuleEarned { rule: format!("campaign:{}", c.id), points: c.total, capped: false });
            continue;
        };
        let window = rule.window(now);
        let forgotten = window.end_ms.is_some_and(|end| end <= now - USAGE_KEPT_MS);
        let left = match forgotten {
            true => Exact::ZERO,
            false => Exact::points(window.points).minus(usage.used(&c.id, window.start_ms)).unwrap_or(Exact::ZERO),
        };
        let mut given: CampaignResult = c.clone();
        take_off(&mut given, left);
        let after = given.sum().unwrap_or(Exact::ZERO);
        for (i, p) in &given.lines {
            if let Some(line) = earned.get_mut(*i as usize) {
                line.points = line.points.plus(*p).unwrap_or(line.points);
            }
        }
        order = order.plus(given.order).unwrap_or(order);
        rules.push(RuleEarned { rule: format!("campaign:{}", c.id), points: after, capped: after < c.total });
        campaigns.push(CampaignEarned { id: c.id.clone(), points: after, cap: Some(window) });
    }
    let exact = Exact::sum(earned.iter().map(|l| l.points).chain([order])).unwrap_or(Exact::ZERO);
    let points = exact.round(evaluation.rounding).clamp(0, i128::from(MAX_POINTS)) as i64;
    Earned {
        order_id: order_id.to_owned(),
        digest: String::new(),
        rule_set: evaluation.rule_set.clone(),
        rounding: evaluation.rounding,
        points,
        exact,
        lines: earned,
        order,
        rules,
        campaigns,
    }
}

impl Earned {
    /// About how many bytes it takes in JSON.
    pub fn approximate_size(&self) -> usize {
        300 + self.order_id.len()
            + self.lines.iter().map(|l| 70 + l.sku.len()).sum::<usize>()
            + self.rules.iter().map(|r| 60 + r.rule.len()).sum::<usize>()
            + self.campaigns.iter().map(|c| 120 + c.id.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::super::evaluate::CapWindow;
    use super::*;

    fn earned(id: &str, cap: CapWindow) -> Earned {
        Earned {
            order_id: "o".into(),
            digest: String::new(),
            rule_set: RuleRef { id: "r".into(), version: 1, checksum: String::new() },
            rounding: Rounding::Floor,
            points: 1,
            exact: Exact::points(1),
            lines: vec![],
            order: Exact::ZERO,
            rules: vec![],
            campaigns: vec![CampaignEarned { id: id.into(), points: Exact::points(1), cap: Some(cap) }],
        }
    }

    #[test]
    fn a_calendar_periods_usage_goes_when_it_ends_a_campaign_windows_later() {
        let day = crate::domain::time::DAY_MS;
        let mut usage = CampaignUsage::default();
        let daily =
            |d: i64| CapWindow { points: 5, start_ms: d * day, end_ms: Some((d + 1) * day), whole_campaign: false };
        for d in 0..100 {
            usage.record(&earned("daily", daily(d)), d * day + 1);
        }
        assert_eq!(usage.0.len(), 1, "only today's record of a daily cap is kept");
        let window = CapWindow { points: 5, start_ms: 0, end_ms: Some(10 * day), whole_campaign: true };
        usage.record(&earned("window", window), 11 * day);
        usage.record(&earned("daily", daily(100)), 50 * day);
        assert!(usage.0.iter().any(|u| u.campaign == "window"), "a campaign window is kept 90 days past its end");
        usage.record(&earned("daily", daily(101)), 101 * day);
        assert!(!usage.0.iter().any(|u| u.campaign == "window"));
    }
}
