//! What an API key may do, and what each method needs: shared by the keys
//! (`auth`) and the per-key rate limits (`rate`).

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read balances and history.
    Read,
    /// Accrue and redeem.
    Write,
    /// Reverse and adjust.
    Admin,
}

impl Scope {
    pub(super) fn parse(raw: &str) -> Option<Self> {
        match raw {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// The scope's name in the keys file.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

/// The scope a gRPC method needs; `None` for health and reflection.
pub fn required_scope(path: &str) -> Option<Scope> {
    const API: &str = "/loyalty.v1.LoyaltyService/";
    if path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.") {
        return None;
    }
    Some(match path.strip_prefix(API) {
        Some("GetSummary" | "GetHistory" | "ListEvents" | "PreviewAccrual") => Scope::Read,
        Some("Accrue" | "Redeem" | "Reserve" | "Capture" | "Release") => Scope::Write,
        _ => Scope::Admin,
    })
}
