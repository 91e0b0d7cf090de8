//! HTTP and gRPC front ends: remote write, remote read, health, readiness and metrics.

pub mod status;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use prost::Message;
use tonic::Status;

use crate::error::{Classify, ErrorClass};
use crate::grpc::GrpcHandler;
use crate::ingest::{IngestError, Ingestor};
use crate::limits::Limiter;
use crate::query::{self, ReadError};
use crate::remote_write::{self, Limits, Series, WriteRequest};
use crate::router::Router;
use crate::tenancy::{self, ResolveError, Tenant};
use status::ApiError;

/// Request handling settings shared by the listeners.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Header naming the tenant.
    pub tenant_header: HeaderName,
    /// Tenant when the header is absent.
    pub default_tenant: String,
    /// Header carrying the replica number of an already replicated write.
    pub replica_header: HeaderName,
    /// Body size caps.
    pub limits: Limits,
}

/// What this process does with requests.
pub struct App {
    /// Settings.
    pub config: AppConfig,
    /// Present when writes are routed over a hash ring.
    pub router: Option<Arc<Router>>,
    /// Present when this process stores data.
    pub ingestor: Option<Arc<Ingestor>>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Write limits and gates (`--receive.limits-config-file`).
    pub limiter: Arc<Limiter>,
    /// Per-tenant bearer tokens (`--receive.tenant-tokens-file`): when present, every write and
    /// read must carry one, and the request's tenant is the token's.
    pub tokens: Option<tenancy::TokenStore>,
}

const SAMPLES_WRITTEN: &str = "X-Prometheus-Remote-Write-Samples-Written";
const HISTOGRAMS_WRITTEN: &str = "X-Prometheus-Remote-Write-Histograms-Written";
const EXEMPLARS_WRITTEN: &str = "X-Prometheus-Remote-Write-Exemplars-Written";

