//! `loyalty`: config, telemetry, then the chosen command until it ends.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    loyalty::telemetry::init();
    loyalty::cli::Cli::parse().run().await
}
