//! Orders through the API: an Accrue with an order is evaluated here, under
//! the rule set version in effect at the order's time, and the account is
//! handed the result for every tier with that version pinned; PreviewAccrual
//! runs the same evaluation and settles it as the account would now; a
//! return of lines is computed from the order's breakdown in the ledger.

use std::time::Duration;

use temporalio_client::WorkflowQueryOptions;

use super::error::ApiError;
use super::pb;
use super::requests::{Preview, Reverse};
use super::responses::{balance_change, breakdown, rule_set};
use super::service::{Known, LoyaltyApi};
use super::updates::update_options;
use crate::domain::earning::{CampaignUsage, Order, Version};
use crate::domain::orders::OrderAccrual;
use crate::domain::time::DAY_MS;
use crate::domain::{CustomerId, EntryKind, FieldError, Millis, Movement, Tier};
use crate::ledger::{HistoryEntry, OrderView};
use crate::workflow::LoyaltyEntityWorkflow;

/// How long a return waits for its order's accrual to reach the ledger
/// (accruals are written about 1-2 s after their call).
const ACCRUAL_WAIT: Duration = Duration::from_secs(5);
/// Tries of a return whose ledger view another return of the same order
/// overtook; the waits between them add up to about 3 s, which covers the
/// run's own write of the return that overtook it (about 1 s).
const RETURN_TRIES: u32 = 12;
/// Most bytes of an order's evaluation (all tiers) an Accrue may carry:
/// it rides on the signal, and Temporal refuses a payload over 2 MB.
pub const MAX_ORDER_BYTES: usize = 256 * 1024;
/// How old an order may be: campaigns match on its time, caps count on
/// the account's, so an order is taken only while that is about the same.
const MAX_ORDER_AGE_MS: Millis = 90 * DAY_MS;
/// How far ahead of this replica's clock an order may be dated.
const MAX_ORDER_SKEW_MS: Millis = 60 * 60 * 1_000;

impl LoyaltyApi {
    /// The rule set version in effect at `at`.
    fn version_at(&self, at: i64) -> Result<&Version, ApiError> {
        let rules = self.earning_rules.as_ref().ok_or_else(|| {
            ApiError::Precondition("no earning rules are configured (LOYALTY_EARNING_RULES_FILE): send points".into())
        })?;
        rules.effective_at(at).ok_or_else(|| {
            ApiError::InvalidField(FieldError::new(
                "order.occurred_at",
                "is before every rule set version takes effect",
            ))
        })
    }

    /// Evaluates `order` for every tier under the version in effect at its
    /// time; an order too old, too far ahead, or whose evaluation is too
    /// large to carry is refused.
    pub(super) fn evaluate(&self, order: &Order) -> Result<OrderAccrual, ApiError> {
        let now = crate::clock::now_ms();
        if order.occurred_at_ms < now - MAX_ORDER_AGE_MS || order.occurred_at_ms > now + MAX_ORDER_SKEW_MS {
            return Err(FieldError::new(
                "order.occurred_at",
                "must be within the last 90 days (and not over an hour ahead)",
            )
            .into());
        }
        let accrual = OrderAccrual::evaluate(order, self.version_at(order.occurred_at_ms)?)?;
        let bytes = accrual.json_size();
        if bytes > MAX_ORDER_BYTES {
            return Err(FieldError::new(
                "order",
                format!("its evaluation takes {bytes} bytes, more than {MAX_ORDER_BYTES}: send fewer lines"),
            )
            .into());
        }
        Ok(accrual)
    }

    /// Whether the ledger's row of an order accrual is this same order (a
    /// resend), judged by the order's digest, since its points were settled later.
    pub(super) async fn known_order(
        &self,
        customer: &CustomerId,
        movement: &Movement,
        digest: &str,
    ) -> Result<Known, ApiError> {
        self.lookup(customer, &movement.event_id, |row: &HistoryEntry| {
            row.kind == EntryKind::Accrual
                && row.reason == movement.reason
                && row.source == movement.source
                && row.order.earned.as_ref().is_some_and(|e| e.digest == digest)
        })
        .await
    }

    /// PreviewAccrual: what the order earns now, writing nothing.
    pub(super) async fn preview(&self, cmd: Preview) -> Result<pb::PreviewAccrualResponse, ApiError> {
        let accrual = self.evaluate(&cmd.order)?;
        let (tier, usage, as_of) = match &cmd.customer {
            Some(customer) => self.earning_context(customer).await?,
            None => (Tier::Bronze, CampaignUsage::default(), 0),
        };
        // Caps count in the period the account would decide in: now on its clock.
        let earned = accrual.earned(tier, &usage, crate::clock::now_ms().max(as_of))?;
        Ok(pb::PreviewAccrualResponse {
            points: earned.points,
            breakdown: Some(breakdown(&earned)),
            tier: tier.as_str().to_owned(),
        })
    }

