//! Reads: single events, history pages, account totals and audits.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Ledger, LedgerError};
use serde::{Deserialize, Serialize};

use crate::domain::earning::{Earned, ReturnedLine};
use crate::domain::{Draw, Entry, EntryKind, StoredRequest, Totals};

/// Columns of a ledger row, in the order [`HistoryEntry::from_row`] reads them.
const ENTRY_COLUMNS: &str = "seq, event_id, kind, requested, points, lifetime_delta, shortfall, \
     balance_after, reason, source, reverses, recorded_at_ms, draws, effective_at_ms, order_detail";

/// One ledger row as history shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Position in the ledger; larger is newer.
    pub seq: i64,
    /// The event's id.
    pub event_id: String,
    /// What the event was.
    pub kind: EntryKind,
    /// The amount as requested (a reversal's resolved).
    pub requested: i64,
    /// Signed change of the balance.
    pub points: i64,
    /// Signed change of lifetime points.
    pub lifetime_delta: i64,
    /// Points a clawback could not take.
    pub shortfall: i64,
    /// Balance right after the entry.
    pub balance_after: i64,
    /// Reason, or the reward of a redemption.
    pub reason: String,
    /// Originating service.
    pub source: String,
    /// The event a reversal undid.
    pub reverses: Option<String>,
    /// When it was recorded, in Unix milliseconds.
    pub recorded_at_ms: i64,
    /// The lots it drew from (or activated).
    pub draws: Vec<Draw>,
    /// When it took effect on the account's clock.
    pub effective_at_ms: i64,
    /// An order accrual's breakdown, or a return's lines.
    pub order: OrderDetail,
}

/// What an entry records of an order (the `order_detail` column).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDetail {
    /// An order accrual's points and breakdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earned: Option<Box<Earned>>,
    /// A line return's lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub returned: Vec<ReturnedLine>,
}

impl OrderDetail {
    /// The detail of `entry`, `None` when it has none.
    pub fn of(entry: &Entry) -> Option<String> {
        let detail = OrderDetail { earned: entry.earned.clone(), returned: entry.returned.clone() };
        (detail != OrderDetail::default()).then(|| serde_json::to_string(&detail).unwrap_or_default())
    }
}

impl HistoryEntry {
    pub(super) fn from_row(row: &AnyRow) -> Result<Self, LedgerError> {
        let kind: String = row.try_get(2)?;
        Ok(Self {
            seq: row.try_get(0)?,
            event_id: row.try_get(1)?,
            kind: EntryKind::parse(&kind).ok_or_else(|| LedgerError::Corrupt(format!("kind {kind:?}")))?,
            requested: row.try_get(3)?,
            points: row.try_get(4)?,
            lifetime_delta: row.try_get(5)?,
            shortfall: row.try_get(6)?,
            balance_after: row.try_get(7)?,
            reason: row.try_get(8)?,
            source: row.try_get(9)?,
            reverses: row.try_get(10)?,
            recorded_at_ms: row.try_get(11)?,
            draws: match row.try_get::<Option<String>, _>(12)? {
                Some(json) => serde_json::from_str(&json).map_err(|e| LedgerError::Corrupt(format!("draws: {e}")))?,
                None => Vec::new(),
            },
            effective_at_ms: row.try_get(13)?,
            order: match row.try_get::<Option<String>, _>(14)? {
                Some(json) => {
                    serde_json::from_str(&json).map_err(|e| LedgerError::Corrupt(format!("order_detail: {e}")))?
                }
                None => OrderDetail::default(),
            },
        })
    }

    /// What the event asked for, to compare a resend with.
    pub fn request(&self) -> StoredRequest {
        StoredRequest {
            kind: self.kind,
            requested: self.requested,
            reason: self.reason.clone(),
            source: self.source.clone(),
            reverses: self.reverses.clone(),
        }
    }
}

