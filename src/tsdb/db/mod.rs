//! One tenant's TSDB: the in-memory [`Head`] made durable by a write-ahead log in `<dir>/wal`,
//! and the finished blocks cut from it.
//!
//! One type, [`Db`], with its methods spread over files by concern (as Prometheus spreads its
//! `Head` over `head_append.go`, `head_read.go`, `head_wal.go`):
//!
//! - this file: options, errors, opening and closing;
//! - `append.rs`: the append path (series lookup outside locks, then one short commit);
//! - `commit_log.rs`: the group-commit WAL ([`CommitLog`]), its thread, failures and recovery;
//! - `replay.rs`: rebuilding the head from the WAL at open;
//! - `select.rs`: reads across blocks and head;
//! - `chunk_querier.rs`: chunk-level reads (series listed now, chunks read as they are sent);
//! - `cut.rs`: writing head ranges as blocks, truncating head and WAL (compaction, flush);
//! - `blocks.rs`: opening, deleting and quarantining local blocks.

mod append;
mod blocks;
pub mod chunk_querier;
pub mod commit_log;
mod cut;
mod replay;
mod select;
#[cfg(test)]
mod tests;

use crate::tsdb::block::{BlockError, ThanosMeta, Ulid};
use crate::tsdb::checkpoint::{delete_segments_before, last_checkpoint, CheckpointError};
use crate::tsdb::head::{Head, HeadOptions, Rejection};
use crate::tsdb::querier::Block;
use crate::tsdb::record::RefSample;
use crate::tsdb::wlog::{Wal, WalError, WalOptions};
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use crate::tsdb::batch::{AppendBatch, Sample};
pub use chunk_querier::{ChunkQuerier, ChunkSeries, StoredChunk};
pub use commit_log::{CommitLog, RECOVERY_INTERVAL};

/// Options of one tenant TSDB.
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// Block range in ms (2 h): chunks never cross it; half of it is the appendable window.
    pub block_range_ms: i64,
    /// Samples newer than now plus this many ms are rejected.
    pub too_far_in_future_ms: i64,
    /// WAL segment size in bytes (multiple of 32 KiB).
    pub wal_segment_size: usize,
    /// Snappy-compress WAL records.
    pub wal_compression: bool,
    /// Thanos section written into the meta.json of every block (None: plain Prometheus meta).
    pub thanos: Option<ThanosMeta>,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            block_range_ms: 7_200_000,
            too_far_in_future_ms: 600_000,
            wal_segment_size: 128 * 1024 * 1024,
            wal_compression: true,
            thanos: None,
        }
    }
}

