//! Every error the API can return, mapped to a gRPC status in one place.

use temporalio_client::errors::{
    WorkflowInteractionError, WorkflowQueryError, WorkflowStartError, WorkflowUpdateError,
};
use temporalio_common::protos::temporal::api::failure::v1::Failure;
use tonic::{Code, Status};

use crate::domain::account::failure_type;
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
    /// Classifies a raw Temporal RPC status.
    pub fn from_rpc(customer: &CustomerId, status: &Status) -> Self {
        match status.code() {
            Code::NotFound => ApiError::NotFound(customer.clone()),
            Code::Unavailable => ApiError::Unavailable(format!("Temporal unavailable: {}", status.message())),
            // Temporal's per-workflow limits (updates in flight, ...) and rate limits.
            Code::ResourceExhausted => ApiError::Busy(format!("Temporal busy, retry: {}", status.message())),
            Code::DeadlineExceeded => ApiError::DeadlineExceeded(format!("Temporal: {}", status.message())),
            // A run's signal or update limit: the account continues-as-new
            // (or catches up with its ledger) and takes them again.
            _ if status.message().contains("exceeded workflow execution limit") => {
                ApiError::Busy(format!("account busy, retry: {}", status.message()))
            }
            // The workflow task that held the update did not complete (the
            // worker lost it, or a continue-as-new raced new signals): the
            // update was not applied and a retry is decided afresh.
            Code::FailedPrecondition if status.message().contains("unexpected workflow task failure") => {
                ApiError::Unavailable(format!("account busy, retry: {}", status.message()))
            }
            _ => ApiError::Internal(format!("Temporal: {status}")),
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
            WorkflowQueryError::NotFound(_) => ApiError::NotFound(customer.clone()),
            WorkflowQueryError::Rpc(s) => Self::from_rpc(customer, &s),
            other => ApiError::Internal(other.to_string()),
        }
    }

    /// Classifies a failed describe.
    pub fn from_interaction(customer: &CustomerId, e: WorkflowInteractionError) -> Self {
        match e {
            WorkflowInteractionError::NotFound(_) => ApiError::NotFound(customer.clone()),
            WorkflowInteractionError::Rpc(s) => Self::from_rpc(customer, &s),
            other => ApiError::Internal(other.to_string()),
        }
    }

    /// Classifies a failed update by the failure type the workflow set.
    pub fn from_update(customer: &CustomerId, e: WorkflowUpdateError) -> Self {
        match e {
            WorkflowUpdateError::NotFound(_) => ApiError::NotFound(customer.clone()),
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

/// Whether retrying later may succeed: the database is out of reach or busy.
fn is_transient(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::Database(_)
            | sqlx::Error::WorkerCrashed
    )
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
}
