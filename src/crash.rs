//! Crash points: the fault suite kills the process between a decision and
//! its ledger write, on each path that writes, to show the ledger catches
//! up in order with nothing lost or doubled. `LOYALTY_TEST_CRASH_AT=<point>:<n>`
//! aborts the process (no cleanup, as `kill -9`) the `n`-th time it reaches
//! `<point>`; unset (always, outside those tests) a crash point costs one
//! comparison.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The API got an update's result and is about to write its entries.
pub const EAGER_WRITE: &str = "eager-write";
/// The run's write is about to reach the ledger.
pub const WRITE_BEHIND: &str = "write-behind";
/// The run's write committed; its answer has not reached the workflow.
pub const WRITE_BEHIND_COMMITTED: &str = "write-behind-committed";

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static REACHED: AtomicU64 = AtomicU64::new(0);

/// Aborts the process if this is the crash point, reached the set number of times.
pub fn point(name: &str) {
    let target = TARGET.get_or_init(|| {
        let value = std::env::var("LOYALTY_TEST_CRASH_AT").ok()?;
        let (point, n) = value.rsplit_once(':')?;
        Some((point.to_owned(), n.parse().ok()?))
    });
    if let Some((point, n)) = target
        && point == name
        && REACHED.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        eprintln!("crash point {name} reached {n} times: aborting");
        std::process::abort();
    }
}
