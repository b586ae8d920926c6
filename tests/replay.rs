//! Determinism: committed histories of real 1.0 runs replay against the
//! current workflow code. A change that alters the command sequence of a
//! running account fails here before it can break long-lived accounts.
//!
//! The corpus (`tests/histories/v1_*.json`, from 1.1 `v11_*.json`, from 1.2 `v12_*.json`, 1.3 `v13_*`, 1.4
//! `v14_*`) is recorded by the capture
//! tests below, each writing the files it is named for:
//! `cargo test --test replay -- --ignored capture_` (about a minute). They
//! run on a dev server of their own that suggests continue-as-new after
//! [`SUGGEST_AFTER`] events, so a run fills (and its files stay small)
//! after a few dozen calls. A later release keeps these files and adds its
//! own (see README, "Versioning").

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Db, accrual, end_outage, fail_inserts_on, fan_out, redemption, rows_when, summary_when};
use loyalty::devserver::{DevServer, DevServerOptions};
use loyalty::domain::{EntryKind, LoyaltyState, PointsEvent, ProjectionBatch};
use loyalty::grpc::pb::{self, loyalty_service_client::LoyaltyServiceClient};
use loyalty::ledger::Ledger;
use loyalty::workflow::LoyaltyEntityWorkflow;
use loyalty::workflow::{RUN_END_PATCH, SHORT_RUNS_PATCH, WRITE_BEHIND_PATCH};
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecutionInfo, WorkflowHandle, WorkflowHistory, WorkflowSignalOptions,
};
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use tonic::transport::Channel;

/// History events after which the capture server suggests continue-as-new.
const SUGGEST_AFTER: u32 = 120;
const SETTLE: Duration = Duration::from_secs(60);

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
    signals: BTreeMap<String, usize>,
    updates: BTreeMap<String, usize>,
    /// Entry kinds the runs wrote to the ledger (from the activities' inputs).
    written: BTreeSet<EntryKind>,
    /// Release entries of holds that expired by themselves.
    holds_expired: usize,
    timers_fired: usize,
    timers_canceled: usize,
    /// Writes whose retries ran out (a ledger outage), and writes after one.
    writes_failed: usize,
    writes_after_failure: usize,
    /// Accruals the run loop checked against the ledger.
    checked_by_the_run: usize,
    continued: usize,
    /// Continue-as-new at 500 events, in runs that recorded its patch marker.
    short_runs_marked: usize,
    /// The run's notice before a continue-as-new, under its patch marker.
    notices_marked: usize,
    /// Notice periods (the activity) a run waited out.
    notice_periods: usize,
    /// Runs that recorded 1.3's paused write, and its paused writes.
    write_behind_marked: usize,
    paused_writes: usize,
    continued_with_unwritten_entries: usize,
    continued_with_pending_lots_and_holds: usize,
    /// Order accruals written with their breakdown, line returns written
    /// with their lines (some of 0 points), and runs continuing with
    /// campaign usage.
    order_accruals: usize,
    line_returns: usize,
    zero_point_returns: usize,
    continued_with_campaign_usage: usize,
    /// Runs started with a state another worker made (no `version`).
    foreign_inputs: usize,
    completed: usize,
    /// A write failed and none has completed since (across a run's end).
    failing: bool,
}

