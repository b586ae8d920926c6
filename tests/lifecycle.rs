//! The lifecycle of a point against a real Temporal dev server and real
//! ledgers: pending points that activate, lots that expire, holds that are
//! captured, released or expire, with program durations of seconds, across
//! a continue-as-new, a worker restart and a ledger outage.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Db, accrual, redemption};
use loyalty::config::Role;
use loyalty::domain::program::Program;
use loyalty::grpc::pb::{self, loyalty_service_client::LoyaltyServiceClient};
use loyalty::ledger::Ledger;
use tonic::Code;
use tonic::transport::Channel;

const SETTLE: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

fn ms(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

async fn summary(grpc: &mut LoyaltyServiceClient<Channel>, customer: &str) -> pb::GetSummaryResponse {
    grpc.get_summary(pb::GetSummaryRequest { customer_id: customer.into() }).await.expect("summary").into_inner()
}

/// Retries a call while the service says it is unavailable (a worker
/// restarting), as a caller with the same ids would.
macro_rules! retrying {
    ($call:expr) => {{
        let deadline = Instant::now() + SETTLE;
        loop {
            match $call.await {
                Err(s)
                    if matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded) && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                other => break other,
            }
        }
    }};
}

/// A role-split deployment: an API app and a worker app on one task queue
/// and ledger, so the worker can be restarted under the API.
struct Deployment {
    worker: loyalty::config::Settings,
    stop_worker: Option<(tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>)>,
    _api: (tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>),
    addr: std::net::SocketAddr,
    database_url: String,
}

impl Deployment {
    fn start(db: Db, name: &str, program: Program) -> Self {
        let mut api = common::settings_on(db, name);
        api.program = program;
        api.role = Role::Api;
        api.rpc_timeout = Duration::from_secs(10);
        let mut worker = api.clone();
        worker.role = Role::Worker;
        worker.drain_timeout = Duration::from_secs(1);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (addr, thread) = common::start_app(api.clone(), stopped);
        let mut d = Self { worker, stop_worker: None, _api: (stop, thread), addr, database_url: api.database_url };
        d.start_worker();
        d
    }

    fn start_worker(&mut self) {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (_, thread) = common::start_app(self.worker.clone(), stopped);
        self.stop_worker = Some((stop, thread));
    }

    fn stop_worker(&mut self) {
        if let Some((stop, thread)) = self.stop_worker.take() {
            let _ = stop.send(());
            thread.join().expect("worker stops");
        }
    }
}

