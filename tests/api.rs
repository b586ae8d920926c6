//! End to end through the generated tonic client, against a real Temporal dev
//! server and a real SQLite ledger.

mod common;
#[path = "api/orders.rs"]
mod orders;

use std::time::Duration;

use common::{
    accrual, client, end_outage, fail_inserts, fan_out, ledger, redemption, rows_when, shared, summary_when, temporal,
};
use loyalty::domain::EntryKind;
use loyalty::grpc::pb::{self, loyalty_service_client::LoyaltyServiceClient};
use loyalty::workflow::{LoyaltyEntityWorkflow, MAX_ACCRUALS_PER_RUN};
use temporalio_client::{WorkflowDescribeOptions, WorkflowSignalOptions};
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

const SETTLE: Duration = Duration::from_secs(30);

/// Read your writes: a GetSummary sent after an Accrue was answered counts
/// that accrual, every time, without waiting (a new user's first `accrue`
/// then `summary` shows the points); so does one after a Redeem or Adjust.
#[tokio::test]
async fn a_summary_after_an_acknowledged_call_shows_it() {
    let mut grpc = client().await;
    let mut expected = 0;
    for i in 0..20 {
        grpc.accrue(accrual("ryw", &format!("ryw-{i}"), 7)).await.expect("accrue");
        expected += 7;
        let s = grpc.get_summary(pb::GetSummaryRequest { customer_id: "ryw".into() }).await.expect("summary");
        let s = s.into_inner();
        assert_eq!(s.points_balance + s.unapplied_points, expected, "after accrual {i}: {s:?}");
        assert_eq!(s.unapplied_points, 0, "checked against the ledger, so applied at once: {s:?}");
    }
    grpc.redeem(redemption("ryw", "ryw-r", 40, "mug")).await.expect("redeem");
    let s = grpc.get_summary(pb::GetSummaryRequest { customer_id: "ryw".into() }).await.unwrap().into_inner();
    assert_eq!((s.points_balance, s.lifetime_points), (expected - 40, expected));
}

#[tokio::test]
async fn accrue_then_summary_and_ledger() {
    let mut grpc = client().await;
    let r = grpc.accrue(accrual("alice", "order-1", 120)).await.expect("accrue").into_inner();
    assert_eq!(r.workflow_id, "loyalty-alice");
    let s = summary_when(&mut grpc, "alice", SETTLE, |s| s.lifetime_points == 120).await;
    assert_eq!((s.customer_id.as_str(), s.points_balance, s.tier.as_str()), ("alice", 120, "Bronze"));
    assert!(s.is_active);
    assert_eq!(s.points_to_next_tier, 880);
    let rows = rows_when(&ledger().await, "alice", 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].kind.as_str(), rows[0].points, rows[0].balance_after), ("accrual", 120, 120));
    assert_eq!((rows[0].reason.as_str(), rows[0].source.as_str()), ("purchase", "tests"));
}

#[tokio::test]
async fn tiers_upgrade_at_their_thresholds_and_are_notified() {
    let mut grpc = client().await;
    let steps = [(999, "Bronze"), (1, "Silver"), (3_999, "Silver"), (1, "Gold"), (4_999, "Gold"), (1, "Platinum")];
    let mut lifetime = 0;
    for (i, (points, tier)) in steps.into_iter().enumerate() {
        grpc.accrue(accrual("tiers", &format!("t{i}"), points)).await.expect("accrue");
        lifetime += points;
        let s = summary_when(&mut grpc, "tiers", SETTLE, |s| s.lifetime_points == lifetime).await;
        assert_eq!(s.tier, tier, "at lifetime {lifetime}");
    }
    // Recorded with the entries that caused them, as the ledger takes them.
    rows_when(&ledger().await, "tiers", steps.len()).await;
    let notes = ledger().await.tier_changes("tiers").await.unwrap();
    let expected = [("Bronze", "Silver"), ("Silver", "Gold"), ("Gold", "Platinum")];
    assert_eq!(notes, expected.map(|(a, b)| (a.to_string(), b.to_string())).to_vec());
}