/// Errors opening or closing a TSDB.
#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    /// Creating the TSDB directory failed.
    #[error("create tsdb dir {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The WAL could not be read, repaired, written or synced.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The WAL thread could not be started.
    #[error("wal writer thread: {0}")]
    SpawnThread(#[source] std::io::Error),
    /// The WAL thread panicked.
    #[error("wal writer thread panicked")]
    ThreadPanicked,
    /// Closing found records the WAL could not write (it was broken and did not recover).
    #[error("wal writer thread: {records} WAL records could not be written")]
    Unwritten {
        /// Records lost with the close (never acknowledged).
        records: usize,
    },
    /// A WAL checkpoint could not be read, written or cleaned up.
    #[error("wal checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The newest checkpoint is damaged (it is written whole and renamed, so this is no torn
    /// tail): refusing to start beats silently dropping older series.
    #[error("wal checkpoint: {} is corrupt at segment {segment} offset {offset}: {reason}", dir.display())]
    CorruptCheckpoint {
        /// The checkpoint directory.
        dir: PathBuf,
        /// Segment of the damage.
        segment: u64,
        /// Offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A block could not be written, read or deleted.
    #[error(transparent)]
    Block(#[from] BlockError),
}

/// What one `append` call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendStats {
    /// Samples stored (silently accepted same-bits duplicates are not counted).
    pub samples_appended: u64,
    /// Series this call created.
    pub series_created: u64,
    /// Samples older than their series' last sample.
    pub out_of_order: u64,
    /// Samples at their series' last timestamp with a different value.
    pub duplicate: u64,
    /// Samples older than the appendable window.
    pub out_of_bounds: u64,
    /// Samples newer than now plus the future window.
    pub too_far_in_future: u64,
    /// `(index into the call's series, samples of it rejected)` for each series with a rejected
    /// sample, by index: a router uses it to count what a write quorum stored. Empty (and not
    /// allocated) when nothing was rejected.
    pub rejected_series: Vec<(u32, u32)>,
}

impl AppendStats {
    /// Samples rejected by the append rules.
    pub fn rejected(&self) -> u64 {
        self.out_of_order + self.duplicate + self.out_of_bounds + self.too_far_in_future
    }

    fn count(&mut self, series: usize, r: Rejection) {
        match self.rejected_series.last_mut() {
            Some((i, n)) if *i as usize == series => *n += 1,
            _ => self.rejected_series.push((series as u32, 1)),
        }
        match r {
            Rejection::OutOfOrder => self.out_of_order += 1,
            Rejection::Duplicate => self.duplicate += 1,
            Rejection::OutOfBounds => self.out_of_bounds += 1,
            Rejection::TooFarInFuture => self.too_far_in_future += 1,
        }
    }
}

/// Why an `append` did not fully succeed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Some samples broke the append rules (409); every valid one is committed and durable.
    #[error("{message}")]
    Conflict {
        /// Counts of this call.
        stats: AppendStats,
        /// First rejection (series and timestamp) and the totals.
        message: String,
    },
    /// The call would take the head past its series limit; nothing of it was appended.
    #[error("{new_series} new series would exceed the head series limit {limit} ({head_series} in the head)")]
    SeriesLimit {
        /// Series in the head when refused.
        head_series: u64,
        /// Series the call would have created.
        new_series: u64,
        /// The limit.
        limit: u64,
    },
    /// The WAL could not be written or synced (retryable 5xx); nothing of this call is acknowledged.
    /// One failure fails every commit of its batch, so they share it.
    #[error("write-ahead log unavailable: {source}")]
    Wal {
        /// The underlying error.
        #[source]
        source: Arc<WalError>,
    },
    /// The log is closed (shutting down) or its thread is gone; nothing of this call is
    /// acknowledged.
    #[error("write-ahead log unavailable: {0}")]
    Closed(&'static str),
}

/// One tenant's TSDB: head plus WAL. `Send + Sync`; share it through an `Arc`.
pub struct Db {
    dir: PathBuf,
    opts: DbOptions,
    head: Head,
    /// The group-commit WAL; its commit lock orders commits and cuts.
    log: CommitLog,
    /// Scratch for the accepted samples of a commit, only touched under the commit lock.
    accepted: Mutex<Vec<RefSample>>,
    /// Held while cutting blocks, so one cut of this TSDB runs at a time.
    compact_lock: Mutex<()>,
    /// Serializes appends that create series under a head series limit.
    create_lock: Mutex<()>,
    /// Finished local blocks, oldest first; readers keep their files open, so a block deleted
    /// by retention stays readable for queries already holding it.
    blocks: parking_lot::RwLock<Vec<Arc<Block>>>,
    /// Blocks a read found damaged: no longer served, quarantined by the next maintenance.
    suspects: Mutex<Vec<blocks::Suspect>>,
    /// Chunk queries still reading the head: a cut waits for them before releasing chunks.
    readers: Arc<chunk_querier::PendingReaders>,
}

/// What one [`Db::compact`] or [`Db::flush`] did.
#[derive(Clone, Debug, Default)]
pub struct CompactStats {
    /// Blocks written, oldest first.
    pub blocks: Vec<Ulid>,
    /// Chunks released from the head.
    pub chunks_removed: usize,
    /// Series released from the head.
    pub series_removed: usize,
    /// WAL segments folded into a checkpoint and deleted.
    pub wal_segments_truncated: u64,
    /// Ranges visited that held no sample (no block written).
    pub empty_ranges: usize,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Db {
    /// Opens (creating) the TSDB at `dir`, replaying `<dir>/wal` into the head. Blocking.
    /// Knows of no uploaded block: see [`Db::open_with_uploaded`].
    pub fn open(dir: &Path, opts: DbOptions) -> Result<Db, TsdbError> {
        Self::open_with_uploaded(dir, opts, &BTreeSet::new())
    }

    /// [`Db::open`] told which of its blocks are safe in object storage (the caller, who ships
    /// them, knows; the TSDB never reads the shipper's state). A damaged block found at open is
    /// quarantined either way, but WAL samples of an uploaded one are not replayed: they would
    /// be cut into a second block overlapping the bucket's copy.
    pub fn open_with_uploaded(
        dir: &Path,
        opts: DbOptions,
        uploaded: &BTreeSet<Ulid>,
    ) -> Result<Db, TsdbError> {
        std::fs::create_dir_all(dir).map_err(|source| TsdbError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let wal_dir = dir.join("wal");
        let head = Head::new(HeadOptions {
            chunk_range: opts.block_range_ms,
            ..HeadOptions::default()
        });
        blocks::remove_unfinished_blocks(dir)?;
        let (blocks, persisted_until) = blocks::open_blocks(dir, uploaded)?;
        // Everything below the end of the newest block is persisted: the floor for appends,
        // and WAL samples below it (a crash between a cut and the WAL truncation) are skipped.
        let served = blocks.iter().map(|b| b.meta().max_time).max();
        if let Some(maxt) = served.max(persisted_until) {
            head.set_min_valid_time(maxt);
        }
        let started = Instant::now();
        let st = replay::replay(&head, &wal_dir)?;
        if st.records > 0 {
            let secs = started.elapsed().as_secs_f64();
            tracing::info!(
                dir = %dir.display(),
                records = st.records,
                series = st.series,
                samples = st.samples,
                skipped_samples = st.skipped_samples,
                unknown_refs = st.unknown_refs,
                persisted_samples = st.persisted_samples,
                series_released = st.series_released,
                seconds = secs,
                samples_per_sec = (st.samples as f64 / secs.max(1e-9)) as u64,
                "replayed WAL"
            );
        }
        let wal_opts = WalOptions {
            segment_size: opts.wal_segment_size,
            compress: opts.wal_compression,
        };
        let cp = if wal_dir.exists() {
            last_checkpoint(&wal_dir)?
        } else {
            None
        };
        let wal = match cp {
            Some((_, idx)) => {
                // Segments the checkpoint covers were replayed from it; new ones go after it.
                delete_segments_before(&wal_dir, idx + 1)?;
                Wal::open_from(&wal_dir, wal_opts.clone(), idx + 1)?
            }
            None => Wal::open(&wal_dir, wal_opts.clone())?,
        };
        let log = CommitLog::start(wal, wal_dir, wal_opts)?;
        Ok(Db {
            dir: dir.to_path_buf(),
            opts,
            head,
            log,
            accepted: Mutex::new(Vec::new()),
            compact_lock: Mutex::new(()),
            create_lock: Mutex::new(()),
            blocks: parking_lot::RwLock::new(blocks),
            suspects: Mutex::new(Vec::new()),
            readers: Arc::default(),
        })
    }

    /// The TSDB directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Thanos section of this TSDB's block meta.json (its external labels), if any.
    pub fn thanos_meta(&self) -> Option<&ThanosMeta> {
        self.opts.thanos.as_ref()
    }

    /// Prometheus `DB.StartTime`: the oldest local block's start, else the head's oldest sample
    /// (`i64::MAX` when the TSDB holds nothing).
    pub fn start_time(&self) -> i64 {
        let blocks = self.blocks.read().iter().map(|b| b.meta().min_time).min();
        blocks.unwrap_or(i64::MAX).min(self.head.min_time())
    }

    /// The in-memory head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Number of WAL fsyncs done so far (group commit makes this smaller than the appends).
    pub fn fsync_count(&self) -> u64 {
        self.log.fsync_count()
    }

    /// Flushes and fsyncs everything queued, stops the WAL thread. Later appends fail.
    pub fn close(&self) -> Result<(), TsdbError> {
        self.log.close()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "closing tsdb failed");
        }
    }
}
