//! The record of the Slack notifications that are owed nothing more: a small text file beside
//! the incidents journal, [`FILE_NAME`], from which the notifier tells at start the notifications
//! it delivered from those still queued (or being retried) when the daemon stopped.
//!
//! It names events, not positions in the journal: a firing or resolved event is recorded at most
//! once per incident (the journal deduplicates them), so its kind and incident id name it
//! whatever compaction does around it (compaction merges the files and drops old incidents, which
//! shifts every position after them). One line per event, after a header naming the severities
//! posted since the file was written:
//!
//! ```text
//! severities critical high
//! firing c0ffee-1772359200000
//! resolved c0ffee-1772359200000
//! ```
//!
//! At every start the notifier rewrites the file whole ([`rewrite`]: temporary, fsync, rename)
//! with every firing and resolved event of the journal except those it still owes; while it runs,
//! it appends (and fsyncs) the events of each message Slack accepted or refused for good
//! ([`append`]), and after each compaction of the journal it drops the lines of the incidents
//! the compaction dropped ([`forget`], the same atomic rewrite). So the file stays about as large
//! as the journal however long the daemon runs, and a line torn by a crash during an append is
//! gone before the next one.
//!
//! Reading forgives damage, preferring a repeated post to a lost one: a last line without its
//! newline (a torn append) and a line that names nothing known are skipped, so their events count
//! as not delivered; an unreadable header leaves the severities unknown ([`Deliveries::severities`]).
//!
//! The name starts with a dot, as the directory's `.lock` does, so that Parquet readers of the
//! incidents dataset (pyarrow, DuckDB) skip it. What is owed, and why, is the notifier's business
//! ([`super::slack`]), not this module's.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::incidents::{EventKind, IncidentEvent};
use crate::store::{StoreError, write_bytes_atomically};

/// The file's name in the incidents directory.
pub const FILE_NAME: &str = ".slack-deliveries";

/// How the header line starts; the severities follow, separated by spaces.
const SEVERITIES: &str = "severities ";

/// The deliveries file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DeliveriesError {
    /// A file system operation failed.
    #[error("slack deliveries {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file could not be rewritten.
    #[error("slack deliveries: {0}")]
    Write(#[from] StoreError),
}

/// One firing or resolved event of an incident, as the deliveries file names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    /// Firing or resolved.
    pub kind: EventKind,
    /// The incident: `<fingerprint>-<startsAt ms>`.
    pub incident_id: String,
}

impl DeliveryKey {
    /// The key of `event`.
    pub fn of(event: &IncidentEvent) -> Self {
        Self { kind: event.kind, incident_id: event.incident_id.clone() }
    }

    fn parse(line: &str) -> Option<Self> {
        let (kind, incident_id) = line.split_once(' ')?;
        let kind = EventKind::parse(kind).filter(|kind| matches!(kind, EventKind::Firing | EventKind::Resolved))?;
        // Ids are a fingerprint of letters and digits, a dash and a number: anything else is damage.
        let well_formed =
            !incident_id.is_empty() && incident_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        well_formed.then(|| Self { kind, incident_id: incident_id.to_owned() })
    }

    fn line(&self) -> String {
        format!("{} {}\n", self.kind.as_str(), self.incident_id)
    }
}

/// What the deliveries file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deliveries {
    /// The severities posted since the file was last rewritten; `None` when the header could not
    /// be read, which the notifier takes as every severity it posts now.
    pub severities: Option<Vec<String>>,
    /// The events owed nothing more.
    pub keys: HashSet<DeliveryKey>,
    /// Whole lines after the header that named no event: damage, whose events count as not
    /// delivered.
    pub unreadable_lines: usize,
}

impl Deliveries {
    /// What a missing file stands for: Slack was not configured, or this is the first start of a
    /// version that keeps the file, so no severity was posted and nothing is owed.
    pub fn missing() -> Self {
        Self { severities: Some(Vec::new()), ..Self::default() }
    }

    /// The content of a file that could not be read: nothing known delivered, severities
    /// unknown.
    pub fn unknown() -> Self {
        Self::default()
    }

    /// Whether `event` is recorded as owed nothing more.
    pub fn contains(&self, kind: EventKind, incident_id: &str) -> bool {
        self.keys.contains(&DeliveryKey { kind, incident_id: incident_id.to_owned() })
    }

