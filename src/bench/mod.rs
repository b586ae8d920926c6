//! `loyalty bench`: measures a running service against the Temporal client
//! used directly on the same kind of workflows, side by side in one run, and
//! the hot-customer path against one-write-per-event processing.
//!
//! Phases (`--phases`):
//! - `api`: Accrue, GetSummary, Redeem through the service vs signal-with-start,
//!   query and update sent straight to Temporal, alternating which side goes
//!   first in each round so drift in the machine's load hits both;
//! - `hot`: a backlog queued at one customer while no worker runs, drained by
//!   the real workflow (batched) and by the per-event baselines, then a steady
//!   stream to one customer through the service;
//! - `alternating`: Accrue, Redeem and GetSummary in turn on the same
//!   customers, one in flight, and the history events each kind of update costs;
//! - `mixed`: one customer taking a steady Accrue stream while Redeem and
//!   Adjust calls go to the same account, all through the service: latency
//!   per kind, retries and errors, and how far the applied balance lags;
//! - `memory`: resident memory of the service process per cached account;
//! - `lots`: GetSummary on an account that took 10,000 lots, next to a fresh one;
//! - `earning`: Accrue with a 20-line order vs with points, PreviewAccrual
//!   vs GetSummary, and the evaluation of a 1,000-line order in process.
//!
//! Results go to `--out` as `results.json` and `chart.svg`.

mod alternating;
mod api;
mod chart;
mod cpu;
mod earning;
mod hot;
mod load;
mod lots;
mod memory;
mod mixed;
pub mod reference;
mod report;
pub mod stats;
mod webhooks;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use temporalio_client::{
    Client, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowStartOptions,
};
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tonic::transport::Channel;

use crate::activities::LoyaltyActivities;
use crate::app::temporal_client;
use crate::config::{Overrides, Settings};
use crate::domain::messages::PointsEvent;
use crate::grpc::pb::loyalty_service_client::LoyaltyServiceClient;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::workflow::{LoyaltyEntityWorkflow, WorkflowInput};
use reference::{BenchActivities, PerEventAccount};

/// Options of `loyalty bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Address of the running service's gRPC API.
    #[arg(long, env = "LOYALTY_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Accounts the api phase spreads its calls over (per side).
    #[arg(long, default_value_t = 50)]
    customers: usize,
    /// Accruals per account (per side).
    #[arg(long, default_value_t = 20)]
    accruals: usize,
    /// GetSummary calls per account (per side).
    #[arg(long, default_value_t = 20)]
    summaries: usize,
    /// Redemptions per account (per side); each spends 1 of the 10 points an accrual gives.
    #[arg(long, default_value_t = 5)]
    redeems: usize,
    /// Calls in flight at once, for both sides; the api phase runs once per
    /// level (latency is best read at 1, throughput at the highest), the hot
    /// and memory phases at the highest (the mixed phase has its own callers).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    concurrency: Vec<usize>,
    /// Rounds per RPC; the side that goes first alternates.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Accruals queued at one customer before its worker starts.
    #[arg(long, default_value_t = 3_000)]
    backlog: usize,
    /// The same for the one-write-per-event baselines (slow: about 20/s).
    #[arg(long, default_value_t = 3_000)]
    reference_backlog: usize,
    /// How long the steady stream to one customer lasts.
    #[arg(long, default_value_t = 20)]
    stream_seconds: u64,
    /// Rounds of Accrue, Redeem and GetSummary per customer in the alternating phase.
    #[arg(long, default_value_t = 30)]
    alternating_rounds: usize,
    /// How long the mixed phase sends Accrue, Redeem and Adjust to one customer.
    #[arg(long, default_value_t = 20)]
    mixed_seconds: u64,
    /// Callers sending Accrue in the mixed phase (one more sends Redeem, one Adjust).
    #[arg(long, default_value_t = 4)]
    mixed_accrue_callers: usize,
    /// Accounts opened for the memory phase (the service needs
    /// LOYALTY_MAX_CACHED_ACCOUNTS at least this large).
    #[arg(long, default_value_t = 10_000)]
    memory_accounts: usize,
    /// Accruals each account of the memory phase takes (more make its
    /// cached run's history longer).
    #[arg(long, default_value_t = 1)]
    memory_accruals: usize,
    /// Process id of the service: the memory phase, and CPU per call.
    #[arg(long)]
    service_pid: Option<u32>,
    /// Process id of the Temporal server: its CPU per call.
    #[arg(long)]
    temporal_pid: Option<u32>,
    /// Ledger of the benchmark's own worker (hot phase baselines).
    #[arg(long)]
    bench_database_url: Option<String>,
    /// Be the endpoint of the service's webhooks on this loopback port for
    /// the whole run, and report delivery under the mixed load.
    #[arg(long)]
    webhook_port: Option<u16>,
    /// Which phases to run.
    #[arg(long, value_delimiter = ',', default_value = "api,alternating,hot,mixed,memory,lots,earning")]
    phases: Vec<String>,
    /// Accruals (each its own lot, expiring on its own date) the lots phase gives one account.
    #[arg(long, default_value_t = 10_000)]
    lots: usize,
    /// GetSummary calls per account in the lots phase.
    #[arg(long, default_value_t = 400)]
    lots_summaries: usize,
    /// Written into the results: how the dev server stores its data.
    #[arg(long, default_value = "file-backed (SQLite)")]
    dev_server_storage: String,
    /// Only redraw `--out`/chart.svg (and print the tables) from this
    /// results.json of an earlier run; nothing is measured.
    #[arg(long)]
    render: Option<PathBuf>,
    /// Folder for results.json and chart.svg.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    #[command(flatten)]
    overrides: Overrides,
}

