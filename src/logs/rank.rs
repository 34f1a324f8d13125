//! Correlation ranking: which kinds of lines changed in the window, compared with just before it.
//!
//! Lines are grouped by (logger, message template, exception class). For each group the count
//! in the window is compared with the count expected from the baseline (the `baseline_factor`
//! window lengths just before the window, scaled to the window's length):
//!
//! - **new**: never seen in the baseline;
//! - **surging**: at least three times the expected count (with +1 smoothing on both sides) and
//!   at least three lines more than expected;
//! - otherwise **steady**.
//!
//! Groups are ordered by tier, then by the surge ratio, then by count:
//! new or surging errors (ERROR and FATAL) first, then new or surging warnings, then other new or
//! surging groups, then steady errors, steady warnings, and the rest. A window full of the usual
//! INFO chatter thus still puts the one new exception on top.

use std::collections::HashMap;

use serde::Serialize;

use super::parse::RecordView;
use super::record::{Level, LogRecord};
use super::template::{push_template, truncate_at_char_boundary};

/// Distinct groups tracked per query; beyond this, further new groups are folded into one
/// overflow group, which keeps memory bounded on a window of random text.
pub const MAX_TEMPLATES: usize = 10_000;

/// What a group's example line may keep, in bytes ([`LogRecord::shrink_to`]): a longer one is
/// cut, and [`RankedTemplate::example_truncated`] says so. Every group keeps its example until
/// the ranking, whether or not it is shown, so this bounds the examples of one query at
/// `MAX_TEMPLATES` × 2 KiB, about 20 MiB, where uncut lines (up to
/// [`super::search::MAX_LINE_BYTES`], 1 MiB, each) could hold 10 GB. They are not counted in
/// `logs.max_bytes_held`: that budget decides which window lines are held, and an example is
/// kept for every group however the budget stands. 2 KiB shows a message whole in all but odd
/// cases, with the start of its stack trace.
pub const MAX_EXAMPLE_BYTES: usize = 2048;

/// What a group's logger and exception class may keep, in bytes: a line can name either with up
/// to [`super::search::MAX_LINE_BYTES`] (1 MiB), and each group holds its key twice (the lookup
/// string and the key shown), so uncut names could hold 40 GB at [`MAX_TEMPLATES`] groups. With
/// the template's own 4 KiB bound, a group's key holds at most 5 KiB, about 100 MiB for a query
/// at the group limit. Real logger and exception names are well under 256 bytes; two names that
/// share their first 512 bytes count as one.
pub const MAX_NAME_BYTES: usize = 512;

/// Why a template is where it is in the ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankReason {
    /// An error (ERROR or FATAL) absent from the baseline.
    NewError,
    /// An error at least three times its baseline rate.
    SurgingError,
    /// A warning absent from the baseline.
    NewWarning,
    /// A warning at least three times its baseline rate.
    SurgingWarning,
    /// Another line absent from the baseline.
    New,
    /// Another line at least three times its baseline rate.
    Surging,
    /// An error at its usual rate.
    Error,
    /// A warning at its usual rate.
    Warning,
    /// Everything else.
    Steady,
}

impl RankReason {
    /// A short phrase for people.
    pub fn describe(self) -> &'static str {
        match self {
            RankReason::NewError => "new error",
            RankReason::SurgingError => "surging error",
            RankReason::NewWarning => "new warning",
            RankReason::SurgingWarning => "surging warning",
            RankReason::New => "new",
            RankReason::Surging => "surging",
            RankReason::Error => "error at its usual rate",
            RankReason::Warning => "warning at its usual rate",
            RankReason::Steady => "usual",
        }
    }

    fn tier(self) -> u8 {
        match self {
            RankReason::NewError | RankReason::SurgingError => 0,
            RankReason::NewWarning | RankReason::SurgingWarning => 1,
            RankReason::New | RankReason::Surging => 2,
            RankReason::Error => 3,
            RankReason::Warning => 4,
            RankReason::Steady => 5,
        }
    }
}

