//! RFC 3339 timestamps as Alertmanager writes them (`2026-11-24T13:32:20.492Z`), to and from
//! milliseconds since the epoch. Small on purpose: the crate has no date library, and these are
//! the only timestamps the webhook reads.

use crate::calendar::{civil_from_days, days_from_civil};

/// Milliseconds since the epoch of an RFC 3339 timestamp, or `None` when it is not one.
/// Alertmanager's "no end yet" (`0001-01-01T00:00:00Z`) parses too; see [`is_unset`].
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        if part.bytes().all(|b| b.is_ascii_digit()) { part.parse().ok() } else { None }
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let first_three = &fraction[..digits.min(3)];
        millis = first_three.parse::<i64>().ok()? * 10_i64.pow(3 - first_three.len() as u32);
        rest = &fraction[digits..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let hours: i64 = rest[1..3].parse().ok()?;
            let minutes: i64 = rest[4..6].parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    // Month and day were range-checked above, so they fit.
    let days = days_from_civil(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_seconds;
    Some(seconds * 1000 + millis)
}

/// Whether a parsed timestamp is Alertmanager's zero time (year 1): "not set".
pub fn is_unset(ms: i64) -> bool {
    ms < days_from_civil(1000, 1, 1) * 86_400_000
}

/// `2026-11-24T13:32:20.492Z` for milliseconds since the epoch (UTC, always with milliseconds).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn alertmanager_timestamps_parse() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2026-11-24T13:32:20.492Z"), Some(1_795_527_140_492));
        assert_eq!(parse_rfc3339_ms("2026-11-24T14:32:20.4929+01:00"), Some(1_795_527_140_492));
        assert!(is_unset(parse_rfc3339_ms("0001-01-01T00:00:00Z").unwrap()));
        assert!(!is_unset(0));
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-24T13:32:20",
            "2026-11-24T13:32:20.Z",
            "2026-11-24T25:00:00Z",
            "2026-11-24T13:32:20+0100",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn formatting_then_parsing_gives_the_same_instant(ms in -62_000_000_000_000_i64..253_000_000_000_000) {
            prop_assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in ".{0,40}") {
            let _ = parse_rfc3339_ms(&text);
        }
    }
}
