//! Every error the API can return, mapped to a gRPC status in one place.

use temporalio_client::errors::{
    WorkflowInteractionError, WorkflowQueryError, WorkflowStartError, WorkflowUpdateError,
};
use temporalio_common::protos::temporal::api::failure::v1::Failure;
use tonic::{Code, Status};

use crate::domain::rejection::failure_type;
use crate::domain::{CustomerId, FieldError};
use crate::ledger::LedgerError;

/// Why an RPC failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A malformed or out-of-range field.
    #[error("{0}")]
    InvalidField(#[from] FieldError),
    /// The workflow refused a request as malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// No such account.
    #[error("customer {0} not found")]
    NotFound(CustomerId),
    /// The account was closed.
    #[error("account {0} is closed")]
    AccountClosed(CustomerId),
    /// A business rule refused the request (insufficient points, inactive account).
    #[error("{0}")]
    Precondition(String),
    /// The event id was used before with different content.
    #[error("{0}")]
    EventIdReused(String),
    /// A reversal names an event, or a capture or release a hold, the
    /// account does not have.
    #[error("{0}")]
    OriginalNotFound(String),
    /// The ledger database failed a read.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Temporal, a worker or the ledger is out of reach; retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// Temporal refused for load (e.g. too many updates in flight on one
    /// account); retrying shortly will help.
    #[error("{0}")]
    Busy(String),
    /// The caller's deadline passed.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Temporal refuses this service itself (a wrong API key or certificate,
    /// a missing namespace, a server without a needed feature): no caller can
    /// fix it, an operator must; callers see UNAVAILABLE and may retry elsewhere.
    #[error("{0}")]
    Misconfigured(String),
    /// Anything else; the details are logged, not returned.
    #[error("{0}")]
    Internal(String),
    /// A status already decided for another call that shared this one's
    /// work (accruals sent in one signal).
    #[error("{0}")]
    Relayed(Status),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e {
            ApiError::InvalidField(f) => Status::invalid_argument(f.to_string()),
            ApiError::InvalidRequest(m) => Status::invalid_argument(m),
            ApiError::NotFound(_) => Status::not_found(e.to_string()),
            ApiError::AccountClosed(_) => Status::failed_precondition(e.to_string()),
            ApiError::Precondition(m) => Status::failed_precondition(m),
            ApiError::EventIdReused(m) => Status::already_exists(m),
            ApiError::OriginalNotFound(m) => Status::not_found(m),
            ApiError::Ledger(LedgerError::Database(db)) if is_transient(&db) => {
                tracing::warn!(error = %db, "ledger unavailable");
                retryable(Code::Unavailable, "ledger unavailable; retry")
            }
            ApiError::Ledger(LedgerError::TimedOut(after)) => {
                retryable(Code::Unavailable, format!("ledger did not answer within {after:?}; retry"))
            }
            ApiError::Ledger(other) => {
                tracing::error!(error = %other, "ledger error");
                Status::internal("internal error")
            }
            ApiError::Unavailable(m) => retryable(Code::Unavailable, m),
            ApiError::Busy(m) => retryable(Code::ResourceExhausted, m),
            ApiError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            ApiError::Misconfigured(m) => {
                tracing::error!(error = %m, "Temporal refuses this service: fix its configuration");
                retryable(Code::Unavailable, "the service cannot reach its Temporal namespace; retry later")
            }
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error")
            }
            ApiError::Relayed(status) => status,
        }
    }
}

/// How long a caller refused for load or an outage should wait before
/// retrying; sent as `google.rpc.RetryInfo` in the status details.
pub const RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// A status a caller should retry, with the retry hint gRPC clients read.
pub fn retryable(code: Code, message: impl Into<String>) -> Status {
    retryable_after(code, message, RETRY_DELAY)
}

