//! A series' model as a file: the forest (in [`crate::forest`]'s own format) with what the
//! detector needs beside it and the metadata a person needs to trust it.
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `AEMODEL1` |
//! | 4 | format version (`u32` LE, [`MODEL_FORMAT_VERSION`]) |
//! | 4 | length of the JSON header (`u32` LE) |
//! | … | JSON [`ModelMetadata`] (feature names, training facts, feature ranges) |
//! | … | the forest, as [`Forest::to_bytes`] writes it (checksummed) |
//! | … | the long window's forest, the same way, when the header has `long` |
//!
//! Version 2 added the long window's forest. Version 1 files (one forest, the same header without
//! `long`) are still read: an upgrade keeps its models.
//!
//! A file of another version, of other features, or damaged gives a [`ModelFileError`]: the
//! caller logs it and retrains, it never crashes.

use serde::{Deserialize, Serialize};

use super::{Model, ModelInfo, Season, SeriesDetector};
use crate::features::{FEATURE_COUNT, FEATURE_NAMES};
use crate::forest::Forest;

const MAGIC: &[u8; 8] = b"AEMODEL1";

/// The model file version this build writes.
pub const MODEL_FORMAT_VERSION: u32 = 2;

/// The oldest version this build reads: version 1 is version 2 without the long forest.
const OLDEST_READ_VERSION: u32 = 1;

/// What a model file says about its model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// [`MODEL_FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The feature names, in the forest's column order.
    pub features: Vec<String>,
    /// When it was fitted, by the data's clock (ms since the epoch).
    pub trained_at_ms: i64,
    /// Rows it was fitted on.
    pub rows: usize,
    /// The series' model generation.
    pub generation: u64,
    /// The training window's first and last timestamps (ms), when trained from a dataset.
    pub window_ms: Option<(i64, i64)>,
    /// Each feature's smallest value over the training rows.
    pub feature_min: [f32; FEATURE_COUNT],
    /// Each feature's largest value over the training rows.
    pub feature_max: [f32; FEATURE_COUNT],
    /// The daily or weekly period found in the training values, if any. Files written before it
    /// existed read as none: the next refit looks for it again.
    #[serde(default)]
    pub season: Option<Season>,
    /// The long window's model, when the detector has one: its forest follows the first.
    #[serde(default)]
    pub long: Option<LongModelMetadata>,
}

/// What a model file says about the long window's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongModelMetadata {
    /// The long window's length in points when fitted.
    pub window: usize,
    /// Rows it was fitted on.
    pub rows: usize,
    /// Bytes of the first forest, after which the long one starts.
    pub first_forest_bytes: usize,
    /// Each feature's smallest value over its training rows.
    pub feature_min: [f32; FEATURE_COUNT],
    /// Each feature's largest value over its training rows.
    pub feature_max: [f32; FEATURE_COUNT],
}

/// Why a model file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// Not a model file, or truncated.
    #[error("not an anomaly-exporter model file")]
    NotAModel,
    /// Written by another format version.
    #[error(
        "model file format version {found}, this build reads {OLDEST_READ_VERSION} to {MODEL_FORMAT_VERSION}: retrain"
    )]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// Fitted on other features than this build computes.
    #[error("model trained on features {found:?}, this build computes {FEATURE_NAMES:?}: retrain")]
    Features {
        /// The file's feature names.
        found: Vec<String>,
    },
    /// The header or the forest is damaged.
    #[error("model file is damaged: {0}")]
    Damaged(String),
}

impl SeriesDetector {
    /// The current model as a file, or `None` while warming up. `window_ms` is recorded as is.
    pub fn export_model(&self, window_ms: Option<(i64, i64)>) -> Option<Vec<u8>> {
        let model = self.model.as_ref()?;
        let forest_bytes = model.forest.to_bytes();
        let long_model = self.long.as_ref().and_then(|long| Some((long.window.capacity(), long.model.as_ref()?)));
        let long = long_model.map(|(window, long)| LongModelMetadata {
            window,
            rows: long.info.rows,
            first_forest_bytes: forest_bytes.len(),
            feature_min: long.feature_min,
            feature_max: long.feature_max,
        });
        let metadata = ModelMetadata {
            format_version: MODEL_FORMAT_VERSION,
            features: FEATURE_NAMES.iter().map(|&n| n.to_owned()).collect(),
            trained_at_ms: model.info.trained_at_ms,
            rows: model.info.rows,
            generation: model.info.generation,
            window_ms,
            feature_min: model.feature_min,
            feature_max: model.feature_max,
            season: model.season,
            long,
        };
        let header = serde_json::to_vec(&metadata).ok()?;
        let mut bytes = Vec::with_capacity(16 + header.len() + model.forest.memory_bytes());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&MODEL_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&forest_bytes);
        if let Some((_, long)) = long_model {
            bytes.extend_from_slice(&long.forest.to_bytes());
        }
        Some(bytes)
    }

    /// Replaces the model with the one in `bytes`, giving it `generation` (the caller's count
    /// of this series' models); the detector's windows and training sets are kept. A long
    /// window's model is taken when the file has one for the configured long window; otherwise
    /// that view keeps its own (or none, until the next refit).
    pub fn import_model(&mut self, bytes: &[u8], generation: u64) -> Result<ModelInfo, ModelFileError> {
        let (metadata, forest, long_forest) = decode(bytes)?;
        let info = ModelInfo { trained_at_ms: metadata.trained_at_ms, rows: metadata.rows, generation };
        self.model = Some(Model {
            forest,
            feature_min: metadata.feature_min,
            feature_max: metadata.feature_max,
            info,
            season: metadata.season,
        });
        if let (Some(view), Some(long), Some(long_forest)) = (self.long.as_mut(), &metadata.long, long_forest)
            && long.window == view.window.capacity()
        {
            view.model = Some(Model {
                forest: long_forest,
                feature_min: long.feature_min,
                feature_max: long.feature_max,
                info: ModelInfo { rows: long.rows, ..info },
                season: None,
            });
        }
        self.points_since_fit = 0;
        Ok(info)
    }
}

