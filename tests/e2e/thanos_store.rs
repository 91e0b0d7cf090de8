//! The independent Thanos Store API test client (`tests/thanos_store/`): its chunk test vectors are
//! reproducible from Prometheus 2.42 and Ringest's own encoder, and agree with Ringest's decoder
//! and the `xxhash-rust` crate. The Python side of the same vectors runs from testkit's
//! `thanos_store` tests.
//!
//! A smoke test also runs the client against a real ingestor's Store API.
//!
//! `tests/thanos_store/fixtures/xor_chunks.json` is rebuilt here on every run and must equal the
//! checked-in file; `RINGEST_REGEN_FIXTURES=1` writes it instead (after a deliberate change).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ringest::tsdb::chunkenc::{iter_bytes, XorChunk};
use testkit::prelude::*;

use crate::support::{block_chunks, encode_write_exact, ringest_bin, SeriesSpec};
use xxhash_rust::xxh64::xxh64;

/// The checked-in fixture file.
fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/thanos_store/fixtures/xor_chunks.json")
}

/// One series of the OpenMetrics input given to promtool: name, label `case`, samples as
/// (timestamp ms, value bits).
struct InputSeries {
    name: &'static str,
    samples: Vec<(i64, u64)>,
}

/// Base timestamp of the Prometheus-made series (2023-11-14T22:13:20Z).
const BASE_MS: i64 = 1_700_000_000_000;

/// Values that exercise every XOR value path: repeats (`0`), reused windows, new windows,
/// 64 significant bits (sign flip plus lowest bit), leading zeros clamped at 31, specials.
fn tricky_values() -> Vec<f64> {
    vec![
        1.0,
        1.0,
        -1.000_000_000_000_000_2, // bits 0xBFF0000000000001: XOR with 1.0 has 0 leading/trailing
        f64::NAN,                 // Go parses "NaN" to 0x7ff8000000000001
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        f64::MAX,
        5e-324,
        f64::MIN_POSITIVE,
        1e-300,
        123_456.789,
        f64::from_bits(123_456.789f64.to_bits() + 1), // one ulp up: a 1-bit XOR
        -42.5,
        3.0,
        3.000_000_000_000_000_4,
        7.0,
        7.0,
        7.0,
    ]
}

/// The series written through promtool: regular scrapes over several chunks, and irregular
/// timestamps whose delta-of-deltas fall in each bucket (0, 14, 17, 20 bits and the 64-bit
/// escape, both signs) carrying the tricky values.
fn prometheus_input() -> Vec<InputSeries> {
    let mut rng = SplitMix64(0x7468_616e_6f73); // "thanos"
    let regular: Vec<(i64, u64)> = (0..250)
        .map(|i| (BASE_MS + i * 15_000, ((i * 7 % 13) as f64 * 0.5).to_bits()))
        .collect();
    // Gaps chosen so consecutive deltas differ by amounts in every dod bucket.
    let gaps: [i64; 16] = [
        1_000, 1_000, 1_001, 9_000, 1_000, 60_000, 1_500, 400_000, 1, 1_300_000, 2, 3, 70_000, 5,
        600_000, 999,
    ];
    let mut t = BASE_MS + 17;
    let mut jitter = Vec::new();
    for (i, v) in tricky_values().into_iter().cycle().take(150).enumerate() {
        jitter.push((t, v.to_bits()));
        t += gaps[i % gaps.len()] + rng.range(0, 3) as i64;
    }
    let noisy: Vec<(i64, u64)> = (0..130)
        .map(|i| {
            let v = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 1000.0 - 500.0;
            (
                BASE_MS + 5 + i * 30_000 + rng.range(0, 200) as i64,
                v.to_bits(),
            )
        })
        .collect();
    vec![
        InputSeries {
            name: "fx_regular",
            samples: regular,
        },
        InputSeries {
            name: "fx_jitter",
            samples: jitter,
        },
        InputSeries {
            name: "fx_noisy",
            samples: noisy,
        },
    ]
}

