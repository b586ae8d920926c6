//! The `loyalty` command line: run the service, or call a running one.

mod client;
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
        }
    }
}
