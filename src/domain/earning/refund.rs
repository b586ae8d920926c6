//! Line returns: what a partial refund claws back is what the returned
//! units earned under the version that decided the order, never a new
//! evaluation. The order keeps `R` exact points, where a line still held
//! keeps its share in proportion to the units not returned (to 10^-8 of a
//! point, down), and the order's own part (shipping, tax, fixed bonuses)
//! stays until every line is returned. A return claws back
//! `round(R before) - round(R after)`, so however an order is returned,
//! piece by piece or at once, the clawbacks add up to what it credited.

use serde::{Deserialize, Serialize};

use super::exact::Exact;
use super::order::MAX_QUANTITY;
use super::settle::Earned;
use crate::domain::error::FieldError;

/// Units returned from one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnedLine {
    /// The line's index in the order.
    pub line: u32,
    /// Units returned, 1 or more.
    pub quantity: i64,
}

/// Most lines one return names.
pub const MAX_RETURN_LINES: usize = 1_000;

/// Checks a return's lines as sent (before the order is known).
pub fn check_lines(lines: &[ReturnedLine]) -> Result<(), FieldError> {
    if lines.len() > MAX_RETURN_LINES {
        return Err(FieldError::new("lines", format!("at most {MAX_RETURN_LINES}")));
    }
    for (i, l) in lines.iter().enumerate() {
        if !(1..=MAX_QUANTITY).contains(&l.quantity) {
            return Err(FieldError::new("lines.quantity", format!("line {i}: must be between 1 and {MAX_QUANTITY}")));
        }
        if lines[..i].iter().any(|o| o.line == l.line) {
            return Err(FieldError::new("lines.line", format!("line {} is named twice", l.line)));
        }
    }
    Ok(())
}

impl Earned {
    /// Exact points the order keeps once `returned` units (per line) are gone.
    fn kept(&self, returned: &[i64]) -> Exact {
        let mut all_gone = true;
        let mut kept = Exact::ZERO;
        for (l, &r) in self.lines.iter().zip(returned) {
            let left = (l.quantity - r).max(0);
            all_gone &= left == 0;
            let share =
                l.points.0.checked_mul(i128::from(left)).map_or(l.points.0, |v| v / i128::from(l.quantity.max(1)));
            kept = kept.plus(Exact(share)).unwrap_or(kept);
        }
        if all_gone { kept } else { kept.plus(self.order).unwrap_or(kept) }
    }

    /// The points a return of `lines` claws back, given the units returned
    /// before (per line index). Fails, naming the field, when a line is not
    /// in the order or more units come back than it had.
    pub fn clawback(&self, before: &[ReturnedLine], lines: &[ReturnedLine]) -> Result<i64, FieldError> {
        let mut returned = vec![0i64; self.lines.len()];
        for r in before {
            if let Some(slot) = returned.get_mut(r.line as usize) {
                *slot = slot.saturating_add(r.quantity);
            }
        }
        let prior = returned.clone();
        for r in lines {
            let i = r.line as usize;
            let Some(line) = self.lines.get(i) else {
                return Err(FieldError::new("lines.line", format!("order {} has no line {}", self.order_id, r.line)));
            };
            if returned[i].saturating_add(r.quantity) > line.quantity {
                return Err(FieldError::new(
                    "lines.quantity",
                    format!("line {}: {} of {} units are returned already", r.line, returned[i], line.quantity),
                ));
            }
            returned[i] += r.quantity;
        }
        let round = |e: Exact| e.round(self.rounding).clamp(0, i128::from(self.points)) as i64;
        Ok(round(self.kept(&prior)) - round(self.kept(&returned)))
    }
}
