//! Test harness: one real Temporal dev server (from the installed CLI) and one
//! real application per test binary, reached through the generated client.

#![allow(dead_code)]

pub mod book;
pub mod deploy;
pub mod hot;
pub mod proxy;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use loyalty::app::Application;
use loyalty::config::{Overrides, Settings};
use loyalty::devserver::{DevServer, DevServerOptions};
use loyalty::grpc::pb::{self, loyalty_service_client::LoyaltyServiceClient};
use loyalty::ledger::Ledger;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};
use tonic::transport::Channel;

/// The application every test of this binary talks to.
pub struct Shared {
    /// Its gRPC address.
    pub grpc_addr: SocketAddr,
    /// Its ledger database URL.
    pub database_url: String,
    /// Its task queue.
    pub task_queue: String,
}

fn dev_server() -> &'static DevServer {
    static DEV: OnceLock<DevServer> = OnceLock::new();
    // LOYALTY_TEST_TEMPORAL_DB=<file> keeps the dev server's data, to read
    // a failed run's histories afterwards (`temporal server start-dev --db-filename`).
    let options = DevServerOptions {
        db_file: std::env::var_os("LOYALTY_TEST_TEMPORAL_DB").map(PathBuf::from),
        ..DevServerOptions::default()
    };
    DEV.get_or_init(|| {
        let dev = DevServer::start(&options).expect("temporal dev server starts");
        // LOYALTY_TEST_KEEP_ON_FAILURE=1 keeps a failed test's process (and
        // its dev server) alive for ten minutes, to read its histories.
        if std::env::var_os("LOYALTY_TEST_KEEP_ON_FAILURE").is_some() {
            eprintln!("dev server at {}", dev.address());
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                hook(info);
                std::thread::sleep(Duration::from_secs(600));
            }));
        }
        dev
    })
}

/// A scratch folder unique to this process.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loyalty-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Settings for an application on port 0 against the shared dev server.
pub fn settings(name: &str) -> Settings {
    settings_against(name, &dev_server().address())
}

/// Settings for an application on port 0 against the dev server at `temporal_address`.
pub fn settings_against(name: &str, temporal_address: &str) -> Settings {
    let overrides = Overrides {
        grpc_addr: Some("127.0.0.1:0".into()),
        task_queue: Some(format!("loyalty-test-{name}")),
        database_url: Some(format!("sqlite:{}/ledger.db", scratch_dir(name).display())),
        temporal_address: Some(temporal_address.to_owned()),
        role: None,
    };
    let mut settings = Settings::from_lookup(&overrides, |_| None).expect("test settings are valid");
    // The outage tests wait through the workflow's 30 s ledger backoff.
    settings.rpc_timeout = Duration::from_secs(120);
    settings
}

/// Builds and runs an application on its own thread and runtime (its worker
/// future is not `Send`), until `stop` resolves.
pub fn start_app(
    settings: Settings,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async move {
            // A dev server that just started may answer "Frontend is not healthy yet" for a moment.
            let mut attempts = 0;
            let app = loop {
                match Application::build(settings.clone()).await {
                    Ok(app) => break app,
                    Err(e) if attempts < 20 && e.to_string().contains("not healthy yet") => {
                        attempts += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => panic!("application builds: {e}"),
                }
            };
            ready_tx.send(app.grpc_addr()).expect("test waits");
            app.run_until(async move {
                let _ = stop.await;
            })
            .await
            .expect("application stops cleanly");
        });
    });
    let addr = ready_rx.recv_timeout(Duration::from_secs(60)).expect("application starts");
    (addr, thread)
}

/// The ledger of the binary's shared application: SQLite, or PostgreSQL when
/// `LOYALTY_TEST_LEDGER=postgres` (scripts/test.sh runs the API suite on both).
pub fn shared_db() -> Db {
    match std::env::var("LOYALTY_TEST_LEDGER").as_deref() {
        Ok("postgres") => Db::Postgres,
        Ok("sqlite") | Err(_) => Db::Sqlite,
        Ok(other) => panic!("LOYALTY_TEST_LEDGER must be sqlite or postgres, not {other:?}"),
    }
}

