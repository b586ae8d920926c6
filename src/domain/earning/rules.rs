//! Earning rule sets as data: what a rules file holds, checked once at
//! start. A file lists versions; the one whose `effective_from` is the
//! latest at or before an order's time applies to it, and every accrual
//! records the id, version and checksum of the version that decided it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::calendar::{Period, Weekday, parse_time};
use super::exact::{Factor, Rounding};
use crate::domain::tier::Tier;
use crate::domain::time::Millis;

/// Most campaigns per rule set version.
pub const MAX_CAMPAIGNS: usize = 1_000;
/// Largest points value anywhere in a rule set (a rate, a bonus, a cap).
pub const MAX_RULE_POINTS: i64 = 1_000_000_000;

/// A rules file: one or more versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    /// The versions, in any order.
    pub rule_sets: Vec<RuleSet>,
}

/// Points per `per` minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Points earned...
    pub points: i64,
    /// ...per this many minor units; divides 10,000 so base points are exact.
    pub per: i64,
}

/// What amount of an order earns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Basis {
    /// Line discounts reduce the amount (true) or not.
    #[serde(default = "yes")]
    pub subtract_discounts: bool,
    /// Shipping earns.
    #[serde(default)]
    pub include_shipping: bool,
    /// Tax earns.
    #[serde(default)]
    pub include_tax: bool,
    /// Tender types whose amounts never earn.
    #[serde(default = "default_non_earning")]
    pub non_earning_tenders: Vec<String>,
}

fn yes() -> bool {
    true
}

fn default_non_earning() -> Vec<String> {
    ["gift_card", "store_credit", "points"].map(String::from).to_vec()
}

impl Default for Basis {
    fn default() -> Self {
        Self {
            subtract_discounts: true,
            include_shipping: false,
            include_tax: false,
            non_earning_tenders: default_non_earning(),
        }
    }
}

/// Lines that never earn.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusions {
    /// Excluded SKUs.
    #[serde(default)]
    pub skus: Vec<String>,
    /// Excluded categories (a line with any of them is excluded).
    #[serde(default)]
    pub categories: Vec<String>,
}

/// What a campaign adds to the lines (or the order) it matches. Written
/// as a map with one key (`{multiply: 2}`), in YAML as in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EffectWire", into = "EffectWire")]
pub enum Effect {
    /// The matched lines' points times this (at least 1): adds `(m - 1)` times
    /// their points after the tier multiplier; multipliers add, never compound.
    Multiply(Factor),
    /// Fixed points once per order that has a matched line.
    Bonus(i64),
    /// Points per matched unit.
    PerUnit(i64),
    /// The matched lines earn at this rate instead of the currency's (the
    /// tier multiplier still applies).
    Rate(Rate),
}

/// An effect as written: exactly one field set.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EffectWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multiply: Option<Factor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bonus: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    per_unit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate: Option<Rate>,
}

impl TryFrom<EffectWire> for Effect {
    type Error = String;

    fn try_from(w: EffectWire) -> Result<Self, String> {
        match (w.multiply, w.bonus, w.per_unit, w.rate) {
            (Some(m), None, None, None) => Ok(Effect::Multiply(m)),
            (None, Some(b), None, None) => Ok(Effect::Bonus(b)),
            (None, None, Some(u), None) => Ok(Effect::PerUnit(u)),
            (None, None, None, Some(r)) => Ok(Effect::Rate(r)),
            _ => Err("give exactly one of multiply, bonus, per_unit, rate".into()),
        }
    }
}

impl From<Effect> for EffectWire {
    fn from(e: Effect) -> Self {
        match e {
            Effect::Multiply(m) => EffectWire { multiply: Some(m), ..Self::default() },
            Effect::Bonus(b) => EffectWire { bonus: Some(b), ..Self::default() },
            Effect::PerUnit(u) => EffectWire { per_unit: Some(u), ..Self::default() },
            Effect::Rate(r) => EffectWire { rate: Some(r), ..Self::default() },
        }
    }
}

