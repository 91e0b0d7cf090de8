//! The ingestor: appends each tenant's series to its own TSDB (Thanos `pkg/receive/writer.go`).

pub mod multitsdb;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::blocking::Cancelled;
use crate::error::{Classify, ErrorClass};
use crate::limits::{LimitError, Limiter};
use crate::remote_write::{Series, WriteRequest};
use crate::tenancy::{self, TenantError};
use crate::tsdb::block::Ulid;
use crate::tsdb::db::{AppendError, AppendStats, Db, DbOptions, TsdbError};
use crate::tsdb::head::SeriesSamples;
use crate::tsdb::matcher::Matcher;
use multitsdb::{MultiTsdb, TenantLabels};

/// Why a local write or read failed.
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
    Append(#[source] AppendError),
    /// Local blocks could not be read.
    #[error("storage error: {0}")]
    Select(#[source] TsdbError),
    /// The write would take the tenant's head past its head series limit; nothing was written.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The tenant's TSDB could not be opened.
    #[error("opening TSDB of tenant {tenant:?}: {source}")]
    Open {
        /// The tenant.
        tenant: String,
        /// Why.
        #[source]
        source: TsdbError,
    },
    /// The directory holding every tenant's TSDB could not be created or listed.
    #[error("{action} {}: {source}", path.display())]
    Base {
        /// "creating" or "listing".
        action: &'static str,
        /// The directory (`--tsdb.path`).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Opening a tenant's TSDB was cut short by shutdown.
    #[error(transparent)]
    Interrupted(#[from] Cancelled),
}

impl Classify for IngestError {
    fn class(&self) -> ErrorClass {
        match self {
            IngestError::NotReady => ErrorClass::NotReady,
            IngestError::Tenant(e) => e.class(),
            IngestError::Conflict { .. } => ErrorClass::Conflict,
            IngestError::Append(e) => e.class(),
            IngestError::Select(e) => e.class(),
            IngestError::Limit(e) => e.class(),
            IngestError::Interrupted(e) => e.class(),
            // Disk trouble: nothing of the request was acknowledged, a retry may succeed.
            IngestError::Open { .. } | IngestError::Base { .. } => ErrorClass::Unavailable,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            IngestError::Limit(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// Per-tenant TSDBs behind one readiness flag.
pub struct Ingestor {
    tsdbs: MultiTsdb,
    ready: AtomicBool,
    /// Poked by writes that made a head compactable, so the cut does not wait for the tick.
    compact_wake: tokio::sync::Notify,
    /// Head series limits.
    limits: Arc<Limiter>,
}

impl Ingestor {
    /// An ingestor storing under `base`; not ready until [`Ingestor::replay`] ran.
    /// `labels` gives the external labels of each tenant's blocks.
    pub fn new(base: PathBuf, opts: DbOptions, labels: TenantLabels) -> Self {
        Self {
            tsdbs: MultiTsdb::new(base, opts, labels),
            ready: AtomicBool::new(false),
            compact_wake: tokio::sync::Notify::new(),
            limits: Arc::new(Limiter::default()),
        }
    }

    /// Enforces the head series limits of `limits` (none by default).
    pub fn with_limits(mut self, limits: Arc<Limiter>) -> Self {
        self.limits = limits;
        self
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
        let max_series = self.limits.head_series_limit(tenant);
        let result = db.append_limited(&req.batch(series), max_series).await;
        // Append + group-commit wait: what a write spends in the TSDB, apart from decoding.
        metrics::histogram!("ringest_tsdb_append_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!("ringest_head_series", "tenant" => tenant.to_string())
            .set(db.head().num_series() as f64);
        if db.compactable() {
            self.compact_wake.notify_one();
        }
        match result {
            Ok(stats) => {
                record_written(tenant, &stats);
                Ok(stats)
            }
            Err(AppendError::Conflict { stats, message }) => {
                record_written(tenant, &stats);
                Err(IngestError::Conflict { stats, message })
            }
            Err(AppendError::SeriesLimit {
                head_series,
                new_series,
                limit,
            }) => {
                let e = LimitError::HeadSeries {
                    tenant: tenant.to_string(),
                    head_series,
                    new_series,
                    limit,
                };
                e.record();
                Err(IngestError::Limit(e))
            }
            Err(e) => Err(IngestError::Append(e)),
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
        let Some(db) = self.tsdbs.get(tenant) else {
            return Ok(Vec::new());
        };
        let got = db
            .select(mint, maxt, matchers)
            .map_err(IngestError::Select)?;
        if db.has_suspect_blocks() {
            // The read stopped serving a damaged block; maintenance moves it aside soon.
            self.compact_wake.notify_one();
        }
        Ok(got)
    }

    /// Every open tenant and its TSDB (for the Store API).
    pub fn tenant_dbs(&self) -> Vec<(String, Arc<Db>)> {
        self.tsdbs.tenants()
    }

    /// Syncs and closes every TSDB.
    pub fn close(&self) {
        self.tsdbs.close();
    }

    /// Every open tenant and its TSDB directory (for the shipper).
    pub fn tenant_dirs(&self) -> Vec<(String, PathBuf)> {
        self.tsdbs
            .tenants()
            .into_iter()
            .map(|(t, db)| (t, db.dir().to_path_buf()))
            .collect()
    }

    /// Cuts blocks of every compactable tenant, one tenant at a time (so a fleet of tenants
    /// crossing a range boundary together costs one core, not all of them). Blocking. Returns
    /// the number of blocks written.
    pub fn compact(&self) -> usize {
        let mut blocks = 0;
        for (tenant, db) in self.tsdbs.tenants() {
            if db.compactable() {
                blocks += compact_one(&tenant, &db, Db::compact);
            }
        }
        blocks
    }

    /// Quarantines the blocks reads found damaged, in every tenant (reads only stop serving
    /// them, so that no query does the file moves). Blocking. Returns the number moved.
    pub fn quarantine_suspect_blocks(&self) -> usize {
        let mut moved = 0;
        for (tenant, db) in self.tsdbs.tenants() {
            match db.quarantine_suspect_blocks() {
                Ok(n) => moved += n,
                // Still not served; the next maintenance tries again.
                Err(e) => {
                    tracing::error!(%tenant, error = %e, "quarantining a damaged block failed")
                }
            }
        }
        moved
    }

    /// Shutdown: writes every head out as blocks (after [`Ingestor::close`]). Blocking.
    pub fn flush(&self) -> usize {
        self.tsdbs
            .tenants()
            .iter()
            .map(|(tenant, db)| compact_one(tenant, db, Db::flush))
            .sum()
    }

    /// Deletes local blocks past `retention` (by their max time); with `uploaded_only`, only
    /// blocks the shipper has uploaded. Returns the number deleted.
    pub fn apply_retention(&self, retention: Duration, uploaded_only: bool) -> usize {
        if retention.is_zero() {
            return 0;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let cutoff = now.saturating_sub(retention.as_millis() as i64);
        let mut deleted = 0;
        for (tenant, db) in self.tsdbs.tenants() {
            let expired: Result<Vec<Ulid>, String> = if uploaded_only {
                crate::shipper::expired_uploaded_blocks(db.dir(), retention, now)
                    .map_err(|e| e.to_string())
            } else {
                Ok(db
                    .blocks()
                    .iter()
                    .filter(|b| b.meta().max_time < cutoff)
                    .map(|b| b.meta().ulid)
                    .collect())
            };
            let res = expired.and_then(|ulids| {
                db.delete_blocks(&ulids).map_err(|e| e.to_string())?;
                Ok(ulids.len())
            });
            match res {
                Ok(n) => deleted += n,
                Err(e) => tracing::warn!(%tenant, error = %e, "retention failed"),
            }
        }
        deleted
    }

    /// Background upkeep until `stop`: quarantines blocks reads found damaged (woken by such a
    /// read), cuts blocks when a head turns compactable (woken by writes, or every
    /// `check_interval`), wakes the shipper after each cut, and applies retention every minute.
    pub async fn run_maintenance(
        self: Arc<Self>,
        check_interval: Duration,
        retention: Duration,
        uploaded_only: bool,
        shipper_wake: Option<Arc<tokio::sync::Notify>>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut last_retention = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.compact_wake.notified() => {}
                _ = tokio::time::sleep(check_interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if !self.is_ready() {
                continue;
            }
            let me = self.clone();
            let cut = tokio::task::spawn_blocking(move || {
                me.quarantine_suspect_blocks();
                me.compact()
            })
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "block cut panicked");
                0
            });
            if cut > 0 {
                if let Some(w) = &shipper_wake {
                    w.notify_one();
                }
            }
            if last_retention.elapsed() >= Duration::from_secs(60) {
                last_retention = std::time::Instant::now();
                let me = self.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    me.apply_retention(retention, uploaded_only)
                })
                .await;
            }
        }
    }
}

/// Runs a cut (`Db::compact` or `Db::flush`) of one tenant, logging and counting failures.
fn compact_one(
    tenant: &str,
    db: &Db,
    cut: impl Fn(&Db) -> Result<crate::tsdb::db::CompactStats, crate::tsdb::db::TsdbError>,
) -> usize {
    match cut(db) {
        Ok(st) => {
            metrics::gauge!("ringest_head_series", "tenant" => tenant.to_string())
                .set(db.head().num_series() as f64);
            st.blocks.len()
        }
        Err(e) => {
            // The head keeps everything; the next tick tries again.
            tracing::error!(%tenant, error = %e, "cutting a block failed");
            metrics::counter!("ringest_tsdb_block_cut_failures_total").increment(1);
            0
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::{Label, Sample};
    use crate::tsdb::testutil::TestSeries;

    /// Builds a decoded write request; labels of each series are sorted here.
    fn req<'a>(series: &[TestSeries<'a>]) -> WriteRequest<'a> {
        let mut r = WriteRequest::default();
        for (labels, samples) in series {
            let mut labels = labels.clone();
            labels.sort();
            let l0 = r.labels.len() as u32;
            let s0 = r.samples.len() as u32;
            r.labels
                .extend(labels.iter().map(|&(name, value)| Label { name, value }));
            r.samples.extend(
                samples
                    .iter()
                    .map(|&(timestamp, value)| Sample { timestamp, value }),
            );
            r.series.push(Series {
                labels: l0..r.labels.len() as u32,
                samples: s0..r.samples.len() as u32,
            });
        }
        r
    }

    const H: i64 = 3_600_000;

    fn ingestor(dir: &std::path::Path) -> Ingestor {
        let ing = Ingestor::new(
            dir.to_path_buf(),
            DbOptions::default(),
            multitsdb::tenant_label("tenant_id"),
        );
        ing.replay().unwrap();
        ing
    }

    fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }

    /// One sample a minute of one series from `from` for `hours`.
    async fn write_hours(ing: &Ingestor, tenant: &str, from: i64, hours: i64) {
        for i in 0..hours * 60 {
            let r = req(&[(vec![("__name__", "up")], vec![(from + i * 60_000, 1.0)])]);
            let refs: Vec<&Series> = r.series.iter().collect();
            ing.write(tenant, &r, &refs).await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_deletes_only_expired_uploaded_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let ing = ingestor(dir.path());
        let now = now_ms();
        // 10 days ago, aligned: two blocks cut (0-2h, 2-4h), the rest stays in the head.
        let base = (now - 240 * H) / (2 * H) * (2 * H);
        write_hours(&ing, "a", base, 7).await;
        assert_eq!(ing.compact(), 2);
        let db = ing.tsdbs.get("a").unwrap();
        let blocks: Vec<Ulid> = db.blocks().iter().map(|b| b.meta().ulid).collect();
        assert_eq!(blocks.len(), 2);
        // Blocks carry the tenant label.
        assert_eq!(
            db.blocks()[0]
                .meta()
                .thanos_labels
                .get("tenant_id")
                .map(String::as_str),
            Some("a")
        );

        // Not uploaded: kept however old, when uploads are required.
        assert_eq!(ing.apply_retention(Duration::from_secs(86_400), true), 0);
        // Upload the first block only.
        let bucket = crate::objstore::local_bucket(&dir.path().join("bucket")).unwrap();
        let shipper = crate::shipper::Shipper::new("a", db.dir(), bucket);
        std::fs::rename(
            db.dir().join(blocks[1].to_string()),
            dir.path().join("aside"),
        )
        .unwrap();
        assert_eq!(shipper.sync().await.unwrap().uploaded, 1);
        std::fs::rename(
            dir.path().join("aside"),
            db.dir().join(blocks[1].to_string()),
        )
        .unwrap();
        // Retention longer than the data's age keeps it; a day deletes the uploaded block only.
        assert_eq!(
            ing.apply_retention(Duration::from_secs(30 * 86_400), true),
            0
        );
        assert_eq!(ing.apply_retention(Duration::from_secs(86_400), true), 1);
        let left: Vec<Ulid> = db.blocks().iter().map(|b| b.meta().ulid).collect();
        assert_eq!(left, vec![blocks[1]]);
        assert!(!db.dir().join(blocks[0].to_string()).exists());
        assert!(db.dir().join(blocks[1].to_string()).exists());
        // Without a bucket (ingest with no objstore), age alone decides.
        assert_eq!(ing.apply_retention(Duration::from_secs(86_400), false), 1);
        assert!(db.blocks().is_empty());
        // Zero keeps everything.
        assert_eq!(ing.apply_retention(Duration::ZERO, false), 0);
        ing.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn head_series_limit_refuses_requests_creating_series_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let limits = crate::limits::parse(
            "write: {default: {head_series_limit: 3}, tenants: {big: {head_series_limit: 0}}}",
            None,
        )
        .unwrap();
        let ing = Ingestor::new(
            dir.path().to_path_buf(),
            DbOptions::default(),
            multitsdb::tenant_label("tenant_id"),
        )
        .with_limits(Arc::new(Limiter::new(limits)));
        ing.replay().unwrap();
        let now = now_ms();
        fn write<'a>(names: &[&'a str], t: i64) -> WriteRequest<'a> {
            let series: Vec<TestSeries<'a>> = names
                .iter()
                .map(|n| (vec![("__name__", *n)], vec![(t, 1.0)]))
                .collect();
            req(&series)
        }
        let put = |names: &'static [&'static str], t: i64, tenant: &'static str| {
            let r = write(names, t);
            let ing = &ing;
            async move {
                let refs: Vec<&Series> = r.series.iter().collect();
                ing.write(tenant, &r, &refs).await
            }
        };
        put(&["a", "b"], now, "t").await.unwrap();
        put(&["a", "b", "c"], now + 1, "t").await.unwrap();
        // A fourth series: refused whole, even with samples for existing series in it.
        let err = put(&["a", "d"], now + 2, "t").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"request would create 1 new series, over the head series limit 3 of tenant "t" (3 series in the head)"#
        );
        assert!(matches!(
            err,
            IngestError::Limit(LimitError::HeadSeries {
                head_series: 3,
                new_series: 1,
                limit: 3,
                ..
            })
        ));
        let db = ing.tsdbs.get("t").unwrap();
        assert_eq!(db.head().num_series(), 3);
        let a = ing.select("t", now + 2, now + 2, &[]).unwrap().len();
        assert_eq!(a, 0, "nothing of the refused request was appended");
        // Existing series keep being written.
        put(&["a", "b", "c"], now + 3, "t").await.unwrap();
        // A new series sent twice in one request counts once.
        put(&["x", "x"], now, "dup").await.unwrap();
        put(&["y", "z", "z"], now, "dup").await.unwrap();
        assert_eq!(ing.tsdbs.get("dup").unwrap().head().num_series(), 3);
        // Samples no series can take (out of bounds) create nothing and do not count.
        put(&["old"], now - 48 * H, "t").await.unwrap_err();
        // 0 is unlimited.
        put(&["a", "b", "c", "d", "e"], now, "big").await.unwrap();
        // Concurrent writers cannot overshoot together.
        let names: Vec<String> = (0..64).map(|i| format!("m{i}")).collect();
        let reqs: Vec<_> = names.iter().map(|n| write(&[n.as_str()], now)).collect();
        let results = futures::future::join_all(reqs.iter().map(|r| async {
            let refs: Vec<&Series> = r.series.iter().collect();
            ing.write("c", r, &refs).await
        }))
        .await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
        assert_eq!(ing.tsdbs.get("c").unwrap().head().num_series(), 3);
        ing.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_span_blocks_and_head_and_the_bucket_tenant_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ing = ingestor(dir.path());
        let now = now_ms();
        let base = (now - 24 * H) / (2 * H) * (2 * H);
        write_hours(&ing, "a", base, 4).await;
        assert_eq!(ing.compact(), 1);
        let got = ing.select("a", i64::MIN, i64::MAX, &[]).unwrap();
        assert_eq!(got.len(), 1);
        let ts: Vec<i64> = got[0].samples.iter().map(|s| s.0).collect();
        let want: Vec<i64> = (0..4 * 60).map(|i| base + i * 60_000).collect();
        assert_eq!(ts, want);

        let r = req(&[(vec![("__name__", "up")], vec![(now, 1.0)])]);
        let refs: Vec<&Series> = r.series.iter().collect();
        let err = ing
            .write(crate::tenancy::LOCAL_BUCKET_DIR, &r, &refs)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
        ing.close();
    }
}
