//! Retention and compaction: the periodic pass over every series' partitions.
//!
//! Retention deletes whole `date=` partitions whose day ended before `now − retention`.
//! Compaction rewrites a finished day's (before today, UTC) several `part-*` files as one
//! `part-*-compacted.parquet`, sorted by timestamp. It is crash-safe without duplicating rows for
//! any reader, in this order:
//!
//! 1. write the merged rows atomically under a hidden name, `_compacted.parquet` (readers skip it);
//! 2. write a hidden manifest `_compaction` listing the part files it replaces (atomically);
//! 3. delete those parts;
//! 4. rename `_compacted.parquet` to its visible name, fsync the directory;
//! 5. delete the manifest.
//!
//! A crash before 2 leaves the parts and a stale hidden file (dropped by the next pass); after 2,
//! [`recover_partition`] finishes steps 3–5 on the next pass. Between 3 and 4 a reader can see
//! the day with fewer rows for an instant, never the same row twice: the choice we document.
//! A manifest whose merged file is gone (neither hidden nor visible: removed by hand, or lost
//! by a file system that did not keep it) deletes nothing: the parts it names are then the only
//! copy of their rows. A manifest that is there but cannot be read, or is not one this module
//! writes (not UTF-8, no visible merged file name, a part name that could reach outside the
//! partition), deletes nothing either: it is an error, retried (and logged) each pass, for a
//! person to repair, since the hidden merged file may be the only copy of parts already deleted.
//!
//! A partition the pass cannot maintain (a directory it may not write, say) is logged and
//! counted, and the pass goes on with the others: one bad day must not stop retention for all.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use super::{DAY_MS, DatasetKind, Datasets, PointRow, StoreError, read_part, rows_to_batch, sync_directory};
use super::{is_hidden, remove_stale_temporaries, write_batch_atomically};

const COMPACTED_HIDDEN: &str = "_compacted.parquet";
const MANIFEST: &str = "_compaction";

/// What a maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Partitions deleted by retention.
    pub partitions_deleted: u64,
    /// Part files merged away by compaction.
    pub files_compacted: u64,
    /// Compacted files written.
    pub compacted_files_written: u64,
    /// Interrupted compactions finished.
    pub compactions_recovered: u64,
    /// Partitions the pass failed on (logged; retried at the next pass).
    pub partitions_failed: u64,
}

/// Runs retention and compaction over every series at `now_ms`.
pub fn maintain(datasets: &Datasets, retention_ms: i64, now_ms: i64) -> Result<MaintenanceReport, StoreError> {
    let mut report = MaintenanceReport::default();
    let today = now_ms.div_euclid(DAY_MS);
    // A partition is kept while any of its day is within retention.
    let oldest_kept_day = (now_ms - retention_ms).div_euclid(DAY_MS);
    for key in datasets.series()? {
        for kind in [DatasetKind::History, DatasetKind::Anomalies] {
            let partitions = match datasets.partitions(&key, kind) {
                Ok(partitions) => partitions,
                Err(error) => {
                    warn!(%error, service = %key.service, signal = %key.signal, "dataset not maintained this pass");
                    report.partitions_failed += 1;
                    continue;
                }
            };
            for (day, partition) in partitions {
                if let Err(error) = maintain_partition(&partition, day, oldest_kept_day, today, &mut report) {
                    warn!(%error, partition = %partition.display(), "partition not maintained this pass");
                    report.partitions_failed += 1;
                }
            }
        }
    }
    if report != MaintenanceReport::default() {
        info!(?report, "datasets maintained");
    }
    Ok(report)
}

/// Retention, recovery and compaction of one day partition.
fn maintain_partition(
    partition: &Path,
    day: i64,
    oldest_kept_day: i64,
    today: i64,
    report: &mut MaintenanceReport,
) -> Result<(), StoreError> {
    if day < oldest_kept_day {
        std::fs::remove_dir_all(partition).map_err(|source| StoreError::Io { path: partition.to_owned(), source })?;
        report.partitions_deleted += 1;
        return Ok(());
    }
    report.compactions_recovered += u64::from(recover_partition(partition)?);
    if day < today {
        let merged = compact_partition(partition)?;
        if merged > 0 {
            report.files_compacted += merged as u64;
            report.compacted_files_written += 1;
        }
    }
    Ok(())
}

