//! How each kind of ledger entry moves an account's balance and lifetime
//! points. The ledger applies these rules inside its write transaction, with
//! the facts it holds (running totals, the original of a reversal), so a rule
//! decides once, against durable data.
//!
//! The policy (README, "Reversals and adjustments"):
//! - An accrual adds its points to the balance and to lifetime points.
//! - A redemption spends points it can afford; lifetime points are unchanged.
//! - A reversal of an accrual (a refund) claws back at most what that accrual
//!   still holds. Lifetime points drop by the full amount (the purchase did
//!   not happen), so the tier may fall. The balance floors at zero: what could
//!   not be taken back is recorded as the entry's shortfall, not as debt.
//! - A reversal of a redemption or capture (a cancelled reward) returns at
//!   most the points it still holds; lifetime points are unchanged.
//! - Reversals, adjustments and expiries are not reversible themselves.
//! - An adjustment (a support correction) moves balance and lifetime points by
//!   the same signed amount; a deduction larger than the balance is refused,
//!   and lifetime points never fall below zero.

use serde::{Deserialize, Serialize};

use super::messages::EntryKind;

/// An account's running totals as the ledger holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Spendable points.
    pub balance: i64,
    /// Points ever earned, net of clawbacks and corrections.
    pub lifetime: i64,
}

/// One event the workflow asks the ledger to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    /// Idempotency key, unique per account across every kind.
    pub event_id: String,
    /// What the event is.
    pub kind: EntryKind,
    /// As requested: accrual and redemption a positive amount, adjustment a
    /// signed amount, reversal the amount to reverse or 0 for all that remains.
    pub points: i64,
    /// Reason, or the reward of a redemption.
    pub reason: String,
    /// Originating service, if any.
    pub source: String,
    /// The event a reversal undoes.
    #[serde(default)]
    pub reverses: Option<String>,
}

/// What a stored entry was asked to do, to compare a resent event with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    /// The entry's kind.
    pub kind: EntryKind,
    /// Its requested amount, a reversal's resolved to the amount it took.
    pub requested: i64,
    /// Its reason or reward.
    pub reason: String,
    /// Its source.
    pub source: String,
    /// The event it reverses.
    pub reverses: Option<String>,
}

impl Movement {
    /// About how many bytes this movement takes in JSON (its texts and a
    /// fixed allowance for the numbers and names): what bounds a write.
    pub fn approximate_size(&self) -> usize {
        const FIELDS: usize = 200;
        FIELDS
            + self.event_id.len()
            + self.reason.len()
            + self.source.len()
            + self.reverses.as_ref().map_or(0, String::len)
    }

    /// Whether a stored entry is this same event (a resend), rather than
    /// another event that reused the id. A reversal that asked for "all that
    /// remains" matches whatever amount that resolved to.
    pub fn same_as(&self, stored: &StoredRequest) -> bool {
        let amount_matches = match self.kind {
            EntryKind::Reversal if self.points == 0 => true,
            _ => self.points == stored.requested,
        };
        self.kind == stored.kind
            && amount_matches
            && self.reason == stored.reason
            && self.source == stored.source
            && self.reverses == stored.reverses
    }
}

/// The original entry of a reversal, as the ledger holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    /// Its kind.
    pub kind: EntryKind,
    /// The amount it moved as requested (an accrual's or redemption's points).
    pub requested: i64,
    /// How much earlier reversals already took back from it.
    pub reversed: i64,
}

/// How one entry changes the totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    /// The amount as resolved: a reversal's "all that remains" made concrete.
    pub requested: i64,
    /// Signed change of the balance.
    pub balance_delta: i64,
    /// Signed change of lifetime points.
    pub lifetime_delta: i64,
    /// Points a clawback could not take because the balance was too low.
    pub shortfall: i64,
}

impl Effect {
    /// The totals after this effect.
    pub fn apply(&self, totals: Totals) -> Totals {
        Totals {
            balance: totals.balance.saturating_add(self.balance_delta),
            lifetime: totals.lifetime.saturating_add(self.lifetime_delta),
        }
    }
}

