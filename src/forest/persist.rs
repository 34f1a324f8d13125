//! The model file format, version 1.
//!
//! A model is saved as one little-endian binary blob; loading it back gives a forest that scores
//! bit-identically. The format is versioned: a reader refuses a version it does not know with
//! [`PersistError::UnsupportedVersion`], and a caller (the daemon) retrains rather than crash.
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | magic `AEFOREST` |
//! | 8 | 4 | format version (`u32`, currently 1) |
//! | 12 | 4 | feature columns (`u32`) |
//! | 16 | 4 | ψ, the sample size (`u32`) |
//! | 20 | 4 | trees, t (`u32`) |
//! | 24 | 8 | training rows (`u64`) |
//! | 32 | 8 | seed (`u64`) |
//! | 40 | 8 | decision threshold on the score (`f64`) |
//! | 48 | 4 | total nodes, N (`u32`) |
//! | 52 | 4·(t+1) | where each tree starts in the node array, then N (`u32`) |
//! | … | t | each tree's height (`u8`) |
//! | … | 8·N | nodes: threshold (`f32` bits), feature (`u16`), left child (`u16`); see `layout` |
//! | end − 8 | 8 | FNV-1a 64 checksum of every byte before it |
//!
//! Every structural invariant the scorer relies on is checked on load, so a corrupt or hostile
//! file gives an error, never a panic or an out-of-bounds walk.
//!
//! The file stores every node unpacked (8 bytes); in memory a model keeps them in a 7- or 8-byte
//! `layout::NodeTable`, chosen again on load from the trees' sizes and the feature count. The
//! in-memory layout is a property of the running build, not of the file, so it changed nothing
//! here: files written before it load and score as they did.

use super::layout::{MAX_FEATURES, MAX_SAMPLE_SIZE, Node, height_limit};
use super::{Forest, ForestError};

const MAGIC: &[u8; 8] = b"AEFOREST";

/// The version this build writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

const HEADER_BYTES: usize = 52;

/// Why a model file could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PersistError {
    /// Not a model file at all.
    #[error("not an anomaly-exporter model (bad magic bytes)")]
    BadMagic,
    /// A model written by another version of the format.
    #[error(
        "model format version {found} is not supported (this build reads version {FORMAT_VERSION}); retrain the model"
    )]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
    },
    /// Shorter or longer than its header says.
    #[error("model file is truncated or has trailing bytes ({found} bytes, expected {expected})")]
    Length {
        /// Bytes present.
        found: usize,
        /// Bytes the header implies.
        expected: usize,
    },
    /// The checksum does not match: the file was damaged.
    #[error("model file checksum mismatch: the file is damaged")]
    Checksum,
    /// Parses, but describes a forest that cannot be scored.
    #[error("model file is inconsistent: {0}")]
    Inconsistent(String),
}

/// FNV-1a, 64 bits: enough to catch a damaged file; not a defence against tampering.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3))
}

impl Forest {
    /// Serialises the model (format version [`FORMAT_VERSION`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let trees = self.heights.len();
        let mut out = Vec::with_capacity(HEADER_BYTES + 4 * (trees + 1) + trees + 8 * self.nodes.len() + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.columns as u32).to_le_bytes());
        out.extend_from_slice(&(self.sample_size as u32).to_le_bytes());
        out.extend_from_slice(&(trees as u32).to_le_bytes());
        out.extend_from_slice(&(self.training_rows as u64).to_le_bytes());
        out.extend_from_slice(&self.seed.to_le_bytes());
        out.extend_from_slice(&self.threshold.to_bits().to_le_bytes());
        out.extend_from_slice(&(self.nodes.len() as u32).to_le_bytes());
        for offset in &self.offsets {
            out.extend_from_slice(&offset.to_le_bytes());
        }
        out.extend_from_slice(&self.heights);
        for node in (0..self.trees()).flat_map(|tree| self.tree_nodes(tree)) {
            out.extend_from_slice(&node.threshold.to_bits().to_le_bytes());
            out.extend_from_slice(&node.feature.to_le_bytes());
            out.extend_from_slice(&node.left.to_le_bytes());
        }
        let checksum = fnv1a(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Reads a model written by [`Forest::to_bytes`], checking it thoroughly.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ForestError> {
        Ok(decode(bytes)?)
    }
}

/// Reads little-endian fields in order; every read is bounds-checked by the caller's length check.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut field = [0; N];
        field.copy_from_slice(&self.bytes[self.at..self.at + N]);
        self.at += N;
        field
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

