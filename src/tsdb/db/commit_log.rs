//! The group-commit WAL: one thread owns the [`Wal`], writes what appends queue, and tells them
//! when it is durable.
//!
//! # Group commit
//!
//! 1. Outside any global lock, each series of the request is hashed once and found or created
//!    in the striped head; the appendable window (`max(headMaxT - range/2, minValidTime)`) and the
//!    future bound (`now + too_far_in_future`) are fixed once per request, as Prometheus fixes
//!    them when it creates an appender.
//! 2. Under the short *commit lock* ([`CommitLog::begin`]) the request's samples are checked and
//!    applied to the head, and the accepted ones are encoded into a Samples record (preceded by a
//!    Series record for every series whose Series record has not been queued yet). The records go
//!    into an in-memory queue ([`Commit::enqueue`]); the request remembers the sequence number of
//!    the last queued record ([`Commit::finish`]).
//! 3. A dedicated WAL thread owns the [`Wal`]: it takes the whole queue at once, writes it, calls
//!    `sync` (fdatasync), and publishes the synced sequence through a `tokio::sync::watch`.
//!    Requests that queued while an fsync was running share the next one (group commit).
//! 4. The request awaits `synced >= its sequence` ([`CommitLog::wait_durable`]), then answers
//!    `Ok` or `Conflict`.
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
//! acknowledged) and the log turns *broken*: new commits fail fast without touching the head.
//! On the next commit after at least [`RECOVERY_INTERVAL`] the thread tries to recover: it
//! drops the writer, truncates a torn tail of the segment it was writing if one is left
//! ([`repair`]; the writer undoes failed writes itself, but not after a failed fsync or a failed
//! undo), opens a fresh segment, re-logs every unsynced record and fsyncs. From then on the
//! samples of the failed requests are in the head and durable, so a client's retry is silently
//! accepted as same-bits duplicates, and new samples append normally. Re-logged records may
//! repeat records that did reach the old segment; replay ignores the repeats (same ref and
//! labels, or same-bits duplicates / older samples).

use crate::tsdb::db::{AppendError, TsdbError};
use crate::tsdb::wlog::{repair, segments, Reader, Wal, WalError, WalOptions};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Minimum time between two recovery attempts of a broken WAL (each opens a new segment).
pub const RECOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// Position of a queued record in the log (records are numbered from 1; 0 is "nothing").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seq(u64);

/// What the WAL thread has made durable, published to waiting appends.
#[derive(Clone, Debug, Default)]
struct SyncState {
    /// Every record with a sequence `<=` this is fsynced.
    synced: u64,
    /// Every record with a sequence `<=` this (and `> synced`) was part of a failed batch.
    failed: u64,
    /// The last failure.
    error: Option<Arc<WalError>>,
}

/// State behind the commit lock, shared with the WAL thread.
#[derive(Default)]
struct CommitState {
    /// Encoded records in apply order, not yet taken by the WAL thread.
    queue: Vec<Vec<u8>>,
    /// Sequence of the last queued record.
    last_seq: u64,
    /// Set while the WAL is failed and not yet recovered.
    broken: Option<Arc<WalError>>,
    /// A commit asked the broken WAL thread to try recovering.
    poke: bool,
    /// Set by `close`: the thread drains the queue and exits.
    closing: bool,
    /// Result of the final `Wal::close`.
    close_result: Option<Result<(), TsdbError>>,
    /// Record buffers returned by the WAL thread for reuse.
    pool: Vec<Vec<u8>>,
    /// Segment cuts asked for by WAL truncation (a counter) and how many the thread has done.
    cut_requested: u64,
    cut_done: u64,
}

/// Shared between the log's handle and its WAL thread.
struct Shared {
    state: Mutex<CommitState>,
    cv: Condvar,
    /// Signalled when the WAL thread has cut a segment or exited.
    cut_cv: Condvar,
    sync_tx: watch::Sender<SyncState>,
    fsyncs: AtomicU64,
    /// Minimum time between recovery attempts ([`RECOVERY_INTERVAL`]; shorter in tests).
    recovery_interval: Duration,
    /// Test hook: milliseconds to sleep before each fsync so concurrent appends pile up.
    #[cfg(test)]
    sync_delay_ms: AtomicU64,
    /// Test hook: make the next batch fail after tearing its last record on disk.
    #[cfg(test)]
    fail_next: std::sync::atomic::AtomicBool,
}

