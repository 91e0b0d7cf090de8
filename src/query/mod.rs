//! Prometheus remote read (SAMPLES responses) over the local head, or fanned out by the router.
//!
//! The router asks every ingestor of the tenant's ring, merges replicas of a series into one, and
//! keeps one sample per timestamp. An acknowledged sample is on at least a write quorum of replicas,
//! so up to RF - quorum ingestors may fail; more failures answer 503 instead of a silent gap.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use proto::prompb::{self, LabelMatcher, MatcherType, QueryResult, ReadRequest, ReadResponse};

use crate::ingest::{IngestError, Ingestor};
use crate::router::Router;
use crate::tsdb::head::SeriesSamples;
use crate::tsdb::labels::Labels;
use crate::tsdb::matcher::{MatchType, Matcher};
use crate::tsdb::querier::merge_series;

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body is not snappy-compressed protobuf `ReadRequest`.
    #[error("invalid remote read request: {0}")]
    BadRequest(String),
    /// The request is larger than allowed.
    #[error("remote read request too large: {0}")]
    TooLarge(String),
    /// Local storage refused.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// Too many ingestors failed to answer for the result to be complete.
    #[error("{failed} of {total} ingestors failed, the result could be incomplete: {message}")]
    Unavailable {
        /// Ingestors that failed.
        failed: usize,
        /// Ingestors asked.
        total: usize,
        /// Their errors.
        message: String,
    },
    /// The router has no ring or no ring for the tenant.
    #[error("{0}")]
    Route(String),
}

