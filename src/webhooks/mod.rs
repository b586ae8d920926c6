//! Webhooks: every event of every account, pushed to the endpoints in the
//! file `LOYALTY_WEBHOOKS_FILE`, signed the Standard Webhooks way, at least
//! once and in order per account per endpoint.
//!
//! Delivery is a relay over the ledger's outbox ([`relay`]), not a Temporal
//! workflow: the outbox is already in the ledger, a lease on an account's
//! outbox row (taken with `FOR UPDATE SKIP LOCKED`) lets any replica deliver
//! and take over after a crash, each delivery costs two small statements
//! instead of a workflow task and history events, and a bad endpoint never
//! reaches the account's workflow or Temporal at all.

pub mod relay;
pub mod sign;

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use crate::domain::events::{pattern_is_known, type_matches};
use crate::setting::{ConfigError, parse_duration_ms};

/// The setting naming the endpoints file.
pub const FILE_SETTING: &str = "LOYALTY_WEBHOOKS_FILE";

/// One receiver of events.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its name: the key of its cursors and metrics; renaming it starts over.
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// The event types it wants (`points.*`, `tier.changed`, `*`).
    pub events: Vec<String>,
    /// Signing keys, newest first; each signs every delivery, so a receiver
    /// that knows any of them verifies during a rotation.
    pub secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("events", &self.events)
            .finish()
    }
}

impl Endpoint {
    /// Whether it subscribed to `event_type`.
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.iter().any(|p| type_matches(p, event_type))
    }
}

/// The endpoints and how hard to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The receivers.
    pub endpoints: Vec<Endpoint>,
    /// A delivery that has no 2xx answer within this failed.
    pub timeout: Duration,
    /// How long an endpoint may keep failing for an account before that
    /// account's events for it are parked as dead letters.
    pub retry_for: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// How long a relay owns an account it took (at least three timeouts); a
    /// crashed relay's accounts are taken over after this. Relays' clocks
    /// must agree to well within a timeout.
    pub lease: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    retry_for: Option<String>,
    #[serde(default)]
    max_backoff: Option<String>,
    #[serde(default)]
    lease: Option<String>,
    endpoints: Vec<FileEndpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEndpoint {
    name: String,
    url: String,
    #[serde(default)]
    events: Option<Vec<String>>,
    secrets: Vec<String>,
}

impl WebhookConfig {
    /// Reads and checks the endpoints file; `env` resolves `env:NAME` secrets.
    pub fn load(path: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { setting: FILE_SETTING, reason: format!("cannot read {path}: {e}") })?;
        Self::parse(&text, env)
            .map_err(|reason| ConfigError { setting: FILE_SETTING, reason: format!("{path}: {reason}") })
    }

    /// Parses the file's JSON.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let file: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let duration = |field: &str, raw: &Option<String>, default: &str, min_ms: i64| {
            let raw = raw.as_deref().unwrap_or(default);
            parse_duration_ms(raw)
                .filter(|&ms| ms >= min_ms)
                .map(|ms| Duration::from_millis(ms as u64))
                .ok_or_else(|| format!("{field}: {raw:?} is not a duration like 10s or 24h of at least {min_ms} ms"))
        };
        let timeout = duration("timeout", &file.timeout, "10s", 100)?;
        let retry_for = duration("retry_for", &file.retry_for, "24h", 0)?;
        let max_backoff = duration("max_backoff", &file.max_backoff, "10m", 100)?;
        let lease = duration("lease", &file.lease, "60s", 1_000)?;
        // A relay stops sending two timeouts before its lease ends: at least
        // one timeout is left to send in.
        if lease < timeout * 3 {
            return Err(format!("lease ({lease:?}) must be at least three times the timeout ({timeout:?})"));
        }
        let mut endpoints: Vec<Endpoint> = Vec::with_capacity(file.endpoints.len());
        for (i, e) in file.endpoints.into_iter().enumerate() {
            let at = |field: &str| format!("endpoints[{i}].{field}");
            if e.name.is_empty()
                || e.name.len() > 64
                || !e.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!("{}: {:?} must be 1 to 64 letters, digits, '-' or '_'", at("name"), e.name));
            }
            if endpoints.iter().any(|o| o.name == e.name) {
                return Err(format!("{}: {:?} is used twice", at("name"), e.name));
            }
            let url = reqwest::Url::parse(&e.url).map_err(|err| format!("{}: {err}", at("url")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(format!("{}: {:?} must be an http or https URL", at("url"), e.url));
            }
            let events = e.events.unwrap_or_else(|| vec!["*".into()]);
            if events.is_empty() {
                return Err(format!("{}: name at least one event type, or \"*\"", at("events")));
            }
            if let Some(bad) = events.iter().find(|p| !pattern_is_known(p)) {
                return Err(format!("{}: {bad:?} matches no event type", at("events")));
            }
            if e.secrets.is_empty() {
                return Err(format!("{}: at least one secret is required", at("secrets")));
            }
            let mut secrets = Vec::with_capacity(e.secrets.len());
            for (j, raw) in e.secrets.iter().enumerate() {
                let field = at(&format!("secrets[{j}]"));
                let value = match raw.strip_prefix("env:") {
                    Some(var) => env(var).ok_or_else(|| format!("{field}: environment variable {var} is not set"))?,
                    None => raw.clone(),
                };
                secrets.push(decode_secret(&value).map_err(|why| format!("{field}: {why}"))?);
            }
            endpoints.push(Endpoint { name: e.name, url: url.to_string(), events, secrets });
        }
        Ok(Self { endpoints, timeout, retry_for, max_backoff, lease })
    }
}

