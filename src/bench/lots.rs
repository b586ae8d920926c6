//! The lots phase: GetSummary on an account that took 10,000 accruals, each
//! its own lot with its own expiry date over a year, next to a fresh account.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::Bench;
use super::load::drive;
use super::stats::Summary;
use crate::grpc::pb;

/// What the lots phase measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lots {
    /// Accruals (lots) the big account took.
    pub accruals: usize,
    /// GetSummary on the big account.
    pub big: Summary,
    /// GetSummary on an account with one lot, interleaved with `big`.
    pub fresh: Summary,
    /// `big.p50 / fresh.p50`.
    pub p50_ratio: f64,
}

/// Fills one account with `--lots` accruals through the service, then reads
/// both accounts' summaries at one call in flight, alternating rounds.
pub async fn run(bench: &Bench) -> Result<Lots, String> {
    let accruals = bench.args.lots;
    let big = format!("bench-{}-lots", bench.run);
    let fresh = format!("bench-{}-lots-fresh", bench.run);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_millis() as i64;
    let year_ms = 365 * 86_400_000_i64;
    let accrue = |customer: String, i: usize| {
        let at = now + 86_400_000 + year_ms * i as i64 / accruals.max(1) as i64;
        let request = pb::AccrueRequest {
            customer_id: customer,
            event_id: format!("order-{i}"),
            points: 1,
            reason: "bench".into(),
            source: "bench".into(),
            pending_days: Some(0),
            expires_at: Some(prost_types::Timestamp { seconds: at / 1000, nanos: 0 }),
            ..Default::default()
        };
        let mut grpc = bench.grpc.clone();
        async move { grpc.accrue(request).await.map(drop).map_err(|e| e.to_string()) }
    };
    let filled = drive(&format!("{accruals} lots"), accruals, bench.load(), |i| accrue(big.clone(), i)).await;
    if let failed @ 1.. = filled.summary("fill", bench.load()).failed {
        return Err(format!("{failed} accruals failed"));
    }
    accrue(fresh.clone(), 0).await?;
    let within = Duration::from_secs(600);
    bench.wait_for_lifetime(&format!("loyalty-{big}"), accruals as i64, within).await?;
    bench.wait_for_lifetime(&format!("loyalty-{fresh}"), 1, within).await?;

    let calls = bench.args.lots_summaries;
    let read = |customer: String| {
        move |_| {
            let mut grpc = bench.grpc.clone();
            let request = pb::GetSummaryRequest { customer_id: customer.clone() };
            async move { grpc.get_summary(request).await.map(drop).map_err(|e| e.to_string()) }
        }
    };
    let (mut big_samples, mut fresh_samples) = (Vec::new(), Vec::new());
    for round in 0..4 {
        let (a, b) = if round % 2 == 0 { (&big, &fresh) } else { (&fresh, &big) };
        let first = drive(&format!("GetSummary {a}"), calls / 4, 1, read(a.clone())).await;
        let second = drive(&format!("GetSummary {b}"), calls / 4, 1, read(b.clone())).await;
        let (to_big, to_fresh) = if round % 2 == 0 { (first, second) } else { (second, first) };
        big_samples.push(to_big);
        fresh_samples.push(to_fresh);
    }
    let merge = |all: Vec<super::stats::Samples>, name: &str| {
        all.into_iter()
            .reduce(|mut a, b| {
                a.merge(b);
                a
            })
            .map(|s| s.summary(name, 1))
    };
    let big = merge(big_samples, "GetSummary, 10,000-lot account").ok_or("no samples")?;
    let fresh = merge(fresh_samples, "GetSummary, one-lot account").ok_or("no samples")?;
    let p50_ratio = big.p50_ms / fresh.p50_ms.max(f64::EPSILON);
    Ok(Lots { accruals, big, fresh, p50_ratio })
}
