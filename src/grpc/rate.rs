//! Per-key rate limits: a token bucket for each API key and scope (governor's
//! GCRA), so one caller's runaway loop cannot take the capacity every other
//! caller shares. Past its rate a call is refused at once with
//! RESOURCE_EXHAUSTED and a `RetryInfo` saying when a token is back.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tonic::{Code, Status};

use super::scope::Scope;

/// A rate as configured: `N/s` or `N/min`, a burst of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Calls per period, which is also the burst.
    pub calls: NonZeroU32,
    /// Whether the period is a minute rather than a second.
    pub per_minute: bool,
}

impl Rate {
    /// Parses `100/s`, `100/sec`, `6000/min` or `6000/m`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = || format!("{raw:?} is not a rate like 100/s or 6000/min");
        let (calls, period) = raw.trim().split_once('/').ok_or_else(bad)?;
        let calls = calls.trim().parse::<NonZeroU32>().map_err(|_| bad())?;
        let per_minute = match period.trim() {
            "s" | "sec" | "second" => false,
            "m" | "min" | "minute" => true,
            _ => return Err(bad()),
        };
        Ok(Self { calls, per_minute })
    }

    fn quota(self) -> Quota {
        if self.per_minute { Quota::per_minute(self.calls) } else { Quota::per_second(self.calls) }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.calls, if self.per_minute { "min" } else { "s" })
    }
}

/// The configured rate of each scope; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// GetSummary, GetHistory, ListEvents (`LOYALTY_RATE_LIMIT_READ`).
    pub read: Option<Rate>,
    /// Accrue, Redeem and holds (`LOYALTY_RATE_LIMIT_WRITE`).
    pub write: Option<Rate>,
    /// Reverse, Adjust (`LOYALTY_RATE_LIMIT_ADMIN`).
    pub admin: Option<Rate>,
}

impl RateLimits {
    fn of(&self, scope: Scope) -> Option<Rate> {
        match scope {
            Scope::Read => self.read,
            Scope::Write => self.write,
            Scope::Admin => self.admin,
        }
    }
}

/// One caller's buckets, one per scope.
type Buckets = [Option<DefaultDirectRateLimiter>; 3];

/// The buckets of every caller: one per configured key, plus one shared by
/// all callers when no keys are configured.
#[derive(Debug)]
pub struct Limiters {
    limits: RateLimits,
    callers: Vec<Buckets>,
    clock: DefaultClock,
}

impl Limiters {
    /// Buckets for `callers` distinct callers (keys are numbered from 0).
    pub fn new(limits: RateLimits, callers: usize) -> Self {
        let buckets = || -> Buckets {
            [Scope::Read, Scope::Write, Scope::Admin].map(|s| limits.of(s).map(|r| RateLimiter::direct(r.quota())))
        };
        Self { limits, callers: (0..callers.max(1)).map(|_| buckets()).collect(), clock: DefaultClock::default() }
    }

    /// Takes a token from caller `caller`'s bucket for `scope`, or refuses
    /// with RESOURCE_EXHAUSTED and the time until one is back.
    /// `key` names the caller's API key in the refusal; `None` when no keys
    /// are configured and every caller shares bucket 0.
    pub fn check(&self, caller: usize, key: Option<&str>, scope: Scope) -> Result<(), Status> {
        let slot = match scope {
            Scope::Read => 0,
            Scope::Write => 1,
            Scope::Admin => 2,
        };
        let Some(bucket) = self.callers.get(caller).and_then(|b| b[slot].as_ref()) else { return Ok(()) };
        bucket.check().map_err(|not_until| {
            // Rounded up to a whole millisecond, so a client waiting it is never early.
            let wait = not_until.wait_time_from(self.clock.now());
            let wait = Duration::from_millis(wait.as_millis() as u64 + 1);
            let rate = self.limits.of(scope).map(|r| r.to_string()).unwrap_or_default();
            let whose = match key {
                Some(name) => format!("API key {name:?}"),
                None => "all callers".to_owned(),
            };
            let scope = scope.name();
            super::error::retryable_after(
                Code::ResourceExhausted,
                format!("rate limit of {whose} for {scope} calls ({rate}) exceeded; retry in {wait:?}"),
                wait,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn rates_parse_and_name_their_format() {
        assert_eq!(Rate::parse("100/s").unwrap().to_string(), "100/s");
        assert_eq!(
            Rate::parse(" 6000/min ").unwrap(),
            Rate { calls: NonZeroU32::new(6000).unwrap(), per_minute: true }
        );
        for bad in ["100", "0/s", "-1/s", "10/h", "x/s", ""] {
            assert!(Rate::parse(bad).unwrap_err().contains("100/s"), "{bad}");
        }
    }

    #[test]
    fn each_key_and_scope_has_its_own_bucket_and_a_refusal_says_when_to_retry() {
        let limits = RateLimits { read: None, write: Some(Rate::parse("2/min").unwrap()), admin: None };
        let limiters = Limiters::new(limits, 2);
        assert!(limiters.check(0, Some("a"), Scope::Write).is_ok());
        assert!(limiters.check(0, Some("a"), Scope::Write).is_ok());
        let refused = limiters.check(0, Some("a"), Scope::Write).unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert!(
            refused.message().contains("API key \"a\" for write calls") && refused.message().contains("2/min"),
            "{refused:?}"
        );
        let hint = refused.get_details_retry_info().and_then(|r| r.retry_delay).expect("a retry hint");
        assert!(hint > Duration::from_secs(20) && hint <= Duration::from_secs(31), "{hint:?}");
        // Another key, and another scope of the same key, are untouched.
        assert!(limiters.check(1, Some("b"), Scope::Write).is_ok());
        for _ in 0..100 {
            assert!(limiters.check(0, Some("a"), Scope::Read).is_ok());
        }
    }
}
