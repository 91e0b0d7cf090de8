//! The one place where errors of every module become HTTP status codes and gRPC codes.

use std::time::Duration;

use axum::http::StatusCode;
use tonic::{Code, Status};

use crate::ingest::IngestError;
use crate::limits::{LimitError, HEAD_SERIES_RETRY_AFTER};
use crate::query::ReadError;
use crate::remote_write::{DecodeError, ErrorKind};
use crate::router::quorum::ReplicaError;
use crate::router::RouteError;
use crate::tenancy::{AuthError, TenantError};

/// An error answered to an HTTP client: a status and a message naming the problem.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message, sent as the plain-text body.
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, at least 1) with 429s.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The `Retry-After` header value: whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .map(|s| s.max(1))
    }
}

/// The HTTP status of a limit refusal: 413 for request limits (Thanos: retrying the same request
/// cannot help), 429 for head series, concurrency and rate limits (retry after `Retry-After`).
pub fn limit_status(e: &LimitError) -> StatusCode {
    match e {
        LimitError::BodySize { .. } | LimitError::Series { .. } | LimitError::Samples { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        LimitError::HeadSeries { .. }
        | LimitError::Concurrency { .. }
        | LimitError::Rate { .. } => StatusCode::TOO_MANY_REQUESTS,
    }
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        Self {
            status: limit_status(&e),
            message: e.to_string(),
            retry_after: e.retry_after(),
        }
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        let status = match e.kind() {
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, e.to_string())
    }
}

/// The HTTP status of a refused bearer token: 401 when there is no valid token, 403 when the
/// token is valid but the tenant header names another tenant.
pub fn auth_status(e: &AuthError) -> StatusCode {
    match e {
        AuthError::Missing | AuthError::Malformed | AuthError::Unknown => StatusCode::UNAUTHORIZED,
        AuthError::TenantMismatch { .. } => StatusCode::FORBIDDEN,
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::new(auth_status(&e), e.to_string())
    }
}

/// The `WWW-Authenticate` challenge sent with a status (every 401, RFC 9110 and RFC 6750).
pub fn challenge(status: StatusCode) -> Option<&'static str> {
    (status == StatusCode::UNAUTHORIZED).then_some("Bearer realm=\"ringest\"")
}

/// The HTTP status of a replication cause (Thanos: conflict 409, unavailable and not ready 503;
/// Ringest: an ingestor's limit 429).
pub fn replica_status(cause: ReplicaError) -> StatusCode {
    match cause {
        ReplicaError::Limited => StatusCode::TOO_MANY_REQUESTS,
        ReplicaError::Conflict => StatusCode::CONFLICT,
        ReplicaError::NotReady | ReplicaError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ReplicaError::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        let status = match &e {
            RouteError::RingNotLoaded => StatusCode::SERVICE_UNAVAILABLE,
            // Thanos answers 500 for "no matching hashring": a configuration problem, not bad input.
            RouteError::Lookup(_) => StatusCode::INTERNAL_SERVER_ERROR,
            RouteError::Replication { cause, .. } => replica_status(*cause),
        };
        let retry_after = matches!(
            e,
            RouteError::Replication {
                cause: ReplicaError::Limited,
                ..
            }
        )
        .then_some(HEAD_SERIES_RETRY_AFTER);
        Self {
            retry_after,
            ..Self::new(status, e.to_string())
        }
    }
}

/// The HTTP status of a local write failure.
pub fn ingest_status(e: &IngestError) -> StatusCode {
    match e {
        IngestError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        IngestError::Tenant(_) => StatusCode::BAD_REQUEST,
        IngestError::Conflict { .. } => StatusCode::CONFLICT,
        IngestError::Limit(l) => limit_status(l),
        // Disk full and I/O trouble are retryable: nothing of the request was acknowledged.
        IngestError::Storage(_) | IngestError::Open { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Limit(l) => l.into(),
            e => Self::new(ingest_status(&e), e.to_string()),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        let status = match &e {
            ReadError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ReadError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ReadError::Ingest(inner) => ingest_status(inner),
            ReadError::Unavailable { .. } | ReadError::Route(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, e.to_string())
    }
}

/// The gRPC status an ingestor answers a replicated write with (Thanos's codes, so Thanos routers
/// count conflicts and unavailability the same way).
pub fn ingest_grpc_status(e: &IngestError) -> Status {
    let code = match e {
        IngestError::NotReady | IngestError::Storage(_) | IngestError::Open { .. } => {
            Code::Unavailable
        }
        IngestError::Conflict { .. } => Code::AlreadyExists,
        IngestError::Tenant(_) => Code::InvalidArgument,
        IngestError::Limit(l) => limit_grpc_code(l),
    };
    let mut status = Status::new(code, e.to_string());
    match e {
        IngestError::Conflict { stats, .. } if !stats.rejected_series.is_empty() => {
            if let Some(b) = crate::grpc::encode_rejected_series(&stats.rejected_series) {
                status.metadata_mut().insert_bin(
                    crate::grpc::REJECTED_SERIES_METADATA,
                    tonic::metadata::MetadataValue::from_bytes(&b),
                );
            }
        }
        IngestError::Limit(_) if code == Code::ResourceExhausted => {
            status.metadata_mut().insert(
                crate::grpc::LIMITED_METADATA,
                tonic::metadata::MetadataValue::from_static("1"),
            );
        }
        _ => {}
    }
    status
}

/// The gRPC code of a limit refusal: ResourceExhausted for the retryable (429) ones, which a
/// Ringest router maps back to 429.
pub fn limit_grpc_code(e: &LimitError) -> Code {
    if limit_status(e) == StatusCode::TOO_MANY_REQUESTS {
        Code::ResourceExhausted
    } else {
        Code::InvalidArgument
    }
}

/// The gRPC status of a replicated write body that does not decode.
pub fn decode_grpc_status(e: &DecodeError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// The gRPC status of a failed read.
pub fn read_grpc_status(e: &ReadError) -> Status {
    let code = match e {
        ReadError::BadRequest(_) | ReadError::TooLarge(_) => Code::InvalidArgument,
        ReadError::Ingest(inner) => ingest_grpc_status(inner).code(),
        ReadError::Unavailable { .. } | ReadError::Route(_) => Code::Unavailable,
    };
    Status::new(code, e.to_string())
}
