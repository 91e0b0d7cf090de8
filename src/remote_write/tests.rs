//! Tests of the whole module: round trips against the independent prost encoder of the `proto`
//! crate, hand-built 2.0 bodies, validation rules, malformed input, limits, property tests.

use super::wire::{put_bytes, put_key, put_varint, FIXED32, FIXED64, VARINT};
use super::*;
use crate::error::{Classify, ErrorClass};
use proptest::prelude::*;
use prost::Message;
use proto::prompb;
use proto::storepb;

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// An owned series for comparisons: sorted (name, value) pairs and (timestamp, value bits).
type OwnedSeries = (Vec<(String, String)>, Vec<(i64, u64)>);

fn l<'a>(name: &'a str, value: &'a str) -> Label<'a> {
    Label { name, value }
}

fn s(timestamp: i64, value: f64) -> Sample {
    Sample { timestamp, value }
}

fn pl(name: &str, value: &str) -> prompb::Label {
    prompb::Label {
        name: name.into(),
        value: value.into(),
    }
}

fn ps(timestamp: i64, value: f64) -> prompb::Sample {
    prompb::Sample { value, timestamp }
}

fn pts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> prompb::TimeSeries {
    prompb::TimeSeries {
        labels: labels.iter().map(|(n, v)| pl(n, v)).collect(),
        samples: samples.iter().map(|&(t, v)| ps(t, v)).collect(),
        exemplars: vec![],
    }
}

fn owned(req: &WriteRequest<'_>) -> Vec<OwnedSeries> {
    req.series
        .iter()
        .map(|s| {
            (
                req.series_labels(s)
                    .iter()
                    .map(|l| (l.name.to_owned(), l.value.to_owned()))
                    .collect(),
                req.series_samples(s)
                    .iter()
                    .map(|x| (x.timestamp, x.value.to_bits()))
                    .collect(),
            )
        })
        .collect()
}

fn sorted_owned(ts: &prompb::TimeSeries) -> OwnedSeries {
    let mut labels: Vec<_> = ts
        .labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    labels.sort();
    (
        labels,
        ts.samples
            .iter()
            .map(|x| (x.timestamp, x.value.to_bits()))
            .collect(),
    )
}

// ---------- raw protobuf builders for hand-made bodies ----------

fn msg(build: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    build(&mut v);
    v
}

fn raw_sample(t: i64, v: f64) -> Vec<u8> {
    msg(|o| {
        put_key(o, 1, FIXED64);
        o.extend_from_slice(&v.to_bits().to_le_bytes());
        put_key(o, 2, VARINT);
        put_varint(o, t as u64);
    })
}

fn packed(refs: &[u64]) -> Vec<u8> {
    msg(|o| refs.iter().for_each(|&r| put_varint(o, r)))
}

/// A 2.0 `TimeSeries` with packed label refs, float samples, and `extra` raw fields appended.
fn v2_series(refs: &[u64], samples: &[(i64, f64)], extra: &[u8]) -> Vec<u8> {
    msg(|o| {
        if !refs.is_empty() {
            put_bytes(o, 1, &packed(refs));
        }
        for &(t, v) in samples {
            put_bytes(o, 2, &raw_sample(t, v));
        }
        o.extend_from_slice(extra);
    })
}

fn v2_request(symbols: &[&str], series: &[Vec<u8>]) -> Vec<u8> {
    msg(|o| {
        for s in symbols {
            put_bytes(o, 4, s.as_bytes());
        }
        for ts in series {
            put_bytes(o, 5, ts);
        }
    })
}

/// One unknown field of every wire type, numbered `field`.
fn unknown_fields(field: u32) -> Vec<u8> {
    msg(|o| {
        put_key(o, field, VARINT);
        put_varint(o, u64::MAX);
        put_key(o, field + 1, FIXED64);
        o.extend_from_slice(&[7; 8]);
        put_bytes(o, field + 2, b"\xff\xfe not utf8, never looked at");
        put_key(o, field + 3, FIXED32);
        o.extend_from_slice(&[9; 4]);
    })
}

/// Offsets at which a top-level field starts or the message ends.
fn top_level_boundaries(buf: &[u8]) -> Vec<usize> {
    let mut r = wire::Reader::new(buf);
    let mut out = vec![0];
    while !r.is_empty() {
        let (_, wt) = r.key().unwrap();
        r.skip(wt).unwrap();
        out.push(r.offset());
    }
    out
}

fn sample_v1_request() -> prompb::WriteRequest {
    prompb::WriteRequest {
        timeseries: vec![
            pts(
                &[("__name__", "up"), ("job", "node"), ("instance", "a:9100")],
                &[(1000, 1.0), (2000, f64::from_bits(STALE_NAN))],
            ),
            pts(
                &[("job", "x"), ("__name__", "http_requests_total")],
                &[(-5, f64::INFINITY), (0, f64::NEG_INFINITY), (i64::MIN, 0.5)],
            ),
        ],
        metadata: vec![prompb::MetricMetadata {
            r#type: 1,
            metric_family_name: "up".into(),
            help: "help text".into(),
            unit: "".into(),
        }],
    }
}

// ---------- 1.0 ----------

#[test]
fn v1_decodes_what_prost_encodes() {
    let mut want = sample_v1_request();
    want.timeseries[0].exemplars.push(prompb::Exemplar {
        labels: vec![pl("trace_id", "abc")],
        value: 1.5,
        timestamp: 1000,
    });
    let buf = want.encode_to_vec();
    let req = decode_v1(&buf).unwrap();
    let expect: Vec<_> = want.timeseries.iter().map(sorted_owned).collect();
    assert_eq!(owned(&req), expect);
    assert_eq!(req.num_samples(), 5);
    assert_eq!(req.exemplars, 1);
    assert_eq!(req.histograms, 0);
    assert!(req.invalid.is_empty());
    assert_eq!(req.tenant, None);
    assert_eq!(req.replica, 0);
}

