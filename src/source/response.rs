//! Decoding the API's JSON answers into plain data, with no network involved.
//!
//! The facts this honours, each tested below: values are JSON strings (`"NaN"`, `"+Inf"` and
//! `"-Inf"` included); timestamps are seconds as integers or floats; errors are
//! `{"status":"error","errorType":...,"error":...}` except a plain-text 404; a 200 may carry
//! `warnings` (Thanos) or `isPartial` (VictoriaMetrics). Any byte string gives a value or a typed
//! error, never a panic.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeOwned, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};

use super::SourceError;

/// A series' labels, `__name__` included when the query kept it.
pub type Labels = BTreeMap<String, String>;

/// One value at one time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; NaN and infinities come through as such.
    pub value: f64,
}

/// One series of an instant query's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels.
    pub labels: Labels,
    /// Milliseconds since the Unix epoch (the evaluation time).
    pub timestamp_ms: i64,
    /// The value.
    pub value: f64,
}

/// One series of a range query's result, points in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels.
    pub labels: Labels,
    /// The points, oldest first, one per step where the series had a value.
    pub points: Vec<Point>,
}

/// What a successful answer said besides its data: the caller counts these, since a partial
/// answer can look like a service that vanished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings {
    /// The `warnings` array (Prometheus, Thanos partial responses, Mimir).
    pub messages: Vec<String>,
    /// `isPartial` was true (VictoriaMetrics): some storage nodes did not answer.
    pub partial: bool,
}

impl Warnings {
    /// True when the answer had neither warnings nor the partial flag.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && !self.partial
    }

    /// Adds another answer's warnings, without repeating a message already held.
    pub(super) fn merge(&mut self, other: Warnings) {
        for message in other.messages {
            if !self.messages.contains(&message) {
                self.messages.push(message);
            }
        }
        self.partial |= other.partial;
    }
}

/// The result of an instant query: one sample per series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstantVector {
    /// One sample per series; a scalar result becomes one sample with no labels.
    pub samples: Vec<Sample>,
    /// Warnings that came with the answer.
    pub warnings: Warnings,
}

/// The result of a range query: the series and their points.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeMatrix {
    /// The series, in the order the server gave them.
    pub series: Vec<Series>,
    /// Warnings that came with the answer (of every chunk, for a split query).
    pub warnings: Warnings,
}

/// The values of one label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelValues {
    /// The values, as the server sorted them.
    pub values: Vec<String>,
    /// Warnings that came with the answer.
    pub warnings: Warnings,
}

/// The envelope every API answer shares.
#[derive(Deserialize)]
struct Envelope<D> {
    status: String,
    data: Option<D>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default, rename = "isPartial")]
    is_partial: bool,
}

/// The `data` of a query answer, keyed by `resultType`.
#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum QueryData {
    Vector(Vec<VectorElement>),
    Matrix(Vec<MatrixElement>),
    Scalar(RawPoint),
    String(IgnoredAny),
}

#[derive(Deserialize)]
struct VectorElement {
    #[serde(default)]
    metric: Labels,
    value: Option<RawPoint>,
    histogram: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct MatrixElement {
    #[serde(default)]
    metric: Labels,
    #[serde(default)]
    values: Vec<RawPoint>,
    histograms: Option<IgnoredAny>,
}

/// `[<seconds>, "<value>"]`.
#[derive(Deserialize)]
struct RawPoint(Timestamp, Value);

impl From<RawPoint> for Point {
    fn from(RawPoint(Timestamp(timestamp_ms), Value(value)): RawPoint) -> Self {
        Point { timestamp_ms, value }
    }
}

/// Seconds since the epoch as integer, float or string, held as milliseconds.
struct Timestamp(i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;
        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a timestamp in seconds")
            }
            fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Timestamp, E> {
                seconds.checked_mul(1000).map(Timestamp).ok_or_else(|| E::custom("timestamp out of range"))
            }
            fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Timestamp, E> {
                let seconds = i64::try_from(seconds).map_err(|_| E::custom("timestamp out of range"))?;
                self.visit_i64(seconds)
            }
            fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<Timestamp, E> {
                let ms = (seconds * 1000.0).round();
                // 9.2e18 is i64::MAX; the bound also refuses NaN and infinities.
                if ms.abs() < 9.2e18 { Ok(Timestamp(ms as i64)) } else { Err(E::custom("timestamp out of range")) }
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
                let seconds: f64 = text.parse().map_err(|_| E::custom(format!("bad timestamp {text:?}")))?;
                self.visit_f64(seconds)
            }
        }
        deserializer.deserialize_any(TimestampVisitor)
    }
}

