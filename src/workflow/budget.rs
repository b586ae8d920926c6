//! What one run may take before it continues-as-new, and when it may.

use crate::domain::LoyaltyState;
use crate::domain::projection::MAX_BATCH;

/// Signals after which a run continues-as-new, well before Temporal's
/// 10,000-signals-per-run limit and its history-size suggestion.
pub const MAX_SIGNALS_PER_RUN: u32 = 2_000;
/// Accruals after which a run continues-as-new (a batch signal carries
/// many, and each adds to the history's size).
pub const MAX_ACCRUALS_PER_RUN: u32 = 2_000;
/// Accepted updates after which a run continues-as-new, well before
/// Temporal's 2,000 updates per run (`history.maxTotalUpdates`).
pub const MAX_UPDATES_PER_RUN: u32 = 1_000;
/// History events after which a run continues-as-new. A continue-as-new
/// refused because a signal came in during its task is retried after the
/// worker replays the whole run (sdk-core evicts it), and calls to the
/// account wait meanwhile: at Temporal's own suggestion (about 4,100
/// events) that replay took about 450 ms here, at this length about a
/// quarter of it (BENCHMARKS.md, "Continue-as-new under a storm").
pub const MAX_EVENTS_PER_RUN: u32 = 500;
/// The patch marker of [`MAX_EVENTS_PER_RUN`], asked only once a run is
/// that long: a run that 1.0 recorded went on past 500 events (an activity
/// or timer where this build continues-as-new), so its replay must not
/// apply the rule. Remove in the release after 1.1, once every account has
/// continued-as-new under 1.1 (Worker Versioning keeps 1.0 runs on 1.0
/// workers meanwhile; this covers a deployment without it).
pub const SHORT_RUNS_PATCH: &str = "short-runs-1.1";
/// How long a run that is about to continue-as-new says so before it does:
/// every update it decides meanwhile carries the notice ([`crate::payload::Noticed`]),
/// and our API holds the account's calls until the new run exists. A signal
/// or update that reaches Temporal during the continue-as-new's own task
/// makes Temporal refuse it (UNHANDLED_COMMAND); the worker then evicts the
/// run and replays all of it before trying again, and the account's calls
/// wait that long (BENCHMARKS.md, "Continue-as-new under a storm"). Only a
/// replica that had an update answered in the notice period hears it: a run
/// that took no update gives none.
pub const ENDING_NOTICE: std::time::Duration = std::time::Duration::from_millis(30);
/// History events past which a full run carries any backlog that fits
/// rather than wait for its ledger: the workflow task timeout (1 s by
/// default) must cover a replay of the whole run after an eviction, and a
/// run of 4,000 events took about 450 ms to replay here.
pub const FORCE_EVENTS_PER_RUN: u32 = 2_000;
/// The patch marker of 1.2's changes to how a run ends: the notice
/// ([`ENDING_NOTICE`]) and the backlog carried past [`FORCE_EVENTS_PER_RUN`].
/// A run 1.1 recorded continued at once, and went on past 2,000 events
/// while its ledger was behind: it must replay as it ran. Remove in the
/// release after 1.2.
pub const RUN_END_PATCH: &str = "run-end-1.2";
/// Nearing Temporal's limits, a run carries any backlog that fits rather
/// than wait for its ledger; see [`RunBudget::carry_now`].
pub const FORCE_SIGNALS_PER_RUN: u32 = 8_000;
/// See [`FORCE_SIGNALS_PER_RUN`].
pub const FORCE_UPDATES_PER_RUN: u32 = 1_600;
/// See [`FORCE_SIGNALS_PER_RUN`]: accruals arrive many to a signal.
pub const FORCE_ACCRUALS_PER_RUN: u32 = 8_000;
/// Largest carried state, by [`LoyaltyState::approximate_size`] (which
/// bounds its JSON from above): Temporal refuses an input over 2 MB.
pub const MAX_CARRY_BYTES: usize = 1536 * 1024;

/// The run's counters and the decision they drive. Not carried: each run
/// starts from zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunBudget {
    /// Signals received by this run.
    pub signals: u32,
    /// Accruals received by this run (a batch signal carries many).
    pub accruals: u32,
    /// Updates accepted by this run.
    pub updates: u32,
    /// The decided sequence at which the run last found itself full but
    /// unable to carry its state: it does not look again until that changes.
    refused_at: Option<u64>,
}

impl RunBudget {
    /// Counts a signal carrying `accruals` accruals.
    pub fn signal(&mut self, accruals: usize) {
        self.signals += 1;
        self.accruals = self.accruals.saturating_add(accruals as u32);
    }