fn decode(bytes: &[u8]) -> Result<Forest, PersistError> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(PersistError::BadMagic);
    }
    let mut reader = Reader { bytes, at: 8 };
    let version = reader.u32();
    if version != FORMAT_VERSION {
        return Err(PersistError::UnsupportedVersion { found: version });
    }
    if bytes.len() < HEADER_BYTES + 8 {
        return Err(PersistError::Length { found: bytes.len(), expected: HEADER_BYTES + 8 });
    }
    let columns = reader.u32() as usize;
    let sample_size = reader.u32() as usize;
    let trees = reader.u32() as usize;
    let training_rows = reader.u64() as usize;
    let seed = reader.u64();
    let threshold = f64::from_bits(reader.u64());
    let node_count = reader.u32() as usize;
    let expected = HEADER_BYTES + 4 * (trees + 1) + trees + 8 * node_count + 8;
    if bytes.len() != expected {
        return Err(PersistError::Length { found: bytes.len(), expected });
    }
    let (body, checksum) = bytes.split_at(bytes.len() - 8);
    if fnv1a(body).to_le_bytes() != checksum {
        return Err(PersistError::Checksum);
    }
    let inconsistent = |what: String| Err(PersistError::Inconsistent(what));
    if columns == 0 || columns > MAX_FEATURES {
        return inconsistent(format!("{columns} feature columns"));
    }
    if sample_size == 0 || sample_size > MAX_SAMPLE_SIZE || trees == 0 {
        return inconsistent(format!("sample size {sample_size} with {trees} trees"));
    }
    if !(threshold > 0.0 && threshold <= 1.0) {
        return inconsistent(format!("decision threshold {threshold}"));
    }
    let offsets: Vec<u32> = (0..=trees).map(|_| reader.u32()).collect();
    let heights: Vec<u8> = reader.take_slice(trees).to_vec();
    let nodes: Vec<Node> = (0..node_count)
        .map(|_| Node { threshold: f32::from_bits(reader.u32()), feature: reader.u16(), left: reader.u16() })
        .collect();
    if offsets[0] != 0 || offsets[trees] as usize != node_count || offsets.windows(2).any(|w| w[0] >= w[1]) {
        return inconsistent("tree offsets are not increasing from 0 to the node count".to_owned());
    }
    let max_depth = height_limit(sample_size);
    for tree in 0..trees {
        let tree_nodes = &nodes[offsets[tree] as usize..offsets[tree + 1] as usize];
        check_tree(tree_nodes, u32::from(heights[tree]), max_depth, columns, sample_size)
            .map_err(|what| PersistError::Inconsistent(format!("tree {tree}: {what}")))?;
    }
    Ok(Forest::from_parts(&nodes, offsets, heights, columns, sample_size, training_rows, seed, threshold))
}

impl<'a> Reader<'a> {
    fn take_slice(&mut self, len: usize) -> &'a [u8] {
        let slice = &self.bytes[self.at..self.at + len];
        self.at += len;
        slice
    }
}

/// Checks what scoring relies on: every index in bounds, children after their parent, leaves that
/// loop on themselves at the depth they claim, and no split deeper than the tree's height (so a
/// walk of `height` steps always ends on a leaf).
fn check_tree(nodes: &[Node], height: u32, max_depth: u32, columns: usize, sample_size: usize) -> Result<(), String> {
    if nodes.len() > u16::MAX as usize || height > max_depth {
        return Err(format!("{} nodes, height {height}", nodes.len()));
    }
    let mut depth = vec![u32::MAX; nodes.len()];
    depth[0] = 0;
    for (index, node) in nodes.iter().enumerate() {
        let here = depth[index];
        if here == u32::MAX {
            return Err(format!("node {index} is unreachable"));
        }
        match node.leaf_parts() {
            Some((leaf_depth, size)) => {
                if usize::from(node.left) != index || node.feature != 0 || leaf_depth != here || size > sample_size {
                    return Err(format!("leaf {index} is malformed"));
                }
            }
            None => {
                let left = usize::from(node.left);
                if left <= index || left + 1 >= nodes.len() || usize::from(node.feature) >= columns || here >= height {
                    return Err(format!("split {index} is malformed"));
                }
                if node.threshold.is_nan() || depth[left] != u32::MAX || depth[left + 1] != u32::MAX {
                    return Err(format!("split {index} is malformed"));
                }
                depth[left] = here + 1;
                depth[left + 1] = here + 1;
            }
        }
    }
    Ok(())
}
