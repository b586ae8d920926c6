//! Determinism: committed histories of real runs replay against the current
//! workflow code. A change that alters the command sequence fails here
//! before it can break long-lived accounts in production.
//!
//! `legacy_*.json` were recorded by the version before the one-writer core
//! (the ledger decided, the account adopted its answer) and replay through
//! the `legacy` code behind the `one-writer` patch marker; `one_writer_*.json`
//! by the one-writer version before lots (no `lifecycle` marker: no timers);
//! `lifecycle_*.json` by the lifecycle version before expiry announcements
//! (no `expiry-warnings` marker); `warnings_*.json` by the current one.
//! Record the current version's anew (after an intended, versioned change)
//! with `cargo test --test replay -- --ignored capture_warning_histories`;
//! keep every older version's files, so open runs of every version keep
//! replaying.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    accrual, client, end_outage, fail_inserts, fan_out, ledger, redemption, rows_when, summary_when, temporal,
};
use loyalty::domain::{LoyaltyState, PointsEvent};
use loyalty::grpc::pb;
use loyalty::workflow::{EXPIRY_WARNINGS, LoyaltyEntityWorkflow, MAX_ACCRUALS_PER_RUN};
use temporalio_client::{WorkflowDescribeOptions, WorkflowExecutionInfo, WorkflowHistory, WorkflowSignalOptions};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

fn histories_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories")
}

fn committed_histories() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(histories_dir())
        .expect("tests/histories exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).expect("readable"))).collect()
}

/// What a set of histories covers, counted from their events.
#[derive(Debug, Default)]
struct Coverage {
    continued: usize,
    continued_with_unwritten_entries: usize,
    updates: std::collections::BTreeMap<String, usize>,
    activities: std::collections::BTreeMap<String, usize>,
    timers: usize,
    timers_fired: usize,
    timers_canceled: usize,
    completed: usize,
    /// Continue-as-new with pending lots or open holds.
    continued_with_lifecycle: usize,
    markers: std::collections::BTreeSet<String>,
}

