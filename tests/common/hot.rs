//! One hot account under every kind of call at once: the shared callers of
//! the hot-account scenarios (tests/faults.rs, tests/liveness.rs), each
//! retrying with its event ids until its answer is definite and timing the
//! call from its first attempt.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loyalty::domain::{EntryKind, Tier};
use loyalty::grpc::pb;
use tonic::{Code, Status};

use super::book::{Grpc, Outcome, publish};
use super::{accrual, redemption};

/// Each attempt's deadline (`grpc-timeout`).
pub const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// When a caller stops retrying and fails the test, so that a frozen account
/// fails it rather than hanging it.
pub const GIVE_UP: Duration = Duration::from_secs(120);
/// A reversal names an accrual at least this many acknowledgements old, so
/// the account has most likely applied it, yet recent enough for the
/// workflow to remember it.
pub const REVERSE_LAG: usize = 100;

/// The RPCs of the hot-account scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rpc {
    Accrue,
    Redeem,
    Reverse,
    Adjust,
    GetSummary,
    Reserve,
    Capture,
    Release,
}

/// What the callers of the hot-account scenario share.
pub struct Hot {
    pub customer: String,
    /// Accruals to send in all.
    pub accruals: usize,
    /// Number of the next accrual to send, from 1 (`<customer>-a0` opened
    /// the account).
    pub next: AtomicUsize,
    /// Acknowledged accruals, (event id, points) in the order they were
    /// acknowledged, for the reversals to name.
    pub acknowledged: Mutex<Vec<(String, i64)>>,
    /// Set once every accrual is acknowledged: the other callers stop.
    pub done: AtomicBool,
    /// Odd while the ledger refuses the account's writes: bumped once the
    /// refusal is in place and again before it is lifted.
    pub outage: AtomicU64,
    /// Every id as long as the service takes (128 characters) and every
    /// text 256 three-byte characters: the carried state as large as the
    /// account's windows let it grow.
    pub large: bool,
}

impl Hot {
    pub fn new(customer: &str, accruals: usize) -> Self {
        Self {
            customer: customer.to_owned(),
            accruals,
            large: false,
            next: AtomicUsize::new(1),
            acknowledged: Mutex::new(Vec::new()),
            done: AtomicBool::new(false),
            outage: AtomicU64::new(0),
        }
    }

    /// The `n`th id of a kind (`tag`): `<customer>-<tag><n>`, padded with
    /// zeros before `n` to 128 characters when [`Hot::large`].
    pub fn id(&self, tag: &str, n: usize) -> String {
        let width = if self.large { loyalty::domain::ids::MAX_ID_LEN - self.customer.len() - 1 - tag.len() } else { 0 };
        format!("{}-{tag}{n:0>width$}", self.customer)
    }

    /// `base`, or, when [`Hot::large`], `base` filled up to 256 characters
    /// with the three-byte `€`.
    pub fn text(&self, base: &str) -> String {
        let fill = if self.large { loyalty::domain::text::MAX_TEXT_LEN - base.chars().count() } else { 0 };
        format!("{base}{}", "€".repeat(fill))
    }

    pub fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    pub fn done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

/// What the callers of one RPC were told, and how long their calls took.
pub struct Tally {
    /// What they were told, for the book; `calls` counts attempts.
    pub outcome: Outcome,
    /// Every call's time from its first attempt to its definite answer.
    pub latencies: Vec<Duration>,
    /// When each of those calls was first sent (same order), to place a
    /// slow call on the scenario's timeline.
    pub sent_at: Vec<Instant>,
    /// The longest single attempt.
    pub longest_attempt: Duration,
    /// Calls answered with a definite refusal (FAILED_PRECONDITION, ...).
    pub refused: usize,
    /// The first refusal, to show when nothing succeeded.
    pub refusal: Option<String>,
    /// Successful calls sent and answered within one ledger outage.
    pub during_outage: usize,
}

impl Tally {
    pub fn new(customer: &str) -> Self {
        Self {
            outcome: Outcome { customer: customer.to_owned(), ..Outcome::default() },
            latencies: Vec::new(),
            sent_at: Vec::new(),
            longest_attempt: Duration::ZERO,
            refused: 0,
            refusal: None,
            during_outage: 0,
        }
    }

