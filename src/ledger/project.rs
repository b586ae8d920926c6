//! The fenced projection: entries the account decided, written in its order.
//!
//! A write names the entry the ledger must hold last (`after_seq`) and the
//! totals there; it applies only on top of exactly that. A retry of a write
//! that committed finds its entries in place and changes nothing. Anything
//! else (the ledger behind: a lost database or a restored backup; ahead or
//! elsewhere: a wrong URL, a second writer) applies nothing and answers
//! `Fenced`, so the account holds its projection instead of guessing.

use super::events::append;
use super::read::{HistoryEntry, OrderDetail, find_in};
use super::{Ledger, LedgerError, Tx, now_ms};
use crate::domain::earning::{Earned, ReturnedLine};
use crate::domain::events::{AccountAfter, NewEvent};
use crate::domain::{Entry, Known, LedgerView, Original, ProjectionBatch, ProjectionReply, Totals};

impl Ledger {
    /// Writes `batch` if the ledger is where it starts, and says what the
    /// ledger holds of each accrual to check. The flag is true when the
    /// entries were already there (a retry of a committed write).
    pub async fn project(&self, batch: &ProjectionBatch) -> Result<(ProjectionReply, bool), LedgerError> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let (totals, ledger_seq, pending_and_held) = lock_account(&mut tx, &batch.customer_id).await?;
        let (duplicates, recovered) = if batch.fits(ledger_seq, totals) {
            (write_entries(&mut tx, batch, &batch.entries, now).await?, false)
        } else {
            match already_written(&mut tx, batch, ledger_seq, totals).await? {
                Some(mut duplicates) => {
                    // A committed write whose answer was lost, maybe with more
                    // entries decided since: the rest goes on top of it.
                    let rest: Vec<Entry> = batch.entries.iter().filter(|e| e.seq > ledger_seq).cloned().collect();
                    duplicates.extend(write_entries(&mut tx, batch, &rest, now).await?);
                    (duplicates, true)
                }
                None => {
                    tx.rollback().await?;
                    let reply = ProjectionReply::Fenced {
                        ledger_seq,
                        ledger_totals: totals,
                        ledger_pending_and_held: pending_and_held,
                    };
                    return Ok((reply, false));
                }
            }
        };
        let mut known = Vec::with_capacity(batch.check.len());
        for m in &batch.check {
            known.push(match find(&mut tx, &batch.customer_id, &m.event_id).await? {
                None => Known::New,
                Some(row) if m.same_as(&row.request()) => Known::Same,
                Some(_) => Known::Other,
            });
        }
        tx.commit().await?;
        self.events_recorded.notify_one();
        Ok((ProjectionReply::Written { duplicates, known }, recovered))
    }

    /// The ledger's newest entry of the account (0 for none).
    pub async fn sequence(&self, customer_id: &str) -> Result<u64, LedgerError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM accounts WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0) as u64)
    }

    /// A reversal's original as the ledger holds it, with the newest entry
    /// read before it: the view is at least as new as it says.
    pub async fn original_view(&self, customer_id: &str, event_id: &str) -> Result<LedgerView, LedgerError> {
        let as_of_seq = self.sequence(customer_id).await?;
        let mut tx = self.pool.begin().await?;
        let original = original(&mut tx, customer_id, event_id).await?;
        tx.commit().await?;
        Ok(LedgerView { as_of_seq, original })
    }

    /// An order accrual as the ledger holds it, for a line return: the view
    /// a reversal carries, the accrual's breakdown, and the lines earlier
    /// returns gave back. Read after the view's sequence, so it never
    /// misses an entry the view counts.
    pub async fn order_view(&self, customer_id: &str, event_id: &str) -> Result<OrderView, LedgerError> {
        let as_of_seq = self.sequence(customer_id).await?;
        let mut tx = self.pool.begin().await?;
        let row = find(&mut tx, customer_id, event_id).await?;
        let original = original(&mut tx, customer_id, event_id).await?;
        let rows: Vec<(Option<String>,)> = sqlx::query_as(
            "SELECT order_detail FROM ledger_entries WHERE customer_id = $1 AND reverses = $2 AND kind = 'reversal'",
        )
        .bind(customer_id)
        .bind(event_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut returned = Vec::new();
        for (json,) in rows {
            if let Some(json) = json {
                let detail: OrderDetail =
                    serde_json::from_str(&json).map_err(|e| LedgerError::Corrupt(format!("order_detail: {e}")))?;
                returned.extend(detail.returned);
            }
        }
        Ok(OrderView {
            view: LedgerView { as_of_seq, original },
            earned: row.and_then(|r| r.order.earned).map(|e| *e),
            returned,
        })
    }
}

/// An order accrual as the ledger holds it (`Ledger::order_view`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    /// The view a reversal carries.
    pub view: LedgerView,
    /// The accrual's breakdown, if it is an order accrual in the ledger.
    pub earned: Option<Earned>,
    /// Lines earlier returns gave back.
    pub returned: Vec<ReturnedLine>,
}

