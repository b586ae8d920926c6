//! Orders end to end: the shared application runs the README's example rule
//! set (`docs/earning-rules.example.yaml`); PreviewAccrual, Accrue with an
//! order, the ledger's breakdown, line returns and bad orders, on the real
//! dev server and the binary's ledger (SQLite, and PostgreSQL in the second run).

use std::time::Duration;

use loyalty::grpc::pb;
use tonic::Code;

use crate::common::{client, ledger, rows_when, summary_when};

const SETTLE: Duration = Duration::from_secs(30);

fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A day before the binary started: the same order is the same order.
fn yesterday() -> i64 {
    static AT: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *AT.get_or_init(|| now_seconds() - 86_400)
}

/// The most recent Saturday 15:00 UTC in the past (1970-01-03 was a Saturday).
fn last_saturday_afternoon() -> i64 {
    let week = 7 * 86_400;
    let first = 2 * 86_400 + 15 * 3_600;
    let now = now_seconds();
    first + (now - first).div_euclid(week) * week
}

fn line(sku: &str, category: &str, quantity: i64, unit_price: i64, discount: i64) -> pb::OrderLine {
    pb::OrderLine { sku: sku.into(), categories: vec![category.into()], quantity, unit_price, discount }
}

/// The README's example A: shoes (89.99, 10.00 off), three pairs of socks, a gift card.
fn example_a(order_id: &str) -> pb::Order {
    pb::Order {
        order_id: order_id.into(),
        currency: "USD".into(),
        channel: "web".into(),
        // Yesterday: the API takes orders of the last 90 days.
        occurred_at: Some(prost_types::Timestamp { seconds: yesterday(), nanos: 0 }),
        lines: vec![
            line("SHOE-1", "shoes", 1, 8_999, 1_000),
            line("SOCK-3", "socks", 3, 499, 0),
            line("GIFT-CARD-50", "gift", 1, 5_000, 0),
        ],
        ..Default::default()
    }
}

fn accrue_order(customer: &str, event_id: &str, order: pb::Order) -> pb::AccrueRequest {
    pb::AccrueRequest {
        customer_id: customer.into(),
        event_id: event_id.into(),
        reason: "purchase".into(),
        source: "tests".into(),
        order: Some(order),
        ..Default::default()
    }
}

