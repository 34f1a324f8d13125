//! Log correlation: a service's log lines around a moment, the most telling first.
//!
//! [`LogIndex::correlate`] is the one entry point, used by the `/logs` page (a Grafana data link)
//! and by the alert notifier alike. It finds the window in each of the service's configured files
//! by binary search ([`search`]), parses every line whatever its format ([`parse`]), groups the
//! lines into message templates ([`template`]) and ranks the templates against a baseline just
//! before the window ([`rank`]). Only files named by the configuration are read; a request names
//! a service, never a path.
//!
//! The call is blocking file I/O: from async code, run it in `spawn_blocking`, holding a turn
//! from [`LogIndex::turns`] ([`turns`]): the daemon's callers share `logs.max_concurrent_queries`
//! turns, so the notifier cannot add reads beyond what `/logs` is allowed.
//!
//! **Memory of one call.** The window's lines held for the answer: at most
//! `logs.max_lines_held` lines and `logs.max_bytes_held` bytes of their text. One example line per
//! template, for at most [`rank::MAX_TEMPLATES`] templates, each cut to [`rank::MAX_EXAMPLE_BYTES`]
//! (about 20 MiB in all, outside `logs.max_bytes_held`, which decides only which lines are held;
//! a cut example is flagged in [`RankedTemplate::example_truncated`]). A read buffer and the
//! longest line ([`search::MAX_LINE_BYTES`]) per reading thread, of which there are two.
//!
//! **Rotation.** The service's files are listed and opened before any is read, each file once by
//! (device, inode), and listed again if a rotation moved a name in between (see `files.rs`); each
//! is then read through its one handle ([`search::OpenLogFile`]).
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use anomaly_exporter::logs::{LogIndex, LogQuery, LogsConfig};
//! let config: LogsConfig = serde_yaml_ng::from_str("services: {checkout: [/var/log/checkout/app.log*]}")?;
//! let index = LogIndex::new(&config)?;
//! let correlation = index.correlate(&LogQuery::around("checkout", 1_790_000_000_000, index.settings()))?;
//! for template in correlation.templates.iter().take(3) {
//!     println!("{} x{} ({})", template.template, template.count, template.reason.describe());
//! }
//! # Ok(()) }
//! ```
//!
//! Not for: tailing, full-text search over days, or shipping logs anywhere. It reads what the
//! services already write, on demand.

pub mod config;
mod files;
pub mod metrics;
pub mod parse;
pub mod query;
pub mod rank;
pub mod record;
pub mod search;
pub mod template;
pub mod turns;

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

pub use config::{LogsConfig, LogsConfigError, LogsSettings};
pub use metrics::LogsMetrics;
pub use query::{LineOrder, LogParams, LogQuery};
pub use rank::{RankReason, RankedTemplate};
pub use record::{Level, LineFormat, LogRecord};
pub use turns::{QueryTurn, QueryTurns};

use parse::RecordView;
use rank::TemplateCounter;

/// Templates listed in an answer at most (the lines may belong to others; `template_count` says
/// how many there were).
pub const MAX_TEMPLATES_SHOWN: usize = 50;

/// Why a query was refused. Each maps to one HTTP status in the web layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogsError {
    /// No such service in `logs:` (404).
    #[error("service {0:?} has no configured log files")]
    UnknownService(String),
    /// A parameter is malformed or contradicts another (400).
    #[error("{parameter}: {problem}")]
    InvalidParameter {
        /// The parameter's name.
        parameter: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The window is wider than `logs.max_window` (400).
    #[error(
        "window: {width_seconds} s is wider than logs.max_window ({max_seconds} s); narrow from/to or before/after"
    )]
    WindowTooWide {
        /// The window asked for.
        width_seconds: i64,
        /// The limit.
        max_seconds: i64,
    },
}

/// A file that could not be read, or a glob with nothing behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileProblem {
    /// The file or glob.
    pub path: String,
    /// What went wrong.
    pub problem: String,
}

/// One line of the answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    /// The rank of its template in [`Correlation::templates`] (0 = most telling).
    pub template_rank: usize,
    /// The line.
    #[serde(flatten)]
    pub record: LogRecord,
}

