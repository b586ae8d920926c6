//! Properties over random carts, rule sets, tiers and campaign usage: the
//! preview (what the API answers from the account's query) is exactly what
//! the account credits and records when it decides the accrual, no capped
//! campaign gives a customer more than its cap in a period, and line
//! returns add up to what the order credited however it comes back.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::exact::Exact;
use super::order::{Order, OrderLine, Tender};
use super::refund::ReturnedLine;
use super::rules::{RuleBook, RulesFile};
use crate::domain::command::Command;
use crate::domain::messages::PointsEvent;
use crate::domain::orders::OrderAccrual;
use crate::domain::state::LoyaltyState;
use crate::domain::time::DAY_MS;

/// A small deterministic generator: one proptest seed makes a whole case.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len() as u64) as usize]
    }
    fn chance(&mut self, in_ten: u64) -> bool {
        self.below(10) < in_ten
    }
    fn some<T: Clone>(&mut self, from: &[T]) -> Vec<T> {
        from.iter().filter(|_| self.chance(3)).cloned().collect()
    }
}

const SKUS: [&str; 5] = ["A", "B", "C", "D", "E"];
const CATEGORIES: [&str; 4] = ["shoes", "socks", "food", "sale"];
const START: i64 = 1_767_225_600_000; // 2026-01-01

fn rules(d: &mut Dice) -> RuleBook {
    let per = *d.pick(&[1, 2, 5, 10, 100, 1_000, 10_000]);
    let factor = |d: &mut Dice| json!(*d.pick(&["1", "1.25", "1.5", "2", "1.33", "3.07"]));
    let mut tiers = serde_json::Map::new();
    for t in ["Silver", "Gold", "Platinum"] {
        if d.chance(6) {
            tiers.insert(t.into(), factor(d));
        }
    }
    let campaigns: Vec<Value> = (0..d.below(7))
        .map(|i| {
            let effect = match d.below(4) {
                0 => json!({"multiply": factor(d)}),
                1 => json!({"bonus": 1 + d.below(200)}),
                2 => json!({"per_unit": 1 + d.below(20)}),
                _ => json!({"rate": {"points": d.below(5), "per": *d.pick(&[1, 10, 100, 250])}}),
            };
            let mut c = json!({
                "id": format!("c{i}"),
                "priority": d.below(3),
                "effect": effect,
                "stacking": if d.chance(2) { "exclusive" } else { "stack" },
                "skus": d.some(&SKUS),
                "categories": d.some(&CATEGORIES),
                "tiers": d.some(&["Bronze", "Silver", "Gold", "Platinum"]),
                "channels": if d.chance(2) { vec!["app"] } else { vec![] },
                "days": if d.chance(2) { vec!["sat", "sun"] } else { vec![] },
            });
            if d.chance(3) {
                c["max_per_order"] = json!(d.below(300));
            }
            if d.chance(5) {
                c["max_per_customer"] =
                    json!({"points": d.below(400), "period": *d.pick(&["day", "week", "month", "year", "campaign"])});
            }
            if d.chance(2) {
                c["starts_at"] = json!("2026-01-03T00:00:00Z");
                c["ends_at"] = json!("2026-01-20T00:00:00Z");
            }
            c
        })
        .collect();
    let file = json!({"rule_sets": [{
        "id": "prop", "version": 1, "effective_from": "2026-01-01T00:00:00Z",
        "rounding": *d.pick(&["floor", "nearest", "ceil"]),
        "basis": {"subtract_discounts": d.chance(7), "include_shipping": d.chance(3), "include_tax": d.chance(3)},
        "rates": {"USD": {"points": 1 + d.below(4), "per": per}},
        "exclusions": {"skus": d.some(&SKUS[..2]), "categories": d.some(&CATEGORIES[..1])},
        "minimum_order": {"USD": if d.chance(3) { d.below(3_000) } else { 0 }},
        "tier_multipliers": tiers,
        "campaigns": campaigns,
    }]});
    RuleBook::check(serde_json::from_value::<RulesFile>(file).unwrap()).unwrap()
}

