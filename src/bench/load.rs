//! Drives one operation many times with a fixed number of callers.

use std::time::Instant;

use futures::StreamExt;

use super::stats::Samples;
use crate::cli::progress::Progress;

/// Calls `op(0..total)` with `concurrency` calls in flight, timing each.
/// Failures are counted, and the first one is printed.
pub async fn drive<F, Fut>(label: &str, total: usize, concurrency: usize, op: F) -> Samples
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut progress = Progress::new(label, total as u64);
    let mut samples = Samples::default();
    let mut first_error = None;
    let started = Instant::now();
    let mut calls = futures::stream::iter(0..total)
        .map(|i| {
            let call = op(i);
            async move {
                // Timed from the first poll, so waiting for a free slot does not count.
                let t = Instant::now();
                let result = call.await;
                (t.elapsed(), result)
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((latency, result)) = calls.next().await {
        match result {
            Ok(()) => samples.ok(latency),
            Err(e) => {
                samples.failed();
                first_error.get_or_insert(e);
            }
        }
        progress.tick("");
    }
    samples.set_wall(started.elapsed());
    progress.finish();
    if let Some(e) = first_error {
        eprintln!("{label}: some calls failed; the first: {e}");
    }
    samples
}