/// An account's totals next to what its rows add up to; they must agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountAudit {
    /// The account.
    pub customer_id: String,
    /// The running totals.
    pub totals: Totals,
    /// Sum of the rows' balance changes.
    pub sum_points: i64,
    /// Sum of the rows' lifetime changes.
    pub sum_lifetime: i64,
    /// The newest row's balance after, if any row.
    pub last_balance_after: Option<i64>,
    /// Number of rows.
    pub entries: i64,
    /// Held points as the account's totals say.
    pub held: i64,
    /// Held points as the hold, capture and release rows add up.
    pub held_by_rows: i64,
}

/// One account read at one instant ([`Ledger::snapshot`]).
#[derive(Debug, Clone)]
pub struct AccountSnapshot {
    /// The ledger checked against itself.
    pub audit: AccountAudit,
    /// The newest entry's account sequence.
    pub seq: u64,
    /// Pending points as the newest entry left them.
    pub pending: i64,
    /// What the rows up to the asked sequence add up to.
    pub as_of: AsOf,
}

/// An account's totals as of one sequence, from its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsOf {
    /// The sequence.
    pub seq: u64,
    /// Balance after the entries up to it.
    pub balance: i64,
    /// Lifetime points after them.
    pub lifetime: i64,
    /// Held points after them.
    pub held: i64,
}

impl AccountAudit {
    /// Every way the ledger disagrees with itself for this account.
    pub fn inconsistencies(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.sum_points != self.totals.balance {
            out.push(format!("ledger rows sum to {} but the balance is {}", self.sum_points, self.totals.balance));
        }
        if self.sum_lifetime != self.totals.lifetime {
            out.push(format!(
                "ledger rows sum to {} lifetime points but the total is {}",
                self.sum_lifetime, self.totals.lifetime
            ));
        }
        if let Some(last) = self.last_balance_after.filter(|b| *b != self.totals.balance) {
            out.push(format!("newest row's balance_after is {last} but the balance is {}", self.totals.balance));
        }
        if self.held != self.held_by_rows {
            out.push(format!(
                "hold rows add up to {} held points but the account holds {}",
                self.held_by_rows, self.held
            ));
        }
        out
    }
}