/// The current time in ms since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Finishes a compaction a crash interrupted, or clears what a crash left before step 2;
/// returns whether there was one to finish.
pub fn recover_partition(partition: &Path) -> Result<bool, StoreError> {
    remove_stale_temporaries(partition)?;
    let finished = finish_compaction(partition)?;
    match finished {
        Finished::NoManifest => {}
        Finished::Completed => {
            warn!(partition = %partition.display(), "finished a compaction interrupted by a crash");
        }
        Finished::MergedFileMissing => warn!(
            partition = %partition.display(),
            "an interrupted compaction's merged file is missing: its parts are kept, and merged again next pass"
        ),
    }
    Ok(finished != Finished::NoManifest)
}

/// What [`finish_compaction`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finished {
    /// No compaction was under way (a stale hidden merged file, if any, was dropped).
    NoManifest,
    /// Steps 3–5 are done.
    Completed,
    /// The manifest named a merged file that is neither hidden nor visible: nothing deleted.
    MergedFileMissing,
}

/// Why a compaction manifest cannot be acted on. Recovery then deletes nothing: a damaged
/// manifest may name files outside the partition, or no visible name for the merged rows, and
/// after a crash in step 3 the hidden merged file may be the only copy of some parts' rows.
#[derive(Debug, thiserror::Error)]
pub enum ManifestProblem {
    /// The bytes are not UTF-8 (a flipped bit, a torn write outside our atomic one).
    #[error("not UTF-8")]
    NotUtf8,
    /// The first line is not a name the merged file could be made visible as.
    #[error("its first line {0:?} is not a visible Parquet file name")]
    InvalidTarget(String),
    /// A listed part is not a plain file name in the partition.
    #[error("the part {0:?} is not a file name in the partition")]
    InvalidPart(String),
}

/// Whether `name` is a plain name of a file in the partition: not empty, not hidden (which also
/// excludes `.` and `..`), no separator, no `..` anywhere, not absolute. Anything else in a
/// manifest was not written by [`compact_partition`], and joined onto the partition it could
/// name a file elsewhere.
fn is_partition_file_name(name: &str) -> bool {
    !name.is_empty()
        && !is_hidden(name)
        && !name.contains('/')
        && !name.contains("..")
        && !Path::new(name).is_absolute()
}

/// Whether `path` exists, an error of the file system being an error, never a "no".
fn exists(path: &Path) -> Result<bool, StoreError> {
    path.try_exists().map_err(|source| StoreError::Io { path: path.to_owned(), source })
}

/// Steps 3–5 of a compaction whose manifest is written: delete the parts it replaces, make the
/// merged file visible, delete the manifest.
///
/// Only a manifest that is not there means no compaction is under way. A manifest that cannot
/// be read (any other error), or that is not one [`compact_partition`] writes, is an error and
/// every file is kept: after a crash in step 3 the hidden merged file can be the only copy of
/// the deleted parts' rows, so it must not be taken for a stale one. Parts are deleted only when
/// the merged file is visible or is about to be.
fn finish_compaction(partition: &Path) -> Result<Finished, StoreError> {
    let manifest = partition.join(MANIFEST);
    let hidden = partition.join(COMPACTED_HIDDEN);
    let bytes = match std::fs::read(&manifest) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if exists(&hidden)? {
                remove(&hidden)?;
            }
            return Ok(Finished::NoManifest);
        }
        Err(source) => return Err(StoreError::Io { path: manifest, source }),
    };
    let damaged = |problem| StoreError::CompactionManifest { path: manifest.clone(), problem };
    let text = String::from_utf8(bytes).map_err(|_| damaged(ManifestProblem::NotUtf8))?;
    let mut lines = text.lines();
    let target = lines.next().unwrap_or_default();
    if !is_partition_file_name(target) || !target.ends_with(".parquet") {
        return Err(damaged(ManifestProblem::InvalidTarget(target.to_owned())));
    }
    let parts: Vec<&str> = lines.filter(|part| *part != target).collect();
    if let Some(part) = parts.iter().find(|part| !is_partition_file_name(part)) {
        return Err(damaged(ManifestProblem::InvalidPart((*part).to_owned())));
    }
    let hidden_exists = exists(&hidden)?;
    if !hidden_exists && !exists(&partition.join(target))? {
        // The parts are the only copy of their rows: deleting them now would lose the day.
        remove(&manifest)?;
        sync_directory(partition)?;
        return Ok(Finished::MergedFileMissing);
    }
    for part in parts {
        let path = partition.join(part);
        if exists(&path)? {
            remove(&path)?;
        }
    }
    if hidden_exists {
        let final_path = partition.join(target);
        std::fs::rename(&hidden, &final_path).map_err(|source| StoreError::Io { path: final_path, source })?;
    }
    sync_directory(partition)?;
    remove(&manifest)?;
    sync_directory(partition)?;
    Ok(Finished::Completed)
}

