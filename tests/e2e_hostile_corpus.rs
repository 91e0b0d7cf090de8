//! A corpus of hostile remote-write requests driven against a real `ringest all-in-one`, then against
//! a router (RF 1) in front of a `ringest ingest`, plus malformed `thanos.WriteableStore/RemoteWrite`
//! bodies on the gRPC ports and oversized bodies against an all-in-one started with small limits.
//!
//! Every case is one row of a table: a request, the status it must get (HTTP or gRPC) and words
//! its message must contain. Between cases a valid write must be answered 2xx. Each case's payload
//! uses its own metric name, which is read back after the case: a refused request must have stored
//! nothing, a partial or conflicting one exactly its valid samples, an accepted edge case (NaN,
//! stale marker, odd label names, 100 KB values) its samples bit for bit. Before the corpus a set
//! of valid series is written; at the end everything acknowledged is read back and must be
//! unchanged bit for bit, `/-/ready` must be 200, the processes alive, and the data directories
//! must hold no directory a path-trick tenant could have made.
//!
//! Expected answers follow README.md "Status codes" (400 malformed or invalid, 409 conflicts,
//! 413 too large, 415 unsupported media) and the remote-write 2.0 specification (label names and
//! values are any UTF-8; unsorted labels, NaN, the stale marker and unknown metadata types are
//! accepted). Cases listed in [`KNOWN_PRODUCT_BUGS`] fail because the product answers wrongly;
//! they are reported loudly but do not fail the run unless `RINGEST_HOSTILE_STRICT` is set, and
//! the run fails as soon as one of them passes (so the list is kept honest).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ringest::grpc::PeerClient;
use tonic::Code;

/// Product bugs this corpus found: (case name, words of the problem the check reports; empty for
/// every problem of the case). Each case expects the right answer and fails on it; a listed
/// problem is reported as KNOWN instead of failing the run, any other problem of the case still
/// fails it. Remove an entry once the product is fixed (the run fails while a listed one passes).
const KNOWN_PRODUCT_BUGS: &[(&str, &str)] = &[
    // None open. Fixed: through a router, a 409 whose request was partly stored said
    // X-Prometheus-Remote-Write-Samples-Written: 0 (peers now list the series they refused).
];

/// A label as (name, value).
type Pair<'a> = (&'a str, &'a str);