/// Handles shared by the phases.
pub(crate) struct Bench {
    args: BenchArgs,
    /// Prefix of this run's ids, so runs never share workflows.
    run: String,
    grpc: LoyaltyServiceClient<Channel>,
    temporal: Client,
    /// The service's task queue: raw calls go to the same workers.
    task_queue: String,
    /// The Temporal namespace.
    namespace: String,
    ledger: Ledger,
    runtime: Runtime,
    /// Processes whose CPU time each operation reports.
    watched: cpu::Watched,
}

/// Runs the benchmark; exit 0 when it ran (targets missed are reported, not
/// failed), 2 when it could not run.
pub async fn bench(args: BenchArgs) -> ExitCode {
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loyalty bench: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(results) = &args.render {
        let report: report::Report = serde_json::from_str(&std::fs::read_to_string(results)?)?;
        report.print();
        return write_chart(&report, &args.out);
    }
    let settings = Settings::load(&args.overrides)?;
    std::fs::create_dir_all(&args.out)?;
    let run = format!("b{}", SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs());
    let ledger_url = match &args.bench_database_url {
        Some(url) => url.clone(),
        None => format!("sqlite:{}/bench-ledger-{run}.db", args.out.display()),
    };
    let bench = Bench {
        grpc: LoyaltyServiceClient::connect(args.server.clone()).await?,
        temporal: temporal_client(&settings, None, None).await?,
        task_queue: settings.task_queue.clone(),
        namespace: settings.temporal_client.namespace.clone(),
        ledger: Ledger::connect(&ledger_url).await?,
        runtime: Runtime::from_current_tokio(RuntimeOptions::builder().build()?)?,
        watched: cpu::Watched { service: args.service_pid, temporal: args.temporal_pid },
        run,
        args,
    };
    let mut report = report::Report::new(&bench.args.dev_server_storage, bench.load());
    let receiver = match bench.args.webhook_port {
        Some(port) => Some(webhooks::Receiver::listen(port).await?),
        None => None,
    };
    let phase = |name: &str| bench.args.phases.iter().any(|p| p == name);
    if phase("api") {
        report.api = api::run(&bench).await?;
    }
    if phase("alternating") {
        report.alternating = Some(alternating::run(&bench).await?);
    }
    if phase("hot") {
        report.hot = Some(hot::run(&bench).await?);
    }
    if phase("mixed") {
        let from = webhooks::now_ms();
        report.mixed = Some(mixed::run(&bench).await?);
        if let Some(receiver) = &receiver {
            report.webhooks = Some(receiver.measure(&mixed::customer(&bench), from, webhooks::now_ms()).await);
        }
    }
    if phase("memory") {
        match bench.args.service_pid {
            Some(pid) => report.memory = Some(memory::run(&bench, pid).await?),
            None => eprintln!("memory phase skipped: give --service-pid"),
        }
    }
    if phase("lots") {
        report.lots = Some(lots::run(&bench).await?);
    }
    if phase("earning") {
        report.earning = Some(earning::run(&bench).await?);
    }
    report.judge();
    report.print();
    let json = bench.args.out.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
    eprintln!("wrote {}", json.display());
    write_chart(&report, &bench.args.out)
}

