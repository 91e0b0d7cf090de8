//! Blocks cut by `ringest all-in-one` and shipped to its local bucket, checked against Prometheus's
//! own tools:
//!
//! - a real Prometheus 2.42 remote-writes its scrapes (of itself and of Ringest) into Ringest cutting
//!   30 s blocks; while the head and at least two cut blocks hold the data, remote read through
//!   Ringest returns exactly the sender's samples (seamless across the cut); after a clean stop,
//!   every uploaded block passes `promtool tsdb list` / `analyze`, has a Thanos meta.json with the
//!   right labels and file sizes, the blocks tile time without overlap, hold every sample the sender
//!   stored exactly once (bit for bit, stale markers included), `promtool tsdb dump` of the bucket
//!   equals the dump of the sender's TSDB, and a second Prometheus opened on the bucket's blocks
//!   answers PromQL range queries exactly as the sender does;
//! - synthetic samples over ~5 h (2 h blocks), remote-written in time order, give XOR chunks
//!   byte-identical to those of `promtool tsdb create-blocks-from openmetrics` for the same samples
//!   (and identical chunk files, symbol tables and series sections), and about as many bytes per
//!   sample on disk; stale markers (in a tenant of their own) come out bit for bit.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::ringest_bin;
use proto::prompb::{MatcherType, Query, WriteRequest};
use ringest::tsdb::chunkenc::iter_bytes;
use ringest::tsdb::chunks::ChunkReader;
use ringest::tsdb::index::IndexReader;
use testkit::prelude::*;

const TENANT: &str = "default-tenant";

/// `ringest all-in-one` storing under `<dir>/ringest-data` and shipping to its `_bucket`.
struct Ringest {
    proc: Proc,
    rw: String,
    http: String,
    data: PathBuf,
}

impl Ringest {
    fn start(dir: &Path, extra: &[&str]) -> Ringest {
        let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
        let data = dir.join("ringest-data");
        let mut args = server_args("all-in-one", &rw, &http, &grpc);
        args.push(format!("--tsdb.path={}", data.display()));
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut proc = Proc::spawn("ringest", ringest_bin(), &args, &dir.join("logs"));
        wait_http_ok(&http, "/-/ready", Duration::from_secs(60), Some(&mut proc));
        Ringest {
            proc,
            rw,
            http,
            data,
        }
    }

    fn bucket(&self) -> PathBuf {
        self.data.join("_bucket")
    }

    /// SIGTERM; asserts that it exits by itself with status 0 within 60 s.
    fn terminate_cleanly(&mut self) {
        let t = Instant::now();
        let status = self.proc.terminate(Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "ringest did not exit with status 0 after SIGTERM: {status:?}\n{}",
            self.proc.logs()
        );
        eprintln!("ringest flushed, uploaded and exited in {:?}", t.elapsed());
    }
}

// ---------------------------------------------------------------------------------------------
// Blocks read back with Ringest's index and chunk readers
// ---------------------------------------------------------------------------------------------

/// A block directory and its meta.json.
struct Block {
    ulid: String,
    dir: PathBuf,
    meta: serde_json::Value,
    min_time: i64,
    max_time: i64,
}

impl Block {
    fn tenant(&self) -> &str {
        self.meta["thanos"]["labels"]["tenant_id"]
            .as_str()
            .unwrap_or_default()
    }
}

fn is_ulid(name: &str) -> bool {
    name.len() == 26
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// The block directories (a ULID name and a meta.json) under `dir`, by min time.
fn list_blocks(dir: &Path) -> Vec<Block> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_ulid(&name) || !e.path().join("meta.json").is_file() {
            continue;
        }
        let meta: serde_json::Value =
            serde_json::from_slice(&fs::read(e.path().join("meta.json")).unwrap())
                .unwrap_or_else(|err| panic!("{name}/meta.json: {err}"));
        out.push(Block {
            ulid: name,
            dir: e.path(),
            min_time: meta["minTime"].as_i64().expect("minTime"),
            max_time: meta["maxTime"].as_i64().expect("maxTime"),
            meta,
        });
    }
    out.sort_by_key(|b| (b.min_time, b.max_time));
    out
}

/// A chunk as (min time, max time, XOR bytes).
type Chunk = (i64, i64, Vec<u8>);

/// Every series of the block at `dir` with its chunks (in index order), read with Ringest's
/// `IndexReader` and `ChunkReader`.
fn block_chunks(dir: &Path) -> BTreeMap<Labels, Vec<Chunk>> {
    let ix = IndexReader::open(&dir.join("index"))
        .unwrap_or_else(|e| panic!("{}/index: {e}", dir.display()));
    let cr = ChunkReader::open(&dir.join("chunks"))
        .unwrap_or_else(|e| panic!("{}/chunks: {e}", dir.display()));
    let mut out = BTreeMap::new();
    for id in ix.postings("", "").unwrap() {
        let (labels, metas) = ix.series(id).unwrap();
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let chunks: Vec<Chunk> = metas
            .iter()
            .map(|m| {
                let bytes = cr.chunk(m.reference).unwrap_or_else(|e| {
                    panic!(
                        "{}: chunk {:#x} of {labels:?}: {e}",
                        dir.display(),
                        m.reference
                    )
                });
                (m.mint, m.maxt, bytes)
            })
            .collect();
        assert!(
            out.insert(labels.clone(), chunks).is_none(),
            "{}: series {labels:?} twice in the index",
            dir.display()
        );
    }
    out
}

