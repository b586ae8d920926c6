//! The pure upgrade at init: the state a run starts from, whatever carried
//! it. A state this build's rules wrote (`version` 1) is taken as it is. A
//! state another worker made (the reference guide's continuing-as-new onto
//! ours) is trusted as the record of its decisions: it keeps its balance,
//! lifetime points, tier, recent ids and queued accruals; its balance
//! becomes one never-expiring lot, and its totals an `opening` entry, so
//! the ledger adds up to the account (the write is fenced like any other).

use super::kind::EntryKind;
use super::lots::{CARRIED_LOT, Draw, Lot};
use super::movement::{Effect, Totals};
use super::state::{LoyaltyState, STATE_VERSION};
use super::time::Millis;

impl LoyaltyState {
    /// The account a run of `customer_id` starts with at `started_at`: a new
    /// one, or the carried state brought to this version.
    pub fn upgrade(input: Option<LoyaltyState>, customer_id: &str, started_at: Millis) -> Self {
        let Some(mut state) = input else { return Self::open(customer_id) };
        // The workflow id names the account, whoever wrote the state.
        customer_id.clone_into(&mut state.customer_id);
        if state.version == 0 {
            state.take_in_foreign(started_at);
        }
        // Version 1 (1.0 to 1.3) lacks only `campaign_usage`, which defaults
        // to none: no capped campaign has given this customer anything yet.
        state.version = STATE_VERSION;
        state
    }

    /// Takes in a state another worker made. Its queued accruals are
    /// trusted but checked: one this service would refuse (negative points,
    /// a bad id, over-long text) is dropped, as such a signal would be.
    fn take_in_foreign(&mut self, at: Millis) {
        self.pending_events.retain(|e| e.validate().is_ok());
        self.clock_ms = self.clock_ms.max(at);
        self.last_activity_ms = self.last_activity_ms.max(at);
        let untracked = self.points_balance - (self.lots.active() - self.lots.debt);
        if untracked > 0 {
            self.lots.add(Lot {
                id: CARRIED_LOT.into(),
                remaining: untracked,
                earned_at_ms: at,
                pending_until_ms: None,
                expires_at_ms: None,
            });
        } else if untracked < 0 {
            // The other worker let the balance go below zero: later points pay it first.
            self.lots.owe(-untracked);
        }
        let totals = self.totals();
        if self.seq > 0 || totals == Totals::default() {
            return;
        }
        // The entry adds the carried totals to an empty ledger, as they are.
        (self.points_balance, self.lifetime_points) = (0, 0);
        let tier = self.tier;
        let effect = Effect {
            requested: totals.balance,
            balance_delta: totals.balance,
            lifetime_delta: totals.lifetime,
            shortfall: 0,
        };
        let draws =
            if totals.balance > 0 { vec![Draw { lot: CARRIED_LOT.into(), points: totals.balance }] } else { vec![] };
        let m = self.own_movement(EntryKind::Opening, totals.balance, "carried over from a run another worker made");
        self.record(m, effect, draws, at);
        // The tier is the carried state's: the entry records it, it does not change it.
        self.tier = tier;
        if let Some(entry) = self.unprojected.last_mut() {
            entry.tier_change = None;
        }
    }
}