/// The binary's shared application, started on first use.
pub fn shared() -> &'static Shared {
    static APP: OnceLock<(Shared, tokio::sync::oneshot::Sender<()>)> = OnceLock::new();
    &APP.get_or_init(|| {
        // LOYALTY_TEST_LOG=warn (any tracing filter) shows the application's
        // and the worker's logs, which the tests otherwise leave off.
        if let Ok(filter) = std::env::var("LOYALTY_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
        }
        let mut settings = settings("shared");
        // The README's example earning rules (tests/api/orders.rs).
        settings.earning_rules = Some(
            loyalty::config::earning::load(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/earning-rules.example.yaml"))
                .expect("the example rules load"),
        );
        if shared_db() == Db::Postgres {
            settings.database_url = fresh_database_url(Db::Postgres, "shared");
        }
        let database_url = settings.database_url.clone();
        let task_queue = settings.task_queue.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let (grpc_addr, _thread) = start_app(settings, stop_rx);
        (Shared { grpc_addr, database_url, task_queue }, stop_tx)
    })
    .0
}

/// A gRPC client of the shared application.
pub async fn client() -> LoyaltyServiceClient<Channel> {
    LoyaltyServiceClient::new(grpc_channel(shared().grpc_addr).await)
}

/// A channel to a gRPC server.
pub async fn grpc_channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).expect("uri").connect().await.expect("grpc connects")
}

/// The shared application's ledger, opened from the test's own runtime.
pub async fn ledger() -> Ledger {
    Ledger::connect(&shared().database_url).await.expect("ledger opens")
}

/// The frontend address of this binary's dev server (started on first use).
pub fn temporal_address() -> String {
    dev_server().address()
}

/// A Temporal client of this binary's dev server.
pub async fn temporal() -> Client {
    temporal_at(&temporal_address()).await
}

/// A Temporal client of the dev server at `address`.
pub async fn temporal_at(address: &str) -> Client {
    let url = Url::parse(&format!("http://{address}")).expect("url");
    let connection = Connection::connect(ConnectionOptions::new(url).identity("loyalty-tests").build())
        .await
        .expect("temporal connects");
    Client::new(connection, ClientOptions::new("default").build()).expect("client")
}

/// Calls `call` once per item, at most `limit` at a time, each on its own
/// clone of the client (clones share one HTTP/2 connection); results in
/// completion order.
pub async fn fan_out<T, R, Fut>(
    grpc: &LoyaltyServiceClient<Channel>,
    limit: usize,
    items: impl IntoIterator<Item = T>,
    call: impl Fn(LoyaltyServiceClient<Channel>, T) -> Fut,
) -> Vec<R>
where
    Fut: std::future::Future<Output = R>,
{
    use futures::StreamExt;
    futures::stream::iter(items).map(|item| call(grpc.clone(), item)).buffer_unordered(limit).collect().await
}

/// An accrual request.
pub fn accrual(customer: &str, event: &str, points: i64) -> pb::AccrueRequest {
    pb::AccrueRequest {
        customer_id: customer.into(),
        event_id: event.into(),
        points,
        reason: "purchase".into(),
        source: "tests".into(),
        ..Default::default()
    }
}

/// A redemption request.
pub fn redemption(customer: &str, event: &str, points: i64, reward: &str) -> pb::RedeemRequest {
    pb::RedeemRequest { customer_id: customer.into(), event_id: event.into(), points, reward: reward.into() }
}

