//! The query: which service, which window, which lines; and how HTTP parameters become one.
//!
//! Times are accepted as milliseconds since the epoch (what Grafana's `${__value.time}`,
//! `${__from}` and `${__to}` give), seconds since the epoch (a number below 10^11, with or
//! without a fraction), RFC 3339, or `now`.

use std::time::Duration;

use serde::Deserialize;

use super::LogsError;
use super::config::LogsSettings;
use super::record::{Level, parse_log_timestamp_ms};
use crate::source::{InvalidDuration, parse_duration};

/// Default number of lines in an answer.
pub const DEFAULT_LIMIT: usize = 200;
/// Most lines an answer may ask for.
pub const MAX_LIMIT: usize = 5000;

/// How the answer's lines are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineOrder {
    /// The lines of the most telling template first, each template's lines in time order.
    #[default]
    Rank,
    /// Time order. The lines are still chosen as the `limit` most telling ones.
    Time,
}

/// What to correlate: the library call's input.
#[derive(Debug, Clone, PartialEq)]
pub struct LogQuery {
    /// The service, as configured.
    pub service: String,
    /// Window start, ms since the epoch, inclusive.
    pub from_ms: i64,
    /// Window end, ms since the epoch, exclusive.
    pub to_ms: i64,
    /// Only lines at this level or above (lines without a level are then left out).
    pub min_level: Option<Level>,
    /// Only lines containing this text (case-insensitive) in the message, logger, exception or
    /// stack trace.
    pub contains: Option<String>,
    /// At most this many lines in the answer.
    pub limit: usize,
    /// The order of the answer's lines.
    pub order: LineOrder,
}

impl LogQuery {
    /// The default window around `time_ms` (`default_before` before, `default_after` after).
    pub fn around(service: impl Into<String>, time_ms: i64, settings: &LogsSettings) -> Self {
        LogQuery {
            service: service.into(),
            from_ms: time_ms - settings.default_before.as_millis() as i64,
            to_ms: time_ms + settings.default_after.as_millis() as i64,
            min_level: None,
            contains: None,
            limit: DEFAULT_LIMIT,
            order: LineOrder::Rank,
        }
    }
}

/// The `/logs` query string, as sent: every value is text, checked by [`LogParams::to_query`].
/// An unknown parameter is refused, as `/incidents` refuses one: `befor=1h` silently showing the
/// default window would be a mistake without a message.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// Required: the service.
    pub service: Option<String>,
    /// A moment; the window is `before` it to `after` it.
    pub time: Option<String>,
    /// Window start before `time` (a duration such as `5m`).
    pub before: Option<String>,
    /// Window end after `time`.
    pub after: Option<String>,
    /// Window start, with `to`.
    pub from: Option<String>,
    /// Window end, with `from`.
    pub to: Option<String>,
    /// Minimum level.
    pub level: Option<String>,
    /// Substring filter.
    pub q: Option<String>,
    /// Lines in the answer (1 to 5000).
    pub limit: Option<String>,
    /// `json` or `html`, overriding the Accept header.
    pub format: Option<String>,
    /// `rank` or `time`.
    pub order: Option<String>,
}

fn bad(parameter: &'static str, problem: impl Into<String>) -> LogsError {
    LogsError::InvalidParameter { parameter, problem: problem.into() }
}

/// Reads a time parameter: ms or s since the epoch, RFC 3339, or `now`.
pub fn parse_time(parameter: &'static str, text: &str, now_ms: i64) -> Result<i64, LogsError> {
    let text = text.trim();
    if text == "now" {
        return Ok(now_ms);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let number: f64 = text.parse().map_err(|_| bad(parameter, format!("{text:?} is not a number")))?;
        // 10^11 seconds is the year 5138; 10^11 ms is 1973: below it, the number is seconds.
        let ms = if number < 1e11 { number * 1000.0 } else { number };
        if !ms.is_finite() || ms > 1e15 {
            return Err(bad(parameter, format!("{text:?} is out of range")));
        }
        return Ok(ms.round() as i64);
    }
    parse_log_timestamp_ms(text).ok_or_else(|| {
        bad(
            parameter,
            format!("{text:?} is not a time: give ms or s since the epoch, or RFC 3339 (2026-11-24T10:00:00Z)"),
        )
    })
}

