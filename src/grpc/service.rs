//! `loyalty.v1.LoyaltyService` on top of the Temporal client and the ledger.
//!
//! Every write first looks its event id up in the ledger, the lifelong guard
//! of exactly once: an event the ledger holds is answered from its row (a
//! resend costs no workflow work), and a reused id with other content gets
//! ALREADY_EXISTS, however long ago the first one was. An accrual the ledger
//! does not hold is marked checked, so the account decides it at once; if
//! the ledger cannot answer, the account checks it itself before deciding.
//! A reversal also carries the ledger's view of its original, for originals
//! older than the account keeps in memory. Redeem, Reverse, Adjust and the
//! hold calls use an update id derived from the event id, so a resend joins
//! the first update within a run instead of queueing another.

use std::sync::Arc;
use std::time::Duration;

use temporalio_client::{Client, WorkflowHandle, WorkflowQueryOptions};
use tonic::{Request, Response, Status};

use super::batcher::Batcher;
use super::deadline::within;
use super::error::ApiError;
use super::orders::accrued;
use super::pb::{self, loyalty_service_server::LoyaltyService};
use super::queue::UpdateQueues;
use super::requests::{
    Accrue, Adjust, History, HoldCommand, ListEvents, Preview, Redeem, Reverse, cut_page, timestamp,
};
use super::responses::{balance_change, history_entry};
use super::updates::update_options;
use crate::domain::earning::RuleBook;
use crate::domain::program::{Program, RefundPolicy};
use crate::domain::{CustomerId, Millis, Movement, Rejection, Tier};
use crate::ledger::{HistoryEntry, Ledger, LedgerError};
use crate::metrics::Metrics;
use crate::otel::Tracing;
use crate::workflow::LoyaltyEntityWorkflow;

/// How long Accrue and Redeem wait for the ledger's answer before asking the
/// workflow anyway: a slow or absent ledger must not hold up accepting events.
pub(super) const LEDGER_LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);
/// How long GetSummary waits for a worker to answer its query. Temporal holds
/// a query until a worker takes it, so without one the caller would wait out
/// its whole deadline; past this (or half the server's RPC deadline, if
/// shorter) it gets UNAVAILABLE and may retry.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The gRPC API; cheap to clone.
#[derive(Clone)]
pub struct LoyaltyApi {
    pub(super) batcher: Batcher,
    pub(super) ledger: Ledger,
    rpc_timeout: Duration,
    tracing: Option<Tracing>,
    program: Program,
    /// Each account's updates in flight from this replica (`queue`).
    pub(super) updates: UpdateQueues,
    /// Counts the API's ledger writes.
    pub(super) metrics: Metrics,
    /// Earning rules for Accrue with an order and PreviewAccrual.
    pub(super) earning_rules: Option<Arc<RuleBook>>,
}

/// What the ledger says about an event id before the workflow is asked.
pub(super) enum Known {
    /// Not in the ledger.
    New,
    /// The ledger could not tell.
    Unknown,
    /// This same event, already applied.
    Applied(Box<HistoryEntry>),
}

impl LoyaltyApi {
    /// An API that signals accounts through `batcher` (which holds the
    /// Temporal client and task queue) and reads `ledger`; an RPC gets at most
    /// `rpc_timeout` (less if its caller says so), and sends each account
    /// at most `updates_per_account` updates at once; `metrics` counts the
    /// entries it writes.
    pub fn new(
        batcher: Batcher,
        ledger: Ledger,
        rpc_timeout: Duration,
        tracing: Option<Tracing>,
        program: Program,
        updates_per_account: usize,
        metrics: Metrics,
    ) -> Self {
        let updates = UpdateQueues::new(updates_per_account);
        Self { batcher, ledger, rpc_timeout, tracing, program, updates, metrics, earning_rules: None }
    }

    /// The API with earning rules (`None`: Accrue takes only points).
    pub fn with_earning_rules(mut self, rules: Option<Arc<RuleBook>>) -> Self {
        self.earning_rules = rules;
        self
    }

    /// How long a query waits for a worker.
    pub(super) fn query_wait(&self) -> Duration {
        QUERY_TIMEOUT.min(self.rpc_timeout / 2)
    }