/// A value as OpenMetrics text Go's `strconv.ParseFloat` reads back to the same bits (NaN reads
/// back as Go's `math.NaN()`).
fn om_value(bits: u64) -> String {
    let v = f64::from_bits(bits);
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's `{:?}` is the shortest representation that round-trips (and keeps "-0.0").
        format!("{v:?}")
    }
}

/// The timestamp (seconds with three decimals) for `ms`, and the ms Prometheus 2.42's OpenMetrics
/// parser makes of it: `int64(float64(seconds) * 1000)`, a truncation this replays bit for bit.
fn om_timestamp(ms: i64) -> (String, i64) {
    let text = format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    let parsed = (text.parse::<f64>().unwrap() * 1000.0) as i64;
    (text, parsed)
}

/// The OpenMetrics file and, per series, the samples Prometheus will store.
fn openmetrics(series: &[InputSeries]) -> (String, Vec<(String, Samples)>) {
    let mut text = String::new();
    let mut stored = Vec::new();
    for s in series {
        writeln!(text, "# TYPE {} gauge", s.name).unwrap();
        let mut kept = Vec::new();
        for &(t, v) in &s.samples {
            let (ts, parsed) = om_timestamp(t);
            writeln!(text, "{}{{case=\"fixture\"}} {} {ts}", s.name, om_value(v)).unwrap();
            let v = if f64::from_bits(v).is_nan() {
                GO_NAN_BITS
            } else {
                v
            };
            kept.push((parsed, v));
        }
        stored.push((s.name.to_string(), kept));
    }
    text.push_str("# EOF\n");
    (text, stored)
}

