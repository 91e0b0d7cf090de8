//! `Store/Series` with Thanos's TSDB-store semantics (`pkg/store/tsdb.go`), over every tenant.
//!
//! Two steps. [`plan`] lists, per selected tenant, the series matching the request (labels and
//! chunk references only), gives each its final label set (replica labels dropped, external
//! labels set over the series' own) and sorts all tenants' series together by it: Query merges
//! endpoint streams assuming sorted input, and a tenant label sorts inside the label set, so
//! tenants interleave. [`stream`] then reads chunks one series at a time and hands out frames,
//! so memory holds the label sets and one series' chunks, never the whole answer.

use std::time::Instant;

use proto::storepb::SeriesRequest;

use super::encode::{self, BatchBuilder, ChunkRef, MAX_BYTES_PER_FRAME};
use super::matchers::{convert, split_external};
use super::{with_external, Scope, Store, StoreError, StoreLimits};
use crate::tsdb::db::chunk_querier::ENCODING_XOR;
use crate::tsdb::db::{ChunkQuerier, StoredChunk};
use crate::tsdb::labels::Labels;
use crate::tsdb::matcher::Matcher;

/// A batch frame is sent once it holds this many bytes, even below the requested batch size.
const MAX_BATCH_BYTES: usize = 4 * MAX_BYTES_PER_FRAME;

/// What a `Series` request asks, checked.
pub struct SeriesParams {
    /// Inclusive time range.
    pub mint: i64,
    /// Inclusive time range.
    pub maxt: i64,
    /// Matchers, external-label ones included.
    pub matchers: Vec<Matcher>,
    /// Labels only, no chunk reads.
    pub skip_chunks: bool,
    /// Label names dropped from every series (Query's replica labels when it deduplicates).
    pub without_replica: Vec<String>,
    /// Most series to return (0 = all).
    pub limit: usize,
    /// Series per frame (`batch` frames when above 1).
    pub batch_size: usize,
}

impl SeriesParams {
    /// Checks a request.
    pub fn from_request(req: &SeriesRequest) -> Result<Self, StoreError> {
        Ok(SeriesParams {
            mint: req.min_time,
            maxt: req.max_time,
            matchers: convert(&req.matchers)?,
            skip_chunks: req.skip_chunks,
            without_replica: req.without_replica_labels.clone(),
            limit: usize::try_from(req.limit.max(0)).unwrap_or(usize::MAX),
            batch_size: usize::try_from(req.response_batch_size.max(0)).unwrap_or(usize::MAX),
        })
    }
}

/// One series of the answer: its final labels and where to read it.
struct Entry {
    labels: Labels,
    querier: u32,
    series: u32,
}

/// The series a request answers, sorted by final label set, not yet read.
pub struct SeriesPlan {
    queriers: Vec<ChunkQuerier>,
    entries: Vec<Entry>,
}

impl SeriesPlan {
    /// Series to send.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing matched.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Lists and sorts the series `p` asks of the tenants `scope` sees. Blocking (index reads).
pub fn plan(store: &Store, scope: &Scope, p: &SeriesParams) -> Result<SeriesPlan, StoreError> {
    let mut queriers = Vec::new();
    let mut entries = Vec::new();
    for t in store.tenants(scope)? {
        let Some(rest) = split_external(&p.matchers, &t.external) else {
            continue;
        };
        if rest.is_empty() {
            return Err(StoreError::NoMatchers);
        }
        let rest: Vec<Matcher> = rest.into_iter().cloned().collect();
        let q = t.db.chunk_querier(p.mint, p.maxt, &rest)?;
        let qi = queriers.len() as u32;
        for (si, s) in q.series().iter().enumerate() {
            entries.push(Entry {
                labels: with_external(&s.labels, &t.external, &p.without_replica),
                querier: qi,
                series: si as u32,
            });
        }
        queriers.push(q);
    }
    // Stable, so one tenant's series keep their order among equal final label sets.
    entries.sort_by(|a, b| a.labels.cmp(&b.labels));
    if p.limit > 0 {
        entries.truncate(p.limit);
    }
    let limit = store.limits().request_series;
    if limit > 0 && entries.len() as u64 > limit {
        return Err(StoreError::SeriesLimit {
            series: entries.len(),
            limit,
        });
    }
    Ok(SeriesPlan { queriers, entries })
}

/// What one `Series` call sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeriesStats {
    /// Series sent.
    pub series: usize,
    /// Chunks sent.
    pub chunks: usize,
    /// Samples in the chunks sent (from the chunk headers).
    pub samples: u64,
    /// Frames sent.
    pub frames: usize,
    /// Encoded bytes of the frames.
    pub bytes: usize,
}

