//! One tenant's TSDB: the in-memory [`Head`] made durable by a write-ahead log in `<dir>/wal`.
//!
//! # Append path and group commit
//!
//! 1. Outside any global lock, each series of the request is hashed once and found or created
//!    in the striped head; the appendable window (`max(headMaxT - range/2, minValidTime)`) and the
//!    future bound (`now + too_far_in_future`) are fixed once per request, as Prometheus fixes
//!    them when it creates an appender.
//! 2. Under the short *commit lock* the request's samples are checked and applied to the head,
//!    and the accepted ones are encoded into a Samples record (preceded by a Series record for
//!    every series whose Series record has not been queued yet). The records go into an
//!    in-memory queue; the request remembers the sequence number of the last queued record.
//! 3. A dedicated WAL thread owns the [`Wal`]: it takes the whole queue at once, writes it, calls
//!    `sync` (fdatasync), and publishes the synced sequence through a `tokio::sync::watch`.
//!    Requests that queued while an fsync was running share the next one (group commit).
//! 4. The request awaits `synced >= its sequence`, then answers `Ok` or `Conflict`.
//!
//! Applying and queueing under one lock makes the WAL order equal to the order in which samples
//! were applied, and only accepted samples are logged, so replaying the WAL with the same
//! per-series rules rebuilds exactly the head that acknowledgements were given for. A sample
//! that is silently accepted as a same-bits duplicate of an in-flight sample is covered too,
//! because the request waits for the latest queued sequence, not just its own records. The
//! serialized part is an XOR append and a varint encode per sample (tens of ns); lookups,
//! hashing, series creation and all disk I/O happen outside it.
//!
//! # WAL failures (e.g. disk full)
//!
//! The head never holds a sample that is not either durable or still held by the WAL thread:
//! records stay in the thread's memory until an fsync covering them succeeds. When writing or
//! syncing fails, every waiter of that batch gets [`AppendError::Wal`] (retryable, nothing
//! acknowledged) and the Db turns *broken*: new appends fail fast without touching the head.
//! On the next append after at least [`RECOVERY_INTERVAL`] the thread tries to recover: it
//! drops the writer, truncates a torn tail of the segment it was writing if one is left
//! ([`repair`]; the writer undoes failed writes itself, but not after a failed fsync or a failed
//! undo), opens a fresh segment, re-logs every unsynced record and fsyncs. From then on the samples of the failed requests
//! are in the head and durable, so a client's retry is silently accepted as same-bits
//! duplicates, and new samples append normally. Re-logged records may repeat records that did
//! reach the old segment; replay ignores the repeats (same ref and labels, or same-bits
//! duplicates / older samples).
//!
//! # Replay
//!
//! [`Db::open`] reads every segment: Series records recreate series under their original refs
//! (so later appends continue the same series), Samples records are applied with the per-series
//! rules only (no bounds), errors ignored. Corruption (torn tail or bad record) is repaired at
//! the reported offset with a warning naming what is dropped, and replay stops there. Replay
//! reuses its decode buffers and caches the last series, so it allocates per record, not per
//! sample.

use crate::remote_write::{Series, WriteRequest};
use crate::tsdb::block::{BlockError, BlockSeries, BlockWriter, ChunkMeta, ThanosMeta, Ulid};
use crate::tsdb::checkpoint::{
    checkpoint, delete_checkpoints_before, delete_segments_before, last_checkpoint,
};
use crate::tsdb::head::{
    range_for_timestamp, Head, HeadOptions, MemSeries, Rejection, SeriesSamples,
};
use crate::tsdb::labels::{pack_pairs, packed_hash, Labels};
use crate::tsdb::matcher::Matcher;
use crate::tsdb::querier::{merge_series, Block};
use crate::tsdb::record::{
    decode_samples_into, decode_series_into, encode_samples, encode_series, record_type, RefSample,
    SAMPLES, SERIES,
};
use crate::tsdb::wlog::{repair, segments, Reader, Wal, WalError, WalOptions};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Minimum time between two recovery attempts of a broken WAL (each opens a new segment).
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);

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
    /// The WAL thread could not be started or died.
    #[error("wal writer thread: {0}")]
    Thread(String),
    /// A WAL checkpoint could not be read, written or cleaned up.
    #[error("wal checkpoint: {0}")]
    Checkpoint(String),
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
    #[error("write-ahead log unavailable: {message}")]
    Wal {
        /// The underlying error.
        message: String,
    },
}

/// What the WAL thread has made durable, published to waiting appends.
#[derive(Clone, Debug, Default)]
struct SyncState {
    /// Every record with a sequence `<=` this is fsynced.
    synced: u64,
    /// Every record with a sequence `<=` this (and `> synced`) was part of a failed batch.
    failed: u64,
    /// Message of the last failure.
    error: Option<Arc<str>>,
}

/// State behind the commit lock.
#[derive(Default)]
struct CommitState {
    /// Encoded records in apply order, not yet taken by the WAL thread.
    queue: Vec<Vec<u8>>,
    /// Sequence of the last queued record (records are numbered from 1).
    last_seq: u64,
    /// Set while the WAL is failed and not yet recovered.
    broken: Option<Arc<str>>,
    /// An append asked the broken WAL thread to try recovering.
    poke: bool,
    /// Set by `close`: the thread drains the queue and exits.
    closing: bool,
    /// Result of the final `Wal::close`.
    close_result: Option<Result<(), String>>,
    /// Record buffers returned by the WAL thread for reuse.
    pool: Vec<Vec<u8>>,
    /// Scratch for accepted samples.
    samples: Vec<RefSample>,
    /// Segment cuts asked for by WAL truncation (a counter) and how many the thread has done.
    cut_requested: u64,
    cut_done: u64,
}

/// Shared between the Db and its WAL thread.
struct Shared {
    state: Mutex<CommitState>,
    cv: Condvar,
    /// Signalled when the WAL thread has cut a segment or exited.
    cut_cv: Condvar,
    sync_tx: watch::Sender<SyncState>,
    fsyncs: AtomicU64,
    /// Test hook: sleep before each fsync so concurrent appends pile up.
    sync_delay: Duration,
    /// Minimum time between recovery attempts ([`RECOVERY_INTERVAL`]; shorter in tests).
    recovery_interval: Duration,
    /// Test hook: make the next batch fail after tearing its last record on disk.
    fail_next: std::sync::atomic::AtomicBool,
}

