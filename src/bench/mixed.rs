//! The mixed phase: one customer taking a steady Accrue stream while Redeem
//! and Adjust calls go to the same account, all through the service.
//!
//! Accruals are signals the run loop applies in batches; redemptions and
//! corrections are updates that take the account's ledger lock, and a
//! correction first waits for the accruals acknowledged before it. So a busy
//! customer is where the synchronous calls meet the asynchronous ones, and
//! this phase measures what that costs each kind of call, and how far the
//! balance the account shows lags behind what callers were told.
//!
//! A call refused with a retryable status (UNAVAILABLE, RESOURCE_EXHAUSTED,
//! DEADLINE_EXCEEDED) is sent again with the same event id, as a client
//! should, and counted as a retry; any other failure is an error.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tonic::{Code, Response, Status};
use tonic_types::StatusExt;

use super::Bench;
use super::stats::percentile;
use crate::grpc::error::RETRY_DELAY;
use crate::grpc::pb;

/// Points of the accrual that opens the account: far more than the run's
/// redemptions and negative adjustments take, so none is refused for want of
/// points (and none waits for pending accruals to cover it).
const OPENING_POINTS: i64 = 10_000;
/// How often the lag is sampled, and the catch-up polled (as the hot phase).
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Retries of one call before it counts as an error, so an outage cannot
/// hold a caller past the phase for long.
const MAX_RETRIES: usize = 20;
/// How long the opening accrual may take to be applied.
const OPEN_WITHIN: Duration = Duration::from_secs(60);
/// How long after the last call every acknowledged one may take to show.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(120);

/// The RPCs the mixed phase sends to its one customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One point per call, from `--mixed-accrue-callers` callers.
    Accrue,
    /// 1 to 3 points per call, from one caller.
    Redeem,
    /// +1 to +3 and -1 to -3 points in turn, with a reason, from one caller.
    Adjust,
}

/// What the calls of one kind did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Calls {
    /// Which RPC.
    pub kind: Kind,
    /// Callers sending it, each one call at a time.
    pub callers: usize,
    /// Calls that succeeded, after any retries.
    pub ok: usize,
    /// Attempts refused with a retryable status and sent again.
    pub retries: usize,
    /// Calls that failed for good (a non-retryable status, or out of retries).
    pub errors: usize,
    /// The first error's status code and message.
    pub first_error: Option<String>,
    /// Successful calls per second of the phase.
    pub per_second: f64,
    /// Median latency, milliseconds, from the first attempt to the answer
    /// (retries included, as a client sees it).
    pub p50_ms: f64,
    /// 90th percentile latency, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Slowest call, milliseconds.
    pub max_ms: f64,
}

/// Results of the mixed phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mixed {
    /// How long the calls were sent.
    pub seconds: f64,
    /// Accrue, Redeem and Adjust, in that order.
    pub calls: Vec<Calls>,
    /// Most accrual points acknowledged but not yet in the account's lifetime
    /// points, at a GetSummary sample every 100 ms. An adjustment in flight
    /// during a sample can move this by its own points (at most 3).
    pub max_lag_points: i64,
    /// GetSummary samples the lag was read from.
    pub lag_samples: usize,
    /// From the last answer to any caller until GetSummary showed every
    /// acknowledged call applied; `None` if it did not within 120 s.
    pub catch_up_seconds: Option<f64>,
    /// The balance then, minus what the acknowledged calls add up to: 0 when
    /// nothing acknowledged was lost or applied twice; `None` if not caught up.
    pub balance_drift: Option<i64>,
}

impl Mixed {
    /// The figures of `kind`, if measured.
    pub fn kind(&self, kind: Kind) -> Option<&Calls> {
        self.calls.iter().find(|c| c.kind == kind)
    }

    /// Calls of every kind that failed for good.
    pub fn errors(&self) -> usize {
        self.calls.iter().map(|c| c.errors).sum()
    }
}

/// What one caller saw.
#[derive(Debug, Default)]
struct Tally {
    latencies: Vec<Duration>,
    retries: usize,
    errors: usize,
    first_error: Option<String>,
    /// Balance change the acknowledged calls add up to.
    balance: i64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.retries += other.retries;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.balance += other.balance;
    }

    fn calls(self, kind: Kind, callers: usize, seconds: f64) -> Calls {
        let mut latencies = self.latencies;
        latencies.sort_unstable();
        let ms = |q: f64| percentile(&latencies, q).as_secs_f64() * 1e3;
        let (p50_ms, p90_ms, p99_ms, max_ms) = (ms(0.50), ms(0.90), ms(0.99), ms(1.0));
        Calls {
            kind,
            callers,
            ok: latencies.len(),
            retries: self.retries,
            errors: self.errors,
            first_error: self.first_error,
            per_second: if seconds > 0.0 { latencies.len() as f64 / seconds } else { 0.0 },
            p50_ms,
            p90_ms,
            p99_ms,
            max_ms,
        }
    }
}

