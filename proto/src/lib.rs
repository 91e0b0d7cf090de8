//! Owned prost types for the protobuf messages Ringest speaks.
//!
//! Field numbers follow prometheus/prometheus `prompb/remote.proto`, `prompb/types.proto` and thanos
//! `pkg/store/storepb/rpc.proto`, `types.proto` and `pkg/info/infopb/rpc.proto`. The write hot path
//! does not use these types (it decodes borrowed from the request buffer, see
//! `ringest::remote_write`); they serve remote read, the Store API's requests, tests and tools.
//! They are written by hand with `prost` derives so that building needs no `protoc`.

#![forbid(unsafe_code)]

pub mod prompb {
    //! `prometheus` package: remote write 1.0 and remote read.

    /// A label pair.
    #[derive(Clone, PartialEq, Eq, Hash, ::prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// One float sample.
    #[derive(Clone, Copy, PartialEq, ::prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    /// An exemplar (kept for wire compatibility; not stored yet).
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Exemplar {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// A series with its samples.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub exemplars: Vec<Exemplar>,
    }

    /// Metric metadata sent alongside remote write 1.0 (accepted and ignored).
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct MetricMetadata {
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        #[prost(string, tag = "2")]
        pub metric_family_name: String,
        #[prost(string, tag = "4")]
        pub help: String,
        #[prost(string, tag = "5")]
        pub unit: String,
    }

    /// Remote write 1.0 request body (before snappy).
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<MetricMetadata>,
    }

    /// Matcher type of a remote read [`LabelMatcher`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum MatcherType {
        Eq = 0,
        Neq = 1,
        Re = 2,
        Nre = 3,
    }

    /// A label matcher of a remote read query.
    #[derive(Clone, PartialEq, Eq, Hash, ::prost::Message)]
    pub struct LabelMatcher {
        #[prost(enumeration = "MatcherType", tag = "1")]
        pub r#type: i32,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(string, tag = "3")]
        pub value: String,
    }

    /// Query hints; Ringest ignores them but must accept them.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ReadHints {
        #[prost(int64, tag = "1")]
        pub step_ms: i64,
        #[prost(string, tag = "2")]
        pub func: String,
        #[prost(int64, tag = "3")]
        pub start_ms: i64,
        #[prost(int64, tag = "4")]
        pub end_ms: i64,
        #[prost(string, repeated, tag = "5")]
        pub grouping: Vec<String>,
        #[prost(bool, tag = "6")]
        pub by: bool,
        #[prost(int64, tag = "7")]
        pub range_ms: i64,
    }

    /// One query of a remote read request.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Query {
        #[prost(int64, tag = "1")]
        pub start_timestamp_ms: i64,
        #[prost(int64, tag = "2")]
        pub end_timestamp_ms: i64,
        #[prost(message, repeated, tag = "3")]
        pub matchers: Vec<LabelMatcher>,
        #[prost(message, optional, tag = "4")]
        pub hints: Option<ReadHints>,
    }

    /// Response types a remote read client accepts.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum ResponseType {
        Samples = 0,
        StreamedXorChunks = 1,
    }

    /// Remote read request body (before snappy).
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ReadRequest {
        #[prost(message, repeated, tag = "1")]
        pub queries: Vec<Query>,
        #[prost(enumeration = "ResponseType", repeated, tag = "2")]
        pub accepted_response_types: Vec<i32>,
    }

    /// The series answering one query.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct QueryResult {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// Remote read SAMPLES response body (before snappy): one result per query, in order.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ReadResponse {
        #[prost(message, repeated, tag = "1")]
        pub results: Vec<QueryResult>,
    }
}

pub mod storepb {
    //! `thanos` package: the replicated write RPC between routers and ingestors, and the Store API.

    use super::prompb::TimeSeries;

