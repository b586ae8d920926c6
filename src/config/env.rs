//! Reading one setting from the environment (or a flag over it), each kind
//! checked the same way and refused with an error naming the setting.

use std::net::SocketAddr;

use crate::grpc::rate::Rate;
use crate::setting::ConfigError;

/// The environment the settings are read from (injectable for tests).
pub struct Env<F: Fn(&str) -> Option<String>>(pub F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The variable's value, if set.
    pub fn get(&self, var: &str) -> Option<String> {
        (self.0)(var)
    }

    /// The flag, else the variable, else `default`.
    pub fn pick(&self, flag: &Option<String>, var: &str, default: &str) -> String {
        flag.clone().or_else(|| self.get(var)).unwrap_or_else(|| default.to_owned())
    }

    /// A whole number from 1 to `max`, `default` when unset.
    pub fn number(&self, var: &'static str, default: u64, max: u64) -> Result<u64, ConfigError> {
        self.bounded(var, 1, max).map(|n| n.unwrap_or(default))
    }

    /// A whole number from `min` to `max`, if set.
    pub fn bounded(&self, var: &'static str, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
        self.get(var)
            .map(|raw| {
                raw.trim().parse::<u64>().ok().filter(|n| (min..=max).contains(n)).ok_or_else(|| ConfigError {
                    setting: var,
                    reason: format!("{raw:?} is not a whole number from {min} to {max}"),
                })
            })
            .transpose()
    }

    /// `true`/`1` or `false`/`0`, `default` when unset or empty.
    pub fn flag(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).as_deref().map(str::trim) {
            None | Some("") => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(ConfigError { setting: var, reason: format!("{other:?} is not true or false") }),
        }
    }

    /// A socket address like `example`, if set and not empty.
    pub fn address(&self, var: &'static str, example: &str) -> Result<Option<SocketAddr>, ConfigError> {
        self.get(var).filter(|raw| !raw.trim().is_empty()).map(|raw| socket_addr(var, &raw, example)).transpose()
    }

    /// A rate like `200/s`, if set and not `off`.
    pub fn rate(&self, var: &'static str) -> Result<Option<Rate>, ConfigError> {
        self.get(var)
            .filter(|raw| !matches!(raw.trim(), "" | "off"))
            .map(|raw| Rate::parse(&raw).map_err(|reason| ConfigError { setting: var, reason }))
            .transpose()
    }

    /// Two variables that go together: both or neither.
    pub fn pair(&self, a: &'static str, b: &str) -> Result<Option<(String, String)>, ConfigError> {
        match (self.get(a), self.get(b)) {
            (None, None) => Ok(None),
            (Some(x), Some(y)) if !x.trim().is_empty() && !y.trim().is_empty() => Ok(Some((x, y))),
            _ => Err(ConfigError { setting: a, reason: format!("{a} and {b} go together, both non-empty") }),
        }
    }
}

/// `raw` as a socket address, or an error naming `setting` and an example.
pub fn socket_addr(setting: &'static str, raw: &str, example: &str) -> Result<SocketAddr, ConfigError> {
    raw.trim()
        .parse::<SocketAddr>()
        .map_err(|e| ConfigError { setting, reason: format!("{raw:?} is not a socket address like {example} ({e})") })
}
