//! The wire contract with Temporal: JSON shapes shared with any client or
//! worker written from the reference guide. Field names must not change;
//! new fields need `#[serde(default)]` so older payloads still decode.

use serde::{Deserialize, Serialize};

use super::dedup::RecentIds;
use super::entry::{ChangeRecord, Entry, LedgerView, Originals};
use super::holds::{Hold, HoldRecord};
use super::lots::{Lots, Millis};
use super::movement::{Effect, Movement, Refusal, Totals};
use super::tier::Tier;

/// Payload of the `add_points` signal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsEvent {
    /// Idempotency key.
    pub event_id: String,
    /// Points to credit; the workflow ignores events outside 1..=1e9.
    pub points: i64,
    /// Why the points were earned.
    #[serde(default)]
    pub reason: String,
    /// Originating service or channel.
    #[serde(default)]
    pub source: String,
    /// Set by our gRPC layer when it found the event id absent from the
    /// ledger just before signalling: the account may decide the accrual at
    /// once. Signals without it (other clients, or a ledger that did not
    /// answer) are checked against the ledger first, so an event id is
    /// never applied twice however old.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ledger_checked: bool,
    /// When the points become spendable (Unix ms); absent or past: at once.
    /// Our gRPC layer sets it from the program's pending period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_from_ms: Option<Millis>,
    /// When the lot's remaining points expire (Unix ms); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<Millis>,
    /// The program's inactivity rule, set on the account by each accrual
    /// that carries it: the whole balance expires after this long without
    /// an accrual or a spend (0: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_inactive_after_ms: Option<Millis>,
    /// The program's warning period, set by the gRPC layer on the accrual
    /// that carries it: points expiring within it are announced (0: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_warning_ms: Option<Millis>,
}

/// Input of the `redeem_points` update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionRequest {
    /// Idempotency key.
    pub event_id: String,
    /// Points to spend.
    pub points: i64,
    /// What the points buy.
    #[serde(default)]
    pub reward: String,
}

/// Output of the `redeem_points` update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionResult {
    /// Points spent.
    pub redeemed: i64,
    /// Balance right after this redemption.
    pub remaining_balance: i64,
    /// What the points bought.
    pub reward: String,
}

/// Output of the `get_loyalty_summary` query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoyaltySummary {
    /// The customer.
    pub customer_id: String,
    /// Spendable points.
    pub points_balance: i64,
    /// Points ever earned; drives the tier.
    pub lifetime_points: i64,
    /// Current tier.
    pub tier: Tier,
    /// False once the account is closed.
    pub is_active: bool,
    /// Acknowledged accruals not applied yet: received without a ledger check
    /// and waiting for it (zero while the ledger answers).
    #[serde(default)]
    pub unapplied_points: i64,
    /// Sequence number of the account's newest decided entry.
    #[serde(default)]
    pub decided_seq: u64,
    /// Newest entry the ledger holds (entries decided but not written yet are
    /// `decided_seq - projected_seq`).
    #[serde(default)]
    pub projected_seq: u64,
    /// Why the account stopped writing to the ledger, when the ledger's
    /// sequence does not match its own (a lost or restored database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_held: Option<String>,
    /// Points earned but not spendable yet (and not counted for the tier).
    #[serde(default)]
    pub pending_points: i64,
    /// Points set aside by open holds (not spendable).
    #[serde(default)]
    pub held_points: i64,
    /// The next time points expire (Unix ms), if any will.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_expiry_at_ms: Option<Millis>,
    /// How many points expire then.
    #[serde(default)]
    pub next_expiry_points: i64,
    /// Points expiring within 30 days of `as_of_ms`.
    #[serde(default)]
    pub expiring_soon_points: i64,
    /// The account's clock when it last changed or woke (at most a day old).
    #[serde(default)]
    pub as_of_ms: Millis,
}

/// A redemption the account remembers, so a retry returns the original
/// result and a reused id with other content is told apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionRecord {
    /// The request as first applied.
    pub request: RedemptionRequest,
    /// Its result.
    pub result: RedemptionResult,
    /// The entry that recorded it (0 from the previous version); kept at
    /// least until the ledger holds that entry.
    #[serde(default)]
    pub seq: u64,
}