    /// Whether a clawback beyond the balance takes it below zero.
    pub(super) fn allows_negative(&self) -> bool {
        self.program.refund == RefundPolicy::AllowNegative
    }

    /// When points a correction adds expire, from now.
    pub(super) fn correction_expiry(&self) -> Option<Millis> {
        self.program.correction_expiry(wall_clock_ms())
    }

    /// Runs an RPC within its deadline, in a server span when tracing is on.
    async fn serve<T>(
        &self,
        method: &str,
        metadata: &tonic::metadata::MetadataMap,
        call: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let bounded = within(metadata, self.rpc_timeout, call);
        match &self.tracing {
            Some(tracing) => tracing.in_server_span(method, metadata, bounded).await,
            None => bounded.await,
        }
    }

    /// Looks `movement` up in the ledger; a different event under its id is an error.
    pub(super) async fn known(&self, customer: &CustomerId, movement: &Movement) -> Result<Known, ApiError> {
        self.lookup(customer, &movement.event_id, |row| movement.same_as(&row.request())).await
    }

    /// Looks `event_id` up in the ledger: `same` tells a resend from a reuse.
    pub(super) async fn lookup(
        &self,
        customer: &CustomerId,
        event_id: &str,
        same: impl FnOnce(&HistoryEntry) -> bool,
    ) -> Result<Known, ApiError> {
        let lookup = tokio::time::timeout(LEDGER_LOOKUP_TIMEOUT, self.ledger.find(customer.as_str(), event_id));
        let found = lookup.await.unwrap_or_else(|_| Err(LedgerError::TimedOut(LEDGER_LOOKUP_TIMEOUT)));
        match found {
            Ok(None) => Ok(Known::New),
            Ok(Some(row)) if same(&row) => Ok(Known::Applied(Box::new(row))),
            Ok(Some(_)) => Err(ApiError::EventIdReused(Rejection::EventIdReused(event_id.to_owned()).to_string())),
            Err(e) => {
                tracing::warn!(customer = %customer, error = %e, "ledger lookup failed; asking the workflow");
                Ok(Known::Unknown)
            }
        }
    }

    /// The account's workflow, whichever run is current.
    pub(super) fn account(&self, customer: &CustomerId) -> WorkflowHandle<Client, LoyaltyEntityWorkflow> {
        self.batcher.client().get_workflow_handle::<LoyaltyEntityWorkflow>(customer.workflow_id())
    }

    async fn accrue(&self, mut cmd: Accrue) -> Result<pb::AccrueResponse, ApiError> {
        let workflow_id = cmd.customer.workflow_id();
        // The program is resolved here, once: the account keeps absolute dates.
        let dates = self.program.lot_dates(&cmd.lot, wall_clock_ms())?;
        cmd.event.active_from_ms = dates.active_from_ms;
        cmd.event.expires_at_ms = dates.expires_at_ms;
        cmd.event.expire_inactive_after_ms = Some(self.program.inactivity_expiry_ms.unwrap_or(0));
        cmd.event.expiry_warning_ms = Some(self.program.expiry_warning_ms);
        let accrual = cmd.order.as_ref().map(|order| self.evaluate(order)).transpose()?;
        let known = match &accrual {
            Some(a) if a.most_points() == 0 => return Ok(accrued(workflow_id, Some(a))),
            Some(a) => {
                cmd.event.points = a.most_points();
                self.known_order(&cmd.customer, &cmd.event.movement(), &a.digest).await?
            }
            None => self.known(&cmd.customer, &cmd.event.movement()).await?,
        };
        match known {
            Known::Applied(_) => return Ok(accrued(workflow_id, accrual.as_ref())),
            Known::New => cmd.event.ledger_checked = true,
            Known::Unknown => {}
        }
        let response = accrued(workflow_id, accrual.as_ref());
        cmd.event.order = accrual.map(Box::new);
        self.batcher.accrue(&cmd.customer, cmd.event).await?;
        Ok(response)
    }

    async fn redeem(&self, cmd: Redeem) -> Result<pb::RedeemResponse, ApiError> {
        // Ledger rows are final, so an applied redemption is answered from its row.
        if let Known::Applied(row) = self.known(&cmd.customer, &cmd.request.movement()).await? {
            return Ok(pb::RedeemResponse {
                redeemed: row.requested,
                remaining_balance: row.balance_after,
                reward: row.reason,
            });
        }
        let options = update_options("redeem", &cmd.request.event_id, &cmd.request);
        let r = self.update(&cmd.customer, || LoyaltyEntityWorkflow::redeem_points, cmd.request, options).await?;
        Ok(pb::RedeemResponse { redeemed: r.redeemed, remaining_balance: r.remaining_balance, reward: r.reward })
    }

