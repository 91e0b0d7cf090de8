//! Hostile and unusual remote-write requests against a single `ringest ingest` (its own remote-write
//! listener) and against a router (RF 1) in front of it: every bad request gets the documented status
//! with a body that names the problem, and the server keeps accepting and serving valid writes.

use std::collections::BTreeMap;

use crate::support::ringest_bin;
use prost::Message;
use proto::prompb::WriteRequest;
use testkit::prelude::*;

const MAX_BODY: usize = 1024;
/// Series in [`oversized_body`].
const BIG_SERIES: usize = 200;
/// Not a snappy block.
/// Declares 32 decompressed bytes, then a literal running past the end of the input.
const CORRUPT_SNAPPY: &[u8] = b"\x20this is not snappy at all";
/// A snappy header declaring 4 GiB: a decompression bomb, refused before allocating.
const SNAPPY_BOMB: &[u8] = b"\xff\xff\xff\xff\x0fthis is not snappy at all";
/// Not a `WriteRequest`: field 1 claims 4 GiB.
const GARBAGE_PROTOBUF: &[u8] = b"\x0a\xff\xff\xff\xff\x0f\x01\x02\x03";

/// A valid, incompressible write request of more than twice [`MAX_BODY`] bytes once compressed.
fn oversized_body() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut noise = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        format!("{x:016x}{:016x}", x.rotate_left(32))
    };
    let values: Vec<String> = (0..BIG_SERIES).map(|_| noise()).collect();
    let big = WriteRequest {
        timeseries: values
            .iter()
            .map(|v| series(&[("__name__", "hostile_big"), ("v", v)], &[(now_ms(), 1.0)]))
            .collect(),
        ..Default::default()
    };
    encode_write(&big)
}

/// The hostile payloads are what they claim to be (runs without the binary).
#[test]
fn hostile_payloads_are_what_they_claim() {
    assert!(snap::raw::Decoder::new()
        .decompress_vec(CORRUPT_SNAPPY)
        .is_err());
    assert!(WriteRequest::decode(GARBAGE_PROTOBUF).is_err());
    let big = oversized_body();
    assert!(
        big.len() > 2 * MAX_BODY,
        "test body too small: {}",
        big.len()
    );
    let raw = snap::raw::Decoder::new().decompress_vec(&big).unwrap();
    let decoded = WriteRequest::decode(raw.as_slice()).unwrap();
    assert_eq!(decoded.timeseries.len(), BIG_SERIES);
}

fn assert_status(what: &str, r: &Response, status: u16, keywords: &[&str]) {
    let body = r.text();
    assert_eq!(
        r.status, status,
        "{what}: expected {status}, got {}: {body}",
        r.status
    );
    let lower = body.to_lowercase();
    assert!(
        keywords.iter().any(|k| lower.contains(&k.to_lowercase())),
        "{what}: response body does not name the problem (none of {keywords:?}): {body:?}"
    );
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Reads [ts, ts] from `read_addr` and asserts that `want` is there with exactly `value`.
fn assert_stored(what: &str, read_addr: &str, want: &Labels, ts: i64, value: f64) {
    let got = read_all(read_addr, None, ts, ts).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        got.get(want),
        Some(&vec![(ts, value.to_bits())]),
        "{what}: {want:?}@{ts} not read back from {read_addr}; got {} series: {:?}",
        got.len(),
        got.keys().take(10).collect::<Vec<_>>()
    );
}

struct Target<'a> {
    name: &'a str,
    rw: &'a str,
    read: &'a str,
}

