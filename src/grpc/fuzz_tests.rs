//! Property tests of every RPC's request conversion: random strings (any
//! Unicode, control characters, too long), extreme and negative numbers.
//! No input may panic; every rejection must be INVALID_ARGUMENT naming one of
//! the request's fields; Accrue and Redeem must agree with the documented
//! input rules, written here a second time, independently.

use proptest::prelude::*;
use tonic::{Code, Status};

use super::ApiError;
use super::pb;
use super::requests::{Accrue, Adjust, History, Redeem, Reverse};
use crate::domain::{CustomerId, FieldError};

/// Strings that probe every rule: valid ids, too long ids, any characters,
/// control characters, long text, empty.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9._:@-]{1,128}",
        "[A-Za-z0-9._:@-]{129,140}",
        prop::collection::vec(any::<char>(), 0..300).prop_map(String::from_iter),
        prop::collection::vec(prop_oneof![Just('\0'), Just('\n'), Just('\u{7f}'), Just('é'), Just('a')], 0..6)
            .prop_map(String::from_iter),
        "[a-z ]{250,260}",
        Just(String::new()),
    ]
}

/// Mostly valid ids, so that the other fields' rules are reached too.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[A-Za-z0-9._:@-]{1,128}", 1 => text()]
}

/// Mostly valid points, for the same reason.
fn points() -> impl Strategy<Value = i64> {
    prop_oneof![3 => 1i64..=1_000_000_000, 1 => number()]
}

fn number() -> impl Strategy<Value = i64> {
    prop_oneof![any::<i64>(), -3i64..3, 999_999_990i64..1_000_000_010, Just(i64::MIN), Just(i64::MAX)]
}

fn small() -> impl Strategy<Value = i32> {
    prop_oneof![any::<i32>(), -2i32..600]
}

/// A rejection as the client sees it: INVALID_ARGUMENT naming one of `fields`.
fn check_rejection(e: FieldError, fields: &[&str]) -> Result<(), TestCaseError> {
    let field = e.field;
    let status = Status::from(ApiError::from(e));
    prop_assert_eq!(status.code(), Code::InvalidArgument);
    prop_assert!(fields.contains(&field), "{field} is not a field of the request");
    prop_assert!(status.message().starts_with(field), "{}", status.message());
    Ok(())
}

fn valid_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "._:@-".contains(c))
}

fn valid_text(s: &str) -> bool {
    s.chars().count() <= 256 && !s.chars().any(char::is_control)
}

fn valid_points(p: i64) -> bool {
    (1..=1_000_000_000).contains(&p)
}

proptest! {
    #[test]
    fn accrue(customer_id in id(), event_id in id(), points in points(), reason in text(), source in text()) {
        let expected = valid_id(&customer_id) && valid_id(&event_id) && valid_points(points)
            && valid_text(&reason) && valid_text(&source);
        let request = pb::AccrueRequest { customer_id, event_id, points, reason, source , ..Default::default() };
        match Accrue::try_from(request.clone()) {
            Ok(cmd) => {
                prop_assert!(expected, "accepted {request:?}");
                prop_assert_eq!(cmd.customer.as_str(), request.customer_id.as_str());
                prop_assert_eq!(cmd.event.points, request.points);
            }
            Err(e) => {
                prop_assert!(!expected, "refused a valid request {request:?}: {e}");
                check_rejection(e, &["customer_id", "event_id", "points", "reason", "source"])?;
            }
        }
    }

    #[test]
    fn redeem(customer_id in id(), event_id in id(), points in points(), reward in text()) {
        let expected = valid_id(&customer_id) && valid_id(&event_id) && valid_points(points) && valid_text(&reward);
        let request = pb::RedeemRequest { customer_id, event_id, points, reward };
        match Redeem::try_from(request.clone()) {
            Ok(cmd) => {
                prop_assert!(expected, "accepted {request:?}");
                prop_assert_eq!(cmd.request.points, request.points);
            }
            Err(e) => {
                prop_assert!(!expected, "refused a valid request {request:?}: {e}");
                check_rejection(e, &["customer_id", "event_id", "points", "reward"])?;
            }
        }
    }

    #[test]
    fn get_summary(customer_id in text()) {
        match CustomerId::parse(&customer_id) {
            Ok(id) => prop_assert!(valid_id(id.as_str())),
            Err(e) => {
                prop_assert!(!valid_id(&customer_id));
                check_rejection(e, &["customer_id"])?;
            }
        }
    }

    #[test]
    fn get_history(customer_id in id(), page_size in small(), page_token in text()) {
        let request = pb::GetHistoryRequest { customer_id, page_size, page_token };
        match History::try_from(request) {
            Ok(cmd) => {
                prop_assert!((1..=500).contains(&cmd.page_size));
                prop_assert!(cmd.before_seq.is_none_or(|seq| seq > 0));
            }
            Err(e) => check_rejection(e, &["customer_id", "page_size", "page_token"])?,
        }
    }

    #[test]
    fn reverse(
        customer_id in id(),
        reverse_event_id in id(),
        original_event_id in id(),
        points in proptest::option::of(points()),
        reason in text(),
    ) {
        let request = pb::ReverseRequest {
            customer_id,
            reverse_event_id,
            original_event_id,
            points,
            reason,
            lines: Vec::new(),
        };
        match Reverse::try_from(request.clone()) {
            Ok(cmd) => {
                prop_assert!(valid_id(&request.reverse_event_id) && valid_id(&request.original_event_id));
                prop_assert!(request.points.is_none_or(valid_points) && valid_text(&cmd.request.reason));
            }
            Err(e) => check_rejection(
                e,
                &["customer_id", "reverse_event_id", "original_event_id", "points", "reason"],
            )?,
        }
    }

    #[test]
    fn adjust(customer_id in id(), event_id in id(), points in number(), reason in text()) {
        let request = pb::AdjustRequest { customer_id, event_id, points, reason };
        match Adjust::try_from(request.clone()) {
            Ok(cmd) => {
                prop_assert!(request.points != 0 && request.points.unsigned_abs() <= 1_000_000_000);
                prop_assert!(!cmd.request.reason.is_empty() && valid_text(&cmd.request.reason));
            }
            Err(e) => check_rejection(e, &["customer_id", "event_id", "points", "reason"])?,
        }
    }
}
