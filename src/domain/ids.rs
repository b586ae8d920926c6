//! Customer and event identifiers, parsed once at the edge.

use super::error::FieldError;

/// Longest identifier accepted, in characters.
pub const MAX_ID_LEN: usize = 128;

/// Prefix of every account's workflow id.
pub const WORKFLOW_ID_PREFIX: &str = "loyalty-";

/// Checks the shared identifier alphabet: 1 to 128 of `[A-Za-z0-9._:@-]`.
/// The alphabet keeps ids safe in workflow ids, URLs, logs and SQL keys.
fn parse_id(field: &'static str, raw: &str) -> Result<String, FieldError> {
    if raw.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if raw.len() > MAX_ID_LEN {
        return Err(FieldError::new(field, format!("must be at most {MAX_ID_LEN} characters")));
    }
    if let Some(bad) = raw.chars().find(|c| !(c.is_ascii_alphanumeric() || "._:@-".contains(*c))) {
        return Err(FieldError::new(field, format!("invalid character {bad:?}; allowed: A-Z a-z 0-9 . _ : @ -")));
    }
    Ok(raw.to_owned())
}

/// The customer part of an account's workflow id: everything after the first
/// `loyalty-`, as the reference guide derives it (the whole id otherwise).
/// Not validated: workflows may be started by other clients.
pub fn customer_of_workflow(workflow_id: &str) -> &str {
    workflow_id.strip_prefix(WORKFLOW_ID_PREFIX).unwrap_or(workflow_id)
}

/// A validated customer identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomerId(String);

impl CustomerId {
    /// Parses a customer id from the wire field `customer_id`.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        parse_id("customer_id", raw).map(Self)
    }

    /// The account's workflow id, `loyalty-<customer_id>`.
    pub fn workflow_id(&self) -> String {
        format!("{WORKFLOW_ID_PREFIX}{}", self.0)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CustomerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated event (idempotency) identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(String);

impl EventId {
    /// Parses an event id from the wire field `event_id`.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        parse_id("event_id", raw).map(Self)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes the id into its text.
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_whole_alphabet_up_to_128_chars() {
        assert!(CustomerId::parse("aZ09._:@-").is_ok());
        assert!(CustomerId::parse(&"x".repeat(128)).is_ok());
        assert!(EventId::parse("order:2026-11-21@web").is_ok());
    }

    #[test]
    fn rejects_empty_long_and_foreign_characters_naming_the_field() {
        assert_eq!(CustomerId::parse("").unwrap_err().field, "customer_id");
        assert_eq!(CustomerId::parse(&"x".repeat(129)).unwrap_err().field, "customer_id");
        for bad in ["a b", "a/b", "é", "a\n", "a*"] {
            assert_eq!(EventId::parse(bad).unwrap_err().field, "event_id", "{bad:?}");
        }
    }

    #[test]
    fn workflow_id_round_trips_and_keeps_inner_prefixes() {
        let id = CustomerId::parse("loyalty-42").unwrap();
        assert_eq!(id.workflow_id(), "loyalty-loyalty-42");
        assert_eq!(customer_of_workflow(&id.workflow_id()), id.as_str());
        assert_eq!(customer_of_workflow("other-42"), "other-42");
    }
}
