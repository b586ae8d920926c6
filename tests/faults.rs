//! Fault suite: real processes (service, dev server, database) under load and
//! faults, then one exact invariant per customer, from what clients were told:
//! balance = accepted accruals - successful redemptions, lifetime = accepted
//! accruals, tier follows lifetime, and the ledger holds exactly the applied
//! events. Clients retry with the same event ids, as checkout services do.
//! Each scenario prints its figures: operations, faults, lost, duplicated.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::book::{Book, Figures, Grpc, Outcome, SETTLE, publish, report, scale};
use common::hot::retryable;
use common::{accrual, client, ledger, redemption};
use loyalty::config::Role;
use loyalty::grpc::pb;
use loyalty::ledger::Ledger;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;

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

/// The process killed between a decision and its ledger write, on each path
/// that writes: the API about to write an update's entries (under accruals
/// and redemptions), the run's write about to reach the ledger, and the
/// run's write committed but unanswered (under accruals alone, which only
/// the run writes).
/// A crash point (`loyalty::crash`) aborts the process there (as kill -9)
/// under load; started again, the ledger catches up: every acknowledged
/// event exactly once, in the order the account decided (rows numbered
/// from 1 without a gap, the newest row's balance the book's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_a_decision_and_its_ledger_write_the_ledger_catches_up() {
    use loyalty::crash::{EAGER_WRITE, WRITE_BEHIND, WRITE_BEHIND_COMMITTED};
    for (i, point) in [EAGER_WRITE, WRITE_BEHIND, WRITE_BEHIND_COMMITTED].into_iter().enumerate() {
        let name = format!("crash-{point}");
        let env = vec![
            ("LOYALTY_DATABASE_URL", format!("sqlite:{}/ledger.db", common::scratch_dir(&name).display())),
            ("LOYALTY_TASK_QUEUE", format!("loyalty-test-{name}")),
            ("RUST_LOG", "warn".to_owned()),
        ];
        let mut crashing = env.clone();
        crashing.push(("LOYALTY_TEST_CRASH_AT", format!("{point}:3")));
        let mut process = common::serve(&name, &crashing);
        let addr = process.addr;
        let grpc = common::lazy_client(addr).await;
        // Without redemptions the run's write is the only writer (no update
        // hands the API its accruals).
        let load = Load::start_with(&grpc, &format!("cr{i}"), 3, point == EAGER_WRITE);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = process.child.try_wait().unwrap() {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{point}: never reached");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(!status.success(), "{point}: the process aborted there ({status})");
        let log = std::fs::read_to_string(common::scratch_dir(&name).join("serve.log")).unwrap();
        assert!(log.contains(&format!("crash point {point} reached")), "{point}: aborted by its crash point");
        process = common::serve_on(addr, &name, &env);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (book, operations) = load.finish().await;
        let ledger = Ledger::connect(&env[0].1).await.unwrap();
        let figures = book.check_on(&mut grpc.clone(), &ledger).await;
        report(&format!("killed at {point}"), operations, 1, &figures);
        assert_eq!((figures.lost, figures.duplicated), (0, 0), "{point}");
        // In the order they were written, the account's own numbers from 1 without a gap.
        sqlx::any::install_default_drivers();
        let db = sqlx::AnyPool::connect(&env[0].1).await.unwrap();
        for n in 0..3 {
            let customer = format!("cr{i}-{n}");
            let seqs: Vec<i64> =
                sqlx::query_scalar("SELECT account_seq FROM ledger_entries WHERE customer_id = $1 ORDER BY seq")
                    .bind(&customer)
                    .fetch_all(&db)
                    .await
                    .unwrap();
            assert!(seqs.len() > 3, "{point}: {customer} has rows");
            assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "{point}: {customer}'s rows in order");
        }
        process.child.kill().unwrap();
        process.child.wait().unwrap();
    }
}

/// Load clients running until [`Load::finish`].
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Outcome>>,
}

impl Load {
    /// `clients` load clients on customers `<prefix>-0`, `<prefix>-1`, ...
    fn start(grpc: &Grpc, prefix: &str, clients: usize) -> Self {
        Self::start_with(grpc, prefix, clients, true)
    }

    /// As [`Load::start`], with redemptions or accruals only.
    fn start_with(grpc: &Grpc, prefix: &str, clients: usize, redeem: bool) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..clients)
            .map(|n| tokio::spawn(load_client(grpc.clone(), format!("{prefix}-{n}"), stop.clone(), redeem)))
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

/// Accrues 10 and, every third call, redeems 5 (if `redeems`), each retried with its event
/// id until the answer is definite, until `stop`.
async fn load_client(
    mut g: Grpc,
    customer: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    redeems: bool,
) -> Outcome {
    let mut outcome = Outcome { customer: customer.clone(), ..Outcome::default() };
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        i += 1;
        let redeem = redeems && i % 3 == 0;
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
