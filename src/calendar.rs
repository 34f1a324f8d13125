//! Proleptic Gregorian dates as day numbers since 1970-01-01, without a date crate: what the
//! datasets' `date=` partitions, RFC 3339 timestamps (logs, Alertmanager payloads, `backtest`
//! input) and the simulator's log lines need. Howard Hinnant's public-domain algorithms
//! (`days_from_civil`, `civil_from_days`), exact for every `i64` day a timestamp in ms can hold.
//! Not for time zones or calendars other than the proleptic Gregorian one.

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
}