/// Merges a partition's part files into one; returns how many were merged (0: nothing to do).
pub fn compact_partition(partition: &Path) -> Result<usize, StoreError> {
    let parts = Datasets::partition_files(partition)?;
    if parts.len() < 2 {
        return Ok(0);
    }
    let mut rows: Vec<PointRow> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for part in &parts {
        let part_rows = read_part(part)?;
        // A part set aside as unreadable is no longer there to be replaced.
        if part.exists()
            && let Some(name) = part.file_name().and_then(|n| n.to_str())
        {
            names.push(name.to_owned());
            rows.extend(part_rows);
        }
    }
    if names.len() < 2 {
        return Ok(0);
    }
    rows.sort_by_key(|r| r.timestamp_ms);
    rows.dedup_by_key(|r| r.timestamp_ms);
    // Sorts after the parts it replaces and names itself: `part-<first part's stamp>-compacted`.
    let stem = names[0].trim_end_matches(".parquet");
    let target = format!("{stem}-compacted.parquet");
    write_batch_atomically(partition, COMPACTED_HIDDEN, &rows_to_batch(&rows)?)?;
    let manifest: String =
        std::iter::once(target.as_str()).chain(names.iter().map(String::as_str)).collect::<Vec<_>>().join("\n");
    write_text_atomically(&partition.join(MANIFEST), &manifest)?;
    finish_compaction(partition)?;
    Ok(names.len())
}

fn write_text_atomically(path: &Path, text: &str) -> Result<(), StoreError> {
    use std::io::Write;
    let directory = path.parent().unwrap_or(Path::new("."));
    let temporary: PathBuf = directory.join(format!("{}manifest", super::atomic::TEMPORARY_PREFIX));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::Io { path, source }
    };
    let mut file = std::fs::File::create(&temporary).map_err(io(&temporary))?;
    file.write_all(text.as_bytes()).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io(path))?;
    sync_directory(directory)
}

