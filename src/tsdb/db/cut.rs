//! Cutting the head into blocks (Prometheus `compact.go` for the head): [`Db::compact`] while the
//! head is compactable, [`Db::flush`] at shutdown, then truncating head and WAL.

use super::{CompactStats, Db, TsdbError};
use crate::tsdb::block::{BlockError, BlockSeries, BlockWriter, ChunkMeta, ThanosMeta, Ulid};
use crate::tsdb::checkpoint::{checkpoint, delete_checkpoints_before, delete_segments_before};
use crate::tsdb::head::range_for_timestamp;
use crate::tsdb::querier::Block;
use crate::tsdb::wlog::segments;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

impl Db {
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
            delete_segments_before(&wal_dir, last + 1)?;
            stats.wal_segments_truncated = last + 1 - first;
        }
        delete_checkpoints_before(&wal_dir, u64::MAX)?;
        Ok(stats)
    }

    /// Writes `[mint, maxt)` of the head as a block, then truncates the head below `maxt`.
    pub(super) fn cut_range(
        &self,
        mint: i64,
        maxt: i64,
        stats: &mut CompactStats,
    ) -> Result<(), TsdbError> {
        {
            // Under the commit lock: every commit before this is in the head (and gets into
            // the block); every commit after it sees the new floor.
            let _commits = self.log.lock();
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
        // Queries that listed head series before the block was published may still read them.
        self.readers.wait_below(maxt);
        let seq = self.log.lock().last_seq();
        let t = self.head.truncate(maxt);
        {
            // Truncation leaves the min time at `maxt`; raise it to the oldest sample left so a
            // head that idled for days does not cut one empty range after another. Safe only if
            // no commit (which lowers it, under this lock) ran during the scan.
            let commits = self.log.lock();
            if commits.last_seq() == seq {
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
        self.log.cut_segment();
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
        let started = Instant::now();
        let st = checkpoint(
            &wal_dir,
            first,
            last,
            |r| self.head.series_by_ref(r).is_some(),
            mint,
            self.opts.wal_compression,
        )?;
        crate::failpoint::hit("cut.after_wal_checkpoint");
        delete_segments_before(&wal_dir, last + 1)?;
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
}