impl Coverage {
    fn count(&mut self, events: &[temporalio_common::protos::temporal::api::history::v1::HistoryEvent]) {
        for attributes in events.iter().filter_map(|e| e.attributes.as_ref()) {
            match attributes {
                Attributes::WorkflowExecutionContinuedAsNewEventAttributes(a) => {
                    self.continued += 1;
                    let carried: Option<LoyaltyState> = a
                        .input
                        .as_ref()
                        .and_then(|p| p.payloads.first())
                        .and_then(|p| serde_json::from_slice(&p.data).ok());
                    if carried.as_ref().is_some_and(|s| !s.unprojected.is_empty()) {
                        self.continued_with_unwritten_entries += 1;
                    }
                    if carried.is_some_and(|s| s.lots.pending() > 0 || !s.holds.is_empty()) {
                        self.continued_with_lifecycle += 1;
                    }
                }
                Attributes::WorkflowExecutionUpdateAcceptedEventAttributes(a) => {
                    let name = a.accepted_request.as_ref().and_then(|r| r.input.as_ref()).map(|i| i.name.clone());
                    *self.updates.entry(name.unwrap_or_default()).or_default() += 1;
                }
                Attributes::WorkflowExecutionCompletedEventAttributes(_) => self.completed += 1,
                Attributes::TimerStartedEventAttributes(_) => self.timers += 1,
                Attributes::TimerFiredEventAttributes(_) => self.timers_fired += 1,
                Attributes::TimerCanceledEventAttributes(_) => self.timers_canceled += 1,
                Attributes::MarkerRecordedEventAttributes(a) => {
                    // A patch marker's details: `{"id": <patch>, "deprecated": ...}`.
                    let id = a
                        .details
                        .get("patch-data")
                        .and_then(|p| p.payloads.first())
                        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p.data).ok())
                        .and_then(|v| v["id"].as_str().map(str::to_owned));
                    self.markers.insert(id.unwrap_or_else(|| a.marker_name.clone()));
                }
                Attributes::ActivityTaskScheduledEventAttributes(a) => {
                    let name = a.activity_type.as_ref().map(|t| t.name.clone()).unwrap_or_default();
                    *self.activities.entry(name).or_default() += 1;
                }
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn committed_histories_replay_deterministically() {
    let histories = committed_histories();
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new().register_workflow::<LoyaltyEntityWorkflow>().expect("registers").build(),
    )
    .expect("replayer");

    let (mut legacy, mut current, mut lifecycle) = (Coverage::default(), Coverage::default(), Coverage::default());
    let mut warnings = Coverage::default();
    for (path, json) in &histories {
        let events = WorkflowHistory::from_json(json).expect("history JSON").into_events().await.expect("events");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("legacy_") {
            legacy.count(&events)
        } else if name.starts_with("lifecycle_") {
            lifecycle.count(&events)
        } else if name.starts_with("warnings_") {
            warnings.count(&events)
        } else {
            current.count(&events)
        }
        let history = WorkflowHistory::from_json(json).expect("history JSON");
        if let Err(e) = replayer.replay_workflow(history).await {
            panic!("{} no longer replays: {e}", path.display());
        }
    }
    // The previous version's runs: batches, redemptions, a tier change, continue-as-new, close.
    assert!(legacy.continued >= 1, "legacy: a continue-as-new {legacy:?}");
    assert!(legacy.updates.get("redeem_points").copied().unwrap_or(0) >= 2, "legacy: redemptions {legacy:?}");
    assert!(legacy.activities.contains_key("send_tier_change_notification"), "legacy: a tier change {legacy:?}");
    assert!(legacy.completed >= 1, "legacy: a closed account {legacy:?}");
    // The one-writer runs: every kind of decision, projection, an outage and
    // its recovery, continue-as-new carrying unwritten entries, close.
    for update in ["redeem_points", "reverse_points", "adjust_points"] {
        assert!(current.updates.contains_key(update), "one-writer: {update} {current:?}");
    }
    assert!(current.activities.get("project_entries").copied().unwrap_or(0) >= 3, "one-writer: writes {current:?}");
    assert!(current.timers >= 1, "one-writer: a wait after a failed write {current:?}");
    assert!(current.continued >= 1, "one-writer: a continue-as-new {current:?}");
    assert!(current.continued_with_unwritten_entries >= 1, "one-writer: entries carried unwritten {current:?}");
    assert!(current.completed >= 1, "one-writer: a closed account {current:?}");
    assert!(current.activities.contains_key("settle_redemptions"), "one-writer: taking over an account {current:?}");
    // The lifecycle runs: holds of every ending, timers that fire (pending
    // lots, expiries, a hold's deadline) and timers cancelled by a nearer due
    // time, continue-as-new with pending lots and an open hold, close.
    for update in ["reserve_points", "capture_points", "release_points", "redeem_points", "reverse_points"] {
        assert!(lifecycle.updates.contains_key(update), "lifecycle: {update} {lifecycle:?}");
    }
    assert!(lifecycle.timers_fired >= 3, "lifecycle: due times reached {lifecycle:?}");
    assert!(lifecycle.timers_canceled >= 1, "lifecycle: a timer replaced {lifecycle:?}");
    assert!(lifecycle.continued_with_lifecycle >= 1, "lifecycle: pending lots carried {lifecycle:?}");
    assert!(lifecycle.completed >= 1, "lifecycle: a closed account {lifecycle:?}");
    assert!(!lifecycle.markers.contains(EXPIRY_WARNINGS), "lifecycle: recorded before announcements");
    // The announcing runs: announcements on their own timers in both runs
    // of a continue-as-new, expiries after them, close.
    assert!(warnings.markers.contains(EXPIRY_WARNINGS), "warnings: the marker {warnings:?}");
    assert!(warnings.timers_fired >= 4, "warnings: announcements and expiries on timers {warnings:?}");
    assert!(warnings.continued >= 1 && warnings.completed >= 1, "warnings: continue-as-new and close {warnings:?}");
    assert!(warnings.updates.contains_key("redeem_points"), "warnings: a spend {warnings:?}");
}

/// Records the announcing version's histories on an app of its own whose
/// program announces 3 s before expiry: two lots announced together on a
/// timer, a spend, expiries, a continue-as-new, lots announced and expired
/// in the next run, and close.
#[tokio::test]
#[ignore = "writes tests/histories from a real run"]
async fn capture_warning_histories() {
    const CUSTOMER: &str = "replay-5";
    let mut settings = common::settings("replay-warnings");
    settings.program.lot_expiry_ms = Some(7_000);
    settings.program.expiry_warning_ms = 3_000;
    let (_stop, stopped) = tokio::sync::oneshot::channel();
    let (addr, _thread) = common::start_app(settings, stopped);
    let mut grpc = pb::loyalty_service_client::LoyaltyServiceClient::new(common::grpc_channel(addr).await);
    let settle = Duration::from_secs(60);
    grpc.accrue(accrual(CUSTOMER, "w1", 100)).await.unwrap();
    grpc.accrue(accrual(CUSTOMER, "w2", 50)).await.unwrap();
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.points_balance == 150).await;
    grpc.redeem(redemption(CUSTOMER, "r1", 20, "pen")).await.unwrap();
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.points_balance == 0).await;
    let (temporal, handle) = fill_a_run(&grpc, CUSTOMER, settle).await;
    grpc.accrue(accrual(CUSTOMER, "w3", 30)).await.unwrap();
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.lifetime_points == 180 + MAX_ACCRUALS_PER_RUN as i64).await;
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.points_balance == 0).await;
    handle.signal(LoyaltyEntityWorkflow::shutdown, (), WorkflowSignalOptions::default()).await.unwrap();
    tokio::time::timeout(settle, handle.get_result(Default::default()))
        .await
        .expect("the account must close")
        .expect("it completes");
    write_runs(&temporal, CUSTOMER, "warnings_run").await;
}