/// Whether the service says a retry may succeed.
fn retryable(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded)
}

/// Sends one call until it succeeds, resending a retryable refusal (the same
/// request, so the same event id) after the delay the service hints. Records
/// the latency from the first attempt, or the error; the answer if any.
async fn retrying<T, Fut>(tally: &mut Tally, mut send: impl FnMut() -> Fut) -> Option<T>
where
    Fut: Future<Output = Result<Response<T>, Status>>,
{
    let started = Instant::now();
    let mut retries = 0;
    loop {
        match send().await {
            Ok(response) => {
                tally.latencies.push(started.elapsed());
                return Some(response.into_inner());
            }
            Err(status) if retryable(status.code()) && retries < MAX_RETRIES => {
                retries += 1;
                tally.retries += 1;
                let pause = status.get_details_retry_info().and_then(|r| r.retry_delay).unwrap_or(RETRY_DELAY);
                tokio::time::sleep(pause).await;
            }
            Err(status) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
                return None;
            }
        }
    }
}

impl Bench {
    /// The account's summary, through the service.
    async fn mixed_summary(&self, customer: &str) -> Result<pb::GetSummaryResponse, Status> {
        let request = pb::GetSummaryRequest { customer_id: customer.to_owned() };
        self.grpc.clone().get_summary(request).await.map(Response::into_inner)
    }

    /// Polls GetSummary until the account shows at least `lifetime` lifetime
    /// points: the time since `since` and that summary, or `None` once
    /// `within` of `since` has passed.
    async fn mixed_applied(
        &self,
        customer: &str,
        lifetime: i64,
        since: Instant,
        within: Duration,
    ) -> Option<(Duration, pb::GetSummaryResponse)> {
        loop {
            match self.mixed_summary(customer).await {
                Ok(s) if s.lifetime_points >= lifetime => return Some((since.elapsed(), s)),
                _ if since.elapsed() > within => return None,
                _ => tokio::time::sleep(SAMPLE_EVERY).await,
            }
        }
    }

    /// One caller of `kind`: calls number `first`, `first + step`, ... until
    /// `until`, each once answered.
    async fn mixed_caller(
        &self,
        kind: Kind,
        customer: &str,
        first: usize,
        step: usize,
        until: Instant,
        told_lifetime: &AtomicI64,
    ) -> Tally {
        let mut tally = Tally::default();
        let mut i = first;
        while Instant::now() < until {
            self.mixed_call(kind, customer, i, &mut tally, told_lifetime).await;
            i += step;
        }
        tally
    }

    /// Call number `i` of `kind`, retried as needed. An acknowledged call adds
    /// its balance change to `tally` and its lifetime change to `told_lifetime`,
    /// which the lag is read against.
    async fn mixed_call(&self, kind: Kind, customer: &str, i: usize, tally: &mut Tally, told_lifetime: &AtomicI64) {
        let customer_id = customer.to_owned();
        match kind {
            Kind::Accrue => {
                let request = pb::AccrueRequest {
                    customer_id,
                    event_id: format!("m{i}"),
                    points: 1,
                    reason: "bench".into(),
                    source: "bench".into(),
                    ..Default::default()
                };
                let sent = retrying(tally, || {
                    let (mut grpc, request) = (self.grpc.clone(), request.clone());
                    async move { grpc.accrue(request).await }
                })
                .await;
                if sent.is_some() {
                    tally.balance += 1;
                    told_lifetime.fetch_add(1, Ordering::SeqCst);
                }
            }
            Kind::Redeem => {
                let request = pb::RedeemRequest {
                    customer_id,
                    event_id: format!("mr{i}"),
                    points: 1 + (i % 3) as i64,
                    reward: "bench".into(),
                };
                let redeemed = retrying(tally, || {
                    let (mut grpc, request) = (self.grpc.clone(), request.clone());
                    async move { grpc.redeem(request).await }
                })
                .await;
                if let Some(r) = redeemed {
                    tally.balance -= r.redeemed;
                }
            }
            Kind::Adjust => {
                let size = 1 + (i / 2 % 3) as i64;
                let request = pb::AdjustRequest {
                    customer_id,
                    event_id: format!("mj{i}"),
                    points: if i.is_multiple_of(2) { size } else { -size },
                    reason: "bench: support correction under load".into(),
                };
                let adjusted = retrying(tally, || {
                    let (mut grpc, request) = (self.grpc.clone(), request.clone());
                    async move { grpc.adjust(request).await }
                })
                .await;
                if let Some(change) = adjusted.and_then(|r| r.change) {
                    tally.balance += change.points;
                    told_lifetime.fetch_add(change.lifetime_delta, Ordering::SeqCst);
                }
            }
        }
    }
}

