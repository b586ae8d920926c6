//! Accruals: points earned become a lot, pending until their date if they
//! have one. An accrual whose id our gRPC layer checked against the ledger
//! is decided at once; any other waits in `pending_events` for the
//! projection to ask the ledger (`projection`), so an event id is applied
//! once for the account's whole life.

use super::lots::Lot;
use super::messages::PointsEvent;
use super::movement::Effect;
use super::rejection::Ignored;
use super::state::LoyaltyState;
use super::time::Millis;

impl LoyaltyState {
    /// Takes an accrual: decided now if its id was checked against the
    /// ledger, else queued for the check. `Err` says why it is ignored (an
    /// invalid signal from another client, or a resend).
    pub(super) fn take_accrual(&mut self, event: PointsEvent, now: Millis) -> Result<(), Ignored> {
        event.validate()?;
        if event.ledger_checked {
            self.accrue(&event, now)
        } else if event.order.is_some() && self.pending_events.iter().any(|e| e.event_id == event.event_id) {
            // A resent order waits once: its evaluation is large. (Only
            // orders: earlier histories' verdicts count every queued copy.)
            Err(Ignored::Duplicate)
        } else {
            self.pending_events.push(event);
            Ok(())
        }
    }

    /// Decides an accrual at `now`: it becomes a lot, pending until its
    /// `active_from_ms` if that is later, and takes the program's settings
    /// it carries. An order's accrual credits what its evaluation settles
    /// to at the account's tier and campaign usage now (`orders`).
    fn accrue(&mut self, event: &PointsEvent, now: Millis) -> Result<(), Ignored> {
        let mut points = event.validate()?;
        if self.processed_event_ids.contains(&event.event_id) {
            return Err(Ignored::Duplicate);
        }
        // An order's points are settled now, at the account's tier and usage.
        // Caps count on the account's clock, which never goes back.
        let clock = self.clock_ms.max(now);
        let earned = event.order.as_ref().map(|order| self.earn(order, clock)).transpose()?;
        if let Some(earned) = &earned {
            points = earned.points;
            self.campaign_usage.record(earned, clock);
        }
        if let Some(after) = event.expire_inactive_after_ms {
            self.expire_inactive_after_ms = after.max(0);
        }
        if let Some(warning) = event.expiry_warning_ms {
            self.expiry_warning_ms = warning.max(0);
        }
        let pending_until_ms = event.active_from_ms.filter(|&at| at > now);
        let effect = if pending_until_ms.is_some() {
            Effect { requested: points, ..Effect::default() }
        } else {
            Effect::earn(points)
        };
        self.lots.add(Lot {
            id: event.event_id.clone(),
            remaining: points,
            earned_at_ms: now,
            pending_until_ms,
            expires_at_ms: event.expires_at_ms,
        });
        self.last_activity_ms = now;
        self.record(event.movement(), effect, Vec::new(), now);
        if let (Some(earned), Some(entry)) = (earned, self.unprojected.last_mut()) {
            entry.earned = Some(Box::new(earned));
        }
        Ok(())
    }

    /// Decides the queued accruals the ledger was asked about, in order:
    /// `verdicts[i]` says whether the ledger lacked the i-th (decide it) or
    /// held it (ignore it, with why).
    pub(super) fn accrue_checked(&mut self, verdicts: &[Result<(), Ignored>], now: Millis) -> Vec<(String, Ignored)> {
        let checked: Vec<PointsEvent> =
            self.pending_events.drain(..verdicts.len().min(self.pending_events.len())).collect();
        let mut ignored = Vec::new();
        for (event, verdict) in checked.into_iter().zip(verdicts) {
            if let Err(why) = verdict.clone().and_then(|()| self.accrue(&event, now)) {
                ignored.push((event.event_id, why));
            }
        }
        ignored
    }
}
