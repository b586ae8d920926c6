//! Point amounts as callers may send them.

use super::error::FieldError;

/// Largest amount one accrual or redemption may carry.
pub const MAX_POINTS: i64 = 1_000_000_000;

/// A positive amount of points, 1 to 1,000,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Points(i64);

impl Points {
    /// Parses the wire field `points`.
    pub fn parse(raw: i64) -> Result<Self, FieldError> {
        if (1..=MAX_POINTS).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(FieldError::new("points", format!("must be between 1 and {MAX_POINTS}, got {raw}")))
        }
    }

    /// The amount.
    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        assert_eq!(Points::parse(1).unwrap().get(), 1);
        assert_eq!(Points::parse(MAX_POINTS).unwrap().get(), MAX_POINTS);
        for bad in [0, -1, MAX_POINTS + 1, i64::MIN] {
            assert_eq!(Points::parse(bad).unwrap_err().field, "points");
        }
    }
}
