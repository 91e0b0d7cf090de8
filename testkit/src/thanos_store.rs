//! An independent Thanos Store API / Info API client for the end-to-end tests: runs
//! `tests/thanos_store/store_client.py` (Python grpcio, stubs from `.proto` files written from
//! Thanos's field tables, its own XOR decoder and xxhash64) in the test venv and parses its JSON.
//! Nothing here shares code or types with Ringest's own gRPC server.
//!
//! ```text
//! let c = StoreClient::new(&ingestor.grpc);
//! let info = c.info().unwrap();
//! let res = c.series(&SeriesQuery::new(t0, t1).matcher("__name__=~up|node_.*")).unwrap();
//! let dedup = dedup_replicas(&merge_split_frames(&res.series), "receive_replica");
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::proc::run_to_exit;
use crate::{Labels, Samples};

/// Python of the test venv: `$RINGEST_VENV/bin/python` or `~/.cache/ringest/venv/bin/python`
/// (where `scripts/install-test-deps.sh` puts grpcio); panics pointing at that script when neither
/// has grpcio.
pub fn venv_python() -> PathBuf {
    let candidates: Vec<PathBuf> = [
        std::env::var_os("RINGEST_VENV").map(|v| PathBuf::from(v).join("bin/python")),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ringest/venv/bin/python")),
    ]
    .into_iter()
    .flatten()
    .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "venv python not found (looked at {candidates:?}): run scripts/install-test-deps.sh \
                 (it installs grpcio into ~/.cache/ringest/venv), or set RINGEST_VENV"
            )
        })
}

/// The directory of the Python client, its protos and fixtures (`tests/thanos_store`).
pub fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/thanos_store")
}

/// A gRPC failure as the client saw it: the status code name (`UNAVAILABLE`, `INVALID_ARGUMENT`,
/// ...; `CLIENT` for a request the client could not build) and its message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GrpcError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for GrpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Labels as received: pairs in wire order.
pub type LabelPairs = Vec<(String, String)>;

/// `thanos.info.Info/Info`'s answer.
#[derive(Debug, Clone, Deserialize)]
pub struct InfoResult {
    /// External label sets, one per tenant for a Receive.
    pub label_sets: Vec<LabelPairs>,
    /// `receive` for a Receive.
    pub component_type: String,
    /// `None` when the endpoint says it serves no Store API.
    pub store: Option<StoreInfo>,
    /// Other APIs the endpoint advertises (`rules`, `exemplars`, `status`, ...).
    pub apis: Vec<String>,
}

/// `InfoResponse.store`.
#[derive(Debug, Clone, Deserialize)]
pub struct StoreInfo {
    pub min_time: i64,
    pub max_time: i64,
    pub supports_sharding: bool,
    pub supports_without_replica_labels: bool,
    pub supports_projections: bool,
    pub tsdb_infos: Vec<TsdbInfo>,
}

/// One `TSDBInfo`: a tenant's external labels and time range.
#[derive(Debug, Clone, Deserialize)]
pub struct TsdbInfo {
    pub labels: LabelPairs,
    pub min_time: i64,
    pub max_time: i64,
}

/// Frame counts of a Series stream by kind.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FrameKinds {
    pub series: u64,
    pub batch: u64,
    pub warning: u64,
    pub hints: u64,
    /// Frames with no oneof member set (never valid).
    #[serde(default)]
    pub empty: u64,
}

/// `thanos.Store/Series`: the stream as received.
#[derive(Debug, Clone, Deserialize)]
pub struct SeriesResult {
    /// Number of `SeriesResponse` messages.
    pub frames: u64,
    pub frame_kinds: FrameKinds,
    /// Most series in one `batch` frame.
    pub max_batch_series: u64,
    pub warnings: Vec<String>,
    /// Every `Series` in stream order (a series split over frames appears once per frame; see
    /// [`merge_split_frames`]).
    pub series: Vec<StoreSeries>,
    /// Chunks whose non-zero `hash` is not the xxhash64 of their bytes.
    pub hash_mismatches: Vec<HashMismatch>,
    /// XOR chunks the client's decoder rejected.
    pub decode_errors: Vec<DecodeError>,
    /// A failure, possibly after some frames arrived (those are kept above).
    pub error: Option<GrpcError>,
    pub elapsed_ms: u64,
}