/// Records the lifecycle version's histories: pending lots that activate,
/// lots that expire, holds captured, released and expired, a continue-as-new
/// with pending lots and an open hold, and close with a hold still open.
/// Dates are the accruals' own (the shared app runs the default program).
#[tokio::test]
#[ignore = "writes tests/histories from a real run"]
async fn capture_lifecycle_histories() {
    const CUSTOMER: &str = "replay-4";
    let mut grpc = client().await;
    let settle = Duration::from_secs(60);
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let ts = |ms: i64| prost_types::Timestamp { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 };
    let dated = |id: &str, points, pending_ms: Option<i64>, expires_ms: Option<i64>| pb::AccrueRequest {
        active_from: pending_ms.map(|p| ts(now() + p)),
        expires_at: expires_ms.map(|e| ts(now() + e)),
        ..accrual(CUSTOMER, id, points)
    };
    let reserve = |id: &str, points, secs| pb::ReserveRequest {
        customer_id: CUSTOMER.into(),
        hold_id: id.into(),
        points,
        ttl: Some(prost_types::Duration { seconds: secs, nanos: 0 }),
    };
    grpc.accrue(dated("l1", 1_000, None, Some(60_000))).await.unwrap();
    grpc.accrue(dated("l2", 300, Some(2_000), Some(4_000))).await.unwrap();
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.pending_points == 300).await;
    grpc.reserve(reserve("h1", 100, 60)).await.unwrap();
    let capture = pb::CaptureRequest {
        customer_id: CUSTOMER.into(),
        hold_id: "h1".into(),
        points: 60,
        event_id: "k1".into(),
        reward: "mug".into(),
    };
    grpc.capture(capture).await.unwrap();
    grpc.reserve(reserve("h2", 50, 60)).await.unwrap();
    grpc.release(pb::ReleaseRequest { customer_id: CUSTOMER.into(), hold_id: "h2".into() }).await.unwrap();
    grpc.reserve(reserve("h3", 40, 1)).await.unwrap();
    // l2 activates at 2 s and expires at 4 s; h3 expires at 1 s.
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.held_points == 0 && s.pending_points == 0).await;
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.points_balance == 940).await;
    grpc.redeem(redemption(CUSTOMER, "r1", 40, "pen")).await.unwrap();
    let reverse = pb::ReverseRequest {
        customer_id: CUSTOMER.into(),
        reverse_event_id: "v1".into(),
        original_event_id: "l1".into(),
        points: Some(10),
        reason: "refund".into(),
    };
    grpc.reverse(reverse).await.unwrap();

    // A pending lot and an open hold cross a continue-as-new.
    grpc.accrue(dated("l3", 70, Some(20_000), None)).await.unwrap();
    grpc.reserve(reserve("h4", 30, 120)).await.unwrap();
    let (temporal, handle) = fill_a_run(&grpc, CUSTOMER, settle).await;
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.pending_points == 0).await;
    rows_when(&ledger().await, CUSTOMER, 2_000).await;
    // h4 is still open: closing the account gives it back.
    handle.signal(LoyaltyEntityWorkflow::shutdown, (), WorkflowSignalOptions::default()).await.unwrap();
    tokio::time::timeout(settle, handle.get_result(Default::default()))
        .await
        .expect("the account must close")
        .expect("it completes");
    write_runs(&temporal, CUSTOMER, "lifecycle_run").await;
}

