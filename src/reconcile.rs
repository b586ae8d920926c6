//! Reconciliation: each account's workflow state against the ledger.
//!
//! The workflow decides and the ledger follows, entry by entry: when the
//! ledger holds every entry the account decided (`projected_seq ==
//! decided_seq`) their totals must agree; while it is behind, the lag is
//! reported; an account whose ledger did not match (a lost or restored
//! database, a wrong URL) reports why its writes are held. The ledger is
//! also checked against itself: its rows must add up to its totals.

use temporalio_client::errors::WorkflowQueryError;
use temporalio_client::{Client, WorkflowQueryOptions};

use crate::domain::{CustomerId, Tier};
use crate::ledger::{Ledger, LedgerError};
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

/// Every difference found for one account, in words; empty when it agrees.
pub async fn check_account(client: &Client, ledger: &Ledger, customer_id: &str) -> Result<Vec<String>, ReconcileError> {
    let mut differences = Vec::new();
    let audit = ledger.audit(customer_id).await?;
    if let Some(audit) = &audit {
        differences.extend(audit.inconsistencies());
    }
    let workflow_id = match CustomerId::parse(customer_id) {
        Ok(c) => c.workflow_id(),
        Err(e) => return Ok(vec![format!("not a valid customer id: {e}")]),
    };
    let handle = client.get_workflow_handle::<LoyaltyEntityWorkflow>(workflow_id);
    let summary =
        match handle.query(LoyaltyEntityWorkflow::get_loyalty_summary, (), WorkflowQueryOptions::default()).await {
            Ok(s) => Some(s),
            Err(WorkflowQueryError::NotFound(_)) => None,
            Err(e) => return Err(ReconcileError::Temporal(e.to_string())),
        };
    match (summary, audit) {
        (None, None) => differences.push("no such account in the ledger or in Temporal".into()),
        (None, Some(_)) => differences.push("the ledger has the account but Temporal has no workflow for it".into()),
        (Some(s), None) if s.points_balance != 0 || s.lifetime_points != 0 => differences.push(format!(
            "the workflow holds balance {} and lifetime {} but the ledger has no entries",
            s.points_balance, s.lifetime_points
        )),
        (Some(_), None) => {}
        (Some(s), Some(audit)) => {
            if let Some(why) = &s.ledger_held {
                differences.push(format!("ledger writes held: {why}"));
            }
            let ledger_seq = ledger.sequence(customer_id).await?;
            // A write may be committed before the workflow hears of it: the
            // ledger is then ahead of `projected_seq`, never of `decided_seq`.
            if s.decided_seq != 0 && (ledger_seq < s.projected_seq || ledger_seq > s.decided_seq) {
                differences.push(format!(
                    "sequence: the workflow wrote up to entry {} and decided up to {} but the ledger's newest is \
                     {ledger_seq}",
                    s.projected_seq, s.decided_seq
                ));
            }
            if s.decided_seq > s.projected_seq {
                // Not a difference yet: entries on their way. Totals compare only once written.
                differences.push(format!(
                    "ledger behind: {} decided entries not written yet (seq {}..={})",
                    s.decided_seq - s.projected_seq,
                    s.projected_seq + 1,
                    s.decided_seq
                ));
                return Ok(differences);
            }
            let t = audit.totals;
            if s.points_balance != t.balance {
                differences.push(format!("balance: workflow {} ledger {}", s.points_balance, t.balance));
            }
            if s.lifetime_points != t.lifetime {
                differences.push(format!("lifetime points: workflow {} ledger {}", s.lifetime_points, t.lifetime));
            }
            if s.tier != Tier::for_lifetime(t.lifetime) {
                differences.push(format!("tier: workflow {} ledger {}", s.tier, Tier::for_lifetime(t.lifetime)));
            }
            let (pending, held) = ledger.pending_and_held(customer_id).await?;
            if (s.pending_points, s.held_points) != (pending, held) {
                differences.push(format!(
                    "pending and held points: workflow {} and {}, ledger {pending} and {held}",
                    s.pending_points, s.held_points
                ));
            }
        }
    }
    Ok(differences)
}
