//! The hot phase: one customer receiving accruals faster than one ledger
//! write per event can take them.
//!
//! A backlog is queued while no worker polls the benchmark's task queue, then
//! a worker starts and the time to apply all of it is measured, for the real
//! workflow (batched) and for the one-write-per-event baselines; history
//! events are counted over every run of the account. Then a steady stream at
//! the rate the service accepts goes to one customer through the service.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecutionInfo, WorkflowFetchHistoryOptions, WorkflowHandle,
    WorkflowIdConflictPolicy, WorkflowQueryOptions, WorkflowStartOptions,
};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

use super::Bench;
use super::load::drive;
use super::reference::{PerEventAccount, PerEventInput};
use super::stats::Samples;
use crate::domain::messages::PointsEvent;
use crate::grpc::pb;
use crate::workflow::LoyaltyEntityWorkflow;

/// How a backlog is processed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Processing {
    /// The service's workflow: pending accruals applied in batches.
    Batched,
    /// One regular activity per accrual (the reference guide's design).
    PerEventRegular,
    /// One local activity per accrual.
    PerEventLocal,
}

impl Processing {
    fn slug(self) -> &'static str {
        match self {
            Processing::Batched => "batched",
            Processing::PerEventRegular => "per-event-regular",
            Processing::PerEventLocal => "per-event-local",
        }
    }
}

/// How one backlog was applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backlog {
    /// Who processed it.
    pub processing: Processing,
    /// Accruals queued (1 point each).
    pub accruals: usize,
    /// Rate Temporal accepted them at, with no worker running.
    pub queued_per_second: f64,
    /// From the worker's start until every accrual was applied.
    pub drain_seconds: f64,
    /// Accruals applied per second.
    pub applied_per_second: f64,
    /// History events over every run of the account.
    pub history_events: usize,
    /// `history_events / accruals`.
    pub events_per_accrual: f64,
    /// Runs (continue-as-new) the account went through.
    pub runs: usize,
}

/// A steady stream of Accrue calls to one customer through the service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stream {
    /// How long the stream was sent.
    pub seconds: f64,
    /// Accrue calls accepted.
    pub accepted: usize,
    /// Accrue calls refused or failed.
    pub failed: usize,
    /// Accepted per second.
    pub accepted_per_second: f64,
    /// Most accruals accepted but not yet applied, sampled every 100 ms.
    pub max_lag: i64,
    /// From the last accepted call until all were applied.
    pub catch_up_seconds: f64,
}

/// Results of the hot phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hot {
    /// One entry per processing.
    pub backlogs: Vec<Backlog>,
    /// The steady stream.
    pub stream: Stream,
}

/// Runs the hot phase.
pub async fn run(bench: &Bench) -> Result<Hot, String> {
    let mut backlogs = vec![bench.backlog(Processing::Batched, bench.args.backlog).await?];
    for processing in [Processing::PerEventRegular, Processing::PerEventLocal] {
        backlogs.push(bench.backlog(processing, bench.args.reference_backlog).await?);
    }
    let stream = bench.stream().await?;
    Ok(Hot { backlogs, stream })
}

impl Bench {
    async fn backlog(&self, processing: Processing, accruals: usize) -> Result<Backlog, String> {
        let workflow_id = format!("loyalty-bench-{}-hot-{}", self.run, processing.slug());
        let label = format!("queue {accruals} for {}", processing.slug());
        let queued = drive(&label, accruals, self.load(), |i| self.queue(processing, &workflow_id, i)).await;
        let queued = queued.summary(&label, self.load());
        if queued.failed > 0 {
            return Err(format!("{label}: {} signals failed", queued.failed));
        }
        // No worker has run it, so the current run is the first.
        let first_run = self
            .temporal
            .get_workflow_handle::<LoyaltyEntityWorkflow>(&workflow_id)
            .describe(WorkflowDescribeOptions::default())
            .await
            .map_err(|e| e.to_string())?
            .raw_description
            .workflow_execution_info
            .and_then(|i| i.execution)
            .map(|e| e.run_id)
            .ok_or("describe returned no run id")?;
        eprintln!("{}: draining {accruals} accruals", processing.slug());
        let drained = self
            .with_worker(async {
                let started = Instant::now();
                self.wait_for_lifetime(&workflow_id, accruals as i64, Duration::from_secs(1_800)).await?;
                Ok::<_, String>(started.elapsed())
            })
            .await??;
        let (history_events, runs) = self.history_events(&workflow_id, first_run).await?;
        Ok(Backlog {
            processing,
            accruals,
            queued_per_second: queued.per_second,
            drain_seconds: drained.as_secs_f64(),
            applied_per_second: accruals as f64 / drained.as_secs_f64(),
            history_events,
            events_per_accrual: history_events as f64 / accruals as f64,
            runs,
        })
    }