    async fn reverse(&self, mut cmd: Reverse) -> Result<pb::ReverseResponse, ApiError> {
        if !cmd.request.lines.is_empty() {
            return self.return_lines(cmd).await;
        }
        let movement = cmd.request.movement()?;
        if let Some(change) = self.applied_change(&cmd.customer, &movement).await? {
            return Ok(pb::ReverseResponse { change: Some(change) });
        }
        cmd.request.allow_negative = self.allows_negative();
        cmd.request.expires_at_ms = self.correction_expiry();
        let customer = cmd.customer.as_str();
        match self.ledger.original_view(customer, &cmd.request.original_event_id).await {
            Ok(view) => cmd.request.ledger = Some(view),
            Err(e) => tracing::warn!(customer, error = %e, "ledger lookup failed; the account decides from memory"),
        }
        let options = update_options("reverse", &cmd.request.event_id, &movement);
        let change = self.update(&cmd.customer, || LoyaltyEntityWorkflow::reverse_points, cmd.request, options).await?;
        Ok(pb::ReverseResponse { change: Some(balance_change(change)) })
    }

    async fn adjust(&self, mut cmd: Adjust) -> Result<pb::AdjustResponse, ApiError> {
        let movement = cmd.request.movement()?;
        if let Some(change) = self.applied_change(&cmd.customer, &movement).await? {
            return Ok(pb::AdjustResponse { change: Some(change) });
        }
        cmd.request.expires_at_ms = self.program.correction_expiry(wall_clock_ms());
        // The id hashes what the caller sent, not the dates resolved now, so a resend joins the first.
        let options = update_options("adjust", &cmd.request.event_id, &movement);
        let change = self.update(&cmd.customer, || LoyaltyEntityWorkflow::adjust_points, cmd.request, options).await?;
        Ok(pb::AdjustResponse { change: Some(balance_change(change)) })
    }

    async fn history(&self, cmd: History) -> Result<pb::GetHistoryResponse, ApiError> {
        let customer = cmd.customer.as_str();
        let rows = self.ledger.history(customer, cmd.before_seq, cmd.page_size + 1).await?;
        if rows.is_empty() && cmd.before_seq.is_none() && self.ledger.totals(customer).await?.is_none() {
            return Err(ApiError::NotFound(cmd.customer));
        }
        let (rows, next_page_token) = cut_page(rows, cmd.page_size, |r| r.seq);
        Ok(pb::GetHistoryResponse { entries: rows.into_iter().map(history_entry).collect(), next_page_token })
    }

    /// A correction the ledger holds already, answered from its row with the
    /// account's totals as the ledger has them.
    pub(super) async fn applied_change(
        &self,
        customer: &CustomerId,
        movement: &Movement,
    ) -> Result<Option<pb::BalanceChange>, ApiError> {
        let Known::Applied(row) = self.known(customer, movement).await? else { return Ok(None) };
        let totals = self.ledger.totals(customer.as_str()).await?.unwrap_or_default();
        Ok(Some(pb::BalanceChange {
            points: row.points,
            lifetime_delta: row.lifetime_delta,
            shortfall: row.shortfall,
            points_balance: totals.balance,
            lifetime_points: totals.lifetime,
            tier: Tier::for_lifetime(totals.lifetime).as_str().to_owned(),
        }))
    }

