//! Serving, and stopping in the order a load balancer needs.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;

use super::{AppError, Application};
use crate::readiness;

/// Longest wait for the webhook relay at shutdown: its deliveries' timeout
/// (10 s by default) and a little more.
const RELAY_STOP: Duration = Duration::from_secs(12);

impl Application {
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
            watched,
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
        let health_server = health_listener.map(|listener| serve_health(listener, &health, last_rx.clone()));
        // Nagle's algorithm would hold small responses back waiting for an ACK.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut server_stop = stop_rx;
        let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
            let _ = server_stop.changed().await;
        }));
        let readiness =
            tokio::spawn(readiness::follow(client, health.clone(), reported.clone(), watched, readiness_stopped));
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
        let mut worker_ended = None;
        polling(worker.as_mut(), &mut worker_ended, tokio::time::sleep(shutdown_delay)).await;
        let _ = stop_tx.send(true);
        let drain = tokio::time::timeout(drain_timeout, &mut server);
        let drained = polling(worker.as_mut(), &mut worker_ended, drain).await;
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
        stop_last(relay, health_server, tracing).await;
        served.and(worked)
    }
}

/// Awaits `task` while polling the worker, which runs workflows on this
/// task (an in-flight Redeem may need it); if the worker ends meanwhile,
/// its result goes into `ended` (a worker that is not there never ends).
async fn polling<T>(
    mut worker: std::pin::Pin<&mut impl Future<Output = Result<(), AppError>>>,
    ended: &mut Option<Result<(), AppError>>,
    task: impl Future<Output = T>,
) -> T {
    tokio::pin!(task);
    loop {
        tokio::select! {
            out = &mut task => return out,
            result = &mut worker, if ended.is_none() => *ended = Some(result),
        }
    }
}

/// The plaintext health-only listener, serving until `stop` changes.
fn serve_health(
    listener: tokio::net::TcpListener,
    health: &tonic_health::server::HealthReporter,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<Result<(), tonic::transport::Error>> {
    let service = HealthServer::new(HealthService::from_health_reporter(health.clone()));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming_shutdown(
        incoming,
        async move {
            let _ = stop.changed().await;
        },
    ))
}

/// Waits for what stops last (told to by then): the relay, which hands its
/// accounts back within one delivery timeout, and the health listener; then
/// flushes the traces. A ledger call stuck on a dead connection, or a
/// client's health Watch stream, must not hold the exit.
async fn stop_last(
    relay: Option<JoinHandle<()>>,
    health_server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    tracing: Option<crate::otel::Tracing>,
) {
    if let Some(mut relay) = relay
        && tokio::time::timeout(RELAY_STOP, &mut relay).await.is_err()
    {
        tracing::warn!("the webhook relay did not stop in time; its leases expire by themselves");
        relay.abort();
    }
    if let Some(mut health_server) = health_server
        && tokio::time::timeout(Duration::from_secs(1), &mut health_server).await.is_err()
    {
        health_server.abort();
    }
    if let Some(tracing) = tracing {
        tracing.shutdown();
    }
    tracing::info!("stopped");
}
