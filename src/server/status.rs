//! The one place where errors of every module become HTTP status codes and gRPC codes.

use axum::http::StatusCode;
use tonic::{Code, Status};

use crate::ingest::IngestError;
use crate::query::ReadError;
use crate::remote_write::{DecodeError, ErrorKind};
use crate::router::quorum::ReplicaError;
use crate::router::RouteError;
use crate::tenancy::TenantError;

/// An error answered to an HTTP client: a status and a message naming the problem.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message, sent as the plain-text body.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
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

/// The HTTP status of a replication cause (Thanos: conflict 409, unavailable and not ready 503).
pub fn replica_status(cause: ReplicaError) -> StatusCode {
    match cause {
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
        Self::new(status, e.to_string())
    }
}

/// The HTTP status of a local write failure.
pub fn ingest_status(e: &IngestError) -> StatusCode {
    match e {
        IngestError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        IngestError::Tenant(_) => StatusCode::BAD_REQUEST,
        IngestError::Conflict { .. } => StatusCode::CONFLICT,
        // Disk full and I/O trouble are retryable: nothing of the request was acknowledged.
        IngestError::Storage(_) | IngestError::Open { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        Self::new(ingest_status(&e), e.to_string())
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
    };
    Status::new(code, e.to_string())
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
