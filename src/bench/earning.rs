//! The earning phase: Accrue with a 20-line order through the earning rules
//! next to Accrue with points, PreviewAccrual for a known customer next to
//! GetSummary, both at each level in flight (the pair's order alternating
//! per round), and the evaluation of a 1,000-line order under 100
//! campaigns, in process. The service must run with
//! `LOYALTY_EARNING_RULES_FILE=docs/earning-rules.example.yaml` (scripts/bench.sh).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Bench;
use super::load::drive;
use super::stats::{Samples, Summary};
use crate::domain::earning::{CampaignUsage, Order, OrderLine, RuleBook, RulesFile};
use crate::domain::orders::OrderAccrual;
use crate::domain::tier::Tier;
use crate::grpc::pb;

/// Names of the operations this phase reports (in the api table).
pub const ACCRUE_ORDER: &str = "service Accrue, 20-line order";
/// Accrue with points, measured in the same rounds.
pub const ACCRUE_POINTS: &str = "service Accrue, points";
/// PreviewAccrual for a customer with an account.
pub const PREVIEW: &str = "service PreviewAccrual, known customer";
/// GetSummary, measured in the same rounds.
pub const SUMMARY: &str = "service GetSummary (earning phase)";

/// The in-process cost of evaluating a big order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvaluationCost {
    /// Lines of the order.
    pub lines: usize,
    /// Campaigns of the rule set.
    pub campaigns: usize,
    /// Evaluations timed (each for all four tiers, then settled once).
    pub iterations: usize,
    /// Microseconds per order: four tiers evaluated, one settled.
    pub micros_per_order: f64,
    /// Microseconds per line and tier.
    pub micros_per_line: f64,
    /// Bytes of the evaluation the Accrue signal carries for this order.
    pub signal_bytes: usize,
}

/// What the earning phase measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Earning {
    /// Accrue with an order vs points, PreviewAccrual vs GetSummary, per level.
    pub calls: Vec<Summary>,
    /// Evaluation of a 1,000-line order under 100 campaigns.
    pub evaluation: EvaluationCost,
}

