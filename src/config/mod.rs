//! Typed settings: defaults in code, environment overrides, flags over both,
//! validated once at start with errors that name the setting.

pub mod earning;
mod env;
pub mod program;

pub use crate::setting::ConfigError;

use crate::domain::program::Program;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use temporalio_client::envconfig::LoadClientConfigProfileOptions;
use temporalio_client::{ClientOptions, ConnectionOptions, Url};

use self::env::{Env, socket_addr};
use crate::grpc::auth::ApiKeys;
use crate::grpc::rate::RateLimits;
use crate::ledger::Ledger;

/// Default gRPC listen address.
pub const DEFAULT_GRPC_ADDR: &str = "0.0.0.0:50051";
/// Default Temporal task queue (the reference guide's).
pub const DEFAULT_TASK_QUEUE: &str = "loyalty-points-queue";
/// Default ledger: a SQLite file under ./data.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:data/loyalty.db";

/// HTTP/2 keepalive ping interval on the Temporal connection: the shortest
/// Temporal's frontend accepts (its `keepAliveMinTime`, 10 s).
pub const TEMPORAL_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a keepalive ping may go unanswered before the connection is
/// dropped and made again.
pub const TEMPORAL_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a new connection to Temporal (TCP and TLS).
pub const TEMPORAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default grace period for in-flight RPCs at shutdown.
pub const DEFAULT_DRAIN_SECONDS: u64 = 20;
/// Longest allowed wait between turning NOT_SERVING and closing the
/// listener at shutdown; endpoint propagation takes seconds, not minutes.
pub const MAX_SHUTDOWN_DELAY_SECONDS: u64 = 300;
/// Default deadline of an RPC whose caller sets none (or a longer one).
pub const DEFAULT_RPC_TIMEOUT_SECONDS: u64 = 30;
/// Default largest request message accepted.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Default wait of a workflow task on a worker's sticky queue before
/// Temporal hands it to any worker: after a crash, an account's next call
/// waits this long (the SDK's default is 10 s).
pub const DEFAULT_STICKY_TIMEOUT_MS: u64 = 1_000;
/// Default workflow task timeout of new accounts, in milliseconds: a task
/// given to a worker that died, or lost as a worker stopped, is retried
/// elsewhere after this long (Temporal's default is 10 s), so it bounds a
/// call's wait across a crash or a rolling deploy (1 s plus a replay, under
/// the 2 s measured in tests/liveness.rs). A run's replay must stay well
/// under it: runs continue-as-new at 500 events, past 2,000 with any backlog
/// (`workflow::FORCE_EVENTS_PER_RUN`) if it fits, and Accrue is refused
/// past 10,000 (updates, during a long ledger outage, can still add more).
pub const DEFAULT_WORKFLOW_TASK_TIMEOUT_MS: u64 = 1_000;
/// Default cap on RPCs in progress.
pub const DEFAULT_MAX_CONCURRENT_RPCS: usize = 1_000;
/// Default number of account workflows a worker keeps in memory (the SDK's
/// default). Measured at about 38 KiB each (BENCHMARKS.md): 10,000 cost
/// about 380 MiB.
pub const DEFAULT_MAX_CACHED_ACCOUNTS: usize = 1_000;

/// The gRPC server's TLS files (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// CA whose client certificates are required (mutual TLS), if any.
    pub client_ca: Option<PathBuf>,
}

/// What a process runs, so the API and the workers scale separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The gRPC API and a worker (the default).
    All,
    /// Only the gRPC API; any worker implementing the wire contract serves it.
    Api,
    /// Only the worker (plus gRPC health for probes).
    Worker,
}

impl Role {
    /// Whether this process serves `loyalty.v1.LoyaltyService`.
    pub fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    /// Whether this process runs a Temporal worker.
    pub fn runs_worker(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "all" => Some(Role::All),
            "api" => Some(Role::Api),
            "worker" => Some(Role::Worker),
            _ => None,
        }
    }
}