impl Coverage {
    fn count(&mut self, events: &[HistoryEvent]) {
        for attributes in events.iter().filter_map(|e| e.attributes.as_ref()) {
            match attributes {
                Attributes::WorkflowExecutionStartedEventAttributes(a) => {
                    let input: Option<serde_json::Value> = a
                        .input
                        .as_ref()
                        .and_then(|p| p.payloads.first())
                        .and_then(|p| serde_json::from_slice(&p.data).ok());
                    if input.is_some_and(|v| v.is_object() && v.get("version").is_none()) {
                        self.foreign_inputs += 1;
                    }
                }
                Attributes::WorkflowExecutionSignaledEventAttributes(a) => {
                    *self.signals.entry(a.signal_name.clone()).or_default() += 1;
                }
                Attributes::WorkflowExecutionUpdateAcceptedEventAttributes(a) => {
                    let name = a.accepted_request.as_ref().and_then(|r| r.input.as_ref()).map(|i| i.name.clone());
                    *self.updates.entry(name.unwrap_or_default()).or_default() += 1;
                }
                Attributes::ActivityTaskScheduledEventAttributes(a)
                    if a.activity_type.as_ref().is_some_and(|t| t.name == "notice_period") =>
                {
                    self.notice_periods += 1;
                }
                Attributes::ActivityTaskScheduledEventAttributes(a) => {
                    let batch: Option<ProjectionBatch> = a
                        .input
                        .as_ref()
                        .and_then(|p| p.payloads.first())
                        .and_then(|p| serde_json::from_slice(&p.data).ok());
                    let Some(batch) = batch else { continue };
                    self.checked_by_the_run += batch.check.len();
                    self.paused_writes += usize::from(batch.pause_ms > 0);
                    for entry in &batch.entries {
                        self.written.insert(entry.movement.kind);
                        self.order_accruals += usize::from(entry.earned.is_some());
                        self.line_returns += usize::from(!entry.returned.is_empty());
                        self.zero_point_returns +=
                            usize::from(!entry.returned.is_empty() && entry.effect.requested == 0);
                        self.holds_expired += usize::from(
                            entry.movement.kind == EntryKind::Release && entry.movement.reason == "hold expired",
                        );
                    }
                }
                Attributes::ActivityTaskFailedEventAttributes(_)
                | Attributes::ActivityTaskTimedOutEventAttributes(_) => {
                    self.writes_failed += 1;
                    self.failing = true;
                }
                Attributes::ActivityTaskCompletedEventAttributes(_) if self.failing => {
                    self.writes_after_failure += 1;
                    self.failing = false;
                }
                Attributes::MarkerRecordedEventAttributes(a) => {
                    let names = |patch: &str| {
                        a.details
                            .values()
                            .any(|p| p.payloads.iter().any(|p| String::from_utf8_lossy(&p.data).contains(patch)))
                    };
                    self.short_runs_marked += usize::from(names(SHORT_RUNS_PATCH));
                    self.notices_marked += usize::from(names(RUN_END_PATCH));
                    self.write_behind_marked += usize::from(names(WRITE_BEHIND_PATCH));
                }
                Attributes::TimerFiredEventAttributes(_) => self.timers_fired += 1,
                Attributes::TimerCanceledEventAttributes(_) => self.timers_canceled += 1,
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
                    if carried.as_ref().is_some_and(|s| !s.campaign_usage.is_empty()) {
                        self.continued_with_campaign_usage += 1;
                    }
                    if carried.is_some_and(|s| s.lots.pending() > 0 && !s.holds.is_empty()) {
                        self.continued_with_pending_lots_and_holds += 1;
                    }
                }
                Attributes::WorkflowExecutionCompletedEventAttributes(_) => self.completed += 1,
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn committed_histories_replay_deterministically() {
    let histories = committed_histories();
    assert!(!histories.is_empty(), "the corpus is committed");
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new().register_workflow::<LoyaltyEntityWorkflow>().expect("registers").build(),
    )
    .expect("replayer");
    let mut c = Coverage::default();
    for (path, json) in &histories {
        let events = WorkflowHistory::from_json(json).expect("history JSON").into_events().await.expect("events");
        c.count(&events);
        let history = WorkflowHistory::from_json(json).expect("history JSON");
        if let Err(e) = replayer.replay_workflow(history).await {
            panic!("{} no longer replays: {e}", path.display());
        }
    }
    for signal in ["add_points", "add_points_batch", "shutdown"] {
        assert!(c.signals.contains_key(signal), "{signal}: {c:?}");
    }
    for update in
        ["redeem_points", "reverse_points", "adjust_points", "reserve_points", "capture_points", "release_points"]
    {
        assert!(c.updates.contains_key(update), "{update}: {c:?}");
    }
    for kind in EntryKind::ALL {
        assert!(c.written.contains(&kind), "an entry of every kind is written: {kind:?} {c:?}");
    }
    assert!(c.holds_expired >= 1, "a hold released at its deadline: {c:?}");
    assert!(c.timers_fired >= 4, "activation, announcement, expiry and hold deadline on timers: {c:?}");
    assert!(c.timers_canceled >= 1, "a timer replaced by a nearer due time: {c:?}");
    assert!(c.writes_failed >= 1 && c.writes_after_failure >= 1, "a ledger outage and its recovery: {c:?}");
    assert!(c.checked_by_the_run >= 2, "accruals checked by the run loop: {c:?}");
    assert!(c.continued_with_unwritten_entries >= 1, "continue-as-new carrying unwritten entries: {c:?}");
    assert!(c.continued_with_pending_lots_and_holds >= 1, "continue-as-new carrying pending lots and a hold: {c:?}");
    assert!(c.foreign_inputs >= 1, "a run started from a state the guide's worker made: {c:?}");
    assert!(c.completed >= 3, "closed accounts: {c:?}");
    assert!(c.short_runs_marked >= 1, "a 1.1 run continued at 500 events under its patch marker: {c:?}");
    assert!(
        c.notices_marked >= 1 && c.notice_periods >= 1,
        "a 1.2 run gave its notice before continuing, under its patch marker: {c:?}"
    );
    assert!(
        c.write_behind_marked >= 1 && c.paused_writes >= 1,
        "a 1.3 run paused its writes, under its patch marker: {c:?}"
    );
    assert!(
        c.order_accruals >= 3 && c.line_returns >= 2 && c.zero_point_returns >= 1,
        "1.4's order accruals and line returns, one of 0 points: {c:?}"
    );
    assert!(c.continued_with_campaign_usage >= 1, "a run carrying campaign usage: {c:?}");
}

/// The capture tests' dev server: suggests continue-as-new early.
fn capture_server() -> &'static DevServer {
    static SERVER: std::sync::OnceLock<DevServer> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let options = DevServerOptions {
            dynamic_config: vec![format!("limit.historyCount.suggestContinueAsNew={SUGGEST_AFTER}")],
            ..DevServerOptions::default()
        };
        DevServer::start(&options).expect("capture dev server starts")
    })
}