    /// Adds what `other` (of the same RPC and customer) was told.
    pub fn merge(&mut self, other: Tally) {
        let (mine, theirs) = (&mut self.outcome, other.outcome);
        mine.calls += theirs.calls;
        mine.accrued.extend(theirs.accrued);
        mine.redeemed.extend(theirs.redeemed);
        mine.reversed.extend(theirs.reversed);
        mine.adjusted.extend(theirs.adjusted);
        mine.holds.extend(theirs.holds);
        self.latencies.extend(other.latencies);
        self.sent_at.extend(other.sent_at);
        self.longest_attempt = self.longest_attempt.max(other.longest_attempt);
        self.refused += other.refused;
        self.refusal = self.refusal.take().or(other.refusal);
        self.during_outage += other.during_outage;
    }

    /// Sends a call (`send` makes each attempt, always with the same request,
    /// so the same event id) until its answer is definite: anything but a
    /// [`retryable`] status, which waits for the status's retry hint (or
    /// 100 ms) and tries again. Records the call's latency, and whether it
    /// succeeded within one ledger outage. Panics after [`GIVE_UP`].
    pub async fn call<T, Fut>(&mut self, hot: &Hot, what: &str, mut send: impl FnMut() -> Fut) -> Result<T, Status>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let outage = hot.outage.load(Ordering::SeqCst);
        let started = Instant::now();
        let answer = loop {
            self.outcome.calls += 1;
            let attempt = Instant::now();
            let result = send().await;
            self.longest_attempt = self.longest_attempt.max(attempt.elapsed());
            match result {
                Ok(response) => break Ok(response.into_inner()),
                Err(s) if retryable(&s) => {
                    assert!(started.elapsed() < GIVE_UP, "{what}: no definite answer within {GIVE_UP:?}; last {s:?}");
                    tokio::time::sleep(super::retry_hint(&s).unwrap_or(Duration::from_millis(100))).await;
                }
                Err(s) => break Err(s),
            }
        };
        self.latencies.push(started.elapsed());
        self.sent_at.push(started);
        let within_outage = outage % 2 == 1 && hot.outage.load(Ordering::SeqCst) == outage;
        if answer.is_ok() && within_outage {
            self.during_outage += 1;
        }
        answer
    }

    /// A definite refusal (nothing applied, so nothing for the book).
    pub fn refuse(&mut self, status: Status) {
        self.refused += 1;
        self.refusal.get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
    }
}

/// Whether a status leaves the call's outcome open, so that the caller
/// retries it with the same event id: the service out of reach (including
/// the statuses tonic's client makes up from a broken connection, see
/// [`super::unavailable`]), busy, or past a deadline. CANCELLED counts too:
/// the service never answers it and the callers never cancel, but tonic's
/// client reports its own `grpc-timeout` passing as CANCELLED ("Timeout
/// expired"). Anything else (OK, FAILED_PRECONDITION, ...) is definite, and
/// INTERNAL fails the test.
pub fn retryable(status: &Status) -> bool {
    super::unavailable(status)
        || matches!(status.code(), Code::ResourceExhausted | Code::DeadlineExceeded | Code::Aborted | Code::Cancelled)
}

/// `message` as a request with the per-attempt deadline [`CALL_DEADLINE`].
pub fn with_deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_DEADLINE);
    request
}

/// Sends the hot account's accruals, sharing the numbering with the other
/// accrual callers, 1 to 20 points each, until all are acknowledged.
pub async fn accrue_caller(grpc: Grpc, hot: Arc<Hot>) -> Tally {
    let mut tally = Tally::new(&hot.customer);
    loop {
        let i = hot.next.fetch_add(1, Ordering::SeqCst);
        if i > hot.accruals {
            return tally;
        }
        let event = hot.id("a", i);
        let points = 1 + (i * 7 % 20) as i64;
        let mut request = accrual(&hot.customer, &event, points);
        request.reason = hot.text("purchase");
        let send = || {
            let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
            async move { grpc.accrue(request).await }
        };
        match tally.call(&hot, &event, send).await {
            Ok(_) => {
                hot.acknowledged.lock().unwrap().push((event.clone(), points));
                tally.outcome.accrued.push((event, points));
            }
            Err(s) => panic!("{event}: accrual refused: {s:?}"),
        }
    }
}

