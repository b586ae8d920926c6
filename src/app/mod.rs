//! The application: ledger, Temporal client and worker, and the gRPC server
//! (with health and reflection), wired together by role and run until
//! stopped (run.rs: serving, and stopping in order).

mod run;

use std::net::SocketAddr;
use std::time::Duration;

use temporalio_client::{Client, ClientOptions, Connection};
use temporalio_common::telemetry::metrics::{NewAttributes, TemporalMeter};
use temporalio_common::telemetry::{TaskQueueLabelStrategy, TelemetryOptions};
use temporalio_common::worker::{VersioningBehavior, WorkerDeploymentOptions, WorkerDeploymentVersion};
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::server::Router;
use tonic::transport::{Certificate, Identity as TlsIdentity, ServerTlsConfig};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tower::layer::util::{Identity, Stack};

use crate::activities::LoyaltyActivities;
use crate::config::{Settings, TlsFiles};
use crate::grpc::LoyaltyApi;
use crate::grpc::auth::AuthLayer;
use crate::grpc::batcher::Batcher;
use crate::grpc::closing::ClosingRetry;
use crate::grpc::limit::ConcurrencyLimitLayer;
use crate::grpc::pb::{self, loyalty_service_server::LoyaltyServiceServer};
use crate::ledger::{Ledger, LedgerError};
use crate::metrics::{Metrics, MetricsLayer};
use crate::otel::Tracing;
use crate::readiness::{self, Reported};
use crate::webhooks::relay::Relay;
use crate::workflow::LoyaltyEntityWorkflow;

/// Why the application could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The ledger database.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Connecting to Temporal.
    #[error("temporal: {0}")]
    Temporal(String),
    /// The worker failed to start or run.
    #[error("worker: {0}")]
    Worker(String),
    /// The gRPC listener or server.
    #[error("grpc server: {0}")]
    Server(String),
}

/// A Temporal client as configured (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
/// envconfig), tracing its calls, workflows and activities when `tracing` is
/// on, and counting its requests and failures in `metrics` when given.
pub async fn temporal_client(
    settings: &Settings,
    tracing: Option<&Tracing>,
    metrics: Option<&Metrics>,
) -> Result<Client, AppError> {
    let target = settings.temporal_connection.target.to_string();
    let temporal = |e: &dyn std::fmt::Display| {
        AppError::Temporal(format!("cannot use Temporal at {target} (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE): {e}"))
    };
    let mut connection_options = settings.temporal_connection.clone();
    if let Some(metrics) = metrics {
        connection_options.metrics_meter =
            Some(TemporalMeter::new(metrics.meter(), NewAttributes::default(), TaskQueueLabelStrategy::UseNormal));
    }
    let connection = Connection::connect(connection_options).await.map_err(|e| temporal(&e))?;
    let mut options = settings.temporal_client.clone();
    if let Some(tracing) = tracing {
        // Plugins are set on the builder: rebuild the configured options with ours added.
        options = ClientOptions::new(options.namespace.clone())
            .data_converter(options.data_converter.clone())
            .client_interceptors(options.client_interceptors.clone())
            .plugins(options.plugins().iter().cloned())
            .plugin(tracing.plugin())
            .build();
    }
    Client::new(connection, options).map_err(|e| temporal(&e))
}

/// The layers around every gRPC service: metrics, authentication, then the
/// concurrency cap.
type Layers = Stack<ConcurrencyLimitLayer, Stack<AuthLayer, Stack<MetricsLayer, Identity>>>;

