//! Parquet datasets: every scored point of every series, kept on disk for training and analysis.
//!
//! The layout keeps the shape of the original system's CSV files, as Hive-style partitions that
//! DuckDB, Polars, Spark and pyarrow read as they are:
//!
//! ```text
//! datasets/<service>/history/<signal>/date=YYYY-MM-DD/part-….parquet     every point
//! datasets/<service>/anomalies/<signal>/date=YYYY-MM-DD/part-….parquet   severity ≥ 1 or score > 1
//! datasets/models/<service>/<signal>/…                                   fitted models
//! ```
//!
//! Service names are encoded for paths by [`encode_name`]; signal names are already safe (the
//! config only accepts `[A-Za-z_][A-Za-z0-9_]*`). Points arrive through the engine's channel, are
//! batched by [`writer`] and written with [`write_batch_atomically`], so a reader never sees a
//! torn file and a crash loses at most the last unflushed batch (which the next start backfills
//! from Prometheus). [`maintain`] deletes partitions past retention and compacts finished days.
//! This module does not score or train: it only stores and reads rows.

mod atomic;
mod config;
mod lock;
pub mod maintain;
mod name;
mod schema;
pub mod writer;

use crate::calendar::{civil_from_days, days_from_civil};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

pub(crate) use atomic::list_files;
pub use atomic::{is_hidden, remove_stale_temporaries, sync_directory, write_batch_atomically, write_bytes_atomically};
pub use config::{DatasetsConfig, RawDatasetsConfig};
pub use lock::{DirectoryLock, LOCK_FILE, lock_directory};
pub use name::{decode_name, encode_name};
pub use schema::{NO_FEATURES, PointRow, point_schema, read_rows, rows_to_batch};

use crate::engine::SeriesKey;

/// What went wrong reading or writing a dataset; every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// Parquet could not encode or decode the file.
    #[error("{path}: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The Parquet library's reason.
        source: parquet::errors::ParquetError,
    },
    /// Columns that are not the point schema.
    #[error("schema: {0}")]
    Schema(String),
    /// A compaction's manifest that recovery cannot act on: the partition is left as it is (its
    /// hidden `_compacted.parquet` may hold rows of parts already deleted) and retried each pass.
    #[error(
        "{path}: {problem}; the partition is left as it is: repair the manifest by hand (its first line \
         names the merged file, the others the parts it replaces; removing it would drop the hidden \
         merged file, which may be the only copy of some rows)"
    )]
    CompactionManifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        problem: maintain::ManifestProblem,
    },
    /// Another process holds the directory's lock (see [`lock_directory`]).
    #[error(
        "{path} is in use by another anomaly-exporter ({holder}): two processes on one directory would \
         write every row twice and delete each other's files; stop the other one or give this one its own path"
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// What the lock file says of its holder (`pid N`).
        holder: String,
    },
}

/// Which of a series' datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetKind {
    /// Every point.
    History,
    /// The anomalous points only.
    Anomalies,
}

impl DatasetKind {
    /// The directory name.
    pub fn directory(self) -> &'static str {
        match self {
            DatasetKind::History => "history",
            DatasetKind::Anomalies => "anomalies",
        }
    }
}

/// The directory reserved for models: never a service (an encoded name could be `models`, so
/// a service literally named `models` is stored as `%6Dodels`; see [`Datasets::service_directory`]).
pub const MODELS_DIRECTORY: &str = "models";

/// The directory reserved for the alert webhook's incident events (`alerts.incidents_dir`'s
/// default); a service literally named `incidents` is stored as `%69ncidents`.
pub const INCIDENTS_DIRECTORY: &str = "incidents";

/// Names under the root that are never a service's directory.
const RESERVED_DIRECTORIES: [&str; 2] = [MODELS_DIRECTORY, INCIDENTS_DIRECTORY];

/// A datasets root and the paths under it.
#[derive(Debug, Clone)]
pub struct Datasets {
    root: PathBuf,
}

impl Datasets {
    /// The datasets under `root` (nothing is created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/<encoded service>`; `models` and `incidents` are reserved, so those two service
    /// names are encoded further (their first letter as `%XX`).
    pub fn service_directory(&self, service: &str) -> PathBuf {
        self.root.join(service_directory_name(service))
    }

    /// The directory of one series' dataset: `<root>/<service>/<kind>/<signal>`.
    pub fn series_directory(&self, key: &SeriesKey, kind: DatasetKind) -> PathBuf {
        self.service_directory(&key.service).join(kind.directory()).join(&key.signal)
    }

    /// `<root>/models/<service>/<signal>`.
    pub fn model_directory(&self, key: &SeriesKey) -> PathBuf {
        self.root.join(MODELS_DIRECTORY).join(service_directory_name(&key.service)).join(&key.signal)
    }

