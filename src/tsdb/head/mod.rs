//! The in-memory head: series, their XOR chunks, and postings for reads.
//!
//! Series are found two ways, each sharded into stripes with their own lock so appends to
//! different series never meet on one lock: by label hash (xxhash64 as Prometheus
//! `labels.Hash`; true collisions go to a small side map) and by series ref. Refs come from one
//! atomic counter, so they are unique and increase with creation time; replay restores them.
//! Each series keeps its closed chunks as compact byte slices plus one open [`XorChunk`].
//! Postings (name → value hash → sorted refs) live in the hash stripe that owns the series, so
//! creating a series takes exactly one stripe write lock; a select visits every stripe.
//!
//! The append rules are Prometheus's head appender with the out-of-order window at 0, checked in
//! this order: too far in the future, out of bounds (`t < max(headMaxT - chunkRange/2,
//! minValidTime)`), then against the series' last sample: older is out of order, same timestamp
//! with different value bits is a duplicate, same timestamp and bits is silently accepted.
//! Chunk cutting follows `memSeries.appendPreprocessor`. The hash stripes, their postings and
//! the hashers they use live in `stripe.rs`.

use crate::tsdb::chunkenc::{iter_bytes, XorChunk};
use crate::tsdb::labels::{packed_hash, Labels};
use crate::tsdb::matcher::{MatchType, Matcher};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

mod stripe;

use stripe::{value_hash, HashStripe};
pub use stripe::{IdHasher, IdMap, NameHasher};

/// Prometheus `chunkenc.MaxBytesPerXORChunk - 19`: a chunk larger than this is cut before appending.
pub const MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND: usize = 1024 - 19;

/// Tunables of the head.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// Block range in ms; chunks never cross a multiple of it and it bounds the append window.
    pub chunk_range: i64,
    /// Target samples per chunk (Prometheus default 120).
    pub samples_per_chunk: usize,
    /// Number of lock stripes (rounded up to a power of two).
    pub stripes: usize,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            chunk_range: 7_200_000,
            samples_per_chunk: 120,
            stripes: 256,
        }
    }
}

/// Why one sample was not appended (messages as Prometheus's storage errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Older than the series' last sample.
    #[error("out of order sample")]
    OutOfOrder,
    /// Same timestamp as the last sample, different value bits.
    #[error("duplicate sample for timestamp")]
    Duplicate,
    /// Older than the head's appendable window.
    #[error("out of bounds")]
    OutOfBounds,
    /// Newer than now plus the allowed future window.
    #[error("too far in the future")]
    TooFarInFuture,
}

/// One series' samples in a time range, as returned by [`Head::select`].
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSamples {
    /// The series' labels.
    pub labels: Labels,
    /// Samples with `mint <= t <= maxt`, in time order.
    pub samples: Vec<(i64, f64)>,
}

/// A closed chunk kept as exact-size bytes (no spare capacity, no encoder state).
struct ClosedChunk {
    mint: i64,
    maxt: i64,
    data: Box<[u8]>,
}

/// The open chunk of a series.
struct HeadChunk {
    chunk: XorChunk,
    mint: i64,
    maxt: i64,
}

/// Mutable state of a series, behind its own lock.
pub struct SeriesData {
    closed: Vec<ClosedChunk>,
    head: Option<HeadChunk>,
    next_at: i64,
    /// Whether this series' Series record has been handed to the WAL.
    pub logged: bool,
    /// Set by [`Head::truncate`] when the series was garbage-collected: an append that resolved
    /// it earlier must look its labels up again instead of writing into a detached series.
    pub removed: bool,
}

/// One series in the head.
pub struct MemSeries {
    /// Stable series ref, also used in WAL records.
    pub r#ref: u64,
    /// The series' labels.
    pub labels: Labels,
    data: Mutex<SeriesData>,
}

impl MemSeries {
    fn new(r#ref: u64, labels: Labels) -> MemSeries {
        MemSeries {
            r#ref,
            labels,
            data: Mutex::new(SeriesData {
                closed: Vec::new(),
                head: None,
                next_at: i64::MIN,
                logged: false,
                removed: false,
            }),
        }
    }

    /// Locks the series' samples for appending or reading.
    pub fn lock(&self) -> parking_lot::MutexGuard<'_, SeriesData> {
        self.data.lock()
    }

    /// Copies of this series' chunks (closed and open) whose first sample is in `[mint, maxt)`.
    ///
    /// Chunks never cross a multiple of the chunk range, so for `[mint, maxt)` on range
    /// boundaries this is exactly the series' samples of that block range. Bytes are copied
    /// under the series' lock (borrowing would hold the lock while a block is written).
    pub fn chunks_in_range(&self, mint: i64, maxt: i64) -> Vec<OwnedChunk> {
        self.data.lock().chunks_in_range(mint, maxt)
    }
}

/// Prometheus `rangeForTimestamp`: end of the block range containing `t` (Go division).
pub fn range_for_timestamp(t: i64, width: i64) -> i64 {
    (t / width) * width + width
}

