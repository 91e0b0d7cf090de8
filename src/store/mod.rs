//! The Thanos Store API over the ingestor's tenant TSDBs, as a Thanos Receive serves it
//! (`pkg/store/tsdb.go` per tenant, a proxy over the tenants in `pkg/receive/multitsdb.go`).
//!
//! Every tenant's series carry its TSDB's external labels (the ones in its blocks' meta.json),
//! so the tenants of one ingestor look to Thanos Query like several stores behind one endpoint.
//! The data flow of `Series`: requested matchers are split per tenant into external-label ones
//! (select or skip the tenant) and the rest ([`matchers`]); each selected tenant lists its
//! matching series ([`crate::tsdb::db::ChunkQuerier`]); the series of all tenants are sorted by
//! their final label set ([`series`]); chunks are then read one series at a time and sent as
//! stored ([`encode`]). [`info`] answers `thanos.info.Info`; [`service`] is the gRPC plumbing.

pub mod encode;
pub mod info;
pub mod matchers;
pub mod names;
pub mod series;
pub mod service;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::blocking::Cancelled;
use crate::error::{Classify, ErrorClass};
use crate::ingest::Ingestor;
use crate::tenancy::ResolveError;
use crate::tsdb::db::{Db, TsdbError};
use crate::tsdb::labels::Labels;
use crate::tsdb::matcher::MatcherError;

/// Why a Store API request failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// WAL replay has not finished; Query keeps the endpoint out until Info answers.
    #[error("not ready: WAL replay in progress")]
    NotReady,
    /// The request body is not the protobuf message of the method.
    #[error("invalid request: protobuf: {0}")]
    Decode(#[source] prost::DecodeError),
    /// A matcher has a type the Store API does not define.
    #[error("invalid matcher type {0}")]
    UnknownMatcherType(i32),
    /// A matcher could not be built (a regex that does not compile).
    #[error("invalid matcher for label {name:?}: {source}")]
    Matcher {
        /// The matcher's label name.
        name: String,
        /// Why.
        #[source]
        source: MatcherError,
    },
    /// Only external-label matchers were given (Thanos refuses to list a whole TSDB).
    #[error("no matchers specified (excluding external labels)")]
    NoMatchers,
    /// `LabelValues` without a label name.
    #[error("label name parameter cannot be empty")]
    EmptyLabelName,
    /// The request would return more series than `--store.limits.request-series`.
    #[error("the query hit the series limit: {series} series match, the limit is {limit} (--store.limits.request-series); narrow the selector or the time range")]
    SeriesLimit {
        /// Series the request matches.
        series: usize,
        /// The limit.
        limit: u64,
    },
    /// The request would return more samples than `--store.limits.request-samples`.
    #[error("the query hit the samples limit: more than {limit} samples (--store.limits.request-samples); narrow the selector or the time range")]
    SamplesLimit {
        /// The limit.
        limit: u64,
    },
    /// The request's tenant could not be established (tenant tokens on).
    #[error(transparent)]
    Auth(#[from] ResolveError),
    /// Local storage failed (a damaged block, an I/O error).
    #[error("storage error: {0}")]
    Storage(#[from] TsdbError),
    /// The client's deadline passed before the answer was complete.
    #[error("deadline exceeded after {sent_series} series")]
    DeadlineExceeded {
        /// Series sent before the deadline.
        sent_series: usize,
    },
    /// The client cancelled the call (or its connection went away) before the answer was
    /// complete: the scan stopped there.
    #[error("cancelled by the client after {sent_series} series")]
    Cancelled {
        /// Series sent before the client went away.
        sent_series: usize,
    },
    /// The work was cut short by shutdown.
    #[error(transparent)]
    Interrupted(#[from] Cancelled),
}

impl Classify for StoreError {
    fn class(&self) -> ErrorClass {
        match self {
            StoreError::Decode(_)
            | StoreError::UnknownMatcherType(_)
            | StoreError::Matcher { .. }
            | StoreError::NoMatchers
            | StoreError::EmptyLabelName => ErrorClass::BadRequest,
            // gRPC ResourceExhausted, as Thanos's query limits answer.
            StoreError::SeriesLimit { .. } | StoreError::SamplesLimit { .. } => ErrorClass::Limited,
            StoreError::NotReady => ErrorClass::NotReady,
            StoreError::Auth(e) => e.class(),
            StoreError::Storage(e) => e.class(),
            // The service answers DeadlineExceeded itself (see `service`); this is the class
            // for anything else that reports it.
            StoreError::DeadlineExceeded { .. } | StoreError::Cancelled { .. } => {
                ErrorClass::Unavailable
            }
            StoreError::Interrupted(e) => e.class(),
        }
    }
}

/// Per-request limits of the Store API (0 = none).
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreLimits {
    /// Most series one `Series` call may return.
    pub request_series: u64,
    /// Most samples one `Series` call may return (counted from chunk headers).
    pub request_samples: u64,
}

/// Which tenants a request may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant (no `thanos-tenant` metadata, tenant tokens off).
    All,
    /// Only this tenant (named by `thanos-tenant` metadata or proven by a token).
    Tenant(String),
}

/// One tenant's TSDB as the Store API shows it.
#[derive(Clone)]
pub struct TenantView {
    /// The tenant's name.
    pub name: String,
    /// Its TSDB.
    pub db: Arc<Db>,
    /// Its external labels, sorted (those of its blocks' meta.json).
    pub external: Labels,
}

/// The Store API of one ingestor.
pub struct Store {
    ingestor: Arc<Ingestor>,
    limits: StoreLimits,
}

impl Store {
    /// Serves `ingestor`'s tenants under `limits`.
    pub fn new(ingestor: Arc<Ingestor>, limits: StoreLimits) -> Self {
        Self { ingestor, limits }
    }

    /// The request limits.
    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// The tenants `scope` may see, by name; errors until WAL replay is done.
    pub fn tenants(&self, scope: &Scope) -> Result<Vec<TenantView>, StoreError> {
        if !self.ingestor.is_ready() {
            return Err(StoreError::NotReady);
        }
        let mut out: Vec<TenantView> = self
            .ingestor
            .tenant_dbs()
            .into_iter()
            .filter(|(name, _)| match scope {
                Scope::All => true,
                Scope::Tenant(t) => t == name,
            })
            .map(|(name, db)| {
                let external = match db.thanos_meta() {
                    Some(m) => Labels::from_pairs(m.labels.iter().map(|(k, v)| (&**k, &**v))),
                    None => Labels::empty(),
                };
                TenantView { name, db, external }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// `labels` without the names in `drop`, then `external` set over them (an external label
/// overrides a series label of the same name: Thanos `ExtendSortedLabels`). Both inputs sorted.
pub fn with_external(labels: &Labels, external: &Labels, drop: &[String]) -> Labels {
    let keep = |n: &str| !drop.iter().any(|d| d == n);
    let mut a = labels.iter().filter(|(n, _)| keep(n)).peekable();
    let mut b = external.iter().filter(|(n, _)| keep(n)).peekable();
    let mut out: Vec<(&str, &str)> = Vec::new();
    loop {
        match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.0.cmp(y.0) {
                std::cmp::Ordering::Less => out.extend(a.next()),
                std::cmp::Ordering::Greater => out.extend(b.next()),
                std::cmp::Ordering::Equal => {
                    a.next();
                    out.extend(b.next());
                }
            },
            (Some(_), None) => out.extend(a.next()),
            (None, Some(_)) => out.extend(b.next()),
            (None, None) => break,
        }
    }
    Labels::from_sorted(out)
}