/// One fixture chunk as a JSON line.
fn chunk_json(
    name: &str,
    source: &str,
    mint: i64,
    maxt: i64,
    data: &[u8],
    samples: &[(i64, u64)],
) -> String {
    serde_json::json!({
        "name": name,
        "source": source,
        "min_time": mint,
        "max_time": maxt,
        "data_hex": hex(data),
        "xxh64": xxh64(data, 0),
        "samples": samples,
    })
    .to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Chunks of Prometheus 2.42's own making: `promtool tsdb create-blocks-from openmetrics` on
/// [`prometheus_input`], read back through Ringest's index and chunk readers; the expected samples
/// are the input (not a decoder's output), cut to each chunk's time range.
fn prometheus_chunks(dir: &Path) -> Vec<String> {
    let (text, stored_samples) = openmetrics(&prometheus_input());
    let input = dir.join("input.om");
    std::fs::write(&input, &text).unwrap();
    let out = dir.join("blocks");
    promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        input.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    let mut lines = Vec::new();
    for b in block_dirs(&out) {
        for (labels, stored) in block_chunks(&out.join(&b)) {
            let name = &labels["__name__"];
            let input = &stored_samples.iter().find(|(n, _)| n == name).unwrap().1;
            for c in stored {
                let want: Vec<(i64, u64)> = input
                    .iter()
                    .copied()
                    .filter(|&(t, _)| t >= c.min_time && t <= c.max_time)
                    .collect();
                let count = u16::from_be_bytes([c.data[0], c.data[1]]) as usize;
                assert_eq!(
                    count,
                    want.len(),
                    "{name} chunk [{}, {}]",
                    c.min_time,
                    c.max_time
                );
                lines.push(chunk_json(
                    name,
                    "prometheus-2.42",
                    c.min_time,
                    c.max_time,
                    &c.data,
                    &want,
                ));
            }
        }
    }
    lines.sort(); // block order and series ids are not the point; a stable file is
    lines
}

/// Chunks of Ringest's encoder on edge cases Prometheus cannot be fed through OpenMetrics: the
/// stale marker, negative and extreme timestamps, empty and one-sample chunks.
fn ringest_cases() -> Vec<(&'static str, Vec<(i64, u64)>)> {
    let mut edge = Vec::new();
    let mut t = -5_000i64;
    let specials = [
        STALE_NAN_BITS,
        GO_NAN_BITS,
        0x7ff8_0000_0000_0000, // Rust's NaN
        (-0.0f64).to_bits(),
        0,
        f64::INFINITY.to_bits(),
        1,
        u64::MAX, // a negative NaN with every payload bit set
        1.5f64.to_bits(),
        (-1.5f64).to_bits(),
    ];
    for (i, v) in specials.iter().cycle().take(40).enumerate() {
        edge.push((t, *v));
        t += [10, 10, 9_000, 3, 100_000, 7, 600_000, 1][i % 8];
    }
    let extreme = vec![
        (i64::MIN + 1, 1.0f64.to_bits()),
        (i64::MIN + 2, 2.0f64.to_bits()),
        (-1, 3.0f64.to_bits()),
        (0, 4.0f64.to_bits()),
        (1 << 40, 4.0f64.to_bits()),
        ((1 << 40) + 1, 5.0f64.to_bits()),
        (i64::MAX - 1, 6.0f64.to_bits()),
    ];
    vec![
        ("ringest_empty", vec![]),
        ("ringest_one", vec![(1_234_567, 42.0f64.to_bits())]),
        (
            "ringest_two",
            vec![(-7, STALE_NAN_BITS), (8, (-0.0f64).to_bits())],
        ),
        ("ringest_edge", edge),
        ("ringest_extreme_times", extreme),
    ]
}

fn ringest_encode(samples: &[(i64, u64)]) -> Vec<u8> {
    let mut c = XorChunk::new();
    for &(t, v) in samples {
        c.append(t, f64::from_bits(v));
    }
    c.bytes().to_vec()
}

/// xxh64 test vectors from `xxhash-rust`: every tail path (8-, 4-, 1-byte lanes) and the 32-byte
/// stripe loop, with three seeds.
fn xxh64_vectors() -> Vec<String> {
    let mut out = Vec::new();
    for len in [
        0usize, 1, 3, 4, 5, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 65, 100, 257, 1000,
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        for seed in [0u64, 1, 0x9e37_79b9_7f4a_7c15] {
            out.push(
                serde_json::json!({"data_hex": hex(&data), "seed": seed, "hash": xxhash_rust::xxh64::xxh64(&data, seed)})
                    .to_string(),
            );
        }
    }
    out
}

fn build_fixture(dir: &Path) -> String {
    let mut chunks = prometheus_chunks(dir);
    for (name, samples) in ringest_cases() {
        let data = ringest_encode(&samples);
        let (mint, maxt) = (
            samples.first().map_or(0, |s| s.0),
            samples.last().map_or(0, |s| s.0),
        );
        chunks.push(chunk_json(
            name,
            "ringest-chunkenc",
            mint,
            maxt,
            &data,
            &samples,
        ));
    }
    let about = "XOR chunk and xxh64 test vectors for tests/thanos_store/store_client.py. \
                 source prometheus-2.42: `promtool tsdb create-blocks-from openmetrics` (Prometheus \
                 2.42) on the OpenMetrics input built in tests/e2e/thanos_store.rs, chunk bytes read \
                 back from the block, samples = that input cut to the chunk's range. \
                 source ringest-chunkenc: Ringest's XorChunk encoder. xxh64: the xxhash-rust crate. \
                 Values are u64 IEEE-754 bits. Rebuilt and compared by \
                 `cargo test --release --test e2e thanos_store::`; RINGEST_REGEN_FIXTURES=1 rewrites.";
    format!(
        "{{\n\"about\": {},\n\"xxh64\": [\n{}\n],\n\"chunks\": [\n{}\n]\n}}\n",
        serde_json::Value::from(about),
        xxh64_vectors().join(",\n"),
        chunks.join(",\n")
    )
}

#[test]
fn chunk_fixtures_are_reproducible_and_agree_with_ringest() {
    let dir = test_dir("store-fixtures");
    let built = build_fixture(dir.path());
    let path = fixture_path();
    if std::env::var_os("RINGEST_REGEN_FIXTURES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &built).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (RINGEST_REGEN_FIXTURES=1 writes it)",
            path.display()
        )
    });
    assert!(
        checked_in == built,
        "{} differs from what Prometheus 2.42 and Ringest's encoder make now (a different \
         promtool, or a changed encoder?); RINGEST_REGEN_FIXTURES=1 rewrites it",
        path.display()
    );

    // Independently of the Python side: Ringest's own decoder reads every chunk to the expected
    // samples, and the hashes are xxhash-rust's.
    let doc: serde_json::Value = serde_json::from_str(&checked_in).unwrap();
    let chunks = doc["chunks"].as_array().unwrap();
    assert!(
        chunks
            .iter()
            .filter(|c| c["source"] == "prometheus-2.42")
            .count()
            >= 6
    );
    for c in chunks {
        let data = unhex(c["data_hex"].as_str().unwrap());
        let want: Vec<(i64, u64)> = serde_json::from_value(c["samples"].clone()).unwrap();
        let mut it = iter_bytes(&data);
        let got: Vec<(i64, u64)> = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
        assert!(it.err().is_none(), "{}: {:?}", c["name"], it.err());
        assert_eq!(got, want, "{} [{}]", c["name"], c["min_time"]);
        assert_eq!(c["xxh64"].as_u64().unwrap(), xxh64(&data, 0));
    }
}

