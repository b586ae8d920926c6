//! Operations: readiness that follows Temporal, roles, and graceful drain on
//! SIGTERM, against real dev servers and real `loyalty` processes.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{
    accrual, dev_server_on, free_port, grpc_channel, lazy_client, serve, settings, start_app, summary_when, unavailable,
};
use loyalty::grpc::pb::loyalty_service_client::LoyaltyServiceClient;
use temporalio_client::Url;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

async fn health_of(addr: SocketAddr, service: &str) -> Option<ServingStatus> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).ok()?.connect_lazy();
    let mut health = HealthClient::new(channel);
    let r = health.check(HealthCheckRequest { service: service.into() }).await.ok()?;
    ServingStatus::try_from(r.into_inner().status).ok()
}

/// Polls until both "" and the API report `want`, or panics after `timeout`.
async fn wait_health(addr: SocketAddr, want: ServingStatus, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let overall = health_of(addr, "").await;
        let api = health_of(addr, "loyalty.v1.LoyaltyService").await;
        if overall == Some(want) && api == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "health never became {want:?}: \"\" {overall:?}, API {api:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_temporal_and_recovers_by_itself() {
    let port = free_port();
    let db = common::scratch_dir("readiness").join("temporal.db");
    let temporal = tokio::task::spawn_blocking({
        let db = db.clone();
        move || dev_server_on(port, &db)
    })
    .await
    .unwrap();
    let mut settings = settings("readiness");
    settings.temporal_connection.target = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (addr, app) = start_app(settings, stopped);
    wait_health(addr, ServingStatus::Serving, Duration::from_secs(10)).await;

    tokio::task::spawn_blocking(move || temporal.stop()).await.unwrap();
    wait_health(addr, ServingStatus::NotServing, Duration::from_secs(15)).await;
    assert!(!app.is_finished(), "the process stays up while Temporal is away");
    assert_eq!(health_of(addr, "liveness").await, Some(ServingStatus::Serving), "liveness does not follow Temporal");

    let temporal = tokio::task::spawn_blocking(move || dev_server_on(port, &db)).await.unwrap();
    wait_health(addr, ServingStatus::Serving, Duration::from_secs(30)).await;
    assert!(!app.is_finished());
    let mut grpc = LoyaltyServiceClient::new(grpc_channel(addr).await);
    grpc.accrue(accrual("ready-1", "e1", 10)).await.expect("serves again");
    summary_when(&mut grpc, "ready-1", Duration::from_secs(60), |s| s.points_balance == 10).await;

    let _ = stop.send(());
    app.join().expect("app stops cleanly");
    tokio::task::spawn_blocking(move || temporal.stop()).await.unwrap();
}

