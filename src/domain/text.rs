//! Free-text fields (reason, reward, source).

use super::error::FieldError;

/// Longest free text accepted, in characters.
pub const MAX_TEXT_LEN: usize = 256;

/// Free text of at most 256 characters, without control characters; may be
/// empty. Control characters are refused because these are one-line labels
/// and because PostgreSQL cannot store NUL: a text it refuses would fail its
/// ledger write forever.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BoundedText(String);

impl BoundedText {
    /// Parses the wire field named `field`.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldError> {
        if raw.chars().count() > MAX_TEXT_LEN {
            return Err(FieldError::new(field, format!("must be at most {MAX_TEXT_LEN} characters")));
        }
        if let Some(bad) = raw.chars().find(|c| c.is_control()) {
            return Err(FieldError::new(field, format!("must not contain control characters (found {bad:?})")));
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

    #[test]
    fn refuses_control_characters_keeps_other_unicode() {
        for bad in ["a\0b", "line\nbreak", "tab\t", "\u{7f}", "\u{85}", "\u{1b}[31m"] {
            assert_eq!(BoundedText::parse("reason", bad).unwrap_err().field, "reason", "{bad:?}");
        }
        for good in ["café", "🎁 gift", "ｆｕｌｌ", "a b", "\u{200d}"] {
            assert!(BoundedText::parse("reason", good).is_ok(), "{good:?}");
        }
    }
}