    /// `thanos.WriteRequest`: what a router sends `thanos.WriteableStore/RemoteWrite`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        #[prost(string, tag = "2")]
        pub tenant: String,
        #[prost(int64, tag = "3")]
        pub replica: i64,
        /// Per-tenant batches, sent instead of `timeseries`/`tenant` by recent Thanos routers.
        #[prost(message, repeated, tag = "4")]
        pub timeseries_tenant_data: Vec<TimeSeriesTenantTuple>,
    }

    /// `thanos.TimeSeriesTenantTuple`: one tenant's series inside a [`WriteRequest`].
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct TimeSeriesTenantTuple {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        #[prost(string, tag = "2")]
        pub tenant: String,
    }

    /// `thanos.WriteResponse`: empty on success; errors travel as gRPC status.
    #[derive(Clone, Copy, PartialEq, Eq, ::prost::Message)]
    pub struct WriteResponse {}

    /// Full gRPC method path of the Thanos replicated write.
    pub const REMOTE_WRITE_PATH: &str = "/thanos.WriteableStore/RemoteWrite";

    // ---- The Store API (`thanos.Store`, pkg/store/storepb/rpc.proto and types.proto). ----

    // `thanos.Label`, `thanos.LabelMatcher` and its `Type` have the fields and numbers of their
    // `prometheus` namesakes (the wire cannot tell them apart), so they are the same types here.
    pub use super::prompb::{Label, LabelMatcher, MatcherType};

    /// `thanos.ZLabelSet` (and `LabelSet`): one label set.
    #[derive(Clone, PartialEq, Eq, Hash, ::prost::Message)]
    pub struct ZLabelSet {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
    }

    /// `thanos.ShardInfo`: which shard of the series a request wants.
    #[derive(Clone, PartialEq, Eq, ::prost::Message)]
    pub struct ShardInfo {
        #[prost(int64, tag = "1")]
        pub shard_index: i64,
        #[prost(int64, tag = "2")]
        pub total_shards: i64,
        #[prost(bool, tag = "3")]
        pub by: bool,
        #[prost(string, repeated, tag = "4")]
        pub labels: Vec<String>,
    }

    /// `google.protobuf.Any`, for the hints fields (kept opaque).
    #[derive(Clone, PartialEq, Eq, ::prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// `thanos.SeriesRequest`. Fields a TSDB store ignores (aggregates, resolution, hints,
    /// step, range, query hints) are left out: prost skips unknown fields.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct SeriesRequest {
        #[prost(int64, tag = "1")]
        pub min_time: i64,
        #[prost(int64, tag = "2")]
        pub max_time: i64,
        #[prost(message, repeated, tag = "3")]
        pub matchers: Vec<LabelMatcher>,
        #[prost(int64, tag = "4")]
        pub max_resolution_window: i64,
        #[prost(enumeration = "Aggr", repeated, tag = "5")]
        pub aggregates: Vec<i32>,
        #[prost(bool, tag = "6")]
        pub partial_response_disabled: bool,
        #[prost(int32, tag = "7")]
        pub partial_response_strategy: i32,
        #[prost(bool, tag = "8")]
        pub skip_chunks: bool,
        #[prost(message, optional, tag = "9")]
        pub hints: Option<Any>,
        #[prost(message, optional, tag = "13")]
        pub shard_info: Option<ShardInfo>,
        #[prost(string, repeated, tag = "14")]
        pub without_replica_labels: Vec<String>,
        #[prost(int64, tag = "15")]
        pub limit: i64,
        #[prost(int64, tag = "16")]
        pub response_batch_size: i64,
    }

    /// `thanos.Aggr`: aggregate chunk kinds (downsampled blocks only).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum Aggr {
        Raw = 0,
        Count = 1,
        Sum = 2,
        Min = 3,
        Max = 4,
        Counter = 5,
    }

    /// `thanos.Chunk.Encoding`: the TSDB encoding minus one.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
    #[repr(i32)]
    pub enum ChunkEncoding {
        Xor = 0,
        Histogram = 1,
        FloatHistogram = 2,
    }

    /// `thanos.Chunk`: chunk bytes as the TSDB stores them.
    #[derive(Clone, PartialEq, Eq, ::prost::Message)]
    pub struct Chunk {
        #[prost(enumeration = "ChunkEncoding", tag = "1")]
        pub r#type: i32,
        #[prost(bytes = "vec", tag = "2")]
        pub data: Vec<u8>,
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }

    /// `thanos.AggrChunk`: a raw chunk (aggregates are for downsampled blocks).
    #[derive(Clone, PartialEq, Eq, ::prost::Message)]
    pub struct AggrChunk {
        #[prost(int64, tag = "1")]
        pub min_time: i64,
        #[prost(int64, tag = "2")]
        pub max_time: i64,
        #[prost(message, optional, tag = "3")]
        pub raw: Option<Chunk>,
        #[prost(message, optional, tag = "4")]
        pub count: Option<Chunk>,
        #[prost(message, optional, tag = "5")]
        pub sum: Option<Chunk>,
        #[prost(message, optional, tag = "6")]
        pub min: Option<Chunk>,
        #[prost(message, optional, tag = "7")]
        pub max: Option<Chunk>,
        #[prost(message, optional, tag = "8")]
        pub counter: Option<Chunk>,
    }

    /// `thanos.Series`: labels and (part of) the series' chunks.
    #[derive(Clone, PartialEq, Eq, ::prost::Message)]
    pub struct Series {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub chunks: Vec<AggrChunk>,
    }

    /// `thanos.SeriesBatch`.
    #[derive(Clone, PartialEq, Eq, ::prost::Message)]
    pub struct SeriesBatch {
        #[prost(message, repeated, tag = "1")]
        pub series: Vec<Series>,
    }

    /// `thanos.SeriesResponse`: one frame of the Series stream.
    #[derive(Clone, PartialEq, Eq, ::prost::Message)]
    pub struct SeriesResponse {
        #[prost(oneof = "series_response::Result", tags = "1, 2, 3, 4")]
        pub result: Option<series_response::Result>,
    }

    /// The `result` oneof of [`SeriesResponse`].
    pub mod series_response {
        /// What one frame carries.
        #[derive(Clone, PartialEq, Eq, ::prost::Oneof)]
        pub enum Result {
            #[prost(message, tag = "1")]
            Series(super::Series),
            #[prost(string, tag = "2")]
            Warning(String),
            #[prost(message, tag = "3")]
            Hints(super::Any),
            #[prost(message, tag = "4")]
            Batch(super::SeriesBatch),
        }
    }

    /// `thanos.LabelNamesRequest`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct LabelNamesRequest {
        #[prost(bool, tag = "1")]
        pub partial_response_disabled: bool,
        #[prost(int32, tag = "2")]
        pub partial_response_strategy: i32,
        #[prost(int64, tag = "3")]
        pub start: i64,
        #[prost(int64, tag = "4")]
        pub end: i64,
        #[prost(message, optional, tag = "5")]
        pub hints: Option<Any>,
        #[prost(message, repeated, tag = "6")]
        pub matchers: Vec<LabelMatcher>,
        #[prost(string, repeated, tag = "7")]
        pub without_replica_labels: Vec<String>,
        #[prost(int64, tag = "8")]
        pub limit: i64,
    }

    /// `thanos.LabelNamesResponse`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct LabelNamesResponse {
        #[prost(string, repeated, tag = "1")]
        pub names: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub warnings: Vec<String>,
    }

    /// `thanos.LabelValuesRequest`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct LabelValuesRequest {
        #[prost(string, tag = "1")]
        pub label: String,
        #[prost(bool, tag = "2")]
        pub partial_response_disabled: bool,
        #[prost(int32, tag = "3")]
        pub partial_response_strategy: i32,
        #[prost(int64, tag = "4")]
        pub start: i64,
        #[prost(int64, tag = "5")]
        pub end: i64,
        #[prost(message, optional, tag = "6")]
        pub hints: Option<Any>,
        #[prost(message, repeated, tag = "7")]
        pub matchers: Vec<LabelMatcher>,
        #[prost(string, repeated, tag = "8")]
        pub without_replica_labels: Vec<String>,
        #[prost(int64, tag = "9")]
        pub limit: i64,
    }

    /// `thanos.LabelValuesResponse`.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct LabelValuesResponse {
        #[prost(string, repeated, tag = "1")]
        pub values: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub warnings: Vec<String>,
    }

    /// Full gRPC method path of `Store/Series`.
    pub const SERIES_PATH: &str = "/thanos.Store/Series";
    /// Full gRPC method path of `Store/LabelNames`.
    pub const LABEL_NAMES_PATH: &str = "/thanos.Store/LabelNames";
    /// Full gRPC method path of `Store/LabelValues`.
    pub const LABEL_VALUES_PATH: &str = "/thanos.Store/LabelValues";
}