/// Frames going out, one at a time; `send` returns `false` once the client is gone.
struct Sink<'a, F: FnMut(Vec<u8>) -> bool> {
    send: &'a mut F,
    batch: BatchBuilder,
    batch_size: usize,
    stats: SeriesStats,
}

impl<F: FnMut(Vec<u8>) -> bool> Sink<'_, F> {
    fn frame(&mut self, f: Vec<u8>) -> Result<(), StoreError> {
        self.stats.frames += 1;
        self.stats.bytes += f.len();
        if (self.send)(f) {
            Ok(())
        } else {
            Err(StoreError::Cancelled {
                sent_series: self.stats.series,
            })
        }
    }

    fn series(&mut self, labels: &Labels, chunks: &[ChunkRef<'_>]) -> Result<(), StoreError> {
        if self.batch_size <= 1 {
            return self.frame(encode::series_frame(labels, chunks));
        }
        self.batch.push(labels, chunks);
        if self.batch.len() >= self.batch_size || self.batch.bytes() >= MAX_BATCH_BYTES {
            let f = self.batch.take_frame();
            self.frame(f)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if !self.batch.is_empty() {
            let f = self.batch.take_frame();
            self.frame(f)?;
        }
        Ok(())
    }
}

/// Samples in a stored chunk: its 2-byte big-endian header.
fn chunk_samples(data: &[u8]) -> u64 {
    match data {
        [a, b, ..] => u64::from(u16::from_be_bytes([*a, *b])),
        _ => 0,
    }
}

/// Reads and sends the plan's series in order: each series' chunks as stored (XOR = type 0,
/// hash = xxhash64 of the bytes), untrimmed, split over frames of about
/// [`MAX_BYTES_PER_FRAME`]. Stops at `deadline`, or when `send` says the client is gone.
/// Blocking (block chunk reads).
pub fn stream<F: FnMut(Vec<u8>) -> bool>(
    plan: &SeriesPlan,
    p: &SeriesParams,
    limits: StoreLimits,
    deadline: Option<Instant>,
    mut send: F,
) -> Result<SeriesStats, StoreError> {
    let mut sink = Sink {
        send: &mut send,
        batch: BatchBuilder::default(),
        batch_size: p.batch_size,
        stats: SeriesStats::default(),
    };
    let mut chunks: Vec<StoredChunk> = Vec::new();
    for e in &plan.entries {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(StoreError::DeadlineExceeded {
                sent_series: sink.stats.series,
            });
        }
        if p.skip_chunks {
            sink.series(&e.labels, &[])?;
            sink.stats.series += 1;
            continue;
        }
        let q = &plan.queriers[e.querier as usize];
        q.chunks(&q.series()[e.series as usize], &mut chunks)?;
        if chunks.is_empty() {
            continue;
        }
        sink.stats.samples += chunks.iter().map(|c| chunk_samples(&c.data)).sum::<u64>();
        if limits.request_samples > 0 && sink.stats.samples > limits.request_samples {
            return Err(StoreError::SamplesLimit {
                limit: limits.request_samples,
            });
        }
        let refs: Vec<ChunkRef<'_>> = chunks
            .iter()
            .map(|c| ChunkRef {
                mint: c.mint,
                maxt: c.maxt,
                encoding: i32::from(ENCODING_XOR) - 1,
                data: &c.data,
                hash: xxhash_rust::xxh64::xxh64(&c.data, 0),
            })
            .collect();
        // Thanos's frame budget: the frame limit less the labels, then chunk by chunk.
        let budget = MAX_BYTES_PER_FRAME as i64
            - e.labels
                .iter()
                .map(|(n, v)| encode::label_size(n, v) as i64)
                .sum::<i64>();
        let mut start = 0;
        let mut left = budget;
        for (i, c) in refs.iter().enumerate() {
            left -= encode::chunk_size(c) as i64;
            if left <= 0 || i + 1 == refs.len() {
                sink.series(&e.labels, &refs[start..=i])?;
                start = i + 1;
                left = budget;
            }
        }
        sink.stats.series += 1;
        sink.stats.chunks += refs.len();
    }
    sink.flush()?;
    Ok(sink.stats)
}