/// The samples of XOR chunk bytes (timestamp, value bits); panics on a decoding error.
fn decode(bytes: &[u8]) -> Samples {
    let mut it = iter_bytes(bytes);
    let out: Samples = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
    assert!(it.err().is_none(), "chunk does not decode: {:?}", it.err());
    assert_eq!(
        out.len(),
        u16::from_be_bytes([bytes[0], bytes[1]]) as usize,
        "chunk decodes to fewer samples than its header says"
    );
    out
}

/// Checks the structure of `blocks` (each chunk's min/max time is its first/last sample, every
/// sample inside its block's [minTime, maxTime), meta.json stats equal the content, no series
/// carries an external label) and returns every series' samples over all blocks, in block order,
/// panicking if a timestamp comes twice (a sample stored in two blocks) or goes backwards.
fn merged_samples(blocks: &[Block], external: &[&str]) -> BTreeMap<Labels, Samples> {
    let mut merged: BTreeMap<Labels, Samples> = BTreeMap::new();
    for b in blocks {
        let series = block_chunks(&b.dir);
        let (mut n_samples, mut n_chunks) = (0u64, 0u64);
        for (labels, chunks) in &series {
            for name in external {
                assert!(
                    !labels.contains_key(*name),
                    "block {}: series {labels:?} carries external label {name}",
                    b.ulid
                );
            }
            let all = merged.entry(labels.clone()).or_default();
            for (mint, maxt, bytes) in chunks {
                let s = decode(bytes);
                assert!(!s.is_empty(), "block {}: empty chunk in {labels:?}", b.ulid);
                assert_eq!(
                    (s[0].0, s[s.len() - 1].0),
                    (*mint, *maxt),
                    "block {}: chunk of {labels:?}: index min/max time vs its samples",
                    b.ulid
                );
                assert!(
                    b.min_time <= *mint && *maxt < b.max_time,
                    "block {} [{}, {}): chunk of {labels:?} spans [{mint}, {maxt}]",
                    b.ulid,
                    b.min_time,
                    b.max_time
                );
                for &(t, v) in &s {
                    if let Some(&(last, _)) = all.last() {
                        assert!(
                            t > last,
                            "block {}: {labels:?}@{t} comes after {last}: stored twice or out of order",
                            b.ulid
                        );
                    }
                    all.push((t, v));
                }
                n_samples += s.len() as u64;
                n_chunks += 1;
            }
        }
        let stats = &b.meta["stats"];
        assert_eq!(
            (
                stats["numSamples"].as_u64(),
                stats["numSeries"].as_u64(),
                stats["numChunks"].as_u64()
            ),
            (Some(n_samples), Some(series.len() as u64), Some(n_chunks)),
            "block {}: meta.json stats (samples, series, chunks) vs content",
            b.ulid
        );
    }
    merged
}

/// Asserts the Thanos meta.json of a block Ringest cut from its head and uploaded.
fn check_meta(b: &Block, labels: &[(&str, &str)]) {
    let m = &b.meta;
    let what = format!("block {} meta.json", b.ulid);
    assert_eq!(m["ulid"].as_str(), Some(b.ulid.as_str()), "{what}: ulid");
    assert_eq!(m["version"], 1, "{what}: version");
    assert_eq!(m["compaction"]["level"], 1, "{what}: compaction level");
    assert_eq!(
        m["compaction"]["sources"],
        serde_json::json!([b.ulid]),
        "{what}: compaction sources"
    );
    assert!(b.min_time < b.max_time, "{what}: empty time range");
    let want: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    assert_eq!(
        m["thanos"]["labels"],
        serde_json::Value::Object(want),
        "{what}: thanos.labels"
    );
    assert_eq!(m["thanos"]["source"], "receive", "{what}: thanos.source");
    assert_eq!(
        m["thanos"]["downsample"]["resolution"], 0,
        "{what}: thanos.downsample.resolution"
    );
    // thanos.files (Thanos `metadata.File`: rel_path, size_bytes): every file of the block but
    // meta.json with its exact size.
    let listed: BTreeMap<String, Option<u64>> = m["thanos"]["files"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no thanos.files: {m}"))
        .iter()
        .map(|f| {
            (
                f["rel_path"].as_str().expect("rel_path").to_string(),
                f["size_bytes"].as_u64(),
            )
        })
        .collect();
    let mut actual = BTreeMap::new();
    let mut stack = vec![b.dir.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(&b.dir).unwrap().to_path_buf();
                actual.insert(
                    rel.to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                );
            }
        }
    }
    for (rel, size) in &actual {
        if rel == "meta.json" {
            continue;
        }
        assert_eq!(
            listed.get(rel).copied().flatten(),
            Some(*size),
            "{what}: thanos.files entry of {rel} (size on disk {size}); listed: {listed:?}"
        );
    }
    for rel in listed.keys() {
        assert!(
            actual.contains_key(rel),
            "{what}: thanos.files lists {rel}, which is not in the block"
        );
    }
    for f in ["index", "chunks/000001"] {
        assert!(actual.contains_key(f), "{what}: block has no {f}");
    }
}

/// `promtool tsdb list <dir>` names every block, and `promtool tsdb analyze <dir> <ULID>` succeeds
/// for each.
fn promtool_list_and_analyze(dir: &Path, blocks: &[Block]) {
    let d = dir.to_str().unwrap();
    let list = promtool(&["tsdb", "list", d]);
    for b in blocks {
        assert!(
            list.contains(&b.ulid),
            "promtool tsdb list {d} does not list {}:\n{list}",
            b.ulid
        );
        let analyze = promtool(&["tsdb", "analyze", d, &b.ulid]);
        assert!(
            analyze.contains(&b.ulid),
            "promtool tsdb analyze {}: unexpected output:\n{analyze}",
            b.ulid
        );
    }
}

