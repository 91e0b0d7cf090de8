//! Owned prost types for the protobuf messages Ringest speaks.
//!
//! Field numbers follow prometheus/prometheus `prompb/remote.proto`, `prompb/types.proto` and thanos
//! `pkg/store/storepb/rpc.proto`. The write hot path does not use these types (it decodes borrowed
//! from the request buffer, see `ringest::remote_write`); they serve remote read, tests and tools.
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
    //! `thanos` package: the replicated write RPC between routers and ingestors.

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
