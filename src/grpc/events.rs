//! ListEvents: the account's event stream, read from the ledger a page at a
//! time, oldest or newest first.

use super::error::ApiError;
use super::pb;
use super::requests::{ListEvents, cut_page, timestamp};
use super::service::LoyaltyApi;
use crate::ledger::StoredEvent;

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