/// Asserts that blocks tile time: none overlaps the next (each starts where the previous one
/// ended, or later, at its oldest sample, when the head's min time moved up to that sample after
/// the previous cut, as Prometheus's does), none crosses a multiple of `range`, the first starts at
/// `first_ts` and the last ends at `last_ts + 1`. That no sample falls into a gap is checked by the
/// sample comparisons.
fn assert_contiguous(blocks: &[Block], range: i64, first_ts: i64, last_ts: i64) {
    let spans: Vec<(i64, i64)> = blocks.iter().map(|b| (b.min_time, b.max_time)).collect();
    assert_eq!(
        spans.first().map(|s| s.0),
        Some(first_ts),
        "first block should start at the first sample: {spans:?}"
    );
    assert_eq!(
        spans.last().map(|s| s.1),
        Some(last_ts + 1),
        "last block should end at the newest sample + 1 ms: {spans:?}"
    );
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "blocks overlap: {spans:?}");
    }
    for &(lo, hi) in &spans {
        assert_eq!(
            lo.div_euclid(range),
            (hi - 1).div_euclid(range),
            "block [{lo}, {hi}) crosses a {range} ms range boundary: {spans:?}"
        );
    }
}

/// Compares two promtool dumps line by line (labels, timestamp, printed value; `NaN` = `NaN`).
fn assert_dumps_equal(what: &str, expected: &[DumpSample], actual: &[DumpSample]) {
    let key = |d: &DumpSample| (d.labels.clone(), d.ts, d.value_str.clone());
    let mut e: Vec<_> = expected.iter().map(key).collect();
    let mut a: Vec<_> = actual.iter().map(key).collect();
    e.sort();
    a.sort();
    if e == a {
        return;
    }
    let missing: Vec<_> = e
        .iter()
        .filter(|x| a.binary_search(x).is_err())
        .take(5)
        .collect();
    let extra: Vec<_> = a
        .iter()
        .filter(|x| e.binary_search(x).is_err())
        .take(5)
        .collect();
    panic!(
        "{what}: {} vs {} samples; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
        e.len(),
        a.len()
    );
}

// ---------------------------------------------------------------------------------------------
// 1 + 3: Prometheus -> Ringest 30 s blocks -> promtool, PromQL; remote read across the cut
// ---------------------------------------------------------------------------------------------

const SHORT_RANGE: i64 = 30_000;

/// Prometheus's `prometheus_remote_storage_samples_pending`.
fn pending(p: &Prometheus) -> f64 {
    p.metric("prometheus_remote_storage_samples_pending", &[])
        .unwrap_or(-1.0)
}

