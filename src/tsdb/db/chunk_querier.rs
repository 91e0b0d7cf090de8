//! Chunk-level reads of [`Db`] (Prometheus `ChunkQuerier`): the matching series are found at
//! once (labels and chunk references only), their chunk bytes are read later, one series at a
//! time, so a reader can stream a large answer in bounded memory.
//!
//! Chunks are handed out as stored (never re-encoded or trimmed to the range): the Store API
//! sends them untouched. While a querier is alive, a cut waits before releasing head chunks the
//! querier may still read (Prometheus `WaitForPendingReadersInTimeRange`), so a series listed
//! from the head cannot lose its chunks between listing and reading.

use super::{Db, TsdbError};
use crate::tsdb::block::BlockError;
use crate::tsdb::head::{MemSeries, OwnedChunk};
use crate::tsdb::index::IndexChunk;
use crate::tsdb::labels::Labels;
use crate::tsdb::matcher::Matcher;
use crate::tsdb::querier::Block;
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a cut waits for queries still reading the head range it releases; past this it goes
/// on (logging a warning), so a client that stopped reading cannot pin the head's memory.
const READER_WAIT_LIMIT: Duration = Duration::from_secs(120);

/// Queries currently reading the head, by id, with the lowest time each reads.
#[derive(Default)]
pub(super) struct PendingReaders {
    active: Mutex<(u64, BTreeMap<u64, i64>)>,
    left: Condvar,
}

impl PendingReaders {
    fn register(self: &Arc<Self>, mint: i64) -> ReaderGuard {
        let mut g = self.active.lock();
        g.0 += 1;
        let id = g.0;
        g.1.insert(id, mint);
        ReaderGuard {
            readers: self.clone(),
            id,
        }
    }

    /// Waits until no query reads below `t` (at most [`READER_WAIT_LIMIT`]).
    pub(super) fn wait_below(&self, t: i64) {
        let deadline = Instant::now() + READER_WAIT_LIMIT;
        let mut g = self.active.lock();
        while g.1.values().any(|&m| m < t) {
            if self.left.wait_until(&mut g, deadline).timed_out() {
                tracing::warn!(
                    readers = g.1.values().filter(|&&m| m < t).count(),
                    truncate_below = t,
                    "head truncation stopped waiting for queries still reading; they may miss chunks"
                );
                return;
            }
        }
    }
}

/// Registration of one query; dropping it lets waiting cuts go on.
struct ReaderGuard {
    readers: Arc<PendingReaders>,
    id: u64,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.readers.active.lock().1.remove(&self.id);
        self.readers.left.notify_all();
    }
}

/// Where one series' chunks are.
enum Part {
    Block(Arc<Block>, Vec<IndexChunk>),
    Head(Arc<MemSeries>),
}

/// One series found by a [`ChunkQuerier`]: its labels and where its chunks are.
pub struct ChunkSeries {
    /// The series' labels.
    pub labels: Labels,
    /// The first place its chunks are (inline: most series live in one place only).
    first: Part,
    /// Further places, oldest first, the head last.
    more: Vec<Part>,
}

/// A chunk as stored: XOR bytes (2-byte sample count, then the bit stream), no framing.
pub type StoredChunk = OwnedChunk;

/// Prometheus `chunkenc.EncXOR`, the only encoding stored so far.
pub const ENCODING_XOR: u8 = 1;

/// The series of one TSDB matching a query, sorted by labels, and the means to read their chunks.
pub struct ChunkQuerier {
    db: Arc<Db>,
    mint: i64,
    maxt: i64,
    series: Vec<ChunkSeries>,
    _reader: ReaderGuard,
}

impl Db {
    /// Series matching all `matchers` that have a chunk overlapping `[mint, maxt]`, from the head
    /// and the local blocks, merged by labels and sorted. Reads indexes and head metadata only.
    ///
    /// A block found damaged is dropped from the served list (see [`Db::select`]) and the answer
    /// is built from the rest.
    pub fn chunk_querier(
        self: &Arc<Self>,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Result<ChunkQuerier, TsdbError> {
        // Registered before listing: a cut that truncates the head after this waits for us, and
        // one that truncated before has already published its block, listed below.
        let reader = self.readers.register(mint);
        let mut head: Vec<(Labels, Part)> = self
            .head
            .matching(matchers)
            .into_iter()
            .filter(|s| s.lock().overlaps(mint, maxt))
            .map(|s| (s.labels.clone(), Part::Head(s)))
            .collect();
        // Head label sets are unique, so an unstable sort is as good and faster.
        head.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut found: Vec<(Labels, Part)> = Vec::new();
        for b in &self.blocks_overlapping(mint, maxt) {
            match b.chunk_series(mint, maxt, matchers) {
                Ok(list) => found.extend(
                    list.into_iter()
                        .map(|(labels, metas)| (labels, Part::Block(b.clone(), metas))),
                ),
                Err(BlockError::Corrupt(reason)) => self.suspect(b, reason),
                Err(e) => return Err(e.into()),
            }
        }
        // Stable: blocks (oldest first) before the head among equal label sets. Each part is
        // sorted already, so this merges runs.
        found.extend(head);
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut series: Vec<ChunkSeries> = Vec::with_capacity(found.len());
        for (labels, part) in found {
            match series.last_mut() {
                Some(last) if last.labels == labels => last.more.push(part),
                _ => series.push(ChunkSeries {
                    labels,
                    first: part,
                    more: Vec::new(),
                }),
            }
        }
        Ok(ChunkQuerier {
            db: self.clone(),
            mint,
            maxt,
            series,
            _reader: reader,
        })
    }
}

impl ChunkQuerier {
    /// The matching series, sorted by labels.
    pub fn series(&self) -> &[ChunkSeries] {
        &self.series
    }

    /// Number of series found.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series matched.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Replaces `out` with the chunks of `s` overlapping the query range, ordered by time, as
    /// stored. A chunk held twice (the head and a block just cut from it) is given once.
    pub fn chunks(&self, s: &ChunkSeries, out: &mut Vec<StoredChunk>) -> Result<(), TsdbError> {
        out.clear();
        for part in std::iter::once(&s.first).chain(&s.more) {
            match part {
                Part::Block(b, metas) => {
                    for m in metas {
                        match b.chunk(m.reference) {
                            Ok(data) => out.push(StoredChunk {
                                mint: m.mint,
                                maxt: m.maxt,
                                data,
                            }),
                            Err(BlockError::Corrupt(reason)) => {
                                self.db.suspect(b, reason.clone());
                                return Err(BlockError::Corrupt(reason).into());
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Part::Head(m) => m.lock().chunks_overlapping(self.mint, self.maxt, out),
            }
        }
        if !s.more.is_empty() {
            out.sort_by_key(|c| (c.mint, c.maxt));
            out.dedup_by(|b, a| a.mint == b.mint && a.maxt == b.maxt && a.data == b.data);
        }
        Ok(())
    }
}
