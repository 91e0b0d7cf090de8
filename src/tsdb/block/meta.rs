//! A block's `meta.json`: one model for the block writer, the block reader and the shipper.
//!
//! [`MetaFile`] holds the fields we use in Prometheus's and Thanos's order and keeps every field
//! it does not know (other stats, `compaction.parents`, Thanos `rewrites`, a file's `hash`...) so
//! a read-modify-write (the shipper adding `files` and `upload_time`) loses nothing.
//! [`MetaFile::encode`] writes it as Go does.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BlockError, Ulid};

/// Fields not modelled, kept as read (serialized after the modelled ones).
pub type Unknown = BTreeMap<String, Value>;

/// A block's `meta.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MetaFile {
    /// The block's ULID as written.
    pub ulid: String,
    /// First timestamp covered (inclusive).
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// End of the covered range (exclusive).
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    /// Counts.
    #[serde(default)]
    pub stats: MetaStats,
    /// Compaction level and sources.
    #[serde(default)]
    pub compaction: MetaCompaction,
    /// Format version (1).
    pub version: u32,
    /// Thanos section (external labels, files); absent in a plain Prometheus block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<MetaThanos>,
    /// Other top-level fields.
    #[serde(flatten)]
    pub other: Unknown,
}

/// `stats` of meta.json (Go's `omitempty`: zero counts are left out).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct MetaStats {
    /// Samples in the block.
    #[serde(rename = "numSamples", skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    /// Series in the block.
    #[serde(rename = "numSeries", skip_serializing_if = "is_zero")]
    pub num_series: u64,
    /// Chunks in the block.
    #[serde(rename = "numChunks", skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    /// Other counts.
    #[serde(flatten)]
    pub other: Unknown,
}

/// `compaction` of meta.json.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(default)]
pub struct MetaCompaction {
    /// 1 for a block cut from the head.
    pub level: u32,
    /// ULIDs of the blocks it was made from (itself for a level-1 block).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Other fields (`parents`, `deletable`...).
    #[serde(flatten)]
    pub other: Unknown,
}

/// The `thanos` section of meta.json.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MetaThanos {
    /// Section version, when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Value>,
    /// External labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Downsampling (`{"resolution": 0}` for raw data).
    #[serde(default = "default_downsample")]
    pub downsample: Value,
    /// Who made the block (`"receive"`).
    #[serde(default)]
    pub source: String,
    /// Chunk segment file names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_files: Option<Vec<String>>,
    /// Files of the block with their sizes, `meta.json` last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<MetaFileEntry>>,
    /// Compactor rewrites, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrites: Option<Value>,
    /// Go's `omitempty` never omits a struct: Thanos always writes `"index_stats": {}`.
    #[serde(default = "empty_object")]
    pub index_stats: Value,
    /// Extensions, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
    /// When the shipper uploaded the block (Go `time.Time` JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_time: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub other: Unknown,
}

/// One entry of `thanos.files`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MetaFileEntry {
    /// Path inside the block directory.
    pub rel_path: String,
    /// Size in bytes (left out for `meta.json` and empty files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Other fields (`hash`).
    #[serde(flatten)]
    pub other: Unknown,
}

