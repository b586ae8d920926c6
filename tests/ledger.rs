//! The ledger suite: durable exactly-once, history, reversals, adjustments and
//! reconciliation, each run on SQLite and on PostgreSQL against the real
//! application and a real Temporal dev server.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Db, accrual, app_on, fan_out, fresh_database_url, grpc_channel, redemption, settings_on, start_app};
use loyalty::domain::{Command, Known, LoyaltyState, PointsEvent, ProjectionBatch, ProjectionReply, Totals};
use loyalty::grpc::pb::{self, loyalty_service_client::LoyaltyServiceClient};
use loyalty::ledger::Ledger;
use loyalty::workflow::{LoyaltyEntityWorkflow, MAX_ACCRUALS_PER_RUN};
use temporalio_client::Client;
use temporalio_client::{WorkflowDescribeOptions, WorkflowSignalOptions};
use tonic::Code;
use tonic::transport::Channel;

const SETTLE: Duration = Duration::from_secs(60);

/// Generates one `#[tokio::test]` per ledger kind for each scenario.
macro_rules! on_both_ledgers {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::$scenario(super::Db::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $scenario() { super::$scenario(super::Db::Postgres).await } )*
        }
    };
}

on_both_ledgers!(
    a_resend_after_1500_events_and_a_continue_as_new_is_applied_once,
    history_pages_are_complete_and_stable_under_concurrent_writes,
    reversals_and_adjustments_follow_the_documented_policy,
    reconcile_finds_no_difference_and_reports_a_tampered_ledger,
    reconcile_reports_no_difference_for_an_account_being_written,
    the_projection_applies_only_on_top_of_the_sequence_it_expects,
    a_state_another_worker_made_keeps_its_totals_whatever_the_ledger_holds,
);

async fn client(db: Db) -> LoyaltyServiceClient<Channel> {
    LoyaltyServiceClient::new(grpc_channel(app_on(db).grpc_addr).await)
}

async fn ledger(db: Db) -> Ledger {
    Ledger::connect(&app_on(db).database_url).await.expect("ledger opens")
}

fn customer(db: Db, name: &str) -> String {
    format!("{}-{name}", db.tag())
}

async fn summary(grpc: &mut LoyaltyServiceClient<Channel>, customer: &str) -> pb::GetSummaryResponse {
    grpc.get_summary(pb::GetSummaryRequest { customer_id: customer.into() }).await.expect("summary").into_inner()
}

