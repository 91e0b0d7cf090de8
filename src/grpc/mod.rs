//! gRPC between routers and ingestors.
//!
//! Writes use Thanos's own method, `thanos.WriteableStore/RemoteWrite`, so Thanos routers can feed
//! Ringest ingestors and the other way round. Message bodies travel as raw bytes ([`RawCodec`]): the
//! router encodes `thanos.WriteRequest` straight from the borrowed decoded request, and the ingestor
//! decodes it borrowed with the same decoder as remote write; no owned prost tree on either side.
//! Reads for the router's fan-out use `ringest.Reader/RemoteRead`, a Prometheus `ReadRequest` in and a
//! `ReadResponse` out (uncompressed), with the tenant in the `thanos-tenant` metadata entry.
//! [`snappy`] adds Thanos's `snappy` gRPC compression to the server (and optionally the client).

pub mod snappy;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures::future::BoxFuture;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

/// Full method path of the Thanos replicated write.
pub const REMOTE_WRITE_PATH: &str = proto::storepb::REMOTE_WRITE_PATH;
/// Full method path of the router → ingestor remote read.
pub const REMOTE_READ_PATH: &str = "/ringest.Reader/RemoteRead";
/// Metadata key carrying the tenant of a read.
pub const TENANT_METADATA: &str = "thanos-tenant";

/// Binary metadata on a conflict answer: which series of the write had samples rejected, and how
/// many (a Ringest extension; Thanos peers ignore it). Lets a router count what a write quorum
/// stored instead of failing every series the peer was sent.
pub const REJECTED_SERIES_METADATA: &str = "ringest-rejected-series-bin";
/// Metadata marking a ResourceExhausted answer as a Ringest limit (retry later, 429), as opposed
/// to other resource trouble such as a message over gRPC's size limit.
pub const LIMITED_METADATA: &str = "ringest-limited";
/// Rejection lists longer than this are not sent (HTTP/2 header lists are small); the router
/// then counts every series sent to the peer as failed, as Thanos does.
const MAX_REJECTED_METADATA_BYTES: usize = 8 << 10;

/// Encodes `(series index, rejected samples)` pairs, indexes ascending, as varint pairs (index
/// delta, count); `None` when the list does not fit the metadata budget or is not ascending.
pub fn encode_rejected_series(rejected: &[(u32, u32)]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(rejected.len() * 3);
    let mut prev: Option<u32> = None;
    for &(idx, n) in rejected {
        let delta = match prev {
            None => idx,
            Some(p) if idx > p => idx - p,
            Some(_) => return None,
        };
        prev = Some(idx);
        prost::encoding::encode_varint(u64::from(delta), &mut out);
        prost::encoding::encode_varint(u64::from(n), &mut out);
        if out.len() > MAX_REJECTED_METADATA_BYTES {
            return None;
        }
    }
    Some(out)
}

/// Decodes [`encode_rejected_series`]; `None` for anything malformed (a peer's bytes).
pub fn decode_rejected_series(mut buf: &[u8]) -> Option<Vec<(u32, u32)>> {
    if buf.len() > MAX_REJECTED_METADATA_BYTES {
        return None;
    }
    let mut out = Vec::new();
    let mut idx: Option<u32> = None;
    while !buf.is_empty() {
        let delta = u32::try_from(prost::encoding::decode_varint(&mut buf).ok()?).ok()?;
        let n = u32::try_from(prost::encoding::decode_varint(&mut buf).ok()?).ok()?;
        let next = match idx {
            None => delta,
            Some(_) if delta == 0 => return None,
            Some(i) => i.checked_add(delta)?,
        };
        idx = Some(next);
        out.push((next, n));
    }
    Some(out)
}

/// The rejected series a peer's conflict answer lists, if it lists them.
pub fn rejected_series_of(status: &Status) -> Option<Vec<(u32, u32)>> {
    let v = status.metadata().get_bin(REJECTED_SERIES_METADATA)?;
    decode_rejected_series(&v.to_bytes().ok()?)
}

/// Whether a peer's answer is a Ringest limit refusal.
pub fn is_limited(status: &Status) -> bool {
    status.code() == tonic::Code::ResourceExhausted
        && status.metadata().get(LIMITED_METADATA).is_some()
}

/// A codec that hands message bytes through untouched.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// Encoder half of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

/// Decoder half of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// What an ingestor does with the RPCs it serves.
pub trait GrpcHandler: Send + Sync + 'static {
    /// Stores one `thanos.WriteRequest` body.
    fn remote_write(&self, body: Bytes) -> BoxFuture<'static, Result<(), Status>>;
    /// Answers one Prometheus `ReadRequest` body for `tenant` with a `ReadResponse` body.
    fn remote_read(&self, tenant: String, body: Bytes)
        -> BoxFuture<'static, Result<Bytes, Status>>;
}

