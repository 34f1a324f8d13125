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
//! copy of their rows.
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

/// Steps 3–5 of a compaction whose manifest is written: delete the parts it replaces, make the
/// merged file visible, delete the manifest.
fn finish_compaction(partition: &Path) -> Result<Finished, StoreError> {
    let manifest = partition.join(MANIFEST);
    let hidden = partition.join(COMPACTED_HIDDEN);
    let Ok(text) = std::fs::read_to_string(&manifest) else {
        if hidden.exists() {
            remove(&hidden)?;
        }
        return Ok(Finished::NoManifest);
    };
    let mut lines = text.lines();
    let target = lines.next().unwrap_or_default();
    let target_is_valid = !target.is_empty() && !is_hidden(target) && !target.contains('/');
    let merged_exists = hidden.exists() || (target_is_valid && partition.join(target).exists());
    if !merged_exists {
        // The parts are the only copy of their rows: deleting them now would lose the day.
        remove(&manifest)?;
        sync_directory(partition)?;
        return Ok(Finished::MergedFileMissing);
    }
    for part in lines.filter(|part| *part != target) {
        let path = partition.join(part);
        if path.exists() {
            remove(&path)?;
        }
    }
    if hidden.exists() && target_is_valid {
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