#[test]
fn v1_encoder_output_is_read_back_by_prost() {
    let labels = [l("__name__", "up"), l("a b.c", "x\ny"), l("job", "é")];
    let samples = [
        s(1, 0.0),
        s(-1, -0.0),
        s(i64::MAX, f64::NAN),
        s(3, f64::from_bits(STALE_NAN)),
    ];
    let mut buf = Vec::new();
    encode_timeseries(&labels, &samples, &mut buf);
    encode_timeseries(&[l("__name__", "b")], &[], &mut buf);
    let got = prompb::WriteRequest::decode(buf.as_slice()).unwrap();
    assert_eq!(got.timeseries.len(), 2);
    let ts = &got.timeseries[0];
    assert_eq!(
        ts.labels,
        labels
            .iter()
            .map(|x| pl(x.name, x.value))
            .collect::<Vec<_>>()
    );
    let bits: Vec<_> = ts
        .samples
        .iter()
        .map(|x| (x.timestamp, x.value.to_bits()))
        .collect();
    let want: Vec<_> = samples
        .iter()
        .map(|x| (x.timestamp, x.value.to_bits()))
        .collect();
    assert_eq!(bits, want);
}

#[test]
fn stale_nan_and_negative_zero_survive_bit_exact() {
    let samples = [
        s(1, f64::from_bits(STALE_NAN)),
        s(2, -0.0),
        s(3, f64::from_bits(0x7ff8_0000_0000_0001)),
    ];
    let labels = [l("__name__", "x")];
    let bits = |ss: &[Sample]| ss.iter().map(|x| x.value.to_bits()).collect::<Vec<_>>();

    let mut v1 = Vec::new();
    encode_timeseries(&labels, &samples, &mut v1);
    let compressed = snap::raw::Encoder::new().compress_vec(&v1).unwrap();
    let mut buf = Vec::new();
    decompress_into(&compressed, &Limits::default(), &mut buf).unwrap();
    let req = decode_v1(&buf).unwrap();
    assert_eq!(bits(req.series_samples(&req.series[0])), bits(&samples));

    let mut enc = V2Encoder::new();
    enc.add_series(&labels, &samples);
    let mut v2 = Vec::new();
    enc.finish(&mut v2);
    let req = decode_v2(&v2).unwrap();
    assert_eq!(bits(req.series_samples(&req.series[0])), bits(&samples));
    assert_eq!(
        req.series_samples(&req.series[0])[0].value.to_bits(),
        STALE_NAN
    );
}

#[test]
fn unsorted_labels_are_sorted() {
    let want = prompb::WriteRequest {
        timeseries: vec![pts(
            &[("zeta", "1"), ("job", "j"), ("__name__", "m"), ("a", "2")],
            &[(1, 1.0)],
        )],
        metadata: vec![],
    };
    let buf = want.encode_to_vec();
    let req = decode_v1(&buf).unwrap();
    let names: Vec<_> = req
        .series_labels(&req.series[0])
        .iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["__name__", "a", "job", "zeta"]);
}

/// Builds a 1.0 request with one valid series around one series with the given labels.
fn v1_with_bad(labels: &[(&str, &str)]) -> Vec<u8> {
    prompb::WriteRequest {
        timeseries: vec![
            pts(&[("__name__", "ok1")], &[(1, 1.0)]),
            pts(labels, &[(1, 1.0), (2, 2.0)]),
            pts(&[("__name__", "ok2"), ("job", "j")], &[(3, 3.0)]),
        ],
        metadata: vec![],
    }
    .encode_to_vec()
}

#[test]
fn validation_rules_reject_only_the_bad_series() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "no labels"),
        (&[("job", "x")], "missing metric name"),
        (&[("__name__", ""), ("job", "x")], "empty metric name"),
        (&[("__name__", "m"), ("", "x")], "empty label name"),
        (
            &[("__name__", "m"), ("job", "")],
            r#"empty value for label "job""#,
        ),
        (
            &[("__name__", "m"), ("job", "a"), ("job", "b")],
            r#"duplicate label name "job""#,
        ),
        (
            &[("job", "b"), ("__name__", "m"), ("job", "a")],
            r#"duplicate label name "job""#,
        ),
        (
            &[("__name__", "m"), ("__name__", "m")],
            r#"duplicate label name "__name__""#,
        ),
    ];
    for (labels, reason) in cases {
        let buf = v1_with_bad(labels);
        let req = decode_v1(&buf).unwrap();
        assert_eq!(req.series.len(), 2, "{labels:?}");
        assert_eq!(req.invalid.len(), 1, "{labels:?}");
        let bad = &req.invalid[0];
        assert_eq!(bad.index, 1);
        assert_eq!(bad.samples, 2);
        let msg = bad.reason.to_string();
        assert!(msg.contains(reason), "{labels:?}: {msg}");
        assert!(msg.starts_with("series {"), "{msg}");
        // The rejected series left nothing behind in the flat vectors.
        assert_eq!(req.labels.len(), 3);
        assert_eq!(req.num_samples(), 2);
        assert_eq!(
            owned(&req)[1],
            (
                vec![
                    ("__name__".into(), "ok2".into()),
                    ("job".into(), "j".into())
                ],
                vec![(3, 3f64.to_bits())]
            )
        );
        assert_eq!(req.num_invalid_samples(), 2);
    }
}

#[test]
fn utf8_names_with_dots_spaces_and_newline_values_are_valid() {
    let buf = v1_with_bad(&[
        ("__name__", "métrique.total"),
        ("label with spaces", "x"),
        ("a.b", "multi\nline"),
    ]);
    let req = decode_v1(&buf).unwrap();
    assert!(req.invalid.is_empty());
    assert_eq!(req.series.len(), 3);
}