/// Why the ledger refused an event. Nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// A redemption or deduction larger than the balance.
    #[error("Insufficient points: requested {requested}, available {available}")]
    Insufficient {
        /// Points asked for.
        requested: i64,
        /// Balance at the time.
        available: i64,
    },
    /// A reversal names an event the account does not have.
    #[error("original_event_id: no event {0} on this account")]
    OriginalNotFound(String),
    /// A reversal names an event that cannot be reversed.
    #[error("original_event_id: {kind} {event_id} cannot be reversed")]
    NotReversible {
        /// The original event.
        event_id: String,
        /// Its kind.
        kind: String,
    },
    /// A reversal asks for more than the original still holds.
    #[error("points: {requested} exceeds the {remaining} points event {event_id} still holds")]
    ExceedsOriginal {
        /// The original event.
        event_id: String,
        /// Points asked for.
        requested: i64,
        /// What is left to reverse.
        remaining: i64,
    },
}

/// Decides how `movement` changes `totals`. `original` is the entry a
/// reversal names, if the ledger has it.
pub fn effect(movement: &Movement, totals: Totals, original: Option<Original>) -> Result<Effect, Refusal> {
    let p = movement.points;
    match movement.kind {
        EntryKind::Accrual => Ok(Effect { requested: p, balance_delta: p, lifetime_delta: p, shortfall: 0 }),
        EntryKind::Redemption | EntryKind::Expiry | EntryKind::Hold => {
            if p > totals.balance {
                return Err(Refusal::Insufficient { requested: p, available: totals.balance });
            }
            Ok(Effect { requested: p, balance_delta: -p, lifetime_delta: 0, shortfall: 0 })
        }
        EntryKind::Adjustment => {
            if -p > totals.balance {
                return Err(Refusal::Insufficient { requested: -p, available: totals.balance });
            }
            Ok(Effect { requested: p, balance_delta: p, lifetime_delta: p.max(-totals.lifetime), shortfall: 0 })
        }
        EntryKind::Reversal => reversal(movement, totals, original),
        // Decided by the lots (`lifecycle`), never asked for by a caller.
        EntryKind::Activation => Ok(Effect { requested: p, balance_delta: p, lifetime_delta: p, shortfall: 0 }),
        EntryKind::Release => Ok(Effect { requested: p, balance_delta: p, lifetime_delta: 0, shortfall: 0 }),
        EntryKind::Capture | EntryKind::Expiring => {
            Ok(Effect { requested: p, balance_delta: 0, lifetime_delta: 0, shortfall: 0 })
        }
    }
}