/// One `Series` message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StoreSeries {
    /// Pairs in received order.
    pub labels: LabelPairs,
    pub chunks: Vec<StoreChunk>,
    /// Index of the frame that carried it.
    pub frame: u64,
}

/// One chunk of an `AggrChunk` (`kind` says which member: `raw` for a TSDB store).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StoreChunk {
    pub min_time: i64,
    pub max_time: i64,
    pub kind: String,
    /// `XOR`, `HISTOGRAM`, `FLOAT_HISTOGRAM` (or the raw number if unknown).
    #[serde(rename = "type")]
    pub encoding: serde_json::Value,
    pub hash: u64,
    /// The chunk bytes (empty when the query asked for `no_data`).
    #[serde(default, deserialize_with = "base64_bytes")]
    pub data: Vec<u8>,
    /// Length of the chunk bytes.
    pub len: usize,
    /// Decoded (timestamp, value bits) of an XOR chunk, untrimmed.
    pub samples: Option<Samples>,
    pub decode_error: Option<String>,
    /// Whether the hash matched (`None` when it was 0).
    pub hash_ok: Option<bool>,
}

/// A chunk with a wrong hash: where, what was sent, what the bytes hash to.
#[derive(Debug, Clone, Deserialize)]
pub struct HashMismatch {
    pub series: usize,
    pub chunk: usize,
    pub sent: u64,
    pub computed: u64,
}

/// A chunk the decoder rejected.
#[derive(Debug, Clone, Deserialize)]
pub struct DecodeError {
    pub series: usize,
    pub chunk: usize,
    pub error: String,
}

/// `LabelNames` or `LabelValues`: the names or values, and warnings.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelsResult {
    #[serde(alias = "names", alias = "values")]
    pub items: Vec<String>,
    pub warnings: Vec<String>,
}

impl StoreSeries {
    /// The labels as a sorted map (panics on a repeated name, which no valid series has).
    pub fn label_map(&self) -> Labels {
        let m: Labels = self.labels.iter().cloned().collect();
        assert_eq!(
            m.len(),
            self.labels.len(),
            "repeated label name in {:?}",
            self.labels
        );
        m
    }

    /// All decoded samples of its chunks in `[min_t, max_t]`, sorted by time; panics if a chunk
    /// was not decoded or two chunks hold the same timestamp with different bits.
    pub fn samples_in(&self, min_t: i64, max_t: i64) -> Samples {
        let mut by_t: BTreeMap<i64, u64> = BTreeMap::new();
        for c in &self.chunks {
            let Some(samples) = &c.samples else {
                panic!("{:?}: chunk not decoded: {:?}", self.labels, c.decode_error);
            };
            for &(t, v) in samples.iter().filter(|s| s.0 >= min_t && s.0 <= max_t) {
                if let Some(old) = by_t.insert(t, v) {
                    assert_eq!(old, v, "{:?}: two values at {t}", self.labels);
                }
            }
        }
        by_t.into_iter().collect()
    }
}

/// A Series request: time range, matchers in the client's text form (`name=v`, `name!=v`,
/// `name=~re`, `name!~re`) and the optional fields Thanos Query sets.
#[derive(Debug, Clone, Default)]
pub struct SeriesQuery {
    pub min_time: i64,
    pub max_time: i64,
    pub matchers: Vec<String>,
    pub skip_chunks: bool,
    pub without_replica_labels: Vec<String>,
    pub limit: Option<i64>,
    /// `response_batch_size` (Query v0.41+ sends 64).
    pub batch_size: Option<i64>,
    /// Leave chunk bytes out of the JSON (samples stay): for large answers.
    pub no_data: bool,
}

impl SeriesQuery {
    /// A query over `[min_time, max_time]` with no matcher yet.
    pub fn new(min_time: i64, max_time: i64) -> SeriesQuery {
        SeriesQuery {
            min_time,
            max_time,
            ..SeriesQuery::default()
        }
    }

    /// Adds a matcher (`name=v`, `name!=v`, `name=~re`, `name!~re`).
    pub fn matcher(mut self, m: &str) -> SeriesQuery {
        self.matchers.push(m.to_string());
        self
    }