/// Prometheus `computeChunkEndTime`: spread the rest of the range over equally sized chunks.
fn compute_chunk_end_time(start: i64, cur: i64, max_t: i64, ratio_to_full: f64) -> i64 {
    let n = (max_t - start) as f64 / ((cur - start + 1) as f64 * ratio_to_full);
    if n <= 1.0 {
        return max_t;
    }
    (start as f64 + (max_t - start) as f64 / n.floor()) as i64
}

impl SeriesData {
    /// Checks a sample against the series' last sample: `Ok(true)` append, `Ok(false)` silent duplicate.
    pub fn check(&self, t: i64, v: f64) -> Result<bool, Rejection> {
        // The open chunk always holds the newest sample: a chunk is cut only to append to it.
        let Some(c) = &self.head else {
            return Ok(true);
        };
        let (last_t, last_v) = (c.maxt, c.chunk.last_value().unwrap_or(0.0));
        if t > last_t {
            Ok(true)
        } else if t == last_t {
            if last_v.to_bits() == v.to_bits() {
                Ok(false)
            } else {
                Err(Rejection::Duplicate)
            }
        } else if self.holds(t, v) {
            // An older sample stored with these very bits: a retry of a request whose samples
            // were kept although it failed (WAL trouble, a timeout), so accept it silently.
            Ok(false)
        } else {
            Err(Rejection::OutOfOrder)
        }
    }

    /// Whether the series holds a sample at `t` with the bits of `v` (decodes the one chunk
    /// covering `t`; only reached for out-of-order samples).
    fn holds(&self, t: i64, v: f64) -> bool {
        let same = |(ts, x): (i64, f64)| ts == t && x.to_bits() == v.to_bits();
        if let Some(h) = self.head.as_ref().filter(|h| h.mint <= t && t <= h.maxt) {
            return h.chunk.iter().take_while(|s| s.0 <= t).any(same);
        }
        self.closed
            .iter()
            .find(|c| c.mint <= t && t <= c.maxt)
            .is_some_and(|c| iter_bytes(&c.data).take_while(|s| s.0 <= t).any(same))
    }

    /// Checks and appends one sample; `Ok(true)` when stored, `Ok(false)` when a silent duplicate.
    pub fn append(&mut self, t: i64, v: f64, opts: &HeadOptions) -> Result<bool, Rejection> {
        if !self.check(t, v)? {
            return Ok(false);
        }
        self.append_unchecked(t, v, opts);
        Ok(true)
    }

    /// Appends an in-order sample, cutting chunks like `memSeries.appendPreprocessor`.
    fn append_unchecked(&mut self, t: i64, v: f64, o: &HeadOptions) {
        let mut created = false;
        if self.head.is_none() {
            self.cut(t, o.chunk_range);
            created = true;
        }
        if !created && self.head_bytes() > MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND {
            self.cut(t, o.chunk_range);
        }
        let (n, mint, maxt) = {
            let c = self.head.as_ref().expect("head chunk exists");
            (c.chunk.num_samples() as usize, c.mint, c.maxt)
        };
        if n == o.samples_per_chunk / 4 {
            self.next_at = compute_chunk_end_time(mint, maxt, self.next_at, 4.0);
        }
        if n > 0 && (t >= self.next_at || n >= o.samples_per_chunk * 2) {
            self.cut(t, o.chunk_range);
        }
        let c = self.head.as_mut().expect("head chunk exists");
        c.chunk.append(t, v);
        c.maxt = t;
    }

    fn head_bytes(&self) -> usize {
        self.head.as_ref().map_or(0, |c| c.chunk.bytes().len())
    }

    /// Closes the open chunk (if any) and opens a new one starting at `mint`.
    fn cut(&mut self, mint: i64, chunk_range: i64) {
        if let Some(c) = self.head.take() {
            if c.chunk.num_samples() > 0 {
                self.closed.push(ClosedChunk {
                    mint: c.mint,
                    maxt: c.maxt,
                    data: c.chunk.bytes().into(),
                });
            }
        }
        self.head = Some(HeadChunk {
            chunk: XorChunk::new(),
            mint,
            maxt: i64::MIN,
        });
        self.next_at = range_for_timestamp(mint, chunk_range);
    }

    /// Drops every chunk whose last sample is before `mint`; returns how many were dropped.
    fn truncate_chunks_before(&mut self, mint: i64) -> usize {
        let before = self.closed.len();
        self.closed.retain(|c| c.maxt >= mint);
        let mut dropped = before - self.closed.len();
        if dropped > 0 {
            self.closed.shrink_to_fit();
        }
        if self.head.as_ref().is_some_and(|c| c.maxt < mint) {
            // The open chunk is in the persisted range too (an empty one has maxt MIN).
            if self.head.take().is_some_and(|c| c.chunk.num_samples() > 0) {
                dropped += 1;
            }
        }
        dropped
    }

    /// Timestamp of the oldest sample, if any.
    fn first_timestamp(&self) -> Option<i64> {
        match (self.closed.first(), &self.head) {
            (Some(c), _) => Some(c.mint),
            (None, Some(h)) if h.chunk.num_samples() > 0 => Some(h.mint),
            _ => None,
        }
    }

    /// Whether the series holds no sample.
    fn is_empty(&self) -> bool {
        self.closed.is_empty()
            && self
                .head
                .as_ref()
                .is_none_or(|c| c.chunk.num_samples() == 0)
    }

