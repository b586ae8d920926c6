//! The webhook bookkeeping over the event stream. Relays lease marked
//! accounts (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas share the
//! work without waiting on each other), walk each endpoint's cursor through
//! the account's events, and unmark the account only if no event arrived
//! meanwhile; a cursor whose retries ran out is parked as dead letters.

use serde::Serialize;

use super::{Backend, Ledger, LedgerError};

type CursorRow = (i64, i32, i64, Option<i64>, Option<i64>, i64);

/// One endpoint's place in one account's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The newest event delivered (or skipped as not wanted).
    pub delivered_seq: u64,
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// When the next attempt may start.
    pub next_attempt_ms: i64,
    /// When the current run of failures began.
    pub failing_since_ms: Option<i64>,
    /// Retries exhausted: the account's events wait as dead letters.
    pub parked: bool,
    /// The cursor's generation: writes of a relay that read an older one
    /// (before a redelivery) change nothing.
    pub generation: i64,
}

/// An endpoint and account whose delivery was parked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The endpoint's name.
    pub endpoint: String,
    /// The account.
    pub customer_id: String,
    /// The first event not delivered.
    pub first_seq: u64,
    /// How many events wait.
    pub events: u64,
    /// When it was parked.
    pub parked_at_ms: i64,
    /// The last failure.
    pub last_error: String,
}

/// What a failed attempt leaves on a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Failed attempts since the last success, this one included.
    pub attempts: u32,
    /// When to try again.
    pub next_attempt_ms: i64,
    /// When the run of failures began.
    pub failing_since_ms: i64,
    /// Retries are exhausted.
    pub park: bool,
    /// What went wrong, for operators.
    pub error: String,
}

