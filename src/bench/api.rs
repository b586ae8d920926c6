//! The api phase: each RPC through the service next to the Temporal call it
//! stands for, sent straight to Temporal on the same kind of workflows.

use std::time::Duration;

use temporalio_client::{WorkflowExecuteUpdateOptions, WorkflowQueryOptions, WorkflowStartOptions};

use super::Bench;
use super::load::drive;
use super::reference::{PerEventAccount, PerEventInput};
use super::stats::{Samples, Summary};
use crate::domain::messages::{PointsEvent, RedemptionRequest};
use crate::grpc::pb;
use crate::workflow::LoyaltyEntityWorkflow;

/// Points each benchmark accrual credits.
const POINTS: i64 = 10;

/// One operation, sent to one side.
#[derive(Clone, Copy)]
enum Op {
    ServiceAccrue,
    RawSignalWithStart,
    ServiceSummary,
    RawQuery,
    ServiceRedeem,
    RawUpdate,
    UpdateWithActivity,
    UpdateWithLocalActivity,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::ServiceAccrue => "service Accrue",
            Op::RawSignalWithStart => "raw signal-with-start",
            Op::ServiceSummary => "service GetSummary",
            Op::RawQuery => "raw query",
            Op::ServiceRedeem => "service Redeem",
            Op::RawUpdate => "raw update redeem_points",
            Op::UpdateWithActivity => "update running 1 regular activity",
            Op::UpdateWithLocalActivity => "update running 1 local activity",
        }
    }
}

impl Bench {
    fn service_customer(&self, level: usize, i: usize) -> String {
        format!("bench-{}-c{level}-svc-{}", self.run, i % self.args.customers)
    }

    fn raw_customer(&self, level: usize, i: usize) -> String {
        format!("bench-{}-c{level}-raw-{}", self.run, i % self.args.customers)
    }

    fn reference_id(&self, level: usize, i: usize) -> String {
        format!("bench-{}-c{level}-ref-{}", self.run, i % self.args.customers)
    }

