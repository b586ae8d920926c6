//! Why the account refuses a command, and why it ignores an accrual: the
//! failure types of the wire contract come from here.

use super::error::FieldError;
use super::holds::HoldStatus;
use super::movement::Refusal;

/// Failure type names carried to Temporal clients: the guide's three plus
/// ours. The workflow sets them and the gRPC layer reads them.
pub mod failure_type {
    /// A malformed request (the guide's).
    pub const VALIDATION_ERROR: &str = "ValidationError";
    /// Not enough points (the guide's).
    pub const INSUFFICIENT_POINTS: &str = "InsufficientPoints";
    /// A closed account (the guide's).
    pub const INACTIVE_ACCOUNT: &str = "InactiveAccount";
    /// An event id used before with different content.
    pub const EVENT_ID_REUSED: &str = "EventIdReused";
    /// The account needs the ledger to decide (an id or an original it
    /// keeps only there); retrying with the same event id is safe.
    pub const LEDGER_UNAVAILABLE: &str = "LedgerUnavailable";
    /// A reversal names an event the account does not have.
    pub const ORIGINAL_NOT_FOUND: &str = "OriginalNotFound";
    /// A reversal the original does not allow (kind or amount).
    pub const NOT_REVERSIBLE: &str = "NotReversible";
    /// A capture or release names a hold the account does not have.
    pub const HOLD_NOT_FOUND: &str = "HoldNotFound";
    /// A capture or release of a hold that has ended otherwise.
    pub const HOLD_NOT_OPEN: &str = "HoldNotOpen";
}

/// Why a command is refused; nothing changed. Each maps to a failure type
/// of the wire contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A malformed field.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// The account is closed.
    #[error("Cannot change points: account is inactive")]
    Inactive,
    /// Not enough points.
    #[error("Insufficient points: requested {requested}, available {available}")]
    Insufficient {
        /// Points asked for.
        requested: i64,
        /// Balance at the time.
        available: i64,
    },
    /// The event id was already used for a different event.
    #[error("event_id {0} was already used with different content")]
    EventIdReused(String),
    /// A correction the account's rules refuse.
    #[error("{0}")]
    Refused(Refusal),
    /// The account has used this event id, but no longer holds what it
    /// decided for it (the entry is in the ledger only) and the caller could
    /// not read the ledger: retrying once the ledger answers finds it there.
    #[error("event_id {0} was decided earlier and is in the ledger only; retry with the same event_id")]
    Forgotten(String),
    /// A reversal names an event the account no longer holds in memory, and
    /// the ledger's view of it (read by the caller) is missing or older than
    /// what the account has decided since: retrying reads it afresh.
    #[error("original_event_id {0} must be read from the ledger first; retry with the same event_id")]
    OriginalUnknown(String),
    /// No open or recently finished hold has this id.
    #[error("hold_id: no hold {0} on this account")]
    HoldNotFound(String),
    /// The account has as many open holds as it may.
    #[error("too many open holds (at most {0}): capture or release one first")]
    TooManyHolds(usize),
    /// The hold ended in another way (captured, released or expired).
    #[error("hold {hold_id} is {status:?}, not open")]
    HoldNotOpen {
        /// The hold.
        hold_id: String,
        /// How it ended.
        status: HoldStatus,
    },
}

impl Rejection {
    /// The Temporal failure type carried to clients.
    pub fn failure_type(&self) -> &'static str {
        match self {
            Rejection::Invalid(_) => failure_type::VALIDATION_ERROR,
            Rejection::Inactive => failure_type::INACTIVE_ACCOUNT,
            Rejection::Insufficient { .. } | Rejection::Refused(Refusal::Insufficient { .. }) => {
                failure_type::INSUFFICIENT_POINTS
            }
            Rejection::EventIdReused(_) => failure_type::EVENT_ID_REUSED,
            Rejection::Forgotten(_) | Rejection::OriginalUnknown(_) => failure_type::LEDGER_UNAVAILABLE,
            Rejection::Refused(Refusal::OriginalNotFound(_)) => failure_type::ORIGINAL_NOT_FOUND,
            Rejection::Refused(Refusal::NotReversible { .. } | Refusal::ExceedsOriginal { .. }) => {
                failure_type::NOT_REVERSIBLE
            }
            Rejection::HoldNotFound(_) => failure_type::HOLD_NOT_FOUND,
            Rejection::HoldNotOpen { .. } | Rejection::TooManyHolds(_) => failure_type::HOLD_NOT_OPEN,
        }
    }
}

/// Why an accrual is not applied. A signal has no caller to answer, so it
/// is logged, never carried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// A malformed signal from another client.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// The account decided this event id already.
    #[error("duplicate event_id")]
    Duplicate,
    /// The ledger holds this same event: a resend.
    #[error("already in the ledger; not applied again")]
    InLedger,
    /// The ledger holds another event under this id.
    #[error("event_id reused with other content; ignored")]
    ReusedInLedger,
}