impl Ledger {
    /// Records `name` as a configured endpoint (the first replica to see it
    /// decides when) and returns when it was first seen.
    pub async fn register_endpoint(&self, name: &str, now: i64) -> Result<i64, LedgerError> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (name, first_seen_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query_scalar("SELECT first_seen_ms FROM webhook_endpoints WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Leases up to `limit` accounts with undelivered events that are due
    /// and not leased by anyone, until `lease_until`: their heads.
    pub async fn claim_outbox(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<(String, u64)>, LedgerError> {
        let lock = if self.backend == Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "UPDATE event_outbox SET lease_owner = $1, lease_until_ms = $2
             WHERE customer_id IN (SELECT customer_id FROM event_outbox
                                   WHERE next_attempt_ms <= $3 AND lease_until_ms <= $3
                                   ORDER BY next_attempt_ms LIMIT $4 {lock})
             RETURNING customer_id, head_seq"
        ))
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(c, h)| (c, h as u64)).collect())
    }

    /// Gives a leased account back: unmarked if every endpoint is done and
    /// no event arrived since `head_seq`, else due again at `next_attempt`
    /// (or at once, if events arrived meanwhile: they may be for an endpoint
    /// that is not backing off). Does nothing if the lease passed to another
    /// relay (or a redelivery took it).
    pub async fn release_outbox(
        &self,
        customer_id: &str,
        owner: &str,
        head_seq: u64,
        next_attempt: Option<i64>,
    ) -> Result<(), LedgerError> {
        if next_attempt.is_none() {
            let done =
                sqlx::query("DELETE FROM event_outbox WHERE customer_id = $1 AND lease_owner = $2 AND head_seq = $3")
                    .bind(customer_id)
                    .bind(owner)
                    .bind(head_seq as i64)
                    .execute(&self.pool)
                    .await?;
            if done.rows_affected() > 0 {
                return Ok(());
            }
        }
        sqlx::query(
            "UPDATE event_outbox SET lease_owner = '', lease_until_ms = 0,
                 next_attempt_ms = CASE WHEN head_seq = $4 THEN $1 ELSE 0 END
             WHERE customer_id = $2 AND lease_owner = $3",
        )
        .bind(next_attempt.unwrap_or(0))
        .bind(customer_id)
        .bind(owner)
        .bind(head_seq as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The endpoint's cursor in the account's stream, created (after the
    /// events recorded before the endpoint was first seen) if new.
    pub async fn cursor(&self, endpoint: &str, first_seen_ms: i64, customer_id: &str) -> Result<Cursor, LedgerError> {
        sqlx::query(
            "INSERT INTO webhook_cursors (endpoint, customer_id, delivered_seq)
             VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) FROM account_events
                              WHERE customer_id = $2 AND recorded_at_ms < $3))
             ON CONFLICT (endpoint, customer_id) DO NOTHING",
        )
        .bind(endpoint)
        .bind(customer_id)
        .bind(first_seen_ms)
        .execute(&self.pool)
        .await?;
        let (delivered, attempts, next, failing_since, parked, generation): CursorRow = sqlx::query_as(
            "SELECT delivered_seq, attempts, next_attempt_ms, failing_since_ms, parked_at_ms, CAST(generation AS BIGINT)
                 FROM webhook_cursors WHERE endpoint = $1 AND customer_id = $2",
        )
            .bind(endpoint)
            .bind(customer_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(Cursor {
            delivered_seq: delivered as u64,
            attempts: attempts.max(0) as u32,
            next_attempt_ms: next,
            failing_since_ms: failing_since,
            parked: parked.is_some(),
            generation,
        })
    }

    /// Moves the cursor read as `cursor` to `seq` (never back) and clears
    /// its failures; false if a redelivery changed it since (nothing written).
    pub async fn delivered(
        &self,
        endpoint: &str,
        customer_id: &str,
        cursor: &Cursor,
        seq: u64,
    ) -> Result<bool, LedgerError> {
        let done = sqlx::query(
            "UPDATE webhook_cursors SET delivered_seq = CASE WHEN delivered_seq < $1 THEN $1 ELSE delivered_seq END,
                 attempts = 0, next_attempt_ms = 0, failing_since_ms = NULL, last_error = ''
             WHERE endpoint = $2 AND customer_id = $3 AND generation = $4",
        )
        .bind(seq as i64)
        .bind(endpoint)
        .bind(customer_id)
        .bind(cursor.generation)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a failed attempt on the cursor read as `cursor` (and parks it
    /// if retries are over), unless a redelivery changed it since.
    pub async fn failed(
        &self,
        endpoint: &str,
        customer_id: &str,
        cursor: &Cursor,
        failure: &Failure,
        now: i64,
    ) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE webhook_cursors SET attempts = $1, next_attempt_ms = $2, failing_since_ms = $3, last_error = $4,
                 parked_at_ms = $5
             WHERE endpoint = $6 AND customer_id = $7 AND generation = $8",
        )
        .bind(failure.attempts as i32)
        .bind(failure.next_attempt_ms)
        .bind(failure.failing_since_ms)
        .bind(&failure.error)
        .bind(failure.park.then_some(now))
        .bind(endpoint)
        .bind(customer_id)
        .bind(cursor.generation)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Parked deliveries, optionally of one endpoint or account.
    pub async fn dead_letters(
        &self,
        endpoint: Option<&str>,
        customer_id: Option<&str>,
    ) -> Result<Vec<DeadLetter>, LedgerError> {
        let rows: Vec<(String, String, i64, i64, i64, String)> = sqlx::query_as(
            "SELECT c.endpoint, c.customer_id, c.delivered_seq, a.event_seq, c.parked_at_ms, c.last_error
             FROM webhook_cursors c JOIN accounts a ON a.customer_id = c.customer_id
             WHERE c.parked_at_ms IS NOT NULL AND ($1 = '' OR c.endpoint = $1) AND ($2 = '' OR c.customer_id = $2)
             ORDER BY c.parked_at_ms, c.endpoint, c.customer_id",
        )
        .bind(endpoint.unwrap_or(""))
        .bind(customer_id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(endpoint, customer_id, delivered, head, parked_at_ms, last_error)| DeadLetter {
                endpoint,
                customer_id,
                first_seq: delivered as u64 + 1,
                events: (head - delivered).max(0) as u64,
                parked_at_ms,
                last_error,
            })
            .collect())
    }

    /// Sends again: unparks the matching cursors (by endpoint, account, or
    /// both) and, given an event id, moves them back to just before it so it
    /// and everything after it go out again, in order. Returns how many
    /// cursors it changed.
    pub async fn redeliver(
        &self,
        endpoint: Option<&str>,
        customer_id: Option<&str>,
        event_id: Option<&str>,
    ) -> Result<u64, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let (customer_id, back_to) = match event_id {
            Some(id) => {
                let found: Option<(String, i64)> =
                    sqlx::query_as("SELECT customer_id, seq FROM account_events WHERE event_id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some((customer, seq)) = found else { return Ok(0) };
                if customer_id.is_some_and(|c| c != customer) {
                    return Ok(0);
                }
                (Some(customer), Some(seq - 1))
            }
            None => (customer_id.map(str::to_owned), None),
        };
        let filter = "($1 = '' OR endpoint = $1) AND ($2 = '' OR customer_id = $2)";
        let sql = match back_to {
            Some(_) => format!(
                "UPDATE webhook_cursors SET parked_at_ms = NULL, attempts = 0, next_attempt_ms = 0,
                     failing_since_ms = NULL, generation = generation + 1,
                     delivered_seq = CASE WHEN delivered_seq > $3 THEN $3 ELSE delivered_seq END
                 WHERE {filter}"
            ),
            None => format!(
                "UPDATE webhook_cursors SET parked_at_ms = NULL, attempts = 0, next_attempt_ms = 0, failing_since_ms = NULL,
                     generation = generation + 1
                 WHERE parked_at_ms IS NOT NULL AND {filter}"
            ),
        };
        let mut query = sqlx::query(&sql).bind(endpoint.unwrap_or("")).bind(customer_id.as_deref().unwrap_or(""));
        if let Some(seq) = back_to {
            query = query.bind(seq);
        }
        let changed = query.execute(&mut *tx).await?.rows_affected();
        // Mark the accounts again so a relay picks them up, taking the mark
        // from any relay at work on them (its hand-back must not unmark it).
        sqlx::query(&format!(
            "INSERT INTO event_outbox (customer_id, head_seq)
             SELECT a.customer_id, a.event_seq FROM accounts a
             WHERE a.customer_id IN (SELECT customer_id FROM webhook_cursors WHERE {filter}) AND a.event_seq > 0
             ON CONFLICT (customer_id) DO UPDATE SET head_seq = excluded.head_seq, next_attempt_ms = 0,
                 lease_owner = '', lease_until_ms = 0"
        ))
        .bind(endpoint.unwrap_or(""))
        .bind(customer_id.as_deref().unwrap_or(""))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// When the oldest event the endpoint has not received was recorded
    /// (among marked accounts the endpoint has a cursor for, and parked
    /// ones), and how many accounts are parked for it.
    pub async fn backlog(&self, endpoint: &str) -> Result<(Option<i64>, u64), LedgerError> {
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(at) FROM (
                 SELECT MIN(e.recorded_at_ms) AS at FROM event_outbox o
                 JOIN webhook_cursors c ON c.endpoint = $1 AND c.customer_id = o.customer_id
                 JOIN account_events e ON e.customer_id = c.customer_id AND e.seq = c.delivered_seq + 1
                 UNION ALL
                 SELECT MIN(e.recorded_at_ms) AS at FROM webhook_cursors c
                 JOIN account_events e ON e.customer_id = c.customer_id AND e.seq = c.delivered_seq + 1
                 WHERE c.endpoint = $1 AND c.parked_at_ms IS NOT NULL
             ) undelivered",
        )
        .bind(endpoint)
        .fetch_one(&self.pool)
        .await?;
        let parked: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_cursors WHERE endpoint = $1 AND parked_at_ms IS NOT NULL")
                .bind(endpoint)
                .fetch_one(&self.pool)
                .await?;
        Ok((oldest, parked as u64))
    }
}
