//! The one place where error classes become HTTP status codes and gRPC codes, and where a peer's
//! gRPC code becomes a class again (GreptimeDB's `status_code.rs`: one enum, one table per transport).
//!
//! Errors say their [`ErrorClass`] next to their definitions ([`Classify`]); this module alone
//! knows what each class means on the wire.

use std::fmt::Display;
use std::time::Duration;

use axum::http::StatusCode;
use tonic::{Code, Status};

use crate::error::{Classify, ErrorClass};

/// What one class is on each transport.
struct Row {
    /// The HTTP status a client of this node gets.
    http: StatusCode,
    /// The gRPC code an ingestor answers a router with.
    grpc: Code,
    /// What a router answers its client when an ingestor refused a replicated write with this
    /// class (`grpc`, mapped back by [`class_of_grpc`]): `http` unless noted in the table.
    #[cfg_attr(not(test), allow(dead_code))]
    routed_http: StatusCode,
}

/// The table. Codes are Thanos's, so mixed Thanos and Ringest fleets count errors the same way.
const fn row(class: ErrorClass) -> Row {
    // A router validated and authorised a request before forwarding it, so a peer refusing it
    // (as bad input, or for an unknown reason) is not the client's fault: the quorum counts such
    // answers as unknown, and a series failed by unknown causes is unavailable (another replica
    // or a retry may take it): 503. These classes therefore differ by path on purpose.
    const PEER_DISAGREES: StatusCode = StatusCode::SERVICE_UNAVAILABLE;
    match class {
        ErrorClass::BadRequest => Row {
            http: StatusCode::BAD_REQUEST,
            grpc: Code::InvalidArgument,
            routed_http: PEER_DISAGREES,
        },
        // Only HTTP clients present tokens; peers are trusted by (m)TLS.
        ErrorClass::Unauthenticated => Row {
            http: StatusCode::UNAUTHORIZED,
            grpc: Code::Unauthenticated,
            routed_http: PEER_DISAGREES,
        },
        ErrorClass::Forbidden => Row {
            http: StatusCode::FORBIDDEN,
            grpc: Code::PermissionDenied,
            routed_http: PEER_DISAGREES,
        },
        // Thanos answers 409 over HTTP and AlreadyExists over gRPC for the same conflict.
        ErrorClass::Conflict => Row {
            http: StatusCode::CONFLICT,
            grpc: Code::AlreadyExists,
            routed_http: StatusCode::CONFLICT,
        },
        // Retrying cannot help, so not ResourceExhausted (which a router turns into 429).
        ErrorClass::TooLarge => Row {
            http: StatusCode::PAYLOAD_TOO_LARGE,
            grpc: Code::InvalidArgument,
            routed_http: PEER_DISAGREES,
        },
        // gRPC has no content negotiation: a body it cannot read is an invalid argument.
        ErrorClass::UnsupportedMediaType => Row {
            http: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            grpc: Code::InvalidArgument,
            routed_http: PEER_DISAGREES,
        },
        // Sent with the `ringest-limited` mark (see [`grpc_status`]): only a marked
        // ResourceExhausted is a limit, not e.g. grpc-go's answer to an oversized message.
        ErrorClass::Limited => Row {
            http: StatusCode::TOO_MANY_REQUESTS,
            grpc: Code::ResourceExhausted,
            routed_http: StatusCode::TOO_MANY_REQUESTS,
        },
        ErrorClass::Unavailable => Row {
            http: StatusCode::SERVICE_UNAVAILABLE,
            grpc: Code::Unavailable,
            routed_http: StatusCode::SERVICE_UNAVAILABLE,
        },
        // Thanos sends not-ready as Unavailable; both are 503 and ask the client to retry.
        ErrorClass::NotReady => Row {
            http: StatusCode::SERVICE_UNAVAILABLE,
            grpc: Code::Unavailable,
            routed_http: StatusCode::SERVICE_UNAVAILABLE,
        },
        ErrorClass::Internal => Row {
            http: StatusCode::INTERNAL_SERVER_ERROR,
            grpc: Code::Internal,
            routed_http: PEER_DISAGREES,
        },
    }
}

/// The HTTP status of a class.
pub fn http_status(class: ErrorClass) -> StatusCode {
    row(class).http
}

/// The gRPC code of a class.
pub fn grpc_code(class: ErrorClass) -> Code {
    row(class).grpc
}

/// The class of a peer ingestor's gRPC answer, as the router counts it: the table read backwards
/// (Thanos's rules). Codes several classes share, and codes of requests a router should never
/// have forwarded, are [`ErrorClass::Internal`].
pub fn class_of_grpc(status: &Status) -> ErrorClass {
    match status.code() {
        Code::AlreadyExists => ErrorClass::Conflict,
        // A hung peer answers nothing: tonic reports its own request timeout as Cancelled, ours
        // as DeadlineExceeded. Not-ready ingestors answer Unavailable too.
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorClass::Unavailable,
        // A Ringest ingestor's limit (head series): 429. Other ResourceExhausted answers (a
        // message over a Thanos peer's gRPC size limit) are not the client's to slow down for.
        Code::ResourceExhausted if crate::grpc::is_limited(status) => ErrorClass::Limited,
        _ => ErrorClass::Internal,
    }
}

/// The gRPC status an ingestor answers with: the class's code and the error's message, marked
/// as a Ringest limit when the class is [`ErrorClass::Limited`].
pub fn grpc_status<E: Classify + Display + ?Sized>(e: &E) -> Status {
    let class = e.class();
    let mut status = Status::new(grpc_code(class), e.to_string());
    if class == ErrorClass::Limited {
        status.metadata_mut().insert(
            crate::grpc::LIMITED_METADATA,
            tonic::metadata::MetadataValue::from_static("1"),
        );
    }
    status
}