/// An application of its own on the capture server: its client, its
/// ledger URL, and the sender that stops it.
async fn capture_app(
    name: &str,
    program: impl FnOnce(&mut loyalty::domain::program::Program),
) -> (LoyaltyServiceClient<Channel>, String, tokio::sync::oneshot::Sender<()>) {
    let mut settings = common::settings_against(name, &capture_server().address());
    program(&mut settings.program);
    let database_url = settings.database_url.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let (addr, _thread) = common::start_app(settings, stopped);
    (LoyaltyServiceClient::new(common::grpc_channel(addr).await), database_url, stop)
}

fn handle_of(temporal: &Client, customer: &str) -> WorkflowHandle<Client, LoyaltyEntityWorkflow> {
    temporal.get_workflow_handle::<LoyaltyEntityWorkflow>(format!("loyalty-{customer}"))
}

/// Accruals from 16 callers at once, so many travel as batch signals.
async fn burst(grpc: &LoyaltyServiceClient<Channel>, customer: &str, prefix: &str, n: usize) {
    let calls = (0..n).map(|i| accrual(customer, &format!("{prefix}{i}"), 1));
    for sent in fan_out(grpc, 16, calls, |mut g, r| async move { g.accrue(r).await }).await {
        sent.unwrap();
    }
}

