//! Reconciliation: each account's workflow state against the ledger.
//!
//! The workflow decides and the ledger follows, entry by entry: when the
//! ledger holds every entry the account decided (`projected_seq ==
//! decided_seq`) their totals must agree; while it is behind, the lag is
//! reported; an account whose ledger did not match (a lost or restored
//! database, a wrong URL) reports why its writes are held. The ledger is
//! also checked against itself: its rows must add up to its totals.

use std::time::Duration;

use temporalio_client::errors::WorkflowQueryError;
use temporalio_client::{Client, WorkflowQueryOptions};

use crate::domain::{CustomerId, LoyaltySummary, Tier};
use crate::ledger::{AccountSnapshot, Ledger, LedgerError};
use crate::workflow::LoyaltyEntityWorkflow;

/// Why an account could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The ledger failed.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// Temporal failed the query for a reason other than a missing workflow.
    #[error("Temporal: {0}")]
    Temporal(String),
}

/// How long an account's ledger may take to hold every entry its workflow
/// had decided when asked, before the lag is reported.
pub const SETTLE: Duration = Duration::from_secs(3);

/// Every difference found for one account, in words; empty when it agrees.
/// An account being written is not reported as different: the workflow is
/// asked first, then the ledger is read as one snapshot, once it holds every
/// entry the workflow had decided, and compared as of that entry.
pub async fn check_account(client: &Client, ledger: &Ledger, customer_id: &str) -> Result<Vec<String>, ReconcileError> {
    let workflow_id = match CustomerId::parse(customer_id) {
        Ok(c) => c.workflow_id(),
        Err(e) => return Ok(vec![format!("not a valid customer id: {e}")]),
    };
    let handle = client.get_workflow_handle::<LoyaltyEntityWorkflow>(workflow_id);
    let summary = || async {
        match handle.query(LoyaltyEntityWorkflow::get_loyalty_summary, (), WorkflowQueryOptions::default()).await {
            Ok(s) => Ok(Some(s)),
            Err(WorkflowQueryError::NotFound(s)) if crate::grpc::error::namespace_missing(&s) => {
                Err(ReconcileError::Temporal(format!("namespace not found: {}", s.message())))
            }
            Err(WorkflowQueryError::NotFound(_)) => Ok(None),
            Err(e) => Err(ReconcileError::Temporal(e.to_string())),
        }
    };
    let workflow = summary().await?;
    let decided = workflow.as_ref().map_or(0, |s| s.decided_seq);
    // The ledger follows the workflow by milliseconds: wait for it to hold
    // what was decided (a held or lost ledger never will).
    let deadline = tokio::time::Instant::now() + SETTLE;
    let snapshot = loop {
        let snapshot = ledger.snapshot(customer_id, decided).await?;
        let caught_up = snapshot.as_ref().is_none_or(|snap| snap.seq >= decided);
        if caught_up || workflow.as_ref().is_some_and(|s| s.ledger_held.is_some()) {
            break snapshot;
        }
        if tokio::time::Instant::now() >= deadline {
            break snapshot;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut differences = Vec::new();
    if let Some(snapshot) = &snapshot {
        differences.extend(snapshot.audit.inconsistencies());
    }
    match (workflow, snapshot) {
        (None, None) => differences.push("no such account in the ledger or in Temporal".into()),
        (None, Some(_)) => differences.push("the ledger has the account but Temporal has no workflow for it".into()),
        (Some(s), None) if s.points_balance != 0 || s.lifetime_points != 0 => differences.push(format!(
            "the workflow holds balance {} and lifetime {} but the ledger has no entries",
            s.points_balance, s.lifetime_points
        )),
        (Some(_), None) => {}
        (Some(s), Some(snapshot)) => {
            if let Some(why) = &s.ledger_held {
                differences.push(format!("ledger writes held: {why}"));
            }
            let since =
                if snapshot.seq > s.decided_seq { summary().await?.map(|again| again.decided_seq) } else { None };
            differences.extend(compare(&s, &snapshot, since.unwrap_or(s.decided_seq)));
        }
    }
    Ok(differences)
}

/// How the workflow's figures (`s`, after its entry `decided_seq`) differ
/// from the ledger's `snapshot`; `since` is what the workflow had decided
/// when asked again, for a ledger that looks ahead of the first answer.
fn compare(s: &LoyaltySummary, snapshot: &AccountSnapshot, since: u64) -> Vec<String> {
    let mut differences = Vec::new();
    let ledger_seq = snapshot.seq;
    if ledger_seq < s.decided_seq {
        // Not written within SETTLE: entries on their way (or held). Totals compare only once written.
        differences.push(format!(
            "ledger behind: {} decided entries not written yet (seq {}..={})",
            s.decided_seq - ledger_seq,
            ledger_seq + 1,
            s.decided_seq
        ));
        return differences;
    }
    // Entries decided after the question may be written by now: only a
    // ledger ahead of what the workflow has decided since differs.
    if ledger_seq > since {
        differences.push(format!(
            "sequence: the workflow decided up to entry {since} but the ledger's newest is {ledger_seq}"
        ));
    }
    // The workflow's figures are those after entry `decided_seq`: the
    // account's totals when nothing was written since, else what the rows
    // up to that entry add up to.
    let current = ledger_seq == s.decided_seq;
    let (balance, lifetime, held) = if current {
        (snapshot.audit.totals.balance, snapshot.audit.totals.lifetime, snapshot.audit.held)
    } else {
        (snapshot.as_of.balance, snapshot.as_of.lifetime, snapshot.as_of.held)
    };
    if s.points_balance != balance {
        differences.push(format!("balance: workflow {} ledger {balance}", s.points_balance));
    }
    if s.lifetime_points != lifetime {
        differences.push(format!("lifetime points: workflow {} ledger {lifetime}", s.lifetime_points));
    }
    if s.tier != Tier::for_lifetime(lifetime) {
        differences.push(format!("tier: workflow {} ledger {}", s.tier, Tier::for_lifetime(lifetime)));
    }
    if s.held_points != held {
        differences.push(format!("held points: workflow {} ledger {held}", s.held_points));
    }
    // Pending points are kept per account, not per row.
    if current && s.pending_points != snapshot.pending {
        differences.push(format!("pending points: workflow {} ledger {}", s.pending_points, snapshot.pending));
    }
    differences
}
