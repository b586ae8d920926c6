//! API-key authentication and authorization, as a tower layer in front of
//! every gRPC service.
//!
//! Keys live in a file (mounted from a Kubernetes Secret), one per line:
//! `name sha256-hex scope[,scope]`, where the hash is of the key itself
//! (`printf %s "$KEY" | sha256sum`), so the file never holds a usable key. A
//! presented key is hashed and compared with every stored hash in constant
//! time. Scopes: `read` (GetSummary, GetHistory, ListEvents), `write` (Accrue, Redeem),
//! `admin` (Reverse, Adjust, and any method this build does not know).
//! Health and reflection need no key, so probes and grpcurl's listing work.
//! A refused call gets UNAUTHENTICATED (no or unknown key) or
//! PERMISSION_DENIED (scope missing) before any work is done.

use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::Status;

use super::gate::{Gate, GateLayer};
use super::rate::{Limiters, RateLimits};
use super::scope::{Scope, required_scope};

/// One configured key: its name (for logs) and the hash of its secret.
#[derive(Debug, Clone)]
struct ApiKey {
    name: String,
    hash: [u8; 32],
    scopes: Vec<Scope>,
}

/// The configured keys.
#[derive(Debug, Clone)]
pub struct ApiKeys(Vec<ApiKey>);

impl ApiKeys {
    /// Parses the keys file's text; the error names the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, hex, scopes] = fields[..] else {
                return Err(format!("line {n}: expected `name sha256-hex scope[,scope]`"));
            };
            let hash = decode_hex(hex).ok_or_else(|| format!("line {n}: the hash must be 64 hex digits"))?;
            let scopes = scopes
                .split(',')
                .map(|s| Scope::parse(s).ok_or_else(|| format!("line {n}: unknown scope {s:?} (read, write, admin)")))
                .collect::<Result<Vec<_>, _>>()?;
            keys.push(ApiKey { name: name.to_owned(), hash, scopes });
        }
        if keys.is_empty() {
            return Err("no keys".into());
        }
        Ok(Self(keys))
    }

    /// Reads and parses the keys file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The key matching `presented`. Every stored hash is compared, in
    /// constant time, whether or not an earlier one matched.
    fn find(&self, presented: &str) -> Option<usize> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (i, key) in self.0.iter().enumerate() {
            if bool::from(key.hash.ct_eq(&digest)) && found.is_none() {
                found = Some(i);
            }
        }
        found
    }

    /// How many keys there are (numbered from 0 by [`ApiKeys::authorize`]).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decides a call to `path`, which needs `needed`, carrying `presented`
    /// (from `authorization: Bearer <key>` or `x-api-key`): the number and
    /// name of the key admitted.
    pub fn authorize(&self, path: &str, needed: Scope, presented: Option<&str>) -> Result<(usize, &str), Status> {
        let Some(i) = presented.and_then(|k| self.find(k)) else {
            return Err(Status::unauthenticated("a valid API key is required (authorization: Bearer <key>)"));
        };
        let key = &self.0[i];
        if key.scopes.contains(&needed) {
            Ok((i, &key.name))
        } else {
            tracing::warn!(key = %key.name, path, "API key lacks the scope for this method");
            Err(Status::permission_denied(format!("API key {:?} may not call {path}", key.name)))
        }
    }

    /// Decides a call to `path` carrying `presented`, as [`ApiKeys::authorize`].
    pub fn check(&self, path: &str, presented: Option<&str>) -> Result<(), Status> {
        match required_scope(path) {
            None => Ok(()),
            Some(needed) => self.authorize(path, needed, presented).map(|_| ()),
        }
    }
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The key a call presents.
fn presented(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        return v.strip_prefix("Bearer ").map(str::trim);
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok())
}

/// The API-key gate, then the key's rate limit; with no keys configured it
/// admits every caller, all sharing one rate limit.
#[derive(Debug, Clone)]
pub struct ApiKeyGate {
    keys: Option<Arc<ApiKeys>>,
    limiters: Arc<Limiters>,
}

impl Gate for ApiKeyGate {
    type Pass = ();

    fn admit(&self, path: &str, headers: &http::HeaderMap) -> Result<(), Status> {
        let Some(needed) = required_scope(path) else { return Ok(()) };
        match &self.keys {
            Some(keys) => {
                let (caller, name) = keys.authorize(path, needed, presented(headers))?;
                self.limiters.check(caller, Some(name), needed)
            }
            None => self.limiters.check(0, None, needed),
        }
    }
}

/// Tower layer that checks API keys and their rate limits.
pub type AuthLayer = GateLayer<ApiKeyGate>;

impl AuthLayer {
    /// Checks calls against `keys` (`None` disables authentication), each
    /// key limited to `limits`.
    pub fn new(keys: Option<ApiKeys>, limits: RateLimits) -> Self {
        let callers = keys.as_ref().map_or(1, ApiKeys::len);
        Self::with(ApiKeyGate { keys: keys.map(Arc::new), limiters: Arc::new(Limiters::new(limits, callers)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(key: &str) -> String {
        Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    fn keys() -> ApiKeys {
        ApiKeys::parse(&format!(
            "# checkout may accrue and redeem\ncheckout {} write,read\n\ndashboard {} read\n",
            hash("s3cret-checkout"),
            hash("s3cret-dash")
        ))
        .unwrap()
    }

    #[test]
    fn keys_are_checked_by_hash_and_scope() {
        let k = keys();
        let accrue = "/loyalty.v1.LoyaltyService/Accrue";
        assert!(k.check(accrue, Some("s3cret-checkout")).is_ok());
        assert_eq!(k.check(accrue, None).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(k.check(accrue, Some("nope")).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(k.check(accrue, Some("s3cret-dash")).unwrap_err().code(), tonic::Code::PermissionDenied);
        assert!(k.check("/loyalty.v1.LoyaltyService/GetHistory", Some("s3cret-dash")).is_ok());
        assert_eq!(
            k.check("/loyalty.v1.LoyaltyService/Adjust", Some("s3cret-checkout")).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert!(k.check("/grpc.health.v1.Health/Check", None).is_ok());
        assert_eq!(required_scope("/loyalty.v1.LoyaltyService/SomethingNew"), Some(Scope::Admin));
        // Checkout holds points with the key it redeems with.
        for hold in ["Reserve", "Capture", "Release"] {
            assert_eq!(required_scope(&format!("/loyalty.v1.LoyaltyService/{hold}")), Some(Scope::Write));
        }
    }

    #[test]
    fn a_bad_keys_file_names_the_line() {
        assert!(ApiKeys::parse("a b").unwrap_err().starts_with("line 1"));
        assert!(ApiKeys::parse(&format!("a {} root", hash("x"))).unwrap_err().contains("unknown scope"));
        assert!(ApiKeys::parse("a abc read").unwrap_err().contains("64 hex"));
        assert_eq!(ApiKeys::parse("# only comments\n").unwrap_err(), "no keys");
    }
}