/// A status a caller should retry after `delay`.
pub fn retryable_after(code: Code, message: impl Into<String>, delay: std::time::Duration) -> Status {
    use tonic_types::{ErrorDetails, StatusExt};
    Status::with_error_details(code, message, ErrorDetails::with_retry_info(Some(delay)))
}

impl ApiError {
    /// Classifies a raw Temporal RPC status by what the caller can do about it
    /// (README, "Errors"): retry (UNAVAILABLE, RESOURCE_EXHAUSTED), fix the
    /// request (INVALID_ARGUMENT), or nothing (an operator's configuration, or
    /// INTERNAL for what can only be a bug).
    pub fn from_rpc(customer: &CustomerId, status: &Status) -> Self {
        let message = status.message();
        match status.code() {
            Code::NotFound if namespace_missing(status) => {
                ApiError::Misconfigured(format!("Temporal namespace not found: {message}"))
            }
            // An update or query of a workflow that ended: a closed account (a
            // continued run is followed by the handle, never reported so).
            Code::NotFound if message.contains("already completed") => ApiError::AccountClosed(customer.clone()),
            Code::NotFound => ApiError::NotFound(customer.clone()),
            Code::Unavailable => ApiError::Unavailable(format!("Temporal unavailable: {message}")),
            // Temporal's per-workflow limits (updates in flight, ...) and rate limits.
            Code::ResourceExhausted => ApiError::Busy(format!("Temporal busy, retry: {message}")),
            Code::DeadlineExceeded => ApiError::DeadlineExceeded(format!("Temporal: {message}")),
            // A caller's own cancellation never gets here (its handler is
            // dropped): this is the connection to Temporal closing or reset.
            Code::Cancelled => ApiError::Unavailable(format!("Temporal connection lost, retry: {message}")),
            // A run's signal or update limit: the account continues-as-new
            // (or catches up with its ledger) and takes them again.
            _ if message.contains("exceeded workflow execution limit") => {
                ApiError::Busy(format!("account busy, retry: {message}"))
            }
            // The workflow task that held the update did not complete (the
            // worker lost it, or a continue-as-new raced new signals), or
            // Temporal aborted the update: not applied, and every call is
            // idempotent by its id, so a retry is decided afresh.
            Code::FailedPrecondition if message.contains("unexpected workflow task failure") => {
                ApiError::Unavailable(format!("account busy, retry: {message}"))
            }
            Code::Aborted => {
                ApiError::Unavailable(format!("account busy, retry: Temporal aborted the call: {message}"))
            }
            // The namespace is active in another cluster (a failover under way).
            Code::FailedPrecondition if temporal_detail(status) == Some("NamespaceNotActiveFailure") => {
                ApiError::Unavailable(format!("Temporal namespace failing over, retry: {message}"))
            }
            Code::Unauthenticated | Code::PermissionDenied | Code::Unimplemented => {
                ApiError::Misconfigured(format!("Temporal refused this service ({:?}): {message}", status.code()))
            }
            // Temporal's passing states (a workflow not ready yet, ...): retry.
            Code::FailedPrecondition => {
                tracing::warn!(status = %status, "Temporal refused a call for now");
                ApiError::Unavailable(format!("Temporal refused for now, retry: {message}"))
            }
            // A query the workflow failed (a handler error, a build that does
            // not know it): ours to fix, not the caller's.
            Code::InvalidArgument if temporal_detail(status) == Some("QueryFailedFailure") => {
                ApiError::Internal(format!("Temporal: {status}"))
            }
            // The caller's text made the payload too large: it can send less.
            Code::InvalidArgument if message.contains("Blob data size exceeds limit") => {
                ApiError::InvalidRequest(format!("request too large for Temporal: {message}"))
            }
            // Every other field we send was checked already: a refusal is ours
            // (a history grown past its limit, a request we built wrong).
            Code::InvalidArgument => ApiError::Internal(format!("Temporal: {status}")),
            // Temporal's own failures pass; the calls are idempotent, so retrying is safe.
            Code::Internal | Code::Unknown | Code::DataLoss => {
                tracing::warn!(status = %status, "Temporal failed a call");
                ApiError::Unavailable(format!("Temporal failed, retry: {message}"))
            }
            Code::Ok | Code::OutOfRange | Code::AlreadyExists => ApiError::Internal(format!("Temporal: {status}")),
        }
    }