/// Values given on the command line; each wins over its environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// gRPC listen address [env: LOYALTY_GRPC_ADDR, default: 0.0.0.0:50051]
    #[arg(long)]
    pub grpc_addr: Option<String>,
    /// Temporal task queue [env: LOYALTY_TASK_QUEUE, default: loyalty-points-queue]
    #[arg(long)]
    pub task_queue: Option<String>,
    /// Ledger database URL [env: LOYALTY_DATABASE_URL, default: sqlite:data/loyalty.db]
    #[arg(long)]
    pub database_url: Option<String>,
    /// Temporal frontend address [env: TEMPORAL_ADDRESS, default: localhost:7233]
    #[arg(long)]
    pub temporal_address: Option<String>,
    /// all, api or worker [env: LOYALTY_ROLE, default: all]
    #[arg(long)]
    pub role: Option<String>,
}

/// Everything the service needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the gRPC server listens (port 0 picks a free port).
    pub grpc_addr: SocketAddr,
    /// Task queue of the workflows and activities.
    pub task_queue: String,
    /// Ledger database URL.
    pub database_url: String,
    /// How to reach Temporal (address, TLS, API key), from Temporal's envconfig.
    pub temporal_connection: ConnectionOptions,
    /// Temporal namespace and client options.
    pub temporal_client: ClientOptions,
    /// What this process runs.
    pub role: Role,
    /// How long in-flight RPCs may take to finish at shutdown.
    pub drain_timeout: Duration,
    /// At shutdown, how long the process keeps serving after health turns
    /// NOT_SERVING, so load balancers stop routing to it before it stops
    /// accepting (zero by default: nothing routes to a process run by hand).
    pub shutdown_delay: Duration,
    /// A plaintext address serving only gRPC health, for probes that speak
    /// neither TLS nor API keys (Kubernetes'); none when `None`.
    pub health_addr: Option<SocketAddr>,
    /// Deadline of an RPC whose caller sets none or a longer one.
    pub rpc_timeout: Duration,
    /// Largest request message accepted; larger ones are refused before any work.
    pub max_request_bytes: usize,
    /// Most RPCs in progress; more are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent_rpcs: usize,
    /// Account workflows the worker keeps in memory (least recently used
    /// evicted); an evicted account is rebuilt from its history when next used.
    pub max_cached_accounts: usize,
    /// Accruals to one customer arriving together go as one
    /// `add_points_batch` signal (a worker written from the reference guide
    /// knows only `add_points`: turn this off in front of one).
    pub accrual_batching: bool,
    /// How long an account's workflow task waits on this worker's sticky
    /// queue before any worker may take it (after a crash, the wait of the
    /// account's next call).
    pub sticky_timeout: Duration,
    /// Workflow task timeout given to accounts this API starts.
    pub workflow_task_timeout: Duration,
    /// Calls to an account that is continuing-as-new are retried after a few
    /// milliseconds (`grpc::closing`); off, they wait out the Temporal
    /// client's backoff of a second or more. Not configurable: off only in
    /// the test that shows what it prevents.
    pub closing_retry: bool,
    /// Updates this replica sends to one account at once; more wait in the
    /// API (`grpc::queue`), so that Temporal's 10 per workflow is not reached.
    pub updates_per_account: usize,
    /// TLS for the gRPC server; plaintext when `None`.
    pub tls: Option<TlsFiles>,
    /// API keys callers must present; no authentication when `None`.
    pub api_keys: Option<ApiKeys>,
    /// Each key's rate per scope (all callers' together when there are no keys).
    pub rate_limits: RateLimits,
    /// Where the Prometheus endpoint listens; none when `None`.
    pub metrics_addr: Option<SocketAddr>,
    /// Worker Versioning: this worker's deployment version; unversioned when `None`.
    pub deployment: Option<DeploymentVersion>,
    /// OTLP/gRPC endpoint for OpenTelemetry traces; no tracing when `None`.
    pub otlp_endpoint: Option<String>,
    /// The program's lifecycle settings (pending, expiry, refunds).
    pub program: Program,
    /// Webhook endpoints (`LOYALTY_WEBHOOKS_FILE`); none when `None`.
    pub webhooks: Option<crate::webhooks::WebhookConfig>,
    /// Earning rules (`LOYALTY_EARNING_RULES_FILE`); Accrue takes only
    /// `points` when `None`.
    pub earning_rules: Option<std::sync::Arc<crate::domain::earning::RuleBook>>,
}

