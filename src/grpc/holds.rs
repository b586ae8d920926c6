//! Reserve, Capture and Release: holds at checkout, as updates of the
//! account. A capture's event id goes through the same ledger guard as a
//! redemption's, so a resend long after is answered from its ledger row.

use super::error::ApiError;
use super::pb;
use super::requests::HoldCommand;
use super::responses::hold;
use super::service::{Known, LEDGER_LOOKUP_TIMEOUT, LoyaltyApi};
use super::updates::update_options;
use crate::domain::holds::{capture_movement, hold_entry_id};
use crate::domain::{CaptureRequest, ReleaseRequest, ReserveRequest};
use crate::workflow::LoyaltyEntityWorkflow;

impl LoyaltyApi {
    /// Sets points aside; idempotent by hold id.
    pub(super) async fn reserve(&self, mut cmd: HoldCommand<ReserveRequest>) -> Result<pb::ReserveResponse, ApiError> {
        let options = update_options("reserve", &cmd.request.hold_id, &cmd.request);
        // The lifelong guard: a hold id the ledger has, the account refuses
        // unless it still remembers that hold (a resend).
        let entry = hold_entry_id(&cmd.request.hold_id);
        let lookup = tokio::time::timeout(LEDGER_LOOKUP_TIMEOUT, self.ledger.find(cmd.customer.as_str(), &entry));
        cmd.request.ledger_known = matches!(lookup.await, Ok(Ok(Some(_))));
        let r = self.update(&cmd.customer, || LoyaltyEntityWorkflow::reserve_points, cmd.request, options).await?;
        Ok(pb::ReserveResponse { hold: Some(hold(r)) })
    }

    /// Spends (part of) a hold; idempotent by event id.
    pub(super) async fn capture(&self, cmd: HoldCommand<CaptureRequest>) -> Result<pb::CaptureResponse, ApiError> {
        let r = &cmd.request;
        let movement = capture_movement(&r.hold_id, &r.event_id, r.points, &r.reward);
        if let Known::Applied(row) = self.known(&cmd.customer, &movement).await? {
            let totals = self.ledger.totals(cmd.customer.as_str()).await?.unwrap_or_default();
            let (_, held) = self.ledger.pending_and_held(cmd.customer.as_str()).await?;
            let hold = pb::Hold {
                hold_id: r.hold_id.clone(),
                status: pb::HoldStatus::Captured.into(),
                held: row.requested + row.points,
                captured: row.requested,
                expires_at: None,
                points_balance: totals.balance,
                held_points: held,
            };
            return Ok(pb::CaptureResponse { hold: Some(hold) });
        }
        let options = update_options("capture", &r.event_id, &movement);
        let r = self.update(&cmd.customer, || LoyaltyEntityWorkflow::capture_points, cmd.request, options).await?;
        Ok(pb::CaptureResponse { hold: Some(hold(r)) })
    }

    /// Gives a hold back; idempotent by hold id.
    pub(super) async fn release(&self, cmd: HoldCommand<ReleaseRequest>) -> Result<pb::ReleaseResponse, ApiError> {
        let options = update_options("release", &cmd.request.hold_id, &cmd.request);
        let r = self.update(&cmd.customer, || LoyaltyEntityWorkflow::release_points, cmd.request, options).await?;
        Ok(pb::ReleaseResponse { hold: Some(hold(r)) })
    }
}