/// Sends more accruals than one run takes, then waits for the account's
/// continue-as-new; the Temporal client and the account's handle.
async fn fill_a_run(
    grpc: &pb::loyalty_service_client::LoyaltyServiceClient<tonic::transport::Channel>,
    customer: &str,
    within: Duration,
) -> (temporalio_client::Client, temporalio_client::WorkflowHandle<temporalio_client::Client, LoyaltyEntityWorkflow>) {
    let burst = (0..MAX_ACCRUALS_PER_RUN).map(|i| accrual(customer, &format!("b{i}"), 1));
    for sent in fan_out(grpc, 16, burst, |mut g, r| async move { g.accrue(r).await }).await {
        sent.unwrap();
    }
    let temporal = temporal().await;
    let handle = temporal.get_workflow_handle::<LoyaltyEntityWorkflow>(format!("loyalty-{customer}"));
    continued_as_new(&handle, within).await;
    (temporal, handle)
}

/// Waits until the account's first run has continued-as-new.
async fn continued_as_new(
    handle: &temporalio_client::WorkflowHandle<temporalio_client::Client, LoyaltyEntityWorkflow>,
    within: Duration,
) {
    let first_run = describe_runs(handle).await.0;
    let deadline = std::time::Instant::now() + within;
    while describe_runs(handle).await.1 == first_run {
        assert!(std::time::Instant::now() < deadline, "the run must continue-as-new");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes every run of the account, first to last, as `<prefix><n>.json`.
async fn write_runs(temporal: &temporalio_client::Client, customer: &str, prefix: &str) {
    std::fs::create_dir_all(histories_dir()).unwrap();
    for (n, (_, json, _)) in fetch_runs(temporal, &format!("loyalty-{customer}")).await.into_iter().enumerate() {
        std::fs::write(histories_dir().join(format!("{prefix}{}.json", n + 1)), json).unwrap();
    }
}

/// Every run of `workflow_id`, first to last, following continue-as-new:
/// its run id, its history as JSON bytes, and how many events it has.
async fn fetch_runs(temporal: &temporalio_client::Client, workflow_id: &str) -> Vec<(String, Vec<u8>, usize)> {
    let handle = temporal.get_workflow_handle::<LoyaltyEntityWorkflow>(workflow_id);
    let (first, last) = describe_runs(&handle).await;
    let mut runs = Vec::new();
    let mut run_id = Some(first);
    while let Some(id) = run_id.take() {
        let run = WorkflowExecutionInfo::builder()
            .namespace("default")
            .workflow_id(workflow_id)
            .run_id(id.clone())
            .build()
            .bind_untyped(temporal.clone());
        let json = run.fetch_history(Default::default()).to_json().await.unwrap();
        let events = WorkflowHistory::from_json(&json).unwrap().into_events().await.unwrap();
        run_id = events.iter().find_map(|e| match &e.attributes {
            Some(Attributes::WorkflowExecutionContinuedAsNewEventAttributes(a)) => Some(a.new_execution_run_id.clone()),
            _ => None,
        });
        assert!(run_id.is_some() || id == last, "the chain ends at the last run");
        runs.push((id, json, events.len()));
    }
    runs
}

/// Records the current version's histories: every kind of decision, an
/// accrual signalled straight to the workflow (checked by the run loop), a
/// ledger outage across a continue-as-new, recovery, and close.
#[tokio::test]
#[ignore = "writes tests/histories from a real run"]
async fn capture_histories() {
    const CUSTOMER: &str = "replay-2";
    let mut grpc = client().await;
    let settle = Duration::from_secs(60);
    grpc.accrue(accrual(CUSTOMER, "a1", 600)).await.unwrap();
    grpc.accrue(accrual(CUSTOMER, "a2", 500)).await.unwrap();
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.tier == "Silver").await;
    grpc.redeem(redemption(CUSTOMER, "r1", 100, "mug")).await.unwrap();
    grpc.redeem(redemption(CUSTOMER, "r1", 100, "mug")).await.unwrap();
    grpc.redeem(redemption(CUSTOMER, "r2", 99_999, "tv")).await.unwrap_err();
    let reverse = |id: &str, original: &str, points| pb::ReverseRequest {
        customer_id: CUSTOMER.into(),
        reverse_event_id: id.into(),
        original_event_id: original.into(),
        points,
        reason: "refund".into(),
    };
    let adjust = |id: &str, points| pb::AdjustRequest {
        customer_id: CUSTOMER.into(),
        event_id: id.into(),
        points,
        reason: "goodwill".into(),
    };
    grpc.reverse(reverse("v1", "a1", Some(50))).await.unwrap();
    grpc.adjust(adjust("j1", 25)).await.unwrap();
    grpc.adjust(adjust("j2", -10)).await.unwrap();

    let temporal = temporal().await;
    let handle = temporal.get_workflow_handle::<LoyaltyEntityWorkflow>(format!("loyalty-{CUSTOMER}"));
    let direct = PointsEvent {
        event_id: "d1".into(),
        points: 7,
        reason: "guide".into(),
        source: String::new(),
        ledger_checked: false,
        ..Default::default()
    };
    handle.signal(LoyaltyEntityWorkflow::add_points, direct, WorkflowSignalOptions::default()).await.unwrap();
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.lifetime_points == 1_072 && s.unapplied_points == 0).await;
    rows_when(&ledger().await, CUSTOMER, 7).await;

    // Nearly a full run while the ledger writes; then the ledger refuses this
    // account's writes and the run continues-as-new with entries unwritten.
    let burst = (0..MAX_ACCRUALS_PER_RUN - 20).map(|i| accrual(CUSTOMER, &format!("b{i}"), 1));
    for sent in fan_out(&grpc, 16, burst, |mut g, r| async move { g.accrue(r).await }).await {
        sent.unwrap();
    }
    rows_when(&ledger().await, CUSTOMER, 7 + MAX_ACCRUALS_PER_RUN as usize - 20).await;
    let outage = fail_inserts("outage_replay", "ledger_entries", &format!("NEW.customer_id = '{CUSTOMER}'")).await;
    grpc.redeem(redemption(CUSTOMER, "r3", 50, "cap")).await.unwrap();
    grpc.reverse(reverse("v2", "r1", None)).await.unwrap();
    for i in 0..40 {
        grpc.accrue(accrual(CUSTOMER, &format!("c{i}"), 1)).await.unwrap();
    }
    continued_as_new(&handle, settle).await;
    end_outage(&outage).await;
    rows_when(&ledger().await, CUSTOMER, 7 + 2 + MAX_ACCRUALS_PER_RUN as usize + 20).await;

    handle.signal(LoyaltyEntityWorkflow::shutdown, (), WorkflowSignalOptions::default()).await.unwrap();
    summary_when(&mut grpc, CUSTOMER, settle, |s| !s.is_active).await;
    tokio::time::timeout(settle, handle.get_result(Default::default()))
        .await
        .expect("the account must close")
        .expect("it completes");

    write_runs(&temporal, CUSTOMER, "one_writer_run").await;
}