/// Polls the summary until `done` holds, or panics after `timeout` with the last one.
pub async fn summary_when(
    grpc: &mut LoyaltyServiceClient<Channel>,
    customer: &str,
    timeout: Duration,
    done: impl Fn(&pb::GetSummaryResponse) -> bool,
) -> pb::GetSummaryResponse {
    let deadline = Instant::now() + timeout;
    loop {
        let last = grpc.get_summary(pb::GetSummaryRequest { customer_id: customer.into() }).await;
        match last {
            Ok(r) if done(r.get_ref()) => return r.into_inner(),
            _ if Instant::now() > deadline => panic!("summary of {customer} never converged; last: {last:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A ledger database kind the suites run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// A SQLite file in a scratch folder.
    Sqlite,
    /// A fresh database on the PostgreSQL server named by `LOYALTY_TEST_POSTGRES_URL`.
    Postgres,
}

impl Db {
    /// A short tag, used to keep customers of the two suites apart.
    pub fn tag(self) -> &'static str {
        match self {
            Db::Sqlite => "sq",
            Db::Postgres => "pg",
        }
    }
}

/// The PostgreSQL server the tests use; scripts/test.sh starts one.
pub fn postgres_admin_url() -> String {
    std::env::var("LOYALTY_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "LOYALTY_TEST_POSTGRES_URL is not set: run the tests with scripts/test.sh, which starts a PostgreSQL \
             server, or point it at one (postgres://user@host:port/db)"
        )
    })
}

/// A new, empty ledger database URL of kind `db`, unique to `name` and this process.
pub fn fresh_database_url(db: Db, name: &str) -> String {
    match db {
        Db::Sqlite => format!("sqlite:{}/ledger.db", scratch_dir(&format!("{name}-sqlite")).display()),
        Db::Postgres => {
            let admin = postgres_admin_url();
            let database = format!("loyalty_{}_{}", std::process::id(), name.replace('-', "_"));
            let statement = format!("CREATE DATABASE {database}");
            // Its own thread: callers may be inside a runtime already.
            let admin_for_thread = admin.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    use sqlx::Connection;
                    let mut conn = sqlx::PgConnection::connect(&admin_for_thread).await.expect("postgres reachable");
                    sqlx::query(&statement).execute(&mut conn).await.expect("database created");
                });
            })
            .join()
            .expect("database creation");
            let base = admin.rsplit_once('/').map(|(base, _)| base).expect("URL has a database");
            format!("{base}/{database}")
        }
    }
}

/// Settings for an application on port 0 with its own task queue and a fresh ledger of kind `db`.
pub fn settings_on(db: Db, name: &str) -> Settings {
    let mut settings = settings(&format!("{name}-{}", db.tag()));
    settings.database_url = fresh_database_url(db, &format!("{name}_{}", db.tag()));
    settings
}

/// One application per ledger kind, shared by the tests of this binary.
pub fn app_on(db: Db) -> &'static Shared {
    static SQLITE: OnceLock<(Shared, tokio::sync::oneshot::Sender<()>)> = OnceLock::new();
    static POSTGRES: OnceLock<(Shared, tokio::sync::oneshot::Sender<()>)> = OnceLock::new();
    let cell = match db {
        Db::Sqlite => &SQLITE,
        Db::Postgres => &POSTGRES,
    };
    &cell
        .get_or_init(|| {
            let settings = settings_on(db, "ledger-app");
            let database_url = settings.database_url.clone();
            let task_queue = settings.task_queue.clone();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            let (grpc_addr, _thread) = start_app(settings, stop_rx);
            (Shared { grpc_addr, database_url, task_queue }, stop_tx)
        })
        .0
}

/// The retry delay a status suggests (`google.rpc.RetryInfo`), if any.
pub fn retry_hint(status: &tonic::Status) -> Option<Duration> {
    use tonic_types::StatusExt;
    status.get_details_retry_info().and_then(|info| info.retry_delay)
}

/// A real ledger outage: a trigger makes the real database refuse matching inserts.
pub struct Outage {
    db: sqlx::AnyPool,
    end: String,
}

pub async fn fail_inserts(trigger: &str, table: &str, when: &str) -> Outage {
    fail_inserts_on(&shared().database_url, shared_db(), trigger, table, when).await
}

