//! Fault suite: real processes (service, dev server, database) under load and
//! faults, then one exact invariant per customer, from what clients were told:
//! balance = accepted accruals - successful redemptions, lifetime = accepted
//! accruals, tier follows lifetime, and the ledger holds exactly the applied
//! events. Clients retry with the same event ids, as checkout services do.
//! Each scenario prints its figures: operations, faults, lost, duplicated.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{accrual, client, ledger, redemption, summary_when};
use loyalty::config::Role;
use loyalty::domain::{EntryKind, Tier};
use loyalty::grpc::pb;
use loyalty::ledger::Ledger;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;

const SETTLE: Duration = Duration::from_secs(60);

/// A client of the service's gRPC API.
type Grpc = loyalty::grpc::pb::loyalty_service_client::LoyaltyServiceClient<tonic::transport::Channel>;

/// What the clients were told, per customer and event id: the points of
/// every acknowledged accrual and successful redemption, and the effect each
/// successful reversal and adjustment reported.
#[derive(Default)]
struct Book {
    accrued: BTreeMap<String, BTreeMap<String, i64>>,
    redeemed: BTreeMap<String, BTreeMap<String, i64>>,
    reversed: BTreeMap<String, BTreeMap<String, Delta>>,
    adjusted: BTreeMap<String, BTreeMap<String, Delta>>,
    /// Entries of holds: reserved (`hold/<id>`), captured (the capture's
    /// event id), released (`release/<id>`), by kind.
    holds: BTreeMap<String, BTreeMap<EntryKind, BTreeMap<String, Delta>>>,
}

/// How an event moved an account, as (balance delta, lifetime delta). For a
/// reversal or adjustment, what its response reported
/// (`BalanceChange.points`, `BalanceChange.lifetime_delta`): the book takes
/// the service's word for the amounts (a clawback floors at zero) and checks
/// that the summary and the ledger agree with it exactly.
type Delta = (i64, i64);

/// The invariant's verdict over every customer of a scenario.
#[derive(Debug, Default, PartialEq, Eq)]
struct Figures {
    customers: usize,
    /// Acknowledged events missing from the ledger or the balance.
    lost: i64,
    /// Events in the ledger no client was told about, or counted twice.
    duplicated: i64,
}

impl Figures {
    /// Both verdicts together.
    fn and(self, other: Figures) -> Figures {
        Figures {
            customers: self.customers + other.customers,
            lost: self.lost + other.lost,
            duplicated: self.duplicated + other.duplicated,
        }
    }
}

impl Book {
    fn accrued(&mut self, customer: &str, event: &str, points: i64) {
        self.accrued.entry(customer.into()).or_default().insert(event.into(), points);
    }

    fn redeemed(&mut self, customer: &str, event: &str, points: i64) {
        self.redeemed.entry(customer.into()).or_default().insert(event.into(), points);
    }

    fn reversed(&mut self, customer: &str, event: &str, delta: Delta) {
        self.reversed.entry(customer.into()).or_default().insert(event.into(), delta);
    }

    fn adjusted(&mut self, customer: &str, event: &str, delta: Delta) {
        self.adjusted.entry(customer.into()).or_default().insert(event.into(), delta);
    }

    /// The ledger rows of `kind` that `customer` must hold, by event id, with
    /// their (signed balance change, lifetime change): an accrual of p moves
    /// (p, p), a redemption (-p, 0), a reversal or adjustment what its
    /// response reported. No other kind is ever acknowledged, so none may be
    /// in the ledger.
    fn rows(&self, customer: &str, kind: EntryKind) -> BTreeMap<String, Delta> {
        let of = |book: &BTreeMap<String, BTreeMap<String, i64>>, delta: fn(i64) -> Delta| -> BTreeMap<String, Delta> {
            book.get(customer).into_iter().flatten().map(|(event, points)| (event.clone(), delta(*points))).collect()
        };
        match kind {
            EntryKind::Accrual => of(&self.accrued, |p| (p, p)),
            EntryKind::Redemption => of(&self.redeemed, |p| (-p, 0)),
            EntryKind::Reversal => self.reversed.get(customer).cloned().unwrap_or_default(),
            EntryKind::Adjustment => self.adjusted.get(customer).cloned().unwrap_or_default(),
            EntryKind::Hold | EntryKind::Capture | EntryKind::Release => {
                self.holds.get(customer).and_then(|h| h.get(&kind)).cloned().unwrap_or_default()
            }
            _ => BTreeMap::new(),
        }
    }

    /// Opens `customer` with one acknowledged accrual of `points` (event
    /// `<customer>-a0`) and waits until it is applied.
    async fn open(&mut self, grpc: &mut Grpc, customer: &str, points: i64) {
        let event = format!("{customer}-a0");
        grpc.accrue(accrual(customer, &event, points)).await.unwrap();
        self.accrued(customer, &event, points);
        summary_when(grpc, customer, SETTLE, |s| s.points_balance == points).await;
    }

    /// Records what a load client was told; returns the calls it made.
    fn add(&mut self, outcome: Outcome) -> usize {
        for (event, points) in outcome.accrued {
            self.accrued(&outcome.customer, &event, points);
        }
        for (event, points) in outcome.redeemed {
            self.redeemed(&outcome.customer, &event, points);
        }
        for (event, delta) in outcome.reversed {
            self.reversed(&outcome.customer, &event, delta);
        }
        for (event, delta) in outcome.adjusted {
            self.adjusted(&outcome.customer, &event, delta);
        }
        for (kind, event, delta) in outcome.holds {
            let kinds = self.holds.entry(outcome.customer.clone()).or_default();
            kinds.entry(kind).or_default().insert(event, delta);
        }
        outcome.calls
    }

    /// [`Book::check_on`] the shared application and its ledger.
    async fn check(&self) -> Figures {
        self.check_on(&mut client().await, &ledger().await).await
    }

