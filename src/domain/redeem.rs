//! Redemptions: points spent from the soonest-expiring lots, decided
//! against the balance as it stands; a resend gets the original answer.

use super::answers::RedemptionRecord;
use super::messages::{RedemptionRequest, RedemptionResult};
use super::movement::Effect;
use super::rejection::Rejection;
use super::state::LoyaltyState;
use super::time::Millis;

impl LoyaltyState {
    /// Decides a redemption without changing anything: `Some` is the answer
    /// to a resend, `None` a new redemption the account can afford.
    pub fn plan_redeem(&self, req: &RedemptionRequest) -> Result<Option<RedemptionResult>, Rejection> {
        if let Some(done) = self.recent_redemptions.iter().find(|r| r.request.event_id == req.event_id) {
            return if done.request == *req {
                Ok(Some(done.result.clone()))
            } else {
                Err(Rejection::EventIdReused(req.event_id.clone()))
            };
        }
        self.check_new_id(&req.event_id)?;
        let points = req.validate()?;
        if !self.is_active {
            return Err(Rejection::Inactive);
        }
        if points > self.points_balance {
            return Err(Rejection::Insufficient { requested: points, available: self.points_balance });
        }
        Ok(None)
    }

    /// Decides and applies a redemption at `now`.
    pub(super) fn redeem(&mut self, req: &RedemptionRequest, now: Millis) -> Result<RedemptionResult, Rejection> {
        if let Some(done) = self.plan_redeem(req)? {
            return Ok(done);
        }
        let draws = self.lots.spend(req.points, None);
        self.last_activity_ms = now;
        let seq = self.record(req.movement(), Effect::balance(req.points, -req.points), draws, now);
        let result = RedemptionResult {
            redeemed: req.points,
            remaining_balance: self.points_balance,
            reward: req.reward.clone(),
        };
        self.recent_redemptions.push(RedemptionRecord { request: req.clone(), result: result.clone(), seq });
        Ok(result)
    }
}