fn parse_window_duration(parameter: &'static str, text: &str) -> Result<Duration, LogsError> {
    parse_duration(text.trim()).map_err(|error| match error {
        InvalidDuration::Malformed(_) => bad(parameter, format!("{text:?} is not a duration such as 5m or 90s")),
        InvalidDuration::TooLong(_) => bad(parameter, error.to_string()),
    })
}

impl LogParams {
    /// Checks the parameters and builds the query; errors name the parameter.
    pub fn to_query(&self, settings: &LogsSettings, now_ms: i64) -> Result<LogQuery, LogsError> {
        let service = match self.service.as_deref().map(str::trim) {
            Some(service) if !service.is_empty() => service.to_owned(),
            _ => return Err(bad("service", "required: the service whose logs to show")),
        };
        let (from_ms, to_ms) = match (&self.time, &self.from, &self.to) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(bad("time", "give either time (with before and after) or from and to, not both"));
            }
            (_, Some(from), Some(to)) => {
                if self.before.is_some() || self.after.is_some() {
                    return Err(bad("before", "before and after go with time, not with from and to"));
                }
                (parse_time("from", from, now_ms)?, parse_time("to", to, now_ms)?)
            }
            (_, Some(_), None) => return Err(bad("to", "required with from")),
            (_, None, Some(_)) => return Err(bad("from", "required with to")),
            (time, None, None) => {
                let time_ms = match time {
                    Some(time) => parse_time("time", time, now_ms)?,
                    None => now_ms,
                };
                let before = match &self.before {
                    Some(text) => parse_window_duration("before", text)?,
                    None => settings.default_before,
                };
                let after = match &self.after {
                    Some(text) => parse_window_duration("after", text)?,
                    None => settings.default_after,
                };
                // Saturating: a window this wide is then refused as wider than `logs.max_window`,
                // with that message, instead of wrapping.
                let side_ms = |side: Duration| i64::try_from(side.as_millis()).unwrap_or(i64::MAX);
                (time_ms.saturating_sub(side_ms(before)), time_ms.saturating_add(side_ms(after)))
            }
        };
        if from_ms >= to_ms {
            let parameter = if self.from.is_some() { "from" } else { "before" };
            return Err(bad(parameter, "the window is empty: its start must be before its end"));
        }
        let min_level =
            match self.level.as_deref() {
                None | Some("") => None,
                Some(name) => Some(Level::from_name(name).ok_or_else(|| {
                    bad("level", format!("{name:?}: expected TRACE, DEBUG, INFO, WARN, ERROR or FATAL"))
                })?),
            };
        let limit = match self.limit.as_deref() {
            None | Some("") => DEFAULT_LIMIT,
            Some(text) => match text.trim().parse::<usize>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
                _ => return Err(bad("limit", format!("{text:?}: expected a whole number from 1 to {MAX_LIMIT}"))),
            },
        };
        let order = match self.order.as_deref() {
            None | Some("") | Some("rank") => LineOrder::Rank,
            Some("time") => LineOrder::Time,
            Some(other) => return Err(bad("order", format!("{other:?}: expected rank or time"))),
        };
        let contains = self.q.as_deref().filter(|q| !q.is_empty()).map(str::to_owned);
        Ok(LogQuery { service, from_ms, to_ms, min_level, contains, limit, order })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000_000;

    fn params(pairs: &[(&str, &str)]) -> LogParams {
        let query: String = pairs.iter().map(|(k, v)| format!("{k}={v}&")).collect();
        serde_urlencoded_like(&query)
    }

    /// The parameters as axum's `Query` would give them (all text).
    fn serde_urlencoded_like(query: &str) -> LogParams {
        let value: serde_json::Map<String, serde_json::Value> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v.to_owned())))
            .collect();
        serde_json::from_value(serde_json::Value::Object(value)).unwrap()
    }

    #[test]
    fn times_are_ms_seconds_or_rfc3339() {
        assert_eq!(parse_time("time", "1790000000123", NOW).unwrap(), 1_790_000_000_123);
        assert_eq!(parse_time("time", "1790000000", NOW).unwrap(), 1_790_000_000_000);
        assert_eq!(parse_time("time", "1790000000.5", NOW).unwrap(), 1_790_000_000_500);
        assert_eq!(parse_time("time", "2026-09-21T14:13:20Z", NOW).unwrap(), 1_790_000_000_000);
        assert_eq!(parse_time("time", "now", NOW).unwrap(), NOW);
        let error = parse_time("from", "yesterday", NOW).unwrap_err();
        assert!(error.to_string().contains("from: \"yesterday\" is not a time"), "{error}");
    }

    #[test]
    fn time_gets_the_default_window_and_from_to_is_taken_as_is() {
        let settings = LogsSettings::default();
        let query = params(&[("service", "a"), ("time", "1790000000000")]).to_query(&settings, NOW).unwrap();
        assert_eq!((query.from_ms, query.to_ms), (NOW - 300_000, NOW + 60_000));
        assert_eq!(query.limit, DEFAULT_LIMIT);
        let query = params(&[("service", "a"), ("time", "1790000000000"), ("before", "1m"), ("after", "0")])
            .to_query(&settings, NOW)
            .unwrap();
        assert_eq!((query.from_ms, query.to_ms), (NOW - 60_000, NOW));
        // The longest duration there is, around any time, stays inside `i64` (`logs.max_window` then
        // refuses it when the files are read).
        let query = params(&[("service", "a"), ("time", "1790000000000"), ("before", "36500d"), ("after", "36500d")])
            .to_query(&settings, NOW)
            .unwrap();
        assert_eq!((query.from_ms, query.to_ms), (NOW - 36_500 * 86_400_000, NOW + 36_500 * 86_400_000));
        let query = params(&[("service", "a"), ("from", "1000"), ("to", "2000"), ("level", "warn"), ("limit", "5000")])
            .to_query(&settings, NOW)
            .unwrap();
        assert_eq!((query.from_ms, query.to_ms), (1_000_000, 2_000_000));
        assert_eq!(query.min_level, Some(Level::Warn));
        assert_eq!(query.limit, 5000);
    }

    #[test]
    fn mistakes_name_the_parameter() {
        let settings = LogsSettings::default();
        let cases: [(&[(&str, &str)], &str); 10] = [
            (&[("time", "1")], "service: required"),
            (&[("service", "a"), ("time", "soon")], "time: \"soon\" is not a time"),
            (&[("service", "a"), ("from", "2000"), ("to", "1000")], "from: the window is empty"),
            (&[("service", "a"), ("from", "2000")], "to: required with from"),
            (&[("service", "a"), ("time", "1"), ("from", "1"), ("to", "2")], "time: give either"),
            (&[("service", "a"), ("before", "5 minutes")], "before: \"5 minutes\" is not a duration"),
            // Beyond `i64` milliseconds once added to the time: refused, not wrapped or a panic.
            (
                &[("service", "a"), ("after", "9223372036854775807ms")],
                "after: duration \"9223372036854775807ms\" is out of range",
            ),
            (&[("service", "a"), ("level", "loud")], "level: \"loud\""),
            (&[("service", "a"), ("limit", "5001")], "limit: \"5001\""),
            (&[("service", "a"), ("order", "random")], "order: \"random\""),
        ];
        for (pairs, expected) in cases {
            let message = params(pairs).to_query(&settings, NOW).unwrap_err().to_string();
            assert!(message.contains(expected), "{pairs:?}: expected {expected:?} in {message:?}");
        }
    }
}