    /// Every series with a history dataset, from the directory tree.
    pub fn series(&self) -> Result<Vec<SeriesKey>, StoreError> {
        let mut keys = Vec::new();
        for service_dir in atomic::list_directories(&self.root)? {
            let Some(service) = file_name(&service_dir).and_then(decode_service_directory) else { continue };
            for signal_dir in atomic::list_directories(&service_dir.join(DatasetKind::History.directory()))? {
                if let Some(signal) = file_name(&signal_dir).filter(|s| !is_hidden(s)) {
                    keys.push(SeriesKey { service: service.clone(), signal: signal.to_owned() });
                }
            }
        }
        Ok(keys)
    }

    /// The day partitions of a series' dataset, oldest first, with their day number (days since
    /// the epoch).
    pub fn partitions(&self, key: &SeriesKey, kind: DatasetKind) -> Result<Vec<(i64, PathBuf)>, StoreError> {
        Ok(atomic::list_directories(&self.series_directory(key, kind))?
            .into_iter()
            .filter_map(|dir| Some((parse_partition(file_name(&dir)?)?, dir)))
            .collect())
    }

    /// The visible Parquet files of a partition directory, sorted.
    pub fn partition_files(partition: &Path) -> Result<Vec<PathBuf>, StoreError> {
        Ok(atomic::list_files(partition)?
            .into_iter()
            .filter(|p| file_name(p).is_some_and(|n| !is_hidden(n) && n.ends_with(".parquet")))
            .collect())
    }

    /// The series' rows with `from_ms <= timestamp < to_ms`, sorted by timestamp, one row per
    /// timestamp (the first read wins should a file ever have been duplicated).
    pub fn read_series(
        &self,
        key: &SeriesKey,
        kind: DatasetKind,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<PointRow>, StoreError> {
        let mut rows: BTreeMap<i64, PointRow> = BTreeMap::new();
        for (day, partition) in self.partitions(key, kind)? {
            if (day + 1) * DAY_MS <= from_ms || day * DAY_MS >= to_ms {
                continue;
            }
            for file in Self::partition_files(&partition)? {
                for row in read_part(&file)? {
                    if (from_ms..to_ms).contains(&row.timestamp_ms) {
                        rows.entry(row.timestamp_ms).or_insert(row);
                    }
                }
            }
        }
        Ok(rows.into_values().collect())
    }

    /// The newest timestamp in a series' history at or before `until_ms` (`i64::MAX`: the newest
    /// of all), reading partitions newest first until one holds such a row, and what it passed
    /// over after `until_ms`.
    ///
    /// Rows after `until_ms` are rows dated in the future when `until_ms` is now: written while
    /// the clock was ahead. Taken as the series' last point they would make the writer drop every
    /// new point until the clock caught up, and the backfill start after them.
    pub fn last_timestamp_until(&self, key: &SeriesKey, until_ms: i64) -> Result<LastTimestamp, StoreError> {
        let mut found = LastTimestamp::default();
        for (_, partition) in self.partitions(key, DatasetKind::History)?.into_iter().rev() {
            for file in Self::partition_files(&partition)? {
                for timestamp in read_part(&file)?.iter().map(|r| r.timestamp_ms) {
                    if timestamp <= until_ms {
                        found.newest = found.newest.max(Some(timestamp));
                    } else {
                        found.rows_after += 1;
                        found.newest_after = found.newest_after.max(Some(timestamp));
                    }
                }
            }
            if found.newest.is_some() {
                break;
            }
        }
        Ok(found)
    }

    /// Bytes in every file under the root (what the `dataset_bytes` gauge reports).
    pub fn total_bytes(&self) -> Result<u64, StoreError> {
        fn walk(directory: &Path) -> Result<u64, StoreError> {
            let mut total = 0;
            for file in atomic::list_files(directory)? {
                total += std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            }
            for child in atomic::list_directories(directory)? {
                total += walk(&child)?;
            }
            Ok(total)
        }
        walk(&self.root)
    }
}

/// What [`Datasets::last_timestamp_until`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastTimestamp {
    /// The newest timestamp at or before the limit.
    pub newest: Option<i64>,
    /// Rows dated after the limit (read while looking for it).
    pub rows_after: u64,
    /// The newest of those.
    pub newest_after: Option<i64>,
}

/// The suffix a part file that cannot be read is renamed with (see [`read_part`]).
pub const UNREADABLE_SUFFIX: &str = ".unreadable";