/// Records an account that the previous version carried over (its state
/// without `handed_over`, an accrual still pending): the one-writer run takes
/// the ledger's totals once, then decides.
#[tokio::test]
#[ignore = "writes tests/histories from a real run"]
async fn capture_handover_history() {
    const CUSTOMER: &str = "replay-3";
    let carried: LoyaltyState = serde_json::from_value(serde_json::json!({
        "customer_id": CUSTOMER, "points_balance": 0, "lifetime_points": 0, "tier": "Bronze", "is_active": true,
        "processed_event_ids": [], "pending_events": [{"event_id": "p1", "points": 5, "reason": "guide"}]
    }))
    .unwrap();
    let temporal = temporal().await;
    let options = temporalio_client::WorkflowStartOptions::new(
        common::shared().task_queue.clone(),
        format!("loyalty-{CUSTOMER}"),
    )
    .build();
    let handle = temporal
        .start_workflow(LoyaltyEntityWorkflow::run, loyalty::payload::Nullable(Some(carried)), options)
        .await
        .unwrap();
    let mut grpc = client().await;
    grpc.accrue(accrual(CUSTOMER, "p2", 10)).await.unwrap();
    let settle = Duration::from_secs(60);
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.points_balance == 15).await;
    grpc.redeem(redemption(CUSTOMER, "p3", 4, "pin")).await.unwrap();
    rows_when(&ledger().await, CUSTOMER, 3).await;
    handle.signal(LoyaltyEntityWorkflow::shutdown, (), WorkflowSignalOptions::default()).await.unwrap();
    tokio::time::timeout(settle, handle.get_result(Default::default())).await.unwrap().unwrap();
    let json = handle.fetch_history(Default::default()).to_json().await.unwrap();
    std::fs::write(histories_dir().join("one_writer_handover.json"), json).unwrap();
}