/// The group-commit write-ahead log of one TSDB: the commit lock, the WAL thread and its queue.
pub struct CommitLog {
    dir: PathBuf,
    shared: Arc<Shared>,
    sync_rx: watch::Receiver<SyncState>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The commit lock, held while a commit applies samples to the head and queues their records:
/// WAL order is apply order. Dropping it (or [`Commit::finish`]) wakes the WAL thread if
/// records were queued.
pub struct Commit<'a> {
    st: MutexGuard<'a, CommitState>,
    shared: &'a Shared,
    queued: bool,
}

impl Commit<'_> {
    /// An empty record buffer, reused from records the WAL thread has written.
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut buf = self.st.pool.pop().unwrap_or_default();
        buf.clear();
        buf
    }

    /// Queues one encoded record for the WAL thread; returns its sequence.
    pub fn enqueue(&mut self, record: Vec<u8>) -> Seq {
        self.st.queue.push(record);
        self.st.last_seq += 1;
        self.queued = true;
        Seq(self.st.last_seq)
    }

    /// Sequence of the last record queued by any commit so far.
    pub fn last_seq(&self) -> Seq {
        Seq(self.st.last_seq)
    }

    /// Releases the lock and wakes the WAL thread; returns the sequence the caller must see
    /// durable (the last queued, so samples deduplicated against in-flight ones are covered).
    pub fn finish(self) -> Seq {
        self.last_seq()
    }
}

impl Drop for Commit<'_> {
    fn drop(&mut self) {
        if self.queued {
            // parking_lot moves the woken thread straight onto the mutex, which this guard
            // releases right after: notifying under the lock costs no extra wake-up.
            self.shared.cv.notify_one();
        }
    }
}

impl CommitLog {
    /// Starts the WAL thread on `wal` (opened on `dir` with `opts`, which recovery reuses).
    pub fn start(wal: Wal, dir: PathBuf, opts: WalOptions) -> Result<CommitLog, TsdbError> {
        let (sync_tx, sync_rx) = watch::channel(SyncState::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(CommitState::default()),
            cv: Condvar::new(),
            cut_cv: Condvar::new(),
            sync_tx,
            fsyncs: AtomicU64::new(0),
            recovery_interval: if cfg!(test) {
                Duration::ZERO
            } else {
                RECOVERY_INTERVAL
            },
            #[cfg(test)]
            sync_delay_ms: AtomicU64::new(0),
            #[cfg(test)]
            fail_next: std::sync::atomic::AtomicBool::new(false),
        });
        let sh = shared.clone();
        let thread_dir = dir.clone();
        let thread = std::thread::Builder::new()
            .name("ringest-wal".into())
            .spawn(move || wal_thread(wal, thread_dir, opts, sh))
            .map_err(TsdbError::SpawnThread)?;
        Ok(CommitLog {
            dir,
            shared,
            sync_rx,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Takes the commit lock to queue records: fails fast, touching nothing, when the log is
    /// closed or broken (a broken log is then asked to try recovering).
    pub fn begin(&self) -> Result<Commit<'_>, AppendError> {
        let mut st = self.shared.state.lock();
        if st.closing {
            return Err(AppendError::Closed("tsdb is closed"));
        }
        if let Some(source) = st.broken.clone() {
            st.poke = true;
            drop(st);
            self.shared.cv.notify_one();
            return Err(AppendError::Wal { source });
        }
        Ok(Commit {
            st,
            shared: &self.shared,
            queued: false,
        })
    }

    /// Takes the commit lock without queueing: a cut orders itself against commits with it.
    pub fn lock(&self) -> Commit<'_> {
        Commit {
            st: self.shared.state.lock(),
            shared: &self.shared,
            queued: false,
        }
    }