/// Decodes a snappy-compressed remote read body, capping the decompressed size.
pub fn decode_request(body: &[u8], max_decompressed: usize) -> Result<ReadRequest, ReadError> {
    let len = snap::raw::decompress_len(body)
        .map_err(|e| ReadError::BadRequest(format!("snappy: {e}")))?;
    if len > max_decompressed {
        return Err(ReadError::TooLarge(format!(
            "decompressed size {len} bytes exceeds the limit of {max_decompressed} bytes"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| ReadError::BadRequest(format!("snappy: {e}")))?;
    ReadRequest::decode(raw.as_slice()).map_err(|e| ReadError::BadRequest(format!("protobuf: {e}")))
}

/// Encodes a `ReadResponse` exactly as prost would, except that a sample value is written whenever
/// its bits are not all zero. prost skips a proto3 `double` equal to its default, and `-0.0 == 0.0`,
/// so the reader would get `+0.0` for a stored `-0.0`. Read responses carry no exemplars.
pub fn encode_read_response(resp: &ReadResponse) -> Vec<u8> {
    use crate::remote_write::{encode_timeseries, Label, Sample};
    use prost::encoding::{encode_key, encode_varint, WireType};
    let mut out = Vec::new();
    let mut result = Vec::new();
    let mut samples = Vec::new();
    for r in &resp.results {
        result.clear();
        for ts in &r.timeseries {
            let labels: Vec<Label<'_>> = ts
                .labels
                .iter()
                .map(|l| Label {
                    name: &l.name,
                    value: &l.value,
                })
                .collect();
            samples.clear();
            samples.extend(ts.samples.iter().map(|s| Sample {
                timestamp: s.timestamp,
                value: s.value,
            }));
            // `QueryResult.timeseries` is field 1, like `WriteRequest.timeseries`.
            encode_timeseries(&labels, &samples, &mut result);
        }
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(result.len() as u64, &mut out);
        out.extend_from_slice(&result);
    }
    out
}

/// Snappy-compresses an encoded `ReadResponse`.
pub fn encode_response(resp: &ReadResponse) -> Vec<u8> {
    let raw = encode_read_response(resp);
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compression of an in-memory buffer cannot fail")
}

/// Converts remote read matchers into TSDB matchers.
pub fn matchers_of(matchers: &[LabelMatcher]) -> Result<Vec<Matcher>, ReadError> {
    matchers
        .iter()
        .map(|m| {
            let kind = match MatcherType::try_from(m.r#type) {
                Ok(MatcherType::Eq) => MatchType::Equal,
                Ok(MatcherType::Neq) => MatchType::NotEqual,
                Ok(MatcherType::Re) => MatchType::Regex,
                Ok(MatcherType::Nre) => MatchType::NotRegex,
                Err(_) => {
                    return Err(ReadError::BadRequest(format!(
                        "unknown matcher type {}",
                        m.r#type
                    )))
                }
            };
            Matcher::new(kind, &m.name, &m.value)
                .map_err(|e| ReadError::BadRequest(format!("matcher {}: {e}", m.name)))
        })
        .collect()
}

fn to_timeseries(series: Vec<SeriesSamples>) -> Vec<prompb::TimeSeries> {
    series
        .into_iter()
        .map(|s| prompb::TimeSeries {
            labels: s
                .labels
                .iter()
                .map(|(name, value)| prompb::Label {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
            samples: s
                .samples
                .into_iter()
                .map(|(timestamp, value)| prompb::Sample { value, timestamp })
                .collect(),
            exemplars: Vec::new(),
        })
        .collect()
}

/// Answers every query of `req` from the local ingestor.
pub fn read_local(
    ingestor: &Ingestor,
    tenant: &str,
    req: &ReadRequest,
) -> Result<ReadResponse, ReadError> {
    let mut results = Vec::with_capacity(req.queries.len());
    for q in &req.queries {
        let matchers = matchers_of(&q.matchers)?;
        let series =
            ingestor.select(tenant, q.start_timestamp_ms, q.end_timestamp_ms, &matchers)?;
        results.push(QueryResult {
            timeseries: to_timeseries(series),
        });
    }
    Ok(ReadResponse { results })
}

/// Merges the same query's results from several replicas: one series per label set, one sample per
/// timestamp (the first replica's value wins; replicas hold the same samples).
pub fn merge_results(parts: Vec<QueryResult>) -> QueryResult {
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap_or_default();
    }
    let parts = parts
        .into_iter()
        .map(|p| {
            p.timeseries
                .into_iter()
                .map(|ts| SeriesSamples {
                    labels: Labels::from_pairs(
                        ts.labels
                            .iter()
                            .map(|l| (l.name.as_str(), l.value.as_str())),
                    ),
                    samples: ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
                })
                .collect()
        })
        .collect();
    QueryResult {
        timeseries: to_timeseries(merge_series(parts)),
    }
}

/// Answers `req` for `tenant` from every ingestor of the tenant's ring, merged.
pub async fn read_fanout(
    router: &Arc<Router>,
    tenant: &str,
    req: &ReadRequest,
) -> Result<ReadResponse, ReadError> {
    let ring = router
        .ring()
        .current()
        .ok_or_else(|| ReadError::Route("hashring not loaded yet".into()))?;
    let endpoints: Vec<String> = ring
        .endpoints_for_tenant(tenant)
        .map_err(|e| ReadError::Route(e.to_string()))?
        .iter()
        .map(|e| e.address.clone())
        .collect();
    let body = Bytes::from(req.encode_to_vec());
    let asks = endpoints.iter().map(|ep| {
        let body = body.clone();
        async move {
            if let Some(local) = router.local_for(ep) {
                return read_local(local, tenant, req).map_err(|e| format!("local ingestor: {e}"));
            }
            let client = router
                .peers()
                .get(ep)
                .map_err(|s| format!("{ep}: {}", s.message()))?;
            let bytes = client
                .remote_read(tenant, body, router.forward_timeout() * 6)
                .await
                .map_err(|s| format!("{ep}: {}", s.message()))?;
            ReadResponse::decode(bytes).map_err(|e| format!("{ep}: bad response: {e}"))
        }
    });
    let answers = futures::future::join_all(asks).await;
    let total = answers.len();
    let mut per_query: Vec<Vec<QueryResult>> = vec![Vec::new(); req.queries.len()];
    let mut errors = Vec::new();
    for answer in answers {
        match answer {
            Ok(resp) => {
                for (i, r) in resp.results.into_iter().enumerate().take(per_query.len()) {
                    per_query[i].push(r);
                }
            }
            Err(e) => errors.push(e),
        }
    }
    // A write reached quorum on RF - (RF - quorum) replicas, so up to RF - quorum failed ingestors
    // cannot hide an acknowledged sample; more could.
    let rf = router.replication_factor().max(1);
    let tolerated = rf - crate::router::quorum::write_quorum(rf);
    if errors.len() > tolerated || errors.len() == total {
        return Err(ReadError::Unavailable {
            failed: errors.len(),
            total,
            message: errors.join("; "),
        });
    }
    if !errors.is_empty() {
        tracing::warn!(failed = errors.len(), total, errors = %errors.join("; "), "remote read: some ingestors failed; replicas cover them");
    }
    Ok(ReadResponse {
        results: per_query.into_iter().map(merge_results).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> prompb::TimeSeries {
        prompb::TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| prompb::Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| prompb::Sample { value, timestamp })
                .collect(),
            exemplars: vec![],
        }
    }

    #[test]
    fn replicas_merge_into_one_series_with_one_sample_per_timestamp() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let a = QueryResult {
            timeseries: vec![ts(&[("__name__", "up")], &[(1, 1.0), (2, stale)])],
        };
        let b = QueryResult {
            timeseries: vec![
                ts(&[("__name__", "up")], &[(2, stale), (3, 1.0)]),
                ts(&[("__name__", "x")], &[(1, 5.0)]),
            ],
        };
        let merged = merge_results(vec![a, b]);
        assert_eq!(merged.timeseries.len(), 2);
        let up = &merged.timeseries[0];
        assert_eq!(up.labels[0].value, "up");
        let got: Vec<(i64, u64)> = up
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value.to_bits()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 1f64.to_bits()),
                (2, 0x7ff0_0000_0000_0002),
                (3, 1f64.to_bits())
            ]
        );
    }

    #[test]
    fn response_encoding_is_prost_encoding_but_keeps_negative_zero() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut resp = ReadResponse {
            results: vec![
                QueryResult {
                    timeseries: vec![
                        ts(
                            &[("__name__", "up"), ("job", "")],
                            &[(0, 1.0), (2, stale), (3, 0.0), (-4, f64::INFINITY)],
                        ),
                        ts(&[("__name__", "x")], &[]),
                    ],
                },
                QueryResult { timeseries: vec![] },
                QueryResult {
                    timeseries: vec![ts(&[("a", "b")], &[(i64::MAX, -1.5)])],
                },
            ],
        };
        assert_eq!(encode_read_response(&resp), resp.encode_to_vec());
        resp.results[2].timeseries[0].samples.push(prompb::Sample {
            value: -0.0,
            timestamp: 5,
        });
        let back = ReadResponse::decode(encode_read_response(&resp).as_slice()).unwrap();
        let bits = |r: &ReadResponse| -> Vec<(i64, u64)> {
            r.results
                .iter()
                .flat_map(|q| &q.timeseries)
                .flat_map(|t| &t.samples)
                .map(|s| (s.timestamp, s.value.to_bits()))
                .collect()
        };
        assert_eq!(bits(&back), bits(&resp));
        assert!(bits(&back).contains(&(5, (-0.0f64).to_bits())));
    }

    #[test]
    fn request_codec_round_trips_and_caps_size() {
        let req = ReadRequest {
            queries: vec![prompb::Query {
                start_timestamp_ms: 1,
                end_timestamp_ms: 2,
                matchers: vec![LabelMatcher {
                    r#type: MatcherType::Re as i32,
                    name: "__name__".into(),
                    value: "up|x".into(),
                }],
                hints: None,
            }],
            accepted_response_types: vec![],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap();
        assert_eq!(decode_request(&body, 1 << 20).unwrap(), req);
        assert!(matches!(
            decode_request(&body, 4),
            Err(ReadError::TooLarge(_))
        ));
        assert!(matches!(
            decode_request(b"\xff\xff\xff", 1 << 20),
            Err(ReadError::BadRequest(_))
        ));
        assert_eq!(matchers_of(&req.queries[0].matchers).unwrap().len(), 1);
    }
}
