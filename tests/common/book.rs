//! The fault suites' book of what clients were told, and the exact
//! invariant checked against it: balance = acknowledged accruals -
//! successful redemptions + the changes corrections reported, lifetime =
//! accruals + their lifetime changes, the tier lifetime gives, and the
//! ledger holding exactly those events once, with an event stream to match.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use loyalty::domain::{EntryKind, Tier};
use loyalty::ledger::Ledger;

use super::{accrual, client, ledger, summary_when};

pub const SETTLE: Duration = Duration::from_secs(60);

/// A client of the service's gRPC API.
pub type Grpc = loyalty::grpc::pb::loyalty_service_client::LoyaltyServiceClient<tonic::transport::Channel>;

/// What the clients were told, per customer and event id: the points of
/// every acknowledged accrual and successful redemption, and the effect each
/// successful reversal and adjustment reported.
#[derive(Default)]
pub struct Book {
    pub accrued: BTreeMap<String, BTreeMap<String, i64>>,
    pub redeemed: BTreeMap<String, BTreeMap<String, i64>>,
    pub reversed: BTreeMap<String, BTreeMap<String, Delta>>,
    pub adjusted: BTreeMap<String, BTreeMap<String, Delta>>,
    /// Entries of holds: reserved (`hold/<id>`), captured (the capture's
    /// event id), released (`release/<id>`), by kind.
    pub holds: BTreeMap<String, BTreeMap<EntryKind, BTreeMap<String, Delta>>>,
}

/// How an event moved an account, as (balance delta, lifetime delta). For a
/// reversal or adjustment, what its response reported
/// (`BalanceChange.points`, `BalanceChange.lifetime_delta`): the book takes
/// the service's word for the amounts (a clawback floors at zero) and checks
/// that the summary and the ledger agree with it exactly.
pub type Delta = (i64, i64);

/// The invariant's verdict over every customer of a scenario.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub customers: usize,
    /// Acknowledged events missing from the ledger or the balance.
    pub lost: i64,
    /// Events in the ledger no client was told about, or counted twice.
    pub duplicated: i64,
}

impl Figures {
    /// Both verdicts together.
    pub fn and(self, other: Figures) -> Figures {
        Figures {
            customers: self.customers + other.customers,
            lost: self.lost + other.lost,
            duplicated: self.duplicated + other.duplicated,
        }
    }
}

impl Book {
    pub fn accrued(&mut self, customer: &str, event: &str, points: i64) {
        self.accrued.entry(customer.into()).or_default().insert(event.into(), points);
    }

    pub fn redeemed(&mut self, customer: &str, event: &str, points: i64) {
        self.redeemed.entry(customer.into()).or_default().insert(event.into(), points);
    }

    pub fn reversed(&mut self, customer: &str, event: &str, delta: Delta) {
        self.reversed.entry(customer.into()).or_default().insert(event.into(), delta);
    }

    pub fn adjusted(&mut self, customer: &str, event: &str, delta: Delta) {
        self.adjusted.entry(customer.into()).or_default().insert(event.into(), delta);
    }

    /// The ledger rows of `kind` that `customer` must hold, by event id, with
    /// their (signed balance change, lifetime change): an accrual of p moves
    /// (p, p), a redemption (-p, 0), a reversal or adjustment what its
    /// response reported. No other kind is ever acknowledged, so none may be
    /// in the ledger.
    pub fn rows(&self, customer: &str, kind: EntryKind) -> BTreeMap<String, Delta> {
        let of = |book: &BTreeMap<String, BTreeMap<String, i64>>, delta: fn(i64) -> Delta| -> BTreeMap<String, Delta> {
            book.get(customer).into_iter().flatten().map(|(event, points)| (event.clone(), delta(*points))).collect()
        };
        match kind {
            EntryKind::Accrual => of(&self.accrued, |p| (p, p)),
            EntryKind::Redemption => of(&self.redeemed, |p| (-p, 0)),
            EntryKind::Reversal => self.reversed.get(customer).cloned().unwrap_or_default(),
            EntryKind::Adjustment => self.adjusted.get(customer).cloned().unwrap_or_default(),
            EntryKind::Hold | EntryKind::Capture | EntryKind::Release => {
                self.holds.get(customer).and_then(|h| h.get(&kind)).cloned().unwrap_or_default()
            }
            _ => BTreeMap::new(),
        }
    }

    /// Opens `customer` with one acknowledged accrual of `points` (event
    /// `<customer>-a0`) and waits until it is applied.
    pub async fn open(&mut self, grpc: &mut Grpc, customer: &str, points: i64) {
        let event = format!("{customer}-a0");
        grpc.accrue(accrual(customer, &event, points)).await.unwrap();
        self.accrued(customer, &event, points);
        summary_when(grpc, customer, SETTLE, |s| s.points_balance == points).await;
    }

    /// Records what a load client was told; returns the calls it made.
    pub fn add(&mut self, outcome: Outcome) -> usize {
        for (event, points) in outcome.accrued {
            self.accrued(&outcome.customer, &event, points);
        }
        for (event, points) in outcome.redeemed {
            self.redeemed(&outcome.customer, &event, points);
        }
        for (event, delta) in outcome.reversed {
            self.reversed(&outcome.customer, &event, delta);
        }
        for (event, delta) in outcome.adjusted {
            self.adjusted(&outcome.customer, &event, delta);
        }
        for (kind, event, delta) in outcome.holds {
            let kinds = self.holds.entry(outcome.customer.clone()).or_default();
            kinds.entry(kind).or_default().insert(event, delta);
        }
        outcome.calls
    }

