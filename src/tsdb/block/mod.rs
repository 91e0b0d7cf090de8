//! Writing Prometheus TSDB blocks: `<ULID>/{chunks/000001.., index, tombstones, meta.json}`.
//!
//! A block is written to `<dir>/<ULID>.tmp-for-creation`, every file and directory is fsynced, and the
//! directory is renamed to `<dir>/<ULID>` (then `<dir>` is fsynced). No block is written for 0 samples:
//! [`write_block`] returns [`BlockError::Empty`] instead.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::tsdb::chunks::{sync_dir, ChunkWriter, DEFAULT_MAX_SEGMENT_SIZE};
use crate::tsdb::index::{write_index, IndexChunk};
use crate::tsdb::labels::Labels;

mod meta;

pub use meta::{
    read_meta, BlockMeta, MetaCompaction, MetaFile, MetaFileEntry, MetaStats, MetaThanos, Unknown,
};

/// Errors from writing or reading block files.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// An I/O operation on `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// File or directory concerned.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file read back is not in the expected format.
    #[error("corrupt block data: {0}")]
    Corrupt(String),
    /// Series given to the index are not strictly sorted by labels (or are duplicated).
    #[error("series out of order or duplicated: {0}")]
    OutOfOrder(String),
    /// A chunk is malformed or lies outside the block or out of time order.
    #[error("invalid chunk in series {series}: {reason}")]
    InvalidChunk {
        /// Labels of the series.
        series: String,
        /// What is wrong.
        reason: String,
    },
    /// `mint >= maxt`.
    #[error("invalid block range [{mint}, {maxt})")]
    InvalidRange {
        /// Requested minimum time.
        mint: i64,
        /// Requested (exclusive) maximum time.
        maxt: i64,
    },
    /// No samples at all: no block is written.
    #[error("no samples: a block is never written for 0 samples")]
    Empty,
    /// A section or file exceeds a format limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// meta.json could not be encoded.
    #[error("meta.json: {0}")]
    Json(#[from] serde_json::Error),
}

impl BlockError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> BlockError {
        BlockError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Crockford base32 alphabet used by ULIDs.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A ULID: 48-bit millisecond timestamp followed by 80 random bits; sorts by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ulid(pub u128);

/// Last ULID handed out, to keep ULIDs of one process strictly increasing (as `ulid.Monotonic`).
static LAST_ULID: Mutex<u128> = Mutex::new(0);

fn random_u64(salt: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(salt);
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

impl Ulid {
    /// A ULID from a millisecond timestamp (low 48 bits kept) and random bits (low 80 bits kept).
    pub fn from_parts(ms: u64, random: u128) -> Ulid {
        Ulid((u128::from(ms & 0xffff_ffff_ffff) << 80) | (random & ((1u128 << 80) - 1)))
    }

    /// A new ULID for the current time, greater than every ULID this process generated before.
    pub fn generate() -> Ulid {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let random = (u128::from(random_u64(1)) << 64) | u128::from(random_u64(2));
        let mut u = Ulid::from_parts(ms, random);
        let mut last = LAST_ULID.lock().unwrap_or_else(|e| e.into_inner());
        if u.0 <= *last {
            u = Ulid(last.wrapping_add(1));
        }
        *last = u.0;
        u
    }

    /// The millisecond timestamp in the first 48 bits.
    pub fn timestamp_ms(&self) -> u64 {
        (self.0 >> 80) as u64
    }
}

impl fmt::Display for Ulid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = [0u8; 26];
        for (i, c) in s.iter_mut().enumerate() {
            *c = CROCKFORD[((self.0 >> (5 * (25 - i))) & 31) as usize];
        }
        f.write_str(std::str::from_utf8(&s).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for Ulid {
    type Err = BlockError;

    fn from_str(s: &str) -> Result<Ulid, BlockError> {
        let bad = || BlockError::Corrupt(format!("bad ULID {s:?}"));
        if s.len() != 26 {
            return Err(bad());
        }
        let mut v: u128 = 0;
        for (i, b) in s.bytes().enumerate() {
            let d = CROCKFORD
                .iter()
                .position(|&c| c == b.to_ascii_uppercase())
                .ok_or_else(bad)? as u128;
            if i == 0 && d > 7 {
                return Err(bad());
            }
            v = (v << 5) | d;
        }
        Ok(Ulid(v))
    }
}

/// One chunk of a series to write: inclusive time range and XOR chunk bytes.
#[derive(Debug, Clone, Copy)]
pub struct ChunkMeta<'a> {
    /// Timestamp of the first sample.
    pub mint: i64,
    /// Timestamp of the last sample (inclusive).
    pub maxt: i64,
    /// XOR chunk bytes exactly as stored (`XorChunk::bytes()`).
    pub data: &'a [u8],
}

/// A series to write: its labels and its chunks in time order.
#[derive(Debug, Clone)]
pub struct BlockSeries<'a> {
    /// The series' labels (never the external labels).
    pub labels: &'a Labels,
    /// Chunks in time order, non-overlapping.
    pub chunks: Vec<ChunkMeta<'a>>,
}

/// Thanos section of meta.json (downsample resolution 0; `files` is computed).
#[derive(Debug, Clone, Default)]
pub struct ThanosMeta {
    /// External labels of the block (tenant label included).
    pub labels: BTreeMap<String, String>,
    /// Upload source, `"receive"` for a receiver.
    pub source: String,
}

/// The finished blocks of a tenant directory: its subdirectories named by a ULID (never the
/// `.tmp-for-creation` / `.tmp-for-deletion` ones of a cut or delete in progress), sorted by
/// ULID. A missing directory has none.
pub fn list_block_dirs(dir: &Path) -> std::io::Result<Vec<(Ulid, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(ulid) = name.to_str().and_then(|n| n.parse::<Ulid>().ok()) else {
            continue;
        };
        let path = entry.path();
        if path.is_dir() {
            out.push((ulid, path));
        }
    }
    out.sort_unstable_by_key(|(u, _)| *u);
    Ok(out)
}

