//! The loyalty program's lifecycle settings and how each request's own
//! dates are checked against them. The gRPC layer resolves every accrual's
//! dates here, with its clock, into absolute times the account then keeps:
//! the account never reads the program, so changing a setting affects new
//! points only and never a replayed history.

use super::error::FieldError;
pub use super::time::DAY_MS;
use super::time::Millis;

/// Longest pending period: a year.
pub const MAX_PENDING_MS: Millis = 366 * DAY_MS;
/// Longest lifetime of a lot: ten years.
pub const MAX_EXPIRY_MS: Millis = 3_660 * DAY_MS;

/// What a clawback does when the points were already spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RefundPolicy {
    /// The balance floors at zero and the entry records the shortfall.
    #[default]
    WithinBalance,
    /// The balance goes below zero; later points pay it back first and
    /// Redeem is refused while it is negative.
    AllowNegative,
}

impl RefundPolicy {
    /// Parses the setting's value.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "within_balance" => Some(Self::WithinBalance),
            "allow_negative" => Some(Self::AllowNegative),
            _ => None,
        }
    }
}

/// How long before points expire they are announced, unless set.
pub const DEFAULT_EXPIRY_WARNING_MS: Millis = 7 * DAY_MS;

/// The program's lifecycle settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// How long new points stay pending (0: active at once).
    pub pending_ms: Millis,
    /// How long after it is earned a lot expires (`None`: never).
    pub lot_expiry_ms: Option<Millis>,
    /// How long without an accrual or a spend before the whole balance
    /// expires (`None`: never).
    pub inactivity_expiry_ms: Option<Millis>,
    /// What a clawback beyond the balance does.
    pub refund: RefundPolicy,
    /// How long before points expire a `points.expiring` event announces
    /// them (0: never).
    pub expiry_warning_ms: Millis,
}

impl Default for Program {
    fn default() -> Self {
        Self {
            pending_ms: 0,
            lot_expiry_ms: None,
            inactivity_expiry_ms: None,
            refund: RefundPolicy::default(),
            expiry_warning_ms: DEFAULT_EXPIRY_WARNING_MS,
        }
    }
}

/// An accrual's own dates, as the caller sent them (all optional).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LotRequest {
    /// Days pending, instead of the program's period.
    pub pending_days: Option<i64>,
    /// When the points become spendable, instead of a period.
    pub active_from_ms: Option<Millis>,
    /// Days until the lot expires, instead of the program's.
    pub expires_in_days: Option<i64>,
    /// When the lot expires, instead of a period.
    pub expires_at_ms: Option<Millis>,
}

/// An accrual's dates, resolved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LotDates {
    /// When the points become spendable (`None`: at once).
    pub active_from_ms: Option<Millis>,
    /// When they expire (`None`: never).
    pub expires_at_ms: Option<Millis>,
}

impl Program {
    /// Resolves an accrual's dates at `now`: the request's own, else the
    /// program's. Expiry counts from when the points become active.
    pub fn lot_dates(&self, req: &LotRequest, now: Millis) -> Result<LotDates, FieldError> {
        if req.pending_days.is_some() && req.active_from_ms.is_some() {
            return Err(FieldError::new("active_from", "give pending_days or active_from, not both"));
        }
        if req.expires_in_days.is_some() && req.expires_at_ms.is_some() {
            return Err(FieldError::new("expires_at", "give expires_in_days or expires_at, not both"));
        }
        let active_from = match (req.pending_days, req.active_from_ms) {
            (Some(days), _) => {
                if !(0..=MAX_PENDING_MS / DAY_MS).contains(&days) {
                    return Err(FieldError::new("pending_days", format!("must be between 0 and 366, got {days}")));
                }
                now + days * DAY_MS
            }
            (None, Some(at)) => {
                if at > now + MAX_PENDING_MS {
                    return Err(FieldError::new("active_from", "must be within a year from now"));
                }
                at.max(now)
            }
            (None, None) => now + self.pending_ms,
        };
        let expires_at = match (req.expires_in_days, req.expires_at_ms) {
            (Some(days), _) => {
                if !(1..=MAX_EXPIRY_MS / DAY_MS).contains(&days) {
                    return Err(FieldError::new("expires_in_days", format!("must be between 1 and 3660, got {days}")));
                }
                Some(active_from + days * DAY_MS)
            }
            (None, Some(at)) => {
                if at <= now {
                    return Err(FieldError::new("expires_at", "is in the past"));
                }
                if at <= active_from {
                    return Err(FieldError::new("expires_at", "must be after the points become active"));
                }
                if at > now + MAX_PENDING_MS + MAX_EXPIRY_MS {
                    return Err(FieldError::new("expires_at", "must be within ten years"));
                }
                Some(at)
            }
            (None, None) => self.lot_expiry_ms.map(|after| active_from + after),
        };
        if self.inactivity_expiry_ms.is_some_and(|idle| active_from - now >= idle) {
            return Err(FieldError::new("pending_days", "must be shorter than the program's inactivity period"));
        }
        Ok(LotDates { active_from_ms: (active_from > now).then_some(active_from), expires_at_ms: expires_at })
    }

    /// When points a correction adds at `now` expire.
    pub fn correction_expiry(&self, now: Millis) -> Option<Millis> {
        self.lot_expiry_ms.map(|after| now + after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_000 * DAY_MS;

    #[test]
    fn the_program_sets_the_dates_a_request_does_not() {
        let p = Program { pending_ms: 14 * DAY_MS, lot_expiry_ms: Some(365 * DAY_MS), ..Program::default() };
        let d = p.lot_dates(&LotRequest::default(), NOW).unwrap();
        assert_eq!(d.active_from_ms, Some(NOW + 14 * DAY_MS));
        assert_eq!(d.expires_at_ms, Some(NOW + 379 * DAY_MS), "expiry counts from activation");
        let own = LotRequest { pending_days: Some(0), expires_in_days: Some(30), ..LotRequest::default() };
        assert_eq!(
            p.lot_dates(&own, NOW).unwrap(),
            LotDates { active_from_ms: None, expires_at_ms: Some(NOW + 30 * DAY_MS) }
        );
        assert_eq!(Program::default().lot_dates(&LotRequest::default(), NOW).unwrap(), LotDates::default());
    }

    #[test]
    fn absurd_dates_name_their_field() {
        let p = Program::default();
        let field = |r: LotRequest| p.lot_dates(&r, NOW).unwrap_err().field;
        assert_eq!(field(LotRequest { pending_days: Some(-1), ..Default::default() }), "pending_days");
        assert_eq!(field(LotRequest { pending_days: Some(400), ..Default::default() }), "pending_days");
        assert_eq!(field(LotRequest { expires_in_days: Some(0), ..Default::default() }), "expires_in_days");
        assert_eq!(field(LotRequest { expires_at_ms: Some(NOW - 1), ..Default::default() }), "expires_at");
        assert_eq!(
            field(LotRequest { active_from_ms: Some(NOW + 2 * MAX_PENDING_MS), ..Default::default() }),
            "active_from"
        );
        let inverted =
            LotRequest { active_from_ms: Some(NOW + 10), expires_at_ms: Some(NOW + 5), ..Default::default() };
        assert_eq!(field(inverted), "expires_at");
        let both = LotRequest { pending_days: Some(1), active_from_ms: Some(NOW), ..Default::default() };
        assert_eq!(field(both), "active_from");
        let past = LotRequest { active_from_ms: Some(NOW - DAY_MS), ..Default::default() };
        assert_eq!(p.lot_dates(&past, NOW).unwrap().active_from_ms, None, "a past start is active at once");
    }
}
