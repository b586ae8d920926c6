//! Decided entries and the fenced projection that writes them to the ledger.
//!
//! The workflow decides every change of an account and numbers it: entry
//! `seq` is final once the workflow task that decided it completes. The
//! ledger is a projection of those decisions: it takes entries `N..=M` only
//! on top of `N - 1`, recognises a retry of a write it already committed, and
//! refuses anything else (a lost database, a restored backup, a wrong URL, a
//! zombie attempt) instead of guessing.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::lots::{Draw, Millis};
use super::messages::{BalanceChange, EntryKind, TierChange};
use super::movement::{Effect, Movement, Original, Totals};

/// How many accruals and redemptions a reversal can find in memory; older
/// originals are read from the ledger by the gRPC layer, which during a
/// ledger outage cannot vouch for them.
pub const ORIGINALS_WINDOW: usize = 1_000;
/// How many projected redemption and correction results an account keeps to
/// answer a resend; results the ledger does not hold yet are always kept.
pub const RESULTS_WINDOW: usize = 64;

/// One decided change of an account, as the ledger will record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The account's sequence number of this entry, from 1.
    pub seq: u64,
    /// What was asked.
    pub movement: Movement,
    /// What it did.
    pub effect: Effect,
    /// The account's totals right after it.
    pub after: Totals,
    /// The tier change it caused, recorded with it so none is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_change: Option<TierChange>,
    /// The lots it took points from or gave points to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draws: Vec<Draw>,
    /// When it took effect on the workflow's clock (an activation or expiry
    /// applied late is dated at its due time); 0 before lots existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub at_ms: Millis,
    /// Pending points right after it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending_after: i64,
    /// Held points right after it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held_after: i64,
    /// An `expiring` entry's soonest expiry (for its event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<Millis>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Entry {
    /// About how many bytes this entry takes in JSON: what bounds a write.
    pub fn approximate_size(&self) -> usize {
        self.movement.approximate_size() + self.draws.iter().map(|d| d.lot.len() + 24).sum::<usize>()
    }

    /// The totals right before this entry.
    pub fn before(&self) -> Totals {
        Totals {
            balance: self.after.balance.saturating_sub(self.effect.balance_delta),
            lifetime: self.after.lifetime.saturating_sub(self.effect.lifetime_delta),
        }
    }
}

/// A reversal's original as the ledger held it when the gRPC layer read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerView {
    /// The ledger's newest entry of the account at the read.
    pub as_of_seq: u64,
    /// The original, if the ledger has it.
    pub original: Option<Original>,
}

/// A reversible entry the account remembers, with what reversals took from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalRecord {
    /// The original's event id.
    pub event_id: String,
    /// Its kind, its amount and what was reversed so far.
    pub original: Original,
    /// The newest entry that created or reversed it.
    pub touched_seq: u64,
}

/// Recent accruals and redemptions, for reversals decided without the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Originals {
    /// Oldest first.
    #[serde(default)]
    pub records: VecDeque<OriginalRecord>,
    /// The newest entry that touched a record this window forgot: a ledger
    /// view older than it may miss a reversal and is not trusted.
    #[serde(default)]
    pub floor: u64,
}

impl Originals {
    /// The remembered original `event_id`.
    pub fn get(&self, event_id: &str) -> Option<Original> {
        self.records.iter().find(|r| r.event_id == event_id).map(|r| r.original)
    }

    /// Remembers (or updates) `event_id`, forgetting the oldest beyond the window.
    pub fn put(&mut self, event_id: &str, original: Original, seq: u64) {
        self.records.retain(|r| r.event_id != event_id);
        self.put_new(event_id, original, seq);
    }

    /// Remembers an original decided just now (its id is new to the account).
    pub fn put_new(&mut self, event_id: &str, original: Original, seq: u64) {
        self.records.push_back(OriginalRecord { event_id: event_id.to_owned(), original, touched_seq: seq });
        while self.records.len() > ORIGINALS_WINDOW {
            if let Some(old) = self.records.pop_front() {
                self.floor = self.floor.max(old.touched_seq);
            }
        }
    }

    /// The original of a reversal: from memory, else from a ledger view taken
    /// after everything this window forgot (`Some(None)`: there is none).
    /// `None` when neither can tell.
    pub fn resolve(&self, event_id: &str, view: Option<&LedgerView>) -> Option<Option<Original>> {
        if let Some(original) = self.get(event_id) {
            return Some(Some(original));
        }
        match view {
            Some(v) if v.as_of_seq >= self.floor => Some(v.original),
            _ => None,
        }
    }
}