/// Runs the mixed phase.
/// The one customer of the mixed phase.
pub fn customer(bench: &Bench) -> String {
    format!("bench-{}-mixed", bench.run)
}

pub async fn run(bench: &Bench) -> Result<Mixed, String> {
    let customer = customer(bench);
    let accrue_callers = bench.args.mixed_accrue_callers.max(1);
    let seconds = Duration::from_secs(bench.args.mixed_seconds);

    let open = pb::AccrueRequest {
        customer_id: customer.clone(),
        event_id: "m-open".into(),
        points: OPENING_POINTS,
        reason: "bench".into(),
        source: "bench".into(),
        ..Default::default()
    };
    let mut opening = Tally::default();
    let opened = retrying(&mut opening, || {
        let (mut grpc, request) = (bench.grpc.clone(), open.clone());
        async move { grpc.accrue(request).await }
    })
    .await;
    if opened.is_none() {
        return Err(format!("mixed: the opening accrual failed: {}", opening.first_error.unwrap_or_default()));
    }
    let (_, opened) = bench
        .mixed_applied(&customer, OPENING_POINTS, Instant::now(), OPEN_WITHIN)
        .await
        .ok_or_else(|| format!("mixed: the opening accrual was not applied within {OPEN_WITHIN:?}"))?;

    eprintln!(
        "mixed: {accrue_callers} Accrue callers, 1 Redeem and 1 Adjust caller to one customer for {}s",
        seconds.as_secs()
    );
    let told_lifetime = AtomicI64::new(0);
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let until = started + seconds;
    let (customer_ref, told) = (&customer, &told_lifetime);
    let caller =
        move |kind: Kind, first: usize, step: usize| bench.mixed_caller(kind, customer_ref, first, step, until, told);
    let send = async {
        let accruers =
            futures::future::join_all((0..accrue_callers).map(|first| caller(Kind::Accrue, first, accrue_callers)));
        let sent = tokio::join!(accruers, caller(Kind::Redeem, 0, 1), caller(Kind::Adjust, 0, 1));
        done.store(true, Ordering::SeqCst);
        (sent, Instant::now())
    };
    let watch = async {
        let (mut max_lag, mut samples) = (0_i64, 0_usize);
        while !done.load(Ordering::SeqCst) {
            tokio::time::sleep(SAMPLE_EVERY).await;
            // Read before the query: calls acknowledged during it are not counted.
            let acknowledged = told_lifetime.load(Ordering::SeqCst);
            if let Ok(s) = bench.mixed_summary(&customer).await {
                max_lag = max_lag.max(opened.lifetime_points + acknowledged - s.lifetime_points);
                samples += 1;
            }
        }
        (max_lag, samples)
    };
    let (((accruers, redeemer, adjuster), stopped), (max_lag_points, lag_samples)) = tokio::join!(send, watch);

    let sent_for = stopped.duration_since(started).as_secs_f64();
    let mut accrued = Tally::default();
    for tally in accruers {
        accrued.merge(tally);
    }
    let balance = opened.points_balance + accrued.balance + redeemer.balance + adjuster.balance;
    let lifetime = opened.lifetime_points + told_lifetime.load(Ordering::SeqCst);
    let calls = vec![
        accrued.calls(Kind::Accrue, accrue_callers, sent_for),
        redeemer.calls(Kind::Redeem, 1, sent_for),
        adjuster.calls(Kind::Adjust, 1, sent_for),
    ];
    for c in &calls {
        if let Some(e) = &c.first_error {
            eprintln!("mixed {:?}: {} calls failed; the first: {e}", c.kind, c.errors);
        }
    }
    let caught_up = bench.mixed_applied(&customer, lifetime, stopped, CATCH_UP_WITHIN).await;
    if caught_up.is_none() {
        eprintln!("mixed: {lifetime} lifetime points not shown within {CATCH_UP_WITHIN:?} of the last call");
    }
    Ok(Mixed {
        seconds: sent_for,
        calls,
        max_lag_points,
        lag_samples,
        catch_up_seconds: caught_up.as_ref().map(|(after, _)| after.as_secs_f64()),
        balance_drift: caught_up.map(|(_, s)| s.points_balance - balance),
    })
}
