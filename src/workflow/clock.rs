//! The task's time for update validators. The SDK gives a validator no
//! clock, so it could not apply what fell due since the account's last
//! decision (points that activated, holds that expired) and would have to
//! leave "not enough points" to the handler, whose refusal Temporal keeps
//! under the update's id for the rest of the run. An interceptor puts the
//! workflow's time of the task in the validator's scope instead: the
//! validator then decides exactly what the handler would, and a refusal is
//! always a rejection that never enters history.

use temporalio_sdk::workflow_interceptors::{
    SyncWorkflowInterceptorContext, ValidateUpdateInput, ValidateUpdateResult, WorkflowInterceptor,
    WorkflowInterceptorConstructor, WorkflowNext,
};
use temporalio_sdk::{WorkflowContextKey, WorkflowContextView};

use crate::domain::Millis;

/// The workflow's time of the task a validator runs in.
struct TaskTime;

impl WorkflowContextKey for TaskTime {
    type Value = Millis;
}

/// Puts [`TaskTime`] in scope for every update validator.
struct ValidatorClock;

impl WorkflowInterceptor for ValidatorClock {
    fn validate_update(
        &self,
        ctx: SyncWorkflowInterceptorContext,
        input: ValidateUpdateInput,
        next: WorkflowNext<'_, ValidateUpdateInput, ValidateUpdateResult>,
    ) -> ValidateUpdateResult {
        let now = super::now_ms(ctx.workflow_time());
        ctx.with_context_value::<TaskTime, _>(now, || next.run(input))
    }
}

/// The interceptors every worker running `LoyaltyEntityWorkflow` registers.
pub fn interceptors() -> Vec<WorkflowInterceptorConstructor> {
    vec![WorkflowInterceptorConstructor::new(|_| ValidatorClock)]
}

/// The task's time, in a validator of a worker that registered
/// [`interceptors`] (`None` elsewhere).
pub(super) fn task_time(view: &WorkflowContextView) -> Option<Millis> {
    view.context_value::<TaskTime>().map(|now| *now)
}