    /// Counts an accepted update.
    pub fn update(&mut self) {
        self.updates += 1;
    }

    /// Whether the run has taken its share (or Temporal suggests a new run).
    pub fn is_full(&self, suggested: bool) -> bool {
        suggested
            || self.signals >= MAX_SIGNALS_PER_RUN
            || self.accruals >= MAX_ACCRUALS_PER_RUN
            || self.updates >= MAX_UPDATES_PER_RUN
    }

    /// Whether the run is near Temporal's own limits, or `long` (past
    /// [`FORCE_EVENTS_PER_RUN`]).
    fn is_forced(&self, long: bool) -> bool {
        long || self.signals >= FORCE_SIGNALS_PER_RUN
            || self.accruals >= FORCE_ACCRUALS_PER_RUN
            || self.updates >= FORCE_UPDATES_PER_RUN
    }

    /// Whether a full run has yet to look at whether it can carry `state`.
    pub fn wants_to_look(&self, state: &LoyaltyState, suggested: bool) -> bool {
        self.is_full(suggested) && self.refused_at != Some(state.seq)
    }

    /// Whether to continue-as-new now: the run is full (a `long` one is), at most one write's
    /// worth waits for the ledger (any backlog once the run is `long` or nears
    /// Temporal's limits: a long ledger outage must not end the run, nor make
    /// its replay outlast the workflow task timeout), and the state is within
    /// [`MAX_CARRY_BYTES`]. Temporal's suggestion alone never forces: a large
    /// carried state makes the continue-as-new slow enough to lose the race
    /// with new signals more often, so the backlog is written down first.
    /// (What the run decides during its notice goes along as backlog.)
    pub fn carry_now(&mut self, state: &LoyaltyState, suggested: bool, long: bool) -> bool {
        if !self.is_full(suggested || long) {
            return false;
        }
        let carry = self.would_carry(state, suggested, long);
        self.refused_at = (!carry).then_some(state.seq);
        carry
    }

    /// What [`Self::carry_now`] would answer, without noting a refusal.
    pub fn would_carry(&self, state: &LoyaltyState, suggested: bool, long: bool) -> bool {
        self.is_full(suggested || long)
            && (self.is_forced(long) || state.backlog() <= MAX_BATCH)
            && state.approximate_size() <= MAX_CARRY_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Command, PointsEvent};

    fn accrual(i: usize, text: &str) -> Command {
        Command::Accrue(PointsEvent {
            event_id: format!("{i:0>128}"),
            points: 1,
            reason: text.into(),
            source: text.into(),
            ledger_checked: true,
            ..Default::default()
        })
    }

    #[test]
    fn a_run_carries_over_only_a_state_that_fits() {
        let mut budget = RunBudget::default();
        let mut state = LoyaltyState::open("c");
        assert!(!budget.carry_now(&state, false, false), "not full");
        assert!(budget.carry_now(&state, true, false), "full and small");

        // A ledger outage: more than one write's worth waits, the longest texts.
        let text = "\u{1F600}".repeat(256);
        for i in 0..MAX_BATCH + 1 {
            state.apply(accrual(i, &text), 0).unwrap();
        }
        budget.signals = MAX_SIGNALS_PER_RUN;
        assert!(!budget.carry_now(&state, false, false), "waits for the ledger while the run has room");
        assert!(!budget.wants_to_look(&state, false), "and does not look again until something changes");
        assert!(!budget.carry_now(&state, true, false), "Temporal's suggestion does not force it");
        budget.signals = FORCE_SIGNALS_PER_RUN;
        for i in MAX_BATCH + 1..2 * MAX_BATCH {
            state.apply(accrual(i, &text), 0).unwrap();
        }
        assert!(state.approximate_size() > MAX_CARRY_BYTES);
        assert!(!budget.carry_now(&state, false, true), "never more than MAX_CARRY_BYTES, however full or long");

        // Nearing Temporal's limits, a backlog that fits goes along.
        let mut state = LoyaltyState::open("c");
        for i in 0..MAX_BATCH + 1 {
            state.apply(accrual(i, "short"), 0).unwrap();
        }
        let mut budget = RunBudget { updates: MAX_UPDATES_PER_RUN, ..RunBudget::default() };
        assert!(!budget.carry_now(&state, false, false));
        assert!(budget.carry_now(&state, false, true), "a long run carries its backlog");
        budget.updates = FORCE_UPDATES_PER_RUN;
        assert!(budget.carry_now(&state, false, false), "forced: carried with its backlog");
    }
}
