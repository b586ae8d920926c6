//! `loyalty reconcile`: compares every account's workflow state with the
//! ledger and prints each difference. Exit code 0 when all agree, 1 when any
//! differs, 2 when the check itself failed.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use futures::StreamExt;

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

/// A one-line progress bar on stderr, drawn only for a terminal.
struct Progress {
    total: u64,
    done: u64,
    differing: u64,
    draw: bool,
}

impl Progress {
    fn new(total: u64) -> Self {
        Self { total, done: 0, differing: 0, draw: total > 1 && std::io::stderr().is_terminal() }
    }

    fn tick(&mut self, differs: bool) {
        self.done += 1;
        self.differing += u64::from(differs);
        if self.draw {
            let width = 30;
            let filled = (self.done * width / self.total.max(1)).min(width) as usize;
            eprint!(
                "\r[{}{}] {}/{} accounts, {} differing",
                "#".repeat(filled),
                ".".repeat(width as usize - filled),
                self.done,
                self.total,
                self.differing
            );
            let _ = std::io::stderr().flush();
        }
    }

    fn finish(&self) {
        if self.draw {
            eprintln!();
        }
    }
}

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
    match args.customer {
        Some(customer) => {
            progress = Progress::new(1);
            let differences = check_account(&client, &ledger, &customer).await?;
            print(&customer, &differences);
            progress.tick(!differences.is_empty());
        }
        None => {
            progress = Progress::new(ledger.account_count().await?.max(0) as u64);
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
                    progress.tick(!differences.is_empty());
                }
                after = last;
            }
        }
    }
    progress.finish();
    eprintln!("checked {} accounts: {} differing", progress.done, progress.differing);
    Ok(progress.differing)
}

fn print(customer: &str, differences: &[String]) {
    for d in differences {
        println!("{customer}: {d}");
    }
}