/// Number of samples of an XOR chunk (its 2-byte big-endian header).
fn chunk_samples(data: &[u8]) -> Option<u16> {
    (data.len() >= 2).then(|| u16::from_be_bytes([data[0], data[1]]))
}

fn check_chunks(s: &BlockSeries<'_>, mint: i64, maxt: i64) -> Result<u64, BlockError> {
    let mut samples = 0u64;
    let mut prev_maxt = None;
    for c in &s.chunks {
        let reason = if c.mint > c.maxt {
            Some("chunk maxt before mint")
        } else if c.mint < mint || c.maxt >= maxt {
            Some("chunk outside the block range")
        } else if prev_maxt.is_some_and(|p| c.mint <= p) {
            Some("chunks overlap or are out of order")
        } else {
            match chunk_samples(c.data) {
                None | Some(0) => Some("empty chunk"),
                Some(n) => {
                    samples += u64::from(n);
                    None
                }
            }
        };
        if let Some(reason) = reason {
            return Err(BlockError::InvalidChunk {
                series: s.labels.to_string(),
                reason: reason.into(),
            });
        }
        prev_maxt = Some(c.maxt);
    }
    Ok(samples)
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), BlockError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| BlockError::io(path, e))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| BlockError::io(path, e))
}

/// The empty tombstones file: magic `0x0130BA30`, version 1, CRC32C of no entries (0).
pub const EMPTY_TOMBSTONES: [u8; 9] = [0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0];

/// Writes a level-1 block covering `[mint, maxt)` under `dir` and returns its ULID.
///
/// Series may come in any order (they are sorted by labels); series without chunks are skipped;
/// duplicated label sets, chunks outside `[mint, maxt)`, overlapping or empty chunks are errors.
/// With no samples at all nothing is written and [`BlockError::Empty`] is returned.
pub fn write_block<'a>(
    dir: &Path,
    mint: i64,
    maxt: i64,
    series: impl IntoIterator<Item = BlockSeries<'a>>,
    thanos: Option<&ThanosMeta>,
) -> Result<Ulid, BlockError> {
    write_block_segmented(dir, mint, maxt, series, thanos, DEFAULT_MAX_SEGMENT_SIZE)
}

/// [`write_block`] with chunk segment files cut past `max_segment_size` bytes (tests use small ones).
pub(crate) fn write_block_segmented<'a>(
    dir: &Path,
    mint: i64,
    maxt: i64,
    series: impl IntoIterator<Item = BlockSeries<'a>>,
    thanos: Option<&ThanosMeta>,
    max_segment_size: u64,
) -> Result<Ulid, BlockError> {
    if mint >= maxt {
        return Err(BlockError::InvalidRange { mint, maxt });
    }
    let mut series: Vec<BlockSeries<'a>> = series
        .into_iter()
        .filter(|s| !s.chunks.is_empty())
        .collect();
    if !series.windows(2).all(|w| w[0].labels <= w[1].labels) {
        series.sort_by(|a, b| a.labels.cmp(b.labels));
    }
    let mut num_samples = 0u64;
    for s in &series {
        num_samples += check_chunks(s, mint, maxt)?;
    }
    if let Some(w) = series.windows(2).find(|w| w[0].labels == w[1].labels) {
        return Err(BlockError::OutOfOrder(w[1].labels.to_string()));
    }
    if num_samples == 0 {
        return Err(BlockError::Empty);
    }
    let mut w = BlockWriter::with_segment_size(dir, mint, maxt, max_segment_size)?;
    for s in &series {
        w.add_series(s)?;
    }
    w.finish(thanos)
}