/// One kind of line and how it moved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankedTemplate {
    /// The message template (variable parts masked).
    pub template: String,
    /// The logger, if the lines have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logger: Option<String>,
    /// The exception class, if the lines carry one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// The most severe level among the lines.
    pub level: Option<Level>,
    /// Lines in the window.
    pub count: u64,
    /// Lines in the baseline.
    pub baseline_count: u64,
    /// Lines expected in the window at the baseline's rate.
    pub expected_count: f64,
    /// `(count + 1) / (expected_count + 1)`.
    pub surge_ratio: f64,
    /// Why it ranks where it does.
    pub reason: RankReason,
    /// The first line of the window of this kind, cut to [`MAX_EXAMPLE_BYTES`].
    pub example: LogRecord,
    /// True when `example` was cut to [`MAX_EXAMPLE_BYTES`]: each of its strings is the start of
    /// the line's, and the later ones may be missing ([`LogRecord::shrink_to`] says what is kept
    /// first).
    pub example_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupKey {
    logger: Option<String>,
    template: String,
    error_type: Option<String>,
}

#[derive(Debug)]
struct Group {
    key: GroupKey,
    count: u64,
    baseline_count: u64,
    level: Option<Level>,
    example: Option<Example>,
}

/// A group's example line, cut to [`MAX_EXAMPLE_BYTES`].
#[derive(Debug)]
struct Example {
    record: LogRecord,
    truncated: bool,
}

impl Example {
    fn of(mut record: LogRecord) -> Self {
        let truncated = record.shrink_to(MAX_EXAMPLE_BYTES);
        Example { record, truncated }
    }
}

/// Counts lines into groups: baseline lines first or interleaved, in any order.
#[derive(Debug, Default)]
pub struct TemplateCounter {
    /// Group index by `logger \0 template \0 error_type`: one string, so that a line of a known
    /// group costs a lookup in a reused buffer and no allocation.
    index: HashMap<String, usize>,
    groups: Vec<Group>,
    scratch: String,
}

const OVERFLOW_TEMPLATE: &str = "<other kinds of lines: too many to group>";

impl TemplateCounter {
    /// The group of a line, created if new; returns its index.
    fn group_of(&mut self, logger: Option<&str>, message: &str, error_type: Option<&str>) -> usize {
        let logger = logger.map(|name| truncate_at_char_boundary(name, MAX_NAME_BYTES));
        let error_type = error_type.map(|name| truncate_at_char_boundary(name, MAX_NAME_BYTES));
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.push_str(logger.unwrap_or(""));
        scratch.push('\0');
        let template_start = scratch.len();
        push_template(message, &mut scratch);
        let template_end = scratch.len();
        scratch.push('\0');
        scratch.push_str(error_type.unwrap_or(""));
        let index = self.find_or_insert(&scratch, || GroupKey {
            logger: logger.map(str::to_owned),
            template: scratch[template_start..template_end].to_owned(),
            error_type: error_type.map(str::to_owned),
        });
        self.scratch = scratch;
        index
    }

    /// The group whose lookup string (`logger \0 template \0 error_type`) is `lookup`; a new one
    /// made of `key` while there is room, else the overflow group.
    fn find_or_insert(&mut self, lookup: &str, key: impl FnOnce() -> GroupKey) -> usize {
        if let Some(&index) = self.index.get(lookup) {
            return index;
        }
        let (lookup, key) = if self.groups.len() >= MAX_TEMPLATES {
            let key = GroupKey { logger: None, template: OVERFLOW_TEMPLATE.into(), error_type: None };
            (format!("\0{OVERFLOW_TEMPLATE}\0"), key)
        } else {
            (lookup.to_owned(), key())
        };
        if let Some(&index) = self.index.get(&lookup) {
            return index;
        }
        let index = self.groups.len();
        self.index.insert(lookup, index);
        self.groups.push(Group { key, count: 0, baseline_count: 0, level: None, example: None });
        index
    }

    /// Counts a baseline line.
    pub fn add_baseline(&mut self, record: &LogRecord) {
        self.add_baseline_line(record.logger.as_deref(), &record.message, record.error_type.as_deref());
    }

    /// Counts a baseline line from its parts, so a line that is only counted is never copied.
    pub fn add_baseline_line(&mut self, logger: Option<&str>, message: &str, error_type: Option<&str>) {
        let index = self.group_of(logger, message, error_type);
        self.groups[index].baseline_count += 1;
    }

    /// Counts a window line and returns its group's index (for [`Ranking::rank_of`]).
    pub fn add_window(&mut self, record: &LogRecord) -> usize {
        let index = self.group_of(record.logger.as_deref(), &record.message, record.error_type.as_deref());
        self.count_window_line(index, record.level, record.timestamp_ms, || record.clone())
    }

    /// Counts a window line still borrowed from its text, as [`TemplateCounter::add_window`]
    /// does; the line is copied only when it becomes its group's example.
    pub fn add_window_view(&mut self, view: &RecordView<'_>) -> usize {
        let index = self.group_of(view.logger.as_deref(), &view.message, view.error_type.as_deref());
        self.count_window_line(index, view.level, view.timestamp_ms, || view.to_record())
    }