fn order(d: &mut Dice, id: &str) -> Order {
    let lines = (0..1 + d.below(8))
        .map(|_| {
            let (quantity, unit_price) = (1 + d.below(5) as i64, d.below(20_000) as i64);
            OrderLine {
                sku: d.pick(&SKUS).to_string(),
                categories: d.some(&CATEGORIES).into_iter().map(String::from).collect(),
                quantity,
                unit_price,
                discount: if d.chance(3) { d.below((quantity * unit_price + 1) as u64) as i64 } else { 0 },
            }
        })
        .collect();
    Order {
        order_id: id.into(),
        currency: "USD".into(),
        channel: d.pick(&["web", "app"]).to_string(),
        occurred_at_ms: START + d.below(30) as i64 * DAY_MS + d.below(DAY_MS as u64) as i64,
        lines,
        shipping: d.below(2_000) as i64,
        tax: d.below(2_000) as i64,
        tenders: if d.chance(3) {
            vec![Tender { kind: "gift_card".into(), amount: d.below(10_000) as i64 }]
        } else {
            vec![]
        },
    }
}

fn order_event(id: &str, accrual: &OrderAccrual) -> PointsEvent {
    PointsEvent {
        event_id: id.into(),
        points: accrual.most_points(),
        ledger_checked: true,
        order: Some(Box::new(accrual.clone())),
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_preview_is_what_the_account_credits(seed in 1u64..u64::MAX) {
        let mut d = Dice(seed);
        let book = rules(&mut d);
        let version = &book.versions[0];
        let mut state = LoyaltyState::open("c");
        // A tier from a plain accrual, then earlier orders that use capped campaigns.
        let lifetime = *d.pick(&[0, 1_500, 6_000, 20_000]);
        if lifetime > 0 {
            let plain = PointsEvent { event_id: "p".into(), points: lifetime, ledger_checked: true, ..Default::default() };
            state.apply(Command::Accrue(plain), START).unwrap();
        }
        let mut given = std::collections::HashMap::new();
        let mut clock = START;
        for i in 0..=d.below(6) {
            let o = order(&mut d, &format!("o{i}"));
            let accrual = OrderAccrual::evaluate(&o, version).unwrap();
            // The workflow's clock never goes back; orders may come in any order of their dates.
            clock = clock.max(o.occurred_at_ms - d.below(3) as i64 * DAY_MS) + d.below(3) as i64 * 40 * DAY_MS;
            let now = clock;
            // An order that earns nothing makes no accrual (the API sends none).
            let summary = state.summary();
            let preview = accrual.earned(summary.tier, &summary.campaign_usage, now).unwrap();
            let seq = state.seq;
            if accrual.most_points() == 0 {
                prop_assert_eq!(preview.points, 0);
                continue;
            }
            state.apply(Command::Accrue(order_event(&format!("o{i}"), &accrual)), now).unwrap();
            let entry = state.unprojected.iter().find(|e| e.seq > seq && e.movement.event_id == format!("o{i}")).unwrap();
            prop_assert_eq!(entry.effect.requested, preview.points);
            prop_assert_eq!(entry.earned.as_deref(), Some(&preview));
            prop_assert!(preview.points <= accrual.most_points(), "caps and tiers only lower the most");
            for c in &preview.campaigns {
                let cap = c.cap.unwrap();
                let given = given.entry((c.id.clone(), cap.start_ms)).or_insert(Exact::ZERO);
                *given = given.plus(c.points).unwrap();
                prop_assert!(*given <= Exact::points(cap.points), "{} gave {} of its {} in a period", c.id, given, cap.points);
            }
        }
    }

    #[test]
    fn line_returns_add_up_to_what_the_order_credited(seed in 1u64..u64::MAX) {
        let mut d = Dice(seed);
        let book = rules(&mut d);
        let o = order(&mut d, "o");
        let accrual = OrderAccrual::evaluate(&o, &book.versions[0]).unwrap();
        let earned = accrual.earned(*d.pick(&crate::domain::tier::Tier::ALL), &Default::default(), o.occurred_at_ms).unwrap();
        let mut left: Vec<i64> = o.lines.iter().map(|l| l.quantity).collect();
        let (mut returned, mut clawed) = (Vec::new(), 0);
        while left.iter().any(|&q| q > 0) {
            let mut batch = Vec::new();
            for (i, q) in left.iter_mut().enumerate() {
                if *q > 0 && d.chance(5) {
                    let take = 1 + d.below(*q as u64) as i64;
                    *q -= take;
                    batch.push(ReturnedLine { line: i as u32, quantity: take });
                }
            }
            let claw = earned.clawback(&returned, &batch).unwrap();
            prop_assert!(claw >= 0);
            clawed += claw;
            returned.extend(batch);
        }
        prop_assert_eq!(clawed, earned.points);
        let again = [ReturnedLine { line: 0, quantity: 1 }];
        prop_assert!(earned.clawback(&returned, &again).is_err(), "no unit comes back twice");
    }
}