impl MetaFileEntry {
    /// An entry for `rel_path`; a size of 0 is left out, as Go's `omitempty` does.
    pub fn new(rel_path: impl Into<String>, size_bytes: u64) -> Self {
        MetaFileEntry {
            rel_path: rel_path.into(),
            size_bytes: (size_bytes != 0).then_some(size_bytes),
            other: Unknown::new(),
        }
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn default_downsample() -> Value {
    serde_json::json!({"resolution": 0})
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// What a block's meta.json says (Prometheus fields and the Thanos external labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMeta {
    /// The block's ULID.
    pub ulid: Ulid,
    /// First timestamp covered (inclusive).
    pub min_time: i64,
    /// End of the covered range (exclusive).
    pub max_time: i64,
    /// Number of samples (0 when absent).
    pub num_samples: u64,
    /// Number of series (0 when absent).
    pub num_series: u64,
    /// Number of chunks (0 when absent).
    pub num_chunks: u64,
    /// Compaction level (1 for a block cut from the head).
    pub compaction_level: u32,
    /// Thanos external labels (empty without a Thanos section).
    pub thanos_labels: BTreeMap<String, String>,
}

impl MetaFile {
    /// Reads `<block_dir>/meta.json` as it is (no checks beyond its shape); errors name the file.
    pub fn read(block_dir: &Path) -> Result<MetaFile, BlockError> {
        let path = block_dir.join("meta.json");
        let raw = std::fs::read(&path).map_err(|e| BlockError::io(&path, e))?;
        serde_json::from_slice(&raw)
            .map_err(|e| BlockError::Corrupt(format!("{}: invalid: {e}", path.display())))
    }

    /// Encodes as Prometheus (`MarshalIndent(.., "", "\t")`) or, with a Thanos section, as
    /// Thanos (`json.Encoder` with a tab indent, hence a trailing newline).
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        encode_go_json(self, self.thanos.is_some())
    }
}

/// Reads and checks `<block_dir>/meta.json` (version 1, a valid ULID); errors name the file.
pub fn read_meta(block_dir: &Path) -> Result<BlockMeta, BlockError> {
    let m = MetaFile::read(block_dir)?;
    let bad = |msg: String| {
        BlockError::Corrupt(format!("{}: {msg}", block_dir.join("meta.json").display()))
    };
    if m.version != 1 {
        return Err(bad(format!("unsupported version {}", m.version)));
    }
    Ok(BlockMeta {
        ulid: m
            .ulid
            .parse()
            .map_err(|_| bad(format!("bad ulid {:?}", m.ulid)))?,
        min_time: m.min_time,
        max_time: m.max_time,
        num_samples: m.stats.num_samples,
        num_series: m.stats.num_series,
        num_chunks: m.stats.num_chunks,
        compaction_level: m.compaction.level,
        thanos_labels: m.thanos.map(|t| t.labels).unwrap_or_default(),
    })
}

/// JSON as Go's encoder writes it with a tab indent: like Go, `<`, `>`, `&`, U+2028 and U+2029
/// are escaped (they can only occur inside strings, so escaping the output is safe); Go's
/// `json.Encoder` ends with a newline, `MarshalIndent` does not.
fn encode_go_json<T: Serialize + ?Sized>(
    v: &T,
    trailing_newline: bool,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser)?;
    // serde_json writes valid UTF-8.
    let text = String::from_utf8_lossy(&out);
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\u{2028}' => escaped.push_str("\\u2028"),
            '\u{2029}' => escaped.push_str("\\u2029"),
            c => escaped.push(c),
        }
    }
    if trailing_newline {
        escaped.push('\n');
    }
    Ok(escaped.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_read_modify_write() {
        let text = r#"{
            "ulid": "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "minTime": 0,
            "maxTime": 7200000,
            "stats": {"numSamples": 5, "numSeries": 1, "numChunks": 1, "numTombstones": 2},
            "compaction": {"level": 2, "sources": ["01ARZ3NDEKTSV4RRFFQ69G5FAV"],
                           "parents": [{"ulid": "x", "minTime": 0, "maxTime": 1}]},
            "version": 1,
            "thanos": {
                "version": 1,
                "labels": {"tenant_id": "a"},
                "downsample": {"resolution": 0},
                "source": "receive",
                "files": [{"rel_path": "index", "size_bytes": 10, "hash": {"func": 1, "value": "ab"}}],
                "index_stats": {"series_max_size": 3},
                "rewrites": [{"sources": []}],
                "extensions": {"k": "v"}
            },
            "future": {"x": [1, 2]}
        }"#;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("meta.json"), text).unwrap();
        let mut m = MetaFile::read(dir.path()).unwrap();
        assert_eq!(m.stats.num_samples, 5);
        assert_eq!(m.compaction.level, 2);
        let th = m.thanos.as_mut().unwrap();
        th.upload_time = Some("2026-01-01T00:00:00Z".into());
        let out: Value = serde_json::from_slice(&m.encode().unwrap()).unwrap();
        let mut want: Value = serde_json::from_str(text).unwrap();
        want["thanos"]["upload_time"] = "2026-01-01T00:00:00Z".into();
        assert_eq!(out, want);
        // And the block reader's view of the same file.
        let bm = read_meta(dir.path()).unwrap();
        assert_eq!((bm.num_samples, bm.compaction_level), (5, 2));
        assert_eq!(
            bm.thanos_labels.get("tenant_id").map(String::as_str),
            Some("a")
        );
    }
}