#[tokio::test]
async fn redeem_succeeds_once_and_every_rejection_has_its_status() {
    let mut grpc = client().await;
    grpc.accrue(accrual("bob", "buy-1", 500)).await.unwrap();
    summary_when(&mut grpc, "bob", SETTLE, |s| s.points_balance == 500).await;

    let first = grpc.redeem(redemption("bob", "red-1", 200, "mug")).await.unwrap().into_inner();
    assert_eq!((first.redeemed, first.remaining_balance, first.reward.as_str()), (200, 300, "mug"));
    let retry = grpc.redeem(redemption("bob", "red-1", 200, "mug")).await.unwrap().into_inner();
    assert_eq!(retry, first, "a retry returns the original result");

    let cases = [
        (redemption("bob", "red-1", 201, "mug"), Code::AlreadyExists, "red-1"),
        (redemption("bob", "buy-1", 10, "mug"), Code::AlreadyExists, "buy-1"),
        (redemption("bob", "red-2", 301, "tv"), Code::FailedPrecondition, "Insufficient points"),
        (redemption("bob", "red-2", 0, "x"), Code::InvalidArgument, "points"),
        (redemption("bob", "red-2", -5, "x"), Code::InvalidArgument, "points"),
        (redemption("bob", "red 2", 1, "x"), Code::InvalidArgument, "event_id"),
        (redemption("b/b", "red-2", 1, "x"), Code::InvalidArgument, "customer_id"),
        (redemption("bob", "red-2", 1, &"x".repeat(257)), Code::InvalidArgument, "reward"),
        (redemption("nobody", "red-2", 1, "x"), Code::NotFound, "nobody"),
    ];
    for (request, code, mentions) in cases {
        let status = grpc.redeem(request.clone()).await.expect_err("must be rejected");
        assert_eq!(status.code(), code, "{request:?}: {status:?}");
        assert!(status.message().contains(mentions), "{request:?}: {status:?}");
    }

    let s = summary_when(&mut grpc, "bob", SETTLE, |_| true).await;
    assert_eq!((s.points_balance, s.lifetime_points), (300, 500), "deducted exactly once");
    let rows = rows_when(&ledger().await, "bob", 2).await;
    let redemptions: Vec<_> = rows.iter().filter(|r| r.kind == EntryKind::Redemption).collect();
    assert_eq!(redemptions.len(), 1);
    assert_eq!((redemptions[0].points, redemptions[0].balance_after), (-200, 300));
}

