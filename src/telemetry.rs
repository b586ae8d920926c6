//! Log setup: `tracing` to stderr, filtered by `RUST_LOG` (default `info`),
//! as text or, with `LOYALTY_LOG_FORMAT=json`, one JSON object per line for
//! log collectors.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops.
pub fn init() {
    // The SDK core logs every poll at info; keep it to warnings unless asked.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,temporalio_sdk_core=warn,temporalio_client=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match std::env::var("LOYALTY_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().flatten_event(true).with_current_span(false).try_init(),
        _ => builder.try_init(),
    };
}