/// Records every kind of decision: single and batched accruals, two
/// accruals signalled straight to the workflow (checked by the run loop),
/// a redemption and its resend, a refused one, a reversal, adjustments,
/// holds captured and released; then a ledger outage while the run fills
/// and continues-as-new with entries unwritten, recovery, and close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/histories from a real run"]
async fn capture_decisions() {
    const CUSTOMER: &str = "replay-decisions";
    let (mut grpc, database_url, _stop) = capture_app("replay-decisions", |_| {}).await;
    let temporal = common::temporal_at(&capture_server().address()).await;
    let handle = handle_of(&temporal, CUSTOMER);
    grpc.accrue(accrual(CUSTOMER, "a1", 600)).await.unwrap();
    burst(&grpc, CUSTOMER, "b", 20).await;
    summary_when(&mut grpc, CUSTOMER, SETTLE, |s| s.lifetime_points == 620).await;
    grpc.redeem(redemption(CUSTOMER, "r1", 100, "mug")).await.unwrap();
    grpc.redeem(redemption(CUSTOMER, "r1", 100, "mug")).await.unwrap();
    grpc.redeem(redemption(CUSTOMER, "r2", 99_999, "tv")).await.unwrap_err();
    let reverse = pb::ReverseRequest {
        customer_id: CUSTOMER.into(),
        reverse_event_id: "v1".into(),
        original_event_id: "a1".into(),
        points: Some(50),
        reason: "refund".into(),
        lines: Vec::new(),
    };
    grpc.reverse(reverse).await.unwrap();
    let adjust = |id: &str, points| pb::AdjustRequest {
        customer_id: CUSTOMER.into(),
        event_id: id.into(),
        points,
        reason: "goodwill".into(),
    };
    grpc.adjust(adjust("j1", 25)).await.unwrap();
    grpc.adjust(adjust("j2", -10)).await.unwrap();
    let reserve = |id: &str| pb::ReserveRequest {
        customer_id: CUSTOMER.into(),
        hold_id: id.into(),
        points: 40,
        ttl: Some(prost_types::Duration { seconds: 600, nanos: 0 }),
    };
    grpc.reserve(reserve("h1")).await.unwrap();
    let capture = pb::CaptureRequest {
        customer_id: CUSTOMER.into(),
        hold_id: "h1".into(),
        points: 30,
        event_id: "k1".into(),
        reward: "pen".into(),
    };
    grpc.capture(capture).await.unwrap();
    grpc.reserve(reserve("h2")).await.unwrap();
    grpc.release(pb::ReleaseRequest { customer_id: CUSTOMER.into(), hold_id: "h2".into() }).await.unwrap();
    for id in ["d1", "d2"] {
        let direct = PointsEvent { event_id: id.into(), points: 7, reason: "guide".into(), ..Default::default() };
        handle.signal(LoyaltyEntityWorkflow::add_points, direct, WorkflowSignalOptions::default()).await.unwrap();
    }
    summary_when(&mut grpc, CUSTOMER, SETTLE, |s| s.unapplied_points == 0 && s.lifetime_points == 599).await;
    let ledger = Ledger::connect(&database_url).await.unwrap();
    let written = ledger.entries(CUSTOMER).await.unwrap().len();

    // The ledger refuses this account's writes while the run fills:
    // Temporal suggests a new run and it carries what is unwritten.
    let when = format!("NEW.customer_id = '{CUSTOMER}'");
    let outage = fail_inserts_on(&database_url, Db::Sqlite, "outage_replay", "ledger_entries", &when).await;
    let sent = accrue_until_continued(&mut grpc, &handle, CUSTOMER, "c").await;
    grpc.redeem(redemption(CUSTOMER, "r3", 5, "cap")).await.unwrap();
    end_outage(&outage).await;
    rows_when(&ledger, CUSTOMER, written + sent + 1).await;
    close(&handle).await;
    write_runs(&temporal, CUSTOMER, "v1_decisions_run").await;
}

