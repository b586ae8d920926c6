//! Baselines the benchmark compares the service with, run by the benchmark's
//! own worker (never by the service's):
//! - `PerEventAccount` processes accruals the way the reference guide does,
//!   queued by the signal and taken one at a time by the run loop, one
//!   ledger write (one activity, regular or local) each, deciding with the
//!   same rules and writing the same rows through the same activity as the
//!   real workflow;
//! - its `touch` and `touch_local` updates run one no-op activity, regular or
//!   local: the floor for any update that does work in an activity;
//! - its `ping` signal and `tick` update do nothing: the floor of a signal
//!   and an update in turn on one workflow.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, LocalActivityOptions, SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};

use crate::activities::LoyaltyActivities;
use crate::domain::{Command, LoyaltyState, LoyaltySummary, PointsEvent, ProjectionReply};

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Input of [`PerEventAccount`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerEventInput {
    /// The account.
    pub customer_id: String,
    /// Write with local activities instead of regular ones.
    pub local: bool,
}

/// An account applying one accrual per ledger write.
#[workflow]
pub struct PerEventAccount {
    state: LoyaltyState,
    queue: std::collections::VecDeque<PointsEvent>,
    local: bool,
}

#[workflow_methods]
impl PerEventAccount {
    /// A new, empty account.
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: PerEventInput) -> Self {
        Self { state: LoyaltyState::open(&input.customer_id), queue: Default::default(), local: input.local }
    }

    /// Applies pending accruals one at a time, forever.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
        loop {
            ctx.wait_condition(|s: &Self| !s.queue.is_empty() || s.state.has_projection_work()).await?;
            let now = ctx.workflow_time().map_or(0, crate::clock::unix_ms);
            ctx.state_mut(|s| {
                if !s.state.has_projection_work()
                    && let Some(event) = s.queue.pop_front()
                {
                    let _ = s.state.apply(Command::Accrue(PointsEvent { ledger_checked: true, ..event }), now);
                }
            });
            let batch = ctx.state(|s| s.state.projection(1, usize::MAX));
            let written = if ctx.state(|s| s.local) {
                let options = LocalActivityOptions::builder().start_to_close_timeout(Duration::from_secs(10)).build();
                ctx.execute_local_activity(LoyaltyActivities::project_entries, batch.clone(), options).await
            } else {
                ctx.execute_activity(LoyaltyActivities::project_entries, batch.clone(), options()).await
            };
            // A failed write leaves the entry unwritten: the next turn retries it.
            if let Ok(ProjectionReply::Written { .. }) = written {
                ctx.state_mut(|s| s.state.written(&batch));
            }
        }
    }

    /// Queues an accrual (the service's wire name).
    #[signal]
    pub fn add_points(&mut self, _ctx: &mut SyncWorkflowContext<Self>, event: PointsEvent) {
        self.queue.push_back(event);
    }

    /// The summary (the service's wire name).
    #[query]
    pub fn get_loyalty_summary(&self, _ctx: &WorkflowContextView) -> LoyaltySummary {
        self.state.summary()
    }

    /// A signal that does nothing.
    #[signal]
    pub fn ping(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _n: u64) {}

    /// An update that does nothing.
    #[update]
    pub fn tick(&mut self, _ctx: &mut SyncWorkflowContext<Self>, n: u64) -> Result<u64, HandlerError> {
        Ok(n)
    }

    /// An update that runs one regular no-op activity.
    #[update]
    pub async fn touch(ctx: &mut WorkflowContext<Self>, n: u64) -> Result<u64, HandlerError> {
        Ok(ctx.execute_activity(BenchActivities::noop, n, options()).await?)
    }

    /// An update that runs one local no-op activity.
    #[update]
    pub async fn touch_local(ctx: &mut WorkflowContext<Self>, n: u64) -> Result<u64, HandlerError> {
        let options = LocalActivityOptions::builder().start_to_close_timeout(Duration::from_secs(5)).build();
        Ok(ctx.execute_local_activity(BenchActivities::noop, n, options).await?)
    }
}

fn options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10)).build()
}

/// The benchmark's own activities.
pub struct BenchActivities;

#[activities]
impl BenchActivities {
    /// Does nothing: the cost of an activity round trip alone.
    #[activity(name = "bench_noop")]
    pub async fn noop(self: Arc<Self>, _ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
        Ok(n)
    }
}