/// [`fail_inserts`] on the ledger at `database_url`, of kind `kind`.
pub async fn fail_inserts_on(database_url: &str, kind: Db, trigger: &str, table: &str, when: &str) -> Outage {
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(database_url).await.expect("ledger database opens");
    let (statements, end) = match kind {
        Db::Sqlite => (
            vec![format!(
                "CREATE TRIGGER {trigger} BEFORE INSERT ON {table} WHEN {when}
                 BEGIN SELECT RAISE(ABORT, 'injected outage'); END"
            )],
            format!("DROP TRIGGER {trigger}"),
        ),
        Db::Postgres => (
            vec![
                format!(
                    "CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql
                     AS $$ BEGIN RAISE EXCEPTION 'injected outage'; END $$"
                ),
                format!(
                    "CREATE TRIGGER {trigger} BEFORE INSERT ON {table} FOR EACH ROW WHEN ({when})
                     EXECUTE FUNCTION {trigger}()"
                ),
            ],
            format!("DROP TRIGGER {trigger} ON {table}"),
        ),
    };
    for sql in statements {
        sqlx::query(&sql).execute(&db).await.expect("trigger created");
    }
    Outage { db, end }
}

pub async fn end_outage(outage: &Outage) {
    sqlx::query(&outage.end).execute(&outage.db).await.expect("trigger dropped");
}

/// A free port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A `loyalty serve` process.
pub struct Process {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

pub fn serve(name: &str, env: &[(&str, String)]) -> Process {
    serve_on(format!("127.0.0.1:{}", free_port()).parse().unwrap(), name, env)
}

/// `loyalty serve` on `addr` (appending to its log), e.g. again after a kill.
pub fn serve_on(addr: SocketAddr, name: &str, env: &[(&str, String)]) -> Process {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(scratch_dir(name).join("serve.log")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .arg("serve")
        .env("LOYALTY_GRPC_ADDR", addr.to_string())
        .env("TEMPORAL_ADDRESS", temporal_address())
        .env_remove("TEMPORAL_CONFIG_FILE")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("loyalty starts");
    Process { child, addr }
}

pub async fn lazy_client(addr: SocketAddr) -> LoyaltyServiceClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    LoyaltyServiceClient::new(channel)
}

/// Whether a call failed because its server was out of reach: UNAVAILABLE,
/// or a status tonic's client made up from a broken connection rather than
/// one the server sent (it reports a request refused by HTTP/2 GOAWAY as
/// CANCELLED and a reset connection as UNKNOWN, with the transport error as
/// the source; other gRPC clients report both as UNAVAILABLE and retry).
pub fn unavailable(status: &tonic::Status) -> bool {
    use std::error::Error;
    status.code() == tonic::Code::Unavailable
        || status.source().is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some())
}

/// A file-backed dev server on `port`, its data in `db` (so it can be stopped and restarted).
pub fn dev_server_on(port: u16, db: &std::path::Path) -> loyalty::devserver::DevServer {
    loyalty::devserver::DevServer::start(&loyalty::devserver::DevServerOptions {
        port,
        db_file: Some(db.to_path_buf()),
        ..Default::default()
    })
    .expect("dev server starts")
}

/// What one run of a workflow received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Signals (`WorkflowExecutionSignaled` events).
    pub signals: usize,
    /// Accepted updates (`WorkflowExecutionUpdateAccepted` events).
    pub updates: usize,
    /// Events in the run's history.
    pub events: usize,
    /// The cause of each `WorkflowTaskFailed` (`UnhandledCommand`, ...).
    pub task_failures: Vec<String>,
    /// `WorkflowTaskTimedOut` events, with their timeout type.
    pub task_timeouts: Vec<String>,
    /// Bytes of the state this run carried to the next (the
    /// continue-as-new's input), if it continued.
    pub carried_bytes: Option<usize>,
}

/// Every run of `workflow_id` so far, first to last, following
/// continue-as-new from the first run, with what each run received: to check
/// that a long-lived account continues-as-new, and that no run comes near
/// Temporal's per-run limits (10,000 signals, 2,000 updates).
pub async fn workflow_runs(workflow_id: &str) -> Vec<RunCounts> {
    workflow_runs_on(&temporal().await, workflow_id).await
}

