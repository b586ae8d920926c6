//! How a decision is recorded: a numbered entry, dated no earlier than the
//! one before it, that moves the totals and the tier and is remembered in
//! the account's windows until the ledger holds it.

use super::answers::{RESULTS_WINDOW, trim};
use super::dedup::DEDUP_WINDOW;
use super::entry::{Entry, TierChange};
use super::holds::FINISHED_HOLDS_WINDOW;
use super::kind::EntryKind;
use super::lots::Draw;
use super::movement::{Effect, Movement, Original};
use super::rejection::Rejection;
use super::state::LoyaltyState;
use super::tier::Tier;
use super::time::Millis;

/// Whether `id` is one the account makes for its own entries (it contains
/// `/`, which the event id alphabet does not allow).
pub fn is_system_id(id: &str) -> bool {
    id.contains('/')
}

impl LoyaltyState {
    /// Appends a decided entry that took effect at `at` and moves the totals
    /// and the tier with it; returns its sequence number. An entry is never
    /// dated before the entry decided before it, so the account's entries
    /// and events are in time order as well as in sequence order.
    pub(super) fn record(&mut self, movement: Movement, effect: Effect, draws: Vec<Draw>, at: Millis) -> u64 {
        let at_ms = at.max(self.last_entry_at_ms);
        self.last_entry_at_ms = at_ms;
        let after = effect.apply(self.totals());
        self.points_balance = after.balance;
        self.lifetime_points = after.lifetime;
        let old_tier = self.tier;
        self.tier = Tier::for_lifetime(after.lifetime);
        self.seq += 1;
        let seq = self.seq;
        let tier_change = (self.tier != old_tier).then(|| TierChange {
            customer_id: self.customer_id.clone(),
            old_tier,
            new_tier: self.tier,
            lifetime_points: after.lifetime,
            caused_by: movement.event_id.clone(),
        });
        // The account's own entries (activations, expiries, holds) have ids no
        // caller can send: they need no place in the window.
        if !is_system_id(&movement.event_id) {
            // Every unwritten entry (this one included) stays in the window on top of it.
            let capacity = DEDUP_WINDOW + self.unprojected.len() + 1;
            self.processed_event_ids.remember_within(movement.event_id.clone(), capacity);
        }
        if movement.kind.is_reversible() {
            let original = Original { kind: movement.kind, requested: effect.requested, reversed: 0 };
            self.originals.put_new(&movement.event_id, original, seq);
        } else if let (EntryKind::Reversal, Some(id)) = (movement.kind, &movement.reverses)
            && let Some(mut original) = self.originals.get(id)
        {
            original.reversed += effect.requested;
            self.originals.put(id, original, seq);
        }
        debug_assert_eq!(
            self.points_balance,
            self.lots.active() - self.lots.debt,
            "the balance is what the lots hold after {movement:?}"
        );
        let (pending_after, held_after) = (self.lots.pending(), self.held_points());
        self.unprojected.push(Entry {
            seq,
            movement,
            effect,
            after,
            tier_change,
            draws,
            at_ms,
            pending_after,
            held_after,
            expires_at_ms: None,
            earned: None,
            returned: Vec::new(),
        });
        seq
    }

    /// A movement for an entry the account makes itself, named by the
    /// sequence number it is about to get.
    pub(super) fn own_movement(&self, kind: EntryKind, points: i64, reason: &str) -> Movement {
        Movement {
            event_id: format!("{}/{}", kind.as_str(), self.seq + 1),
            kind,
            points,
            reason: reason.into(),
            source: String::new(),
            reverses: None,
        }
    }

    /// A new event id of a redemption or correction, not answered from the
    /// answers windows: the caller read the ledger first (the lifelong
    /// guard), so an id still in the window is either another kind's
    /// (reused) or one whose answer the windows dropped (ask the ledger).
    pub(super) fn check_new_id(&self, event_id: &str) -> Result<(), Rejection> {
        if !self.processed_event_ids.contains(event_id) {
            return Ok(());
        }
        if self.unprojected.iter().any(|e| e.movement.event_id == event_id) {
            return Err(Rejection::EventIdReused(event_id.to_owned()));
        }
        Err(Rejection::Forgotten(event_id.to_owned()))
    }

    /// The ledger holds everything up to `seq`: answers it holds beyond the
    /// windows are dropped.
    pub(super) fn trim_answers(&mut self) {
        let projected = self.projected_seq;
        trim(&mut self.recent_redemptions, projected, RESULTS_WINDOW);
        trim(&mut self.recent_changes, projected, RESULTS_WINDOW);
        trim(&mut self.finished_holds, projected, FINISHED_HOLDS_WINDOW);
    }
}
