//! Remote write 2.0 (`io.prometheus.write.v2.Request`) against a `ringest ingest` process, and partial
//! writes in both protocols:
//!
//! - a valid 2.0 request is answered 2xx with `X-Prometheus-Remote-Write-Samples-Written` equal to the
//!   samples sent (histograms and exemplars written: 0) and reads back bit for bit;
//! - a symbol reference past the symbols table, a non-empty `symbols[0]` and odd `labels_refs` are
//!   400s that name the problem and store nothing;
//! - exemplars are accepted and dropped (2xx, `-Exemplars-Written: 0`); a native histogram series is
//!   refused as part of a partial write (400, the float series next to it stored and counted);
//! - a 2.0 request with one valid series and one without `__name__` is a 400 whose samples-written
//!   header counts the valid series, which is stored;
//! - a 1.0 request with two valid series and one with a duplicate label name is a 400, the two valid
//!   series are stored.
//!
//! The same through a router (RF 1): counts, partial writes and exact values survive forwarding.

use std::collections::BTreeMap;

use crate::support::{encode_write_exact, ringest_bin, SeriesSpec};
use ringest::remote_write::{Label, Sample, V2Encoder};
use testkit::prelude::*;

const V2_CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn v2_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Content-Type", V2_CONTENT_TYPE),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "2.0.0"),
    ]
}

fn post_v2(addr: &str, raw: &[u8]) -> Response {
    let body = snap::raw::Encoder::new().compress_vec(raw).unwrap();
    post_raw(addr, "/api/v1/receive", &v2_headers(), &body)
}

