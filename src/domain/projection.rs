//! The fenced projection: the ledger receives the account's decided
//! entries in order, in batches, each write saying "entries N..M on top of
//! N-1, whose totals were T". The ledger applies it only on top of exactly
//! that, recognises a retry of a write it already committed, and refuses
//! anything else (a lost database, a restored backup, a wrong URL, a zombie
//! attempt) instead of guessing. The same write asks the ledger about the
//! accruals that arrived without a check.

use serde::{Deserialize, Serialize};

use super::answers::Answer;
use super::entry::Entry;
use super::kind::EntryKind;
use super::messages::PointsEvent;
use super::movement::{Movement, Totals};
use super::rejection::Ignored;
use super::state::LoyaltyState;

/// Most entries written (and accruals checked) in one ledger write.
pub const MAX_BATCH: usize = 500;
/// Most bytes of text one ledger write carries (the activity's input stays
/// far below Temporal's 2 MB, and so does each history event).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

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
    /// How long the writer waits before it writes (the run's paused write,
    /// `workflow::write_behind`); 0: at once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pause_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
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

impl Known {
    /// What the account does with the accrual the ledger answered about.
    pub fn verdict(self) -> Result<(), Ignored> {
        match self {
            Known::New => Ok(()),
            Known::Same => Err(Ignored::InLedger),
            Known::Other => Err(Ignored::ReusedInLedger),
        }
    }
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
        /// Points the ledger's newest entry left pending and held.
        #[serde(default)]
        ledger_pending_and_held: (i64, i64),
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

impl LoyaltyState {
    /// The next write to the ledger: at most `max` entries on top of what it
    /// holds, and at most `max` accruals to check, within `max_bytes` of
    /// text. The first entry always goes, so a write always makes progress.
    pub fn projection(&self, max: usize, max_bytes: usize) -> ProjectionBatch {
        let mut budget = max_bytes;
        let mut fits = |size: usize| {
            let ok = size <= budget;
            budget = budget.saturating_sub(size);
            ok
        };
        let mut taken = 0;
        for entry in self.unprojected.iter().take(max) {
            if !fits(entry.approximate_size()) && taken > 0 {
                break;
            }
            taken += 1;
        }
        let entries: Vec<Entry> = self.unprojected[..taken].to_vec();
        // Nothing to write: the first check always goes, so it makes progress too.
        let mut first = entries.is_empty();
        let check = self
            .pending_events
            .iter()
            .take(max)
            .map(PointsEvent::movement)
            .take_while(|m| fits(m.approximate_size()) || std::mem::take(&mut first))
            .collect();
        let totals_before = entries.first().map_or_else(|| self.totals(), Entry::before);
        ProjectionBatch {
            customer_id: self.customer_id.clone(),
            after_seq: self.projected_seq,
            totals_before,
            entries,
            check,
            pause_ms: 0,
        }
    }

    /// The entries decided after entry `after` (at least `projected_seq`),
    /// as a write on top of it, if there are any and they fit in `max` and
    /// `max_bytes`: what an update's result hands our API to write at once.
    pub fn entries_after(&self, after: u64, max: usize, max_bytes: usize) -> Option<ProjectionBatch> {
        let after = after.max(self.projected_seq);
        let entries: Vec<Entry> = self.unprojected.iter().filter(|e| e.seq > after).take(max + 1).cloned().collect();
        let bytes: usize = entries.iter().map(Entry::approximate_size).sum();
        if entries.is_empty() || entries.len() > max || bytes > max_bytes {
            return None;
        }
        Some(ProjectionBatch {
            customer_id: self.customer_id.clone(),
            after_seq: after,
            totals_before: entries[0].before(),
            entries,
            check: Vec::new(),
            pause_ms: 0,
        })
    }

    /// The ledger holds `batch`'s entries: they leave memory (their answers
    /// stay a while for resends).
    pub fn written(&mut self, batch: &ProjectionBatch) {
        let last = batch.last_seq();
        self.unprojected.retain(|e| e.seq > last);
        self.projected_seq = self.projected_seq.max(last);
        self.trim_answers();
    }

    /// A state another worker made opened with an `opening` entry of its
    /// totals (`upgrade`); a ledger that already holds this account with
    /// exactly those totals (this service wrote it before the other worker
    /// ran the account, and that worker changed nothing) is continued
    /// instead: the opening entry is dropped and every decision since is
    /// renumbered on top of the ledger's newest entry. A ledger that holds
    /// pending or held points for the account does not match (the other
    /// worker's state has neither). Returns whether it did; any other ledger
    /// stays fenced.
    pub fn rebase(&mut self, ledger_seq: u64, ledger_totals: Totals, pending_and_held: (i64, i64)) -> bool {
        let opens = pending_and_held == (0, 0)
            && self.projected_seq == 0
            && self
                .unprojected
                .first()
                .is_some_and(|e| e.seq == 1 && e.movement.kind == EntryKind::Opening && e.after == ledger_totals);
        if !opens || ledger_seq == 0 {
            return false;
        }
        let offset = ledger_seq - 1;
        self.unprojected.remove(0);
        for e in &mut self.unprojected {
            let old = e.movement.event_id.clone();
            e.seq += offset;
            // Only the ids the account numbers itself (`activation/12`), not `hold/<caller's id>`.
            let numbered = matches!(e.movement.kind, EntryKind::Activation | EntryKind::Expiry | EntryKind::Expiring);
            if numbered && old == format!("{}/{}", e.movement.kind.as_str(), e.seq - offset) {
                e.movement.event_id = format!("{}/{}", e.movement.kind.as_str(), e.seq);
                if let Some(change) = e.tier_change.as_mut().filter(|c| c.caused_by == old) {
                    change.caused_by = e.movement.event_id.clone();
                }
            }
        }
        self.seq += offset;
        self.projected_seq = ledger_seq;
        for seq in self.recent_redemptions.iter_mut().map(Answer::seq_mut) {
            *seq += offset;
        }
        for seq in self.recent_changes.iter_mut().map(Answer::seq_mut) {
            *seq += offset;
        }
        for seq in self.finished_holds.iter_mut().map(Answer::seq_mut) {
            *seq += offset;
        }
        self.originals.shift(offset);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_fits_only_on_top_of_the_sequence_and_totals_it_expects() {
        let t = Totals { balance: 5, lifetime: 9 };
        let b = ProjectionBatch {
            customer_id: "c".into(),
            after_seq: 3,
            totals_before: t,
            entries: vec![],
            check: vec![],
            pause_ms: 0,
        };
        assert!(b.fits(3, t));
        assert!(!b.fits(2, t), "ledger behind");
        assert!(!b.fits(4, t), "ledger ahead");
        assert!(!b.fits(3, Totals { balance: 6, lifetime: 9 }), "ledger diverged");
        assert_eq!(b.last_seq(), 3);
    }
}
