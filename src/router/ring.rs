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

/// Loads `path` now and then re-reads it every `interval`, swapping the ring when its content changed.
pub fn watch(
    path: PathBuf,
    algorithm: Algorithm,
    replication_factor: usize,
    interval: Duration,
) -> Result<RingHandle, RingLoadError> {
    let (ring, last) = load(&path, algorithm, replication_factor)?;
    tracing::info!(path = %path.display(), nodes = ring.nodes(), "hashring loaded");
    let handle = RingHandle::new(None);
    handle.set(ring);
    let watcher = handle.clone();
    let p = path.clone();
    crate::reload::watch(
        path,
        last,
        interval,
        "hashrings file",
        "ringest_hashring_config",
        move |contents| match build_ring(&p, contents, algorithm, replication_factor) {
            Ok(ring) => {
                tracing::info!(nodes = ring.nodes(), "hashring reloaded");
                watcher.set(ring);
                crate::reload::Applied::Ok
            }
            Err(e) => crate::reload::Applied::Invalid(e.to_string()),
        },
    );
    Ok(handle)
}
