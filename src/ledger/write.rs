//! Writes: one transaction per batch of events of one account.
//!
//! Each transaction first locks the account's totals row (creating it), so
//! writers of one account are serialized on both databases even if a zombie
//! activity attempt overlaps its retry; then it decides every event against
//! what the ledger holds.

use sqlx::{Any, Transaction};

use super::events::append;
use super::read::{HistoryEntry, find_in};
use super::{Ledger, LedgerError, now_ms};
use crate::domain::events::{AccountAfter, NewEvent};
use crate::domain::movement::{Original, effect};
use crate::domain::{
    BatchOutcome, Entry, EntryKind, LedgerBatch, Movement, Outcome, Recorded, Tier, TierChange, Totals,
};

pub(super) type Tx = Transaction<'static, Any>;

impl Ledger {
    /// Records a batch in order, once per event id for the account's whole
    /// life. A row this same write inserted before (an activity retry) is
    /// reported `Recovered`, one from another write `Duplicate`. Each
    /// applied row, and the tier change the batch makes, is an event.
    pub async fn apply(&self, batch: &LedgerBatch) -> Result<BatchOutcome, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let mut totals = lock_account(&mut tx, &batch.customer_id, now).await?;
        let before = totals;
        let mut events = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.movements.len());
        for m in &batch.movements {
            let outcome = match find(&mut tx, &batch.customer_id, &m.event_id).await? {
                Some(row) if !m.same_as(&row.request()) => Outcome::Conflict,
                Some(row) if row.write_id == batch.write_id => Outcome::Recovered(row.recorded()),
                Some(row) => Outcome::Duplicate(row.recorded()),
                None => {
                    let original = match &m.reverses {
                        Some(id) => original(&mut tx, &batch.customer_id, id).await?,
                        None => None,
                    };
                    match effect(m, totals, original) {
                        Err(refusal) => Outcome::Refused(refusal),
                        Ok(e) => {
                            totals = e.apply(totals);
                            let recorded = Recorded { effect: e, balance_after: totals.balance };
                            insert(&mut tx, batch, m, &recorded, now).await?;
                            events.push(NewEvent::of_entry(&legacy_entry(m, &recorded, totals), &m.event_id));
                            Outcome::Applied(recorded)
                        }
                    }
                }
            };
            outcomes.push(outcome);
        }
        store_totals(&mut tx, &batch.customer_id, totals).await?;
        let (old_tier, new_tier) = (Tier::for_lifetime(before.lifetime), Tier::for_lifetime(totals.lifetime));
        if old_tier != new_tier {
            let change = TierChange {
                customer_id: batch.customer_id.clone(),
                old_tier,
                new_tier,
                lifetime_points: totals.lifetime,
                caused_by: batch.write_id.clone(),
            };
            let account = AccountAfter {
                balance: totals.balance,
                lifetime_points: totals.lifetime,
                pending_points: 0,
                held_points: 0,
                tier: new_tier.as_str(),
            };
            events.push(NewEvent::of_tier_change(&change, Some(account), 0));
        }
        append(&mut tx, &batch.customer_id, &events, now).await?;
        tx.commit().await?;
        if !events.is_empty() {
            self.events_recorded.notify_one();
        }
        Ok(BatchOutcome { outcomes, totals })
    }

    /// For each `(event_id, write_id)`, the row that write left, if any, and
    /// the account's totals: how an account settles writes whose outcome it
    /// did not learn.
    pub async fn written(
        &self,
        customer_id: &str,
        writes: &[(String, String)],
    ) -> Result<(Vec<Option<Recorded>>, Totals), LedgerError> {
        let mut tx = self.pool.begin().await?;
        let totals = lock_account(&mut tx, customer_id, now_ms()).await?;
        let mut found = Vec::with_capacity(writes.len());
        for (event_id, write_id) in writes {
            let row = find(&mut tx, customer_id, event_id).await?;
            found.push(row.filter(|r| &r.write_id == write_id).map(|r| r.recorded()));
        }
        tx.commit().await?;
        Ok((found, totals))
    }

    /// Removes redemption rows that an account of the previous version gave
    /// back after their write was reported failed, restoring the balance
    /// (and the `balance_after` of later rows). Newer accounts settle such
    /// writes with [`Ledger::written`] instead and never delete.
    pub async fn void_redemptions(&self, customer_id: &str, event_ids: &[String]) -> Result<Totals, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let mut totals = lock_account(&mut tx, customer_id, now_ms()).await?;
        for id in event_ids {
            let Some(row) = find(&mut tx, customer_id, id).await?.filter(|r| r.kind == EntryKind::Redemption) else {
                continue;
            };
            sqlx::query("DELETE FROM ledger_entries WHERE seq = $1").bind(row.seq).execute(&mut *tx).await?;
            sqlx::query(
                "UPDATE ledger_entries SET balance_after = balance_after - $1 WHERE customer_id = $2 AND seq > $3",
            )
            .bind(row.points)
            .bind(customer_id)
            .bind(row.seq)
            .execute(&mut *tx)
            .await?;
            totals.balance -= row.points;
        }
        store_totals(&mut tx, customer_id, totals).await?;
        tx.commit().await?;
        Ok(totals)
    }
}