    /// Classifies a failed signal-with-start.
    pub fn from_start(customer: &CustomerId, e: WorkflowStartError) -> Self {
        match e {
            // Only a closed account's workflow id is refused reuse; signal-with-start
            // reports it as a raw ALREADY_EXISTS status.
            WorkflowStartError::AlreadyStarted { .. } => ApiError::AccountClosed(customer.clone()),
            WorkflowStartError::Rpc(s) if s.code() == Code::AlreadyExists => ApiError::AccountClosed(customer.clone()),
            WorkflowStartError::Rpc(s) => Self::from_rpc(customer, &s),
            other => ApiError::Internal(other.to_string()),
        }
    }

    /// Classifies a failed query.
    pub fn from_query(customer: &CustomerId, e: WorkflowQueryError) -> Self {
        match e {
            WorkflowQueryError::NotFound(s) => Self::from_rpc(customer, &s),
            WorkflowQueryError::Rpc(s) => Self::from_rpc(customer, &s),
            other => ApiError::Internal(other.to_string()),
        }
    }

    /// Classifies a failed describe.
    pub fn from_interaction(customer: &CustomerId, e: WorkflowInteractionError) -> Self {
        match e {
            WorkflowInteractionError::NotFound(s) => Self::from_rpc(customer, &s),
            WorkflowInteractionError::Rpc(s) => Self::from_rpc(customer, &s),
            other => ApiError::Internal(other.to_string()),
        }
    }

    /// Classifies a failed update by the failure type the workflow set.
    pub fn from_update(customer: &CustomerId, e: WorkflowUpdateError) -> Self {
        match e {
            WorkflowUpdateError::NotFound(s) => Self::from_rpc(customer, &s),
            WorkflowUpdateError::Failed(f) => {
                let message = innermost_message(&f);
                match first_failure_type(&f) {
                    Some(failure_type::VALIDATION_ERROR) => ApiError::InvalidRequest(message),
                    Some(
                        failure_type::INSUFFICIENT_POINTS
                        | failure_type::INACTIVE_ACCOUNT
                        | failure_type::NOT_REVERSIBLE
                        | failure_type::HOLD_NOT_OPEN,
                    ) => ApiError::Precondition(message),
                    Some(failure_type::ORIGINAL_NOT_FOUND | failure_type::HOLD_NOT_FOUND) => {
                        ApiError::OriginalNotFound(message)
                    }
                    Some(failure_type::EVENT_ID_REUSED) => ApiError::EventIdReused(message),
                    Some(failure_type::LEDGER_UNAVAILABLE) => ApiError::Unavailable(message),
                    _ => ApiError::Internal(format!("update failed: {f:?}")),
                }
            }
            WorkflowUpdateError::Rpc(s) => Self::from_rpc(customer, &s),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Whether Temporal answered that the namespace does not exist (not that a
/// workflow does not).
pub fn namespace_missing(status: &Status) -> bool {
    status.code() == Code::NotFound && temporal_detail(status) == Some("NamespaceNotFoundFailure")
}

/// The type of the Temporal error detail a status carries
/// (`temporal.api.errordetails.v1.<Type>` in `grpc-status-details-bin`).
fn temporal_detail(status: &Status) -> Option<&'static str> {
    use prost::Message;
    const KNOWN: [&str; 3] = ["NamespaceNotFoundFailure", "NamespaceNotActiveFailure", "QueryFailedFailure"];
    let details = tonic_types::Status::decode(status.details()).ok()?;
    details.details.iter().find_map(|any| {
        let name = any.type_url.rsplit('/').next()?.strip_prefix("temporal.api.errordetails.v1.")?;
        KNOWN.into_iter().find(|k| *k == name)
    })
}

/// Whether retrying later may succeed: the database is out of reach, busy,
/// restarting or failing over. A constraint, a syntax error or a missing
/// table is a bug or a broken schema: no retry fixes it.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let postgres = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some();
            db.code().is_some_and(|code| transient_code(&code, postgres))
        }
        _ => false,
    }
}

