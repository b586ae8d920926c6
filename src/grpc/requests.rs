//! Parses wire requests into validated domain commands, once, at the edge.

use super::pb;
use crate::domain::messages::{PointsEvent, RedemptionRequest};
use crate::domain::{BoundedText, CustomerId, EventId, FieldError, Points};

/// A validated Accrue.
#[derive(Debug, Clone)]
pub struct Accrue {
    /// The account.
    pub customer: CustomerId,
    /// The `add_points` payload.
    pub event: PointsEvent,
}

/// A validated Redeem.
#[derive(Debug, Clone)]
pub struct Redeem {
    /// The account.
    pub customer: CustomerId,
    /// The `redeem_points` payload.
    pub request: RedemptionRequest,
}

impl TryFrom<pb::AccrueRequest> for Accrue {
    type Error = FieldError;

    fn try_from(r: pb::AccrueRequest) -> Result<Self, FieldError> {
        Ok(Self {
            customer: CustomerId::parse(&r.customer_id)?,
            event: PointsEvent {
                event_id: EventId::parse(&r.event_id)?.into_string(),
                points: Points::parse(r.points)?.get(),
                reason: BoundedText::parse("reason", &r.reason)?.into_string(),
                source: BoundedText::parse("source", &r.source)?.into_string(),
            },
        })
    }
}

impl TryFrom<pb::RedeemRequest> for Redeem {
    type Error = FieldError;

    fn try_from(r: pb::RedeemRequest) -> Result<Self, FieldError> {
        Ok(Self {
            customer: CustomerId::parse(&r.customer_id)?,
            request: RedemptionRequest {
                event_id: EventId::parse(&r.event_id)?.into_string(),
                points: Points::parse(r.points)?.get(),
                reward: BoundedText::parse("reward", &r.reward)?.into_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_checked_and_named() {
        let ok = pb::AccrueRequest {
            customer_id: "c1".into(),
            event_id: "e1".into(),
            points: 5,
            reason: "r".into(),
            source: "s".into(),
        };
        assert!(Accrue::try_from(ok.clone()).is_ok());
        type Spoil = fn(&mut pb::AccrueRequest);
        let cases: [(&str, Spoil); 5] = [
            ("customer_id", |r| r.customer_id = "a b".into()),
            ("event_id", |r| r.event_id.clear()),
            ("points", |r| r.points = 0),
            ("reason", |r| r.reason = "x".repeat(257)),
            ("source", |r| r.source = "x".repeat(257)),
        ];
        for (field, spoil) in cases {
            let mut bad = ok.clone();
            spoil(&mut bad);
            assert_eq!(Accrue::try_from(bad).unwrap_err().field, field);
        }
        let redeem =
            pb::RedeemRequest { customer_id: "c1".into(), event_id: "e".into(), points: 1, reward: "x".repeat(257) };
        assert_eq!(Redeem::try_from(redeem).unwrap_err().field, "reward");
    }
}
