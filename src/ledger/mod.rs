//! The ledger database: the durable record of every event of every account,
//! the source of history and reconciliation, and the outbox of tier-change
//! notifications. SQLite is the embedded default, PostgreSQL the production
//! choice; both run the same queries through sqlx's `Any` driver, and each
//! has its own migrations (`migrations/sqlite`, `migrations/postgres`).
//!
//! Every write is idempotent by `(customer_id, event_id)`: Temporal retries
//! activities, clients resend events for days, and neither may count twice.

mod read;
mod write;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Executor};

pub use read::{AccountAudit, HistoryEntry};

/// Why the ledger could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The database URL is not one this build understands.
    #[error("unsupported database URL {0:?}: expected sqlite:<path> or postgres://...")]
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
    /// The database did not answer in time.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// A stored row holds a value this build does not know.
    #[error("corrupt ledger row: {0}")]
    Corrupt(String),
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:<path>`: embedded, one process.
    Sqlite,
    /// `postgres://...` or `postgresql://...`: shared by every replica.
    Postgres,
}

impl Backend {
    /// The backend of `url`, if this build supports it.
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

/// A handle on the ledger database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Ledger {
    pool: AnyPool,
    backend: Backend,
}

impl Ledger {
    /// Whether this build can open a ledger at `url`.
    pub fn supports(url: &str) -> bool {
        Backend::of(url).is_some()
    }

    /// Opens the database at `url` (creating a SQLite file if missing) and
    /// applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, LedgerError> {
        let backend = Backend::of(url).ok_or_else(|| LedgerError::UnsupportedUrl(url.to_owned()))?;
        install_default_drivers();
        let (url, max) = match backend {
            Backend::Sqlite => (prepare_sqlite(url)?, 4),
            Backend::Postgres => (url.to_owned(), 10),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Writers of several accounts wait for the lock instead of failing.
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000;").await?;
                    }
                    Ok(())
                })
            })
            .acquire_timeout(Duration::from_secs(10))
            .connect(&url)
            .await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Self { pool, backend })
    }

    /// The database this ledger writes to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the SQLite file's folder and asks for the file to be created.
fn prepare_sqlite(url: &str) -> Result<String, LedgerError> {
    let options = SqliteConnectOptions::from_str(url)?;
    if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io { path: dir.display().to_string(), source })?;
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// Milliseconds since the Unix epoch: the time a row is recorded.
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
