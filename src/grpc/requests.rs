//! Parses wire requests into validated domain commands, once, at the edge.

use super::pb;
use crate::domain::earning::{Order, OrderLine, ReturnedLine, Tender, check_lines};
use crate::domain::messages::{PointsEvent, RedemptionRequest};
use crate::domain::program::LotRequest;
use crate::domain::{
    AdjustmentRequest, BoundedText, CaptureRequest, CustomerId, EventId, FieldError, Millis, Points, ReleaseRequest,
    ReserveRequest, ReversalRequest,
};

/// History page size when the caller leaves it 0.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Largest history page.
pub const MAX_PAGE_SIZE: u32 = 500;

/// A validated Accrue.
#[derive(Debug, Clone)]
pub struct Accrue {
    /// The account.
    pub customer: CustomerId,
    /// The `add_points` payload (its dates set from `lot` and the program).
    pub event: PointsEvent,
    /// The accrual's own dates, if it has any.
    pub lot: LotRequest,
    /// The order whose points the earning rules compute, instead of `points`.
    pub order: Option<Order>,
}

/// A validated PreviewAccrual.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The customer, if known.
    pub customer: Option<CustomerId>,
    /// The order.
    pub order: Order,
}

/// Parses and checks a wire order.
pub fn order(o: Option<pb::Order>) -> Result<Order, FieldError> {
    let o = o.ok_or_else(|| FieldError::new("order", "is required"))?;
    let occurred_at = o.occurred_at.ok_or_else(|| FieldError::new("order.occurred_at", "is required"))?;
    let order = Order {
        order_id: o.order_id,
        currency: o.currency,
        channel: o.channel,
        occurred_at_ms: timestamp_ms("order.occurred_at", &occurred_at)?,
        lines: o
            .lines
            .into_iter()
            .map(|l| OrderLine {
                sku: l.sku,
                categories: l.categories,
                quantity: l.quantity,
                unit_price: l.unit_price,
                discount: l.discount,
            })
            .collect(),
        shipping: o.shipping,
        tax: o.tax,
        tenders: o.tenders.into_iter().map(|t| Tender { kind: t.r#type, amount: t.amount }).collect(),
    };
    order.validate()?;
    Ok(order)
}

impl TryFrom<pb::PreviewAccrualRequest> for Preview {
    type Error = FieldError;

    fn try_from(r: pb::PreviewAccrualRequest) -> Result<Self, FieldError> {
        let customer = match r.customer_id.as_str() {
            "" => None,
            id => Some(CustomerId::parse(id)?),
        };
        Ok(Self { customer, order: order(r.order)? })
    }
}

/// A validated Reserve, Capture or Release.
#[derive(Debug, Clone)]
pub struct HoldCommand<T> {
    /// The account.
    pub customer: CustomerId,
    /// The update's payload.
    pub request: T,
}

/// Milliseconds since the Unix epoch of a wire timestamp.
pub fn timestamp_ms(field: &'static str, t: &prost_types::Timestamp) -> Result<Millis, FieldError> {
    if !(0..1_000_000_000).contains(&t.nanos) || !(0..=253_402_300_799).contains(&t.seconds) {
        return Err(FieldError::new(field, "is not a valid timestamp"));
    }
    Ok(t.seconds * 1_000 + i64::from(t.nanos) / 1_000_000)
}

/// The wire timestamp of `ms`.
pub fn timestamp(ms: Millis) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

impl TryFrom<pb::ReserveRequest> for HoldCommand<ReserveRequest> {
    type Error = FieldError;

    fn try_from(r: pb::ReserveRequest) -> Result<Self, FieldError> {
        let customer = CustomerId::parse(&r.customer_id)?;
        let ttl = r.ttl.ok_or_else(|| FieldError::new("ttl", "is required"))?;
        if !(0..1_000_000_000).contains(&ttl.nanos) || !(0..=i64::MAX / 2_000).contains(&ttl.seconds) {
            return Err(FieldError::new("ttl", "must be between 1 second and 30 days"));
        }
        let ttl_ms = ttl.seconds * 1_000 + i64::from(ttl.nanos) / 1_000_000;
        let request = ReserveRequest { hold_id: r.hold_id, points: r.points, ttl_ms, ledger_known: false };
        request.validate()?;
        Ok(Self { customer, request })
    }
}

impl TryFrom<pb::CaptureRequest> for HoldCommand<CaptureRequest> {
    type Error = FieldError;

    fn try_from(r: pb::CaptureRequest) -> Result<Self, FieldError> {
        let customer = CustomerId::parse(&r.customer_id)?;
        let request = CaptureRequest { hold_id: r.hold_id, points: r.points, event_id: r.event_id, reward: r.reward };
        request.validate()?;
        Ok(Self { customer, request })
    }
}

impl TryFrom<pb::ReleaseRequest> for HoldCommand<ReleaseRequest> {
    type Error = FieldError;

    fn try_from(r: pb::ReleaseRequest) -> Result<Self, FieldError> {
        let customer = CustomerId::parse(&r.customer_id)?;
        let request = ReleaseRequest { hold_id: r.hold_id };
        request.validate()?;
        Ok(Self { customer, request })
    }
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
        let customer = CustomerId::parse(&r.customer_id)?;
        let event_id = EventId::parse(&r.event_id)?.into_string();
        let (points, order) = match (r.points, r.order) {
            (0, None) => return Err(FieldError::new("points", "give points (1 to 1,000,000,000) or an order")),
            (0, some @ Some(_)) => (0, Some(order(some)?)),
            (_, Some(_)) => return Err(FieldError::new("order", "give points or an order, not both")),
            (points, None) => (Points::parse(points)?.get(), None),
        };
        Ok(Self {
            customer,
            order,
            event: PointsEvent {
                event_id,
                points,
                reason: BoundedText::parse("reason", &r.reason)?.into_string(),
                source: BoundedText::parse("source", &r.source)?.into_string(),
                ledger_checked: false,
                active_from_ms: None,
                expires_at_ms: None,
                expire_inactive_after_ms: None,
                expiry_warning_ms: None,
                order: None,
            },
            lot: LotRequest {
                pending_days: r.pending_days.map(i64::from),
                active_from_ms: r.active_from.as_ref().map(|t| timestamp_ms("active_from", t)).transpose()?,
                expires_in_days: r.expires_in_days.map(i64::from),
                expires_at_ms: r.expires_at.as_ref().map(|t| timestamp_ms("expires_at", t)).transpose()?,
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

/// A validated Reverse.
#[derive(Debug, Clone)]
pub struct Reverse {
    /// The account.
    pub customer: CustomerId,
    /// The `reverse_points` payload.
    pub request: ReversalRequest,
}

/// A validated Adjust.
#[derive(Debug, Clone)]
pub struct Adjust {
    /// The account.
    pub customer: CustomerId,
    /// The `adjust_points` payload.
    pub request: AdjustmentRequest,
}

/// A validated GetHistory.
#[derive(Debug, Clone)]
pub struct History {
    /// The account.
    pub customer: CustomerId,
    /// Entries per page.
    pub page_size: u32,
    /// Continue below this ledger position; `None` for the newest page.
    pub before_seq: Option<i64>,
}

impl TryFrom<pb::ReverseRequest> for Reverse {
    type Error = FieldError;

    fn try_from(r: pb::ReverseRequest) -> Result<Self, FieldError> {
        let customer = CustomerId::parse(&r.customer_id)?;
        EventId::parse(&r.reverse_event_id).map_err(|e| FieldError::new("reverse_event_id", e.reason))?;
        let request = ReversalRequest {
            event_id: r.reverse_event_id,
            original_event_id: r.original_event_id,
            points: r.points,
            reason: r.reason,
            ledger: None,
            allow_negative: false,
            expires_at_ms: None,
            lines: r
                .lines
                .into_iter()
                .map(|l| {
                    let line =
                        u32::try_from(l.line).map_err(|_| FieldError::new("lines.line", "must not be negative"))?;
                    Ok(ReturnedLine { line, quantity: l.quantity })
                })
                .collect::<Result<_, FieldError>>()?,
        };
        if !request.lines.is_empty() && request.points.is_some() {
            return Err(FieldError::new("lines", "give points or lines, not both"));
        }
        check_lines(&request.lines)?;
        request.movement()?;
        Ok(Self { customer, request })
    }
}

impl TryFrom<pb::AdjustRequest> for Adjust {
    type Error = FieldError;

    fn try_from(r: pb::AdjustRequest) -> Result<Self, FieldError> {
        let customer = CustomerId::parse(&r.customer_id)?;
        let request =
            AdjustmentRequest { event_id: r.event_id, points: r.points, reason: r.reason, expires_at_ms: None };
        request.movement()?;
        Ok(Self { customer, request })
    }
}

impl TryFrom<pb::GetHistoryRequest> for History {
    type Error = FieldError;

    fn try_from(r: pb::GetHistoryRequest) -> Result<Self, FieldError> {
        let customer = CustomerId::parse(&r.customer_id)?;
        let (page_size, before_seq) = page(r.page_size, &r.page_token)?;
        Ok(Self { customer, page_size, before_seq })
    }
}

/// Cuts rows read with one more than `page_size` (to learn whether more
/// follow) into the page and the next page's token: the position of its
/// last row, or empty on the last page.
pub fn cut_page<T>(mut rows: Vec<T>, page_size: u32, position: impl Fn(&T) -> i64) -> (Vec<T>, String) {
    let more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let token = match rows.last() {
        Some(last) if more => position(last).to_string(),
        _ => String::new(),
    };
    (rows, token)
}

/// A page request's size (0: the default) and token (a position this
/// service issued; empty: the first page).
pub fn page(page_size: i32, page_token: &str) -> Result<(u32, Option<i64>), FieldError> {
    let size = match page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if (1..=MAX_PAGE_SIZE as i32).contains(&n) => n as u32,
        n => return Err(FieldError::new("page_size", format!("must be between 0 and {MAX_PAGE_SIZE}, got {n}"))),
    };
    let position = match page_token {
        "" => None,
        token => Some(
            token
                .parse::<i64>()
                .ok()
                .filter(|seq| *seq > 0)
                .ok_or_else(|| FieldError::new("page_token", "is not a token this service issued"))?,
        ),
    };
    Ok((size, position))
}

/// A parsed ListEvents request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEvents {
    /// The account.
    pub customer: CustomerId,
    /// Events per page.
    pub page_size: u32,
    /// Continue after (oldest first) or before (newest first) this sequence.
    pub from_seq: Option<i64>,
    /// Newest first.
    pub newest_first: bool,
}

impl TryFrom<pb::ListEventsRequest> for ListEvents {
    type Error = FieldError;

    fn try_from(r: pb::ListEventsRequest) -> Result<Self, FieldError> {
        let customer = CustomerId::parse(&r.customer_id)?;
        let (page_size, from_seq) = page(r.page_size, &r.page_token)?;
        Ok(Self { customer, page_size, from_seq, newest_first: r.newest_first })
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
            ..Default::default()
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

    #[test]
    fn corrections_and_history_name_the_bad_field() {
        let reverse = |id: &str, original: &str, points| pb::ReverseRequest {
            customer_id: "c".into(),
            reverse_event_id: id.into(),
            original_event_id: original.into(),
            points,
            reason: "refund".into(),
            lines: Vec::new(),
        };
        assert!(Reverse::try_from(reverse("r1", "o1", None)).is_ok());
        assert_eq!(Reverse::try_from(reverse("", "o1", None)).unwrap_err().field, "reverse_event_id");
        assert_eq!(Reverse::try_from(reverse("r1", "", None)).unwrap_err().field, "original_event_id");
        assert_eq!(Reverse::try_from(reverse("r1", "o1", Some(-4))).unwrap_err().field, "points");
        let adjust = |points, reason: &str| pb::AdjustRequest {
            customer_id: "c".into(),
            event_id: "a1".into(),
            points,
            reason: reason.into(),
        };
        assert!(Adjust::try_from(adjust(-10, "goodwill")).is_ok());
        assert_eq!(Adjust::try_from(adjust(0, "x")).unwrap_err().field, "points");
        assert_eq!(Adjust::try_from(adjust(10, "")).unwrap_err().field, "reason");
        let history = |page_size, token: &str| pb::GetHistoryRequest {
            customer_id: "c".into(),
            page_size,
            page_token: token.into(),
        };
        assert_eq!(History::try_from(history(0, "")).unwrap().page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(History::try_from(history(10, "42")).unwrap().before_seq, Some(42));
        assert_eq!(History::try_from(history(501, "")).unwrap_err().field, "page_size");
        assert_eq!(History::try_from(history(-1, "")).unwrap_err().field, "page_size");
        assert_eq!(History::try_from(history(10, "abc")).unwrap_err().field, "page_token");
        assert_eq!(History::try_from(history(10, "-3")).unwrap_err().field, "page_token");
    }
}