impl Target<'_> {
    /// A valid write of a fresh series for `step` through `path`; asserts 2xx and that it reads back.
    fn valid_write(&self, step: &str, path: &str) {
        let ts = now_ms();
        let req = WriteRequest {
            timeseries: vec![series(
                &[
                    ("__name__", "hostile_ok"),
                    ("target", self.name),
                    ("step", step),
                ],
                &[(ts, 42.5)],
            )],
            ..Default::default()
        };
        let r = post_raw(self.rw, path, &WRITE_HEADERS, &encode_write(&req));
        assert!(
            r.is_2xx(),
            "{}: valid write after {step} answered {}: {}",
            self.name,
            r.status,
            r.text()
        );
        let want = labels(&[
            ("__name__", "hostile_ok"),
            ("target", self.name),
            ("step", step),
        ]);
        assert_stored(
            &format!("{}: valid write after {step}", self.name),
            self.read,
            &want,
            ts,
            42.5,
        );
    }

    fn run(&self) {
        let n = self.name;
        let valid_body = encode_write(&WriteRequest {
            timeseries: vec![series(&[("__name__", "hostile_never")], &[(now_ms(), 1.0)])],
            ..Default::default()
        });
        self.valid_write("start", "/api/v1/receive");
        self.valid_write("alias", "/api/v1/write");

        // 415: wrong Content-Type, checked before the (corrupt) body is looked at.
        let r = post_raw(
            self.rw,
            "/api/v1/receive",
            &[
                ("Content-Type", "application/json"),
                ("Content-Encoding", "snappy"),
            ],
            b"{\"not\": \"snappy\"",
        );
        assert_status(
            &format!("{n}: Content-Type json"),
            &r,
            415,
            &["content-type", "content type"],
        );
        self.valid_write("after-json", "/api/v1/receive");

        // 415: wrong Content-Encoding (with a valid snappy body).
        let r = post_raw(
            self.rw,
            "/api/v1/receive",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "gzip"),
            ],
            &valid_body,
        );
        assert_status(
            &format!("{n}: Content-Encoding gzip"),
            &r,
            415,
            &["encoding"],
        );
        self.valid_write("after-gzip", "/api/v1/receive");
        let stored = read_all(self.read, None, now_ms() - 60_000, now_ms()).unwrap();
        assert!(
            !stored.keys().any(|l| l["__name__"] == "hostile_never"),
            "{n}: a request answered 415 was stored"
        );

        // 400: corrupt snappy.
        let r = post_raw(self.rw, "/api/v1/receive", &WRITE_HEADERS, CORRUPT_SNAPPY);
        assert_status(
            &format!("{n}: corrupt snappy"),
            &r,
            400,
            &["snappy", "decompress"],
        );
        self.valid_write("after-snappy", "/api/v1/receive");

        // 413: a snappy header declaring more than the decompressed limit.
        let r = post_raw(self.rw, "/api/v1/receive", &WRITE_HEADERS, SNAPPY_BOMB);
        assert_status(&format!("{n}: snappy bomb"), &r, 413, &["exceeds", "limit"]);
        self.valid_write("after-bomb", "/api/v1/receive");

        // 400: valid snappy around garbage protobuf (field 1 claims 4 GiB).
        let body = snap::raw::Encoder::new()
            .compress_vec(GARBAGE_PROTOBUF)
            .unwrap();
        let r = post_raw(self.rw, "/api/v1/receive", &WRITE_HEADERS, &body);
        assert_status(
            &format!("{n}: garbage protobuf"),
            &r,
            400,
            &["proto", "decode", "unmarshal"],
        );
        self.valid_write("after-protobuf", "/api/v1/receive");

        // 413: a valid request whose (incompressible) body exceeds --remote-write.max-body-bytes.
        let big = oversized_body();
        let r = post_raw(self.rw, "/api/v1/receive", &WRITE_HEADERS, &big);
        assert_status(
            &format!("{n}: {} byte body over {MAX_BODY}", big.len()),
            &r,
            413,
            &["too large", "limit", "exceed", "size"],
        );
        let none = read_all(self.read, None, now_ms() - 60_000, now_ms()).unwrap();
        assert!(
            !none.keys().any(|l| l["__name__"] == "hostile_big"),
            "{n}: a rejected oversized request was stored"
        );
        self.valid_write("after-413", "/api/v1/receive");

        // Unsorted labels (as real senders send them) are accepted and stored sorted.
        let ts = now_ms();
        let req = WriteRequest {
            timeseries: vec![series(
                &[
                    ("zzz", "last"),
                    ("__name__", "hostile_unsorted"),
                    ("target", n),
                    ("aaa", "first"),
                ],
                &[(ts, -3.5)],
            )],
            ..Default::default()
        };
        let r = remote_write(self.rw, None, &req);
        assert!(
            r.is_2xx(),
            "{n}: unsorted labels answered {}: {}",
            r.status,
            r.text()
        );
        let want = labels(&[
            ("__name__", "hostile_unsorted"),
            ("aaa", "first"),
            ("target", n),
            ("zzz", "last"),
        ]);
        assert_stored(&format!("{n}: unsorted labels"), self.read, &want, ts, -3.5);
        let got = remote_read(self.read, None, vec![query_all(ts, ts)]).unwrap();
        for s in &got.results[0].timeseries {
            let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "{n}: remote read returned unsorted labels");
        }

        // Partial write: a series without __name__ next to a valid one -> 400, the valid one stored.
        let ts = now_ms();
        let req = WriteRequest {
            timeseries: vec![
                series(
                    &[("__name__", "hostile_partial_ok"), ("target", n)],
                    &[(ts, 7.0)],
                ),
                series(&[("job", "no-name"), ("target", n)], &[(ts, 8.0)]),
            ],
            ..Default::default()
        };
        let r = remote_write(self.rw, None, &req);
        assert_status(
            &format!("{n}: series without __name__"),
            &r,
            400,
            &["__name__", "metric name"],
        );
        let want = labels(&[("__name__", "hostile_partial_ok"), ("target", n)]);
        assert_stored(
            &format!("{n}: valid half of a partial write"),
            self.read,
            &want,
            ts,
            7.0,
        );
        let all: BTreeMap<Labels, Samples> = read_all(self.read, None, ts, ts).unwrap();
        assert!(
            !all.keys()
                .any(|l| l.get("job").map(String::as_str) == Some("no-name")),
            "{n}: the series without __name__ was stored"
        );
        self.valid_write("end", "/api/v1/receive");
    }
}

