//! Error classes: what kind of failure an error is, independent of the transport that reports it.
//!
//! Every error that can reach a client implements [`Classify`] next to its definition; only
//! `server::status` turns a class into an HTTP status or a gRPC code. This module imports nothing
//! from the rest of the crate, so every layer (storage included) can name its errors' classes.

use std::time::Duration;

/// What kind of failure an error is, as a client should see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The request is malformed or names something invalid; retrying it cannot help.
    BadRequest,
    /// No valid credentials were presented.
    Unauthenticated,
    /// Valid credentials, but not for what the request asks.
    Forbidden,
    /// Samples broke the append rules (out of order, duplicate, out of bounds).
    Conflict,
    /// The request is over a size, series or samples limit; retrying the same request cannot help.
    TooLarge,
    /// The content type or encoding is not one this server reads.
    UnsupportedMediaType,
    /// A rate, concurrency or head series limit refused the request: retry later.
    Limited,
    /// Storage, a peer or the ring is unavailable for now: retry.
    Unavailable,
    /// The process is starting (WAL replay): retry.
    NotReady,
    /// Anything else: a bug or a misconfiguration, never bad input.
    Internal,
}

impl ErrorClass {
    /// Every class, for tables and tests that must cover them all.
    pub const ALL: [ErrorClass; 10] = [
        ErrorClass::BadRequest,
        ErrorClass::Unauthenticated,
        ErrorClass::Forbidden,
        ErrorClass::Conflict,
        ErrorClass::TooLarge,
        ErrorClass::UnsupportedMediaType,
        ErrorClass::Limited,
        ErrorClass::Unavailable,
        ErrorClass::NotReady,
        ErrorClass::Internal,
    ];
}

/// An error that knows its [`ErrorClass`].
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> ErrorClass;

    /// How long a client should wait before retrying, when the error says.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_class_once() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorClass::ALL {
            // A match without a wildcard: adding a class breaks this until ALL lists it too.
            match c {
                ErrorClass::BadRequest
                | ErrorClass::Unauthenticated
                | ErrorClass::Forbidden
                | ErrorClass::Conflict
                | ErrorClass::TooLarge
                | ErrorClass::UnsupportedMediaType
                | ErrorClass::Limited
                | ErrorClass::Unavailable
                | ErrorClass::NotReady
                | ErrorClass::Internal => {}
            }
            assert!(seen.insert(c), "{c:?} listed twice");
        }
        assert_eq!(seen.len(), ErrorClass::ALL.len());
    }
}
