//! The application: ledger, Temporal client and worker, and the gRPC server
//! (with health and reflection), wired together and run until stopped.

use std::future::Future;
use std::net::SocketAddr;

use temporalio_client::{Client, Connection};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

use crate::activities::LoyaltyActivities;
use crate::config::Settings;
use crate::grpc::LoyaltyApi;
use crate::grpc::pb::{self, loyalty_service_server::LoyaltyServiceServer};
use crate::ledger::{Ledger, LedgerError};
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

/// A Temporal client as configured (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, envconfig).
pub async fn temporal_client(settings: &Settings) -> Result<Client, AppError> {
    let target = settings.temporal_connection.target.to_string();
    let temporal = |e: &dyn std::fmt::Display| {
        AppError::Temporal(format!("cannot use Temporal at {target} (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE): {e}"))
    };
    let connection = Connection::connect(settings.temporal_connection.clone()).await.map_err(|e| temporal(&e))?;
    Client::new(connection, settings.temporal_client.clone()).map_err(|e| temporal(&e))
}

/// A built, not yet running, service process.
pub struct Application {
    grpc_addr: SocketAddr,
    listener: TcpListener,
    router: Router,
    health: HealthReporter,
    worker: Worker,
    // The SDK runtime must outlive the worker.
    _runtime: Runtime,
}

impl Application {
    /// Opens the ledger, connects to Temporal, builds the worker and binds
    /// the gRPC listener (port 0 picks a free port). Must run inside tokio.
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        let ledger = Ledger::connect(&settings.database_url).await?;
        let client = temporal_client(&settings).await?;

        let runtime = Runtime::from_current_tokio(Default::default()).map_err(|e| AppError::Worker(e.to_string()))?;
        let options = WorkerOptions::new(settings.task_queue.clone())
            .register_workflow::<LoyaltyEntityWorkflow>()
            .map_err(|e| AppError::Worker(e.to_string()))?
            .register_activities(LoyaltyActivities::new(ledger.clone()))
            .build();
        let worker = Worker::new(&runtime, client.clone(), options).map_err(|e| AppError::Worker(e.to_string()))?;

        let listener = TcpListener::bind(settings.grpc_addr).await.map_err(|e| AppError::Server(e.to_string()))?;
        let grpc_addr = listener.local_addr().map_err(|e| AppError::Server(e.to_string()))?;
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<LoyaltyServiceServer<LoyaltyApi>>().await;
        // Both reflection versions: older grpcurl releases speak only v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_err = |e: tonic_reflection::server::Error| AppError::Server(e.to_string());
        let router = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection().build_v1().map_err(reflection_err)?)
            .add_service(reflection().build_v1alpha().map_err(reflection_err)?)
            .add_service(LoyaltyServiceServer::new(LoyaltyApi::new(client, settings.task_queue, ledger)));
        Ok(Self { grpc_addr, listener, router, health, worker, _runtime: runtime })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Serves until `shutdown` resolves, then stops in order: health goes
    /// NOT_SERVING, in-flight RPCs finish, and only then the worker stops (an
    /// in-flight Redeem needs it). The future is not `Send`: the worker runs
    /// workflows on this task.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let incoming = TcpListenerStream::new(self.listener);
        let mut server = tokio::spawn(self.router.serve_with_incoming_shutdown(incoming, async move {
            let _ = stop_rx.changed().await;
        }));
        let stop_worker = self.worker.shutdown_handle();
        let worker = self.worker.run();
        tokio::pin!(worker, shutdown);
        let worker_result = tokio::select! {
            // The worker only ends by itself on an error (e.g. unknown namespace).
            result = &mut worker => {
                let _ = stop_tx.send(true);
                result
            }
            served = &mut server => {
                stop_worker();
                let _ = (&mut worker).await;
                return Err(AppError::Server(format!("{served:?}")));
            }
            () = &mut shutdown => {
                tracing::info!("shutting down: draining RPCs, then the worker");
                self.health.set_not_serving::<LoyaltyServiceServer<LoyaltyApi>>().await;
                self.health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
                let _ = stop_tx.send(true);
                let served = (&mut server).await;
                stop_worker();
                let worker_result = (&mut worker).await;
                served.map_err(|e| AppError::Server(e.to_string()))?.map_err(|e| AppError::Server(e.to_string()))?;
                return worker_result.map_err(|e| AppError::Worker(e.to_string()));
            }
        };
        let _ = server.await;
        worker_result.map_err(|e| AppError::Worker(e.to_string()))
    }
}
