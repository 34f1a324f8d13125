//! Proleptic Gregorian dates as day numbers since 1970-01-01, without a date crate: what the
//! datasets' `date=` partitions, RFC 3339 timestamps (logs, Alertmanager payloads, `backtest`
//! input) and the simulator's log lines need. Howard Hinnant's public-domain algorithms
//! (`days_from_civil`, `civil_from_days`), exact for every `i64` day a timestamp in ms can hold.
//! Not for time zones or calendars other than the proleptic Gregorian one.
//!
//! Also the one strict RFC 3339 parser and formatter (Alertmanager's `startsAt`, `backtest`
//! input): `2026-11-24T13:32:20.492Z` to and from milliseconds since the epoch. Log lines, whose
//! timestamps come in looser ISO 8601 shapes, have their own lenient reader in `logs::record`.

/// Days since 1970-01-01 of `year-month-day`. `month` is 1–12 and `day` 1–31; an impossible date
/// (February 30) gives the day number it would have, so callers that must refuse it compare
/// [`civil_from_days`] of the result with their input.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    // Months counted from March, so the leap day ends the year.
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The `(year, month, day)` of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// Milliseconds since the epoch of an RFC 3339 timestamp (`2026-11-24T13:32:20.492Z`,
/// `…T14:32:20.4929+01:00`; `T`, `t` or a space between date and time), or `None` when `text` is
/// not exactly one. Fraction digits past milliseconds are dropped; a leap second (`:60`) is read
/// as `:59`, so instants stay in order.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    parse_date_time_ms(text, MissingOffset::Refuse)
}

/// As [`parse_rfc3339_ms`], and a date and time without an offset (`2014-04-10 00:05:00`, the
/// shape of the Numenta Anomaly Benchmark's files and of pandas' and spreadsheets' CSV exports)
/// is read as UTC. Only for tables of data a user brings (`backtest` input), where refusing the
/// most common export format helps nobody; protocols keep the strict form.
pub fn parse_rfc3339_or_utc_ms(text: &str) -> Option<i64> {
    parse_date_time_ms(text, MissingOffset::Utc)
}

/// What a date and time without a `Z` or numeric offset means.
#[derive(Clone, Copy, PartialEq)]
enum MissingOffset {
    /// Not a timestamp: RFC 3339 requires the offset.
    Refuse,
    /// UTC.
    Utc,
}

fn parse_date_time_ms(text: &str, missing_offset: MissingOffset) -> Option<i64> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = bytes.get(range)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    if bytes.len() < 19 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = 19;
    let mut millis = 0;
    if bytes.get(rest) == Some(&b'.') {
        let start = rest + 1;
        rest = start;
        while rest < bytes.len() && bytes[rest].is_ascii_digit() {
            rest += 1;
        }
        if rest == start {
            return None;
        }
        let first_three = digits(start..rest.min(start + 3))?;
        millis = first_three * 10i64.pow(3 - (rest - start).min(3) as u32);
    }
    let offset_minutes = match bytes.get(rest..)? {
        [b'Z' | b'z'] => 0,
        [] if missing_offset == MissingOffset::Utc => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (digits(rest + 1..rest + 3)?, digits(rest + 4..rest + 6)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 60 + minutes;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    // Month and day were range-checked above, so they fit.
    let days = days_from_civil(year, month as u32, day as u32);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

/// `2026-11-24T13:32:20.492Z` for milliseconds since the epoch (UTC, always with milliseconds).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let seconds = ms.div_euclid(1000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let second_of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        ms.rem_euclid(1000)
    )
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(days_from_civil(1, 1, 1)), (1, 1, 1));
    }

    #[test]
    fn every_day_of_four_centuries_round_trips_in_order() {
        let start = days_from_civil(1800, 1, 1);
        let mut previous = civil_from_days(start - 1);
        for day in start..start + 146_097 {
            let date = civil_from_days(day);
            assert_eq!(days_from_civil(date.0, date.1, date.2), day);
            assert!(date > previous, "{date:?} after {previous:?}");
            previous = date;
        }
    }

    #[test]
    fn rfc3339_timestamps_parse() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2026-11-24T13:32:20.492Z"), Some(1_795_527_140_492));
        assert_eq!(parse_rfc3339_ms("2026-11-24T14:32:20.4929+01:00"), Some(1_795_527_140_492));
        assert_eq!(parse_rfc3339_ms("2024-02-29T12:30:15.25Z"), Some(1_709_209_815_250));
        assert_eq!(parse_rfc3339_ms("2023-12-31T19:00:00-05:00"), Some(1_704_067_200_000));
        assert_eq!(parse_rfc3339_ms("2016-12-31T23:59:60Z"), parse_rfc3339_ms("2016-12-31T23:59:59Z"));
    }

    #[test]
    fn malformed_rfc3339_timestamps_are_refused() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-11-24T13:32:20",
            "2026-11-24T13:32:20.Z",
            "2026-11-24T25:00:00Z",
            "2026-11-24T13:32:20+0100",
            "2026-11-24T13:32:20+-1:00",
            "2026-11-24T13:32:20Z ",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_date_and_time_without_an_offset_is_utc_only_where_allowed() {
        // The Numenta Anomaly Benchmark's files, and pandas' default CSV export.
        assert_eq!(parse_rfc3339_or_utc_ms("2014-04-10 00:05:00"), parse_rfc3339_ms("2014-04-10T00:05:00Z"));
        assert_eq!(parse_rfc3339_or_utc_ms("2014-04-10T00:05:00.250"), parse_rfc3339_ms("2014-04-10T00:05:00.250Z"));
        // Every RFC 3339 form still means what it says.
        assert_eq!(parse_rfc3339_or_utc_ms("2023-12-31T19:00:00-05:00"), Some(1_704_067_200_000));
        assert_eq!(parse_rfc3339_or_utc_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2014-04-10 00:05:00"), None, "RFC 3339 needs the offset");
        for bad in
            ["2014-04-10 00:05", "2014-04-10", "2014-04-10 00:05:00 ", "2014-04-10 24:00:00", "2014-04-10 00:05:00."]
        {
            assert_eq!(parse_rfc3339_or_utc_ms(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn formatting_then_parsing_gives_the_same_instant(ms in -62_000_000_000_000_i64..253_000_000_000_000) {
            proptest::prop_assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }

        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in ".{0,40}") {
            let _ = parse_rfc3339_ms(&text);
            let _ = parse_rfc3339_or_utc_ms(&text);
        }
    }
}