    /// The customer's tier, campaign usage and clock, from the account's query; a
    /// customer without an account previews as a new one.
    async fn earning_context(&self, customer: &CustomerId) -> Result<(Tier, CampaignUsage, Millis), ApiError> {
        let handle = self.account(customer);
        let query = handle.query(LoyaltyEntityWorkflow::get_loyalty_summary, (), WorkflowQueryOptions::default());
        let wait = self.query_wait();
        match tokio::time::timeout(wait, query).await {
            Err(_) => Err(ApiError::Unavailable(format!("no worker answered within {wait:?}; retry"))),
            Ok(Ok(s)) => Ok((s.tier, s.campaign_usage, s.as_of_ms)),
            Ok(Err(e)) => match ApiError::from_query(customer, e) {
                ApiError::NotFound(_) => Ok((Tier::Bronze, CampaignUsage::default(), 0)),
                other => Err(other),
            },
        }
    }

    /// Reverse with lines: the clawback is what those lines earned, computed
    /// from the order's breakdown and earlier returns in the ledger; the
    /// account refuses it if another return of the order overtook the view,
    /// and it is computed again.
    pub(super) async fn return_lines(&self, mut cmd: Reverse) -> Result<pb::ReverseResponse, ApiError> {
        let movement = cmd.request.movement()?;
        cmd.request.allow_negative = self.allows_negative();
        cmd.request.expires_at_ms = self.correction_expiry();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(change) = self.applied_change(&cmd.customer, &movement).await? {
                return Ok(pb::ReverseResponse { change: Some(change) });
            }
            let view = self.written_order(&cmd.customer, &cmd.request.original_event_id).await?;
            let earned = view.earned.ok_or_else(|| {
                ApiError::Precondition(format!(
                    "original_event_id {} is not an order accrual: return points, not lines",
                    cmd.request.original_event_id
                ))
            })?;
            let points = earned.clawback(&view.returned, &cmd.request.lines)?;
            let mut request = cmd.request.clone();
            request.points = Some(points);
            request.ledger = Some(view.view);
            let options = update_options("reverse", &request.event_id, &(&movement, &request.lines, points));
            match self.update(&cmd.customer, || LoyaltyEntityWorkflow::reverse_points, request, options).await {
                Err(ApiError::Unavailable(why)) if attempt < RETURN_TRIES && is_overtaken(&why) => {
                    tokio::time::sleep(Duration::from_millis((50 * u64::from(attempt)).min(400))).await;
                }
                other => return other.map(|change| pb::ReverseResponse { change: Some(balance_change(change)) }),
            }
        }
    }

    /// The order accrual `event_id` as the ledger holds it, waiting a little
    /// for an accrual decided but not written yet.
    async fn written_order(&self, customer: &CustomerId, event_id: &str) -> Result<OrderView, ApiError> {
        let deadline = tokio::time::Instant::now() + ACCRUAL_WAIT;
        loop {
            let view = self.ledger.order_view(customer.as_str(), event_id).await?;
            if view.view.original.is_some() || tokio::time::Instant::now() >= deadline {
                return match view.view.original {
                    Some(_) => Ok(view),
                    None => Err(ApiError::OriginalNotFound(format!(
                        "original_event_id: no order accrual {event_id} in the ledger yet; retry"
                    ))),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether the account refused a return because its ledger view was
/// overtaken (`Rejection::OriginalUnknown`).
fn is_overtaken(why: &str) -> bool {
    why.contains(OVERTAKEN)
}

/// Part of `Rejection::OriginalUnknown`'s message.
const OVERTAKEN: &str = "must be read from the ledger first";

/// The wire reference of an accrual's rule set, for AccrueResponse.
pub(super) fn accrued(workflow_id: String, accrual: Option<&OrderAccrual>) -> pb::AccrueResponse {
    pb::AccrueResponse {
        workflow_id,
        rule_set: accrual.and_then(|a| a.variants.first()).map(|v| rule_set(&v.evaluation.rule_set)),
        most_points: accrual.map_or(0, OrderAccrual::most_points),
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::Rejection;

    #[test]
    fn an_overtaken_return_is_recognised_by_the_accounts_message() {
        assert!(super::is_overtaken(&Rejection::OriginalUnknown("o1".into()).to_string()));
    }
}