/// Whether a campaign combines with others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stacking {
    /// Adds to whatever else applies (the default).
    #[default]
    Stack,
    /// Applies only if no campaign ahead of it applied, and then none after it does.
    Exclusive,
}

/// A cap on what one customer gets from a campaign in a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerCap {
    /// Most points per customer per period.
    pub points: i64,
    /// The period (UTC).
    pub period: Period,
}

/// A campaign: extra points for matching orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    /// Unique within the version; recorded with the points it gave.
    pub id: String,
    /// Higher first; ties by id.
    #[serde(default)]
    pub priority: i32,
    /// From this time (RFC 3339), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// Until this time (exclusive), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// Only on these UTC weekdays; empty: every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Weekday>,
    /// Only orders from these channels; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// Only lines with these SKUs (or categories below); both empty: every earning line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skus: Vec<String>,
    /// Only lines with any of these categories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Only customers in these tiers; empty: every tier.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<Tier>,
    /// What it gives.
    pub effect: Effect,
    /// Whether it combines with others.
    #[serde(default)]
    pub stacking: Stacking,
    /// Most points it gives one order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_order: Option<i64>,
    /// Most points it gives one customer per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_customer: Option<CustomerCap>,
}

/// One version of a rule set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// The rule set's name.
    pub id: String,
    /// Its version, 1 or more; (id, version) is unique in a file.
    pub version: u32,
    /// When it starts to apply (RFC 3339).
    pub effective_from: String,
    /// How exact points become whole points, once per order.
    #[serde(default)]
    pub rounding: Rounding,
    /// What amount earns.
    #[serde(default)]
    pub basis: Basis,
    /// Earn rate per currency code; an order in another currency is refused.
    pub rates: BTreeMap<String, Rate>,
    /// Lines that never earn.
    #[serde(default)]
    pub exclusions: Exclusions,
    /// Least earning amount per currency for an order to earn at all.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub minimum_order: BTreeMap<String, i64>,
    /// Multiplier of base points per tier; absent tiers: 1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tier_multipliers: BTreeMap<Tier, Factor>,
    /// Campaigns, in any order (applied by priority, then id).
    #[serde(default)]
    pub campaigns: Vec<Campaign>,
    /// The file's statement of the checksum, if it makes one: it must match.
    #[serde(default, skip_serializing)]
    pub checksum: Option<String>,
}

/// A rule set's error: the path of the field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RuleError {
    /// Where, e.g. `rule_sets[0].campaigns[2].effect`.
    pub path: String,
    /// Why.
    pub reason: String,
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> RuleError {
    RuleError { path: path.into(), reason: reason.into() }
}

/// A campaign's window in Unix ms: from, until (either open).
pub type Window = (Option<Millis>, Option<Millis>);

/// Which version decided an accrual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    /// The rule set's id.
    pub id: String,
    /// Its version.
    pub version: u32,
    /// `sha256:` of its canonical JSON.
    pub checksum: String,
}

/// A checked version, ready to evaluate orders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// As the file wrote it.
    pub rules: RuleSet,
    /// Its reference, checksum included.
    pub reference: RuleRef,
    /// `effective_from` in Unix ms.
    pub effective_from_ms: Millis,
    /// Each campaign's window in Unix ms, in `rules.campaigns` order.
    pub windows: Vec<(Option<Millis>, Option<Millis>)>,
    /// Indexes of `rules.campaigns` in the order they apply.
    pub order: Vec<usize>,
}

/// Every version of a rules file, checked, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleBook {
    /// By `effective_from`.
    pub versions: Vec<Version>,
}

impl RuleBook {
    /// Parses and checks a rules file (JSON, or YAML when `yaml`).
    pub fn parse(text: &str, yaml: bool) -> Result<Self, RuleError> {
        let file: RulesFile = if yaml {
            serde_yaml_ng::from_str(text).map_err(|e| err("file", e.to_string()))?
        } else {
            serde_json::from_str(text).map_err(|e| err("file", e.to_string()))?
        };
        Self::check(file)
    }