#[test]
fn hostile_requests_get_precise_errors_and_do_not_disturb_valid_writes() {
    let tmp = test_dir(module_path!());
    let dir = tmp.path();
    let limit = format!("--remote-write.max-body-bytes={MAX_BODY}");
    let mut ingestor = Ingestor::start(&ringest_bin(), "ingest", dir, &[&limit]);
    let mut router = Router::start(
        &ringest_bin(),
        "router",
        dir,
        &[&ingestor.grpc],
        1,
        &[&limit],
    );

    Target {
        name: "ingest",
        rw: &ingestor.rw,
        read: &ingestor.http,
    }
    .run();
    Target {
        name: "router",
        rw: &router.rw,
        read: &router.http,
    }
    .run();
    // What went through the router is on the ingestor too.
    let ts_window = (now_ms() - 120_000, now_ms());
    let via_router = read_all(&router.http, None, ts_window.0, ts_window.1).unwrap();
    let on_ingestor = read_all(&ingestor.http, None, ts_window.0, ts_window.1).unwrap();
    for (l, s) in &via_router {
        assert_eq!(
            on_ingestor.get(l),
            Some(s),
            "{l:?}: router and ingestor disagree"
        );
    }
    ingestor.proc.assert_running();
    router.proc.assert_running();
}

/// Through a router (RF 3) a request refused in part answers 409 naming only the series that
/// missed quorum, and `X-Prometheus-Remote-Write-Samples-Written` counts what a write quorum
/// stored: ingestors list the series they refused, so the others of their batch still count.
#[test]
fn partial_conflicts_through_an_rf3_router_count_what_a_quorum_stored() {
    let tmp = test_dir("hostile-rf3-conflict");
    let dir = tmp.path();
    let (ings, router) = start_cluster(&ringest_bin(), dir, 3, 3, &[]);
    let t0 = now_ms() - 10_000;
    let written = |r: &Response| {
        r.header("X-Prometheus-Remote-Write-Samples-Written")
            .map(|v| v.parse::<u64>().unwrap())
    };
    let req = |s: Vec<proto::prompb::TimeSeries>| WriteRequest {
        timeseries: s,
        ..Default::default()
    };

    let r = remote_write(
        &router.rw,
        None,
        &req(vec![
            series(&[("__name__", "a")], &[(t0, 1.0)]),
            series(&[("__name__", "b")], &[(t0, 1.0)]),
            series(&[("__name__", "c")], &[(t0, 1.0)]),
        ]),
    );
    assert_eq!((r.status, written(&r)), (204, Some(3)), "{}", r.text());

    // Every replica refuses the same samples: a loses 1 of 2, c its only one, b is clean.
    let r = remote_write(
        &router.rw,
        None,
        &req(vec![
            series(&[("__name__", "a")], &[(t0 - 1000, 5.0), (t0 + 1000, 2.0)]),
            series(&[("__name__", "b")], &[(t0 + 1000, 2.0), (t0 + 2000, 3.0)]),
            series(&[("__name__", "c")], &[(t0, 9.0)]),
        ]),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(written(&r), Some(3), "a: 1, b: 2, c: 0; {}", r.text());
    assert!(r.text().contains("2 of 3 series"), "{}", r.text());

    // Replicas disagree: d already holds a different value at t1 on two ingestors, so they keep
    // only its second sample; the third keeps both. d misses quorum, e (sent to the same peers
    // in the same batches) does not.
    let t1 = t0 + 5000;
    for ing in &ings[..2] {
        let r = remote_write(
            &ing.rw,
            None,
            &req(vec![series(&[("__name__", "d")], &[(t1, 5.0)])]),
        );
        assert!(r.is_2xx(), "{}", r.text());
    }
    let r = remote_write(
        &router.rw,
        None,
        &req(vec![
            series(&[("__name__", "d")], &[(t1, 7.0), (t1 + 1000, 8.0)]),
            series(&[("__name__", "e")], &[(t1, 1.0)]),
        ]),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("1 of 2 series"), "{}", r.text());
    // d: kept 1, 1 and 2 samples, so a quorum (2) holds 1; e: 1.
    assert_eq!(written(&r), Some(2), "{}", r.text());
    let got = read_all(&router.http, None, t0 - 5000, t1 + 5000).unwrap();
    let e: Labels = [("__name__".to_string(), "e".to_string())].into();
    assert_eq!(got.get(&e), Some(&vec![(t1, 1f64.to_bits())]), "e stored");
}