#[test]
fn v1_series_without_samples_is_valid_and_histograms_are_rejected() {
    let mut buf = Vec::new();
    encode_timeseries(&[l("__name__", "empty")], &[], &mut buf);
    // A series with a histogram (field 4) and a sample.
    let hist = msg(|o| {
        put_key(o, 1, VARINT);
        put_varint(o, 3);
    });
    let ts = msg(|o| {
        put_bytes(
            o,
            1,
            &msg(|m| {
                put_bytes(m, 1, b"__name__");
                put_bytes(m, 2, b"h");
            }),
        );
        put_bytes(o, 2, &raw_sample(1, 1.0));
        put_bytes(o, 4, &hist);
        put_bytes(o, 4, &hist);
    });
    put_bytes(&mut buf, 1, &ts);
    let req = decode_v1(&buf).unwrap();
    assert_eq!(req.series.len(), 1);
    assert_eq!(req.histograms, 2);
    assert_eq!(req.invalid.len(), 1);
    assert_eq!(req.invalid[0].index, 1);
    assert_eq!(req.invalid[0].samples, 3);
    assert_eq!(
        req.invalid[0].reason.to_string(),
        r#"series {__name__="h"}: native histograms are not supported yet"#
    );
}

// ---------- Thanos ----------

#[test]
fn thanos_round_trips_with_prost() {
    let v1 = sample_v1_request();
    for (tenant, replica) in [("team-a", 2i64), ("", 0), ("t", -1)] {
        let want = storepb::WriteRequest {
            timeseries: v1.timeseries.clone(),
            tenant: tenant.into(),
            replica,
            timeseries_tenant_data: vec![],
        };
        let buf = want.encode_to_vec();
        let req = decode_thanos_write(&buf).unwrap();
        assert_eq!(
            owned(&req),
            want.timeseries.iter().map(sorted_owned).collect::<Vec<_>>()
        );
        assert_eq!(req.tenant, (!tenant.is_empty()).then_some(tenant));
        assert_eq!(req.replica, replica);

        // And back: our encoder, read by prost, gives the sorted series.
        let mut out = Vec::new();
        encode_thanos_write(&req, &req.series, tenant, replica, &mut out);
        let back = storepb::WriteRequest::decode(out.as_slice()).unwrap();
        assert_eq!(back.tenant, tenant);
        assert_eq!(back.replica, replica);
        assert_eq!(
            back.timeseries.iter().map(sorted_owned).collect::<Vec<_>>(),
            owned(&req)
        );
    }
}

#[test]
fn thanos_encoder_forwards_a_subset_of_series() {
    let buf = sample_v1_request().encode_to_vec();
    let req = decode_v1(&buf).unwrap();
    let mut out = Vec::new();
    encode_thanos_write(&req, [&req.series[1]], "t", 1, &mut out);
    let back = decode_thanos_write(&out).unwrap();
    assert_eq!(owned(&back), owned(&req)[1..]);
    assert_eq!(back.tenant, Some("t"));
    assert_eq!(back.replica, 1);
}

// ---------- 2.0 ----------