/// [`workflow_runs`] through `temporal`.
pub async fn workflow_runs_on(temporal: &Client, workflow_id: &str) -> Vec<RunCounts> {
    use temporalio_client::{WorkflowDescribeOptions, WorkflowExecutionInfo};
    use temporalio_common::protos::temporal::api::enums::v1::{TimeoutType, WorkflowTaskFailedCause};
    use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

    let info = temporal
        .get_workflow_handle::<loyalty::workflow::LoyaltyEntityWorkflow>(workflow_id)
        .describe(WorkflowDescribeOptions::default())
        .await
        .expect("workflow described")
        .raw_description
        .workflow_execution_info
        .expect("execution info");
    let mut runs = Vec::new();
    let mut next = Some(info.first_run_id);
    while let Some(run_id) = next.take() {
        let events = WorkflowExecutionInfo::builder()
            .namespace("default")
            .workflow_id(workflow_id)
            .run_id(run_id)
            .build()
            .bind_untyped(temporal.clone())
            .fetch_history(Default::default())
            .into_events()
            .await
            .expect("history readable");
        let mut counts = RunCounts { events: events.len(), ..RunCounts::default() };
        for attributes in events.iter().filter_map(|e| e.attributes.as_ref()) {
            match attributes {
                Attributes::WorkflowExecutionSignaledEventAttributes(_) => counts.signals += 1,
                Attributes::WorkflowExecutionUpdateAcceptedEventAttributes(_) => counts.updates += 1,
                Attributes::WorkflowTaskFailedEventAttributes(a) => {
                    let cause = WorkflowTaskFailedCause::try_from(a.cause).map_or(a.cause.to_string(), |c| {
                        c.as_str_name().trim_start_matches("WORKFLOW_TASK_FAILED_CAUSE_").to_owned()
                    });
                    counts.task_failures.push(cause);
                }
                Attributes::WorkflowTaskTimedOutEventAttributes(a) => {
                    let kind = TimeoutType::try_from(a.timeout_type)
                        .map_or(a.timeout_type.to_string(), |t| t.as_str_name().to_owned());
                    counts.task_timeouts.push(kind);
                }
                Attributes::WorkflowExecutionContinuedAsNewEventAttributes(a) => {
                    counts.carried_bytes = a.input.as_ref().map(|i| i.payloads.iter().map(|p| p.data.len()).sum());
                    next = Some(a.new_execution_run_id.clone())
                }
                _ => {}
            }
        }
        runs.push(counts);
    }
    runs
}

/// The ledger rows of `customer`, oldest first, once it holds at least
/// `wanted` of them or 60 s have passed. The ledger records the account's
/// decisions a moment behind them, so it may lag the summary; the caller
/// then compares the rows exactly.
pub async fn rows_when(ledger: &Ledger, customer: &str, wanted: usize) -> Vec<loyalty::ledger::HistoryEntry> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let rows = ledger.entries(customer).await.expect("ledger readable");
        if rows.len() >= wanted || std::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts account `customer` on `task_queue` with `state` as its input,
/// exactly these JSON bytes: what another worker's continue-as-new carries
/// (no field of ours in it).
pub async fn start_with_state(temporal: &Client, task_queue: &str, customer: &str, state: &str) {
    use temporalio_common::data_converters::RawValue;
    use temporalio_common::protos::temporal::api::common::v1::Payload;
    let payload = Payload {
        metadata: [("encoding".to_owned(), b"json/plain".to_vec())].into(),
        data: state.as_bytes().to_vec(),
        external_payloads: vec![],
    };
    let workflow = temporalio_common::UntypedWorkflow::new("LoyaltyEntityWorkflow");
    let options = temporalio_client::WorkflowStartOptions::new(task_queue, format!("loyalty-{customer}")).build();
    temporal.start_workflow(workflow, RawValue { payloads: vec![payload] }, options).await.expect("starts");
}