/// A reversal or adjustment the account remembers with its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// The movement as asked.
    pub movement: Movement,
    /// What the caller was told.
    pub result: BalanceChange,
    /// Its entry.
    pub seq: u64,
}

/// Input of the `project_entries` activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionBatch {
    /// The account.
    pub customer_id: String,
    /// The entry the ledger must hold last for this write to apply.
    pub after_seq: u64,
    /// The account's totals at `after_seq`; a ledger that holds other totals
    /// there has diverged and is refused too.
    pub totals_before: Totals,
    /// Entries `after_seq + 1 ..`, in order.
    pub entries: Vec<Entry>,
    /// Accruals received without a ledger check: the ledger says which
    /// it already holds, before the account decides them.
    #[serde(default)]
    pub check: Vec<Movement>,
}

/// What the ledger holds of an event id a check asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Known {
    /// Not in the ledger: decide it.
    New,
    /// The same event: a resend, not applied again.
    Same,
    /// Another event under the same id: ignored.
    Other,
}

/// The ledger's answer to a [`ProjectionBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionReply {
    /// The entries are in the ledger (now, or by an earlier attempt of the
    /// same write). `duplicates` lists entries whose event id the ledger
    /// already held from an older entry: recorded under `<event_id>#<seq>`
    /// and reported, since the account had forgotten the id.
    Written {
        /// Entries stored under a suffixed id.
        duplicates: Vec<u64>,
        /// One answer per checked accrual, in order.
        known: Vec<Known>,
    },
    /// The ledger's sequence or totals for the account are not what the
    /// account expects: nothing was written.
    Fenced {
        /// The ledger's newest entry of the account.
        ledger_seq: u64,
        /// The ledger's totals.
        ledger_totals: Totals,
    },
}

impl ProjectionBatch {
    /// The newest entry of this write (`after_seq` if it carries none).
    pub fn last_seq(&self) -> u64 {
        self.entries.last().map_or(self.after_seq, |e| e.seq)
    }

    /// Whether the ledger's `(ledger_seq, totals)` is where this write starts.
    pub fn fits(&self, ledger_seq: u64, totals: Totals) -> bool {
        ledger_seq == self.after_seq && totals == self.totals_before
    }
}

/// Whether `kind` can be named by a reversal.
pub fn reversible(kind: EntryKind) -> bool {
    matches!(kind, EntryKind::Accrual | EntryKind::Redemption | EntryKind::Capture)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accrual(requested: i64) -> Original {
        Original { kind: EntryKind::Accrual, requested, reversed: 0 }
    }

    #[test]
    fn a_forgotten_original_is_trusted_from_a_ledger_view_only_if_it_is_newer_than_what_was_forgotten() {
        let mut o = Originals::default();
        for i in 0..=ORIGINALS_WINDOW as u64 {
            o.put(&format!("a{i}"), accrual(10), i + 1);
        }
        assert_eq!(o.records.len(), ORIGINALS_WINDOW);
        assert_eq!(o.floor, 1, "a0 (touched at seq 1) was forgotten");
        assert_eq!(o.resolve("a1", None), Some(Some(accrual(10))), "in memory");
        let stale = LedgerView { as_of_seq: 0, original: Some(accrual(10)) };
        assert_eq!(o.resolve("a0", Some(&stale)), None, "the view may miss a reversal");
        let fresh = LedgerView { as_of_seq: 1, original: Some(accrual(10)) };
        assert_eq!(o.resolve("a0", Some(&fresh)), Some(Some(accrual(10))));
        assert_eq!(o.resolve("zz", Some(&LedgerView { as_of_seq: 9, original: None })), Some(None));
        assert_eq!(o.resolve("zz", None), None, "no view: cannot tell");
    }

    #[test]
    fn a_write_fits_only_on_top_of_the_sequence_and_totals_it_expects() {
        let t = Totals { balance: 5, lifetime: 9 };
        let b =
            ProjectionBatch { customer_id: "c".into(), after_seq: 3, totals_before: t, entries: vec![], check: vec![] };
        assert!(b.fits(3, t));
        assert!(!b.fits(2, t), "ledger behind");
        assert!(!b.fits(4, t), "ledger ahead");
        assert!(!b.fits(3, Totals { balance: 6, lifetime: 9 }), "ledger diverged");
        assert_eq!(b.last_seq(), 3);
    }
}