/// Part files set aside as unreadable since the process started (a self-metric).
pub static FILES_SET_ASIDE: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// A part file's rows. A file that is not readable Parquet of the point schema (damaged on disk,
/// or another program's file dropped into the tree) is set aside, renamed `<name>.unreadable`
/// beside where it was, and read as no rows: kept for inspection (renaming it back retries it),
/// but no longer able to stop the daemon's start, every later maintenance pass or a training
/// job. Errors of the file system (permissions, a full disk) are returned as they are: those
/// are not the file's fault, and setting it aside would hide data that is still good.
pub fn read_part(path: &Path) -> Result<Vec<PointRow>, StoreError> {
    match read_rows(path) {
        Ok(rows) => Ok(rows),
        Err(error @ (StoreError::Parquet { .. } | StoreError::Schema(_))) => {
            // The decoder reports a failed read (EIO, a file that is not a regular file) as its
            // own error, as it does damage: read the bytes once more, and set the file aside only
            // when they can be read, so a file-system error never hides a good file.
            let reread = File::open(path).and_then(|mut file| std::io::copy(&mut file, &mut std::io::sink()));
            if let Err(source) = reread {
                return Err(StoreError::Io { path: path.to_owned(), source });
            }
            let mut aside = path.as_os_str().to_owned();
            aside.push(UNREADABLE_SUFFIX);
            let aside = PathBuf::from(aside);
            std::fs::rename(path, &aside).map_err(|source| StoreError::Io { path: path.to_owned(), source })?;
            FILES_SET_ASIDE.inc();
            tracing::error!(
                file = %aside.display(),
                %error,
                "unreadable dataset file set aside; its rows are skipped (rename it back to read it again)"
            );
            Ok(Vec::new())
        }
        Err(other) => Err(other),
    }
}

fn service_directory_name(service: &str) -> String {
    let encoded = encode_name(service);
    if RESERVED_DIRECTORIES.contains(&encoded.as_str()) {
        // Reserved names are plain ASCII letters, so the first byte is the first character.
        format!("%{:02X}{}", encoded.as_bytes()[0], &encoded[1..])
    } else {
        encoded
    }
}

fn decode_service_directory(name: &str) -> Option<String> {
    if RESERVED_DIRECTORIES.contains(&name) || is_hidden(name) {
        return None;
    }
    let reserved = RESERVED_DIRECTORIES.iter().find(|reserved| service_directory_name(reserved) == name);
    match reserved {
        Some(reserved) => Some((*reserved).to_owned()),
        None => decode_name(name),
    }
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()
}

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The partition directory name of the day containing `timestamp_ms`: `date=YYYY-MM-DD` (UTC).
pub fn partition_name(timestamp_ms: i64) -> String {
    let (year, month, day) = civil_from_days(timestamp_ms.div_euclid(DAY_MS));
    format!("date={year:04}-{month:02}-{day:02}")
}