/// Why the front end itself refused a request (before any module below it was asked).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The replica header is not a non-negative integer.
    #[error("bad replica header {header}: expected a non-negative integer")]
    BadReplicaHeader {
        /// The header's name (`--receive.replica-header`).
        header: HeaderName,
    },
    /// `Content-Length` is over the body limit.
    #[error("request body of {len} bytes exceeds the limit of {limit} bytes")]
    DeclaredTooLarge {
        /// The declared length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The body grew over the limit while being read.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body could not be read (the client went away or sent a broken stream).
    #[error("reading request body: {0}")]
    ReadBody(#[source] axum::Error),
    /// A replicated write names no tenant.
    #[error("replicated write without a tenant")]
    NoTenant,
    /// This process has neither a ring to route to nor local storage.
    #[error("no ring and no local storage")]
    NoStorage,
    /// This process has nothing to read from.
    #[error("no storage to read")]
    NothingToRead,
}

impl Classify for RequestError {
    fn class(&self) -> ErrorClass {
        match self {
            RequestError::BadReplicaHeader { .. }
            | RequestError::ReadBody(_)
            | RequestError::NoTenant => ErrorClass::BadRequest,
            RequestError::DeclaredTooLarge { .. } | RequestError::BodyTooLarge { .. } => {
                ErrorClass::TooLarge
            }
            RequestError::NoStorage | RequestError::NothingToRead => ErrorClass::Unavailable,
        }
    }
}

/// The answer to one remote write: status, message and the counts of what was stored.
struct WriteAnswer {
    status: StatusCode,
    message: String,
    samples_written: usize,
    /// `Retry-After` seconds (429).
    retry_after: Option<u64>,
}

impl IntoResponse for WriteAnswer {
    fn into_response(self) -> Response {
        let mut resp = if self.message.is_empty() {
            self.status.into_response()
        } else {
            (self.status, format!("{}\n", self.message)).into_response()
        };
        let h = resp.headers_mut();
        h.insert(SAMPLES_WRITTEN, HeaderValue::from(self.samples_written));
        // Native histograms and exemplars are not stored yet, so none is ever counted as written.
        h.insert(HISTOGRAMS_WRITTEN, HeaderValue::from(0u32));
        h.insert(EXEMPLARS_WRITTEN, HeaderValue::from(0u32));
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = status::challenge(self.status) {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        resp
    }
}

impl From<ApiError> for WriteAnswer {
    fn from(e: ApiError) -> Self {
        Self {
            status: e.status(),
            retry_after: e.retry_after_secs(),
            message: e.message,
            samples_written: 0,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after_secs();
        let status = self.status();
        let mut resp = (status, format!("{}\n", self.message)).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = status::challenge(status) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        resp
    }
}

impl App {
    /// The request's tenant, resolved once per request: with tenant tokens, the bearer token's
    /// (a tenant header naming another tenant is refused); else the tenant header's, or the
    /// default tenant.
    fn tenant(&self, headers: &HeaderMap) -> Result<Tenant, ResolveError> {
        tenancy::resolve(
            headers.get(&self.config.tenant_header),
            headers.get(header::AUTHORIZATION),
            self.tokens.as_ref(),
            &self.config.default_tenant,
        )
    }

    fn replica(&self, headers: &HeaderMap) -> Result<u64, RequestError> {
        let Some(v) = headers.get(&self.config.replica_header) else {
            return Ok(0);
        };
        v.to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| RequestError::BadReplicaHeader {
                header: self.config.replica_header.clone(),
            })
    }

    /// Writes the request of `tenant` (already resolved: 401/403 come before anything else, so
    /// an unauthenticated client learns nothing of what is accepted).
    async fn write(
        &self,
        tenant: &Tenant,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<WriteAnswer, ApiError> {
        // Headers first: 415 before anything is read or decoded.
        let tenant = tenant.as_str();
        let content_type = header_str(headers, header::CONTENT_TYPE);
        let content_encoding = header_str(headers, header::CONTENT_ENCODING);
        let protocol = remote_write::negotiate(content_type, content_encoding)?;
        let mut replica = self.replica(headers)?;
        if self.ingestor.is_none() {
            // A router without local storage forwards everything (Thanos #4359).
            replica = 0;
        }
        // The concurrency gate, before the body is read (as Thanos); held until answered.
        let _permit = self.limiter.admit(tenant).await?;

        let limit = self.config.limits.max_compressed_bytes;
        if let Some(len) = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
        {
            if len > limit {
                return Err(RequestError::DeclaredTooLarge { len, limit }.into());
            }
            self.limiter.check_size(tenant, len as u64, false)?;
        }
        let compressed = axum::body::to_bytes(body, limit).await.map_err(|e| {
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                RequestError::BodyTooLarge { limit }
            } else {
                RequestError::ReadBody(e)
            }
        })?;
        // Thanos checks size_bytes_limit against the compressed and the decompressed size; the
        // latter is read from the snappy header, before decompressing.
        self.limiter
            .check_size(tenant, compressed.len() as u64, false)?;
        if let Ok(n) = snap::raw::decompress_len(&compressed) {
            self.limiter.check_size(tenant, n as u64, true)?;
        }
        let mut bufs = DecodeBuffers::take();
        // Malformed requests give their buffers back too, so a flood of them allocates nothing.
        if let Err(e) =
            remote_write::decompress_into(&compressed, &self.config.limits, &mut bufs.raw)
        {
            bufs.give_back();
            return Err(e.into());
        }
        let mut req = std::mem::take(&mut bufs.req).recycle();
        if let Err(e) = remote_write::decode_into(protocol, &bufs.raw, &mut req) {
            bufs.req = req.recycle();
            bufs.give_back();
            return Err(e.into());
        }
        let valid_samples = req.num_samples();
        // Request limits count every series and sample sent, valid or not (Thanos counts the
        // decoded request before validating it).
        let allowed = self.limiter.check_request(
            tenant,
            (req.series.len() + req.invalid.len()) as u64,
            valid_samples as u64 + req.num_invalid_samples(),
        );

        // An error carries the samples stored despite it: a 409 stores the valid ones.
        let stored: Result<(), (ApiError, usize)> = match (&self.router, &self.ingestor) {
            _ if allowed.is_err() => allowed.map_err(|e| (ApiError::from(e), 0)),
            (Some(router), _) if replica == 0 => router.write(tenant, &req).await.map_err(|e| {
                let written = e.samples_written();
                (ApiError::from(e), written)
            }),
            (_, Some(ingestor)) => {
                let series: Vec<&Series> = req.series.iter().collect();
                match ingestor.write(tenant, &req, &series).await {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let written = match &e {
                            IngestError::Conflict { stats, .. } => stats.samples_appended as usize,
                            _ => 0,
                        };
                        Err((ApiError::from(e), written))
                    }
                }
            }
            _ => Err((RequestError::NoStorage.into(), 0)),
        };
        let answer = match stored {
            Ok(()) => {
                metrics::counter!("ringest_samples_received_total", "tenant" => tenant.to_string())
                    .increment(valid_samples as u64);
                partial_answer(&req, valid_samples)
            }
            Err((e, samples_written)) => WriteAnswer {
                samples_written,
                ..WriteAnswer::from(e)
            },
        };
        // Refused requests give their buffers back too, so a flood of them allocates nothing.
        bufs.req = req.recycle();
        bufs.give_back();
        Ok(answer)
    }
}

/// A decompression buffer and decoded-request vectors, reused across requests so a steady stream
/// of requests allocates (and page-faults in) nothing large.
#[derive(Default)]
struct DecodeBuffers {
    raw: Vec<u8>,
    req: WriteRequest<'static>,
}

static DECODE_POOL: parking_lot::Mutex<Vec<DecodeBuffers>> = parking_lot::Mutex::new(Vec::new());

impl DecodeBuffers {
    /// Pooled sets kept at most; one per concurrently served request is enough.
    const POOL_MAX: usize = 64;
    /// Larger buffers (from rare huge requests) are freed rather than kept.
    const KEEP_MAX_BYTES: usize = 16 << 20;

    fn take() -> Self {
        DECODE_POOL.lock().pop().unwrap_or_default()
    }

    fn give_back(self) {
        if self.raw.capacity() > Self::KEEP_MAX_BYTES {
            return;
        }
        let mut pool = DECODE_POOL.lock();
        if pool.len() < Self::POOL_MAX {
            pool.push(self);
        }
    }
}

/// 204 when every series was valid, else 400 naming the invalid ones (the valid ones are stored).
fn partial_answer(req: &WriteRequest<'_>, samples_written: usize) -> WriteAnswer {
    if req.invalid.is_empty() {
        return WriteAnswer {
            status: StatusCode::NO_CONTENT,
            message: String::new(),
            samples_written,
            retry_after: None,
        };
    }
    let mut message = format!(
        "partial write: {} series rejected, {} series with {} samples stored",
        req.invalid.len(),
        req.series.len(),
        samples_written
    );
    for inv in req.invalid.iter().take(3) {
        message.push_str("; ");
        message.push_str(&inv.reason.to_string());
    }
    if req.invalid.len() > 3 {
        message.push_str(&format!("; and {} more", req.invalid.len() - 3));
    }
    WriteAnswer {
        status: StatusCode::BAD_REQUEST,
        message,
        samples_written,
        retry_after: None,
    }
}

fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn receive(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let resolved = app.tenant(&headers);
    let answer = match &resolved {
        Ok(tenant) => app.write(tenant, &headers, body).await,
        Err(e) => Err(ApiError::of(e)),
    }
    .unwrap_or_else(WriteAnswer::from);
    // A refused tenant is logged and counted as "".
    let tenant = resolved.map(|t| t.to_string()).unwrap_or_default();
    let status = answer.status.as_u16();
    if answer.status.is_server_error() {
        tracing::warn!(tenant, status, error = %answer.message, "write failed");
    } else if answer.status.is_client_error() {
        tracing::debug!(tenant, status, error = %answer.message, "write refused");
    }
    metrics::counter!("ringest_http_requests_total", "handler" => "receive", "code" => status.to_string(), "tenant" => tenant)
        .increment(1);
    metrics::histogram!("ringest_http_request_duration_seconds", "handler" => "receive")
        .record(started.elapsed().as_secs_f64());
    answer.into_response()
}

/// 405 for any method but POST on the write paths, saying so (axum's own answer has no body).
async fn write_method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let mut resp = (
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {method} not allowed on {}: remote write uses POST\n",
            uri.path()
        ),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    resp
}

