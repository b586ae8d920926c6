//! The ledger database: the durable record of every applied accrual and
//! redemption, and the outbox of tier-change notifications.
//!
//! Every write is idempotent (keyed by the event id or the change), because
//! Temporal retries activities and a retry must never duplicate a row.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::domain::messages::{LedgerEntry, TierChange};

/// Why the ledger could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database URL is not one this build understands.
    #[error("unsupported database URL {0:?}: expected sqlite:<path>")]
    UnsupportedUrl(String),
    /// The database refused or failed an operation.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A schema migration failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database file's folder could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The folder.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// One stored ledger row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LedgerRow {
    /// Idempotency key.
    pub event_id: String,
    /// `accrual` or `redemption`.
    pub kind: String,
    /// Signed change of the balance.
    pub points: i64,
    /// Balance right after the entry.
    pub balance_after: i64,
    /// Reason or reward.
    pub reason: String,
    /// Originating service.
    pub source: String,
}

/// A handle on the ledger database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Ledger {
    pool: SqlitePool,
}

impl Ledger {
    /// Whether this build can open a ledger at `url` (`sqlite:<path>`).
    pub fn supports(url: &str) -> bool {
        url.starts_with("sqlite:")
    }

    /// Opens (creating if missing) the database at `url` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, LedgerError> {
        if !Self::supports(url) {
            return Err(LedgerError::UnsupportedUrl(url.to_owned()));
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Several activities write at once; wait for the lock instead of failing.
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| LedgerError::Io { path: dir.display().to_string(), source })?;
        }
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Writes entries in one transaction; rows already present are left as they are.
    pub async fn record_entries(&self, entries: &[LedgerEntry]) -> Result<(), LedgerError> {
        let mut tx = self.pool.begin().await?;
        for e in entries {
            sqlx::query(
                "INSERT INTO ledger_entries (customer_id, event_id, kind, points, balance_after, reason, source)
                 VALUES (?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (customer_id, event_id) DO NOTHING",
            )
            .bind(&e.customer_id)
            .bind(&e.event_id)
            .bind(e.kind.as_str())
            .bind(e.points)
            .bind(e.balance_after)
            .bind(&e.reason)
            .bind(&e.source)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes redemption rows that the account gave back after their write
    /// was reported failed (the write may still have landed).
    pub async fn void_redemptions(&self, customer_id: &str, event_ids: &[String]) -> Result<(), LedgerError> {
        let mut tx = self.pool.begin().await?;
        for id in event_ids {
            sqlx::query("DELETE FROM ledger_entries WHERE customer_id = ? AND event_id = ? AND kind = 'redemption'")
                .bind(customer_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Queues a tier-change notification in the outbox, once per change.
    pub async fn record_tier_change(&self, change: &TierChange) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO tier_notifications (customer_id, old_tier, new_tier, lifetime_points)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (customer_id, new_tier, lifetime_points) DO NOTHING",
        )
        .bind(&change.customer_id)
        .bind(change.old_tier.as_str())
        .bind(change.new_tier.as_str())
        .bind(change.lifetime_points)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// All rows of one account, oldest first.
    pub async fn entries(&self, customer_id: &str) -> Result<Vec<LedgerRow>, LedgerError> {
        Ok(sqlx::query_as(
            "SELECT event_id, kind, points, balance_after, reason, source FROM ledger_entries
             WHERE customer_id = ? ORDER BY rowid",
        )
        .bind(customer_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The tier changes queued for one account, oldest first, as (old, new).
    pub async fn tier_notifications(&self, customer_id: &str) -> Result<Vec<(String, String)>, LedgerError> {
        Ok(sqlx::query_as("SELECT old_tier, new_tier FROM tier_notifications WHERE customer_id = ? ORDER BY id")
            .bind(customer_id)
            .fetch_all(&self.pool)
            .await?)
    }
}
