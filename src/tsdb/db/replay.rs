//! Rebuilding the head from the WAL at open (Prometheus `head_wal.go`).
//!
//! [`replay`] reads the last checkpoint, then every segment after it: Series records recreate
//! series under their original refs (so later appends continue the same series), Samples
//! records are applied with the per-series rules only (no bounds), errors ignored. Corruption
//! (torn tail or bad record) is repaired at the reported offset with a warning naming what is
//! dropped, and replay stops there. Replay reuses its decode buffers and caches the last
//! series, so it allocates per record, not per sample.

use super::TsdbError;
use crate::tsdb::checkpoint::last_checkpoint;
use crate::tsdb::head::{Head, HeadOptions, MemSeries};
use crate::tsdb::labels::Labels;
use crate::tsdb::record::{
    decode_samples_into, decode_series_into, record_type, RefSample, SAMPLES, SERIES,
};
use crate::tsdb::wlog::{repair, segments, Reader, WalError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Counts from a WAL replay.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ReplayStats {
    pub(super) records: u64,
    pub(super) series: u64,
    pub(super) samples: u64,
    pub(super) skipped_samples: u64,
    pub(super) unknown_refs: u64,
    /// Samples below the min valid time (already in a block).
    pub(super) persisted_samples: u64,
    /// Series left without samples after replay, released at once.
    pub(super) series_released: u64,
}

/// Replays `wal_dir` into `head`: the last checkpoint, then the segments after it, repairing
/// corruption in the segments at the reported offset. Samples below the head's min valid time
/// (the end of the newest block on disk) are already persisted and are skipped.
pub(super) fn replay(head: &Head, wal_dir: &Path) -> Result<ReplayStats, TsdbError> {
    let mut rp = Replayer::new(head);
    if !wal_dir.exists() {
        return Ok(rp.st);
    }
    let mut first_segment = None;
    if let Some((dir, idx)) = last_checkpoint(wal_dir)? {
        let mut reader = Reader::open(&dir)?;
        if let Some((segment, offset, reason)) = rp.run(&mut reader)? {
            // A checkpoint is written whole and renamed into place, so damage here is not a
            // torn tail: refuse to start rather than silently drop older series.
            return Err(TsdbError::CorruptCheckpoint {
                dir,
                segment,
                offset,
                reason,
            });
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