/// A sample value: a string as Prometheus sends it (`"1.5"`, `"NaN"`, `"+Inf"`), or a number.
struct Value(f64);

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl Visitor<'_> for ValueVisitor {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sample value as a string")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Value, E> {
                // Rust's parser takes Go's spellings: "NaN", "+Inf", "-Inf", "1e-3".
                text.parse().map(Value).map_err(|_| E::custom(format!("bad sample value {text:?}")))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
                Ok(Value(value))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
                Ok(Value(value as f64))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
                Ok(Value(value as f64))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

const HISTOGRAM_HINT: &str = "native histograms are not supported; wrap the expression in histogram_quantile(), \
                              histogram_sum() or histogram_count()";

/// Decodes the answer of `/api/v1/query`.
pub(super) fn decode_instant(endpoint: &str, status: u16, body: &[u8]) -> Result<InstantVector, SourceError> {
    let (data, warnings) = decode_envelope::<QueryData>(endpoint, status, body)?;
    let unsupported = |what: &str, hint| SourceError::UnsupportedResult {
        endpoint: endpoint.to_owned(),
        what: what.to_owned(),
        hint,
    };
    let samples = match data {
        QueryData::Vector(elements) => elements
            .into_iter()
            .map(|element| match (element.value, element.histogram) {
                (Some(RawPoint(Timestamp(timestamp_ms), Value(value))), _) => {
                    Ok(Sample { labels: element.metric, timestamp_ms, value })
                }
                (None, Some(_)) => Err(unsupported("a native histogram sample", HISTOGRAM_HINT)),
                (None, None) => Err(decode_error(endpoint, "a vector sample has no value", body)),
            })
            .collect::<Result<_, _>>()?,
        QueryData::Scalar(RawPoint(Timestamp(timestamp_ms), Value(value))) => {
            vec![Sample { labels: Labels::new(), timestamp_ms, value }]
        }
        QueryData::Matrix(_) => {
            return Err(unsupported(
                "a range vector",
                "an instant query must give an instant vector; remove the [range] selector or wrap it in a function such as rate()",
            ));
        }
        QueryData::String(_) => {
            return Err(unsupported("a string", "the expression must give a number per series"));
        }
    };
    Ok(InstantVector { samples, warnings })
}

/// Decodes the answer of `/api/v1/query_range`.
pub(super) fn decode_matrix(endpoint: &str, status: u16, body: &[u8]) -> Result<RangeMatrix, SourceError> {
    let (data, warnings) = decode_envelope::<QueryData>(endpoint, status, body)?;
    let QueryData::Matrix(elements) = data else {
        return Err(decode_error(endpoint, "a range query must answer with a matrix", body));
    };
    let series = elements
        .into_iter()
        .map(|element| {
            if element.values.is_empty() && element.histograms.is_some() {
                return Err(SourceError::UnsupportedResult {
                    endpoint: endpoint.to_owned(),
                    what: "native histogram samples".to_owned(),
                    hint: HISTOGRAM_HINT,
                });
            }
            Ok(Series { labels: element.metric, points: element.values.into_iter().map(Point::from).collect() })
        })
        .collect::<Result<_, _>>()?;
    Ok(RangeMatrix { series, warnings })
}

/// Decodes the answer of `/api/v1/label/<name>/values`.
pub(super) fn decode_label_values(endpoint: &str, status: u16, body: &[u8]) -> Result<LabelValues, SourceError> {
    let (values, warnings) = decode_envelope::<Vec<String>>(endpoint, status, body)?;
    Ok(LabelValues { values, warnings })
}

