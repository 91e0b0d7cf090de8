//! Prometheus remote read (SAMPLES responses) over the local head, or fanned out by the router.
//!
//! The router asks every ingestor of the tenant's ring, merges replicas of a series into one, and
//! keeps one sample per timestamp. An acknowledged sample is on at least a write quorum of replicas,
//! so up to RF - quorum ingestors may fail; more failures answer 503 instead of a silent gap.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use proto::prompb::{self, LabelMatcher, QueryResult, ReadRequest, ReadResponse};

use crate::blocking::Cancelled;
use crate::error::{Classify, ErrorClass};
use crate::ingest::{IngestError, Ingestor};
use crate::router::Router;
use crate::tsdb::head::SeriesSamples;
use crate::tsdb::labels::Labels;
use crate::tsdb::matcher::{MatchType, Matcher, MatcherError};
use crate::tsdb::querier::merge_series;

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body is not valid snappy.
    #[error("invalid remote read request: snappy: {0}")]
    Snappy(#[source] snap::Error),
    /// The body is not a protobuf `ReadRequest`.
    #[error("invalid remote read request: protobuf: {0}")]
    Protobuf(#[source] prost::DecodeError),
    /// A matcher has a type remote read does not define.
    #[error("invalid remote read request: unknown matcher type {0}")]
    UnknownMatcherType(i32),
    /// A matcher could not be built (a regex that does not compile).
    #[error("invalid remote read request: matcher {name}: {source}")]
    Matcher {
        /// The matcher's label name.
        name: String,
        /// Why.
        #[source]
        source: MatcherError,
    },
    /// The request is larger than allowed once decompressed.
    #[error("remote read request too large: decompressed size {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The decompressed size the snappy header declares.
        size: usize,
        /// The limit.
        limit: usize,
    },
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
    /// The router has no ring yet.
    #[error("hashring not loaded yet")]
    RingNotLoaded,
    /// The router has no ring for the tenant.
    #[error("{0}")]
    Lookup(#[source] hashring::LookupError),
    /// The read was cut short by shutdown.
    #[error(transparent)]
    Interrupted(#[from] Cancelled),
}

impl Classify for ReadError {
    fn class(&self) -> ErrorClass {
        match self {
            ReadError::Snappy(_)
            | ReadError::Protobuf(_)
            | ReadError::UnknownMatcherType(_)
            | ReadError::Matcher { .. } => ErrorClass::BadRequest,
            ReadError::TooLarge { .. } => ErrorClass::TooLarge,
            ReadError::Ingest(e) => e.class(),
            // Unlike a write (500, as Thanos), a read the ring cannot place asks for a retry.
            ReadError::Unavailable { .. } | ReadError::RingNotLoaded | ReadError::Lookup(_) => {
                ErrorClass::Unavailable
            }
            ReadError::Interrupted(e) => e.class(),
        }
    }
}

/// Decodes a snappy-compressed remote read body, capping the decompressed size.
pub fn decode_request(body: &[u8], max_decompressed: usize) -> Result<ReadRequest, ReadError> {
    let len = snap::raw::decompress_len(body).map_err(ReadError::Snappy)?;
    if len > max_decompressed {
        return Err(ReadError::TooLarge {
            size: len,
            limit: max_decompressed,
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(ReadError::Snappy)?;
    ReadRequest::decode(raw.as_slice()).map_err(ReadError::Protobuf)
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
            let kind =
                MatchType::from_wire(m.r#type).ok_or(ReadError::UnknownMatcherType(m.r#type))?;
            Matcher::new(kind, &m.name, &m.value).map_err(|source| ReadError::Matcher {
                name: m.name.clone(),
                source,
            })
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

/// Answers every query of `req` from the local ingestor, on the blocking pool: block reads are
/// `pread`s, which must not stall the async workers.
pub async fn read_local(
    ingestor: &Arc<Ingestor>,
    tenant: &str,
    req: &ReadRequest,
) -> Result<ReadResponse, ReadError> {
    let (ingestor, tenant, req) = (ingestor.clone(), tenant.to_string(), req.clone());
    crate::blocking::run(move || read_local_blocking(&ingestor, &tenant, &req)).await?
}

/// [`read_local`] on the calling thread. Blocking.
fn read_local_blocking(
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
    let ring = router.ring().current().ok_or(ReadError::RingNotLoaded)?;
    let endpoints: Vec<String> = ring
        .endpoints_for_tenant(tenant)
        .map_err(ReadError::Lookup)?
        .iter()
        .map(|e| e.address.clone())
        .collect();
    let body = Bytes::from(req.encode_to_vec());
    let asks = endpoints.iter().map(|ep| {
        let body = body.clone();
        async move {
            if let Some(local) = router.local_for(ep) {
                return read_local(local, tenant, req)
                    .await
                    .map_err(|e| format!("local ingestor: {e}"));
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
    use proto::prompb::MatcherType;

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
            Err(ReadError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_request(b"\xff\xff\xff", 1 << 20),
            Err(ReadError::Snappy(_))
        ));
        assert_eq!(matchers_of(&req.queries[0].matchers).unwrap().len(), 1);
    }
}
