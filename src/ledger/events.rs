//! The event stream: events are appended inside the transaction that
//! records their entries (see `project.rs`), numbered from the account row
//! that transaction has locked, and the account is marked in `event_outbox`
//! for the relays (`outbox.rs`).

use serde::Serialize;

use super::{Ledger, LedgerError, Tx};
use crate::domain::events::{NewEvent, body, event_id};

/// An event as the ledger stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredEvent {
    /// The account.
    pub customer_id: String,
    /// Its place in the account's stream, from 1.
    pub seq: u64,
    /// Unique id (the `webhook-id` receivers deduplicate on).
    pub event_id: String,
    /// `points.accrued`, `tier.changed`, ...
    pub event_type: String,
    /// When it happened, ms since the epoch.
    pub occurred_at_ms: i64,
    /// When the ledger recorded it.
    pub recorded_at_ms: i64,
    /// The JSON body delivered to webhooks.
    pub body: String,
}

type EventRow = (String, i64, String, String, i64, i64, String);

impl From<EventRow> for StoredEvent {
    fn from((customer_id, seq, event_id, event_type, occurred_at_ms, recorded_at_ms, body): EventRow) -> Self {
        Self { customer_id, seq: seq as u64, event_id, event_type, occurred_at_ms, recorded_at_ms, body }
    }
}

const EVENT_COLUMNS: &str = "customer_id, seq, event_id, type, occurred_at_ms, recorded_at_ms, body";

/// Appends `events` to the account's stream (the caller holds the account
/// row's lock) and marks the account for delivery.
pub(super) async fn append(tx: &mut Tx, customer_id: &str, events: &[NewEvent], now: i64) -> Result<(), LedgerError> {
    if events.is_empty() {
        return Ok(());
    }
    let last: i64 =
        sqlx::query_scalar("UPDATE accounts SET event_seq = event_seq + $1 WHERE customer_id = $2 RETURNING event_seq")
            .bind(events.len() as i64)
            .bind(customer_id)
            .fetch_one(&mut **tx)
            .await?;
    let first = last - events.len() as i64 + 1;
    for (i, event) in events.iter().enumerate() {
        let seq = (first + i as i64) as u64;
        let id = event_id(customer_id, seq);
        let occurred = if event.occurred_at_ms > 0 { event.occurred_at_ms } else { now };
        sqlx::query(
            "INSERT INTO account_events (customer_id, seq, event_id, type, occurred_at_ms, recorded_at_ms, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(customer_id)
        .bind(seq as i64)
        .bind(&id)
        .bind(event.event_type)
        .bind(occurred)
        .bind(now)
        .bind(body(&id, customer_id, seq, event, occurred))
        .execute(&mut **tx)
        .await?;
    }
    // A new head is due now for every endpoint: one endpoint's backoff
    // must not delay the others (each cursor keeps its own next attempt).
    sqlx::query(
        "INSERT INTO event_outbox (customer_id, head_seq) VALUES ($1, $2)
         ON CONFLICT (customer_id) DO UPDATE SET head_seq = excluded.head_seq, next_attempt_ms = 0",
    )
    .bind(customer_id)
    .bind(last)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Ledger {
    /// A page of the account's events: after `from` oldest first, or before
    /// `from` newest first (`from` 0: from the start or the end).
    pub async fn events(
        &self,
        customer_id: &str,
        from: u64,
        limit: u32,
        newest_first: bool,
    ) -> Result<Vec<StoredEvent>, LedgerError> {
        let sql = if newest_first {
            format!(
                "SELECT {EVENT_COLUMNS} FROM account_events WHERE customer_id = $1 AND ($2 = 0 OR seq < $2)
                 ORDER BY seq DESC LIMIT $3"
            )
        } else {
            format!(
                "SELECT {EVENT_COLUMNS} FROM account_events WHERE customer_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            )
        };
        let rows: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(customer_id)
            .bind(from as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(StoredEvent::from).collect())
    }
}