/// An error answered to an HTTP client: its class and a message naming the problem.
#[derive(Debug)]
pub struct ApiError {
    /// The class, which gives the HTTP status.
    pub class: ErrorClass,
    /// The message, sent as the plain-text body.
    pub message: String,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// The answer to `e`: its class, message and retry hint.
    pub fn of<E: Classify + Display + ?Sized>(e: &E) -> Self {
        Self {
            class: e.class(),
            message: e.to_string(),
            retry_after: e.retry_after(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        http_status(self.class)
    }

    /// The `Retry-After` header value: whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .map(|s| s.max(1))
    }
}

impl<E: Classify + Display> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self::of(&e)
    }
}

/// The `WWW-Authenticate` challenge sent with a status (every 401, RFC 9110 and RFC 6750).
pub fn challenge(status: StatusCode) -> Option<&'static str> {
    (status == StatusCode::UNAUTHORIZED).then_some("Bearer realm=\"ringest\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::IngestError;
    use crate::limits::LimitError;
    use crate::router::quorum::{request_cause, series_outcome, ReplicaError};
    use crate::router::RouteError;

    /// An error of a given class, standing for any error type of that class.
    #[derive(Debug)]
    struct OfClass(ErrorClass);

    impl Display for OfClass {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "refused as {:?}", self.0)
        }
    }

    impl Classify for OfClass {
        fn class(&self) -> ErrorClass {
            self.0
        }
    }

    /// What a router's client gets when the only replica (RF 1) failed with `cause`.
    fn routed_status(cause: ReplicaError) -> StatusCode {
        let cause = series_outcome([Some(cause)], 1).unwrap_err();
        let err = RouteError::Replication {
            cause: request_cause([cause]).unwrap(),
            failed_series: 1,
            total_series: 1,
            samples_written: 0,
            message: String::new(),
        };
        ApiError::from(err).status()
    }

    /// The HTTP status a router answers after the ingestor answered `e` over gRPC.
    fn over_grpc(e: &(impl Classify + Display)) -> StatusCode {
        routed_status(ReplicaError::from(class_of_grpc(&grpc_status(e))))
    }

    #[test]
    fn local_and_grpc_paths_agree_per_class_except_where_the_table_says() {
        for class in ErrorClass::ALL {
            let local = ApiError::from(OfClass(class)).status();
            assert_eq!(local, http_status(class));
            let routed = over_grpc(&OfClass(class));
            assert_eq!(routed, row(class).routed_http, "{class:?}");
            // An all-in-one's own ingestor is called directly: same answer as over gRPC.
            assert_eq!(
                routed_status(ReplicaError::from(class)),
                routed,
                "{class:?}"
            );
        }
        // The deliberate differences: what a router refuses before forwarding, and unknowns.
        let differing: Vec<ErrorClass> = ErrorClass::ALL
            .into_iter()
            .filter(|&c| row(c).routed_http != row(c).http)
            .collect();
        assert_eq!(
            differing,
            [
                ErrorClass::BadRequest,
                ErrorClass::Unauthenticated,
                ErrorClass::Forbidden,
                ErrorClass::TooLarge,
                ErrorClass::UnsupportedMediaType,
                ErrorClass::Internal,
            ]
        );
    }

    #[test]
    fn ingest_errors_answer_the_same_locally_and_through_a_router() {
        let limit = LimitError::HeadSeries {
            tenant: "t".into(),
            head_series: 3,
            new_series: 1,
            limit: 3,
        };
        let cases: Vec<(IngestError, StatusCode)> = vec![
            (IngestError::NotReady, StatusCode::SERVICE_UNAVAILABLE),
            (
                IngestError::Conflict {
                    stats: Default::default(),
                    message: "out of order sample".into(),
                },
                StatusCode::CONFLICT,
            ),
            (IngestError::Limit(limit), StatusCode::TOO_MANY_REQUESTS),
            (
                IngestError::Append(crate::tsdb::db::AppendError::Wal {
                    source: std::sync::Arc::new(crate::tsdb::wlog::WalError::Poisoned),
                }),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(ApiError::of(&e).status(), want, "{e}");
            assert_eq!(over_grpc(&e), want, "{e}");
        }
        // A retryable limit carries its wait both ways.
        let limited = IngestError::Limit(LimitError::Rate {
            tenant: "t".into(),
            samples: 10,
            rate: 1.0,
            retry_after: Duration::from_millis(1500),
        });
        assert_eq!(ApiError::of(&limited).retry_after_secs(), Some(2));
        assert!(crate::grpc::is_limited(&grpc_status(&limited)));
    }

    #[test]
    fn resource_exhausted_without_the_mark_is_not_a_limit() {
        let too_big = Status::resource_exhausted("grpc: received message larger than max");
        assert_eq!(class_of_grpc(&too_big), ErrorClass::Internal);
        assert_eq!(
            class_of_grpc(&Status::deadline_exceeded("slow")),
            ErrorClass::Unavailable
        );
        assert_eq!(
            class_of_grpc(&Status::cancelled("timeout")),
            ErrorClass::Unavailable
        );
    }

    #[test]
    fn only_401_carries_a_challenge() {
        for class in ErrorClass::ALL {
            let s = http_status(class);
            assert_eq!(challenge(s).is_some(), class == ErrorClass::Unauthenticated);
        }
    }
}
