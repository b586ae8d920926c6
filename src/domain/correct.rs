//! Reversals and adjustments, decided by the account from what it holds
//! (and, for an old original, from the ledger's view the gRPC layer read).
//!
//! The policy (README, "Reversals and adjustments"):
//! - A reversal of an accrual (a refund) claws back at most what that accrual
//!   still holds, its own lot first. Lifetime points drop by the full amount
//!   (the purchase did not happen), so the tier may fall. Beyond the balance
//!   it records a shortfall, or takes the balance below zero when the
//!   program allows it.
//! - A reversal of a redemption or capture (a cancelled reward) returns at
//!   most the points it still holds, as a new lot; lifetime points are unchanged.
//! - Reversals, adjustments, expiries and the account's own entries are not
//!   reversible themselves.
//! - An adjustment (a support correction) moves balance and lifetime points by
//!   the same signed amount; a deduction larger than the balance is refused,
//!   and lifetime points never fall below zero.

use super::answers::ChangeRecord;
use super::corrections::{BalanceChange, Terms};
use super::kind::EntryKind;
use super::lots::{Draw, Lot};
use super::movement::{Effect, Movement, Original, Refusal, Totals};
use super::originals::LedgerView;
use super::rejection::Rejection;
use super::state::LoyaltyState;
use super::time::Millis;

/// How a correction is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorrectionPlan {
    /// A resend: the original answer.
    Replay(BalanceChange),
    /// New: this effect (and, for a reversal, the original it acts on).
    Apply(Effect, Option<Original>),
}

impl LoyaltyState {
    /// Decides a reversal or adjustment without changing anything. `view`
    /// is the ledger's view of a reversal's original, if the caller read it.
    pub fn plan_correction(&self, m: &Movement, view: Option<&LedgerView>) -> Result<CorrectionPlan, Rejection> {
        if let Some(done) = self.recent_changes.iter().find(|r| r.movement.event_id == m.event_id) {
            return if done.movement == *m {
                Ok(CorrectionPlan::Replay(done.result.clone()))
            } else {
                Err(Rejection::EventIdReused(m.event_id.clone()))
            };
        }
        self.check_new_id(&m.event_id)?;
        if !self.is_active {
            return Err(Rejection::Inactive);
        }
        let original = match &m.reverses {
            Some(id) => match self.originals.resolve(id, view) {
                Some(original) => original,
                None => Some(self.correction_in_memory(id).ok_or_else(|| Rejection::OriginalUnknown(id.clone()))?),
            },
            None => None,
        };
        let e = effect(m, self.totals(), original).map_err(Rejection::Refused)?;
        Ok(CorrectionPlan::Apply(e, original))
    }

    /// Decides and applies a reversal or adjustment at `now`, moving points
    /// between lots as `terms` say.
    pub(super) fn correct(
        &mut self,
        m: &Movement,
        view: Option<&LedgerView>,
        terms: Terms,
        now: Millis,
    ) -> Result<BalanceChange, Rejection> {
        let (effect, original) = match self.plan_correction(m, view)? {
            CorrectionPlan::Replay(change) => return Ok(change),
            CorrectionPlan::Apply(effect, original) => (effect, original),
        };
        if let (Some(id), Some(original)) = (&m.reverses, original) {
            // A reversal of an original read from the ledger is tracked from now on.
            if self.originals.get(id).is_none() {
                self.originals.put(id, original, self.seq);
            }
        }
        let (effect, draws) = self.move_lots(m, effect, original, terms, now);
        let seq = self.record(m.clone(), effect, draws, now);
        let result = BalanceChange {
            balance_delta: effect.balance_delta,
            lifetime_delta: effect.lifetime_delta,
            shortfall: effect.shortfall,
            balance_after: self.points_balance,
            points_balance: self.points_balance,
            lifetime_points: self.lifetime_points,
            tier: self.tier,
        };
        self.recent_changes.push(ChangeRecord { movement: m.clone(), result: result.clone(), seq });
        Ok(result)
    }