/// Redeems 5 to 30 points at a time, one redemption after another, until
/// the accruals are done. Insufficient points is a definite refusal.
pub async fn redeem_caller(grpc: Grpc, hot: Arc<Hot>) -> Tally {
    let mut tally = Tally::new(&hot.customer);
    let mut n = 0;
    while !hot.done() {
        n += 1;
        let event = hot.id("r", n);
        let points = 5 + (n * 13 % 26) as i64;
        let request = redemption(&hot.customer, &event, points, &hot.text("ticket"));
        let send = || {
            let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
            async move { grpc.redeem(request).await }
        };
        match tally.call(&hot, &event, send).await {
            Ok(r) => {
                assert_eq!(r.redeemed, points, "{event}: {r:?}");
                assert!(r.remaining_balance >= 0, "{event}: {r:?}");
                tally.outcome.redeemed.push((event, points));
            }
            Err(s) if s.code() == Code::FailedPrecondition => tally.refuse(s),
            Err(s) => panic!("{event}: {s:?}"),
        }
    }
    tally
}

/// Reverses acknowledged accruals, one reversal after another, until the
/// accruals are done: of every three accruals it picks, all of the first,
/// half of the second, and half of the third followed by all that remains
/// of it. Each names the newest accrual at least [`REVERSE_LAG`]
/// acknowledgements old that it has not named yet. A definite refusal:
/// FAILED_PRECONDITION (nothing left to reverse), or NOT_FOUND (the account
/// does not know the accrual yet).
pub async fn reverse_caller(grpc: Grpc, hot: Arc<Hot>) -> Tally {
    let mut tally = Tally::new(&hot.customer);
    let (mut picked, mut unpicked, mut n) = (0, 0, 0);
    while !hot.done() {
        let original = {
            let acknowledged = hot.acknowledged.lock().unwrap();
            let newest_old_enough = acknowledged.len().checked_sub(REVERSE_LAG + 1);
            newest_old_enough.filter(|i| *i >= unpicked).map(|i| (i, acknowledged[i].clone()))
        };
        let Some((index, (original, points))) = original else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        unpicked = index + 1;
        // `None` reverses all that the accrual still holds.
        let first = if picked % 3 == 0 { None } else { Some((points / 2).max(1)) };
        let then_the_rest = (picked % 3 == 2).then_some(None);
        picked += 1;
        for amount in std::iter::once(first).chain(then_the_rest) {
            n += 1;
            let event = hot.id("v", n);
            let request = pb::ReverseRequest {
                customer_id: hot.customer.clone(),
                reverse_event_id: event.clone(),
                original_event_id: original.clone(),
                points: amount,
                reason: hot.text("refund"),
                lines: Vec::new(),
            };
            let send = || {
                let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
                async move { grpc.reverse(request).await }
            };
            match tally.call(&hot, &event, send).await {
                Ok(r) => {
                    let change = r.change.unwrap_or_else(|| panic!("{event}: a reversal reports its change"));
                    tally.outcome.reversed.push((event, (change.points, change.lifetime_delta)));
                }
                Err(s) if matches!(s.code(), Code::FailedPrecondition | Code::NotFound) => tally.refuse(s),
                Err(s) => panic!("{event} of {original}: {s:?}"),
            }
        }
    }
    tally
}

/// Adjusts the balance by +1..25 and -1..25 in turn, one adjustment after
/// another, until the accruals are done. A deduction the balance cannot
/// cover is a definite refusal.
pub async fn adjust_caller(grpc: Grpc, hot: Arc<Hot>) -> Tally {
    let mut tally = Tally::new(&hot.customer);
    let mut n = 0;
    while !hot.done() {
        n += 1;
        let event = hot.id("j", n);
        let magnitude = 1 + (n * 7 % 25) as i64;
        let points = if n % 2 == 0 { -magnitude } else { magnitude };
        let request = pb::AdjustRequest {
            customer_id: hot.customer.clone(),
            event_id: event.clone(),
            points,
            reason: hot.text("support correction"),
        };
        let send = || {
            let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
            async move { grpc.adjust(request).await }
        };
        match tally.call(&hot, &event, send).await {
            Ok(r) => {
                let change = r.change.unwrap_or_else(|| panic!("{event}: an adjustment reports its change"));
                assert_eq!(change.points, points, "{event}: the balance moves by the adjustment: {change:?}");
                tally.outcome.adjusted.push((event, (change.points, change.lifetime_delta)));
            }
            Err(s) if s.code() == Code::FailedPrecondition => tally.refuse(s),
            Err(s) => panic!("{event}: {s:?}"),
        }
    }
    tally
}