    fn count_window_line(
        &mut self,
        index: usize,
        level: Option<Level>,
        timestamp_ms: Option<i64>,
        example: impl FnOnce() -> LogRecord,
    ) -> usize {
        let group = &mut self.groups[index];
        group.count += 1;
        group.level = group.level.max(level);
        match &group.example {
            Some(current) if current.record.timestamp_ms <= timestamp_ms => {}
            _ => group.example = Some(Example::of(example())),
        }
        index
    }

    /// True when this counter may have folded lines into the overflow group: then its groups
    /// cannot be [absorbed](TemplateCounter::absorb) exactly.
    pub(crate) fn may_have_folded(&self) -> bool {
        self.groups.len() >= MAX_TEMPLATES
    }

    /// Adds the counts of `later`, which counted the lines that follow this counter's, group by
    /// group in the order `later` met them. When `later` folded nothing
    /// ([`TemplateCounter::may_have_folded`] is false) the result is the counter that had counted
    /// all the lines in order: the same groups, in the same order, with the same examples (the
    /// earliest line, the first one on a tie), and the same lines folded into the overflow
    /// group. Returns, for each group index of `later`, its index here.
    pub(crate) fn absorb(&mut self, later: TemplateCounter) -> Vec<usize> {
        let mut lookup = String::new();
        later
            .groups
            .into_iter()
            .map(|Group { key, count, baseline_count, level, example }| {
                lookup.clear();
                lookup.push_str(key.logger.as_deref().unwrap_or(""));
                lookup.push('\0');
                lookup.push_str(&key.template);
                lookup.push('\0');
                lookup.push_str(key.error_type.as_deref().unwrap_or(""));
                let index = self.find_or_insert(&lookup, || key);
                let group = &mut self.groups[index];
                group.count += count;
                group.baseline_count += baseline_count;
                group.level = group.level.max(level);
                if let Some(example) = example {
                    match &group.example {
                        Some(current) if current.record.timestamp_ms <= example.record.timestamp_ms => {}
                        _ => group.example = Some(example),
                    }
                }
                index
            })
            .collect()
    }

    /// Ranks the groups seen in the window. `window_ms` and `baseline_ms` are the lengths of the
    /// two periods (a baseline cut short by the start of the logs is shorter).
    pub fn rank(self, window_ms: i64, baseline_ms: i64) -> Ranking {
        let scale = if baseline_ms > 0 { window_ms as f64 / baseline_ms as f64 } else { 0.0 };
        let mut ranked: Vec<(usize, RankedTemplate)> = self
            .groups
            .into_iter()
            .enumerate()
            .filter_map(|(index, group)| {
                let example = group.example?;
                let expected_count = group.baseline_count as f64 * scale;
                let surge_ratio = (group.count as f64 + 1.0) / (expected_count + 1.0);
                let new = group.baseline_count == 0;
                let surging = surge_ratio >= 3.0 && group.count as f64 - expected_count >= 3.0;
                let level = group.level.unwrap_or(Level::Info);
                let reason = match (level >= Level::Error, level == Level::Warn, new, surging) {
                    (true, _, true, _) => RankReason::NewError,
                    (true, _, false, true) => RankReason::SurgingError,
                    (true, _, false, false) => RankReason::Error,
                    (false, true, true, _) => RankReason::NewWarning,
                    (false, true, false, true) => RankReason::SurgingWarning,
                    (false, true, false, false) => RankReason::Warning,
                    (false, false, true, _) => RankReason::New,
                    (false, false, false, true) => RankReason::Surging,
                    (false, false, false, false) => RankReason::Steady,
                };
                Some((
                    index,
                    RankedTemplate {
                        template: group.key.template,
                        logger: group.key.logger,
                        error_type: group.key.error_type,
                        level: group.level,
                        count: group.count,
                        baseline_count: group.baseline_count,
                        expected_count,
                        surge_ratio,
                        reason,
                        example: example.record,
                        example_truncated: example.truncated,
                    },
                ))
            })
            .collect();
        ranked.sort_by(|(_, a), (_, b)| {
            a.reason
                .tier()
                .cmp(&b.reason.tier())
                .then(b.surge_ratio.total_cmp(&a.surge_ratio))
                .then(b.count.cmp(&a.count))
                .then_with(|| a.template.cmp(&b.template))
        });
        let mut rank_of_group = HashMap::with_capacity(ranked.len());
        for (rank, (group, _)) in ranked.iter().enumerate() {
            rank_of_group.insert(*group, rank);
        }
        Ranking { templates: ranked.into_iter().map(|(_, t)| t).collect(), rank_of_group }
    }
}

