//! The one validation error of the domain: which field, and why.

/// An input field that failed validation. `field` is the wire name, so the
/// gRPC layer can report it verbatim in INVALID_ARGUMENT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// Wire name of the offending field, e.g. `customer_id`.
    pub field: &'static str,
    /// Human-readable reason.
    pub reason: String,
}

impl FieldError {
    /// Builds an error for `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}