pub mod infopb {
    //! `thanos.info` package: the Info API Thanos Query discovers endpoints with.

    use super::storepb::ZLabelSet;

    /// `thanos.info.InfoRequest` (empty).
    #[derive(Clone, Copy, PartialEq, Eq, ::prost::Message)]
    pub struct InfoRequest {}

    /// `thanos.info.InfoResponse`. Only the APIs actually served are set.
    #[derive(Clone, PartialEq, Eq, ::prost::Message)]
    pub struct InfoResponse {
        #[prost(message, repeated, tag = "1")]
        pub label_sets: Vec<ZLabelSet>,
        #[prost(string, tag = "2")]
        pub component_type: String,
        #[prost(message, optional, tag = "3")]
        pub store: Option<StoreInfo>,
        #[prost(message, optional, tag = "7")]
        pub exemplars: Option<ExemplarsInfo>,
    }

    /// `thanos.info.StoreInfo`.
    #[derive(Clone, PartialEq, Eq, ::prost::Message)]
    pub struct StoreInfo {
        #[prost(int64, tag = "1")]
        pub min_time: i64,
        #[prost(int64, tag = "2")]
        pub max_time: i64,
        #[prost(bool, tag = "3")]
        pub supports_sharding: bool,
        #[prost(bool, tag = "5")]
        pub supports_without_replica_labels: bool,
        #[prost(message, repeated, tag = "6")]
        pub tsdb_infos: Vec<TsdbInfo>,
        #[prost(bool, tag = "7")]
        pub supports_projections: bool,
    }