/// The answer: ranked templates above the lines, and what could not be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Correlation {
    /// The service.
    pub service: String,
    /// Window start, ms since the epoch.
    pub from_ms: i64,
    /// Window end, ms since the epoch (exclusive).
    pub to_ms: i64,
    /// Baseline start; the baseline ends at `from_ms`.
    pub baseline_from_ms: i64,
    /// The most telling templates, at most [`MAX_TEMPLATES_SHOWN`], most telling first.
    pub templates: Vec<RankedTemplate>,
    /// Templates in the window in all.
    pub template_count: usize,
    /// Up to `limit` lines: the most telling ones, in the query's order.
    pub lines: Vec<LogLine>,
    /// Lines in the window that passed the filters.
    pub lines_in_window: u64,
    /// True when the window held more lines than `logs.max_lines_held`, or more line text than
    /// `logs.max_bytes_held`: the counts are whole, but the lines shown were chosen among the
    /// first ones only.
    pub truncated: bool,
    /// The files read.
    pub files: Vec<String>,
    /// Files that could not be read (the answer holds what the others gave).
    pub problems: Vec<FileProblem>,
    /// Lines read, in the window, the baseline and the search's slack.
    pub lines_read: u64,
    /// Corrupt, truncated or overlong lines skipped.
    pub lines_skipped: u64,
    /// Bytes of log text read.
    pub bytes_read: u64,
    /// How long the query took, in seconds.
    pub duration_seconds: f64,
}

/// The configured log files of every service, ready to be queried. Cheap to share (`Arc`), and
/// holds no open files: globs are expanded on every query, so rotation needs no reload.
#[derive(Debug, Clone)]
pub struct LogIndex {
    settings: LogsSettings,
    /// Files whose range is at least this long are read on two threads.
    split_min_bytes: u64,
    /// `logs.max_concurrent_queries` turns, shared by everyone who queries this index (and by
    /// its clones).
    turns: QueryTurns,
}

impl LogIndex {
    /// Validates `config`; errors name the key (`logs.services.checkout: no globs ...`).
    pub fn new(config: &LogsConfig) -> Result<Self, LogsConfigError> {
        Ok(Self::from_settings(config.validate()?))
    }

    /// An index over already validated settings.
    pub fn from_settings(settings: LogsSettings) -> Self {
        let turns = QueryTurns::new(settings.max_concurrent_queries);
        LogIndex { settings, split_min_bytes: SPLIT_MIN_BYTES, turns }
    }

    /// The turns to read ([`turns`]): every caller in the daemon takes one before
    /// [`LogIndex::correlate`] and holds it until the call returns, so all of them together read
    /// at most `logs.max_concurrent_queries` at once.
    pub fn turns(&self) -> &QueryTurns {
        &self.turns
    }

    /// The validated settings (defaults for the window, limits, Grafana link).
    pub fn settings(&self) -> &LogsSettings {
        &self.settings
    }

    /// Every service with logs: the configured ones and those found through `service_files`.
    pub fn services(&self) -> Vec<String> {
        files::services(&self.settings)
    }

    /// The service's window, ranked. Refuses an unknown service, an empty window or one wider
    /// than `logs.max_window`; a file that cannot be read is named in
    /// [`Correlation::problems`], and corrupt lines are counted in
    /// [`Correlation::lines_skipped`].
    pub fn correlate(&self, query: &LogQuery) -> Result<Correlation, LogsError> {
        let started = Instant::now();
        self.check(query)?;
        let listing = files::list(&self.settings, &query.service)?;
        Ok(self.correlate_listed(query, listing, started))
    }

    /// Refuses what [`LogIndex::correlate`] would refuse before reading anything: an empty
    /// window, one wider than `logs.max_window`, or an unknown service. It opens no file, so the
    /// web handler asks it before taking a turn: a request that can never succeed is told so even
    /// while every turn is busy, instead of being told to retry.
    pub fn check(&self, query: &LogQuery) -> Result<(), LogsError> {
        if query.from_ms >= query.to_ms {
            return Err(LogsError::InvalidParameter {
                parameter: "from",
                problem: "the window is empty: its start must be before its end".into(),
            });
        }
        let width_ms = query.to_ms - query.from_ms;
        let max_ms = self.settings.max_window.as_millis() as i64;
        if width_ms > max_ms {
            return Err(LogsError::WindowTooWide { width_seconds: width_ms / 1000, max_seconds: max_ms / 1000 });
        }
        files::globs_of(&self.settings, &query.service).map(drop)
    }