/// Records the account's own clock: a pending lot activating, points
/// announced before they expire and expiring, a hold released at its
/// deadline, all on timers (one replaced by a nearer due time); a run
/// continuing-as-new with a pending lot and an open hold; and close, which
/// gives the hold back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/histories from a real run"]
async fn capture_lifecycle() {
    const CUSTOMER: &str = "replay-lifecycle";
    let (mut grpc, _, _stop) = capture_app("replay-lifecycle", |p| {
        p.lot_expiry_ms = Some(8_000);
        p.expiry_warning_ms = 4_000;
    })
    .await;
    let temporal = common::temporal_at(&capture_server().address()).await;
    let handle = handle_of(&temporal, CUSTOMER);
    let pending =
        |id: &str, points, days| pb::AccrueRequest { pending_days: Some(days), ..accrual(CUSTOMER, id, points) };
    let reserve = |id: &str, points, secs| pb::ReserveRequest {
        customer_id: CUSTOMER.into(),
        hold_id: id.into(),
        points,
        ttl: Some(prost_types::Duration { seconds: secs, nanos: 0 }),
    };
    grpc.accrue(accrual(CUSTOMER, "l1", 500)).await.unwrap();
    let soon = loyalty::clock::now_ms() + 3_000;
    let active_from = prost_types::Timestamp { seconds: soon / 1_000, nanos: (soon % 1_000) as i32 * 1_000_000 };
    grpc.accrue(pb::AccrueRequest { active_from: Some(active_from), ..accrual(CUSTOMER, "l0", 20) }).await.unwrap();
    // A long hold, then a 2 s one: the account's timer moves nearer.
    grpc.reserve(reserve("h1", 100, 600)).await.unwrap();
    grpc.reserve(reserve("h2", 50, 2)).await.unwrap();
    summary_when(&mut grpc, CUSTOMER, SETTLE, |s| s.held_points == 100 && s.pending_points == 0).await;
    // l1 is announced at 4 s and expires at 8 s (h1 keeps its 100 points),
    // l0 from its activation at 3 s, 8 s later.
    summary_when(&mut grpc, CUSTOMER, SETTLE, |s| s.points_balance == 0).await;
    // A lot pending for a day and the open hold cross a continue-as-new.
    grpc.accrue(pending("l2", 70, 1)).await.unwrap();
    accrue_until_continued(&mut grpc, &handle, CUSTOMER, "f").await;
    // The filler lots expire in the next run; then close gives h1 back.
    summary_when(&mut grpc, CUSTOMER, SETTLE, |s| s.points_balance == 0 && s.next_expiry_at.is_none()).await;
    close(&handle).await;
    write_runs(&temporal, CUSTOMER, "v1_lifecycle_run").await;
}

/// Records an account whose first run starts from a state the reference
/// guide's worker carried (its totals, recent ids and a queued accrual):
/// the opening entry, the queued accrual checked and applied, a spend, close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/histories from a real run"]
async fn capture_guide_input() {
    const CUSTOMER: &str = "c-guide";
    let (mut grpc, database_url, _stop) = capture_app("replay-guide", |_| {}).await;
    let temporal = common::temporal_at(&capture_server().address()).await;
    common::start_with_state(&temporal, "loyalty-test-replay-guide", CUSTOMER, include_str!("states/guide.json")).await;
    summary_when(&mut grpc, CUSTOMER, SETTLE, |s| s.lifetime_points == 1_230).await;
    grpc.redeem(redemption(CUSTOMER, "r-2", 80, "tea")).await.unwrap();
    rows_when(&Ledger::connect(&database_url).await.unwrap(), CUSTOMER, 3).await;
    close(&handle_of(&temporal, CUSTOMER)).await;
    write_runs(&temporal, CUSTOMER, "v1_guide_input_run").await;
}

/// A 1.1 run that reaches 500 events records the patch marker of its
/// shorter runs and continues-as-new there (on the binary's own dev server,
/// which suggests nothing early): `v11_short_runs_run1-2`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/histories from a real run"]
async fn capture_short_runs() {
    capture_one_continue("replay-short-runs", 10, 600, "v11_short_runs_run", |mut grpc, customer, sent| async move {
        grpc.accrue(accrual(&customer, &format!("s{sent}"), 1)).await.unwrap();
    })
    .await;
}

/// A 1.2 run that fills gives its notice (the patch marker, the
/// `notice_period` activity, the updates it decides meanwhile carrying the
/// notice in their result's metadata) and continues-as-new:
/// `v12_ending_notice_run1-2`. Redemptions go along with the accruals, so
/// updates are in flight when the notice comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/histories from a real run"]
async fn capture_ending_notice() {
    capture_one_continue(
        "replay-ending-notice",
        1_000,
        400,
        "v12_ending_notice_run",
        |grpc, customer, sent| async move {
            let (mut a, mut r) = (grpc.clone(), grpc);
            let (accrued, redeemed) = tokio::join!(
                a.accrue(accrual(&customer, &format!("n{sent}"), 1)),
                r.redeem(redemption(&customer, &format!("nr{sent}"), 1, "notice")),
            );
            accrued.unwrap();
            redeemed.unwrap();
        },
    )
    .await;
}

