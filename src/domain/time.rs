//! Time on the account's clock: the workflow's, never the machine's.

/// Time on the workflow's clock, in Unix milliseconds.
pub type Millis = i64;

/// One day in milliseconds.
pub const DAY_MS: Millis = 86_400_000;
