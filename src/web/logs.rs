//! `GET /logs`: a service's log lines around a moment, ranked, as an HTML page or JSON.
//!
//! The handler checks the parameters, runs [`LogIndex::correlate`] off the async runtime, and
//! renders. At most `logs.max_concurrent_queries` queries read at once, counting the Slack
//! notifier's ([`crate::logs::turns`]); one more is refused with 429 and `Retry-After` rather than
//! queued, since every waiting query would hold a blocking thread and, once running, up to
//! `logs.max_bytes_held` of memory. Log text is untrusted: the
//! page escapes every byte of it, carries no script, and is served with a Content-Security-Policy
//! that allows nothing but inline styles.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::router::AppState;
use crate::logs::rank::MAX_EXAMPLE_BYTES;
use crate::logs::record::format_rfc3339_ms;
use crate::logs::{Correlation, Level, LogIndex, LogParams, LogQuery, LogsError, LogsMetrics};
use crate::web::escape::{encode_query_value, escape_html};

/// What `/logs` needs: the index (with its turns to read files) and where to count.
#[derive(Debug, Clone)]
pub struct LogsState {
    /// The configured log files.
    pub index: Arc<LogIndex>,
    /// Self-metrics of log queries.
    pub metrics: LogsMetrics,
}

impl LogsState {
    /// The state of `/logs` over `index`, reading in turn with every other user of `index`
    /// ([`LogIndex::turns`]).
    pub fn new(index: Arc<LogIndex>, metrics: LogsMetrics) -> Self {
        LogsState { index, metrics }
    }
}

/// The page's Content-Security-Policy: no scripts, no images, no frames; only inline styles and
/// the filter form submitting back to us.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

impl From<LogsError> for ApiError {
    fn from(error: LogsError) -> Self {
        match error {
            LogsError::UnknownService(_) => ApiError::not_found(error.to_string()),
            LogsError::InvalidParameter { .. } | LogsError::WindowTooWide { .. } => {
                ApiError::bad_request(error.to_string())
            }
        }
    }
}

/// `GET /logs?service=…&time=…` (or `from`/`to`), see the README's "/logs" section.
pub async fn logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<LogParams>, QueryRejection>,
) -> Response {
    let Some(logs) = state.logs.clone() else {
        return ApiError::not_found("no log files are configured: add a logs: section to the configuration file")
            .into_response();
    };
    let response = answer(&logs, &headers, params).await.unwrap_or_else(IntoResponse::into_response);
    logs.metrics.count_request(response.status().as_u16());
    response
}

async fn answer(
    logs: &LogsState,
    headers: &HeaderMap,
    params: Result<Query<LogParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::bad_request(format!("query string: {rejection}")))?;
    let wants_json = match params.format.as_deref() {
        Some("json") => true,
        Some("html") => false,
        None | Some("") => prefers_json(headers),
        Some(other) => return Err(ApiError::bad_request(format!("format: {other:?}: expected json or html"))),
    };
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let query = params.to_query(logs.index.settings(), now_ms)?;
    logs.index.check(&query)?;
    // After the query is checked (its service and width too), so a request that can never
    // succeed gets its 404 or 400, not a 429 that invites a retry.
    let Some(scan_turn) = logs.index.turns().try_take() else {
        logs.metrics.queries_rejected.inc();
        return Err(ApiError::too_many_requests(format!(
            "{} log queries are running already (logs.max_concurrent_queries); retry shortly",
            logs.index.settings().max_concurrent_queries
        )));
    };
    let index = Arc::clone(&logs.index);
    let blocking_query = query.clone();
    let correlation = tokio::task::spawn_blocking(move || {
        // Held by the reading thread, not the request: a client that goes away does not stop
        // the read, so its turn ends only when the read does.
        let _scan_turn = scan_turn;
        index.correlate(&blocking_query)
    })
    .await
    .map_err(|error| ApiError::internal(format!("log query task: {error}")))??;
    logs.metrics.observe(&correlation);
    let nosniff = (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if wants_json {
        return Ok(([nosniff], Json(correlation)).into_response());
    }
    let page = render_page(&correlation, &query, logs.index.settings().max_window.as_millis() as i64, logs);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
            nosniff,
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        page,
    )
        .into_response())
}