/// The workflow input after continue-as-new (`null` for a new account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoyaltyState {
    /// The customer.
    pub customer_id: String,
    /// Spendable points.
    #[serde(default)]
    pub points_balance: i64,
    /// Points ever earned.
    #[serde(default)]
    pub lifetime_points: i64,
    /// Current tier.
    #[serde(default)]
    pub tier: Tier,
    /// False once the account is closed.
    #[serde(default = "active")]
    pub is_active: bool,
    /// Recent event ids (accruals and redemptions), oldest first.
    #[serde(default)]
    pub processed_event_ids: RecentIds,
    /// Accruals received but not yet applied, in arrival order.
    #[serde(default)]
    pub pending_events: Vec<PointsEvent>,
    /// Recent redemptions with their results (same window as the ids).
    #[serde(default)]
    pub recent_redemptions: Vec<RedemptionRecord>,
    /// Written by the previous version only: redemptions it gave back after
    /// their ledger write failed, whose rows the ledger must drop. Newer runs
    /// keep such redemptions `in_doubt` instead and never delete rows.
    #[serde(default)]
    pub pending_voids: Vec<String>,
    /// Redemptions whose ledger write has an unknown outcome.
    #[serde(default)]
    pub in_doubt: Vec<InDoubtRedemption>,
    /// Sequence number of the newest decided entry; the ledger applies
    /// entries only in this order.
    #[serde(default)]
    pub seq: u64,
    /// Newest entry the ledger confirmed holding.
    #[serde(default)]
    pub projected_seq: u64,
    /// Decided entries the ledger does not hold yet, oldest first
    /// (`projected_seq + 1 ..= seq`).
    #[serde(default)]
    pub unprojected: Vec<Entry>,
    /// Recent accruals and redemptions a reversal may name.
    #[serde(default)]
    pub originals: Originals,
    /// Recent reversals and adjustments with their results, so a resend is
    /// answered with the original result.
    #[serde(default)]
    pub recent_changes: Vec<ChangeRecord>,
    /// The one-writer core runs this account: false in a state the previous
    /// version carried over, until the account takes the ledger's totals
    /// once (that version's ledger decided them).
    #[serde(default)]
    pub handed_over: bool,
    /// The account's lots: where its points came from and when they expire.
    #[serde(default)]
    pub lots: Lots,
    /// False in a state carried from before lots existed: its balance
    /// becomes one never-expiring lot when the run starts.
    #[serde(default)]
    pub lots_tracked: bool,
    /// Open holds, oldest first.
    #[serde(default)]
    pub holds: Vec<Hold>,
    /// Recently finished holds, so a resent Reserve, Capture or Release gets
    /// the original answer.
    #[serde(default)]
    pub finished_holds: Vec<HoldRecord>,
    /// The workflow's clock at the account's newest decision or wake.
    #[serde(default)]
    pub clock_ms: Millis,
    /// When the account last earned or spent points (inactivity expiry).
    #[serde(default)]
    pub last_activity_ms: Millis,
    /// Inactivity expiry: the balance expires after this long without
    /// activity (0: never).
    #[serde(default)]
    pub expire_inactive_after_ms: Millis,
    /// How long before points expire they are announced (an `expiring`
    /// entry and a `points.expiring` event); 0: never.
    #[serde(default, skip_serializing_if = "is_zero_ms")]
    pub expiry_warning_ms: Millis,
    /// Active points expiring at or before this time were announced.
    #[serde(default, skip_serializing_if = "is_zero_ms")]
    pub warned_until_ms: Millis,
    /// Whether this run announces expiries: runs recorded before the
    /// `expiry-warnings` marker never do (set by the workflow at run start).
    #[serde(skip)]
    pub expiry_warnings: bool,
    /// Nothing is due before this time (`None`: not known; look). Kept so
    /// an accrual does not walk every lot; not carried, it is recomputed.
    #[serde(skip)]
    pub due_hint: Option<Millis>,
}

fn active() -> bool {
    true
}

fn is_zero_ms(v: &Millis) -> bool {
    *v == 0
}

/// What kind of change a ledger row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Points earned.
    Accrual,
    /// Points spent.
    Redemption,
    /// An accrual clawed back or a redemption cancelled.
    Reversal,
    /// A support correction.
    Adjustment,
    /// Points that expired (a lot's date, or inactivity).
    Expiry,
    /// Pending points became spendable.
    Activation,
    /// Points set aside at checkout.
    Hold,
    /// Held points spent (the rest of the hold given back).
    Capture,
    /// Held points given back (released, or the hold expired).
    Release,
    /// Points about to expire were announced; moves nothing.
    Expiring,
}