    /// `thanos.info.TSDBInfo`: one TSDB's labels and time range.
    #[derive(Clone, PartialEq, Eq, ::prost::Message)]
    pub struct TsdbInfo {
        #[prost(message, optional, tag = "1")]
        pub labels: Option<ZLabelSet>,
        #[prost(int64, tag = "2")]
        pub min_time: i64,
        #[prost(int64, tag = "3")]
        pub max_time: i64,
    }

    /// `thanos.info.ExemplarsInfo`.
    #[derive(Clone, Copy, PartialEq, Eq, ::prost::Message)]
    pub struct ExemplarsInfo {
        #[prost(int64, tag = "1")]
        pub min_time: i64,
        #[prost(int64, tag = "2")]
        pub max_time: i64,
    }

    /// Full gRPC method path of `Info/Info`.
    pub const INFO_PATH: &str = "/thanos.info.Info/Info";
}

#[cfg(test)]
mod tests {
    use super::prompb::*;
    use prost::Message;

    #[test]
    fn write_request_round_trips_and_keeps_field_numbers() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 5,
                }],
                exemplars: vec![],
            }],
            metadata: vec![],
        };
        let bytes = req.encode_to_vec();
        // field 1, wire type 2 (length delimited) starts the body.
        assert_eq!(bytes[0], 0x0a);
        assert_eq!(WriteRequest::decode(bytes.as_slice()).unwrap(), req);
    }
}
