//! Answers the account keeps so that a resend gets the original answer and
//! a reused id with other content is told apart, however the ledger is.

use serde::{Deserialize, Serialize};

use super::corrections::BalanceChange;
use super::messages::{RedemptionRequest, RedemptionResult};
use super::movement::Movement;

/// How many answered redemptions (and, apart, corrections) the ledger holds
/// that an account still keeps; answers the ledger does not hold yet are
/// always kept.
pub const RESULTS_WINDOW: usize = 64;

/// A redemption the account remembers with its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionRecord {
    /// The request as first applied.
    pub request: RedemptionRequest,
    /// Its result.
    pub result: RedemptionResult,
    /// The entry that recorded it.
    pub seq: u64,
}

/// A reversal or adjustment the account remembers with its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// The movement as asked.
    pub movement: Movement,
    /// What the caller was told.
    pub result: BalanceChange,
    /// Its entry.
    pub seq: u64,
}

/// An answer kept in a window: the entry it belongs to.
pub trait Answer {
    /// The entry that recorded it.
    fn seq(&self) -> u64;
    /// Where `rebase` moves it.
    fn seq_mut(&mut self) -> &mut u64;
}

impl Answer for RedemptionRecord {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn seq_mut(&mut self) -> &mut u64 {
        &mut self.seq
    }
}

impl Answer for ChangeRecord {
    fn seq(&self) -> u64 {
        self.seq
    }
    fn seq_mut(&mut self) -> &mut u64 {
        &mut self.seq
    }
}

/// Keeps every answer whose entry the ledger does not hold yet (above
/// `projected`) and the newest `keep` of the others, oldest dropped first.
pub fn trim<T: Answer>(items: &mut Vec<T>, projected: u64, keep: usize) {
    let mut excess = items.iter().filter(|x| x.seq() <= projected).count().saturating_sub(keep);
    items.retain(|x| {
        if excess > 0 && x.seq() <= projected {
            excess -= 1;
            false
        } else {
            true
        }
    });
}
