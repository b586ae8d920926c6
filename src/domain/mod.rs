//! Pure loyalty rules: identifiers, points, tiers, the dedup window and the
//! account commands. No Temporal, no tonic, no I/O and no clock: the workflow
//! and the gRPC layer both call into this module, so every rule lives once.

pub mod account;
pub mod dedup;
pub mod error;
pub mod ids;
pub mod messages;
pub mod points;
pub mod text;
pub mod tier;

pub use account::{AccrualPlan, RedeemDecision, RedeemRejection, RedeemStep};
pub use error::FieldError;
pub use ids::{CustomerId, EventId};
pub use messages::{LedgerEntry, LoyaltyState, LoyaltySummary, PointsEvent, RedemptionRequest, RedemptionResult};
pub use points::Points;
pub use text::BoundedText;
pub use tier::Tier;