    /// Compares every customer's summary and ledger with the book, once the
    /// balance has settled and the ledger has caught up; panics with the
    /// differences. Balance and lifetime are the sums of what the book's
    /// events moved (accruals - redemptions + corrections; accruals +
    /// corrections), the tier follows lifetime, and the ledger holds exactly
    /// one row per acknowledged event of every kind, moving what the book
    /// says, and nothing else.
    async fn check_on(&self, grpc: &mut Grpc, ledger: &Ledger) -> Figures {
        let mut figures = Figures::default();
        let customers: BTreeSet<&String> = self
            .accrued
            .keys()
            .chain(self.redeemed.keys())
            .chain(self.reversed.keys())
            .chain(self.adjusted.keys())
            .chain(self.holds.keys())
            .collect();
        for customer in customers {
            figures.customers += 1;
            let expected: Vec<(EntryKind, BTreeMap<String, Delta>)> =
                EntryKind::ALL.iter().map(|&kind| (kind, self.rows(customer, kind))).collect();
            let (balance, lifetime) = expected
                .iter()
                .flat_map(|(_, rows)| rows.values())
                .fold((0, 0), |(balance, lifetime), &(db, dl)| (balance + db, lifetime + dl));
            let s = summary_when(grpc, customer, SETTLE, |s| s.lifetime_points >= lifetime).await;
            figures.lost += (lifetime - s.lifetime_points).max(0) + (s.points_balance - balance).max(0);
            figures.duplicated += (s.lifetime_points - lifetime).max(0) + (balance - s.points_balance).max(0);
            assert_eq!((s.points_balance, s.lifetime_points), (balance, lifetime), "{customer}: summary vs book");
            assert_eq!(s.tier, Tier::for_lifetime(lifetime).as_str(), "{customer}: tier");

            let wanted: usize = expected.iter().map(|(_, rows)| rows.len()).sum();
            let rows = common::rows_when(ledger, customer, wanted).await;
            let distinct: BTreeSet<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
            figures.duplicated += (rows.len() - distinct.len()) as i64;
            for (kind, book) in &expected {
                let found: BTreeMap<String, Delta> = rows
                    .iter()
                    .filter(|r| r.kind == *kind)
                    .map(|r| (r.event_id.clone(), (r.points, r.lifetime_delta)))
                    .collect();
                figures.lost += book.keys().filter(|e| !found.contains_key(*e)).count() as i64;
                figures.duplicated += found.keys().filter(|e| !book.contains_key(*e)).count() as i64;
                assert_eq!(&found, book, "{customer}: {kind:?} rows vs book");
            }
            let newest = rows.last().map(|r| r.balance_after);
            assert_eq!(newest, Some(balance), "{customer}: the newest row's balance_after vs book");
            check_events(ledger, customer, &rows).await;
        }
        figures
    }
}