fn now_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A 20-line web order (shoes, socks and other items) placed now.
fn cart(order_id: &str) -> pb::Order {
    let lines = (0..20)
        .map(|i| pb::OrderLine {
            sku: format!("SKU-{i}"),
            categories: vec![["shoes", "socks", "home", "toys"][i % 4].into()],
            quantity: 1 + (i % 3) as i64,
            unit_price: 499 + 250 * i as i64,
            discount: if i % 5 == 0 { 100 } else { 0 },
        })
        .collect();
    pb::Order {
        order_id: order_id.into(),
        currency: "USD".into(),
        channel: "web".into(),
        occurred_at: Some(prost_types::Timestamp { seconds: now_seconds(), nanos: 0 }),
        lines,
        ..Default::default()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    AccrueOrder,
    AccruePoints,
    Preview,
    Summary,
}

impl Bench {
    fn earning_customer(&self, level: usize, i: usize) -> String {
        format!("bench-{}-e{level}-{}", self.run, i % self.args.customers)
    }

    async fn earning_call(&self, op: Op, level: usize, round: usize, i: usize) -> Result<(), String> {
        let mut grpc = self.grpc.clone();
        let customer_id = self.earning_customer(level, i);
        let err = |e: tonic::Status| e.to_string();
        match op {
            Op::AccrueOrder | Op::AccruePoints => {
                let order = op == Op::AccrueOrder;
                let request = pb::AccrueRequest {
                    customer_id,
                    event_id: format!("{}{round}-{i}", if order { "o" } else { "p" }),
                    points: if order { 0 } else { 10 },
                    order: order.then(|| cart(&format!("o{round}-{i}"))),
                    reason: "bench".into(),
                    source: "bench".into(),
                    ..Default::default()
                };
                grpc.accrue(request).await.map(drop).map_err(err)
            }
            Op::Preview => {
                let request = pb::PreviewAccrualRequest { customer_id, order: Some(cart(&format!("v{round}-{i}"))) };
                grpc.preview_accrual(request).await.map(drop).map_err(err)
            }
            Op::Summary => grpc.get_summary(pb::GetSummaryRequest { customer_id }).await.map(drop).map_err(err),
        }
    }

    /// `pair` side by side at `level`, `per_customer` calls per account each,
    /// the first of the pair alternating by round.
    async fn earning_pair(&self, pair: [(Op, &str); 2], level: usize, per_customer: usize) -> Vec<Summary> {
        let rounds = self.args.rounds.max(1);
        let per_round = self.args.customers * per_customer.div_ceil(rounds);
        let mut samples = [Samples::default(), Samples::default()];
        for round in 0..rounds {
            for k in [round % 2, (round + 1) % 2] {
                let (op, name) = pair[k];
                let label = format!("{name} x{level} (round {})", round + 1);
                let before = self.watched.read();
                let mut done = drive(&label, per_round, level, |i| self.earning_call(op, level, round, i)).await;
                done.set_cpu(self.watched.read().since(&before));
                samples[k].merge(done);
            }
        }
        let [a, b] = samples;
        vec![a.summary(pair[0].1, level), b.summary(pair[1].1, level)]
    }
}

/// A rule set of `campaigns` campaigns over the big order's categories.
fn big_rules(campaigns: usize) -> RuleBook {
    let list: Vec<_> = (0..campaigns)
        .map(|i| {
            let effect = match i % 4 {
                0 => json!({"multiply": "1.5"}),
                1 => json!({"per_unit": 2}),
                2 => json!({"bonus": 10}),
                _ => json!({"rate": {"points": 2, "per": 100}}),
            };
            let mut c = json!({"id": format!("c{i}"), "priority": i % 7, "categories": [format!("cat{}", i % 20)],
                   "effect": effect, "max_per_order": 10_000});
            // One in ten has a per-customer cap (whose per-line points ride on the signal).
            if i % 10 == 0 {
                c["max_per_customer"] = json!({"points": 5_000, "period": "month"});
            }
            c
        })
        .collect();
    let file = json!({"rule_sets": [{"id": "bench", "version": 1, "effective_from": "2026-01-01T00:00:00Z",
        "rates": {"USD": {"points": 1, "per": 100}}, "exclusions": {"categories": ["cat19"]},
        "tier_multipliers": {"Silver": "1.25", "Gold": "1.5", "Platinum": "2"}, "campaigns": list}]});
    let file: RulesFile = serde_json::from_value(file).expect("bench rules");
    RuleBook::check(file).expect("bench rules check")
}

/// Times the evaluation of a 1,000-line order under 100 campaigns.
pub fn evaluation_cost(iterations: usize) -> EvaluationCost {
    let (lines, campaigns) = (1_000, 100);
    let book = big_rules(campaigns);
    let order = Order {
        order_id: "big".into(),
        currency: "USD".into(),
        channel: "web".into(),
        occurred_at_ms: 1_780_000_000_000,
        lines: (0..lines)
            .map(|i| OrderLine {
                sku: format!("SKU-{i}"),
                categories: vec![format!("cat{}", i % 20), format!("cat{}", (i * 7) % 20)],
                quantity: 1 + (i % 4) as i64,
                unit_price: 100 + i as i64,
                discount: 0,
            })
            .collect(),
        ..Order::default()
    };
    let version = book.effective_at(order.occurred_at_ms).expect("in effect");
    let started = Instant::now();
    let mut signal_bytes = 0;
    for _ in 0..iterations {
        let accrual = OrderAccrual::evaluate(&order, version).expect("evaluates");
        let earned = accrual.earned(Tier::Gold, &CampaignUsage::default(), order.occurred_at_ms).expect("settles");
        std::hint::black_box(&earned);
        signal_bytes = serde_json::to_vec(&accrual).map_or(0, |v| v.len());
    }
    let per_order = started.elapsed().as_secs_f64() * 1e6 / iterations.max(1) as f64;
    EvaluationCost {
        lines,
        campaigns,
        iterations,
        micros_per_order: per_order,
        micros_per_line: per_order / (lines * Tier::ALL.len()) as f64,
        signal_bytes,
    }
}

/// Runs the earning phase.
pub async fn run(bench: &Bench) -> Result<Earning, String> {
    let mut calls = Vec::new();
    for &level in &bench.args.concurrency {
        let level = level.max(1);
        let accrues = [(Op::AccrueOrder, ACCRUE_ORDER), (Op::AccruePoints, ACCRUE_POINTS)];
        calls.extend(bench.earning_pair(accrues, level, bench.args.accruals).await);
        // Known customers: every account of this level took the accruals above.
        tokio::time::sleep(Duration::from_secs(2)).await;
        calls.extend(
            bench.earning_pair([(Op::Preview, PREVIEW), (Op::Summary, SUMMARY)], level, bench.args.summaries).await,
        );
    }
    if let Some(failed) = calls.iter().find(|s| s.failed > 0) {
        return Err(format!("{}: {} calls failed (is LOYALTY_EARNING_RULES_FILE set?)", failed.name, failed.failed));
    }
    Ok(Earning { calls, evaluation: evaluation_cost(20) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_big_order_is_evaluated_and_its_signal_stays_small() {
        let cost = super::evaluation_cost(1);
        eprintln!("{cost:?}");
        assert!(cost.signal_bytes < crate::grpc::orders::MAX_ORDER_BYTES, "{} bytes", cost.signal_bytes);
    }
}