    /// Asks for labels only.
    pub fn skip_chunks(mut self) -> SeriesQuery {
        self.skip_chunks = true;
        self
    }

    /// Adds a `without_replica_labels` entry.
    pub fn without_replica_label(mut self, l: &str) -> SeriesQuery {
        self.without_replica_labels.push(l.to_string());
        self
    }

    /// Sets `limit`.
    pub fn limit(mut self, n: i64) -> SeriesQuery {
        self.limit = Some(n);
        self
    }

    /// Sets `response_batch_size`.
    pub fn batch_size(mut self, n: i64) -> SeriesQuery {
        self.batch_size = Some(n);
        self
    }
}

/// A LabelNames / LabelValues request.
#[derive(Debug, Clone, Default)]
pub struct LabelsQuery {
    /// Start and end in ms (`None`: Prometheus's API minimum/maximum, as Query sends).
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub matchers: Vec<String>,
    pub without_replica_labels: Vec<String>,
    pub limit: Option<i64>,
}

/// The client, aimed at one endpoint, with the metadata to send.
#[derive(Debug, Clone)]
pub struct StoreClient {
    pub addr: String,
    /// Sent as `thanos-tenant` metadata.
    pub tenant: Option<String>,
    /// Sent as `authorization: Bearer <token>`.
    pub bearer: Option<String>,
    /// Receive limit in MiB (`None`: unlimited, as Thanos Query's MaxInt32).
    pub max_message_mib: Option<u32>,
    /// `gzip` or `deflate` request compression (grpcio has no snappy).
    pub compression: Option<String>,
    /// RPC deadline; the Python process gets 30 s more.
    pub timeout: Duration,
}

impl StoreClient {
    /// A client for the gRPC endpoint at `addr` (`host:port`).
    pub fn new(addr: &str) -> StoreClient {
        StoreClient {
            addr: addr.to_string(),
            tenant: None,
            bearer: None,
            max_message_mib: None,
            compression: None,
            timeout: Duration::from_secs(60),
        }
    }

    /// Sends `thanos-tenant: <tenant>`.
    pub fn tenant(mut self, tenant: &str) -> StoreClient {
        self.tenant = Some(tenant.to_string());
        self
    }

    /// Sends `authorization: Bearer <token>`.
    pub fn bearer(mut self, token: &str) -> StoreClient {
        self.bearer = Some(token.to_string());
        self
    }

    /// `thanos.info.Info/Info`.
    pub fn info(&self) -> Result<InfoResult, GrpcError> {
        let v = self.run("info", &[])?;
        Ok(parse("info", v))
    }

    /// `thanos.Store/Series`, failing on a gRPC error (even after some frames; see
    /// [`Self::series_stream`] to keep those).
    pub fn series(&self, q: &SeriesQuery) -> Result<SeriesResult, GrpcError> {
        let r = self.series_stream(q);
        match r.error {
            Some(e) => Err(e),
            None => Ok(r),
        }
    }

    /// `thanos.Store/Series`, keeping what arrived before an error (in `error`).
    pub fn series_stream(&self, q: &SeriesQuery) -> SeriesResult {
        let mut args = vec![
            format!("--min-time={}", q.min_time),
            format!("--max-time={}", q.max_time),
        ];
        args.extend(q.matchers.iter().map(|m| format!("--matcher={m}")));
        args.extend(
            q.without_replica_labels
                .iter()
                .map(|l| format!("--without-replica-label={l}")),
        );
        if q.skip_chunks {
            args.push("--skip-chunks".into());
        }
        if q.no_data {
            args.push("--no-data".into());
        }
        if let Some(n) = q.limit {
            args.push(format!("--limit={n}"));
        }
        if let Some(n) = q.batch_size {
            args.push(format!("--batch-size={n}"));
        }
        let v = self.invoke("series", &args);
        parse("series", v)
    }

    /// `thanos.Store/LabelNames`.
    pub fn label_names(&self, q: &LabelsQuery) -> Result<LabelsResult, GrpcError> {
        let v = self.run("label-names", &labels_args(q))?;
        Ok(parse("label-names", v))
    }