fn reversal(movement: &Movement, totals: Totals, original: Option<Original>) -> Result<Effect, Refusal> {
    let original_id = movement.reverses.clone().unwrap_or_default();
    let Some(original) = original else {
        return Err(Refusal::OriginalNotFound(original_id));
    };
    if !matches!(original.kind, EntryKind::Accrual | EntryKind::Redemption | EntryKind::Capture) {
        return Err(Refusal::NotReversible { event_id: original_id, kind: original.kind.as_str().to_owned() });
    }
    let remaining = original.requested - original.reversed;
    let amount = if movement.points == 0 { remaining } else { movement.points };
    if amount > remaining || amount <= 0 {
        return Err(Refusal::ExceedsOriginal { event_id: original_id, requested: amount, remaining });
    }
    Ok(match original.kind {
        EntryKind::Accrual => {
            let taken = amount.min(totals.balance.max(0));
            Effect {
                requested: amount,
                balance_delta: -taken,
                lifetime_delta: -amount.min(totals.lifetime.max(0)),
                shortfall: amount - taken,
            }
        }
        _ => Effect { requested: amount, balance_delta: amount, lifetime_delta: 0, shortfall: 0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movement(kind: EntryKind, points: i64, reverses: Option<&str>) -> Movement {
        Movement {
            event_id: "e".into(),
            kind,
            points,
            reason: "r".into(),
            source: String::new(),
            reverses: reverses.map(str::to_owned),
        }
    }

    const T: Totals = Totals { balance: 300, lifetime: 1_200 };

    fn accrual_of(requested: i64, reversed: i64) -> Option<Original> {
        Some(Original { kind: EntryKind::Accrual, requested, reversed })
    }

    #[test]
    fn accruals_and_redemptions() {
        let e = effect(&movement(EntryKind::Accrual, 50, None), T, None).unwrap();
        assert_eq!(e.apply(T), Totals { balance: 350, lifetime: 1_250 });
        let e = effect(&movement(EntryKind::Redemption, 300, None), T, None).unwrap();
        assert_eq!(e.apply(T), Totals { balance: 0, lifetime: 1_200 });
        assert_eq!(
            effect(&movement(EntryKind::Redemption, 301, None), T, None),
            Err(Refusal::Insufficient { requested: 301, available: 300 })
        );
    }

    #[test]
    fn a_clawback_within_the_balance_takes_balance_and_lifetime() {
        let e = effect(&movement(EntryKind::Reversal, 200, Some("o")), T, accrual_of(500, 0)).unwrap();
        assert_eq!((e.balance_delta, e.lifetime_delta, e.shortfall), (-200, -200, 0));
    }

    #[test]
    fn a_clawback_beyond_the_balance_floors_at_zero_and_records_the_shortfall() {
        let e = effect(&movement(EntryKind::Reversal, 0, Some("o")), T, accrual_of(500, 0)).unwrap();
        assert_eq!((e.requested, e.balance_delta, e.lifetime_delta, e.shortfall), (500, -300, -500, 200));
        assert_eq!(e.apply(T), Totals { balance: 0, lifetime: 700 });
    }

    #[test]
    fn a_reversal_never_takes_more_than_the_original_still_holds() {
        let m = movement(EntryKind::Reversal, 301, Some("o"));
        assert_eq!(
            effect(&m, T, accrual_of(500, 200)),
            Err(Refusal::ExceedsOriginal { event_id: "o".into(), requested: 301, remaining: 300 })
        );
        // "All that remains" of a fully reversed accrual is nothing: refused.
        assert!(matches!(
            effect(&movement(EntryKind::Reversal, 0, Some("o")), T, accrual_of(500, 500)),
            Err(Refusal::ExceedsOriginal { remaining: 0, .. })
        ));
        assert_eq!(effect(&m, T, None), Err(Refusal::OriginalNotFound("o".into())), "an unknown original is refused");
    }

    #[test]
    fn a_cancelled_redemption_returns_its_points_but_not_lifetime() {
        let original = Some(Original { kind: EntryKind::Redemption, requested: 100, reversed: 0 });
        let e = effect(&movement(EntryKind::Reversal, 0, Some("o")), T, original).unwrap();
        assert_eq!((e.balance_delta, e.lifetime_delta, e.shortfall), (100, 0, 0));
    }

    #[test]
    fn reversals_and_adjustments_are_not_reversible() {
        for kind in [EntryKind::Reversal, EntryKind::Adjustment, EntryKind::Expiry] {
            let original = Some(Original { kind, requested: 10, reversed: 0 });
            assert!(matches!(
                effect(&movement(EntryKind::Reversal, 0, Some("o")), T, original),
                Err(Refusal::NotReversible { .. })
            ));
        }
    }

    #[test]
    fn adjustments_move_balance_and_lifetime_together() {
        let up = effect(&movement(EntryKind::Adjustment, 40, None), T, None).unwrap();
        assert_eq!(up.apply(T), Totals { balance: 340, lifetime: 1_240 });
        let down = effect(&movement(EntryKind::Adjustment, -300, None), T, None).unwrap();
        assert_eq!(down.apply(T), Totals { balance: 0, lifetime: 900 });
        assert_eq!(
            effect(&movement(EntryKind::Adjustment, -301, None), T, None),
            Err(Refusal::Insufficient { requested: 301, available: 300 })
        );
        let low = Totals { balance: 50, lifetime: 20 };
        let e = effect(&movement(EntryKind::Adjustment, -50, None), low, None).unwrap();
        assert_eq!(e.apply(low), Totals { balance: 0, lifetime: 0 }, "lifetime never falls below zero");
    }

    #[test]
    fn a_resend_is_told_from_a_reused_id() {
        let m = movement(EntryKind::Accrual, 50, None);
        let stored = StoredRequest {
            kind: EntryKind::Accrual,
            requested: 50,
            reason: "r".into(),
            source: String::new(),
            reverses: None,
        };
        assert!(m.same_as(&stored));
        assert!(!m.same_as(&StoredRequest { requested: 51, ..stored.clone() }));
        assert!(!m.same_as(&StoredRequest { kind: EntryKind::Redemption, ..stored.clone() }));
        let all = movement(EntryKind::Reversal, 0, Some("o"));
        let resolved =
            StoredRequest { kind: EntryKind::Reversal, requested: 120, reverses: Some("o".into()), ..stored };
        assert!(all.same_as(&resolved), "a reversal of all that remains matches its resolved amount");
    }
}
