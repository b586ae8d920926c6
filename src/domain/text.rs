//! Free-text fields (reason, reward, source).

use super::error::FieldError;

/// Longest free text accepted, in characters.
pub const MAX_TEXT_LEN: usize = 256;

/// Free text of at most 256 characters; may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BoundedText(String);

impl BoundedText {
    /// Parses the wire field named `field`.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        if raw.chars().count() > MAX_TEXT_LEN {
            return Err(FieldError::new(field, format!("must be at most {MAX_TEXT_LEN} characters")));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Consumes the text.
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_characters_not_bytes() {
        assert!(BoundedText::parse("reward", &"é".repeat(256)).is_ok());
        assert_eq!(BoundedText::parse("reward", &"a".repeat(257)).unwrap_err().field, "reward");
        assert!(BoundedText::parse("source", "").is_ok());
    }
}