impl EntryKind {
    /// Every kind, in declaration order.
    pub const ALL: [EntryKind; 10] = [
        EntryKind::Accrual,
        EntryKind::Redemption,
        EntryKind::Reversal,
        EntryKind::Adjustment,
        EntryKind::Expiry,
        EntryKind::Activation,
        EntryKind::Hold,
        EntryKind::Capture,
        EntryKind::Release,
        EntryKind::Expiring,
    ];

    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Accrual => "accrual",
            EntryKind::Redemption => "redemption",
            EntryKind::Reversal => "reversal",
            EntryKind::Adjustment => "adjustment",
            EntryKind::Expiry => "expiry",
            EntryKind::Activation => "activation",
            EntryKind::Hold => "hold",
            EntryKind::Capture => "capture",
            EntryKind::Release => "release",
            EntryKind::Expiring => "expiring",
        }
    }

    /// The kind stored under `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// Input of the `reverse_points` update (ours; not in the reference guide).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReversalRequest {
    /// Idempotency key of the reversal itself.
    pub event_id: String,
    /// The accrual or redemption to reverse.
    pub original_event_id: String,
    /// Points to reverse; absent for all that the original still holds.
    #[serde(default)]
    pub points: Option<i64>,
    /// Why (a refund, a cancelled order).
    #[serde(default)]
    pub reason: String,
    /// The original as the ledger held it when the gRPC layer read it, for
    /// an original older than the account keeps in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerView>,
    /// A clawback beyond the balance takes the balance below zero (the
    /// program's `allow_negative`) instead of recording a shortfall.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_negative: bool,
    /// When points a cancelled redemption returns expire (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<Millis>,
}

/// Input of the `adjust_points` update (ours; not in the reference guide).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentRequest {
    /// Idempotency key.
    pub event_id: String,
    /// Signed correction.
    pub points: i64,
    /// Why; required, it is the audit trail.
    pub reason: String,
    /// When points a positive adjustment adds expire (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<Millis>,
}

/// Output of `reverse_points` and `adjust_points`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceChange {
    /// Signed change of the balance.
    pub balance_delta: i64,
    /// Signed change of lifetime points.
    pub lifetime_delta: i64,
    /// Points a clawback could not take (the balance floors at zero).
    pub shortfall: i64,
    /// Balance right after the change.
    pub balance_after: i64,
    /// The account's balance now.
    pub points_balance: i64,
    /// The account's lifetime points now.
    pub lifetime_points: i64,
    /// The account's tier now.
    pub tier: Tier,
}

/// Input of every ledger write: events of one account, recorded in order in
/// one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerBatch {
    /// The account.
    pub customer_id: String,
    /// Names this write. Fixed by the workflow before the activity runs, so
    /// every attempt of the write carries it and the ledger can tell its own
    /// earlier rows (a retry) from an older event's (a duplicate).
    pub write_id: String,
    /// The events, in order.
    pub movements: Vec<Movement>,
}

/// What the ledger recorded for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// How the event moved the totals.
    pub effect: Effect,
    /// Balance right after the entry.
    pub balance_after: i64,
}

/// What happened to one event of a [`LedgerBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Recorded now.
    Applied(Recorded),
    /// Recorded by an earlier attempt of this same write (an activity retry).
    Recovered(Recorded),
    /// Recorded long ago by another write: this is a resend, not applied again.
    Duplicate(Recorded),
    /// The id was used before for a different event; nothing recorded.
    Conflict,
    /// A rule refused the event; nothing recorded.
    Refused(Refusal),
}

impl Outcome {
    /// The outcome's name, as metrics and logs show it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Applied(_) => "applied",
            Outcome::Recovered(_) => "recovered",
            Outcome::Duplicate(_) => "duplicate",
            Outcome::Conflict => "conflict",
            Outcome::Refused(_) => "refused",
        }
    }

    /// The entry the ledger holds for this event, whoever wrote it.
    pub fn recorded(&self) -> Option<Recorded> {
        match self {
            Outcome::Applied(r) | Outcome::Recovered(r) | Outcome::Duplicate(r) => Some(*r),
            Outcome::Conflict | Outcome::Refused(_) => None,
        }
    }
}

/// The ledger's answer to a [`LedgerBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOutcome {
    /// One outcome per movement, in order.
    pub outcomes: Vec<Outcome>,
    /// The account's totals after the write: the workflow adopts them.
    pub totals: Totals,
}

/// A redemption whose ledger write failed after its retries, so whether its
/// row landed is unknown. Its points stay reserved until the run loop asks
/// the ledger, then it is confirmed or released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InDoubtRedemption {
    /// The request.
    pub request: RedemptionRequest,
    /// The failed write's id.
    pub write_id: String,
}

/// A tier change to announce (the `send_tier_change_notification` input).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierChange {
    /// The customer.
    pub customer_id: String,
    /// Tier before.
    pub old_tier: Tier,
    /// Tier after.
    pub new_tier: Tier,
    /// Lifetime points after the change.
    pub lifetime_points: i64,
    /// The ledger write that caused it; with the customer, tier and lifetime
    /// points, the notification's idempotency key.
    #[serde(default)]
    pub caused_by: String,
}
