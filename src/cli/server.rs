//! `loyalty serve` and `loyalty dev`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::Application;
use crate::config::{Overrides, Settings};
use crate::devserver::{DevServer, DevServerOptions};

/// Options of `loyalty dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    #[command(flatten)]
    overrides: Overrides,
    /// Port of the local Temporal frontend.
    #[arg(long, default_value_t = 7233)]
    temporal_port: u16,
    /// Port of the Temporal Web UI.
    #[arg(long, default_value_t = 8233)]
    ui_port: u16,
    /// File of the local Temporal server's data, so accounts survive a restart.
    #[arg(long, default_value = "data/temporal.db")]
    temporal_db: PathBuf,
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("loyalty: {what}: {e}");
    ExitCode::FAILURE
}

async fn build_and_run(settings: Settings, banner: impl FnOnce(&Application)) -> ExitCode {
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => return fail("cannot start", e),
    };
    banner(&app);
    match app.run_until(stop_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail("stopped with an error", e),
    }
}

pub async fn serve(overrides: Overrides) -> ExitCode {
    let settings = match Settings::load(&overrides) {
        Ok(s) => s,
        Err(e) => return fail("configuration", e),
    };
    build_and_run(settings, |app| tracing::info!(grpc = %app.grpc_addr(), health = ?app.health_addr(), "serving")).await
}

pub async fn dev(mut args: DevArgs) -> ExitCode {
    let options = DevServerOptions {
        port: args.temporal_port,
        ui_port: Some(args.ui_port),
        db_file: Some(args.temporal_db),
        ..DevServerOptions::default()
    };
    eprintln!("starting the Temporal dev server on 127.0.0.1:{} ...", args.temporal_port);
    let server = match tokio::task::spawn_blocking(move || DevServer::start(&options)).await {
        Ok(Ok(server)) => server,
        Ok(Err(e)) => return fail("dev server", e),
        Err(e) => return fail("dev server", e),
    };
    args.overrides.temporal_address = Some(server.address());
    let settings = match Settings::load(&args.overrides) {
        Ok(s) => s,
        Err(e) => return fail("configuration", e),
    };
    let ui = server.ui_url().unwrap_or_default();
    let temporal = server.address();
    let code = build_and_run(settings, |app| {
        println!("loyalty gRPC API:  {}", app.grpc_addr());
        println!("Temporal frontend: {temporal}");
        println!("Temporal Web UI:   {ui}");
        println!("Press Ctrl-C to stop both.");
    })
    .await;
    tokio::task::spawn_blocking(move || server.stop()).await.ok();
    code
}