/// One tenant's TSDB: head plus WAL. `Send + Sync`; share it through an `Arc`.
pub struct Db {
    dir: PathBuf,
    opts: DbOptions,
    head: Head,
    shared: Arc<Shared>,
    sync_rx: watch::Receiver<SyncState>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Held while cutting blocks, so one cut of this TSDB runs at a time.
    compact_lock: Mutex<()>,
    /// Serializes appends that create series under a head series limit.
    create_lock: Mutex<()>,
    /// Finished local blocks, oldest first; readers keep their files open, so a block deleted
    /// by retention stays readable for queries already holding it.
    blocks: parking_lot::RwLock<Vec<Arc<Block>>>,
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

/// Counts from a WAL replay.
#[derive(Clone, Copy, Debug, Default)]
struct ReplayStats {
    records: u64,
    series: u64,
    samples: u64,
    skipped_samples: u64,
    unknown_refs: u64,
    /// Samples below the min valid time (already in a block).
    persisted_samples: u64,
    /// Series left without samples after replay, released at once.
    series_released: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Db {
    /// Opens (creating) the TSDB at `dir`, replaying `<dir>/wal` into the head. Blocking.
    pub fn open(dir: &Path, opts: DbOptions) -> Result<Db, TsdbError> {
        Self::open_inner(dir, opts, Duration::ZERO)
    }

    fn open_inner(dir: &Path, opts: DbOptions, sync_delay: Duration) -> Result<Db, TsdbError> {
        std::fs::create_dir_all(dir).map_err(|source| TsdbError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let wal_dir = dir.join("wal");
        let head = Head::new(HeadOptions {
            chunk_range: opts.block_range_ms,
            ..HeadOptions::default()
        });
        remove_unfinished_blocks(dir)?;
        let (blocks, persisted_until) = open_blocks(dir)?;
        // Everything below the end of the newest block is persisted: the floor for appends,
        // and WAL samples below it (a crash between a cut and the WAL truncation) are skipped.
        let served = blocks.iter().map(|b| b.meta().max_time).max();
        if let Some(maxt) = served.max(persisted_until) {
            head.set_min_valid_time(maxt);
        }
        let started = Instant::now();
        let st = replay(&head, &wal_dir)?;
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
            last_checkpoint(&wal_dir).map_err(|e| TsdbError::Checkpoint(e.to_string()))?
        } else {
            None
        };
        let wal = match cp {
            Some((_, idx)) => {
                // Segments the checkpoint covers were replayed from it; new ones go after it.
                delete_segments_before(&wal_dir, idx + 1)
                    .map_err(|e| TsdbError::Checkpoint(e.to_string()))?;
                Wal::open_from(&wal_dir, wal_opts.clone(), idx + 1)?
            }
            None => Wal::open(&wal_dir, wal_opts.clone())?,
        };
        let (sync_tx, sync_rx) = watch::channel(SyncState::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(CommitState::default()),
            cv: Condvar::new(),
            cut_cv: Condvar::new(),
            sync_tx,
            fsyncs: AtomicU64::new(0),
            sync_delay,
            recovery_interval: if cfg!(test) {
                Duration::ZERO
            } else {
                RECOVERY_INTERVAL
            },
            fail_next: std::sync::atomic::AtomicBool::new(false),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ringest-wal".into())
            .spawn(move || wal_thread(wal, wal_dir, wal_opts, sh))
            .map_err(|e| TsdbError::Thread(e.to_string()))?;
        Ok(Db {
            dir: dir.to_path_buf(),
            opts,
            head,
            shared,
            sync_rx,
            thread: Mutex::new(Some(thread)),
            compact_lock: Mutex::new(()),
            create_lock: Mutex::new(()),
            blocks: parking_lot::RwLock::new(blocks),
        })
    }

    /// The TSDB directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The in-memory head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Number of WAL fsyncs done so far (group commit makes this smaller than the appends).
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Samples in `[mint, maxt]` of the series matching all `matchers`, sorted by labels:
    /// local blocks and the head, seamlessly across cuts.
    ///
    /// The head is read first: a cut running meanwhile may move samples from the head into a
    /// new block, and reading the block list afterwards finds them there (merging drops the
    /// samples seen twice).
    pub fn select(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<SeriesSamples>, TsdbError> {
        let head = self.head.select(mint, maxt, matchers);
        let blocks: Vec<Arc<Block>> = self
            .blocks
            .read()
            .iter()
            .filter(|b| b.meta().min_time <= maxt && b.meta().max_time > mint)
            .cloned()
            .collect();
        if blocks.is_empty() {
            return Ok(head);
        }
        let mut parts = Vec::with_capacity(blocks.len() + 1);
        for b in &blocks {
            match b.select(mint, maxt, matchers) {
                Ok(part) => parts.push(part),
                Err(BlockError::Corrupt(reason)) => {
                    // Damage found while reading (series entries and chunks are checked as they
                    // are read): stop serving the block and answer from the rest.
                    self.blocks.write().retain(|x| !Arc::ptr_eq(x, b));
                    quarantine(&self.dir, b.dir(), &reason)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        parts.push(head);
        Ok(merge_series(parts))
    }

    /// The finished local blocks, oldest first.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks.read().clone()
    }

    /// Deletes local blocks (retention, once they are uploaded). Queries already reading them
    /// finish: their files stay open.
    pub fn delete_blocks(&self, ulids: &[Ulid]) -> Result<(), TsdbError> {
        let gone: Vec<Arc<Block>> = {
            let mut blocks = self.blocks.write();
            let (gone, kept) = blocks
                .drain(..)
                .partition(|b| ulids.contains(&b.meta().ulid));
            *blocks = kept;
            gone
        };
        for b in gone {
            // Renamed first so a crash mid-delete never leaves a half block that looks whole.
            let tmp = b.dir().with_extension("tmp-for-deletion");
            std::fs::rename(b.dir(), &tmp)
                .and_then(|_| std::fs::remove_dir_all(&tmp))
                .map_err(|e| BlockError::io(b.dir(), e))?;
            tracing::info!(dir = %b.dir().display(), "deleted local block");
        }
        Ok(())
    }

    /// Writes the head's chunks whose first sample is in `[mint, maxt)` as one block under `dir`.
    ///
    /// `mint` and `maxt` should be block-range boundaries (chunks never cross one, so the block
    /// then holds exactly the samples of the range). Returns `None` when the range has no
    /// samples (nothing is written). The head and the WAL are left as they are: truncating
    /// them after the block is written is the next step of cutting.
    pub fn write_head_block(
        &self,
        dir: &Path,
        mint: i64,
        maxt: i64,
        thanos: Option<&ThanosMeta>,
    ) -> Result<Option<Ulid>, BlockError> {
        let mut series = self.head.all_series();
        series.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        // One series' chunks copied at a time: a cut never holds a second copy of the range.
        let mut w = BlockWriter::new(dir, mint, maxt)?;
        for s in &series {
            let chunks = s.chunks_in_range(mint, maxt);
            w.add_series(&BlockSeries {
                labels: &s.labels,
                chunks: chunks
                    .iter()
                    .map(|c| ChunkMeta {
                        mint: c.mint,
                        maxt: c.maxt,
                        data: &c.data,
                    })
                    .collect(),
            })?;
        }
        match w.finish(thanos) {
            Ok(ulid) => Ok(Some(ulid)),
            Err(BlockError::Empty) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Prometheus `Head.compactable`: the head spans more than 1.5 block ranges.
    pub fn compactable(&self) -> bool {
        let (min, max) = (self.head.min_time(), self.head.max_time());
        min != i64::MAX
            && max != i64::MIN
            && max.saturating_sub(min) > self.opts.block_range_ms / 2 * 3
    }

    /// Cuts the head into blocks while it is compactable (Prometheus `DB.Compact` for the head):
    /// each block is `[head min time, end of its block range)`; then the head releases what was
    /// persisted and the WAL is checkpointed and truncated. Blocking; runs beside appends.
    pub fn compact(&self) -> Result<CompactStats, TsdbError> {
        let _cutting = self.compact_lock.lock();
        let mut stats = CompactStats::default();
        let mut persisted_until = None;
        while self.compactable() {
            let mint = self.head.min_time();
            let maxt = range_for_timestamp(mint, self.opts.block_range_ms);
            self.cut_range(mint, maxt, &mut stats)?;
            persisted_until = Some(maxt);
        }
        if let Some(maxt) = persisted_until {
            stats.wal_segments_truncated = self.truncate_wal(maxt)?;
        }
        Ok(stats)
    }

    /// Persists everything in the head as blocks (shutdown): ranges as [`Db::compact`] cuts them,
    /// the last one ending just after the newest sample. Call after [`Db::close`]; the WAL is
    /// then emptied, since everything it held is in blocks.
    pub fn flush(&self) -> Result<CompactStats, TsdbError> {
        let _cutting = self.compact_lock.lock();
        let mut stats = CompactStats::default();
        loop {
            let (min, max) = (self.head.min_time(), self.head.max_time());
            if min == i64::MAX || max == i64::MIN || min > max {
                break;
            }
            let maxt =
                range_for_timestamp(min, self.opts.block_range_ms).min(max.saturating_add(1));
            self.cut_range(min, maxt, &mut stats)?;
        }
        let wal_dir = self.dir.join("wal");
        if let Some((first, last)) = segments(&wal_dir)? {
            // Oldest first, checkpoints last: a crash in between leaves a valid suffix.
            delete_segments_before(&wal_dir, last + 1)
                .map_err(|e| TsdbError::Checkpoint(e.to_string()))?;
            stats.wal_segments_truncated = last + 1 - first;
        }
        delete_checkpoints_before(&wal_dir, u64::MAX)
            .map_err(|e| TsdbError::Checkpoint(e.to_string()))?;
        Ok(stats)
    }

    /// Writes `[mint, maxt)` of the head as a block, then truncates the head below `maxt`.
    fn cut_range(&self, mint: i64, maxt: i64, stats: &mut CompactStats) -> Result<(), TsdbError> {
        {
            // Under the commit lock: every commit before this is in the head (and gets into
            // the block); every commit after it sees the new floor.
            let _commits = self.shared.state.lock();
            self.head.set_min_valid_time(maxt);
        }
        let started = Instant::now();
        let ulid = self.write_head_block(&self.dir, mint, maxt, self.opts.thanos.as_ref())?;
        crate::failpoint::hit("cut.after_block_write");
        if let Some(ulid) = ulid {
            // Readable as a block before the head lets go of the samples.
            let block = Block::open(&self.dir.join(ulid.to_string()))?;
            self.blocks.write().push(Arc::new(block));
        }
        let seq = self.shared.state.lock().last_seq;
        let t = self.head.truncate(maxt);
        {
            // Truncation leaves the min time at `maxt`; raise it to the oldest sample left so a
            // head that idled for days does not cut one empty range after another. Safe only if
            // no commit (which lowers it, under this lock) ran during the scan.
            let st = self.shared.state.lock();
            if st.last_seq == seq {
                self.head
                    .reset_min_time(t.min_time.map_or(i64::MAX, |m| m.max(maxt)));
            }
        }
        stats.chunks_removed += t.chunks_removed;
        stats.series_removed += t.series_removed;
        if let Some(ulid) = ulid {
            tracing::info!(
                dir = %self.dir.display(),
                %ulid,
                mint,
                maxt,
                chunks_released = t.chunks_removed,
                series_released = t.series_removed,
                seconds = started.elapsed().as_secs_f64(),
                "cut block"
            );
            metrics::counter!("ringest_tsdb_blocks_cut_total").increment(1);
            metrics::histogram!("ringest_tsdb_block_cut_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            stats.blocks.push(ulid);
        } else {
            stats.empty_ranges += 1;
        }
        Ok(())
    }

    /// Prometheus `Head.truncateWAL`: starts a new segment, checkpoints the older two thirds of
    /// the segments (series still in the head, samples at or after `mint`) and deletes them.
    /// Returns the number of segments deleted.
    fn truncate_wal(&self, mint: i64) -> Result<u64, TsdbError> {
        self.cut_wal_segment();
        let wal_dir = self.dir.join("wal");
        let Some((first, last)) = segments(&wal_dir)? else {
            return Ok(0);
        };
        // Never the segment being written; keep the newest third (mostly samples still in the head).
        let Some(last) = last.checked_sub(1) else {
            return Ok(0);
        };
        let last = first + (last.saturating_sub(first)) * 2 / 3;
        if last <= first {
            return Ok(0);
        }
        let cp = |e: crate::tsdb::checkpoint::CheckpointError| TsdbError::Checkpoint(e.to_string());
        let started = Instant::now();
        let st = checkpoint(
            &wal_dir,
            first,
            last,
            |r| self.head.series_by_ref(r).is_some(),
            mint,
            self.opts.wal_compression,
        )
        .map_err(cp)?;
        crate::failpoint::hit("cut.after_wal_checkpoint");
        delete_segments_before(&wal_dir, last + 1).map_err(cp)?;
        tracing::info!(
            dir = %wal_dir.display(),
            first,
            last,
            stats = ?st,
            seconds = started.elapsed().as_secs_f64(),
            "WAL checkpoint written, older segments deleted"
        );
        Ok(last + 1 - first)
    }

    /// Asks the WAL thread to start a new segment and waits until it has (or exited).
    fn cut_wal_segment(&self) {
        let mut st = self.shared.state.lock();
        if st.closing {
            return;
        }
        st.cut_requested += 1;
        let want = st.cut_requested;
        self.shared.cv.notify_one();
        while st.cut_done < want && st.close_result.is_none() {
            if self
                .shared
                .cut_cv
                .wait_for(&mut st, Duration::from_secs(30))
                .timed_out()
            {
                tracing::warn!(dir = %self.dir.display(), "WAL thread did not start a new segment in 30s");
                return;
            }
        }
    }

    /// Appends the samples of `series` (series of `req`) under Prometheus's append rules.
    ///
    /// Durability contract: when this returns `Ok` or [`AppendError::Conflict`], every sample
    /// of this call that was accepted, and every earlier sample it was silently deduplicated
    /// against, is in the WAL and fsynced. On [`AppendError::Wal`] nothing is acknowledged; the
    /// samples may still become durable once the WAL recovers, so a retry succeeds (as silent
    /// same-bits duplicates where they were kept). Cancelling the future after the commit step
    /// leaves the samples applied and queued for the WAL, like a timed-out request.
    pub async fn append(
        &self,
        req: &WriteRequest<'_>,
        series: &[&Series],
    ) -> Result<AppendStats, AppendError> {
        self.append_limited(req, series, None).await
    }

    /// [`Db::append`] with a head series limit: when the series this call would create would
    /// take the head past `max_series`, nothing is appended and [`AppendError::SeriesLimit`] is
    /// returned. Calls creating no series always pass. Limited calls that create series do so one
    /// at a time, so concurrent calls cannot overshoot the limit together.
    pub async fn append_limited(
        &self,
        req: &WriteRequest<'_>,
        series: &[&Series],
        max_series: Option<u64>,
    ) -> Result<AppendStats, AppendError> {
        let max_t = now_ms().saturating_add(self.opts.too_far_in_future_ms);
        if !self.head.initialized() {
            // Prometheus initAppender: the first appendable timestamp seeds the head's range.
            let first = series
                .iter()
                .flat_map(|s| req.series_samples(s))
                .map(|s| s.timestamp)
                .find(|&t| t <= max_t && t > i64::MIN);
            if let Some(t) = first {
                self.head.init_time(t);
            }
        }
        let min_valid = self.head.appendable_min_valid_time();

        let mut stats = AppendStats::default();
        let mut first_err = None;
        let mut packed = String::with_capacity(256);
        let mut resolved = Vec::with_capacity(series.len());
        // Held while this call creates series under a limit.
        let creating = match max_series {
            Some(limit) => self.check_series_limit(req, series, min_valid, max_t, limit)?,
            None => None,
        };
        for (idx, s) in series.iter().enumerate() {
            let samples = req.series_samples(s);
            if samples.is_empty() {
                continue;
            }
            let pairs = req.series_labels(s).iter().map(|l| (l.name, l.value));
            let in_window = |t: i64| t >= min_valid && t <= max_t;
            if !samples.iter().any(|x| in_window(x.timestamp)) {
                // Like Prometheus, do not create a series none of whose samples can be stored.
                for x in samples {
                    let r = if x.timestamp > max_t {
                        Rejection::TooFarInFuture
                    } else {
                        Rejection::OutOfBounds
                    };
                    stats.count(idx, r);
                    if first_err.is_none() {
                        let labels = Labels::from_sorted(pairs.clone());
                        first_err = Some(format!(
                            "{r} for series {labels} at timestamp {}",
                            x.timestamp
                        ));
                    }
                }
                continue;
            }
            pack_pairs(pairs, &mut packed);
            let (ms, created) = self.head.get_or_create(packed_hash(&packed), &packed);
            stats.series_created += u64::from(created);
            resolved.push((idx, ms, samples));
        }
        drop(creating);

        let target = self.commit(&resolved, min_valid, max_t, &mut stats, &mut first_err)?;
        self.wait_synced(target).await?;

        if let Some(first) = first_err {
            // Out-of-window series are counted before the others: order by index.
            stats.rejected_series.sort_unstable();
            let message = format!(
                "{first}; {} of {} samples rejected (out of order {}, duplicate {}, out of bounds {}, too far in the future {})",
                stats.rejected(),
                stats.rejected() + stats.samples_appended,
                stats.out_of_order,
                stats.duplicate,
                stats.out_of_bounds,
                stats.too_far_in_future
            );
            return Err(AppendError::Conflict { stats, message });
        }
        Ok(stats)
    }

    /// Series of `series` not in the head that `append` would create (those with a sample in
    /// `[min_valid, max_t]`).
    fn count_new_series(
        &self,
        req: &WriteRequest<'_>,
        series: &[&Series],
        min_valid: i64,
        max_t: i64,
        packed: &mut String,
    ) -> u64 {
        // Hashes of the new series, so one sent twice in a request counts once.
        let mut new: Vec<u64> = Vec::new();
        for s in series {
            let in_window = |t: i64| t >= min_valid && t <= max_t;
            if !req.series_samples(s).iter().any(|x| in_window(x.timestamp)) {
                continue;
            }
            pack_pairs(
                req.series_labels(s).iter().map(|l| (l.name, l.value)),
                packed,
            );
            let hash = packed_hash(packed);
            if !self.head.contains(hash, packed) {
                new.push(hash);
            }
        }
        new.sort_unstable();
        new.dedup();
        new.len() as u64
    }

    /// Refuses a call whose new series would take the head past `limit`; when it creates series
    /// within the limit, returns the guard serializing limited creators (recounted under it).
    fn check_series_limit(
        &self,
        req: &WriteRequest<'_>,
        series: &[&Series],
        min_valid: i64,
        max_t: i64,
        limit: u64,
    ) -> Result<Option<parking_lot::MutexGuard<'_, ()>>, AppendError> {
        let mut packed = String::with_capacity(256);
        if self.count_new_series(req, series, min_valid, max_t, &mut packed) == 0 {
            return Ok(None);
        }
        let guard = self.create_lock.lock();
        let new_series = self.count_new_series(req, series, min_valid, max_t, &mut packed);
        let head_series = self.head.num_series() as u64;
        if new_series > 0 && head_series + new_series > limit {
            return Err(AppendError::SeriesLimit {
                head_series,
                new_series,
                limit,
            });
        }
        Ok(Some(guard))
    }

    /// Applies samples to the head and queues their WAL records, all under the commit lock.
    /// Returns the sequence the caller must see synced.
    fn commit(
        &self,
        resolved: &[(usize, Arc<MemSeries>, &[crate::remote_write::Sample])],
        min_valid: i64,
        max_t: i64,
        stats: &mut AppendStats,
        first_err: &mut Option<String>,
    ) -> Result<u64, AppendError> {
        let mut st = self.shared.state.lock();
        if st.closing {
            return Err(AppendError::Wal {
                message: "tsdb is closed".into(),
            });
        }
        if let Some(e) = &st.broken {
            let message = e.to_string();
            st.poke = true;
            drop(st);
            self.shared.cv.notify_one();
            return Err(AppendError::Wal { message });
        }
        // A cut raises the floor under this lock before persisting a range, so a request that
        // computed its window earlier cannot slip a sample into a range already written.
        let min_valid = min_valid.max(self.head.min_valid_time());
        let mut accepted = std::mem::take(&mut st.samples);
        accepted.clear();
        let mut new_series: Vec<Arc<MemSeries>> = Vec::new();
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        for (idx, s, samples) in resolved {
            let mut s = s;
            let mut fresh: Arc<MemSeries>;
            let mut d = s.lock();
            while d.removed {
                // Garbage-collected by a head truncation after this request resolved it.
                drop(d);
                let packed = s.labels.packed();
                fresh = self.head.get_or_create(packed_hash(packed), packed).0;
                s = &fresh;
                d = s.lock();
            }
            if !d.logged {
                d.logged = true;
                new_series.push(s.clone());
            }
            for smp in samples.iter() {
                let (t, v) = (smp.timestamp, smp.value);
                match self.head.append_sample(&mut d, t, v, min_valid, max_t) {
                    Ok(true) => {
                        accepted.push(RefSample {
                            r#ref: s.r#ref,
                            t,
                            v,
                        });
                        mint = mint.min(t);
                        maxt = maxt.max(t);
                    }
                    Ok(false) => {}
                    Err(r) => {
                        stats.count(*idx, r);
                        if first_err.is_none() {
                            *first_err =
                                Some(format!("{r} for series {} at timestamp {t}", s.labels));
                        }
                    }
                }
            }
        }
        stats.samples_appended = accepted.len() as u64;
        if !accepted.is_empty() {
            self.head.update_min_max_time(mint, maxt);
        }
        if !new_series.is_empty() {
            let mut buf = st.pool.pop().unwrap_or_default();
            buf.clear();
            encode_series(
                new_series.iter().map(|s| (s.r#ref, s.labels.iter())),
                &mut buf,
            );
            st.queue.push(buf);
            st.last_seq += 1;
        }
        if !accepted.is_empty() {
            let mut buf = st.pool.pop().unwrap_or_default();
            buf.clear();
            encode_samples(&accepted, &mut buf);
            st.queue.push(buf);
            st.last_seq += 1;
        }
        st.samples = accepted;
        let target = st.last_seq;
        drop(st);
        self.shared.cv.notify_one();
        Ok(target)
    }

    /// Waits until the WAL thread has fsynced every record up to `target`.
    async fn wait_synced(&self, target: u64) -> Result<(), AppendError> {
        let mut rx = self.sync_rx.clone();
        let st = rx
            .wait_for(|s| s.synced >= target || s.failed >= target)
            .await
            .map_err(|_| AppendError::Wal {
                message: "wal writer thread is gone".into(),
            })?;
        if st.synced >= target {
            Ok(())
        } else {
            Err(AppendError::Wal {
                message: st.error.as_deref().unwrap_or("wal write failed").into(),
            })
        }
    }

    /// Flushes and fsyncs everything queued, stops the WAL thread. Later appends fail.
    pub fn close(&self) -> Result<(), TsdbError> {
        let Some(handle) = self.thread.lock().take() else {
            return Ok(());
        };
        self.shared.state.lock().closing = true;
        self.shared.cv.notify_all();
        handle
            .join()
            .map_err(|_| TsdbError::Thread("wal thread panicked".into()))?;
        match self.shared.state.lock().close_result.take() {
            Some(Err(e)) => Err(TsdbError::Thread(e)),
            _ => Ok(()),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "closing tsdb failed");
        }
    }
}

/// The WAL thread: takes queued records in batches, writes and fsyncs them, publishes progress.
fn wal_thread(wal: Wal, dir: PathBuf, opts: WalOptions, sh: Arc<Shared>) {
    let mut wal = Some(wal);
    // Records written (or to be re-written) but not yet covered by a successful fsync.
    let mut unsynced: Vec<Vec<u8>> = Vec::new();
    let mut broken = false;
    let mut last_attempt: Option<Instant> = None;
    let mut cut_done = 0;
    loop {
        let (batch, target, closing) = {
            let mut st = sh.state.lock();
            while st.queue.is_empty()
                && !st.closing
                && !(broken && st.poke)
                && st.cut_requested == st.cut_done
            {
                sh.cv.wait(&mut st);
            }
            st.poke = false;
            (std::mem::take(&mut st.queue), st.last_seq, st.closing)
        };
        if batch.is_empty() && !closing && (!broken || unsynced.is_empty()) {
            // Woken for a segment cut only (or a poke with nothing to re-log).
            serve_cut(wal.as_mut().filter(|_| !broken), &mut cut_done, &sh, &dir);
            continue;
        }
        if !sh.sync_delay.is_zero() {
            std::thread::sleep(sh.sync_delay);
        }
        let first_new = unsynced.len();
        unsynced.extend(batch);
        let commit_started = Instant::now();
        let res = if broken {
            if last_attempt.is_some_and(|t| t.elapsed() < sh.recovery_interval) && !closing {
                // Too soon to retry: fail whoever raced in before `broken` was visible (their
                // records stay in `unsynced` and are re-logged by the next recovery).
                sh.sync_tx.send_modify(|s| s.failed = s.failed.max(target));
                serve_cut(None, &mut cut_done, &sh, &dir);
                continue;
            }
            last_attempt = Some(Instant::now());
            recover(&mut wal, &dir, &opts).and_then(|w| {
                w.log(&unsynced)?;
                w.sync()
            })
        } else {
            match wal.as_mut() {
                Some(w) if sh.fail_next.swap(false, Ordering::Relaxed) => {
                    tear_for_test(w, &unsynced[first_new..])
                }
                Some(w) => w.log(&unsynced[first_new..]).and_then(|_| w.sync()),
                None => Err(WalError::Poisoned),
            }
        };
        match res {
            Ok(()) => {
                if broken {
                    tracing::warn!(dir = %dir.display(), records = unsynced.len(), "WAL recovered; re-logged unsynced records");
                }
                broken = false;
                sh.fsyncs.fetch_add(1, Ordering::Relaxed);
                // Write + fdatasync of one group commit: the latency every acknowledgement waits on.
                metrics::histogram!("ringest_wal_fsync_duration_seconds")
                    .record(commit_started.elapsed().as_secs_f64());
                metrics::counter!("ringest_wal_fsyncs_total").increment(1);
                let mut st = sh.state.lock();
                st.broken = None;
                for mut b in unsynced.drain(..) {
                    if st.pool.len() < 64 && b.capacity() <= 1 << 20 {
                        b.clear();
                        st.pool.push(b);
                    }
                }
                drop(st);
                sh.sync_tx.send_modify(|s| s.synced = target);
            }
            Err(e) => {
                let msg: Arc<str> = Arc::from(e.to_string());
                tracing::error!(dir = %dir.display(), error = %e, "WAL write failed; appends fail until it recovers");
                metrics::counter!("ringest_wal_failures_total").increment(1);
                broken = true;
                sh.state.lock().broken = Some(msg.clone());
                sh.sync_tx.send_modify(|s| {
                    s.failed = s.failed.max(target);
                    s.error = Some(msg);
                });
            }
        }
        serve_cut(wal.as_mut().filter(|_| !broken), &mut cut_done, &sh, &dir);
        if closing && sh.state.lock().queue.is_empty() {
            let r = match wal.take() {
                Some(w) if !broken => w.close().map_err(|e| e.to_string()),
                _ if unsynced.is_empty() => Ok(()),
                _ => Err(format!(
                    "{} WAL records could not be written",
                    unsynced.len()
                )),
            };
            sh.state.lock().close_result = Some(r);
            sh.cut_cv.notify_all();
            return;
        }
    }
}

/// Serves pending segment-cut requests of WAL truncation: starts a new segment (skipped while the
/// WAL is broken: recovery starts one anyway) and wakes the requesters.
fn serve_cut(wal: Option<&mut Wal>, cut_done: &mut u64, sh: &Shared, dir: &Path) {
    let want = sh.state.lock().cut_requested;
    if want <= *cut_done {
        return;
    }
    if let Some(w) = wal {
        if let Err(e) = w.next_segment() {
            tracing::warn!(dir = %dir.display(), error = %e, "starting a new WAL segment failed");
        }
    }
    *cut_done = want;
    sh.state.lock().cut_done = want;
    sh.cut_cv.notify_all();
}

/// Test hook: writes `recs`, then cuts the segment inside the last record, then fails, which
/// is what a write that ran out of disk space mid-record leaves behind.
fn tear_for_test(w: &mut Wal, recs: &[Vec<u8>]) -> Result<(), WalError> {
    w.log(recs)?;
    w.sync()?;
    let path = crate::tsdb::wlog::segment_path(w.dir(), w.current_segment());
    let io = |source| WalError::Io {
        op: "test tear",
        path: path.clone(),
        source,
    };
    let data = std::fs::read(&path).map_err(io)?;
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io)?;
    f.set_len(end.saturating_sub(3) as u64).map_err(io)?;
    Err(io(std::io::Error::from_raw_os_error(28)))
}

/// Drops the failed writer, truncates the torn tail of its segment and opens a new segment.
fn recover<'a>(
    wal: &'a mut Option<Wal>,
    dir: &Path,
    opts: &WalOptions,
) -> Result<&'a mut Wal, WalError> {
    let seg = match wal.take() {
        Some(w) => Some(w.current_segment()),
        None => segments(dir)?.map(|(_, last)| last),
    };
    if let Some(seg) = seg {
        let mut r = Reader::open_range(dir, Some(seg), Some(seg))?;
        loop {
            match r.next() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(WalError::Corruption {
                    segment, offset, ..
                }) => {
                    drop(r);
                    repair(dir, segment, offset)?;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(wal.insert(Wal::open(dir, opts.clone())?))
}

/// Deletes `<ULID>.tmp-for-creation` directories a crash left in the middle of a cut (the head
/// still holds their samples, so the next cut writes them again).
fn remove_unfinished_blocks(dir: &Path) -> Result<(), TsdbError> {
    let io = |source| TsdbError::CreateDir {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".tmp-for-creation") {
            tracing::warn!(dir = %entry.path().display(), "removing a block left unfinished by a crash");
            std::fs::remove_dir_all(entry.path()).map_err(io)?;
        }
    }
    Ok(())
}

/// Opens every finished block under `dir`, oldest first.
///
/// A block that does not open (corrupt or truncated files) is quarantined, not served. Returns
/// the blocks and the end of the newest quarantined block the shipper had uploaded: its samples
/// are safe in the bucket, so the WAL must not bring them back as a second, overlapping block.
/// The samples of a quarantined block never uploaded are left to WAL replay, which restores what
/// the WAL still holds.
fn open_blocks(dir: &Path) -> Result<(Vec<Arc<Block>>, Option<i64>), TsdbError> {
    let io = |source| TsdbError::CreateDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    // Blocks quarantined earlier (also those a read found damaged while running) bound replay
    // the same way when they were uploaded.
    let mut persisted_until = quarantined_uploaded_until(dir);
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(ulid) = name.to_str().and_then(|n| n.parse::<Ulid>().ok()) else {
            continue;
        };
        if !entry.path().is_dir() {
            continue;
        }
        match Block::open(&entry.path()) {
            Ok(b) => out.push(Arc::new(b)),
            Err(e @ (BlockError::Corrupt(_) | BlockError::Io { .. })) => {
                let uploaded = crate::shipper::uploaded(dir).is_ok_and(|u| u.contains(&ulid));
                if uploaded {
                    let maxt = crate::tsdb::block::read_meta(&entry.path())
                        .map(|m| m.max_time)
                        .ok();
                    persisted_until = persisted_until.max(maxt);
                }
                quarantine(dir, &entry.path(), &e.to_string())?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by_key(|b| b.meta().ulid);
    Ok((out, persisted_until))
}

/// The end of the newest block in `<dir>/quarantine/` that the shipper had uploaded.
fn quarantined_uploaded_until(dir: &Path) -> Option<i64> {
    let entries = std::fs::read_dir(dir.join("quarantine")).ok()?;
    let uploaded = crate::shipper::uploaded(dir).ok()?;
    entries
        .flatten()
        .filter(|e| {
            // `<ULID>` or `<ULID>.<n>` (the same block quarantined again).
            let name = e.file_name();
            let ulid = name.to_str().and_then(|n| n.split('.').next());
            ulid.and_then(|u| u.parse::<Ulid>().ok())
                .is_some_and(|u| uploaded.contains(&u))
        })
        .filter_map(|e| crate::tsdb::block::read_meta(&e.path()).ok())
        .map(|m| m.max_time)
        .max()
}

/// Moves a damaged block to `<dir>/quarantine/<ULID>` (kept for inspection, never served or
/// uploaded) and says so.
fn quarantine(dir: &Path, block_dir: &Path, reason: &str) -> Result<(), TsdbError> {
    let qdir = dir.join("quarantine");
    let name = block_dir.file_name().unwrap_or_default();
    let mut dest = qdir.join(name);
    let mut n = 1;
    while dest.exists() {
        dest = qdir.join(format!("{}.{n}", name.to_string_lossy()));
        n += 1;
    }
    match std::fs::create_dir_all(&qdir).and_then(|_| std::fs::rename(block_dir, &dest)) {
        Ok(()) => {}
        // Already moved by a concurrent read, or deleted by retention.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BlockError::io(block_dir, e).into()),
    }
    tracing::error!(
        block = %block_dir.display(),
        moved_to = %dest.display(),
        reason,
        "corrupt block quarantined: it is no longer served or uploaded"
    );
    metrics::counter!("ringest_tsdb_blocks_quarantined_total").increment(1);
    Ok(())
}

/// Replays `wal_dir` into `head`: the last checkpoint, then the segments after it, repairing
/// corruption in the segments at the reported offset. Samples below the head's min valid time
/// (the end of the newest block on disk) are already persisted and are skipped.
fn replay(head: &Head, wal_dir: &Path) -> Result<ReplayStats, TsdbError> {
    let mut rp = Replayer::new(head);
    if !wal_dir.exists() {
        return Ok(rp.st);
    }
    let mut first_segment = None;
    if let Some((dir, idx)) =
        last_checkpoint(wal_dir).map_err(|e| TsdbError::Checkpoint(e.to_string()))?
    {
        let mut reader = Reader::open(&dir)?;
        if let Some((segment, offset, reason)) = rp.run(&mut reader)? {
            // A checkpoint is written whole and renamed into place, so damage here is not a
            // torn tail: refuse to start rather than silently drop older series.
            return Err(TsdbError::Checkpoint(format!(
                "{} is corrupt at segment {segment} offset {offset}: {reason}",
                dir.display()
            )));
        }
        first_segment = Some(idx + 1);
    }
    if segments(wal_dir)?.is_some() {
        let mut reader = Reader::open_range(wal_dir, first_segment, None)?;
        let corrupt = rp.run(&mut reader)?;
        drop(reader);
        if let Some((segment, offset, reason)) = corrupt {
            tracing::warn!(
                dir = %wal_dir.display(),
                segment,
                offset,
                reason = %reason,
                "WAL corruption: keeping records before it, dropping the rest of segment {segment} and all later segments"
            );
            repair(wal_dir, segment, offset)?;
        }
    }
    if rp.st.samples > 0 {
        head.update_min_max_time(rp.mint, rp.maxt);
    }
    // Series whose every sample is already in a block (or that a checkpoint kept for a sample
    // that was then persisted) hold nothing: release them now.
    rp.st.series_released = head.truncate(head.min_valid_time()).series_removed as u64;
    Ok(rp.st)
}

/// State of one replay: series by ref, reused decode buffers, counts.
struct Replayer<'h> {
    head: &'h Head,
    opts: HeadOptions,
    min_valid: i64,
    samples: Vec<RefSample>,
    dense: Vec<Option<Arc<MemSeries>>>,
    sparse: HashMap<u64, Arc<MemSeries>>,
    mint: i64,
    maxt: i64,
    st: ReplayStats,
}

/// Refs are dense (one counter), so a plain vector indexed by ref finds a series without
/// hashing or locking; refs beyond this use the map.
const DENSE_REFS: u64 = 1 << 26;

impl<'h> Replayer<'h> {
    fn new(head: &'h Head) -> Self {
        Replayer {
            head,
            opts: head.options().clone(),
            min_valid: head.min_valid_time(),
            samples: Vec::with_capacity(1024),
            dense: Vec::new(),
            sparse: HashMap::new(),
            mint: i64::MAX,
            maxt: i64::MIN,
            st: ReplayStats::default(),
        }
    }

    /// Applies every record of `reader`; returns where the first corruption starts, if any.
    fn run(&mut self, reader: &mut Reader) -> Result<Option<(u64, u64, String)>, TsdbError> {
        loop {
            let start = (reader.segment(), reader.offset());
            let rec = match reader.next() {
                Ok(Some(rec)) => rec,
                Ok(None) => return Ok(None),
                Err(WalError::Corruption {
                    segment,
                    offset,
                    reason,
                }) => return Ok(Some((segment, offset, reason))),
                Err(e) => return Err(e.into()),
            };
            self.st.records += 1;
            if let Err(reason) = self.apply(rec) {
                // Repair from where this record starts (the previous record's end).
                let here = if reader.segment() == start.0 {
                    start
                } else {
                    (reader.segment(), 0)
                };
                return Ok(Some((here.0, here.1, reason)));
            }
        }
    }

    fn apply(&mut self, rec: &[u8]) -> Result<(), String> {
        match record_type(rec) {
            Some(SERIES) => {
                let mut series = Vec::new();
                decode_series_into(rec, &mut series).map_err(|e| format!("series record: {e}"))?;
                for s in series {
                    // A ref whose labels already exist under another ref becomes an alias.
                    // Records we (and Prometheus) write hold sorted, unique names: skip the sort.
                    let sorted = s.labels.windows(2).all(|w| w[0].0 < w[1].0);
                    let labels = if sorted {
                        Labels::from_sorted(s.labels.iter().copied())
                    } else {
                        Labels::from_pairs(s.labels.iter().copied())
                    };
                    let (ms, created) = self.head.create_with_ref(s.r#ref, labels);
                    ms.lock().logged = true;
                    self.st.series += u64::from(created);
                    if s.r#ref < DENSE_REFS {
                        let i = s.r#ref as usize;
                        if self.dense.len() <= i {
                            self.dense.resize(i + 1, None);
                        }
                        self.dense[i] = Some(ms);
                    } else {
                        self.sparse.insert(s.r#ref, ms);
                    }
                }
            }
            Some(SAMPLES) => {
                self.samples.clear();
                decode_samples_into(rec, &mut self.samples)
                    .map_err(|e| format!("samples record: {e}"))?;
                let samples = &self.samples;
                let mut i = 0;
                while i < samples.len() {
                    let r = samples[i].r#ref;
                    let mut j = i + 1;
                    while j < samples.len() && samples[j].r#ref == r {
                        j += 1;
                    }
                    let series = match self.dense.get(r as usize) {
                        Some(Some(ms)) => Some(ms),
                        _ => self.sparse.get(&r),
                    };
                    match series {
                        Some(ms) => {
                            let mut d = ms.lock();
                            for s in &samples[i..j] {
                                if s.t < self.min_valid {
                                    // Already in a block: cut before a crash truncated the WAL.
                                    self.st.persisted_samples += 1;
                                    continue;
                                }
                                match d.append(s.t, s.v, &self.opts) {
                                    Ok(true) => {
                                        self.st.samples += 1;
                                        self.mint = self.mint.min(s.t);
                                        self.maxt = self.maxt.max(s.t);
                                    }
                                    _ => self.st.skipped_samples += 1,
                                }
                            }
                        }
                        None => self.st.unknown_refs += (j - i) as u64,
                    }
                    i = j;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::Sample;
    use crate::tsdb::matcher::MatchType;
    use crate::tsdb::testutil::{assert_dump_eq, go_labels, parse_dump, promtool, req, TestSeries};

    const STALE: u64 = 0x7ff0000000000002;

    async fn write(db: &Db, series: &[TestSeries<'_>]) -> Result<AppendStats, AppendError> {
        let r = req(series);
        let refs: Vec<&Series> = r.series.iter().collect();
        db.append(&r, &refs).await
    }

    /// Asserts that a sample at `t` is refused as out of bounds (below the last cut).
    async fn assert_out_of_bounds(db: &Db, t: i64) {
        let late = write(
            db,
            &[(
                vec![("__name__", "up"), ("instance", "host-1")],
                vec![(t, 1.0)],
            )],
        )
        .await;
        assert!(
            matches!(&late, Err(AppendError::Conflict { stats, .. }) if stats.out_of_bounds == 1),
            "a sample at {t}: {late:?}"
        );
    }

    fn all(db: &Db) -> Vec<(String, Vec<(i64, u64)>)> {
        db.select(i64::MIN, i64::MAX, &[])
            .unwrap()
            .into_iter()
            .map(|s| {
                (
                    s.labels.to_string(),
                    s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
                )
            })
            .collect()
    }

    /// The default block range (2 h).
    const RANGE: i64 = 7_200_000;

    /// A TSDB with [`small_opts`] in a fresh directory, and the start of the range `ranges_back`
    /// ranges before now, where tests write their history.
    fn open_aligned(ranges_back: i64) -> (tempfile::TempDir, PathBuf, Db, i64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Db::open(&path, small_opts()).unwrap();
        (
            dir,
            path,
            db,
            now_ms() / RANGE * RANGE - ranges_back * RANGE,
        )
    }

    fn small_opts() -> DbOptions {
        DbOptions {
            wal_segment_size: 128 * 1024,
            ..DbOptions::default()
        }
    }

    /// Value of series `s` at step `i`: mostly ordinary floats, sometimes special ones.
    fn block_value(s: usize, i: usize) -> f64 {
        match (s * 7 + i) % 53 {
            0 => f64::from_bits(STALE),
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => -0.0,
            4 => f64::MAX,
            5 => f64::MIN_POSITIVE,
            k => (s as f64) * 1.25 + (i as f64) * 0.1 - (k as f64) / 3.0,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn head_block_dumps_exactly_the_range() {
        const SERIES: usize = 500;
        const STEPS: usize = 240; // one sample a minute over two ranges
        let (dir, _, db, base) = open_aligned(2);
        let names: Vec<String> = (0..SERIES).map(|s| format!("m{}", s % 7)).collect();
        let insts: Vec<String> = (0..SERIES).map(|s| format!("host-{s}")).collect();
        let ts = |s: usize, i: usize| base + i as i64 * 60_000 + (s % 60) as i64 * 1000;
        // Samples of the first range, as promtool prints their labels, with value bits.
        let mut want: HashMap<String, Vec<(i64, u64)>> = HashMap::new();
        let mut want_n = 0u64;
        for step0 in (0..STEPS).step_by(20) {
            let batch: Vec<TestSeries<'_>> = (0..SERIES)
                .map(|s| {
                    let labels = vec![
                        ("__name__", names[s].as_str()),
                        ("instance", insts[s].as_str()),
                        ("job", "node"),
                    ];
                    let samples = (step0..step0 + 20)
                        .map(|i| (ts(s, i), block_value(s, i)))
                        .collect();
                    (labels, samples)
                })
                .collect();
            let st = write(&db, &batch).await.unwrap();
            assert_eq!(st.samples_appended, (SERIES * 20) as u64);
            for (labels, samples) in &batch {
                let mut labels = labels.clone();
                labels.sort();
                let ls = Labels::from_pairs(labels.iter().copied());
                for &(t, v) in samples {
                    if t < base + RANGE {
                        want.entry(go_labels(&ls))
                            .or_default()
                            .push((t, v.to_bits()));
                        want_n += 1;
                    }
                }
            }
        }
        assert_eq!(want.len(), SERIES);
        assert!(db.head().min_time() < base + RANGE && db.head().max_time() >= base + RANGE);

        let bdir = dir.path().join("blocks");
        std::fs::create_dir_all(bdir.join("wal")).unwrap(); // promtool 2.42 opens it
        assert_eq!(
            db.write_head_block(&bdir, base - RANGE, base, None)
                .unwrap(),
            None,
            "no samples before the first range"
        );
        let th = ThanosMeta {
            labels: [("tenant_id".to_string(), "t1".to_string())].into(),
            source: "receive".into(),
        };
        let ulid = db
            .write_head_block(&bdir, base, base + RANGE, Some(&th))
            .unwrap()
            .expect("a block");
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(bdir.join(ulid.to_string()).join("meta.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(meta["minTime"], base);
        assert_eq!(meta["maxTime"], base + RANGE);
        assert_eq!(meta["stats"]["numSamples"], want_n);
        assert_eq!(meta["stats"]["numSeries"], SERIES as u64);

        // Dump over both ranges: the block must hold the first range only, sample for sample.
        let dump = promtool(&[
            "tsdb",
            "dump",
            &format!("--min-time={}", base - RANGE),
            &format!("--max-time={}", base + 3 * RANGE),
            bdir.to_str().unwrap(),
        ]);
        let (got, lines) = parse_dump(&dump);
        assert_eq!(lines, want_n);
        assert_dump_eq(&got, &want);
        // The head is not truncated yet: both ranges are still readable.
        let total: usize = db
            .select(i64::MIN, i64::MAX, &[])
            .unwrap()
            .iter()
            .map(|s| s.samples.len())
            .sum();
        assert_eq!(total, SERIES * STEPS);
        db.close().unwrap();
    }

    /// Copies the finished blocks of the TSDB at `db_dir` into a fresh directory and returns what
    /// `promtool tsdb dump` prints for them (head and WAL left out), parsed.
    fn dump_blocks(db_dir: &Path) -> (HashMap<String, Vec<(i64, u64)>>, u64) {
        let out = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(out.path().join("wal")).unwrap(); // promtool 2.42 opens it
        for b in open_blocks(db_dir).unwrap().0 {
            let ulid = b.meta().ulid;
            let (src, dst) = (
                db_dir.join(ulid.to_string()),
                out.path().join(ulid.to_string()),
            );
            std::fs::create_dir_all(dst.join("chunks")).unwrap();
            for f in ["meta.json", "index", "tombstones"] {
                std::fs::copy(src.join(f), dst.join(f)).unwrap();
            }
            for e in std::fs::read_dir(src.join("chunks")).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), dst.join("chunks").join(e.file_name())).unwrap();
            }
        }
        let dump = promtool(&[
            "tsdb",
            "dump",
            &format!("--min-time={}", i64::MIN / 2),
            &format!("--max-time={}", i64::MAX / 2),
            out.path().to_str().unwrap(),
        ]);
        parse_dump(&dump)
    }

    /// Everything `db` holds in its head, keyed like [`dump_blocks`].
    fn head_samples(db: &Db) -> HashMap<String, Vec<(i64, u64)>> {
        db.head()
            .select(i64::MIN, i64::MAX, &[])
            .into_iter()
            .map(|s| {
                (
                    go_labels(&s.labels),
                    s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
                )
            })
            .collect()
    }

    /// Merges per-series sample lists (blocks and head never overlap in time).
    fn union(parts: &[&HashMap<String, Vec<(i64, u64)>>]) -> HashMap<String, Vec<(i64, u64)>> {
        let mut out: HashMap<String, Vec<(i64, u64)>> = HashMap::new();
        for p in parts {
            for (k, v) in p.iter() {
                out.entry(k.clone()).or_default().extend(v);
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|x| x.0);
        }
        out
    }

    /// Writes `steps` samples a minute apart from `base` for `series` series (series `s` stops
    /// after `stop(s)` steps), returning what was written, keyed like [`dump_blocks`].
    async fn write_minutes(
        db: &Db,
        base: i64,
        steps: std::ops::Range<usize>,
        series: usize,
        stop: impl Fn(usize) -> usize,
        want: &mut HashMap<String, Vec<(i64, u64)>>,
    ) {
        let insts: Vec<String> = (0..series).map(|s| format!("host-{s}")).collect();
        for step in steps {
            let batch: Vec<TestSeries<'_>> = (0..series)
                .filter(|&s| step < stop(s))
                .map(|s| {
                    let labels = vec![("__name__", "up"), ("instance", insts[s].as_str())];
                    (
                        labels,
                        vec![(base + step as i64 * 60_000, block_value(s, step))],
                    )
                })
                .collect();
            write(db, &batch).await.unwrap();
            for (labels, samples) in &batch {
                let ls = Labels::from_pairs(labels.iter().copied());
                let e = want.entry(go_labels(&ls)).or_default();
                e.extend(samples.iter().map(|&(t, v)| (t, v.to_bits())));
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compaction_cuts_blocks_releases_head_and_truncates_wal() {
        const SERIES: usize = 200;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let opts = DbOptions {
            wal_segment_size: 32 * 1024,
            ..DbOptions::default()
        };
        let db = Db::open(&path, opts.clone()).unwrap();
        let base = now_ms() / RANGE * RANGE - 4 * RANGE;
        let mut want = HashMap::new();
        // Half of the series stop after 150 minutes: the second cut releases them.
        let stop = |s: usize| if s % 2 == 0 { 150 } else { usize::MAX };
        let mut blocks = Vec::new();
        for hour in 0..7 {
            write_minutes(
                &db,
                base,
                hour * 60..hour * 60 + 60,
                SERIES,
                stop,
                &mut want,
            )
            .await;
            let st = db.compact().unwrap();
            blocks.extend(st.blocks.clone());
            if hour == 3 {
                // 0..4h: span > 3h only once the fourth hour is in.
                assert_eq!(st.blocks.len(), 1, "{st:?}");
                assert_eq!(st.series_removed, 0);
                assert!(st.wal_segments_truncated > 0, "{st:?}");
            }
            if hour == 5 {
                assert_eq!(st.blocks.len(), 1, "{st:?}");
                assert_eq!(st.series_removed, SERIES / 2, "stopped series are released");
            }
        }
        assert_eq!(blocks.len(), 2);
        let metas = open_blocks(&path).unwrap().0;
        assert_eq!(
            metas.iter().map(|b| b.meta().max_time).collect::<Vec<_>>(),
            vec![base + RANGE, base + 2 * RANGE]
        );
        // Appends below the last cut are out of bounds now.
        assert_out_of_bounds(&db, base + 2 * RANGE - 1).await;

        let (blocks_got, _) = dump_blocks(&path);
        let head = head_samples(&db);
        assert!(head.values().flatten().all(|&(t, _)| t >= base + 2 * RANGE));
        assert_eq!(
            head.len(),
            SERIES / 2,
            "only the live series stay in the head"
        );
        assert_dump_eq(&union(&[&blocks_got, &head]), &want);
        // Reads see blocks and head as one.
        let read_all = db.select(i64::MIN, i64::MAX, &[]).unwrap();
        let read_map: HashMap<String, Vec<(i64, u64)>> = read_all
            .iter()
            .map(|s| {
                (
                    go_labels(&s.labels),
                    s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
                )
            })
            .collect();
        assert_dump_eq(&read_map, &want);
        let m = Matcher::new(MatchType::Equal, "instance", "host-3").unwrap();
        let one = db
            .select(base + RANGE - 60_000, base + RANGE + 60_000, &[m])
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(
            one[0].samples.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![base + RANGE - 60_000, base + RANGE, base + RANGE + 60_000],
            "across the cut"
        );
        assert!(last_checkpoint(&path.join("wal")).unwrap().is_some());
        db.close().unwrap();
        drop(db);

        // Restart: checkpoint + remaining segments give back exactly the head, nothing persisted.
        let db = Db::open(&path, opts).unwrap();
        assert_eq!(head_samples(&db), head);
        assert_eq!(db.head().num_series(), SERIES / 2);
        assert_out_of_bounds(&db, base + 2 * RANGE - 1).await;
        db.close().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_gap_is_skipped_not_cut_range_by_range() {
        let (_dir, path, db, base) = open_aligned(100);
        let mut want = HashMap::new();
        write_minutes(&db, base, 0..240, 10, |_| usize::MAX, &mut want).await;
        assert_eq!(db.compact().unwrap().blocks.len(), 1);
        // Five days later the same series carry on: two ranges to cut, not sixty empty ones.
        write_minutes(
            &db,
            base + 60 * RANGE,
            0..240,
            10,
            |_| usize::MAX,
            &mut want,
        )
        .await;
        let st = db.compact().unwrap();
        assert_eq!((st.blocks.len(), st.empty_ranges), (2, 0), "{st:?}");
        let mins: Vec<i64> = db.blocks().iter().map(|b| b.meta().min_time).collect();
        assert_eq!(mins, vec![base, base + RANGE, base + 60 * RANGE]);
        let (blocks_got, _) = dump_blocks(&path);
        assert_dump_eq(&union(&[&blocks_got, &head_samples(&db)]), &want);
        db.close().unwrap();
    }

    /// Flips a byte in the middle of `path`.
    fn flip_middle(path: &Path) {
        let mut b = std::fs::read(path).unwrap();
        let i = b.len() / 2;
        b[i] ^= 0xff;
        std::fs::write(path, b).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn corrupt_blocks_are_quarantined_not_served() {
        for uploaded in [false, true] {
            let (_dir, path, db, base) = open_aligned(4);
            let mut want = HashMap::new();
            write_minutes(&db, base, 0..200, 20, |_| usize::MAX, &mut want).await;
            // A cut whose WAL truncation never ran: the WAL still holds the block's samples.
            let mut st = CompactStats::default();
            db.cut_range(db.head().min_time(), base + RANGE, &mut st)
                .unwrap();
            let ulid = st.blocks[0];
            db.close().unwrap();
            drop(db);
            if uploaded {
                std::fs::write(
                    path.join("thanos.shipper.json"),
                    format!("{{\"version\": 1, \"uploaded\": [\"{ulid}\"]}}"),
                )
                .unwrap();
            }
            // Damage the index (caught when the block is opened).
            let index = path.join(ulid.to_string()).join("index");
            let len = std::fs::metadata(&index).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&index)
                .unwrap()
                .set_len(len - 10)
                .unwrap();
            let db = Db::open(&path, small_opts()).unwrap();
            assert!(db.blocks().is_empty());
            assert!(!path.join(ulid.to_string()).exists());
            assert!(path
                .join("quarantine")
                .join(ulid.to_string())
                .join("index")
                .exists());
            let got = head_samples(&db);
            let in_range = |t: i64| t < base + RANGE;
            if uploaded {
                // The bucket has the block: the WAL must not bring its samples back.
                assert!(got.values().flatten().all(|&(t, _)| !in_range(t)));
            } else {
                // Never uploaded: the WAL still had them, so nothing is lost.
                assert_dump_eq(&got, &want);
            }
            db.close().unwrap();
        }

        // Damage inside a chunk is found on read: the block is quarantined and the query answered
        // from the rest.
        let (_dir, path, db, base) = open_aligned(4);
        let mut want = HashMap::new();
        write_minutes(&db, base, 0..300, 20, |_| usize::MAX, &mut want).await;
        assert_eq!(db.compact().unwrap().blocks.len(), 1);
        let ulid = db.blocks()[0].meta().ulid;
        flip_middle(&path.join(ulid.to_string()).join("chunks").join("000001"));
        let got = db.select(i64::MIN, i64::MAX, &[]).unwrap();
        assert!(db.blocks().is_empty());
        assert!(path.join("quarantine").join(ulid.to_string()).exists());
        let n: usize = got.iter().map(|s| s.samples.len()).sum();
        assert_eq!(n, 20 * (300 - 120), "the head's samples are still served");
        db.close().unwrap();
        drop(db);
        // The block had been uploaded: after a restart the WAL must not bring its samples back
        // (they would be cut into a second block overlapping the bucket's copy).
        std::fs::write(
            path.join("thanos.shipper.json"),
            format!("{{\"version\": 1, \"uploaded\": [\"{ulid}\"]}}"),
        )
        .unwrap();
        let db = Db::open(&path, small_opts()).unwrap();
        let got = head_samples(&db);
        assert!(
            got.values().flatten().all(|&(t, _)| t >= base + RANGE),
            "samples of the quarantined, uploaded block came back from the WAL"
        );
        assert_eq!(got.values().map(Vec::len).sum::<usize>(), 20 * (300 - 120));
        db.close().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crash_between_cut_and_wal_truncation_duplicates_nothing() {
        let (_dir, path, db, base) = open_aligned(4);
        let mut want = HashMap::new();
        write_minutes(&db, base, 0..200, 50, |_| usize::MAX, &mut want).await;
        // A cut whose WAL truncation never ran, and a block a crash left half written.
        let mut st = CompactStats::default();
        db.cut_range(db.head().min_time(), base + RANGE, &mut st)
            .unwrap();
        std::fs::create_dir_all(path.join("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp-for-creation/chunks"))
            .unwrap();
        db.close().unwrap();
        drop(db);

        let db = Db::open(&path, small_opts()).unwrap();
        assert!(!path
            .join("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp-for-creation")
            .exists());
        let (blocks_got, _) = dump_blocks(&path);
        let head = head_samples(&db);
        assert!(
            head.values().flatten().all(|&(t, _)| t >= base + RANGE),
            "persisted samples were replayed into the head"
        );
        assert_dump_eq(&union(&[&blocks_got, &head]), &want);
        db.close().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flush_persists_the_whole_head_and_empties_the_wal() {
        let (_dir, path, db, base) = open_aligned(3);
        let mut want = HashMap::new();
        write_minutes(
            &db,
            base + 30 * 60_000,
            0..170,
            40,
            |_| usize::MAX,
            &mut want,
        )
        .await;
        db.close().unwrap();
        let st = db.flush().unwrap();
        // 0:30..2:00, 2:00..3:19 + 1 ms.
        assert_eq!(st.blocks.len(), 2, "{st:?}");
        let last = base + 30 * 60_000 + 169 * 60_000;
        assert_eq!(
            open_blocks(&path)
                .unwrap()
                .0
                .iter()
                .map(|b| b.meta().max_time)
                .collect::<Vec<_>>(),
            vec![base + RANGE, last + 1]
        );
        assert!(segments(&path.join("wal")).unwrap().is_none());
        assert!(last_checkpoint(&path.join("wal")).unwrap().is_none());
        let (blocks_got, _) = dump_blocks(&path);
        assert_dump_eq(&blocks_got, &want);
        drop(db);

        let db = Db::open(&path, small_opts()).unwrap();
        assert_eq!(db.head().num_series(), 0);
        assert_out_of_bounds(&db, last).await;
        write(&db, &[(vec![("__name__", "up")], vec![(last + 1, 1.0)])])
            .await
            .unwrap();
        db.close().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn compaction_beside_appends_loses_nothing() {
        // Short ranges so many cuts (and series releases) race the writers.
        const RANGE: i64 = 60_000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let opts = DbOptions {
            block_range_ms: RANGE,
            wal_segment_size: 32 * 1024,
            ..DbOptions::default()
        };
        let db = Arc::new(Db::open(&path, opts).unwrap());
        let base = now_ms() / RANGE * RANGE - 200 * RANGE;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let compactor = {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut blocks = 0;
                while !stop.load(Ordering::Relaxed) {
                    blocks += db.compact().unwrap().blocks.len();
                }
                blocks
            })
        };
        let mut writers = Vec::new();
        for w in 0..4usize {
            let db = db.clone();
            writers.push(tokio::spawn(async move {
                let mut want: HashMap<String, Vec<(i64, u64)>> = HashMap::new();
                let mut rejected = 0;
                let insts: Vec<String> = (0..20).map(|s| format!("w{w}-{s}")).collect();
                for step in 0..2000usize {
                    // Each series lives 5 ranges, then a new one takes over (churn to release).
                    let gen = step / 500;
                    let t = base + step as i64 * 5_000;
                    let series: Vec<String> = insts.iter().map(|i| format!("{i}-g{gen}")).collect();
                    let batch: Vec<TestSeries<'_>> = series
                        .iter()
                        .enumerate()
                        .map(|(s, i)| {
                            (
                                vec![("__name__", "x"), ("instance", i.as_str())],
                                vec![(t, block_value(s, step))],
                            )
                        })
                        .collect();
                    match write(&db, &batch).await {
                        Ok(_) => {
                            for (labels, samples) in &batch {
                                let ls = Labels::from_pairs(labels.iter().copied());
                                want.entry(go_labels(&ls))
                                    .or_default()
                                    .extend(samples.iter().map(|&(t, v)| (t, v.to_bits())));
                            }
                        }
                        // Another writer pushed the head ahead: some of this step is out of
                        // bounds. Only fully acknowledged requests are checked.
                        Err(AppendError::Conflict { stats, .. }) if stats.out_of_bounds > 0 => {
                            rejected += 1
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                assert!(rejected < 1000, "{rejected} of 2000 requests out of bounds");
                want
            }));
        }
        let mut want = HashMap::new();
        for w in writers {
            want.extend(w.await.unwrap());
        }
        let n: usize = want.values().map(Vec::len).sum();
        assert!(n > 80_000, "only {n} samples acknowledged");
        stop.store(true, Ordering::Relaxed);
        let cut = compactor.join().unwrap();
        assert!(cut > 20, "only {cut} blocks cut");
        db.close().unwrap();
        db.flush().unwrap();
        let (blocks_got, _) = dump_blocks(&path);
        let got = union(&[&blocks_got]);
        // Every acknowledged sample is in exactly one block.
        for (k, v) in &want {
            let g = got.get(k).unwrap_or_else(|| panic!("{k} lost"));
            for x in v {
                assert!(
                    g.binary_search_by_key(&x.0, |y| y.0).is_ok(),
                    "{k} lost sample at {}",
                    x.0
                );
            }
            assert!(
                g.windows(2).all(|w| w[0].0 < w[1].0),
                "{k} duplicated samples"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn append_rules_through_db() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), small_opts()).unwrap();
        let now = now_ms();
        let a = vec![("__name__", "a"), ("job", "x")];
        let st = write(&db, &[(a.clone(), vec![(now - 1000, 1.0), (now, 2.0)])])
            .await
            .unwrap();
        assert_eq!(st.samples_appended, 2);
        assert_eq!(st.series_created, 1);
        // Same timestamp and bits: silently accepted, nothing appended, no error.
        let st = write(&db, &[(a.clone(), vec![(now, 2.0)])]).await.unwrap();
        assert_eq!(st, AppendStats::default());
        let err = write(
            &db,
            &[(
                a.clone(),
                vec![
                    (now - 5000, 1.0),          // out of order
                    (now, 3.0),                 // duplicate
                    (now - 2 * 3_600_000, 1.0), // out of bounds (head maxT - 1h)
                    (now + 11 * 60_000, 1.0),   // too far in the future
                    (now + 1000, 4.0),          // fine
                ],
            )],
        )
        .await
        .unwrap_err();
        let AppendError::Conflict { stats, message } = err else {
            panic!("want conflict, got {err:?}");
        };
        assert_eq!(
            stats,
            AppendStats {
                samples_appended: 1,
                series_created: 0,
                out_of_order: 1,
                duplicate: 1,
                out_of_bounds: 1,
                too_far_in_future: 1,
                rejected_series: vec![(0, 4)],
            }
        );
        assert!(message.starts_with(&format!(
            "out of order sample for series {{__name__=\"a\", job=\"x\"}} at timestamp {}",
            now - 5000
        )));
        assert_eq!(
            all(&db),
            vec![(
                "{__name__=\"a\", job=\"x\"}".to_string(),
                vec![
                    (now - 1000, 1f64.to_bits()),
                    (now, 2f64.to_bits()),
                    (now + 1000, 4f64.to_bits())
                ]
            )]
        );
        let m = Matcher::new(MatchType::Regex, "job", "x|y").unwrap();
        assert_eq!(
            db.select(now, now, &[m]).unwrap()[0].samples,
            vec![(now, 2.0)]
        );
        assert_eq!(db.head().max_time(), now + 1000);

        // Rejections are listed per series, by index, whichever step found them: series 3 has
        // no sample in the window (rejected before the others are appended), 1 and 4 conflict.
        let err = write(
            &db,
            &[
                (vec![("__name__", "ok0")], vec![(now, 1.0)]),
                (
                    a.clone(),
                    vec![(now - 5000, 1.0), (now + 2000, 5.0), (now, 9.0)],
                ),
                (vec![("__name__", "ok2")], vec![(now, 1.0)]),
                (
                    vec![("__name__", "old")],
                    vec![(now - 3 * 3_600_000, 1.0), (now - 3 * 3_600_000 + 1, 1.0)],
                ),
                (a.clone(), vec![(now + 2000, 6.0)]),
            ],
        )
        .await
        .unwrap_err();
        let AppendError::Conflict { stats, .. } = err else {
            panic!("want conflict, got {err:?}");
        };
        assert_eq!(stats.rejected_series, vec![(1, 2), (3, 2), (4, 1)]);
        assert_eq!(stats.samples_appended, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn first_sample_seeds_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), small_opts()).unwrap();
        let now = now_ms();
        let err = write(
            &db,
            &[
                (vec![("__name__", "a")], vec![(now, 1.0)]),
                (vec![("__name__", "b")], vec![(now - 3_700_000, 1.0)]),
            ],
        )
        .await
        .unwrap_err();
        let AppendError::Conflict { stats, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!((stats.samples_appended, stats.out_of_bounds), (1, 1));
        // A series none of whose samples can be stored is not created.
        assert_eq!((stats.series_created, db.head().num_series()), (1, 1));
        let err = write(
            &db,
            &[(vec![("__name__", "f")], vec![(now + 3_600_000, 1.0)])],
        )
        .await
        .unwrap_err();
        let AppendError::Conflict { stats, message } = err else {
            panic!("{err:?}")
        };
        assert_eq!((stats.too_far_in_future, db.head().num_series()), (1, 1));
        assert!(message.starts_with("too far in the future for series {__name__=\"f\"}"));

        // The empty head's sentinel timestamp never seeds or enters a head.
        let fresh = tempfile::tempdir().unwrap();
        let db2 = Db::open(fresh.path(), small_opts()).unwrap();
        let err = write(&db2, &[(vec![("__name__", "m")], vec![(i64::MIN, 1.0)])])
            .await
            .unwrap_err();
        let AppendError::Conflict { stats, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!((stats.out_of_bounds, db2.head().num_series()), (1, 0));
        assert!(!db2.head().initialized());
        write(&db2, &[(vec![("__name__", "m")], vec![(now, 1.0)])])
            .await
            .unwrap();
        assert!(!db2.compactable());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replay_restores_acked_samples_and_refs() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let stale = f64::from_bits(STALE);
        let (before, ref_a, next_ref) = {
            let db = Db::open(dir.path(), small_opts()).unwrap();
            for i in 0..300i64 {
                let v = if i % 50 == 49 { stale } else { i as f64 * 0.5 };
                let t = now - 300_000 + i * 1000;
                write(
                    &db,
                    &[
                        (vec![("__name__", "a"), ("i", "1")], vec![(t, v)]),
                        (vec![("__name__", "b")], vec![(t, -v)]),
                    ],
                )
                .await
                .unwrap();
            }
            let ms = db.head().series_by_ref(1).unwrap();
            (all(&db), ms.labels.clone(), db.head().next_ref())
        };
        assert_eq!(before[0].1.len(), 300);
        assert!(before[0].1.iter().any(|&(_, b)| b == STALE));
        let db = Db::open(dir.path(), small_opts()).unwrap();
        assert_eq!(all(&db), before);
        assert_eq!(db.head().series_by_ref(1).unwrap().labels, ref_a);
        assert_eq!(db.head().next_ref(), next_ref);
        // New samples continue the same series; a new series gets a fresh ref.
        let st = write(
            &db,
            &[
                (vec![("__name__", "a"), ("i", "1")], vec![(now + 1, 7.0)]),
                (vec![("__name__", "c")], vec![(now + 1, 7.0)]),
            ],
        )
        .await
        .unwrap();
        assert_eq!(st.series_created, 1);
        assert_eq!(db.head().num_series(), 3);
        assert!(db.head().series_by_ref(next_ref).is_some());
        db.close().unwrap();
        drop(db);
        let db = Db::open(dir.path(), small_opts()).unwrap();
        let after = all(&db);
        assert_eq!(after[0].1.len(), 301);
        assert_eq!(after.len(), 3);
        assert_eq!(
            db.head()
                .series_by_ref(next_ref)
                .unwrap()
                .labels
                .get("__name__"),
            Some("c")
        );
    }

    /// Length of a segment without its zero padding.
    fn content_len(path: &Path) -> u64 {
        let b = std::fs::read(path).unwrap();
        b.iter().rposition(|&x| x != 0).map_or(0, |p| p as u64 + 1)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replay_after_torn_tail_keeps_earlier_samples() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let before = {
            let db = Db::open(dir.path(), small_opts()).unwrap();
            for i in 0..200i64 {
                write(
                    &db,
                    &[(
                        vec![("__name__", "a")],
                        vec![(now - 200_000 + i * 1000, i as f64)],
                    )],
                )
                .await
                .unwrap();
            }
            let before = all(&db);
            write(&db, &[(vec![("__name__", "a")], vec![(now + 5, 1e300)])])
                .await
                .unwrap();
            before
        };
        let wal = dir.path().join("wal");
        let (_, last) = segments(&wal).unwrap().unwrap();
        let mut seg = last;
        while content_len(&crate::tsdb::wlog::segment_path(&wal, seg)) == 0 {
            seg -= 1;
        }
        let p = crate::tsdb::wlog::segment_path(&wal, seg);
        let len = content_len(&p);
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len - 3).unwrap();
        drop(f);
        let db = Db::open(dir.path(), small_opts()).unwrap();
        assert_eq!(all(&db), before);
        // The repaired WAL takes new appends and replays again.
        write(&db, &[(vec![("__name__", "a")], vec![(now + 10, 2.0)])])
            .await
            .unwrap();
        drop(db);
        let db = Db::open(dir.path(), small_opts()).unwrap();
        let got = all(&db);
        assert_eq!(got[0].1.len(), 201);
        assert_eq!(got[0].1.last(), Some(&(now + 10, 2f64.to_bits())));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_lose_and_duplicate_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path(), small_opts()).unwrap());
        let base = now_ms() - 600_000;
        const TASKS: i64 = 8;
        const N: i64 = 60;
        let mut handles = Vec::new();
        for task in 0..TASKS {
            let db = db.clone();
            handles.push(tokio::spawn(async move {
                let own = format!("own{task}");
                let mut accepted_shared = Vec::new();
                for k in 0..N {
                    let t = base + k * TASKS + task;
                    // Own series: always in order. Shared series: races with other tasks.
                    let r = write(
                        &db,
                        &[
                            (vec![("__name__", own.as_str())], vec![(t, k as f64)]),
                            (vec![("__name__", "shared")], vec![(t, task as f64)]),
                        ],
                    )
                    .await;
                    match r {
                        Ok(st) => {
                            assert_eq!(st.samples_appended, 2);
                            accepted_shared.push((t, (task as f64).to_bits()));
                        }
                        Err(AppendError::Conflict { stats, .. }) => {
                            assert_eq!((stats.samples_appended, stats.out_of_order), (1, 1));
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                accepted_shared
            }));
        }
        let mut shared = Vec::new();
        for h in handles {
            shared.extend(h.await.unwrap());
        }
        shared.sort();
        let got = all(&db);
        assert_eq!(got.len(), TASKS as usize + 1);
        for (name, samples) in &got {
            if name.contains("shared") {
                assert_eq!(samples, &shared);
            } else {
                assert_eq!(samples.len(), N as usize);
            }
        }
        drop(db);
        let db = Db::open(dir.path(), small_opts()).unwrap();
        assert_eq!(all(&db), got);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn group_commit_shares_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let db =
            Arc::new(Db::open_inner(dir.path(), small_opts(), Duration::from_millis(30)).unwrap());
        let now = now_ms();
        const N: usize = 32;
        let barrier = Arc::new(tokio::sync::Barrier::new(N));
        let mut hs = Vec::new();
        for i in 0..N {
            let (db, barrier) = (db.clone(), barrier.clone());
            hs.push(tokio::spawn(async move {
                let name = format!("s{i}");
                barrier.wait().await;
                write(
                    &db,
                    &[(vec![("__name__", name.as_str())], vec![(now, 1.0)])],
                )
                .await
                .unwrap();
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
        let n = db.fsync_count();
        assert!(n >= 1 && n < N as u64 / 2, "{n} fsyncs for {N} appends");
        assert_eq!(db.head().num_series(), N);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wal_failure_then_recovery_keeps_head_and_wal_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let a = || vec![("__name__", "a")];
        let b = || vec![("__name__", "b")];
        let got = {
            let db = Db::open(dir.path(), small_opts()).unwrap();
            write(&db, &[(a(), vec![(now - 10, 1.0)])]).await.unwrap();
            db.shared.fail_next.store(true, Ordering::Relaxed);
            // The batch fails: nothing acknowledged.
            let e = write(
                &db,
                &[(a(), vec![(now - 5, 2.0)]), (b(), vec![(now - 5, 2.0)])],
            )
            .await
            .unwrap_err();
            assert!(matches!(e, AppendError::Wal { .. }), "{e:?}");
            // The next call fails fast while broken, and triggers recovery.
            let mut tries = 0;
            let st = loop {
                match write(
                    &db,
                    &[(a(), vec![(now - 5, 2.0)]), (b(), vec![(now - 5, 2.0)])],
                )
                .await
                {
                    Ok(st) => break st,
                    Err(AppendError::Wal { .. }) if tries < 100 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => panic!("{e:?}"),
                }
            };
            // The retry is silently accepted: the failed samples were kept and re-logged.
            assert_eq!(st, AppendStats::default());
            write(
                &db,
                &[
                    (a(), vec![(now, 3.0)]),
                    (vec![("__name__", "c")], vec![(now, 3.0)]),
                ],
            )
            .await
            .unwrap();
            all(&db)
        };
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1.len(), 3);
        let db = Db::open(dir.path(), small_opts()).unwrap();
        assert_eq!(all(&db), got);
    }

    #[test]
    fn db_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Db>();
        check::<Head>();
    }

    fn rss_bytes() -> usize {
        let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        s.split_whitespace()
            .nth(1)
            .and_then(|x| x.parse::<usize>().ok())
            .unwrap_or(0)
            * 4096
    }

    /// Not a test: `cargo test --release -p ringest tsdb::db::tests::bench -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "benchmark"]
    async fn bench_append_replay_memory() {
        const SERIES: usize = 100_000;
        const ROUNDS: i64 = 50;
        const PER_REQ: usize = 2_000;
        let dir = tempfile::tempdir().unwrap();
        // Leaked so requests borrowing them can move into spawned tasks (benchmark only).
        let names: &'static [String] =
            Vec::leak((0..SERIES).map(|i| format!("pod-{i:07}")).collect());
        let base = now_ms() - 3_000_000;
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        // Requests are built once; each round only rewrites their timestamps and values.
        let mut reqs: Vec<WriteRequest<'static>> = names
            .chunks(PER_REQ)
            .map(|chunk| {
                let series: Vec<TestSeries<'_>> = chunk
                    .iter()
                    .map(|n| {
                        (
                            vec![
                                ("__name__", "http_requests_total"),
                                ("cluster", "prod-eu-1"),
                                ("instance", n.as_str()),
                                ("job", "kubernetes-pods"),
                                ("namespace", "default"),
                                ("pod", n.as_str()),
                            ],
                            vec![(0, 0.0)],
                        )
                    })
                    .collect();
                req(&series)
            })
            .collect();
        let rss0 = rss_bytes();
        let mut busy = Duration::ZERO;
        for round in 0..ROUNDS {
            for r in reqs.iter_mut() {
                for s in r.samples.iter_mut() {
                    s.timestamp = base + round * 15_000;
                    s.value = (round * 7) as f64;
                }
                let refs: Vec<&Series> = r.series.iter().collect();
                let t0 = Instant::now();
                db.append(r, &refs).await.unwrap();
                busy += t0.elapsed();
            }
        }
        let started = Instant::now() - busy;
        let secs = started.elapsed().as_secs_f64();
        let total = SERIES as f64 * ROUNDS as f64;
        println!(
            "append: {:.0} samples/s, {} fsyncs, rss {:.0} bytes/series",
            total / secs,
            db.fsync_count(),
            (rss_bytes() - rss0) as f64 / SERIES as f64
        );
        drop(db);
        let rss1 = rss_bytes();
        let started = Instant::now();
        let db = Db::open(dir.path(), DbOptions::default()).unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "replay: {:.0} samples/s ({:.2}s), rss {:.0} bytes/series after replay",
            total / secs,
            secs,
            (rss_bytes().saturating_sub(rss1)) as f64 / SERIES as f64
        );
        assert_eq!(db.head().num_series(), SERIES);

        // Concurrent writers on the replayed head: group commit shares fsyncs between them.
        let db = Arc::new(db);
        let fsyncs0 = db.fsync_count();
        let reqs = Arc::new(reqs);
        const WRITERS: usize = 4;
        let started = Instant::now();
        let mut hs = Vec::new();
        for w in 0..WRITERS {
            let (db, reqs) = (db.clone(), reqs.clone());
            hs.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                // Reuse the requests: each writer owns every WRITERS-th one, new timestamps.
                for round in ROUNDS..ROUNDS + 10 {
                    for r in reqs.iter().skip(w).step_by(WRITERS) {
                        let mut r2 = WriteRequest {
                            labels: r.labels.clone(),
                            series: r.series.clone(),
                            ..WriteRequest::default()
                        };
                        r2.samples = r
                            .samples
                            .iter()
                            .map(|_| Sample {
                                timestamp: base + round * 15_000,
                                value: round as f64,
                            })
                            .collect();
                        let refs: Vec<&Series> = r2.series.iter().collect();
                        let t0 = Instant::now();
                        db.append(&r2, &refs).await.unwrap();
                        lat.push(t0.elapsed());
                    }
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for h in hs {
            lat.extend(h.await.unwrap());
        }
        let secs = started.elapsed().as_secs_f64();
        lat.sort();
        println!(
            "concurrent ({WRITERS} writers): {:.0} samples/s, {} appends, {} fsyncs, p50 {:?}, p99 {:?}",
            (SERIES * 10) as f64 / secs,
            lat.len(),
            db.fsync_count() - fsyncs0,
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]
        #[test]
        fn prop_replay_equals_acknowledged(reqs in proptest::collection::vec(
            proptest::collection::vec((0usize..3, 0i64..40, 0u8..3), 1..6), 1..12)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let base = now_ms() - 100_000;
                let names = ["x", "y", "z"];
                let before = {
                    let db = Db::open(dir.path(), small_opts()).unwrap();
                    let mut model: Vec<Vec<(i64, u64)>> = vec![Vec::new(); 3];
                    for r in &reqs {
                        let series: Vec<_> = r
                            .iter()
                            .map(|&(s, t, v)| (vec![("__name__", names[s])], vec![(base + t, v as f64)]))
                            .collect();
                        let _ = write(&db, &series).await;
                        for &(s, t, v) in r {
                            let (t, v) = (base + t, (v as f64).to_bits());
                            let m = &mut model[s];
                            if m.last().is_none_or(|&(lt, _)| t > lt) {
                                m.push((t, v));
                            }
                        }
                    }
                    let got = all(&db);
                    let want: Vec<_> = model
                        .iter()
                        .enumerate()
                        .filter(|(_, m)| !m.is_empty())
                        .map(|(i, m)| (format!("{{__name__=\"{}\"}}", names[i]), m.clone()))
                        .collect();
                    assert_eq!(got, want);
                    got
                };
                let db = Db::open(dir.path(), small_opts()).unwrap();
                assert_eq!(all(&db), before);
            });
        }
    }
}
