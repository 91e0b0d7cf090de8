//! Write quorum: when a replicated series counts as written, and which error a failed request reports.
//!
//! Mirrors Thanos `pkg/receive/handler.go`: a series needs `quorum(RF)` successful replicas; it has
//! failed once `RF - quorum + 1` replicas failed. Its cause is the error kind that alone reached that
//! failure threshold, or Unavailable for a mix (a retry may succeed). A request reports the most
//! recoverable cause among its failed series: Unavailable > NotReady > Conflict > Unknown.

use crate::error::ErrorClass;

/// Why one replica of a forwarded write failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplicaError {
    /// Samples refused by append rules (out of order, duplicate, out of bounds) or bad labels.
    Conflict,
    /// The ingestor is starting or its TSDB is not open.
    NotReady,
    /// The peer could not be reached, timed out, or reported retryable trouble.
    Unavailable,
    /// The ingestor refused the write by a limit (head series): retry later (429).
    Limited,
    /// Anything else.
    Unknown,
}

impl From<ErrorClass> for ReplicaError {
    /// The kind the quorum counts for a replica that failed with `class` (Thanos counts only
    /// conflicts, not-ready and unavailable; Ringest adds limits; the rest are unknown).
    fn from(class: ErrorClass) -> Self {
        match class {
            ErrorClass::Conflict => ReplicaError::Conflict,
            ErrorClass::NotReady => ReplicaError::NotReady,
            ErrorClass::Unavailable => ReplicaError::Unavailable,
            ErrorClass::Limited => ReplicaError::Limited,
            ErrorClass::BadRequest
            | ErrorClass::Unauthenticated
            | ErrorClass::Forbidden
            | ErrorClass::TooLarge
            | ErrorClass::UnsupportedMediaType
            | ErrorClass::Internal => ReplicaError::Unknown,
        }
    }
}

impl ReplicaError {
    /// The class a request failed for this cause answers with.
    pub fn class(self) -> ErrorClass {
        match self {
            ReplicaError::Conflict => ErrorClass::Conflict,
            ReplicaError::NotReady => ErrorClass::NotReady,
            ReplicaError::Unavailable => ErrorClass::Unavailable,
            ReplicaError::Limited => ErrorClass::Limited,
            ReplicaError::Unknown => ErrorClass::Internal,
        }
    }
}

/// Replicas that must acknowledge a series: `RF/2 + 1`, except 1 for RF=2 (Thanos PR #7669).
pub fn write_quorum(replication_factor: usize) -> usize {
    if replication_factor == 2 {
        1
    } else {
        replication_factor / 2 + 1
    }
}

/// Failures after which a series can no longer reach quorum.
pub fn failure_threshold(replication_factor: usize) -> usize {
    replication_factor - write_quorum(replication_factor) + 1
}

/// The outcome of one series given the error (or `None` for success) of each of its replicas.
pub fn series_outcome(
    replicas: impl IntoIterator<Item = Option<ReplicaError>>,
    replication_factor: usize,
) -> Result<(), ReplicaError> {
    let quorum = write_quorum(replication_factor);
    let threshold = failure_threshold(replication_factor);
    let (mut ok, mut failed) = (0usize, 0usize);
    let mut counts = [0usize; 5];
    for r in replicas {
        match r {
            None => ok += 1,
            Some(e) => {
                failed += 1;
                counts[kind_index(e)] += 1;
            }
        }
    }
    if ok >= quorum {
        return Ok(());
    }
    // The most frequent kind wins when it alone reached the threshold (Thanos sorts by count,
    // stable over the order Conflict, NotReady, Unavailable).
    let mut best: Option<(ReplicaError, usize)> = None;
    for kind in [
        ReplicaError::Conflict,
        ReplicaError::NotReady,
        ReplicaError::Unavailable,
        ReplicaError::Limited,
    ] {
        let n = counts[kind_index(kind)];
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((kind, n));
        }
    }
    match best {
        Some((kind, n)) if n >= threshold => Err(kind),
        _ if failed >= threshold => Err(ReplicaError::Unavailable),
        // Too few replicas answered at all (e.g. an endpoint missing from the ring).
        _ => Err(ReplicaError::Unavailable),
    }
}

