//! No stall, ever: one hot account under every kind of call on two replicas
//! across continue-as-new (with a ledger outage, and with a carried state
//! near its bound), and accounts across a rolling deploy and a crash. Each
//! scenario asserts the exact invariant and the maximum latency of every
//! kind of call, from its first attempt to its definite answer, and reads
//! the account's histories for what Temporal did (workflow tasks failed and
//! timed out per continue-as-new). The scenarios run one at a time, alone in
//! this binary, so their latencies are the service's, not a neighbour's.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::book::{Book, Figures, Grpc, publish, report, scale};
use common::deploy::{self, Fleet};
use common::hot::{
    Hot, Rpc, Tally, accrue_caller, adjust_caller, hold_caller, redeem_caller, report_latencies, reverse_caller,
    summary_caller, with_deadline,
};
use loyalty::config::Settings;
use loyalty::ledger::Ledger;

/// One scenario at a time: each measures latency on a 2-core machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The longest any call of the storm may take, first attempt to definite answer.
const MAX_LATENCY: Duration = Duration::from_secs(2);
/// The storm's p99 bound, for every kind of call (issue 21).
const P99_LATENCY: Duration = Duration::from_millis(300);
/// Accrual callers of the storm, split over the two replicas.
const STORM_ACCRUERS: usize = 8;
/// Accruals of one storm (times `scale()`).
const STORM_ACCRUALS: usize = 8_000;
/// Continue-as-new one storm must see at least (times `scale()`).
const STORM_CONTINUES: usize = 4;
/// How long the ledger refuses the account's writes in the outage variant.
const OUTAGE: Duration = Duration::from_secs(4);

/// Applications of one test, all sharing one task queue and one ledger.
struct Replicas {
    grpc: Vec<Grpc>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    database_url: String,
}

impl Replicas {
    /// `n` applications (role `all`) from `settings`.
    async fn start(settings: Settings, n: usize) -> Self {
        if let Ok(filter) = std::env::var("LOYALTY_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
        }
        let mut replicas =
            Replicas { grpc: vec![], stops: vec![], threads: vec![], database_url: settings.database_url.clone() };
        for _ in 0..n {
            let (stop, stopped) = tokio::sync::oneshot::channel();
            let (addr, thread) = common::start_app(settings.clone(), stopped);
            replicas.grpc.push(Grpc::new(common::grpc_channel(addr).await));
            replicas.stops.push(stop);
            replicas.threads.push(thread);
        }
        replicas
    }

    async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for thread in self.threads {
            tokio::task::spawn_blocking(move || thread.join().expect("application stops")).await.unwrap();
        }
    }
}

/// What a storm is run with besides the calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Only the calls.
    Calls,
    /// The ledger refuses the account's writes for [`OUTAGE`] a third of the way.
    LedgerOutage,
    /// Every id and text at its longest: the carried state as large as the
    /// account's windows let it grow.
    LargeState,
}

/// What a storm measured.
struct Storm {
    tallies: BTreeMap<Rpc, Tally>,
    runs: Vec<common::RunCounts>,
    figures: Figures,
}

impl Storm {
    fn slowest(&self) -> Duration {
        self.tallies.values().flat_map(|t| t.latencies.iter().copied()).max().unwrap_or_default()
    }

    fn timeouts(&self) -> usize {
        self.runs.iter().map(|r| r.task_timeouts.len()).sum()
    }
}

