//! Fault suite: real processes (service, dev server, database) under load and
//! faults, then one exact invariant per customer, from what clients were told:
//! balance = accepted accruals - successful redemptions, lifetime = accepted
//! accruals, tier follows lifetime, and the ledger holds exactly the applied
//! events. Clients retry with the same event ids, as checkout services do.
//! Each scenario prints its figures: operations, faults, lost, duplicated.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use common::{accrual, client, ledger, redemption, summary_when};
use loyalty::config::Role;
use loyalty::domain::{EntryKind, Tier};
use loyalty::ledger::Ledger;
use tonic::Code;

const SETTLE: Duration = Duration::from_secs(60);

/// A client of the service's gRPC API.
type Grpc = loyalty::grpc::pb::loyalty_service_client::LoyaltyServiceClient<tonic::transport::Channel>;

/// What the clients were told, per customer and event id: the points of
/// every acknowledged accrual and successful redemption.
#[derive(Default)]
struct Book {
    accrued: BTreeMap<String, BTreeMap<String, i64>>,
    redeemed: BTreeMap<String, BTreeMap<String, i64>>,
}

/// The invariant's verdict over every customer of a scenario.
#[derive(Debug, Default, PartialEq, Eq)]
struct Figures {
    customers: usize,
    /// Acknowledged events missing from the ledger or the balance.
    lost: i64,
    /// Events in the ledger no client was told about, or counted twice.
    duplicated: i64,
}

impl Book {
    fn accrued(&mut self, customer: &str, event: &str, points: i64) {
        self.accrued.entry(customer.into()).or_default().insert(event.into(), points);
    }

    fn redeemed(&mut self, customer: &str, event: &str, points: i64) {
        self.redeemed.entry(customer.into()).or_default().insert(event.into(), points);
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
        outcome.calls
    }

    /// [`Book::check_on`] the shared application and its ledger.
    async fn check(&self) -> Figures {
        self.check_on(&mut client().await, &ledger().await).await
    }

    /// Compares every customer's summary and ledger with the book, once the
    /// balance has settled; panics with the differences.
    async fn check_on(&self, grpc: &mut Grpc, ledger: &Ledger) -> Figures {
        let mut figures = Figures::default();
        let customers: std::collections::BTreeSet<&String> = self.accrued.keys().chain(self.redeemed.keys()).collect();
        let none = BTreeMap::new();
        for customer in customers {
            figures.customers += 1;
            let accrued = self.accrued.get(customer).unwrap_or(&none);
            let redeemed = self.redeemed.get(customer).unwrap_or(&none);
            let lifetime: i64 = accrued.values().sum();
            let balance = lifetime - redeemed.values().sum::<i64>();
            let s = summary_when(grpc, customer, SETTLE, |s| s.lifetime_points >= lifetime).await;
            figures.lost += (lifetime - s.lifetime_points).max(0) + (s.points_balance - balance).max(0);
            figures.duplicated += (s.lifetime_points - lifetime).max(0) + (balance - s.points_balance).max(0);
            assert_eq!((s.points_balance, s.lifetime_points), (balance, lifetime), "{customer}: summary vs book");
            assert_eq!(s.tier, Tier::for_lifetime(lifetime).as_str(), "{customer}: tier");

            let rows = ledger.entries(customer).await.expect("ledger readable");
            let in_ledger = |kind: EntryKind| -> BTreeMap<String, i64> {
                rows.iter().filter(|r| r.kind == kind).map(|r| (r.event_id.clone(), r.points.abs())).collect()
            };
            for (kind, book) in [(EntryKind::Accrual, accrued), (EntryKind::Redemption, redeemed)] {
                let found = in_ledger(kind);
                figures.lost += book.keys().filter(|e| !found.contains_key(*e)).count() as i64;
                figures.duplicated += found.keys().filter(|e| !book.contains_key(*e)).count() as i64;
                assert_eq!(&found, book, "{customer}: {kind:?} rows vs book");
            }
        }
        figures
    }
}

/// Figures of a scenario, for the README's reliability section: printed, and
/// appended to target/tmp/faults-figures.txt, which scripts/test.sh shows.
fn report(scenario: &str, operations: usize, faults: usize, figures: &Figures) {
    use std::io::Write;
    let line = format!(
        "{scenario}: {operations} operations, {faults} faults injected, {} customers, lost = {}, duplicated = {}",
        figures.customers, figures.lost, figures.duplicated
    );
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
/// alive and queryable, accruals are still acknowledged, a redemption answers
/// UNAVAILABLE with a retry hint; once the ledger is back everything
/// acknowledged is applied and the retried redemption goes through once.
#[tokio::test]
async fn ledger_unavailable_for_a_while() {
    let mut book = Book::default();
    let mut grpc = client().await;
    book.open(&mut grpc, "lo", 100).await;

    let outage = common::fail_inserts("outage_lo", "ledger_entries", "NEW.customer_id = 'lo'").await;
    for i in 1..=5 {
        let event = format!("lo-a{i}");
        grpc.accrue(accrual("lo", &event, 10)).await.expect("acknowledged during the outage");
        book.accrued("lo", &event, 10);
    }
    let status = grpc.redeem(redemption("lo", "lo-r1", 50, "mug")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(common::retry_hint(&status).is_some(), "{status:?}");
    let s = grpc.get_summary(loyalty::grpc::pb::GetSummaryRequest { customer_id: "lo".into() }).await;
    assert_eq!(s.expect("queryable during the outage").get_ref().lifetime_points, 100, "nothing applied yet");
    common::end_outage(&outage).await;

    let mut attempts = 1;
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        attempts += 1;
        match grpc.redeem(redemption("lo", "lo-r1", 50, "mug")).await {
            Ok(_) => break,
            Err(s) if s.code() == Code::Unavailable && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(s) => panic!("{s:?}"),
        }
    }
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
struct Outcome {
    customer: String,
    calls: usize,
    accrued: Vec<(String, i64)>,
    redeemed: Vec<(String, i64)>,
}

/// Accrues 10 and, every third call, redeems 5, each retried with its event
/// id until the answer is definite, until `stop`.
async fn load_client(mut g: Grpc, customer: String, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Outcome {
    let mut outcome = Outcome { customer: customer.clone(), calls: 0, accrued: Vec::new(), redeemed: Vec::new() };
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
