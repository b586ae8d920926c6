//! `loyalty.v1.LoyaltyService` on top of the Temporal client.

use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecuteUpdateOptions, WorkflowHandle, WorkflowIdConflictPolicy,
    WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowStartOptions,
};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use tonic::{Request, Response, Status};

use super::error::ApiError;
use super::pb::{self, loyalty_service_server::LoyaltyService};
use super::requests::{Accrue, Redeem};
use crate::domain::{CustomerId, Tier};
use crate::workflow::{LoyaltyEntityWorkflow, WorkflowInput};

/// The gRPC API; cheap to clone.
#[derive(Clone)]
pub struct LoyaltyApi {
    client: Client,
    task_queue: String,
}

impl LoyaltyApi {
    /// An API that starts account workflows on `task_queue`.
    pub fn new(client: Client, task_queue: String) -> Self {
        Self { client, task_queue }
    }

    /// The account's workflow, whichever run is current.
    fn account(&self, customer: &CustomerId) -> WorkflowHandle<Client, LoyaltyEntityWorkflow> {
        self.client.get_workflow_handle::<LoyaltyEntityWorkflow>(customer.workflow_id())
    }

    async fn accrue(&self, cmd: Accrue) -> Result<pb::AccrueResponse, ApiError> {
        let workflow_id = cmd.customer.workflow_id();
        // Reuse of a closed account's id is refused, so a late accrual never
        // re-creates it blank.
        let options = WorkflowStartOptions::new(self.task_queue.clone(), workflow_id.clone())
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .build();
        self.client
            .signal_with_start_workflow(
                LoyaltyEntityWorkflow::run,
                WorkflowInput::new_account(),
                LoyaltyEntityWorkflow::add_points,
                cmd.event,
                options,
            )
            .await
            .map_err(|e| ApiError::from_start(&cmd.customer, e))?;
        Ok(pb::AccrueResponse { workflow_id })
    }

    async fn redeem(&self, cmd: Redeem) -> Result<pb::RedeemResponse, ApiError> {
        let handle = self.account(&cmd.customer);
        // No fixed update id: Temporal would replay a failed outcome (such as
        // UNAVAILABLE) to every retry of the run. The workflow dedups by event_id.
        let options = WorkflowExecuteUpdateOptions::default();
        match handle.execute_update(LoyaltyEntityWorkflow::redeem_points, cmd.request, options).await {
            Ok(r) => Ok(pb::RedeemResponse {
                redeemed: r.redeemed,
                remaining_balance: r.remaining_balance,
                reward: r.reward,
            }),
            Err(e) => match ApiError::from_update(&cmd.customer, e) {
                // An update to a completed workflow is reported as not found.
                ApiError::NotFound(customer) => Err(self.closed_or_missing(customer).await),
                other => Err(other),
            },
        }
    }

    async fn summary(&self, customer: CustomerId) -> Result<pb::GetSummaryResponse, ApiError> {
        let handle = self.account(&customer);
        let s = handle
            .query(LoyaltyEntityWorkflow::get_loyalty_summary, (), WorkflowQueryOptions::default())
            .await
            .map_err(|e| ApiError::from_query(&customer, e))?;
        Ok(pb::GetSummaryResponse {
            customer_id: s.customer_id,
            points_balance: s.points_balance,
            lifetime_points: s.lifetime_points,
            tier: s.tier.as_str().to_owned(),
            is_active: s.is_active,
            points_to_next_tier: Tier::points_to_next(s.lifetime_points),
        })
    }

    /// Tells a closed account from one that never existed.
    async fn closed_or_missing(&self, customer: CustomerId) -> ApiError {
        let handle = self.account(&customer);
        match handle.describe(WorkflowDescribeOptions::default()).await {
            Ok(d) => {
                let status = d.raw_description.workflow_execution_info.map(|i| i.status());
                if status == Some(WorkflowExecutionStatus::Running) {
                    ApiError::Unavailable(format!("account {customer} is between runs; retry"))
                } else {
                    ApiError::AccountClosed(customer)
                }
            }
            Err(e) => ApiError::from_interaction(&customer, e),
        }
    }
}

#[tonic::async_trait]
impl LoyaltyService for LoyaltyApi {
    async fn accrue(&self, request: Request<pb::AccrueRequest>) -> Result<Response<pb::AccrueResponse>, Status> {
        let cmd = Accrue::try_from(request.into_inner()).map_err(ApiError::from)?;
        Ok(Response::new(LoyaltyApi::accrue(self, cmd).await?))
    }

    async fn redeem(&self, request: Request<pb::RedeemRequest>) -> Result<Response<pb::RedeemResponse>, Status> {
        let cmd = Redeem::try_from(request.into_inner()).map_err(ApiError::from)?;
        Ok(Response::new(LoyaltyApi::redeem(self, cmd).await?))
    }

    async fn get_summary(
        &self,
        request: Request<pb::GetSummaryRequest>,
    ) -> Result<Response<pb::GetSummaryResponse>, Status> {
        let customer = CustomerId::parse(&request.into_inner().customer_id).map_err(ApiError::from)?;
        Ok(Response::new(self.summary(customer).await?))
    }
}
