//! The program's lifecycle settings: pending period, lot expiry, inactivity
//! expiry and the refund policy. Durations take a unit (`500ms`, `30s`,
//! `15m`, `12h`, `14d`) so tests can run a point's whole life in seconds.

use crate::domain::Millis;
use crate::domain::program::{DEFAULT_EXPIRY_WARNING_MS, MAX_EXPIRY_MS, MAX_PENDING_MS, Program, RefundPolicy};
use crate::setting::{ConfigError, duration};

/// Reads the program's settings; every one is optional.
pub fn load(env: &impl Fn(&str) -> Option<String>) -> Result<Program, ConfigError> {
    let pending_ms = match env("LOYALTY_POINTS_PENDING") {
        None => 0,
        Some(raw) => duration("LOYALTY_POINTS_PENDING", &raw, 0, MAX_PENDING_MS)?,
    };
    let optional = |var: &'static str| -> Result<Option<Millis>, ConfigError> {
        match env(var).as_deref().map(str::trim) {
            None | Some("" | "never") => Ok(None),
            Some(raw) => duration(var, raw, 1_000, MAX_EXPIRY_MS).map(Some),
        }
    };
    let lot_expiry_ms = optional("LOYALTY_POINTS_EXPIRE_AFTER")?;
    let inactivity_expiry_ms = optional("LOYALTY_POINTS_EXPIRE_INACTIVE_AFTER")?;
    let refund = match env("LOYALTY_REFUND_POLICY") {
        None => RefundPolicy::default(),
        Some(raw) => RefundPolicy::parse(raw.trim()).ok_or_else(|| ConfigError {
            setting: "LOYALTY_REFUND_POLICY",
            reason: format!("{raw:?} is not within_balance or allow_negative"),
        })?,
    };
    if inactivity_expiry_ms.is_some_and(|idle| idle <= pending_ms) {
        return Err(ConfigError {
            setting: "LOYALTY_POINTS_EXPIRE_INACTIVE_AFTER",
            reason: "must be longer than LOYALTY_POINTS_PENDING (points would expire as they activate)".into(),
        });
    }
    let expiry_warning_ms = match env("LOYALTY_POINTS_EXPIRY_WARNING").as_deref().map(str::trim) {
        None | Some("") => DEFAULT_EXPIRY_WARNING_MS,
        Some("off") => 0,
        Some(raw) => duration("LOYALTY_POINTS_EXPIRY_WARNING", raw, 1_000, MAX_EXPIRY_MS)?,
    };
    Ok(Program { pending_ms, lot_expiry_ms, inactivity_expiry_ms, refund, expiry_warning_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::program::DAY_MS;

    fn program(env: &[(&str, &str)]) -> Result<Program, ConfigError> {
        load(&|name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn defaults_are_active_at_once_never_expiring_within_balance() {
        assert_eq!(program(&[]).unwrap(), Program::default());
    }

    #[test]
    fn durations_take_units_and_bounds() {
        let p = program(&[
            ("LOYALTY_POINTS_PENDING", "2s"),
            ("LOYALTY_POINTS_EXPIRE_AFTER", "365d"),
            ("LOYALTY_POINTS_EXPIRE_INACTIVE_AFTER", "never"),
            ("LOYALTY_REFUND_POLICY", "allow_negative"),
            ("LOYALTY_POINTS_EXPIRY_WARNING", "off"),
        ])
        .unwrap();
        assert_eq!(p.expiry_warning_ms, 0);
        assert_eq!(program(&[("LOYALTY_POINTS_EXPIRY_WARNING", "3d")]).unwrap().expiry_warning_ms, 3 * DAY_MS);
        assert_eq!((p.pending_ms, p.lot_expiry_ms, p.inactivity_expiry_ms), (2_000, Some(365 * DAY_MS), None));
        assert_eq!(p.refund, RefundPolicy::AllowNegative);
        for (var, bad) in [
            ("LOYALTY_POINTS_PENDING", "-1s"),
            ("LOYALTY_POINTS_PENDING", "400d"),
            ("LOYALTY_POINTS_EXPIRE_AFTER", "0s"),
            ("LOYALTY_POINTS_EXPIRE_AFTER", "10"),
            ("LOYALTY_POINTS_EXPIRE_INACTIVE_AFTER", "99999d"),
            ("LOYALTY_REFUND_POLICY", "debt"),
            ("LOYALTY_POINTS_EXPIRY_WARNING", "soon"),
        ] {
            assert_eq!(program(&[(var, bad)]).unwrap_err().setting, var, "{var}={bad}");
        }
    }
}