    /// Which lots a correction takes from or adds to, and its final effect.
    /// A clawback takes the accrual's own lot first (pending or active),
    /// then the soonest-expiring others; beyond the balance it records a
    /// shortfall or, when allowed, takes the balance below zero. Points given
    /// back (a cancelled redemption, a positive adjustment) are a new lot.
    fn move_lots(
        &mut self,
        m: &Movement,
        effect: Effect,
        original: Option<Original>,
        terms: Terms,
        now: Millis,
    ) -> (Effect, Vec<Draw>) {
        match (m.kind, original) {
            (EntryKind::Reversal, Some(o)) if o.kind == EntryKind::Accrual => {
                let own = m.reverses.as_deref().unwrap_or_default();
                let amount = effect.requested;
                let from_pending = self.lots.take_pending(own, amount);
                let rest = amount - from_pending;
                let available = self.points_balance.max(0).min(rest);
                let mut draws = Vec::new();
                if from_pending > 0 {
                    draws.push(Draw { lot: own.to_owned(), points: from_pending });
                }
                draws.extend(self.lots.spend(available, Some(own)));
                let beyond = rest - available;
                let owed = if terms.allow_negative { beyond } else { 0 };
                self.lots.owe(owed);
                let effect = Effect {
                    requested: amount,
                    balance_delta: -(available + owed),
                    lifetime_delta: -rest.min(self.lifetime_points.max(0)),
                    shortfall: beyond - owed,
                };
                (effect, draws)
            }
            _ if effect.balance_delta > 0 => {
                self.lots.add(Lot {
                    id: m.event_id.clone(),
                    remaining: effect.balance_delta,
                    earned_at_ms: now,
                    pending_until_ms: None,
                    expires_at_ms: terms.expires_at_ms,
                });
                (effect, Vec::new())
            }
            _ => {
                let draws = self.lots.spend(-effect.balance_delta, None);
                (effect, draws)
            }
        }
    }

    /// A reversal or adjustment the account still holds in memory, as an
    /// original: a reversal naming it is refused as not reversible without
    /// asking the ledger.
    fn correction_in_memory(&self, event_id: &str) -> Option<Original> {
        let kind =
            self.recent_changes.iter().find(|r| r.movement.event_id == event_id).map(|r| r.movement.kind).or_else(
                || self.unprojected.iter().find(|e| e.movement.event_id == event_id).map(|e| e.movement.kind),
            )?;
        (!kind.is_reversible()).then_some(Original { kind, requested: 0, reversed: 0 })
    }
}

/// How a reversal or adjustment changes `totals`; `original` is the entry a
/// reversal names, if the account or the ledger has it.
fn effect(movement: &Movement, totals: Totals, original: Option<Original>) -> Result<Effect, Refusal> {
    let p = movement.points;
    if movement.kind != EntryKind::Reversal {
        if -p > totals.balance {
            return Err(Refusal::Insufficient { requested: -p, available: totals.balance });
        }
        return Ok(Effect { requested: p, balance_delta: p, lifetime_delta: p.max(-totals.lifetime), shortfall: 0 });
    }
    let original_id = movement.reverses.clone().unwrap_or_default();
    let Some(original) = original else {
        return Err(Refusal::OriginalNotFound(original_id));
    };
    if !original.kind.is_reversible() {
        return Err(Refusal::NotReversible { event_id: original_id, kind: original.kind.as_str().to_owned() });
    }
    let remaining = original.requested - original.reversed;
    let amount = if p == 0 { remaining } else { p };
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
        _ => Effect::balance(amount, amount),
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
    fn a_clawback_takes_balance_and_lifetime_and_beyond_the_balance_records_the_shortfall() {
        let e = effect(&movement(EntryKind::Reversal, 200, Some("o")), T, accrual_of(500, 0)).unwrap();
        assert_eq!((e.balance_delta, e.lifetime_delta, e.shortfall), (-200, -200, 0));
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
    fn only_what_was_earned_or_spent_is_reversible() {
        for kind in EntryKind::ALL.into_iter().filter(|k| !k.is_reversible()) {
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
}