    /// Signals accrual `i` (1 point), starting the account if needed.
    async fn queue(&self, processing: Processing, workflow_id: &str, i: usize) -> Result<(), String> {
        let event = PointsEvent {
            event_id: format!("h{i}"),
            points: 1,
            reason: "bench".into(),
            source: "bench".into(),
            ledger_checked: false,
            ..Default::default()
        };
        if let Processing::Batched = processing {
            return self.signal_account(self.bench_queue(), workflow_id, event).await;
        }
        let input = PerEventInput {
            customer_id: workflow_id.to_owned(),
            local: matches!(processing, Processing::PerEventLocal),
        };
        let options = WorkflowStartOptions::new(self.bench_queue(), workflow_id)
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .build();
        self.temporal
            .signal_with_start_workflow(PerEventAccount::run, input, PerEventAccount::add_points, event, options)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Events in the history of every run from `first_run` on, and the runs.
    async fn history_events(&self, workflow_id: &str, first_run: String) -> Result<(usize, usize), String> {
        let (mut events, mut runs) = (0, 0);
        let mut next = Some(first_run);
        while let Some(run_id) = next {
            let info = WorkflowExecutionInfo::builder()
                .namespace(self.namespace.clone())
                .workflow_id(workflow_id)
                .run_id(run_id)
                .build();
            let history = WorkflowHandle::<Client, LoyaltyEntityWorkflow>::new(self.temporal.clone(), info)
                .fetch_history(WorkflowFetchHistoryOptions::default())
                .into_events()
                .await
                .map_err(|e| e.to_string())?;
            events += history.len();
            runs += 1;
            next = history.last().and_then(|e| match &e.attributes {
                Some(Attributes::WorkflowExecutionContinuedAsNewEventAttributes(a)) => {
                    Some(a.new_execution_run_id.clone())
                }
                _ => None,
            });
        }
        Ok((events, runs))
    }

    /// Accrue calls to one customer through the service, as fast as it takes
    /// them, for `--stream-seconds`, watching how far application lags.
    async fn stream(&self) -> Result<Stream, String> {
        let customer = format!("bench-{}-stream", self.run);
        let workflow_id = format!("loyalty-{customer}");
        let seconds = Duration::from_secs(self.args.stream_seconds);
        let accepted = AtomicI64::new(0);
        let max_lag = AtomicI64::new(0);
        let started = Instant::now();
        let sender = |first: usize| {
            let (customer, accepted) = (&customer, &accepted);
            async move {
                let mut samples = Samples::default();
                let mut i = first;
                while started.elapsed() < seconds {
                    let request = pb::AccrueRequest {
                        customer_id: customer.clone(),
                        event_id: format!("s{i}"),
                        points: 1,
                        reason: "bench".into(),
                        source: "bench".into(),
                        ..Default::default()
                    };
                    let t = Instant::now();
                    match self.grpc.clone().accrue(request).await {
                        Ok(_) => {
                            samples.ok(t.elapsed());
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => samples.failed(),
                    }
                    i += self.load();
                }
                samples
            }
        };
        eprintln!("stream: Accrue to one customer for {}s", seconds.as_secs());
        let send = futures::future::join_all((0..self.load()).map(sender));
        let watch = async {
            let handle = self.temporal.get_workflow_handle::<LoyaltyEntityWorkflow>(&workflow_id);
            while started.elapsed() < seconds {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let before = accepted.load(Ordering::SeqCst);
                if let Ok(s) =
                    handle.query(LoyaltyEntityWorkflow::get_loyalty_summary, (), WorkflowQueryOptions::default()).await
                {
                    max_lag.fetch_max(before - s.lifetime_points, Ordering::SeqCst);
                }
            }
        };
        let (senders, ()) = tokio::join!(send, watch);
        let mut samples = Samples::default();
        for s in senders {
            samples.merge(s);
        }
        let sent_for = started.elapsed();
        let total = accepted.load(Ordering::SeqCst);
        let last_accepted = Instant::now();
        self.wait_for_lifetime(&workflow_id, total, Duration::from_secs(600)).await?;
        let catch_up = last_accepted.elapsed();
        let summary = samples.summary("stream", self.load());
        Ok(Stream {
            seconds: sent_for.as_secs_f64(),
            accepted: summary.ok,
            failed: summary.failed,
            accepted_per_second: summary.ok as f64 / sent_for.as_secs_f64(),
            max_lag: max_lag.load(Ordering::SeqCst),
            catch_up_seconds: catch_up.as_secs_f64(),
        })
    }
}