    /// Reads the file's bytes, forgiving damage (see the module's documentation).
    pub fn parse(bytes: &[u8]) -> Self {
        let mut deliveries = Self::unknown();
        // Only lines ended by a newline are whole: what follows the last one was torn by a crash.
        let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else { return deliveries };
        let whole = &bytes[..end];
        for (index, line) in whole.split(|b| *b == b'\n').enumerate() {
            let line = std::str::from_utf8(line).unwrap_or_default();
            if index == 0
                && let Some(names) = line.strip_prefix(SEVERITIES)
            {
                deliveries.severities = Some(names.split_whitespace().map(str::to_owned).collect());
                continue;
            }
            match DeliveryKey::parse(line) {
                Some(key) => {
                    deliveries.keys.insert(key);
                }
                None => deliveries.unreadable_lines += 1,
            }
        }
        deliveries
    }
}

/// The file's path in the incidents directory `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Reads the file in `dir`; `None` when there is none.
pub fn read(dir: &Path) -> Result<Option<Deliveries>, DeliveriesError> {
    let path = path_in(dir);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(Deliveries::parse(&bytes))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DeliveriesError::Io { path, source }),
    }
}

/// Replaces the file in `dir` (creating the directory) with the header for `severities` and
/// `keys`, atomically: a crash leaves the old file or the new one, never a mix.
pub fn rewrite<'a>(
    dir: &Path,
    severities: &[String],
    keys: impl IntoIterator<Item = &'a DeliveryKey>,
) -> Result<(), DeliveriesError> {
    let mut text = format!("{SEVERITIES}{}\n", severities.join(" "));
    for key in keys {
        text.push_str(&key.line());
    }
    write_bytes_atomically(dir, FILE_NAME, text.as_bytes())?;
    Ok(())
}

/// Appends `keys` to the file in `dir` and waits until they are on disk. Blocking I/O: call it
/// from `spawn_blocking` in async code.
pub fn append(dir: &Path, keys: &[DeliveryKey]) -> Result<(), DeliveriesError> {
    let path = path_in(dir);
    let io = |source| DeliveriesError::Io { path: path.clone(), source };
    let lines: String = keys.iter().map(DeliveryKey::line).collect();
    // One write of whole lines: a crash tears at most the last one, which reading skips.
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
    file.write_all(lines.as_bytes()).map_err(io)?;
    file.sync_data().map_err(io)
}

/// Drops from the file in `dir` the lines of `incidents` (incidents the journal no longer holds,
/// so that no replay selects their events again), keeping the header and every other event, by
/// the same atomic rewrite as [`rewrite`]. Returns how many lines were dropped, damaged ones
/// included (their events count as not delivered either way). Without a file, or with a header
/// it cannot read, it changes nothing: rewriting would have to guess which severities were
/// posted. Blocking I/O, and the caller keeps [`append`] out while it runs, or an append between
/// the read and the rename would be lost (and its message posted again after a restart).
pub fn forget(dir: &Path, incidents: &HashSet<String>) -> Result<usize, DeliveriesError> {
    let Some(recorded) = read(dir)? else { return Ok(0) };
    let Some(severities) = &recorded.severities else { return Ok(0) };
    let kept: Vec<&DeliveryKey> = recorded.keys.iter().filter(|key| !incidents.contains(&key.incident_id)).collect();
    let dropped = recorded.keys.len() - kept.len() + recorded.unreadable_lines;
    if dropped > 0 {
        rewrite(dir, severities, kept)?;
    }
    Ok(dropped)
}