    /// Call number `i` of `op` in round `round`, at concurrency `level`.
    async fn call(&self, op: Op, level: usize, round: usize, i: usize) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        match op {
            Op::ServiceAccrue => {
                let request = pb::AccrueRequest {
                    customer_id: self.service_customer(level, i),
                    event_id: format!("a{round}-{i}"),
                    points: POINTS,
                    reason: "bench".into(),
                    source: "bench".into(),
                    ..Default::default()
                };
                self.grpc.clone().accrue(request).await.map(drop).map_err(|e| err(&e))
            }
            Op::RawSignalWithStart => {
                let customer = self.raw_customer(level, i);
                let event = PointsEvent {
                    event_id: format!("a{round}-{i}"),
                    points: POINTS,
                    reason: "bench".into(),
                    source: "bench".into(),
                    ledger_checked: false,
                    ..Default::default()
                };
                self.signal_account(self.task_queue.clone(), &format!("loyalty-{customer}"), event).await
            }
            Op::ServiceSummary => {
                let request = pb::GetSummaryRequest { customer_id: self.service_customer(level, i) };
                self.grpc.clone().get_summary(request).await.map(drop).map_err(|e| err(&e))
            }
            Op::RawQuery => self
                .temporal
                .get_workflow_handle::<LoyaltyEntityWorkflow>(format!("loyalty-{}", self.raw_customer(level, i)))
                .query(LoyaltyEntityWorkflow::get_loyalty_summary, (), WorkflowQueryOptions::default())
                .await
                .map(drop)
                .map_err(|e| err(&e)),
            Op::ServiceRedeem => {
                let request = pb::RedeemRequest {
                    customer_id: self.service_customer(level, i),
                    event_id: format!("r{round}-{i}"),
                    points: 1,
                    reward: "bench".into(),
                };
                self.grpc.clone().redeem(request).await.map(drop).map_err(|e| err(&e))
            }
            Op::RawUpdate => {
                let request =
                    RedemptionRequest { event_id: format!("r{round}-{i}"), points: 1, reward: "bench".into() };
                self.temporal
                    .get_workflow_handle::<LoyaltyEntityWorkflow>(format!("loyalty-{}", self.raw_customer(level, i)))
                    .execute_update(
                        LoyaltyEntityWorkflow::redeem_points,
                        request,
                        WorkflowExecuteUpdateOptions::default(),
                    )
                    .await
                    .map(drop)
                    .map_err(|e| err(&e))
            }
            Op::UpdateWithActivity | Op::UpdateWithLocalActivity => {
                let handle = self.temporal.get_workflow_handle::<PerEventAccount>(self.reference_id(level, i));
                let options = WorkflowExecuteUpdateOptions::default();
                let done = if matches!(op, Op::UpdateWithActivity) {
                    handle.execute_update(PerEventAccount::touch, i as u64, options).await
                } else {
                    handle.execute_update(PerEventAccount::touch_local, i as u64, options).await
                };
                done.map(drop).map_err(|e| err(&e))
            }
        }
    }

    /// `per_customer` calls per account of each op, `rounds` times, the op
    /// that goes first alternating; one summary per op.
    async fn side_by_side(&self, ops: &[Op], level: usize, per_customer: usize) -> Vec<Summary> {
        let rounds = self.args.rounds.max(1);
        // Whole calls per account per round, so every account gets the same number.
        let per_round = self.args.customers * per_customer.div_ceil(rounds);
        let mut samples: Vec<Samples> = ops.iter().map(|_| Samples::default()).collect();
        for round in 0..rounds {
            let mut order: Vec<usize> = (0..ops.len()).collect();
            order.rotate_left(round % ops.len());
            for k in order {
                let label = format!("{} x{level} (round {})", ops[k].name(), round + 1);
                let before = self.watched.read();
                let mut done = drive(&label, per_round, level, |i| self.call(ops[k], level, round, i)).await;
                done.set_cpu(self.watched.read().since(&before));
                samples[k].merge(done);
            }
        }
        ops.iter().zip(samples).map(|(op, s)| s.summary(op.name(), level)).collect()
    }

    /// Starts the accounts the update baselines run on.
    async fn start_references(&self, level: usize) -> Result<(), String> {
        for i in 0..self.args.customers {
            let options = WorkflowStartOptions::new(self.bench_queue(), self.reference_id(level, i)).build();
            let input = PerEventInput { customer_id: self.reference_id(level, i), local: false };
            self.temporal.start_workflow(PerEventAccount::run, input, options).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn wait_until_applied(&self, level: usize) -> Result<(), String> {
        let rounds = self.args.rounds.max(1);
        let lifetime = (self.args.accruals.div_ceil(rounds) * rounds) as i64 * POINTS;
        for i in 0..self.args.customers {
            for customer in [self.service_customer(level, i), self.raw_customer(level, i)] {
                self.wait_for_lifetime(&format!("loyalty-{customer}"), lifetime, Duration::from_secs(120)).await?;
            }
        }
        Ok(())
    }
}

/// Runs the api phase.
pub async fn run(bench: &Bench) -> Result<Vec<Summary>, String> {
    if (bench.args.accruals as i64) * POINTS < bench.args.redeems as i64 {
        return Err("--redeems must be at most 10 x --accruals (each redemption spends 1 point)".into());
    }
    let mut all = Vec::new();
    for &level in &bench.args.concurrency {
        let level = level.max(1);
        all.extend(bench.side_by_side(&[Op::ServiceAccrue, Op::RawSignalWithStart], level, bench.args.accruals).await);
        bench.wait_until_applied(level).await?;
        all.extend(bench.side_by_side(&[Op::ServiceSummary, Op::RawQuery], level, bench.args.summaries).await);
        bench.start_references(level).await?;
        let updates = bench
            .with_worker(bench.side_by_side(
                &[Op::ServiceRedeem, Op::RawUpdate, Op::UpdateWithActivity, Op::UpdateWithLocalActivity],
                level,
                bench.args.redeems,
            ))
            .await?;
        all.extend(updates);
    }
    Ok(all)
}