/// A lot's whole life, with a program of 2 s pending and 12 s expiry:
/// pending, active (applied late by a restarted worker, dated when due),
/// held and released by its TTL, partly spent, refunded, expired during a
/// ledger outage, on an account that continued-as-new in between.
async fn a_lots_whole_life(db: Db) {
    // Announcements before expiry have their own test.
    let program =
        Program { pending_ms: 2_000, lot_expiry_ms: Some(12_000), expiry_warning_ms: 0, ..Program::default() };
    let mut d = Deployment::start(db, "life", program);
    let mut grpc = LoyaltyServiceClient::new(common::grpc_channel(d.addr).await);
    let ledger = Ledger::connect(&d.database_url).await.unwrap();
    let c = format!("life-{}", db.tag());
    let t0 = now_ms();

    // 2,050 points active at once, expiring in 10 minutes: the run continues-as-new.
    let fillers: Vec<_> = (0..2_050)
        .map(|i| pb::AccrueRequest {
            pending_days: Some(0),
            expires_at: Some(ts(t0 + 600_000)),
            ..accrual(&c, &format!("{c}-f{i}"), 1)
        })
        .collect();
    common::fan_out(&grpc, 16, fillers, |mut grpc, r| async move {
        grpc.accrue(r).await.expect("accrued");
    })
    .await;
    common::summary_when(&mut grpc, &c, SETTLE, |s| s.points_balance == 2_050).await;

    // a1: the program's pending period and expiry. a2: its own dates.
    let t1 = now_ms();
    grpc.accrue(accrual(&c, &format!("{c}-a1"), 1_000)).await.unwrap();
    let a2 = pb::AccrueRequest {
        pending_days: Some(0),
        expires_at: Some(ts(t0 + 90_000)),
        ..accrual(&c, &format!("{c}-a2"), 500)
    };
    grpc.accrue(a2).await.unwrap();
    let s =
        common::summary_when(&mut grpc, &c, SETTLE, |s| s.pending_points == 1_000 && s.points_balance == 2_550).await;
    assert_eq!(s.lifetime_points, 2_550, "pending points do not count for the tier");
    let hold = pb::ReserveRequest {
        customer_id: c.clone(),
        hold_id: format!("{c}-h1"),
        points: 300,
        ttl: Some(prost_types::Duration { seconds: 3, nanos: 0 }),
    };
    let held = grpc.reserve(hold).await.expect("reserved").into_inner().hold.unwrap();
    assert_eq!((held.status(), held.points_balance, held.held_points), (pb::HoldStatus::Held, 2_250, 300));

    // The worker is down while a1 activates and the hold expires.
    d.stop_worker();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let restarted = now_ms();
    d.start_worker();
    let s = common::summary_when(&mut grpc, &c, SETTLE, |s| s.pending_points == 0 && s.held_points == 0).await;
    assert_eq!((s.points_balance, s.lifetime_points, s.tier.as_str()), (3_550, 3_550, "Silver"), "{s:?}");

    // Partly spent (the soonest-expiring lot first), then refunded from its own lot.
    let r = retrying!(grpc.redeem(redemption(&c, &format!("{c}-r1"), 400, "mug"))).expect("redeemed");
    assert_eq!(r.get_ref().remaining_balance, 3_150);
    let refund = pb::ReverseRequest {
        customer_id: c.clone(),
        reverse_event_id: format!("{c}-v1"),
        original_event_id: format!("{c}-a2"),
        points: Some(100),
        reason: "returned".into(),
        lines: Vec::new(),
    };
    grpc.reverse(refund).await.expect("reversed");
    let s = summary(&mut grpc, &c).await;
    assert_eq!((s.points_balance, s.lifetime_points), (3_050, 3_450));
    assert_eq!(s.next_expiry_points, 600, "a1's rest: {s:?}");
    assert!((ms(&s.next_expiry_at) - (t1 + 14_000)).abs() < 1_500, "{s:?}, t1 {t1}");

    // The ledger refuses this account's writes while a1 expires.
    let outage = common::fail_inserts_on(
        &d.database_url,
        db,
        &format!("outage_{}", db.tag()),
        "ledger_entries",
        &format!("NEW.customer_id = '{c}'"),
    )
    .await;
    let s = common::summary_when(&mut grpc, &c, SETTLE, |s| s.points_balance == 2_450).await;
    assert_eq!(s.lifetime_points, 3_450, "expired points leave the balance, not lifetime points");
    tokio::time::sleep(Duration::from_secs(1)).await;
    common::end_outage(&outage).await;

    // The ledger catches up: every entry once, of its kind, dated when it was due.
    let wanted = 2_050 + 2 + 1 + 1 + 1 + 1 + 1 + 1; // accruals, hold, activation, release, redemption, reversal, expiry
    let rows = common::rows_when(&ledger, &c, wanted).await;
    assert_eq!(rows.len(), wanted, "every entry once");
    let one = |kind: loyalty::domain::EntryKind| {
        let of: Vec<_> = rows.iter().filter(|r| r.kind == kind).collect();
        assert_eq!(of.len(), 1, "{kind:?}: {of:?}");
        of[0].clone()
    };
    use loyalty::domain::EntryKind as K;
    let activation = one(K::Activation);
    assert_eq!((activation.points, activation.lifetime_delta), (1_000, 1_000));
    assert!((activation.effective_at_ms - (t1 + 2_000)).abs() < 1_500, "dated when due: {activation:?}, t1 {t1}");
    assert!(activation.effective_at_ms < restarted, "applied late, dated earlier than the restart");
    let release = one(K::Release);
    assert_eq!((release.points, release.reason.as_str()), (300, "hold expired"));
    assert!(release.effective_at_ms < restarted);
    let redemption = one(K::Redemption);
    assert_eq!(
        redemption.draws.iter().map(|d| (d.lot.as_str(), d.points)).collect::<Vec<_>>(),
        vec![(format!("{c}-a1").as_str(), 400)]
    );
    let reversal = one(K::Reversal);
    assert_eq!(reversal.draws[0].lot, format!("{c}-a2"), "a refund takes its own lot first");
    let expiry = one(K::Expiry);
    assert_eq!((expiry.points, expiry.lifetime_delta), (-600, 0));
    assert!((expiry.effective_at_ms - (t1 + 14_000)).abs() < 1_500, "{expiry:?}");

    // The exact invariant: the summary, the ledger's totals and its rows agree.
    let s = summary(&mut grpc, &c).await;
    assert_eq!((s.points_balance, s.lifetime_points, s.pending_points, s.held_points), (2_450, 3_450, 0, 0));
    let totals = ledger.totals(&c).await.unwrap().unwrap();
    assert_eq!((totals.balance, totals.lifetime), (s.points_balance, s.lifetime_points));
    assert_eq!(ledger.pending_and_held(&c).await.unwrap(), (0, 0));
    assert_eq!(rows.iter().map(|r| r.points).sum::<i64>(), 2_450);
    assert_eq!(rows.iter().map(|r| r.lifetime_delta).sum::<i64>(), 3_450);
    let runs = common::workflow_runs(&format!("loyalty-{c}")).await;
    assert!(runs.len() >= 2, "continued-as-new with pending lots and a hold: {runs:?}");

    // History shows every kind.
    let page = grpc
        .get_history(pb::GetHistoryRequest { customer_id: c.clone(), page_size: 10, page_token: String::new() })
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<_> = page.entries.iter().map(|e| e.kind()).collect();
    for kind in [pb::EntryKind::Activation, pb::EntryKind::Hold, pb::EntryKind::Release, pb::EntryKind::Expiry] {
        assert!(kinds.contains(&kind), "{kind:?} in {kinds:?}");
    }
    let expired = page.entries.iter().find(|e| e.kind() == pb::EntryKind::Expiry).unwrap();
    assert_eq!(expired.lots[0].lot_id, format!("{c}-a1"));
    assert!(ms(&expired.effective_at) <= ms(&expired.recorded_at));
    d.stop_worker();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lots_whole_life_on_sqlite() {
    a_lots_whole_life(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lots_whole_life_on_postgres() {
    a_lots_whole_life(Db::Postgres).await;
}

/// Holds at checkout: the statuses of every way a hold call can go wrong,
/// nothing half-applied, resends answered, and a capture that spends part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_and_bad_input() {
    let mut grpc = common::client().await;
    let c = "holds";
    grpc.accrue(accrual(c, "holds-a", 500)).await.unwrap();
    common::summary_when(&mut grpc, c, SETTLE, |s| s.points_balance == 500).await;
    let reserve = |id: &str, points, secs| pb::ReserveRequest {
        customer_id: c.into(),
        hold_id: id.into(),
        points,
        ttl: Some(prost_types::Duration { seconds: secs, nanos: 0 }),
    };
    fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Status {
        r.unwrap_err()
    }

    for (bad, field) in [
        (reserve("h0", 10, 0), "ttl"),
        (reserve("h0", 10, 86_400 * 365), "ttl"),
        (reserve("bad id", 10, 60), "hold_id"),
        (reserve("h0", 0, 60), "points"),
        (pb::ReserveRequest { ttl: None, ..reserve("h0", 10, 60) }, "ttl"),
    ] {
        let s = code(grpc.reserve(bad).await);
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains(field), "{field}: {s:?}");
    }
    let s = code(grpc.reserve(reserve("h0", 501, 60)).await);
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");

    let held = grpc.reserve(reserve("h1", 200, 60)).await.unwrap().into_inner().hold.unwrap();
    assert_eq!((held.points_balance, held.held_points), (300, 200));
    assert_eq!(
        grpc.reserve(reserve("h1", 200, 60)).await.unwrap().into_inner().hold.unwrap(),
        held,
        "a resend is answered"
    );
    assert_eq!(code(grpc.reserve(reserve("h1", 201, 60)).await).code(), Code::AlreadyExists);

    let capture = |hold: &str, points, event: &str| pb::CaptureRequest {
        customer_id: c.into(),
        hold_id: hold.into(),
        points,
        event_id: event.into(),
        reward: "lamp".into(),
    };
    let s = code(grpc.capture(capture("h1", 201, "cap1")).await);
    assert_eq!(s.code(), Code::InvalidArgument, "above the hold: {s:?}");
    assert_eq!(code(grpc.capture(capture("nope", 1, "cap1")).await).code(), Code::NotFound);
    let release = |hold: &str| pb::ReleaseRequest { customer_id: c.into(), hold_id: hold.into() };
    assert_eq!(code(grpc.release(release("nope")).await).code(), Code::NotFound);
    let s = summary(&mut grpc, c).await;
    assert_eq!((s.points_balance, s.held_points), (300, 200), "nothing half-applied");

    let captured = grpc.capture(capture("h1", 150, "cap1")).await.unwrap().into_inner().hold.unwrap();
    assert_eq!(
        (captured.status(), captured.captured, captured.points_balance, captured.held_points),
        (pb::HoldStatus::Captured, 150, 350, 0)
    );
    let again = grpc.capture(capture("h1", 150, "cap1")).await.unwrap().into_inner().hold.unwrap();
    // From the account, or from the ledger's row once written (which has no expires_at).
    let without_expiry = |r: pb::Hold| pb::Hold { expires_at: None, ..r };
    assert_eq!(without_expiry(again), without_expiry(captured.clone()), "a resend is answered");
    assert_eq!(code(grpc.capture(capture("h1", 140, "cap1")).await).code(), Code::AlreadyExists);
    assert_eq!(code(grpc.release(release("h1")).await).code(), Code::FailedPrecondition, "captured");

    grpc.reserve(reserve("h2", 100, 60)).await.unwrap();
    let released = grpc.release(release("h2")).await.unwrap().into_inner().hold.unwrap();
    assert_eq!((released.status(), released.points_balance), (pb::HoldStatus::Released, 350));
    assert_eq!(
        grpc.release(release("h2")).await.unwrap().into_inner().hold.unwrap().status(),
        pb::HoldStatus::Released
    );
    assert_eq!(code(grpc.capture(capture("h2", 1, "cap2")).await).code(), Code::FailedPrecondition);

    // A capture is a redemption a refund can cancel.
    let cancel = pb::ReverseRequest {
        customer_id: c.into(),
        reverse_event_id: "holds-v".into(),
        original_event_id: "cap1".into(),
        points: None,
        reason: "order cancelled".into(),
        lines: Vec::new(),
    };
    let change = grpc.reverse(cancel).await.unwrap().into_inner().change.unwrap();
    assert_eq!((change.points, change.points_balance), (150, 500));

    // Bad dates on an accrual: refused, naming the field, nothing applied.
    let now = now_ms();
    for (bad, field) in [
        (pb::AccrueRequest { expires_at: Some(ts(now - 1_000)), ..accrual(c, "holds-x", 5) }, "expires_at"),
        (pb::AccrueRequest { pending_days: Some(-1), ..accrual(c, "holds-x", 5) }, "pending_days"),
        (pb::AccrueRequest { expires_in_days: Some(0), ..accrual(c, "holds-x", 5) }, "expires_in_days"),
        (
            pb::AccrueRequest { active_from: Some(ts(now + 400 * 86_400_000)), ..accrual(c, "holds-x", 5) },
            "active_from",
        ),
        (
            pb::AccrueRequest { pending_days: Some(1), active_from: Some(ts(now)), ..accrual(c, "holds-x", 5) },
            "active_from",
        ),
    ] {
        let s = grpc.accrue(bad).await.unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains(field), "{field}: {s:?}");
    }
    // A per-accrual pending period shows as pending, with its expiry.
    let pending = pb::AccrueRequest { pending_days: Some(14), expires_in_days: Some(30), ..accrual(c, "holds-p", 70) };
    grpc.accrue(pending).await.unwrap();
    let s = common::summary_when(&mut grpc, c, SETTLE, |s| s.pending_points == 70).await;
    assert_eq!((s.points_balance, s.next_expiry_points), (500, 0), "pending points are not expiring yet");
    let ledger = common::ledger().await;
    let rows = common::rows_when(&ledger, c, 7).await;
    let kinds: Vec<_> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["accrual", "hold", "capture", "hold", "release", "reversal", "accrual"], "{rows:?}");
}

