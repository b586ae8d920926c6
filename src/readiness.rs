//! Readiness follows Temporal: while its frontend does not answer, the gRPC
//! health service reports NOT_SERVING (for "" and for the API), and SERVING
//! again once it does. The process stays up either way, so Kubernetes takes
//! the pod out of the Service instead of restarting it. A process that runs
//! a worker first reports SERVING once Temporal lists that worker among its
//! task queue's pollers: before, a call could reach an account that no
//! worker would answer (one replica restarted alone).

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
/// How often a starting worker is looked for among the task queue's pollers.
const WORKER_LOOK_INTERVAL: Duration = Duration::from_millis(100);
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
        Ok(Ok(described)) => {
            warn_without_poll_cancellation(described.get_ref());
            TemporalCheck::Ready
        }
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

/// Warns, once per process, when the namespace does not say that Temporal
/// cancels a stopping worker's polls (the cluster's dynamic config
/// `frontend.enableCancelWorkerPollsOnShutdown`): the SDK then drops its
/// polls in flight at shutdown, and a rolling deploy loses workflow tasks,
/// each costing its account a workflow task timeout.
fn warn_without_poll_cancellation(
    described: &temporalio_common::protos::temporal::api::workflowservice::v1::DescribeNamespaceResponse,
) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let cancels = described
        .namespace_info
        .as_ref()
        .and_then(|info| info.capabilities.as_ref())
        .is_some_and(|c| c.worker_poll_complete_on_shutdown);
    if !cancels && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "Temporal does not cancel a stopping worker's polls (set frontend.enableCancelWorkerPollsOnShutdown \
             on the cluster): each rolling deploy may lose workflow tasks, and their accounts wait a workflow \
             task timeout"
        );
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

/// Longest wait for the worker to show among the pollers before readiness
/// goes by Temporal alone (a versioned worker polls its version's queue,
/// which a plain describe of the task queue may not list).
const WORKER_LOOK_LIMIT: Duration = Duration::from_secs(10);

/// The identity this process's worker polls with: the client's (or, as
/// the SDK would choose when that is empty, `pid@host`) and this start's
/// token. A container restarted in its pod keeps its pid (often 1) and
/// host name, and Temporal lists the dead process's poller for minutes:
/// without the token, readiness would take that poller for this worker.
pub fn worker_identity(client: &Client) -> String {
    let identity = client.connection().identity();
    let base = if identity.is_empty() {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "loyalty".into());
        format!("{}@{host}", std::process::id())
    } else {
        identity.to_owned()
    };
    format!("{base}-{}", start_token())
}

/// A token of this start of the process (the wall clock at first use, in hex).
fn start_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        format!("{:x}", nanos as u64)
    })
}

/// Whether Temporal lists a poller of `identity` on the workflow task
/// queue `task_queue`, i.e. this process's worker polls.
pub async fn worker_polls(client: &Client, task_queue: &str, identity: &str) -> bool {
    use temporalio_common::protos::temporal::api::enums::v1::{TaskQueueKind, TaskQueueType};
    use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
    use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeTaskQueueRequest;
    let request = DescribeTaskQueueRequest {
        namespace: client.options().namespace.clone(),
        task_queue: Some(TaskQueue {
            name: task_queue.to_owned(),
            kind: TaskQueueKind::Normal as i32,
            ..Default::default()
        }),
        task_queue_type: TaskQueueType::Workflow as i32,
        ..Default::default()
    };
    let mut workflows = client.connection().workflow_service();
    match tokio::time::timeout(CHECK_TIMEOUT, workflows.describe_task_queue(request.into_request())).await {
        Ok(Ok(response)) => response.get_ref().pollers.iter().any(|p| p.identity == identity),
        _ => false,
    }
}

/// What readiness needs to see of this process.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The worker's task queue and identity, when this process runs a worker.
    pub worker: Option<(String, String)>,
    /// What the first check of Temporal found.
    pub temporal_at_start: TemporalCheck,
}

/// Checks Temporal every [`CHECK_INTERVAL`] and reports the result until
/// `stop` fires; NOT_SERVING is reported at start. A worker is looked for
/// every [`WORKER_LOOK_INTERVAL`] until it is seen polling (once), for at
/// most [`WORKER_LOOK_LIMIT`]. Logs
/// each change once: a refusal at ERROR, an outage at WARN.
pub async fn follow(
    client: Client,
    health: HealthReporter,
    reported: Reported,
    watched: Watched,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = watched.temporal_at_start;
    let mut worker_seen = watched.worker.is_none();
    let look_until = tokio::time::Instant::now() + WORKER_LOOK_LIMIT;
    let mut serving = false;
    let mut next_check = tokio::time::Instant::now() + CHECK_INTERVAL;
    loop {
        if !worker_seen && let Some((queue, identity)) = &watched.worker {
            worker_seen = worker_polls(&client, queue, identity).await;
            if worker_seen {
                tracing::info!(task_queue = %queue, "the worker polls its task queue");
            } else if tokio::time::Instant::now() >= look_until {
                tracing::warn!(task_queue = %queue, identity = %identity,
                    "the worker is not listed among the task queue's pollers; readiness follows Temporal alone");
                worker_seen = true;
            }
        }
        if *stop.borrow() {
            return;
        }
        let ready = last == TemporalCheck::Ready && worker_seen;
        if ready != serving {
            report(&health, &reported, ready).await;
            serving = ready;
        }
        let wake = if worker_seen { next_check } else { tokio::time::Instant::now() + WORKER_LOOK_INTERVAL };
        tokio::select! {
            _ = tokio::time::sleep_until(wake.min(next_check)) => {}
            _ = stop.changed() => return,
        }
        if tokio::time::Instant::now() < next_check {
            continue;
        }
        next_check = tokio::time::Instant::now() + CHECK_INTERVAL;
        let now = check_temporal(&client).await;
        if *stop.borrow() {
            return;
        }
        if now != last {
            match &now {
                TemporalCheck::Ready => tracing::info!("Temporal reachable again"),
                TemporalCheck::Unreachable => tracing::warn!("Temporal unreachable: NOT_SERVING until it answers"),
                TemporalCheck::Refused(why) => tracing::error!(
                    reason = %why,
                    "Temporal refuses this service (TEMPORAL_API_KEY, TLS, TEMPORAL_NAMESPACE): NOT_SERVING until \
                     its configuration is fixed"
                ),
            }
            last = now;
        }
    }
}