/// The ranked templates, most telling first.
#[derive(Debug)]
pub struct Ranking {
    /// Most telling first.
    pub templates: Vec<RankedTemplate>,
    rank_of_group: HashMap<usize, usize>,
}

impl Ranking {
    /// The rank (0 = most telling) of the group [`TemplateCounter::add_window`] returned.
    pub fn rank_of(&self, group: usize) -> usize {
        self.rank_of_group.get(&group).copied().unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ms: i64, level: Level, message: &str) -> LogRecord {
        LogRecord { level: Some(level), logger: Some("a.B".into()), ..LogRecord::text(message, Some(ms), None) }
    }

    #[test]
    fn new_error_outranks_usual_chatter_and_surging_warning_outranks_steady_error() {
        let mut counter = TemplateCounter::default();
        // Baseline: 4 minutes of chatter, a steady error, a rare warning.
        for s in 0..240 {
            counter.add_baseline(&record(s * 1000, Level::Info, &format!("served request {s}")));
            if s % 60 == 0 {
                counter.add_baseline(&record(s * 1000, Level::Error, &format!("timeout after {s} ms")));
                counter.add_baseline(&record(s * 1000, Level::Warn, &format!("slow query {s}")));
            }
        }
        // Window: one minute, the same chatter, the usual error, ten slow queries, two new errors.
        for s in 240..300 {
            counter.add_window(&record(s * 1000, Level::Info, &format!("served request {s}")));
            if s % 6 == 0 {
                counter.add_window(&record(s * 1000, Level::Warn, &format!("slow query {s}")));
            }
        }
        counter.add_window(&record(250_000, Level::Error, "timeout after 250 ms"));
        counter.add_window(&record(290_000, Level::Error, "connection refused to 10.0.0.1"));
        counter.add_window(&record(291_000, Level::Error, "connection refused to 10.0.0.2"));
        let ranking = counter.rank(60_000, 240_000);
        let reasons: Vec<_> = ranking.templates.iter().map(|t| (t.template.as_str(), t.reason)).collect();
        assert_eq!(
            reasons,
            [
                ("connection refused to <n>", RankReason::NewError),
                ("slow query <n>", RankReason::SurgingWarning),
                ("timeout after <n> ms", RankReason::Error),
                ("served request <n>", RankReason::Steady),
            ]
        );
        let top = &ranking.templates[0];
        assert_eq!((top.count, top.baseline_count), (2, 0));
        assert_eq!(top.example.message, "connection refused to 10.0.0.1");
        assert_eq!(ranking.templates[3].expected_count, 60.0);
    }