/// The client against a real `ringest ingest`: two tenants written over HTTP with values whose
/// bits matter read back bit for bit through Series (hashes checked, stream sorted), the
/// `thanos-tenant` header and a tenant matcher each narrowing to one tenant.
#[test]
fn client_reads_back_what_an_ingestor_stored() {
    let dir = test_dir("store-client-smoke");
    let ing = Ingestor::start(
        &ringest_bin(),
        "ingest-0",
        dir.path(),
        &["--label=receive_replica=\"0\""],
    );
    let t0 = now_ms() - 60_000;
    let values = [
        1.5,
        -0.0,
        f64::from_bits(STALE_NAN_BITS),
        f64::INFINITY,
        2.25,
    ];
    let samples: Vec<(i64, f64)> = (0..5)
        .map(|i| (t0 + i * 1000, values[i as usize]))
        .collect();
    for tenant in ["a", "b"] {
        let body: Vec<SeriesSpec<'_>> = vec![
            (vec![("__name__", "pyc_m"), ("k", "1")], samples.clone()),
            (vec![("__name__", "pyc_m"), ("k", "2")], samples.clone()),
        ];
        let r = post_raw(
            &ing.rw,
            "/api/v1/receive",
            &[WRITE_HEADERS.as_slice(), &[("THANOS-TENANT", tenant)]].concat(),
            &encode_write_exact(&body),
        );
        assert!(r.is_2xx(), "write {tenant}: {} {}", r.status, r.text());
    }
    let want: Samples = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
    let client = StoreClient::new(&ing.grpc);
    let q = SeriesQuery::new(t0 - 1000, t0 + 10_000).matcher("__name__=pyc_m");

    let all = client.series(&q).unwrap();
    assert!(
        all.hash_mismatches.is_empty() && all.decode_errors.is_empty(),
        "{all:?}"
    );
    let series = merge_split_frames(&all.series);
    assert_sorted(&series);
    let keys: Vec<String> = series
        .iter()
        .map(|s| format!("{}/{}", s.label_map()["tenant_id"], s.label_map()["k"]))
        .collect();
    // `k` sorts before `tenant_id`: the tenants interleave.
    assert_eq!(keys, ["a/1", "b/1", "a/2", "b/2"]);
    for s in &series {
        assert_eq!(s.label_map()["receive_replica"], "0");
        assert_eq!(s.samples_in(t0 - 1000, t0 + 10_000), want, "{:?}", s.labels);
        assert!(
            s.chunks.iter().all(|c| c.hash_ok == Some(true)),
            "{:?}",
            s.chunks
        );
    }

    let only_b = client.clone().tenant("b").series(&q).unwrap();
    assert_eq!(only_b.series.len(), 2, "{only_b:?}");
    assert!(only_b
        .series
        .iter()
        .all(|s| s.label_map()["tenant_id"] == "b"));
    let only_a = client.series(&q.clone().matcher("tenant_id=a")).unwrap();
    assert_eq!(only_a.series.len(), 2, "{only_a:?}");
    assert!(only_a
        .series
        .iter()
        .all(|s| s.label_map()["tenant_id"] == "a"));
}