fn write_chart(report: &report::Report, out: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    let svg = out.join("chart.svg");
    std::fs::write(&svg, chart::render(report))?;
    eprintln!("wrote {}", svg.display());
    Ok(())
}

impl Bench {
    /// Callers in flight in the hot and memory phases: the highest level.
    fn load(&self) -> usize {
        self.args.concurrency.iter().copied().max().unwrap_or(1).max(1)
    }

    /// The benchmark's worker task queue (baselines and backlogs).
    fn bench_queue(&self) -> String {
        format!("loyalty-bench-{}", self.run)
    }

    /// Runs `body` while a worker of the benchmark's own task queue runs.
    async fn with_worker<T>(&self, body: impl Future<Output = T>) -> Result<T, String> {
        let options = WorkerOptions::new(self.bench_queue())
            .register_workflow::<LoyaltyEntityWorkflow>()
            .map_err(|e| e.to_string())?
            .register_workflow::<PerEventAccount>()
            .map_err(|e| e.to_string())?
            .register_workflow_interceptors(crate::workflow::interceptors())
            .register_activities(LoyaltyActivities::new(self.ledger.clone(), Metrics::disabled()))
            .register_activities(BenchActivities)
            .build();
        let mut worker = Worker::new(&self.runtime, self.temporal.clone(), options).map_err(|e| e.to_string())?;
        let stop = worker.shutdown_handle();
        let body = async {
            let out = body.await;
            stop();
            out
        };
        // The worker is not Send: both run on this task.
        let (ran, out) = tokio::join!(worker.run(), body);
        ran.map_err(|e| format!("bench worker: {e}"))?;
        Ok(out)
    }

    /// Signals accrual `event` to the account workflow `workflow_id` on
    /// `task_queue`, starting it if needed, as the service's Accrue does.
    async fn signal_account(&self, task_queue: String, workflow_id: &str, event: PointsEvent) -> Result<(), String> {
        let options = WorkflowStartOptions::new(task_queue, workflow_id)
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .build();
        self.temporal
            .signal_with_start_workflow(
                LoyaltyEntityWorkflow::run,
                WorkflowInput::new_account(),
                LoyaltyEntityWorkflow::add_points,
                event,
                options,
            )
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Waits until the account of `workflow_id` has `lifetime` points.
    async fn wait_for_lifetime(&self, workflow_id: &str, lifetime: i64, within: Duration) -> Result<(), String> {
        let handle = self.temporal.get_workflow_handle::<LoyaltyEntityWorkflow>(workflow_id);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let seen = handle
                .query(LoyaltyEntityWorkflow::get_loyalty_summary, (), WorkflowQueryOptions::default())
                .await
                .map(|s| s.lifetime_points)
                .unwrap_or(-1);
            if seen >= lifetime {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("{workflow_id}: {seen} of {lifetime} lifetime points after {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