/// Checkout holds on the hot account until the accruals are done: reserve,
/// then capture part of it (two of three) or release it, each retried with
/// its ids until definite. A reservation the balance cannot cover is
/// refused (FAILED_PRECONDITION); nothing else may be.
pub async fn hold_caller(grpc: Grpc, hot: Arc<Hot>) -> Vec<(Rpc, Tally)> {
    let (mut reserves, mut captures, mut releases) =
        (Tally::new(&hot.customer), Tally::new(&hot.customer), Tally::new(&hot.customer));
    let mut n = 0;
    while !hot.done() {
        n += 1;
        let hold_id = hot.id("h", n);
        let points = 10 + (n * 11 % 30) as i64;
        let request = pb::ReserveRequest {
            customer_id: hot.customer.clone(),
            hold_id: hold_id.clone(),
            points,
            ttl: Some(prost_types::Duration { seconds: 300, nanos: 0 }),
        };
        let send = || {
            let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
            async move { grpc.reserve(request).await }
        };
        match reserves.call(&hot, &hold_id, send).await {
            Ok(r) => {
                let r = r.hold.expect("a hold");
                assert_eq!((r.held, r.status()), (points, pb::HoldStatus::Held), "{hold_id}: {r:?}");
                reserves.outcome.holds.push((EntryKind::Hold, format!("hold/{hold_id}"), (-points, 0)));
            }
            Err(s) if s.code() == Code::FailedPrecondition => {
                reserves.refuse(s);
                continue;
            }
            Err(s) => panic!("{hold_id}: {s:?}"),
        }
        if n % 3 == 0 {
            let request = pb::ReleaseRequest { customer_id: hot.customer.clone(), hold_id: hold_id.clone() };
            let send = || {
                let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
                async move { grpc.release(request).await }
            };
            let r = releases.call(&hot, &hold_id, send).await.unwrap_or_else(|s| panic!("{hold_id}: {s:?}"));
            let r = r.hold.expect("a hold");
            assert_eq!(r.status(), pb::HoldStatus::Released, "{hold_id}: {r:?}");
            releases.outcome.holds.push((EntryKind::Release, format!("release/{hold_id}"), (points, 0)));
        } else {
            let event = hot.id("k", n);
            let captured = points - (n % 7) as i64;
            let request = pb::CaptureRequest {
                customer_id: hot.customer.clone(),
                hold_id: hold_id.clone(),
                points: captured,
                event_id: event.clone(),
                reward: hot.text("checkout"),
            };
            let send = || {
                let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
                async move { grpc.capture(request).await }
            };
            let r = captures.call(&hot, &event, send).await.unwrap_or_else(|s| panic!("{event}: {s:?}"));
            let r = r.hold.expect("a hold");
            assert_eq!((r.captured, r.status()), (captured, pb::HoldStatus::Captured), "{event}: {r:?}");
            captures.outcome.holds.push((EntryKind::Capture, event, (points - captured, 0)));
        }
    }
    vec![(Rpc::Reserve, reserves), (Rpc::Capture, captures), (Rpc::Release, releases)]
}

/// Reads the hot account's summary every 50 ms until the accruals are done:
/// never a negative balance, and the tier always the one lifetime gives.
pub async fn summary_caller(grpc: Grpc, hot: Arc<Hot>) -> Tally {
    let mut tally = Tally::new(&hot.customer);
    let request = pb::GetSummaryRequest { customer_id: hot.customer.clone() };
    while !hot.done() {
        let send = || {
            let (mut grpc, request) = (grpc.clone(), with_deadline(request.clone()));
            async move { grpc.get_summary(request).await }
        };
        match tally.call(&hot, "GetSummary", send).await {
            Ok(s) => {
                assert!(s.points_balance >= 0, "{s:?}");
                assert_eq!(s.tier, Tier::for_lifetime(s.lifetime_points).as_str(), "{s:?}");
            }
            Err(s) => panic!("GetSummary: {s:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tally
}

/// Prints and publishes, per RPC, the calls made and the p50, p99 and
/// maximum of their latencies (first attempt to definite answer, retries
/// included), and how many were refused.
pub fn report_latencies(scenario: &str, tallies: &BTreeMap<Rpc, Tally>) {
    use loyalty::bench::stats::percentile;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (rpc, tally) in tallies {
        let mut sorted = tally.latencies.clone();
        sorted.sort_unstable();
        publish(&format!(
            "{scenario}: {rpc:?} {} calls ({} attempts), latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} refused",
            sorted.len(),
            tally.outcome.calls,
            ms(percentile(&sorted, 0.50)),
            ms(percentile(&sorted, 0.99)),
            ms(sorted.last().copied().unwrap_or_default()),
            tally.refused
        ));
    }
}