/// Removes the file from `dir`, if there is one; true when there was.
pub fn remove(dir: &Path) -> Result<bool, DeliveriesError> {
    let path = path_in(dir);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(DeliveriesError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: EventKind, incident_id: &str) -> DeliveryKey {
        DeliveryKey { kind, incident_id: incident_id.to_owned() }
    }

    fn high_and_critical() -> Vec<String> {
        vec!["critical".to_owned(), "high".to_owned()]
    }

    #[test]
    fn a_rewritten_file_and_its_appends_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let incidents = dir.path().join("incidents");
        assert_eq!(read(&incidents).unwrap(), None, "no file yet");
        rewrite(&incidents, &high_and_critical(), &[key(EventKind::Firing, "aa-1")]).unwrap();
        append(&incidents, &[key(EventKind::Firing, "bb-2"), key(EventKind::Resolved, "aa-1")]).unwrap();
        let read_back = read(&incidents).unwrap().unwrap();
        assert_eq!(read_back.severities, Some(high_and_critical()));
        assert_eq!(
            read_back.keys,
            HashSet::from([
                key(EventKind::Firing, "aa-1"),
                key(EventKind::Firing, "bb-2"),
                key(EventKind::Resolved, "aa-1")
            ])
        );
        assert_eq!(read_back.unreadable_lines, 0);
        assert!(read_back.contains(EventKind::Resolved, "aa-1") && !read_back.contains(EventKind::Resolved, "bb-2"));

        // The next start keeps what it is told to, and drops the rest.
        rewrite(&incidents, &["critical".to_owned()], &[key(EventKind::Firing, "bb-2")]).unwrap();
        let rewritten = read(&incidents).unwrap().unwrap();
        assert_eq!(rewritten.severities, Some(vec!["critical".to_owned()]));
        assert_eq!(rewritten.keys, HashSet::from([key(EventKind::Firing, "bb-2")]));
        let names: Vec<String> = std::fs::read_dir(&incidents)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [FILE_NAME], "no temporary left, and hidden from dataset readers");

        assert!(remove(&incidents).unwrap());
        assert!(!remove(&incidents).unwrap(), "removing no file is fine");
        assert_eq!(read(&incidents).unwrap(), None);
    }

    #[test]
    fn forgetting_incidents_drops_their_lines_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let incidents = dir.path().join("incidents");
        let forgotten = HashSet::from(["aa-1".to_owned()]);
        assert_eq!(forget(&incidents, &forgotten).unwrap(), 0, "no file: nothing to do");
        rewrite(&incidents, &high_and_critical(), &[key(EventKind::Firing, "aa-1"), key(EventKind::Firing, "bb-2")])
            .unwrap();
        append(&incidents, &[key(EventKind::Resolved, "aa-1"), key(EventKind::Resolved, "bb-2")]).unwrap();
        assert_eq!(forget(&incidents, &forgotten).unwrap(), 2);
        let kept = read(&incidents).unwrap().unwrap();
        assert_eq!(kept.severities, Some(high_and_critical()));
        assert_eq!(kept.keys, HashSet::from([key(EventKind::Firing, "bb-2"), key(EventKind::Resolved, "bb-2")]));
        let size = std::fs::metadata(path_in(&incidents)).unwrap().len();
        assert_eq!(forget(&incidents, &forgotten).unwrap(), 0);
        assert_eq!(std::fs::metadata(path_in(&incidents)).unwrap().len(), size, "nothing more to drop");

        // Appends go on landing in the rewritten file.
        append(&incidents, &[key(EventKind::Firing, "cc-3")]).unwrap();
        assert!(read(&incidents).unwrap().unwrap().contains(EventKind::Firing, "cc-3"));

        // A header it cannot read is left alone, lines and all.
        std::fs::write(path_in(&incidents), "sev\nfiring aa-1\n").unwrap();
        assert_eq!(forget(&incidents, &forgotten).unwrap(), 0);
        assert_eq!(std::fs::read_to_string(path_in(&incidents)).unwrap(), "sev\nfiring aa-1\n");
    }

    #[test]
    fn a_torn_last_line_and_damaged_lines_count_as_not_delivered() {
        let text =
            "severities critical high\nfiring aa-1\nresolved aa-1\nfir\u{0}ng bb-2\nacknowledged cc-3\n\nfiring dd-4";
        let read = Deliveries::parse(text.as_bytes());
        assert_eq!(read.severities, Some(high_and_critical()));
        assert_eq!(read.keys, HashSet::from([key(EventKind::Firing, "aa-1"), key(EventKind::Resolved, "aa-1")]));
        assert_eq!(read.unreadable_lines, 3, "the damaged line, the kind never posted and the empty line");
        assert!(!read.contains(EventKind::Firing, "dd-4"), "the torn last line is not taken");

        // A line torn in the middle of its id must not name another incident.
        assert!(!Deliveries::parse(b"severities critical\nfiring aa-17").contains(EventKind::Firing, "aa-17"));
        assert_eq!(Deliveries::parse(b"severities critical\nfiring aa-17").keys, HashSet::new());
    }

    #[test]
    fn a_damaged_header_leaves_the_severities_unknown() {
        for text in ["", "sever", "\u{0}\u{0}\nfiring aa-1\n", "firing aa-1\n"] {
            let read = Deliveries::parse(text.as_bytes());
            assert_eq!(read.severities, None, "{text:?}");
        }
        let headless = Deliveries::parse(b"firing aa-1\n");
        assert!(headless.contains(EventKind::Firing, "aa-1"), "the lines still count without the header");
        assert_eq!(Deliveries::parse(b"severities \n").severities, Some(Vec::new()));
        assert_eq!(Deliveries::missing().severities, Some(Vec::new()));
        assert_eq!(Deliveries::unknown().severities, None);
    }
}