    #[test]
    fn huge_logger_and_exception_names_are_cut_in_the_key() {
        let mut counter = TemplateCounter::default();
        // Two-byte characters, so a cut at 512 bytes must land on a character boundary.
        for suffix in ["a", "b"] {
            let huge = |prefix: &str| format!("{prefix}{}{suffix}", "é".repeat(300_000));
            let line = LogRecord {
                level: Some(Level::Error),
                logger: Some(huge("com.example.")),
                error_type: Some(huge("java.lang.")),
                ..LogRecord::text("boom", Some(0), None)
            };
            counter.add_window(&line);
        }
        let ranking = counter.rank(1, 1);
        // One group: the names differ only past the bound.
        assert_eq!(ranking.templates.len(), 1);
        let group = &ranking.templates[0];
        assert_eq!(group.count, 2);
        let logger = group.logger.as_deref().unwrap();
        assert!(logger.len() <= MAX_NAME_BYTES && logger.len() > MAX_NAME_BYTES - 2, "{}", logger.len());
        assert!(logger.starts_with("com.example.é"));
        assert!(group.error_type.as_deref().unwrap().len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn too_many_templates_fold_into_one_group() {
        let mut counter = TemplateCounter::default();
        for i in 0..(MAX_TEMPLATES + 50) {
            let word: String =
                format!("{i:x}").chars().map(|c| (b'g' + c.to_digit(16).unwrap() as u8) as char).collect();
            counter.add_window(&record(0, Level::Info, &word));
        }
        let ranking = counter.rank(1, 1);
        assert_eq!(ranking.templates.len(), MAX_TEMPLATES + 1);
        assert!(ranking.templates.iter().any(|t| t.count == 50));
    }

    /// Letters only (templating masks digits), one distinct word per `i`.
    fn word_of(i: usize) -> String {
        format!("{i:x}").chars().map(|c| (b'g' + c.to_digit(16).unwrap() as u8) as char).collect()
    }

    #[test]
    fn examples_of_many_kinds_of_huge_lines_stay_within_max_example_bytes() {
        let kinds = 300;
        let line_bytes = 200_000;
        let mut counter = TemplateCounter::default();
        for i in 0..kinds {
            let mut line = record(i as i64, Level::Error, &format!("{} {}", word_of(i), "x".repeat(line_bytes)));
            line.stack_trace = Some("\tat a.B(B.java:1)\n".repeat(1000));
            line.fields.insert("payload".into(), "y".repeat(line_bytes));
            counter.add_window(&line);
        }
        // Short lines keep their example whole.
        counter.add_window(&record(0, Level::Info, "short and whole"));
        let ranking = counter.rank(1, 1);
        assert_eq!(ranking.templates.len(), kinds + 1);
        let (cut, whole): (Vec<_>, Vec<_>) = ranking.templates.iter().partition(|t| t.example_truncated);
        assert_eq!((cut.len(), whole.len()), (kinds, 1));
        assert_eq!(whole[0].example.message, "short and whole");
        let mut held = 0;
        for template in &cut {
            let example = &template.example;
            let word = template.template.split(' ').next().unwrap();
            assert!(example.message.starts_with(&format!("{word} xxx")), "the message is kept first");
            assert!(example.text_bytes() <= MAX_EXAMPLE_BYTES, "{}", example.text_bytes());
            assert!(example.message.capacity() <= MAX_EXAMPLE_BYTES, "the cut-off text is freed");
            held += example.message.capacity()
                + example.stack_trace.as_ref().map_or(0, String::capacity)
                + example.fields.values().map(String::capacity).sum::<usize>();
        }
        // 60 MB of lines, at most 600 KiB of examples.
        assert!(held <= kinds * MAX_EXAMPLE_BYTES, "{held} bytes of examples held");
    }

    /// Lines of many kinds, a few of them repeated, at increasing times.
    fn many_kinds(kinds: usize) -> Vec<(bool, LogRecord)> {
        (0..kinds + kinds / 3)
            .map(|i| {
                let kind = if i % 4 == 3 { i / 7 } else { i };
                let word: String =
                    format!("{kind:x}").chars().map(|c| (b'g' + c.to_digit(16).unwrap() as u8) as char).collect();
                let level = if i % 5 == 0 { Level::Warn } else { Level::Info };
                (i % 3 == 0, record(i as i64 / 2, level, &format!("{word} happened")))
            })
            .collect()
    }

    fn count(counter: &mut TemplateCounter, lines: &[(bool, LogRecord)]) -> Vec<usize> {
        lines
            .iter()
            .map(|(baseline, line)| {
                if *baseline {
                    counter.add_baseline(line);
                    usize::MAX
                } else {
                    counter.add_window(line)
                }
            })
            .collect()
    }

    #[test]
    fn absorbing_the_later_lines_counter_ranks_as_counting_them_in_order() {
        // Few kinds, and more kinds than MAX_TEMPLATES, cut at several points.
        for kinds in [40, MAX_TEMPLATES - 30] {
            let lines = many_kinds(kinds);
            let mut whole = TemplateCounter::default();
            let groups = count(&mut whole, &lines);
            let expected = whole.rank(1000, 4000);
            for cut in [0, 1, lines.len() / 2, lines.len() - 40, lines.len()] {
                let (mut first, mut later) = (TemplateCounter::default(), TemplateCounter::default());
                let mut merged_groups = count(&mut first, &lines[..cut]);
                let later_groups = count(&mut later, &lines[cut..]);
                if later.may_have_folded() {
                    continue;
                }
                let map = first.absorb(later);
                merged_groups.extend(later_groups.iter().map(|&g| if g == usize::MAX { g } else { map[g] }));
                let ranking = first.rank(1000, 4000);
                assert_eq!(ranking.templates, expected.templates, "{kinds} kinds cut at {cut}");
                for (group, merged) in groups.iter().zip(&merged_groups).filter(|(g, _)| **g != usize::MAX) {
                    assert_eq!(ranking.rank_of(*merged), expected.rank_of(*group));
                }
            }
        }
    }
}
