//! One TSDB per tenant under `<tsdb.path>/<tenant>` (Thanos `pkg/receive/multitsdb.go`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use super::IngestError;
use crate::tenancy;
use crate::tsdb::block::ThanosMeta;
use crate::tsdb::db::{Db, DbOptions};

/// External labels of a tenant's blocks (Thanos: `--label`s, the tenant label, ring labels).
pub type TenantLabels = Arc<dyn Fn(&str) -> BTreeMap<String, String> + Send + Sync>;

/// Block labels holding only the tenant, under `name` (Thanos default `tenant_id`).
pub fn tenant_label(name: &str) -> TenantLabels {
    let name = name.to_string();
    Arc::new(move |tenant: &str| BTreeMap::from([(name.clone(), tenant.to_string())]))
}

/// The tenants' TSDBs, opened at start-up or on a tenant's first write.
pub struct MultiTsdb {
    base: PathBuf,
    opts: DbOptions,
    labels: TenantLabels,
    tenants: RwLock<HashMap<String, Arc<Db>>>,
    // Serialises opening so two first writes of one tenant open its TSDB once.
    opening: tokio::sync::Mutex<()>,
}

impl MultiTsdb {
    /// An empty set storing under `base`; `labels` gives each tenant's block labels.
    pub fn new(base: PathBuf, opts: DbOptions, labels: TenantLabels) -> Self {
        Self {
            base,
            opts,
            labels,
            tenants: RwLock::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    /// Opens (replays) the TSDB of every tenant directory under the base. Blocking.
    pub fn open_existing(&self) -> Result<(), IngestError> {
        let base_error = |action| {
            move |source| IngestError::Base {
                action,
                path: self.base.clone(),
                source,
            }
        };
        std::fs::create_dir_all(&self.base).map_err(base_error("creating"))?;
        let entries = std::fs::read_dir(&self.base).map_err(base_error("listing"))?;
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !entry.path().is_dir() || tenancy::validate(&name).is_err() {
                continue;
            }
            let started = std::time::Instant::now();
            let db = self.open_db(&name)?;
            tracing::info!(tenant = %name, series = db.head().num_series(), elapsed = ?started.elapsed(), "tenant TSDB replayed");
            // Set here too, so the gauge is right after a restart before the first write.
            metrics::gauge!("ringest_head_series", "tenant" => name.clone())
                .set(db.head().num_series() as f64);
            self.tenants.write().insert(name, Arc::new(db));
        }
        Ok(())
    }

    /// The directory holding `tenant`'s TSDB (WAL, blocks, shipper state).
    pub fn dir(&self, tenant: &str) -> PathBuf {
        self.base.join(tenant)
    }

    /// Where `tenant`'s TSDB lives and how it is opened (its block labels read now).
    fn db_options(&self, tenant: &str) -> (PathBuf, DbOptions) {
        let opts = DbOptions {
            thanos: Some(ThanosMeta {
                labels: (self.labels)(tenant),
                source: "receive".into(),
            }),
            ..self.opts.clone()
        };
        (self.dir(tenant), opts)
    }

    fn open_db(&self, tenant: &str) -> Result<Db, IngestError> {
        let (dir, opts) = self.db_options(tenant);
        open_at(tenant, &dir, opts)
    }

    /// The tenant's TSDB if it exists.
    pub fn get(&self, tenant: &str) -> Option<Arc<Db>> {
        self.tenants.read().get(tenant).cloned()
    }

    /// The tenant's TSDB, opened now if this is its first write.
    pub async fn get_or_open(&self, tenant: &str) -> Result<Arc<Db>, IngestError> {
        if let Some(db) = self.get(tenant) {
            return Ok(db);
        }
        let _guard = self.opening.lock().await;
        if let Some(db) = self.get(tenant) {
            return Ok(db);
        }
        // Opening replays the tenant's WAL and reads its blocks: off the async workers.
        let (dir, opts) = self.db_options(tenant);
        let name = tenant.to_string();
        let db = Arc::new(crate::blocking::run(move || open_at(&name, &dir, opts)).await??);
        tracing::info!(tenant, "tenant TSDB created");
        self.tenants.write().insert(tenant.to_string(), db.clone());
        Ok(db)
    }

    /// Every open tenant.
    pub fn tenants(&self) -> Vec<(String, Arc<Db>)> {
        self.tenants
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Syncs and closes every TSDB, logging failures.
    pub fn close(&self) {
        for (tenant, db) in self.tenants() {
            if let Err(e) = db.close() {
                tracing::error!(tenant, error = %e, "closing TSDB");
            }
        }
    }
}

/// Opens (replays) the TSDB of `tenant` in `dir`. Blocking.
fn open_at(tenant: &str, dir: &Path, opts: DbOptions) -> Result<Db, IngestError> {
    // The shipper's record of uploaded blocks bounds replay past a damaged, uploaded block;
    // unreadable, it counts as none uploaded (the block's samples are then replayed).
    let uploaded = crate::shipper::uploaded(dir).unwrap_or_default();
    Db::open_with_uploaded(dir, opts, &uploaded).map_err(|source| IngestError::Open {
        tenant: tenant.to_string(),
        source,
    })
}
