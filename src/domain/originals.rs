//! The accruals and redemptions a reversal may name, remembered by the
//! account; an older original is read from the ledger by the gRPC layer
//! and trusted only if that read is newer than what the account forgot.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::movement::Original;

/// How many accruals and redemptions a reversal can find in memory; older
/// originals are read from the ledger by the gRPC layer, which during a
/// ledger outage cannot vouch for them.
pub const ORIGINALS_WINDOW: usize = 1_000;

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

    /// About how many bytes the window takes in JSON.
    pub fn approximate_size(&self) -> usize {
        self.records.iter().map(|r| r.event_id.len() + 100).sum::<usize>() + 40
    }

    /// Moves every sequence number by `offset` (see `LoyaltyState::rebase`).
    pub(super) fn shift(&mut self, offset: u64) {
        for r in &mut self.records {
            r.touched_seq += offset;
        }
        if self.floor > 0 {
            self.floor += offset;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::kind::EntryKind;

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
}