/// Encodes series (labels in the given order) with Ringest's 2.0 encoder.
fn encode_v2(series: &[SeriesSpec<'_>]) -> Vec<u8> {
    let labels: Vec<Vec<Label<'_>>> = series
        .iter()
        .map(|(l, _)| {
            l.iter()
                .map(|&(name, value)| Label { name, value })
                .collect()
        })
        .collect();
    let mut enc = V2Encoder::new();
    for ((_, samples), labels) in series.iter().zip(&labels) {
        let samples: Vec<Sample> = samples
            .iter()
            .map(|&(timestamp, value)| Sample { timestamp, value })
            .collect();
        enc.add_series(labels, &samples);
    }
    let mut out = Vec::new();
    enc.finish(&mut out);
    out
}

fn header_count(r: &Response, name: &str) -> Option<u64> {
    r.header(name).map(|v| {
        v.parse()
            .unwrap_or_else(|e| panic!("header {name}: {v:?}: {e}"))
    })
}

fn assert_written(what: &str, r: &Response, samples: u64) {
    assert_eq!(
        header_count(r, "X-Prometheus-Remote-Write-Samples-Written"),
        Some(samples),
        "{what}: samples written ({} {})",
        r.status,
        r.text()
    );
    assert_eq!(
        header_count(r, "X-Prometheus-Remote-Write-Histograms-Written"),
        Some(0),
        "{what}: histograms written"
    );
    assert_eq!(
        header_count(r, "X-Prometheus-Remote-Write-Exemplars-Written"),
        Some(0),
        "{what}: exemplars written"
    );
}

/// Every stored series of metric `name`.
fn read_metric(addr: &str, name: &str) -> BTreeMap<Labels, Samples> {
    let mut all = read_all(addr, None, now_ms() - 600_000, now_ms() + 60_000)
        .unwrap_or_else(|e| panic!("remote read of {addr}: {e}"));
    all.retain(|l, _| l.get("__name__").map(String::as_str) == Some(name));
    all
}

fn expect(series: &[SeriesSpec<'_>]) -> BTreeMap<Labels, Samples> {
    series
        .iter()
        .map(|(l, s)| {
            (
                label_map(l),
                s.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
            )
        })
        .collect()
}

// Minimal protobuf writer for requests Ringest's encoder cannot produce.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn len_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A 2.0 `TimeSeries` body: `refs` (packed), one sample per `samples`, then `extra` raw fields.
fn raw_series(refs: &[u64], samples: &[(i64, f64)], extra: &[u8]) -> Vec<u8> {
    let mut series = Vec::new();
    let mut packed = Vec::new();
    for &r in refs {
        varint(&mut packed, r);
    }
    len_field(&mut series, 1, &packed);
    for &(ts, value) in samples {
        let mut sample = Vec::new();
        varint(&mut sample, 1 << 3 | 1);
        sample.extend_from_slice(&value.to_bits().to_le_bytes());
        varint(&mut sample, 2 << 3);
        varint(&mut sample, ts as u64);
        len_field(&mut series, 2, &sample);
    }
    series.extend_from_slice(extra);
    series
}

/// A 2.0 request: the symbols, then the series bodies.
fn raw_request(symbols: &[&str], series: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in symbols {
        len_field(&mut out, 4, s.as_bytes());
    }
    for s in series {
        len_field(&mut out, 5, s);
    }
    out
}

/// A 2.0 request with the given symbols and one series of `refs` with one sample.
fn raw_v2(symbols: &[&str], refs: &[u64], ts: i64, value: f64) -> Vec<u8> {
    raw_request(symbols, &[raw_series(refs, &[(ts, value)], &[])])
}

/// Field 3 of a 2.0 `TimeSeries`: a native histogram (`sum` = 1.0, `timestamp` = `ts`).
fn raw_histogram(ts: i64) -> Vec<u8> {
    let mut h = Vec::new();
    varint(&mut h, 3 << 3 | 1);
    h.extend_from_slice(&1.0f64.to_bits().to_le_bytes());
    varint(&mut h, 15 << 3);
    varint(&mut h, ts as u64);
    let mut out = Vec::new();
    len_field(&mut out, 3, &h);
    out
}

/// Field 4 of a 2.0 `TimeSeries`: an exemplar with labels `refs`, value 1.0, timestamp `ts`.
fn raw_exemplar(refs: &[u64], ts: i64) -> Vec<u8> {
    let mut e = Vec::new();
    let mut packed = Vec::new();
    for &r in refs {
        varint(&mut packed, r);
    }
    len_field(&mut e, 1, &packed);
    varint(&mut e, 2 << 3 | 1);
    e.extend_from_slice(&1.0f64.to_bits().to_le_bytes());
    varint(&mut e, 3 << 3);
    varint(&mut e, ts as u64);
    let mut out = Vec::new();
    len_field(&mut out, 4, &e);
    out
}

#[test]
fn remote_write_v2_and_partial_writes() {
    let t0 = std::time::Instant::now();
    let tmp = test_dir("rw-v2");
    let dir = tmp.path();
    let ing = Ingestor::start(&ringest_bin(), "ingest", dir, &[]);
    let ts = now_ms() - 30_000;

    // The hand encoder agrees with Ringest's (same bytes for the same valid request).
    let sample_req = [(vec![("__name__", "a"), ("b", "c")], vec![(ts, 2.5)])];
    assert_eq!(
        raw_v2(&["", "__name__", "a", "b", "c"], &[1, 2, 3, 4], ts, 2.5),
        encode_v2(&sample_req),
        "test encoders disagree"
    );

    // 1. A valid 2.0 request: labels unsorted, shared symbols, special values.
    let valid = [
        (
            vec![("job", "v2"), ("__name__", "rw_v2_ok"), ("instance", "a")],
            vec![
                (ts, 1.0),
                (ts + 1000, f64::from_bits(STALE_NAN_BITS)),
                (ts + 2000, -0.0),
            ],
        ),
        (
            vec![("instance", "b"), ("__name__", "rw_v2_ok"), ("job", "v2")],
            vec![(ts, f64::INFINITY), (ts + 1000, 3.25)],
        ),
        (
            vec![
                ("__name__", "rw_v2_ok"),
                ("job", "v2"),
                ("instance", "c"),
                ("zone", "€"),
            ],
            vec![
                (ts, 1e-310),
                (ts + 1000, f64::from_bits(GO_NAN_BITS)),
                (ts + 2000, 7.0),
                (ts + 3000, -42.0),
            ],
        ),
    ];
    let sent: u64 = valid.iter().map(|(_, s)| s.len() as u64).sum();
    let r = post_v2(&ing.rw, &encode_v2(&valid));
    assert!(r.is_2xx(), "valid v2 request: {} {}", r.status, r.text());
    assert_written("valid v2 request", &r, sent);
    assert_same_bits(
        "valid v2 request",
        &expect(&valid),
        &read_metric(&ing.http, "rw_v2_ok"),
    );

    // 2. A symbol reference past the table: 400 naming it, nothing stored.
    let bad_ref = raw_v2(&["", "__name__", "rw_v2_badref"], &[1, 7], ts, 1.0);
    let r = post_v2(&ing.rw, &bad_ref);
    assert_eq!(r.status, 400, "bad symbol reference: {}", r.text());
    assert_written("bad symbol reference", &r, 0);
    let body = r.text();
    assert!(
        body.contains("symbol") && body.contains('7'),
        "bad symbol reference: the answer does not name it: {body:?}"
    );
    let bad_name_ref = raw_v2(&["", "__name__"], &[9, 1], ts, 1.0);
    let r = post_v2(&ing.rw, &bad_name_ref);
    assert_eq!(r.status, 400, "bad symbol reference (name): {}", r.text());
    assert!(
        r.text().contains("symbol") && r.text().contains('9'),
        "{}",
        r.text()
    );
    let after = read_all(&ing.http, None, ts - 1000, ts + 1000).unwrap();
    assert!(
        !after
            .keys()
            .any(|l| l.values().any(|v| v == "rw_v2_badref")),
        "a request refused for a bad symbol reference was stored"
    );

    // Other whole-request errors: symbols[0] not empty, odd labels_refs.
    let r = post_v2(
        &ing.rw,
        &raw_v2(&["x", "__name__", "rw_v2_never"], &[1, 2], ts, 1.0),
    );
    assert_eq!(r.status, 400, "symbols[0] not empty: {}", r.text());
    assert!(r.text().contains("symbols[0]"), "{}", r.text());
    let r = post_v2(
        &ing.rw,
        &raw_v2(&["", "__name__", "rw_v2_never"], &[1, 2, 1], ts, 1.0),
    );
    assert_eq!(r.status, 400, "odd labels_refs: {}", r.text());
    assert!(r.text().contains("odd"), "{}", r.text());
    assert!(read_metric(&ing.http, "rw_v2_never").is_empty());

    // Exemplars are accepted and dropped: 2xx, none counted as written.
    let symbols = ["", "__name__", "rw_v2_exemplar", "trace_id", "abc"];
    let with_exemplar = raw_request(
        &symbols,
        &[raw_series(
            &[1, 2],
            &[(ts, 5.0)],
            &raw_exemplar(&[3, 4], ts),
        )],
    );
    let r = post_v2(&ing.rw, &with_exemplar);
    assert!(
        r.is_2xx(),
        "series with an exemplar: {} {}",
        r.status,
        r.text()
    );
    assert_written("series with an exemplar", &r, 1);
    assert_same_bits(
        "series with an exemplar",
        &expect(&[(vec![("__name__", "rw_v2_exemplar")], vec![(ts, 5.0)])]),
        &read_metric(&ing.http, "rw_v2_exemplar"),
    );

    // A native histogram series next to a float series: 400 naming histograms, floats stored.
    let symbols = ["", "__name__", "rw_v2_float", "rw_v2_histogram"];
    let mixed = raw_request(
        &symbols,
        &[
            raw_series(&[1, 2], &[(ts, 1.0), (ts + 1000, 2.0)], &[]),
            raw_series(&[1, 3], &[], &raw_histogram(ts)),
        ],
    );
    let r = post_v2(&ing.rw, &mixed);
    assert_eq!(r.status, 400, "native histogram series: {}", r.text());
    assert!(
        r.text().contains("histogram"),
        "native histogram series: the answer does not say why: {}",
        r.text()
    );
    assert_written("native histogram series", &r, 2);
    assert_same_bits(
        "float series next to a histogram series",
        &expect(&[(
            vec![("__name__", "rw_v2_float")],
            vec![(ts, 1.0), (ts + 1000, 2.0)],
        )]),
        &read_metric(&ing.http, "rw_v2_float"),
    );
    assert!(read_metric(&ing.http, "rw_v2_histogram").is_empty());

    // 3. One valid series, one without __name__: 400, the valid one stored and counted.
    let partial = [
        (
            vec![("__name__", "rw_v2_partial"), ("job", "v2")],
            vec![(ts, 1.0), (ts + 1000, 2.0), (ts + 2000, 3.0)],
        ),
        (
            vec![("job", "v2"), ("instance", "nameless")],
            vec![(ts, 9.0), (ts + 1000, 9.5)],
        ),
    ];
    let r = post_v2(&ing.rw, &encode_v2(&partial));
    assert_eq!(r.status, 400, "v2 partial write: {}", r.text());
    assert_written("v2 partial write", &r, 3);
    assert!(
        r.text().contains("__name__"),
        "v2 partial write: the answer does not name the missing metric name: {}",
        r.text()
    );
    assert_same_bits(
        "v2 partial write: the valid series",
        &expect(&partial[..1]),
        &read_metric(&ing.http, "rw_v2_partial"),
    );
    let all = read_all(&ing.http, None, ts - 1000, ts + 10_000).unwrap();
    assert!(
        !all.keys()
            .any(|l| l.get("instance").map(String::as_str) == Some("nameless")),
        "the series without __name__ was stored"
    );

    // 4. Remote write 1.0: two valid series and one with a duplicate label name.
    let v1_body = encode_write_exact(&[
        (
            vec![("__name__", "rw_v1_partial"), ("i", "1")],
            vec![(ts, 1.0)],
        ),
        (
            vec![("__name__", "rw_v1_partial"), ("i", "dup"), ("i", "again")],
            vec![(ts, 2.0)],
        ),
        (
            vec![("i", "3"), ("__name__", "rw_v1_partial")],
            vec![(ts, 3.0), (ts + 1000, 4.0)],
        ),
    ]);
    let r = post_raw(&ing.rw, "/api/v1/receive", &WRITE_HEADERS, &v1_body);
    assert_eq!(r.status, 400, "v1 partial write: {}", r.text());
    assert!(
        r.text().contains("duplicate"),
        "v1 partial write: the answer does not name the duplicate label: {}",
        r.text()
    );
    assert_eq!(
        header_count(&r, "X-Prometheus-Remote-Write-Samples-Written"),
        Some(3),
        "v1 partial write: samples written"
    );
    assert_same_bits(
        "v1 partial write: the two valid series",
        &expect(&[
            (
                vec![("__name__", "rw_v1_partial"), ("i", "1")],
                vec![(ts, 1.0)],
            ),
            (
                vec![("__name__", "rw_v1_partial"), ("i", "3")],
                vec![(ts, 3.0), (ts + 1000, 4.0)],
            ),
        ]),
        &read_metric(&ing.http, "rw_v1_partial"),
    );
    eprintln!("remote write 2.0 test: {:?}", t0.elapsed());
}

/// The same protocol through a router (RF 1) in front of the ingestor: counts, partial writes and
/// bit-exact values survive the forwarding over gRPC.
#[test]
fn remote_write_v2_through_a_router() {
    let tmp = test_dir("rw-v2-router");
    let dir = tmp.path();
    let ing = Ingestor::start(&ringest_bin(), "ingest", dir, &[]);
    let router = Router::start(&ringest_bin(), "router", dir, &[&ing.grpc], 1, &[]);
    let ts = now_ms() - 30_000;

    let valid = [
        (
            vec![("job", "v2"), ("__name__", "rw_v2_routed"), ("i", "1")],
            vec![(ts, -0.0), (ts + 1000, f64::from_bits(STALE_NAN_BITS))],
        ),
        (
            vec![("__name__", "rw_v2_routed"), ("i", "2")],
            vec![(ts, f64::NEG_INFINITY), (ts + 1000, 1.0), (ts + 2000, 2.0)],
        ),
    ];
    let r = post_v2(&router.rw, &encode_v2(&valid));
    assert!(
        r.is_2xx(),
        "v2 through the router: {} {}",
        r.status,
        r.text()
    );
    assert_written("v2 through the router", &r, 5);
    assert_same_bits(
        "v2 through the router, read from the ingestor",
        &expect(&valid),
        &read_metric(&ing.http, "rw_v2_routed"),
    );
    assert_same_bits(
        "v2 through the router, read through the router",
        &expect(&valid),
        &read_metric(&router.http, "rw_v2_routed"),
    );

    let partial = [
        (
            vec![("__name__", "rw_v2_routed_partial")],
            vec![(ts, 1.0), (ts + 1000, 2.0)],
        ),
        (vec![("job", "nameless")], vec![(ts, 3.0)]),
    ];
    let r = post_v2(&router.rw, &encode_v2(&partial));
    assert_eq!(
        r.status,
        400,
        "v2 partial write through the router: {}",
        r.text()
    );
    assert_written("v2 partial write through the router", &r, 2);
    assert_same_bits(
        "v2 partial write through the router",
        &expect(&partial[..1]),
        &read_metric(&ing.http, "rw_v2_routed_partial"),
    );
    let bad_ref = raw_v2(&["", "__name__"], &[1, 5], ts, 1.0);
    let r = post_v2(&router.rw, &bad_ref);
    assert_eq!(
        r.status,
        400,
        "bad symbol reference through the router: {}",
        r.text()
    );
    assert!(r.text().contains("symbol"), "{}", r.text());
}