/// Checks the status and the envelope, and returns the data of a successful answer.
fn decode_envelope<D: DeserializeOwned>(
    endpoint: &str,
    status: u16,
    body: &[u8],
) -> Result<(D, Warnings), SourceError> {
    if !(200..300).contains(&status) {
        return Err(status_error(endpoint, status, body));
    }
    let envelope: Envelope<D> =
        serde_json::from_slice(body).map_err(|e| decode_error(endpoint, &e.to_string(), body))?;
    match (envelope.status.as_str(), envelope.data) {
        ("success", Some(data)) => Ok((data, Warnings { messages: envelope.warnings, partial: envelope.is_partial })),
        ("success", None) => Err(decode_error(endpoint, "a success answer without data", body)),
        ("error", _) => Err(api_error(
            endpoint,
            status,
            envelope.error_type,
            envelope.error.unwrap_or_else(|| "no error text".to_owned()),
        )),
        (other, _) => Err(decode_error(endpoint, &format!("unknown status {other:?}"), body)),
    }
}

/// The error for a non-2xx answer: an API error when the body is one, else by status.
fn status_error(endpoint: &str, status: u16, body: &[u8]) -> SourceError {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(rename = "errorType")]
        error_type: Option<String>,
        error: Option<String>,
    }
    match status {
        401 | 403 => return SourceError::Auth { status, endpoint: endpoint.to_owned() },
        404 => return SourceError::NotFound { endpoint: endpoint.to_owned() },
        _ => {}
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error_type, error: Some(message) }) => api_error(endpoint, status, error_type, message),
        _ => SourceError::Status { status, endpoint: endpoint.to_owned(), error_type: None, message: snippet(body) },
    }
}

fn api_error(endpoint: &str, status: u16, error_type: Option<String>, message: String) -> SourceError {
    match error_type.as_deref() {
        Some("bad_data") => SourceError::BadData { message },
        Some("execution") => SourceError::Execution { message },
        Some("timeout" | "canceled") => SourceError::QueryTimeout { message },
        _ => SourceError::Status { status, endpoint: endpoint.to_owned(), error_type, message },
    }
}

fn decode_error(endpoint: &str, detail: &str, body: &[u8]) -> SourceError {
    SourceError::Decode { endpoint: endpoint.to_owned(), detail: detail.to_owned(), snippet: snippet(body) }
}