    /// Checks every version of `file`.
    pub fn check(file: RulesFile) -> Result<Self, RuleError> {
        if file.rule_sets.is_empty() {
            return Err(err("rule_sets", "lists no rule set"));
        }
        let mut versions = Vec::new();
        // A campaign's per-customer cap counts across versions (by its id):
        // every version that has it must cap it alike.
        let mut caps: BTreeMap<String, (Option<CustomerCap>, Window)> = BTreeMap::new();
        for (i, rules) in file.rule_sets.into_iter().enumerate() {
            let version = Version::check(rules, &format!("rule_sets[{i}]"))?;
            for (j, c) in version.rules.campaigns.iter().enumerate() {
                let window = match c.max_per_customer {
                    Some(CustomerCap { period: Period::Campaign, .. }) => version.windows[j],
                    _ => (None, None),
                };
                let seen = caps.entry(c.id.clone()).or_insert((c.max_per_customer, window));
                if *seen != (c.max_per_customer, window) {
                    return Err(err(
                        format!("rule_sets[{i}].campaigns[{j}].max_per_customer"),
                        format!(
                            "campaign {} is capped differently in another version (its cap counts across versions)",
                            c.id
                        ),
                    ));
                }
            }
            versions.push(version);
        }
        versions.sort_by_key(|v| v.effective_from_ms);
        for pair in versions.windows(2) {
            if pair[0].effective_from_ms == pair[1].effective_from_ms {
                return Err(err("rule_sets", format!("two versions take effect at {}", pair[1].rules.effective_from)));
            }
        }
        let mut refs: Vec<_> = versions.iter().map(|v| (&v.reference.id, v.reference.version)).collect();
        refs.sort();
        if let Some(dup) = refs.windows(2).find(|p| p[0] == p[1]) {
            return Err(err("rule_sets", format!("{} version {} is listed twice", dup[0].0, dup[0].1)));
        }
        Ok(Self { versions })
    }

    /// The version in effect at `at`, if any has started.
    pub fn effective_at(&self, at: Millis) -> Option<&Version> {
        self.versions.iter().rev().find(|v| v.effective_from_ms <= at)
    }
}

fn check_points(path: String, value: i64, least: i64) -> Result<(), RuleError> {
    if !(least..=MAX_RULE_POINTS).contains(&value) {
        return Err(err(path, format!("must be between {least} and {MAX_RULE_POINTS}, got {value}")));
    }
    Ok(())
}

fn check_rate(path: String, rate: &Rate) -> Result<(), RuleError> {
    check_points(format!("{path}.points"), rate.points, 0)?;
    if rate.per <= 0 || 10_000 % rate.per != 0 {
        return Err(err(format!("{path}.per"), format!("must divide 10000 (1, 2, 5, 10, 100, ...), got {}", rate.per)));
    }
    Ok(())
}

fn check_time(path: String, raw: &str) -> Result<Millis, RuleError> {
    parse_time(raw).ok_or_else(|| err(path, format!("{raw:?} is not an RFC 3339 time")))
}

fn check_currency(path: String, code: &str) -> Result<(), RuleError> {
    if code.len() != 3 || !code.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(err(path, format!("{code:?} is not an ISO 4217 code")));
    }
    Ok(())
}