/// Locks the account's totals row (creating it) and returns its totals,
/// newest entry, and pending and held points. The statement writes, so SQLite takes its write lock here
/// and PostgreSQL locks the row until commit: writers of one account are
/// serialized even if a zombie activity attempt overlaps its retry.
async fn lock_account(tx: &mut Tx, customer_id: &str) -> Result<(Totals, u64, (i64, i64)), LedgerError> {
    let (balance, lifetime, last_seq, pending, held): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "INSERT INTO accounts (customer_id, balance, lifetime, updated_at_ms, last_seq) VALUES ($1, 0, 0, $2, 0)
         ON CONFLICT (customer_id) DO UPDATE SET updated_at_ms = excluded.updated_at_ms
         RETURNING balance, lifetime, last_seq, pending, held",
    )
    .bind(customer_id)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?;
    Ok((Totals { balance, lifetime }, last_seq as u64, (pending, held)))
}

async fn find(tx: &mut Tx, customer_id: &str, event_id: &str) -> Result<Option<HistoryEntry>, LedgerError> {
    find_in(&mut **tx, customer_id, event_id).await
}

/// The entry a reversal names, with what earlier reversals took from it.
async fn original(tx: &mut Tx, customer_id: &str, event_id: &str) -> Result<Option<Original>, LedgerError> {
    let Some(row) = find(tx, customer_id, event_id).await? else { return Ok(None) };
    let reversed: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(requested), 0) AS BIGINT) FROM ledger_entries
         WHERE customer_id = $1 AND reverses = $2",
    )
    .bind(customer_id)
    .bind(event_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Some(Original { kind: row.kind, requested: row.requested, reversed }))
}

/// Inserts the entries with their events and moves the account's totals
/// and sequence to the last one. An event id the ledger already holds (the account forgot it)
/// is stored as `<event_id>#<seq>` and reported, so the unique key stands
/// and the row is not lost.
async fn write_entries(
    tx: &mut Tx,
    batch: &ProjectionBatch,
    entries: &[Entry],
    now: i64,
) -> Result<Vec<u64>, LedgerError> {
    let mut duplicates = Vec::new();
    let mut events = Vec::with_capacity(entries.len());
    for entry in entries {
        let event_id = if find(tx, &batch.customer_id, &entry.movement.event_id).await?.is_some() {
            duplicates.push(entry.seq);
            suffixed(entry)
        } else {
            entry.movement.event_id.clone()
        };
        insert(tx, &batch.customer_id, &event_id, entry, now).await?;
        events.push(NewEvent::of_entry(entry, &event_id));
        if let Some(change) = &entry.tier_change {
            events.push(NewEvent::of_tier_change(change, Some(AccountAfter::of(entry)), entry.at_ms));
        }
    }
    append(tx, &batch.customer_id, &events, now).await?;
    if let Some(last) = entries.last() {
        sqlx::query(
            "UPDATE accounts SET balance = $1, lifetime = $2, last_seq = $3, pending = $4, held = $5
             WHERE customer_id = $6",
        )
        .bind(last.after.balance)
        .bind(last.after.lifetime)
        .bind(last.seq as i64)
        .bind(last.pending_after)
        .bind(last.held_after)
        .bind(&batch.customer_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(duplicates)
}

/// Whether the ledger already holds this write's entries up to its newest
/// (`ledger_seq`), each the same event at the same position (a retry of a
/// committed write, maybe with more entries decided since): `Some` with
/// those stored under a suffixed id, `None` if the ledger holds anything
/// else. When the ledger's newest is inside the write, its totals must be
/// the ones that entry left.
async fn already_written(
    tx: &mut Tx,
    batch: &ProjectionBatch,
    ledger_seq: u64,
    totals: Totals,
) -> Result<Option<Vec<u64>>, LedgerError> {
    if ledger_seq <= batch.after_seq || batch.entries.is_empty() {
        return Ok(None);
    }
    if let Some(newest) = batch.entries.iter().find(|e| e.seq == ledger_seq)
        && newest.after != totals
    {
        return Ok(None);
    }
    let mut duplicates = Vec::new();
    for entry in batch.entries.iter().filter(|e| e.seq <= ledger_seq) {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT event_id FROM ledger_entries WHERE customer_id = $1 AND account_seq = $2")
                .bind(&batch.customer_id)
                .bind(entry.seq as i64)
                .fetch_optional(&mut **tx)
                .await?;
        match stored {
            Some(id) if id == entry.movement.event_id => {}
            Some(id) if id == suffixed(entry) => duplicates.push(entry.seq),
            _ => return Ok(None),
        }
    }
    Ok(Some(duplicates))
}

fn suffixed(entry: &Entry) -> String {
    format!("{}#{}", entry.movement.event_id, entry.seq)
}

async fn insert(tx: &mut Tx, customer_id: &str, event_id: &str, entry: &Entry, now: i64) -> Result<(), LedgerError> {
    let m = &entry.movement;
    sqlx::query(
        "INSERT INTO ledger_entries (customer_id, event_id, kind, requested, points, lifetime_delta, shortfall,
             balance_after, reason, source, reverses, recorded_at_ms, account_seq, draws, effective_at_ms, order_detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(customer_id)
    .bind(event_id)
    .bind(m.kind.as_str())
    .bind(entry.effect.requested)
    .bind(entry.effect.balance_delta)
    .bind(entry.effect.lifetime_delta)
    .bind(entry.effect.shortfall)
    .bind(entry.after.balance)
    .bind(&m.reason)
    .bind(&m.source)
    .bind(m.reverses.clone())
    .bind(now)
    .bind(entry.seq as i64)
    .bind((!entry.draws.is_empty()).then(|| serde_json::to_string(&entry.draws).unwrap_or_default()))
    .bind(entry.at_ms)
    .bind(OrderDetail::of(entry))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