/// Records 1.3's paused write (`write-behind-1.3`): accruals and
/// redemptions in turn, now and then a pause long enough for the run's
/// write to follow, until the run continues-as-new (a write in its pause is
/// called off then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/histories from a real run"]
async fn capture_write_behind() {
    capture_one_continue(
        "replay-write-behind",
        1_000,
        400,
        "v13_write_behind_run",
        |mut grpc, customer, sent| async move {
            grpc.accrue(accrual(&customer, &format!("w{sent}"), 1)).await.unwrap();
            grpc.redeem(redemption(&customer, &format!("wr{sent}"), 1, "paused")).await.unwrap();
            if sent % 25 == 24 {
                tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
            }
        },
    )
    .await;
}

/// Records 1.4's orders: order accruals under the README's example rules
/// (a capped weekend campaign among them), line returns (one of 0 points),
/// a run continuing-as-new with the campaign's usage, and an order in the
/// next run capped by it; then close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/histories from a real run"]
async fn capture_orders() {
    const CUSTOMER: &str = "replay-orders";
    let mut settings = common::settings_against(CUSTOMER, &capture_server().address());
    settings.earning_rules = Some(
        loyalty::config::earning::load(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/earning-rules.example.yaml"))
            .unwrap(),
    );
    let database_url = settings.database_url.clone();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, _thread) = common::start_app(settings, stopped);
    let mut grpc = LoyaltyServiceClient::new(common::grpc_channel(addr).await);
    let temporal = common::temporal_at(&capture_server().address()).await;
    let handle = handle_of(&temporal, CUSTOMER);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let saturday = 2 * 86_400 + 15 * 3_600 + (now - 2 * 86_400 - 15 * 3_600).div_euclid(7 * 86_400) * 7 * 86_400;
    let line = |sku: &str, category: &str, quantity, unit_price| pb::OrderLine {
        sku: sku.into(),
        categories: vec![category.into()],
        quantity,
        unit_price,
        discount: 0,
    };
    let order = |id: &str, channel: &str, at: i64| pb::AccrueRequest {
        customer_id: CUSTOMER.into(),
        event_id: id.into(),
        reason: "purchase".into(),
        order: Some(pb::Order {
            order_id: id.into(),
            currency: "USD".into(),
            channel: channel.into(),
            occurred_at: Some(prost_types::Timestamp { seconds: at, nanos: 0 }),
            lines: vec![
                line("SHOE-1", "shoes", 1, 8_999),
                line("SOCK-3", "socks", 3, 499),
                line("GIFT-CARD-50", "gift", 1, 500),
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    grpc.accrue(accrual(CUSTOMER, "open", 1_000)).await.unwrap();
    for id in ["w1", "w2", "w3"] {
        grpc.accrue(order(id, "app", saturday)).await.unwrap();
    }
    grpc.accrue(order("web1", "web", now - 3_600)).await.unwrap();
    let decided = summary_when(&mut grpc, CUSTOMER, SETTLE, |s| s.lifetime_points > 1_900).await;
    let ledger = Ledger::connect(&database_url).await.unwrap();
    rows_when(&ledger, CUSTOMER, 5).await;
    let give_back = |id: &str, lines: &[(i32, i64)]| pb::ReverseRequest {
        customer_id: CUSTOMER.into(),
        reverse_event_id: id.into(),
        original_event_id: "web1".into(),
        reason: "returned".into(),
        lines: lines.iter().map(|&(line, quantity)| pb::ReturnedLine { line, quantity }).collect(),
        ..Default::default()
    };
    grpc.reverse(give_back("ret1", &[(1, 2)])).await.unwrap();
    let nothing = grpc.reverse(give_back("ret2", &[(2, 1)])).await.unwrap().into_inner();
    assert_eq!(nothing.change.unwrap().points, 0, "the gift card earned nothing");
    accrue_until_continued(&mut grpc, &handle, CUSTOMER, "c").await;
    grpc.accrue(order("w4", "app", saturday)).await.unwrap();
    summary_when(&mut grpc, CUSTOMER, SETTLE, |s| s.lifetime_points > decided.lifetime_points).await;
    close(&handle).await;
    write_runs(&temporal, CUSTOMER, "v14_orders_run").await;
}

/// On an application of its own against the binary's dev server (which
/// suggests nothing early): opens `customer` with `open_points`, makes
/// `step` (one point accrued each time, and whatever else it sends) until
/// the account's run continues-as-new at 500 events (fewer than `most`
/// steps), then closes it and writes its runs as `<prefix><n>.json`.
async fn capture_one_continue<F, Fut>(customer: &str, open_points: i64, most: usize, prefix: &str, mut step: F)
where
    F: FnMut(LoyaltyServiceClient<Channel>, String, usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, _thread) = common::start_app(common::settings(customer), stopped);
    let mut grpc = LoyaltyServiceClient::new(common::grpc_channel(addr).await);
    let temporal = common::temporal().await;
    let handle = handle_of(&temporal, customer);
    grpc.accrue(accrual(customer, &format!("{customer}-open"), open_points)).await.unwrap();
    summary_when(&mut grpc, customer, SETTLE, |s| s.lifetime_points == open_points).await;
    let first_run = runs_of(&handle).await.1;
    let mut sent = 0;
    while runs_of(&handle).await.1 == first_run {
        step(grpc.clone(), customer.to_owned(), sent).await;
        sent += 1;
        assert!(sent < most, "the run continues-as-new at 500 events");
    }
    summary_when(&mut grpc, customer, SETTLE, |s| s.lifetime_points == open_points + sent as i64).await;
    close(&handle).await;
    write_runs(&temporal, customer, prefix).await;
    let _ = stop.send(());
}

/// One-point accruals `<prefix>0`, `<prefix>1`, ... until the account's
/// run continues-as-new; how many were sent.
async fn accrue_until_continued(
    grpc: &mut LoyaltyServiceClient<Channel>,
    handle: &WorkflowHandle<Client, LoyaltyEntityWorkflow>,
    customer: &str,
    prefix: &str,
) -> usize {
    let first_run = runs_of(handle).await.1;
    let mut sent = 0;
    while runs_of(handle).await.1 == first_run {
        grpc.accrue(accrual(customer, &format!("{prefix}{sent}"), 1)).await.unwrap();
        sent += 1;
        assert!(sent < 400, "the run continues-as-new");
    }
    sent
}

async fn close(handle: &WorkflowHandle<Client, LoyaltyEntityWorkflow>) {
    handle.signal(LoyaltyEntityWorkflow::shutdown, (), WorkflowSignalOptions::default()).await.unwrap();
    tokio::time::timeout(SETTLE, handle.get_result(Default::default()))
        .await
        .expect("the account must close")
        .expect("it completes");
}

/// Writes every run of the account, first to last, as `<prefix><n>.json`.
async fn write_runs(temporal: &Client, customer: &str, prefix: &str) {
    std::fs::create_dir_all(histories_dir()).unwrap();
    for (n, (_, json, _)) in fetch_runs(temporal, &format!("loyalty-{customer}")).await.into_iter().enumerate() {
        std::fs::write(histories_dir().join(format!("{prefix}{}.json", n + 1)), json).unwrap();
    }
}

/// Every run of `workflow_id`, first to last, following continue-as-new:
/// its run id, its history as JSON bytes, and how many events it has.
async fn fetch_runs(temporal: &Client, workflow_id: &str) -> Vec<(String, Vec<u8>, usize)> {
    let handle = temporal.get_workflow_handle::<LoyaltyEntityWorkflow>(workflow_id);
    let (first, last) = runs_of(&handle).await;
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

/// The account's first and current run ids.
async fn runs_of(handle: &WorkflowHandle<Client, LoyaltyEntityWorkflow>) -> (String, String) {
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
    let temporal = common::temporal_at(&address).await;
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