    /// `thanos.Store/LabelValues` of `name`.
    pub fn label_values(&self, name: &str, q: &LabelsQuery) -> Result<LabelsResult, GrpcError> {
        let mut args = labels_args(q);
        // `--` so a name starting with '-' is not taken for an option.
        args.push("--".into());
        args.push(name.to_string());
        let v = self.run("label-values", &args)?;
        Ok(parse("label-values", v))
    }

    /// Runs a subcommand and splits off its `error`.
    fn run(&self, cmd: &str, args: &[String]) -> Result<serde_json::Value, GrpcError> {
        let v = self.invoke(cmd, args);
        match v.get("error") {
            Some(e) if !e.is_null() => Err(parse(cmd, e.clone())),
            _ => Ok(v),
        }
    }

    /// Runs `store_client.py <cmd> <addr> <args>` and parses its one JSON document; panics with
    /// its output if it fails or prints something else.
    fn invoke(&self, cmd: &str, args: &[String]) -> serde_json::Value {
        let script = client_dir().join("store_client.py");
        let mut all: Vec<String> = vec![
            script.to_string_lossy().into_owned(),
            cmd.to_string(),
            self.addr.clone(),
            format!("--timeout={}", self.timeout.as_secs_f64()),
        ];
        if let Some(t) = &self.tenant {
            all.push(format!("--tenant={t}"));
        }
        if let Some(t) = &self.bearer {
            all.push(format!("--bearer={t}"));
        }
        if let Some(n) = self.max_message_mib {
            all.push(format!("--max-message-mib={n}"));
        }
        if let Some(c) = &self.compression {
            all.push(format!("--compression={c}"));
        }
        all.extend(args.iter().cloned());
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = run_to_exit(
            venv_python(),
            &refs,
            b"",
            None,
            self.timeout + Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "store_client.py {cmd} {}: {}\nstderr:\n{}\nstdout:\n{}",
            self.addr,
            out.status,
            out.stderr,
            out.stdout
        );
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "store_client.py {cmd}: not one JSON document ({e}):\n{}\nstderr:\n{}",
                out.stdout, out.stderr
            )
        })
    }
}

fn labels_args(q: &LabelsQuery) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(s) = q.start {
        args.push(format!("--start={s}"));
    }
    if let Some(e) = q.end {
        args.push(format!("--end={e}"));
    }
    args.extend(q.matchers.iter().map(|m| format!("--matcher={m}")));
    args.extend(
        q.without_replica_labels
            .iter()
            .map(|l| format!("--without-replica-label={l}")),
    );
    if let Some(n) = q.limit {
        args.push(format!("--limit={n}"));
    }
    args
}

fn parse<T: serde::de::DeserializeOwned>(cmd: &str, v: serde_json::Value) -> T {
    let text = v.to_string();
    serde_json::from_value(v)
        .unwrap_or_else(|e| panic!("store_client.py {cmd}: unexpected JSON ({e}): {text}"))
}

/// Standard base64 (with padding), as Python's `base64.b64encode` writes it.
fn base64_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    decode_base64(&s).map_err(serde::de::Error::custom)
}

/// Decodes standard base64 with padding.
pub fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let b = s.as_bytes();
    if b.len() % 4 != 0 {
        return Err(format!("base64 length {} is not a multiple of 4", b.len()));
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (i, q) in b.chunks_exact(4).enumerate() {
        let last = i == b.len() / 4 - 1;
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err("bad base64 padding".into());
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = n << 6 | val(c).ok_or_else(|| format!("bad base64 byte {c:#x}"))?;
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Ok(out)
}

/// Merges consecutive entries of the same label set (a server may split one series' chunks over
/// several frames), keeping stream order; the same labels later, not adjacent, stay separate (an
/// unsorted stream, which [`assert_sorted`] reports).
pub fn merge_split_frames(series: &[StoreSeries]) -> Vec<StoreSeries> {
    let mut out: Vec<StoreSeries> = Vec::with_capacity(series.len());
    for s in series {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => last.chunks.extend(s.chunks.iter().cloned()),
            _ => out.push(s.clone()),
        }
    }
    out
}

