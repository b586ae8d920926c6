//! `loyalty events`: read an account's event stream (over the API) and
//! handle webhook failures (on the ledger database, as an operator).

use std::process::ExitCode;

use serde_json::json;

use super::client::{Paging, Target, connect, pages, report};
use crate::config::{Overrides, Settings};
use crate::domain::events::rfc3339;
use crate::grpc::pb;
use crate::ledger::Ledger;

/// `loyalty events <command>`.
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// List a customer's events (what webhooks deliver), oldest first.
    List(ListArgs),
    /// Show accounts whose events an endpoint stopped receiving after its retries ran out.
    DeadLetters(DeadLetterArgs),
    /// Send parked events again (by endpoint, customer or event id), in order.
    Redeliver(RedeliverArgs),
}

/// Options of `loyalty events list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    customer: String,
    /// Newest first.
    #[arg(long)]
    newest_first: bool,
    #[command(flatten)]
    paging: Paging,
    #[command(flatten)]
    target: Target,
}

/// Options of `loyalty events dead-letters`.
#[derive(Debug, clap::Args)]
pub struct DeadLetterArgs {
    /// Only this endpoint (its name in the webhooks file).
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long)]
    customer: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    overrides: Overrides,
}

/// Options of `loyalty events redeliver`.
#[derive(Debug, clap::Args)]
pub struct RedeliverArgs {
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long)]
    customer: Option<String>,
    /// Send this event and every later one of its account again, even if
    /// delivered (receivers deduplicate on webhook-id).
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    overrides: Overrides,
}

impl EventsCommand {
    /// Runs the command.
    pub async fn run(self) -> ExitCode {
        match self {
            EventsCommand::List(args) => list(args).await,
            EventsCommand::DeadLetters(args) => {
                operate(&args.overrides.clone(), |ledger| async move {
                    let letters = ledger.dead_letters(args.endpoint.as_deref(), args.customer.as_deref()).await?;
                    if args.json {
                        return Ok(serde_json::to_string(&letters)?);
                    }
                    if letters.is_empty() {
                        return Ok("no dead letters".into());
                    }
                    let lines: Vec<String> = letters
                        .iter()
                        .map(|d| {
                            format!(
                                "{} {}: {} event(s) from #{} parked at {}: {}",
                                d.endpoint,
                                d.customer_id,
                                d.events,
                                d.first_seq,
                                rfc3339(d.parked_at_ms),
                                d.last_error
                            )
                        })
                        .collect();
                    Ok(lines.join("\n"))
                })
                .await
            }
            EventsCommand::Redeliver(args) => {
                operate(&args.overrides.clone(), |ledger| async move {
                    if args.endpoint.is_none() && args.customer.is_none() && args.id.is_none() {
                        return Err("name --endpoint, --customer or --id".into());
                    }
                    let n = ledger
                        .redeliver(args.endpoint.as_deref(), args.customer.as_deref(), args.id.as_deref())
                        .await?;
                    Ok(format!("{n} delivery cursor(s) set to send again"))
                })
                .await
            }
        }
    }
}

async fn list(args: ListArgs) -> ExitCode {
    let result = async {
        let client = connect(&args.target).await?;
        pages(&args.paging, |page_token| {
            let (mut client, customer_id) = (client.clone(), args.customer.clone());
            let (page_size, newest_first) = (args.paging.page_size, args.newest_first);
            async move {
                let request = pb::ListEventsRequest { customer_id, page_size, page_token, newest_first };
                let page = client.list_events(request).await?.into_inner();
                Ok((page.events, page.next_page_token))
            }
        })
        .await
    }
    .await;
    report(
        result,
        args.target.json,
        |(events, next)| {
            let bodies: Vec<serde_json::Value> =
                events.iter().map(|e| serde_json::from_str(&e.body).unwrap_or_else(|_| json!(e.body))).collect();
            json!({"events": bodies, "next_page_token": next})
        },
        |(events, next)| {
            let mut out: Vec<String> =
                events.iter().map(|e| format!("#{} {} {}", e.sequence, e.event_type, e.body)).collect();
            if !next.is_empty() {
                out.push(format!("(more: --page-token {next})"));
            }
            out.join("\n")
        },
    )
}

/// Runs an operator command on the ledger database and prints its answer.
async fn operate<F, Fut>(overrides: &Overrides, command: F) -> ExitCode
where
    F: FnOnce(Ledger) -> Fut,
    Fut: std::future::Future<Output = Result<String, Box<dyn std::error::Error>>>,
{
    let result = async {
        let settings = Settings::load(overrides)?;
        let ledger = Ledger::connect(&settings.database_url).await?;
        command(ledger).await
    }
    .await;
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loyalty events: {e}");
            ExitCode::from(2)
        }
    }
}
