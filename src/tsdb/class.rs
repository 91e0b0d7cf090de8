//! Error classes of the storage errors that can reach a client (see [`crate::error`]).
//!
//! Kept in one file so the storage modules stay free of transport concerns: storage failures
//! are retryable (nothing of the request was acknowledged), append rule violations are conflicts.

use crate::error::{Classify, ErrorClass};
use crate::tsdb::block::BlockError;
use crate::tsdb::checkpoint::CheckpointError;
use crate::tsdb::db::{AppendError, TsdbError};
use crate::tsdb::matcher::MatcherError;
use crate::tsdb::wlog::WalError;

impl Classify for AppendError {
    fn class(&self) -> ErrorClass {
        match self {
            AppendError::Conflict { .. } => ErrorClass::Conflict,
            AppendError::SeriesLimit { .. } => ErrorClass::Limited,
            // Disk full or I/O trouble: nothing acknowledged, a retry may succeed.
            AppendError::Wal { .. } | AppendError::Closed(_) => ErrorClass::Unavailable,
        }
    }
}

impl Classify for TsdbError {
    fn class(&self) -> ErrorClass {
        // Opening, reading or cutting failed on disk: the data is not served for now.
        ErrorClass::Unavailable
    }
}

impl Classify for WalError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Unavailable
    }
}

impl Classify for BlockError {
    fn class(&self) -> ErrorClass {
        // A corrupt block is quarantined and the read answered from the rest; what reaches a
        // client is I/O trouble.
        ErrorClass::Unavailable
    }
}

impl Classify for CheckpointError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Unavailable
    }
}

impl Classify for MatcherError {
    fn class(&self) -> ErrorClass {
        // The only way to get one is a matcher the client sent.
        ErrorClass::BadRequest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_conflicts_and_limits_are_the_clients_storage_trouble_is_retryable() {
        let conflict = AppendError::Conflict {
            stats: Default::default(),
            message: "out of order".into(),
        };
        assert_eq!(conflict.class(), ErrorClass::Conflict);
        let limit = AppendError::SeriesLimit {
            head_series: 1,
            new_series: 1,
            limit: 1,
        };
        assert_eq!(limit.class(), ErrorClass::Limited);
        let wal = AppendError::Wal {
            source: std::sync::Arc::new(WalError::Poisoned),
        };
        assert_eq!(wal.class(), ErrorClass::Unavailable);
        let open = TsdbError::Wal(WalError::InvalidSegmentSize(1));
        assert_eq!(open.class(), ErrorClass::Unavailable);
    }
}