impl Version {
    fn check(rules: RuleSet, at: &str) -> Result<Self, RuleError> {
        if rules.id.is_empty()
            || rules.id.len() > 64
            || !rules.id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(err(format!("{at}.id"), "must be 1 to 64 characters of [A-Za-z0-9._-]"));
        }
        if rules.version == 0 {
            return Err(err(format!("{at}.version"), "must be 1 or more"));
        }
        let effective_from_ms = check_time(format!("{at}.effective_from"), &rules.effective_from)?;
        if rules.rates.is_empty() {
            return Err(err(format!("{at}.rates"), "must give a rate for at least one currency"));
        }
        for (code, rate) in &rules.rates {
            check_currency(format!("{at}.rates.{code}"), code)?;
            check_rate(format!("{at}.rates.{code}"), rate)?;
        }
        for (code, least) in &rules.minimum_order {
            if !rules.rates.contains_key(code) {
                return Err(err(format!("{at}.minimum_order.{code}"), "names a currency without a rate"));
            }
            if *least < 0 {
                return Err(err(format!("{at}.minimum_order.{code}"), "must not be negative"));
            }
        }
        for (tier, factor) in &rules.tier_multipliers {
            if *factor < Factor::ONE || factor.0 > 100 * 100 {
                return Err(err(format!("{at}.tier_multipliers.{tier}"), "must be between 1 and 100"));
            }
        }
        if rules.campaigns.len() > MAX_CAMPAIGNS {
            return Err(err(format!("{at}.campaigns"), format!("at most {MAX_CAMPAIGNS}")));
        }
        let mut windows = Vec::new();
        for (i, c) in rules.campaigns.iter().enumerate() {
            windows.push(check_campaign(c, &format!("{at}.campaigns[{i}]"))?);
            if rules.campaigns[..i].iter().any(|o| o.id == c.id) {
                return Err(err(format!("{at}.campaigns[{i}].id"), format!("{} is used twice", c.id)));
            }
        }
        let mut order: Vec<usize> = (0..rules.campaigns.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&rules.campaigns[a], &rules.campaigns[b]);
            b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id))
        });
        let canonical = serde_json::to_vec(&rules).map_err(|e| err(at, e.to_string()))?;
        let checksum =
            format!("sha256:{}", Sha256::digest(&canonical).iter().map(|b| format!("{b:02x}")).collect::<String>());
        if let Some(stated) = &rules.checksum
            && *stated != checksum
        {
            return Err(err(format!("{at}.checksum"), format!("states {stated} but the content's is {checksum}")));
        }
        let reference = RuleRef { id: rules.id.clone(), version: rules.version, checksum };
        Ok(Self { rules, reference, effective_from_ms, windows, order })
    }
}