const V2_CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
const DEFAULT_TENANT: &str = "default-tenant";
/// `--remote-write.max-body-bytes` of the small-limit all-in-one.
const SMALL_BODY: usize = 4096;
/// `--remote-write.max-decompressed-bytes` of the small-limit all-in-one.
const SMALL_DECOMPRESSED: usize = 32768;
/// Every answer must come within this (a hang is a failure).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const STALE: u64 = STALE_NAN_BITS;
/// An error message names the problem in a few lines, whatever the request (100 KB values, 10^5
/// bad series).
const MAX_MESSAGE_BYTES: usize = 2048;

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/// How a case's request is sent.
enum Send {
    /// An HTTP request to `/api/v1/receive` of the remote-write listener.
    Http {
        method: &'static str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Bytes written as they are on a fresh connection to the remote-write listener.
    Raw(Vec<u8>),
    /// A `thanos.WriteableStore/RemoteWrite` body to the gRPC listener.
    Grpc(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Http(u16),
    Grpc(Code),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// The all-in-one with default limits, or the router in front of an ingestor.
    Main,
    /// The all-in-one with `--remote-write.max-body-bytes={SMALL_BODY}`.
    Small,
}

struct Case {
    group: &'static str,
    name: String,
    server: Server,
    send: Send,
    want: Want,
    /// Words the answer's message must contain (case-insensitive).
    msg: Vec<String>,
    /// Expected `X-Prometheus-Remote-Write-Samples-Written`, when checked.
    written: Option<u64>,
    /// The metric name of this case's payload: read back after the case in `tenants`.
    metric: Option<String>,
    /// Tenants to read `metric` from (always includes the default tenant).
    tenants: Vec<String>,
    /// What must be stored under `metric` afterwards, per tenant.
    stores: Vec<(String, Labels, Samples)>,
    /// Counts toward the malformed corpus (false for valid edge cases that must be accepted).
    malformed: bool,
}

impl Case {
    fn new(group: &'static str, name: &str, send: Send, want: Want, msg: &[&str]) -> Case {
        Case {
            group,
            name: format!("{group}/{name}"),
            server: Server::Main,
            send,
            want,
            msg: msg.iter().map(|s| s.to_lowercase()).collect(),
            written: None,
            metric: None,
            tenants: vec![DEFAULT_TENANT.to_string()],
            stores: Vec::new(),
            malformed: true,
        }
    }

    /// A 2xx case: a valid edge the product must accept.
    fn accepted(group: &'static str, name: &str, send: Send) -> Case {
        let mut c = Case::new(group, name, send, Want::Http(204), &[]);
        c.malformed = false;
        c
    }

    fn metric(mut self, m: &str) -> Self {
        self.metric = Some(m.to_string());
        self
    }

    fn tenant(mut self, t: &str) -> Self {
        self.tenants.push(t.to_string());
        self
    }

    fn written(mut self, n: u64) -> Self {
        self.written = Some(n);
        self
    }

    fn small(mut self) -> Self {
        self.server = Server::Small;
        self
    }

    /// `labels` (any order) must be stored in `tenant` with exactly `samples` (value bits).
    fn stores(mut self, tenant: &str, labels: &[(&str, &str)], samples: &[(i64, u64)]) -> Self {
        self.stores
            .push((tenant.to_string(), label_map(labels), samples.to_vec()));
        self
    }
}

fn header_pairs(h: &[(&str, &str)]) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// POST with the given headers and body (taken as is).
fn post(headers: &[(&str, &str)], body: Vec<u8>) -> Send {
    Send::Http {
        method: "POST",
        headers: header_pairs(headers),
        body,
    }
}

/// A remote-write 1.0 POST of `raw` protobuf, snappy-compressed.
fn v1(raw: &[u8]) -> Send {
    post(&WRITE_HEADERS, snappy(raw))
}

/// A remote-write 1.0 POST of a body taken as is (already compressed, or not snappy at all).
fn v1_body(body: Vec<u8>) -> Send {
    post(&WRITE_HEADERS, body)
}

/// A remote-write 1.0 POST of `raw` for tenant `tenant`.
fn v1_tenant(tenant: &str, raw: &[u8]) -> Send {
    let mut h = WRITE_HEADERS.to_vec();
    h.push(("THANOS-TENANT", tenant));
    post(&h, snappy(raw))
}

const V2_HEADERS: [(&str, &str); 3] = [
    ("Content-Type", V2_CONTENT_TYPE),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "2.0.0"),
];

/// A remote-write 2.0 POST of `raw`, snappy-compressed.
fn v2(raw: &[u8]) -> Send {
    post(&V2_HEADERS, snappy(raw))
}

/// One 1.0 request of one series of string labels.
fn one_series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Vec<u8> {
    let l: Vec<(&[u8], &[u8])> = labels
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    pb_write_request(&[pb_series(&l, samples)])
}

fn bits(samples: &[(i64, f64)]) -> Samples {
    samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

/// A 2.0 `TimeSeries` body: packed `refs`, samples, then `extra` raw fields.
fn v2_series(refs: &[u64], samples: &[(i64, f64)], extra: &[u8]) -> Vec<u8> {
    let mut packed = Vec::new();
    for &r in refs {
        pb_varint(&mut packed, r);
    }
    let mut out = Vec::new();
    pb_len(&mut out, 1, &packed);
    for &(ts, v) in samples {
        pb_len(&mut out, 2, &pb_sample(ts, v));
    }
    out.extend_from_slice(extra);
    out
}

/// A 2.0 request: symbols (field 4), then series (field 5).
fn v2_request(symbols: &[&[u8]], series: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in symbols {
        pb_len(&mut out, 4, s);
    }
    for s in series {
        pb_len(&mut out, 5, s);
    }
    out
}

/// A classic `thanos.WriteRequest`: series (field 1), then the tenant (field 2) as raw bytes.
fn thanos_write(series: &[Vec<u8>], tenant: &[u8]) -> Vec<u8> {
    let mut out = pb_write_request(series);
    if !tenant.is_empty() {
        pb_len(&mut out, 2, tenant);
    }
    out
}

/// A complete raw HTTP/1.1 POST to `/api/v1/receive`: `head_lines` (each without CRLF), then the
/// body as is.
fn raw_post(head_lines: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out =
        b"POST /api/v1/receive HTTP/1.1\r\nHost: ringest\r\nConnection: close\r\n".to_vec();
    for l in head_lines {
        out.extend_from_slice(l.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Deterministic incompressible bytes.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = SplitMix64(seed);
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

/// A valid 1.0 request (two series) for truncation.
fn truncation_victim(m: &str, base: i64) -> Vec<u8> {
    pb_write_request(&[
        pb_series(
            &[
                (b"__name__", m.as_bytes()),
                (b"job", b"truncated-protobuf-victim"),
            ],
            &[(base, 1.0), (base + 1000, 2.0)],
        ),
        pb_series(
            &[(b"__name__", m.as_bytes()), (b"job", b"second")],
            &[(base, 3.0)],
        ),
    ])
}

/// The malformed requests and the valid edges, in the order they are sent. `base` is a recent
/// timestamp (ms) in the appendable window of every head.
fn corpus(base: i64) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut n = 0;
    let mut next_metric = || {
        n += 1;
        format!("hostile_case_{n:03}")
    };
    let d = DEFAULT_TENANT;
    let valid_body = |m: &str| one_series(&[("__name__", m)], &[(base, 1.0)]);

    // --- Snappy: not snappy, cut short, the framed format, lying headers. -------------------
    let m = next_metric();
    let good = snappy(&valid_body(&m));
    cases.push(
        Case::new(
            "snappy",
            "garbage",
            v1_body(b"\xf0\x9fthis is not snappy, it is a sentence".to_vec()),
            Want::Http(400),
            &["snappy"],
        )
        .written(0),
    );
    cases.push(
        Case::new(
            "snappy",
            "truncated-half",
            v1_body(good[..good.len() / 2].to_vec()),
            Want::Http(400),
            &["snappy"],
        )
        .metric(&m),
    );
    cases.push(
        Case::new(
            "snappy",
            "truncated-last-byte",
            v1_body(good[..good.len() - 1].to_vec()),
            Want::Http(400),
            &["snappy"],
        )
        .metric(&m),
    );
    let mut framed = snap::write::FrameEncoder::new(Vec::new());
    framed.write_all(&valid_body(&m)).unwrap();
    cases.push(
        Case::new(
            "snappy",
            "framed-format",
            v1_body(framed.into_inner().unwrap()),
            Want::Http(400),
            &["snappy"],
        )
        .metric(&m),
    );
    cases.push(
        Case::new(
            "snappy",
            "uncompressed-protobuf",
            v1_body(valid_body(&m)),
            Want::Http(400),
            &["snappy"],
        )
        .metric(&m),
    );
    cases.push(Case::new(
        "snappy",
        "header-only",
        v1_body(vec![100]),
        Want::Http(400),
        &["snappy"],
    ));
    // Declares 4 bytes, then a literal of 20.
    let mut understated = vec![4u8, 19 << 2];
    understated.extend_from_slice(&[b'x'; 20]);
    cases.push(Case::new(
        "snappy",
        "header-understates-length",
        v1_body(understated),
        Want::Http(400),
        &["snappy"],
    ));
    // A copy reaching 866 bytes back at the start of the output.
    cases.push(Case::new(
        "snappy",
        "copy-before-start",
        v1_body(b"\x05\x0a\x62\x03".to_vec()),
        Want::Http(400),
        &["snappy"],
    ));
    cases.push(Case::new(
        "snappy",
        "empty-body",
        v1_body(Vec::new()),
        Want::Http(400),
        &["snappy"],
    ));

    // --- Decompression bombs: refused from the header, before allocating. -----------------------
    cases.push(Case::new(
        "bomb",
        "claims-limit-plus-one",
        v1_body(b"\x81\x80\x80\x20tiny".to_vec()),
        Want::Http(413),
        &["67108865", "exceeds the limit of 67108864"],
    ));
    cases.push(Case::new(
        "bomb",
        "claims-4GiB",
        v1_body(b"\x80\x80\x80\x80\x10tiny".to_vec()),
        Want::Http(413),
        &["4294967296", "exceeds"],
    ));
    cases.push(Case::new(
        "bomb",
        "claims-8GiB-v2",
        post(&V2_HEADERS, b"\xff\xff\xff\xff\x1ftiny".to_vec()),
        Want::Http(413),
        &["8589934591", "exceeds"],
    ));
    cases.push(Case::new(
        "bomb",
        "100MB-of-zeros",
        v1_body(snappy(&vec![0u8; 100 << 20])),
        Want::Http(413),
        &["104857600", "exceeds the limit of 67108864"],
    ));

    // --- Protobuf: truncated, garbage, wrong wire types, varints, lengths. ----------------------
    let m = next_metric();
    let victim = truncation_victim(&m, base);
    // Offsets: after the first key, inside the first length, in a label string, in a sample's
    // value, one byte short.
    let in_label = victim.windows(4).position(|w| w == b"trun").unwrap() + 3;
    let in_value = victim.iter().position(|&b| b == 0x09).unwrap() + 4;
    for (what, at) in [
        ("after-first-key", 1),
        ("in-first-length", 2),
        ("in-label-string", in_label),
        ("in-sample-value", in_value),
        ("last-byte-missing", victim.len() - 1),
    ] {
        cases.push(
            Case::new(
                "protobuf",
                &format!("truncated-{what}"),
                v1(&victim[..at]),
                Want::Http(400),
                &["malformed protobuf"],
            )
            .metric(&m)
            .written(0),
        );
    }
    cases.push(Case::new(
        "protobuf",
        "garbage-noise",
        v1(&noise(7, 512)),
        Want::Http(400),
        &["protobuf"],
    ));
    cases.push(Case::new(
        "protobuf",
        "wire-type-7",
        v1(b"\x0f\x01\x02\x03"),
        Want::Http(400),
        &["malformed protobuf", "wire type"],
    ));
    cases.push(Case::new(
        "protobuf",
        "field-number-0",
        v1(b"\x02\x00"),
        Want::Http(400),
        &["malformed protobuf", "field number"],
    ));
    cases.push(Case::new(
        "protobuf",
        "group-wire-type",
        v1(b"\x0b\x0c"),
        Want::Http(400),
        &["malformed protobuf", "group"],
    ));
    let m = next_metric();
    cases.push(
        Case::new(
            "protobuf",
            "timeseries-as-varint",
            v1(b"\x08\x01"),
            Want::Http(400),
            &["WriteRequest field 1 has wire type 0"],
        )
        .metric(&m),
    );
    // TimeSeries field 1 (labels) as fixed64.
    let mut ts = Vec::new();
    pb_key(&mut ts, 1, PB_FIXED64);
    ts.extend_from_slice(&[0; 8]);
    cases.push(Case::new(
        "protobuf",
        "labels-as-fixed64",
        v1(&pb_write_request(&[ts])),
        Want::Http(400),
        &["TimeSeries field 1 has wire type 1"],
    ));
    // Sample.value as a varint.
    let mut bad_sample = Vec::new();
    pb_key(&mut bad_sample, 1, PB_VARINT);
    pb_varint(&mut bad_sample, 42);
    let mut ts = pb_series(&[(b"__name__", m.as_bytes())], &[]);
    pb_len(&mut ts, 2, &bad_sample);
    cases.push(
        Case::new(
            "protobuf",
            "sample-value-as-varint",
            v1(&pb_write_request(&[ts])),
            Want::Http(400),
            &["Sample field 1 has wire type 0"],
        )
        .metric(&m),
    );
    // Sample.timestamp as fixed64.
    let mut bad_sample = Vec::new();
    pb_key(&mut bad_sample, 2, PB_FIXED64);
    bad_sample.extend_from_slice(&base.to_le_bytes());
    let mut ts = pb_series(&[(b"__name__", m.as_bytes())], &[]);
    pb_len(&mut ts, 2, &bad_sample);
    cases.push(
        Case::new(
            "protobuf",
            "sample-timestamp-as-fixed64",
            v1(&pb_write_request(&[ts])),
            Want::Http(400),
            &["Sample field 2 has wire type 1"],
        )
        .metric(&m),
    );
    // Label.name as fixed32.
    let mut bad_label = Vec::new();
    pb_key(&mut bad_label, 1, PB_FIXED32);
    bad_label.extend_from_slice(&[1, 2, 3, 4]);
    let mut ts = Vec::new();
    pb_len(&mut ts, 1, &bad_label);
    pb_len(&mut ts, 2, &pb_sample(base, 1.0));
    cases.push(Case::new(
        "protobuf",
        "label-name-as-fixed32",
        v1(&pb_write_request(&[ts])),
        Want::Http(400),
        &["Label field 1 has wire type 5"],
    ));
    // A timestamp varint whose 10th byte overflows 64 bits.
    let mut bad_sample = Vec::new();
    pb_key(&mut bad_sample, 1, PB_FIXED64);
    bad_sample.extend_from_slice(&1f64.to_bits().to_le_bytes());
    pb_key(&mut bad_sample, 2, PB_VARINT);
    bad_sample.extend_from_slice(&[0xff; 9]);
    bad_sample.push(0x02);
    let mut ts = pb_series(&[(b"__name__", m.as_bytes())], &[]);
    pb_len(&mut ts, 2, &bad_sample);
    cases.push(
        Case::new(
            "protobuf",
            "varint-overflows-64-bits",
            v1(&pb_write_request(&[ts])),
            Want::Http(400),
            &["varint overflows 64 bits"],
        )
        .metric(&m),
    );
    // An 11-byte varint length.
    let mut eleven = vec![0x0a];
    eleven.extend_from_slice(&[0x80; 10]);
    eleven.push(0x00);
    cases.push(Case::new(
        "protobuf",
        "varint-11-bytes",
        v1(&eleven),
        Want::Http(400),
        &["malformed protobuf", "varint"],
    ));
    cases.push(Case::new(
        "protobuf",
        "varint-cut-short",
        v1(b"\x0a\x80\x80"),
        Want::Http(400),
        &["truncated varint"],
    ));
    let mut past_end = vec![0x0a];
    pb_varint(&mut past_end, 1000);
    past_end.extend_from_slice(b"\x0a\x03\x0a\x01a");
    cases.push(Case::new(
        "protobuf",
        "length-past-end",
        v1(&past_end),
        Want::Http(400),
        &["exceeds its message"],
    ));
    let mut huge_len = vec![0x0a];
    pb_varint(&mut huge_len, u64::MAX);
    cases.push(Case::new(
        "protobuf",
        "length-u64-max",
        v1(&huge_len),
        Want::Http(400),
        &["malformed protobuf"],
    ));
    // A label whose length runs past its TimeSeries but not past the request (a second series
    // follows): the bound is the enclosing message, not the buffer.
    let mut inner = Vec::new();
    pb_key(&mut inner, 1, PB_LEN);
    pb_varint(&mut inner, 40);
    inner.extend_from_slice(b"\x0a\x08__name__");
    let mut nested = Vec::new();
    pb_len(&mut nested, 1, &inner);
    let follower = pb_series(
        &[(b"__name__", m.as_bytes()), (b"i", b"follower")],
        &[(base, 1.0)],
    );
    pb_len(&mut nested, 1, &follower);
    cases.push(
        Case::new(
            "protobuf",
            "nested-length-past-parent",
            v1(&nested),
            Want::Http(400),
            &["exceeds its message"],
        )
        .metric(&m),
    );
    let mut short_fixed = Vec::new();
    pb_key(&mut short_fixed, 1, PB_FIXED64);
    short_fixed.extend_from_slice(&[0, 0, 0, 0]);
    let mut ts = pb_series(&[(b"__name__", m.as_bytes())], &[]);
    pb_len(&mut ts, 2, &short_fixed);
    cases.push(
        Case::new(
            "protobuf",
            "fixed64-cut-short",
            v1(&pb_write_request(&[ts])),
            Want::Http(400),
            &["truncated fixed64"],
        )
        .metric(&m),
    );

    // --- Labels: each invalid series is sent next to a valid sibling (a partial write). ---------
    let label_cases: &[(&str, &[Pair<'_>], &str)] = &[
        (
            "duplicate-name",
            &[("__name__", "M"), ("job", "a"), ("job", "a")],
            "duplicate label name \"job\"",
        ),
        (
            "duplicate-__name__",
            &[("__name__", "M"), ("__name__", "other")],
            "duplicate label name \"__name__\"",
        ),
        (
            "empty-label-name",
            &[("__name__", "M"), ("", "v")],
            "empty label name",
        ),
        (
            "empty-__name__",
            &[("__name__", ""), ("job", "M")],
            "empty metric name",
        ),
        (
            "missing-__name__",
            &[("job", "M"), ("instance", "x")],
            "missing metric name",
        ),
        ("no-labels", &[], "no labels"),
        (
            "empty-label-value",
            &[("__name__", "M"), ("job", "")],
            "empty value for label \"job\"",
        ),
    ];
    for (what, labels, msg) in label_cases {
        let m = next_metric();
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|&(k, v)| (k, if v == "M" { m.as_str() } else { v }))
            .collect();
        let bad: Vec<(&[u8], &[u8])> = labels
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        let sibling = [("__name__", m.as_str()), ("sibling", "valid")];
        let raw = pb_write_request(&[
            pb_series(&bad, &[(base, 5.0)]),
            pb_series(
                &[(b"__name__", m.as_bytes()), (b"sibling", b"valid")],
                &[(base, 6.0), (base + 1000, 7.0)],
            ),
        ]);
        cases.push(
            Case::new(
                "labels",
                what,
                v1(&raw),
                Want::Http(400),
                &["partial write", msg],
            )
            .metric(&m)
            .written(2)
            .stores(d, &sibling, &bits(&[(base, 6.0), (base + 1000, 7.0)])),
        );
    }
    // 100 000 series without labels next to a valid one: one short message.
    let m = next_metric();
    let mut many = [0x0a, 0x00].repeat(100_000);
    many.extend(pb_write_request(&[pb_series(
        &[(b"__name__", m.as_bytes())],
        &[(base, 1.0)],
    )]));
    cases.push(
        Case::new(
            "labels",
            "100k-series-without-labels",
            v1(&many),
            Want::Http(400),
            &["100000 series rejected", "and 99997 more"],
        )
        .metric(&m)
        .written(1)
        .stores(d, &[("__name__", &m)], &bits(&[(base, 1.0)])),
    );
    // An invalid series with 100 KB values: the message shows them cut.
    let m = next_metric();
    let huge = "h".repeat(100 * 1024);
    cases.push(
        Case::new(
            "labels",
            "100KB-values-in-invalid-series",
            v1(&one_series(
                &[("__name__", &m), ("big", &huge), ("big", &huge)],
                &[(base, 1.0)],
            )),
            Want::Http(400),
            &["duplicate label name \"big\"", "hhh..."],
        )
        .metric(&m)
        .written(0),
    );
    // A 1.0 series carrying a native histogram (TimeSeries field 4) next to a valid one.
    let m = next_metric();
    let mut with_histogram =
        pb_series(&[(b"__name__", m.as_bytes()), (b"kind", b"histogram")], &[]);
    pb_len(&mut with_histogram, 4, b"");
    cases.push(
        Case::new(
            "labels",
            "v1-histogram-series",
            v1(&pb_write_request(&[
                with_histogram,
                pb_series(
                    &[(b"__name__", m.as_bytes()), (b"kind", b"float")],
                    &[(base, 2.0)],
                ),
            ])),
            Want::Http(400),
            &["partial write", "native histograms are not supported"],
        )
        .metric(&m)
        .written(1)
        .stores(
            d,
            &[("__name__", &m), ("kind", "float")],
            &bits(&[(base, 2.0)]),
        ),
    );
    // A 1.0 exemplar (TimeSeries field 3) whose label value is not UTF-8: the whole request.
    let m = next_metric();
    let mut exemplar = Vec::new();
    pb_len(&mut exemplar, 1, &pb_label(b"trace_id", b"\xff\xfe"));
    let mut with_exemplar = pb_series(&[(b"__name__", m.as_bytes())], &[(base, 1.0)]);
    pb_len(&mut with_exemplar, 3, &exemplar);
    cases.push(
        Case::new(
            "utf8",
            "v1-exemplar-label-value",
            v1(&pb_write_request(&[with_exemplar])),
            Want::Http(400),
            &["invalid UTF-8 in Label.value"],
        )
        .metric(&m)
        .written(0),
    );
    // Valid edges of 1.0: the same series twice in one request (in time order), and a series
    // without samples (nothing to store, nothing wrong).
    let m = next_metric();
    cases.push(
        Case::accepted(
            "values",
            "same-series-twice-accepted",
            v1(&pb_write_request(&[
                pb_series(&[(b"__name__", m.as_bytes())], &[(base, 1.0)]),
                pb_series(&[(b"__name__", m.as_bytes())], &[(base + 1000, 2.0)]),
            ])),
        )
        .metric(&m)
        .written(2)
        .stores(
            d,
            &[("__name__", &m)],
            &bits(&[(base, 1.0), (base + 1000, 2.0)]),
        ),
    );
    let m = next_metric();
    cases.push(
        Case::accepted(
            "values",
            "v1-series-without-samples-accepted",
            v1(&pb_write_request(&[pb_series(
                &[(b"__name__", m.as_bytes())],
                &[],
            )])),
        )
        .metric(&m)
        .written(0),
    );
    // A 2.0 partial write: duplicate label names through symbol refs.
    let m = next_metric();
    let raw = v2_request(
        &[b"", b"__name__", m.as_bytes(), b"job", b"a", b"b"],
        &[
            v2_series(&[1, 2, 3, 4, 3, 5], &[(base, 1.0)], &[]),
            v2_series(&[1, 2, 3, 5], &[(base, 2.0)], &[]),
        ],
    );
    cases.push(
        Case::new(
            "labels",
            "v2-duplicate-name",
            v2(&raw),
            Want::Http(400),
            &["partial write", "duplicate label name \"job\""],
        )
        .metric(&m)
        .written(1)
        .stores(d, &[("__name__", &m), ("job", "b")], &bits(&[(base, 2.0)])),
    );
    // Invalid UTF-8: the whole request is refused, the valid sibling included.
    let utf8_cases: &[(&str, &[u8], &[u8], &str)] = &[
        (
            "invalid-utf8-name",
            b"jo\xffb",
            b"x",
            "invalid UTF-8 in Label.name",
        ),
        (
            "invalid-utf8-value",
            b"job",
            b"\xc3\x28",
            "invalid UTF-8 in Label.value",
        ),
        (
            "overlong-utf8-value",
            b"job",
            b"\xc0\x80",
            "invalid UTF-8 in Label.value",
        ),
        (
            "surrogate-utf8-value",
            b"job",
            b"\xed\xa0\x80",
            "invalid UTF-8 in Label.value",
        ),
    ];
    for (what, name, value, msg) in utf8_cases {
        let m = next_metric();
        let raw = pb_write_request(&[
            pb_series(
                &[(b"__name__", m.as_bytes()), (b"sibling", b"valid")],
                &[(base, 1.0)],
            ),
            pb_series(
                &[(b"__name__", m.as_bytes()), (name, value)],
                &[(base, 2.0)],
            ),
        ]);
        cases.push(
            Case::new("utf8", what, v1(&raw), Want::Http(400), &[msg])
                .metric(&m)
                .written(0),
        );
    }
    let m = next_metric();
    cases.push(
        Case::new(
            "utf8",
            "v2-invalid-symbol",
            v2(&v2_request(
                &[b"", b"__name__", m.as_bytes(), b"job", b"\xfe\xfe"],
                &[v2_series(&[1, 2, 3, 4], &[(base, 1.0)], &[])],
            )),
            Want::Http(400),
            &["invalid UTF-8 in Request.symbols"],
        )
        .metric(&m)
        .written(0),
    );

    // --- Valid label edges: accepted, stored exactly (names and values are any UTF-8). ----------
    let m = next_metric();
    let odd_names = [
        ("__name__", m.as_str()),
        ("a b.c", "space and dot"),
        ("0digit", "leading digit"),
        ("dash-name", "dash"),
        ("ünï", "unicode"),
        ("quote\"back\\slash", "nl\nnul\0tab\t"),
    ];
    cases.push(
        Case::accepted(
            "labels",
            "odd-characters-accepted",
            v1(&one_series(&odd_names, &[(base, 1.5)])),
        )
        .metric(&m)
        .written(1)
        .stores(d, &odd_names, &bits(&[(base, 1.5)])),
    );
    let m = next_metric();
    let big_value: String = noise(11, 50 * 1024)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let big_name = format!("n{}", &big_value[..100 * 1024 - 1]);
    let big = [("__name__", m.as_str()), ("big", big_value.as_str())];
    let big_named = [("__name__", m.as_str()), (big_name.as_str(), "v")];
    cases.push(
        Case::accepted(
            "labels",
            "100KB-value-and-name-accepted",
            v1(&pb_write_request(&[
                pb_series(
                    &big.map(|(k, v)| (k.as_bytes(), v.as_bytes())),
                    &[(base, 2.0)],
                ),
                pb_series(
                    &big_named.map(|(k, v)| (k.as_bytes(), v.as_bytes())),
                    &[(base, 3.0)],
                ),
            ])),
        )
        .metric(&m)
        .written(2)
        .stores(d, &big, &bits(&[(base, 2.0)]))
        .stores(d, &big_named, &bits(&[(base, 3.0)])),
    );
    let m = next_metric();
    let unsorted = [
        ("zone", "z"),
        ("job", "j"),
        ("__name__", m.as_str()),
        ("a", "1"),
    ];
    cases.push(
        Case::accepted(
            "labels",
            "unsorted-accepted",
            v1(&one_series(&unsorted, &[(base, 4.0)])),
        )
        .metric(&m)
        .stores(d, &unsorted, &bits(&[(base, 4.0)])),
    );

    // --- Values and timestamps. -----------------------------------------------------------------
    let m = next_metric();
    let special: Vec<(i64, f64)> = [
        STALE,
        GO_NAN_BITS,
        f64::NAN.to_bits(),
        0xfff8_0000_0000_0000, // negative quiet NaN
        0x7ff0_0000_0000_0001, // signalling NaN
        f64::INFINITY.to_bits(),
        f64::NEG_INFINITY.to_bits(),
        (-0.0f64).to_bits(),
        f64::MAX.to_bits(),
        1, // smallest subnormal
    ]
    .iter()
    .enumerate()
    .map(|(i, &b)| (base + i as i64 * 1000, f64::from_bits(b)))
    .collect();
    cases.push(
        Case::accepted(
            "values",
            "nan-stale-inf-accepted",
            v1(&one_series(&[("__name__", &m)], &special)),
        )
        .metric(&m)
        .written(special.len() as u64)
        .stores(d, &[("__name__", &m)], &bits(&special)),
    );
    let ts_cases: &[(&str, i64, &str)] = &[
        ("ts-i64-max", i64::MAX, "too far in the future"),
        (
            "ts-one-hour-ahead",
            base + 3_600_000,
            "too far in the future",
        ),
        ("ts-i64-min", i64::MIN, "out of bounds"),
        ("ts-zero", 0, "out of bounds"),
        ("ts-minus-one", -1, "out of bounds"),
        ("ts-three-hours-ago", base - 3 * 3_600_000, "out of bounds"),
    ];
    for (what, ts, msg) in ts_cases {
        let m = next_metric();
        cases.push(
            Case::new(
                "values",
                what,
                v1(&one_series(&[("__name__", &m)], &[(*ts, 1.0)])),
                Want::Http(409),
                &[msg],
            )
            .metric(&m)
            .written(0),
        );
    }
    // A fresh tenant whose very first sample is at i64::MIN: out of bounds as anywhere else
    // (Prometheus's head refuses it), not a head starting at the beginning of time.
    let m = next_metric();
    cases.push(
        Case::new(
            "values",
            "ts-i64-min-fresh-tenant",
            v1_tenant(
                "hostile-fresh-min",
                &one_series(&[("__name__", &m)], &[(i64::MIN, 1.0)]),
            ),
            Want::Http(409),
            &["out of bounds"],
        )
        .metric(&m)
        .tenant("hostile-fresh-min")
        .written(0),
    );
    let m = next_metric();
    cases.push(
        Case::new(
            "values",
            "ts-i64-max-fresh-tenant",
            v1_tenant(
                "hostile-fresh-max",
                &one_series(&[("__name__", &m)], &[(i64::MAX, 1.0)]),
            ),
            Want::Http(409),
            &["too far in the future"],
        )
        .metric(&m)
        .tenant("hostile-fresh-max")
        .written(0),
    );
    // Out of order inside one request: the in-order samples are stored, the rest refused.
    let m = next_metric();
    cases.push(
        Case::new(
            "values",
            "out-of-order-in-request",
            v1(&one_series(
                &[("__name__", &m)],
                &[(base + 2000, 1.0), (base + 1000, 2.0), (base + 3000, 3.0)],
            )),
            Want::Http(409),
            &["out of order"],
        )
        .metric(&m)
        .written(2)
        .stores(
            d,
            &[("__name__", &m)],
            &bits(&[(base + 2000, 1.0), (base + 3000, 3.0)]),
        ),
    );
    let m = next_metric();
    cases.push(
        Case::new(
            "values",
            "duplicate-timestamp-in-request",
            v1(&one_series(
                &[("__name__", &m)],
                &[(base, 1.0), (base, 2.0)],
            )),
            Want::Http(409),
            &["duplicate sample"],
        )
        .metric(&m)
        .written(1)
        .stores(d, &[("__name__", &m)], &bits(&[(base, 1.0)])),
    );
    let m = next_metric();
    cases.push(
        Case::accepted(
            "values",
            "identical-duplicate-accepted",
            v1(&one_series(
                &[("__name__", &m)],
                &[(base, 1.0), (base, 1.0)],
            )),
        )
        .metric(&m)
        .stores(d, &[("__name__", &m)], &bits(&[(base, 1.0)])),
    );
    let m = next_metric();
    cases.push(
        Case::new(
            "values",
            "valid-then-future-in-series",
            v1(&one_series(
                &[("__name__", &m)],
                &[(base, 1.0), (base + 3_600_000, 2.0)],
            )),
            Want::Http(409),
            &["too far in the future"],
        )
        .metric(&m)
        .written(1)
        .stores(d, &[("__name__", &m)], &bits(&[(base, 1.0)])),
    );

    // --- Remote write 2.0. ------------------------------------------------------------------
    let m = next_metric();
    let syms: [&[u8]; 3] = [b"", b"__name__", m.as_bytes()];
    cases.push(
        Case::new(
            "v2",
            "ref-u64-max",
            v2(&v2_request(
                &syms,
                &[v2_series(&[1, u64::MAX], &[(base, 1.0)], &[])],
            )),
            Want::Http(400),
            &["symbol reference 18446744073709551615 out of range"],
        )
        .metric(&m)
        .written(0),
    );
    cases.push(
        Case::new(
            "v2",
            "ref-without-symbols",
            v2(&v2_request(&[], &[v2_series(&[1, 2], &[(base, 1.0)], &[])])),
            Want::Http(400),
            &["out of range", "0 symbols"],
        )
        .written(0),
    );
    // Unpacked (one varint per field) odd refs.
    let mut unpacked = Vec::new();
    for r in [1u64, 2, 1] {
        pb_key(&mut unpacked, 1, PB_VARINT);
        pb_varint(&mut unpacked, r);
    }
    pb_len(&mut unpacked, 2, &pb_sample(base, 1.0));
    cases.push(
        Case::new(
            "v2",
            "odd-refs-unpacked",
            v2(&v2_request(&syms, &[unpacked])),
            Want::Http(400),
            &["odd length"],
        )
        .metric(&m)
        .written(0),
    );
    cases.push(
        Case::new(
            "v2",
            "symbol-0-is-a-space",
            v2(&v2_request(
                &[b" ", b"__name__", m.as_bytes()],
                &[v2_series(&[1, 2], &[(base, 1.0)], &[])],
            )),
            Want::Http(400),
            &["symbols[0]"],
        )
        .metric(&m)
        .written(0),
    );
    // An exemplar label ref past the table, and an exemplar with an odd ref count.
    let exemplar = |refs: &[u64]| {
        let mut packed = Vec::new();
        for &r in refs {
            pb_varint(&mut packed, r);
        }
        let mut e = Vec::new();
        pb_len(&mut e, 1, &packed);
        pb_key(&mut e, 2, PB_FIXED64);
        e.extend_from_slice(&1f64.to_bits().to_le_bytes());
        let mut out = Vec::new();
        pb_len(&mut out, 4, &e);
        out
    };
    cases.push(
        Case::new(
            "v2",
            "exemplar-ref-past-table",
            v2(&v2_request(
                &syms,
                &[v2_series(&[1, 2], &[(base, 1.0)], &exemplar(&[1, 99]))],
            )),
            Want::Http(400),
            &["symbol reference 99 out of range"],
        )
        .metric(&m)
        .written(0),
    );
    cases.push(
        Case::new(
            "v2",
            "exemplar-odd-refs",
            v2(&v2_request(
                &syms,
                &[v2_series(&[1, 2], &[(base, 1.0)], &exemplar(&[1]))],
            )),
            Want::Http(400),
            &["odd length"],
        )
        .metric(&m)
        .written(0),
    );
    let metadata = |kind: u64, help_ref: u64| {
        let mut md = Vec::new();
        pb_key(&mut md, 1, PB_VARINT);
        pb_varint(&mut md, kind);
        pb_key(&mut md, 3, PB_VARINT);
        pb_varint(&mut md, help_ref);
        let mut out = Vec::new();
        pb_len(&mut out, 5, &md);
        out
    };
    cases.push(
        Case::new(
            "v2",
            "metadata-help-ref-past-table",
            v2(&v2_request(
                &syms,
                &[v2_series(&[1, 2], &[(base, 1.0)], &metadata(1, 77))],
            )),
            Want::Http(400),
            &["symbol reference 77 out of range"],
        )
        .metric(&m)
        .written(0),
    );
    let mut samples_as_varint = v2_series(&[1, 2], &[], &[]);
    pb_key(&mut samples_as_varint, 2, PB_VARINT);
    pb_varint(&mut samples_as_varint, 1);
    cases.push(
        Case::new(
            "v2",
            "samples-as-varint",
            v2(&v2_request(&syms, &[samples_as_varint])),
            Want::Http(400),
            &["TimeSeries field 2 has wire type 0"],
        )
        .metric(&m)
        .written(0),
    );
    let mut symbols_as_varint = Vec::new();
    pb_key(&mut symbols_as_varint, 4, PB_VARINT);
    pb_varint(&mut symbols_as_varint, 0);
    cases.push(Case::new(
        "v2",
        "symbols-as-varint",
        v2(&symbols_as_varint),
        Want::Http(400),
        &["Request field 4 has wire type 0"],
    ));
    let m2 = next_metric();
    cases.push(
        Case::new(
            "v2",
            "series-without-samples",
            v2(&v2_request(
                &[b"", b"__name__", m2.as_bytes(), b"i", b"empty", b"full"],
                &[
                    v2_series(&[1, 2, 3, 4], &[], &[]),
                    v2_series(&[1, 2, 3, 5], &[(base, 8.0)], &[]),
                ],
            )),
            Want::Http(400),
            &["partial write", "no samples or histograms"],
        )
        .metric(&m2)
        .written(1)
        .stores(
            d,
            &[("__name__", &m2), ("i", "full")],
            &bits(&[(base, 8.0)]),
        ),
    );
    let m = next_metric();
    cases.push(
        Case::accepted(
            "v2",
            "unknown-metric-type-accepted",
            v2(&v2_request(
                &[b"", b"__name__", m.as_bytes()],
                &[v2_series(&[1, 2], &[(base, 9.0)], &metadata(99, 0))],
            )),
        )
        .metric(&m)
        .written(1)
        .stores(d, &[("__name__", &m)], &bits(&[(base, 9.0)])),
    );
    let m = next_metric();
    cases.push(
        Case::accepted(
            "v2",
            "unsorted-labels-accepted",
            v2(&v2_request(
                &[b"", b"zone", b"z", b"__name__", m.as_bytes(), b"a", b"1"],
                &[v2_series(
                    &[1, 2, 3, 4, 5, 6],
                    &[(base, f64::from_bits(STALE))],
                    &[],
                )],
            )),
        )
        .metric(&m)
        .written(1)
        .stores(
            d,
            &[("__name__", &m), ("a", "1"), ("zone", "z")],
            &[(base, STALE)],
        ),
    );

    // --- Headers. ----------------------------------------------------------------------------
    let m = next_metric();
    let body = snappy(&valid_body(&m));
    for (what, ct) in [
        ("text-plain", "text/plain"),
        ("octet-stream", "application/octet-stream"),
        (
            "proto-v3",
            "application/x-protobuf;proto=io.prometheus.write.v3.Request",
        ),
        (
            "proto-quoted-unknown",
            "application/x-protobuf; proto=\"prometheus.WriteRequestX\"",
        ),
    ] {
        cases.push(
            Case::new(
                "headers",
                &format!("content-type-{what}"),
                post(
                    &[("Content-Type", ct), ("Content-Encoding", "snappy")],
                    body.clone(),
                ),
                Want::Http(415),
                &["unsupported content type"],
            )
            .metric(&m),
        );
    }
    for enc in ["gzip", "none", "identity", "zstd", "snappy, gzip"] {
        cases.push(
            Case::new(
                "headers",
                &format!("content-encoding-{}", enc.replace(", ", "+")),
                post(
                    &[
                        ("Content-Type", "application/x-protobuf"),
                        ("Content-Encoding", enc),
                    ],
                    body.clone(),
                ),
                Want::Http(415),
                &["unsupported content encoding"],
            )
            .metric(&m),
        );
    }
    for method in ["GET", "PUT"] {
        cases.push(
            Case::new(
                "headers",
                &format!("method-{method}"),
                Send::Http {
                    method,
                    headers: header_pairs(&WRITE_HEADERS),
                    body: body.clone(),
                },
                Want::Http(405),
                &["method", "POST"],
            )
            .metric(&m),
        );
    }
    for (what, tenant, msg) in [
        ("dotdot-slash-x", "../x", "invalid tenant"),
        ("dot", ".", "invalid tenant"),
        ("dotdot", "..", "invalid tenant"),
        ("a-slash-b", "a/b", "invalid tenant"),
        ("backslash", "a\\b", "invalid tenant"),
        ("_bucket", "_bucket", "reserved"),
    ] {
        let mut h = WRITE_HEADERS.to_vec();
        h.push(("THANOS-TENANT", tenant));
        cases.push(
            Case::new(
                "tenant",
                what,
                post(&h, body.clone()),
                Want::Http(400),
                &[msg],
            )
            .metric(&m)
            .written(0),
        );
    }
    let long_tenant = "t".repeat(300);
    let mut h = WRITE_HEADERS.to_vec();
    h.push(("THANOS-TENANT", &long_tenant));
    cases.push(
        Case::new(
            "tenant",
            "300-bytes",
            post(&h, body.clone()),
            Want::Http(400),
            &["invalid tenant", "255 bytes"],
        )
        .metric(&m),
    );
    // Latin-1 bytes are legal in an HTTP field value, but not a tenant.
    let mut latin1 = raw_post(
        &[
            "Content-Type: application/x-protobuf",
            "Content-Encoding: snappy",
            &format!("Content-Length: {}", body.len()),
        ],
        &[],
    );
    latin1.truncate(latin1.len() - 2);
    latin1.extend_from_slice(b"THANOS-TENANT: t\xe9am\r\n\r\n");
    latin1.extend_from_slice(&body);
    cases.push(
        Case::new(
            "tenant",
            "non-ascii",
            Send::Raw(latin1),
            Want::Http(400),
            &["tenant", "ascii"],
        )
        .metric(&m),
    );
    // NUL is not allowed in an HTTP field value at all: the HTTP layer refuses the request.
    let mut nul = raw_post(
        &[
            "Content-Type: application/x-protobuf",
            "Content-Encoding: snappy",
            &format!("Content-Length: {}", body.len()),
        ],
        &[],
    );
    nul.truncate(nul.len() - 2);
    nul.extend_from_slice(b"THANOS-TENANT: a\0b\r\n\r\n");
    nul.extend_from_slice(&body);
    cases.push(Case::new("tenant", "nul", Send::Raw(nul), Want::Http(400), &[]).metric(&m));
    for (what, replica) in [("replica-not-a-number", "abc"), ("replica-negative", "-1")] {
        let mut h = WRITE_HEADERS.to_vec();
        h.push(("THANOS-REPLICA", replica));
        cases.push(
            Case::new(
                "headers",
                what,
                post(&h, body.clone()),
                Want::Http(400),
                &["replica header"],
            )
            .metric(&m),
        );
    }
    // Valid header edges.
    let m = next_metric();
    cases.push(
        Case::accepted(
            "headers",
            "no-content-type-means-1.0",
            post(&[("Content-Encoding", "snappy")], snappy(&valid_body(&m))),
        )
        .metric(&m)
        .stores(d, &[("__name__", &m)], &bits(&[(base, 1.0)])),
    );
    let m = next_metric();
    cases.push(
        Case::accepted(
            "headers",
            "unknown-version-header-ignored",
            post(
                &[
                    ("Content-Type", "application/x-protobuf"),
                    ("Content-Encoding", "SNAPPY"),
                    ("X-Prometheus-Remote-Write-Version", "9.9.9"),
                ],
                snappy(&valid_body(&m)),
            ),
        )
        .metric(&m)
        .stores(d, &[("__name__", &m)], &bits(&[(base, 1.0)])),
    );
    let m = next_metric();
    let t255 = "u".repeat(255);
    cases.push(
        Case::accepted(
            "tenant",
            "255-bytes-accepted",
            v1_tenant(&t255, &valid_body(&m)),
        )
        .metric(&m)
        .tenant(&t255)
        .stores(&t255, &[("__name__", &m)], &bits(&[(base, 1.0)])),
    );

    // --- Body size, against the all-in-one with small limits. ----------------------------------
    let m = next_metric();
    let labels: Vec<(String, String)> = (0..40)
        .map(|i| {
            (
                format!("l{i}"),
                noise(i, 64).iter().map(|b| format!("{b:02x}")).collect(),
            )
        })
        .collect();
    let mut big: Vec<(&str, &str)> = vec![("__name__", &m)];
    big.extend(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let big_body = snappy(&one_series(&big, &[(base, 1.0)]));
    assert!(big_body.len() > SMALL_BODY);
    cases.push(
        Case::new(
            "size",
            "body-over-limit",
            v1_body(big_body.clone()),
            Want::Http(413),
            &["exceeds the limit of 4096 bytes"],
        )
        .small()
        .metric(&m)
        .written(0),
    );
    let mut chunked = raw_post(
        &[
            "Content-Type: application/x-protobuf",
            "Content-Encoding: snappy",
            "Transfer-Encoding: chunked",
        ],
        &[],
    );
    for piece in big_body.chunks(1000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    cases.push(
        Case::new(
            "size",
            "chunked-body-over-limit",
            Send::Raw(chunked),
            Want::Http(413),
            &["exceeds the limit of 4096 bytes"],
        )
        .small()
        .metric(&m),
    );
    cases.push(
        Case::new(
            "size",
            "content-length-1TB-no-body",
            Send::Raw(raw_post(
                &[
                    "Content-Type: application/x-protobuf",
                    "Content-Encoding: snappy",
                    "Content-Length: 1000000000000",
                ],
                &[],
            )),
            Want::Http(413),
            &["1000000000000", "exceeds the limit of 4096 bytes"],
        )
        .small(),
    );
    let repetitive: Vec<(String, String)> = (0..400)
        .map(|i| (format!("label_{i:04}"), "v".repeat(100)))
        .collect();
    let mut rep: Vec<(&str, &str)> = vec![("__name__", &m)];
    rep.extend(repetitive.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let rep_raw = one_series(&rep, &[(base, 1.0)]);
    let rep_body = snappy(&rep_raw);
    assert!(rep_body.len() < SMALL_BODY && rep_raw.len() > SMALL_DECOMPRESSED);
    let rep_len = rep_raw.len().to_string();
    cases.push(
        Case::new(
            "size",
            "decompressed-over-limit",
            v1_body(rep_body),
            Want::Http(413),
            &[rep_len.as_str(), "exceeds the limit of 32768 bytes"],
        )
        .small()
        .metric(&m),
    );

    // --- gRPC thanos.WriteableStore/RemoteWrite. ------------------------------------------------
    let m = next_metric();
    let series = pb_series(&[(b"__name__", m.as_bytes())], &[(base, 1.0)]);
    let whole = thanos_write(std::slice::from_ref(&series), b"team-grpc");
    let grpc = |what: &str, body: Vec<u8>, msg: &[&str]| {
        Case::new(
            "grpc",
            what,
            Send::Grpc(body),
            Want::Grpc(Code::InvalidArgument),
            msg,
        )
        .metric(&m)
        .tenant("team-grpc")
    };
    cases.push(grpc(
        "truncated",
        whole[..whole.len() - 3].to_vec(),
        &["malformed protobuf"],
    ));
    cases.push(grpc(
        "varint-overflow",
        b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f".to_vec(),
        &["varint"],
    ));
    let mut tenant_varint = pb_write_request(std::slice::from_ref(&series));
    pb_key(&mut tenant_varint, 2, PB_VARINT);
    pb_varint(&mut tenant_varint, 7);
    cases.push(grpc(
        "tenant-as-varint",
        tenant_varint,
        &["field 2 has wire type 0"],
    ));
    cases.push(grpc(
        "tenant-invalid-utf8",
        thanos_write(std::slice::from_ref(&series), b"te\xffam"),
        &["UTF-8", "tenant"],
    ));
    for (what, tenant, msg) in [
        ("tenant-nul", &b"a\0b"[..], "invalid tenant"),
        ("tenant-dotdot-slash-x", b"../x", "invalid tenant"),
        ("tenant-_bucket", b"_bucket", "reserved"),
    ] {
        cases.push(grpc(
            what,
            thanos_write(std::slice::from_ref(&series), tenant),
            &[msg],
        ));
    }
    cases.push(grpc(
        "tenant-300-bytes",
        thanos_write(std::slice::from_ref(&series), "g".repeat(300).as_bytes()),
        &["invalid tenant"],
    ));
    cases.push(grpc(
        "no-tenant",
        thanos_write(std::slice::from_ref(&series), b""),
        &["without a tenant"],
    ));
    let mut batch_garbage = Vec::new();
    pb_len(&mut batch_garbage, 4, b"\x0a\xff\xff\xff\xff\x0f");
    cases.push(grpc(
        "tenant-batch-garbage",
        batch_garbage,
        &["malformed protobuf"],
    ));
    let mut inner = Vec::new();
    pb_len(&mut inner, 1, &series);
    pb_len(&mut inner, 2, b"..");
    let mut batch_bad_tenant = Vec::new();
    pb_len(&mut batch_bad_tenant, 4, &inner);
    cases.push(grpc(
        "tenant-batch-dotdot",
        batch_bad_tenant,
        &["invalid tenant"],
    ));
    let mut utf8 = pb_write_request(&[pb_series(
        &[(b"__name__", m.as_bytes()), (b"job", b"\xff")],
        &[(base, 1.0)],
    )]);
    pb_len(&mut utf8, 2, b"team-grpc");
    cases.push(grpc(
        "label-invalid-utf8",
        utf8,
        &["invalid UTF-8 in Label.value"],
    ));
    cases
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

/// Where a run sends its cases.
struct Target {
    name: &'static str,
    /// Remote-write listener.
    rw: String,
    /// HTTP listeners to read back from (all must agree).
    reads: Vec<String>,
    /// gRPC listener of the storing process.
    grpc: String,
    /// The process answering remote write (for its peak RSS).
    pid: u32,
}

/// The answer a case got.
struct Outcome {
    target: &'static str,
    case: String,
    got: String,
    message: String,
    problems: Vec<String>,
}

type Store = BTreeMap<String, BTreeMap<Labels, Samples>>;

fn add(store: &mut Store, tenant: &str, labels: Labels, samples: Samples) {
    let s = store
        .entry(tenant.to_string())
        .or_default()
        .entry(labels)
        .or_default();
    s.extend(samples);
    s.sort_unstable();
    s.dedup();
}

fn read_tenant(addr: &str, tenant: &str) -> Result<BTreeMap<Labels, Samples>, String> {
    let t = (tenant != DEFAULT_TENANT).then_some(tenant);
    read_all(addr, t, i64::MIN, i64::MAX)
}

struct Runner {
    rt: tokio::runtime::Runtime,
    outcomes: Vec<Outcome>,
    probe: u64,
}

impl Runner {
    fn send(&self, t: &Target, send: &Send) -> Result<(String, String, Option<u64>), String> {
        match send {
            Send::Http {
                method,
                headers,
                body,
            } => {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let r = http_request(method, &t.rw, "/api/v1/receive", &h, body, REQUEST_TIMEOUT)
                    .map_err(|e| e.to_string())?;
                Ok(http_outcome(&r))
            }
            Send::Raw(bytes) => {
                let r = http_raw(&t.rw, bytes, REQUEST_TIMEOUT).map_err(|e| e.to_string())?;
                Ok(http_outcome(&r))
            }
            Send::Grpc(body) => {
                let _runtime = self.rt.enter();
                let client = PeerClient::new(&t.grpc, REQUEST_TIMEOUT, 64 << 20, None)
                    .map_err(|e| e.to_string())?;
                let r = self
                    .rt
                    .block_on(client.remote_write(Bytes::from(body.clone()), REQUEST_TIMEOUT));
                Ok(match r {
                    Ok(()) => ("Ok".to_string(), String::new(), None),
                    Err(s) => (format!("{:?}", s.code()), s.message().to_string(), None),
                })
            }
        }
    }

    /// A valid write after a case: it must be answered 2xx (HTTP, and gRPC after gRPC cases).
    fn probe(&mut self, t: &Target, after: &str, grpc: bool, store: &mut Store) -> Vec<String> {
        let mut problems = Vec::new();
        self.probe += 1;
        let ts = now_ms();
        let value = self.probe as f64;
        let labels = [("__name__", "hostile_alive"), ("after", after)];
        let r = http_request(
            "POST",
            &t.rw,
            "/api/v1/receive",
            &WRITE_HEADERS,
            &snappy(&one_series(&labels, &[(ts, value)])),
            REQUEST_TIMEOUT,
        );
        match r {
            Ok(r) if r.is_2xx() => add(
                store,
                DEFAULT_TENANT,
                label_map(&labels),
                vec![(ts, value.to_bits())],
            ),
            Ok(r) => problems.push(format!(
                "valid write afterwards: {} {}",
                r.status,
                r.text().trim()
            )),
            Err(e) => problems.push(format!("valid write afterwards: {e}")),
        }
        if grpc {
            let labels = [("__name__", "hostile_alive_grpc"), ("after", after)];
            let body = thanos_write(
                &[pb_series(
                    &labels.map(|(k, v)| (k.as_bytes(), v.as_bytes())),
                    &[(ts, value)],
                )],
                b"team-grpc",
            );
            match self.send(t, &Send::Grpc(body)) {
                Ok((got, _, _)) if got == "Ok" => add(
                    store,
                    "team-grpc",
                    label_map(&labels),
                    vec![(ts, value.to_bits())],
                ),
                Ok((got, msg, _)) => {
                    problems.push(format!("valid gRPC write afterwards: {got} {msg}"))
                }
                Err(e) => problems.push(format!("valid gRPC write afterwards: {e}")),
            }
        }
        problems
    }

    fn run(&mut self, t: &Target, cases: &[&Case], store: &mut Store) {
        for case in cases {
            let started = Instant::now();
            let rss_before = peak_rss_kib(t.pid);
            let result = self.send(t, &case.send);
            let elapsed = started.elapsed();
            let mut problems = Vec::new();
            let (got, message) = match result {
                Err(e) => {
                    problems.push(format!("no answer: {e}"));
                    (format!("error after {elapsed:?}"), e)
                }
                Ok((got, message, written)) => {
                    let want = match case.want {
                        Want::Http(s) => s.to_string(),
                        Want::Grpc(c) => format!("{c:?}"),
                    };
                    if got != want {
                        problems.push(format!("expected {want}, got {got}"));
                    }
                    let lower = message.to_lowercase();
                    let missing: Vec<&String> = case
                        .msg
                        .iter()
                        .filter(|w| !lower.contains(w.as_str()))
                        .collect();
                    if !missing.is_empty() {
                        problems.push(format!("message does not contain {missing:?}"));
                    }
                    if message.len() > MAX_MESSAGE_BYTES {
                        problems.push(format!(
                            "message of {} bytes (more than {MAX_MESSAGE_BYTES})",
                            message.len()
                        ));
                    }
                    if let (Some(want), Want::Http(_)) = (case.written, case.want) {
                        if written != Some(want) {
                            problems.push(format!(
                                "X-Prometheus-Remote-Write-Samples-Written: expected {want}, got {written:?}"
                            ));
                        }
                    }
                    (got, message)
                }
            };
            if case.name == "bomb/100MB-of-zeros" {
                let after = peak_rss_kib(t.pid);
                if let (Some(b), Some(a)) = (rss_before, after) {
                    eprintln!("[corpus] {}: peak RSS {b} KiB -> {a} KiB", t.name);
                    if a > b + 48 * 1024 {
                        problems.push(format!(
                            "peak RSS grew by {} KiB: the bomb was decompressed",
                            a - b
                        ));
                    }
                }
            }
            // What the case's payload left behind, per tenant.
            if let Some(metric) = &case.metric {
                for tenant in &case.tenants {
                    let mut want: BTreeMap<Labels, Samples> = BTreeMap::new();
                    for (tn, l, s) in &case.stores {
                        if tn == tenant {
                            want.insert(l.clone(), s.clone());
                        }
                    }
                    for read in &t.reads {
                        match read_tenant(read, tenant) {
                            Ok(mut got) => {
                                got.retain(|l, _| l.get("__name__") == Some(metric));
                                let diff = sample_differences(&want, &got, 4);
                                if !diff.is_empty() {
                                    problems.push(format!(
                                        "stored in {tenant} (read from {read}): {}",
                                        diff.join("; ")
                                    ));
                                }
                                if read == &t.reads[0] {
                                    for (l, s) in got {
                                        add(store, tenant, l, s);
                                    }
                                }
                            }
                            Err(e) => problems.push(format!("read back of {tenant}: {e}")),
                        }
                    }
                }
            }
            let grpc = matches!(case.send, Send::Grpc(_));
            problems.extend(self.probe(t, &case.name, grpc, store));
            self.outcomes.push(Outcome {
                target: t.name,
                case: case.name.clone(),
                got,
                message,
                problems,
            });
        }
    }
}

fn http_outcome(r: &Response) -> (String, String, Option<u64>) {
    let written = r
        .header("X-Prometheus-Remote-Write-Samples-Written")
        .and_then(|v| v.parse().ok());
    (r.status.to_string(), r.text().trim().to_string(), written)
}

/// The valid data written before the corpus: special values, unsorted labels, two tenants.
fn write_baseline(t: &Target, base: i64, store: &mut Store) {
    for tenant in [DEFAULT_TENANT, "team-a"] {
        let mut series = Vec::new();
        for i in 0..20 {
            let labels = [
                ("job", "baseline"),
                ("__name__", "hostile_baseline"),
                ("i", &i.to_string()),
                ("zone", "é€"),
            ];
            let samples: Vec<(i64, f64)> = (0..30)
                .map(|k| {
                    let ts = base - 60_000 + k * 1000;
                    let v = match (i + k) % 7 {
                        0 => f64::from_bits(STALE),
                        1 => -0.0,
                        2 => f64::INFINITY,
                        3 => f64::from_bits(GO_NAN_BITS),
                        4 => 1e-310,
                        _ => (i * 100 + k) as f64 * 0.25,
                    };
                    (ts, v)
                })
                .collect();
            series.push(pb_series(
                &labels.map(|(k, v)| (k.as_bytes(), v.as_bytes())),
                &samples,
            ));
            add(store, tenant, label_map(&labels), bits(&samples));
        }
        let send = v1_tenant(tenant, &pb_write_request(&series));
        let Send::Http { headers, body, .. } = send else {
            unreachable!()
        };
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = post_raw(&t.rw, "/api/v1/receive", &h, &body);
        assert!(
            r.is_2xx(),
            "{}: baseline write for {tenant}: {} {}",
            t.name,
            r.status,
            r.text()
        );
    }
}

/// Everything acknowledged reads back unchanged, from every read address.
fn verify_store(t: &Target, store: &Store) -> Vec<String> {
    let mut problems = Vec::new();
    for (tenant, want) in store {
        for read in &t.reads {
            match read_tenant(read, tenant) {
                Ok(got) => {
                    let diff = sample_differences(want, &got, 8);
                    if !diff.is_empty() {
                        problems.push(format!(
                            "{}: tenant {tenant} read from {read} differs from what was acknowledged:\n    {}",
                            t.name,
                            diff.join("\n    ")
                        ));
                    }
                }
                Err(e) => problems.push(format!("{}: read of {tenant} from {read}: {e}", t.name)),
            }
        }
    }
    problems
}

/// Tenant directories under a `--tsdb.path`, and anything that is not one of `allowed`.
fn unexpected_dirs(tsdb: &Path, allowed: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(tsdb).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if !allowed.contains(&name) {
            out.push(name);
        }
    }
    out
}

fn start_all_in_one(
    name: &str,
    dir: &Path,
    extra: &[String],
) -> (Proc, Target, std::path::PathBuf) {
    let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
    let data = dir.join(format!("{name}-data"));
    let mut args = server_args("all-in-one", &rw, &http, &grpc);
    args.push(format!("--tsdb.path={}", data.display()));
    args.extend(extra.iter().cloned());
    let mut proc = Proc::spawn(name, ringest_bin(), &args, &dir.join("logs"));
    wait_http_ok(&http, "/-/ready", Duration::from_secs(60), Some(&mut proc));
    let pid = proc.pid().unwrap();
    (
        proc,
        Target {
            name: "all-in-one",
            rw,
            reads: vec![http],
            grpc,
            pid,
        },
        data,
    )
}

#[test]
fn payloads_are_what_they_claim() {
    let base = 1_700_000_000_000;
    let cases = corpus(base);
    let malformed = cases.iter().filter(|c| c.malformed).count();
    assert!(malformed >= 50, "only {malformed} malformed cases");
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "case names must be unique");
    for (name, _) in KNOWN_PRODUCT_BUGS {
        assert!(names.contains(name), "known bug {name} is not a case");
    }
    for c in &cases {
        let Send::Http { body, headers, .. } = &c.send else {
            continue;
        };
        let is_snappy = headers
            .iter()
            .any(|(k, v)| k == "Content-Encoding" && v.eq_ignore_ascii_case("snappy"));
        let decoded = snap::raw::Decoder::new().decompress_vec(body);
        match (c.group, is_snappy) {
            ("snappy", _) => assert!(decoded.is_err(), "{}: is valid snappy", c.name),
            ("protobuf" | "utf8", true) if !headers.iter().any(|(_, v)| v == V2_CONTENT_TYPE) => {
                let raw = decoded.unwrap_or_else(|e| panic!("{}: snappy: {e}", c.name));
                assert!(
                    <proto::prompb::WriteRequest as prost::Message>::decode(raw.as_slice())
                        .is_err(),
                    "{}: prost decodes it",
                    c.name
                );
            }
            _ => {}
        }
    }
}

#[test]
fn hostile_corpus_gets_precise_answers_and_touches_no_acknowledged_data() {
    let t0 = Instant::now();
    let tmp = test_dir("hostile-corpus");
    let dir = tmp.path();
    let base = now_ms() - 30_000;
    let cases = corpus(base);
    let malformed = cases.iter().filter(|c| c.malformed).count();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = Runner {
        rt,
        outcomes: Vec::new(),
        probe: 0,
    };
    let main_cases: Vec<&Case> = cases.iter().filter(|c| c.server == Server::Main).collect();
    let small_cases: Vec<&Case> = cases.iter().filter(|c| c.server == Server::Small).collect();
    let mut end_problems = Vec::new();

    // 1. The all-in-one with default limits: every main case, HTTP and gRPC.
    let (mut aio, aio_t, aio_data) = start_all_in_one("all-in-one", dir, &[]);
    let mut aio_store = Store::new();
    write_baseline(&aio_t, base, &mut aio_store);
    runner.run(&aio_t, &main_cases, &mut aio_store);

    // Clients stalled mid-body do not keep others from writing.
    let stalled: Vec<std::net::TcpStream> = (0..32)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&aio_t.rw).unwrap();
            c.write_all(
                b"POST /api/v1/receive HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n0123456789",
            )
            .unwrap();
            c
        })
        .collect();
    end_problems.extend(
        runner
            .probe(&aio_t, "32-stalled-clients", true, &mut aio_store)
            .into_iter()
            .map(|p| format!("all-in-one with 32 clients stalled mid-body: {p}")),
    );
    drop(stalled);

    // 2. The all-in-one with small limits: body sizes.
    let (mut small, small_t, _) = start_all_in_one(
        "all-in-one-small",
        dir,
        &[
            format!("--remote-write.max-body-bytes={SMALL_BODY}"),
            format!("--remote-write.max-decompressed-bytes={SMALL_DECOMPRESSED}"),
        ],
    );
    let mut small_store = Store::new();
    runner.run(&small_t, &small_cases, &mut small_store);

    // 3. A router (RF 1) in front of an ingestor: every main case again, gRPC to the ingestor.
    let mut ing = Ingestor::start("ingest", dir, &[]);
    let mut router = Router::start("router", dir, &[&ing.grpc], 1, &[]);
    let routed_t = Target {
        name: "router+ingest",
        rw: router.rw.clone(),
        reads: vec![router.http.clone(), ing.http.clone()],
        grpc: ing.grpc.clone(),
        pid: router.proc.pid().unwrap(),
    };
    let mut routed_store = Store::new();
    write_baseline(&routed_t, base, &mut routed_store);
    runner.run(&routed_t, &main_cases, &mut routed_store);

    // Everything acknowledged is unchanged; everyone is alive and ready.
    end_problems.extend(verify_store(&aio_t, &aio_store));
    end_problems.extend(verify_store(&small_t, &small_store));
    end_problems.extend(verify_store(&routed_t, &routed_store));
    for (name, addr) in [
        ("all-in-one", &aio_t.reads[0]),
        ("all-in-one-small", &small_t.reads[0]),
        ("router", &router.http),
        ("ingest", &ing.http),
    ] {
        match http_get(addr, "/-/ready") {
            Ok(r) if r.status == 200 => {}
            Ok(r) => end_problems.push(format!("{name} /-/ready: {} {}", r.status, r.text())),
            Err(e) => end_problems.push(format!("{name} /-/ready: {e}")),
        }
    }
    aio.assert_running();
    small.assert_running();
    ing.proc.assert_running();
    router.proc.assert_running();

    // No directory but the tenants written to (a path trick would have made one).
    let tenants = |store: &Store, extra: &[&str]| -> BTreeSet<String> {
        store
            .keys()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let mut allowed = tenants(&aio_store, &["_bucket"]);
    // A tenant's TSDB may be created by a write that is then refused (as in Thanos).
    allowed.extend(cases.iter().flat_map(|c| c.tenants.iter().cloned()));
    allowed.extend(tenants(&routed_store, &[]));
    for (what, tsdb) in [("all-in-one", &aio_data), ("ingest", &ing.data)] {
        let extra = unexpected_dirs(tsdb, &allowed);
        if !extra.is_empty() {
            end_problems.push(format!(
                "{what}: unexpected entries under --tsdb.path: {extra:?}"
            ));
        }
    }
    for stray in ["x", "a", "b"] {
        if dir.join(stray).exists() {
            end_problems.push(format!("{stray} was created next to the data directories"));
        }
    }

    // Summary.
    let strict = std::env::var_os("RINGEST_HOSTILE_STRICT").is_some();
    let mut unexpected = Vec::new();
    let mut known_failed = BTreeSet::new();
    eprintln!(
        "\n{:<14} {:<44} {:<16} {:<6} message",
        "target", "case", "answer", "result"
    );
    for o in &runner.outcomes {
        let is_known = |p: &String| {
            KNOWN_PRODUCT_BUGS
                .iter()
                .any(|(case, words)| *case == o.case && p.contains(words))
        };
        let (known, other): (Vec<&String>, Vec<&String>) =
            o.problems.iter().partition(|p| is_known(p));
        let result = match (known.is_empty(), other.is_empty()) {
            (true, true) => "ok",
            (false, true) => "KNOWN",
            (_, false) => "FAIL",
        };
        let short: String = o.message.replace('\n', " ").chars().take(80).collect();
        eprintln!(
            "{:<14} {:<44} {:<16} {:<6} {short}",
            o.target, o.case, o.got, result
        );
        for p in &known {
            known_failed.insert(o.case.clone());
            eprintln!("    KNOWN PRODUCT BUG: {p}");
        }
        if !other.is_empty() {
            let line = format!(
                "{} {}: {}",
                o.target,
                o.case,
                other
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            eprintln!("    FAIL: {line}");
            unexpected.push(line);
        }
    }
    eprintln!(
        "\n{} cases ({malformed} malformed, {} valid edges) x targets = {} requests in {:?}",
        cases.len(),
        cases.len() - malformed,
        runner.outcomes.len(),
        t0.elapsed()
    );
    let fixed: Vec<&str> = KNOWN_PRODUCT_BUGS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !known_failed.contains(*n))
        .collect();
    let mut failures = unexpected;
    failures.extend(end_problems);
    if !fixed.is_empty() {
        failures.push(format!(
            "listed in KNOWN_PRODUCT_BUGS but passing now (remove them): {fixed:?}"
        ));
    }
    if strict && !known_failed.is_empty() {
        failures.push(format!(
            "known product bugs (strict mode): {known_failed:?}"
        ));
    }
    assert!(malformed >= 50, "only {malformed} malformed cases");
    assert!(
        failures.is_empty(),
        "{} problems:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
