//! Replicas as real `loyalty serve` processes, stopped as Kubernetes stops
//! them (SIGTERM, with the manifests' shutdown delay) or killed (`kill -9`),
//! behind a router that, like a Service in front of a readiness probe,
//! sends calls only to the replicas whose health says SERVING.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use loyalty::grpc::pb;
use tokio::task::JoinHandle;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::book::Grpc;
use super::hot::{Hot, Rpc, Tally, with_deadline};
use super::{Process, accrual, free_port, redemption, scratch_dir, serve_on};

/// The shutdown delay of the manifests (deploy/base/configmap.yaml): how
/// long a stopping replica keeps serving while endpoints stop routing to it.
pub const SHUTDOWN_DELAY_SECONDS: &str = "5";
/// How often the router reads each replica's health (a probe's period is
/// longer; the shutdown delay covers the difference).
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// Replicas of one service (one task queue, one ledger) and the router in front of them.
pub struct Fleet {
    name: String,
    env: Vec<(&'static str, String)>,
    addrs: Vec<SocketAddr>,
    processes: Vec<Option<Process>>,
    /// The router's view: whether each replica's health said SERVING at the last probe.
    serving: Arc<Vec<AtomicBool>>,
    prober: JoinHandle<()>,
    /// A client whose calls go to a SERVING replica.
    pub grpc: Grpc,
    /// The ledger's URL.
    pub database_url: String,
}

impl Fleet {
    /// `n` replicas named `<name>-<i>`, each started and SERVING.
    pub async fn start(name: &str, n: usize) -> Self {
        Self::start_with(name, n, &[]).await
    }

