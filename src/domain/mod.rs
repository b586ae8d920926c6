//! Pure loyalty rules: identifiers, points, tiers, the dedup window, the
//! account's decisions and the entries they append, and how each ledger
//! entry moves the totals. No Temporal,
//! no tonic, no I/O and no clock: the workflow, the ledger and the gRPC layer
//! all call into this module, so every rule lives once.

pub mod account;
pub mod decide;
pub mod dedup;
pub mod entry;
pub mod error;
pub mod events;
pub mod holds;
pub mod ids;
pub mod legacy;
pub mod lifecycle;
pub mod lots;
pub mod messages;
pub mod movement;
pub mod points;
pub mod program;
pub mod text;
pub mod tier;

pub use account::Rejection;
pub use decide::{CorrectionPlan, VetReport};
pub use entry::{Entry, Known, LedgerView, ProjectionBatch, ProjectionReply};
pub use error::FieldError;
pub use holds::{CaptureRequest, HoldResult, HoldStatus, ReleaseRequest, ReserveRequest};
pub use ids::{CustomerId, EventId};
pub use legacy::{AccrualPlan, CommitReport, RedeemDecision, RedeemStep};
pub use lifecycle::Terms;
pub use lots::{Draw, Millis};
pub use messages::{
    AdjustmentRequest, BalanceChange, BatchOutcome, EntryKind, LedgerBatch, LoyaltyState, LoyaltySummary, Outcome,
    PointsEvent, Recorded, RedemptionRequest, RedemptionResult, ReversalRequest, TierChange,
};
pub use movement::{Effect, Movement, Refusal, StoredRequest, Totals};
pub use points::Points;
pub use text::BoundedText;
pub use tier::Tier;
