//! Keeps the router's hash ring in step with the hashrings file.
//!
//! The file is polled (content compared, not mtime) so that Kubernetes ConfigMap symlink swaps and
//! editors that replace files are both seen. A file that fails to parse or build keeps the old ring,
//! logs why, and sets `ringest_hashring_config_last_reload_successful` to 0.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hashring::{Algorithm, Multiring};
use parking_lot::RwLock;

/// The current ring, shared by every request.
#[derive(Clone)]
pub struct RingHandle {
    inner: Arc<RwLock<Option<Arc<Multiring>>>>,
}

/// Why a hashrings file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RingLoadError {
    /// The file could not be read.
    #[error("reading hashrings file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid hashring configuration for this replication factor.
    #[error("hashrings file {path}: {source}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: hashring::ConfigError,
    },
}

impl RingHandle {
    /// A handle holding `ring` (or none yet).
    pub fn new(ring: Option<Multiring>) -> Self {
        Self {
            inner: Arc::new(RwLock::new(ring.map(Arc::new))),
        }
    }

    /// The ring in force, if one was ever loaded.
    pub fn current(&self) -> Option<Arc<Multiring>> {
        self.inner.read().clone()
    }

    fn set(&self, ring: Multiring) {
        metrics::gauge!("ringest_hashring_nodes").set(ring.nodes() as f64);
        *self.inner.write() = Some(Arc::new(ring));
    }
}

/// Parses and builds a ring from file contents.
pub fn build_ring(
    path: &Path,
    contents: &[u8],
    algorithm: Algorithm,
    replication_factor: usize,
) -> Result<Multiring, RingLoadError> {
    let config_err = |source| RingLoadError::Config {
        path: path.to_path_buf(),
        source,
    };
    let configs = hashring::parse_config(contents).map_err(config_err)?;
    Multiring::new(&configs, algorithm, replication_factor).map_err(config_err)
}

/// Loads the ring once; startup fails on a bad file, as Thanos does.
pub fn load(
    path: &Path,
    algorithm: Algorithm,
    replication_factor: usize,
) -> Result<(Multiring, Vec<u8>), RingLoadError> {
    let contents = std::fs::read(path).map_err(|source| RingLoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let ring = build_ring(path, &contents, algorithm, replication_factor)?;
    Ok((ring, contents))
}

fn record_reload(ok: bool) {
    metrics::gauge!("ringest_hashring_config_last_reload_successful").set(if ok {
        1.0
    } else {
        0.0
    });
    if ok {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        metrics::gauge!("ringest_hashring_config_last_reload_success_timestamp_seconds").set(now);
    }
}

/// Loads `path` now and then re-reads it every `interval`, swapping the ring when its content changed.
pub fn watch(
    path: PathBuf,
    algorithm: Algorithm,
    replication_factor: usize,
    interval: Duration,
) -> Result<RingHandle, RingLoadError> {
    let (ring, mut last) = load(&path, algorithm, replication_factor)?;
    tracing::info!(path = %path.display(), nodes = ring.nodes(), "hashring loaded");
    let handle = RingHandle::new(None);
    handle.set(ring);
    record_reload(true);
    let watcher = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        // Whether `last` built the ring in force, and whether the previous read failed: unchanged
        // content after a read error reports `last`'s outcome again instead of keeping the error.
        let mut last_ok = true;
        let mut read_failed = false;
        loop {
            tick.tick().await;
            let contents = match tokio::fs::read(&path).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read hashrings file; keeping the current ring");
                    record_reload(false);
                    read_failed = true;
                    continue;
                }
            };
            if contents == last {
                if read_failed {
                    tracing::info!(path = %path.display(), "hashrings file readable again, unchanged");
                    record_reload(last_ok);
                    read_failed = false;
                }
                continue;
            }
            read_failed = false;
            match build_ring(&path, &contents, algorithm, replication_factor) {
                Ok(ring) => {
                    tracing::info!(path = %path.display(), nodes = ring.nodes(), "hashring reloaded");
                    watcher.set(ring);
                    record_reload(true);
                    last_ok = true;
                }
                Err(e) => {
                    tracing::error!(error = %e, "invalid hashrings file; keeping the current ring");
                    record_reload(false);
                    last_ok = false;
                }
            }
            last = contents;
        }
    });
    Ok(handle)
}