    /// [`Book::check_on`] the shared application and its ledger.
    pub async fn check(&self) -> Figures {
        self.check_on(&mut client().await, &ledger().await).await
    }

    /// Compares every customer's summary and ledger with the book, once the
    /// balance has settled and the ledger has caught up; panics with the
    /// differences. Balance and lifetime are the sums of what the book's
    /// events moved (accruals - redemptions + corrections; accruals +
    /// corrections), the tier follows lifetime, and the ledger holds exactly
    /// one row per acknowledged event of every kind, moving what the book
    /// says, and nothing else.
    pub async fn check_on(&self, grpc: &mut Grpc, ledger: &Ledger) -> Figures {
        let mut figures = Figures::default();
        let customers: BTreeSet<&String> = self
            .accrued
            .keys()
            .chain(self.redeemed.keys())
            .chain(self.reversed.keys())
            .chain(self.adjusted.keys())
            .chain(self.holds.keys())
            .collect();
        for customer in customers {
            figures.customers += 1;
            let expected: Vec<(EntryKind, BTreeMap<String, Delta>)> =
                EntryKind::ALL.iter().map(|&kind| (kind, self.rows(customer, kind))).collect();
            let (balance, lifetime) = expected
                .iter()
                .flat_map(|(_, rows)| rows.values())
                .fold((0, 0), |(balance, lifetime), &(db, dl)| (balance + db, lifetime + dl));
            let s = summary_when(grpc, customer, SETTLE, |s| s.lifetime_points >= lifetime).await;
            figures.lost += (lifetime - s.lifetime_points).max(0) + (s.points_balance - balance).max(0);
            figures.duplicated += (s.lifetime_points - lifetime).max(0) + (balance - s.points_balance).max(0);
            assert_eq!((s.points_balance, s.lifetime_points), (balance, lifetime), "{customer}: summary vs book");
            assert_eq!(s.tier, Tier::for_lifetime(lifetime).as_str(), "{customer}: tier");

            let wanted: usize = expected.iter().map(|(_, rows)| rows.len()).sum();
            let rows = super::rows_when(ledger, customer, wanted).await;
            let distinct: BTreeSet<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
            figures.duplicated += (rows.len() - distinct.len()) as i64;
            for (kind, book) in &expected {
                let found: BTreeMap<String, Delta> = rows
                    .iter()
                    .filter(|r| r.kind == *kind)
                    .map(|r| (r.event_id.clone(), (r.points, r.lifetime_delta)))
                    .collect();
                figures.lost += book.keys().filter(|e| !found.contains_key(*e)).count() as i64;
                figures.duplicated += found.keys().filter(|e| !book.contains_key(*e)).count() as i64;
                assert_eq!(&found, book, "{customer}: {kind:?} rows vs book");
            }
            let newest = rows.last().map(|r| r.balance_after);
            assert_eq!(newest, Some(balance), "{customer}: the newest row's balance_after vs book");
            check_events(ledger, customer, &rows).await;
        }
        figures
    }
}

/// The account's event stream against its ledger rows: numbered from 1
/// without gaps, one event per row in the rows' order (no event lost or
/// invented), and one `tier.changed` at each tier boundary the rows cross.
pub async fn check_events(ledger: &Ledger, customer: &str, rows: &[loyalty::ledger::HistoryEntry]) {
    let events = ledger.events(customer, 0, u32::MAX, false).await.expect("events");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "{customer}: event numbers without gaps");
    }
    let body = |e: &loyalty::ledger::StoredEvent| serde_json::from_str::<serde_json::Value>(&e.body).unwrap();
    let entries: Vec<String> = events
        .iter()
        .filter(|e| e.event_type != "tier.changed")
        .map(|e| body(e)["data"]["event_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let row_ids: Vec<String> = rows.iter().map(|r| r.event_id.clone()).collect();
    assert_eq!(entries, row_ids, "{customer}: one event per ledger row, in order");
    let mut lifetime = 0;
    let mut crossings = 0;
    for r in rows {
        let before = Tier::for_lifetime(lifetime);
        lifetime += r.lifetime_delta;
        crossings += usize::from(Tier::for_lifetime(lifetime) != before);
    }
    let tiers = events.iter().filter(|e| e.event_type == "tier.changed").count();
    assert_eq!(tiers, crossings, "{customer}: one tier.changed per tier change");
}

/// Figures of a scenario, for the README's reliability section: printed, and
/// appended to target/tmp/faults-figures.txt, which scripts/test.sh shows.
pub fn report(scenario: &str, operations: usize, faults: usize, figures: &Figures) {
    publish(&format!(
        "{scenario}: {operations} operations, {faults} faults injected, {} customers, lost = {}, duplicated = {}",
        figures.customers, figures.lost, figures.duplicated
    ));
}

/// Prints one line of a scenario's figures and appends it to
/// target/tmp/faults-figures.txt, which scripts/test.sh shows.
pub fn publish(line: &str) {
    use std::io::Write;
    println!("{line}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults-figures.txt");
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("figures file");
    writeln!(file, "{line}").expect("figures written");
}

/// What one load client was told.
#[derive(Default)]
pub struct Outcome {
    pub customer: String,
    pub calls: usize,
    pub accrued: Vec<(String, i64)>,
    pub redeemed: Vec<(String, i64)>,
    pub reversed: Vec<(String, Delta)>,
    pub adjusted: Vec<(String, Delta)>,
    pub holds: Vec<(EntryKind, String, Delta)>,
}

/// Scale of the scenarios: 1 in CI; `LOYALTY_FAULTS_SCALE=10` for a soak.
pub fn scale() -> usize {
    std::env::var("LOYALTY_FAULTS_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}
