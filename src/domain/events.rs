//! The account's event stream: what every applied ledger entry and every
//! tier change tells the outside world.
//!
//! Events are built here from what the ledger records, so the ledger can
//! store them in the same transaction as their entry (a transactional
//! outbox: none lost, none invented) and webhooks deliver exactly these
//! bytes. Each event carries the account's balances after it, so a receiver
//! never needs to call back to learn where the account stands.

use serde::Serialize;
use serde_json::{Value, json};

use super::earning::calendar::{civil_from_days, days_from_civil};
use super::entry::{Entry, TierChange};
use super::kind::EntryKind;
use super::tier::Tier;
use super::time::Millis;

/// Every event type, as receivers subscribe to them.
pub const EVENT_TYPES: [&str; 12] = [
    "points.accrued",
    "points.redeemed",
    "points.reversed",
    "points.adjusted",
    "points.expired",
    "points.activated",
    "points.held",
    "points.captured",
    "points.released",
    "points.expiring",
    "tier.changed",
    "account.opened",
];

/// The type of the event an entry of `kind` makes.
pub fn entry_event_type(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Accrual => "points.accrued",
        EntryKind::Redemption => "points.redeemed",
        EntryKind::Reversal => "points.reversed",
        EntryKind::Adjustment => "points.adjusted",
        EntryKind::Expiry => "points.expired",
        EntryKind::Activation => "points.activated",
        EntryKind::Hold => "points.held",
        EntryKind::Capture => "points.captured",
        EntryKind::Release => "points.released",
        EntryKind::Expiring => "points.expiring",
        EntryKind::Opening => "account.opened",
    }
}

/// Whether `pattern` (an exact type, `points.*`, or `*`) selects `event_type`.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// Whether `pattern` can select any event type: a typo in an endpoint's
/// subscription is refused at start, not silently never delivered.
pub fn pattern_is_known(pattern: &str) -> bool {
    EVENT_TYPES.iter().any(|t| type_matches(pattern, t))
}

/// Where the account stands right after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AccountAfter {
    /// Spendable points.
    pub balance: i64,
    /// Points ever earned.
    pub lifetime_points: i64,
    /// Earned points not spendable yet.
    pub pending_points: i64,
    /// Points set aside by open holds.
    pub held_points: i64,
    /// The tier its lifetime points give.
    pub tier: &'static str,
}

impl AccountAfter {
    /// The account right after `entry`.
    pub fn of(entry: &Entry) -> Self {
        Self {
            balance: entry.after.balance,
            lifetime_points: entry.after.lifetime,
            pending_points: entry.pending_after,
            held_points: entry.held_after,
            tier: Tier::for_lifetime(entry.after.lifetime).as_str(),
        }
    }
}

/// An event ready to store: its type, when it happened, and its `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// One of [`EVENT_TYPES`].
    pub event_type: &'static str,
    /// When it happened on the account's clock (0: when recorded).
    pub occurred_at_ms: Millis,
    /// The type's payload, including `account`.
    pub data: Value,
}

impl NewEvent {
    /// The event an applied entry makes. `event_id` is the id the ledger
    /// stored it under (suffixed if the account had forgotten a resend).
    pub fn of_entry(entry: &Entry, event_id: &str) -> Self {
        let m = &entry.movement;
        let mut data = json!({
            "entry_seq": entry.seq,
            "event_id": event_id,
            "kind": m.kind.as_str(),
            "requested": entry.effect.requested,
            "points": entry.effect.balance_delta,
            "lifetime_delta": entry.effect.lifetime_delta,
            "reason": m.reason,
            "account": AccountAfter::of(entry),
        });
        let extra = data.as_object_mut().expect("object");
        if !m.source.is_empty() {
            extra.insert("source".into(), m.source.clone().into());
        }
        if let Some(original) = &m.reverses {
            extra.insert("reverses".into(), original.clone().into());
        }
        if entry.effect.shortfall != 0 {
            extra.insert("shortfall".into(), entry.effect.shortfall.into());
        }
        if let Some(at) = entry.expires_at_ms {
            // An announcement: what expires, from when; `points` moved nothing.
            extra.insert("expiring_points".into(), entry.effect.requested.into());
            extra.insert("expires_at".into(), rfc3339(at).into());
        }
        if !entry.draws.is_empty() {
            let lots: Vec<Value> = entry.draws.iter().map(|d| json!({"lot": d.lot, "points": d.points})).collect();
            extra.insert("lots".into(), lots.into());
        }
        if let Some(earned) = &entry.earned {
            // An order's accrual tells how its points were computed.
            extra.insert("breakdown".into(), json!(earned));
        }
        if !entry.returned.is_empty() {
            extra.insert("returned_lines".into(), json!(entry.returned));
        }
        Self { event_type: entry_event_type(m.kind), occurred_at_ms: entry.at_ms, data }
    }

