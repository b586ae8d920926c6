//! Wall-clock time in Unix milliseconds, the one unit every layer stores.
//! Workflow code converts the workflow context's time with [`unix_ms`] and
//! never calls [`now_ms`].

use std::time::{SystemTime, UNIX_EPOCH};

use crate::domain::Millis;

/// `time` in Unix milliseconds (0 before the epoch).
pub fn unix_ms(time: SystemTime) -> Millis {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}

/// This process's clock, in Unix milliseconds.
pub fn now_ms() -> Millis {
    unix_ms(SystemTime::now())
}
