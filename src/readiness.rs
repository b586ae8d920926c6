//! Readiness follows Temporal: while its frontend does not answer, the gRPC
//! health service reports NOT_SERVING (for "" and for the API), and SERVING
//! again once it does. The process stays up either way, so Kubernetes takes
//! the pod out of the Service instead of restarting it.

use std::time::Duration;

use temporalio_client::Client;
use temporalio_common::protos::grpc::health::v1::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic::IntoRequest;
use tonic_health::server::HealthReporter;

/// Health service name for liveness probes: SERVING as long as the process
/// runs, whatever its dependencies do, so an outage of Temporal never gets
/// pods restarted.
pub const LIVENESS_SERVICE: &str = "liveness";

/// How often Temporal is checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How long one check may take before Temporal counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The health service names this process reports on.
#[derive(Debug, Clone)]
pub struct Reported {
    /// Extra service names besides "" (the API's, when this process serves it).
    pub services: Vec<&'static str>,
}

/// Whether Temporal's frontend answers its health check now.
pub async fn temporal_reachable(client: &Client) -> bool {
    let mut health = client.connection().health_service();
    let check = health.check(HealthCheckRequest::default().into_request());
    matches!(
        tokio::time::timeout(CHECK_TIMEOUT, check).await,
        Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32
    )
}

/// Sets every reported service to `serving` or NOT_SERVING.
pub async fn report(health: &HealthReporter, reported: &Reported, serving: bool) {
    let status = if serving { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
    health.set_service_status("", status).await;
    for name in &reported.services {
        health.set_service_status(*name, status).await;
    }
}

/// Checks Temporal every [`CHECK_INTERVAL`] and reports the result until
/// `stop` fires. Logs each change once.
pub async fn follow_temporal(
    client: Client,
    health: HealthReporter,
    reported: Reported,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = true;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let reachable = temporal_reachable(&client).await;
        if *stop.borrow() {
            return;
        }
        if reachable != last {
            if reachable {
                tracing::info!("Temporal reachable again: SERVING");
            } else {
                tracing::warn!("Temporal unreachable: NOT_SERVING until it answers");
            }
            report(&health, &reported, reachable).await;
            last = reachable;
        }
    }
}
