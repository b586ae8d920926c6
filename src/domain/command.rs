//! The account's decisions in one place: every change of an account is one
//! [`Command`], decided by [`LoyaltyState::apply`] against the account's
//! own state at the workflow's time, in the order the workflow receives
//! them. The workflow's handlers only build the command and hand back the
//! reply; nothing here waits for anything.

use super::corrections::{AdjustmentRequest, BalanceChange, ReversalRequest};
use super::holds::{CaptureRequest, HoldResult, ReleaseRequest, ReserveRequest};
use super::messages::{PointsEvent, RedemptionRequest, RedemptionResult};
use super::rejection::{Ignored, Rejection};
use super::state::LoyaltyState;
use super::time::Millis;

/// One change asked of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Points earned (`add_points`).
    Accrue(PointsEvent),
    /// Several accruals from one signal (`add_points_batch`), in order.
    AccrueBatch(Vec<PointsEvent>),
    /// The ledger's verdicts on the queued accruals the projection asked
    /// about, in queue order.
    Checked(Vec<Result<(), Ignored>>),
    /// Points spent (`redeem_points`).
    Redeem(RedemptionRequest),
    /// An accrual clawed back or a redemption cancelled (`reverse_points`).
    Reverse(ReversalRequest),
    /// A support correction (`adjust_points`).
    Adjust(AdjustmentRequest),
    /// Points set aside at checkout (`reserve_points`).
    Reserve(ReserveRequest),
    /// A hold spent (`capture_points`).
    Capture(CaptureRequest),
    /// A hold given back (`release_points`).
    Release(ReleaseRequest),
    /// The account's timer: apply what fell due.
    TimerDue,
    /// The account closes (`shutdown`): open holds give their points back.
    Close,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Accruals taken; those ignored, with why (a signal has no caller to tell).
    Accrued(Vec<(String, Ignored)>),
    /// A redemption's answer.
    Redeemed(RedemptionResult),
    /// A reversal's or adjustment's answer.
    Changed(BalanceChange),
    /// A hold's answer.
    Hold(HoldResult),
    /// Done; nothing to answer.
    Done,
}

impl LoyaltyState {
    /// Decides `command` at `now` on the workflow's clock: first whatever
    /// fell due by then (each entry dated at its due time), then the
    /// command, then what the command made due (points a hold gives back
    /// to a lot whose date has passed). A refusal changes nothing but what
    /// fell due.
    pub fn apply(&mut self, command: Command, now: Millis) -> Result<Reply, Rejection> {
        self.advance(now);
        let reply = self.decide(command, now);
        self.advance(now);
        reply
    }

    fn decide(&mut self, command: Command, now: Millis) -> Result<Reply, Rejection> {
        match command {
            Command::Accrue(event) => Ok(Reply::Accrued(self.take_accruals(vec![event], now))),
            Command::AccrueBatch(events) => Ok(Reply::Accrued(self.take_accruals(events, now))),
            Command::Checked(verdicts) => Ok(Reply::Accrued(self.accrue_checked(&verdicts, now))),
            Command::Redeem(req) => self.redeem(&req, now).map(Reply::Redeemed),
            Command::Reverse(req) => {
                self.check_return(&req)?;
                let seq = self.seq;
                let change = match req.is_lines_only() {
                    true => self.return_nothing(&req, now)?,
                    false => self.correct(&req.movement()?, req.ledger.as_ref(), req.terms(), now)?,
                };
                if self.seq > seq && !req.lines.is_empty() {
                    self.note_return(&req.lines, self.seq);
                }
                Ok(Reply::Changed(change))
            }
            Command::Adjust(req) => self.correct(&req.movement()?, None, req.terms(), now).map(Reply::Changed),
            Command::Reserve(req) => self.reserve(&req, now).map(Reply::Hold),
            Command::Capture(req) => self.capture(&req, now).map(Reply::Hold),
            Command::Release(req) => self.release(&req, now).map(Reply::Hold),
            Command::TimerDue => Ok(Reply::Done),
            Command::Close => {
                self.release_all_holds(now);
                self.is_active = false;
                Ok(Reply::Done)
            }
        }
    }

    /// Whether `command` would be refused at `now`, without changing
    /// anything: what an update's validator asks, so a refusal never enters
    /// history. With the task's time it decides exactly as [`LoyaltyState::apply`]
    /// would (on a copy advanced to `now` when something fell due since the
    /// last decision). Without it the account is seen as of its last
    /// decision, and "not enough points" while points are pending or held is
    /// left to `apply`, since they may have come due since.
    pub fn vet(&self, command: &Command, now: Option<Millis>) -> Result<(), Rejection> {
        match now {
            Some(now) if self.next_due().is_some_and(|(at, _)| at <= now) => {
                let mut advanced = self.clone();
                advanced.advance(now);
                advanced.check(command)
            }
            Some(_) => self.check(command),
            None => match self.check(command) {
                Err(Rejection::Insufficient { .. }) if self.lots.pending() > 0 || !self.holds.is_empty() => Ok(()),
                other => other,
            },
        }
    }

    /// What `decide` would refuse `command` with, against the state as it is.
    fn check(&self, command: &Command) -> Result<(), Rejection> {
        match command {
            Command::Redeem(req) => self.plan_redeem(req).map(drop),
            Command::Reverse(req) => {
                self.check_return(req)?;
                match req.is_lines_only() {
                    true => self.plan_return_nothing(req).map(drop),
                    false => self.plan_correction(&req.movement()?, req.ledger.as_ref()).map(drop),
                }
            }
            Command::Adjust(req) => self.plan_correction(&req.movement()?, None).map(drop),
            Command::Reserve(req) => self.plan_reserve(req).map(drop),
            Command::Capture(req) => self.plan_capture(req).map(drop),
            Command::Release(req) => self.plan_release(req).map(drop),
            Command::Accrue(_) | Command::AccrueBatch(_) | Command::Checked(_) | Command::TimerDue | Command::Close => {
                Ok(())
            }
        }
    }

    fn take_accruals(&mut self, events: Vec<PointsEvent>, now: Millis) -> Vec<(String, Ignored)> {
        let mut ignored = Vec::new();
        for event in events {
            let id = event.event_id.clone();
            if let Err(why) = self.take_accrual(event, now) {
                ignored.push((id, why));
            }
        }
        ignored
    }
}