/// One account; two replicas of the service; [`STORM_ACCRUERS`] callers
/// streaming Accrue across both as fast as they answer, and callers of
/// Redeem, Reverse, Adjust, Reserve with Capture or Release, and
/// GetSummary on the same account, until the accruals are acknowledged.
/// Prints the latencies of every kind and, per run, what its history shows.
async fn storm(scenario: &str, customer: &str, variant: Variant, settings: Settings) -> Storm {
    let replicas = Replicas::start(settings, 2).await;
    let on = |i: usize| replicas.grpc[i % replicas.grpc.len()].clone();
    let mut hot = Hot::new(customer, STORM_ACCRUALS * scale());
    hot.large = variant == Variant::LargeState;
    let hot = Arc::new(hot);
    let mut book = Book::default();
    book.open(&mut on(0), customer, 100).await;

    let accruers: Vec<_> = (0..STORM_ACCRUERS).map(|i| tokio::spawn(accrue_caller(on(i), hot.clone()))).collect();
    let others = [
        (Rpc::Redeem, tokio::spawn(redeem_caller(on(0), hot.clone()))),
        (Rpc::Reverse, tokio::spawn(reverse_caller(on(1), hot.clone()))),
        (Rpc::Adjust, tokio::spawn(adjust_caller(on(0), hot.clone()))),
        (Rpc::GetSummary, tokio::spawn(summary_caller(on(1), hot.clone()))),
    ];
    let holder = tokio::spawn(hold_caller(on(1), hot.clone()));

    if variant == Variant::LedgerOutage {
        while hot.acknowledged() < hot.accruals / 3 && !accruers.iter().all(|a| a.is_finished()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let when = format!("NEW.customer_id = '{customer}'");
        let trigger = format!("outage_{customer}");
        let db = common::Db::Sqlite;
        let outage = common::fail_inserts_on(&replicas.database_url, db, &trigger, "ledger_entries", &when).await;
        hot.outage.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(OUTAGE).await;
        hot.outage.fetch_add(1, Ordering::SeqCst);
        common::end_outage(&outage).await;
    }

    let mut tallies: BTreeMap<Rpc, Tally> = BTreeMap::new();
    for accruer in accruers {
        tallies.entry(Rpc::Accrue).or_insert_with(|| Tally::new(customer)).merge(accruer.await.expect("an accruer"));
    }
    hot.done.store(true, Ordering::SeqCst);
    for (rpc, caller) in others {
        tallies.entry(rpc).or_insert_with(|| Tally::new(customer)).merge(caller.await.expect("a caller"));
    }
    for (rpc, tally) in holder.await.expect("the hold caller") {
        tallies.entry(rpc).or_insert_with(|| Tally::new(customer)).merge(tally);
    }
    report_latencies(scenario, &tallies);

    let mut operations = 0;
    for tally in tallies.values() {
        operations += tally.outcome.calls;
    }
    for tally in tallies.values_mut() {
        book.add(std::mem::take(&mut tally.outcome));
    }
    let ledger = Ledger::connect(&replicas.database_url).await.expect("ledger");
    let figures = book.check_on(&mut on(0), &ledger).await;
    report(scenario, operations, usize::from(variant == Variant::LedgerOutage), &figures);

    let runs = common::workflow_runs(&format!("loyalty-{customer}")).await;
    report_runs(scenario, &runs);
    replicas.stop().await;
    Storm { tallies, runs, figures }
}

/// Prints, per continue-as-new, the run's size, the workflow tasks that
/// failed (by cause) or timed out, and the state it carried.
fn report_runs(scenario: &str, runs: &[common::RunCounts]) {
    let failed: usize = runs.iter().map(|r| r.task_failures.len()).sum();
    let timed_out: usize = runs.iter().map(|r| r.task_timeouts.len()).sum();
    publish(&format!(
        "{scenario}: {} runs ({} continue-as-new), {failed} WorkflowTaskFailed, {timed_out} WorkflowTaskTimedOut",
        runs.len(),
        runs.len() - 1
    ));
    for (i, run) in runs.iter().enumerate() {
        let mut causes: BTreeMap<&str, usize> = BTreeMap::new();
        for cause in run.task_failures.iter().chain(&run.task_timeouts) {
            *causes.entry(cause.as_str()).or_default() += 1;
        }
        publish(&format!(
            "{scenario}:   run {i}: {} events, {} signals, {} updates, failed or timed out {causes:?}, carried {}",
            run.events,
            run.signals,
            run.updates,
            run.carried_bytes.map_or("-".to_owned(), |b| format!("{:.1} KiB", b as f64 / 1024.0)),
        ));
    }
}

/// The storm's promises: every call definite within [`MAX_LATENCY`], p99
/// within `p99_bound`, for every kind; no workflow task timed out; at
/// least [`STORM_CONTINUES`] continue-as-new; nothing lost or doubled.
fn assert_no_stall(storm: &Storm, p99_bound: Duration) {
    let broken = broken_promises(storm, p99_bound);
    assert!(broken.is_empty(), "{broken:#?}");
}

/// What of [`assert_no_stall`]'s promises `storm` broke.
fn broken_promises(storm: &Storm, p99_bound: Duration) -> Vec<String> {
    use loyalty::bench::stats::percentile;
    let mut broken = Vec::new();
    for (rpc, tally) in &storm.tallies {
        let mut sorted = tally.latencies.clone();
        sorted.sort_unstable();
        let Some(&max) = sorted.last() else {
            broken.push(format!("{rpc:?}: no call made"));
            continue;
        };
        let p99 = percentile(&sorted, 0.99);
        if max > MAX_LATENCY {
            broken.push(format!("{rpc:?}: a call took {max:?} to get a definite answer"));
        }
        if p99 > p99_bound {
            broken.push(format!("{rpc:?}: p99 {p99:?}"));
        }
    }
    if storm.timeouts() > 0 {
        broken.push(format!("workflow tasks timed out: {:?}", storm.runs));
    }
    // A continue-as-new is refused when a call reaches Temporal during its
    // task; the run's notice holds the calls, so hardly any is (without it,
    // about one per run: the notice no longer reached the API).
    let failed: usize = storm.runs.iter().map(|r| r.task_failures.len()).sum();
    if failed * 4 > storm.runs.len() {
        broken.push(format!("{failed} workflow tasks failed over {} runs", storm.runs.len()));
    }
    let continued = storm.runs.len().saturating_sub(1);
    if continued < STORM_CONTINUES * scale() {
        broken.push(format!("only {continued} continue-as-new: {:?}", storm.runs));
    }
    if storm.figures != (Figures { customers: 1, lost: 0, duplicated: 0 }) {
        broken.push(format!("the invariant: {:?}", storm.figures));
    }
    broken
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_account_on_two_replicas_never_stalls_across_continue_as_new() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let settings = common::settings("storm");
    let storm = storm("storm", "storm", Variant::Calls, settings).await;
    assert_no_stall(&storm, P99_LATENCY);
}

/// The negative control: the same storm with calls to a closing account
/// left to the Temporal client's own retries (its throttle backoff of 1 s,
/// then 2, 4, 8 s) shows the stall the storm test is there to catch.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_brief_retry_the_storm_stalls() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut settings = common::settings("storm-control");
    settings.closing_retry = false;
    let storm = storm("storm, client's own retries (control)", "stormctl", Variant::Calls, settings).await;
    assert_eq!(storm.figures, Figures { customers: 1, lost: 0, duplicated: 0 }, "nothing lost even so");
    let slowest = storm.slowest();
    assert!(slowest > MAX_LATENCY, "the control should stall past {MAX_LATENCY:?}; its slowest call took {slowest:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_account_never_stalls_through_a_ledger_outage() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let settings = common::settings("storm-outage");
    let storm = storm("storm with a 4 s ledger outage", "stormout", Variant::LedgerOutage, settings).await;
    assert_no_stall(&storm, P99_LATENCY);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hot_account_never_stalls_with_a_carried_state_near_its_bound() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let settings = common::settings("storm-large");
    let storm = storm("storm with the largest ids and texts", "stormbig", Variant::LargeState, settings).await;
    assert_no_stall(&storm, P99_LATENCY);
}

/// Rounds of the soak, alone and again beside a CPU hog.
const SOAK_ROUNDS: usize = 5;

/// The soak, not in the test command (`cargo test --test liveness --
/// --ignored --nocapture soak`, about 5 minutes): the storm
/// [`SOAK_ROUNDS`] times, then as often again beside a CPU hog (a thread
/// spinning on one of the machine's cores; `LOYALTY_SOAK_HOG=only` runs
/// those alone), every round held to every promise of the storm and the
/// broken ones listed at the end. `LOYALTY_FAULTS_SCALE=N` makes each round
/// N times longer.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a soak of about 5 minutes: run it by name"]
async fn soak_the_storm_alone_and_beside_a_cpu_hog() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let hogs: &[bool] = match std::env::var("LOYALTY_SOAK_HOG").as_deref() {
        Ok("only") => &[true],
        _ => &[false, true],
    };
    let mut broken = Vec::new();
    for &hog in hogs {
        let _hog = hog.then(CpuHog::start);
        for round in 1..=SOAK_ROUNDS {
            let customer = format!("soak{}{round}", if hog { "hog" } else { "" });
            let scenario = format!("soak round {round}{}", if hog { " beside a CPU hog" } else { "" });
            let storm = storm(&scenario, &customer, Variant::Calls, common::settings(&customer)).await;
            for promise in broken_promises(&storm, P99_LATENCY) {
                publish(&format!("{scenario}: BROKEN: {promise}"));
                broken.push(format!("{scenario}: {promise}"));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

/// A thread spinning on one core until dropped.
struct CpuHog {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CpuHog {
    fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinning = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut x: u64 = 0;
            while !spinning.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
        });
        Self { stop, thread: Some(thread) }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The longest a call may wait across a rolling deploy (and after a
/// replica restarted alone), first attempt to definite answer.
const DEPLOY_LATENCY: Duration = Duration::from_secs(2);
/// The longest a call may wait when one of two replicas is killed.
const CRASH_LATENCY: Duration = Duration::from_secs(3);
/// Customers called during the deploy scenarios.
const DEPLOY_CUSTOMERS: usize = 20;

/// Calls to [`DEPLOY_CUSTOMERS`] customers through the fleet's router
/// while `during` acts on it (noting what it did on the timeline); then the
/// exact invariant, the latencies of every kind, the slowest calls placed
/// on the timeline, and what the accounts' histories show (workflow tasks
/// failed or timed out). Returns the slowest call of each kind.
async fn under_calls(
    scenario: &str,
    fleet: &mut Fleet,
    prefix: &str,
    during: impl AsyncFnOnce(&mut Fleet, &Timeline),
) -> BTreeMap<Rpc, Duration> {
    let mut book = Book::default();
    let customers: Vec<String> = (0..DEPLOY_CUSTOMERS).map(|i| format!("{prefix}{i}")).collect();
    for customer in &customers {
        book.open(&mut fleet.grpc.clone(), customer, 100).await;
    }
    let timeline = Timeline::new(scenario);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = customers
        .iter()
        .map(|c| tokio::spawn(deploy::customer_caller(fleet.grpc.clone(), c.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    during(fleet, &timeline).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let mut tallies: BTreeMap<Rpc, Tally> = BTreeMap::new();
    let mut operations = 0;
    for caller in callers {
        for (rpc, mut tally) in caller.await.expect("a caller") {
            let calls = tally.outcome.calls;
            operations += calls;
            book.add(std::mem::take(&mut tally.outcome));
            tally.outcome.calls = calls;
            tallies.entry(rpc).or_insert_with(|| Tally::new(prefix)).merge(tally);
        }
    }
    report_latencies(scenario, &tallies);
    for (rpc, tally) in &tallies {
        let mut calls: Vec<_> = tally.sent_at.iter().zip(&tally.latencies).collect();
        calls.sort_by_key(|(_, latency)| std::cmp::Reverse(**latency));
        for (sent, latency) in calls.into_iter().take(3) {
            timeline.note(*sent, &format!("a {rpc:?} sent, answered {:.0} ms later", latency.as_secs_f64() * 1e3));
        }
    }
    let ledger = Ledger::connect(&fleet.database_url).await.expect("ledger");
    let figures = book.check_on(&mut fleet.grpc.clone(), &ledger).await;
    report(scenario, operations, 1, &figures);
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for customer in &customers {
        for run in common::workflow_runs(&format!("loyalty-{customer}")).await {
            for cause in run.task_failures.iter().chain(&run.task_timeouts) {
                *failed.entry(cause.clone()).or_default() += 1;
            }
        }
    }
    publish(&format!(
        "{scenario}: workflow tasks failed or timed out over the {DEPLOY_CUSTOMERS} accounts: {failed:?}"
    ));
    assert_eq!(figures, Figures { customers: DEPLOY_CUSTOMERS, lost: 0, duplicated: 0 });
    tallies
        .iter()
        .map(|(rpc, tally)| {
            assert!(!tally.latencies.is_empty(), "{rpc:?}: no call made");
            (*rpc, tally.latencies.iter().max().copied().unwrap_or_default())
        })
        .collect()
}

/// Every kind's slowest call within `bound`.
fn assert_within(scenario: &str, slowest: &BTreeMap<Rpc, Duration>, bound: Duration) {
    for (rpc, max) in slowest {
        assert!(*max <= bound, "{scenario}: a {rpc:?} took {max:?} to get a definite answer");
    }
}

/// kill -9 of replica 0 of two, under calls; started again 4 s later.
async fn kill_one(fleet: &mut Fleet, timeline: &Timeline) {
    timeline.now("kill -9 of replica 0");
    fleet.kill(0).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    timeline.now("starting replica 0 again");
    fleet.launch(0);
    fleet.until_serving(0, Duration::from_secs(60)).await;
    timeline.now("replica 0 SERVING");
}

/// Moments of a scenario, printed as seconds since its start.
struct Timeline {
    scenario: String,
    start: std::time::Instant,
}

impl Timeline {
    fn new(scenario: &str) -> Self {
        Self { scenario: scenario.to_owned(), start: std::time::Instant::now() }
    }

    /// Publishes `what` as happening now.
    fn now(&self, what: &str) {
        self.note(std::time::Instant::now(), what);
    }

    /// Publishes `what` as happening at `at`.
    fn note(&self, at: std::time::Instant, what: &str) {
        let offset = at.saturating_duration_since(self.start).as_secs_f64();
        publish(&format!("{}: t={offset:.2} s: {what}", self.scenario));
    }
}

/// A rolling deploy: two replicas, calls to 20 customers routed only to a
/// replica whose health is SERVING; one replica gets SIGTERM (the
/// manifests' shutdown delay), starts again, then the other: no call waits
/// more than [`DEPLOY_LATENCY`], nothing is refused, lost or doubled.
#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_deploy_keeps_every_call_within_two_seconds() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut fleet = Fleet::start("rolling", 2).await;
    let slowest = under_calls("rolling deploy", &mut fleet, "roll", async |fleet: &mut Fleet, timeline: &Timeline| {
        for i in 0..2 {
            timeline.now(&format!("SIGTERM to replica {i}"));
            fleet.terminate(i).await;
            timeline.now(&format!("replica {i} exited; starting it again"));
            fleet.launch(i);
            fleet.until_serving(i, Duration::from_secs(60)).await;
            timeline.now(&format!("replica {i} SERVING"));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
    assert_within("rolling deploy", &slowest, DEPLOY_LATENCY);
    fleet.stop().await;
}

/// One replica restarted alone (SIGTERM, then started again): the first
/// GetSummary of every account it had cached, sent once it reports
/// SERVING, answers within [`DEPLOY_LATENCY`].
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_restarted_alone_answers_at_once_when_it_says_serving() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut fleet = Fleet::start("alone", 1).await;
    let mut book = Book::default();
    let customers: Vec<String> = (0..DEPLOY_CUSTOMERS).map(|i| format!("alone{i}")).collect();
    for customer in &customers {
        book.open(&mut fleet.grpc.clone(), customer, 100).await;
    }
    fleet.terminate(0).await;
    fleet.launch(0);
    fleet.until_serving(0, Duration::from_secs(60)).await;
    let mut grpc = fleet.direct(0).await;
    let mut slowest = Duration::ZERO;
    for customer in &customers {
        let started = std::time::Instant::now();
        let summary = grpc
            .get_summary(with_deadline(loyalty::grpc::pb::GetSummaryRequest { customer_id: customer.clone() }))
            .await
            .unwrap_or_else(|s| panic!("{customer}: first GetSummary after the restart: {s:?}"));
        assert_eq!(summary.get_ref().points_balance, 100);
        slowest = slowest.max(started.elapsed());
    }
    publish(&format!(
        "restart alone: the first GetSummary of {DEPLOY_CUSTOMERS} cached accounts once SERVING: slowest {:.1} ms",
        slowest.as_secs_f64() * 1e3
    ));
    assert!(slowest <= DEPLOY_LATENCY, "a first GetSummary after the restart took {slowest:?}");
    fleet.stop().await;
}

/// `kill -9` of one of two replicas under calls to 20 customers: no call
/// waits more than [`CRASH_LATENCY`]; the replica starts again; nothing
/// is lost or doubled.
#[tokio::test(flavor = "multi_thread")]
async fn killing_one_of_two_replicas_delays_no_call_past_three_seconds() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut fleet = Fleet::start("crash", 2).await;
    let slowest = under_calls("kill -9 of one of two replicas", &mut fleet, "crash", kill_one).await;
    assert_within("kill -9 of one of two replicas", &slowest, CRASH_LATENCY);
    fleet.stop().await;
}

/// The negative control of the crash: the same kill -9 with the SDK's
/// sticky timeout and Temporal's workflow task timeout (10 s each) makes a
/// call wait past [`CRASH_LATENCY`], so the crash test can see the stall.
#[tokio::test(flavor = "multi_thread")]
async fn with_default_task_timeouts_a_crash_stalls_calls() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let defaults =
        [("LOYALTY_STICKY_TIMEOUT_MS", "10000".to_owned()), ("LOYALTY_WORKFLOW_TASK_TIMEOUT_MS", "10000".to_owned())];
    let mut fleet = Fleet::start_with("crash-control", 2, &defaults).await;
    let scenario = "kill -9 of one of two, default timeouts (control)";
    let slowest = under_calls(scenario, &mut fleet, "crashctl", kill_one).await;
    let worst = slowest.values().max().copied().unwrap_or_default();
    assert!(worst > CRASH_LATENCY, "the control should stall past {CRASH_LATENCY:?}; its slowest call took {worst:?}");
    fleet.stop().await;
}
