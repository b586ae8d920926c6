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

/// What a readiness check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemporalCheck {
    /// The frontend answers and accepts this service in its namespace.
    Ready,
    /// The frontend does not answer (or not in time): an outage, which passes.
    Unreachable,
    /// The frontend answers but refuses this service: a wrong API key or
    /// certificate, or a missing namespace. Only an operator can fix it.
    Refused(String),
}

/// Checks Temporal's frontend health, then that it accepts this service in
/// its namespace (describing the namespace needs the same credentials every
/// call does, so a wrong key shows here and not only per call).
pub async fn check_temporal(client: &Client) -> TemporalCheck {
    use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeNamespaceRequest;
    let mut health = client.connection().health_service();
    let check = health.check(HealthCheckRequest::default().into_request());
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32 => {}
        _ => return TemporalCheck::Unreachable,
    }
    let namespace = client.options().namespace.clone();
    let mut workflows = client.connection().workflow_service();
    let describe = workflows.describe_namespace(
        DescribeNamespaceRequest { namespace: namespace.clone(), ..Default::default() }.into_request(),
    );
    match tokio::time::timeout(CHECK_TIMEOUT, describe).await {
        Ok(Ok(_)) => TemporalCheck::Ready,
        Ok(Err(status))
            if matches!(
                status.code(),
                tonic::Code::NotFound | tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ) =>
        {
            TemporalCheck::Refused(format!("namespace {namespace:?}: {:?}: {}", status.code(), status.message()))
        }
        _ => TemporalCheck::Unreachable,
    }
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
/// `stop` fires, starting from what was reported at start. Logs each change
/// once: a refusal at ERROR, an outage at WARN.
pub async fn follow_temporal(
    client: Client,
    health: HealthReporter,
    reported: Reported,
    reported_at_start: TemporalCheck,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = reported_at_start;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let now = check_temporal(&client).await;
        if *stop.borrow() {
            return;
        }
        if now != last {
            match &now {
                TemporalCheck::Ready => tracing::info!("Temporal reachable again: SERVING"),
                TemporalCheck::Unreachable => tracing::warn!("Temporal unreachable: NOT_SERVING until it answers"),
                TemporalCheck::Refused(why) => tracing::error!(
                    reason = %why,
                    "Temporal refuses this service (TEMPORAL_API_KEY, TLS, TEMPORAL_NAMESPACE): NOT_SERVING until \
                     its configuration is fixed"
                ),
            }
            let serving = now == TemporalCheck::Ready;
            if serving != (last == TemporalCheck::Ready) {
                report(&health, &reported, serving).await;
            }
            last = now;
        }
    }
}