fn kind_index(e: ReplicaError) -> usize {
    match e {
        ReplicaError::Conflict => 0,
        ReplicaError::NotReady => 1,
        ReplicaError::Unavailable => 2,
        ReplicaError::Unknown => 3,
        ReplicaError::Limited => 4,
    }
}

/// Folds failed series' causes into the request's: Unavailable > Limited > NotReady > Conflict >
/// Unknown (Limited is Ringest's; both it and Unavailable ask the client to retry).
pub fn request_cause(causes: impl IntoIterator<Item = ReplicaError>) -> Option<ReplicaError> {
    let rank = |e: ReplicaError| match e {
        ReplicaError::Unavailable => 4,
        ReplicaError::Limited => 3,
        ReplicaError::NotReady => 2,
        ReplicaError::Conflict => 1,
        ReplicaError::Unknown => 0,
    };
    causes.into_iter().max_by_key(|e| rank(*e))
}

#[cfg(test)]
mod tests {
    use super::ReplicaError::*;
    use super::*;

    #[test]
    fn limited_replicas_are_limited_and_rank_below_unavailable() {
        assert_eq!(series_outcome([Some(Limited)], 1), Err(Limited));
        assert_eq!(
            series_outcome([Some(Limited), Some(Limited), None], 3),
            Err(Limited)
        );
        assert_eq!(request_cause([Conflict, Limited, NotReady]), Some(Limited));
        assert_eq!(request_cause([Limited, Unavailable]), Some(Unavailable));
    }

    #[test]
    fn quorum_matches_thanos() {
        assert_eq!(write_quorum(1), 1);
        assert_eq!(write_quorum(2), 1);
        assert_eq!(write_quorum(3), 2);
        assert_eq!(write_quorum(4), 3);
        assert_eq!(write_quorum(5), 3);
        assert_eq!(failure_threshold(3), 2);
        assert_eq!(failure_threshold(1), 1);
    }

    #[test]
    fn one_replica_down_of_three_still_writes() {
        assert_eq!(series_outcome([None, None, Some(Unavailable)], 3), Ok(()));
        assert_eq!(series_outcome([None, Some(Conflict), None], 3), Ok(()));
    }

    #[test]
    fn two_down_of_three_is_unavailable() {
        assert_eq!(
            series_outcome([None, Some(Unavailable), Some(Unavailable)], 3),
            Err(Unavailable)
        );
    }

    #[test]
    fn conflict_on_quorum_is_conflict() {
        assert_eq!(
            series_outcome([Some(Conflict), Some(Conflict), Some(Conflict)], 3),
            Err(Conflict)
        );
        assert_eq!(
            series_outcome([Some(Conflict), Some(Conflict), None], 3),
            Err(Conflict)
        );
    }

    #[test]
    fn mixed_failures_are_retryable() {
        assert_eq!(
            series_outcome([Some(Conflict), Some(NotReady), None], 3),
            Err(Unavailable)
        );
        assert_eq!(
            series_outcome([Some(Unknown), Some(Unknown), None], 3),
            Err(Unavailable)
        );
    }

    #[test]
    fn rf1_reports_the_single_cause() {
        assert_eq!(series_outcome([Some(Conflict)], 1), Err(Conflict));
        assert_eq!(series_outcome([Some(NotReady)], 1), Err(NotReady));
        assert_eq!(series_outcome([None], 1), Ok(()));
    }

    #[test]
    fn request_prefers_recoverable_causes() {
        assert_eq!(
            request_cause([Conflict, Unavailable, NotReady]),
            Some(Unavailable)
        );
        assert_eq!(request_cause([Conflict, NotReady]), Some(NotReady));
        assert_eq!(request_cause([Unknown, Conflict]), Some(Conflict));
        assert_eq!(request_cause([]), None);
    }
}