/// The account sleeps toward a lot's expiry; a redemption empties that lot
/// (its expiry no longer due): the account goes on answering at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spending_the_lot_the_account_sleeps_toward_keeps_it_answering() {
    let mut grpc = common::client().await;
    let c = "sleeper";
    let soon = pb::AccrueRequest {
        pending_days: Some(0),
        expires_at: Some(ts(now_ms() + 30_000)),
        ..accrual(c, "sleeper-a", 100)
    };
    grpc.accrue(soon).await.unwrap();
    grpc.accrue(accrual(c, "sleeper-b", 50)).await.unwrap();
    common::summary_when(&mut grpc, c, SETTLE, |s| s.points_balance == 150).await;
    grpc.redeem(redemption(c, "sleeper-r1", 100, "lamp")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 2..5 {
        let started = Instant::now();
        let r = grpc.redeem(redemption(c, &format!("sleeper-r{i}"), 10, "pen")).await.expect("answered");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert_eq!(r.get_ref().remaining_balance, 50 - 10 * (i - 1));
        let started = Instant::now();
        summary(&mut grpc, c).await;
        assert!(started.elapsed() < Duration::from_secs(5), "summary took {:?}", started.elapsed());
    }
}

/// Points are announced a warning period before they expire: with 8 s
/// expiry and a 4 s warning, two lots earned a second apart make one
/// `points.expiring` event (on its timer, not at the accrual), then each
/// expires; the stream says so in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_are_announced_before_they_expire() {
    let program = Program { lot_expiry_ms: Some(8_000), expiry_warning_ms: 4_000, ..Program::default() };
    let d = Deployment::start(Db::Sqlite, "warn", program);
    let mut grpc = LoyaltyServiceClient::new(common::grpc_channel(d.addr).await);
    let c = "warned";
    let t0 = now_ms();
    grpc.accrue(accrual(c, "w1", 100)).await.expect("accrued");
    tokio::time::sleep(Duration::from_secs(1)).await;
    grpc.accrue(accrual(c, "w2", 50)).await.expect("accrued");
    common::summary_when(&mut grpc, c, SETTLE, |s| s.points_balance == 150).await;
    common::summary_when(&mut grpc, c, SETTLE, |s| s.points_balance == 0).await;
    let ledger = Ledger::connect(&d.database_url).await.unwrap();
    let deadline = Instant::now() + SETTLE;
    let events = loop {
        let events = ledger.events(c, 0, 50, false).await.unwrap();
        if events.len() >= 5 || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["points.accrued", "points.accrued", "points.expiring", "points.expired", "points.expired"]);
    let warning: serde_json::Value = serde_json::from_str(&events[2].body).unwrap();
    assert_eq!(warning["data"]["expiring_points"], 150, "{warning}");
    assert_eq!(warning["data"]["account"]["balance"], 150, "nothing moved yet");
    let announced = events[2].occurred_at_ms - t0;
    assert!((3_500..6_500).contains(&announced), "announced about 4 s before w1 expires: {announced} ms");
    assert!(events[2].occurred_at_ms < events[3].occurred_at_ms);
}

