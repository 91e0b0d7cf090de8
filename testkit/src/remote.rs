//! Prometheus remote-read and remote-write clients built on the `proto` crate.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use proto::prompb::{
    Label, LabelMatcher, MatcherType, Query, ReadRequest, ReadResponse, ResponseType, Sample,
    TimeSeries, WriteRequest,
};

use crate::http::{http_request, Response};
use crate::{Labels, Samples};

/// A label matcher.
pub fn matcher(kind: MatcherType, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: kind as i32,
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// A query for every series (`__name__=~".+"`) over [start_ms, end_ms].
pub fn query_all(start_ms: i64, end_ms: i64) -> Query {
    Query {
        start_timestamp_ms: start_ms,
        end_timestamp_ms: end_ms,
        matchers: vec![matcher(MatcherType::Re, "__name__", ".+")],
        hints: None,
    }
}

/// Sends a remote-read request (SAMPLES) to `http://addr/api/v1/read`. `Err` carries the status and
/// body of a non-200 answer or the transport error.
pub fn remote_read(
    addr: &str,
    tenant: Option<&str>,
    queries: Vec<Query>,
) -> Result<ReadResponse, String> {
    let mut headers = Vec::new();
    if let Some(t) = tenant {
        headers.push(("THANOS-TENANT", t));
    }
    remote_read_with(addr, &headers, queries)
}

/// [`remote_read`] with extra request headers (a tenant, `Authorization`, ...).
pub fn remote_read_with(
    addr: &str,
    extra_headers: &[(&str, &str)],
    queries: Vec<Query>,
) -> Result<ReadResponse, String> {
    let req = ReadRequest {
        queries,
        accepted_response_types: vec![ResponseType::Samples as i32],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let mut headers = vec![
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Read-Version", "0.1.0"),
    ];
    headers.extend_from_slice(extra_headers);
    let r = http_request(
        "POST",
        addr,
        "/api/v1/read",
        &headers,
        &body,
        Duration::from_secs(60),
    )
    .map_err(|e| format!("remote read {addr}: {e}"))?;
    if r.status != 200 {
        return Err(format!(
            "remote read {addr}: status {}: {}",
            r.status,
            r.text()
        ));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&r.body)
        .map_err(|e| format!("remote read {addr}: snappy: {e}"))?;
    ReadResponse::decode(raw.as_slice()).map_err(|e| format!("remote read {addr}: protobuf: {e}"))
}

/// Labels of a protobuf series as a map; panics on duplicate names.
pub fn pb_labels(labels: &[Label]) -> Labels {
    let mut out = Labels::new();
    for l in labels {
        assert!(
            out.insert(l.name.clone(), l.value.clone()).is_none(),
            "duplicate label {} in {labels:?}",
            l.name
        );
    }
    out
}

/// Remote-reads every series over [start_ms, end_ms] and returns them as labels -> samples (bits).
/// Panics if a series appears twice, if its samples are not strictly increasing in time, or if a
/// sample lies outside the queried range.
pub fn read_all(
    addr: &str,
    tenant: Option<&str>,
    start_ms: i64,
    end_ms: i64,
) -> Result<BTreeMap<Labels, Samples>, String> {
    let mut headers = Vec::new();
    if let Some(t) = tenant {
        headers.push(("THANOS-TENANT", t));
    }
    read_all_with(addr, &headers, start_ms, end_ms)
}

/// [`read_all`] with extra request headers (a tenant, `Authorization`, ...).
pub fn read_all_with(
    addr: &str,
    extra_headers: &[(&str, &str)],
    start_ms: i64,
    end_ms: i64,
) -> Result<BTreeMap<Labels, Samples>, String> {
    let resp = remote_read_with(addr, extra_headers, vec![query_all(start_ms, end_ms)])?;
    if resp.results.len() != 1 {
        return Err(format!("{} results for 1 query", resp.results.len()));
    }
    let mut out = BTreeMap::new();
    for ts in &resp.results[0].timeseries {
        let labels = pb_labels(&ts.labels);
        let samples: Samples = ts
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value.to_bits()))
            .collect();
        if let Some(w) = samples.windows(2).find(|w| w[0].0 >= w[1].0) {
            return Err(format!(
                "{labels:?}: samples not strictly increasing in time: {w:?}"
            ));
        }
        if let Some(s) = samples.iter().find(|s| s.0 < start_ms || s.0 > end_ms) {
            return Err(format!(
                "{labels:?}: sample {s:?} outside [{start_ms}, {end_ms}]"
            ));
        }
        if out.insert(labels.clone(), samples).is_some() {
            return Err(format!("series {labels:?} returned twice"));
        }
    }
    Ok(out)
}

/// A series from label pairs (kept in the given order) and (timestamp ms, value) samples.
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

/// A snappy-compressed (block format) protobuf `WriteRequest`.
pub fn encode_write(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

/// The headers of a remote-write 1.0 request.
pub const WRITE_HEADERS: [(&str, &str); 3] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

/// POSTs a raw body to `http://addr path` with the given headers (10 s timeout).
pub fn post_raw(addr: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    http_request("POST", addr, path, headers, body, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("POST {addr}{path}: {e}"))
}

/// Sends a remote-write 1.0 request to `http://addr/api/v1/receive`.
pub fn remote_write(addr: &str, tenant: Option<&str>, req: &WriteRequest) -> Response {
    let mut headers = WRITE_HEADERS.to_vec();
    if let Some(t) = tenant {
        headers.push(("THANOS-TENANT", t));
    }
    post_raw(addr, "/api/v1/receive", &headers, &encode_write(req))
}