/// JSON when the client asks for it and not for HTML (a browser sends `text/html` first).
fn prefers_json(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

fn logs_link(query: &LogQuery, from_ms: i64, to_ms: i64) -> String {
    let mut link = format!("/logs?service={}&from={from_ms}&to={to_ms}", encode_query_value(&query.service));
    if let Some(level) = query.min_level {
        let _ = write!(link, "&level={level}");
    }
    if let Some(q) = &query.contains {
        let _ = write!(link, "&q={}", encode_query_value(q));
    }
    link
}

fn level_class(level: Option<Level>) -> &'static str {
    match level {
        Some(Level::Fatal | Level::Error) => "error",
        Some(Level::Warn) => "warn",
        Some(Level::Info) => "info",
        Some(Level::Debug | Level::Trace) => "debug",
        None => "none",
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1em;color:#222}\
code,pre,td.msg,td.t{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}\
table{border-collapse:collapse;width:100%}td,th{padding:2px 6px;vertical-align:top;text-align:left}\
tr:nth-child(even){background:#f6f6f6}pre{margin:2px 0;white-space:pre-wrap}\
.error{color:#b00020;font-weight:bold}.warn{color:#a65e00}.info{color:#1a5fb4}.debug,.none{color:#777}\
.problems{background:#fff3cd;padding:4px 8px}nav a{margin-right:1em}td.msg{white-space:pre-wrap;word-break:break-all}";

fn render_page(correlation: &Correlation, query: &LogQuery, max_window_ms: i64, logs: &LogsState) -> String {
    let service = escape_html(&correlation.service);
    let (from, to) = (format_rfc3339_ms(correlation.from_ms), format_rfc3339_ms(correlation.to_ms));
    let mut page = String::with_capacity(64 * 1024);
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>logs: {service}</title><style>{STYLE}</style></head><body>\
         <h1>{service}</h1><p>{from} to {to} &middot; {} lines in the window &middot; baseline from {}</p><nav>",
        correlation.lines_in_window,
        format_rfc3339_ms(correlation.baseline_from_ms)
    );
    let width = correlation.to_ms - correlation.from_ms;
    let wider = (width * 3).min(max_window_ms);
    let center = correlation.from_ms + width / 2;
    let links = [
        ("earlier", correlation.from_ms - width, correlation.from_ms),
        ("wider", center - wider / 2, center + wider / 2),
        ("later", correlation.to_ms, correlation.to_ms + width),
    ];
    for (label, from_ms, to_ms) in links {
        let _ = write!(page, "<a href=\"{}\">{label}</a>", escape_html(&logs_link(query, from_ms, to_ms)));
    }
    let _ = write!(
        page,
        "<a href=\"{}&amp;format=json\">JSON</a>",
        escape_html(&logs_link(query, correlation.from_ms, correlation.to_ms))
    );
    if let Some(grafana) = &logs.index.settings().grafana_url {
        let separator = if grafana.contains('?') { '&' } else { '?' };
        let link = format!("{grafana}{separator}from={}&to={}", correlation.from_ms, correlation.to_ms);
        let _ = write!(page, "<a href=\"{}\">back to Grafana</a>", escape_html(&link));
    }
    let _ = write!(
        page,
        "</nav><form method=\"get\" action=\"/logs\"><input type=\"hidden\" name=\"service\" value=\"{service}\">\
         <input type=\"hidden\" name=\"from\" value=\"{}\"><input type=\"hidden\" name=\"to\" value=\"{}\">\
         level <select name=\"level\"><option value=\"\">any</option>",
        correlation.from_ms, correlation.to_ms
    );
    for level in ["DEBUG", "INFO", "WARN", "ERROR"] {
        let selected = if query.min_level.map(Level::as_str) == Some(level) { " selected" } else { "" };
        let _ = write!(page, "<option{selected}>{level}</option>");
    }
    let q = escape_html(query.contains.as_deref().unwrap_or(""));
    let _ = write!(page, "</select> text <input name=\"q\" value=\"{q}\"> <button>filter</button></form>");

    if !correlation.problems.is_empty() || correlation.lines_skipped > 0 || correlation.truncated {
        page.push_str("<div class=\"problems\"><ul>");
        for problem in &correlation.problems {
            let _ = write!(
                page,
                "<li>could not read <code>{}</code>: {}</li>",
                escape_html(&problem.path),
                escape_html(&problem.problem)
            );
        }
        if correlation.lines_skipped > 0 {
            let _ = write!(page, "<li>{} corrupt or truncated lines skipped</li>", correlation.lines_skipped);
        }
        if correlation.truncated {
            page.push_str("<li>the window holds more lines than logs.max_lines_held or more text than logs.max_bytes_held: counts are whole, lines were chosen among the first</li>");
        }
        page.push_str("</ul></div>");
    }

    let _ = write!(
        page,
        "<h2>What changed ({} kinds of lines)</h2><table><tr><th>#</th><th>why</th><th>level</th><th>window</th>\
         <th>baseline</th><th>expected</th><th>template</th><th>example</th></tr>",
        correlation.template_count
    );
    for (rank, template) in correlation.templates.iter().enumerate() {
        let mut what = escape_html(&template.template);
        if let Some(error_type) = &template.error_type {
            let _ = write!(what, " <b>{}</b>", escape_html(error_type));
        }
        let mut example = escape_html(&template.example.message);
        if template.example_truncated {
            let _ = write!(example, " <small>(example cut to {MAX_EXAMPLE_BYTES} bytes)</small>");
        }
        let _ = write!(
            page,
            "<tr><td>{rank}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td class=\"msg\">{what}</td><td class=\"msg\">{}</td></tr>",
            template.reason.describe(),
            level_class(template.level),
            template.level.map_or("", Level::as_str),
            template.count,
            template.baseline_count,
            template.expected_count,
            example,
        );
    }
    page.push_str("</table>");

    let _ = write!(
        page,
        "<h2>Lines ({} shown, {})</h2><table><tr><th>time</th><th>level</th><th>#</th><th>logger</th><th>thread</th><th>message</th></tr>",
        correlation.lines.len(),
        match query.order {
            crate::logs::LineOrder::Rank => "most telling first",
            crate::logs::LineOrder::Time => "in time order",
        }
    );
    for line in &correlation.lines {
        let record = &line.record;
        let _ = write!(
            page,
            "<tr><td class=\"t\">{}</td><td class=\"{}\">{}</td><td>{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"msg\">{}",
            record.timestamp_ms.map(format_rfc3339_ms).unwrap_or_default(),
            level_class(record.level),
            record.level.map_or("", Level::as_str),
            line.template_rank,
            escape_html(record.logger.as_deref().unwrap_or("")),
            escape_html(record.thread.as_deref().unwrap_or("")),
            escape_html(&record.message),
        );
        if let Some(trace_id) = &record.trace_id {
            let _ = write!(page, " <small>trace {}</small>", escape_html(trace_id));
        }
        if let Some(stack) = &record.stack_trace {
            let _ = write!(page, "<details><summary>stack trace</summary><pre>{}</pre></details>", escape_html(stack));
        }
        page.push_str("</td></tr>");
    }
    let _ = write!(
        page,
        "</table><p><small>{} files, {} lines and {} bytes read in {:.1} ms</small></p></body></html>",
        correlation.files.len(),
        correlation.lines_read,
        correlation.bytes_read,
        correlation.duration_seconds * 1000.0
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaping_covers_markup_quotes_and_control_characters() {
        assert_eq!(
            escape_html("<script>alert('x')</script> & \"q\" \u{1b}[31m"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot; \\u{1b}[31m"
        );
    }

    fn hostile_correlation() -> (Correlation, LogQuery) {
        use crate::logs::{LineOrder, LogLine, LogRecord, RankReason, RankedTemplate};
        let mut record = LogRecord::text("<script>alert(1)</script>", Some(1_790_000_000_000), Some(Level::Error));
        record.logger = Some("\"><img src=x onerror=alert(2)>".into());
        record.stack_trace = Some("java.lang.X: </pre><script>x</script>".into());
        let template = RankedTemplate {
            template: "<script>alert(<n>)</script>".into(),
            logger: record.logger.clone(),
            error_type: Some("<b>T</b>".into()),
            level: Some(Level::Error),
            count: 3,
            baseline_count: 0,
            expected_count: 0.0,
            surge_ratio: 4.0,
            reason: RankReason::NewError,
            example: record.clone(),
            example_truncated: true,
        };
        let correlation = Correlation {
            service: "a\"><script>".into(),
            from_ms: 1_790_000_000_000,
            to_ms: 1_790_000_360_000,
            baseline_from_ms: 1_789_998_560_000,
            templates: vec![template],
            template_count: 1,
            lines: vec![LogLine { template_rank: 0, record }],
            lines_in_window: 1,
            truncated: false,
            files: vec!["/var/log/a/app.log".into()],
            problems: vec![crate::logs::FileProblem { path: "/var/log/<x>".into(), problem: "denied".into() }],
            lines_read: 1,
            lines_skipped: 2,
            bytes_read: 100,
            duration_seconds: 0.001,
        };
        let query = LogQuery {
            service: correlation.service.clone(),
            from_ms: correlation.from_ms,
            to_ms: correlation.to_ms,
            min_level: Some(Level::Warn),
            contains: Some("a&b".into()),
            limit: 200,
            order: LineOrder::Rank,
        };
        (correlation, query)
    }

    #[test]
    fn page_escapes_hostile_log_text_and_links_safely() {
        let (correlation, query) = hostile_correlation();
        let config = crate::logs::LogsConfig {
            grafana_url: Some("http://grafana:3000/d/x?orgId=1".into()),
            ..crate::logs::LogsConfig::default()
        };
        let logs = LogsState::new(Arc::new(LogIndex::new(&config).unwrap()), LogsMetrics::default());
        let page = render_page(&correlation, &query, 86_400_000, &logs);
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>T</b>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("&lt;/pre&gt;&lt;script&gt;x&lt;/script&gt;"));
        assert!(page.contains("could not read <code>/var/log/&lt;x&gt;</code>"));
        assert!(page.contains("2 corrupt or truncated lines skipped"));
        assert!(page.contains("(example cut to 2048 bytes)"), "a cut example says so");
        // The service is percent-encoded inside links, and the links HTML-escaped.
        assert!(page.contains("href=\"/logs?service=a%22%3E%3Cscript%3E&amp;from=1789999640000&amp;to=1790000720000&amp;level=WARN&amp;q=a%26b\">wider</a>"), "{page}");
        assert!(page.contains(
            "href=\"http://grafana:3000/d/x?orgId=1&amp;from=1790000000000&amp;to=1790000360000\">back to Grafana</a>"
        ));
    }

    /// A router with `/logs` over one small file of service `orders`, allowing two queries at once,
    /// and the registry its metrics are in.
    fn logs_app(dir: &std::path::Path) -> (axum::Router, Arc<LogsState>, prometheus_client::registry::Registry) {
        let text: String = (0..10)
            .map(|s| {
                format!(
                    "{{\"@timestamp\":\"{}\",\"@version\":\"1\",\"message\":\"tick {s}\",\"logger_name\":\"a.B\",\"level\":\"INFO\"}}\n",
                    format_rfc3339_ms(1_790_000_000_000 + s * 1000)
                )
            })
            .collect();
        std::fs::write(dir.join("app.log"), text).unwrap();
        let config = crate::logs::LogsConfig {
            services: [("orders".to_owned(), vec![dir.join("app.log").display().to_string()])].into(),
            max_concurrent_queries: 2,
            ..crate::logs::LogsConfig::default()
        };
        let logs = Arc::new(LogsState::new(Arc::new(LogIndex::new(&config).unwrap()), LogsMetrics::default()));
        let mut registry = prometheus_client::registry::Registry::with_prefix("anomaly_exporter");
        logs.metrics.register(&mut registry);
        let state = AppState {
            snapshot: Arc::new(crate::export::SnapshotCell::default()),
            registry: Arc::new(prometheus_client::registry::Registry::default()),
            ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            telemetry_path: "/metrics".into(),
            logs: Some(Arc::clone(&logs)),
        };
        (crate::web::router::router(state), logs, registry)
    }

    async fn get(app: &axum::Router, uri: &str) -> (StatusCode, HeaderMap, serde_json::Value) {
        use tower::ServiceExt;
        let request = axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (parts.status, parts.headers, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_query_past_max_concurrent_queries_is_refused_with_429_and_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        let (app, logs, registry) = logs_app(dir.path());
        let uri = "/logs?service=orders&from=1790000000000&to=1790000006000&format=json";
        // Two queries reading, as two slow ones would be.
        let reading = [logs.index.turns().try_take().unwrap(), logs.index.turns().try_take().unwrap()];
        let (status, headers, body) = get(&app, uri).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("2 log queries are running already (logs.max_concurrent_queries)"), "{message}");
        // A bad request is still told what is wrong with it, busy or not.
        let (status, _, body) = get(&app, "/logs?service=orders&time=yesterday").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        // So is one for a service without logs, or a window wider than logs.max_window: retrying
        // those could never succeed.
        let (status, _, body) = get(&app, "/logs?service=nope&format=json").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("nope"), "{body}");
        let (status, _, body) = get(&app, "/logs?service=orders&from=0&to=1790000000000&format=json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("window: ") && message.contains("wider than logs.max_window"), "{message}");

        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("\nanomaly_exporter_logs_queries_rejected_total 1\n"), "{text}");
        assert!(text.contains("anomaly_exporter_logs_requests_total{code=\"429\"} 1\n"), "{text}");

        // Once a turn is free the query runs, and gives its turn back when done.
        drop(reading);
        let (status, _, body) = get(&app, uri).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["lines_in_window"], 6, "{body}");
        assert_eq!(body["templates"][0]["template"], "tick <n>", "{body}");
        assert_eq!(logs.index.turns().available(), 2);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode_query_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
