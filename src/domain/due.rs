//! What falls due on the account's own clock: pending points activate,
//! holds release themselves, lots and idle balances expire, and points
//! about to expire are announced.
//!
//! Time is the workflow's: [`LoyaltyState::advance`] applies, before every
//! command, everything due by then in due order, each entry dated at its
//! due time. So an account whose worker was down applies a missed expiry
//! when it returns, dated when it was due, and a redemption never spends
//! points that expired before it arrived. The run loop sleeps on one timer
//! until [`LoyaltyState::next_due`].

use std::collections::HashSet;

use super::holds::HoldEnd;
use super::kind::EntryKind;
use super::lots::{Draw, drawn};
use super::movement::Effect;
use super::state::LoyaltyState;
use super::time::{DAY_MS, Millis};

/// Most lots an announcement lists (its amount counts every lot).
pub const ANNOUNCED_LOTS: usize = 100;

/// What can fall due, in the order ties are applied: activate first, then
/// give holds back, then expire; an announcement last, so it counts only
/// points still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Due {
    /// A pending lot becomes spendable.
    Activation,
    /// An open hold's deadline: it gives its points back.
    HoldDeadline,
    /// A lot's expiry date.
    Expiry,
    /// The balance has been idle for the program's inactivity period.
    Inactivity,
    /// Points expiring within the warning period are announced.
    Announcement,
}

impl LoyaltyState {
    /// The earliest time something falls due, and what.
    pub fn next_due(&self) -> Option<(Millis, Due)> {
        [
            self.lots.next_activation().map(|at| (at, Due::Activation)),
            self.holds.iter().map(|h| h.expires_at_ms).min().map(|at| (at, Due::HoldDeadline)),
            self.lots.next_expiry().map(|at| (at, Due::Expiry)),
            self.inactivity_deadline().map(|at| (at, Due::Inactivity)),
            self.next_warning().map(|at| (at, Due::Announcement)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Moves the account's clock to `now` and applies, in due order, every
    /// activation, hold deadline, expiry and announcement due by then.
    /// Returns how many entries that made.
    pub fn advance(&mut self, now: Millis) -> usize {
        self.clock_ms = self.clock_ms.max(now);
        let now = self.clock_ms;
        let seq = self.seq;
        while let Some((at, due)) = self.next_due().filter(|&(at, _)| at <= now) {
            match due {
                Due::Activation => self.activate(at),
                Due::HoldDeadline => match self.holds.iter().position(|h| h.expires_at_ms == at) {
                    Some(i) => _ = self.end_hold(i, HoldEnd::Expired, at),
                    None => break,
                },
                Due::Expiry => {
                    let draws = self.lots.expire_due(at).unwrap_or_default();
                    self.expire(draws, "lot expired", at);
                }
                Due::Inactivity => {
                    let draws = self.lots.expire_all();
                    self.expire(draws, "inactivity", at);
                }
                Due::Announcement => self.announce(at),
            }
        }
        (self.seq - seq) as usize
    }

    fn activate(&mut self, at: Millis) {
        let draws = self.lots.activate_due(at).unwrap_or_default();
        let m = self.own_movement(EntryKind::Activation, drawn(&draws), "pending period over");
        let effect = Effect::earn(drawn(&draws));
        self.record(m, effect, draws, at);
    }

    fn expire(&mut self, draws: Vec<Draw>, why: &str, at: Millis) {
        let points = drawn(&draws);
        if points == 0 {
            return;
        }
        let m = self.own_movement(EntryKind::Expiry, points, why);
        self.record(m, Effect::balance(points, -points), draws, at);
    }

    fn inactivity_deadline(&self) -> Option<Millis> {
        (self.expire_inactive_after_ms > 0 && self.lots.active() > 0)
            .then(|| self.last_activity_ms.saturating_add(self.expire_inactive_after_ms))
    }

    /// When the next announcement is due: the soonest active lot with points
    /// that expires after what was announced, a warning period before it
    /// expires (a lot earned inside its warning period: when earned).
    fn next_warning(&self) -> Option<Millis> {
        if self.expiry_warning_ms <= 0 {
            return None;
        }
        // Lots are in expiry order, never-expiring last: stop there.
        let lot = self.lots.lots.iter().take_while(|l| l.expires_at_ms.is_some()).find(|l| {
            l.is_active() && l.remaining > 0 && l.expires_at_ms.is_some_and(|at| at > self.warned_until_ms)
        })?;
        let at = lot.expires_at_ms?.saturating_sub(self.expiry_warning_ms);
        Some(at.max(lot.earned_at_ms))
    }

    /// Announces, at `at`, the active points expiring within the warning
    /// period from then (and up to a day more, so lots earned on the same
    /// day make one announcement): one `expiring` entry that moves nothing.
    fn announce(&mut self, at: Millis) {
        let group = self.expiry_warning_ms.min(DAY_MS);
        let until = at.saturating_add(self.expiry_warning_ms).saturating_add(group);
        let mut draws = Vec::new();
        let (mut first, mut points): (Option<Millis>, i64) = (None, 0);
        for lot in self.lots.lots.iter().filter(|l| l.is_active() && l.remaining > 0) {
            match lot.expires_at_ms {
                Some(exp) if exp > self.warned_until_ms && exp <= until => {
                    first = Some(first.map_or(exp, |f| f.min(exp)));
                    points += lot.remaining;
                    // The soonest lots name it; the amount counts them all.
                    if draws.len() < ANNOUNCED_LOTS {
                        draws.push(Draw { lot: lot.id.clone(), points: lot.remaining });
                    }
                }
                _ => {}
            }
        }
        self.warned_until_ms = until;
        let Some(first) = first else { return };
        let reason = format!("expiring from {}", super::events::rfc3339(first));
        let m = self.own_movement(EntryKind::Expiring, points, &reason);
        self.record(m, Effect { requested: points, ..Effect::default() }, draws, at);
        if let Some(entry) = self.unprojected.last_mut() {
            entry.expires_at_ms = Some(first);
        }
    }

    /// Drops spent and expired lots (and merges lots past the budget) when
    /// enough have piled up; the run loop calls it once per turn, and
    /// [`LoyaltyState::compact_lots`] before carrying the state over.
    pub fn tidy_lots(&mut self) {
        if self.lots.needs_compaction() {
            self.compact_lots();
        }
    }

    /// Drops spent and expired lots (and merges lots past the budget).
    pub fn compact_lots(&mut self) {
        let held: HashSet<&str> = self.holds.iter().flat_map(|h| h.draws.iter().map(|d| d.lot.as_str())).collect();
        self.lots.compact(&held);
    }
}