    /// Number of chunks (closed and open).
    pub fn num_chunks(&self) -> usize {
        self.closed.len() + usize::from(self.head.is_some())
    }

    /// `(mint, maxt, samples, bytes)` of every chunk, oldest first (for tests and metrics).
    pub fn chunk_stats(&self) -> Vec<(i64, i64, usize, usize)> {
        let mut out: Vec<_> = self
            .closed
            .iter()
            .map(|c| {
                let n = u16::from_be_bytes([c.data[0], c.data[1]]) as usize;
                (c.mint, c.maxt, n, c.data.len())
            })
            .collect();
        if let Some(c) = &self.head {
            out.push((
                c.mint,
                c.maxt,
                c.chunk.num_samples() as usize,
                c.chunk.bytes().len(),
            ));
        }
        out
    }

    /// Copies of the non-empty chunks (closed and open) whose first sample is in `[mint, maxt)`.
    fn chunks_in_range(&self, mint: i64, maxt: i64) -> Vec<OwnedChunk> {
        let inr = |t: i64| t >= mint && t < maxt;
        let mut out: Vec<OwnedChunk> = self
            .closed
            .iter()
            .filter(|c| inr(c.mint))
            .map(|c| OwnedChunk {
                mint: c.mint,
                maxt: c.maxt,
                data: c.data.to_vec(),
            })
            .collect();
        if let Some(c) = &self.head {
            if c.chunk.num_samples() > 0 && inr(c.mint) {
                out.push(OwnedChunk {
                    mint: c.mint,
                    maxt: c.maxt,
                    data: c.chunk.bytes().to_vec(),
                });
            }
        }
        out
    }

    /// Whether a non-empty chunk (closed or open) overlaps `[mint, maxt]`.
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.closed.iter().any(|c| c.maxt >= mint && c.mint <= maxt)
            || self
                .head
                .as_ref()
                .is_some_and(|c| c.chunk.num_samples() > 0 && c.maxt >= mint && c.mint <= maxt)
    }

    /// Pushes copies of the non-empty chunks overlapping `[mint, maxt]` onto `out`, oldest
    /// first, untrimmed (the Store API sends chunks as stored). The open chunk's bytes are a
    /// valid chunk as they are: its header counts the samples appended so far.
    pub fn chunks_overlapping(&self, mint: i64, maxt: i64, out: &mut Vec<OwnedChunk>) {
        for c in &self.closed {
            if c.maxt >= mint && c.mint <= maxt {
                out.push(OwnedChunk {
                    mint: c.mint,
                    maxt: c.maxt,
                    data: c.data.to_vec(),
                });
            }
        }
        if let Some(c) = &self.head {
            if c.chunk.num_samples() > 0 && c.maxt >= mint && c.mint <= maxt {
                out.push(OwnedChunk {
                    mint: c.mint,
                    maxt: c.maxt,
                    data: c.chunk.bytes().to_vec(),
                });
            }
        }
    }

    /// Pushes the samples with `mint <= t <= maxt` onto `out`.
    fn collect(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        let keep = |(t, _): &(i64, f64)| *t >= mint && *t <= maxt;
        for c in &self.closed {
            if c.maxt < mint || c.mint > maxt {
                continue;
            }
            out.extend(iter_bytes(&c.data).filter(keep));
        }
        if let Some(c) = &self.head {
            if c.maxt >= mint && c.mint <= maxt {
                out.extend(c.chunk.iter().filter(keep));
            }
        }
    }
}

/// Series of one ref stripe, by ref.
type RefStripe = IdMap<Arc<MemSeries>>;

/// The in-memory head of one tenant's TSDB.
pub struct Head {
    opts: HeadOptions,
    mask: usize,
    by_hash: Box<[RwLock<HashStripe>]>,
    by_ref: Box<[RwLock<RefStripe>]>,
    next_ref: AtomicU64,
    num_series: AtomicUsize,
    min_time: AtomicI64,
    max_time: AtomicI64,
    min_valid_time: AtomicI64,
}

impl Head {
    /// An empty head.
    pub fn new(opts: HeadOptions) -> Head {
        let n = opts.stripes.max(1).next_power_of_two();
        Head {
            opts,
            mask: n - 1,
            by_hash: (0..n).map(|_| RwLock::default()).collect(),
            by_ref: (0..n).map(|_| RwLock::default()).collect(),
            next_ref: AtomicU64::new(1),
            num_series: AtomicUsize::new(0),
            min_time: AtomicI64::new(i64::MAX),
            max_time: AtomicI64::new(i64::MIN),
            min_valid_time: AtomicI64::new(i64::MIN),
        }
    }

    /// The head's options.
    pub fn options(&self) -> &HeadOptions {
        &self.opts
    }

    /// Number of series in the head.
    pub fn num_series(&self) -> usize {
        self.num_series.load(Ordering::Relaxed)
    }

    /// Lowest sample timestamp in the head (`i64::MAX` when empty).
    pub fn min_time(&self) -> i64 {
        self.min_time.load(Ordering::Acquire)
    }

    /// Highest sample timestamp in the head (`i64::MIN` when empty).
    pub fn max_time(&self) -> i64 {
        self.max_time.load(Ordering::Acquire)
    }

