//! The `loyalty` command line: run the service, or call a running one.

mod client;
mod events;
mod history;
mod holds;
pub(crate) mod progress;
mod reconcile;
pub mod rules;
mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Overrides;

/// Loyalty points service: one Temporal entity workflow per customer behind gRPC.
#[derive(Debug, Parser)]
#[command(name = "loyalty", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server and the Temporal worker in one process.
    Serve(Overrides),
    /// Start a local Temporal dev server (data under ./data), then serve.
    Dev(server::DevArgs),
    /// Credit points to a customer (the first accrual opens the account).
    Accrue(client::AccrueArgs),
    /// Spend points on a reward.
    Redeem(client::RedeemArgs),
    /// Show a customer's balance, lifetime points and tier.
    Summary(client::SummaryArgs),
    /// List a customer's ledger entries, newest first.
    History(history::HistoryArgs),
    /// Claw back an accrual (a refund) or return a redemption's points.
    Reverse(history::ReverseArgs),
    /// Correct a balance (support), with a reason.
    Adjust(history::AdjustArgs),
    /// Set points aside at checkout (released by itself after --ttl).
    Reserve(holds::ReserveArgs),
    /// Spend (part of) a hold; the rest goes back.
    Capture(holds::CaptureArgs),
    /// Give a hold's points back.
    Release(holds::ReleaseArgs),
    /// Read event streams; handle webhook dead letters.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Compare every account's workflow state with the ledger; print differences.
    Reconcile(reconcile::ReconcileArgs),
    /// Measure a running service against the Temporal client used directly.
    Bench(crate::bench::BenchArgs),
    /// Check an earning rules file, or evaluate an order with it (offline).
    #[command(subcommand)]
    Rules(rules::RulesCommand),
}

impl Cli {
    /// Runs the chosen command and returns the process exit code.
    pub async fn run(self) -> ExitCode {
        match self.command {
            Command::Serve(overrides) => server::serve(overrides).await,
            Command::Dev(args) => server::dev(args).await,
            Command::Accrue(args) => client::accrue(args).await,
            Command::Redeem(args) => client::redeem(args).await,
            Command::Summary(args) => client::summary(args).await,
            Command::History(args) => history::history(args).await,
            Command::Reverse(args) => history::reverse(args).await,
            Command::Adjust(args) => history::adjust(args).await,
            Command::Events(command) => command.run().await,
            Command::Reserve(args) => holds::reserve(args).await,
            Command::Capture(args) => holds::capture(args).await,
            Command::Release(args) => holds::release(args).await,
            Command::Reconcile(args) => reconcile::reconcile(args).await,
            Command::Bench(args) => crate::bench::bench(args).await,
            Command::Rules(command) => command.run(),
        }
    }
}