/// Serves [`GrpcHandler`] as `thanos.WriteableStore`.
#[derive(Clone)]
pub struct WriteableStoreServer {
    handler: Arc<dyn GrpcHandler>,
    max_message_bytes: usize,
}

/// Serves [`GrpcHandler`] as `ringest.Reader`.
#[derive(Clone)]
pub struct ReaderServer {
    handler: Arc<dyn GrpcHandler>,
    max_message_bytes: usize,
}

impl WriteableStoreServer {
    /// Wraps `handler`; messages larger than `max_message_bytes` are refused.
    pub fn new(handler: Arc<dyn GrpcHandler>, max_message_bytes: usize) -> Self {
        Self {
            handler,
            max_message_bytes,
        }
    }
}

impl ReaderServer {
    /// Wraps `handler`; messages larger than `max_message_bytes` are refused.
    pub fn new(handler: Arc<dyn GrpcHandler>, max_message_bytes: usize) -> Self {
        Self {
            handler,
            max_message_bytes,
        }
    }
}

/// The methods of one gRPC service whose messages are raw bytes: its name and how a call is
/// answered. [`RawService`] makes it a tonic service (one `tower::Service` for all of them).
pub trait RawMethods: Clone + Send + 'static {
    /// The full service name, e.g. `thanos.WriteableStore`.
    const NAME: &'static str;
    /// Answers one call to any path of this service (an unknown method: [`unknown_method`]).
    fn serve(&self, request: HttpRequest) -> BoxFuture<'static, Result<HttpResponse, Infallible>>;
}

/// A [`RawMethods`] served by tonic.
#[derive(Clone)]
pub struct RawService<M>(pub M);

impl<M: RawMethods> NamedService for RawService<M> {
    const NAME: &'static str = M::NAME;
}

impl<M: RawMethods> tower::Service<HttpRequest> for RawService<M> {
    type Response = HttpResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<HttpResponse, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        self.0.serve(request)
    }
}

/// The answer to a method the service does not have.
pub fn unknown_method() -> BoxFuture<'static, Result<HttpResponse, Infallible>> {
    Box::pin(async { Ok(Status::unimplemented("unknown method").into_http()) })
}

/// One unary method bound to its handler.
struct Unary<F>(F);

impl<F, Fut> tonic::server::UnaryService<Bytes> for Unary<F>
where
    F: FnMut(tonic::Request<Bytes>) -> Fut,
    Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
{
    type Response = Bytes;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Bytes>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let fut = (self.0)(request);
        Box::pin(async move { fut.await.map(tonic::Response::new) })
    }
}

/// An HTTP/2 request as tonic's server hands it to a service.
pub(crate) type HttpRequest = http::Request<tonic::body::Body>;
/// An HTTP/2 response as tonic's server takes it from a service.
pub(crate) type HttpResponse = http::Response<tonic::body::Body>;

/// Serves one unary call whose messages are raw bytes with `method`.
pub(crate) fn serve_unary<F, Fut>(
    request: HttpRequest,
    max_message_bytes: usize,
    method: F,
) -> BoxFuture<'static, Result<HttpResponse, Infallible>>
where
    F: FnMut(tonic::Request<Bytes>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
{
    Box::pin(async move {
        let mut grpc = tonic::server::Grpc::new(RawCodec)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(usize::MAX);
        Ok(grpc.unary(Unary(method), request).await)
    })
}

impl RawMethods for WriteableStoreServer {
    const NAME: &'static str = "thanos.WriteableStore";

    fn serve(&self, request: HttpRequest) -> BoxFuture<'static, Result<HttpResponse, Infallible>> {
        if request.uri().path() != REMOTE_WRITE_PATH {
            return unknown_method();
        }
        let handler = self.handler.clone();
        serve_unary(request, self.max_message_bytes, move |req| {
            let fut = handler.remote_write(req.into_inner());
            async move { fut.await.map(|()| Bytes::new()) }
        })
    }
}

impl RawMethods for ReaderServer {
    const NAME: &'static str = "ringest.Reader";

    fn serve(&self, request: HttpRequest) -> BoxFuture<'static, Result<HttpResponse, Infallible>> {
        if request.uri().path() != REMOTE_READ_PATH {
            return unknown_method();
        }
        let handler = self.handler.clone();
        serve_unary(request, self.max_message_bytes, move |req| {
            let tenant = req
                .metadata()
                .get(TENANT_METADATA)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let handler = handler.clone();
            async move {
                let tenant = tenant.ok_or_else(|| {
                    Status::invalid_argument(format!("missing {TENANT_METADATA} metadata"))
                })?;
                handler.remote_read(tenant, req.into_inner()).await
            }
        })
    }
}

/// A pooled HTTP/2 connection to one peer; cloning shares the connection.
#[derive(Clone, Debug)]
pub struct PeerClient {
    channel: Channel,
    max_message_bytes: usize,
    snappy: bool,
}