#[tokio::test]
async fn accrue_rejects_bad_fields_naming_them() {
    let mut grpc = client().await;
    let cases: [(pb::AccrueRequest, &str); 6] = [
        (accrual("", "e", 1), "customer_id"),
        (accrual(&"c".repeat(129), "e", 1), "customer_id"),
        (accrual("carol", "e*", 1), "event_id"),
        (accrual("carol", "e", 0), "points"),
        (accrual("carol", "e", 1_000_000_001), "points"),
        (pb::AccrueRequest { reason: "r".repeat(257), ..accrual("carol", "e", 1) }, "reason"),
    ];
    for (request, field) in cases {
        let status = grpc.accrue(request).await.expect_err("must be rejected");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{status:?}");
    }
    let status = grpc.get_summary(pb::GetSummaryRequest { customer_id: "carol".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "nothing was applied: {status:?}");
}

#[tokio::test]
async fn duplicate_event_ids_are_applied_once() {
    let mut grpc = client().await;
    let sends = (0..6).map(|i| accrual("dave", if i % 2 == 0 { "dup-a" } else { "dup-b" }, 10));
    let results = fan_out(&grpc, 6, sends, |mut g, r| async move { g.accrue(r).await }).await;
    assert!(results.iter().all(Result::is_ok));
    grpc.accrue(accrual("dave", "marker", 1)).await.unwrap();
    let s = summary_when(&mut grpc, "dave", SETTLE, |s| s.lifetime_points >= 21).await;
    assert_eq!((s.points_balance, s.lifetime_points), (21, 21));
    assert_eq!(rows_when(&ledger().await, "dave", 3).await.len(), 3);
}

#[tokio::test]
async fn unknown_customer_is_not_found() {
    let mut grpc = client().await;
    let status = grpc.get_summary(pb::GetSummaryRequest { customer_id: "ghost".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = grpc.get_summary(pb::GetSummaryRequest { customer_id: "".into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn control_characters_in_text_are_refused_and_never_stall_an_account() {
    let mut grpc = client().await;
    // Found while preparing the input fuzz tests: PostgreSQL cannot store NUL, so an accrual carrying one
    // failed its batch's ledger write forever and held back every later accrual.
    let mut bad = accrual("ctrl", "c0", 10);
    bad.reason = "promo\0".into();
    let status = grpc.accrue(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("reason"), "{status:?}");
    let bad = redemption("ctrl", "cr", 1, "mug\n");
    assert_eq!(grpc.redeem(bad).await.unwrap_err().code(), Code::InvalidArgument);

    grpc.accrue(accrual("ctrl", "c1", 7)).await.unwrap();
    summary_when(&mut grpc, "ctrl", SETTLE, |s| s.lifetime_points == 7).await;
    // Another client signals the workflow directly: ignored, and the account goes on.
    let raw = loyalty::domain::messages::PointsEvent {
        event_id: "c2".into(),
        points: 10,
        reason: "a\0b".into(),
        source: "other".into(),
        ledger_checked: false,
        ..Default::default()
    };
    temporal()
        .await
        .get_workflow_handle::<LoyaltyEntityWorkflow>("loyalty-ctrl")
        .signal(LoyaltyEntityWorkflow::add_points, raw, WorkflowSignalOptions::default())
        .await
        .expect("signal");
    grpc.accrue(accrual("ctrl", "c3", 5)).await.unwrap();
    let s = summary_when(&mut grpc, "ctrl", SETTLE, |s| s.lifetime_points >= 12).await;
    assert_eq!((s.points_balance, s.lifetime_points), (12, 12));
}

#[tokio::test]
async fn a_closed_account_is_never_recreated() {
    let mut grpc = client().await;
    grpc.accrue(accrual("erin", "e1", 70)).await.unwrap();
    summary_when(&mut grpc, "erin", SETTLE, |s| s.points_balance == 70).await;
    temporal()
        .await
        .get_workflow_handle::<LoyaltyEntityWorkflow>("loyalty-erin")
        .signal(LoyaltyEntityWorkflow::shutdown, (), WorkflowSignalOptions::default())
        .await
        .expect("shutdown signal");
    let s = summary_when(&mut grpc, "erin", SETTLE, |s| !s.is_active).await;
    assert_eq!(s.points_balance, 70);
    // The run writes what it decided, then completes.
    let handle = temporal().await.get_workflow_handle::<LoyaltyEntityWorkflow>("loyalty-erin");
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let d = handle.describe(WorkflowDescribeOptions::default()).await.expect("describe");
        let info = d.raw_description.workflow_execution_info.expect("info");
        if info.status() == WorkflowExecutionStatus::Completed {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the account did not complete: {:?}", info.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let status = grpc.accrue(accrual("erin", "e2", 5)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = grpc.redeem(redemption("erin", "r1", 5, "x")).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let s = summary_when(&mut grpc, "erin", SETTLE, |_| true).await;
    assert_eq!((s.points_balance, s.is_active), (70, false), "not re-created blank");
}

#[tokio::test]
async fn a_redemption_is_decided_while_the_ledger_is_down_and_written_when_it_returns() {
    let mut grpc = client().await;
    grpc.accrue(accrual("frank", "f1", 100)).await.unwrap();
    summary_when(&mut grpc, "frank", SETTLE, |s| s.points_balance == 100).await;
    rows_when(&ledger().await, "frank", 1).await;
    let db =
        fail_inserts("outage_frank", "ledger_entries", "NEW.customer_id = 'frank' AND NEW.kind = 'redemption'").await;

    // Decided by the account, in one workflow task: no ledger on its path.
    let ok = grpc.redeem(redemption("frank", "fr1", 60, "hat")).await.expect("decided without the ledger");
    assert_eq!(ok.into_inner().remaining_balance, 40);
    let again = grpc.redeem(redemption("frank", "fr1", 60, "hat")).await.expect("a resend gets the same answer");
    assert_eq!(again.into_inner().remaining_balance, 40);
    let s = summary_when(&mut grpc, "frank", SETTLE, |_| true).await;
    assert_eq!((s.points_balance, s.lifetime_points), (40, 100));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ledger().await.entries("frank").await.unwrap().len(), 1, "the row waits for the ledger");

    end_outage(&db).await;
    let rows = rows_when(&ledger().await, "frank", 2).await;
    assert_eq!(rows.iter().filter(|r| r.kind == EntryKind::Redemption).count(), 1);
    assert_eq!(rows.last().map(|r| r.balance_after), Some(40));
}

#[tokio::test]
async fn accruals_survive_a_ledger_outage_without_failing_the_account() {
    let mut grpc = client().await;
    grpc.accrue(accrual("gina", "g0", 1)).await.unwrap();
    summary_when(&mut grpc, "gina", SETTLE, |s| s.points_balance == 1).await;
    rows_when(&ledger().await, "gina", 1).await;
    let db = fail_inserts("outage_gina", "ledger_entries", "NEW.customer_id = 'gina'").await;
    grpc.accrue(accrual("gina", "g1", 10)).await.unwrap();
    grpc.accrue(accrual("gina", "g2", 20)).await.unwrap();
    // The write's retries run out (about 3 s); the account must keep serving
    // and counts what it acknowledged.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = summary_when(&mut grpc, "gina", SETTLE, |_| true).await;
    assert_eq!((s.points_balance, s.lifetime_points), (31, 31), "applied at once, written later");
    assert_eq!(ledger().await.entries("gina").await.unwrap().len(), 1, "nothing written while the ledger is down");
    end_outage(&db).await;
    let rows = rows_when(&ledger().await, "gina", 3).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.last().map(|r| r.balance_after), Some(31));
}

#[tokio::test]
async fn a_burst_across_continue_as_new_loses_and_doubles_nothing() {
    const EVENTS: usize = 2_400;
    assert!(EVENTS as u32 > MAX_ACCRUALS_PER_RUN, "the burst must force a continue-as-new");
    let grpc = client().await;
    // Every tenth event is sent twice, so duplicates cross batches and runs.
    let sends = (0..EVENTS).flat_map(|i| {
        let copies = if i % 10 == 0 { 2 } else { 1 };
        std::iter::repeat_n(accrual("hot", &format!("burst-{i}"), (i % 7 + 1) as i64), copies)
    });
    let results = fan_out(&grpc, 32, sends, |mut g, r| async move { g.accrue(r).await }).await;
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 0);

    let expected: i64 = (0..EVENTS).map(|i| (i % 7 + 1) as i64).sum();
    let mut grpc = grpc;
    let s = summary_when(&mut grpc, "hot", Duration::from_secs(120), |s| s.lifetime_points >= expected).await;
    assert_eq!((s.points_balance, s.lifetime_points), (expected, expected));
    let rows = rows_when(&ledger().await, "hot", EVENTS).await;
    assert_eq!(rows.len(), EVENTS, "one ledger row per distinct event");
    assert_eq!(rows.iter().map(|r| r.points).sum::<i64>(), expected);
    assert_eq!(rows.last().map(|r| r.balance_after), Some(expected));

    let description = temporal()
        .await
        .get_workflow_handle::<LoyaltyEntityWorkflow>("loyalty-hot")
        .describe(WorkflowDescribeOptions::default())
        .await
        .unwrap();
    let info = description.raw_description.workflow_execution_info.expect("info");
    let run_id = info.execution.as_ref().map(|e| e.run_id.clone()).unwrap_or_default();
    assert_ne!(info.first_run_id, run_id, "the burst must have continued-as-new");
}

#[tokio::test]
async fn health_reports_serving() {
    // SERVING once the worker polls (readiness.rs), within moments of the start.
    let mut health = HealthClient::new(common::grpc_channel(shared().grpc_addr).await);
    for service in ["", "loyalty.v1.LoyaltyService"] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
            if r.status() == ServingStatus::Serving {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "service {service:?} is {:?}", r.status());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn the_reference_guides_python_client_works_against_our_worker() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/guide_client.py");
    let app = shared();
    let output = tokio::process::Command::new("python3")
        .args([script, &common::temporal_address(), &app.task_queue, "guide-cust-42"])
        .output()
        .await
        .expect("python3 runs (scripts/setup.sh installs temporalio)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "guide client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("guide client OK: 1050 points, tier Silver"), "{stdout}");
    // The same account through our API agrees.
    let s = summary_when(&mut client().await, "guide-cust-42", SETTLE, |_| true).await;
    assert_eq!((s.points_balance, s.is_active), (1050, false));
}

#[tokio::test]
async fn concurrent_retries_of_one_redemption_deduct_once() {
    let mut grpc = client().await;
    grpc.accrue(accrual("hank", "h1", 100)).await.unwrap();
    summary_when(&mut grpc, "hank", SETTLE, |s| s.points_balance == 100).await;
    let retry = |mut g: LoyaltyServiceClient<Channel>, _| async move {
        g.redeem(redemption("hank", "hr1", 30, "tea")).await.map(|r| r.into_inner())
    };
    let results = fan_out(&grpc, 5, 0..5, retry).await;
    for r in &results {
        let r = r.as_ref().expect("every retry succeeds");
        assert_eq!((r.redeemed, r.remaining_balance), (30, 70));
    }
    let s = summary_when(&mut grpc, "hank", SETTLE, |_| true).await;
    assert_eq!(s.points_balance, 70);
    assert_eq!(
        rows_when(&ledger().await, "hank", 2).await.iter().filter(|r| r.kind == EntryKind::Redemption).count(),
        1
    );
}

#[tokio::test]
async fn a_failing_event_insert_never_holds_back_points_and_loses_no_event() {
    let mut grpc = client().await;
    let db = fail_inserts("outage_ivy", "account_events", "NEW.customer_id = 'ivy'").await;
    grpc.accrue(accrual("ivy", "i1", 1_500)).await.unwrap();
    let s = summary_when(&mut grpc, "ivy", SETTLE, |s| s.lifetime_points == 1_500).await;
    assert_eq!((s.points_balance, s.tier.as_str()), (1_500, "Silver"));
    // The account keeps deciding while its entries wait for the ledger.
    grpc.accrue(accrual("ivy", "i2", 10)).await.unwrap();
    let s = summary_when(&mut grpc, "ivy", SETTLE, |s| s.lifetime_points == 1_510).await;
    assert_eq!(s.points_balance, 1_510);
    // An entry and its events commit together (a transactional outbox): neither is in yet.
    let l = ledger().await;
    assert!(l.tier_changes("ivy").await.unwrap().is_empty());
    assert!(l.entries("ivy").await.unwrap().is_empty(), "no entry without its event");
    end_outage(&db).await;
    // Then each entry lands with its event, and the tier change once.
    rows_when(&l, "ivy", 2).await;
    let notes = l.tier_changes("ivy").await.unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let types: Vec<String> = l.events("ivy", 0, 10, false).await.unwrap().into_iter().map(|e| e.event_type).collect();
    assert_eq!(types, ["points.accrued", "tier.changed", "points.accrued"]);
}

#[tokio::test]
async fn concurrent_redemptions_past_the_in_flight_update_limit_stay_exact() {
    let mut grpc = client().await;
    grpc.accrue(accrual("jack", "j1", 1_000)).await.unwrap();
    summary_when(&mut grpc, "jack", SETTLE, |s| s.points_balance == 1_000).await;
    // More than Temporal's 10 in-flight updates per execution: the client retries
    // the server's refusals; whatever fails must be retryable and change nothing.
    let redeem = |mut g: LoyaltyServiceClient<Channel>, i| async move {
        g.redeem(redemption("jack", &format!("jr{i}"), 10, "snack")).await
    };
    let results = fan_out(&grpc, 25, 0..25, redeem).await;
    let mut redeemed = 0;
    for r in &results {
        match r {
            Ok(r) => redeemed += r.get_ref().redeemed,
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "only a retryable refusal: {status:?}"),
        }
    }
    let s = summary_when(&mut grpc, "jack", SETTLE, |_| true).await;
    assert_eq!(s.points_balance, 1_000 - redeemed, "{results:?}");
    let written = 1 + results.iter().filter(|r| r.is_ok()).count();
    let rows = rows_when(&ledger().await, "jack", written).await;
    assert_eq!(rows.iter().filter(|r| r.kind == EntryKind::Redemption).map(|r| -r.points).sum::<i64>(), redeemed);
}

#[tokio::test]
async fn reflection_lists_the_services_for_grpcurl() {
    use tonic_reflection::pb::{v1, v1alpha};
    let channel = common::grpc_channel(shared().grpc_addr).await;
    let expected = ["grpc.health.v1.Health", "loyalty.v1.LoyaltyService"];

    let list = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut v1_client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let mut replies = v1_client.server_reflection_info(tokio_stream::iter([list])).await.unwrap().into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(services)) =
        replies.message().await.unwrap().and_then(|r| r.message_response)
    else {
        panic!("v1 reflection must list services")
    };
    let names: Vec<_> = services.service.iter().map(|s| s.name.as_str()).collect();
    assert!(expected.iter().all(|e| names.contains(e)), "v1: {names:?}");

    let list = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut alpha_client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let mut replies = alpha_client.server_reflection_info(tokio_stream::iter([list])).await.unwrap().into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(services)) =
        replies.message().await.unwrap().and_then(|r| r.message_response)
    else {
        panic!("v1alpha reflection must list services")
    };
    let names: Vec<_> = services.service.iter().map(|s| s.name.as_str()).collect();
    assert!(expected.iter().all(|e| names.contains(e)), "v1alpha: {names:?}");
}

/// Runs the `loyalty` binary against the shared application.
async fn loyalty_cli(args: &[&str]) -> (i32, serde_json::Value, String) {
    let server = format!("http://{}", shared().grpc_addr);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
        .args(args)
        .args(["--server", &server])
        .output()
        .await
        .expect("the loyalty binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), json, stdout + &String::from_utf8_lossy(&output.stderr))
}

#[tokio::test]
async fn the_cli_accrues_redeems_and_reads() {
    let (code, json, _) =
        loyalty_cli(&["accrue", "--customer", "kim", "--event", "k1", "--points", "300", "--json"]).await;
    assert_eq!((code, &json["accepted"]), (0, &serde_json::json!(true)));
    summary_when(&mut client().await, "kim", SETTLE, |s| s.points_balance == 300).await;

    let (code, json, _) =
        loyalty_cli(&["redeem", "--customer", "kim", "--event", "kr1", "--points", "100", "--reward", "pen", "--json"])
            .await;
    assert_eq!((code, json["remaining_balance"].as_i64()), (0, Some(200)));

    let (code, json, _) = loyalty_cli(&["summary", "--customer", "kim", "--json"]).await;
    assert_eq!(code, 0);
    assert_eq!((json["points_balance"].as_i64(), json["tier"].as_str()), (Some(200), Some("Bronze")));
    let (code, _, text) = loyalty_cli(&["summary", "--customer", "kim"]).await;
    assert!(code == 0 && text.contains("balance   200"), "{text}");

    // Failures exit with the gRPC code and print the status.
    let (code, _, text) =
        loyalty_cli(&["redeem", "--customer", "kim", "--event", "kr2", "--points", "1000", "--reward", "car"]).await;
    assert_eq!(code, Code::FailedPrecondition as i32, "{text}");
    assert!(text.contains("FailedPrecondition: Insufficient points"), "{text}");
    let (code, _, text) = loyalty_cli(&["summary", "--customer", "nobody-here"]).await;
    assert_eq!(code, Code::NotFound as i32, "{text}");
}

#[tokio::test]
async fn a_refund_right_after_its_purchase_finds_it_even_while_the_ledger_is_down() {
    let mut grpc = client().await;
    grpc.accrue(accrual("quinn", "q0", 1)).await.unwrap();
    summary_when(&mut grpc, "quinn", SETTLE, |s| s.points_balance == 1).await;
    rows_when(&ledger().await, "quinn", 1).await;
    // The purchase is acknowledged but cannot be written yet.
    let db = fail_inserts("outage_quinn", "ledger_entries", "NEW.customer_id = 'quinn' AND NEW.kind = 'accrual'").await;
    grpc.accrue(accrual("quinn", "q1", 100)).await.unwrap();
    let request = pb::ReverseRequest {
        customer_id: "quinn".into(),
        reverse_event_id: "q1-refund".into(),
        original_event_id: "q1".into(),
        points: None,
        reason: "refund".into(),
        lines: Vec::new(),
    };
    // Decided in arrival order against the account's own entries: the
    // purchase before it is there, whether or not the ledger has it yet.
    let change = grpc.reverse(request).await.expect("the refund finds its purchase").into_inner().change.unwrap();
    assert_eq!((change.points, change.points_balance, change.lifetime_points), (-100, 1, 1));
    end_outage(&db).await;
    let rows = rows_when(&ledger().await, "quinn", 3).await;
    let kinds: Vec<_> = rows.iter().map(|r| (r.event_id.as_str(), r.kind)).collect();
    assert_eq!(kinds, vec![("q0", EntryKind::Accrual), ("q1", EntryKind::Accrual), ("q1-refund", EntryKind::Reversal)]);
}

#[tokio::test]
async fn an_oversized_request_is_refused_before_any_work() {
    let mut grpc = client().await;
    let mut request = accrual("oscar", "o1", 10);
    request.reason = "x".repeat(100 * 1024);
    let status = grpc.accrue(request).await.unwrap_err();
    // tonic answers OUT_OF_RANGE (grpc-go would say RESOURCE_EXHAUSTED).
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    let unknown = grpc.get_summary(pb::GetSummaryRequest { customer_id: "oscar".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "no account was opened");
}