fn remove(path: &Path) -> Result<(), StoreError> {
    std::fs::remove_file(path).map_err(|source| StoreError::Io { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::super::read_rows;
    use super::super::schema::fixtures::first_version_batch;
    use super::*;
    use crate::engine::SeriesKey;

    use super::super::schema::fixtures::plain_row as row;

    fn setup(days: &[i64], files_per_day: i64) -> (tempfile::TempDir, Datasets, SeriesKey) {
        let dir = tempfile::tempdir().unwrap();
        let datasets = Datasets::new(dir.path());
        let key = SeriesKey { service: "a".into(), signal: "cpu".into() };
        for &day in days {
            let partition =
                datasets.series_directory(&key, DatasetKind::History).join(super::super::partition_name(day * DAY_MS));
            for file in 0..files_per_day {
                let rows: Vec<PointRow> = (0..10).map(|i| row(day * DAY_MS + file * 10_000 + i * 1000)).collect();
                write_batch_atomically(&partition, &format!("part-{file:03}.parquet"), &rows_to_batch(&rows).unwrap())
                    .unwrap();
            }
        }
        (dir, datasets, key)
    }

    #[test]
    fn retention_deletes_old_days_and_compaction_merges_finished_ones() {
        let (_dir, datasets, key) = setup(&[100, 120, 129, 130], 3);
        let now = 130 * DAY_MS + 5_000;
        let report = maintain(&datasets, 10 * DAY_MS, now).unwrap();
        assert_eq!(report.partitions_deleted, 1, "day 100 only");
        assert_eq!((report.files_compacted, report.compacted_files_written), (6, 2), "days 120 and 129, not today");
        let partitions = datasets.partitions(&key, DatasetKind::History).unwrap();
        assert_eq!(partitions.iter().map(|p| p.0).collect::<Vec<_>>(), [120, 129, 130]);
        let files = Datasets::partition_files(&partitions[0].1).unwrap();
        assert_eq!(files.len(), 1);
        assert!(files[0].ends_with("part-000-compacted.parquet"));
        assert_eq!(datasets.read_series(&key, DatasetKind::History, 0, i64::MAX).unwrap().len(), 90);
        assert_eq!(read_rows(&files[0]).unwrap().len(), 30);
        // A second pass has nothing left to do.
        assert_eq!(maintain(&datasets, 10 * DAY_MS, now).unwrap(), MaintenanceReport::default());
    }

    #[test]
    fn a_compaction_interrupted_after_its_manifest_is_finished_without_duplicates() {
        let (_dir, datasets, key) = setup(&[5], 3);
        let partition = datasets.partitions(&key, DatasetKind::History).unwrap()[0].1.clone();
        // Steps 1 and 2 done, then a crash: one part already deleted.
        let rows: Vec<PointRow> = (0..30).map(|i| row(5 * DAY_MS + i * 1000)).collect();
        write_batch_atomically(&partition, COMPACTED_HIDDEN, &rows_to_batch(&rows).unwrap()).unwrap();
        std::fs::write(
            partition.join(MANIFEST),
            "part-000-compacted.parquet\npart-000.parquet\npart-001.parquet\npart-002.parquet",
        )
        .unwrap();
        std::fs::remove_file(partition.join("part-000.parquet")).unwrap();
        assert!(recover_partition(&partition).unwrap());
        let files = Datasets::partition_files(&partition).unwrap();
        assert_eq!(files, [partition.join("part-000-compacted.parquet")]);
        assert_eq!(read_rows(&files[0]).unwrap().len(), 30);
        assert!(!partition.join(MANIFEST).exists() && !partition.join(COMPACTED_HIDDEN).exists());
    }

    const MANIFEST_TEXT: &str = "part-000-compacted.parquet\npart-000.parquet\npart-001.parquet\npart-002.parquet";

    /// Day 5 of three 10-row parts after a crash in step 3 of its compaction: the 30 merged rows
    /// only in the hidden file, `part-000` already deleted, and `manifest` as the manifest.
    fn crashed_in_step_3(manifest: &[u8]) -> (tempfile::TempDir, Datasets, SeriesKey, PathBuf) {
        let (dir, datasets, key) = setup(&[5], 3);
        let partition = datasets.partitions(&key, DatasetKind::History).unwrap()[0].1.clone();
        let rows: Vec<PointRow> = (0..30).map(|i| row(5 * DAY_MS + i * 1000)).collect();
        write_batch_atomically(&partition, COMPACTED_HIDDEN, &rows_to_batch(&rows).unwrap()).unwrap();
        std::fs::write(partition.join(MANIFEST), manifest).unwrap();
        std::fs::remove_file(partition.join("part-000.parquet")).unwrap();
        (dir, datasets, key, partition)
    }

    /// Every file recovery must have kept: the two parts left, the hidden merged file (whole) and
    /// the manifest.
    fn assert_everything_kept(partition: &Path) {
        for part in ["part-001.parquet", "part-002.parquet"] {
            assert!(partition.join(part).exists(), "{part} deleted");
        }
        assert_eq!(read_rows(&partition.join(COMPACTED_HIDDEN)).unwrap().len(), 30, "the merged rows");
        assert!(partition.join(MANIFEST).exists());
    }

    #[test]
    fn a_manifest_that_is_not_utf8_keeps_the_merged_file_until_it_is_repaired() {
        let mut manifest = MANIFEST_TEXT.as_bytes().to_vec();
        manifest.push(0xFF);
        let (_dir, datasets, key, partition) = crashed_in_step_3(&manifest);
        for _ in 0..2 {
            let error = recover_partition(&partition).unwrap_err();
            assert!(
                matches!(error, StoreError::CompactionManifest { problem: ManifestProblem::NotUtf8, .. }),
                "{error:?}"
            );
            assert_everything_kept(&partition);
        }
        // Before, the merged file went as a stale one, and the repaired manifest found it gone:
        // `part-000`'s rows were lost.
        std::fs::write(partition.join(MANIFEST), MANIFEST_TEXT).unwrap();
        assert!(recover_partition(&partition).unwrap());
        assert_eq!(datasets.read_series(&key, DatasetKind::History, 0, i64::MAX).unwrap().len(), 30);
    }

    #[test]
    fn a_manifest_that_cannot_be_read_is_no_missing_manifest() {
        let (_dir, datasets, key, partition) = crashed_in_step_3(b"");
        // Any error but "not found" (here EISDIR; EMFILE or EIO under load): retried next pass.
        std::fs::remove_file(partition.join(MANIFEST)).unwrap();
        std::fs::create_dir(partition.join(MANIFEST)).unwrap();
        let error = recover_partition(&partition).unwrap_err();
        assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
        assert_eq!(read_rows(&partition.join(COMPACTED_HIDDEN)).unwrap().len(), 30, "the merged rows kept");
        std::fs::remove_dir(partition.join(MANIFEST)).unwrap();
        std::fs::write(partition.join(MANIFEST), MANIFEST_TEXT).unwrap();
        assert!(recover_partition(&partition).unwrap());
        assert_eq!(datasets.read_series(&key, DatasetKind::History, 0, i64::MAX).unwrap().len(), 30);
    }

    #[test]
    fn a_manifest_without_a_visible_target_deletes_no_part() {
        for target in ["", "_compacted.parquet", ".part.parquet", "sub/part.parquet", "/tmp/part.parquet", "part"] {
            let manifest = format!("{target}\npart-000.parquet\npart-001.parquet\npart-002.parquet");
            let (_dir, datasets, key, partition) = crashed_in_step_3(manifest.as_bytes());
            for _ in 0..2 {
                let error = recover_partition(&partition).unwrap_err();
                assert!(
                    matches!(&error, StoreError::CompactionManifest { problem: ManifestProblem::InvalidTarget(t), .. } if t == target),
                    "{target:?}: {error:?}"
                );
                assert_everything_kept(&partition);
            }
            // Before, the first pass deleted the parts and the second the hidden file: no rows.
            assert_eq!(datasets.read_series(&key, DatasetKind::History, 0, i64::MAX).unwrap().len(), 20, "{target:?}");
        }
    }

    #[test]
    fn a_manifest_naming_files_outside_the_partition_deletes_nothing() {
        let (_dir, _datasets, _key, partition) = crashed_in_step_3(b"");
        let outside = partition.parent().unwrap().join("outside.parquet");
        std::fs::write(&outside, b"not the partition's").unwrap();
        let absolute = outside.display().to_string();
        for part in ["../outside.parquet", absolute.as_str(), "a..b.parquet", "_hidden.parquet", ""] {
            let manifest = format!("part-000-compacted.parquet\npart-001.parquet\n{part}\npart-002.parquet");
            std::fs::write(partition.join(MANIFEST), manifest).unwrap();
            let error = recover_partition(&partition).unwrap_err();
            assert!(
                matches!(&error, StoreError::CompactionManifest { problem: ManifestProblem::InvalidPart(p), .. } if p == part),
                "{part:?}: {error:?}"
            );
            assert_everything_kept(&partition);
            assert!(outside.exists(), "{part:?}");
        }
    }

    #[test]
    fn a_manifest_whose_merged_file_is_gone_deletes_no_part() {
        let (_dir, datasets, key) = setup(&[5], 3);
        let partition = datasets.partitions(&key, DatasetKind::History).unwrap()[0].1.clone();
        std::fs::write(
            partition.join(MANIFEST),
            "part-000-compacted.parquet\npart-000.parquet\npart-001.parquet\npart-002.parquet",
        )
        .unwrap();
        assert!(recover_partition(&partition).unwrap());
        assert_eq!(Datasets::partition_files(&partition).unwrap().len(), 3, "the parts are the only copy");
        assert!(!partition.join(MANIFEST).exists());
        assert_eq!(datasets.read_series(&key, DatasetKind::History, 0, i64::MAX).unwrap().len(), 30);
        // The next pass merges them as any finished day.
        let report = maintain(&datasets, 10 * DAY_MS, 6 * DAY_MS).unwrap();
        assert_eq!((report.files_compacted, report.compacted_files_written), (3, 1));
        assert_eq!(datasets.read_series(&key, DatasetKind::History, 0, i64::MAX).unwrap().len(), 30);
    }

    #[test]
    fn one_partition_that_fails_does_not_stop_the_pass_for_the_others() {
        let (_dir, datasets, key) = setup(&[3, 4, 5], 2);
        let partitions = datasets.partitions(&key, DatasetKind::History).unwrap();
        // A directory where the hidden merged file would be: the pass cannot clear it.
        std::fs::create_dir(partitions[0].1.join(COMPACTED_HIDDEN)).unwrap();
        // A damaged part: set aside, and the day's other part left alone (nothing to merge).
        std::fs::write(partitions[1].1.join("part-009.parquet"), b"not parquet").unwrap();
        std::fs::remove_file(partitions[1].1.join("part-001.parquet")).unwrap();
        let report = maintain(&datasets, 100 * DAY_MS, 10 * DAY_MS).unwrap();
        assert_eq!(report.partitions_failed, 1);
        assert_eq!((report.files_compacted, report.compacted_files_written), (2, 1), "day 5 still compacted");
        assert!(partitions[1].1.join("part-009.parquet.unreadable").exists());
        assert_eq!(Datasets::partition_files(&partitions[1].1).unwrap().len(), 1);
        assert_eq!(Datasets::partition_files(&partitions[2].1).unwrap().len(), 1);
    }

    #[test]
    fn a_part_that_panics_the_decoder_does_not_end_the_pass() {
        let (_dir, datasets, first) = setup(&[50], 3);
        let partition = datasets.partitions(&first, DatasetKind::History).unwrap()[0].1.clone();
        super::super::schema::fixtures::damage_footer_to_panic_the_decoder(&partition.join("part-001.parquet"));
        // A series maintained after `a/cpu`, with a day past retention.
        let second = SeriesKey { service: "b".into(), signal: "cpu".into() };
        let old = datasets.series_directory(&second, DatasetKind::History).join(super::super::partition_name(0));
        write_batch_atomically(&old, "part-000.parquet", &rows_to_batch(&[row(0)]).unwrap()).unwrap();
        // Before, the panic ended the pass at `a/cpu`'s day 50, every pass: `b/cpu` kept its old
        // day for ever.
        let report = maintain(&datasets, 30 * DAY_MS, 60 * DAY_MS).unwrap();
        assert_eq!(report.partitions_deleted, 1);
        assert!(!old.exists());
        assert!(partition.join("part-001.parquet.unreadable").exists());
        assert_eq!((report.files_compacted, report.compacted_files_written), (2, 1), "the two good parts merged");
        assert_eq!(datasets.read_series(&first, DatasetKind::History, 0, i64::MAX).unwrap().len(), 20);
    }

    #[test]
    fn a_compaction_interrupted_before_its_manifest_keeps_the_parts() {
        let (_dir, datasets, key) = setup(&[5], 2);
        let partition = datasets.partitions(&key, DatasetKind::History).unwrap()[0].1.clone();
        std::fs::write(partition.join(COMPACTED_HIDDEN), b"half").unwrap();
        std::fs::write(partition.join(".tmp-1-2-part-x.parquet"), b"torn").unwrap();
        assert!(!recover_partition(&partition).unwrap());
        assert_eq!(Datasets::partition_files(&partition).unwrap().len(), 2);
        assert_eq!(std::fs::read_dir(&partition).unwrap().count(), 2);
    }

    #[test]
    fn a_day_written_partly_by_the_first_version_reads_and_compacts_without_loss() {
        // The day of an upgrade: a part file of the first version (five features), then one of
        // the current schema.
        let (_dir, datasets, key) = setup(&[], 0);
        let partition = datasets.series_directory(&key, DatasetKind::History).join(super::super::partition_name(0));
        write_batch_atomically(&partition, "part-000.parquet", &first_version_batch(0)).unwrap();
        let mut current = row(60_000);
        current.features = PointRow::features_from(Some([1.0, 0.5, 0.1, 0.5, 5.0, 3.0]));
        write_batch_atomically(&partition, "part-001.parquet", &rows_to_batch(&[current]).unwrap()).unwrap();
        let before = datasets.read_series(&key, DatasetKind::History, 0, i64::MAX).unwrap();
        assert_eq!(before.len(), 3);
        assert_eq!(before[1].features, [Some(0.75), Some(0.5), Some(0.1), Some(0.25), Some(2.5), None]);
        assert_eq!(before[2], current);
        // Compacted the next day: one file of the current schema, every row and feature kept.
        let report = maintain(&datasets, 10 * DAY_MS, DAY_MS + 5_000).unwrap();
        assert_eq!((report.files_compacted, report.compacted_files_written), (2, 1));
        let files = Datasets::partition_files(&partition).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(datasets.read_series(&key, DatasetKind::History, 0, i64::MAX).unwrap(), before);
    }
}
