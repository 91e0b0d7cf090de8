//! The corpus itself: payload builders and one function per group of cases, each returning its
//! cases in the order they are sent.

use super::*;

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
pub(super) fn v1_tenant(tenant: &str, raw: &[u8]) -> Send {
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
pub(super) fn one_series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Vec<u8> {
    let l: Vec<(&[u8], &[u8])> = labels
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    pb_write_request(&[pb_series(&l, samples)])
}

pub(super) fn bits(samples: &[(i64, f64)]) -> Samples {
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
pub(super) fn thanos_write(series: &[Vec<u8>], tenant: &[u8]) -> Vec<u8> {
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

/// What the group builders share: the base timestamp and the counter that gives each case's
/// payload its own metric name (`hostile_case_001`, … in build order).
struct Corpus {
    base: i64,
    n: u32,
}

impl Corpus {
    /// The next unused metric name.
    fn next_metric(&mut self) -> String {
        self.n += 1;
        format!("hostile_case_{:03}", self.n)
    }

    /// A valid 1.0 request body: one sample of metric `m` at the base time.
    fn valid_body(&self, m: &str) -> Vec<u8> {
        one_series(&[("__name__", m)], &[(self.base, 1.0)])
    }
}

/// The groups, in the order their cases are sent.
const GROUPS: &[fn(&mut Corpus) -> Vec<Case>] = &[
    snappy_cases,
    bomb_cases,
    protobuf_cases,
    label_cases,
    oversized_series_cases,
    series_edge_cases,
    utf8_cases,
    label_edge_cases,
    value_and_timestamp_cases,
    v2_cases,
    header_cases,
    size_cases,
    grpc_cases,
];

/// The malformed requests and the valid edges, in the order they are sent. `base` is a recent
/// timestamp (ms) in the appendable window of every head.
pub(super) fn corpus(base: i64) -> Vec<Case> {
    let mut cx = Corpus { base, n: 0 };
    GROUPS.iter().flat_map(|group| group(&mut cx)).collect()
}

/// Snappy: not snappy, cut short, the framed format, lying headers.
fn snappy_cases(cx: &mut Corpus) -> Vec<Case> {
    let mut cases = Vec::new();
    let m = cx.next_metric();
    let good = snappy(&cx.valid_body(&m));
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
    framed.write_all(&cx.valid_body(&m)).unwrap();
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
            v1_body(cx.valid_body(&m)),
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

    cases
}

/// Decompression bombs: refused from the header, before allocating.
fn bomb_cases(_cx: &mut Corpus) -> Vec<Case> {
    vec![
        Case::new(
            "bomb",
            "claims-limit-plus-one",
            v1_body(b"\x81\x80\x80\x20tiny".to_vec()),
            Want::Http(413),
            &["67108865", "exceeds the limit of 67108864"],
        ),
        Case::new(
            "bomb",
            "claims-4GiB",
            v1_body(b"\x80\x80\x80\x80\x10tiny".to_vec()),
            Want::Http(413),
            &["4294967296", "exceeds"],
        ),
        Case::new(
            "bomb",
            "claims-8GiB-v2",
            post(&V2_HEADERS, b"\xff\xff\xff\xff\x1ftiny".to_vec()),
            Want::Http(413),
            &["8589934591", "exceeds"],
        ),
        Case::new(
            "bomb",
            "100MB-of-zeros",
            v1_body(snappy(&vec![0u8; 100 << 20])),
            Want::Http(413),
            &["104857600", "exceeds the limit of 67108864"],
        ),
    ]
}

/// Protobuf: truncated, garbage, wrong wire types, varints, lengths.
fn protobuf_cases(cx: &mut Corpus) -> Vec<Case> {
    let base = cx.base;
    let mut cases = Vec::new();
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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

    cases
}

/// Labels: each invalid series is sent next to a valid sibling (a partial write).
fn label_cases(cx: &mut Corpus) -> Vec<Case> {
    let base = cx.base;
    let d = DEFAULT_TENANT;
    let mut cases = Vec::new();
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
        let m = cx.next_metric();
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
    cases
}

/// Series whose problem is big or hidden: 100 000 series without labels, 100 KB values, a native
/// histogram, an exemplar that is not UTF-8.
fn oversized_series_cases(cx: &mut Corpus) -> Vec<Case> {
    let base = cx.base;
    let d = DEFAULT_TENANT;
    let mut cases = Vec::new();
    // 100 000 series without labels next to a valid one: one short message.
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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
    cases
}

/// Valid 1.0 series edges (the same series twice, a series without samples) and a 2.0 partial
/// write with duplicate label names.
fn series_edge_cases(cx: &mut Corpus) -> Vec<Case> {
    let base = cx.base;
    let d = DEFAULT_TENANT;
    let mut cases = Vec::new();
    // Valid edges of 1.0: the same series twice in one request (in time order), and a series
    // without samples (nothing to store, nothing wrong).
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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
    cases
}

/// Invalid UTF-8: the whole request is refused, the valid sibling included.
fn utf8_cases(cx: &mut Corpus) -> Vec<Case> {
    let base = cx.base;
    let mut cases = Vec::new();
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
        let m = cx.next_metric();
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
    let m = cx.next_metric();
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

    cases
}

/// Valid label edges: accepted, stored exactly (names and values are any UTF-8).
fn label_edge_cases(cx: &mut Corpus) -> Vec<Case> {
    let base = cx.base;
    let d = DEFAULT_TENANT;
    let mut cases = Vec::new();
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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

    cases
}

/// Values and timestamps.
fn value_and_timestamp_cases(cx: &mut Corpus) -> Vec<Case> {
    let base = cx.base;
    let d = DEFAULT_TENANT;
    let mut cases = Vec::new();
    let m = cx.next_metric();
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
        let m = cx.next_metric();
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
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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

    cases
}

/// Remote write 2.0.
fn v2_cases(cx: &mut Corpus) -> Vec<Case> {
    let base = cx.base;
    let d = DEFAULT_TENANT;
    let mut cases = Vec::new();
    let m = cx.next_metric();
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
    let m2 = cx.next_metric();
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
    let m = cx.next_metric();
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
    let m = cx.next_metric();
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

    cases
}

/// Headers.
fn header_cases(cx: &mut Corpus) -> Vec<Case> {
    let base = cx.base;
    let d = DEFAULT_TENANT;
    let mut cases = Vec::new();
    let m = cx.next_metric();
    let body = snappy(&cx.valid_body(&m));
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
    let m = cx.next_metric();
    cases.push(
        Case::accepted(
            "headers",
            "no-content-type-means-1.0",
            post(
                &[("Content-Encoding", "snappy")],
                snappy(&cx.valid_body(&m)),
            ),
        )
        .metric(&m)
        .stores(d, &[("__name__", &m)], &bits(&[(base, 1.0)])),
    );
    let m = cx.next_metric();
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
                snappy(&cx.valid_body(&m)),
            ),
        )
        .metric(&m)
        .stores(d, &[("__name__", &m)], &bits(&[(base, 1.0)])),
    );
    let m = cx.next_metric();
    let t255 = "u".repeat(255);
    cases.push(
        Case::accepted(
            "tenant",
            "255-bytes-accepted",
            v1_tenant(&t255, &cx.valid_body(&m)),
        )
        .metric(&m)
        .tenant(&t255)
        .stores(&t255, &[("__name__", &m)], &bits(&[(base, 1.0)])),
    );

    cases
}

/// Body size, against the all-in-one with small limits.
fn size_cases(cx: &mut Corpus) -> Vec<Case> {
    let base = cx.base;
    let mut cases = Vec::new();
    let m = cx.next_metric();
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

    cases
}

/// gRPC thanos.WriteableStore/RemoteWrite.
fn grpc_cases(cx: &mut Corpus) -> Vec<Case> {
    let base = cx.base;
    let mut cases = Vec::new();
    let m = cx.next_metric();
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
