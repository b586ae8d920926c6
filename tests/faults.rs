//! Fault suite: real processes (service, dev server, database) under load and
//! faults, then one exact invariant per customer, from what clients were told:
//! balance = accepted accruals - successful redemptions, lifetime = accepted
//! accruals, tier follows lifetime, and the ledger holds exactly the applied
//! events. Clients retry with the same event ids, as checkout services do.
//! Each scenario prints its figures: operations, faults, lost, duplicated.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use common::{accrual, client, ledger, redemption, summary_when};
use loyalty::domain::{EntryKind, Tier};
use tonic::Code;

const SETTLE: Duration = Duration::from_secs(60);

/// What the clients were told, per customer and event id: the points of
/// every acknowledged accrual and successful redemption.
#[derive(Default)]
struct Book {
    accrued: BTreeMap<String, BTreeMap<String, i64>>,
    redeemed: BTreeMap<String, BTreeMap<String, i64>>,
}

/// The invariant's verdict over every customer of a scenario.
#[derive(Debug, Default, PartialEq, Eq)]
struct Figures {
    customers: usize,
    /// Acknowledged events missing from the ledger or the balance.
    lost: i64,
    /// Events in the ledger no client was told about, or counted twice.
    duplicated: i64,
}

impl Book {
    fn accrued(&mut self, customer: &str, event: &str, points: i64) {
        self.accrued.entry(customer.into()).or_default().insert(event.into(), points);
    }

    fn redeemed(&mut self, customer: &str, event: &str, points: i64) {
        self.redeemed.entry(customer.into()).or_default().insert(event.into(), points);
    }

    /// Compares every customer's summary and ledger with the book, once the
    /// balance has settled; panics with the differences.
    async fn check(&self) -> Figures {
        let mut grpc = client().await;
        let ledger = ledger().await;
        let mut figures = Figures::default();
        let customers: std::collections::BTreeSet<&String> = self.accrued.keys().chain(self.redeemed.keys()).collect();
        let none = BTreeMap::new();
        for customer in customers {
            figures.customers += 1;
            let accrued = self.accrued.get(customer).unwrap_or(&none);
            let redeemed = self.redeemed.get(customer).unwrap_or(&none);
            let lifetime: i64 = accrued.values().sum();
            let balance = lifetime - redeemed.values().sum::<i64>();
            let s = summary_when(&mut grpc, customer, SETTLE, |s| s.lifetime_points >= lifetime).await;
            figures.lost += (lifetime - s.lifetime_points).max(0) + (s.points_balance - balance).max(0);
            figures.duplicated += (s.lifetime_points - lifetime).max(0) + (balance - s.points_balance).max(0);
            assert_eq!((s.points_balance, s.lifetime_points), (balance, lifetime), "{customer}: summary vs book");
            assert_eq!(s.tier, Tier::for_lifetime(lifetime).as_str(), "{customer}: tier");

            let rows = ledger.entries(customer).await.expect("ledger readable");
            let in_ledger = |kind: EntryKind| -> BTreeMap<String, i64> {
                rows.iter().filter(|r| r.kind == kind).map(|r| (r.event_id.clone(), r.points.abs())).collect()
            };
            for (kind, book) in [(EntryKind::Accrual, accrued), (EntryKind::Redemption, redeemed)] {
                let found = in_ledger(kind);
                figures.lost += book.keys().filter(|e| !found.contains_key(*e)).count() as i64;
                figures.duplicated += found.keys().filter(|e| !book.contains_key(*e)).count() as i64;
                assert_eq!(&found, book, "{customer}: {kind:?} rows vs book");
            }
        }
        figures
    }
}

/// Figures of a scenario, printed for the README's reliability section.
fn report(scenario: &str, operations: usize, faults: usize, figures: &Figures) {
    println!(
        "{scenario}: {operations} operations, {faults} faults injected, {} customers, lost = {}, duplicated = {}",
        figures.customers, figures.lost, figures.duplicated
    );
}

/// 100 redemptions of 10 points race on an account holding 500: exactly 50
/// succeed, the balance never goes below zero, and every caller refused for
/// load gets RESOURCE_EXHAUSTED or UNAVAILABLE with a retry hint, never
/// INTERNAL; retried with the same event id, each ends succeeded or refused
/// for insufficient points.
#[tokio::test]
async fn a_hundred_concurrent_redemptions_on_an_account_that_affords_fifty() {
    let mut book = Book::default();
    let mut grpc = client().await;
    grpc.accrue(accrual("race", "race-a", 500)).await.unwrap();
    book.accrued("race", "race-a", 500);
    summary_when(&mut grpc, "race", SETTLE, |s| s.points_balance == 500).await;

    let refusals = Mutex::new(Vec::new());
    let redeem = |mut g: tonic_client::Client, i: usize| {
        let refusals = &refusals;
        async move {
            let event = format!("race-r{i}");
            for _ in 0..100 {
                match g.redeem(redemption("race", &event, 10, "ticket")).await {
                    Ok(_) => return (event, true),
                    Err(s) if s.code() == Code::FailedPrecondition => return (event, false),
                    Err(s) => {
                        refusals.lock().unwrap().push(s.clone());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            panic!("{event}: no definitive answer after 100 attempts");
        }
    };
    let mut watcher = grpc.clone();
    let watch = tokio::spawn(async move {
        let mut lowest = i64::MAX;
        for _ in 0..100 {
            if let Ok(s) =
                watcher.get_summary(loyalty::grpc::pb::GetSummaryRequest { customer_id: "race".into() }).await
            {
                lowest = lowest.min(s.get_ref().points_balance);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lowest
    });
    let results = common::fan_out(&grpc, 100, 0..100, redeem).await;
    let lowest = watch.await.unwrap();

    let succeeded: Vec<_> = results.iter().filter(|(_, ok)| *ok).map(|(e, _)| e.clone()).collect();
    for event in &succeeded {
        book.redeemed("race", event, 10);
    }
    assert_eq!(succeeded.len(), 50, "exactly the affordable half");
    assert!(lowest >= 0, "balance went to {lowest}");
    let refusals = refusals.into_inner().unwrap();
    for s in &refusals {
        assert!(matches!(s.code(), Code::ResourceExhausted | Code::Unavailable), "refused with {s:?}");
        assert!(common::retry_hint(s).is_some(), "no retry hint in {s:?}");
    }
    let figures = book.check().await;
    report("100 concurrent redemptions", 100 + refusals.len(), refusals.len(), &figures);
    assert_eq!(figures, Figures { customers: 1, lost: 0, duplicated: 0 });
}

mod tonic_client {
    pub type Client = loyalty::grpc::pb::loyalty_service_client::LoyaltyServiceClient<tonic::transport::Channel>;
}