/// The server's TLS configuration from its PEM files.
fn tls_config(files: &TlsFiles) -> Result<ServerTlsConfig, AppError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| AppError::Server(format!("TLS: cannot read {}: {e}", path.display())))
    };
    let mut config = ServerTlsConfig::new().identity(TlsIdentity::from_pem(read(&files.cert)?, read(&files.key)?));
    if let Some(ca) = &files.client_ca {
        // Mutual TLS: a client without a certificate signed by this CA cannot connect.
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

/// A built, not yet running, service process.
pub struct Application {
    grpc_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    listener: TcpListener,
    health_listener: Option<TcpListener>,
    router: Router<Layers>,
    health: HealthReporter,
    reported: Reported,
    watched: readiness::Watched,
    client: Client,
    worker: Option<Worker>,
    relay: Option<Relay>,
    drain_timeout: Duration,
    shutdown_delay: Duration,
    tracing: Option<Tracing>,
    // The SDK runtime must outlive the worker.
    _runtime: Runtime,
}

impl Application {
    /// Opens the ledger, connects to Temporal, builds what the role needs
    /// (worker, API) and binds the gRPC listener (port 0 picks a free port).
    /// Must run inside tokio.
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        let ledger = Ledger::connect(&settings.database_url).await?;
        match ledger.encrypted().await {
            Ok(Some(false)) => tracing::warn!(
                "the ledger connection is not encrypted: add sslmode=verify-full&sslrootcert=<CA file> to \
                 LOYALTY_DATABASE_URL"
            ),
            Ok(Some(true)) => tracing::info!("ledger connected over TLS"),
            Ok(None) | Err(_) => {}
        }
        let tracing = match &settings.otlp_endpoint {
            Some(endpoint) => {
                Some(Tracing::start(endpoint).map_err(|e| AppError::Server(format!("OpenTelemetry: {e}")))?)
            }
            None => None,
        };
        let (metrics, metrics_addr) = match settings.metrics_addr {
            Some(addr) => {
                let (metrics, bound) = Metrics::serve(addr).map_err(|e| AppError::Server(format!("metrics: {e}")))?;
                (metrics, Some(bound))
            }
            None => (Metrics::disabled(), None),
        };

        let client = temporal_client(&settings, tracing.as_ref(), Some(&metrics)).await?;
        let telemetry = TelemetryOptions::builder().metrics(metrics.meter()).build();
        let runtime_options =
            RuntimeOptions::builder().telemetry_options(telemetry).build().map_err(AppError::Worker)?;
        let runtime = Runtime::from_current_tokio(runtime_options).map_err(|e| AppError::Worker(e.to_string()))?;
        let worker = worker(&settings, &runtime, &client, &ledger, &metrics)?;

        // Events are recorded by the worker's writes: its processes deliver them.
        let relay = match &settings.webhooks {
            Some(config) if settings.role.runs_worker() => {
                let relay_ledger = ledger.side_pool(&settings.database_url).await?;
                Some(Relay::new(relay_ledger, config.clone(), metrics.clone()).map_err(AppError::Server)?)
            }
            _ => None,
        };
        let (listener, health_listener) = listeners(&settings).await?;
        let grpc_addr = listener.local_addr().map_err(|e| AppError::Server(e.to_string()))?;
        let (health, health_service) = tonic_health::server::health_reporter();
        let reported = Reported {
            services: if settings.role.serves_api() {
                vec![<LoyaltyServiceServer<LoyaltyApi> as NamedService>::NAME]
            } else {
                vec![]
            },
        };
        // A wrong key or a missing namespace does not stop the process (it
        // recovers once fixed) but is said at start, and readiness shows it.
        let temporal = readiness::check_temporal(&client).await;
        if let readiness::TemporalCheck::Refused(why) = &temporal {
            tracing::error!(
                reason = %why,
                "Temporal refuses this service (TEMPORAL_API_KEY, TLS, TEMPORAL_NAMESPACE): NOT_SERVING until fixed"
            );
        }
        // SERVING only once the readiness loop has seen what this process needs (run.rs).
        readiness::report(&health, &reported, false).await;
        health.set_service_status(readiness::LIVENESS_SERVICE, tonic_health::ServingStatus::Serving).await;
        let router = router(&settings, ledger, &client, tracing.clone(), metrics, health_service)?;
        Ok(Self {
            grpc_addr,
            metrics_addr,
            listener,
            health_listener,
            router,
            health,
            reported,
            watched: readiness::Watched {
                worker: settings
                    .role
                    .runs_worker()
                    .then(|| (settings.task_queue.clone(), readiness::worker_identity(&client))),
                temporal_at_start: temporal,
            },
            client,
            worker,
            relay,
            drain_timeout: settings.drain_timeout,
            shutdown_delay: settings.shutdown_delay,
            tracing,
            _runtime: runtime,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound plaintext health-only address, if `LOYALTY_HEALTH_ADDR` is set.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound Prometheus endpoint, if metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }
}

/// The Temporal worker, if this process's role runs one. Pinned: a run
/// stays on the build that started it; the entity moves to the current
/// version at its next continue-as-new.
fn worker(
    settings: &Settings,
    runtime: &Runtime,
    client: &Client,
    ledger: &Ledger,
    metrics: &Metrics,
) -> Result<Option<Worker>, AppError> {
    if !settings.role.runs_worker() {
        return Ok(None);
    }
    let deployment = settings.deployment.as_ref().map(|version| {
        WorkerDeploymentOptions::new(
            WorkerDeploymentVersion::builder()
                .deployment_name(version.name.clone())
                .build_id(version.build_id.clone())
                .build(),
        )
        .use_worker_versioning(true)
        .default_versioning_behavior(VersioningBehavior::Pinned)
        .build()
    });
    let options = WorkerOptions::new(settings.task_queue.clone())
        .maybe_deployment_options(deployment)
        .max_cached_workflows(settings.max_cached_accounts)
        .tuner(tuner())
        .sticky_queue_schedule_to_start_timeout(settings.sticky_timeout)
        // Readiness looks for this identity among the task queue's pollers.
        .client_identity_override(readiness::worker_identity(client))
        .register_workflow::<LoyaltyEntityWorkflow>()
        .map_err(|e| AppError::Worker(e.to_string()))?
        .register_workflow_interceptors(crate::workflow::interceptors())
        .register_activities(LoyaltyActivities::new(ledger.clone(), metrics.clone()))
        .build();
    Worker::new(runtime, client.clone(), options).map(Some).map_err(|e| AppError::Worker(e.to_string()))
}

/// Activities at once in one worker. The run's ledger write first pauses
/// (`workflow::write_behind`), a second or a few, holding its slot: every
/// account with a decision in the last few seconds has one, and a notice
/// period or an urgent write must not queue behind them. A paused write
/// is a timer in this process, not a connection (the ledger's pool bounds those).
const ACTIVITY_SLOTS: usize = 2_000;

/// The SDK's default slots, with [`ACTIVITY_SLOTS`] for activities.
fn tuner() -> TunerHolder {
    let slots = |n| FixedSizeSlotSupplier::new(n);
    TunerHolder::builder()
        .workflow_task_slot_supplier(slots(100))
        .activity_task_slot_supplier(slots(ACTIVITY_SLOTS))
        .local_activity_task_slot_supplier(slots(100))
        .nexus_task_slot_supplier(slots(100))
        .build()
}

/// The gRPC listener and, with `LOYALTY_HEALTH_ADDR`, the plaintext health one.
async fn listeners(settings: &Settings) -> Result<(TcpListener, Option<TcpListener>), AppError> {
    let listener = TcpListener::bind(settings.grpc_addr).await.map_err(|e| AppError::Server(e.to_string()))?;
    let health = match settings.health_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| AppError::Server(format!("health listener (LOYALTY_HEALTH_ADDR) on {addr}: {e}")))?,
        ),
        None => None,
    };
    Ok((listener, health))
}