/// The event `event_id` of an account, read through `executor` (the pool, or
/// a write transaction).
pub(super) async fn find_in<'e>(
    executor: impl Executor<'e, Database = Any>,
    customer_id: &str,
    event_id: &str,
) -> Result<Option<HistoryEntry>, LedgerError> {
    let row =
        sqlx::query(&format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE customer_id = $1 AND event_id = $2"))
            .bind(customer_id)
            .bind(event_id)
            .fetch_optional(executor)
            .await?;
    row.as_ref().map(HistoryEntry::from_row).transpose()
}

impl Ledger {
    /// The event `event_id` of an account, if the ledger holds it.
    pub async fn find(&self, customer_id: &str, event_id: &str) -> Result<Option<HistoryEntry>, LedgerError> {
        find_in(&self.pool, customer_id, event_id).await
    }

    /// Up to `limit` entries of an account older than `before_seq` (all when
    /// `None`), newest first. New entries always get a larger `seq`, so pages
    /// that continue from the last `seq` seen are stable under writes.
    pub async fn history(
        &self,
        customer_id: &str,
        before_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<HistoryEntry>, LedgerError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE customer_id = $1 AND seq < $2
             ORDER BY seq DESC LIMIT $3"
        ))
        .bind(customer_id)
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(HistoryEntry::from_row).collect()
    }

    /// Every entry of an account, oldest first.
    pub async fn entries(&self, customer_id: &str) -> Result<Vec<HistoryEntry>, LedgerError> {
        let mut all = self.history(customer_id, None, u32::MAX).await?;
        all.reverse();
        Ok(all)
    }

    /// The account's running totals, if the ledger knows the account.
    pub async fn totals(&self, customer_id: &str) -> Result<Option<Totals>, LedgerError> {
        let row: Option<(i64, i64)> = sqlx::query_as("SELECT balance, lifetime FROM accounts WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(balance, lifetime)| Totals { balance, lifetime }))
    }

    /// The account's pending and held points as its newest entry left them.
    pub async fn pending_and_held(&self, customer_id: &str) -> Result<(i64, i64), LedgerError> {
        let row: Option<(i64, i64)> = sqlx::query_as("SELECT pending, held FROM accounts WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.unwrap_or_default())
    }

    /// How many accounts the ledger knows.
    pub async fn account_count(&self) -> Result<i64, LedgerError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM accounts").fetch_one(&self.pool).await?)
    }

    /// Up to `limit` account ids after `after`, in id order.
    pub async fn account_ids(&self, after: &str, limit: u32) -> Result<Vec<String>, LedgerError> {
        Ok(sqlx::query_scalar("SELECT customer_id FROM accounts WHERE customer_id > $1 ORDER BY customer_id LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?)
    }

    /// The account's totals next to what its rows add up to, read as one
    /// snapshot.
    pub async fn audit(&self, customer_id: &str) -> Result<Option<AccountAudit>, LedgerError> {
        Ok(self.snapshot(customer_id, 0).await?.map(|s| s.audit))
    }

    /// The account as it stood at one instant: its audit, its newest
    /// sequence, its pending points, and what its rows up to sequence
    /// `as_of_seq` add up to. Every read is in one transaction (REPEATABLE
    /// READ on PostgreSQL; on SQLite a transaction's reads share the snapshot
    /// of its first), so a write committing meanwhile never shows as a
    /// difference between two reads.
    pub async fn snapshot(&self, customer_id: &str, as_of_seq: u64) -> Result<Option<AccountSnapshot>, LedgerError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == super::Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        }
        let account: Option<(i64, i64, i64, i64, i64)> =
            sqlx::query_as("SELECT balance, lifetime, pending, held, last_seq FROM accounts WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((balance, lifetime, pending, held, last_seq)) = account else {
            tx.commit().await?;
            return Ok(None);
        };
        // A hold sets -points aside; a release gives points back; a capture of c
        // from a hold of h gives back h - c (its points) and spends c (requested).
        let (sum_points, sum_lifetime, entries, held_by_rows, points_at, lifetime_at, held_at): (
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
        ) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT), CAST(COALESCE(SUM(lifetime_delta), 0) AS BIGINT),
                    COUNT(*), CAST(COALESCE(SUM(held), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN upto THEN points ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN upto THEN lifetime_delta ELSE 0 END), 0) AS BIGINT),
                    CAST(COALESCE(SUM(CASE WHEN upto THEN held ELSE 0 END), 0) AS BIGINT)
             FROM (SELECT points, lifetime_delta,
                          CASE kind WHEN 'hold' THEN -points WHEN 'release' THEN -points
                                    WHEN 'capture' THEN -(points + requested) ELSE 0 END AS held,
                          (account_seq <= $2) AS upto
                   FROM ledger_entries WHERE customer_id = $1) AS rows_of_account",
        )
        .bind(customer_id)
        .bind(as_of_seq as i64)
        .fetch_one(&mut *tx)
        .await?;
        let last_balance_after: Option<i64> = sqlx::query_scalar(
            "SELECT balance_after FROM ledger_entries WHERE customer_id = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(customer_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(AccountSnapshot {
            audit: AccountAudit {
                customer_id: customer_id.to_owned(),
                totals: Totals { balance, lifetime },
                sum_points,
                sum_lifetime,
                last_balance_after,
                entries,
                held,
                held_by_rows,
            },
            seq: last_seq as u64,
            pending,
            as_of: AsOf { seq: as_of_seq, balance: points_at, lifetime: lifetime_at, held: held_at },
        }))
    }

    /// The account's tier changes from its event stream, oldest first, as
    /// (old, new).
    pub async fn tier_changes(&self, customer_id: &str) -> Result<Vec<(String, String)>, LedgerError> {
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM account_events WHERE customer_id = $1 AND type = 'tier.changed' ORDER BY seq",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?;
        bodies
            .iter()
            .map(|b| {
                let v: serde_json::Value = serde_json::from_str(b).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
                let tier = |k: &str| v["data"][k].as_str().unwrap_or_default().to_owned();
                Ok((tier("old_tier"), tier("new_tier")))
            })
            .collect()
    }
}