/// A Redeem refused while its points are pending, sent again with the same
/// event id once they are active, is decided afresh (a refusal changes
/// nothing, so it is not an answer to keep): in the same run, and after a
/// continue-as-new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_redeem_sent_again_is_decided_afresh_in_the_same_run_and_the_next() {
    let program = Program { pending_ms: 2_000, expiry_warning_ms: 0, ..Program::default() };
    let d = Deployment::start(Db::Sqlite, "afresh", program);
    let mut grpc = LoyaltyServiceClient::new(common::grpc_channel(d.addr).await);
    let c = "afresh";
    grpc.accrue(accrual(c, "afresh-a1", 200)).await.unwrap();
    common::summary_when(&mut grpc, c, SETTLE, |s| s.pending_points == 200).await;
    let refused = grpc.redeem(redemption(c, "redeem-77", 200, "mug")).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("requested 200, available 0"), "{refused:?}");
    common::summary_when(&mut grpc, c, SETTLE, |s| s.points_balance == 200).await;
    let r = grpc.redeem(redemption(c, "redeem-77", 200, "mug")).await.expect("decided afresh").into_inner();
    assert_eq!((r.redeemed, r.remaining_balance), (200, 0));

    // Refused in one run, sent again in the next.
    let refused = grpc.redeem(redemption(c, "redeem-78", 300, "lamp")).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let fillers: Vec<_> = (0..2_050)
        .map(|i| pb::AccrueRequest { pending_days: Some(0), ..accrual(c, &format!("afresh-f{i}"), 1) })
        .collect();
    common::fan_out(&grpc, 16, fillers, |mut grpc, r| async move {
        grpc.accrue(r).await.expect("accrued");
    })
    .await;
    common::summary_when(&mut grpc, c, SETTLE, |s| s.points_balance == 2_050).await;
    let runs = common::workflow_runs(&format!("loyalty-{c}")).await;
    assert!(runs.len() >= 2, "the account continued-as-new: {runs:?}");
    let r = grpc.redeem(redemption(c, "redeem-78", 300, "lamp")).await.expect("decided afresh").into_inner();
    assert_eq!(r.remaining_balance, 1_750);
    // And a redemption that succeeded is still answered, not applied again.
    let again = grpc.redeem(redemption(c, "redeem-77", 200, "mug")).await.expect("answered").into_inner();
    assert_eq!((again.redeemed, again.remaining_balance), (200, 0), "the original answer");
    assert_eq!(summary(&mut grpc, c).await.points_balance, 1_750);
}