impl PeerClient {
    /// Connects lazily to `address` (`host:port`), over TLS when `tls` is given; requests
    /// multiplex over one HTTP/2 connection.
    pub fn new(
        address: &str,
        connect_timeout: Duration,
        max_message_bytes: usize,
        tls: Option<&tonic::transport::ClientTlsConfig>,
    ) -> Result<Self, Status> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| Status::invalid_argument(format!("bad endpoint {address:?}: {e}")))?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| {
                Status::invalid_argument(format!("TLS to endpoint {address:?}: {e}"))
            })?;
        }
        let endpoint = endpoint
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(Self {
            channel: endpoint.connect_lazy(),
            max_message_bytes,
            snappy: false,
        })
    }

    /// Sends every request with Thanos's `grpc-encoding: snappy` (and takes snappy answers), as a
    /// Thanos router does by default; Ringest routers send identity, which every peer accepts.
    pub fn with_snappy(mut self) -> Self {
        self.snappy = true;
        self
    }

    async fn unary(
        &self,
        path: &'static str,
        request: tonic::Request<Bytes>,
    ) -> Result<Bytes, Status> {
        if self.snappy {
            let transport = snappy::SnappyClient::new(self.channel.clone(), self.max_message_bytes);
            self.unary_over(transport, path, request).await
        } else {
            self.unary_over(self.channel.clone(), path, request).await
        }
    }

    async fn unary_over<T>(
        &self,
        transport: T,
        path: &'static str,
        request: tonic::Request<Bytes>,
    ) -> Result<Bytes, Status>
    where
        T: tonic::client::GrpcService<tonic::body::Body>,
        T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
        <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError>,
        T::Error: Into<tonic::codegen::StdError>,
    {
        let mut grpc = tonic::client::Grpc::new(transport)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(usize::MAX);
        grpc.ready().await.map_err(|e| {
            let e: tonic::codegen::StdError = e.into();
            Status::unavailable(format!("connection not ready: {e}"))
        })?;
        let path = http::uri::PathAndQuery::from_static(path);
        grpc.unary(request, path, RawCodec)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Sends one `thanos.WriteRequest` body.
    pub async fn remote_write(&self, body: Bytes, timeout: Duration) -> Result<(), Status> {
        let mut request = tonic::Request::new(body);
        request.set_timeout(timeout);
        match tokio::time::timeout(timeout, self.unary(REMOTE_WRITE_PATH, request)).await {
            Ok(result) => result.map(|_| ()),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "forward timed out after {timeout:?}"
            ))),
        }
    }

    /// Sends one Prometheus `ReadRequest` body for `tenant` and returns the `ReadResponse` body.
    pub async fn remote_read(
        &self,
        tenant: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, Status> {
        let mut request = tonic::Request::new(body);
        request.set_timeout(timeout);
        let value = tenant.parse().map_err(|_| {
            Status::invalid_argument(format!("tenant {tenant:?} is not a valid header value"))
        })?;
        request.metadata_mut().insert(TENANT_METADATA, value);
        match tokio::time::timeout(timeout, self.unary(REMOTE_READ_PATH, request)).await {
            Ok(result) => result,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "read timed out after {timeout:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn rejected_series_round_trip(mut v in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..200)) {
            v.sort_unstable_by_key(|p| p.0);
            v.dedup_by_key(|p| p.0);
            let bytes = encode_rejected_series(&v).expect("200 pairs fit");
            prop_assert_eq!(decode_rejected_series(&bytes), Some(v));
        }

        #[test]
        fn rejected_series_decoder_takes_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(v) = decode_rejected_series(&b) {
                prop_assert!(v.windows(2).all(|w| w[0].0 < w[1].0), "{:?}", v);
                let again = encode_rejected_series(&v).expect("fits");
                prop_assert_eq!(decode_rejected_series(&again), Some(v));
            }
        }
    }

    #[test]
    fn rejected_series_refuses_disorder_and_oversize() {
        assert_eq!(encode_rejected_series(&[(3, 1), (3, 1)]), None);
        assert_eq!(encode_rejected_series(&[(3, 1), (2, 1)]), None);
        let many: Vec<(u32, u32)> = (0..10_000).map(|i| (i * 1000, u32::MAX)).collect();
        assert_eq!(encode_rejected_series(&many), None);
        // Index overflow and a repeated index (delta 0 after the first) are malformed.
        let mut b = Vec::new();
        for x in [u64::from(u32::MAX), 1, 1, 1] {
            prost::encoding::encode_varint(x, &mut b);
        }
        assert_eq!(decode_rejected_series(&b), None);
        let mut b = Vec::new();
        for x in [5u64, 1, 0, 1] {
            prost::encoding::encode_varint(x, &mut b);
        }
        assert_eq!(decode_rejected_series(&b), None);
        assert_eq!(decode_rejected_series(&[0x80]), None);
    }
}
