//! What the end-to-end tests need beyond `testkit`: the binary under test and the helpers that use
//! the `ringest` crate itself (its exact remote-write encoder, its block reader), which testkit
//! must not depend on.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use testkit::{Labels, Samples};

/// The Ringest binary under test: the one Cargo built for this test run, or `$RINGEST_BIN` to run
/// the end-to-end tests against another build (e.g. a release binary).
pub fn ringest_bin() -> PathBuf {
    testkit::proc::binary_under_test(env!("CARGO_BIN_EXE_ringest"))
}

/// A series to write: labels (in the order to send them) and (timestamp ms, value) samples.
pub type SeriesSpec<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);

/// A snappy-compressed remote-write 1.0 body built with Ringest's own encoder, which writes every
/// sample value whose bits are not all zero (prost would drop `-0.0`). Labels keep the given order.
pub fn encode_write_exact(series: &[SeriesSpec<'_>]) -> Vec<u8> {
    use ringest::remote_write as rw;
    let mut raw = Vec::new();
    for (labels, samples) in series {
        let labels: Vec<rw::Label<'_>> = labels
            .iter()
            .map(|&(name, value)| rw::Label { name, value })
            .collect();
        let samples: Vec<rw::Sample> = samples
            .iter()
            .map(|&(timestamp, value)| rw::Sample { timestamp, value })
            .collect();
        rw::encode_timeseries(&labels, &samples, &mut raw);
    }
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

/// A block read back from disk: its meta.json and every sample, through Ringest's own block reader
/// (`ringest::tsdb::querier::Block`).
#[derive(Debug, Clone)]
pub struct ReadBlock {
    pub ulid: String,
    pub meta: serde_json::Value,
    pub min_time: i64,
    pub max_time: i64,
    /// `thanos.labels.tenant_id` (empty when absent).
    pub tenant: String,
    pub samples: BTreeMap<Labels, Samples>,
}

impl ReadBlock {
    /// Number of samples over all series.
    pub fn num_samples(&self) -> usize {
        self.samples.values().map(Vec::len).sum()
    }
}

/// Opens the block in `dir` and reads all of it. Panics (naming the block) if it cannot be opened
/// or read, if a series' samples are not strictly increasing in time, or if a sample lies outside
/// `[minTime, maxTime)`.
pub fn read_block(dir: &Path) -> ReadBlock {
    let ulid = dir.file_name().unwrap().to_string_lossy().into_owned();
    let meta: serde_json::Value = serde_json::from_slice(
        &fs::read(dir.join("meta.json"))
            .unwrap_or_else(|e| panic!("{}/meta.json: {e}", dir.display())),
    )
    .unwrap_or_else(|e| panic!("{}/meta.json: {e}", dir.display()));
    let block = ringest::tsdb::querier::Block::open(dir)
        .unwrap_or_else(|e| panic!("opening block {}: {e}", dir.display()));
    let (min_time, max_time) = (block.meta().min_time, block.meta().max_time);
    let series = block
        .select(i64::MIN, i64::MAX, &[])
        .unwrap_or_else(|e| panic!("reading block {}: {e}", dir.display()));
    let mut samples = BTreeMap::new();
    for s in series {
        let labels: Labels = s
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ss: Samples = s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        if let Some(w) = ss.windows(2).find(|w| w[0].0 >= w[1].0) {
            panic!(
                "block {ulid}: {labels:?}: timestamps not strictly increasing: {} then {}",
                w[0].0, w[1].0
            );
        }
        if let Some(x) = ss.iter().find(|x| x.0 < min_time || x.0 >= max_time) {
            panic!(
                "block {ulid}: {labels:?}: sample at {} outside the block's [{min_time}, {max_time})",
                x.0
            );
        }
        assert!(
            samples.insert(labels.clone(), ss).is_none(),
            "block {ulid}: series {labels:?} listed twice"
        );
    }
    let tenant = meta["thanos"]["labels"]["tenant_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ReadBlock {
        ulid,
        meta,
        min_time,
        max_time,
        tenant,
        samples,
    }
}

/// The union of the samples of `blocks`, panicking (with up to 5 examples) if a (series,
/// timestamp) appears in two blocks.
pub fn union_no_duplicates(what: &str, blocks: &[&ReadBlock]) -> BTreeMap<Labels, Samples> {
    let mut seen: BTreeMap<Labels, BTreeMap<i64, (u64, &str)>> = BTreeMap::new();
    let mut dups = Vec::new();
    let mut n_dups = 0usize;
    for b in blocks {
        for (labels, ss) in &b.samples {
            let m = seen.entry(labels.clone()).or_default();
            for &(t, bits) in ss {
                if let Some((_, other)) = m.insert(t, (bits, &b.ulid)) {
                    n_dups += 1;
                    if dups.len() < 5 {
                        dups.push(format!("{labels:?}@{t} in {other} and {}", b.ulid));
                    }
                }
            }
        }
    }
    assert!(
        n_dups == 0,
        "{what}: {n_dups} samples are in two blocks, e.g.:\n  {}",
        dups.join("\n  ")
    );
    seen.into_iter()
        .map(|(l, m)| (l, m.into_iter().map(|(t, (b, _))| (t, b)).collect()))
        .collect()
}

/// Panics unless the `[minTime, maxTime)` ranges of `blocks` are pairwise disjoint.
pub fn assert_no_overlap(what: &str, blocks: &[&ReadBlock]) {
    let mut v: Vec<&&ReadBlock> = blocks.iter().collect();
    v.sort_by_key(|b| (b.min_time, b.max_time));
    for w in v.windows(2) {
        assert!(
            w[0].max_time <= w[1].min_time,
            "{what}: blocks overlap: {} [{}, {}) and {} [{}, {})",
            w[0].ulid,
            w[0].min_time,
            w[0].max_time,
            w[1].ulid,
            w[1].min_time,
            w[1].max_time
        );
    }
}

/// One chunk of a block as stored: the index's time range and the chunk bytes (2-byte sample
/// count + XOR bit stream, no segment framing), as a Store API must send them untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    pub min_time: i64,
    pub max_time: i64,
    pub data: Vec<u8>,
}

/// Every series of the block in `dir` with its chunks in index order, read with Ringest's index
/// and chunk readers (CRCs checked); panics naming the block if it cannot be read.
pub fn block_chunks(dir: &Path) -> BTreeMap<Labels, Vec<StoredChunk>> {
    use ringest::tsdb::{chunks::ChunkReader, index::IndexReader};
    let index = IndexReader::open(&dir.join("index"))
        .unwrap_or_else(|e| panic!("{}/index: {e}", dir.display()));
    let chunks = ChunkReader::open(&dir.join("chunks"))
        .unwrap_or_else(|e| panic!("{}/chunks: {e}", dir.display()));
    let mut out = BTreeMap::new();
    for id in index.postings("", "").unwrap() {
        let (labels, metas) = index
            .series(id)
            .unwrap_or_else(|e| panic!("{}: series {id}: {e}", dir.display()));
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let stored = metas
            .iter()
            .map(|m| StoredChunk {
                min_time: m.mint,
                max_time: m.maxt,
                data: chunks
                    .chunk(m.reference)
                    .unwrap_or_else(|e| panic!("{}: {labels:?}: {e}", dir.display())),
            })
            .collect();
        out.insert(labels, stored);
    }
    out
}