async fn read(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let resolved = app.tenant(&headers);
    let result = async {
        let tenant = resolved.as_ref().map_err(ApiError::of)?.as_str();
        let req = query::decode_request(&body, app.config.limits.max_decompressed_bytes)?;
        let resp = match (&app.router, &app.ingestor) {
            (Some(router), _) => query::read_fanout(router, tenant, &req).await?,
            (None, Some(ingestor)) => query::read_local(ingestor, tenant, &req).await?,
            (None, None) => return Err(RequestError::NothingToRead.into()),
        };
        Ok::<_, ApiError>(query::encode_response(&resp))
    }
    .await;
    // A refused tenant is logged and counted as "".
    let tenant = resolved.map(|t| t.to_string()).unwrap_or_default();
    let response = match result {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/x-protobuf"),
                (header::CONTENT_ENCODING, "snappy"),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(tenant, status = e.status().as_u16(), error = %e.message, "read failed");
            e.into_response()
        }
    };
    metrics::counter!("ringest_http_requests_total", "handler" => "read", "code" => response.status().as_u16().to_string(), "tenant" => tenant)
        .increment(1);
    metrics::histogram!("ringest_http_request_duration_seconds", "handler" => "read")
        .record(started.elapsed().as_secs_f64());
    response
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    let ingestor_ready = app.ingestor.as_ref().is_none_or(|i| i.is_ready());
    let ring_ready = app
        .router
        .as_ref()
        .is_none_or(|r| r.ring().current().is_some());
    if ingestor_ready && ring_ready {
        (StatusCode::OK, "Ringest is Ready.\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Ringest is not ready: WAL replay or hashring load in progress.\n",
        )
            .into_response()
    }
}