fn return_lines(customer: &str, id: &str, original: &str, lines: &[(i32, i64)]) -> pb::ReverseRequest {
    pb::ReverseRequest {
        customer_id: customer.into(),
        reverse_event_id: id.into(),
        original_event_id: original.into(),
        reason: "returned".into(),
        lines: lines.iter().map(|&(line, quantity)| pb::ReturnedLine { line, quantity }).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_order_earns_what_its_preview_said_and_its_lines_come_back_exactly() {
    let mut grpc = client().await;
    let c = "orders-a";
    // A preview for a customer without an account: a new Bronze customer.
    let preview = grpc
        .preview_accrual(pb::PreviewAccrualRequest { customer_id: c.into(), order: Some(example_a("A")) })
        .await
        .expect("preview")
        .into_inner();
    assert_eq!((preview.points, preview.tier.as_str()), (189, "Bronze"));
    let breakdown = preview.breakdown.clone().unwrap();
    assert_eq!((breakdown.exact_points.as_str(), breakdown.rounding.as_str()), ("189.95", "floor"));
    assert_eq!(breakdown.rule_set.as_ref().map(|r| (r.id.as_str(), r.version)), Some(("standard", 1)));
    // Accrue the order: the account credits what the preview said, and records the breakdown.
    let r = grpc.accrue(accrue_order(c, "order-A", example_a("A"))).await.expect("accrue").into_inner();
    assert_eq!((r.most_points, r.rule_set.unwrap().version), (364, 1), "Platinum's double is the most it can earn");
    let s = summary_when(&mut grpc, c, SETTLE, |s| s.lifetime_points > 0).await;
    assert_eq!((s.points_balance, s.lifetime_points), (189, 189));
    let rows = rows_when(&ledger().await, c, 1).await;
    let earned = rows[0].order.earned.as_ref().expect("the accrual's breakdown");
    assert_eq!((earned.points, earned.exact.to_string()), (189, "189.95".to_owned()));
    let history = grpc
        .get_history(pb::GetHistoryRequest { customer_id: c.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.entries[0].breakdown, Some(breakdown), "history shows what the preview showed");
    let events = grpc
        .list_events(pb::ListEventsRequest { customer_id: c.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let body: serde_json::Value = serde_json::from_str(&events.events[0].body).unwrap();
    assert_eq!(body["data"]["breakdown"]["exact"], "189.95", "points.accrued carries the breakdown");
    // A resend is answered from the ledger; another order under the id is refused.
    grpc.accrue(accrue_order(c, "order-A", example_a("A"))).await.expect("a resend is OK");
    let other = grpc.accrue(accrue_order(c, "order-A", example_a("A2"))).await.unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists, "{other:?}");
    // Two of the three pairs of socks come back: 20 points; a resend gets the same answer.
    let socks = return_lines(c, "ret-1", "order-A", &[(1, 2)]);
    let change = grpc.reverse(socks.clone()).await.expect("return").into_inner().change.unwrap();
    assert_eq!((change.points, change.points_balance), (-20, 169));
    let again = grpc.reverse(socks).await.expect("resend").into_inner().change.unwrap();
    assert_eq!(again.points, -20);
    let too_many = grpc.reverse(return_lines(c, "ret-2", "order-A", &[(1, 2)])).await.unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert!(too_many.message().contains("lines.quantity"), "{too_many:?}");
    // The gift card (excluded: it earned nothing) claws back nothing, and
    // is recorded, so the order's later returns count it.
    let card = grpc.reverse(return_lines(c, "ret-card", "order-A", &[(2, 1)])).await.expect("card").into_inner();
    assert_eq!(card.change.unwrap().points, 0);
    // The rest comes back: the returns add up to the 189 credited.
    let rest = return_lines(c, "ret-3", "order-A", &[(0, 1), (1, 1)]);
    let change = grpc.reverse(rest).await.expect("the rest").into_inner().change.unwrap();
    assert_eq!((change.points, change.points_balance, change.lifetime_points), (-169, 0, 0));
    let history = grpc
        .get_history(pb::GetHistoryRequest { customer_id: c.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let returned: Vec<_> = history.entries[0].returned_lines.iter().map(|l| (l.line, l.quantity)).collect();
    assert_eq!(returned, vec![(0, 1), (1, 1)]);
    let card_entry = &history.entries[1];
    assert_eq!((card_entry.points, card_entry.returned_lines.len()), (0, 1), "{card_entry:?}");
}

#[tokio::test]
async fn concurrent_returns_of_one_order_claw_back_each_unit_once() {
    let mut grpc = client().await;
    let c = "orders-race";
    grpc.accrue(accrue_order(c, "order-R", example_a("R"))).await.expect("accrue");
    summary_when(&mut grpc, c, SETTLE, |s| s.lifetime_points == 189).await;
    rows_when(&ledger().await, c, 1).await;
    // Three returns of two of its three pairs of socks, at once: each is
    // computed from its own ledger view, and the account refuses a view
    // another return overtook; so one claws back 20 and the others are told
    // the units came back already.
    let sends = (0..3).map(|i| {
        let mut grpc = grpc.clone();
        async move { grpc.reverse(return_lines(c, &format!("race-{i}"), "order-R", &[(1, 2)])).await }
    });
    let results = futures::future::join_all(sends).await;
    let mut clawed = 0;
    let mut refused = 0;
    for r in results {
        match r {
            Ok(r) => clawed -= r.into_inner().change.unwrap().points,
            Err(e) => {
                assert!(e.code() == Code::InvalidArgument && e.message().contains("lines.quantity"), "{e:?}");
                refused += 1;
            }
        }
    }
    let s = summary_when(&mut grpc, c, SETTLE, |_| true).await;
    assert_eq!((clawed, refused, s.points_balance), (20, 2, 169));
}

#[tokio::test]
async fn a_preview_for_a_customer_uses_their_tier_and_what_caps_have_left() {
    let mut grpc = client().await;
    let c = "orders-caps";
    // Silver from a plain accrual; then weekend app orders against a 100-point monthly cap.
    grpc.accrue(crate::common::accrual(c, "seed", 1_000)).await.unwrap();
    summary_when(&mut grpc, c, SETTLE, |s| s.tier == "Silver").await;
    let weekend = |id: &str| pb::Order {
        order_id: id.into(),
        currency: "USD".into(),
        channel: "app".into(),
        // The last Saturday, 15:00 UTC; the cap's period is the account's month now.
        occurred_at: Some(prost_types::Timestamp { seconds: last_saturday_afternoon(), nanos: 0 }),
        lines: vec![line("SHOE-2", "shoes", 1, 8_999, 0)],
        tenders: vec![pb::Tender { r#type: "gift_card".into(), amount: 2_000 }],
        ..Default::default()
    };
    let mut balance = 1_000;
    for (i, expected) in [224, 224, 174].into_iter().enumerate() {
        let id = format!("wk-{i}");
        let preview = grpc
            .preview_accrual(pb::PreviewAccrualRequest { customer_id: c.into(), order: Some(weekend(&id)) })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((preview.points, preview.tier.as_str()), (expected, "Silver"), "order {i}");
        grpc.accrue(accrue_order(c, &id, weekend(&id))).await.unwrap();
        balance += expected;
        summary_when(&mut grpc, c, SETTLE, |s| s.points_balance == balance).await;
    }
}

#[tokio::test]
async fn bad_orders_are_refused_naming_the_field_and_a_small_one_earns_nothing() {
    let mut grpc = client().await;
    let c = "orders-bad";
    let refused = |mut request: pb::AccrueRequest, spoil: fn(&mut pb::AccrueRequest)| {
        spoil(&mut request);
        request
    };
    type Spoil = fn(&mut pb::AccrueRequest);
    let cases: [(&str, Spoil); 7] = [
        ("order:", |r| r.points = 10),
        ("points:", |r| r.order = None),
        ("order.currency", |r| r.order.as_mut().unwrap().currency = "JPY".into()),
        ("order.lines:", |r| {
            let o = r.order.as_mut().unwrap();
            o.lines = vec![o.lines[0].clone(); 1_001];
        }),
        ("order.lines.unit_price", |r| r.order.as_mut().unwrap().lines[0].unit_price = -1),
        ("order.lines.quantity", |r| r.order.as_mut().unwrap().lines[0].quantity = 0),
        ("order.occurred_at", |r| r.order.as_mut().unwrap().occurred_at = None),
    ];
    for (field, spoil) in cases {
        let e = grpc.accrue(refused(accrue_order(c, "bad", example_a("B")), spoil)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{field}: {e:?}");
    }
    let old = |r: &mut pb::AccrueRequest| {
        r.order.as_mut().unwrap().occurred_at =
            Some(prost_types::Timestamp { seconds: now_seconds() - 91 * 86_400, nanos: 0 })
    };
    let e = grpc.accrue(refused(accrue_order(c, "bad", example_a("B")), old)).await.unwrap_err();
    assert!(e.code() == Code::InvalidArgument && e.message().starts_with("order.occurred_at"), "{e:?}");
    let small = pb::Order { lines: vec![line("PEN", "office", 1, 450, 0)], ..example_a("D") };
    let r = grpc.accrue(accrue_order(c, "small", small)).await.expect("accepted").into_inner();
    assert_eq!(r.most_points, 0, "under the minimum order");
    let history = grpc.get_history(pb::GetHistoryRequest { customer_id: c.into(), ..Default::default() }).await;
    assert_eq!(history.unwrap_err().code(), Code::NotFound, "no entry, no account");
}

/// Runs `loyalty rules ...` (offline) with `stdin`.
async fn rules_cli(args: &[&str], stdin: &str) -> (i32, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .arg("rules")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the loyalty binary runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).await.unwrap();
    let output = child.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn the_rules_cli_checks_a_file_and_previews_an_order() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/earning-rules.example.yaml");
    let (code, text) = rules_cli(&["check", example], "").await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("standard version 1 from 2026-01-01T00:00:00Z (sha256:"), "{text}");
    let bad = std::env::temp_dir().join(format!("bad-rules-{}.json", std::process::id()));
    std::fs::write(
        &bad,
        r#"{"rule_sets":[{"id":"x","version":1,"effective_from":"2026-01-01","rates":{"USD":{"points":1,"per":3}}}]}"#,
    )
    .unwrap();
    let (code, text) = rules_cli(&["check", bad.to_str().unwrap()], "").await;
    assert_eq!(code, 1);
    assert!(text.contains("rule_sets[0].rates.USD.per: must divide 10000"), "{text}");
    let order = r#"{"order_id":"A","currency":"USD","channel":"web","occurred_at":"2026-03-03T10:00:00Z",
        "lines":[{"sku":"SHOE-1","categories":["shoes"],"quantity":1,"unit_price":8999,"discount":1000},
                 {"sku":"SOCK-3","categories":["socks"],"quantity":3,"unit_price":499},
                 {"sku":"GIFT-CARD-50","categories":["gift"],"quantity":1,"unit_price":5000}]}"#;
    let (code, text) = rules_cli(&["preview", "--rules", example, "--tier", "gold"], order).await;
    assert_eq!(code, 0, "{text}");
    let earned: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((earned["points"].as_i64(), earned["exact"].as_str()), (Some(277), Some("277.425")));
}