/// Writes one block series by series, so the caller never holds every chunk of the block at once
/// (a head cut copies one series' chunks at a time). Series must come in label order. The block
/// is built in `<dir>/<ULID>.tmp-for-creation` and only [`BlockWriter::finish`] renames it into
/// place; dropping an unfinished writer removes the temporary directory.
pub struct BlockWriter {
    dir: PathBuf,
    tmp: PathBuf,
    ulid: Ulid,
    mint: i64,
    maxt: i64,
    cw: Option<ChunkWriter>,
    entries: Vec<(Labels, Vec<IndexChunk>)>,
    num_samples: u64,
    num_chunks: u64,
    max_segment_size: u64,
}

impl BlockWriter {
    /// Starts a level-1 block covering `[mint, maxt)` under `dir`.
    pub fn new(dir: &Path, mint: i64, maxt: i64) -> Result<BlockWriter, BlockError> {
        Self::with_segment_size(dir, mint, maxt, DEFAULT_MAX_SEGMENT_SIZE)
    }

    fn with_segment_size(
        dir: &Path,
        mint: i64,
        maxt: i64,
        max_segment_size: u64,
    ) -> Result<BlockWriter, BlockError> {
        if mint >= maxt {
            return Err(BlockError::InvalidRange { mint, maxt });
        }
        std::fs::create_dir_all(dir).map_err(|e| BlockError::io(dir, e))?;
        let ulid = Ulid::generate();
        let tmp = dir.join(format!("{ulid}.tmp-for-creation"));
        Ok(BlockWriter {
            dir: dir.to_path_buf(),
            tmp,
            ulid,
            mint,
            maxt,
            cw: None,
            entries: Vec::new(),
            num_samples: 0,
            num_chunks: 0,
            max_segment_size,
        })
    }

    /// Adds a series after every series with smaller labels; a series without chunks is skipped.
    pub fn add_series(&mut self, s: &BlockSeries<'_>) -> Result<(), BlockError> {
        if s.chunks.is_empty() {
            return Ok(());
        }
        if self.entries.last().is_some_and(|(l, _)| l >= s.labels) {
            return Err(BlockError::OutOfOrder(s.labels.to_string()));
        }
        self.num_samples += check_chunks(s, self.mint, self.maxt)?;
        let cw = match &mut self.cw {
            Some(cw) => cw,
            None => {
                if self.tmp.exists() {
                    std::fs::remove_dir_all(&self.tmp).map_err(|e| BlockError::io(&self.tmp, e))?;
                }
                std::fs::create_dir_all(&self.tmp).map_err(|e| BlockError::io(&self.tmp, e))?;
                self.cw.insert(ChunkWriter::with_segment_size(
                    &self.tmp.join("chunks"),
                    self.max_segment_size,
                )?)
            }
        };
        let mut metas = Vec::with_capacity(s.chunks.len());
        for c in &s.chunks {
            let reference = cw.write_chunk(c.data)?;
            metas.push(IndexChunk {
                mint: c.mint,
                maxt: c.maxt,
                reference,
            });
        }
        self.num_chunks += metas.len() as u64;
        self.entries.push((s.labels.clone(), metas));
        Ok(())
    }

    /// Writes index, tombstones and meta.json, fsyncs and renames the block into place.
    /// [`BlockError::Empty`] (nothing written) when no series had samples.
    pub fn finish(mut self, thanos: Option<&ThanosMeta>) -> Result<Ulid, BlockError> {
        let Some(cw) = self.cw.take() else {
            return Err(BlockError::Empty);
        };
        let result = self.finish_tmp(cw, thanos).and_then(|()| {
            let fin = self.dir.join(self.ulid.to_string());
            std::fs::rename(&self.tmp, &fin).map_err(|e| BlockError::io(&fin, e))?;
            sync_dir(&self.dir)
        });
        // On success the tmp dir is gone (renamed); on failure Drop removes it.
        result.map(|()| self.ulid)
    }