#[test]
fn prometheus_remote_write_to_30s_blocks_matches_promtool_and_promql() {
    let t0 = Instant::now();
    let tmp = test_dir("blocks-prometheus");
    let dir = tmp.path();
    let mut rg = Ringest::start(
        dir,
        &["--tsdb.block-duration=30s", "--label=cluster=\"e2e\""],
    );
    let w0 = now_ms() - 1000;
    let a_addr = free_addr();
    let rw_url = format!("http://{}/api/v1/receive", rg.rw);
    let config = scraper_config(&a_addr, &[("ringest", &[&rg.http])], &rw_url);
    let mut a = Prometheus::start("sender", dir, &a_addr, &config, &[]);

    // Let Ringest cut (and upload) at least two blocks by itself.
    let bucket = rg.bucket();
    let mut cut = None;
    let two_blocks = poll(Duration::from_secs(110), Duration::from_millis(500), || {
        rg.proc.assert_running();
        cut = scrape_metric(&rg.http, "ringest_tsdb_blocks_cut_total", &[]);
        let uploaded = if bucket.is_dir() {
            list_blocks(&bucket).len()
        } else {
            0
        };
        (cut.unwrap_or(0.0) >= 2.0 && uploaded >= 2).then_some(uploaded)
    });
    assert!(
        two_blocks.is_some(),
        "ringest did not cut and upload 2 blocks within 110 s (blocks cut: {cut:?})\n{}",
        rg.proc.logs()
    );
    eprintln!(
        "{} blocks cut by ringest after {:?}",
        cut.unwrap(),
        t0.elapsed()
    );

    // 3. Remote read through Ringest of a range spanning cut blocks and the head equals the
    //    sender's own samples, bit for bit.
    let cutoff = now_ms() - 500;
    a.wait_sent_past(cutoff, Duration::from_secs(60));
    let tenant_dir = rg.data.join(TENANT);
    let before = list_blocks(&tenant_dir);
    let sender = read_all(&a.addr, None, w0, cutoff).expect("remote read of the sender");
    let through = read_all(&rg.http, None, w0, cutoff).expect("remote read of ringest");
    let after = list_blocks(&tenant_dir);
    assert_same_bits(
        "remote read of ringest (cut blocks + head) vs the sender",
        &sender,
        &through,
    );
    let first_block = before
        .first()
        .expect("no local block in the tenant directory");
    assert!(
        first_block.max_time <= cutoff,
        "the first cut block [{}, {}) is not inside the range read (cutoff {cutoff})",
        first_block.min_time,
        first_block.max_time
    );
    let head_from = after.last().unwrap().max_time;
    let (mut in_blocks, mut in_head) = (0usize, 0usize);
    for s in through.values() {
        in_blocks += s.iter().filter(|(t, _)| *t < first_block.max_time).count();
        in_head += s.iter().filter(|(t, _)| *t >= head_from).count();
    }
    assert!(
        in_blocks > 0 && in_head > 0,
        "the range read does not span a cut block and the head: {in_blocks} samples before {}, {in_head} from {head_from}",
        first_block.max_time
    );
    let read_samples: usize = through.values().map(Vec::len).sum();
    eprintln!(
        "remote read across the cut: {} series, {read_samples} samples equal to the sender's \
         ({in_blocks} in the first cut block, {in_head} in the head, {} local blocks)",
        through.len(),
        after.len()
    );

    // PromQL range queries of the sender over a window inside what Ringest received.
    let first_received = through
        .values()
        .filter_map(|s| s.first().map(|p| p.0))
        .min()
        .unwrap();
    let win_lo = (first_received / 1000 + 5) * 1000;
    let win_hi = (cutoff / 1000 - 5) * 1000;
    assert!(
        win_hi - win_lo >= 30_000,
        "query window too short: [{win_lo}, {win_hi}]"
    );
    let queries: [(&str, i64); 7] = [
        ("up", 1000),
        ("prometheus_tsdb_head_samples_appended_total", 1000),
        ("rate(prometheus_http_requests_total[10s])", 1000),
        ("ringest_samples_appended_total", 1000),
        ("sum by (job) (scrape_samples_scraped)", 5000),
        ("count({__name__=~\".+\"})", 5000),
        (
            "histogram_quantile(0.9, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[10s])))",
            5000,
        ),
    ];
    let sender_results: Vec<Vec<MatrixSeries>> = queries
        .iter()
        .map(|(q, step)| a.query_range(q, win_lo, win_hi, *step))
        .collect();

    // Drop every target (the jobs stay, so each scrape loop ends with stale markers for its
    // series), wait for those markers, let the queue drain, then stop the sender.
    let rw_part = &config[config.find("remote_write:").unwrap()..];
    a.reload(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
         - job_name: prometheus\n    static_configs: [{{targets: []}}]\n  \
         - job_name: ringest\n    static_configs: [{{targets: []}}]\n{rw_part}"
    ));
    let mut ups = Vec::new();
    let ended = poll(Duration::from_secs(30), Duration::from_millis(500), || {
        let q = Query {
            start_timestamp_ms: w0,
            end_timestamp_ms: now_ms() + 60_000,
            matchers: vec![matcher(MatcherType::Eq, "__name__", "up")],
            hints: None,
        };
        let r = remote_read(&a.addr, None, vec![q]).ok()?;
        ups = r.results.first()?.timeseries.clone();
        (ups.len() == 2
            && ups.iter().all(|s| {
                s.samples
                    .last()
                    .is_some_and(|x| x.value.to_bits() == STALE_NAN_BITS)
            }))
        .then_some(())
    });
    assert!(
        ended.is_some(),
        "the sender wrote no end-of-run stale markers for its 2 targets: {:?}",
        ups.iter()
            .map(|s| (pb_labels(&s.labels), s.samples.last().cloned()))
            .collect::<Vec<_>>()
    );
    let mut last_total = -1.0;
    let mut steady = 0;
    let mut stats = a.remote_write_stats();
    let drained = poll(Duration::from_secs(60), Duration::from_millis(500), || {
        stats = a.remote_write_stats();
        steady = if stats.samples_total == last_total {
            steady + 1
        } else {
            0
        };
        last_total = stats.samples_total;
        (steady >= 4 && pending(&a) == 0.0 && stats.highest_sent_s >= stats.highest_ts_s)
            .then_some(())
    });
    assert!(
        drained.is_some(),
        "the sender's queue did not drain: {stats:?}, pending {}",
        pending(&a)
    );
    assert_eq!(stats.samples_failed, 0.0, "samples failed: {stats:?}");
    assert_eq!(stats.samples_dropped, 0.0, "samples dropped: {stats:?}");
    assert_eq!(stats.samples_retried, 0.0, "samples retried: {stats:?}");
    let sender_all =
        read_all(&a.addr, None, w0, now_ms() + 60_000).expect("remote read of the sender");
    let status = a.proc.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "the sender did not stop cleanly: {status:?}"
    );

    // SIGTERM: Ringest flushes its head into blocks, uploads them, exits 0.
    rg.terminate_cleanly();

    // 1. The uploaded blocks.
    let blocks = list_blocks(&bucket);
    assert!(blocks.len() >= 3, "only {} blocks uploaded", blocks.len());
    for b in &blocks {
        check_meta(b, &[("cluster", "e2e"), ("tenant_id", TENANT)]);
    }
    promtool_list_and_analyze(&bucket, &blocks);
    // The uploaded index and chunks are those of the local block, byte for byte.
    for b in &blocks {
        let local = tenant_dir.join(&b.ulid);
        for f in ["index", "chunks/000001"] {
            assert!(
                fs::read(local.join(f)).ok() == Some(fs::read(b.dir.join(f)).unwrap()),
                "block {}: {f} in the bucket differs from (or lacks) the local one",
                b.ulid
            );
        }
    }
    let merged = merged_samples(&blocks, &["cluster", "tenant_id"]);
    let first_ts = merged.values().map(|s| s[0].0).min().unwrap();
    let last_ts = merged.values().map(|s| s[s.len() - 1].0).max().unwrap();
    assert_contiguous(&blocks, SHORT_RANGE, first_ts, last_ts);
    assert_same_bits(
        "every sample the sender stored, exactly once in the uploaded blocks",
        &sender_all,
        &merged,
    );
    let total: usize = merged.values().map(Vec::len).sum();
    let stale = merged
        .values()
        .flatten()
        .filter(|(_, b)| *b == STALE_NAN_BITS)
        .count();
    assert!(stale > 0, "no stale marker in the blocks");

    // promtool's dump of the bucket equals its dump of the sender's TSDB.
    let copy = dir.join("bucket-copy");
    let paths: Vec<&Path> = blocks.iter().map(|b| b.dir.as_path()).collect();
    tsdb_dir_of_blocks(&paths, &copy);
    let ours = promtool_dump(&copy, i64::MIN, i64::MAX);
    let theirs = promtool_dump(&a.data_dir, i64::MIN, i64::MAX);
    assert_dumps_equal(
        "promtool dump: sender's TSDB vs ringest's bucket",
        &theirs,
        &ours,
    );
    assert_eq!(ours.len(), total, "promtool dump vs decoded samples");

    // A second Prometheus on the bucket's blocks answers PromQL as the sender did.
    let reader_data = dir.join("reader-data");
    tsdb_dir_of_blocks(&paths, &reader_data);
    fs::remove_dir(reader_data.join("wal")).unwrap();
    let reader = Prometheus::start(
        "reader",
        dir,
        &free_addr(),
        "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\nscrape_configs: []\n",
        &["--storage.tsdb.retention.time=10y"],
    );
    let boundaries: Vec<i64> = blocks.iter().map(|b| b.max_time).collect();
    assert!(
        boundaries.iter().any(|&t| win_lo < t && t < win_hi),
        "no block boundary inside the query window [{win_lo}, {win_hi}]: {boundaries:?}"
    );
    let mut compared = 0;
    for ((q, step), expected) in queries.iter().zip(&sender_results) {
        let got = reader.query_range(q, win_lo, win_hi, *step);
        let n = assert_matrices_equal(
            &format!("query_range {q} step {step}ms: sender vs prometheus on the bucket"),
            expected,
            &got,
        );
        assert!(n > 0, "query_range {q}: no points");
        compared += n;
    }
    eprintln!(
        "blocks: {} uploaded blocks, {} series, {total} samples ({stale} stale markers) equal to the \
         sender's, bit for bit and by promtool dump; {compared} PromQL range-query points equal over \
         [{win_lo}, {win_hi}]; total {:?}",
        blocks.len(),
        merged.len(),
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 2: XOR chunk bytes equal promtool's
// ---------------------------------------------------------------------------------------------

const HOUR: i64 = 3_600_000;
const RANGE_2H: i64 = 2 * HOUR;
const STEP: i64 = 15_000;
const N_SERIES: usize = 50;
const STALE_TENANT: &str = "stale-tenant";

/// Go's `math.NaN()`, what promtool stores for `NaN` in OpenMetrics.
fn go_nan() -> f64 {
    f64::from_bits(GO_NAN_BITS)
}

/// Labels and samples of one synthetic series.
struct Synth {
    name: &'static str,
    i: usize,
    samples: Vec<(i64, f64)>,
}

impl Synth {
    fn labels(&self) -> Labels {
        let i = self.i.to_string();
        label_map(&[("__name__", self.name), ("job", "synth"), ("i", &i)])
    }
}

/// The write request of round `r`: samples `r..r + per_request` of every series (time order).
fn round_request(data: &[Synth], r: usize, per_request: usize) -> WriteRequest {
    WriteRequest {
        timeseries: data
            .iter()
            .map(|s| {
                let i = s.i.to_string();
                let hi = (r + per_request).min(s.samples.len());
                series(
                    &[("__name__", s.name), ("job", "synth"), ("i", &i)],
                    &s.samples[r.min(hi)..hi],
                )
            })
            .collect(),
        ..Default::default()
    }
}

/// 50 series with a sample every 15 s (a few with ±2 ms jitter) from `start` to `end`: integer
/// counters, quarter-step gauges, decimal gauges (full mantissas), constants, large values,
/// negative halves, one Go NaN and one +Inf; every chunk stays under 1005 bytes.
fn synthetic(start: i64, end: i64) -> Vec<Synth> {
    (0..N_SERIES)
        .map(|i| {
            let name = match i {
                0..=19 => "e2e_counter",
                20..=34 => "e2e_gauge",
                _ => "e2e_mixed",
            };
            let mut samples = Vec::new();
            let mut j = 0i64;
            loop {
                let jitter = if i % 4 == 1 {
                    [0, 1, -1, 2, -2][(j % 5) as usize]
                } else {
                    0
                };
                let ts = start + j * STEP + jitter;
                if ts >= end {
                    break;
                }
                let v = match i {
                    0..=19 => (j * (i as i64 + 1)) as f64,
                    25 if j == 300 => go_nan(),
                    20..=29 => ((j * 7 + i as i64) % 40) as f64 * 0.25 + 0.5,
                    // Full-mantissa decimals (~7 bytes a change), changing every 2nd or 4th sample.
                    30..=31 => 20.0 + ((j / 2) % 10) as f64 / 10.0,
                    32..=34 => 20.0 + ((j / 4) % 10) as f64 / 10.0,
                    35..=39 => i as f64,
                    40..=44 => 1e12 + (j * 1000) as f64 + 0.5,
                    45 if j == 100 => f64::INFINITY,
                    _ => -(j as f64) * 0.5 - i as f64,
                };
                samples.push((ts, v));
                j += 1;
            }
            Synth { name, i, samples }
        })
        .collect()
}

/// A Go-parsable float for OpenMetrics.
fn om_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

/// The series as an OpenMetrics text file (every family a gauge, timestamps in seconds with
/// millisecond decimals, each series' samples in time order).
fn openmetrics(series: &[Synth]) -> String {
    let mut out = String::new();
    let mut family = "";
    for s in series {
        if s.name != family {
            family = s.name;
            out.push_str(&format!("# TYPE {family} gauge\n"));
        }
        for &(ts, v) in &s.samples {
            out.push_str(&format!(
                "{}{{job=\"synth\",i=\"{}\"}} {} {}.{:03}\n",
                s.name,
                s.i,
                om_value(v),
                ts.div_euclid(1000),
                ts.rem_euclid(1000)
            ));
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Every series' chunks over all `blocks` (in block order).
fn chunks_over(blocks: &[Block]) -> BTreeMap<Labels, Vec<Chunk>> {
    let mut out: BTreeMap<Labels, Vec<Chunk>> = BTreeMap::new();
    for b in blocks {
        for (l, c) in block_chunks(&b.dir) {
            out.entry(l).or_default().extend(c);
        }
    }
    out
}

/// (index bytes, chunk bytes) of `blocks`.
fn block_bytes(blocks: &[Block]) -> (u64, u64) {
    blocks.iter().fold((0, 0), |(i, c), b| {
        (
            i + fs::metadata(b.dir.join("index")).unwrap().len(),
            c + dir_size(&b.dir.join("chunks")),
        )
    })
}

#[test]
fn xor_chunks_equal_promtool_create_blocks() {
    let t0 = Instant::now();
    let tmp = test_dir("blocks-xor");
    let dir = tmp.path();
    let mut rg = Ringest::start(dir, &[]);

    // ~5 h ending at least 1 h ago, starting at the start of a 2 h range: three ranges, the last
    // half filled. The start is aligned because promtool's backfill appends through a head whose
    // chunk range is twice the block range (`NewBlockWriter(.., 2*blockDuration)`, to accept a
    // whole block's samples), so for a range it enters late it spreads the samples over more
    // chunks than a Prometheus server's head (and Ringest's, whose chunk range is the block range)
    // does; from a range start at 15 s spacing both cut every 120 samples.
    let base = (now_ms() - 6 * HOUR).div_euclid(RANGE_2H) * RANGE_2H;
    let start = base;
    let end = base + 5 * HOUR;
    assert!(end <= now_ms() - HOUR);
    let data = synthetic(start, end);
    let n_samples: usize = data.iter().map(|s| s.samples.len()).sum();

    // A counter with two stale markers, in its own tenant (stale markers cannot be written in
    // OpenMetrics, so it stays out of promtool's blocks).
    let stale_samples: Vec<(i64, f64)> = (0..((end - start) / STEP))
        .map(|j| {
            let v = if j == 50 || j == 51 {
                f64::from_bits(STALE_NAN_BITS)
            } else {
                j as f64
            };
            (start + j * STEP, v)
        })
        .collect();

    // Remote write in time order: 40 samples of every series per request.
    let per_request = 40;
    let rounds = data.iter().map(|s| s.samples.len()).max().unwrap();
    for r in (0..rounds).step_by(per_request) {
        let req = round_request(&data, r, per_request);
        let resp = remote_write(&rg.rw, None, &req);
        assert!(
            resp.is_2xx(),
            "write of samples {r}..: {} {}",
            resp.status,
            resp.text()
        );
        let hi = (r + per_request).min(stale_samples.len());
        if r < hi {
            let req = WriteRequest {
                timeseries: vec![series(
                    &[("__name__", "e2e_stale"), ("job", "synth")],
                    &stale_samples[r..hi],
                )],
                ..Default::default()
            };
            let resp = remote_write(&rg.rw, Some(STALE_TENANT), &req);
            assert!(
                resp.is_2xx(),
                "stale tenant: {} {}",
                resp.status,
                resp.text()
            );
        }
    }
    rg.terminate_cleanly();

    let all = list_blocks(&rg.bucket());
    let (ours, stale_blocks): (Vec<Block>, Vec<Block>) =
        all.into_iter().partition(|b| b.tenant() == TENANT);
    assert!(
        stale_blocks.iter().all(|b| b.tenant() == STALE_TENANT),
        "blocks of an unknown tenant in the bucket"
    );
    for b in &ours {
        check_meta(b, &[("tenant_id", TENANT)]);
    }
    for b in &stale_blocks {
        check_meta(b, &[("tenant_id", STALE_TENANT)]);
    }
    promtool_list_and_analyze(&rg.bucket(), &ours);
    let first = data.iter().map(|s| s.samples[0].0).min().unwrap();
    let last = data
        .iter()
        .map(|s| s.samples[s.samples.len() - 1].0)
        .max()
        .unwrap();
    assert_contiguous(&ours, RANGE_2H, first, last);
    assert_eq!(ours.len(), 3, "2 h blocks over 3 ranges");

    // Everything written is in our blocks, bit for bit, once.
    let want: BTreeMap<Labels, Samples> = data
        .iter()
        .map(|s| {
            (
                s.labels(),
                s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
            )
        })
        .collect();
    assert_same_bits(
        "synthetic samples in ringest's blocks",
        &want,
        &merged_samples(&ours, &["tenant_id"]),
    );

    // The stale tenant: stale markers bit for bit in the blocks, NaN in promtool's dump.
    let stale_want: BTreeMap<Labels, Samples> = BTreeMap::from([(
        label_map(&[("__name__", "e2e_stale"), ("job", "synth")]),
        stale_samples
            .iter()
            .map(|&(t, v)| (t, v.to_bits()))
            .collect(),
    )]);
    assert_same_bits(
        "stale-marker series in ringest's blocks",
        &stale_want,
        &merged_samples(&stale_blocks, &["tenant_id"]),
    );
    let stale_copy = dir.join("stale-copy");
    let paths: Vec<&Path> = stale_blocks.iter().map(|b| b.dir.as_path()).collect();
    tsdb_dir_of_blocks(&paths, &stale_copy);
    let dump = promtool_dump(&stale_copy, i64::MIN, i64::MAX);
    let dumped: Vec<(i64, String)> = dump.iter().map(|d| (d.ts, d.value_str.clone())).collect();
    let expected: Vec<(i64, String)> = stale_samples
        .iter()
        .map(|&(t, v)| {
            (
                t,
                if v.is_nan() {
                    "NaN".into()
                } else {
                    v.to_string()
                },
            )
        })
        .collect();
    assert_eq!(dumped, expected, "promtool dump of the stale-marker series");

    // promtool's blocks from the same samples as OpenMetrics.
    let om = dir.join("synthetic.om");
    fs::write(&om, openmetrics(&data)).unwrap();
    let pt_out = dir.join("promtool-blocks");
    fs::create_dir_all(&pt_out).unwrap();
    promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        om.to_str().unwrap(),
        pt_out.to_str().unwrap(),
    ]);
    let theirs = list_blocks(&pt_out);
    assert!(!theirs.is_empty(), "promtool wrote no block");
    let their_chunks = chunks_over(&theirs);
    let our_chunks = chunks_over(&ours);
    let (biggest, biggest_of) = their_chunks
        .iter()
        .flat_map(|(l, c)| c.iter().map(move |c| (c.2.len(), l)))
        .max()
        .unwrap();
    assert!(
        biggest < 1005,
        "test data makes a {biggest}-byte chunk in {biggest_of:?}: Prometheus 2.42 does not cut at \
         1005 bytes, newer ones (and ringest) do"
    );
    assert_eq!(
        our_chunks.keys().collect::<Vec<_>>(),
        their_chunks.keys().collect::<Vec<_>>(),
        "series: ringest vs promtool"
    );
    let mut n_chunks = 0;
    for (labels, theirs_c) in &their_chunks {
        let ours_c = &our_chunks[labels];
        let spans = |c: &[Chunk]| c.iter().map(|c| (c.0, c.1, c.2.len())).collect::<Vec<_>>();
        assert_eq!(
            spans(ours_c),
            spans(theirs_c),
            "{labels:?}: chunks (min time, max time, bytes): ringest vs promtool"
        );
        for (k, (o, t)) in ours_c.iter().zip(theirs_c).enumerate() {
            assert!(
                o.2 == t.2,
                "{labels:?}: chunk {k} [{}, {}]: bytes differ at offset {:?}",
                o.0,
                o.1,
                o.2.iter().zip(&t.2).position(|(x, y)| x != y)
            );
        }
        n_chunks += theirs_c.len();
    }

    // Block by block (same series and samples per block), the chunk segment files and the index's
    // symbol table and series section (labels and chunk references) are byte-identical too; the
    // indexes differ only by the label indices and label offset table, which Prometheus 2.42
    // still writes and Ringest does not.
    assert_eq!(ours.len(), theirs.len(), "number of blocks");
    for (o, t) in ours.iter().zip(&theirs) {
        let o_toc = IndexReader::open(&o.dir.join("index")).unwrap().toc();
        let t_toc = IndexReader::open(&t.dir.join("index")).unwrap().toc();
        let (ob, tb) = (
            fs::read(o.dir.join("index")).unwrap(),
            fs::read(t.dir.join("index")).unwrap(),
        );
        let section = |b: &[u8], from: u64, to: u64| b[from as usize..to as usize].to_vec();
        assert!(
            section(&ob, o_toc.symbols, o_toc.series) == section(&tb, t_toc.symbols, t_toc.series),
            "block {} vs promtool's {}: symbol tables differ",
            o.ulid,
            t.ulid
        );
        assert!(
            section(&ob, o_toc.series, o_toc.label_indices)
                == section(&tb, t_toc.series, t_toc.label_indices),
            "block {} vs promtool's {}: series sections differ",
            o.ulid,
            t.ulid
        );
        assert!(
            fs::read(o.dir.join("chunks/000001")).unwrap()
                == fs::read(t.dir.join("chunks/000001")).unwrap(),
            "block {} vs promtool's {}: chunk segment files differ",
            o.ulid,
            t.ulid
        );
    }

    // The same samples dumped by promtool from both sets of blocks.
    let ours_copy = dir.join("ours-copy");
    let paths: Vec<&Path> = ours.iter().map(|b| b.dir.as_path()).collect();
    tsdb_dir_of_blocks(&paths, &ours_copy);
    let pt_copy = dir.join("promtool-copy");
    let paths: Vec<&Path> = theirs.iter().map(|b| b.dir.as_path()).collect();
    tsdb_dir_of_blocks(&paths, &pt_copy);
    let ours_dump = promtool_dump(&ours_copy, i64::MIN, i64::MAX);
    assert_dumps_equal(
        "promtool dump: promtool's blocks vs ringest's",
        &promtool_dump(&pt_copy, i64::MIN, i64::MAX),
        &ours_dump,
    );
    assert_eq!(ours_dump.len(), n_samples);

    // Bytes per sample on disk (index + chunks).
    let (oi, oc) = block_bytes(&ours);
    let (ti, tc) = block_bytes(&theirs);
    let per = |b: u64| b as f64 / n_samples as f64;
    eprintln!(
        "bytes/sample for {n_samples} samples in {N_SERIES} series: ringest {:.3} ({} blocks: index {oi} + chunks {oc} bytes), \
         promtool {:.3} ({} blocks: index {ti} + chunks {tc} bytes)",
        per(oi + oc),
        ours.len(),
        per(ti + tc),
        theirs.len()
    );
    let ratio = per(oi + oc) / per(ti + tc);
    assert!(
        (0.9..=1.1).contains(&ratio),
        "ringest's blocks take {ratio:.3}x promtool's bytes per sample"
    );
    eprintln!(
        "xor: {} series, {n_chunks} chunks (largest {biggest} bytes) byte-identical to promtool's; \
         total {:?}",
        their_chunks.len(),
        t0.elapsed()
    );
}

/// Where promtool cannot be the oracle (a range the data enters late, see above), a Prometheus 2.42
/// server is: it receives the same remote-write requests as Ringest, cuts its head into 2 h blocks
/// by itself (on append, as soon as its head spans more than 3 h), and its blocks' time ranges and
/// XOR chunks must equal those of Ringest's first two blocks.
#[test]
fn xor_chunks_of_a_late_started_range_equal_prometheus_servers() {
    let t0 = Instant::now();
    let tmp = test_dir("blocks-xor-server");
    let dir = tmp.path();
    let mut rg = Ringest::start(dir, &[]);
    let p_addr = free_addr();
    let mut p = Prometheus::start(
        "receiver",
        dir,
        &p_addr,
        "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\nscrape_configs: []\n",
        &[
            "--web.enable-remote-write-receiver",
            "--storage.tsdb.retention.time=10y",
        ],
    );

    // 10 min (and 7 ms) into a 2 h range until 5 h 15 min after its start, ending at least 1 h ago:
    // the server cuts [start, range end) and the next full range; the first range's chunks hold
    // ~147 samples (its 1 h 50 min spread over 3 chunks).
    let base = (now_ms() - 13 * HOUR / 2).div_euclid(RANGE_2H) * RANGE_2H;
    let start = base + 10 * 60_000 + 7;
    let end = base + 5 * HOUR + 15 * 60_000;
    assert!(end <= now_ms() - HOUR);
    let data = synthetic(start, end);
    let per_request = 40;
    let rounds = data.iter().map(|s| s.samples.len()).max().unwrap();
    for r in (0..rounds).step_by(per_request) {
        let req = round_request(&data, r, per_request);
        let resp = remote_write(&rg.rw, None, &req);
        assert!(resp.is_2xx(), "ringest: {} {}", resp.status, resp.text());
        let resp = post_raw(
            &p_addr,
            "/api/v1/write",
            &WRITE_HEADERS,
            &encode_write(&req),
        );
        assert!(resp.is_2xx(), "prometheus: {} {}", resp.status, resp.text());
    }
    let cut = poll(Duration::from_secs(60), Duration::from_millis(250), || {
        (list_blocks(&p.data_dir).len() >= 2).then_some(())
    });
    assert!(
        cut.is_some(),
        "prometheus did not cut 2 blocks within 60 s\n{}",
        p.proc.logs()
    );
    let status = p.proc.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "prometheus: {status:?}"
    );
    rg.terminate_cleanly();

    let theirs = list_blocks(&p.data_dir);
    let ours = list_blocks(&rg.bucket());
    let spans = |b: &[Block]| {
        b.iter()
            .map(|b| (b.min_time, b.max_time))
            .collect::<Vec<_>>()
    };
    // After a cut, Prometheus's head starts at its oldest remaining sample. Ringest's does too
    // unless a write raced the truncation's scan; then it keeps the cut boundary (still no gap
    // and no overlap), so its second block starts at one of the two.
    let second_first = data
        .iter()
        .flat_map(|s| s.samples.iter().map(|x| x.0))
        .filter(|&t| t >= base + RANGE_2H)
        .min()
        .unwrap();
    assert_eq!(
        spans(&theirs),
        vec![
            (start, base + RANGE_2H),
            (second_first, base + 2 * RANGE_2H)
        ],
        "prometheus's blocks"
    );
    assert!(ours.len() >= 3, "ringest's blocks: {:?}", spans(&ours));
    assert_eq!(
        spans(&ours[..1]),
        vec![(start, base + RANGE_2H)],
        "ringest's first block (prometheus's: {:?})",
        spans(&theirs)
    );
    assert!(
        [base + RANGE_2H, second_first].contains(&ours[1].min_time)
            && ours[1].max_time == base + 2 * RANGE_2H,
        "ringest's second block: {:?} (prometheus's: {:?})",
        spans(&ours[..2]),
        spans(&theirs)
    );
    let (our_chunks, their_chunks) = (chunks_over(&ours[..2]), chunks_over(&theirs));
    assert_eq!(
        our_chunks.keys().collect::<Vec<_>>(),
        their_chunks.keys().collect::<Vec<_>>(),
        "series: ringest vs prometheus"
    );
    let mut n_chunks = 0;
    let mut longest = 0;
    for (labels, t) in &their_chunks {
        let o = &our_chunks[labels];
        let meta = |c: &[Chunk]| c.iter().map(|c| (c.0, c.1, c.2.len())).collect::<Vec<_>>();
        assert_eq!(
            meta(o),
            meta(t),
            "{labels:?}: chunks (min time, max time, bytes): ringest vs prometheus"
        );
        for (k, (a, b)) in o.iter().zip(t).enumerate() {
            assert!(
                a.2 == b.2,
                "{labels:?}: chunk {k} [{}, {}]: bytes differ at offset {:?}",
                a.0,
                a.1,
                a.2.iter().zip(&b.2).position(|(x, y)| x != y)
            );
            longest = longest.max(u16::from_be_bytes([b.2[0], b.2[1]]));
        }
        n_chunks += t.len();
    }
    assert!(
        longest > 140,
        "the late-started range should hold chunks of ~147 samples, longest {longest}"
    );
    eprintln!(
        "xor vs prometheus server: {} series, {n_chunks} chunks (up to {longest} samples) in 2 blocks \
         byte-identical; total {:?}",
        their_chunks.len(),
        t0.elapsed()
    );
}