    async fn summary(&self, customer: CustomerId) -> Result<pb::GetSummaryResponse, ApiError> {
        self.batcher.closing().wait_while_closing(&customer).await;
        let handle = self.account(&customer);
        let query = handle.query(LoyaltyEntityWorkflow::get_loyalty_summary, (), WorkflowQueryOptions::default());
        let wait = self.query_wait();
        let s = tokio::time::timeout(wait, query)
            .await
            .map_err(|_| ApiError::Unavailable(format!("no worker answered within {wait:?}; retry")))?
            .map_err(|e| ApiError::from_query(&customer, e))?;
        Ok(pb::GetSummaryResponse {
            customer_id: s.customer_id,
            points_balance: s.points_balance,
            lifetime_points: s.lifetime_points,
            tier: s.tier.as_str().to_owned(),
            is_active: s.is_active,
            points_to_next_tier: Tier::points_to_next(s.lifetime_points),
            unapplied_points: s.unapplied_points,
            pending_points: s.pending_points,
            held_points: s.held_points,
            next_expiry_at: s.next_expiry_at_ms.map(timestamp),
            next_expiry_points: s.next_expiry_points,
            expiring_soon_points: s.expiring_soon_points,
            as_of: (s.as_of_ms > 0).then(|| timestamp(s.as_of_ms)),
        })
    }
}

/// The API's clock, for resolving the program's periods into dates.
fn wall_clock_ms() -> Millis {
    crate::clock::now_ms()
}

#[tonic::async_trait]
impl LoyaltyService for LoyaltyApi {
    async fn reserve(&self, request: Request<pb::ReserveRequest>) -> Result<Response<pb::ReserveResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let cmd = HoldCommand::try_from(message).map_err(ApiError::from)?;
        Ok(Response::new(self.serve("Reserve", &metadata, LoyaltyApi::reserve(self, cmd)).await?))
    }

    async fn capture(&self, request: Request<pb::CaptureRequest>) -> Result<Response<pb::CaptureResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let cmd = HoldCommand::try_from(message).map_err(ApiError::from)?;
        Ok(Response::new(self.serve("Capture", &metadata, LoyaltyApi::capture(self, cmd)).await?))
    }

    async fn release(&self, request: Request<pb::ReleaseRequest>) -> Result<Response<pb::ReleaseResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let cmd = HoldCommand::try_from(message).map_err(ApiError::from)?;
        Ok(Response::new(self.serve("Release", &metadata, LoyaltyApi::release(self, cmd)).await?))
    }

    async fn accrue(&self, request: Request<pb::AccrueRequest>) -> Result<Response<pb::AccrueResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let cmd = Accrue::try_from(message).map_err(ApiError::from)?;
        Ok(Response::new(self.serve("Accrue", &metadata, LoyaltyApi::accrue(self, cmd)).await?))
    }

    async fn redeem(&self, request: Request<pb::RedeemRequest>) -> Result<Response<pb::RedeemResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let cmd = Redeem::try_from(message).map_err(ApiError::from)?;
        Ok(Response::new(self.serve("Redeem", &metadata, LoyaltyApi::redeem(self, cmd)).await?))
    }

    async fn get_summary(
        &self,
        request: Request<pb::GetSummaryRequest>,
    ) -> Result<Response<pb::GetSummaryResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let customer = CustomerId::parse(&message.customer_id).map_err(ApiError::from)?;
        Ok(Response::new(self.serve("GetSummary", &metadata, self.summary(customer)).await?))
    }

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let cmd = History::try_from(message).map_err(ApiError::from)?;
        Ok(Response::new(self.serve("GetHistory", &metadata, self.history(cmd)).await?))
    }

    async fn reverse(&self, request: Request<pb::ReverseRequest>) -> Result<Response<pb::ReverseResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let cmd = Reverse::try_from(message).map_err(ApiError::from)?;
        Ok(Response::new(self.serve("Reverse", &metadata, LoyaltyApi::reverse(self, cmd)).await?))
    }

    async fn adjust(&self, request: Request<pb::AdjustRequest>) -> Result<Response<pb::AdjustResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let cmd = Adjust::try_from(message).map_err(ApiError::from)?;
        Ok(Response::new(self.serve("Adjust", &metadata, LoyaltyApi::adjust(self, cmd)).await?))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let cmd = ListEvents::try_from(message).map_err(ApiError::from)?;
        Ok(Response::new(self.serve("ListEvents", &metadata, self.events_page(cmd)).await?))
    }

    async fn preview_accrual(
        &self,
        request: Request<pb::PreviewAccrualRequest>,
    ) -> Result<Response<pb::PreviewAccrualResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let cmd = Preview::try_from(message).map_err(ApiError::from)?;
        Ok(Response::new(self.serve("PreviewAccrual", &metadata, self.preview(cmd)).await?))
    }
}