    fn finish_tmp(
        &mut self,
        cw: ChunkWriter,
        thanos: Option<&ThanosMeta>,
    ) -> Result<(), BlockError> {
        let tmp = &self.tmp;
        let segments = cw.finish()?;
        let entries: Vec<(&Labels, Vec<IndexChunk>)> =
            self.entries.iter().map(|(l, c)| (l, c.clone())).collect();
        let index_size = write_index(&tmp.join("index"), &entries)?;
        drop(entries);
        write_synced(&tmp.join("tombstones"), &EMPTY_TOMBSTONES)?;
        let ulid = self.ulid;
        let thanos = match thanos {
            None => None,
            Some(t) => {
                let mut files = Vec::with_capacity(segments.len() + 2);
                let mut segment_files = Vec::with_capacity(segments.len());
                for p in &segments {
                    let size = std::fs::metadata(p)
                        .map_err(|e| BlockError::io(p, e))?
                        .len();
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    files.push(MetaFileEntry {
                        size_bytes: Some(size),
                        ..MetaFileEntry::new(format!("chunks/{name}"), 0)
                    });
                    segment_files.push(name);
                }
                files.push(MetaFileEntry {
                    size_bytes: Some(index_size),
                    ..MetaFileEntry::new("index", 0)
                });
                files.push(MetaFileEntry::new("meta.json", 0));
                Some(MetaThanos {
                    version: None,
                    labels: t.labels.clone(),
                    downsample: serde_json::json!({"resolution": 0}),
                    source: t.source.clone(),
                    segment_files: Some(segment_files),
                    files: Some(files),
                    rewrites: None,
                    index_stats: serde_json::Value::Object(Default::default()),
                    extensions: None,
                    upload_time: None,
                    other: Default::default(),
                })
            }
        };
        let meta = MetaFile {
            ulid: ulid.to_string(),
            min_time: self.mint,
            max_time: self.maxt,
            stats: MetaStats {
                num_samples: self.num_samples,
                num_series: self.entries.len() as u64,
                num_chunks: self.num_chunks,
                other: Default::default(),
            },
            compaction: MetaCompaction {
                level: 1,
                sources: vec![ulid.to_string()],
                other: Default::default(),
            },
            version: 1,
            thanos,
            other: Default::default(),
        };
        write_synced(&tmp.join("meta.json"), &meta.encode()?)?;
        sync_dir(tmp)
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if self.tmp.exists() {
            // Unfinished or failed: leave no half block behind (best effort).
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tsdb::chunkenc::XorChunk;
    use crate::tsdb::chunks::ChunkReader;
    use crate::tsdb::index::IndexReader;
    use crate::tsdb::testutil::{assert_dump_eq, go_labels, parse_dump, promtool};
    use std::collections::HashMap;

    pub(crate) const STALE: u64 = 0x7ff0_0000_0000_0002;
    /// Block start: a multiple of 2 h.
    pub(crate) const BASE: i64 = 1_700_000_000_000 / 7_200_000 * 7_200_000;
    pub(crate) const RANGE: i64 = 7_200_000;

    /// Test data: labels and their chunks (all samples within `[BASE, BASE + RANGE)`).
    pub(crate) struct Data {
        pub(crate) series: Vec<(Labels, Vec<XorChunk>)>,
    }

    fn value(s: usize, i: usize) -> f64 {
        match (s + i) % 97 {
            0 => f64::from_bits(STALE),
            1 => f64::NAN,
            2 => f64::INFINITY,
            3 => f64::NEG_INFINITY,
            4 => -0.0,
            5 => 1e300 * (i as f64),
            6 => 1.0 / 3.0 + s as f64,
            _ => (s * 1000 + i) as f64 * 0.25 - 77.0,
        }
    }

    /// `n` series; series `s` has `1 + s % 3` chunks of 120 samples, every 15 s.
    pub(crate) fn data(n: usize) -> Data {
        let mut series = Vec::with_capacity(n);
        for s in 0..n {
            let name = if s % 2 == 0 { "metric_a" } else { "metric_b" };
            let inst = format!("host-{s}");
            let odd = format!("é日本 \"q\" \\ {}", s % 5);
            let mut pairs = vec![
                ("__name__", name),
                ("instance", inst.as_str()),
                ("job", "node"),
            ];
            if s % 7 == 0 {
                pairs.push(("utf8", odd.as_str()));
            }
            let ls = Labels::from_pairs(pairs);
            let mut chunks = Vec::new();
            let mut t = BASE + (s as i64 % 15) * 1000;
            for c in 0..(1 + s % 3) {
                let mut x = XorChunk::new();
                for i in 0..120 {
                    x.append(t, value(s, c * 120 + i));
                    t += 15_000;
                }
                chunks.push(x);
            }
            series.push((ls, chunks));
        }
        Data { series }
    }

    pub(crate) fn block_series(d: &Data) -> Vec<BlockSeries<'_>> {
        // Reverse order: write_block must sort.
        d.series
            .iter()
            .rev()
            .map(|(ls, cs)| BlockSeries {
                labels: ls,
                chunks: cs
                    .iter()
                    .map(|c| ChunkMeta {
                        mint: c.first_time().unwrap(),
                        maxt: c.last_time().unwrap(),
                        data: c.bytes(),
                    })
                    .collect(),
            })
            .collect()
    }

    pub(crate) fn thanos() -> ThanosMeta {
        ThanosMeta {
            labels: BTreeMap::from([
                ("receive_replica".to_string(), "0".to_string()),
                ("tenant_id".to_string(), "team-a".to_string()),
            ]),
            source: "receive".into(),
        }
    }

    fn samples_of(d: &Data) -> (u64, u64) {
        let chunks = d.series.iter().map(|s| s.1.len() as u64).sum();
        let samples = d
            .series
            .iter()
            .flat_map(|s| &s.1)
            .map(|c| u64::from(c.num_samples()))
            .sum();
        (samples, chunks)
    }

    #[test]
    fn round_trip_through_readers() {
        let d = data(60);
        let dir = tempfile::tempdir().unwrap();
        let ulid = write_block(dir.path(), BASE, BASE + RANGE, block_series(&d), None).unwrap();
        let bdir = dir.path().join(ulid.to_string());
        assert!(!dir.path().join(format!("{ulid}.tmp-for-creation")).exists());
        assert_eq!(
            std::fs::read(bdir.join("tombstones")).unwrap(),
            EMPTY_TOMBSTONES
        );
        let idx = IndexReader::open(&bdir.join("index")).unwrap();
        let cr = ChunkReader::open(&bdir.join("chunks")).unwrap();

        // Symbols: sorted, unique, every name and value.
        let syms = idx.symbols().unwrap();
        assert!(syms.windows(2).all(|w| w[0] < w[1]));
        for (ls, _) in &d.series {
            for (n, v) in ls.iter() {
                assert!(syms.binary_search_by(|s| s.as_str().cmp(n)).is_ok());
                assert!(syms.binary_search_by(|s| s.as_str().cmp(v)).is_ok());
            }
        }

        let mut sorted: Vec<&(Labels, Vec<XorChunk>)> = d.series.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let all = idx.postings("", "").unwrap();
        assert_eq!(all.len(), sorted.len());
        let mut by_pair: HashMap<(String, String), Vec<u32>> = HashMap::new();
        for (id, (ls, chunks)) in all.iter().zip(&sorted) {
            let (got, metas) = idx.series(*id).unwrap();
            assert_eq!(&got, ls);
            assert_eq!(metas.len(), chunks.len());
            for (m, c) in metas.iter().zip(chunks.iter()) {
                assert_eq!(
                    (m.mint, m.maxt),
                    (c.first_time().unwrap(), c.last_time().unwrap())
                );
                assert_eq!(cr.chunk(m.reference).unwrap(), c.bytes());
            }
            for (n, v) in ls.iter() {
                by_pair.entry((n.into(), v.into())).or_default().push(*id);
            }
        }
        assert_eq!(idx.postings_keys().unwrap().len(), by_pair.len() + 1);
        for ((n, v), ids) in &by_pair {
            assert_eq!(&idx.postings(n, v).unwrap(), ids, "postings {n}={v}");
        }
        // The stale marker survives by bits.
        let (_, metas) = idx.series(all[0]).unwrap();
        let bits: Vec<u64> = metas
            .iter()
            .flat_map(|m| {
                XorChunk::from_bytes(&cr.chunk(m.reference).unwrap())
                    .unwrap()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .map(|(_, v)| v.to_bits())
            .collect();
        assert!(bits.contains(&STALE));
    }

    #[test]
    fn meta_json_layout() {
        let d = data(10);
        let (samples, chunks) = samples_of(&d);
        let dir = tempfile::tempdir().unwrap();
        let th = thanos();
        let ulid =
            write_block(dir.path(), BASE, BASE + RANGE, block_series(&d), Some(&th)).unwrap();
        let bdir = dir.path().join(ulid.to_string());
        let raw = std::fs::read_to_string(bdir.join("meta.json")).unwrap();
        assert!(raw.starts_with("{\n\t\"ulid\": \""), "{raw}");
        let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 7, "{keys:?}");
        assert_eq!(m["ulid"], ulid.to_string());
        assert_eq!(m["minTime"], BASE);
        assert_eq!(m["maxTime"], BASE + RANGE);
        assert_eq!(
            m["stats"],
            serde_json::json!({"numSamples": samples, "numSeries": 10, "numChunks": chunks})
        );
        assert_eq!(
            m["compaction"],
            serde_json::json!({"level": 1, "sources": [ulid.to_string()]})
        );
        assert_eq!(m["version"], 1);
        let t = &m["thanos"];
        assert_eq!(
            t["labels"],
            serde_json::json!({"receive_replica": "0", "tenant_id": "team-a"})
        );
        assert_eq!(t["downsample"], serde_json::json!({"resolution": 0}));
        assert_eq!(t["source"], "receive");
        assert_eq!(t["segment_files"], serde_json::json!(["000001"]));
        let size = |p: &str| std::fs::metadata(bdir.join(p)).unwrap().len();
        assert_eq!(
            t["files"],
            serde_json::json!([
                {"rel_path": "chunks/000001", "size_bytes": size("chunks/000001")},
                {"rel_path": "index", "size_bytes": size("index")},
                {"rel_path": "meta.json"},
            ])
        );
        assert_eq!(t["index_stats"], serde_json::json!({}));
        assert!(raw.ends_with("}\n"));
        assert_eq!(t.as_object().unwrap().len(), 6);

        // Without Thanos: the Prometheus layout only.
        let ulid2 = write_block(dir.path(), BASE, BASE + RANGE, block_series(&d), None).unwrap();
        let raw =
            std::fs::read_to_string(dir.path().join(ulid2.to_string()).join("meta.json")).unwrap();
        let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert!(m.get("thanos").is_none());
        assert!(raw.ends_with('}'));

        // Go escapes <, > and & (and U+2028/9) in strings; parsing gives the labels back.
        let mut odd = thanos();
        odd.labels.insert("cluster".into(), "<a&b>\u{2028}é".into());
        let ulid3 =
            write_block(dir.path(), BASE, BASE + RANGE, block_series(&d), Some(&odd)).unwrap();
        let raw =
            std::fs::read_to_string(dir.path().join(ulid3.to_string()).join("meta.json")).unwrap();
        assert!(
            raw.contains(r#""cluster": "\u003ca\u0026b\u003e\u2028é","#),
            "{raw}"
        );
        let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(m["thanos"]["labels"]["cluster"], "<a&b>\u{2028}é");
        assert!(ulid2 > ulid);
    }

    #[test]
    fn invalid_input_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = data(3);
        assert!(matches!(
            write_block(dir.path(), BASE, BASE + RANGE, Vec::new(), None),
            Err(BlockError::Empty)
        ));
        assert!(matches!(
            write_block(dir.path(), BASE, BASE + 60_000, block_series(&d), None),
            Err(BlockError::InvalidChunk { .. })
        ));
        assert!(matches!(
            write_block(dir.path(), BASE, BASE, block_series(&d), None),
            Err(BlockError::InvalidRange { .. })
        ));
        let mut dup = block_series(&d);
        dup.push(dup[0].clone());
        assert!(matches!(
            write_block(dir.path(), BASE, BASE + RANGE, dup, None),
            Err(BlockError::OutOfOrder(_))
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // Streaming: series out of order are refused; an unfinished writer leaves nothing.
        let series = block_series(&d);
        let mut w = BlockWriter::new(dir.path(), BASE, BASE + RANGE).unwrap();
        w.add_series(&series[1]).unwrap();
        assert!(matches!(
            w.add_series(&series[0]),
            Err(BlockError::OutOfOrder(_))
        ));
        assert!(matches!(
            w.add_series(&series[1]),
            Err(BlockError::OutOfOrder(_))
        ));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "tmp dir while writing"
        );
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let w = BlockWriter::new(dir.path(), BASE, BASE + RANGE).unwrap();
        assert!(matches!(w.finish(None), Err(BlockError::Empty)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn ulids_are_crockford_sortable_and_monotonic() {
        let mut prev = Ulid(0);
        for _ in 0..1000 {
            let u = Ulid::generate();
            let s = u.to_string();
            assert_eq!(s.len(), 26);
            assert!(s.bytes().all(|b| CROCKFORD.contains(&b)));
            assert!(u > prev);
            assert!(s > prev.to_string());
            assert_eq!(s.parse::<Ulid>().unwrap(), u);
            prev = u;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(prev.timestamp_ms().abs_diff(now) < 60_000);
        let a = Ulid::from_parts(1, u128::MAX);
        let b = Ulid::from_parts(2, 0);
        assert!(a < b && a.to_string() < b.to_string());
        assert_eq!(
            Ulid::from_parts(0, 0).to_string(),
            "00000000000000000000000000"
        );
        assert_eq!(Ulid(u128::MAX).to_string(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        assert!("8ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<Ulid>().is_err());
    }

    #[test]
    fn promtool_lists_analyzes_and_dumps_our_block() {
        let dir = tempfile::tempdir().unwrap();
        let segments = promtool_check(dir.path(), 1200, DEFAULT_MAX_SEGMENT_SIZE);
        assert_eq!(segments, 1);
    }

    #[test]
    fn promtool_reads_a_block_with_many_chunk_segments() {
        let dir = tempfile::tempdir().unwrap();
        let segments = promtool_check(dir.path(), 200, 16 * 1024);
        assert!(segments > 3, "{segments} segments");
    }

    /// Writes `n` series with `max_segment_size`, checks the block with promtool list, analyze and
    /// dump (samples compared by bits) and meta.json's `files`; returns the number of segments.
    fn promtool_check(dir: &Path, n: usize, max_segment_size: u64) -> usize {
        let d = data(n);
        let (samples, chunks) = samples_of(&d);
        std::fs::create_dir(dir.join("wal")).unwrap();
        let th = thanos();
        let ulid = write_block_segmented(
            dir,
            BASE,
            BASE + RANGE,
            block_series(&d),
            Some(&th),
            max_segment_size,
        )
        .unwrap();
        let bdir = dir.join(ulid.to_string());
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bdir.join("meta.json")).unwrap()).unwrap();
        let files = meta["thanos"]["files"].as_array().unwrap();
        let segs: Vec<String> = std::fs::read_dir(bdir.join("chunks"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files.len(), segs.len() + 2);
        assert_eq!(
            meta["thanos"]["segment_files"].as_array().unwrap().len(),
            segs.len()
        );
        for (i, f) in files.iter().take(segs.len()).enumerate() {
            let rel = format!("chunks/{:06}", i + 1);
            assert_eq!(f["rel_path"], rel);
            assert_eq!(
                f["size_bytes"],
                std::fs::metadata(bdir.join(&rel)).unwrap().len()
            );
        }
        let path = dir.to_str().unwrap();
        let u = ulid.to_string();

        let list = promtool(&["tsdb", "list", path]);
        let row: Vec<&str> = list
            .lines()
            .find(|l| l.starts_with(&u))
            .unwrap_or_else(|| panic!("block {u} not listed:\n{list}"))
            .split_whitespace()
            .collect();
        assert_eq!(row[1], BASE.to_string(), "{list}");
        assert_eq!(row[2], (BASE + RANGE).to_string(), "{list}");
        assert_eq!(row[4], samples.to_string(), "{list}");
        assert_eq!(row[5], chunks.to_string(), "{list}");
        assert_eq!(row[6], d.series.len().to_string(), "{list}");

        let analyze = promtool(&["tsdb", "analyze", path, &u]);
        assert!(analyze.contains(&u), "{analyze}");

        let mut want: HashMap<String, Vec<(i64, u64)>> = HashMap::new();
        for (ls, cs) in &d.series {
            let v = want.entry(go_labels(ls)).or_default();
            for c in cs {
                v.extend(c.iter().map(|(t, x)| (t, x.to_bits())));
            }
        }
        let dump = promtool(&[
            "tsdb",
            "dump",
            &format!("--min-time={BASE}"),
            &format!("--max-time={}", BASE + RANGE),
            path,
        ]);
        let (got, lines) = parse_dump(&dump);
        assert_eq!(lines, samples);
        assert_dump_eq(&got, &want);
        segs.len()
    }

    /// OpenMetrics escaping of a label value.
    fn om_escape(s: &str) -> String {
        s.replace('\\', "\\\\").replace('"', "\\\"")
    }

    fn om_value(v: f64) -> String {
        if v.is_nan() {
            "NaN".into()
        } else if v == f64::INFINITY {
            "+Inf".into()
        } else if v == f64::NEG_INFINITY {
            "-Inf".into()
        } else {
            format!("{v:e}")
        }
    }

    /// The block `promtool tsdb create-blocks-from openmetrics` builds under `dir` from `d`'s samples
    /// (stale markers become plain NaNs: OpenMetrics cannot tell them apart).
    pub(crate) fn promtool_block(dir: &Path, d: &Data) -> PathBuf {
        let mut om = String::new();
        let mut by_name: BTreeMap<&str, Vec<&(Labels, Vec<XorChunk>)>> = BTreeMap::new();
        for s in &d.series {
            by_name
                .entry(s.0.get("__name__").unwrap())
                .or_default()
                .push(s);
        }
        for (name, series) in &by_name {
            om.push_str(&format!("# TYPE {name} gauge\n"));
            for (ls, cs) in series {
                let pairs: Vec<String> = ls
                    .iter()
                    .filter(|(n, _)| *n != "__name__")
                    .map(|(n, v)| format!("{n}=\"{}\"", om_escape(v)))
                    .collect();
                for c in cs {
                    for (t, v) in c.iter() {
                        om.push_str(&format!(
                            "{name}{{{}}} {} {}.{:03}\n",
                            pairs.join(","),
                            om_value(v),
                            t / 1000,
                            t % 1000
                        ));
                    }
                }
            }
        }
        om.push_str("# EOF\n");
        let om_path = dir.join("in.om");
        std::fs::write(&om_path, om).unwrap();
        let theirs_dir = dir.join("theirs");
        promtool(&[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            om_path.to_str().unwrap(),
            theirs_dir.to_str().unwrap(),
        ]);
        let mut blocks: Vec<PathBuf> = std::fs::read_dir(&theirs_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(blocks.len(), 1, "{blocks:?}");
        blocks.pop().unwrap()
    }

    /// The index and chunks we write for the series of a block `promtool tsdb create-blocks-from
    /// openmetrics` built equal its own: same symbols, same series section bytes, same postings, same
    /// chunk file bytes. (promtool 2.42 still writes label indices, which we no longer do, so the
    /// files as a whole differ only there and in the offsets after them.)
    #[test]
    fn index_and_chunks_match_a_promtool_built_block() {
        let d = data(300);
        let dir = tempfile::tempdir().unwrap();
        let tb = promtool_block(dir.path(), &d);
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tb.join("meta.json")).unwrap()).unwrap();
        let (mint, maxt) = (
            meta["minTime"].as_i64().unwrap(),
            meta["maxTime"].as_i64().unwrap(),
        );
        let tidx = IndexReader::open(&tb.join("index")).unwrap();
        let tchunks = ChunkReader::open(&tb.join("chunks")).unwrap();

        // Their series and chunk bytes, fed to our writer.
        type OwnedChunk = (i64, i64, Vec<u8>);
        let mut owned: Vec<(Labels, Vec<OwnedChunk>)> = Vec::new();
        for id in tidx.postings("", "").unwrap() {
            let (ls, metas) = tidx.series(id).unwrap();
            let cs = metas
                .iter()
                .map(|m| (m.mint, m.maxt, tchunks.chunk(m.reference).unwrap()))
                .collect();
            owned.push((ls, cs));
        }
        assert_eq!(owned.len(), d.series.len());
        let input = owned.iter().map(|(ls, cs)| BlockSeries {
            labels: ls,
            chunks: cs
                .iter()
                .map(|(a, b, data)| ChunkMeta {
                    mint: *a,
                    maxt: *b,
                    data,
                })
                .collect(),
        });
        let ulid = write_block(&dir.path().join("ours"), mint, maxt, input, None).unwrap();
        let ob = dir.path().join("ours").join(ulid.to_string());
        let oidx = IndexReader::open(&ob.join("index")).unwrap();

        assert_eq!(oidx.symbols().unwrap(), tidx.symbols().unwrap());
        let (ot, tt) = (oidx.toc(), tidx.toc());
        assert_eq!((ot.symbols, ot.series), (tt.symbols, tt.series));
        let (oraw, traw) = (
            std::fs::read(ob.join("index")).unwrap(),
            std::fs::read(tb.join("index")).unwrap(),
        );
        assert_eq!(
            ot.label_indices, tt.label_indices,
            "series sections differ in length"
        );
        assert!(
            oraw[..ot.label_indices as usize] == traw[..tt.label_indices as usize],
            "header, symbols or series differ"
        );
        let okeys = oidx.postings_keys().unwrap();
        let tkeys = tidx.postings_keys().unwrap();
        assert_eq!(okeys, tkeys);
        for (n, v) in &tkeys {
            assert_eq!(
                oidx.postings(n, v).unwrap(),
                tidx.postings(n, v).unwrap(),
                "{n}={v}"
            );
        }
        assert!(
            std::fs::read(ob.join("chunks/000001")).unwrap()
                == std::fs::read(tb.join("chunks/000001")).unwrap(),
            "chunk files differ"
        );
        assert_eq!(
            std::fs::read(ob.join("tombstones")).unwrap(),
            std::fs::read(tb.join("tombstones")).unwrap()
        );
        let ometa: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ob.join("meta.json")).unwrap()).unwrap();
        assert_eq!(ometa["stats"], meta["stats"]);
        assert_eq!(ometa["compaction"]["level"], meta["compaction"]["level"]);
        // Byte for byte the same meta.json as Prometheus's (MarshalIndent with tabs), ULID aside.
        let theirs_text = std::fs::read_to_string(tb.join("meta.json")).unwrap();
        let their_ulid = meta["ulid"].as_str().unwrap();
        assert_eq!(
            std::fs::read_to_string(ob.join("meta.json")).unwrap(),
            theirs_text.replace(their_ulid, &ulid.to_string())
        );
    }
}
