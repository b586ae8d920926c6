//! `loyalty reconcile`: compares every account's workflow state with the
//! ledger and prints each difference. Exit code 0 when all agree, 1 when any
//! differs, 2 when the check itself failed.

use std::process::ExitCode;

use futures::StreamExt;

use super::progress::Progress;
use crate::app::temporal_client;
use crate::config::{Overrides, Settings};
use crate::ledger::Ledger;
use crate::reconcile::check_account;

/// Accounts read from the ledger per page.
const PAGE: u32 = 500;
/// Queries in flight at once.
const CONCURRENCY: usize = 8;

/// Options of `loyalty reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// Check only this account.
    #[arg(long)]
    customer: Option<String>,
    #[command(flatten)]
    overrides: Overrides,
}

/// Runs `loyalty reconcile` and turns its result into the exit code.
pub async fn reconcile(args: ReconcileArgs) -> ExitCode {
    match run(args).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loyalty reconcile: {e}");
            ExitCode::from(2)
        }
    }
}

/// Returns how many accounts differ.
async fn run(args: ReconcileArgs) -> Result<u64, Box<dyn std::error::Error>> {
    let settings = Settings::load(&args.overrides)?;
    let ledger = Ledger::connect(&settings.database_url).await?;
    let client = temporal_client(&settings, None, None).await?;
    let mut progress;
    let mut differing = 0;
    let mut tick = |progress: &mut Progress, differs: bool| {
        differing += u64::from(differs);
        progress.tick(format_args!(" accounts, {differing} differing"));
    };
    match args.customer {
        Some(customer) => {
            progress = Progress::new("reconcile", 1);
            let differences = check_account(&client, &ledger, &customer).await?;
            print(&customer, &differences);
            tick(&mut progress, !differences.is_empty());
        }
        None => {
            progress = Progress::new("reconcile", ledger.account_count().await?.max(0) as u64);
            let mut after = String::new();
            loop {
                let ids = ledger.account_ids(&after, PAGE).await?;
                let Some(last) = ids.last().cloned() else { break };
                let mut checks = futures::stream::iter(ids.into_iter().map(|id| {
                    let (client, ledger) = (&client, &ledger);
                    async move {
                        let result = check_account(client, ledger, &id).await;
                        (id, result)
                    }
                }))
                .buffered(CONCURRENCY);
                while let Some((id, result)) = checks.next().await {
                    let differences = result?;
                    print(&id, &differences);
                    tick(&mut progress, !differences.is_empty());
                }
                after = last;
            }
        }
    }
    progress.finish();
    eprintln!("checked {} accounts: {differing} differing", progress.done);
    Ok(differing)
}

fn print(customer: &str, differences: &[String]) {
    for d in differences {
        println!("{customer}: {d}");
    }
}
