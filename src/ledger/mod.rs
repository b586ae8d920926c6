//! The ledger database: the durable record of every event of every account,
//! the source of history and reconciliation, and the outbox of the events
//! every change sends to webhooks. SQLite is the embedded default, PostgreSQL the production
//! choice; both run the same queries through sqlx's `Any` driver, and each
//! has its own migrations (`migrations/sqlite`, `migrations/postgres`).
//!
//! Every write is idempotent by `(customer_id, event_id)`: Temporal retries
//! activities, clients resend events for days, and neither may count twice.

mod events;
mod outbox;
mod project;
mod read;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyPool, Executor, Transaction};

pub use events::StoredEvent;
pub use outbox::{Cursor, DeadLetter, Failure};
pub use project::OrderView;
pub use read::{AccountAudit, AccountSnapshot, AsOf, HistoryEntry, OrderDetail};

/// A write transaction.
type Tx = Transaction<'static, Any>;

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
    /// A TLS connection to the database failed: its certificate did not
    /// verify, or the server does not speak TLS.
    #[error(
        "cannot connect over TLS: {0} (check sslmode and sslrootcert in LOYALTY_DATABASE_URL: verify-full needs the \
         CA that signed the server's certificate and a host name or IP address it names)"
    )]
    Tls(String),
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
    /// Rung after a commit that appended events: this process's relay
    /// delivers them at once instead of at its next poll.
    events_recorded: std::sync::Arc<tokio::sync::Notify>,
}

impl Ledger {
    /// Whether this build can open a ledger at `url`.
    pub fn supports(url: &str) -> bool {
        Backend::of(url).is_some()
    }

    /// Opens the database at `url` (creating a SQLite file if missing) and
    /// applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, LedgerError> {
        Self::connect_with(url, None).await
    }

    /// A second handle on the same database with a small pool of its own,
    /// notifying this one's listeners: the webhook relay's, so deliveries
    /// never take the connections the account's ledger writes need.
    pub async fn side_pool(&self, url: &str) -> Result<Self, LedgerError> {
        let max = if self.backend == Backend::Sqlite { 2 } else { 4 };
        let mut side = Self::connect_with(url, Some(max)).await?;
        side.events_recorded = self.events_recorded.clone();
        Ok(side)
    }

    async fn connect_with(url: &str, max_connections: Option<u32>) -> Result<Self, LedgerError> {
        let backend = Backend::of(url).ok_or_else(|| LedgerError::UnsupportedUrl(url.to_owned()))?;
        install_default_drivers();
        let (url, max, lock_path) = match backend {
            Backend::Sqlite => {
                let (url, lock) = prepare_sqlite(url)?;
                (url, 4, Some(lock))
            }
            Backend::Postgres => (url.to_owned(), 10, None),
        };
        let max = max_connections.unwrap_or(max);
        let pool = open_pool(backend, max, &url).await.map_err(|e| match e {
            sqlx::Error::Tls(tls) => LedgerError::Tls(tls.to_string()),
            // A certificate rustls refused surfaces as an I/O error of the handshake.
            sqlx::Error::Io(io) if io.to_string().contains("certificate") => LedgerError::Tls(io.to_string()),
            other => LedgerError::Database(other),
        })?;
        match lock_path {
            // sqlx takes no lock for SQLite migrations: two processes starting on
            // one file would both migrate it. A file lock orders them.
            Some(path) => {
                let lock = MigrationLock::acquire(path).await?;
                sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
                drop(lock);
            }
            None => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        Ok(Self { pool, backend, events_recorded: Default::default() })
    }

    /// Notified whenever this handle (or a clone) committed new events.
    pub fn events_recorded(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.events_recorded.clone()
    }

    /// The database this ledger writes to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the connection to the database is encrypted; `None` for
    /// SQLite, which is a local file.
    pub async fn encrypted(&self) -> Result<Option<bool>, LedgerError> {
        if self.backend == Backend::Sqlite {
            return Ok(None);
        }
        let ssl: Option<bool> = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_optional(&self.pool)
            .await?;
        Ok(Some(ssl.unwrap_or(false)))
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// How long a connection may wait for the pool before the call fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// A pool of up to `max` connections to `url`.
async fn open_pool(backend: Backend, max: u32, url: &str) -> Result<AnyPool, sqlx::Error> {
    AnyPoolOptions::new()
        .max_connections(max)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // Writers of several accounts wait for the lock instead of failing.
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000;").await?;
                } else {
                    // A transaction whose client vanished (a partition that lost the
                    // connection) would keep its account's row lock until the server's
                    // TCP keepalive gives up, hours later; no transaction of ours
                    // waits on its client this long.
                    conn.execute("SET idle_in_transaction_session_timeout = '15s'").await?;
                }
                Ok(())
            })
        })
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(url)
        .await
}

/// Creates the SQLite file's folder and asks for the file to be created;
/// returns the URL to open and the path of its migration lock file.
fn prepare_sqlite(url: &str) -> Result<(String, PathBuf), LedgerError> {
    let options = SqliteConnectOptions::from_str(url)?;
    let file = options.get_filename();
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io { path: dir.display().to_string(), source })?;
    }
    let mut lock = file.as_os_str().to_owned();
    lock.push(".migrate-lock");
    let url = if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    Ok((url, PathBuf::from(lock)))
}

/// An exclusive advisory lock on a file, released on drop.
struct MigrationLock {
    // Closing the file releases the lock.
    _file: std::fs::File,
}

impl MigrationLock {
    async fn acquire(path: PathBuf) -> Result<Self, LedgerError> {
        let io = |source| LedgerError::Io { path: path.display().to_string(), source };
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io)?;
        let file = tokio::task::spawn_blocking(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a file descriptor we own; blocks until granted.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 { Ok(file) } else { Err(std::io::Error::last_os_error()) }
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| LedgerError::Io { path: path.display().to_string(), source })?;
        Ok(Self { _file: file })
    }
}

/// Milliseconds since the Unix epoch: the time a row is recorded.
fn now_ms() -> i64 {
    crate::clock::now_ms()
}