/// Calls `call` on the first server, and on UNAVAILABLE (or no connection)
/// retries on the next one, as a client behind a load balancer would.
async fn with_retries<T, F, Fut>(
    servers: &[LoyaltyServiceClient<tonic::transport::Channel>],
    first: usize,
    call: F,
) -> Result<T, tonic::Status>
where
    F: Fn(LoyaltyServiceClient<tonic::transport::Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut last = None;
    for attempt in 0..40 {
        match call(servers[(first + attempt) % servers.len()].clone()).await {
            Err(status) if unavailable(&status) => {
                last = Some(status);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
    Err(last.expect("tried"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_without_a_failed_call() {
    let dir = common::scratch_dir("drain");
    let env = vec![
        ("LOYALTY_TASK_QUEUE", "drain-queue".to_string()),
        ("LOYALTY_DATABASE_URL", format!("sqlite:{}/ledger.db", dir.display())),
        ("LOYALTY_DRAIN_SECONDS", "15".to_string()),
    ];
    // Process a logs JSON, as in Kubernetes.
    let mut a = serve("drain-a", &[&env[..], &[("LOYALTY_LOG_FORMAT", "json".to_string())]].concat());
    let b = serve("drain-b", &env);
    for p in [&a, &b] {
        wait_health_up(p.addr).await;
    }
    let servers = vec![lazy_client(a.addr).await, lazy_client(b.addr).await];

    let load = Load::start(&servers, "drain", 8);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // SIGTERM, as Kubernetes sends it.
    unsafe { libc::kill(a.child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || a.child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0), "a drained process exits 0");
    let log = std::fs::read_to_string(common::scratch_dir("drain-a").join("serve.log")).unwrap();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().is_some_and(|m| m.starts_with("shutting down")) && l["level"] == "INFO"),
        "{log}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "drained within the grace period: {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = load.finish_and_check(lazy_client(b.addr).await).await;
    assert!(calls > 50, "the load was real: {calls} successful calls");
    let mut b = b;
    let _ = b.child.kill();
    let _ = b.child.wait();
}

async fn wait_health_up(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while health_of(addr, "").await != Some(ServingStatus::Serving) {
        assert!(Instant::now() < deadline, "{addr} never became healthy");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Settings of an API-only process on `task_queue` against the shared dev server.
fn api_role(name: &str, task_queue: &str) -> loyalty::config::Settings {
    let mut s = settings(name);
    s.role = loyalty::config::Role::Api;
    s.task_queue = task_queue.into();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_role_works_against_the_reference_guides_worker() {
    let queue = "guide-worker-queue";
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/guide_worker.py");
    let log = std::fs::File::create(common::scratch_dir("guide-worker").join("worker.log")).unwrap();
    let mut worker = std::process::Command::new("python3")
        .args([script, &common::temporal_address(), queue])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("python3 runs the guide's worker");
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let mut settings = api_role("guide-api", queue);
    settings.accrual_batching = false; // the guide's worker knows only add_points
    let (addr, app) = start_app(settings, stopped);
    let mut grpc = LoyaltyServiceClient::new(grpc_channel(addr).await);

    grpc.accrue(accrual("guide-1", "g1", 1_500)).await.expect("accrue via the guide's workflow");
    let s = summary_when(&mut grpc, "guide-1", Duration::from_secs(60), |s| s.points_balance == 1_500).await;
    assert_eq!((s.tier.as_str(), s.is_active), ("Silver", true));
    let r = grpc.redeem(common::redemption("guide-1", "gr1", 500, "mug")).await.expect("redeem").into_inner();
    assert_eq!((r.redeemed, r.remaining_balance), (500, 1_000));
    let too_much = grpc.redeem(common::redemption("guide-1", "gr2", 5_000, "car")).await.unwrap_err();
    assert_eq!(too_much.code(), tonic::Code::FailedPrecondition, "{too_much:?}");
    let unknown = grpc.redeem(common::redemption("guide-nobody", "x", 1, "mug")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");

    let _ = worker.kill();
    let _ = worker.wait();
    let _ = stop.send(());
    app.join().unwrap();
}

/// The reference guide's own worker runs an account's first run (its Python
/// code, its activities) until Temporal suggests a new run and the guide's
/// code continues-as-new; our worker takes the next run from the state the
/// guide carried. The account keeps the guide's totals and tier, its ledger
/// opens with them, and it goes on deciding and writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_worker_takes_the_next_run_of_an_account_the_guides_worker_continued_as_new() {
    let server = loyalty::devserver::DevServer::start(&loyalty::devserver::DevServerOptions {
        dynamic_config: vec!["limit.historyCount.suggestContinueAsNew=60".into()],
        ..Default::default()
    })
    .expect("dev server starts");
    let queue = "guide-handover-queue";
    let c = "handover-1";
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/guide_handover.py");
    let log = std::fs::File::create(common::scratch_dir("guide-handover").join("worker.log")).unwrap();
    let mut guide = std::process::Command::new("python3")
        .args([script, &server.address(), queue])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("python3 runs the guide's worker");
    // The API alone first: our worker must not take the guide's first run.
    let mut api = common::settings_against("handover-api", &server.address());
    (api.role, api.task_queue, api.accrual_batching) = (loyalty::config::Role::Api, queue.into(), false);
    let mut worker = api.clone();
    worker.role = loyalty::config::Role::Worker;
    let database_url = api.database_url.clone();
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel();
    let (addr, api_thread) = start_app(api, api_stopped);
    let mut grpc = LoyaltyServiceClient::new(grpc_channel(addr).await);
    let temporal = common::temporal_at(&server.address()).await;
    let handle = temporal.get_workflow_handle::<loyalty::workflow::LoyaltyEntityWorkflow>(format!("loyalty-{c}"));
    let run_of = async || {
        let info = handle.describe(Default::default()).await.unwrap().raw_description.workflow_execution_info;
        let info = info.unwrap();
        (info.first_run_id.clone(), info.execution.map(|e| e.run_id).unwrap_or_default())
    };

    // The guide's run: accruals of 150 until its code continues-as-new.
    let mut sent = 0;
    grpc.accrue(accrual(c, "g0", 150)).await.expect("accrued through the guide's workflow");
    let first = run_of().await.0;
    while run_of().await.1 == first {
        sent += 1;
        assert!(sent < 40, "the guide's run continues-as-new");
        grpc.accrue(accrual(c, &format!("g{sent}"), 150)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let carried = 150 * (sent + 1);
    // Our worker takes the next run; the guide's refuses it.
    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel();
    let (_, worker_thread) = start_app(worker, worker_stopped);
    let s = summary_when(&mut grpc, c, Duration::from_secs(60), |s| s.points_balance == carried).await;
    let _ = guide.kill();
    let _ = guide.wait();
    let tier = loyalty::domain::Tier::for_lifetime(carried);
    assert_eq!((s.lifetime_points, s.tier.as_str()), (carried, tier.as_str()), "{s:?}");

    // It goes on: an accrual and a redemption, decided and written by ours.
    grpc.accrue(accrual(c, "ours-1", 40)).await.unwrap();
    let r = grpc.redeem(common::redemption(c, "ours-r1", 100, "mug")).await.expect("redeemed").into_inner();
    assert_eq!(r.remaining_balance, carried + 40 - 100);
    let ledger = loyalty::ledger::Ledger::connect(&database_url).await.unwrap();
    let rows = common::rows_when(&ledger, c, 3).await;
    let kinds: Vec<_> = rows.iter().map(|r| (r.kind.as_str(), r.points, r.lifetime_delta)).collect();
    assert_eq!(
        kinds,
        [("opening", carried, carried), ("accrual", 40, 40), ("redemption", -100, 0)],
        "the ledger opens with what the guide carried"
    );
    let totals = ledger.totals(c).await.unwrap().unwrap();
    assert_eq!((totals.balance, totals.lifetime), (carried - 60, carried + 40));
    assert!(ledger.audit(c).await.unwrap().unwrap().inconsistencies().is_empty());
    let events = ledger.events(c, 0, 10, false).await.unwrap();
    assert_eq!(events[0].event_type, "account.opened");
    let _ = stop_worker.send(());
    worker_thread.join().unwrap();
    let _ = stop_api.send(());
    api_thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_worker_accrue_is_accepted_and_redeem_ends_within_its_deadline() {
    let mut settings = api_role("no-worker", "nobody-polls-this-queue");
    settings.rpc_timeout = Duration::from_secs(2);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (addr, app) = start_app(settings, stopped);
    let mut grpc = LoyaltyServiceClient::new(grpc_channel(addr).await);
    grpc.accrue(accrual("lonely-1", "e1", 10)).await.expect("accepted: durably queued in Temporal");
    let started = Instant::now();
    let status = grpc.redeem(common::redemption("lonely-1", "r1", 1, "mug")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "within the 2 s default deadline: {:?}", started.elapsed());
    let _ = stop.send(());
    app.join().unwrap();
}

/// Clients accruing and redeeming on their own customers, retrying
/// UNAVAILABLE on the other server with the same event ids.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<ClientOutcome>>,
}

/// What one load client did.
struct ClientOutcome {
    customer: String,
    accrued: i64,
    redeemed: i64,
    failures: Vec<tonic::Status>,
}

impl Load {
    fn start(servers: &[LoyaltyServiceClient<tonic::transport::Channel>], name: &str, clients: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|task| {
                let (servers, stop) = (servers.to_vec(), stop.clone());
                let customer = format!("{name}-{task}");
                tokio::spawn(async move {
                    let (mut accrued, mut redeemed, mut failures) = (0i64, 0i64, Vec::new());
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let event = format!("a-{i}");
                        let r = with_retries(&servers, task, |mut g| {
                            let req = accrual(&customer, &event, 10);
                            async move { g.accrue(req).await }
                        })
                        .await;
                        match r {
                            Ok(_) => accrued += 10,
                            Err(s) => failures.push(s),
                        }
                        if i % 5 == 4 {
                            let event = format!("r-{i}");
                            let r = with_retries(&servers, task, |mut g| {
                                let req = common::redemption(&customer, &event, 1, "sticker");
                                async move { g.redeem(req).await }
                            })
                            .await;
                            match r {
                                Ok(_) => redeemed += 1,
                                // Accruals not yet applied can leave too little: an answer, not a failure.
                                Err(s) if s.code() == tonic::Code::FailedPrecondition => {}
                                Err(s) => failures.push(s),
                            }
                        }
                        i += 1;
                    }
                    ClientOutcome { customer, accrued, redeemed, failures }
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the clients, checks every account through `grpc` (no failed
    /// call, nothing lost, nothing doubled) and returns the successful calls.
    async fn finish_and_check(self, mut grpc: LoyaltyServiceClient<tonic::transport::Channel>) -> i64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut calls = 0;
        for task in self.tasks {
            let ClientOutcome { customer, accrued, redeemed, failures } = task.await.unwrap();
            assert!(failures.is_empty(), "{customer}: failed calls {failures:?}");
            calls += accrued / 10 + redeemed;
            let s = summary_when(&mut grpc, &customer, Duration::from_secs(90), |s| s.lifetime_points == accrued).await;
            assert_eq!(s.points_balance, accrued - redeemed, "{customer}: nothing lost, nothing doubled");
        }
        calls
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_of_two_processes_loses_nothing() {
    let database_url = common::fresh_database_url(common::Db::Postgres, "sigkill");
    let env = vec![("LOYALTY_TASK_QUEUE", "sigkill-queue".to_string()), ("LOYALTY_DATABASE_URL", database_url.clone())];
    let mut a = serve("sigkill-a", &env);
    let mut b = serve("sigkill-b", &env);
    for p in [&a, &b] {
        wait_health_up(p.addr).await;
    }
    let servers = vec![lazy_client(a.addr).await, lazy_client(b.addr).await];
    let load = Load::start(&servers, "sigkill", 8);
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.child.kill().expect("SIGKILL");
    let _ = a.child.wait();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let calls = load.finish_and_check(lazy_client(b.addr).await).await;
    assert!(calls > 50, "the load was real: {calls} successful calls");

    let ledger = loyalty::ledger::Ledger::connect(&database_url).await.unwrap();
    for task in 0..8 {
        let audit = ledger.audit(&format!("sigkill-{task}")).await.unwrap().expect("in the ledger");
        assert!(audit.inconsistencies().is_empty(), "{audit:?}");
    }
    let _ = b.child.kill();
    let _ = b.child.wait();
}

/// A throwaway PKI made with the openssl CLI: a CA, a server certificate for
/// 127.0.0.1/localhost and a client certificate, all signed by the CA.
struct Pki {
    dir: std::path::PathBuf,
}

impl Pki {
    fn make(name: &str) -> Self {
        let dir = common::scratch_dir(name);
        let run = |args: &[&str]| {
            let out =
                std::process::Command::new("openssl").args(args).current_dir(&dir).output().expect("openssl runs");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=loyalty-test-ca"],
        ]
        .concat());
        for (who, usage, san) in
            [("server", "serverAuth", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"), ("client", "clientAuth", "")]
        {
            std::fs::write(dir.join(format!("{who}.ext")), format!("{san}extendedKeyUsage={usage}\n")).unwrap();
            run(&[
                &["req"][..],
                &ec,
                &["-keyout", &format!("{who}.key"), "-out", &format!("{who}.csr"), "-subj", &format!("/CN={who}")],
            ]
            .concat());
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{who}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{who}.ext"),
            ]);
        }
        Self { dir }
    }

    fn path(&self, file: &str) -> std::path::PathBuf {
        self.dir.join(file)
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).unwrap()
    }

    /// A TLS channel trusting the CA, presenting the client certificate if asked.
    async fn channel(
        &self,
        addr: SocketAddr,
        with_client_cert: bool,
    ) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.read("ca.pem"))).domain_name("localhost");
        if with_client_cert {
            tls = tls.identity(Identity::from_pem(self.read("client.pem"), self.read("client.key")));
        }
        tonic::transport::Channel::from_shared(format!("https://{addr}")).unwrap().tls_config(tls)?.connect().await
    }
}

fn sha256_hex(key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A client that sends `key` as a bearer token.
fn keyed(
    channel: tonic::transport::Channel,
    key: &'static str,
) -> LoyaltyServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, impl tonic::service::Interceptor>,
> {
    LoyaltyServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
        Ok(req)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_and_api_keys_refuse_before_any_work() {
    let pki = Pki::make("tls");
    let keys = pki.path("api-keys");
    std::fs::write(
        &keys,
        format!("checkout {} write,read\ndashboard {} read\n", sha256_hex("checkout-key"), sha256_hex("dashboard-key")),
    )
    .unwrap();
    let mut settings = settings("tls");
    settings.tls = Some(loyalty::config::TlsFiles {
        cert: pki.path("server.pem"),
        key: pki.path("server.key"),
        client_ca: Some(pki.path("ca.pem")),
    });
    settings.api_keys = Some(loyalty::grpc::auth::ApiKeys::load(&keys).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (addr, app) = start_app(settings, stopped);

    // Without TLS, or without a client certificate, there is no connection at all.
    let plain = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await;
    let plain_call = match plain {
        Ok(ch) => LoyaltyServiceClient::new(ch)
            .get_summary(loyalty::grpc::pb::GetSummaryRequest { customer_id: "x".into() })
            .await
            .err(),
        Err(_) => None,
    };
    assert!(
        // No answer from the server: the connection fails or breaks (a transport error, not a status it sent).
        plain_call.as_ref().is_none_or(unavailable),
        "{plain_call:?}"
    );
    // Even with a valid key, a client without a certificate gets no answer from the server.
    let anonymous = match pki.channel(addr, false).await {
        Ok(ch) => keyed(ch, "checkout-key")
            .get_summary(loyalty::grpc::pb::GetSummaryRequest { customer_id: "x".into() })
            .await
            .err(),
        Err(_) => None,
    };
    assert!(anonymous.as_ref().is_none_or(unavailable), "{anonymous:?}");
    if let Some(status) = &anonymous {
        assert_ne!(status.code(), tonic::Code::NotFound, "the server answered a client without a certificate");
    }

    let channel = pki.channel(addr, true).await.expect("mutual TLS connects");
    let mut health = HealthClient::new(channel.clone());
    // SERVING once the worker polls (readiness.rs), moments after the start.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = health.check(HealthCheckRequest { service: String::new() }).await.expect("health needs no key");
        if h.into_inner().status == ServingStatus::Serving as i32 {
            break;
        }
        assert!(Instant::now() < deadline, "never SERVING");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let no_key = LoyaltyServiceClient::new(channel.clone()).accrue(accrual("tls-1", "e1", 10)).await.unwrap_err();
    assert_eq!(no_key.code(), tonic::Code::Unauthenticated, "{no_key:?}");
    let wrong = keyed(channel.clone(), "guess").accrue(accrual("tls-1", "e1", 10)).await.unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated, "{wrong:?}");
    let mut dashboard = keyed(channel.clone(), "dashboard-key");
    let denied = dashboard.accrue(accrual("tls-1", "e1", 10)).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    let nothing =
        dashboard.get_summary(loyalty::grpc::pb::GetSummaryRequest { customer_id: "tls-1".into() }).await.unwrap_err();
    assert_eq!(nothing.code(), tonic::Code::NotFound, "a refused call applied nothing");

    keyed(channel.clone(), "checkout-key")
        .accrue(accrual("tls-1", "e1", 10))
        .await
        .expect("the checkout key may accrue");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = dashboard.get_summary(loyalty::grpc::pb::GetSummaryRequest { customer_id: "tls-1".into() }).await;
        if s.as_ref().is_ok_and(|s| s.get_ref().points_balance == 10) {
            break;
        }
        assert!(Instant::now() < deadline, "never applied: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The CLI speaks TLS, mutual TLS and API keys too.
    let cli = |key: &str| {
        let ca = pki.path("ca.pem");
        let cert = pki.path("client.pem");
        let client_key = pki.path("client.key");
        std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
            .args([
                "summary",
                "--customer",
                "tls-1",
                "--json",
                "--server",
                &format!("https://localhost:{}", addr.port()),
            ])
            .arg("--ca-cert")
            .arg(ca)
            .arg("--client-cert")
            .arg(cert)
            .arg("--client-key")
            .arg(client_key)
            .env("LOYALTY_API_KEY", key)
            .output()
            .expect("loyalty runs")
    };
    let ok = cli("dashboard-key");
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("\"points_balance\":10"));
    assert_eq!(cli("guess").status.code(), Some(tonic::Code::Unauthenticated as i32));
    let _ = stop.send(());
    app.join().unwrap();
}

/// Kubernetes' gRPC probes speak plaintext without a key: with TLS and API keys
/// on, they reach health on its own address. At shutdown health turns
/// NOT_SERVING first while new RPCs still succeed for the shutdown delay; only
/// then does the listener close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_reach_plaintext_health_and_shutdown_turns_not_serving_before_closing() {
    let pki = Pki::make("probes");
    let keys = pki.path("api-keys");
    std::fs::write(&keys, format!("checkout {} write,read\n", sha256_hex("checkout-key"))).unwrap();
    let mut settings = settings("probes");
    settings.tls =
        Some(loyalty::config::TlsFiles { cert: pki.path("server.pem"), key: pki.path("server.key"), client_ca: None });
    settings.api_keys = Some(loyalty::grpc::auth::ApiKeys::load(&keys).unwrap());
    let health_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    settings.health_addr = Some(health_addr);
    let delay = Duration::from_secs(6);
    settings.shutdown_delay = delay;
    settings.drain_timeout = Duration::from_secs(5);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (addr, app) = start_app(settings, stopped);

    // The probe's view: plaintext, no key, on the health address.
    wait_health(health_addr, ServingStatus::Serving, Duration::from_secs(10)).await;
    assert_eq!(health_of(health_addr, "liveness").await, Some(ServingStatus::Serving));
    // Only health is served there: the API needs TLS and a key on its own port.
    let on_health_port = lazy_client(health_addr).await.accrue(accrual("probe-1", "e0", 1)).await.unwrap_err();
    assert_eq!(on_health_port.code(), tonic::Code::Unimplemented, "{on_health_port:?}");
    // Plaintext on the API port gets no answer: probes there would fail.
    assert_eq!(health_of(addr, "").await, None, "the API port speaks only TLS");
    let tls = pki.channel(addr, false).await.expect("TLS connects");
    let mut checkout = keyed(tls.clone(), "checkout-key");
    checkout.accrue(accrual("probe-1", "e1", 10)).await.expect("accrues over TLS with a key");
    // Health is on the API port too, for clients that look there.
    let h = HealthClient::new(tls).check(HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(h.into_inner().status, ServingStatus::Serving as i32);

    let _ = stop.send(());
    let stopping = Instant::now();
    wait_health(health_addr, ServingStatus::NotServing, Duration::from_secs(2)).await;
    assert_eq!(health_of(health_addr, "liveness").await, Some(ServingStatus::Serving), "a draining pod is alive");
    // NOT_SERVING, yet still serving: on the open channel and on a new connection.
    let mut calls = 0;
    // Rounds start up to 3 s before the delay ends, so a slow round on a
    // busy machine still ends before the listener closes.
    while stopping.elapsed() < delay - Duration::from_secs(3) {
        checkout.accrue(accrual("probe-1", &format!("late-{calls}"), 1)).await.expect("served during the delay");
        let fresh = pki.channel(addr, false).await.expect("the listener is open during the delay");
        keyed(fresh, "checkout-key")
            .get_summary(loyalty::grpc::pb::GetSummaryRequest { customer_id: "probe-1".into() })
            .await
            .expect("a new connection is served during the delay");
        calls += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(calls >= 3, "only {calls} rounds during the delay");
    assert!(!app.is_finished(), "stopped before the delay ended");
    tokio::task::spawn_blocking(move || app.join()).await.unwrap().expect("app stops cleanly");
    assert!(stopping.elapsed() >= delay, "stopped after {:?}, before the delay", stopping.elapsed());
    assert!(pki.channel(addr, false).await.is_err(), "the listener is closed after the drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_past_its_rate_is_refused_with_a_retry_hint_and_other_keys_are_not() {
    let keys = common::scratch_dir("rate").join("api-keys");
    std::fs::write(&keys, format!("a {} read\nb {} read\n", sha256_hex("key-a"), sha256_hex("key-b"))).unwrap();
    let mut settings = api_role("rate", "nobody-polls-the-rate-queue");
    settings.api_keys = Some(loyalty::grpc::auth::ApiKeys::load(&keys).unwrap());
    settings.rate_limits.read = Some(loyalty::grpc::rate::Rate::parse("3/min").unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (addr, app) = start_app(settings, stopped);
    wait_health(addr, ServingStatus::Serving, Duration::from_secs(10)).await;
    let channel = grpc_channel(addr).await;
    let read = |key: &'static str| {
        let mut client = keyed(channel.clone(), key);
        async move { client.get_summary(loyalty::grpc::pb::GetSummaryRequest { customer_id: "rate-1".into() }).await }
    };
    for _ in 0..3 {
        // Past the limiter: answered by the service (no such account).
        assert_eq!(read("key-a").await.unwrap_err().code(), tonic::Code::NotFound);
    }
    let refused = read("key-a").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("API key \"a\""), "{refused:?}");
    let hint = common::retry_hint(&refused).expect("a retry hint");
    assert!(hint > Duration::from_secs(10) && hint <= Duration::from_secs(21), "{hint:?}");
    assert_eq!(read("key-b").await.unwrap_err().code(), tonic::Code::NotFound, "another key has its own bucket");
    assert_eq!(health_of(addr, "").await, Some(ServingStatus::Serving), "health is never limited");
    let _ = stop.send(());
    app.join().unwrap();
}

/// A namespace Temporal does not have is the service's misconfiguration, not
/// the caller's: readiness says so and every call is UNAVAILABLE, never
/// "customer not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_namespace_is_unavailable_and_not_ready_never_customer_not_found() {
    let mut settings = api_role("namespace", "namespace-queue");
    settings.temporal_client = temporalio_client::ClientOptions::new("no-such-namespace").build();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (addr, app) = start_app(settings, stopped);
    wait_health(addr, ServingStatus::NotServing, Duration::from_secs(5)).await;
    assert_eq!(health_of(addr, "liveness").await, Some(ServingStatus::Serving), "no restart would fix it");
    let mut grpc = LoyaltyServiceClient::new(grpc_channel(addr).await);
    let read = grpc.get_summary(loyalty::grpc::pb::GetSummaryRequest { customer_id: "ns-1".into() }).await.unwrap_err();
    let write = grpc.accrue(accrual("ns-1", "e1", 10)).await.unwrap_err();
    let redeem = grpc.redeem(common::redemption("ns-1", "r1", 1, "mug")).await.unwrap_err();
    for status in [read, write, redeem] {
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.message().contains("Temporal namespace"), "{status:?}");
    }
    let _ = stop.send(());
    app.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_limit_calls_are_refused_and_health_still_answers() {
    let mut settings = api_role("limit", "nobody-polls-the-limit-queue");
    settings.max_concurrent_rpcs = 1;
    settings.rpc_timeout = Duration::from_secs(3);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (addr, app) = start_app(settings, stopped);
    let mut grpc = LoyaltyServiceClient::new(grpc_channel(addr).await);
    grpc.accrue(accrual("limit-1", "e1", 10)).await.unwrap();
    // No worker: this Redeem holds the only slot until its deadline.
    let busy = {
        let mut grpc = grpc.clone();
        tokio::spawn(async move { grpc.redeem(common::redemption("limit-1", "r1", 1, "mug")).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = grpc.accrue(accrual("limit-1", "e2", 10)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert_eq!(health_of(addr, "").await, Some(ServingStatus::Serving), "health is never refused");
    assert_eq!(busy.await.unwrap().unwrap_err().code(), tonic::Code::DeadlineExceeded);
    grpc.accrue(accrual("limit-1", "e2", 10)).await.expect("a free slot again");
    let _ = stop.send(());
    app.join().unwrap();
}

/// GETs `path` over plain HTTP/1.1 and returns the body.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("metrics endpoint listens");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_rpcs_ledger_entries_and_the_workers_slots() {
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut settings = settings("metrics");
    settings.metrics_addr = Some(metrics_addr);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (addr, app) = start_app(settings, stopped);
    let mut grpc = LoyaltyServiceClient::new(grpc_channel(addr).await);
    grpc.accrue(accrual("metric-1", "e1", 10)).await.unwrap();
    summary_when(&mut grpc, "metric-1", Duration::from_secs(60), |s| s.points_balance == 10).await;
    grpc.redeem(common::redemption("metric-1", "r1", 4, "mug")).await.unwrap();
    let _ = grpc.redeem(common::redemption("metric-1", "r2", 400, "car")).await.unwrap_err();

    let body = http_get(metrics_addr, "/metrics").await;
    let line = |needle: &[&str]| {
        body.lines().find(|l| !l.starts_with('#') && needle.iter().all(|n| l.contains(n))).map(str::to_owned)
    };
    let count = |needle: &[&str]| -> f64 {
        line(needle)
            .and_then(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{body}"))
    };
    assert_eq!(count(&["loyalty_rpc_requests_total{", "method=\"Accrue\"", "status=\"Ok\""]), 1.0);
    assert_eq!(count(&["loyalty_rpc_requests_total{", "method=\"Redeem\"", "status=\"FailedPrecondition\""]), 1.0);
    assert!(count(&["loyalty_rpc_duration_seconds_count{", "method=\"GetSummary\""]) >= 1.0);
    assert_eq!(count(&["loyalty_ledger_entries_total{", "kind=\"accrual\"", "outcome=\"applied\""]), 1.0);
    assert_eq!(count(&["loyalty_ledger_entries_total{", "kind=\"redemption\"", "outcome=\"applied\""]), 1.0);
    assert!(line(&["temporal_worker_task_slots_available"]).is_some(), "the SDK's worker metrics are there too");
    assert!(
        line(&["temporal_activity_execution_latency"]).is_some()
            || line(&["temporal_activity_schedule_to_start"]).is_some(),
        "activity metrics: {body}"
    );
    assert!(line(&["grpc.health"]).is_none(), "health probes are not counted");
    // The Temporal client's requests (and, when any fail, `request_failure_total`), by operation.
    assert!(line(&["request_total{", "operation=\"SignalWithStartWorkflowExecution\""]).is_some(), "{body}");
    let _ = stop.send(());
    app.join().unwrap();
}

/// Runs the Temporal CLI's `worker deployment set-current-version` until the
/// version is known to the server (it registers when its worker first polls).
async fn set_current_version(deployment: &str, build_id: &str) {
    let cli = loyalty::devserver::find_cli().expect("temporal CLI");
    let address = common::temporal_address();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = tokio::process::Command::new(&cli)
            .args([
                "worker",
                "deployment",
                "set-current-version",
                "--deployment-name",
                deployment,
                "--build-id",
                build_id,
            ])
            .args(["--address", &address, "--yes"])
            .output()
            .await
            .expect("temporal runs");
        if out.status.success() {
            return;
        }
        assert!(Instant::now() < deadline, "set-current-version {build_id}: {}", String::from_utf8_lossy(&out.stderr));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The build id the account's current run is pinned to.
async fn pinned_build(customer: &str) -> Option<String> {
    let client = common::temporal().await;
    let handle = client.get_workflow_handle::<loyalty::workflow::LoyaltyEntityWorkflow>(format!("loyalty-{customer}"));
    let d = handle.describe(temporalio_client::WorkflowDescribeOptions::default()).await.ok()?;
    let info = d.raw_description.workflow_execution_info?.versioning_info?;
    (info.behavior == temporalio_common::protos::temporal::api::enums::v1::VersioningBehavior::Pinned as i32)
        .then_some(info.deployment_version?.build_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_accounts_move_to_the_new_build_at_continue_as_new() {
    let deployment = format!("loyalty-test-{}", std::process::id());
    // Both builds share one ledger, as two image versions of one service would.
    let database_url = settings("versioning").database_url;
    let versioned = |build: &str| {
        let mut s = settings(&format!("versioning-{build}"));
        s.task_queue = "versioned-queue".into();
        s.database_url = database_url.clone();
        s.deployment = Some(loyalty::config::DeploymentVersion { name: deployment.clone(), build_id: build.into() });
        s
    };
    let (stop_v1, stopped_v1) = tokio::sync::oneshot::channel();
    let (addr, app_v1) = start_app(versioned("v1"), stopped_v1);
    set_current_version(&deployment, "v1").await;
    let mut grpc = LoyaltyServiceClient::new(grpc_channel(addr).await);
    grpc.accrue(accrual("ver-1", "e1", 10)).await.unwrap();
    summary_when(&mut grpc, "ver-1", Duration::from_secs(60), |s| s.points_balance == 10).await;
    assert_eq!(pinned_build("ver-1").await.as_deref(), Some("v1"), "the entity runs pinned to v1");

    let (stop_v2, stopped_v2) = tokio::sync::oneshot::channel();
    let (_, app_v2) = start_app(versioned("v2"), stopped_v2);
    set_current_version(&deployment, "v2").await;
    // Enough events to make the v1 run continue as new (servers that tell a run its
    // target version changed make it continue sooner); the new run starts on v2.
    let more = loyalty::workflow::MAX_ACCRUALS_PER_RUN as i64 + 1;
    let sent = common::fan_out(&grpc, 32, 0..more, |mut g, i| async move {
        g.accrue(accrual("ver-1", &format!("more-{i}"), 1)).await.map(|_| ())
    })
    .await;
    assert!(sent.iter().all(Result::is_ok));
    let deadline = Instant::now() + Duration::from_secs(60);
    while pinned_build("ver-1").await.as_deref() != Some("v2") {
        assert!(Instant::now() < deadline, "the account never moved to v2: {:?}", pinned_build("ver-1").await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let s = summary_when(&mut grpc, "ver-1", Duration::from_secs(60), |s| s.points_balance == 10 + more).await;
    assert_eq!(s.lifetime_points, 10 + more, "nothing lost across the upgrade");
    let _ = stop_v1.send(());
    let _ = stop_v2.send(());
    app_v1.join().unwrap();
    app_v2.join().unwrap();
}

/// `message` with a W3C `traceparent` in trace `trace`.
fn traced<T>(trace: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("traceparent", format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap());
    request
}

/// Received spans as (trace id, name).
type SpanLog = std::sync::Arc<std::sync::Mutex<Vec<(Vec<u8>, String)>>>;

/// An OTLP/gRPC trace receiver that keeps every span it is sent.
#[derive(Default, Clone)]
struct Collector {
    spans: SpanLog,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse>,
        tonic::Status,
    > {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (s.trace_id, s.name)));
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_is_carried_into_the_workflow_and_its_activities() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let receiver = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut settings = settings("tracing");
    settings.otlp_endpoint = Some(format!("http://{otlp}"));
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (addr, app) = start_app(settings, stopped);
    let mut grpc = LoyaltyServiceClient::new(grpc_channel(addr).await);

    let accrue_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let redeem_trace = "5cf92f3577b34da6a3ce929d0e0e4737";
    grpc.accrue(traced(accrue_trace, accrual("traced-1", "e1", 10))).await.unwrap();
    summary_when(&mut grpc, "traced-1", Duration::from_secs(60), |s| s.points_balance == 10).await;
    grpc.redeem(traced(redeem_trace, common::redemption("traced-1", "r1", 4, "mug"))).await.unwrap();
    let _ = stop.send(());
    app.join().unwrap(); // stopping flushes the spans

    let spans = collector.spans.lock().unwrap().clone();
    let names_in = |trace: &str| -> Vec<String> {
        let id: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&trace[2 * i..2 * i + 2], 16).unwrap()).collect();
        spans.iter().filter(|(t, _)| *t == id).map(|(_, n)| n.clone()).collect()
    };
    let accrue = names_in(accrue_trace);
    for expected in ["loyalty.v1.LoyaltyService/Accrue", "SignalWithStartWorkflow:", "HandleSignal:add_points"] {
        assert!(accrue.iter().any(|n| n.starts_with(expected)), "no {expected} in the caller's trace: {accrue:?}");
    }
    let redeem = names_in(redeem_trace);
    // Redeem runs no activity: the account decides it in its update handler.
    for expected in ["loyalty.v1.LoyaltyService/Redeem", "HandleUpdate:redeem_points"] {
        assert!(redeem.iter().any(|n| n.starts_with(expected)), "no {expected} in the caller's trace: {redeem:?}");
    }
    receiver.abort();
}

/// `loyalty bench` runs every phase (mixed, lots and earning included) against a real service
/// and dev server and writes complete results. A smoke run with tiny numbers:
/// it checks that the benchmark works, that batching shows in history and
/// that the mixed load's balance adds up, not how fast anything is.
#[test]
fn the_benchmark_runs_every_phase_and_writes_its_results() {
    let shared = common::shared();
    let out = common::scratch_dir("bench");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .arg("bench")
        .args(["--server", &format!("http://{}", shared.grpc_addr)])
        .args(["--temporal-address", &common::temporal_address(), "--task-queue", &shared.task_queue])
        .args(["--concurrency", "1,4", "--customers", "3", "--accruals", "2", "--summaries", "2", "--redeems", "1"])
        .args(["--backlog", "60", "--reference-backlog", "10", "--stream-seconds", "2", "--memory-accounts", "20"])
        .args(["--mixed-seconds", "2", "--mixed-accrue-callers", "2", "--lots", "200", "--lots-summaries", "8"])
        .args(["--alternating-rounds", "2"])
        // The application runs inside this test process.
        .args(["--service-pid", &std::process::id().to_string()])
        .args(["--bench-database-url", &format!("sqlite:{}/bench.db", out.display())])
        .args(["--out", out.to_str().unwrap()])
        .env_remove("TEMPORAL_CONFIG_FILE")
        .output()
        .expect("loyalty runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench failed: {stderr}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();

    let api = results["api"].as_array().unwrap();
    assert_eq!(api.len(), 16, "8 operations at 2 levels: {api:?}");
    assert!(api.iter().all(|op| op["failed"] == 0 && op["ok"].as_u64() > Some(0)), "{api:?}");
    assert!(api.iter().all(|op| op["service_cpu_ms_per_call"].is_number()), "service CPU read: {api:?}");

    let backlogs = results["hot"]["backlogs"].as_array().unwrap();
    let events = |processing: &str| {
        let b = backlogs.iter().find(|b| b["processing"] == processing).unwrap();
        b["events_per_accrual"].as_f64().unwrap()
    };
    // One activity per accrual writes 7 events per accrual; batches of up to 500 far fewer.
    assert!(events("batched") < 2.0, "{backlogs:?}");
    assert!(events("per_event_regular") > 6.0, "{backlogs:?}");
    assert!(results["hot"]["stream"]["accepted"].as_u64() > Some(0));
    // Accrue, Redeem and Adjust to one customer at once: each got through,
    // nothing failed for good, and the balance adds up to what callers were told.
    let mixed = &results["mixed"];
    let kinds: Vec<_> = mixed["calls"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["accrue", "redeem", "adjust"], "{mixed}");
    assert!(
        mixed["calls"].as_array().unwrap().iter().all(|c| c["ok"].as_u64() > Some(0) && c["errors"] == 0),
        "{mixed}"
    );
    assert_eq!(mixed["balance_drift"], 0, "{mixed}");
    assert_eq!(results["memory"]["accounts"], 20);
    // GetSummary on an account that took 200 lots, next to a fresh one.
    assert_eq!(results["lots"]["accruals"], 200);
    assert!(results["lots"]["p50_ratio"].as_f64().is_some_and(|r| r > 0.0), "{}", results["lots"]);
    // Accrue, Redeem and GetSummary in turn (10 customers, 2 rounds), and the history events per update.
    let alternating = &results["alternating"];
    let latency = alternating["latency"].as_array().unwrap();
    assert!(latency.len() == 3 && latency.iter().all(|l| l["calls"] == 20), "{alternating}");
    let events = alternating["events"].as_array().unwrap();
    assert!(events.len() == 5 && events.iter().all(|e| e["alone"].as_u64() > Some(0)), "{alternating}");
    // Accrue with an order vs points, PreviewAccrual vs GetSummary, at both levels (the
    // shared application runs the example earning rules), and the big order's evaluation.
    let earning = &results["earning"];
    let calls = earning["calls"].as_array().unwrap();
    assert!(calls.len() == 8 && calls.iter().all(|c| c["failed"] == 0 && c["ok"].as_u64() > Some(0)), "{earning}");
    assert!(earning["evaluation"]["micros_per_line"].as_f64().is_some_and(|us| us > 0.0), "{earning}");
    assert_eq!(results["targets"].as_array().unwrap().len(), 31, "every target judged");
    let chart = std::fs::read_to_string(out.join("chart.svg")).unwrap();
    assert!(chart.contains("Hot customer") && chart.contains("4 in flight") && chart.contains("Mixed load"));
}