    /// [`LogIndex::correlate`] once the query is checked and the service's files listed: opens
    /// them (following a rotation since the listing, [`files::open_listed`]) and reads them.
    fn correlate_listed(&self, query: &LogQuery, listing: files::Listing, started: Instant) -> Correlation {
        let width_ms = query.to_ms - query.from_ms;
        let baseline_from_ms = query.from_ms - width_ms * i64::from(self.settings.baseline_factor);
        let (opened, mut problems) =
            files::open_listed(&self.settings, &query.service, listing, baseline_from_ms - search::ORDER_SLACK_MS);
        let needle = query.contains.as_ref().map(|q| q.to_lowercase());

        let filter = WindowFilter {
            from_ms: query.from_ms,
            min_level: query.min_level,
            needle: needle.as_deref(),
            hold: HoldLimits { max_lines: self.settings.max_lines_held, max_bytes: self.settings.max_bytes_held },
        };
        let mut tally = Tally::default();
        let (mut lines_read, mut lines_skipped, mut bytes_read) = (0, 0, 0);
        let mut files_read = Vec::with_capacity(opened.len());
        for files::OpenedFile { path, file, .. } in &opened {
            match self.scan_into(file, baseline_from_ms, query.to_ms, &filter, &mut tally) {
                Ok(stats) => {
                    lines_read += stats.lines_read;
                    lines_skipped += stats.lines_skipped;
                    bytes_read += stats.bytes_read;
                    files_read.push(path.display().to_string());
                }
                Err(error) => {
                    tracing::debug!(path = %path.display(), error = %error, "log file unreadable");
                    problems.push(FileProblem { path: path.display().to_string(), problem: error.to_string() });
                }
            }
        }
        let Tally { counter, held, held_bytes: _, lines_in_window, truncated, earliest_seen } = tally;
        // A baseline cut short by the start of the logs counts only for what it covers.
        let baseline_ms = (query.from_ms - baseline_from_ms.max(earliest_seen.min(query.from_ms))).max(0);
        let ranking = counter.rank(width_ms, baseline_ms);
        let mut held: Vec<(usize, HeldLine)> =
            held.into_iter().map(|line| (ranking.rank_of(line.group), line)).collect();
        held.sort_by_key(|(rank, line)| (*rank, line.timestamp_ms));
        held.truncate(query.limit);
        let mut lines: Vec<LogLine> = held
            .into_iter()
            .map(|(template_rank, line)| LogLine { template_rank, record: line.text.into_record() })
            .collect();
        if query.order == LineOrder::Time {
            lines.sort_by_key(|line| line.record.timestamp_ms);
        }
        let template_count = ranking.templates.len();
        let mut templates = ranking.templates;
        templates.truncate(MAX_TEMPLATES_SHOWN);
        Correlation {
            service: query.service.clone(),
            from_ms: query.from_ms,
            to_ms: query.to_ms,
            baseline_from_ms,
            templates,
            template_count,
            lines,
            lines_in_window,
            truncated,
            files: files_read,
            problems,
            lines_read,
            lines_skipped,
            bytes_read,
            duration_seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// Ranges shorter than this are read on one thread: below it a second thread costs more than
/// it saves.
const SPLIT_MIN_BYTES: u64 = 1 << 20;

impl LogIndex {
    /// Reads one file's range into `tally`, in two halves on two threads when it is big enough
    /// ([`search::OpenLogFile::scan_in_two`]); the second half's tally is merged after the
    /// first's, so the answer is the one a single pass in file order gives. Both halves read the
    /// one handle: a rotation during the scan cannot swap the file under either half.
    fn scan_into(
        &self,
        file: &search::OpenLogFile,
        from_ms: i64,
        to_ms: i64,
        filter: &WindowFilter<'_>,
        tally: &mut Tally,
    ) -> std::io::Result<search::ScanStats> {
        let mut second = Tally::default();
        let scan = file.scan_in_two(
            from_ms,
            to_ms,
            self.split_min_bytes,
            &mut |view| tally.visit(view, filter),
            &mut |view| second.visit(view, filter),
        )?;
        let mut stats = scan.first;
        let Some(second_from) = scan.second_from else { return Ok(stats) };
        if second.counter.may_have_folded() {
            // Merging group by group is exact only when the second half folded no line into the
            // overflow group (more than MAX_TEMPLATES kinds of lines): read it again after the first.
            let again = file.scan_from(second_from, from_ms, to_ms, &mut |view| tally.visit(view, filter))?;
            stats.add(again);
        } else {
            tally.absorb(second, &filter.hold);
            stats.add(scan.second);
        }
        Ok(stats)
    }
}

/// What decides where a line counts: the window's start and the query's filters.
struct WindowFilter<'a> {
    from_ms: i64,
    min_level: Option<Level>,
    needle: Option<&'a str>,
    hold: HoldLimits,
}

/// How much of the window one answer holds: the lines are held in file order until one would
/// pass either limit, and none after it, so the held lines are always the window's first ones
/// (which is what lets [`Tally::absorb`] give the answer of one pass). Bytes are bounded as well
/// as lines because a line may be up to [`search::MAX_LINE_BYTES`] long.
#[derive(Debug, Clone, Copy)]
struct HoldLimits {
    max_lines: usize,
    /// Bytes of held text ([`HeldText::bytes`]).
    max_bytes: usize,
}

impl HoldLimits {
    /// True when a line of `bytes` may join `lines` lines of `held_bytes` bytes.
    fn admit(&self, lines: usize, held_bytes: usize, bytes: usize) -> bool {
        lines < self.max_lines && held_bytes.saturating_add(bytes) <= self.max_bytes
    }
}

/// What the lines of a stretch of log add up to: the template counts, and the window's lines
/// held for the answer.
#[derive(Debug)]
struct Tally {
    counter: TemplateCounter,
    held: Vec<HeldLine>,
    /// The text bytes of `held`.
    held_bytes: usize,
    lines_in_window: u64,
    /// A window line was not held: holding has stopped for good.
    truncated: bool,
    earliest_seen: i64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            counter: TemplateCounter::default(),
            held: Vec::new(),
            held_bytes: 0,
            lines_in_window: 0,
            truncated: false,
            earliest_seen: i64::MAX,
        }
    }
}