async fn metrics_handler(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// Routes of the remote write listener.
pub fn remote_write_routes(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/v1/receive",
            post(receive).fallback(write_method_not_allowed),
        )
        .route(
            "/api/v1/write",
            post(receive).fallback(write_method_not_allowed),
        )
        // Body size is enforced in the handler so the answer names the limit.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(app)
}

/// Routes of the HTTP listener: health, readiness, metrics and remote read.
pub fn http_routes(app: Arc<App>) -> axum::Router {
    let limit = app.config.limits.max_compressed_bytes;
    axum::Router::new()
        .route("/-/healthy", get(|| async { "Ringest is Healthy.\n" }))
        .route("/-/ready", get(ready))
        .route("/metrics", get(metrics_handler))
        .route("/api/v1/read", post(read))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// The ingestor's answers to replicated writes and router reads over gRPC.
pub struct IngestGrpc {
    /// The local storage.
    pub ingestor: Arc<Ingestor>,
}

impl IngestGrpc {
    async fn write(ingestor: Arc<Ingestor>, body: Bytes) -> Result<(), Status> {
        let decode = |b| remote_write::decode_thanos_write(b).map_err(|e| status::grpc_status(&e));
        let req = decode(&body)?;
        if req.tenant_batches == 0 {
            // The classic form, decoded once.
            return Self::write_request(&ingestor, req, true).await;
        }
        // Per-tenant batches (field 4) replace fields 1 and 2, as in Thanos. Every tenant is
        // written even when an earlier one failed; the first error is reported.
        let batches =
            remote_write::thanos_tenant_batches(&body).map_err(|e| status::grpc_status(&e))?;
        let mut first_err = None;
        for batch in batches {
            // Per-series rejection lists index one batch; they cannot describe the whole call.
            if let Err(e) = Self::write_request(&ingestor, decode(batch)?, false).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Writes one decoded request; `counts` lets a conflict answer list its rejected series
    /// (their indexes are the request's series as the router sent them).
    async fn write_request(
        ingestor: &Ingestor,
        req: WriteRequest<'_>,
        counts: bool,
    ) -> Result<(), Status> {
        let tenant = req
            .tenant
            .ok_or_else(|| status::grpc_status(&RequestError::NoTenant))?;
        let series: Vec<&Series> = req.series.iter().collect();
        if let Err(e) = ingestor.write(tenant, &req, &series).await {
            tracing::debug!(tenant, error = %e, "replicated write failed");
            let mut st = status::grpc_status(&e);
            // Invalid series were dropped from `series`: their indexes would not match the
            // router's, so the rejection list is only sent for a request that had none.
            if let IngestError::Conflict { stats, .. } = &e {
                if counts && req.invalid.is_empty() {
                    attach_rejected_series(&mut st, &stats.rejected_series);
                }
            }
            return Err(st);
        }
        if let Some(inv) = req.invalid.first() {
            // Thanos counts label problems as conflicts: the valid series are stored.
            return Err(status::grpc_status(&IngestError::Conflict {
                stats: Default::default(),
                message: format!("{} invalid series: {}", req.invalid.len(), inv.reason),
            }));
        }
        Ok(())
    }
}

impl GrpcHandler for IngestGrpc {
    fn remote_write(&self, body: Bytes) -> BoxFuture<'static, Result<(), Status>> {
        Box::pin(Self::write(self.ingestor.clone(), body))
    }

    fn remote_read(
        &self,
        tenant: String,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, Status>> {
        let ingestor = self.ingestor.clone();
        Box::pin(async move {
            let req = proto::prompb::ReadRequest::decode(body)
                .map_err(|e| status::grpc_status(&ReadError::Protobuf(e)))?;
            let resp = query::read_local(&ingestor, &tenant, &req)
                .await
                .map_err(|e| status::grpc_status(&e))?;
            Ok(Bytes::from(query::encode_read_response(&resp)))
        })
    }
}

/// Lists a conflict's partly rejected series in its answer, so the router counts what a write
/// quorum stored instead of failing every series it sent.
fn attach_rejected_series(status: &mut Status, rejected: &[(u32, u32)]) {
    if rejected.is_empty() {
        return;
    }
    if let Some(b) = crate::grpc::encode_rejected_series(rejected) {
        status.metadata_mut().insert_bin(
            crate::grpc::REJECTED_SERIES_METADATA,
            tonic::metadata::MetadataValue::from_bytes(&b),
        );
    }
}