    /// [`Fleet::start`] with settings of its own (`extra`, environment variables).
    pub async fn start_with(name: &str, n: usize, extra: &[(&'static str, String)]) -> Self {
        let database_url = format!("sqlite:{}/ledger.db", scratch_dir(name).display());
        let mut env = vec![
            ("LOYALTY_DATABASE_URL", database_url.clone()),
            ("LOYALTY_TASK_QUEUE", format!("loyalty-test-{name}")),
            ("LOYALTY_SHUTDOWN_DELAY_SECONDS", SHUTDOWN_DELAY_SECONDS.to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ];
        env.extend(extra.iter().cloned());
        let addrs: Vec<SocketAddr> = (0..n).map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap()).collect();
        let (channel, changes) = Channel::balance_channel::<usize>(16);
        let serving: Arc<Vec<AtomicBool>> = Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
        let prober = tokio::spawn(route(addrs.clone(), serving.clone(), changes));
        let mut fleet = Fleet {
            name: name.to_owned(),
            env,
            addrs,
            processes: (0..n).map(|_| None).collect(),
            serving,
            prober,
            grpc: Grpc::new(channel),
            database_url,
        };
        for i in 0..n {
            fleet.launch(i);
        }
        for i in 0..n {
            fleet.until_serving(i, Duration::from_secs(60)).await;
        }
        fleet
    }

    /// Starts replica `i` (again) on its address, appending to its log.
    pub fn launch(&mut self, i: usize) {
        assert!(self.processes[i].is_none(), "replica {i} is running");
        let name = format!("{}-{i}", self.name);
        self.processes[i] = Some(serve_on(self.addrs[i], &name, &self.env));
    }

    /// SIGTERM to replica `i`, as Kubernetes stops a pod; returns once it has exited.
    pub async fn terminate(&mut self, i: usize) -> Duration {
        let mut process = self.processes[i].take().expect("replica running");
        let started = Instant::now();
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let sent = unsafe { libc::kill(process.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM sent");
        let status = tokio::task::spawn_blocking(move || process.child.wait()).await.unwrap().expect("exits");
        assert!(status.success(), "replica {i} stopped cleanly: {status:?}");
        started.elapsed()
    }

    /// `kill -9` of replica `i`.
    pub async fn kill(&mut self, i: usize) {
        let mut process = self.processes[i].take().expect("replica running");
        process.child.kill().expect("SIGKILL");
        tokio::task::spawn_blocking(move || process.child.wait()).await.unwrap().expect("reaped");
    }

    /// Waits until the router sees replica `i` SERVING; panics after `timeout`.
    pub async fn until_serving(&self, i: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.serving[i].load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "replica {i} never SERVING");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client of replica `i` alone.
    pub async fn direct(&self, i: usize) -> Grpc {
        Grpc::new(super::grpc_channel(self.addrs[i]).await)
    }

    /// Stops every replica still running (SIGTERM) and the router.
    pub async fn stop(mut self) {
        for i in 0..self.processes.len() {
            if self.processes[i].is_some() {
                self.terminate(i).await;
            }
        }
        self.prober.abort();
    }
}

/// Probes every replica's health every [`PROBE_EVERY`] and keeps the
/// balancer's endpoints to those that answer SERVING.
async fn route(
    addrs: Vec<SocketAddr>,
    serving: Arc<Vec<AtomicBool>>,
    changes: tokio::sync::mpsc::Sender<Change<usize, Endpoint>>,
) {
    let endpoint = |addr: SocketAddr| {
        Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_timeout(Duration::from_millis(500))
    };
    let probes: Vec<_> = addrs.iter().map(|a| HealthClient::new(endpoint(*a).connect_lazy())).collect();
    loop {
        for (i, probe) in probes.iter().enumerate() {
            let mut probe = probe.clone();
            let mut request = tonic::Request::new(HealthCheckRequest { service: String::new() });
            request.set_timeout(Duration::from_millis(500));
            let check = tokio::time::timeout(Duration::from_millis(500), probe.check(request)).await;
            let now = matches!(check, Ok(Ok(ref r)) if r.get_ref().status == ServingStatus::Serving as i32);
            if now != serving[i].load(Ordering::SeqCst) {
                let change = if now { Change::Insert(i, endpoint(addrs[i])) } else { Change::Remove(i) };
                if changes.send(change).await.is_err() {
                    return;
                }
                serving[i].store(now, Ordering::SeqCst);
            }
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// One customer's caller: Accrue 10, GetSummary, Redeem 5, over and over
/// until `stop`, each call retried with its event id until definite.
pub async fn customer_caller(grpc: Grpc, customer: String, stop: Arc<AtomicBool>) -> BTreeMap<Rpc, Tally> {
    let hot = Hot::new(&customer, 0);
    let mut tallies: BTreeMap<Rpc, Tally> =
        [Rpc::Accrue, Rpc::GetSummary, Rpc::Redeem].into_iter().map(|r| (r, Tally::new(&customer))).collect();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let event = format!("{customer}-a{n}");
        let request = accrual(&customer, &event, 10);
        let tally = tallies.get_mut(&Rpc::Accrue).unwrap();
        let send = || {
            let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
            async move { grpc.accrue(request).await }
        };
        match tally.call(&hot, &event, send).await {
            Ok(_) => tally.outcome.accrued.push((event, 10)),
            Err(s) => panic!("{event}: accrual refused: {s:?}"),
        }

        let request = pb::GetSummaryRequest { customer_id: customer.clone() };
        let tally = tallies.get_mut(&Rpc::GetSummary).unwrap();
        let send = || {
            let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
            async move { grpc.get_summary(request).await }
        };
        if let Err(s) = tally.call(&hot, "GetSummary", send).await {
            panic!("{customer}: GetSummary: {s:?}");
        }

        // The accrual above may still be on its way in: 5 of the opening
        // balance's points are always there.
        let event = format!("{customer}-r{n}");
        let request = redemption(&customer, &event, 5, "coffee");
        let tally = tallies.get_mut(&Rpc::Redeem).unwrap();
        let send = || {
            let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
            async move { grpc.redeem(request).await }
        };
        match tally.call(&hot, &event, send).await {
            Ok(_) => tally.outcome.redeemed.push((event, 5)),
            Err(s) => panic!("{event}: redemption refused: {s:?}"),
        }
    }
    tallies
}