impl Tally {
    fn visit(&mut self, view: RecordView<'_>, filter: &WindowFilter<'_>) {
        let Some(timestamp) = view.timestamp_ms else { return };
        self.earliest_seen = self.earliest_seen.min(timestamp);
        if !passes(&view, filter.min_level, filter.needle) {
            return;
        }
        if timestamp < filter.from_ms {
            self.counter.add_baseline_line(view.logger.as_deref(), &view.message, view.error_type.as_deref());
            return;
        }
        self.lines_in_window += 1;
        let group = self.counter.add_window_view(&view);
        if self.truncated {
            return;
        }
        // Copied before it is measured, so visit and absorb measure the same thing; a line that
        // does not fit is copied for nothing only once, since holding stops there.
        let text = HeldText::of(view);
        let bytes = text.bytes();
        if filter.hold.admit(self.held.len(), self.held_bytes, bytes) {
            self.held_bytes += bytes;
            self.held.push(HeldLine { group, timestamp_ms: timestamp, text });
        } else {
            self.truncated = true;
        }
    }

    /// Adds the tally of the lines that follow this one's (see [`TemplateCounter::absorb`]),
    /// holding its lines as far as `hold` lets this one: `later` held a prefix of its lines
    /// within the same limits from nothing, so the lines one pass would hold are a prefix of
    /// those.
    fn absorb(&mut self, later: Tally, hold: &HoldLimits) {
        let groups = self.counter.absorb(later.counter);
        self.lines_in_window += later.lines_in_window;
        self.earliest_seen = self.earliest_seen.min(later.earliest_seen);
        for line in later.held {
            let bytes = line.text.bytes();
            if !self.truncated && hold.admit(self.held.len(), self.held_bytes, bytes) {
                self.held_bytes += bytes;
                self.held.push(HeldLine { group: groups[line.group], ..line });
            } else {
                self.truncated = true;
                break;
            }
        }
        self.truncated |= later.truncated;
    }
}

/// A window line kept for the answer.
#[derive(Debug)]
struct HeldLine {
    group: usize,
    timestamp_ms: i64,
    text: HeldText,
}

/// A held line as cheaply as it can be kept: most window lines are held and few shown (`limit`),
/// so a line is kept as its text, one allocation, and parsed again only if it is shown.
#[derive(Debug)]
enum HeldText {
    /// The line, which parses into the record again.
    Line(Box<str>),
    /// A record that is not one line (a text line with its continuation lines).
    Record(Box<LogRecord>),
}

impl HeldText {
    /// The text bytes kept: what [`HoldLimits::max_bytes`] counts. The few dozen bytes of
    /// bookkeeping per line are bounded by [`HoldLimits::max_lines`] instead.
    fn bytes(&self) -> usize {
        match self {
            HeldText::Line(line) => line.len(),
            HeldText::Record(record) => record.text_bytes(),
        }
    }

    fn of(view: RecordView<'_>) -> Self {
        match view.line() {
            Some(line) => HeldText::Line(line.into()),
            None => HeldText::Record(Box::new(view.into_record())),
        }
    }

    fn into_record(self) -> LogRecord {
        match self {
            HeldText::Line(line) => match parse::parse_view(&line) {
                parse::ParsedView::Record(view) => view.into_record(),
                // It parsed as a record when it was held: not reached.
                parse::ParsedView::Blank | parse::ParsedView::Corrupt => LogRecord::text(&line, None, None),
            },
            HeldText::Record(record) => *record,
        }
    }
}

fn passes(record: &RecordView<'_>, min_level: Option<Level>, needle: Option<&str>) -> bool {
    if let Some(min_level) = min_level
        && record.level.is_none_or(|level| level < min_level)
    {
        return false;
    }
    let Some(needle) = needle else { return true };
    let contains = |text: &str| text.to_lowercase().contains(needle);
    contains(&record.message)
        || record.logger.as_deref().is_some_and(contains)
        || record.error_type.as_deref().is_some_and(contains)
        || record.stack_trace.as_deref().is_some_and(contains)
}

/// The paths a service's logs are read from, for messages and tests.
pub fn files_of_service(index: &LogIndex, service: &str) -> Result<(Vec<PathBuf>, Vec<FileProblem>), LogsError> {
    files::files_of(&index.settings, service)
}

#[cfg(test)]
mod tests;