/// A Worker Deployment Version: the deployment's name and this build's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentVersion {
    /// The Worker Deployment, e.g. `loyalty`.
    pub name: String,
    /// This build, e.g. the image tag.
    pub build_id: String,
}

impl Settings {
    /// Reads the process environment, then applies `overrides`.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::from_lookup(overrides, |name| std::env::var(name).ok())
    }

    /// Like [`Settings::load`] with an injectable environment (for tests).
    pub fn from_lookup(overrides: &Overrides, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(env);
        let grpc_addr = env.pick(&overrides.grpc_addr, "LOYALTY_GRPC_ADDR", DEFAULT_GRPC_ADDR);
        let task_queue = env.pick(&overrides.task_queue, "LOYALTY_TASK_QUEUE", DEFAULT_TASK_QUEUE);
        if task_queue.trim().is_empty() || task_queue.len() > 255 {
            return Err(ConfigError { setting: "LOYALTY_TASK_QUEUE", reason: "must be 1 to 255 characters".into() });
        }
        let database_url = env.pick(&overrides.database_url, "LOYALTY_DATABASE_URL", DEFAULT_DATABASE_URL);
        if !Ledger::supports(&database_url) {
            return Err(ConfigError {
                setting: "LOYALTY_DATABASE_URL",
                reason: format!("{database_url:?} is not supported; use sqlite:<path> or postgres://..."),
            });
        }
        let role = env.pick(&overrides.role, "LOYALTY_ROLE", "all");
        let role = Role::parse(&role).ok_or_else(|| ConfigError {
            setting: "LOYALTY_ROLE",
            reason: format!("{role:?} is not all, api or worker"),
        })?;
        let (temporal_connection, temporal_client) = temporal(overrides)?;
        let (tls, api_keys) = security(&env)?;
        let webhooks = env.get(crate::webhooks::FILE_SETTING).filter(|p| !p.trim().is_empty());
        let earning_rules = env.get(earning::FILE_SETTING).filter(|p| !p.trim().is_empty());
        Ok(Self {
            grpc_addr: socket_addr("LOYALTY_GRPC_ADDR", &grpc_addr, "0.0.0.0:50051")?,
            task_queue,
            database_url,
            temporal_connection,
            temporal_client,
            role,
            drain_timeout: Duration::from_secs(env.number("LOYALTY_DRAIN_SECONDS", DEFAULT_DRAIN_SECONDS, 3_600)?),
            shutdown_delay: Duration::from_secs(
                env.bounded("LOYALTY_SHUTDOWN_DELAY_SECONDS", 0, MAX_SHUTDOWN_DELAY_SECONDS)?.unwrap_or(0),
            ),
            health_addr: env.address("LOYALTY_HEALTH_ADDR", "0.0.0.0:8081")?,
            rpc_timeout: Duration::from_secs(env.number(
                "LOYALTY_RPC_TIMEOUT_SECONDS",
                DEFAULT_RPC_TIMEOUT_SECONDS,
                3_600,
            )?),
            max_request_bytes: env.number("LOYALTY_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES as u64, 16 << 20)?
                as usize,
            max_concurrent_rpcs: env.number(
                "LOYALTY_MAX_CONCURRENT_RPCS",
                DEFAULT_MAX_CONCURRENT_RPCS as u64,
                1_000_000,
            )? as usize,
            max_cached_accounts: env.number(
                "LOYALTY_MAX_CACHED_ACCOUNTS",
                DEFAULT_MAX_CACHED_ACCOUNTS as u64,
                10_000_000,
            )? as usize,
            accrual_batching: env.flag("LOYALTY_ACCRUAL_BATCHING", true)?,
            sticky_timeout: Duration::from_millis(env.number(
                "LOYALTY_STICKY_TIMEOUT_MS",
                DEFAULT_STICKY_TIMEOUT_MS,
                60_000,
            )?),
            workflow_task_timeout: Duration::from_millis(
                env.bounded("LOYALTY_WORKFLOW_TASK_TIMEOUT_MS", 500, 120_000)?
                    .unwrap_or(DEFAULT_WORKFLOW_TASK_TIMEOUT_MS),
            ),
            closing_retry: true,
            updates_per_account: env.number(
                "LOYALTY_UPDATES_PER_ACCOUNT",
                crate::grpc::queue::DEFAULT_PER_ACCOUNT as u64,
                10,
            )? as usize,
            tls,
            api_keys,
            rate_limits: RateLimits {
                read: env.rate("LOYALTY_RATE_LIMIT_READ")?,
                write: env.rate("LOYALTY_RATE_LIMIT_WRITE")?,
                admin: env.rate("LOYALTY_RATE_LIMIT_ADMIN")?,
            },
            metrics_addr: env.address("LOYALTY_METRICS_ADDR", "0.0.0.0:9464")?,
            deployment: env
                .pair("LOYALTY_DEPLOYMENT_NAME", "LOYALTY_BUILD_ID")?
                .map(|(name, build_id)| DeploymentVersion { name, build_id }),
            otlp_endpoint: env.get("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|e| !e.trim().is_empty()),
            program: program::load(&env.0)?,
            webhooks: webhooks.map(|path| crate::webhooks::WebhookConfig::load(&path, &env.0)).transpose()?,
            earning_rules: earning_rules.map(|path| earning::load(&path)).transpose()?,
        })
    }
}

/// The Temporal connection: the SDK's environment configuration
/// (`TEMPORAL_*`), the flag's address over it, and our keepalive: a
/// connection that went dead silently (a partition, a load balancer that
/// forgot the flow) is found within interval + timeout, not after the
/// kernel's minutes, and a connection attempt ends too.
fn temporal(overrides: &Overrides) -> Result<(ConnectionOptions, ClientOptions), ConfigError> {
    let (mut connection, client) = ClientOptions::load_from_config(LoadClientConfigProfileOptions::default())
        .map_err(|e| ConfigError { setting: "TEMPORAL_*", reason: e.to_string() })?;
    if let Some(address) = overrides.temporal_address.as_deref() {
        connection.target = parse_temporal_address(address)?;
    }
    connection.keep_alive = Some(
        temporalio_client::ClientKeepAliveOptions::builder()
            .interval(TEMPORAL_KEEPALIVE_INTERVAL)
            .timeout(TEMPORAL_KEEPALIVE_TIMEOUT)
            .build(),
    );
    connection.connect_timeout.get_or_insert(TEMPORAL_CONNECT_TIMEOUT);
    Ok((connection, client))
}

/// TLS files and API keys, checked together: client certificates need TLS,
/// and `LOYALTY_REQUIRE_API_KEYS` refuses to start without keys.
fn security<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<(Option<TlsFiles>, Option<ApiKeys>), ConfigError> {
    let client_ca = env.get("LOYALTY_TLS_CLIENT_CA_FILE").map(PathBuf::from);
    let tls = match env.get("LOYALTY_TLS_CERT_FILE").zip(env.get("LOYALTY_TLS_KEY_FILE")) {
        Some((cert, key)) => Some(TlsFiles { cert: cert.into(), key: key.into(), client_ca }),
        None if env.get("LOYALTY_TLS_CERT_FILE").or(env.get("LOYALTY_TLS_KEY_FILE")).is_some() => {
            return Err(ConfigError {
                setting: "LOYALTY_TLS_CERT_FILE",
                reason: "LOYALTY_TLS_CERT_FILE and LOYALTY_TLS_KEY_FILE go together".into(),
            });
        }
        None if client_ca.is_some() => {
            return Err(ConfigError {
                setting: "LOYALTY_TLS_CLIENT_CA_FILE",
                reason: "client certificates need TLS: set LOYALTY_TLS_CERT_FILE and LOYALTY_TLS_KEY_FILE".into(),
            });
        }
        None => None,
    };
    let api_keys = env
        .get("LOYALTY_API_KEYS_FILE")
        .map(|path| ApiKeys::load(std::path::Path::new(&path)))
        .transpose()
        .map_err(|reason| ConfigError { setting: "LOYALTY_API_KEYS_FILE", reason })?;
    if env.flag("LOYALTY_REQUIRE_API_KEYS", false)? && api_keys.is_none() {
        return Err(ConfigError {
            setting: "LOYALTY_API_KEYS_FILE",
            reason: "LOYALTY_REQUIRE_API_KEYS is true but no keys file is set: refusing to serve without \
                     authentication"
                .into(),
        });
    }
    Ok((tls, api_keys))
}

/// Accepts `host:port` or a URL, as Temporal's own tools do.
fn parse_temporal_address(address: &str) -> Result<Url, ConfigError> {
    let with_scheme = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    Url::parse(&with_scheme).map_err(|e| ConfigError { setting: "--temporal-address", reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(&Overrides::default(), |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults() {
        let s = load(&[]).unwrap();
        assert_eq!(s.grpc_addr.to_string(), DEFAULT_GRPC_ADDR);
        assert_eq!(s.task_queue, DEFAULT_TASK_QUEUE);
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(s.role, Role::All);
        assert_eq!(s.drain_timeout, Duration::from_secs(DEFAULT_DRAIN_SECONDS));
    }

    #[test]
    fn roles_and_limits() {
        assert_eq!(load(&[("LOYALTY_ROLE", "api")]).unwrap().role, Role::Api);
        assert!(!Role::Api.runs_worker() && Role::Worker.runs_worker() && !Role::Worker.serves_api());
        assert_eq!(load(&[("LOYALTY_ROLE", "both")]).unwrap_err().setting, "LOYALTY_ROLE");
        assert_eq!(load(&[("LOYALTY_DRAIN_SECONDS", "5")]).unwrap().drain_timeout, Duration::from_secs(5));
        for bad in ["0", "-1", "x", "99999"] {
            assert_eq!(load(&[("LOYALTY_DRAIN_SECONDS", bad)]).unwrap_err().setting, "LOYALTY_DRAIN_SECONDS");
        }
        assert_eq!(load(&[]).unwrap().shutdown_delay, Duration::ZERO);
        assert_eq!(load(&[("LOYALTY_SHUTDOWN_DELAY_SECONDS", "0")]).unwrap().shutdown_delay, Duration::ZERO);
        assert_eq!(load(&[("LOYALTY_SHUTDOWN_DELAY_SECONDS", "5")]).unwrap().shutdown_delay, Duration::from_secs(5));
        for bad in ["-1", "x", "301"] {
            let e = load(&[("LOYALTY_SHUTDOWN_DELAY_SECONDS", bad)]).unwrap_err();
            assert_eq!(e.setting, "LOYALTY_SHUTDOWN_DELAY_SECONDS");
        }
        assert_eq!(load(&[]).unwrap().health_addr, None);
        let health = load(&[("LOYALTY_HEALTH_ADDR", "0.0.0.0:8081")]).unwrap().health_addr;
        assert_eq!(health.map(|a| a.port()), Some(8081));
        assert_eq!(load(&[("LOYALTY_HEALTH_ADDR", "8081")]).unwrap_err().setting, "LOYALTY_HEALTH_ADDR");
        assert_eq!(load(&[("LOYALTY_MAX_REQUEST_BYTES", "1024")]).unwrap().max_request_bytes, 1024);
        assert_eq!(load(&[("LOYALTY_MAX_CONCURRENT_RPCS", "8")]).unwrap().max_concurrent_rpcs, 8);
        assert_eq!(load(&[("LOYALTY_MAX_CACHED_ACCOUNTS", "20000")]).unwrap().max_cached_accounts, 20_000);
        assert!(load(&[]).unwrap().accrual_batching);
        assert!(!load(&[("LOYALTY_ACCRUAL_BATCHING", "false")]).unwrap().accrual_batching);
        assert_eq!(load(&[("LOYALTY_ACCRUAL_BATCHING", "maybe")]).unwrap_err().setting, "LOYALTY_ACCRUAL_BATCHING");
        assert_eq!(load(&[("LOYALTY_MAX_CACHED_ACCOUNTS", "0")]).unwrap_err().setting, "LOYALTY_MAX_CACHED_ACCOUNTS");
    }

    #[test]
    fn a_deployment_version_needs_both_parts() {
        let both = load(&[("LOYALTY_DEPLOYMENT_NAME", "loyalty"), ("LOYALTY_BUILD_ID", "2026.11.1")]).unwrap();
        assert_eq!(both.deployment.map(|d| d.build_id), Some("2026.11.1".to_string()));
        assert_eq!(load(&[("LOYALTY_BUILD_ID", "x")]).unwrap_err().setting, "LOYALTY_DEPLOYMENT_NAME");
        assert_eq!(load(&[]).unwrap().deployment, None);
    }

    #[test]
    fn tls_and_keys_are_checked_at_start() {
        assert_eq!(load(&[("LOYALTY_TLS_CERT_FILE", "c.pem")]).unwrap_err().setting, "LOYALTY_TLS_CERT_FILE");
        assert_eq!(
            load(&[("LOYALTY_TLS_CLIENT_CA_FILE", "ca.pem")]).unwrap_err().setting,
            "LOYALTY_TLS_CLIENT_CA_FILE"
        );
        let tls = load(&[("LOYALTY_TLS_CERT_FILE", "c.pem"), ("LOYALTY_TLS_KEY_FILE", "k.pem")]).unwrap().tls;
        assert_eq!(tls.map(|t| t.client_ca), Some(None));
        let missing = load(&[("LOYALTY_API_KEYS_FILE", "/nonexistent/keys")]).unwrap_err();
        assert_eq!(missing.setting, "LOYALTY_API_KEYS_FILE");
        // Secure by default where it is asked for: no keys, no start.
        let required = load(&[("LOYALTY_REQUIRE_API_KEYS", "true")]).unwrap_err();
        assert_eq!(required.setting, "LOYALTY_API_KEYS_FILE");
        assert!(required.reason.contains("LOYALTY_REQUIRE_API_KEYS"), "{required}");
        assert_eq!(load(&[("LOYALTY_REQUIRE_API_KEYS", "yes")]).unwrap_err().setting, "LOYALTY_REQUIRE_API_KEYS");
        assert!(load(&[("LOYALTY_REQUIRE_API_KEYS", "false")]).unwrap().api_keys.is_none());
    }

    #[test]
    fn rate_limits_are_per_scope_and_off_by_default() {
        assert_eq!(load(&[]).unwrap().rate_limits, RateLimits::default());
        let limits =
            load(&[("LOYALTY_RATE_LIMIT_WRITE", "200/s"), ("LOYALTY_RATE_LIMIT_ADMIN", "10/min")]).unwrap().rate_limits;
        assert_eq!(limits.write.map(|r| r.to_string()), Some("200/s".into()));
        assert_eq!(limits.admin.map(|r| r.to_string()), Some("10/min".into()));
        assert_eq!(limits.read, None);
        assert_eq!(load(&[("LOYALTY_RATE_LIMIT_READ", "off")]).unwrap().rate_limits.read, None);
        assert_eq!(load(&[("LOYALTY_RATE_LIMIT_READ", "fast")]).unwrap_err().setting, "LOYALTY_RATE_LIMIT_READ");
    }

    #[test]
    fn invalid_values_name_the_setting() {
        assert_eq!(load(&[("LOYALTY_GRPC_ADDR", "nope")]).unwrap_err().setting, "LOYALTY_GRPC_ADDR");
        assert_eq!(load(&[("LOYALTY_TASK_QUEUE", " ")]).unwrap_err().setting, "LOYALTY_TASK_QUEUE");
        assert_eq!(load(&[("LOYALTY_DATABASE_URL", "mysql://x")]).unwrap_err().setting, "LOYALTY_DATABASE_URL");
    }

    #[test]
    fn flags_win_over_the_environment() {
        let overrides = Overrides { grpc_addr: Some("127.0.0.1:0".into()), ..Default::default() };
        let env = |k: &str| (k == "LOYALTY_GRPC_ADDR").then(|| "0.0.0.0:1".to_string());
        let s = Settings::from_lookup(&overrides, env).unwrap();
        assert_eq!(s.grpc_addr.to_string(), "127.0.0.1:0");
    }
}
