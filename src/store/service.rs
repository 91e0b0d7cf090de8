//! gRPC plumbing of the Store API: `thanos.info.Info` and `thanos.Store` on the ingestor's gRPC
//! port, with messages as raw bytes (requests decoded with prost, `Series` frames written by
//! [`super::encode`]).
//!
//! Per call: the tenant scope from `thanos-tenant` metadata and, with tenant tokens, the
//! `authorization: Bearer` token; the client's `grpc-timeout` as a deadline the scan checks;
//! `Series` planned before the first frame (so a bad request is a plain error status), then
//! streamed from the blocking pool through a small channel, which stops the scan as soon as the
//! client goes away.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::Stream;
use prost::Message;
use proto::infopb::INFO_PATH;
use proto::storepb::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse, SeriesRequest,
    LABEL_NAMES_PATH, LABEL_VALUES_PATH, SERIES_PATH,
};
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::series::{self, SeriesParams};
use super::{info, names, Scope, Store, StoreError};
use crate::grpc::{
    serve_unary, unknown_method, HttpRequest, HttpResponse, RawCodec, RawMethods, TENANT_METADATA,
};
use crate::server::status;
use crate::tenancy::{ResolveError, TokenStore};

/// Frames buffered between the scan and the connection: the scan runs at most this far ahead
/// of a slow client (each frame is at most about 1 MiB, or a batch of them).
const FRAMES_IN_FLIGHT: usize = 4;

/// What the Store API needs to answer calls.
pub struct StoreApi {
    store: Store,
    tokens: Option<TokenStore>,
    /// The tenant a Thanos Query forwards when its own client named none (Query's
    /// `--query.default-tenant-id`, Receive's `--receive.default-tenant-id`): not a restriction.
    default_tenant: String,
    max_message_bytes: usize,
}

impl StoreApi {
    /// Serves `store`; `tokens` makes every call prove its tenant; `default_tenant` is the
    /// placeholder tenant Query forwards; requests over `max_message_bytes` are refused.
    pub fn new(
        store: Store,
        tokens: Option<TokenStore>,
        default_tenant: String,
        max_message_bytes: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            tokens,
            default_tenant,
            max_message_bytes,
        })
    }

    /// The tenants a call may see: with tokens, the token's tenant (metadata naming another is
    /// refused); else the tenant in `thanos-tenant` metadata, or all when none (or Query's
    /// placeholder) is named.
    pub fn scope(&self, metadata: &MetadataMap) -> Result<Scope, StoreError> {
        let named = match metadata.get(TENANT_METADATA) {
            Some(v) => Some(v.to_str().map_err(|_| ResolveError::HeaderNotAscii)?),
            None => None,
        }
        .filter(|t| !t.is_empty() && *t != self.default_tenant);
        if let Some(tokens) = &self.tokens {
            let authorization = metadata.get("authorization").and_then(|v| v.to_str().ok());
            let tenant = tokens
                .current()
                .authorize(authorization, named)
                .map_err(ResolveError::from)?;
            return Ok(Scope::Tenant(tenant.to_string()));
        }
        Ok(named.map_or(Scope::All, |t| Scope::Tenant(t.to_string())))
    }
}

/// The client's deadline from `grpc-timeout` (`<digits><H|M|S|m|u|n>`), if it sent a valid one.
pub fn deadline_of(metadata: &MetadataMap) -> Option<Instant> {
    let v = metadata.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    let d = match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    Instant::now().checked_add(d)
}

/// The status a call answers: the class's code (the one table in `server::status`), except a
/// passed deadline, which gRPC names itself.
fn status_of(e: &StoreError) -> Status {
    match e {
        StoreError::DeadlineExceeded { .. } => Status::deadline_exceeded(e.to_string()),
        StoreError::Cancelled { .. } => Status::cancelled(e.to_string()),
        _ => status::grpc_status(e),
    }
}

/// Records one finished call.
fn record(method: &'static str, started: Instant, result: &Result<(), Status>) {
    let code = match result {
        Ok(()) => "OK".to_string(),
        Err(s) => format!("{:?}", s.code()),
    };
    metrics::counter!("ringest_store_requests_total", "method" => method, "code" => code)
        .increment(1);
    metrics::histogram!("ringest_store_request_duration_seconds", "method" => method)
        .record(started.elapsed().as_secs_f64());
}

fn decode<M: Message + Default>(body: &Bytes) -> Result<M, StoreError> {
    M::decode(body.as_ref()).map_err(StoreError::Decode)
}

