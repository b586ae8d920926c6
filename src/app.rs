//! The application: ledger, Temporal client and worker, and the gRPC server
//! (with health and reflection), wired together by role and run until stopped.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use temporalio_client::{Client, ClientOptions, Connection};
use temporalio_common::telemetry::metrics::{NewAttributes, TemporalMeter};
use temporalio_common::telemetry::{TaskQueueLabelStrategy, TelemetryOptions};
use temporalio_common::worker::{VersioningBehavior, WorkerDeploymentOptions, WorkerDeploymentVersion};
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::{Certificate, Identity as TlsIdentity, ServerTlsConfig};
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tower::layer::util::{Identity, Stack};

use crate::activities::LoyaltyActivities;
use crate::config::{Role, Settings, TlsFiles};
use crate::grpc::LoyaltyApi;
use crate::grpc::auth::AuthLayer;
use crate::grpc::batcher::Batcher;
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

/// Longest wait for the webhook relay at shutdown: its deliveries' timeout
/// (10 s by default) and a little more.
const RELAY_STOP: Duration = Duration::from_secs(12);

/// A built, not yet running, service process.
pub struct Application {
    grpc_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    listener: TcpListener,
    health_listener: Option<TcpListener>,
    router: Router<Layers>,
    health: HealthReporter,
    reported: Reported,
    temporal: readiness::TemporalCheck,
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
        let worker = if settings.role.runs_worker() {
            // Pinned: a run stays on the build that started it; the entity
            // moves to the current version at its next continue-as-new.
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
                .register_workflow::<LoyaltyEntityWorkflow>()
                .map_err(|e| AppError::Worker(e.to_string()))?
                .register_activities(LoyaltyActivities::new(ledger.clone(), metrics.clone()))
                .build();
            Some(Worker::new(&runtime, client.clone(), options).map_err(|e| AppError::Worker(e.to_string()))?)
        } else {
            None
        };