fn check_campaign(c: &Campaign, at: &str) -> Result<(Option<Millis>, Option<Millis>), RuleError> {
    if c.id.is_empty() || c.id.len() > 64 || !c.id.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch)) {
        return Err(err(format!("{at}.id"), "must be 1 to 64 characters of [A-Za-z0-9._-]"));
    }
    let starts = c.starts_at.as_deref().map(|s| check_time(format!("{at}.starts_at"), s)).transpose()?;
    let ends = c.ends_at.as_deref().map(|s| check_time(format!("{at}.ends_at"), s)).transpose()?;
    if let (Some(s), Some(e)) = (starts, ends)
        && e <= s
    {
        return Err(err(format!("{at}.ends_at"), "must be after starts_at"));
    }
    match c.effect {
        Effect::Multiply(f) if f < Factor::ONE || f.0 > 100 * 100 => {
            return Err(err(format!("{at}.effect.multiply"), "must be between 1 and 100"));
        }
        Effect::Bonus(p) => check_points(format!("{at}.effect.bonus"), p, 1)?,
        Effect::PerUnit(p) => check_points(format!("{at}.effect.per_unit"), p, 1)?,
        Effect::Rate(r) => check_rate(format!("{at}.effect.rate"), &r)?,
        Effect::Multiply(_) => {}
    }
    if let Some(cap) = c.max_per_order {
        check_points(format!("{at}.max_per_order"), cap, 0)?;
    }
    if let Some(cap) = c.max_per_customer {
        check_points(format!("{at}.max_per_customer.points"), cap.points, 0)?;
    }
    Ok((starts, ends))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A rule set of 1 point per dollar in USD, effective from the epoch.
    pub(crate) fn dollar_rules() -> RuleSet {
        serde_json::from_value(serde_json::json!({
            "id": "std", "version": 1, "effective_from": "1970-01-01T00:00:00Z",
            "rates": {"USD": {"points": 1, "per": 100}}
        }))
        .unwrap()
    }

    fn check(rules: RuleSet) -> Result<RuleBook, RuleError> {
        RuleBook::check(RulesFile { rule_sets: vec![rules] })
    }

    #[test]
    fn a_bad_rule_set_names_the_field() {
        assert!(check(dollar_rules()).is_ok());
        let mut r = dollar_rules();
        r.rates.insert("EUR".into(), Rate { points: 1, per: 3 });
        assert_eq!(check(r).unwrap_err().path, "rule_sets[0].rates.EUR.per");
        let mut r = dollar_rules();
        r.campaigns
            .push(serde_json::from_value(serde_json::json!({"id": "x", "effect": {"multiply": "0.5"}})).unwrap());
        assert_eq!(check(r).unwrap_err().path, "rule_sets[0].campaigns[0].effect.multiply");
        let mut r = dollar_rules();
        r.checksum = Some("sha256:00".into());
        assert_eq!(check(r).unwrap_err().path, "rule_sets[0].checksum");
        let unknown = r#"{"rule_sets":[{"id":"a","version":1,"effective_from":"2026-01-01","rates":{},"rate":1}]}"#;
        assert!(RuleBook::parse(unknown, false).unwrap_err().reason.contains("unknown field"));
    }

    #[test]
    fn a_campaign_is_capped_alike_in_every_version() {
        let capped = |period: &str| {
            let mut r = dollar_rules();
            r.campaigns.push(
                serde_json::from_value(serde_json::json!({"id": "promo", "effect": {"bonus": 5},
                    "max_per_customer": {"points": 100, "period": period}}))
                .unwrap(),
            );
            r
        };
        let (a, mut b) = (capped("week"), capped("month"));
        (b.version, b.effective_from) = (2, "2026-06-01T00:00:00Z".into());
        let e = RuleBook::check(RulesFile { rule_sets: vec![a.clone(), b] }).unwrap_err();
        assert_eq!(e.path, "rule_sets[1].campaigns[0].max_per_customer");
        let mut same = capped("week");
        (same.version, same.effective_from) = (2, "2026-06-01T00:00:00Z".into());
        assert!(RuleBook::check(RulesFile { rule_sets: vec![a, same] }).is_ok());
    }

    #[test]
    fn the_version_in_effect_at_the_orders_time_applies() {
        let (mut a, mut b) = (dollar_rules(), dollar_rules());
        a.effective_from = "2026-01-01T00:00:00Z".into();
        (b.version, b.effective_from) = (2, "2026-06-01T00:00:00Z".into());
        let book = RuleBook::check(RulesFile { rule_sets: vec![b, a] }).unwrap();
        let at = |s| book.effective_at(parse_time(s).unwrap()).map(|v| v.reference.version);
        assert_eq!((at("2025-12-31"), at("2026-05-31"), at("2026-06-01")), (None, Some(1), Some(2)));
        assert!(book.versions[0].reference.checksum.starts_with("sha256:"));
    }

    #[test]
    fn yaml_and_json_give_the_same_checksum() {
        let yaml = "rule_sets:\n  - id: std\n    version: 1\n    effective_from: '1970-01-01T00:00:00Z'\n    rates:\n      USD: {points: 1, per: 100}\n";
        let json = r#"{"rule_sets":[{"id":"std","version":1,"effective_from":"1970-01-01T00:00:00Z","rates":{"USD":{"points":1,"per":100}}}]}"#;
        let (y, j) = (RuleBook::parse(yaml, true).unwrap(), RuleBook::parse(json, false).unwrap());
        assert_eq!(y.versions[0].reference, j.versions[0].reference);
    }
}
