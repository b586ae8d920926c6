//! Baselines the benchmark compares the service with, run by the benchmark's
//! own worker (never by the service's):
//! - `PerEventAccount` processes accruals the way the reference guide does,
//!   one ledger write (one activity, regular or local) per accrual, writing
//!   the same rows through the same activity as the real workflow;
//! - its `touch` and `touch_local` updates run one no-op activity, regular or
//!   local: the floor for any update that does work in an activity.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, LocalActivityOptions, SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};

use crate::activities::LoyaltyActivities;
use crate::domain::LedgerBatch;
use crate::domain::messages::{LoyaltyState, LoyaltySummary, PointsEvent};

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
    local: bool,
}

#[workflow_methods]
impl PerEventAccount {
    /// A new, empty account.
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: PerEventInput) -> Self {
        Self { state: LoyaltyState::open(&input.customer_id), local: input.local }
    }

    /// Applies pending accruals one at a time, forever.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
        loop {
            ctx.wait_condition(|s: &Self| !s.state.pending_events.is_empty()).await?;
            let plan = ctx.state(|s| s.state.plan_accruals(1));
            let write_id = ctx.uuid4();
            let batch = ctx.state(|s| LedgerBatch {
                customer_id: s.state.customer_id.clone(),
                write_id: write_id.clone(),
                movements: plan.movements.clone(),
            });
            let written = if ctx.state(|s| s.local) {
                let options = LocalActivityOptions::builder().start_to_close_timeout(Duration::from_secs(10)).build();
                ctx.execute_local_activity(LoyaltyActivities::record_points_transactions, batch, options).await
            } else {
                ctx.execute_activity(LoyaltyActivities::record_points_transactions, batch, options()).await
            };
            // A failed write leaves the event pending: the next turn retries it.
            if let Ok(reply) = written {
                ctx.state_mut(|s| s.state.commit_accruals(&plan, reply.0.as_ref(), &write_id));
            }
        }
    }

    /// Queues an accrual (the service's wire name).
    #[signal]
    pub fn add_points(&mut self, _ctx: &mut SyncWorkflowContext<Self>, event: PointsEvent) {
        self.state.pending_events.push(event);
    }

    /// The summary (the service's wire name).
    #[query]
    pub fn get_loyalty_summary(&self, _ctx: &WorkflowContextView) -> LoyaltySummary {
        self.state.summary()
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