impl SeriesDetector {
    /// Renumbers the current model (a model fitted outside the daemon takes the next number of
    /// the series' models on disk).
    pub fn set_model_generation(&mut self, generation: u64) {
        if let Some(model) = self.model.as_mut() {
            model.info.generation = generation;
        }
    }
}

/// Reads a model file's metadata without building its forest's detector.
pub fn read_metadata(bytes: &[u8]) -> Result<ModelMetadata, ModelFileError> {
    decode(bytes).map(|(metadata, ..)| metadata)
}

/// The metadata, the forest and the long window's forest (when the header has one).
fn decode(bytes: &[u8]) -> Result<(ModelMetadata, Forest, Option<Forest>), ModelFileError> {
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(ModelFileError::NotAModel);
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(OLDEST_READ_VERSION..=MODEL_FORMAT_VERSION).contains(&version) {
        return Err(ModelFileError::Version { found: version });
    }
    let header_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    let header = bytes.get(16..16 + header_len).ok_or(ModelFileError::NotAModel)?;
    let metadata: ModelMetadata =
        serde_json::from_slice(header).map_err(|e| ModelFileError::Damaged(format!("header: {e}")))?;
    if metadata.features.iter().map(String::as_str).ne(FEATURE_NAMES.iter().copied()) {
        return Err(ModelFileError::Features { found: metadata.features });
    }
    if version < 2 && metadata.long.is_some() {
        return Err(ModelFileError::Damaged("a version 1 file with a long window's forest".into()));
    }
    let forests = &bytes[16 + header_len..];
    let (first, second) = match &metadata.long {
        Some(long) if long.first_forest_bytes <= forests.len() => {
            let (first, second) = forests.split_at(long.first_forest_bytes);
            (first, Some(second))
        }
        Some(long) => {
            return Err(ModelFileError::Damaged(format!("first forest of {} bytes", long.first_forest_bytes)));
        }
        None => (forests, None),
    };
    let forest_of = |bytes: &[u8]| {
        let forest = Forest::from_bytes(bytes).map_err(|e| ModelFileError::Damaged(e.to_string()))?;
        if forest.columns() != FEATURE_COUNT {
            return Err(ModelFileError::Damaged(format!("forest has {} columns", forest.columns())));
        }
        Ok(forest)
    };
    let forest = forest_of(first)?;
    let long = second.map(forest_of).transpose()?;
    Ok((metadata, forest, long))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::DetectorParams;

    /// The long window on (as by default), so files carry both forests.
    fn long_on() -> DetectorParams {
        DetectorParams { long_window: 200, ..DetectorParams::default() }
    }

    fn trained() -> SeriesDetector {
        let params = DetectorParams { min_training_points: 50, ..long_on() };
        let mut detector = SeriesDetector::new(&params, 9);
        detector.warm_up(&params, (0..300).map(|i| (i * 1000, (i as f64 / 10.0).sin())));
        detector
    }

    #[test]
    fn a_model_round_trips_and_scores_identically() {
        let params = long_on();
        let source = trained();
        let bytes = source.export_model(Some((0, 299_000))).unwrap();
        let metadata = read_metadata(&bytes).unwrap();
        assert_eq!((metadata.rows, metadata.trained_at_ms, metadata.window_ms), (298, 299_000, Some((0, 299_000))));
        let mut copy = SeriesDetector::new(&params, 1);
        let info = copy.import_model(&bytes, 7).unwrap();
        assert_eq!(info.generation, 7);
        let (a, b) = (source.model.as_ref().unwrap(), copy.model.as_ref().unwrap());
        let row = [0.5, 0.1, 0.6, 0.02, 0.7, 0.4];
        assert_eq!(a.anomaly_score(&row, 0.25), b.anomaly_score(&row, 0.25));
        // The long window's forest travels with it.
        let long = metadata.long.as_ref().expect("the long window's model is in the file");
        assert_eq!((long.window, long.rows), (params.long_window, 298));
        let (a, b) = (source.long.as_ref().unwrap(), copy.long.as_ref().unwrap());
        let (a, b) = (a.model.as_ref().unwrap(), b.model.as_ref().unwrap());
        assert_eq!(a.anomaly_score(&row, 0.25), b.anomaly_score(&row, 0.25));
        assert_eq!((b.feature_min, b.feature_max), (a.feature_min, a.feature_max));
        // A detector without a long window reads the file and keeps only the first model.
        let off = DetectorParams { long_window: 0, ..DetectorParams::default() };
        let mut short_only = SeriesDetector::new(&off, 1);
        short_only.import_model(&bytes, 8).unwrap();
        assert!(short_only.long.is_none() && short_only.model.is_some());
        // Its own file holds the one model.
        let short_bytes = short_only.export_model(None).unwrap();
        assert!(read_metadata(&short_bytes).unwrap().long.is_none());
    }

    #[test]
    fn the_season_round_trips_and_old_headers_read_without_one() {
        // Four days of a daily cycle at 5-minute steps: the model finds the period.
        let params = DetectorParams::default();
        let mut source = SeriesDetector::new(&params, 3);
        let day = |i: i64| 10.0 + (std::f64::consts::TAU * i as f64 / 288.0).sin() + (i % 7) as f64 * 0.01;
        source.warm_up(&params, (0..4 * 288).map(|i| (i * 300_000, day(i))));
        let bytes = source.export_model(None).unwrap();
        let metadata = read_metadata(&bytes).unwrap();
        assert_eq!(metadata.season.map(|s| s.period_points), Some(288));
        let mut copy = SeriesDetector::new(&params, 3);
        copy.import_model(&bytes, 2).unwrap();
        assert_eq!(copy.model.as_ref().unwrap().season, metadata.season);
        // A header written before the field existed.
        let mut json = serde_json::to_value(&metadata).unwrap();
        json.as_object_mut().unwrap().remove("season");
        let old: ModelMetadata = serde_json::from_value(json).unwrap();
        assert_eq!(old.season, None);
    }

    #[test]
    fn incompatible_or_damaged_files_are_errors_not_panics() {
        let bytes = trained().export_model(None).unwrap();
        let mut other_version = bytes.clone();
        other_version[8] = 3;
        assert!(matches!(read_metadata(&other_version), Err(ModelFileError::Version { found: 3 })));
        // Files of the first format hold one forest and no `long` in the header: still read, and
        // one that claims a long forest is damaged.
        let off = DetectorParams { min_training_points: 50, long_window: 0, ..DetectorParams::default() };
        let mut short_only = SeriesDetector::new(&off, 9);
        short_only.warm_up(&off, (0..300).map(|i| (i * 1000, (i as f64 / 10.0).sin())));
        let mut first_format = short_only.export_model(None).unwrap();
        first_format[8] = 1;
        let mut reader = SeriesDetector::new(&off, 9);
        assert_eq!(reader.import_model(&first_format, 3).unwrap().generation, 3);
        let row = [0.5, 0.1, 0.6, 0.02, 0.7, 0.4];
        let score = |d: &SeriesDetector| d.model.as_ref().unwrap().anomaly_score(&row, 0.25);
        assert_eq!(score(&reader), score(&short_only));
        let mut claims_long = bytes.clone();
        claims_long[8] = 1;
        assert!(matches!(read_metadata(&claims_long), Err(ModelFileError::Damaged(_))));
        let mut before_first = bytes.clone();
        before_first[8] = 0;
        assert!(matches!(read_metadata(&before_first), Err(ModelFileError::Version { found: 0 })));
        // A long forest whose stated offset lies beyond the file is damage, not a panic.
        let mut header: ModelMetadata = read_metadata(&bytes).unwrap();
        header.long.as_mut().unwrap().first_forest_bytes = bytes.len();
        let json = serde_json::to_vec(&header).unwrap();
        let mut lying = bytes[..12].to_vec();
        lying.extend_from_slice(&(json.len() as u32).to_le_bytes());
        lying.extend_from_slice(&json);
        let old_header_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        lying.extend_from_slice(&bytes[16 + old_header_len..]);
        assert!(matches!(read_metadata(&lying), Err(ModelFileError::Damaged(_))));
        let mut damaged = bytes.clone();
        let last = damaged.len() - 20;
        damaged[last] ^= 0xFF;
        assert!(matches!(read_metadata(&damaged), Err(ModelFileError::Damaged(_))));
        let mut renamed = bytes.clone();
        let at = bytes.windows(12).position(|w| w == b"rolling_mean").unwrap();
        renamed[at + 9] = b'o';
        assert!(matches!(read_metadata(&renamed), Err(ModelFileError::Features { .. })));
        for cut in [0, 5, 15, 40, bytes.len() - 1] {
            assert!(read_metadata(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