/// The gRPC server's services (the API only if the role serves it) and,
/// outermost first, its layers: count every call, then refuse
/// unauthenticated ones before they take a slot.
fn router(
    settings: &Settings,
    ledger: Ledger,
    client: &Client,
    tracing: Option<Tracing>,
    metrics: Metrics,
    health_service: HealthServer<impl Health>,
) -> Result<Router<Layers>, AppError> {
    // Both reflection versions: older grpcurl releases speak only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_err = |e: tonic_reflection::server::Error| AppError::Server(e.to_string());
    let api = settings.role.serves_api().then(|| {
        LoyaltyServiceServer::new(
            LoyaltyApi::new(
                Batcher::new(
                    client.clone(),
                    settings.task_queue.clone(),
                    settings.accrual_batching,
                    settings.workflow_task_timeout,
                    ClosingRetry::new(settings.closing_retry, Some(client.clone())),
                ),
                ledger,
                settings.rpc_timeout,
                tracing,
                settings.program,
                settings.updates_per_account,
                metrics.clone(),
            )
            .with_earning_rules(settings.earning_rules.clone()),
        )
        .max_decoding_message_size(settings.max_request_bytes)
    });
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = &settings.tls {
        server = server.tls_config(tls_config(tls)?).map_err(|e| AppError::Server(format!("TLS: {e}")))?;
    }
    let router = server
        .layer(MetricsLayer::new(metrics))
        .layer(AuthLayer::new(settings.api_keys.clone(), settings.rate_limits))
        .layer(ConcurrencyLimitLayer::new(settings.max_concurrent_rpcs))
        .add_service(health_service)
        .add_service(reflection().build_v1().map_err(reflection_err)?)
        .add_service(reflection().build_v1alpha().map_err(reflection_err)?)
        .add_optional_service(api);
    Ok(router)
}