        // Events are recorded by the worker's writes: its processes deliver them.
        let relay = match &settings.webhooks {
            Some(config) if settings.role.runs_worker() => {
                let relay_ledger = ledger.side_pool(&settings.database_url).await?;
                Some(Relay::new(relay_ledger, config.clone(), metrics.clone()).map_err(AppError::Server)?)
            }
            _ => None,
        };
        let listener = TcpListener::bind(settings.grpc_addr).await.map_err(|e| AppError::Server(e.to_string()))?;
        let grpc_addr = listener.local_addr().map_err(|e| AppError::Server(e.to_string()))?;
        let health_listener = match settings.health_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| AppError::Server(format!("health listener (LOYALTY_HEALTH_ADDR) on {addr}: {e}")))?,
            ),
            None => None,
        };
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
        readiness::report(&health, &reported, temporal == readiness::TemporalCheck::Ready).await;
        health.set_service_status(readiness::LIVENESS_SERVICE, tonic_health::ServingStatus::Serving).await;
        // Both reflection versions: older grpcurl releases speak only v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_err = |e: tonic_reflection::server::Error| AppError::Server(e.to_string());
        let api = (settings.role != Role::Worker).then(|| {
            LoyaltyServiceServer::new(LoyaltyApi::new(
                Batcher::new(client.clone(), settings.task_queue.clone(), settings.accrual_batching),
                ledger,
                settings.rpc_timeout,
                tracing.clone(),
                settings.program,
            ))
            .max_decoding_message_size(settings.max_request_bytes)
        });
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = &settings.tls {
            server = server.tls_config(tls_config(tls)?).map_err(|e| AppError::Server(format!("TLS: {e}")))?;
        }
        let router = server
            // Outermost first: count every call, then refuse unauthenticated ones
            // before they take a slot.
            .layer(MetricsLayer::new(metrics))
            .layer(AuthLayer::new(settings.api_keys.clone(), settings.rate_limits))
            .layer(ConcurrencyLimitLayer::new(settings.max_concurrent_rpcs))
            .add_service(health_service)
            .add_service(reflection().build_v1().map_err(reflection_err)?)
            .add_service(reflection().build_v1alpha().map_err(reflection_err)?)
            .add_optional_service(api);
        Ok(Self {
            grpc_addr,
            metrics_addr,
            listener,
            health_listener,
            router,
            health,
            reported,
            temporal,
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

    /// Serves until `shutdown` resolves, then stops in the order a load
    /// balancer needs: health turns NOT_SERVING while everything keeps
    /// serving for the shutdown delay (so endpoints stop routing here before
    /// the listener closes), then the listener closes and in-flight RPCs get
    /// up to the drain timeout to finish, and only then the worker stops
    /// polling and completes its tasks (an in-flight Redeem needs it). The
    /// health-only listener answers (NOT_SERVING) until the very end. The
    /// future is not `Send`: the worker runs workflows on this task.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let Application {
            listener,
            health_listener,
            router,
            health,
            reported,
            temporal,
            client,
            worker,
            relay,
            drain_timeout,
            shutdown_delay,
            tracing,
            _runtime,
            ..
        } = self;
        // Three stops, in shutdown order: readiness (so it cannot flip health
        // back to SERVING), the API listener, then the relay and the health
        // listener once the worker is done.
        let (readiness_stop, readiness_stopped) = tokio::sync::watch::channel(false);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (last_tx, last_rx) = tokio::sync::watch::channel(false);
        let relay = relay.map(|r| tokio::spawn(r.run(last_rx.clone())));
        let health_server = health_listener.map(|listener| {
            let service = HealthServer::new(HealthService::from_health_reporter(health.clone()));
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            let mut stop = last_rx.clone();
            tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming_shutdown(
                incoming,
                async move {
                    let _ = stop.changed().await;
                },
            ))
        });
        // Nagle's algorithm would hold small responses back waiting for an ACK.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut server_stop = stop_rx;
        let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
            let _ = server_stop.changed().await;
        }));
        let readiness = tokio::spawn(readiness::follow_temporal(
            client,
            health.clone(),
            reported.clone(),
            temporal,
            readiness_stopped,
        ));
        let stop_all = || {
            let _ = readiness_stop.send(true);
            let _ = stop_tx.send(true);
            let _ = last_tx.send(true);
        };
        let has_worker = worker.is_some();
        let stop_worker = worker.as_ref().map(|w| w.shutdown_handle());
        let worker = async move {
            match worker {
                Some(mut w) => w.run().await.map_err(|e| AppError::Worker(e.to_string())),
                None => std::future::pending().await,
            }
        };
        tokio::pin!(worker, shutdown);
        let stop_worker = || {
            if let Some(stop) = &stop_worker {
                stop();
            }
        };
        tokio::select! {
            // The worker only ends by itself on an error (e.g. unknown namespace).
            result = &mut worker => {
                stop_all();
                let _ = server.await;
                return result;
            }
            served = &mut server => {
                stop_all();
                stop_worker();
                if has_worker {
                    let _ = (&mut worker).await;
                }
                return Err(AppError::Server(format!("{served:?}")));
            }
            () = &mut shutdown => {}
        }

        tracing::info!(
            delay = ?shutdown_delay,
            drain = ?drain_timeout,
            "shutting down: NOT_SERVING for the shutdown delay, then draining RPCs, then the worker"
        );
        // Aborted rather than awaited: a check in flight takes up to 4 s, and
        // the worker is not polled meanwhile.
        readiness.abort();
        let _ = readiness.await;
        readiness::report(&health, &reported, false).await;
        // The worker runs on this task: it is polled while anything else is
        // awaited here, since an in-flight Redeem may need it.
        let mut worker_ended = None;
        let delay = tokio::time::sleep(shutdown_delay);
        tokio::pin!(delay);
        loop {
            tokio::select! {
                () = &mut delay => break,
                result = &mut worker, if has_worker && worker_ended.is_none() => worker_ended = Some(result),
            }
        }
        let _ = stop_tx.send(true);
        let drain = tokio::time::timeout(drain_timeout, &mut server);
        tokio::pin!(drain);
        let drained = loop {
            tokio::select! {
                drained = &mut drain => break drained,
                result = &mut worker, if has_worker && worker_ended.is_none() => worker_ended = Some(result),
            }
        };
        let served = match drained {
            Ok(joined) => joined
                .map_err(|e| AppError::Server(e.to_string()))
                .and_then(|served| served.map_err(|e| AppError::Server(e.to_string()))),
            Err(_) => {
                tracing::warn!("drain timeout passed; cancelling the RPCs still running");
                server.abort();
                Ok(())
            }
        };
        stop_worker();
        let worked = match worker_ended {
            Some(result) => result,
            None if has_worker => worker.await,
            None => Ok(()),
        };
        let _ = last_tx.send(true);
        // The relay hands its accounts back within one delivery timeout; a
        // ledger call stuck on a dead connection must not hold the exit.
        if let Some(mut relay) = relay
            && tokio::time::timeout(RELAY_STOP, &mut relay).await.is_err()
        {
            tracing::warn!("the webhook relay did not stop in time; its leases expire by themselves");
            relay.abort();
        }
        // A client's health Watch stream would hold a graceful stop open.
        if let Some(mut health_server) = health_server
            && tokio::time::timeout(Duration::from_secs(1), &mut health_server).await.is_err()
        {
            health_server.abort();
        }
        if let Some(tracing) = tracing {
            tracing.shutdown();
        }
        tracing::info!("stopped");
        served.and(worked)
    }
}