#[test]
fn v2_hand_built_request_decodes() {
    let symbols = ["", "__name__", "up", "job", "node", "instance", "a:1"];
    let buf = v2_request(
        &symbols,
        &[
            // Unsorted refs: instance, __name__, job.
            v2_series(&[5, 6, 1, 2, 3, 4], &[(10, 1.0), (20, 2.0)], &[]),
            v2_series(&[1, 2], &[(30, 3.0)], &[]),
        ],
    );
    let req = decode_v2(&buf).unwrap();
    assert!(req.invalid.is_empty());
    assert_eq!(
        owned(&req)[0].0,
        [("__name__", "up"), ("instance", "a:1"), ("job", "node")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(req.num_samples(), 3);
}

#[test]
fn v2_encoder_round_trips() {
    let mut enc = V2Encoder::new();
    enc.add_series(&[l("__name__", "a"), l("job", "j")], &[s(1, 1.0)]);
    enc.add_series(
        &[l("job", "j"), l("__name__", "b")],
        &[s(2, 2.0), s(3, 3.0)],
    );
    let mut buf = Vec::new();
    enc.finish(&mut buf);
    let req = decode_v2(&buf).unwrap();
    assert_eq!(req.series.len(), 2);
    // Symbols are shared: "", __name__, a, job, j, b.
    assert_eq!(buf.iter().filter(|&&b| b == b'j').count(), 2);
    let mut again = Vec::new();
    encode_v2(&req, &req.series, &mut again);
    assert_eq!(owned(&decode_v2(&again).unwrap()), owned(&req));
}

#[test]
fn v2_refs_unpacked_split_and_symbols_last_are_accepted() {
    let unpacked = msg(|o| {
        put_key(o, 1, VARINT);
        put_varint(o, 1);
        put_bytes(o, 1, &packed(&[2, 3]));
        put_bytes(o, 2, &raw_sample(1, 1.0));
        put_key(o, 1, VARINT);
        put_varint(o, 4);
    });
    // Series before symbols.
    let buf = msg(|o| {
        put_bytes(o, 5, &unpacked);
        for sym in ["", "__name__", "m", "job", "j"] {
            put_bytes(o, 4, sym.as_bytes());
        }
    });
    let req = decode_v2(&buf).unwrap();
    assert_eq!(
        owned(&req)[0].0,
        [("__name__", "m"), ("job", "j")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
}

#[test]
fn v2_symbol_errors_are_whole_request_errors() {
    let syms = ["", "__name__", "m"];
    let cases = [
        (
            v2_request(&syms, &[v2_series(&[1, 3], &[(1, 1.0)], &[])]),
            "out of range",
        ),
        (
            v2_request(&syms, &[v2_series(&[1, 2, 1], &[(1, 1.0)], &[])]),
            "odd length",
        ),
        (
            v2_request(
                &["x", "__name__", "m"],
                &[v2_series(&[1, 2], &[(1, 1.0)], &[])],
            ),
            "symbols[0]",
        ),
        (
            v2_request(
                &syms,
                &[v2_series(&[1, u32::MAX as u64 + 1], &[(1, 1.0)], &[])],
            ),
            "out of range",
        ),
        (
            // Metadata help_ref out of range.
            v2_request(
                &syms,
                &[v2_series(
                    &[1, 2],
                    &[(1, 1.0)],
                    &msg(|o| {
                        put_bytes(
                            o,
                            5,
                            &msg(|m| {
                                put_key(m, 3, VARINT);
                                put_varint(m, 9);
                            }),
                        )
                    }),
                )],
            ),
            "out of range",
        ),
        (
            // Exemplar with an odd number of refs.
            v2_request(
                &syms,
                &[v2_series(
                    &[1, 2],
                    &[(1, 1.0)],
                    &msg(|o| put_bytes(o, 4, &msg(|m| put_bytes(m, 1, &packed(&[1]))))),
                )],
            ),
            "odd length",
        ),
    ];
    for (buf, want) in cases {
        let err = decode_v2(&buf).unwrap_err();
        assert_eq!(err.class(), ErrorClass::BadRequest);
        assert!(err.to_string().contains(want), "{err}");
    }
    let bad_utf8 = msg(|o| put_bytes(o, 4, b"\xc3\x28"));
    assert!(matches!(
        decode_v2(&bad_utf8),
        Err(DecodeError::InvalidUtf8 { .. })
    ));
}

#[test]
fn v2_validation_histograms_exemplars_metadata() {
    let syms = ["", "__name__", "m", "job", "j", "trace_id", "abc", "help"];
    let hist = msg(|o| {
        put_key(o, 1, VARINT);
        put_varint(o, 4);
        put_key(o, 4, VARINT);
        put_varint(o, 3);
    });
    let exemplar = msg(|o| {
        put_bytes(o, 1, &packed(&[5, 6]));
        put_key(o, 2, FIXED64);
        o.extend_from_slice(&1.5f64.to_le_bytes());
        put_key(o, 3, VARINT);
        put_varint(o, 5);
    });
    let metadata = msg(|o| {
        put_key(o, 1, VARINT);
        put_varint(o, 2);
        put_key(o, 3, VARINT);
        put_varint(o, 7);
        put_key(o, 4, VARINT);
        put_varint(o, 0);
    });
    let created_ts = msg(|o| {
        put_key(o, 6, VARINT);
        put_varint(o, 1234);
    });
    let series = [
        // 0: valid, with exemplar, metadata and the old created_timestamp field.
        v2_series(
            &[1, 2],
            &[(1, 1.0)],
            &[
                msg(|o| put_bytes(o, 4, &exemplar)),
                msg(|o| put_bytes(o, 5, &metadata)),
                created_ts,
            ]
            .concat(),
        ),
        // 1: histograms only.
        v2_series(&[1, 2, 3, 4], &[], &msg(|o| put_bytes(o, 3, &hist))),
        // 2: neither samples nor histograms.
        v2_series(&[1, 2], &[], &[]),
        // 3: no labels.
        v2_series(&[], &[(1, 1.0)], &[]),
        // 4: empty value (symbol 0).
        v2_series(&[1, 2, 3, 0], &[(1, 1.0)], &[]),
        // 5: empty name (symbol 0 as a name).
        v2_series(&[1, 2, 0, 4], &[(1, 1.0)], &[]),
        // 6: missing __name__.
        v2_series(&[3, 4], &[(1, 1.0), (2, 2.0)], &[]),
        // 7: duplicate names.
        v2_series(&[3, 4, 1, 2, 3, 2], &[(1, 1.0)], &[]),
        // 8: valid after all that.
        v2_series(&[3, 4, 1, 2], &[(5, 5.0)], &[]),
    ];
    let buf = v2_request(&syms, &series);
    let req = decode_v2(&buf).unwrap();
    assert_eq!(req.series.len(), 2);
    assert_eq!(req.exemplars, 1);
    assert_eq!(req.histograms, 1);
    let got: Vec<_> = req
        .invalid
        .iter()
        .map(|i| (i.index, i.samples, i.reason.to_string()))
        .collect();
    let want_parts = [
        (1, 1, "native histograms are not supported yet"),
        (2, 0, "no samples or histograms"),
        (3, 1, "no labels"),
        (4, 1, r#"empty value for label "job""#),
        (5, 1, "empty label name"),
        (6, 2, "missing metric name"),
        (7, 1, r#"duplicate label name "job""#),
    ];
    assert_eq!(got.len(), want_parts.len(), "{got:?}");
    for ((index, samples, msg), (wi, ws, wm)) in got.iter().zip(want_parts) {
        assert_eq!((*index, *samples), (wi, ws), "{msg}");
        assert!(msg.contains(wm), "{msg} !~ {wm}");
    }
    assert_eq!(
        owned(&req)[1],
        (
            vec![("__name__".into(), "m".into()), ("job".into(), "j".into())],
            vec![(5, 5f64.to_bits())]
        )
    );
}

// ---------- malformed input ----------

#[test]
fn unknown_fields_of_every_wire_type_are_skipped_at_every_level() {
    // 1.0 / Thanos: unknown fields at the top, in TimeSeries, Label and Sample.
    let label = [
        msg(|o| {
            put_bytes(o, 1, b"__name__");
            put_bytes(o, 2, b"m");
        }),
        unknown_fields(10),
    ]
    .concat();
    let sample = [raw_sample(7, 7.0), unknown_fields(20)].concat();
    let ts = [
        msg(|o| {
            put_bytes(o, 1, &label);
            put_bytes(o, 2, &sample);
        }),
        unknown_fields(30),
    ]
    .concat();
    let body = [
        unknown_fields(40),
        msg(|o| put_bytes(o, 1, &ts)),
        unknown_fields(50),
    ]
    .concat();
    let want = vec![(
        vec![("__name__".to_owned(), "m".to_owned())],
        vec![(7, 7f64.to_bits())],
    )];
    assert_eq!(owned(&decode_v1(&body).unwrap()), want);
    assert_eq!(owned(&decode_thanos_write(&body).unwrap()), want);

    // 2.0: unknown at the top (incl. reserved 1..=3), in TimeSeries, Sample, Exemplar, Metadata.
    let ts = v2_series(
        &[1, 2],
        &[],
        &[
            msg(|o| put_bytes(o, 2, &sample)),
            unknown_fields(30),
            msg(|o| put_bytes(o, 4, &unknown_fields(10))),
            msg(|o| put_bytes(o, 5, &unknown_fields(10))),
        ]
        .concat(),
    );
    // Fields 1..=3 are reserved in 2.0 (they are 1.0's): skipped like any unknown field.
    let reserved = msg(|o| {
        put_key(o, 1, VARINT);
        put_varint(o, 1);
        put_key(o, 2, FIXED64);
        o.extend_from_slice(&[0; 8]);
        put_bytes(o, 3, b"x");
    });
    let body = [
        reserved,
        unknown_fields(6),
        v2_request(&["", "__name__", "m"], &[ts]),
        unknown_fields(60),
    ]
    .concat();
    assert_eq!(owned(&decode_v2(&body).unwrap()), want);
}

#[test]
fn groups_wrong_wire_types_and_bad_utf8_are_rejected() {
    let group = msg(|o| {
        put_key(o, 9, 3);
        put_key(o, 9, 4);
    });
    for decode in [decode_v1, decode_v2, decode_thanos_write] {
        assert!(matches!(decode(&group), Err(DecodeError::Malformed { .. })));
    }
    // Known fields with the wrong wire type, at each level.
    let wrong: &[Vec<u8>] = &[
        msg(|o| {
            put_key(o, 1, VARINT);
            put_varint(o, 1);
        }),
        msg(|o| {
            put_bytes(
                o,
                1,
                &msg(|t| {
                    put_key(t, 2, FIXED64);
                    t.extend_from_slice(&[0; 8]);
                }),
            )
        }),
        msg(|o| {
            put_bytes(
                o,
                1,
                &msg(|t| {
                    put_bytes(
                        t,
                        1,
                        &msg(|lb| {
                            put_key(lb, 1, VARINT);
                            put_varint(lb, 1);
                        }),
                    )
                }),
            )
        }),
        msg(|o| {
            put_bytes(
                o,
                1,
                &msg(|t| {
                    put_bytes(
                        t,
                        2,
                        &msg(|sm| {
                            put_key(sm, 1, VARINT);
                            put_varint(sm, 1);
                        }),
                    )
                }),
            )
        }),
    ];
    for body in wrong {
        let err = decode_v1(body).unwrap_err();
        assert!(matches!(err, DecodeError::WrongWireType { .. }), "{err:?}");
        assert_eq!(err.class(), ErrorClass::BadRequest);
    }
    let tenant_varint = msg(|o| {
        put_key(o, 2, VARINT);
        put_varint(o, 1);
    });
    assert!(decode_thanos_write(&tenant_varint).is_err());
    let v2_samples_varint = v2_request(
        &["", "__name__", "m"],
        &[msg(|o| {
            put_key(o, 2, VARINT);
            put_varint(o, 1);
        })],
    );
    assert!(decode_v2(&v2_samples_varint).is_err());

    let bad_utf8 = msg(|o| {
        put_bytes(
            o,
            1,
            &msg(|t| put_bytes(t, 1, &msg(|lb| put_bytes(lb, 2, b"ok\xff")))),
        )
    });
    let err = decode_v1(&bad_utf8).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::InvalidUtf8 {
                field: "Label.value",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn label_fast_path_and_general_path_agree() {
    let long = "é".repeat(100);
    // Canonical, long (2-byte lengths), value before name, labels after samples, empty value.
    let label = |name: &[u8], value: &[u8], swap: bool| {
        msg(|m| {
            if swap {
                put_bytes(m, 2, value);
                put_bytes(m, 1, name);
            } else {
                put_bytes(m, 1, name);
                put_bytes(m, 2, value);
            }
        })
    };
    let ts = msg(|o| {
        put_bytes(o, 1, &label(b"__name__", b"m", false));
        put_bytes(o, 1, &label(long.as_bytes(), b"v", false));
        put_bytes(o, 1, &label(b"b", long.as_bytes(), true));
        put_bytes(o, 2, &raw_sample(1, 1.0));
        put_bytes(o, 1, &label("ü".as_bytes(), "ß".as_bytes(), false));
    });
    let body = msg(|o| put_bytes(o, 1, &ts));
    let req = decode_v1(&body).unwrap();
    let want = prompb::WriteRequest::decode(body.as_slice()).unwrap();
    assert_eq!(owned(&req), vec![sorted_owned(&want.timeseries[0])]);

    // Invalid UTF-8 is caught whichever path a label takes.
    for bad in [
        label(b"\xc3\x28", b"x", false),
        label(b"x", b"\xff", false),
        label(b"x", b"\xff", true),
        label(b"__name__", &[b"a".repeat(200), vec![0xff]].concat(), false),
    ] {
        let body = msg(|o| put_bytes(o, 1, &msg(|t| put_bytes(t, 1, &bad))));
        let err = decode_v1(&body).unwrap_err();
        assert!(matches!(err, DecodeError::InvalidUtf8 { .. }), "{err:?}");
    }
}

#[test]
fn every_truncation_errors_or_is_a_shorter_valid_message() {
    let mut v1 = sample_v1_request();
    v1.timeseries[0].exemplars.push(prompb::Exemplar {
        labels: vec![pl("trace_id", "abc")],
        value: 1.5,
        timestamp: 1000,
    });
    let v1 = v1.encode_to_vec();
    let thanos = storepb::WriteRequest {
        timeseries: sample_v1_request().timeseries,
        tenant: "tenant".into(),
        replica: 3,
        timeseries_tenant_data: vec![],
    }
    .encode_to_vec();
    let mut enc = V2Encoder::new();
    enc.add_series(
        &[l("__name__", "a"), l("job", "j")],
        &[s(1, 1.0), s(-2, 2.5)],
    );
    enc.add_series(&[l("__name__", "b")], &[s(3, f64::NAN)]);
    let mut v2 = Vec::new();
    enc.finish(&mut v2);

    type Decode = for<'a> fn(&'a [u8]) -> Result<WriteRequest<'a>, DecodeError>;
    let cases: [(&[u8], Decode); 3] = [
        (&v1, decode_v1),
        (&thanos, decode_thanos_write),
        (&v2, decode_v2),
    ];
    for (full, decode) in cases {
        assert!(decode(full).is_ok());
        let boundaries = top_level_boundaries(full);
        for cut in 0..full.len() {
            let result = decode(&full[..cut]);
            if !boundaries.contains(&cut) {
                let err = result
                    .err()
                    .unwrap_or_else(|| panic!("cut at {cut} decoded"));
                assert_eq!(err.class(), ErrorClass::BadRequest);
            }
        }
    }
    // A single series: every non-empty strict prefix is an error.
    let mut one = Vec::new();
    encode_timeseries(&[l("__name__", "m")], &[s(1, 1.0)], &mut one);
    for cut in 1..one.len() {
        assert!(decode_v1(&one[..cut]).is_err(), "cut at {cut}");
    }
}

// ---------- negotiation and decompression ----------

#[test]
fn negotiate_follows_prometheus() {
    use Protocol::*;
    let ok: &[(Option<&str>, Option<&str>, Protocol)] = &[
        (Some("application/x-protobuf"), Some("snappy"), V1),
        (None, Some("snappy"), V1),
        (Some(""), None, V1),
        (Some("application/x-protobuf"), None, V1),
        (
            Some("application/x-protobuf;proto=prometheus.WriteRequest"),
            Some("snappy"),
            V1,
        ),
        (
            Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
            Some("snappy"),
            V2,
        ),
        (
            Some("Application/X-Protobuf ; proto=io.prometheus.write.v2.Request ; charset=utf-8"),
            Some("SNAPPY"),
            V2,
        ),
        (
            Some("application/x-protobuf;proto=\"io.prometheus.write.v2.Request\""),
            Some("snappy"),
            V2,
        ),
        (Some("application/x-protobuf;"), Some("snappy"), V1),
        (
            Some("application/x-protobuf;proto=prometheus.WriteRequest;proto=io.prometheus.write.v2.Request"),
            Some("snappy"),
            V1,
        ),
    ];
    for &(ct, enc, want) in ok {
        assert_eq!(negotiate(ct, enc).unwrap(), want, "{ct:?} {enc:?}");
    }
    let bad: &[(Option<&str>, Option<&str>)] = &[
        (Some("application/json"), Some("snappy")),
        (Some("image/png"), Some("snappy")),
        (
            Some("application/x-protobuf;proto=io.prometheus.write.v3.Request"),
            Some("snappy"),
        ),
        (Some("application/x-protobuf;proto"), Some("snappy")),
        (Some("application/x-protobuffer"), Some("snappy")),
        (Some("application/x-protobuf"), Some("gzip")),
        (Some("application/x-protobuf"), Some("deflate")),
        (Some("application/x-protobuf"), Some("zstd")),
        (Some("application/json"), None),
    ];
    for &(ct, enc) in bad {
        let err = negotiate(ct, enc).unwrap_err();
        assert_eq!(
            err.class(),
            ErrorClass::UnsupportedMediaType,
            "{ct:?} {enc:?}"
        );
        assert_eq!(
            crate::server::status::http_status(err.class()),
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}

#[test]
fn decompress_checks_limits_before_allocating() {
    let limits = Limits {
        max_compressed_bytes: 1000,
        max_decompressed_bytes: 1 << 20,
    };
    let mut out = Vec::new();

    // A bomb: the header declares 1 GiB; the body is a few bytes.
    let mut bomb = Vec::new();
    put_varint(&mut bomb, 1 << 30);
    bomb.extend_from_slice(&[0xfe, 0xff, 0xff, 0x00]);
    let err = decompress_into(&bomb, &limits, &mut out).unwrap_err();
    assert!(matches!(err, DecodeError::DecompressedTooLarge { size, .. } if size == 1 << 30));
    assert_eq!(err.class(), ErrorClass::TooLarge);
    assert_eq!(out.capacity(), 0, "nothing allocated for a refused bomb");

    let big = vec![0u8; 1001];
    let err = decompress_into(&big, &limits, &mut out).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::CompressedTooLarge {
            size: 1001,
            limit: 1000
        }
    ));
    assert_eq!(
        crate::server::status::http_status(err.class()),
        http::StatusCode::PAYLOAD_TOO_LARGE
    );

    // Corrupt and empty bodies are 400.
    for body in [&b""[..], b"\x05abc", b"\xff\xff\xff\xff\xff\xff"] {
        let err = decompress_into(body, &limits, &mut out).unwrap_err();
        assert_eq!(err.class(), ErrorClass::BadRequest, "{body:?}: {err}");
        assert!(out.is_empty());
    }

    // Valid bodies, reusing the buffer; a shorter second body leaves nothing of the first.
    let first = vec![b'a'; 5000];
    let c = snap::raw::Encoder::new().compress_vec(&first).unwrap();
    decompress_into(&c, &limits, &mut out).unwrap();
    assert_eq!(out, first);
    let c = snap::raw::Encoder::new().compress_vec(b"xyz").unwrap();
    decompress_into(&c, &limits, &mut out).unwrap();
    assert_eq!(out, b"xyz");
    assert!(out.capacity() >= 5000);

    // Exactly at the limit is fine.
    let exact = vec![1u8; 1 << 20];
    let c = snap::raw::Encoder::new().compress_vec(&exact).unwrap();
    let limits = Limits {
        max_compressed_bytes: c.len(),
        ..limits
    };
    decompress_into(&c, &limits, &mut out).unwrap();
    assert_eq!(out.len(), 1 << 20);
    assert_eq!(Limits::default().max_decompressed_bytes, 64 << 20);
}

#[test]
fn decode_dispatches_and_recycle_keeps_allocations() {
    let buf = sample_v1_request().encode_to_vec();
    let req = decode(Protocol::V1, &buf).unwrap();
    assert_eq!(req.series.len(), 2);
    let cap = req.labels.capacity();
    let mut reused = req.recycle();
    assert!(reused.labels.is_empty());
    assert_eq!(reused.labels.capacity(), cap);
    let mut v2 = Vec::new();
    let mut enc = V2Encoder::new();
    enc.add_series(&[l("__name__", "z")], &[s(1, 1.0)]);
    enc.finish(&mut v2);
    decode_into(Protocol::V2, &v2, &mut reused).unwrap();
    assert_eq!(reused.series.len(), 1);
    assert_eq!(reused.labels.capacity(), cap);
    reused.clear();
    assert!(reused.series.is_empty() && reused.labels.is_empty());
}

#[test]
fn foreign_series_ranges_do_not_panic() {
    let req = WriteRequest::default();
    let s = Series {
        labels: 5..9,
        samples: 2..9,
    };
    assert!(req.series_labels(&s).is_empty());
    assert!(req.series_samples(&s).is_empty());
}

// ---------- property tests ----------

fn label_set() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        "[a-zA-Z0-9_.: ]{1,8}",
        prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_. ]{0,10}", "\\PC{1,12}", 0..6),
    )
        .prop_map(|(name, mut rest)| {
            rest.insert("__name__".into(), name);
            rest.into_iter().collect::<Vec<_>>()
        })
        .prop_shuffle()
}

fn samples() -> impl Strategy<Value = Vec<(i64, u64)>> {
    prop::collection::vec((any::<i64>(), any::<u64>()), 0..5)
}

fn series_set() -> impl Strategy<Value = Vec<OwnedSeries>> {
    prop::collection::vec((label_set(), samples()), 0..6)
}

fn expected(set: &[OwnedSeries]) -> Vec<OwnedSeries> {
    set.iter()
        .map(|(labels, samples)| {
            let mut labels = labels.clone();
            labels.sort();
            (labels, samples.clone())
        })
        .collect()
}

fn borrowed(labels: &[(String, String)]) -> Vec<Label<'_>> {
    labels.iter().map(|(n, v)| l(n, v)).collect()
}

fn to_samples(samples: &[(i64, u64)]) -> Vec<Sample> {
    samples
        .iter()
        .map(|&(t, bits)| s(t, f64::from_bits(bits)))
        .collect()
}

proptest! {
    #[test]
    fn prop_v1_and_thanos_round_trip(set in series_set(), tenant in "[a-z]{0,6}", replica in any::<i64>()) {
        let mut buf = Vec::new();
        for (labels, samples) in &set {
            encode_timeseries(&borrowed(labels), &to_samples(samples), &mut buf);
        }
        let req = decode_v1(&buf).unwrap();
        prop_assert!(req.invalid.is_empty());
        prop_assert_eq!(owned(&req), expected(&set));

        let mut thanos = Vec::new();
        encode_thanos_write(&req, &req.series, &tenant, replica, &mut thanos);
        let back = decode_thanos_write(&thanos).unwrap();
        prop_assert_eq!(owned(&back), expected(&set));
        prop_assert_eq!(back.tenant.unwrap_or(""), tenant.as_str());
        prop_assert_eq!(back.replica, replica);

        // The independent decoder agrees.
        let p = storepb::WriteRequest::decode(thanos.as_slice()).unwrap();
        prop_assert_eq!(p.timeseries.iter().map(sorted_owned).collect::<Vec<_>>(), expected(&set));
    }

    #[test]
    fn prop_prost_encoded_v1_decodes(set in series_set()) {
        let want = prompb::WriteRequest {
            timeseries: set.iter().map(|(labels, samples)| prompb::TimeSeries {
                labels: labels.iter().map(|(n, v)| pl(n, v)).collect(),
                samples: samples.iter().map(|&(t, b)| ps(t, f64::from_bits(b))).collect(),
                exemplars: vec![],
            }).collect(),
            metadata: vec![],
        };
        let buf = want.encode_to_vec();
        let req = decode_v1(&buf).unwrap();
        // prost omits -0.0 like +0.0 (proto3 default), so both read back as +0.0.
        let mut exp = expected(&set);
        for (_, samples) in &mut exp {
            for (_, bits) in samples.iter_mut() {
                if f64::from_bits(*bits) == 0.0 {
                    *bits = 0;
                }
            }
        }
        prop_assert_eq!(owned(&req), exp);
    }

    #[test]
    fn prop_v2_round_trip(set in series_set()) {
        // 2.0 requires samples: give empty series one.
        let set: Vec<_> = set.into_iter().map(|(l, mut s)| {
            if s.is_empty() { s.push((1, 0)); }
            (l, s)
        }).collect();
        let mut enc = V2Encoder::new();
        let owned_samples: Vec<_> = set.iter().map(|(_, s)| to_samples(s)).collect();
        for ((labels, _), samples) in set.iter().zip(&owned_samples) {
            enc.add_series(&borrowed(labels), samples);
        }
        let mut buf = Vec::new();
        enc.finish(&mut buf);
        let req = decode_v2(&buf).unwrap();
        prop_assert!(req.invalid.is_empty());
        prop_assert_eq!(owned(&req), expected(&set));
    }

    #[test]
    fn prop_decoders_never_panic_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_v1(&bytes);
        let _ = decode_v2(&bytes);
        let _ = decode_thanos_write(&bytes);
        let mut out = Vec::new();
        let _ = decompress_into(&bytes, &Limits::default(), &mut out);
    }

    #[test]
    fn prop_decoders_never_panic_on_mutated_messages(
        set in series_set(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut v1 = Vec::new();
        let mut enc = V2Encoder::new();
        let all: Vec<_> = set.iter().map(|(l, s)| (borrowed(l), to_samples(s))).collect();
        for (labels, samples) in &all {
            encode_timeseries(labels, samples, &mut v1);
            enc.add_series(labels, samples);
        }
        let mut v2 = Vec::new();
        enc.finish(&mut v2);
        for mut buf in [v1, v2] {
            if buf.is_empty() { continue; }
            for (i, b) in &edits {
                let i = i.index(buf.len());
                buf[i] = *b;
            }
            for r in [decode_v1(&buf), decode_v2(&buf), decode_thanos_write(&buf)].into_iter().flatten() {
                // Whatever decodes must be internally consistent.
                for s in &r.series {
                    let labels = r.series_labels(s);
                    prop_assert!(!labels.is_empty());
                    prop_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
                    prop_assert!(labels.iter().any(|l| l.name == METRIC_NAME && !l.value.is_empty()));
                }
            }
        }
    }
}

/// Writes the fuzz seed corpus: `cargo test -p ringest write_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let v1 = sample_v1_request().encode_to_vec();
    let thanos = storepb::WriteRequest {
        timeseries: sample_v1_request().timeseries,
        tenant: "tenant-a".into(),
        replica: 1,
        timeseries_tenant_data: vec![],
    }
    .encode_to_vec();
    let mut enc = V2Encoder::new();
    enc.add_series(
        &[l("job", "j"), l("__name__", "a")],
        &[s(1, 1.0), s(2, f64::from_bits(STALE_NAN))],
    );
    enc.add_series(&[l("__name__", "b"), l("a.b c", "x")], &[s(3, -0.0)]);
    let mut v2 = Vec::new();
    enc.finish(&mut v2);
    let v2_hist = v2_request(
        &["", "__name__", "h", "trace_id", "t"],
        &[v2_series(
            &[1, 2],
            &[],
            &msg(|o| {
                put_bytes(
                    o,
                    3,
                    &msg(|h| {
                        put_key(h, 1, VARINT);
                        put_varint(h, 1);
                    }),
                );
                put_bytes(o, 4, &msg(|e| put_bytes(e, 1, &packed(&[3, 4]))));
            }),
        )],
    );
    let seeds: [(&str, &str, &[u8]); 4] = [
        ("decode_v1", "two_series", &v1),
        ("decode_thanos_write", "tenant_replica", &thanos),
        ("decode_v2", "two_series", &v2),
        ("decode_v2", "histogram_exemplar", &v2_hist),
    ];
    for (target, name, bytes) in seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed_{name}")), bytes).unwrap();
    }
}

/// Rough decode throughput, for a sanity check of the hot path:
/// `cargo test --release -p ringest decode_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn decode_throughput() {
    // A typical Prometheus batch: 2000 series of 10 labels with one sample each.
    let names: Vec<String> = (0..2000).map(|i| format!("metric_{}", i % 50)).collect();
    let values: Vec<String> = (0..2000).map(|i| format!("pod-{i:05}-abcdef")).collect();
    let mut v1 = Vec::new();
    let mut enc = V2Encoder::new();
    for i in 0..2000 {
        let labels = [
            l("__name__", &names[i]),
            l("cluster", "prod-eu-west-1"),
            l("container", "app"),
            l("endpoint", "http-metrics"),
            l("instance", "10.0.12.34:8080"),
            l("job", "kubernetes-pods"),
            l("namespace", "payments"),
            l("pod", &values[i]),
            l("service", "payments-api"),
            l("team", "core"),
        ];
        let samples = [s(1_700_000_000_000 + i as i64, i as f64 * 1.5)];
        encode_timeseries(&labels, &samples, &mut v1);
        enc.add_series(&labels, &samples);
    }
    let mut v2 = Vec::new();
    enc.finish(&mut v2);
    type Decode = for<'a> fn(&'a [u8], &mut WriteRequest<'a>) -> Result<(), DecodeError>;
    let cases: [(&str, &[u8], Decode); 2] =
        [("v1", &v1, decode_v1_into), ("v2", &v2, decode_v2_into)];
    for (name, buf, decode) in cases {
        let mut req = WriteRequest::default();
        let iters = 100;
        // Best of several rounds: the machine is shared, the minimum is the least disturbed.
        let mut secs = f64::MAX;
        let rounds = std::env::var("ROUNDS").map_or(15, |r| r.parse().unwrap_or(15));
        for _ in 0..rounds {
            let start = std::time::Instant::now();
            for _ in 0..iters {
                decode(buf, &mut req).unwrap();
                assert_eq!(req.series.len(), 2000);
            }
            secs = secs.min(start.elapsed().as_secs_f64());
        }
        println!(
            "{name}: {} bytes, {:.0} MB/s, {:.1} M samples/s",
            buf.len(),
            (buf.len() * iters) as f64 / secs / 1e6,
            (2000 * iters) as f64 / secs / 1e6
        );
    }
}