/// A Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 random
/// bytes, the form receivers' libraries take as is.
pub fn decode_secret(value: &str) -> Result<Vec<u8>, String> {
    let encoded = value.strip_prefix("whsec_").ok_or("must start with whsec_ (a Standard Webhooks secret)")?;
    let key = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|e| format!("not base64: {e}"))?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!("decodes to {} bytes; use 24 to 64 random bytes", key.len()));
    }
    Ok(key)
}

/// How long to wait before attempt `attempts + 1`: doubling from one second
/// up to `max`, with jitter in its upper half (`jitter` in `0..1`) so many
/// accounts failing together do not retry together.
pub fn retry_delay(attempts: u32, max: Duration, jitter: f64) -> Duration {
    let full = Duration::from_secs(1).saturating_mul(1u32 << attempts.min(20)).min(max);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn parse(json: &str) -> Result<WebhookConfig, String> {
        WebhookConfig::parse(json, |var| (var == "OLD").then(|| SECRET.to_owned()))
    }

    #[test]
    fn a_file_with_defaults_parses_and_env_secrets_resolve() {
        let c = parse(&format!(
            r#"{{"endpoints": [{{"name": "crm", "url": "https://crm.example/hooks", "secrets": ["{SECRET}", "env:OLD"]}}]}}"#
        ))
        .unwrap();
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.retry_for, Duration::from_secs(86_400));
        assert_eq!(c.endpoints[0].secrets.len(), 2);
        assert!(c.endpoints[0].wants("tier.changed"), "no list: every type");
        assert!(!format!("{:?}", c.endpoints[0]).contains("MfKQ"), "secrets never printed");
    }

    #[test]
    fn bad_files_name_the_field() {
        let e = |endpoint: &str| parse(&format!(r#"{{"endpoints": [{endpoint}]}}"#)).unwrap_err();
        let ok = format!(r#""secrets": ["{SECRET}"]"#);
        assert!(e(&format!(r#"{{"name": "a b", "url": "http://x", {ok}}}"#)).contains("endpoints[0].name"));
        assert!(e(&format!(r#"{{"name": "a", "url": "ftp://x", {ok}}}"#)).contains("endpoints[0].url"));
        assert!(e(&format!(r#"{{"name": "a", "url": "http://x", "events": ["point.*"], {ok}}}"#)).contains("events"));
        assert!(e(r#"{"name": "a", "url": "http://x", "secrets": ["abc"]}"#).contains("whsec_"));
        assert!(e(r#"{"name": "a", "url": "http://x", "secrets": ["env:NOPE"]}"#).contains("NOPE"));
        assert!(e(r#"{"name": "a", "url": "http://x", "secrets": ["whsec_c2hvcnQ="]}"#).contains("bytes"));
        let twice = format!(r#"{{"name": "a", "url": "http://x", {ok}}}, {{"name": "a", "url": "http://y", {ok}}}"#);
        assert!(e(&twice).contains("used twice"));
        assert!(parse(r#"{"endpoints": [], "timeout": "40s"}"#).unwrap_err().contains("lease"));
        assert!(parse(r#"{"endpoints": [], "retry": "1h"}"#).is_err(), "unknown fields are refused");
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap_with_jitter() {
        let max = Duration::from_secs(600);
        assert_eq!(retry_delay(0, max, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(3, max, 1.0), Duration::from_secs(8));
        assert_eq!(retry_delay(3, max, 0.0), Duration::from_secs(4));
        assert_eq!(retry_delay(40, max, 1.0), max);
    }
}
