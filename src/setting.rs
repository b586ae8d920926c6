//! One setting's value as an operator writes it, and the error that names
//! the setting: shared by the settings (`config`) and the files they point
//! at (`webhooks`).

use crate::domain::Millis;
use crate::domain::program::DAY_MS;

/// A setting that is missing or malformed.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration {setting}: {reason}")]
pub struct ConfigError {
    /// The environment variable (or flag) at fault.
    pub setting: &'static str,
    /// Why.
    pub reason: String,
}

/// Parses `<number><unit>` (`ms`, `s`, `m`, `h`, `d`) into milliseconds.
pub fn parse_duration_ms(raw: &str) -> Option<Millis> {
    duration("duration", raw, 0, Millis::MAX).ok()
}

/// Parses `<number><unit>` within `min..=max` milliseconds.
pub fn duration(setting: &'static str, raw: &str, min: Millis, max: Millis) -> Result<Millis, ConfigError> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        _ => 0,
    };
    number
        .parse::<Millis>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        .filter(|ms| unit_ms > 0 && (min..=max).contains(ms))
        .ok_or_else(|| ConfigError {
            setting,
            reason: format!(
                "{raw:?} is not a duration like 30s, 12h or 365d between {} s and {} days",
                min / 1_000,
                max / DAY_MS
            ),
        })
}
