//! ListEvents: the account's event stream, read from the ledger a page at a
//! time, oldest or newest first.

use super::error::ApiError;
use super::pb;
use super::requests::{cut_page, page, timestamp};
use super::service::LoyaltyApi;
use crate::domain::{CustomerId, FieldError};
use crate::ledger::StoredEvent;

/// A parsed ListEvents request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEvents {
    /// The account.
    pub customer: CustomerId,
    /// Events per page.
    pub page_size: u32,
    /// Continue after (oldest first) or before (newest first) this sequence.
    pub from_seq: Option<i64>,
    /// Newest first.
    pub newest_first: bool,
}

impl TryFrom<pb::ListEventsRequest> for ListEvents {
    type Error = FieldError;

    fn try_from(r: pb::ListEventsRequest) -> Result<Self, FieldError> {
        let customer = CustomerId::parse(&r.customer_id)?;
        let (page_size, from_seq) = page(r.page_size, &r.page_token)?;
        Ok(Self { customer, page_size, from_seq, newest_first: r.newest_first })
    }
}

impl LoyaltyApi {
    /// A page of the account's events; NOT_FOUND for an account the ledger
    /// has never seen.
    pub(super) async fn events_page(&self, cmd: ListEvents) -> Result<pb::ListEventsResponse, ApiError> {
        let customer = cmd.customer.as_str();
        let from = cmd.from_seq.unwrap_or(0) as u64;
        let events = self.ledger.events(customer, from, cmd.page_size + 1, cmd.newest_first).await?;
        if events.is_empty() && cmd.from_seq.is_none() && self.ledger.totals(customer).await?.is_none() {
            return Err(ApiError::NotFound(cmd.customer));
        }
        let (events, next_page_token) = cut_page(events, cmd.page_size, |e| e.seq as i64);
        Ok(pb::ListEventsResponse { events: events.into_iter().map(event).collect(), next_page_token })
    }
}

fn event(e: StoredEvent) -> pb::Event {
    pb::Event {
        event_id: e.event_id,
        sequence: e.seq as i64,
        event_type: e.event_type,
        occurred_at: Some(timestamp(e.occurred_at_ms)),
        recorded_at: Some(timestamp(e.recorded_at_ms)),
        body: e.body,
    }
}
