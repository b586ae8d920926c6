//! UTC calendar arithmetic for rule sets: RFC 3339 dates, weekdays and the
//! bounds of a cap's period. Campaign days and cap periods are UTC, so an
//! order's result never depends on where a replica runs.

use serde::{Deserialize, Serialize};

use crate::domain::time::{DAY_MS, Millis};

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of `days` since 1970-01-01: (year, month, day).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses an RFC 3339 time ("2026-03-01T00:00:00Z", an offset, or a date
/// alone meaning its UTC midnight) into Unix milliseconds.
pub fn parse_time(raw: &str) -> Option<Millis> {
    let raw = raw.trim();
    let num = |s: &str| -> Option<i64> { s.chars().all(|c| c.is_ascii_digit()).then(|| s.parse().ok()).flatten() };
    let date = raw.get(..10)?;
    let (y, m, d) = (num(date.get(0..4)?)?, num(date.get(5..7)?)?, num(date.get(8..10)?)?);
    if date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day_ms = days_from_civil(y, m, d) * DAY_MS;
    if civil_from_days(days_from_civil(y, m, d)) != (y, m, d) {
        return None;
    }
    let rest = &raw[10..];
    if rest.is_empty() {
        return Some(day_ms);
    }
    let rest = rest.strip_prefix('T').or_else(|| rest.strip_prefix('t'))?;
    let (hh, mm, ss) = (num(rest.get(0..2)?)?, num(rest.get(3..5)?)?, num(rest.get(6..8)?)?);
    if rest.as_bytes()[2] != b':' || rest.as_bytes()[5] != b':' || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut tail = &rest[8..];
    let mut millis = 0;
    if let Some(frac) = tail.strip_prefix('.') {
        let digits = frac.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        millis = num(&format!("{:0<3}", &frac[..digits.min(3)]))?;
        tail = &frac[digits..];
    }
    let offset_ms = match tail {
        "Z" | "z" => 0,
        _ => {
            let sign = match tail.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = (num(tail.get(1..3)?)?, num(tail.get(4..6)?)?);
            if tail.len() != 6 || tail.as_bytes()[3] != b':' || oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 60 + om) * 60_000
        }
    };
    Some(day_ms + ((hh * 60 + mm) * 60 + ss) * 1_000 + millis - offset_ms)
}

/// The RFC 3339 text of `ms` in UTC, to the second.
pub fn format_time(ms: Millis) -> String {
    let (days, in_day) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS) / 1_000);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", in_day / 3_600, in_day / 60 % 60, in_day % 60)
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// The UTC weekday of `ms`.
    pub fn of(ms: Millis) -> Weekday {
        const DAYS: [Weekday; 7] =
            [Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun, Weekday::Mon, Weekday::Tue, Weekday::Wed];
        DAYS[ms.div_euclid(DAY_MS).rem_euclid(7) as usize]
    }
}

/// The period a per-customer cap counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// A UTC day.
    Day,
    /// A week from Monday 00:00 UTC.
    Week,
    /// A calendar month (UTC).
    Month,
    /// A calendar year (UTC).
    Year,
    /// The campaign's whole window.
    Campaign,
}

impl Period {
    /// `[start, end)` of the period containing `at`; a campaign's period is
    /// its window (`None` end: open).
    pub fn bounds(self, at: Millis, window: (Option<Millis>, Option<Millis>)) -> (Millis, Option<Millis>) {
        let day = at.div_euclid(DAY_MS);
        let (y, m, _) = civil_from_days(day);
        match self {
            Period::Day => (day * DAY_MS, Some((day + 1) * DAY_MS)),
            Period::Week => {
                let monday = day - (day + 3).rem_euclid(7);
                (monday * DAY_MS, Some((monday + 7) * DAY_MS))
            }
            Period::Month => {
                let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (days_from_civil(y, m, 1) * DAY_MS, Some(days_from_civil(next.0, next.1, 1) * DAY_MS))
            }
            Period::Year => (days_from_civil(y, 1, 1) * DAY_MS, Some(days_from_civil(y + 1, 1, 1) * DAY_MS)),
            Period::Campaign => (window.0.unwrap_or(0), window.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_utc_with_offsets_and_print_back() {
        let t = parse_time("2026-03-01T12:30:00Z").unwrap();
        assert_eq!(format_time(t), "2026-03-01T12:30:00Z");
        assert_eq!(parse_time("2026-03-01T14:30:00+02:00"), Some(t));
        assert_eq!(parse_time("2026-03-01"), Some(t - 12 * 3_600_000 - 30 * 60_000));
        assert_eq!(parse_time("1970-01-01T00:00:00.250Z"), Some(250));
        for bad in ["2026-02-30", "2026-13-01", "2026-03-01T25:00:00Z", "2026-03-01T10:00:00", "soon"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn weekdays_and_periods_are_utc() {
        let t = parse_time("2026-12-07T23:59:59Z").unwrap();
        assert_eq!(Weekday::of(t), Weekday::Mon);
        assert_eq!(Weekday::of(0), Weekday::Thu);
        let (s, e) = Period::Week.bounds(parse_time("2026-12-13T10:00:00Z").unwrap(), (None, None));
        assert_eq!(
            (format_time(s), format_time(e.unwrap())),
            ("2026-12-07T00:00:00Z".into(), "2026-12-14T00:00:00Z".into())
        );
        let (s, e) = Period::Month.bounds(parse_time("2026-12-31T10:00:00Z").unwrap(), (None, None));
        assert_eq!(
            (format_time(s), format_time(e.unwrap())),
            ("2026-12-01T00:00:00Z".into(), "2027-01-01T00:00:00Z".into())
        );
        assert_eq!(Period::Campaign.bounds(5, (Some(1), None)), (1, None));
    }
}