/// Waits until the account's workflow and then its ledger totals both show
/// `balance` (the ledger records the account's decisions a moment behind).
async fn settled(grpc: &mut LoyaltyServiceClient<Channel>, customer: &str, balance: i64) -> pb::GetSummaryResponse {
    let s = common::summary_when(grpc, customer, SETTLE, |s| s.points_balance == balance).await;
    let db = if customer.starts_with(Db::Postgres.tag()) { Db::Postgres } else { Db::Sqlite };
    let ledger = ledger(db).await;
    let deadline = std::time::Instant::now() + SETTLE;
    while ledger.totals(customer).await.expect("ledger readable").map(|t| t.balance) != Some(balance) {
        assert!(std::time::Instant::now() < deadline, "{customer}: the ledger did not reach {balance}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s
}

async fn first_run_id(client: &Client, customer: &str) -> String {
    let handle = client.get_workflow_handle::<LoyaltyEntityWorkflow>(format!("loyalty-{customer}"));
    let d = handle.describe(WorkflowDescribeOptions::default()).await.expect("describe");
    d.raw_description.workflow_execution_info.and_then(|i| i.execution).map(|e| e.run_id).expect("run id")
}

async fn a_resend_after_1500_events_and_a_continue_as_new_is_applied_once(db: Db) {
    let mut grpc = client(db).await;
    let c = customer(db, "replayed");
    grpc.accrue(accrual(&c, "first-order", 100)).await.expect("accrue");
    settled(&mut grpc, &c, 100).await;
    grpc.redeem(redemption(&c, "first-reward", 40, "mug")).await.expect("redeem");
    let temporal = common::temporal().await;
    let first_run = first_run_id(&temporal, &c).await;

    // Past the 1,000-id window and past the signals that force continue-as-new.
    let others = MAX_ACCRUALS_PER_RUN as i64 + 100;
    let results = fan_out(&grpc, 32, 0..others, |mut g, i| {
        let c = c.clone();
        async move { g.accrue(accrual(&c, &format!("o-{i}"), 1)).await.map(|_| ()) }
    })
    .await;
    assert!(results.iter().all(Result::is_ok), "every accrual accepted");
    settled(&mut grpc, &c, 60 + others).await;
    let deadline = std::time::Instant::now() + SETTLE;
    while first_run_id(&temporal, &c).await == first_run {
        assert!(std::time::Instant::now() < deadline, "the account did not continue as new");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Resent through the API: answered from the ledger.
    grpc.accrue(accrual(&c, "first-order", 100)).await.expect("a resend is accepted");
    let replay = grpc.redeem(redemption(&c, "first-reward", 40, "mug")).await.expect("a resend replays").into_inner();
    assert_eq!((replay.redeemed, replay.remaining_balance), (40, 60), "the original result");
    let reused = grpc.accrue(accrual(&c, "first-order", 101)).await.unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists, "{reused:?}");
    let reused = grpc.redeem(redemption(&c, "first-reward", 41, "mug")).await.unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists, "{reused:?}");

    // Resent straight to the workflow, as a client of the reference guide would:
    // the window has forgotten it, the ledger has not.
    let handle = temporal.get_workflow_handle::<LoyaltyEntityWorkflow>(format!("loyalty-{c}"));
    let resend = PointsEvent {
        event_id: "first-order".into(),
        points: 100,
        reason: "purchase".into(),
        source: "tests".into(),
        ledger_checked: false,
        ..Default::default()
    };
    handle.signal(LoyaltyEntityWorkflow::add_points, resend, WorkflowSignalOptions::default()).await.expect("signal");
    grpc.accrue(accrual(&c, "marker", 5)).await.expect("accrue");
    let s = settled(&mut grpc, &c, 60 + others + 5).await;
    assert_eq!(s.lifetime_points, 100 + others + 5, "the resend was not counted");

    let rows = ledger(db).await.entries(&c).await.unwrap();
    assert_eq!(rows.len() as i64, 1 + 1 + others + 1, "one row per distinct event");
    assert_eq!(rows.iter().filter(|r| r.event_id == "first-order").count(), 1);
}

async fn history_pages_are_complete_and_stable_under_concurrent_writes(db: Db) {
    let mut grpc = client(db).await;
    let c = customer(db, "paged");
    for i in 0..120 {
        grpc.accrue(accrual(&c, &format!("h-{i:03}"), 1)).await.expect("accrue");
    }
    settled(&mut grpc, &c, 120).await;

    // Page through while 60 more accruals land.
    let writer = {
        let grpc = grpc.clone();
        let c = c.clone();
        tokio::spawn(async move {
            fan_out(&grpc, 4, 0..60, |mut g, i| {
                let c = c.clone();
                async move { g.accrue(accrual(&c, &format!("late-{i:03}"), 1)).await.map(|_| ()) }
            })
            .await
        })
    };
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = grpc
            .get_history(pb::GetHistoryRequest { customer_id: c.clone(), page_size: 25, page_token: token })
            .await
            .expect("history page")
            .into_inner();
        assert!(page.entries.len() <= 25);
        pages.push(page.entries);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(writer.await.unwrap().iter().all(Result::is_ok));

    let seen: Vec<pb::HistoryEntry> = pages.into_iter().flatten().collect();
    let ids: Vec<&str> = seen.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "no entry twice");
    for i in 0..120 {
        assert!(ids.contains(&format!("h-{i:03}").as_str()), "h-{i:03} missing from the pages");
    }
    // Newest first, no gap: the pages are a contiguous run of the ledger, reversed.
    let all = ledger(db).await.entries(&c).await.unwrap();
    let position = |id: &str| all.iter().position(|r| r.event_id == id).expect("in ledger");
    let positions: Vec<usize> = ids.iter().map(|id| position(id)).collect();
    assert!(positions.windows(2).all(|w| w[0] == w[1] + 1), "contiguous and newest first");
    assert_eq!(*positions.last().unwrap(), 0, "down to the oldest entry");
    let first = &seen[0];
    assert_eq!(first.kind, pb::EntryKind::Accrual as i32);
    assert!(first.recorded_at.as_ref().is_some_and(|t| t.seconds > 1_700_000_000), "a real time");

    settled(&mut grpc, &c, 180).await;
    let unknown = grpc
        .get_history(pb::GetHistoryRequest {
            customer_id: customer(db, "nobody"),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let bad = grpc
        .get_history(pb::GetHistoryRequest { customer_id: c.clone(), page_size: 0, page_token: "x".into() })
        .await
        .unwrap_err();
    assert_eq!((bad.code(), bad.message().starts_with("page_token")), (Code::InvalidArgument, true), "{bad:?}");
}

fn reverse(c: &str, id: &str, original: &str, points: Option<i64>) -> pb::ReverseRequest {
    pb::ReverseRequest {
        customer_id: c.into(),
        reverse_event_id: id.into(),
        original_event_id: original.into(),
        points,
        reason: "refund".into(),
        lines: Vec::new(),
    }
}

fn adjust(c: &str, id: &str, points: i64) -> pb::AdjustRequest {
    pb::AdjustRequest { customer_id: c.into(), event_id: id.into(), points, reason: "support ticket 42".into() }
}

async fn reversals_and_adjustments_follow_the_documented_policy(db: Db) {
    let mut grpc = client(db).await;
    let c = customer(db, "refunds");
    grpc.accrue(accrual(&c, "order-1", 1_200)).await.unwrap();
    assert_eq!(settled(&mut grpc, &c, 1_200).await.tier, "Silver");
    grpc.redeem(redemption(&c, "reward-1", 1_000, "headphones")).await.unwrap();

    // A partial refund: balance and lifetime drop by the clawback.
    let part = grpc.reverse(reverse(&c, "refund-1", "order-1", Some(100))).await.unwrap().into_inner().change.unwrap();
    assert_eq!((part.points, part.lifetime_delta, part.shortfall), (-100, -100, 0));
    assert_eq!((part.points_balance, part.lifetime_points, part.tier.as_str()), (100, 1_100, "Silver"));

    // The rest of the order is refunded: the balance floors at zero, the
    // shortfall is recorded, lifetime points and the tier fall.
    let rest = grpc.reverse(reverse(&c, "refund-2", "order-1", None)).await.unwrap().into_inner().change.unwrap();
    assert_eq!((rest.points, rest.lifetime_delta, rest.shortfall), (-100, -1_100, 1_000));
    assert_eq!((rest.points_balance, rest.lifetime_points, rest.tier.as_str()), (0, 0, "Bronze"));

    // Idempotent by the reversal's id; never more than the original held.
    let again = grpc.reverse(reverse(&c, "refund-2", "order-1", None)).await.unwrap().into_inner().change.unwrap();
    assert_eq!((again.points, again.shortfall, again.points_balance), (-100, 1_000, 0), "the original answer");
    let over = grpc.reverse(reverse(&c, "refund-3", "order-1", Some(1))).await.unwrap_err();
    assert_eq!(over.code(), Code::FailedPrecondition, "{over:?}");
    let reused = grpc.reverse(reverse(&c, "refund-1", "order-1", Some(99))).await.unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists, "{reused:?}");

    // A cancelled reward returns its points, not lifetime points.
    let cancel =
        grpc.reverse(reverse(&c, "cancel-1", "reward-1", Some(300))).await.unwrap().into_inner().change.unwrap();
    assert_eq!((cancel.points, cancel.lifetime_delta, cancel.points_balance, cancel.lifetime_points), (300, 0, 300, 0));

    let missing = grpc.reverse(reverse(&c, "refund-4", "no-such-order", None)).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let of_reversal = grpc.reverse(reverse(&c, "refund-5", "refund-1", None)).await.unwrap_err();
    assert_eq!(of_reversal.code(), Code::FailedPrecondition, "{of_reversal:?}");

    // Adjustments move balance and lifetime together; a deduction beyond the balance is refused.
    let up = grpc.adjust(adjust(&c, "fix-1", 5_000)).await.unwrap().into_inner().change.unwrap();
    assert_eq!((up.points_balance, up.lifetime_points, up.tier.as_str()), (5_300, 5_000, "Gold"));
    let down = grpc.adjust(adjust(&c, "fix-2", -300)).await.unwrap().into_inner().change.unwrap();
    assert_eq!((down.points_balance, down.lifetime_points, down.tier.as_str()), (5_000, 4_700, "Silver"));
    let too_much = grpc.adjust(adjust(&c, "fix-3", -5_001)).await.unwrap_err();
    assert_eq!(too_much.code(), Code::FailedPrecondition, "{too_much:?}");
    let reused = grpc.adjust(adjust(&c, "fix-1", 5_001)).await.unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists, "{reused:?}");
    let no_reason = grpc
        .adjust(pb::AdjustRequest {
            customer_id: c.clone(),
            event_id: "fix-4".into(),
            points: 1,
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!((no_reason.code(), no_reason.message().starts_with("reason")), (Code::InvalidArgument, true));

    // The workflow, the history and the notifications all agree.
    let s = summary(&mut grpc, &c).await;
    assert_eq!((s.points_balance, s.lifetime_points, s.tier.as_str()), (5_000, 4_700, "Silver"));
    let history = grpc
        .get_history(pb::GetHistoryRequest { customer_id: c.clone(), page_size: 0, page_token: String::new() })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let kinds: Vec<(String, i64, i64)> =
        history.iter().map(|e| (e.event_id.clone(), e.points, e.balance_after)).collect();
    assert_eq!(
        kinds,
        vec![
            ("fix-2".into(), -300, 5_000),
            ("fix-1".into(), 5_000, 5_300),
            ("cancel-1".into(), 300, 300),
            ("refund-2".into(), -100, 0),
            ("refund-1".into(), -100, 100),
            ("reward-1".into(), -1_000, 200),
            ("order-1".into(), 1_200, 1_200),
        ]
    );
    assert_eq!(history[3].shortfall, 1_000);
    assert_eq!(history[3].original_event_id, "order-1");
    assert_eq!(history[3].kind, pb::EntryKind::Reversal as i32);
    assert_eq!(history[0].kind, pb::EntryKind::Adjustment as i32);
    // A refund right after its purchase finds the purchase, though it may still be pending.
    let quick = customer(db, "quick-refund");
    grpc.accrue(accrual(&quick, "order-9", 80)).await.unwrap();
    let refund = grpc.reverse(reverse(&quick, "refund-9", "order-9", None)).await.unwrap().into_inner().change.unwrap();
    assert_eq!((refund.points, refund.points_balance, refund.lifetime_points), (-80, 0, 0));

    let tiers = ledger(db).await.tier_changes(&c).await.unwrap();
    let tiers: Vec<(&str, &str)> = tiers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(tiers, vec![("Bronze", "Silver"), ("Silver", "Bronze"), ("Bronze", "Gold"), ("Gold", "Silver")]);
}

/// `loyalty reconcile` over a whole ledger of its own, through the binary.
async fn reconcile_finds_no_difference_and_reports_a_tampered_ledger(db: Db) {
    let settings = settings_on(db, "reconcile");
    let (database_url, task_queue) = (settings.database_url.clone(), settings.task_queue.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (addr, thread) = start_app(settings, stopped);
    let mut grpc = LoyaltyServiceClient::new(grpc_channel(addr).await);
    let accounts: Vec<String> = (0..12).map(|i| customer(db, &format!("rec-{i}"))).collect();
    for (i, c) in accounts.iter().enumerate() {
        grpc.accrue(accrual(c, "e1", 100 + i as i64)).await.unwrap();
    }
    for (i, c) in accounts.iter().enumerate() {
        common::summary_when(&mut grpc, c, SETTLE, |s| s.lifetime_points == 100 + i as i64).await;
    }
    grpc.redeem(redemption(&accounts[0], "r1", 50, "tea")).await.unwrap();
    grpc.adjust(adjust(&accounts[1], "fix", -10)).await.unwrap();
    // An accrual reaches the ledger about a second behind (the run's write
    // behind); the redemption and the adjustment, with the accrual before
    // them, were written before their calls returned.
    let written = Ledger::connect(&database_url).await.expect("ledger opens");
    for c in &accounts {
        common::rows_when(&written, c, 1).await;
    }

    let run = |customer: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"));
        cmd.arg("reconcile")
            .env("LOYALTY_DATABASE_URL", &database_url)
            .env("LOYALTY_TASK_QUEUE", &task_queue)
            .env("TEMPORAL_ADDRESS", common::temporal_address())
            .env_remove("TEMPORAL_CONFIG_FILE");
        if let Some(c) = customer {
            cmd.args(["--customer", c]);
        }
        cmd.output().expect("loyalty runs")
    };
    let clean = run(None);
    let (stdout, stderr) = (String::from_utf8_lossy(&clean.stdout), String::from_utf8_lossy(&clean.stderr));
    assert_eq!(clean.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("checked 12 accounts: 0 differing"), "{stderr}");

    // Tamper with one account's totals behind the service's back.
    sqlx::any::install_default_drivers();
    let db_handle = sqlx::AnyPool::connect(&database_url).await.unwrap();
    sqlx::query("UPDATE accounts SET balance = balance + 5 WHERE customer_id = $1")
        .bind(&accounts[2])
        .execute(&db_handle)
        .await
        .unwrap();
    let dirty = run(None);
    let stdout = String::from_utf8_lossy(&dirty.stdout);
    assert_eq!(dirty.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("{}: balance: workflow 102 ledger 107", accounts[2])), "{stdout}");
    assert!(stdout.contains("ledger rows sum to 102 but the balance is 107"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| !l.starts_with(&accounts[2])).count(),
        0,
        "only the tampered account: {stdout}"
    );
    let one = run(Some(&accounts[3]));
    assert_eq!(one.status.code(), Some(0), "{}", String::from_utf8_lossy(&one.stderr));
    db_handle.close().await;
    let _ = stop.send(());
    thread.join().expect("app stops");
}

/// Reconciling an account while it is being written (Accrue, Redeem and
/// holds back to back) never reports a difference: the ledger is read as one
/// snapshot and compared as of the entry the workflow last wrote.
async fn reconcile_reports_no_difference_for_an_account_being_written(db: Db) {
    let shared = app_on(db);
    let ledger = ledger(db).await;
    let temporal = common::temporal().await;
    let c = customer(db, "reconcile-hot");
    let mut grpc = client(db).await;
    grpc.accrue(accrual(&c, "seed", 1_000)).await.unwrap();
    settled(&mut grpc, &c, 1_000).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (mut grpc, c, stop) =
            (LoyaltyServiceClient::new(grpc_channel(shared.grpc_addr).await), c.clone(), stop.clone());
        tokio::spawn(async move {
            let mut writes = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                grpc.accrue(accrual(&c, &format!("a{writes}"), 10)).await.unwrap();
                grpc.redeem(redemption(&c, &format!("r{writes}"), 3, "tea")).await.unwrap();
                grpc.reserve(pb::ReserveRequest {
                    customer_id: c.clone(),
                    hold_id: format!("h{writes}"),
                    points: 2,
                    ttl: Some(prost_types::Duration { seconds: 600, nanos: 0 }),
                })
                .await
                .unwrap();
                grpc.release(pb::ReleaseRequest { customer_id: c.clone(), hold_id: format!("h{writes}") })
                    .await
                    .unwrap();
                writes += 4;
            }
            writes
        })
    };
    let mut checks = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        let differences = loyalty::reconcile::check_account(&temporal, &ledger, &c).await.unwrap();
        assert!(differences.is_empty(), "check {checks}: {differences:?}");
        let audit = ledger.audit(&c).await.unwrap().expect("known");
        assert!(audit.inconsistencies().is_empty(), "check {checks}: {audit:?}");
        checks += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes >= 40 && checks >= 3, "the account was busy while checked: {writes} writes, {checks} checks");
    ledger.close().await;
}

