//! When the run's own ledger write happens, so that a decision costs one
//! workflow task (issue 22).
//!
//! An update's result hands our API the entries decided since the previous
//! result ([`WriteBehind::hand_out`]); the API writes them, fenced, before it
//! answers the caller, once Temporal has recorded the decision. The run's
//! own write still follows, as a regular activity scheduled in the same
//! task, but it first pauses ([`WriteBehind::pause`]): it then carries
//! everything decided meanwhile, mostly finds it committed (a retry the
//! ledger recognises), and the task its completion causes comes a second
//! or more after the decisions instead of right behind them, where the
//! account's next call would wait for it.
//!
//! Not a local activity: in the two-replica storm (tests/liveness.rs) a
//! local write tripped sdk-core 0.10.1's "Trying to send a new WFT for a run
//! which already has one!" (`../shared/docs/design.md`), and it would run
//! before Temporal recorded the task's decisions.

use std::time::Duration;

use crate::domain::{LoyaltyState, ProjectionBatch};

/// The pause before the run writes entries our API was not handed (accruals
/// since the last update): how far the ledger lags a stream of accruals.
pub const WRITE_PAUSE: Duration = Duration::from_secs(1);
/// The pause before the run writes entries our API was handed and has most
/// likely written: the run's write only covers an API write that failed.
pub const HANDED_PAUSE: Duration = Duration::from_secs(5);
/// Unwritten entries past which the run writes at once.
pub const WRITE_NOW_ENTRIES: usize = 200;
/// Most entries one update result hands our API.
pub const HAND_OUT_ENTRIES: usize = 64;
/// Most bytes of entries one update result hands our API (Temporal records
/// the result in history).
pub const HAND_OUT_BYTES: usize = 32 * 1024;
/// The patch marker of the paused write. A run 1.2 recorded wrote at once
/// after every decision; its replay must schedule the same activities.
/// Remove in the release after 1.3.
pub const WRITE_BEHIND_PATCH: &str = "write-behind-1.3";

/// What the run knows of its writes' timing. Not carried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBehind {
    /// The run records [`WRITE_BEHIND_PATCH`]: its writes pause first.
    pub paused: bool,
    /// The newest entry an update result handed our API.
    handed_seq: u64,
}

impl WriteBehind {
    /// The entries an update's result hands our API: those decided since
    /// the last result, if they fit.
    pub fn hand_out(&mut self, state: &LoyaltyState) -> Option<ProjectionBatch> {
        let batch = state.entries_after(self.handed_seq, HAND_OUT_ENTRIES, HAND_OUT_BYTES)?;
        self.handed_seq = batch.last_seq();
        Some(batch)
    }

    /// How long the run's write of `batch` pauses before it writes: none in
    /// a run without the marker, when `urgent` (the account closes, the run
    /// must end, the ledger failed), when the batch checks accruals (they are
    /// decided only after) or the backlog is long; otherwise
    /// [`HANDED_PAUSE`] when our API was handed every entry, [`WRITE_PAUSE`]
    /// when not.
    pub fn pause(&self, state: &LoyaltyState, batch: &ProjectionBatch, urgent: bool) -> Duration {
        if !self.paused || urgent || !batch.check.is_empty() || state.unprojected.len() >= WRITE_NOW_ENTRIES {
            Duration::ZERO
        } else if batch.last_seq() <= self.handed_seq {
            HANDED_PAUSE
        } else {
            WRITE_PAUSE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Command, PointsEvent};

    fn accrue(state: &mut LoyaltyState, i: usize) {
        let e = PointsEvent { event_id: format!("e{i}"), points: 1, ledger_checked: true, ..Default::default() };
        state.apply(Command::Accrue(e), 0).unwrap();
    }

    #[test]
    fn each_result_hands_out_what_was_decided_since_the_last() {
        let mut state = LoyaltyState::open("c");
        let mut w = WriteBehind { paused: true, ..WriteBehind::default() };
        assert!(w.hand_out(&state).is_none());
        accrue(&mut state, 1);
        accrue(&mut state, 2);
        let first = w.hand_out(&state).unwrap();
        assert_eq!((first.after_seq, first.last_seq(), first.totals_before.balance), (0, 2, 0));
        accrue(&mut state, 3);
        let second = w.hand_out(&state).unwrap();
        assert_eq!((second.after_seq, second.last_seq(), second.totals_before.balance), (2, 3, 2));
        assert!(w.hand_out(&state).is_none(), "nothing new");
        for i in 4..4 + HAND_OUT_ENTRIES + 1 {
            accrue(&mut state, i);
        }
        assert!(w.hand_out(&state).is_none(), "too many to hand out: the run writes them");
    }

    #[test]
    fn a_write_pauses_longer_for_entries_the_api_was_handed_and_not_at_all_when_urgent() {
        let mut state = LoyaltyState::open("c");
        let mut w = WriteBehind { paused: true, ..WriteBehind::default() };
        accrue(&mut state, 0);
        let batch = state.projection(500, 1 << 20);
        assert_eq!(w.pause(&state, &batch, false), WRITE_PAUSE);
        w.hand_out(&state);
        assert_eq!(w.pause(&state, &batch, false), HANDED_PAUSE);
        assert_eq!(w.pause(&state, &batch, true), Duration::ZERO);
        for i in 1..WRITE_NOW_ENTRIES {
            accrue(&mut state, i);
        }
        let batch = state.projection(500, 1 << 20);
        assert_eq!(w.pause(&state, &batch, false), Duration::ZERO, "a long backlog goes at once");
        let unpaused = WriteBehind::default();
        state.unprojected.truncate(1);
        assert_eq!(unpaused.pause(&state, &state.projection(500, 1 << 20), false), Duration::ZERO, "1.2");
    }
}
