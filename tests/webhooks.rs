//! Webhooks against real processes: the service (`loyalty serve`), its
//! ledger, and receivers that verify signatures with the Standard Webhooks
//! reference library (tests/webhook_receiver.py) and misbehave on demand.
//!
//! The promise checked everywhere: every event of every account arrives at
//! least once, and the first arrival of each is in the account's order.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Db, Process, accrual, lazy_client, redemption, scratch_dir, serve, serve_on};
use loyalty::ledger::Ledger;
use serde::Deserialize;
use serde_json::json;

/// A receiver process; killed on drop.
struct Receiver {
    child: std::process::Child,
    port: u16,
    http: reqwest::Client,
}

/// One delivery attempt as the receiver saw it.
#[derive(Debug, Clone, Deserialize)]
struct Delivery {
    id: String,
    customer: String,
    sequence: u64,
    #[serde(rename = "type")]
    event_type: String,
    status: u16,
    verified: Vec<usize>,
}

impl Delivery {
    fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Receiver {
    /// Listens on `port`, verifying with each of `secrets` on its own.
    fn start(port: u16, secrets: &[&str]) -> Self {
        let mut child = std::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhook_receiver.py"))
            .arg(port.to_string())
            .args(secrets)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the receiver");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "receiver on {port} starts (pip install -r scripts/requirements.txt)");
        Self { child, port, http: reqwest::Client::new() }
    }

    async fn mode(&self, mode: &str, delay_ms: u64) {
        self.http
            .post(format!("http://127.0.0.1:{}/control", self.port))
            .body(json!({"mode": mode, "delay_ms": delay_ms}).to_string())
            .send()
            .await
            .expect("receiver answers");
    }

    async fn received(&self) -> Vec<Delivery> {
        let url = format!("http://127.0.0.1:{}/received", self.port);
        let text = self.http.get(url).send().await.expect("receiver answers").text().await.expect("body");
        serde_json::from_str(&text).expect("JSON")
    }

    /// Waits until each of `customers` has `events` events in the ledger
    /// and all of them were accepted.
    async fn all_of(&self, ledger: &Ledger, customers: &[String], events: u64, within: Duration) -> Vec<Delivery> {
        let began = Instant::now();
        loop {
            let expected = stream_lengths(ledger, customers).await;
            let received = self.received().await;
            let firsts = first_arrivals(&received);
            if customers.iter().all(|c| expected[c] == events && firsts.get(c).map_or(0, Vec::len) as u64 == events) {
                return received;
            }
            assert!(
                began.elapsed() < within,
                "receiver {} got {:?} of {expected:?} within {within:?}",
                self.port,
                firsts.iter().map(|(c, s)| (c, s.len())).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many events each account's stream holds.
async fn stream_lengths(ledger: &Ledger, customers: &[String]) -> BTreeMap<String, u64> {
    let mut lengths = BTreeMap::new();
    for c in customers {
        let newest = ledger.events(c, 0, 1, true).await.unwrap();
        lengths.insert(c.clone(), newest.first().map_or(0, |e| e.seq));
    }
    lengths
}

/// Per account, the sequence numbers in order of their first accepted
/// arrival; panics if an event arrived before one it follows (out of order).
fn first_arrivals(deliveries: &[Delivery]) -> BTreeMap<String, Vec<u64>> {
    let mut firsts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for d in deliveries.iter().filter(|d| d.accepted()) {
        assert_eq!(d.id, format!("evt_{}_{}", d.customer, d.sequence), "webhook-id is the event id");
        if seen.insert((d.customer.clone(), d.sequence)) {
            let arrived = firsts.entry(d.customer.clone()).or_default();
            assert_eq!(d.sequence, arrived.len() as u64 + 1, "{}: out of order after {arrived:?}", d.customer);
            arrived.push(d.sequence);
        }
    }
    firsts
}

/// A Standard Webhooks secret made of `byte`.
fn secret(byte: u8) -> String {
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode([byte; 32]))
}

/// Writes the webhooks file for `name`.
fn hooks_file(name: &str, config: serde_json::Value) -> PathBuf {
    let path = scratch_dir(name).join("webhooks.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

fn service_env(name: &str, database_url: &str, hooks: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("LOYALTY_DATABASE_URL", database_url.to_owned()),
        ("LOYALTY_TASK_QUEUE", format!("loyalty-test-{name}")),
        ("LOYALTY_WEBHOOKS_FILE", hooks.display().to_string()),
        ("RUST_LOG", "warn".to_owned()),
    ]
}

fn sqlite_url(name: &str) -> String {
    format!("sqlite:{}/ledger.db", scratch_dir(name).display())
}

/// Waits until the service answers (NOT_FOUND for an unknown account).
async fn until_started(process: &Process) {
    let mut grpc = lazy_client(process.addr).await;
    let began = Instant::now();
    loop {
        let request = loyalty::grpc::pb::GetSummaryRequest { customer_id: "probe".into() };
        match grpc.get_summary(request).await {
            Err(status) if common::unavailable(&status) => {
                assert!(began.elapsed() < Duration::from_secs(60), "the service did not start: {status}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => return,
        }
    }
}

fn stop(mut process: Process) {
    let _ = process.child.kill();
    let _ = process.child.wait();
}

/// Accrues `points` to each customer under `tag` (and redeems a little),
/// returning the slowest call.
async fn spend_and_earn(addr: std::net::SocketAddr, customers: &[String], tag: &str, points: i64) -> Duration {
    let mut grpc = lazy_client(addr).await;
    let mut slowest = Duration::ZERO;
    for c in customers {
        let began = Instant::now();
        grpc.accrue(accrual(c, &format!("{tag}-a"), points)).await.expect("accrue");
        common::summary_when(&mut grpc, c, Duration::from_secs(30), |s| s.points_balance >= points).await;
        grpc.redeem(redemption(c, &format!("{tag}-r"), 10, "coffee")).await.expect("redeem");
        slowest = slowest.max(began.elapsed());
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_signed_and_in_order_through_refusals_errors_hangs_and_redirects() {
    let name = "hooks-flaky";
    let (flaky_port, steady_port) = (common::free_port(), common::free_port());
    let (new, old) = (secret(1), secret(2));
    let hooks = hooks_file(
        name,
        json!({
            "timeout": "1s", "max_backoff": "1s", "lease": "5s",
            "endpoints": [
                {"name": "flaky", "url": format!("http://127.0.0.1:{flaky_port}/hook"), "secrets": [new]},
                // A rotation: both secrets sign; a receiver knowing either verifies.
                {"name": "steady", "url": format!("http://127.0.0.1:{steady_port}/hook"),
                 "events": ["points.*", "tier.changed"], "secrets": [new, old]},
            ]
        }),
    );
    let steady = Receiver::start(steady_port, &[&new, &old]);
    let database_url = sqlite_url(name);
    let service = serve(name, &service_env(name, &database_url, &hooks));
    until_started(&service).await;
    let ledger = Ledger::connect(&database_url).await.unwrap();
    let customers: Vec<String> = (0..4).map(|i| format!("wh-flaky-{i}")).collect();

    // The flaky endpoint refuses connections: the steady one keeps up.
    let slowest = spend_and_earn(service.addr, &customers, "refused", 1_200).await;
    steady.all_of(&ledger, &customers, 3, Duration::from_secs(30)).await;
    // It answers 500, then hangs past the timeout while more happens.
    let flaky = Receiver::start(flaky_port, &[&new]);
    flaky.mode("fail", 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    flaky.mode("hang", 0).await;
    let slowest = slowest.max(spend_and_earn(service.addr, &customers, "hung", 4_000).await);
    steady.all_of(&ledger, &customers, 6, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Then redirects elsewhere, then answers with a gigantic body, then recovers.
    flaky.mode("redirect", 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    flaky.mode("huge", 0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    flaky.mode("ok", 0).await;
    let slowest = slowest.max(spend_and_earn(service.addr, &customers, "recovered", 100).await);
    let got = flaky.all_of(&ledger, &customers, 8, Duration::from_secs(60)).await;
    let kept = steady.all_of(&ledger, &customers, 8, Duration::from_secs(30)).await;
    stop(service);

    let statuses: BTreeSet<u16> = got.iter().map(|d| d.status).collect();
    assert!(statuses.contains(&500) && statuses.contains(&307), "each failure was met: {statuses:?}");
    assert!(got.iter().all(|d| d.verified == [0]), "the reference library verified every delivery");
    assert!(kept.iter().all(|d| d.verified == [0, 1]), "both secrets of the rotation verify every delivery");
    let types: BTreeSet<&str> = kept.iter().map(|d| d.event_type.as_str()).collect();
    assert_eq!(types, BTreeSet::from(["points.accrued", "points.redeemed", "tier.changed"]));
    // Nothing in the flaky endpoint's way slowed the calls that make events.
    assert!(slowest < Duration::from_secs(10), "an Accrue, summary and Redeem took {slowest:?}");
    eprintln!("flaky endpoint: {} attempts for {} events; slowest call round {slowest:?}", got.len(), {
        let lengths = stream_lengths(&ledger, &customers).await;
        lengths.values().sum::<u64>()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_park_dead_letters_until_redelivered() {
    let name = "hooks-parked";
    let port = common::free_port();
    let key = secret(3);
    let hooks = hooks_file(
        name,
        json!({
            "timeout": "1s", "max_backoff": "500ms", "retry_for": "2s", "lease": "5s",
            "endpoints": [{"name": "doomed", "url": format!("http://127.0.0.1:{port}/hook"), "secrets": [key]}]
        }),
    );
    let database_url = sqlite_url(name);
    let metrics_port = common::free_port();
    let mut env = service_env(name, &database_url, &hooks);
    env.push(("LOYALTY_METRICS_ADDR", format!("127.0.0.1:{metrics_port}")));
    let service = serve(name, &env);
    until_started(&service).await;
    let ledger = Ledger::connect(&database_url).await.unwrap();
    let customer = "wh-parked".to_owned();
    spend_and_earn(service.addr, std::slice::from_ref(&customer), "p", 50).await;

    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
            .args(args)
            .env("LOYALTY_DATABASE_URL", &database_url)
            .env("LOYALTY_SERVER", format!("http://{}", service.addr))
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let began = Instant::now();
    let parked = loop {
        let letters: serde_json::Value = serde_json::from_str(&cli(&["events", "dead-letters", "--json"])).unwrap();
        if letters.as_array().is_some_and(|l| !l.is_empty()) {
            break letters;
        }
        assert!(began.elapsed() < Duration::from_secs(30), "never parked");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(parked[0]["endpoint"], "doomed");
    assert_eq!(parked[0]["customer_id"], customer.as_str());
    assert_eq!(parked[0]["first_seq"], 1);
    assert!(parked[0]["last_error"].as_str().unwrap().contains("connect"), "{parked}");
    // Parked stays parked, even when the endpoint comes back and new events arrive...
    let receiver = Receiver::start(port, &[&key]);
    spend_and_earn(service.addr, std::slice::from_ref(&customer), "q", 50).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(receiver.received().await.is_empty(), "a parked account waits for an operator");
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics")).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("loyalty_webhook_deliveries_total")
            && l.contains("endpoint=\"doomed\"")
            && l.contains("outcome=\"parked\"")),
        "parking is counted"
    );
    // ...until redelivered: then everything goes, in order.
    assert!(cli(&["events", "redeliver", "--endpoint", "doomed"]).starts_with("1 "));
    receiver.all_of(&ledger, std::slice::from_ref(&customer), 4, Duration::from_secs(30)).await;
    assert!(cli(&["events", "dead-letters"]).contains("no dead letters"));
    // The stream reads back over the API, oldest first.
    let listed = cli(&["events", "list", "--customer", &customer, "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let types: Vec<&str> = listed["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["points.accrued", "points.redeemed", "points.accrued", "points.redeemed"]);
    // One event sent again by id: it and what follows it.
    let before = receiver.received().await.len();
    cli(&["events", "redeliver", "--id", &format!("evt_{customer}_3")]);
    let began = Instant::now();
    while receiver.received().await.len() < before + 2 {
        assert!(began.elapsed() < Duration::from_secs(30), "redelivery by id");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop(service);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_during_delivery_loses_nothing() {
    let name = "hooks-kill9";
    let port = common::free_port();
    let key = secret(4);
    let hooks = hooks_file(
        name,
        json!({
            "timeout": "1s", "lease": "3s",
            "endpoints": [{"name": "slow", "url": format!("http://127.0.0.1:{port}/hook"), "secrets": [key]}]
        }),
    );
    let receiver = Receiver::start(port, &[&key]);
    receiver.mode("ok", 150).await;
    let database_url = sqlite_url(name);
    let env = service_env(name, &database_url, &hooks);
    let service = serve(name, &env);
    until_started(&service).await;
    let ledger = Ledger::connect(&database_url).await.unwrap();
    let customers: Vec<String> = (0..3).map(|i| format!("wh-kill-{i}")).collect();
    let mut grpc = lazy_client(service.addr).await;
    for i in 0..12 {
        for c in &customers {
            grpc.accrue(accrual(c, &format!("k{i}"), 10)).await.expect("accrue");
        }
    }
    for c in &customers {
        common::summary_when(&mut grpc, c, Duration::from_secs(30), |s| s.points_balance == 120).await;
    }
    // Deliveries are under way (about 7 per second per account): kill -9.
    let began = Instant::now();
    while receiver.received().await.len() < 6 {
        assert!(began.elapsed() < Duration::from_secs(30), "deliveries start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr = service.addr;
    stop(service);
    let at_kill = receiver.received().await.len();
    let service = serve_on(addr, name, &env);
    until_started(&service).await;
    let got = receiver.all_of(&ledger, &customers, 12, Duration::from_secs(60)).await;
    stop(service);
    let total: u64 = stream_lengths(&ledger, &customers).await.values().sum();
    assert!(at_kill < total as usize, "the kill came mid-delivery ({at_kill} of {total})");
    let extra = got.iter().filter(|d| d.accepted()).count() as u64 - total;
    assert!(extra <= customers.len() as u64, "at most the events in flight went twice: {extra}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_every_event_once() {
    let name = "hooks-pair";
    let port = common::free_port();
    let key = secret(5);
    let hooks = hooks_file(
        name,
        json!({"endpoints": [{"name": "pair", "url": format!("http://127.0.0.1:{port}/hook"), "secrets": [key]}]}),
    );
    let receiver = Receiver::start(port, &[&key]);
    receiver.mode("ok", 20).await;
    let database_url = common::fresh_database_url(Db::Postgres, "hooks_pair");
    let env = service_env(name, &database_url, &hooks);
    let (a, b) = (serve(name, &env), serve(name, &env));
    until_started(&a).await;
    until_started(&b).await;
    let ledger = Ledger::connect(&database_url).await.unwrap();
    let customers: Vec<String> = (0..12).map(|i| format!("wh-pair-{i}")).collect();
    let (mut ga, mut gb) = (lazy_client(a.addr).await, lazy_client(b.addr).await);
    for i in 0..5 {
        for (j, c) in customers.iter().enumerate() {
            let grpc = if j % 2 == 0 { &mut ga } else { &mut gb };
            grpc.accrue(accrual(c, &format!("p{i}"), 300)).await.expect("accrue");
        }
    }
    let got = receiver.all_of(&ledger, &customers, 6, Duration::from_secs(90)).await;
    stop(a);
    stop(b);
    let total: u64 = stream_lengths(&ledger, &customers).await.values().sum();
    assert_eq!(total, 12 * 6, "5 accruals and one tier change each");
    assert_eq!(got.iter().filter(|d| d.accepted()).count() as u64, total, "no event went twice");
}
