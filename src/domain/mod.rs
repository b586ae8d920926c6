//! Pure loyalty rules: no Temporal, no tonic, no I/O and no clock. The
//! workflow, the ledger and the gRPC layer all call into this module, so
//! every rule lives once.
//!
//! The map, leaves first (each module uses only those above it):
//! - values parsed once: `error` (the field that failed), `ids`, `points`,
//!   `text`, `time`, `tier`, `kind` (entry kinds), `program` (the
//!   program's settings and an accrual's dates);
//! - what entries are made of: `movement` (what was asked, its effect),
//!   `lots` (where points came from; `compaction` keeps them few), `entry` (a decided, numbered change),
//!   `originals`, `dedup`;
//! - the wire types: `messages` (the reference guide's), `corrections`
//!   and `holds` (ours), `answers` (kept for resends), `rejection` (failure
//!   types);
//! - earning rules: `earning` (rule sets, orders, the evaluation), and
//!   `orders` (an order's evaluation pinned on an accrual, settled by the
//!   account);
//! - the account: `state` (what Temporal carries), `upgrade` (a carried
//!   state brought to this version at init), `command` (**the one `apply`**),
//!   and what it calls: `record`, `accrue`, `redeem`, `correct`,
//!   `checkout`, `due`; then `projection` (the fenced writes to the
//!   ledger) and `events` (what the ledger tells webhooks).

pub mod accrue;
pub mod answers;
pub mod checkout;
pub mod command;
pub mod compaction;
pub mod correct;
pub mod corrections;
pub mod dedup;
pub mod due;
pub mod earning;
pub mod entry;
pub mod error;
pub mod events;
pub mod holds;
pub mod ids;
pub mod kind;
pub mod lots;
pub mod messages;
pub mod movement;
pub mod orders;
pub mod originals;
pub mod points;
pub mod program;
pub mod projection;
pub mod record;
pub mod redeem;
pub mod rejection;
pub mod state;
pub mod text;
pub mod tier;
pub mod time;
pub mod upgrade;

pub use command::{Command, Reply};
pub use corrections::{AdjustmentRequest, BalanceChange, ReversalRequest, Terms};
pub use entry::{Entry, TierChange};
pub use error::FieldError;
pub use holds::{CaptureRequest, HoldResult, HoldStatus, ReleaseRequest, ReserveRequest};
pub use ids::{CustomerId, EventId};
pub use kind::EntryKind;
pub use lots::Draw;
pub use messages::{LoyaltySummary, PointsEvent, RedemptionRequest, RedemptionResult};
pub use movement::{Effect, Movement, Original, Refusal, StoredRequest, Totals};
pub use originals::LedgerView;
pub use points::Points;
pub use projection::{Known, ProjectionBatch, ProjectionReply};
pub use rejection::{Ignored, Rejection};
pub use state::LoyaltyState;
pub use text::BoundedText;
pub use tier::Tier;
pub use time::Millis;