/// Runs a unary method's blocking work and records it.
async fn unary<F>(method: &'static str, work: F) -> Result<Bytes, Status>
where
    F: FnOnce() -> Result<Vec<u8>, StoreError> + Send + 'static,
{
    let started = Instant::now();
    let result = match crate::blocking::run(work).await {
        Ok(Ok(b)) => Ok(Bytes::from(b)),
        Ok(Err(e)) => Err(status_of(&e)),
        Err(e) => Err(status_of(&StoreError::Interrupted(e))),
    };
    record(
        method,
        started,
        &result.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    result
}

/// `thanos.info.Info`.
#[derive(Clone)]
pub struct InfoServer(Arc<StoreApi>);

impl InfoServer {
    /// Serves Info for `api`.
    pub fn new(api: Arc<StoreApi>) -> Self {
        Self(api)
    }
}

impl RawMethods for InfoServer {
    const NAME: &'static str = "thanos.info.Info";

    fn serve(&self, request: HttpRequest) -> BoxFuture<'static, Result<HttpResponse, Infallible>> {
        if request.uri().path() != INFO_PATH {
            return unknown_method();
        }
        let api = self.0.clone();
        serve_unary(request, api.max_message_bytes, move |req| {
            let api = api.clone();
            unary("Info", move || {
                let scope = api.scope(req.metadata())?;
                Ok(info::info(&api.store, &scope)?.encode_to_vec())
            })
        })
    }
}

/// `thanos.Store`: Series, LabelNames, LabelValues.
#[derive(Clone)]
pub struct StoreServer(Arc<StoreApi>);

impl StoreServer {
    /// Serves the Store API for `api`.
    pub fn new(api: Arc<StoreApi>) -> Self {
        Self(api)
    }
}

impl RawMethods for StoreServer {
    const NAME: &'static str = "thanos.Store";

    fn serve(&self, request: HttpRequest) -> BoxFuture<'static, Result<HttpResponse, Infallible>> {
        let api = self.0.clone();
        match request.uri().path() {
            SERIES_PATH => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(RawCodec)
                    .max_decoding_message_size(api.max_message_bytes)
                    .max_encoding_message_size(usize::MAX);
                Ok(grpc.server_streaming(SeriesMethod(api), request).await)
            }),
            LABEL_NAMES_PATH => serve_unary(request, api.max_message_bytes, move |req| {
                let api = api.clone();
                unary("LabelNames", move || {
                    let scope = api.scope(req.metadata())?;
                    let r: LabelNamesRequest = decode(req.get_ref())?;
                    let names = names::label_names(&api.store, &scope, &r)?;
                    Ok(LabelNamesResponse {
                        names,
                        warnings: Vec::new(),
                    }
                    .encode_to_vec())
                })
            }),
            LABEL_VALUES_PATH => serve_unary(request, api.max_message_bytes, move |req| {
                let api = api.clone();
                unary("LabelValues", move || {
                    let scope = api.scope(req.metadata())?;
                    let r: LabelValuesRequest = decode(req.get_ref())?;
                    let values = names::label_values(&api.store, &scope, &r)?;
                    Ok(LabelValuesResponse {
                        values,
                        warnings: Vec::new(),
                    }
                    .encode_to_vec())
                })
            }),
            _ => unknown_method(),
        }
    }
}

/// The frames of one `Series` call.
type FrameStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// `Store/Series` as a server-streaming method.
struct SeriesMethod(Arc<StoreApi>);

impl tonic::server::ServerStreamingService<Bytes> for SeriesMethod {
    type Response = Bytes;
    type ResponseStream = FrameStream;
    type Future = BoxFuture<'static, Result<tonic::Response<FrameStream>, Status>>;

    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let api = self.0.clone();
        Box::pin(async move {
            let started = Instant::now();
            let deadline = deadline_of(req.metadata());
            let planned = crate::blocking::run({
                let api = api.clone();
                move || {
                    let scope = api.scope(req.metadata())?;
                    let r: SeriesRequest = decode(req.get_ref())?;
                    let p = SeriesParams::from_request(&r)?;
                    let plan = series::plan(&api.store, &scope, &p)?;
                    Ok::<_, StoreError>((p, plan))
                }
            })
            .await;
            let (p, plan) = match planned {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    let s = status_of(&e);
                    record("Series", started, &Err(s.clone()));
                    return Err(s);
                }
                Err(e) => return Err(status_of(&StoreError::Interrupted(e))),
            };
            let (tx, mut rx) =
                tokio::sync::mpsc::channel::<Result<Bytes, Status>>(FRAMES_IN_FLIGHT);
            let limits = api.store.limits();
            tokio::task::spawn_blocking(move || {
                let sent = series::stream(&plan, &p, limits, deadline, |frame| {
                    tx.blocking_send(Ok(Bytes::from(frame))).is_ok()
                });
                let result = match sent {
                    Ok(st) => {
                        metrics::counter!("ringest_store_series_sent_total")
                            .increment(st.series as u64);
                        metrics::counter!("ringest_store_chunks_sent_total")
                            .increment(st.chunks as u64);
                        metrics::counter!("ringest_store_samples_sent_total").increment(st.samples);
                        metrics::counter!("ringest_store_bytes_sent_total")
                            .increment(st.bytes as u64);
                        Ok(())
                    }
                    Err(e) => {
                        let s = status_of(&e);
                        if !matches!(e, StoreError::Cancelled { .. }) {
                            tracing::warn!(error = %e, "Store API Series failed mid-stream");
                        }
                        // The client may be gone already; then nobody hears of it.
                        let _ = tx.blocking_send(Err(s.clone()));
                        Err(s)
                    }
                };
                record("Series", started, &result);
            });
            let frames: FrameStream =
                Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
            Ok(tonic::Response::new(frames))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&'static str, &str)]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn grpc_timeouts_parse_as_go_writes_them() {
        let now = Instant::now();
        let d = deadline_of(&md(&[("grpc-timeout", "1500m")])).unwrap();
        assert!(d >= now + Duration::from_millis(1500) && d < now + Duration::from_secs(60));
        assert!(
            deadline_of(&md(&[("grpc-timeout", "2H")])).unwrap() > now + Duration::from_secs(7000)
        );
        for bad in ["", "5", "x5S", "5X", "1234567890S"] {
            assert!(
                deadline_of(&md(&[("grpc-timeout", bad)])).is_none(),
                "{bad}"
            );
        }
        assert!(deadline_of(&MetadataMap::new()).is_none());
    }
}
