//! The alternating phase: Accrue, Redeem and GetSummary in turn on the same
//! customers, one call in flight, through the service (issue 22: a Redeem
//! must not wait behind the workflow tasks that writing the previous
//! decisions to the ledger causes); then the history events each kind of
//! update costs the account, alone and in a run of calls.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use temporalio_client::{
    WorkflowExecuteUpdateOptions, WorkflowFetchHistoryOptions, WorkflowHandle, WorkflowSignalOptions,
    WorkflowStartOptions,
};

use super::Bench;
use super::reference::{PerEventAccount, PerEventInput};
use super::stats::percentile;
use crate::grpc::pb;
use crate::workflow::{HANDED_PAUSE, LoyaltyEntityWorkflow};

/// Customers the calls alternate over.
const CUSTOMERS: usize = 10;
/// Updates of one kind in a run, one in flight.
const RUN_OF: usize = 20;
/// How long after its last call an account's history is counted: the run's
/// own ledger write follows its pause.
const SETTLE: Duration = Duration::from_secs(HANDED_PAUSE.as_secs() + 3);

/// Latency of one kind of call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// The RPC.
    pub name: String,
    /// Calls.
    pub calls: usize,
    /// Median, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Slowest, milliseconds.
    pub max_ms: f64,
}

/// History events one update of a kind adds to its account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventsPerCall {
    /// The update (Reserve, Capture and Release are the hold operations).
    pub name: String,
    /// Events one call alone adds, its ledger write included.
    pub alone: usize,
    /// Events per call in a run of [`RUN_OF`], one in flight.
    pub in_a_run: f64,
}

/// Results of the alternating phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alternating {
    /// Accrue, Redeem, GetSummary.
    pub latency: Vec<Latency>,
    /// The floor: a no-op signal and a no-op update in turn on minimal
    /// workflows, straight to Temporal.
    #[serde(default)]
    pub floor: Vec<Latency>,
    /// Redeem p50 / Accrue p50.
    pub redeem_to_accrue_p50: f64,
    /// Per kind of update.
    pub events: Vec<EventsPerCall>,
}

impl Alternating {
    /// Prints the phase's tables.
    pub fn print(&self) {
        println!("\nalternating Accrue / Redeem / GetSummary on {CUSTOMERS} customers, one in flight");
        for l in &self.latency {
            println!(
                "{:<12} {:>5} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                l.name, l.calls, l.p50_ms, l.p99_ms, l.max_ms
            );
        }
        println!("Redeem p50 / Accrue p50: {:.2}", self.redeem_to_accrue_p50);
        println!("the floor: a no-op signal and a no-op update in turn on minimal workflows, straight to Temporal");
        for l in &self.floor {
            println!(
                "{:<12} {:>5} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                l.name, l.calls, l.p50_ms, l.p99_ms, l.max_ms
            );
        }
        println!("history events per update (its ledger write included): alone / in a run of {RUN_OF}");
        for e in &self.events {
            println!("{:<12} {:>5} {:>8.2}", e.name, e.alone, e.in_a_run);
        }
    }
}

fn latency(name: &str, mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Latency {
        name: name.into(),
        calls: samples.len(),
        p50_ms: ms(percentile(&samples, 0.5)),
        p99_ms: ms(percentile(&samples, 0.99)),
        max_ms: ms(samples.last().copied().unwrap_or_default()),
    }
}

/// Runs the phase.
pub async fn run(bench: &Bench) -> Result<Alternating, String> {
    let customers: Vec<String> = (0..CUSTOMERS).map(|i| format!("bench-{}-alt-{i}", bench.run)).collect();
    for c in &customers {
        bench.open(c, 1_000).await?;
    }
    let (mut accrue, mut redeem, mut summary) = (Vec::new(), Vec::new(), Vec::new());
    let mut grpc = bench.grpc.clone();
    for round in 0..bench.args.alternating_rounds {
        for c in &customers {
            let started = Instant::now();
            grpc.accrue(accrual(c, &format!("alt-a{round}"), 1)).await.map_err(|e| e.to_string())?;
            accrue.push(started.elapsed());
            let started = Instant::now();
            let r = pb::RedeemRequest {
                customer_id: c.clone(),
                event_id: format!("alt-r{round}"),
                points: 1,
                reward: "bench".into(),
            };
            grpc.redeem(r).await.map_err(|e| e.to_string())?;
            redeem.push(started.elapsed());
            let started = Instant::now();
            grpc.get_summary(pb::GetSummaryRequest { customer_id: c.clone() }).await.map_err(|e| e.to_string())?;
            summary.push(started.elapsed());
        }
    }
    let (accrue, redeem, summary) =
        (latency("Accrue", accrue), latency("Redeem", redeem), latency("GetSummary", summary));
    let ratio = redeem.p50_ms / accrue.p50_ms.max(f64::MIN_POSITIVE);
    let floor = bench.with_worker(bench.floor()).await??;
    // Each kind on an account of its own, side by side: the settles dominate.
    let kinds = ["Redeem", "Adjust", "Reserve", "Capture", "Release"].map(|kind| bench.events_per_call(kind));
    let events = futures::future::try_join_all(kinds).await?;
    Ok(Alternating { latency: vec![accrue, redeem, summary], floor, redeem_to_accrue_p50: ratio, events })
}