    /// Waits until every record up to `seq` is fsynced; [`AppendError::Wal`] if the batch
    /// holding it failed (the records stay queued for recovery), [`AppendError::Closed`] if the
    /// thread is gone.
    pub async fn wait_durable(&self, seq: Seq) -> Result<(), AppendError> {
        let target = seq.0;
        let mut rx = self.sync_rx.clone();
        let st = rx
            .wait_for(|s| s.synced >= target || s.failed >= target)
            .await
            .map_err(|_| AppendError::Closed("wal writer thread is gone"))?;
        match &st.error {
            _ if st.synced >= target => Ok(()),
            Some(source) => Err(AppendError::Wal {
                source: source.clone(),
            }),
            // `failed` is only ever raised together with `error`.
            None => Err(AppendError::Closed("wal write failed")),
        }
    }

    /// Number of fsyncs done so far (group commit makes this smaller than the commits).
    pub fn fsync_count(&self) -> u64 {
        self.shared.fsyncs.load(Ordering::Relaxed)
    }

    /// Asks the WAL thread to start a new segment and waits until it has (or exited).
    pub fn cut_segment(&self) {
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

    /// Flushes and fsyncs everything queued, stops the WAL thread. Later commits fail.
    pub fn close(&self) -> Result<(), TsdbError> {
        let Some(handle) = self.thread.lock().take() else {
            return Ok(());
        };
        self.shared.state.lock().closing = true;
        self.shared.cv.notify_all();
        handle.join().map_err(|_| TsdbError::ThreadPanicked)?;
        self.shared
            .state
            .lock()
            .close_result
            .take()
            .unwrap_or(Ok(()))
    }

    /// Test hook: sleep this long before each fsync, so concurrent commits pile up.
    #[cfg(test)]
    pub(crate) fn set_sync_delay(&self, d: Duration) {
        self.shared
            .sync_delay_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Test hook: the next batch tears its last record on disk and fails, as a full disk would.
    #[cfg(test)]
    pub(crate) fn fail_next_batch(&self) {
        self.shared.fail_next.store(true, Ordering::Relaxed);
    }
}

impl Drop for CommitLog {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "closing the WAL failed");
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
        #[cfg(test)]
        {
            let ms = sh.sync_delay_ms.load(Ordering::Relaxed);
            if ms > 0 {
                std::thread::sleep(Duration::from_millis(ms));
            }
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
                Some(w) => write_batch(w, &unsynced[first_new..], &sh),
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
                let e = Arc::new(e);
                tracing::error!(dir = %dir.display(), error = %e, "WAL write failed; appends fail until it recovers");
                metrics::counter!("ringest_wal_failures_total").increment(1);
                broken = true;
                sh.state.lock().broken = Some(e.clone());
                sh.sync_tx.send_modify(|s| {
                    s.failed = s.failed.max(target);
                    s.error = Some(e);
                });
            }
        }
        serve_cut(wal.as_mut().filter(|_| !broken), &mut cut_done, &sh, &dir);
        if closing && sh.state.lock().queue.is_empty() {
            let r = match wal.take() {
                Some(w) if !broken => w.close().map_err(TsdbError::Wal),
                _ if unsynced.is_empty() => Ok(()),
                _ => Err(TsdbError::Unwritten {
                    records: unsynced.len(),
                }),
            };
            sh.state.lock().close_result = Some(r);
            sh.cut_cv.notify_all();
            return;
        }
    }
}

/// Writes and fsyncs one batch of new records.
#[cfg(not(test))]
fn write_batch(w: &mut Wal, recs: &[Vec<u8>], _sh: &Shared) -> Result<(), WalError> {
    w.log(recs).and_then(|_| w.sync())
}

/// Writes and fsyncs one batch of new records, or tears it when a test asked for a failure.
#[cfg(test)]
fn write_batch(w: &mut Wal, recs: &[Vec<u8>], sh: &Shared) -> Result<(), WalError> {
    if sh.fail_next.swap(false, Ordering::Relaxed) {
        return tear_for_test(w, recs);
    }
    w.log(recs).and_then(|_| w.sync())
}

/// Test hook: writes `recs`, then cuts the segment inside the last record, then fails, which
/// is what a write that ran out of disk space mid-record leaves behind.
#[cfg(test)]
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