/// The account's first and current run ids.
async fn describe_runs(
    handle: &temporalio_client::WorkflowHandle<temporalio_client::Client, LoyaltyEntityWorkflow>,
) -> (String, String) {
    let info = handle
        .describe(WorkflowDescribeOptions::default())
        .await
        .unwrap()
        .raw_description
        .workflow_execution_info
        .unwrap();
    (info.first_run_id.clone(), info.execution.map(|e| e.run_id).unwrap_or_default())
}

/// Replays every run of `$LOYALTY_REPLAY_WORKFLOW` on the Temporal server at
/// `$LOYALTY_REPLAY_TEMPORAL` (host:port) against this build: to check a
/// production account before deploying a new version, or to find where a
/// run diverged. Failing runs are written to target/tmp for the corpus.
#[tokio::test]
#[ignore = "reads a Temporal server named by $LOYALTY_REPLAY_TEMPORAL"]
async fn replay_a_live_account() {
    let address = std::env::var("LOYALTY_REPLAY_TEMPORAL").expect("LOYALTY_REPLAY_TEMPORAL is host:port");
    let workflow_id = std::env::var("LOYALTY_REPLAY_WORKFLOW").expect("LOYALTY_REPLAY_WORKFLOW is a workflow id");
    let url = temporalio_client::Url::parse(&format!("http://{address}")).unwrap();
    let connection = temporalio_client::Connection::connect(
        temporalio_client::ConnectionOptions::new(url).identity("loyalty-replay").build(),
    )
    .await
    .unwrap();
    let temporal =
        temporalio_client::Client::new(connection, temporalio_client::ClientOptions::new("default").build()).unwrap();
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new().register_workflow::<LoyaltyEntityWorkflow>().expect("registers").build(),
    )
    .expect("replayer");
    let mut failed = Vec::new();
    for (id, json, events) in fetch_runs(&temporal, &workflow_id).await {
        match replayer.replay_workflow(WorkflowHistory::from_json(&json).unwrap()).await {
            Ok(_) => println!("run {id}: replays ({events} events)"),
            Err(e) => {
                println!("run {id}: {e}");
                let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("diverged-{id}.json"));
                std::fs::write(&path, &json).unwrap();
                failed.push(path);
            }
        }
    }
    assert!(failed.is_empty(), "{failed:?} do not replay");
}