/// The start of a body for an error message: enough to recognise an HTML page or a proxy's text.
fn snippet(body: &[u8]) -> String {
    const SNIPPET_BYTES: usize = 160;
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET_BYTES)]);
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ENDPOINT: &str = "http://prom/api/v1/query";

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn vector_values_are_strings_including_nan_and_infinities() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","application":"a"},"value":[1700000000.781,"1.5"]},
            {"metric":{"application":"b"},"value":[1700000000,"NaN"]},
            {"metric":{"application":"c"},"value":[1700000000,"+Inf"]},
            {"metric":{"application":"d"},"value":[1700000000,"-Inf"]},
            {"metric":{"application":"e"},"value":[1700000000,"1e-3"]}]}}"#;
        let vector = decode_instant(ENDPOINT, 200, body).unwrap();
        assert!(vector.warnings.is_empty());
        assert_eq!(
            vector.samples[0],
            Sample {
                labels: labels(&[("__name__", "up"), ("application", "a")]),
                timestamp_ms: 1_700_000_000_781,
                value: 1.5
            }
        );
        assert!(vector.samples[1].value.is_nan());
        assert_eq!(vector.samples[1].timestamp_ms, 1_700_000_000_000);
        assert_eq!(vector.samples[2].value, f64::INFINITY);
        assert_eq!(vector.samples[3].value, f64::NEG_INFINITY);
        assert_eq!(vector.samples[4].value, 0.001);
    }

    #[test]
    fn timestamps_may_be_integers_floats_or_strings() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{},"values":[[1700000000,"1"],[1700000000.5,"2"],["1700000001.25","3"],[1.7e9,"4"]]}]}}"#;
        let matrix = decode_matrix(ENDPOINT, 200, body).unwrap();
        let times: Vec<i64> = matrix.series[0].points.iter().map(|p| p.timestamp_ms).collect();
        assert_eq!(times, [1_700_000_000_000, 1_700_000_000_500, 1_700_000_001_250, 1_700_000_000_000]);
    }

    #[test]
    fn field_order_and_extra_fields_do_not_matter() {
        // Result before resultType, query stats in data, infos beside warnings (Prometheus 2.45+).
        let body = br#"{"infos":["PromQL info: metric might not be a counter"],"data":{
            "result":[{"value":[1700000000,"2"],"metric":{"application":"a"}}],
            "stats":{"timings":{"evalTotalTime":0.01}},"resultType":"vector"},"status":"success"}"#;
        let vector = decode_instant(ENDPOINT, 200, body).unwrap();
        assert_eq!(vector.samples[0].value, 2.0);
        assert!(vector.warnings.is_empty());
    }

    #[test]
    fn scalar_result_becomes_one_unlabelled_sample() {
        let body = br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.5,"42"]}}"#;
        let vector = decode_instant(ENDPOINT, 200, body).unwrap();
        assert_eq!(vector.samples, [Sample { labels: Labels::new(), timestamp_ms: 1_700_000_000_500, value: 42.0 }]);
    }

    #[test]
    fn string_and_range_results_are_refused_with_a_hint() {
        let body = br#"{"status":"success","data":{"resultType":"string","result":[1700000000,"hello"]}}"#;
        let err = decode_instant(ENDPOINT, 200, body).unwrap_err();
        assert_eq!(err.reason(), "unsupported_result");
        let body =
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}"#;
        let err = decode_instant(ENDPOINT, 200, body).unwrap_err();
        assert!(err.to_string().contains("remove the [range] selector"), "{err}");
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(decode_matrix(ENDPOINT, 200, body).unwrap_err().reason(), "decode");
    }

    #[test]
    fn native_histograms_are_refused_with_a_hint() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{},"histogram":[1700000000,{"count":"3","sum":"1","buckets":[]}]}]}}"#;
        let err = decode_instant(ENDPOINT, 200, body).unwrap_err();
        assert!(err.to_string().contains("histogram_quantile()"), "{err}");
    }

    #[test]
    fn warnings_and_partial_flags_are_kept() {
        let body = br#"{"status":"success","isPartial":true,"warnings":["store 10.0.0.1 unavailable"],
            "data":{"resultType":"vector","result":[]}}"#;
        let vector = decode_instant(ENDPOINT, 200, body).unwrap();
        assert_eq!(vector.warnings, Warnings { messages: vec!["store 10.0.0.1 unavailable".into()], partial: true });
    }

    #[test]
    fn api_errors_map_to_their_type() {
        let error = |status, error_type: &str| {
            let body = format!(r#"{{"status":"error","errorType":"{error_type}","error":"something"}}"#);
            decode_instant(ENDPOINT, status, body.as_bytes()).unwrap_err()
        };
        assert!(matches!(error(400, "bad_data"), SourceError::BadData { message } if message == "something"));
        assert!(matches!(error(422, "execution"), SourceError::Execution { .. }));
        assert_eq!(error(503, "timeout").reason(), "timeout");
        assert!(error(503, "timeout").is_retryable());
        assert_eq!(error(503, "unavailable").reason(), "http_5xx");
        assert_eq!(error(500, "internal").to_string(), format!("got HTTP 500 from {ENDPOINT} (internal): something"));
        // Some proxies answer 200 with an error envelope.
        assert_eq!(error(200, "bad_data").reason(), "bad_data");
    }

    #[test]
    fn plain_text_404_says_to_check_the_url() {
        let err = decode_instant(ENDPOINT, 404, b"404 page not found\n").unwrap_err();
        assert_eq!(err.reason(), "not_found");
        assert!(err.to_string().contains("check source.url"), "{err}");
    }

    #[test]
    fn auth_failures_say_which_keys_to_check() {
        let err = decode_instant(ENDPOINT, 401, b"Unauthorized").unwrap_err();
        assert_eq!(err.reason(), "auth");
        assert!(err.to_string().contains("source.basic_auth"), "{err}");
    }

    #[test]
    fn proxy_html_pages_give_a_typed_error_with_the_start_of_the_body() {
        let html = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
        let err = decode_instant(ENDPOINT, 502, html).unwrap_err();
        assert!(
            matches!(&err, SourceError::Status { status: 502, message, .. } if message.contains("502 Bad Gateway"))
        );
        assert!(err.is_retryable());
        let err = decode_instant(ENDPOINT, 200, html).unwrap_err();
        assert_eq!(err.reason(), "decode");
        assert!(err.to_string().contains("<html>"), "{err}");
    }

    #[test]
    fn truncated_and_garbage_bodies_are_decode_errors() {
        let full = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#;
        for end in 0..full.len() {
            assert_eq!(decode_instant(ENDPOINT, 200, &full[..end]).unwrap_err().reason(), "decode", "cut at {end}");
        }
        for body in
            [&b"\xff\xfe"[..], b"null", b"[]", b"{}", br#"{"status":"success"}"#, br#"{"status":"maybe","data":1}"#]
        {
            assert_eq!(decode_instant(ENDPOINT, 200, body).unwrap_err().reason(), "decode");
        }
        let bad_value =
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"one"]}]}}"#;
        assert!(decode_instant(ENDPOINT, 200, bad_value).unwrap_err().to_string().contains("bad sample value"));
        let huge_time = br#"{"status":"success","data":{"resultType":"scalar","result":[1e300,"1"]}}"#;
        assert_eq!(decode_instant(ENDPOINT, 200, huge_time).unwrap_err().reason(), "decode");
    }

    #[test]
    fn label_values_decode() {
        let body = br#"{"status":"success","data":["checkout","payments"],"warnings":["w"]}"#;
        let values = decode_label_values(ENDPOINT, 200, body).unwrap();
        assert_eq!(values.values, ["checkout", "payments"]);
        assert_eq!(values.warnings.messages, ["w"]);
    }

    /// JSON-ish text built from the API's own vocabulary, so the decoder gets deep, not only
    /// refused at the first byte.
    fn json_ish() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just(",".to_owned()),
            Just(":".to_owned()),
            Just(r#""status":"success""#.to_owned()),
            Just(r#""status":"error""#.to_owned()),
            Just(r#""data":"#.to_owned()),
            Just(r#""resultType":"vector""#.to_owned()),
            Just(r#""resultType":"matrix""#.to_owned()),
            Just(r#""resultType":"scalar""#.to_owned()),
            Just(r#""result":"#.to_owned()),
            Just(r#""metric":{"a":"b"}"#.to_owned()),
            Just(r#""value":"#.to_owned()),
            Just(r#""values":"#.to_owned()),
            Just(r#""warnings":["w"]"#.to_owned()),
            Just(r#""errorType":"bad_data""#.to_owned()),
            Just(r#""NaN""#.to_owned()),
            Just(r#""+Inf""#.to_owned()),
            any::<f64>().prop_map(|x| x.to_string()),
            any::<i64>().prop_map(|x| x.to_string()),
            "\"[a-z0-9.+-]{0,8}\"",
        ];
        proptest::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), status in 100u16..600) {
            let _ = decode_instant(ENDPOINT, status, &body);
            let _ = decode_matrix(ENDPOINT, status, &body);
            let _ = decode_label_values(ENDPOINT, status, &body);
        }

        #[test]
        fn arbitrary_json_ish_answers_never_panic(body in json_ish(), status in prop_oneof![Just(200u16), Just(400), Just(503)]) {
            let _ = decode_instant(ENDPOINT, status, body.as_bytes());
            let _ = decode_matrix(ENDPOINT, status, body.as_bytes());
            let _ = decode_label_values(ENDPOINT, status, body.as_bytes());
        }

        #[test]
        fn well_formed_vectors_round_trip(value in any::<f64>(), seconds in 0i64..4_000_000_000, ms in 0i64..1000) {
            let text = if value.is_nan() { "NaN".to_owned() } else if value.is_infinite() {
                if value > 0.0 { "+Inf".to_owned() } else { "-Inf".to_owned() }
            } else { format!("{value:?}") };
            let body = format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[{seconds}.{ms:03},"{text}"]}}]}}}}"#
            );
            let vector = decode_instant(ENDPOINT, 200, body.as_bytes()).unwrap();
            prop_assert_eq!(vector.samples[0].timestamp_ms, seconds * 1000 + ms);
            let decoded = vector.samples[0].value;
            prop_assert!(decoded == value || (decoded.is_nan() && value.is_nan()));
        }
    }
}