#[test]
fn thanos_tenant_tuples_split_into_decodable_batches() {
    let series = sample_v1_request().timeseries;
    let body = storepb::WriteRequest {
        timeseries: vec![],
        tenant: String::new(),
        replica: 2,
        timeseries_tenant_data: vec![
            storepb::TimeSeriesTenantTuple {
                timeseries: series.clone(),
                tenant: "team-a".into(),
            },
            storepb::TimeSeriesTenantTuple {
                timeseries: series[..1].to_vec(),
                tenant: "team-b".into(),
            },
        ],
    }
    .encode_to_vec();
    let batches = thanos_tenant_batches(&body).unwrap();
    assert_eq!(batches.len(), 2);
    let whole = decode_thanos_write(&body).unwrap();
    assert_eq!(
        (whole.tenant_batches, whole.series.len(), whole.tenant),
        (2, 0, None)
    );
    let a = decode_thanos_write(batches[0]).unwrap();
    assert_eq!(a.tenant, Some("team-a"));
    assert_eq!(a.series.len() + a.invalid.len(), series.len());
    let b = decode_thanos_write(batches[1]).unwrap();
    assert_eq!(b.tenant, Some("team-b"));
    assert_eq!(b.series.len() + b.invalid.len(), 1);

    // The classic form has no batches; field 4 with the wrong wire type is refused.
    let classic = storepb::WriteRequest {
        timeseries: series,
        tenant: "t".into(),
        replica: 1,
        timeseries_tenant_data: vec![],
    }
    .encode_to_vec();
    assert!(thanos_tenant_batches(&classic).unwrap().is_empty());
    assert_eq!(decode_thanos_write(&classic).unwrap().tenant_batches, 0);
    assert!(thanos_tenant_batches(&[0x20, 0x01]).is_err());
}

#[test]
fn sized_encoding_equals_encode_thanos_write() {
    let body = sample_v1_request().encode_to_vec();
    let req = decode_v1(&body).unwrap();
    let mut want = Vec::new();
    encode_thanos_write(&req, req.series.iter(), "tenant-a", 1, &mut want);
    let mut got = Vec::new();
    for s in &req.series {
        let (labels, samples) = (req.series_labels(s), req.series_samples(s));
        let len = timeseries_body_len(labels, samples);
        let before = got.len();
        encode_timeseries_sized(labels, samples, len, &mut got);
        assert_eq!(got.len() - before, timeseries_field_len(len));
    }
    encode_thanos_trailer("tenant-a", 1, &mut got);
    assert_eq!(got, want);
}