/// The day number (days since 1970-01-01) of a `date=YYYY-MM-DD` name.
pub fn parse_partition(name: &str) -> Option<i64> {
    let date = name.strip_prefix("date=")?;
    let mut parts = date.splitn(3, '-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let (year, month, day): (i64, u32, u32) = (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    let days = days_from_civil(year, month, day);
    (civil_from_days(days) == (year, month, day)).then_some(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        assert_eq!(partition_name(0), "date=1970-01-01");
        assert_eq!(partition_name(1_709_164_800_000), "date=2024-02-29");
        assert_eq!(partition_name(-1), "date=1969-12-31");
        for day in [-1, 0, 19_782, 2_000_000] {
            assert_eq!(parse_partition(&partition_name(day * DAY_MS)), Some(day));
        }
        assert_eq!(parse_partition("date=2024-02-30"), None);
        assert_eq!(parse_partition("day=2024-02-01"), None);
    }

    fn write_day(datasets: &Datasets, key: &SeriesKey, file: &str, timestamps: &[i64]) -> PathBuf {
        let rows: Vec<PointRow> =
            timestamps.iter().map(|&timestamp_ms| schema::fixtures::plain_row(timestamp_ms)).collect();
        let partition = datasets.series_directory(key, DatasetKind::History).join(partition_name(timestamps[0]));
        write_batch_atomically(&partition, file, &rows_to_batch(&rows).unwrap()).unwrap();
        partition
    }

    #[test]
    fn rows_dated_after_now_are_passed_over_for_the_last_timestamp_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let datasets = Datasets::new(dir.path());
        let key = SeriesKey { service: "a".into(), signal: "cpu".into() };
        let now = 10 * DAY_MS + 1000;
        write_day(&datasets, &key, "part-1.parquet", &[9 * DAY_MS, 9 * DAY_MS + 5]);
        write_day(&datasets, &key, "part-2.parquet", &[10 * DAY_MS, now + 60_000]);
        write_day(&datasets, &key, "part-3.parquet", &[40 * DAY_MS, 40 * DAY_MS + 7]);
        let found = datasets.last_timestamp_until(&key, now).unwrap();
        assert_eq!(
            found,
            LastTimestamp { newest: Some(10 * DAY_MS), rows_after: 3, newest_after: Some(40 * DAY_MS + 7) }
        );
        // A partition wholly in the future and today's future row: the day before is not read.
        assert_eq!(datasets.last_timestamp_until(&key, 10 * DAY_MS - 1).unwrap().newest, Some(9 * DAY_MS + 5));
        assert_eq!(datasets.last_timestamp_until(&key, i64::MAX).unwrap().newest, Some(40 * DAY_MS + 7));
    }

    #[test]
    fn an_unreadable_part_is_set_aside_and_the_others_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let datasets = Datasets::new(dir.path());
        let key = SeriesKey { service: "a".into(), signal: "cpu".into() };
        let partition = write_day(&datasets, &key, "part-1.parquet", &[DAY_MS, DAY_MS + 1]);
        let damaged = partition.join("part-2.parquet");
        std::fs::write(&damaged, b"PAR1 torn by a disk").unwrap();
        let set_aside_before = FILES_SET_ASIDE.get();
        // Before, the newest partition's damaged file failed the daemon's start.
        assert_eq!(datasets.last_timestamp_until(&key, i64::MAX).unwrap().newest, Some(DAY_MS + 1));
        assert!(FILES_SET_ASIDE.get() > set_aside_before);
        assert!(!damaged.exists());
        let kept = partition.join("part-2.parquet.unreadable");
        assert_eq!(std::fs::read(&kept).unwrap(), b"PAR1 torn by a disk", "kept byte for byte");
        assert_eq!(datasets.read_series(&key, DatasetKind::History, 0, i64::MAX).unwrap().len(), 2);
    }

    #[test]
    fn a_part_the_file_system_cannot_read_is_an_error_and_is_not_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        // A read that fails in the file system, not in the bytes: the path opens, and every
        // read of it fails (EISDIR). The decoder reports that as a Parquet error, as damage.
        let unreadable = dir.path().join("part-1.parquet");
        std::fs::create_dir(&unreadable).unwrap();
        assert!(matches!(read_rows(&unreadable), Err(StoreError::Parquet { .. })), "the decoder calls it damage");
        let error = read_part(&unreadable).unwrap_err();
        assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
        assert!(unreadable.exists(), "left where it is");
        assert!(!dir.path().join("part-1.parquet.unreadable").exists());
    }

    #[test]
    fn a_part_that_panics_the_decoder_is_set_aside_like_any_damaged_one() {
        let dir = tempfile::tempdir().unwrap();
        let datasets = Datasets::new(dir.path());
        let key = SeriesKey { service: "a".into(), signal: "cpu".into() };
        write_day(&datasets, &key, "part-1.parquet", &[DAY_MS - 1]);
        let partition = write_day(&datasets, &key, "part-1.parquet", &[DAY_MS, DAY_MS + 1]);
        write_day(&datasets, &key, "part-2.parquet", &[DAY_MS + 2, DAY_MS + 3]);
        let damaged = partition.join("part-2.parquet");
        schema::fixtures::damage_footer_to_panic_the_decoder(&damaged);
        // Before, the panic unwound out of the start's last-timestamp scan: the daemon refused
        // to start.
        assert_eq!(datasets.last_timestamp_until(&key, i64::MAX).unwrap().newest, Some(DAY_MS + 1));
        assert!(!damaged.exists());
        assert!(partition.join("part-2.parquet.unreadable").exists());
        assert_eq!(datasets.read_series(&key, DatasetKind::History, 0, i64::MAX).unwrap().len(), 3);
    }

    #[test]
    fn series_are_listed_from_the_tree_with_names_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let datasets = Datasets::new(dir.path());
        let keys = [
            SeriesKey { service: "team/a".into(), signal: "cpu".into() },
            SeriesKey { service: "models".into(), signal: "latency".into() },
            SeriesKey { service: "incidents".into(), signal: "cpu".into() },
        ];
        for key in &keys {
            std::fs::create_dir_all(datasets.series_directory(key, DatasetKind::History)).unwrap();
            std::fs::create_dir_all(datasets.model_directory(key)).unwrap();
        }
        // The webhook's incident events share the root and are no service.
        std::fs::create_dir_all(dir.path().join(INCIDENTS_DIRECTORY).join("history").join("x")).unwrap();
        assert_eq!(datasets.service_directory("incidents"), dir.path().join("%69ncidents"));
        let mut found = datasets.series().unwrap();
        found.sort();
        let mut expected = keys.to_vec();
        expected.sort();
        assert_eq!(found, expected);
    }
}
