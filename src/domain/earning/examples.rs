//! The README's worked examples, computed by the code: the example rule
//! set is `docs/earning-rules.example.yaml`, which the README shows whole,
//! and every number in the README's table is checked here.

use super::calendar::parse_time;
use super::order::{Order, OrderLine, Tender};
use super::refund::ReturnedLine;
use super::rules::RuleBook;
use super::settle::CampaignUsage;
use crate::domain::orders::OrderAccrual;
use crate::domain::tier::Tier;

const EXAMPLE: &str = include_str!("../../../docs/earning-rules.example.yaml");
const README: &str = include_str!("../../../README.md");

fn line(sku: &str, category: &str, quantity: i64, unit_price: i64, discount: i64) -> OrderLine {
    OrderLine { sku: sku.into(), categories: vec![category.into()], quantity, unit_price, discount }
}

fn order(id: &str, channel: &str, at: &str, lines: Vec<OrderLine>) -> Order {
    Order {
        order_id: id.into(),
        currency: "USD".into(),
        channel: channel.into(),
        occurred_at_ms: parse_time(at).unwrap(),
        lines,
        ..Order::default()
    }
}

fn example_a() -> Order {
    order(
        "A",
        "web",
        "2026-03-03T10:00:00Z",
        vec![
            line("SHOE-1", "shoes", 1, 8_999, 1_000),
            line("SOCK-3", "socks", 3, 499, 0),
            line("GIFT-CARD-50", "gift", 1, 5_000, 0),
        ],
    )
}

/// (example, tier, exact points, points) as the README's table gives them.
fn table_row(example: &str, tier: Tier, exact: &str, points: i64) -> String {
    format!("| {example} | {tier} | {exact} | {points} |")
}

#[test]
fn the_readme_shows_the_example_rule_set_and_its_worked_examples() {
    assert!(README.contains(EXAMPLE.trim()), "README.md shows docs/earning-rules.example.yaml verbatim");
    let book = RuleBook::parse(EXAMPLE, true).unwrap();
    let earn = |o: &Order, tier, usage: &CampaignUsage| {
        let version = book.effective_at(o.occurred_at_ms).unwrap();
        OrderAccrual::evaluate(o, version).unwrap().earned(tier, usage, o.occurred_at_ms).unwrap()
    };
    let none = CampaignUsage::default();
    let mut rows = Vec::new();
    let a = earn(&example_a(), Tier::Bronze, &none);
    rows.push(("A", Tier::Bronze, a.exact.to_string(), a.points));
    let b = earn(&example_a(), Tier::Gold, &none);
    rows.push(("A", Tier::Gold, b.exact.to_string(), b.points));
    let mut c = order("C", "app", "2026-03-07T15:00:00Z", vec![line("SHOE-2", "shoes", 1, 8_999, 0)]);
    c.tenders = vec![Tender { kind: "gift_card".into(), amount: 2_000 }, Tender { kind: "card".into(), amount: 6_999 }];
    let mut usage = CampaignUsage::default();
    for example in ["C", "C again", "C a third time"] {
        let earned = earn(&c, Tier::Silver, &usage);
        usage.record(&earned, c.occurred_at_ms);
        rows.push((example, Tier::Silver, earned.exact.to_string(), earned.points));
    }
    let d = order("D", "web", "2026-03-03T10:00:00Z", vec![line("PEN", "office", 1, 450, 0)]);
    let version = book.effective_at(d.occurred_at_ms).unwrap();
    assert_eq!(OrderAccrual::evaluate(&d, version).unwrap().most_points(), 0, "below the minimum: no accrual");
    let e = order(
        "E",
        "web",
        "2026-03-03T10:00:00Z",
        vec![line("SHOE-1", "shoes", 1, 8_999, 0), line("JACKET", "clearance", 1, 4_000, 0)],
    );
    let earned_e = earn(&e, Tier::Bronze, &none);
    rows.push(("E", Tier::Bronze, earned_e.exact.to_string(), earned_e.points));
    let expected = [
        ("A", Tier::Bronze, "189.95", 189),
        ("A", Tier::Gold, "277.425", 277),
        ("C", Tier::Silver, "224.975", 224),
        ("C again", Tier::Silver, "224.975", 224),
        ("C a third time", Tier::Silver, "174.975", 174),
        ("E", Tier::Bronze, "109.99", 109),
    ];
    for ((ex, tier, exact, points), (want_ex, want_tier, want_exact, want_points)) in rows.iter().zip(expected) {
        assert_eq!((*ex, *tier, exact.as_str(), *points), (want_ex, want_tier, want_exact, want_points));
        let row = table_row(ex, *tier, exact, *points);
        assert!(README.contains(&row), "README.md has the row {row}");
    }
    // Returns of example A at Bronze: two of three socks, then the rest.
    let socks = [ReturnedLine { line: 1, quantity: 2 }];
    assert_eq!(a.clawback(&[], &socks).unwrap(), 20);
    let rest = [
        ReturnedLine { line: 0, quantity: 1 },
        ReturnedLine { line: 1, quantity: 1 },
        ReturnedLine { line: 2, quantity: 1 },
    ];
    assert_eq!(a.clawback(&socks, &rest).unwrap(), 169, "the returns add up to the 189 credited");
    assert!(README.contains("claws back 20") && README.contains("claws back the other 169"));
}