/// Panics unless the stream is sorted as Thanos requires: by the full label set (sorted by name,
/// compared pair by pair), each label set's pairs themselves sorted by name, no label set
/// appearing in two non-adjacent places.
pub fn assert_sorted(series: &[StoreSeries]) {
    for s in series {
        assert!(
            s.labels.windows(2).all(|w| w[0].0 < w[1].0),
            "labels not sorted by name (or repeated): {:?}",
            s.labels
        );
    }
    for w in series.windows(2) {
        assert!(
            w[0].labels <= w[1].labels,
            "stream not sorted by label set: {:?} before {:?}",
            w[0].labels,
            w[1].labels
        );
    }
}

/// Replicas merged the way Thanos Query's dedup sees them: per label set without `replica_label`,
/// the union of all replicas' samples in `[min_t, max_t]` by timestamp. Replicas holding different
/// bits at one timestamp are reported in `conflicts` (one replica's value is kept).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deduped {
    pub series: BTreeMap<Labels, Samples>,
    /// (labels, timestamp, kept bits, other bits).
    pub conflicts: Vec<(Labels, i64, u64, u64)>,
}

/// Deduplicates on `replica_label` (see [`Deduped`]) over the samples in `[min_t, max_t]`.
pub fn dedup_replicas(
    series: &[StoreSeries],
    replica_label: &str,
    min_t: i64,
    max_t: i64,
) -> Deduped {
    let mut by: BTreeMap<Labels, BTreeMap<i64, u64>> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for s in series {
        let mut labels = s.label_map();
        labels.remove(replica_label);
        let entry = by.entry(labels.clone()).or_default();
        for (t, v) in s.samples_in(min_t, max_t) {
            match entry.get(&t) {
                Some(&old) if old != v => conflicts.push((labels.clone(), t, old, v)),
                Some(_) => {}
                None => {
                    entry.insert(t, v);
                }
            }
        }
    }
    Deduped {
        series: by
            .into_iter()
            .map(|(l, m)| (l, m.into_iter().collect()))
            .collect(),
        conflicts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::free_addr;

    fn chunk(samples: &[(i64, u64)]) -> StoreChunk {
        StoreChunk {
            min_time: samples.first().map_or(0, |s| s.0),
            max_time: samples.last().map_or(0, |s| s.0),
            kind: "raw".into(),
            encoding: "XOR".into(),
            hash: 0,
            data: vec![],
            len: 0,
            samples: Some(samples.to_vec()),
            decode_error: None,
            hash_ok: None,
        }
    }

    fn series(labels: &[(&str, &str)], chunks: Vec<StoreChunk>, frame: u64) -> StoreSeries {
        StoreSeries {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            chunks,
            frame,
        }
    }

    /// The Python side of the client: XOR decoder and xxhash64 against the vectors Prometheus
    /// 2.42, Ringest's encoder and xxhash-rust made (tests/thanos_store/fixtures), matcher parsing.
    #[test]
    fn python_client_unit_tests() {
        let dir = client_dir();
        let out = run_to_exit(
            venv_python(),
            &[
                "-m",
                "unittest",
                "discover",
                "-s",
                dir.to_str().unwrap(),
                "-p",
                "test_*.py",
            ],
            b"",
            None,
            Duration::from_secs(120),
        );
        assert!(
            out.status.success(),
            "python unit tests failed: {}\n{}{}",
            out.status,
            out.stdout,
            out.stderr
        );
        // unittest reports on stderr; make sure it ran the tests and not nothing.
        let ran = out.stderr.lines().find_map(|l| {
            l.strip_prefix("Ran ")?
                .split(' ')
                .next()?
                .parse::<u32>()
                .ok()
        });
        assert!(ran.unwrap_or(0) >= 10, "ran too few tests:\n{}", out.stderr);
    }

    #[test]
    fn unreachable_endpoint_answers_unavailable() {
        let addr = free_addr(); // nothing listens there
        let c = StoreClient {
            timeout: Duration::from_secs(10),
            ..StoreClient::new(&addr)
        };
        let e = c.info().unwrap_err();
        assert_eq!(e.code, "UNAVAILABLE", "{e}");
        let r = c.series_stream(&SeriesQuery::new(0, 1000).matcher("job=~a.+"));
        assert_eq!(
            r.error.as_ref().map(|e| e.code.as_str()),
            Some("UNAVAILABLE")
        );
        assert_eq!((r.frames, r.series.len()), (0, 0));
        let e = c.label_values("job", &LabelsQuery::default()).unwrap_err();
        assert_eq!(e.code, "UNAVAILABLE", "{e}");
        // A malformed matcher is the client's own error, before any RPC.
        let e = c
            .series(&SeriesQuery::new(0, 1).matcher("nonsense"))
            .unwrap_err();
        assert_eq!(e.code, "CLIENT", "{e}");
    }

    #[test]
    fn base64_round_trips_python_output() {
        // Python: base64.b64encode(bytes(range(0, 256, 37))) and of b"", b"a", b"ab".
        assert_eq!(
            decode_base64("ACVKb5S53g==").unwrap(),
            vec![0, 37, 74, 111, 148, 185, 222]
        );
        assert_eq!(decode_base64("").unwrap(), Vec::<u8>::new());
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert!(decode_base64("YQ=").is_err());
        assert!(decode_base64("Y===").is_err());
        assert!(decode_base64("YQ==YQ==").is_err());
    }

    #[test]
    fn split_frames_merge_only_when_adjacent() {
        let a = [("__name__", "m"), ("i", "1")];
        let b = [("__name__", "m"), ("i", "2")];
        let s = vec![
            series(&a, vec![chunk(&[(1, 1)])], 0),
            series(&a, vec![chunk(&[(2, 2)])], 1),
            series(&b, vec![chunk(&[(1, 3)])], 2),
            series(&a, vec![chunk(&[(3, 3)])], 3),
        ];
        let m = merge_split_frames(&s);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].samples_in(i64::MIN, i64::MAX), vec![(1, 1), (2, 2)]);
        assert_eq!(m[0].frame, 0);
        assert_eq!(m[2].samples_in(i64::MIN, i64::MAX), vec![(3, 3)]);
        assert_sorted(&m[..2]);
        let unsorted = std::panic::catch_unwind(|| assert_sorted(&m));
        assert!(unsorted.is_err(), "a before b before a is not sorted");
    }

    #[test]
    fn dedup_unions_replicas_and_reports_conflicts() {
        let r0 = [
            ("__name__", "m"),
            ("receive_replica", "0"),
            ("tenant_id", "t"),
        ];
        let r1 = [
            ("__name__", "m"),
            ("receive_replica", "1"),
            ("tenant_id", "t"),
        ];
        let s = vec![
            series(&r0, vec![chunk(&[(10, 1), (20, 2), (30, 3)])], 0),
            series(&r1, vec![chunk(&[(20, 2), (30, 9), (40, 4)])], 1),
        ];
        let d = dedup_replicas(&s, "receive_replica", 15, 40);
        let key = crate::label_map(&[("__name__", "m"), ("tenant_id", "t")]);
        assert_eq!(d.series.len(), 1);
        assert_eq!(d.series[&key], vec![(20, 2), (30, 3), (40, 4)]);
        assert_eq!(d.conflicts, vec![(key, 30, 3, 9)]);
    }

    #[test]
    fn series_json_parses() {
        // The shape store_client.py prints (abridged from a real run's output format).
        let v = serde_json::json!({
            "frames": 2, "frame_kinds": {"series": 1, "batch": 1, "warning": 0, "hints": 0},
            "max_batch_series": 1, "warnings": [], "hash_mismatches": [], "decode_errors": [],
            "error": null, "elapsed_ms": 3,
            "series": [{"labels": [["a", "b"]], "frame": 0, "chunks": [{
                "min_time": 1, "max_time": 2, "kind": "raw", "type": "XOR",
                "hash": 18446744073709551615u64, "len": 2, "data": "AAA=",
                "samples": [[1, 18446744073709551615u64]], "decode_error": null, "hash_ok": false}]}]
        });
        let r: SeriesResult = parse("series", v);
        let c = &r.series[0].chunks[0];
        assert_eq!((c.hash, c.data.clone()), (u64::MAX, vec![0, 0]));
        assert_eq!(c.samples, Some(vec![(1, u64::MAX)]));
    }
}