    /// Raises the floor below which nothing may be appended (end of the last persisted block).
    pub fn set_min_valid_time(&self, t: i64) {
        self.min_valid_time.fetch_max(t, Ordering::AcqRel);
    }

    /// The floor below which nothing may be appended.
    pub fn min_valid_time(&self) -> i64 {
        self.min_valid_time.load(Ordering::Acquire)
    }

    /// Sets the head's min time after a truncation found nothing older (`i64::MAX`: empty).
    /// Only safe while no append can lower it concurrently (the caller holds the commit lock
    /// and knows no commit ran since the scan began).
    pub fn reset_min_time(&self, t: i64) {
        self.min_time.store(t, Ordering::Release);
    }

    /// The ref the next created series gets.
    pub fn next_ref(&self) -> u64 {
        self.next_ref.load(Ordering::Relaxed)
    }

    /// Prometheus `initTime`: the first appended timestamp seeds an empty head's time range.
    pub fn init_time(&self, t: i64) {
        if self
            .max_time
            .compare_exchange(i64::MIN, t, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let _ =
                self.min_time
                    .compare_exchange(i64::MAX, t, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Whether any time range is known yet.
    pub fn initialized(&self) -> bool {
        self.max_time() != i64::MIN
    }

    /// Prometheus `appendableMinValidTime`: `max(maxT - chunkRange/2, minValidTime)`.
    ///
    /// Never below `i64::MIN + 1`: `i64::MIN` is the empty head's sentinel, so a sample there
    /// would leave the head looking empty and then be cut into a block dated at the start of time
    /// (Prometheus refuses it too: its subtraction overflows).
    pub fn appendable_min_valid_time(&self) -> i64 {
        let cw_end = self.max_time().saturating_sub(self.opts.chunk_range / 2);
        cw_end
            .max(self.min_valid_time.load(Ordering::Acquire))
            .max(i64::MIN + 1)
    }

    /// Widens the head's time range to include `[mint, maxt]`.
    pub fn update_min_max_time(&self, mint: i64, maxt: i64) {
        self.min_time.fetch_min(mint, Ordering::AcqRel);
        self.max_time.fetch_max(maxt, Ordering::AcqRel);
    }

    /// The series with this ref.
    pub fn series_by_ref(&self, r#ref: u64) -> Option<Arc<MemSeries>> {
        self.by_ref[(r#ref as usize) & self.mask]
            .read()
            .get(&r#ref)
            .cloned()
    }

    /// Whether a series with this packed label set (and its hash) is in the head.
    pub fn contains(&self, hash: u64, packed: &str) -> bool {
        self.by_hash[(hash as usize) & self.mask]
            .read()
            .find(hash, packed)
            .is_some()
    }

    /// Finds the series with these sorted pairs, or creates it; `true` when created.
    ///
    /// `packed` is the label set as [`crate::tsdb::labels::pack_pairs`] writes it and `hash` its
    /// [`packed_hash`] (callers hash once and reuse it).
    pub fn get_or_create(&self, hash: u64, packed: &str) -> (Arc<MemSeries>, bool) {
        let stripe = &self.by_hash[(hash as usize) & self.mask];
        if let Some(s) = stripe.read().find(hash, packed) {
            return (s.clone(), false);
        }
        let mut w = stripe.write();
        if let Some(s) = w.find(hash, packed) {
            return (s.clone(), false);
        }
        // Taken under the stripe lock so refs within a stripe are created in increasing order.
        let r = self.next_ref.fetch_add(1, Ordering::Relaxed);
        let s = Arc::new(MemSeries::new(r, Labels::from_packed(packed)));
        self.insert_locked(&mut w, hash, s.clone());
        (s, true)
    }

    /// Recreates a series with a given ref during WAL replay; returns the existing series when
    /// the labels are already present (then under its original ref).
    pub fn create_with_ref(&self, r#ref: u64, labels: Labels) -> (Arc<MemSeries>, bool) {
        let hash = packed_hash(labels.packed());
        let stripe = &self.by_hash[(hash as usize) & self.mask];
        let mut w = stripe.write();
        // Bumped for aliases too, so no future series can be given a ref the WAL already used.
        self.next_ref.fetch_max(r#ref + 1, Ordering::Relaxed);
        if let Some(s) = w.find(hash, labels.packed()) {
            return (s.clone(), false);
        }
        let s = Arc::new(MemSeries::new(r#ref, labels));
        self.insert_locked(&mut w, hash, s.clone());
        (s, true)
    }

    fn insert_locked(&self, stripe: &mut HashStripe, hash: u64, s: Arc<MemSeries>) {
        self.by_ref[(s.r#ref as usize) & self.mask]
            .write()
            .insert(s.r#ref, s.clone());
        stripe.insert(hash, s);
        self.num_series.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends one sample under the full rule set (future and bounds first, then series order).
    ///
    /// `min_valid` comes from [`Head::appendable_min_valid_time`] taken once per request, and
    /// `max_t` is the newest acceptable timestamp. Does not update the head's time range.
    pub fn append_sample(
        &self,
        data: &mut SeriesData,
        t: i64,
        v: f64,
        min_valid: i64,
        max_t: i64,
    ) -> Result<bool, Rejection> {
        if t > max_t {
            return Err(Rejection::TooFarInFuture);
        }
        if t < min_valid {
            return Err(Rejection::OutOfBounds);
        }
        data.append(t, v, &self.opts)
    }

    /// Samples in `[mint, maxt]` of every series matching all `matchers`, sorted by labels.
    pub fn select(&self, mint: i64, maxt: i64, matchers: &[Matcher]) -> Vec<SeriesSamples> {
        let mut series = self.matching(matchers);
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            let mut samples = Vec::new();
            s.lock().collect(mint, maxt, &mut samples);
            if !samples.is_empty() {
                out.push(SeriesSamples {
                    labels: s.labels.clone(),
                    samples,
                });
            }
        }
        out
    }

    /// Every series matching all `matchers` (a missing label matches as `""`), in no order.
    pub fn matching(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let ok = |s: &MemSeries| {
            matchers
                .iter()
                .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
        };
        let mut series: Vec<Arc<MemSeries>> = Vec::new();
        for stripe in self.by_hash.iter() {
            let st = stripe.read();
            match candidates(&st, matchers) {
                Some(refs) => {
                    for r in refs {
                        let s = self.by_ref[(r as usize) & self.mask]
                            .read()
                            .get(&r)
                            .cloned();
                        if let Some(s) = s.filter(|s| ok(s)) {
                            series.push(s);
                        }
                    }
                }
                None => series.extend(st.all().filter(|s| ok(s)).cloned()),
            }
        }
        series
    }

    /// Prometheus `truncateMemory` + `gc`: drops every chunk ending before `mint` (the end of the
    /// block just persisted) and removes the series left without samples, with their postings.
    ///
    /// The caller has raised the min valid time to at least `mint` first, so no append can add
    /// a sample below it meanwhile. Appends run concurrently: chunks are dropped under each
    /// series' lock, and a series is removed only while holding its hash stripe's write lock and
    /// its own lock, after re-checking it is still empty; it is marked `removed` so an append
    /// that resolved it before looks it up again (see `Db::commit`).
    pub fn truncate(&self, mint: i64) -> TruncateStats {
        let mut stats = TruncateStats::default();
        self.min_time.fetch_max(mint, Ordering::AcqRel);
        let mut empty = Vec::new();
        for stripe in self.by_ref.iter() {
            let series: Vec<Arc<MemSeries>> = stripe.read().values().cloned().collect();
            for s in series {
                let mut d = s.lock();
                stats.chunks_removed += d.truncate_chunks_before(mint);
                if d.is_empty() {
                    drop(d);
                    empty.push(s);
                } else if let Some(t) = d.first_timestamp() {
                    stats.min_time = Some(stats.min_time.map_or(t, |m| m.min(t)));
                }
            }
        }
        for s in empty {
            let hash = packed_hash(s.labels.packed());
            let mut w = self.by_hash[(hash as usize) & self.mask].write();
            // try_lock: appends lock a series before its stripe when re-resolving, never wait.
            let Some(mut d) = s.data.try_lock() else {
                continue;
            };
            if d.removed || !d.is_empty() {
                continue;
            }
            if w.remove(hash, &s) {
                d.removed = true;
                self.by_ref[(s.r#ref as usize) & self.mask]
                    .write()
                    .remove(&s.r#ref);
                self.num_series.fetch_sub(1, Ordering::Relaxed);
                stats.series_removed += 1;
            }
        }
        stats
    }

    /// Every series in the head (a snapshot of the refs; series created later are not in it).
    pub fn all_series(&self) -> Vec<Arc<MemSeries>> {
        let mut out = Vec::with_capacity(self.num_series());
        for stripe in self.by_ref.iter() {
            out.extend(stripe.read().values().cloned());
        }
        out
    }
}

/// What [`Head::truncate`] released.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TruncateStats {
    /// Chunks dropped.
    pub chunks_removed: usize,
    /// Series removed (no sample left).
    pub series_removed: usize,
    /// Oldest sample left in the series scanned (`None`: none left).
    pub min_time: Option<i64>,
}

/// A copy of one XOR chunk: first and last (inclusive) sample timestamps and its bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedChunk {
    /// Timestamp of the first sample.
    pub mint: i64,
    /// Timestamp of the last sample (inclusive).
    pub maxt: i64,
    /// XOR chunk bytes.
    pub data: Vec<u8>,
}

/// Refs in a stripe that may match: the intersection of the postings of every non-empty
/// equality matcher, or `None` (scan the stripe) when there is none. Value hashes may collide,
/// so the caller re-checks every matcher.
fn candidates(st: &HashStripe, matchers: &[Matcher]) -> Option<Vec<u64>> {
    let mut acc: Option<Vec<u64>> = None;
    for m in matchers {
        if m.kind != MatchType::Equal || m.value.is_empty() {
            continue;
        }
        let list = st
            .postings
            .get(m.name.as_str())
            .and_then(|values| values.get(&value_hash(&m.value)))
            .map_or(&[][..], |l| l.as_slice());
        let refs = match acc {
            Some(prev) => intersect(&prev, list),
            None => list.to_vec(),
        };
        if refs.is_empty() {
            return Some(refs);
        }
        acc = Some(refs);
    }
    acc
}

/// Sorted intersection of two sorted lists (postings of the head and of blocks).
pub(crate) fn intersect<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::labels::pack_pairs;

    const H: i64 = 3_600_000;

    fn series(head: &Head, pairs: &[(&str, &str)]) -> Arc<MemSeries> {
        let mut packed = String::new();
        pack_pairs(pairs.iter().copied(), &mut packed);
        head.get_or_create(packed_hash(&packed), &packed).0
    }

    fn m(k: MatchType, n: &str, v: &str) -> Matcher {
        Matcher::new(k, n, v).unwrap()
    }

    #[test]
    fn append_rules() {
        let head = Head::new(HeadOptions::default());
        let s = series(&head, &[("__name__", "a")]);
        let mut d = s.lock();
        let (lo, hi) = (i64::MIN, 10_000);
        assert_eq!(head.append_sample(&mut d, 1000, 1.0, lo, hi), Ok(true));
        assert_eq!(
            head.append_sample(&mut d, 999, 1.0, lo, hi),
            Err(Rejection::OutOfOrder)
        );
        assert_eq!(head.append_sample(&mut d, 1000, 1.0, lo, hi), Ok(false));
        assert_eq!(
            head.append_sample(&mut d, 1000, 2.0, lo, hi),
            Err(Rejection::Duplicate)
        );
        // A retried older sample: silent when it is stored with the same bits, else out of order.
        assert_eq!(head.append_sample(&mut d, 1001, 1.5, lo, hi), Ok(true));
        assert_eq!(head.append_sample(&mut d, 1000, 1.0, lo, hi), Ok(false));
        assert_eq!(
            head.append_sample(&mut d, 1000, 1.25, lo, hi),
            Err(Rejection::OutOfOrder)
        );
        assert_eq!(
            head.append_sample(&mut d, 10_001, 2.0, lo, hi),
            Err(Rejection::TooFarInFuture)
        );
        // Out of bounds wins over out of order.
        assert_eq!(
            head.append_sample(&mut d, 5, 2.0, 100, hi),
            Err(Rejection::OutOfBounds)
        );
        let stale = f64::from_bits(0x7ff0000000000002);
        assert_eq!(head.append_sample(&mut d, 2000, stale, lo, hi), Ok(true));
        assert_eq!(head.append_sample(&mut d, 2000, stale, lo, hi), Ok(false));
        assert_eq!(
            head.append_sample(&mut d, 2000, f64::NAN, lo, hi),
            Err(Rejection::Duplicate)
        );
        drop(d);
        let got = head.select(i64::MIN, i64::MAX, &[]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples[..2], [(1000, 1.0), (1001, 1.5)]);
        assert_eq!(got[0].samples[2].1.to_bits(), 0x7ff0000000000002);
    }

    #[test]
    fn truncate_releases_chunks_series_and_postings() {
        let head = Head::new(HeadOptions::default());
        let (lo, hi) = (i64::MIN, i64::MAX);
        // `old` only has samples in the first range; `live` in both.
        let old = series(&head, &[("__name__", "a"), ("job", "old")]);
        let live = series(&head, &[("__name__", "a"), ("job", "live")]);
        for i in 0..300 {
            let t = i * 60_000; // 0 .. 5h
            if t < 2 * H {
                head.append_sample(&mut old.lock(), t, 1.0, lo, hi).unwrap();
            }
            head.append_sample(&mut live.lock(), t, 2.0, lo, hi)
                .unwrap();
        }
        head.update_min_max_time(0, 299 * 60_000);
        let chunks_before = old.lock().num_chunks() + live.lock().num_chunks();

        let st = head.truncate(2 * H);
        assert_eq!(st.series_removed, 1);
        assert_eq!(st.chunks_removed, chunks_before - live.lock().num_chunks());
        assert_eq!(head.num_series(), 1);
        assert_eq!(head.min_time(), 2 * H);
        assert!(old.lock().removed && !live.lock().removed);
        assert!(head.series_by_ref(old.r#ref).is_none());
        // Postings of the removed series are gone; the shared `__name__` keeps `live`.
        let by_job = |v: &str| head.select(lo, hi, &[m(MatchType::Equal, "job", v)]);
        assert!(by_job("old").is_empty());
        let all = head.select(lo, hi, &[m(MatchType::Equal, "__name__", "a")]);
        assert_eq!(all.len(), 1);
        assert!(all[0].samples.iter().all(|&(t, _)| t >= 2 * H));
        assert_eq!(all[0].samples.len(), 300 - 120);
        // The same labels come back as a new series under a new ref.
        let again = series(&head, &[("__name__", "a"), ("job", "old")]);
        assert!(again.r#ref > live.r#ref && !again.lock().removed);
        assert_eq!(head.num_series(), 2);
        // Truncating again releases nothing more than the new, empty series.
        assert_eq!(head.truncate(2 * H).series_removed, 1);
    }

    #[test]
    fn min_valid_time_follows_head_max() {
        let head = Head::new(HeadOptions::default());
        assert!(!head.initialized());
        head.init_time(10 * H);
        assert_eq!(head.appendable_min_valid_time(), 9 * H);
        head.update_min_max_time(10 * H, 12 * H);
        assert_eq!(head.appendable_min_valid_time(), 11 * H);
        head.set_min_valid_time(11 * H + 5);
        assert_eq!(head.appendable_min_valid_time(), 11 * H + 5);
        assert_eq!((head.min_time(), head.max_time()), (10 * H, 12 * H));
    }

    #[test]
    fn chunks_cut_at_120_samples() {
        let head = Head::new(HeadOptions::default());
        let s = series(&head, &[("__name__", "a")]);
        let mut d = s.lock();
        for i in 0..480 {
            d.append(i * 15_000, 1.0, head.options()).unwrap();
        }
        let st = d.chunk_stats();
        assert_eq!(st.len(), 4, "{st:?}");
        for c in &st {
            assert_eq!(c.2, 120, "{st:?}");
        }
        assert_eq!(st[1].0, 120 * 15_000);
    }

    #[test]
    fn chunks_cut_above_1005_bytes() {
        let head = Head::new(HeadOptions::default());
        let s = series(&head, &[("__name__", "a")]);
        let mut d = s.lock();
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut t = 0;
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Jittered timestamps and random value bits: about 10 bytes per sample.
            t += 1000 + (x % 1000) as i64;
            d.append(t, f64::from_bits(x), head.options()).unwrap();
        }
        let st = d.chunk_stats();
        assert!(st.len() > 8, "{st:?}");
        for c in &st[..st.len() - 1] {
            assert!(
                c.3 > MAX_BYTES_PER_XOR_CHUNK_BEFORE_APPEND && c.3 <= 1024,
                "{st:?}"
            );
            assert!(c.2 < 120, "{st:?}");
        }
    }

    #[test]
    fn chunks_never_cross_block_range() {
        let head = Head::new(HeadOptions::default());
        let s = series(&head, &[("__name__", "a")]);
        let mut d = s.lock();
        let range = head.options().chunk_range;
        let mut t = 2 * range - 45 * 60_000;
        while t < 2 * range + 45 * 60_000 {
            d.append(t, 1.0, head.options()).unwrap();
            t += 60_000;
        }
        let st = d.chunk_stats();
        for c in &st {
            assert_eq!(c.0.div_euclid(range), c.1.div_euclid(range), "{st:?}");
        }
        assert!(st.iter().any(|c| c.0 == 2 * range), "{st:?}");
        assert_eq!(st.iter().map(|c| c.2).sum::<usize>(), 90);
    }

    #[test]
    fn chunks_in_range_split_at_range_boundaries() {
        let head = Head::new(HeadOptions::default());
        let range = head.options().chunk_range;
        let a = series(&head, &[("__name__", "a")]);
        let b = series(&head, &[("__name__", "b")]);
        // a: 15 s samples over two ranges (closed chunks in both, open chunk in the second);
        // b: samples in the second range only.
        let mut want_a = Vec::new();
        let mut t = range;
        while t < 3 * range {
            a.lock().append(t, t as f64, head.options()).unwrap();
            want_a.push((t, t as f64));
            t += 15_000;
        }
        b.lock().append(2 * range + 5, 1.0, head.options()).unwrap();
        let samples = |cs: &[OwnedChunk]| -> Vec<(i64, f64)> {
            cs.iter().flat_map(|c| iter_bytes(&c.data)).collect()
        };
        let first = a.chunks_in_range(range, 2 * range);
        assert!(first.len() > 1);
        assert!(b.chunks_in_range(range, 2 * range).is_empty());
        let (lo, hi) = want_a.split_at(want_a.len() / 2);
        assert_eq!(samples(&first), lo);
        for c in &first {
            assert!(c.mint >= range && c.maxt < 2 * range, "{c:?}");
            let s: Vec<_> = iter_bytes(&c.data).collect();
            assert_eq!((s[0].0, s[s.len() - 1].0), (c.mint, c.maxt));
        }
        let second = a.chunks_in_range(2 * range, 3 * range);
        // The open head chunk is included.
        assert_eq!(second.last().unwrap().maxt, want_a.last().unwrap().0);
        assert_eq!(samples(&second), hi);
        assert_eq!(
            samples(&b.chunks_in_range(2 * range, 3 * range)),
            vec![(2 * range + 5, 1.0)]
        );
        assert!(a.chunks_in_range(0, range).is_empty());
        assert_eq!(head.all_series().len(), 2);
    }

    #[test]
    fn refs_increase_and_lookup_by_ref() {
        let head = Head::new(HeadOptions::default());
        let a = series(&head, &[("__name__", "a")]);
        let b = series(&head, &[("__name__", "b")]);
        let a2 = series(&head, &[("__name__", "a")]);
        assert!(b.r#ref > a.r#ref);
        assert_eq!(a.r#ref, a2.r#ref);
        assert_eq!(head.num_series(), 2);
        assert_eq!(head.series_by_ref(b.r#ref).unwrap().labels, b.labels);
        let (c, created) = head.create_with_ref(100, Labels::from_pairs([("__name__", "c")]));
        assert!(created && c.r#ref == 100 && head.next_ref() == 101);
    }

    #[test]
    fn hash_collisions_keep_series_apart() {
        let head = Head::new(HeadOptions::default());
        let x = [("__name__", "x")];
        let y = [("__name__", "y")];
        // Force the same hash for two different label sets.
        let (mut px, mut py) = (String::new(), String::new());
        pack_pairs(x.iter().copied(), &mut px);
        pack_pairs(y.iter().copied(), &mut py);
        let (a, ca) = head.get_or_create(42, &px);
        let (b, cb) = head.get_or_create(42, &py);
        assert!(ca && cb && a.r#ref != b.r#ref);
        assert_eq!(head.get_or_create(42, &py).0.r#ref, b.r#ref);
        assert_eq!(head.get_or_create(42, &px).0.r#ref, a.r#ref);
        a.lock().append(1, 1.0, head.options()).unwrap();
        b.lock().append(1, 2.0, head.options()).unwrap();
        let got = head.select(0, 10, &[m(MatchType::Equal, "__name__", "y")]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples, vec![(1, 2.0)]);
    }

    #[test]
    fn select_matchers() {
        let head = Head::new(HeadOptions::default());
        let sets: [&[(&str, &str)]; 4] = [
            &[("__name__", "up"), ("job", "api")],
            &[("__name__", "up"), ("job", "web")],
            &[("__name__", "up"), ("job", "api-2"), ("zone", "a")],
            &[("__name__", "down")],
        ];
        for (i, l) in sets.iter().enumerate() {
            let s = series(&head, l);
            let mut d = s.lock();
            for t in 0..10 {
                d.append(t * 10, i as f64, head.options()).unwrap();
            }
        }
        let names = |ms: &[Matcher]| -> Vec<String> {
            head.select(0, 100, ms)
                .into_iter()
                .map(|s| s.labels.to_string())
                .collect()
        };
        let eq = m(MatchType::Equal, "__name__", "up");
        assert_eq!(names(std::slice::from_ref(&eq)).len(), 3);
        assert_eq!(
            names(&[eq.clone(), m(MatchType::Equal, "job", "api")]),
            vec!["{__name__=\"up\", job=\"api\"}"]
        );
        assert_eq!(
            names(&[eq.clone(), m(MatchType::NotEqual, "job", "api")]),
            vec![
                "{__name__=\"up\", job=\"api-2\", zone=\"a\"}",
                "{__name__=\"up\", job=\"web\"}"
            ]
        );
        // Anchored: "api" does not match "api-2".
        assert_eq!(names(&[m(MatchType::Regex, "job", "api")]).len(), 1);
        assert_eq!(names(&[m(MatchType::Regex, "job", "api.*")]).len(), 2);
        assert_eq!(names(&[m(MatchType::Regex, "job", "pi")]).len(), 0);
        assert_eq!(
            names(&[eq.clone(), m(MatchType::NotRegex, "job", "api.*")]).len(),
            1
        );
        // Missing label equals "".
        assert_eq!(
            names(&[m(MatchType::Equal, "zone", "")]),
            vec![
                "{__name__=\"down\"}",
                "{__name__=\"up\", job=\"api\"}",
                "{__name__=\"up\", job=\"web\"}"
            ]
        );
        assert_eq!(names(&[m(MatchType::NotEqual, "zone", "")]).len(), 1);
        assert_eq!(names(&[m(MatchType::Regex, "job", "|web")]).len(), 2);
        assert_eq!(names(&[m(MatchType::NotRegex, "job", ".+")]).len(), 1);
        assert_eq!(names(&[]).len(), 4);
        // Time range is inclusive on both ends.
        let got = head.select(20, 40, &[m(MatchType::Equal, "__name__", "down")]);
        assert_eq!(got[0].samples, vec![(20, 3.0), (30, 3.0), (40, 3.0)]);
    }

    proptest::proptest! {
        #[test]
        fn prop_append_matches_model(ops in proptest::collection::vec((0i64..400, 0u8..3), 1..400)) {
            let head = Head::new(HeadOptions { chunk_range: 1000, samples_per_chunk: 8, stripes: 4 });
            let s = series(&head, &[("__name__", "p")]);
            let mut model: Vec<(i64, f64)> = Vec::new();
            for (t, v) in ops {
                let v = v as f64;
                let got = s.lock().append(t, v, head.options());
                let want = match model.last() {
                    None => Ok(true),
                    Some(&(lt, _)) if t > lt => Ok(true),
                    Some(&(lt, lv)) if t == lt && lv.to_bits() == v.to_bits() => Ok(false),
                    Some(&(lt, _)) if t == lt => Err(Rejection::Duplicate),
                    // An older sample already stored with the same bits is a silent duplicate.
                    _ if model.iter().any(|&(mt, mv)| mt == t && mv.to_bits() == v.to_bits()) => {
                        Ok(false)
                    }
                    _ => Err(Rejection::OutOfOrder),
                };
                proptest::prop_assert_eq!(got, want);
                if want == Ok(true) {
                    model.push((t, v));
                }
            }
            let got = head.select(i64::MIN, i64::MAX, &[]);
            proptest::prop_assert_eq!(&got[0].samples, &model);
            for c in s.lock().chunk_stats() {
                proptest::prop_assert_eq!(c.0.div_euclid(1000), c.1.div_euclid(1000));
                proptest::prop_assert!(c.2 <= 16);
            }
        }
    }
}