/// `loyalty history | reverse | adjust` against the running service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_history_and_applies_corrections() {
    let db = Db::Sqlite;
    let mut grpc = client(db).await;
    let c = customer(db, "cli");
    grpc.accrue(accrual(&c, "o1", 500)).await.unwrap();
    settled(&mut grpc, &c, 500).await;
    let server = format!("http://{}", app_on(db).grpc_addr);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_loyalty"))
            .args(args)
            .args(["--customer", &c, "--server", &server])
            .output()
            .expect("loyalty runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) =
        cli(&["reverse", "--event", "rv1", "--original", "o1", "--points", "200", "--reason", "refund", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let change: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!((change["points"].as_i64(), change["points_balance"].as_i64()), (Some(-200), Some(300)));

    let (code, out, err) = cli(&["adjust", "--event", "ad1", "--points=-50", "--reason", "goodwill reversal"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("balance -50") && out.contains("now 250 points"), "{out}");

    // History reads the ledger, which records the decisions a moment after their answers.
    settled(&mut grpc, &c, 250).await;
    let (code, out, err) = cli(&["history", "--page-size", "2", "--all"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].contains("adjustment") && lines[0].contains("ad1"), "{out}");
    assert!(lines[1].contains("reversal") && lines[1].contains("(reverses o1)"), "{out}");
    assert!(lines[2].contains("accrual") && lines[2].contains("500"), "{out}");

    let (code, _, err) = cli(&["reverse", "--event", "rv2", "--original", "nope"]);
    assert_eq!(code, Some(Code::NotFound as i32), "{err}");
    let (code, _, err) = cli(&["adjust", "--event", "ad2", "--points", "5", "--reason", ""]);
    assert_eq!(code, Some(Code::InvalidArgument as i32), "{err}");
}

/// The fenced projection against the real database: a write applies only on
/// top of the sequence and totals it expects; a retry of a committed write
/// (alone or with more entries decided since) is recognised and completed;
/// a ledger behind, ahead or diverged is refused and nothing is written.
async fn the_projection_applies_only_on_top_of_the_sequence_it_expects(db: Db) {
    let ledger = ledger(db).await;
    let c = customer(db, "fenced");
    let mut account = LoyaltyState::open(&c);
    let event = |id: &str, points| PointsEvent {
        event_id: id.into(),
        points,
        reason: "purchase".into(),
        source: "pos".into(),
        ledger_checked: true,
        ..Default::default()
    };
    account.apply(Command::AccrueBatch(vec![event("f1", 1_200), event("f2", 30)]), 0).unwrap();
    let first = account.projection(2, usize::MAX);
    let written = |reply: &ProjectionReply| matches!(reply, ProjectionReply::Written { .. });

    let (reply, recovered) = ledger.project(&first).await.unwrap();
    assert!(written(&reply) && !recovered, "{reply:?}");
    assert_eq!(ledger.sequence(&c).await.unwrap(), 2);
    assert_eq!(ledger.totals(&c).await.unwrap(), Some(Totals { balance: 1_230, lifetime: 1_230 }));
    assert_eq!(ledger.tier_changes(&c).await.unwrap().len(), 1, "the tier change rode with its entry");

    // The answer was lost: the same write again changes nothing.
    let (reply, recovered) = ledger.project(&first).await.unwrap();
    assert!(written(&reply) && recovered, "{reply:?}");
    // ... and with an entry decided since, only that one is added.
    let redeem = loyalty::domain::RedemptionRequest { event_id: "f3".into(), points: 5, reward: "pen".into() };
    account.apply(Command::Redeem(redeem), 0).unwrap();
    let longer = account.projection(10, usize::MAX);
    assert_eq!((longer.after_seq, longer.entries.len()), (0, 3));
    let (reply, recovered) = ledger.project(&longer).await.unwrap();
    assert!(written(&reply) && recovered, "{reply:?}");
    assert_eq!(ledger.sequence(&c).await.unwrap(), 3);
    assert_eq!(ledger.entries(&c).await.unwrap().len(), 3);
    account.written(&longer);

    // Behind (a lost database or an old backup): the account is at 3, this ledger at 0.
    account.apply(Command::Accrue(event("f4", 1)), 0).unwrap();
    let next = account.projection(10, usize::MAX);
    let lost = customer(db, "fenced-lost");
    let (reply, _) = ledger.project(&ProjectionBatch { customer_id: lost.clone(), ..next.clone() }).await.unwrap();
    assert!(matches!(reply, ProjectionReply::Fenced { ledger_seq: 0, .. }), "{reply:?}");
    assert!(ledger.entries(&lost).await.unwrap().is_empty(), "nothing written");
    // Diverged: the right sequence but other totals.
    let diverged = ProjectionBatch { totals_before: Totals { balance: 1, lifetime: 1 }, ..next.clone() };
    assert!(matches!(ledger.project(&diverged).await.unwrap().0, ProjectionReply::Fenced { ledger_seq: 3, .. }));
    // Ahead: a write that starts before the ledger's newest with other events there.
    let mut stale = next.clone();
    stale.after_seq = 2;
    stale.entries[0].seq = 3;
    assert!(matches!(ledger.project(&stale).await.unwrap().0, ProjectionReply::Fenced { .. }));
    assert_eq!(ledger.sequence(&c).await.unwrap(), 3, "nothing written by refused writes");

    // An id the ledger holds already is recorded under a suffixed id and reported.
    let mut again = next.clone();
    again.entries[0].movement.event_id = "f1".into();
    again.check = vec![event("f2", 30).movement(), event("f9", 1).movement(), event("f2", 31).movement()];
    let (reply, _) = ledger.project(&again).await.unwrap();
    let ProjectionReply::Written { duplicates, known } = reply else { panic!("{reply:?}") };
    assert_eq!(duplicates, vec![4]);
    assert_eq!(known, vec![Known::Same, Known::New, Known::Other]);
    assert!(ledger.entries(&c).await.unwrap().iter().any(|r| r.event_id == "f1#4"));
}

/// The CA that signed the test PostgreSQL server's certificate
/// (scripts/postgres.sh writes it next to the server's certificate).
async fn postgres_ca(url: &str) -> std::path::PathBuf {
    if let Ok(ca) = std::env::var("LOYALTY_TEST_POSTGRES_CA") {
        return ca.into();
    }
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("postgres reachable");
    let cert: String = sqlx::query_scalar("SHOW ssl_cert_file").fetch_one(&mut conn).await.unwrap();
    let ca = std::path::Path::new(&cert).with_file_name("ca.pem");
    assert!(ca.exists(), "no CA next to the server's certificate {cert}: start PostgreSQL with scripts/postgres.sh");
    ca
}

/// The ledger over TLS to PostgreSQL: `verify-full` against the CA connects
/// encrypted; a wrong CA, or the public roots for a private certificate, is
/// refused at start with a message that says what to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server_and_refuses_a_wrong_ca() {
    let url = fresh_database_url(Db::Postgres, "tls");
    let ca = postgres_ca(&url).await;
    let with = |params: String| format!("{url}?{params}");

    let verified = Ledger::connect(&with(format!("sslmode=verify-full&sslrootcert={}", ca.display())))
        .await
        .expect("verify-full with the server's CA connects");
    assert_eq!(verified.encrypted().await.unwrap(), Some(true));
    verified.close().await;
    let required = Ledger::connect(&with("sslmode=require".into())).await.expect("require connects");
    assert_eq!(required.encrypted().await.unwrap(), Some(true));
    required.close().await;
    let plain = Ledger::connect(&with("sslmode=disable".into())).await.expect("disable connects");
    assert_eq!(plain.encrypted().await.unwrap(), Some(false), "the check can tell plaintext");
    plain.close().await;

    let dir = common::scratch_dir("pg-wrong-ca");
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-keyout", "other.key", "-out", "other.pem", "-days", "2", "-subj", "/CN=someone-else"])
        .current_dir(&dir)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let wrong = format!("sslmode=verify-ca&sslrootcert={}", dir.join("other.pem").display());
    let public_roots = "sslmode=verify-full".to_string();
    for params in [wrong, public_roots] {
        let refused = Ledger::connect(&with(params.clone())).await.expect_err("an unverified server is refused");
        let message = refused.to_string();
        assert!(message.contains("TLS") && message.contains("sslrootcert"), "{params}: {message}");
        // At start, the whole process refuses with the same words.
        let mut settings = common::settings("pg-wrong-ca");
        settings.database_url = with(params.clone());
        let start = loyalty::app::Application::build(settings).await.err().expect("the service does not start");
        assert!(start.to_string().starts_with("ledger: cannot connect over TLS"), "{start}");
    }
}

/// A state with only the reference guide's seven fields, as its worker
/// carries it at continue-as-new.
fn guide_state(customer: &str, balance: i64, lifetime: i64, pending: &[(&str, i64)]) -> String {
    let pending: Vec<_> = pending
        .iter()
        .map(
            |(id, points)| serde_json::json!({"event_id": id, "points": points, "reason": "purchase", "source": "pos"}),
        )
        .collect();
    serde_json::json!({
        "customer_id": customer, "points_balance": balance, "lifetime_points": lifetime,
        "tier": loyalty::domain::Tier::for_lifetime(lifetime).as_str(), "is_active": true,
        "processed_event_ids": ["g-1", "g-2"], "pending_events": pending,
    })
    .to_string()
}

/// Our run of an account ends and another worker's state starts the next
/// (the guide's worker continuing-as-new onto ours is the same to us).
async fn restart_with(temporal: &Client, task_queue: &str, customer: &str, state: &str) {
    let handle = temporal.get_workflow_handle::<LoyaltyEntityWorkflow>(format!("loyalty-{customer}"));
    handle.terminate(Default::default()).await.expect("terminated");
    common::start_with_state(temporal, task_queue, customer, state).await;
}

/// A state another worker made is trusted as the record of its decisions:
/// over an empty ledger it keeps its totals, tier, recent ids and queued
/// accrual (checked, then applied) and the ledger opens with its totals;
/// over a ledger that holds exactly those totals (ours wrote them before
/// the other worker's run changed nothing) the account continues on it;
/// over a ledger that disagrees, the account keeps its totals and deciding,
/// and holds its writes, reported: the ledger's totals are never adopted.
async fn a_state_another_worker_made_keeps_its_totals_whatever_the_ledger_holds(db: Db) {
    let shared = app_on(db);
    let (temporal, ledger, mut grpc) = (common::temporal().await, ledger(db).await, client(db).await);
    let c = customer(db, "guide-empty");
    common::start_with_state(&temporal, &shared.task_queue, &c, &guide_state(&c, 1_050, 1_200, &[("g-3", 30)])).await;
    let s = settled(&mut grpc, &c, 1_080).await;
    assert_eq!((s.lifetime_points, s.tier.as_str(), s.unapplied_points), (1_230, "Silver", 0), "{s:?}");
    let resend = grpc.redeem(redemption(&c, "g-2", 1, "pen")).await.unwrap_err();
    assert_eq!(resend.code(), Code::Unavailable, "its recent ids stay: {resend:?}");
    let rows = common::rows_when(&ledger, &c, 2).await;
    let kinds: Vec<_> = rows.iter().map(|r| (r.kind.as_str(), r.points, r.lifetime_delta)).collect();
    assert_eq!(kinds, [("opening", 1_050, 1_200), ("accrual", 30, 30)]);
    assert!(loyalty::reconcile::check_account(&temporal, &ledger, &c).await.unwrap().is_empty());
    let events = ledger.events(&c, 0, 10, false).await.unwrap();
    assert_eq!(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["account.opened", "points.accrued"]);

    // Over a ledger holding exactly the carried totals: continued on it.
    let c = customer(db, "guide-same");
    grpc.accrue(accrual(&c, "s-1", 1_200)).await.unwrap();
    grpc.redeem(redemption(&c, "s-2", 150, "mug")).await.unwrap();
    settled(&mut grpc, &c, 1_050).await;
    restart_with(&temporal, &shared.task_queue, &c, &guide_state(&c, 1_050, 1_200, &[])).await;
    grpc.accrue(accrual(&c, "s-3", 10)).await.unwrap();
    settled(&mut grpc, &c, 1_060).await;
    let rows = ledger.entries(&c).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(), ["s-1", "s-2", "s-3"], "{rows:?}");
    assert!(loyalty::reconcile::check_account(&temporal, &ledger, &c).await.unwrap().is_empty());

    // Over a ledger that disagrees: held and reported, never adopted.
    let c = customer(db, "guide-other");
    grpc.accrue(accrual(&c, "o-1", 500)).await.unwrap();
    settled(&mut grpc, &c, 500).await;
    restart_with(&temporal, &shared.task_queue, &c, &guide_state(&c, 900, 900, &[])).await;
    grpc.accrue(accrual(&c, "o-2", 10)).await.unwrap();
    let s = common::summary_when(&mut grpc, &c, SETTLE, |s| s.points_balance == 910).await;
    assert_eq!(s.lifetime_points, 910, "the carried totals, not the ledger's");
    let handle = temporal.get_workflow_handle::<LoyaltyEntityWorkflow>(format!("loyalty-{c}"));
    let deadline = std::time::Instant::now() + SETTLE;
    let held = loop {
        let q = handle.query(LoyaltyEntityWorkflow::get_loyalty_summary, (), Default::default()).await.unwrap();
        match q.ledger_held {
            Some(why) => break why,
            None if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            None => panic!("the account holds its writes: {q:?}"),
        }
    };
    assert!(held.contains("ledger holds entry 1 with balance 500"), "{held}");
    assert_eq!(ledger.totals(&c).await.unwrap(), Some(Totals { balance: 500, lifetime: 500 }), "nothing written");
    let differences = loyalty::reconcile::check_account(&temporal, &ledger, &c).await.unwrap();
    assert!(!differences.is_empty(), "reconcile reports it");
}