/// Creates or touches the account's totals row and returns the totals. The
/// statement writes, so SQLite takes its write lock here and PostgreSQL locks
/// the row until commit.
async fn lock_account(tx: &mut Tx, customer_id: &str, now: i64) -> Result<Totals, LedgerError> {
    let (balance, lifetime): (i64, i64) = sqlx::query_as(
        "INSERT INTO accounts (customer_id, balance, lifetime, updated_at_ms) VALUES ($1, 0, 0, $2)
         ON CONFLICT (customer_id) DO UPDATE SET updated_at_ms = excluded.updated_at_ms
         RETURNING balance, lifetime",
    )
    .bind(customer_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Totals { balance, lifetime })
}

async fn store_totals(tx: &mut Tx, customer_id: &str, totals: Totals) -> Result<(), LedgerError> {
    sqlx::query("UPDATE accounts SET balance = $1, lifetime = $2 WHERE customer_id = $3")
        .bind(totals.balance)
        .bind(totals.lifetime)
        .bind(customer_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn find(tx: &mut Tx, customer_id: &str, event_id: &str) -> Result<Option<HistoryEntry>, LedgerError> {
    find_in(&mut **tx, customer_id, event_id).await
}

/// The entry a reversal names, with what earlier reversals took from it.
pub(super) async fn original(tx: &mut Tx, customer_id: &str, event_id: &str) -> Result<Option<Original>, LedgerError> {
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

/// A row a previous-version account wrote, as an entry for its event.
fn legacy_entry(m: &Movement, recorded: &Recorded, after: Totals) -> Entry {
    Entry {
        seq: 0,
        movement: m.clone(),
        effect: recorded.effect,
        after,
        tier_change: None,
        draws: vec![],
        at_ms: 0,
        pending_after: 0,
        held_after: 0,
        expires_at_ms: None,
    }
}

async fn insert(
    tx: &mut Tx,
    batch: &LedgerBatch,
    m: &Movement,
    recorded: &Recorded,
    now: i64,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO ledger_entries (customer_id, event_id, kind, requested, points, lifetime_delta, shortfall,
             balance_after, reason, source, reverses, write_id, recorded_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&batch.customer_id)
    .bind(&m.event_id)
    .bind(m.kind.as_str())
    .bind(recorded.effect.requested)
    .bind(recorded.effect.balance_delta)
    .bind(recorded.effect.lifetime_delta)
    .bind(recorded.effect.shortfall)
    .bind(recorded.balance_after)
    .bind(&m.reason)
    .bind(&m.source)
    .bind(m.reverses.clone())
    .bind(&batch.write_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