    /// The event a tier change makes; `account` is where the entry that
    /// caused it left the account (unknown for changes recorded before
    /// events existed).
    pub fn of_tier_change(change: &TierChange, account: Option<AccountAfter>, at_ms: Millis) -> Self {
        let mut data = json!({
            "old_tier": change.old_tier.as_str(),
            "new_tier": change.new_tier.as_str(),
            "lifetime_points": change.lifetime_points,
            "caused_by": change.caused_by,
        });
        if let Some(account) = account {
            data["account"] = json!(account);
        }
        Self { event_type: "tier.changed", occurred_at_ms: at_ms, data }
    }
}

/// The event's id, unique across accounts: receivers deduplicate on it
/// (the Standard Webhooks `webhook-id`). The sequence number is last and
/// numeric, so no two accounts' ids can collide.
pub fn event_id(customer_id: &str, seq: u64) -> String {
    format!("evt_{customer_id}_{seq}")
}

/// The body delivered for an event and stored with it: the Standard Webhooks
/// shape (`type`, `timestamp`, `data`) with the id, account and its sequence.
pub fn body(id: &str, customer_id: &str, seq: u64, event: &NewEvent, occurred_at_ms: Millis) -> String {
    json!({
        "id": id,
        "type": event.event_type,
        "timestamp": rfc3339(occurred_at_ms),
        "customer_id": customer_id,
        "sequence": seq,
        "data": event.data,
    })
    .to_string()
}

/// `ms` since the epoch as an RFC 3339 UTC time with milliseconds.
pub fn rfc3339(ms: Millis) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1_000 % 60, rem % 1_000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// The inverse of [`rfc3339`] (UTC, `Z`, optional fraction), for readers
/// of event bodies.
pub fn parse_rfc3339(text: &str) -> Option<Millis> {
    let t = text.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut h = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (h.next()??, h.next()??, h.next()??);
    let milli = format!("{fraction:0<3}")[..3].parse::<i64>().ok()?;
    let days = days_from_civil(year, month, day);
    Some(days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1_000 + milli)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::movement::{Effect, Movement, Totals};

    fn entry(kind: EntryKind, points: i64, balance: i64, lifetime: i64) -> Entry {
        Entry {
            seq: 7,
            movement: Movement {
                event_id: "order-1".into(),
                kind,
                points,
                reason: "why".into(),
                source: String::new(),
                reverses: None,
            },
            effect: Effect { requested: points, balance_delta: points, lifetime_delta: points.max(0), shortfall: 0 },
            after: Totals { balance, lifetime },
            tier_change: None,
            draws: vec![],
            earned: None,
            returned: vec![],
            at_ms: 0,
            pending_after: 3,
            held_after: 2,
            expires_at_ms: None,
        }
    }

    #[test]
    fn every_entry_kind_has_a_listed_type_and_patterns_select_by_prefix() {
        for kind in EntryKind::ALL {
            assert!(EVENT_TYPES.contains(&entry_event_type(kind)), "{kind:?}");
        }
        assert!(type_matches("points.*", "points.accrued"));
        assert!(type_matches("*", "tier.changed"));
        assert!(!type_matches("points.*", "tier.changed"));
        assert!(!type_matches("points.accrue", "points.accrued"), "exact names are exact");
        assert!(pattern_is_known("tier.changed") && pattern_is_known("points.*"));
        assert!(!pattern_is_known("point.accrued") && !pattern_is_known("tiers.*"));
    }

    #[test]
    fn an_entry_event_carries_the_balances_after_it_and_only_the_fields_it_has() {
        let e = NewEvent::of_entry(&entry(EntryKind::Accrual, 1_500, 1_500, 1_500), "order-1");
        assert_eq!(e.event_type, "points.accrued");
        let account = &e.data["account"];
        assert_eq!(
            (account["balance"].as_i64(), account["pending_points"].as_i64(), account["held_points"].as_i64()),
            (Some(1_500), Some(3), Some(2))
        );
        assert_eq!(account["tier"], "Silver");
        assert!(e.data.get("source").is_none() && e.data.get("reverses").is_none());
        let body: Value = serde_json::from_str(&body("evt_c_1", "c", 1, &e, 1_000)).unwrap();
        assert_eq!(body["type"], "points.accrued");
        assert_eq!(body["sequence"], 1);
        assert_eq!(body["data"]["points"], 1_500);
    }

    #[test]
    fn ids_never_collide_across_accounts() {
        assert_ne!(event_id("a_1", 2), event_id("a", 12));
        assert_eq!(event_id("a", 12), "evt_a_12");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_796_000_000_000), "2026-11-30T00:53:20.000Z");
        for ms in [0, 951_782_400_123, 1_796_000_000_007, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_rfc3339("2026-11-29T07:00:00Z"), Some(1_795_935_600_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