fn accrual(customer: &str, event: &str, points: i64) -> pb::AccrueRequest {
    pb::AccrueRequest {
        customer_id: customer.into(),
        event_id: event.into(),
        points,
        reason: "bench".into(),
        source: "bench".into(),
        ..Default::default()
    }
}

impl Bench {
    /// A no-op signal then a no-op update, in turn, on [`CUSTOMERS`] minimal
    /// workflows of the benchmark's own worker, one in flight.
    async fn floor(&self) -> Result<Vec<Latency>, String> {
        let ids: Vec<String> = (0..CUSTOMERS).map(|i| format!("bench-{}-alt-floor-{i}", self.run)).collect();
        for id in &ids {
            let options = WorkflowStartOptions::new(self.bench_queue(), id.clone()).build();
            let input = PerEventInput { customer_id: id.clone(), local: false };
            self.temporal.start_workflow(PerEventAccount::run, input, options).await.map_err(|e| e.to_string())?;
        }
        let (mut signals, mut updates) = (Vec::new(), Vec::new());
        for round in 0..self.args.alternating_rounds {
            for id in &ids {
                let handle = self.temporal.get_workflow_handle::<PerEventAccount>(id.clone());
                let started = Instant::now();
                let n = round as u64;
                handle
                    .signal(PerEventAccount::ping, n, WorkflowSignalOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
                signals.push(started.elapsed());
                let started = Instant::now();
                let options = WorkflowExecuteUpdateOptions::default();
                handle.execute_update(PerEventAccount::tick, n, options).await.map_err(|e| e.to_string())?;
                updates.push(started.elapsed());
            }
        }
        Ok(vec![latency("signal", signals), latency("update", updates)])
    }

    /// Opens `customer` with `points` and waits until they are applied.
    async fn open(&self, customer: &str, points: i64) -> Result<(), String> {
        self.grpc.clone().accrue(accrual(customer, "open", points)).await.map_err(|e| e.to_string())?;
        self.wait_for_lifetime(&format!("loyalty-{customer}"), points, Duration::from_secs(60)).await
    }

    /// Events in the history of the account's current run.
    async fn run_events(&self, customer: &str) -> Result<usize, String> {
        let handle: WorkflowHandle<_, LoyaltyEntityWorkflow> =
            self.temporal.get_workflow_handle::<LoyaltyEntityWorkflow>(format!("loyalty-{customer}"));
        let history = handle.fetch_history(WorkflowFetchHistoryOptions::default()).into_events().await;
        history.map(|h| h.len()).map_err(|e| e.to_string())
    }

    /// One call of update `kind` on a settled account (the events it adds
    /// once the run's write followed), then [`RUN_OF`] more in a row.
    async fn events_per_call(&self, kind: &str) -> Result<EventsPerCall, String> {
        let customer = format!("bench-{}-events-{}", self.run, kind.to_lowercase());
        self.open(&customer, 1_000).await?;
        if matches!(kind, "Capture" | "Release") {
            for i in 0..=RUN_OF {
                self.update_call("Reserve", &customer, i).await?;
            }
        }
        tokio::time::sleep(SETTLE).await;
        let before = self.run_events(&customer).await?;
        self.update_call(kind, &customer, 0).await?;
        tokio::time::sleep(SETTLE).await;
        let alone = self.run_events(&customer).await?;
        for i in 1..=RUN_OF {
            self.update_call(kind, &customer, i).await?;
        }
        tokio::time::sleep(SETTLE).await;
        let after = self.run_events(&customer).await?;
        Ok(EventsPerCall { name: kind.into(), alone: alone - before, in_a_run: (after - alone) as f64 / RUN_OF as f64 })
    }

    /// Call `i` of update `kind` (a Capture or Release of hold `h<i>`,
    /// reserved before the count starts).
    async fn update_call(&self, kind: &str, customer: &str, i: usize) -> Result<(), String> {
        let mut grpc = self.grpc.clone();
        let c = customer.to_owned();
        let ttl = Some(prost_types::Duration { seconds: 3_600, nanos: 0 });
        let hold = |i: usize| pb::ReserveRequest { customer_id: c.clone(), hold_id: format!("h{i}"), points: 1, ttl };
        let sent = match kind {
            "Redeem" => {
                let r = pb::RedeemRequest {
                    customer_id: c.clone(),
                    event_id: format!("r{i}"),
                    points: 1,
                    reward: "b".into(),
                };
                grpc.redeem(r).await.map(drop)
            }
            "Adjust" => {
                let r = pb::AdjustRequest {
                    customer_id: c.clone(),
                    event_id: format!("j{i}"),
                    points: 1,
                    reason: "bench".into(),
                };
                grpc.adjust(r).await.map(drop)
            }
            "Reserve" => grpc.reserve(hold(i)).await.map(drop),
            "Capture" => {
                let r = pb::CaptureRequest {
                    customer_id: c.clone(),
                    hold_id: format!("h{i}"),
                    points: 1,
                    event_id: format!("c{i}"),
                    reward: "b".into(),
                };
                grpc.capture(r).await.map(drop)
            }
            _ => grpc.release(pb::ReleaseRequest { customer_id: c.clone(), hold_id: format!("h{i}") }).await.map(drop),
        };
        sent.map_err(|e| format!("{kind} {i}: {e}"))
    }
}