/// Whether a database error code means "try again later". PostgreSQL's are
/// SQLSTATEs; SQLite's are numbers (the low byte is the primary code).
fn transient_code(code: &str, postgres: bool) -> bool {
    if !postgres {
        // BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN.
        return code.parse::<i32>().is_ok_and(|sqlite| matches!(sqlite & 0xff, 5 | 6 | 7 | 10 | 13 | 14));
    }
    // Classes: connection exception, insufficient resources, operator
    // intervention (shutdown, statement timeout), system error; then a
    // serialization failure, a deadlock, a lock not available, and a write on
    // a read-only server (a failover's old primary).
    matches!(code.get(..2), Some("08" | "53" | "57" | "58")) || matches!(code, "40001" | "40P01" | "55P03" | "25006")
}

/// The first non-empty application failure type in the cause chain.
fn first_failure_type(f: &Failure) -> Option<&str> {
    std::iter::successors(Some(f), |x| x.cause.as_deref())
        .filter_map(|x| x.maybe_application_failure())
        .map(|info| info.r#type.as_str())
        .find(|t| !t.is_empty())
}

/// The message of the deepest failure: the workflow's own words.
fn innermost_message(f: &Failure) -> String {
    std::iter::successors(Some(f), |x| x.cause.as_deref()).last().map(|x| x.message.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn load_and_outages_are_retryable_with_a_hint_never_internal() {
        let customer = CustomerId::parse("c").unwrap();
        let limit = Status::resource_exhausted("limit on number of concurrent in-flight updates has been reached");
        let down = Status::unavailable("connection refused");
        let run_limit = Status::invalid_argument("exceeded workflow execution limit for signal events");
        let task_failed = Status::failed_precondition(
            "Unable to perform workflow execution update due to unexpected workflow task failure.",
        );
        for (from_temporal, code) in [
            (limit, Code::ResourceExhausted),
            (down, Code::Unavailable),
            (run_limit, Code::ResourceExhausted),
            (task_failed, Code::Unavailable),
        ] {
            let status = Status::from(ApiError::from_rpc(&customer, &from_temporal));
            assert_eq!(status.code(), code, "{status:?}");
            let hint = status.get_details_retry_info().and_then(|r| r.retry_delay);
            assert_eq!(hint, Some(RETRY_DELAY), "{status:?}");
        }
        let timed_out = Status::from(ApiError::Ledger(LedgerError::TimedOut(std::time::Duration::from_secs(1))));
        assert_eq!(timed_out.get_details_retry_info().and_then(|r| r.retry_delay), Some(RETRY_DELAY));
    }

    fn with_temporal_detail(code: Code, message: &str, detail: &str) -> Status {
        use prost::Message;
        let details = tonic_types::Status {
            code: code as i32,
            message: message.into(),
            details: vec![prost_types::Any {
                type_url: format!("type.googleapis.com/temporal.api.errordetails.v1.{detail}"),
                value: vec![],
            }],
        };
        Status::with_details(code, message, details.encode_to_vec().into())
    }

    /// Every Temporal status our calls can meet, and what the caller gets.
    #[test]
    fn each_temporal_status_maps_to_what_the_caller_can_act_on() {
        let customer = CustomerId::parse("c").unwrap();
        let cases = [
            (Status::not_found("workflow not found for ID: loyalty-c"), Code::NotFound, "customer c not found"),
            (
                with_temporal_detail(Code::NotFound, "Namespace prod is not found.", "NamespaceNotFoundFailure"),
                Code::Unavailable,
                "cannot reach its Temporal namespace",
            ),
            (Status::not_found("workflow execution already completed"), Code::FailedPrecondition, "is closed"),
            (Status::unauthenticated("Request unauthorized."), Code::Unavailable, "cannot reach"),
            (Status::permission_denied("Request unauthorized."), Code::Unavailable, "cannot reach"),
            (Status::unimplemented("unknown method"), Code::Unavailable, "cannot reach"),
            (Status::failed_precondition("Workflow is not ready to handle the request."), Code::Unavailable, "retry"),
            (
                with_temporal_detail(Code::FailedPrecondition, "not active", "NamespaceNotActiveFailure"),
                Code::Unavailable,
                "failing over",
            ),
            (Status::aborted("update aborted"), Code::Unavailable, "account busy, retry"),
            (Status::invalid_argument("Blob data size exceeds limit."), Code::InvalidArgument, "too large"),
            (
                with_temporal_detail(Code::InvalidArgument, "query failed", "QueryFailedFailure"),
                Code::Internal,
                "internal error",
            ),
            (Status::invalid_argument("history size exceeds limit"), Code::Internal, "internal error"),
            (Status::internal("persistence failure"), Code::Unavailable, "Temporal failed, retry"),
            (Status::unknown("?"), Code::Unavailable, "Temporal failed, retry"),
            (Status::cancelled("h2 stream reset"), Code::Unavailable, "connection lost, retry"),
            (Status::deadline_exceeded("late"), Code::DeadlineExceeded, "late"),
            (Status::already_exists("x"), Code::Internal, "internal error"),
            (Status::out_of_range("x"), Code::Internal, "internal error"),
        ];
        for (from_temporal, code, words) in cases {
            let status = Status::from(ApiError::from_rpc(&customer, &from_temporal));
            assert_eq!(status.code(), code, "{from_temporal:?} became {status:?}");
            assert!(status.message().contains(words), "{from_temporal:?} became {status:?}");
            if code == Code::Unavailable {
                assert_eq!(status.get_details_retry_info().and_then(|r| r.retry_delay), Some(RETRY_DELAY));
            }
        }
    }

    #[test]
    fn database_codes_split_outages_from_bugs() {
        // PostgreSQL: connection lost, too many connections, admin shutdown,
        // cannot connect now, statement timeout, I/O, serialization, deadlock,
        // lock timeout, read-only (after a failover).
        for transient in ["08006", "53300", "57P01", "57P03", "57014", "58030", "40001", "40P01", "55P03", "25006"] {
            assert!(transient_code(transient, true), "{transient}");
        }
        // Unique and foreign-key violations, syntax error, undefined table, bad data.
        for bug in ["23505", "23503", "42601", "42P01", "22P02"] {
            assert!(!transient_code(bug, true), "{bug}");
        }
        // SQLite: BUSY, LOCKED, BUSY_SNAPSHOT (517), IOERR_WRITE (778), FULL; not CONSTRAINT_UNIQUE (2067) or ERROR.
        for (code, transient) in
            [("5", true), ("6", true), ("517", true), ("778", true), ("13", true), ("2067", false), ("1", false)]
        {
            assert_eq!(transient_code(code, false), transient, "{code}");
        }
    }

    #[tokio::test]
    async fn a_real_syntax_error_is_internal_and_an_unreachable_database_is_unavailable() {
        use sqlx::Connection;
        let mut db = sqlx::sqlite::SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let bug = sqlx::query("SELEC 1").execute(&mut db).await.unwrap_err();
        let status = Status::from(ApiError::Ledger(LedgerError::Database(bug)));
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        let down = sqlx::postgres::PgConnection::connect("postgres://nobody@127.0.0.1:1/none").await.unwrap_err();
        let status = Status::from(ApiError::Ledger(LedgerError::Database(down)));
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(status.get_details_retry_info().and_then(|r| r.retry_delay), Some(RETRY_DELAY));
    }
}
