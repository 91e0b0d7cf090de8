//! The ingestor: appends each tenant's series to its own TSDB (Thanos `pkg/receive/writer.go`).

pub mod multitsdb;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::remote_write::{Series, WriteRequest};
use crate::tenancy::{self, TenantError};
use crate::tsdb::db::{AppendError, AppendStats, DbOptions};
use crate::tsdb::head::SeriesSamples;
use crate::tsdb::matcher::Matcher;
use multitsdb::MultiTsdb;

/// Why a local write failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// WAL replay has not finished.
    #[error("ingestor not ready: WAL replay in progress")]
    NotReady,
    /// The tenant name is not usable.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// Some samples broke append rules; every valid sample was committed.
    #[error("{message}")]
    Conflict {
        /// What was appended despite the conflict.
        stats: AppendStats,
        /// The first conflict, naming series and timestamp, and the counts.
        message: String,
    },
    /// The WAL could not be written or synced (disk full, I/O error): nothing acknowledged.
    #[error("storage error: {0}")]
    Storage(String),
    /// The tenant's TSDB could not be opened.
    #[error("opening TSDB of tenant {tenant:?}: {message}")]
    Open {
        /// The tenant.
        tenant: String,
        /// Why.
        message: String,
    },
}

/// Per-tenant TSDBs behind one readiness flag.
pub struct Ingestor {
    tsdbs: MultiTsdb,
    ready: AtomicBool,
}

impl Ingestor {
    /// An ingestor storing under `base`; not ready until [`Ingestor::replay`] ran.
    pub fn new(base: PathBuf, opts: DbOptions) -> Self {
        Self {
            tsdbs: MultiTsdb::new(base, opts),
            ready: AtomicBool::new(false),
        }
    }

    /// Opens every tenant TSDB found on disk, replaying its WAL, then turns ready. Blocking.
    pub fn replay(&self) -> Result<(), IngestError> {
        self.tsdbs.open_existing()?;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether WAL replay finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Appends `series` of `req` to `tenant`'s TSDB. Ok means durable (in the WAL and fsynced).
    pub async fn write(
        &self,
        tenant: &str,
        req: &WriteRequest<'_>,
        series: &[&Series],
    ) -> Result<AppendStats, IngestError> {
        if !self.is_ready() {
            return Err(IngestError::NotReady);
        }
        tenancy::validate(tenant)?;
        let db = self.tsdbs.get_or_open(tenant).await?;
        let started = std::time::Instant::now();
        let result = db.append(req, series).await;
        // Append + group-commit wait: what a write spends in the TSDB, apart from decoding.
        metrics::histogram!("ringest_tsdb_append_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!("ringest_head_series", "tenant" => tenant.to_string())
            .set(db.head().num_series() as f64);
        match result {
            Ok(stats) => {
                record_written(tenant, &stats);
                Ok(stats)
            }
            Err(AppendError::Conflict { stats, message }) => {
                record_written(tenant, &stats);
                Err(IngestError::Conflict { stats, message })
            }
            Err(e) => Err(IngestError::Storage(e.to_string())),
        }
    }

    /// Series of `tenant` matching `matchers` with their samples in `[mint, maxt]`.
    pub fn select(
        &self,
        tenant: &str,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<SeriesSamples>, IngestError> {
        if !self.is_ready() {
            return Err(IngestError::NotReady);
        }
        tenancy::validate(tenant)?;
        Ok(match self.tsdbs.get(tenant) {
            Some(db) => db
                .select(mint, maxt, matchers)
                .map_err(|e| IngestError::Storage(e.to_string()))?,
            None => Vec::new(),
        })
    }

    /// Syncs and closes every TSDB.
    pub fn close(&self) {
        self.tsdbs.close();
    }
}

fn record_written(tenant: &str, stats: &AppendStats) {
    metrics::counter!("ringest_samples_appended_total", "tenant" => tenant.to_string())
        .increment(stats.samples_appended);
    metrics::counter!("ringest_series_created_total", "tenant" => tenant.to_string())
        .increment(stats.series_created);
    let rejected =
        stats.out_of_order + stats.duplicate + stats.out_of_bounds + stats.too_far_in_future;
    if rejected > 0 {
        metrics::counter!("ringest_samples_rejected_total", "tenant" => tenant.to_string())
            .increment(rejected);
    }
}