/// The account's event stream against its ledger rows: numbered from 1
/// without gaps, one event per row in the rows' order (no event lost or
/// invented), and one `tier.changed` at each tier boundary the rows cross.
async fn check_events(ledger: &Ledger, customer: &str, rows: &[loyalty::ledger::HistoryEntry]) {
    let events = ledger.events(customer, 0, u32::MAX, false).await.expect("events");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "{customer}: event numbers without gaps");
    }
    let body = |e: &loyalty::ledger::StoredEvent| serde_json::from_str::<serde_json::Value>(&e.body).unwrap();
    let entries: Vec<String> = events
        .iter()
        .filter(|e| e.event_type != "tier.changed")
        .map(|e| body(e)["data"]["event_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let row_ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
    assert_eq!(entries, row_ids, "{customer}: one event per ledger row, in order");
    let mut lifetime = 0;
    let mut crossings = 0;
    for r in rows {
        let before = Tier::for_lifetime(lifetime);
        lifetime += r.lifetime_delta;
        crossings += usize::from(Tier::for_lifetime(lifetime) != before);
    }
    let tiers = events.iter().filter(|e| e.event_type == "tier.changed").count();
    assert_eq!(tiers, crossings, "{customer}: one tier.changed per tier change");
}

/// Figures of a scenario, for the README's reliability section: printed, and
/// appended to target/tmp/faults-figures.txt, which scripts/test.sh shows.
fn report(scenario: &str, operations: usize, faults: usize, figures: &Figures) {
    publish(&format!(
        "{scenario}: {operations} operations, {faults} faults injected, {} customers, lost = {}, duplicated = {}",
        figures.customers, figures.lost, figures.duplicated
    ));
}

/// Prints one line of a scenario's figures and appends it to
/// target/tmp/faults-figures.txt, which scripts/test.sh shows.
fn publish(line: &str) {
    use std::io::Write;
    println!("{line}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults-figures.txt");
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("figures file");
    writeln!(file, "{line}").expect("figures written");
}

/// 100 redemptions of 10 points race on an account holding 500: exactly 50
/// succeed, the balance never goes below zero, and every caller refused for
/// load gets RESOURCE_EXHAUSTED or UNAVAILABLE with a retry hint, never
/// INTERNAL; retried with the same event id, each ends succeeded or refused
/// for insufficient points.
#[tokio::test]
async fn a_hundred_concurrent_redemptions_on_an_account_that_affords_fifty() {
    let mut book = Book::default();
    let mut grpc = client().await;
    book.open(&mut grpc, "race", 500).await;

    let refusals = Mutex::new(Vec::new());
    let redeem = |mut g: Grpc, i: usize| {
        let refusals = &refusals;
        async move {
            let event = format!("race-r{i}");
            for _ in 0..100 {
                match g.redeem(redemption("race", &event, 10, "ticket")).await {
                    Ok(_) => return (event, true),
                    Err(s) if s.code() == Code::FailedPrecondition => return (event, false),
                    Err(s) => {
                        refusals.lock().unwrap().push(s.clone());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            panic!("{event}: no definitive answer after 100 attempts");
        }
    };
    let mut watcher = grpc.clone();
    let watch = tokio::spawn(async move {
        let mut lowest = i64::MAX;
        for _ in 0..100 {
            if let Ok(s) =
                watcher.get_summary(loyalty::grpc::pb::GetSummaryRequest { customer_id: "race".into() }).await
            {
                lowest = lowest.min(s.get_ref().points_balance);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lowest
    });
    let results = common::fan_out(&grpc, 100, 0..100, redeem).await;
    let lowest = watch.await.unwrap();

    let succeeded: Vec<_> = results.iter().filter(|(_, ok)| *ok).map(|(e, _)| e.clone()).collect();
    for event in &succeeded {
        book.redeemed("race", event, 10);
    }
    assert_eq!(succeeded.len(), 50, "exactly the affordable half");
    assert!(lowest >= 0, "balance went to {lowest}");
    let refusals = refusals.into_inner().unwrap();
    for s in &refusals {
        assert!(matches!(s.code(), Code::ResourceExhausted | Code::Unavailable), "refused with {s:?}");
        assert!(common::retry_hint(s).is_some(), "no retry hint in {s:?}");
    }
    let figures = book.check().await;
    report("100 concurrent redemptions", 100 + refusals.len(), refusals.len(), &figures);
    assert_eq!(figures, Figures { customers: 1, lost: 0, duplicated: 0 });
}

/// More than 10,000 accruals to one customer, past Temporal's per-run signal
/// limit: none refused, none lost (the account continues-as-new on the way).
#[tokio::test]
async fn more_accruals_to_one_customer_than_one_run_may_receive() {
    let total = 10_200 * scale();
    let mut book = Book::default();
    let grpc = client().await;
    let accrue = |mut g: Grpc, i: usize| async move {
        let event = format!("mega-{i}");
        // Retried with the same id until acknowledged, as a checkout service would.
        for _ in 0..50 {
            match g.accrue(accrual("mega", &event, 1)).await {
                Ok(_) => return (event, None),
                Err(s) if matches!(s.code(), Code::Unavailable | Code::ResourceExhausted) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(s) => return (event, Some(s)),
            }
        }
        panic!("{event}: not acknowledged after 50 attempts");
    };
    let results = common::fan_out(&grpc, 32, 0..total, accrue).await;
    let refused: Vec<_> = results.iter().filter_map(|(_, s)| s.as_ref()).collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    for (event, _) in &results {
        book.accrued("mega", event, 1);
    }
    let figures = book.check().await;
    report("accruals past the per-run signal limit", total, 0, &figures);
    assert_eq!(figures, Figures { customers: 1, lost: 0, duplicated: 0 });
}

/// One hot account receiving a stream of accruals while redemptions,
/// reversals, adjustments and summary reads arrive, across several
/// continue-as-new, with the ledger refusing the account's writes for a
/// while: every call gets a definite answer well within the liveness bound,
/// redemptions and corrections keep being decided during the outage (the
/// workflow decides them; the ledger records them behind it), no run comes
/// near Temporal's per-run signal and update limits, and the exact
/// invariant holds for every kind of event. It would have caught the
/// account that froze for good when Adjust and Redeem arrived amid a stream
/// of Accrue across continue-as-new.
#[tokio::test(flavor = "multi_thread")]
async fn mixed_operations_on_one_hot_account_across_continue_as_new() {
    const SCENARIO: &str = "mixed operations on one hot account";
    let customer = "mixhot";
    let mut book = Book::default();
    let mut grpc = client().await;
    book.open(&mut grpc, customer, 100).await;

    let hot = Arc::new(Hot::new(customer, HOT_ACCRUALS * scale()));
    let accruers: Vec<_> = (0..HOT_ACCRUERS).map(|_| tokio::spawn(accrue_caller(grpc.clone(), hot.clone()))).collect();
    let others = [
        (Rpc::Redeem, tokio::spawn(redeem_caller(grpc.clone(), hot.clone()))),
        (Rpc::Reverse, tokio::spawn(reverse_caller(grpc.clone(), hot.clone()))),
        (Rpc::Adjust, tokio::spawn(adjust_caller(grpc.clone(), hot.clone()))),
        (Rpc::GetSummary, tokio::spawn(summary_caller(grpc.clone(), hot.clone()))),
    ];
    let holder = tokio::spawn(hold_caller(grpc.clone(), hot.clone()));

    // Outage k starts once (3k + 1) / (3 * outages) of the accruals are
    // acknowledged: a third of the way at scale 1.
    let outages = scale();
    for k in 0..outages {
        let at = hot.accruals * (3 * k + 1) / (3 * outages);
        while hot.acknowledged() < at && !accruers.iter().all(|a| a.is_finished()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let when = format!("NEW.customer_id = '{customer}'");
        let outage = common::fail_inserts(&format!("outage_{customer}_{k}"), "ledger_entries", &when).await;
        hot.outage.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(HOT_OUTAGE).await;
        hot.outage.fetch_add(1, Ordering::SeqCst);
        common::end_outage(&outage).await;
    }

    let mut tallies: BTreeMap<Rpc, Tally> = BTreeMap::new();
    for accruer in accruers {
        let tally = accruer.await.expect("an accrual caller");
        tallies.entry(Rpc::Accrue).or_insert_with(|| Tally::new(customer)).merge(tally);
    }
    hot.done.store(true, Ordering::SeqCst);
    for (rpc, caller) in others {
        let tally = caller.await.expect("a caller");
        tallies.entry(rpc).or_insert_with(|| Tally::new(customer)).merge(tally);
    }
    for (rpc, tally) in holder.await.expect("the hold caller") {
        tallies.entry(rpc).or_insert_with(|| Tally::new(customer)).merge(tally);
    }

    // Latency, from the first attempt to the definite answer.
    report_latencies(SCENARIO, &tallies);
    for (rpc, tally) in &tallies {
        let slowest = tally.latencies.iter().max().copied().unwrap_or_default();
        assert!(slowest < LIVENESS, "{rpc:?}: a call took {slowest:?} to get a definite answer");
        assert!(
            tally.longest_attempt < CALL_DEADLINE + Duration::from_secs(2),
            "{rpc:?}: an attempt went {:?} without an answer, past its {CALL_DEADLINE:?} deadline",
            tally.longest_attempt
        );
        assert!(!tally.latencies.is_empty(), "{rpc:?}: no call made");
    }
    let tally = |rpc: Rpc| &tallies[&rpc];
    assert_eq!(tally(Rpc::Accrue).outcome.accrued.len(), hot.accruals, "every accrual acknowledged");
    for (rpc, succeeded) in [
        (Rpc::Redeem, tally(Rpc::Redeem).outcome.redeemed.len()),
        (Rpc::Reverse, tally(Rpc::Reverse).outcome.reversed.len()),
        (Rpc::Adjust, tally(Rpc::Adjust).outcome.adjusted.len()),
        (Rpc::Capture, tally(Rpc::Capture).outcome.holds.len()),
        (Rpc::Release, tally(Rpc::Release).outcome.holds.len()),
    ] {
        assert!(succeeded > 0, "{rpc:?}: none succeeded; {:?}", tally(rpc).refusal);
    }

    // Decided while the ledger refused the account's writes.
    let during = |rpc: Rpc| tally(rpc).during_outage;
    publish(&format!(
        "{SCENARIO}: answered OK while the ledger refused the account's writes ({outages} x {HOT_OUTAGE:?}): \
         Redeem {}, Reverse {}, Adjust {}, GetSummary {}",
        during(Rpc::Redeem),
        during(Rpc::Reverse),
        during(Rpc::Adjust),
        during(Rpc::GetSummary)
    ));
    assert!(
        during(Rpc::Redeem) + during(Rpc::Adjust) > 0,
        "no redemption or adjustment was decided during the ledger outage"
    );

    // The invariant, once the ledger has caught up.
    let mut operations = 0;
    for tally in tallies.into_values() {
        operations += book.add(tally.outcome);
    }
    let figures = book.check().await;

    // Continue-as-new, and what each run received.
    let runs = common::workflow_runs(&format!("loyalty-{customer}")).await;
    let continued = runs.len() - 1;
    let most_signals = runs.iter().map(|r| r.signals).max().unwrap_or_default();
    let most_updates = runs.iter().map(|r| r.updates).max().unwrap_or_default();
    publish(&format!(
        "{SCENARIO}: {} runs ({continued} continue-as-new), at most {most_signals} signals and {most_updates} \
         accepted updates in one run",
        runs.len()
    ));
    assert!(continued >= 3 * scale(), "only {continued} continue-as-new: {runs:?}");
    assert!(most_signals < 10_000, "a run received {most_signals} signals: {runs:?}");
    assert!(most_updates < 2_000, "a run accepted {most_updates} updates: {runs:?}");

    report(SCENARIO, operations, outages, &figures);
    assert_eq!(figures, Figures { customers: 1, lost: 0, duplicated: 0 });
}

/// Accrual callers of the hot-account scenario.
const HOT_ACCRUERS: usize = 6;
/// Accruals they send in all (times `scale()`): the workflow continues-as-new
/// every 2,000 signals, so at least three times, with room to spare.
const HOT_ACCRUALS: usize = 8_000;
/// How long the ledger refuses the hot account's writes, per outage.
const HOT_OUTAGE: Duration = Duration::from_secs(4);
/// Each attempt's deadline (`grpc-timeout`).
const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// The longest any call may take from its first attempt to a definite
/// answer. A liveness bound, not a speed target: a frozen account shows as
/// minutes.
const LIVENESS: Duration = Duration::from_secs(30);
/// When a caller stops retrying and fails the test, so that a frozen account
/// fails it rather than hanging it.
const GIVE_UP: Duration = Duration::from_secs(120);
/// A reversal names an accrual at least this many acknowledgements old, so
/// the account has most likely applied it, yet recent enough for the
/// workflow to remember it.
const REVERSE_LAG: usize = 100;

/// The RPCs of the hot-account scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rpc {
    Accrue,
    Redeem,
    Reverse,
    Adjust,
    GetSummary,
    Reserve,
    Capture,
    Release,
}

/// What the callers of the hot-account scenario share.
struct Hot {
    customer: String,
    /// Accruals to send in all.
    accruals: usize,
    /// Number of the next accrual to send, from 1 (`<customer>-a0` opened
    /// the account).
    next: AtomicUsize,
    /// Acknowledged accruals, (event id, points) in the order they were
    /// acknowledged, for the reversals to name.
    acknowledged: Mutex<Vec<(String, i64)>>,
    /// Set once every accrual is acknowledged: the other callers stop.
    done: AtomicBool,
    /// Odd while the ledger refuses the account's writes: bumped once the
    /// refusal is in place and again before it is lifted.
    outage: AtomicU64,
}

impl Hot {
    fn new(customer: &str, accruals: usize) -> Self {
        Self {
            customer: customer.to_owned(),
            accruals,
            next: AtomicUsize::new(1),
            acknowledged: Mutex::new(Vec::new()),
            done: AtomicBool::new(false),
            outage: AtomicU64::new(0),
        }
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    fn done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

/// What the callers of one RPC were told, and how long their calls took.
struct Tally {
    /// What they were told, for the book; `calls` counts attempts.
    outcome: Outcome,
    /// Every call's time from its first attempt to its definite answer.
    latencies: Vec<Duration>,
    /// The longest single attempt.
    longest_attempt: Duration,
    /// Calls answered with a definite refusal (FAILED_PRECONDITION, ...).
    refused: usize,
    /// The first refusal, to show when nothing succeeded.
    refusal: Option<String>,
    /// Successful calls sent and answered within one ledger outage.
    during_outage: usize,
}

impl Tally {
    fn new(customer: &str) -> Self {
        Self {
            outcome: Outcome { customer: customer.to_owned(), ..Outcome::default() },
            latencies: Vec::new(),
            longest_attempt: Duration::ZERO,
            refused: 0,
            refusal: None,
            during_outage: 0,
        }
    }

    /// Adds what `other` (of the same RPC and customer) was told.
    fn merge(&mut self, other: Tally) {
        let (mine, theirs) = (&mut self.outcome, other.outcome);
        mine.calls += theirs.calls;
        mine.accrued.extend(theirs.accrued);
        mine.redeemed.extend(theirs.redeemed);
        mine.reversed.extend(theirs.reversed);
        mine.adjusted.extend(theirs.adjusted);
        mine.holds.extend(theirs.holds);
        self.latencies.extend(other.latencies);
        self.longest_attempt = self.longest_attempt.max(other.longest_attempt);
        self.refused += other.refused;
        self.refusal = self.refusal.take().or(other.refusal);
        self.during_outage += other.during_outage;
    }

    /// Sends a call (`send` makes each attempt, always with the same request,
    /// so the same event id) until its answer is definite: anything but a
    /// [`retryable`] status, which waits for the status's retry hint (or
    /// 100 ms) and tries again. Records the call's latency, and whether it
    /// succeeded within one ledger outage. Panics after [`GIVE_UP`].
    async fn call<T, Fut>(&mut self, hot: &Hot, what: &str, mut send: impl FnMut() -> Fut) -> Result<T, Status>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let outage = hot.outage.load(Ordering::SeqCst);
        let started = Instant::now();
        let answer = loop {
            self.outcome.calls += 1;
            let attempt = Instant::now();
            let result = send().await;
            self.longest_attempt = self.longest_attempt.max(attempt.elapsed());
            match result {
                Ok(response) => break Ok(response.into_inner()),
                Err(s) if retryable(&s) => {
                    assert!(started.elapsed() < GIVE_UP, "{what}: no definite answer within {GIVE_UP:?}; last {s:?}");
                    tokio::time::sleep(common::retry_hint(&s).unwrap_or(Duration::from_millis(100))).await;
                }
                Err(s) => break Err(s),
            }
        };
        self.latencies.push(started.elapsed());
        let within_outage = outage % 2 == 1 && hot.outage.load(Ordering::SeqCst) == outage;
        if answer.is_ok() && within_outage {
            self.during_outage += 1;
        }
        answer
    }

    /// A definite refusal (nothing applied, so nothing for the book).
    fn refuse(&mut self, status: Status) {
        self.refused += 1;
        self.refusal.get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
    }
}

/// Whether a status leaves the call's outcome open, so that the caller
/// retries it with the same event id: the service out of reach (including
/// the statuses tonic's client makes up from a broken connection, see
/// [`common::unavailable`]), busy, or past a deadline. CANCELLED counts too:
/// the service never answers it and the callers never cancel, but tonic's
/// client reports its own `grpc-timeout` passing as CANCELLED ("Timeout
/// expired"). Anything else (OK, FAILED_PRECONDITION, ...) is definite, and
/// INTERNAL fails the test.
fn retryable(status: &Status) -> bool {
    common::unavailable(status)
        || matches!(status.code(), Code::ResourceExhausted | Code::DeadlineExceeded | Code::Aborted | Code::Cancelled)
}

/// `message` as a request with the per-attempt deadline [`CALL_DEADLINE`].
fn with_deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_DEADLINE);
    request
}

/// Sends the hot account's accruals, sharing the numbering with the other
/// accrual callers, 1 to 20 points each, until all are acknowledged.
async fn accrue_caller(grpc: Grpc, hot: Arc<Hot>) -> Tally {
    let mut tally = Tally::new(&hot.customer);
    loop {
        let i = hot.next.fetch_add(1, Ordering::SeqCst);
        if i > hot.accruals {
            return tally;
        }
        let event = format!("{}-a{i}", hot.customer);
        let points = 1 + (i * 7 % 20) as i64;
        let request = accrual(&hot.customer, &event, points);
        let send = || {
            let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
            async move { grpc.accrue(request).await }
        };
        match tally.call(&hot, &event, send).await {
            Ok(_) => {
                hot.acknowledged.lock().unwrap().push((event.clone(), points));
                tally.outcome.accrued.push((event, points));
            }
            Err(s) => panic!("{event}: accrual refused: {s:?}"),
        }
    }
}

/// Redeems 5 to 30 points at a time, one redemption after another, until
/// the accruals are done. Insufficient points is a definite refusal.
async fn redeem_caller(grpc: Grpc, hot: Arc<Hot>) -> Tally {
    let mut tally = Tally::new(&hot.customer);
    let mut n = 0;
    while !hot.done() {
        n += 1;
        let event = format!("{}-r{n}", hot.customer);
        let points = 5 + (n * 13 % 26) as i64;
        let request = redemption(&hot.customer, &event, points, "ticket");
        let send = || {
            let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
            async move { grpc.redeem(request).await }
        };
        match tally.call(&hot, &event, send).await {
            Ok(r) => {
                assert_eq!(r.redeemed, points, "{event}: {r:?}");
                assert!(r.remaining_balance >= 0, "{event}: {r:?}");
                tally.outcome.redeemed.push((event, points));
            }
            Err(s) if s.code() == Code::FailedPrecondition => tally.refuse(s),
            Err(s) => panic!("{event}: {s:?}"),
        }
    }
    tally
}

/// Reverses acknowledged accruals, one reversal after another, until the
/// accruals are done: of every three accruals it picks, all of the first,
/// half of the second, and half of the third followed by all that remains
/// of it. Each names the newest accrual at least [`REVERSE_LAG`]
/// acknowledgements old that it has not named yet. A definite refusal:
/// FAILED_PRECONDITION (nothing left to reverse), or NOT_FOUND (the account
/// does not know the accrual yet).
async fn reverse_caller(grpc: Grpc, hot: Arc<Hot>) -> Tally {
    let mut tally = Tally::new(&hot.customer);
    let (mut picked, mut unpicked, mut n) = (0, 0, 0);
    while !hot.done() {
        let original = {
            let acknowledged = hot.acknowledged.lock().unwrap();
            let newest_old_enough = acknowledged.len().checked_sub(REVERSE_LAG + 1);
            newest_old_enough.filter(|i| *i >= unpicked).map(|i| (i, acknowledged[i].clone()))
        };
        let Some((index, (original, points))) = original else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        unpicked = index + 1;
        // `None` reverses all that the accrual still holds.
        let first = if picked % 3 == 0 { None } else { Some((points / 2).max(1)) };
        let then_the_rest = (picked % 3 == 2).then_some(None);
        picked += 1;
        for amount in std::iter::once(first).chain(then_the_rest) {
            n += 1;
            let event = format!("{}-v{n}", hot.customer);
            let request = pb::ReverseRequest {
                customer_id: hot.customer.clone(),
                reverse_event_id: event.clone(),
                original_event_id: original.clone(),
                points: amount,
                reason: "refund".into(),
            };
            let send = || {
                let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
                async move { grpc.reverse(request).await }
            };
            match tally.call(&hot, &event, send).await {
                Ok(r) => {
                    let change = r.change.unwrap_or_else(|| panic!("{event}: a reversal reports its change"));
                    tally.outcome.reversed.push((event, (change.points, change.lifetime_delta)));
                }
                Err(s) if matches!(s.code(), Code::FailedPrecondition | Code::NotFound) => tally.refuse(s),
                Err(s) => panic!("{event} of {original}: {s:?}"),
            }
        }
    }
    tally
}

/// Adjusts the balance by +1..25 and -1..25 in turn, one adjustment after
/// another, until the accruals are done. A deduction the balance cannot
/// cover is a definite refusal.
async fn adjust_caller(grpc: Grpc, hot: Arc<Hot>) -> Tally {
    let mut tally = Tally::new(&hot.customer);
    let mut n = 0;
    while !hot.done() {
        n += 1;
        let event = format!("{}-j{n}", hot.customer);
        let magnitude = 1 + (n * 7 % 25) as i64;
        let points = if n % 2 == 0 { -magnitude } else { magnitude };
        let request = pb::AdjustRequest {
            customer_id: hot.customer.clone(),
            event_id: event.clone(),
            points,
            reason: "support correction".into(),
        };
        let send = || {
            let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
            async move { grpc.adjust(request).await }
        };
        match tally.call(&hot, &event, send).await {
            Ok(r) => {
                let change = r.change.unwrap_or_else(|| panic!("{event}: an adjustment reports its change"));
                assert_eq!(change.points, points, "{event}: the balance moves by the adjustment: {change:?}");
                tally.outcome.adjusted.push((event, (change.points, change.lifetime_delta)));
            }
            Err(s) if s.code() == Code::FailedPrecondition => tally.refuse(s),
            Err(s) => panic!("{event}: {s:?}"),
        }
    }
    tally
}

/// Checkout holds on the hot account until the accruals are done: reserve,
/// then capture part of it (two of three) or release it, each retried with
/// its ids until definite. A reservation the balance cannot cover is
/// refused (FAILED_PRECONDITION); nothing else may be.
async fn hold_caller(grpc: Grpc, hot: Arc<Hot>) -> Vec<(Rpc, Tally)> {
    let (mut reserves, mut captures, mut releases) =
        (Tally::new(&hot.customer), Tally::new(&hot.customer), Tally::new(&hot.customer));
    let mut n = 0;
    while !hot.done() {
        n += 1;
        let hold_id = format!("{}-h{n}", hot.customer);
        let points = 10 + (n * 11 % 30) as i64;
        let request = pb::ReserveRequest {
            customer_id: hot.customer.clone(),
            hold_id: hold_id.clone(),
            points,
            ttl: Some(prost_types::Duration { seconds: 300, nanos: 0 }),
        };
        let send = || {
            let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
            async move { grpc.reserve(request).await }
        };
        match reserves.call(&hot, &hold_id, send).await {
            Ok(r) => {
                let r = r.hold.expect("a hold");
                assert_eq!((r.held, r.status()), (points, pb::HoldStatus::Held), "{hold_id}: {r:?}");
                reserves.outcome.holds.push((EntryKind::Hold, format!("hold/{hold_id}"), (-points, 0)));
            }
            Err(s) if s.code() == Code::FailedPrecondition => {
                reserves.refuse(s);
                continue;
            }
            Err(s) => panic!("{hold_id}: {s:?}"),
        }
        if n % 3 == 0 {
            let request = pb::ReleaseRequest { customer_id: hot.customer.clone(), hold_id: hold_id.clone() };
            let send = || {
                let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
                async move { grpc.release(request).await }
            };
            let r = releases.call(&hot, &hold_id, send).await.unwrap_or_else(|s| panic!("{hold_id}: {s:?}"));
            let r = r.hold.expect("a hold");
            assert_eq!(r.status(), pb::HoldStatus::Released, "{hold_id}: {r:?}");
            releases.outcome.holds.push((EntryKind::Release, format!("release/{hold_id}"), (points, 0)));
        } else {
            let event = format!("{}-k{n}", hot.customer);
            let captured = points - (n % 7) as i64;
            let request = pb::CaptureRequest {
                customer_id: hot.customer.clone(),
                hold_id: hold_id.clone(),
                points: captured,
                event_id: event.clone(),
                reward: "checkout".into(),
            };
            let send = || {
                let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
                async move { grpc.capture(request).await }
            };
            let r = captures.call(&hot, &event, send).await.unwrap_or_else(|s| panic!("{event}: {s:?}"));
            let r = r.hold.expect("a hold");
            assert_eq!((r.captured, r.status()), (captured, pb::HoldStatus::Captured), "{event}: {r:?}");
            captures.outcome.holds.push((EntryKind::Capture, event, (points - captured, 0)));
        }
    }
    vec![(Rpc::Reserve, reserves), (Rpc::Capture, captures), (Rpc::Release, releases)]
}

/// Reads the hot account's summary every 50 ms until the accruals are done:
/// never a negative balance, and the tier always the one lifetime gives.
async fn summary_caller(grpc: Grpc, hot: Arc<Hot>) -> Tally {
    let mut tally = Tally::new(&hot.customer);
    let request = pb::GetSummaryRequest { customer_id: hot.customer.clone() };
    while !hot.done() {
        let send = || {
            let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
            async move { grpc.get_summary(request).await }
        };
        match tally.call(&hot, "GetSummary", send).await {
            Ok(s) => {
                assert!(s.points_balance >= 0, "{s:?}");
                assert_eq!(s.tier, Tier::for_lifetime(s.lifetime_points).as_str(), "{s:?}");
            }
            Err(s) => panic!("GetSummary: {s:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tally
}

/// Prints and publishes, per RPC, the calls made and the p50, p99 and
/// maximum of their latencies (first attempt to definite answer, retries
/// included), and how many were refused.
fn report_latencies(scenario: &str, tallies: &BTreeMap<Rpc, Tally>) {
    use loyalty::bench::stats::percentile;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (rpc, tally) in tallies {
        let mut sorted = tally.latencies.clone();
        sorted.sort_unstable();
        publish(&format!(
            "{scenario}: {rpc:?} {} calls ({} attempts), latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} refused",
            sorted.len(),
            tally.outcome.calls,
            ms(percentile(&sorted, 0.50)),
            ms(percentile(&sorted, 0.99)),
            ms(sorted.last().copied().unwrap_or_default()),
            tally.refused
        ));
    }
}

/// The API runs while no worker does: Accrue is still accepted (Temporal
/// queues it), Redeem ends within its deadline with UNAVAILABLE or
/// DEADLINE_EXCEEDED, GetSummary answers UNAVAILABLE; once a worker starts,
/// everything acknowledged is applied and the retried redemption goes through.
#[tokio::test]
async fn worker_down_then_back() {
    let mut api = common::settings("worker-down");
    api.role = Role::Api;
    api.rpc_timeout = Duration::from_secs(3);
    let mut worker_settings = api.clone();
    worker_settings.role = Role::Worker;
    let database_url = api.database_url.clone();
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel();
    let (addr, api_thread) = common::start_app(api, api_stopped);
    let mut grpc = Grpc::new(common::grpc_channel(addr).await);
    let mut book = Book::default();
    let mut operations = 0;

    for i in 0..5 {
        let event = format!("wd-a{i}");
        grpc.accrue(accrual("wd", &event, 100)).await.expect("accepted without a worker");
        book.accrued("wd", &event, 100);
        operations += 1;
    }
    let started = std::time::Instant::now();
    let status = grpc.redeem(redemption("wd", "wd-r1", 50, "mug")).await.unwrap_err();
    assert!(matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(6), "within the 3 s deadline: {:?}", started.elapsed());
    let status = grpc.get_summary(loyalty::grpc::pb::GetSummaryRequest { customer_id: "wd".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(common::retry_hint(&status).is_some(), "{status:?}");
    operations += 2;

    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel();
    let (_, worker_thread) = common::start_app(worker_settings, worker_stopped);
    // The caller retries its redemption with the same event id.
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        operations += 1;
        match grpc.redeem(redemption("wd", "wd-r1", 50, "mug")).await {
            Ok(r) => {
                assert_eq!(r.get_ref().remaining_balance, 450);
                break;
            }
            Err(s) if matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded) => {
                assert!(std::time::Instant::now() < deadline, "no recovery: {s:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    }
    book.redeemed("wd", "wd-r1", 50);
    let figures = book.check_on(&mut grpc, &Ledger::connect(&database_url).await.unwrap()).await;
    report("worker down, then back", operations, 1, &figures);
    assert_eq!(figures, Figures { customers: 1, lost: 0, duplicated: 0 });
    let _ = (stop_api.send(()), stop_worker.send(()));
    api_thread.join().unwrap();
    worker_thread.join().unwrap();
}

/// The ledger refuses this account's writes for a while: the account stays
/// alive and queryable, accruals are acknowledged and applied, a redemption
/// is decided and answered (a resend gets the same answer); once the ledger
/// is back it holds every entry once, in order.
#[tokio::test]
async fn ledger_unavailable_for_a_while() {
    let mut book = Book::default();
    let mut grpc = client().await;
    book.open(&mut grpc, "lo", 100).await;
    // The opening entry is in the ledger before it starts refusing (the
    // summary shows it a moment before its row is written).
    common::rows_when(&ledger().await, "lo", 1).await;

    let outage = common::fail_inserts("outage_lo", "ledger_entries", "NEW.customer_id = 'lo'").await;
    for i in 1..=5 {
        let event = format!("lo-a{i}");
        grpc.accrue(accrual("lo", &event, 10)).await.expect("acknowledged during the outage");
        book.accrued("lo", &event, 10);
    }
    // Decided by the account without the ledger: applied and answered at once.
    let ok = grpc.redeem(redemption("lo", "lo-r1", 50, "mug")).await.expect("decided during the outage");
    assert_eq!(ok.get_ref().remaining_balance, 100);
    let s = grpc.get_summary(loyalty::grpc::pb::GetSummaryRequest { customer_id: "lo".into() }).await;
    let s = s.expect("queryable during the outage").into_inner();
    assert_eq!((s.points_balance, s.lifetime_points), (100, 150), "acknowledged means applied");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ledger().await.entries("lo").await.unwrap().len(), 1, "the ledger takes nothing while refusing");
    // A resend while the ledger still refuses gets the same answer, not a second deduction.
    let again = grpc.redeem(redemption("lo", "lo-r1", 50, "mug")).await.expect("resend answered");
    assert_eq!(again.get_ref().remaining_balance, 100);
    common::end_outage(&outage).await;
    let attempts = 2;
    book.redeemed("lo", "lo-r1", 50);
    let figures = book.check().await;
    report("ledger unavailable for a while", 7 + attempts, 1, &figures);
    assert_eq!(figures, Figures { customers: 1, lost: 0, duplicated: 0 });
}

/// `kill -9` of the service at pseudo-random moments under load, restarted
/// each time, 5 cycles (more with LOYALTY_FAULTS_SCALE): clients keep retrying
/// with the same event ids until each call has a definite answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_then_restart() {
    let name = "kill9";
    let env = [
        ("LOYALTY_DATABASE_URL", format!("sqlite:{}/ledger.db", common::scratch_dir(name).display())),
        ("LOYALTY_TASK_QUEUE", "loyalty-test-kill9".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let mut process = common::serve(name, &env);
    let addr = process.addr;
    let grpc = common::lazy_client(addr).await;
    let load = Load::start(&grpc, "k9", 6);

    let cycles = 5 * scale();
    // A fixed seed: the moments vary between kills, and a failure can be rerun.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..cycles {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        tokio::time::sleep(Duration::from_millis(300 + (seed >> 33) % 1_500)).await;
        process.child.kill().expect("SIGKILL");
        process.child.wait().unwrap();
        process = common::serve_on(addr, name, &env);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (book, operations) = load.finish().await;
    let ledger = Ledger::connect(&env[0].1).await.unwrap();
    let figures = book.check_on(&mut grpc.clone(), &ledger).await;
    report("kill -9 under load", operations, cycles, &figures);
    assert_eq!((figures.lost, figures.duplicated), (0, 0));
    process.child.kill().unwrap();
    process.child.wait().unwrap();
}

/// Load clients running until [`Load::finish`].
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Outcome>>,
}

impl Load {
    /// `clients` load clients on customers `<prefix>-0`, `<prefix>-1`, ...
    fn start(grpc: &Grpc, prefix: &str, clients: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..clients)
            .map(|n| tokio::spawn(load_client(grpc.clone(), format!("{prefix}-{n}"), stop.clone())))
            .collect();
        Self { stop, clients }
    }

    /// Stops the clients; what they were told, and the calls they made.
    async fn finish(self) -> (Book, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut book = Book::default();
        let mut operations = 0;
        for client in self.clients {
            operations += book.add(client.await.unwrap());
        }
        (book, operations)
    }
}

/// What one load client was told.
#[derive(Default)]
struct Outcome {
    customer: String,
    calls: usize,
    accrued: Vec<(String, i64)>,
    redeemed: Vec<(String, i64)>,
    reversed: Vec<(String, Delta)>,
    adjusted: Vec<(String, Delta)>,
    holds: Vec<(EntryKind, String, Delta)>,
}

/// Accrues 10 and, every third call, redeems 5, each retried with its event
/// id until the answer is definite, until `stop`.
async fn load_client(mut g: Grpc, customer: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Outcome {
    let mut outcome = Outcome { customer: customer.clone(), ..Outcome::default() };
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        i += 1;
        let redeem = i % 3 == 0;
        let event = format!("{customer}-{}{i}", if redeem { "r" } else { "a" });
        let deadline = std::time::Instant::now() + SETTLE;
        loop {
            outcome.calls += 1;
            let result = if redeem {
                g.redeem(redemption(&customer, &event, 5, "ticket")).await.map(drop)
            } else {
                g.accrue(accrual(&customer, &event, 10)).await.map(drop)
            };
            match result {
                Ok(()) if redeem => break outcome.redeemed.push((event, 5)),
                Ok(()) => break outcome.accrued.push((event, 10)),
                Err(s) if redeem && s.code() == Code::FailedPrecondition => break,
                Err(s) if common::unavailable(&s) || s.code() == Code::DeadlineExceeded => {
                    assert!(std::time::Instant::now() < deadline, "{event}: no answer since the restart: {s:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s) => panic!("{event}: {s:?}"),
            }
        }
    }
    outcome
}

/// The Temporal dev server (file-backed) stopped for a few seconds under
/// load, then restarted on its data: calls in between fail retryably, and
/// every acknowledged event is there afterwards, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_stopped_and_restarted_under_load() {
    let port = common::free_port();
    let db = common::scratch_dir("temporal-restart").join("temporal.db");
    let dev = |db: std::path::PathBuf| tokio::task::spawn_blocking(move || common::dev_server_on(port, &db));
    let temporal = dev(db.clone()).await.unwrap();
    let mut settings = common::settings("temporal-restart");
    settings.temporal_connection.target = format!("http://127.0.0.1:{port}").parse().unwrap();
    settings.rpc_timeout = Duration::from_secs(10);
    let database_url = settings.database_url.clone();
    let (stop_app, app_stopped) = tokio::sync::oneshot::channel();
    let (addr, app) = common::start_app(settings, app_stopped);
    let grpc = common::lazy_client(addr).await;
    let load = Load::start(&grpc, "tr", 4);

    let mut temporal = Some(temporal);
    for _ in 0..scale() {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let running = temporal.take().unwrap();
        tokio::task::spawn_blocking(move || running.stop()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        temporal = Some(dev(db.clone()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (book, operations) = load.finish().await;
    let figures = book.check_on(&mut grpc.clone(), &Ledger::connect(&database_url).await.unwrap()).await;
    report("Temporal stopped and restarted", operations, scale(), &figures);
    assert_eq!((figures.lost, figures.duplicated), (0, 0));
    let _ = stop_app.send(());
    app.join().unwrap();
    let running = temporal.take().unwrap();
    tokio::task::spawn_blocking(move || running.stop()).await.unwrap();
}

/// The ledger's PostgreSQL server stopped for a while under load, then
/// started again on its data: accounts stay alive and queryable, accruals
/// are still acknowledged, and everything acknowledged is applied once it is
/// back (the run loop retries after its backoff).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_database_down_for_a_while() {
    let dir = common::scratch_dir("pg-down").join("pg");
    let postgres = |action: &str| {
        let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh"))
            .args([action, dir.to_str().unwrap()])
            .output()
            .expect("postgres.sh runs");
        assert!(out.status.success(), "postgres.sh {action}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let database_url = postgres("start");
    let mut settings = common::settings("pg-down");
    settings.database_url = database_url.clone();
    settings.rpc_timeout = Duration::from_secs(10);
    let (stop_app, app_stopped) = tokio::sync::oneshot::channel();
    let (addr, app) = common::start_app(settings, app_stopped);
    let mut grpc = common::lazy_client(addr).await;
    let load = Load::start(&grpc, "pd", 3);

    for _ in 0..scale() {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        postgres("pause");
        tokio::time::sleep(Duration::from_secs(5)).await;
        let summary = grpc.get_summary(loyalty::grpc::pb::GetSummaryRequest { customer_id: "pd-0".into() }).await;
        assert!(summary.is_ok(), "queryable while the ledger is down: {summary:?}");
        postgres("resume");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (book, operations) = load.finish().await;
    let figures = book.check_on(&mut grpc, &Ledger::connect(&database_url).await.unwrap()).await;
    report("ledger database down for a while", operations, scale(), &figures);
    assert_eq!((figures.lost, figures.duplicated), (0, 0));
    let _ = stop_app.send(());
    app.join().unwrap();
    postgres("stop");
}

/// Scale of the scenarios: 1 in CI; `LOYALTY_FAULTS_SCALE=10` for a soak.
fn scale() -> usize {
    std::env::var("LOYALTY_FAULTS_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// The gRPC health of `service` at `addr`, if it answers.
async fn health(addr: std::net::SocketAddr, service: &str) -> Option<i32> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    let mut health = HealthClient::new(channel);
    let request = HealthCheckRequest { service: service.into() };
    health.check(request).await.ok().map(|r| r.into_inner().status)
}

/// Polls until `service`'s health at `addr` is `want`; how long it took.
async fn health_becomes(addr: std::net::SocketAddr, want: ServingStatus, within: Duration) -> Duration {
    let started = Instant::now();
    while health(addr, "").await != Some(want as i32) {
        assert!(started.elapsed() < within, "health never became {want:?} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// Calls `call` until it succeeds (the same event id each time, so at most
/// once applied); how long that took.
async fn until_ok<F, Fut, T>(mut call: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let started = Instant::now();
    loop {
        match call().await {
            Ok(_) => return started.elapsed(),
            Err(s) if retryable(&s) => {
                assert!(started.elapsed() < SETTLE, "no recovery: {s:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    }
}

/// Runs `call` once during a partition: it must end within the service's
/// deadline (3 s) plus a margin, with UNAVAILABLE or DEADLINE_EXCEEDED.
async fn ends_within_its_deadline<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, Status>>,
) {
    let started = Instant::now();
    let result = call.await;
    let took = started.elapsed();
    let status = result.expect_err(what);
    assert!(matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded), "{what}: {status:?}");
    assert!(took < Duration::from_secs(5), "{what} took {took:?}, past its 3 s deadline");
}

/// The network between the service and Temporal drops everything for 10 s
/// (a proxy that stops forwarding, no RST), and when it is back the old
/// connections stay silent for good (flows a NAT or load balancer forgot):
/// every kind of call ends within its deadline with UNAVAILABLE or
/// DEADLINE_EXCEEDED, readiness turns NOT_SERVING, and the same process
/// serves again within seconds of the keepalive giving up on the dead
/// connection (10 s + 5 s after the cut), with nothing lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporal_partitioned_for_a_while() {
    let proxy = common::proxy::Proxy::start(common::temporal_address().parse().unwrap()).await;
    let mut settings = common::settings("partition-temporal");
    settings.temporal_connection.target = temporalio_client::Url::parse(&format!("http://{}", proxy.addr)).unwrap();
    settings.rpc_timeout = Duration::from_secs(3);
    let database_url = settings.database_url.clone();
    let (stop_app, app_stopped) = tokio::sync::oneshot::channel();
    let (addr, app) = common::start_app(settings, app_stopped);
    let mut grpc = common::lazy_client(addr).await;
    let mut book = Book::default();
    book.open(&mut grpc, "ptp", 100).await;
    let load = Load::start(&grpc, "ptl", 3);
    tokio::time::sleep(Duration::from_secs(2)).await;

    proxy.cut();
    let cut = Instant::now();
    let noticed = health_becomes(addr, ServingStatus::NotServing, Duration::from_secs(10)).await;
    let mut g = grpc.clone();
    ends_within_its_deadline("Accrue", g.accrue(accrual("ptp", "ptp-a1", 10))).await;
    ends_within_its_deadline("Redeem", g.redeem(redemption("ptp", "ptp-r1", 5, "tea"))).await;
    ends_within_its_deadline("GetSummary", g.get_summary(pb::GetSummaryRequest { customer_id: "ptp".into() })).await;
    assert_eq!(health(addr, "liveness").await, Some(ServingStatus::Serving as i32), "no restart is asked for");
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(cut.elapsed())).await;

    proxy.restore_new_only();
    // The keepalive finds the dead connection at most 15 s after the cut.
    let ready = health_becomes(addr, ServingStatus::Serving, Duration::from_secs(12)).await;
    // The calls that failed are resent with their ids: applied once, whether
    // or not the partition had let them through.
    let accrued = until_ok(|| {
        let mut g = g.clone();
        async move { g.accrue(accrual("ptp", "ptp-a1", 10)).await }
    })
    .await;
    book.accrued("ptp", "ptp-a1", 10);
    let redeemed = until_ok(|| {
        let mut g = g.clone();
        async move { g.redeem(redemption("ptp", "ptp-r1", 5, "tea")).await }
    })
    .await;
    book.redeemed("ptp", "ptp-r1", 5);
    let (load_book, operations) = load.finish().await;
    let ledger = Ledger::connect(&database_url).await.unwrap();
    let figures = book.check_on(&mut grpc, &ledger).await.and(load_book.check_on(&mut grpc, &ledger).await);
    report("Temporal partitioned for 10 s (no RST), old flows lost", operations + 5, 1, &figures);
    publish(&format!(
        "  partition from Temporal: NOT_SERVING {noticed:.1?} after the cut; after the restore SERVING in {ready:.1?}, \
         Accrue OK {accrued:.1?} later, Redeem {redeemed:.1?} after that"
    ));
    assert_eq!((figures.lost, figures.duplicated), (0, 0));
    let _ = stop_app.send(());
    app.join().unwrap();
}

/// The network between the service and its PostgreSQL ledger drops
/// everything for 15 s, and when it is back the old connections stay silent
/// for good (flows a NAT or load balancer forgot): accruals and redemptions
/// are still decided and answered (the ledger follows), readiness stays
/// SERVING for that reason, a history read ends within its deadline with
/// UNAVAILABLE or DEADLINE_EXCEEDED, and once the network is back the ledger
/// replaces its dead connections (every one of them was inside a query at
/// the cut) and catches up without a restart, within seconds, every entry
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_partitioned_for_a_while() {
    let url = common::fresh_database_url(common::Db::Postgres, "partition");
    let upstream = url.split('@').nth(1).and_then(|rest| rest.split('/').next()).expect("host:port in the URL");
    let proxy = common::proxy::Proxy::start(upstream.parse().unwrap()).await;
    let proxied = url.replacen(upstream, &proxy.addr.to_string(), 1);
    let mut settings = common::settings("partition-ledger");
    settings.database_url = proxied;
    settings.rpc_timeout = Duration::from_secs(3);
    let (stop_app, app_stopped) = tokio::sync::oneshot::channel();
    let (addr, app) = common::start_app(settings, app_stopped);
    let mut grpc = common::lazy_client(addr).await;
    let mut book = Book::default();
    book.open(&mut grpc, "plp", 100).await;
    let load = Load::start(&grpc, "pll", 3);
    // History readers enough to keep every pooled connection inside a query
    // when the network goes: those connections are lost mid-query, which
    // sqlx never gives back to the pool (its check on release waits forever).
    let history = pb::GetHistoryRequest { customer_id: "plp".into(), ..Default::default() };
    let reading = std::sync::Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = (0..30)
        .map(|_| {
            let (mut g, history, reading) = (grpc.clone(), history.clone(), reading.clone());
            tokio::spawn(async move {
                while reading.load(Ordering::SeqCst) {
                    let _ = g.get_history(history.clone()).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    proxy.cut();
    let cut = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    reading.store(false, Ordering::SeqCst);
    for reader in readers {
        reader.await.unwrap();
    }
    let mut g = grpc.clone();
    ends_within_its_deadline("GetHistory", g.get_history(history.clone())).await;
    g.accrue(accrual("plp", "plp-a1", 10)).await.expect("decided without the ledger");
    book.accrued("plp", "plp-a1", 10);
    g.redeem(redemption("plp", "plp-r1", 5, "tea")).await.expect("decided without the ledger");
    book.redeemed("plp", "plp-r1", 5);
    assert_eq!(health(addr, "").await, Some(ServingStatus::Serving as i32), "calls are still decided");
    tokio::time::sleep(Duration::from_secs(15).saturating_sub(cut.elapsed())).await;

    proxy.restore_new_only();
    let history_back = until_ok(|| {
        let (mut g, history) = (g.clone(), history.clone());
        async move { g.get_history(history).await }
    })
    .await;
    assert!(history_back < Duration::from_secs(30), "the ledger took {history_back:?} to answer again");
    let (load_book, operations) = load.finish().await;
    let caught_up = Instant::now();
    let ledger = Ledger::connect(&url).await.unwrap();
    let figures = book.check_on(&mut grpc, &ledger).await.and(load_book.check_on(&mut grpc, &ledger).await);
    report("ledger partitioned for 15 s (no RST), old flows lost", operations + 4, 1, &figures);
    publish(&format!(
        "  partition from the ledger: history read again {history_back:.1?} after the restore; every entry in the \
         ledger {:.1?} after the load stopped",
        caught_up.elapsed()
    ));
    assert_eq!((figures.lost, figures.duplicated), (0, 0));
    let _ = stop_app.send(());
    app.join().unwrap();
}
