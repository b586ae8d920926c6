//! Determinism: committed histories of real runs replay against the current
//! workflow code. A change that alters the command sequence fails here
//! before it can break long-lived accounts in production.
//!
//! Regenerate the histories (after an intended, versioned change) with
//! `cargo test --test replay -- --ignored capture_histories`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{accrual, client, fan_out, redemption, summary_when, temporal};
use loyalty::workflow::LoyaltyEntityWorkflow;
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

#[tokio::test]
async fn committed_histories_replay_deterministically() {
    let histories = committed_histories();
    assert!(histories.len() >= 2, "expected the captured histories in {}", histories_dir().display());
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new().register_workflow::<LoyaltyEntityWorkflow>().expect("registers").build(),
    )
    .expect("replayer");

    let (mut continued, mut updates, mut notifications, mut completed) = (0, 0, 0, 0);
    for (path, json) in &histories {
        let events = WorkflowHistory::from_json(json).expect("history JSON").into_events().await.expect("events");
        for attributes in events.iter().filter_map(|e| e.attributes.as_ref()) {
            match attributes {
                Attributes::WorkflowExecutionContinuedAsNewEventAttributes(_) => continued += 1,
                Attributes::WorkflowExecutionUpdateAcceptedEventAttributes(_) => updates += 1,
                Attributes::WorkflowExecutionCompletedEventAttributes(_) => completed += 1,
                Attributes::ActivityTaskScheduledEventAttributes(a)
                    if a.activity_type.as_ref().is_some_and(|t| t.name == "send_tier_change_notification") =>
                {
                    notifications += 1
                }
                _ => {}
            }
        }
        let history = WorkflowHistory::from_json(json).expect("history JSON");
        if let Err(e) = replayer.replay_workflow(history).await {
            panic!("{} no longer replays: {e}", path.display());
        }
    }
    assert!(continued >= 1, "the histories must cover a continue-as-new");
    assert!(updates >= 2, "the histories must cover redemptions");
    assert!(notifications >= 1, "the histories must cover a tier change");
    assert!(completed >= 1, "the histories must cover a closed account");
}

#[tokio::test]
#[ignore = "writes tests/histories from a real run"]
async fn capture_histories() {
    const CUSTOMER: &str = "replay-1";
    let mut grpc = client().await;
    let settle = Duration::from_secs(60);
    grpc.accrue(accrual(CUSTOMER, "a1", 600)).await.unwrap();
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.lifetime_points == 600).await;
    grpc.accrue(accrual(CUSTOMER, "a2", 500)).await.unwrap();
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.tier == "Silver").await;
    grpc.redeem(redemption(CUSTOMER, "r1", 100, "mug")).await.unwrap();
    grpc.redeem(redemption(CUSTOMER, "r1", 100, "mug")).await.unwrap();
    grpc.redeem(redemption(CUSTOMER, "r2", 99_999, "tv")).await.unwrap_err();

    let burst = (0..2_000).map(|i| accrual(CUSTOMER, &format!("b{i}"), 1));
    for sent in fan_out(&grpc, 16, burst, |mut g, r| async move { g.accrue(r).await }).await {
        sent.unwrap();
    }
    summary_when(&mut grpc, CUSTOMER, settle, |s| s.lifetime_points == 3_100).await;
    grpc.redeem(redemption(CUSTOMER, "r3", 50, "cap")).await.unwrap();

    let temporal = temporal().await;
    let handle = temporal.get_workflow_handle::<LoyaltyEntityWorkflow>(format!("loyalty-{CUSTOMER}"));
    handle.signal(LoyaltyEntityWorkflow::shutdown, (), WorkflowSignalOptions::default()).await.unwrap();
    summary_when(&mut grpc, CUSTOMER, settle, |s| !s.is_active).await;

    let info = handle
        .describe(WorkflowDescribeOptions::default())
        .await
        .unwrap()
        .raw_description
        .workflow_execution_info
        .unwrap();
    let last = info.execution.as_ref().unwrap().run_id.clone();
    assert_ne!(info.first_run_id, last, "the burst must continue-as-new");
    std::fs::create_dir_all(histories_dir()).unwrap();
    for (name, run_id) in [("first_run", info.first_run_id.clone()), ("last_run", last)] {
        let run = WorkflowExecutionInfo::builder()
            .namespace("default")
            .workflow_id(format!("loyalty-{CUSTOMER}"))
            .run_id(run_id)
            .build()
            .bind_untyped(temporal.clone());
        let json = run.fetch_history(Default::default()).to_json().await.unwrap();
        std::fs::write(histories_dir().join(format!("{name}.json")), json).unwrap();
    }
}
