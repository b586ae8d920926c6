//! Exact points: fixed-point numbers with eight decimals, so base points,
//! tier multipliers and campaign multipliers are computed without loss and
//! an order is rounded once, at the end (`Rounding`).
//!
//! Why eight decimals suffice: a rate's `per` divides 10,000 (at most four
//! decimals per minor unit), a tier multiplier and a campaign multiplier
//! have at most two decimals each; the rule set's validation enforces both.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Units of [`Exact`] per point.
pub const SCALE: i128 = 100_000_000;

/// A number of points with eight exact decimals. Serialized as a decimal
/// string ("12.5"), so no JSON reader rounds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Exact(pub i128);

/// How an order's exact points become whole points, once per order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Down: never credit a point the purchase did not fully earn (the default).
    #[default]
    Floor,
    /// To the nearest point, halves up.
    Nearest,
    /// Up.
    Ceil,
}

impl Exact {
    /// Zero points.
    pub const ZERO: Exact = Exact(0);

    /// Whole points.
    pub fn points(p: i64) -> Self {
        Exact(i128::from(p) * SCALE)
    }

    /// `self + other`, `None` on overflow.
    pub fn plus(self, other: Exact) -> Option<Exact> {
        self.0.checked_add(other.0).map(Exact)
    }

    /// `self - other`, `None` on overflow.
    pub fn minus(self, other: Exact) -> Option<Exact> {
        self.0.checked_sub(other.0).map(Exact)
    }

    /// `self * n`, `None` on overflow.
    pub fn times(self, n: i128) -> Option<Exact> {
        self.0.checked_mul(n).map(Exact)
    }

    /// The smaller of the two.
    pub fn min(self, other: Exact) -> Exact {
        Exact(self.0.min(other.0))
    }

    /// Whole points by `mode`.
    pub fn round(self, mode: Rounding) -> i128 {
        let (q, r) = (self.0.div_euclid(SCALE), self.0.rem_euclid(SCALE));
        match mode {
            Rounding::Floor => q,
            Rounding::Ceil => q + i128::from(r > 0),
            Rounding::Nearest => q + i128::from(r * 2 >= SCALE),
        }
    }

    /// Sum of `values`, `None` on overflow.
    pub fn sum(values: impl IntoIterator<Item = Exact>) -> Option<Exact> {
        values.into_iter().try_fold(Exact::ZERO, Exact::plus)
    }
}

impl fmt::Display for Exact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let (whole, frac) = (abs / SCALE as u128, abs % SCALE as u128);
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let digits = format!("{frac:08}");
        write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// Parses a decimal with at most `decimals` places into an integer scaled
/// by `10^decimals` ("1.25" with 2 gives 125).
pub fn parse_decimal(raw: &str, decimals: u32) -> Option<i128> {
    let raw = raw.trim();
    let (neg, digits) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !ok(whole) || !ok(frac) || frac.len() > decimals as usize || whole.len() > 20 {
        return None;
    }
    let scale = 10i128.pow(decimals);
    let padded = format!("{frac:0<width$}", width = decimals as usize);
    let value = whole.parse::<i128>().ok()?.checked_mul(scale)?.checked_add(if padded.is_empty() {
        0
    } else {
        padded.parse::<i128>().ok()?
    })?;
    Some(if neg { -value } else { value })
}

impl FromStr for Exact {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_decimal(s, 8).map(Exact).ok_or_else(|| format!("{s:?} is not a decimal with at most 8 places"))
    }
}

impl Serialize for Exact {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Exact {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// A multiplier with at most two decimals ("1.5", 2), kept in hundredths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Factor(pub i128);

impl Factor {
    /// One: no change.
    pub const ONE: Factor = Factor(100);
}

impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Exact(self.0 * (SCALE / 100)).fmt(f)
    }
}

impl Serialize for Factor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Factor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A multiplier may be written as a number or a string.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Int(n) => n.to_string(),
            Raw::Float(x) => x.to_string(),
            Raw::Text(s) => s,
        };
        parse_decimal(&text, 2)
            .filter(|v| *v >= 0)
            .map(Factor)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a multiplier with at most 2 decimals")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_points_print_and_parse_without_loss() {
        for s in ["0", "12.5", "0.00000001", "-3.25", "1000000000"] {
            assert_eq!(s.parse::<Exact>().unwrap().to_string(), s);
        }
        assert!("1.000000001".parse::<Exact>().is_err(), "nine places");
        assert!("1e3".parse::<Exact>().is_err());
    }

    #[test]
    fn rounding_happens_once_by_the_mode() {
        let x: Exact = "10.5".parse().unwrap();
        assert_eq!((x.round(Rounding::Floor), x.round(Rounding::Nearest), x.round(Rounding::Ceil)), (10, 11, 11));
        let y: Exact = "10.49999999".parse().unwrap();
        assert_eq!((y.round(Rounding::Floor), y.round(Rounding::Nearest), y.round(Rounding::Ceil)), (10, 10, 11));
        assert_eq!(Exact::points(7).round(Rounding::Ceil), 7);
    }

    #[test]
    fn factors_take_numbers_or_strings_with_two_decimals() {
        let f: Factor = serde_json::from_str("1.25").unwrap();
        assert_eq!(f, Factor(125));
        assert_eq!(serde_json::from_str::<Factor>("\"2\"").unwrap(), Factor(200));
        assert!(serde_json::from_str::<Factor>("1.255").is_err());
        assert_eq!(Factor(150).to_string(), "1.5");
    }
}
