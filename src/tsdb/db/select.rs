//! Reads of [`Db`] (Prometheus `querier.go`): local blocks and the head, merged.

use super::{blocks::Suspect, Db, TsdbError};
use crate::tsdb::block::BlockError;
use crate::tsdb::head::SeriesSamples;
use crate::tsdb::matcher::Matcher;
use crate::tsdb::querier::{merge_series, Block};
use std::sync::Arc;

impl Db {
    /// Samples in `[mint, maxt]` of the series matching all `matchers`, sorted by labels:
    /// local blocks and the head, seamlessly across cuts.
    ///
    /// The head is read first: a cut running meanwhile may move samples from the head into a
    /// new block, and reading the block list afterwards finds them there (merging drops the
    /// samples seen twice).
    ///
    /// A block found damaged while reading is dropped from the served list and answered
    /// around; the read does no file I/O for it: [`Db::quarantine_suspect_blocks`] (run by
    /// maintenance) moves it aside.
    pub fn select(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<SeriesSamples>, TsdbError> {
        let head = self.head.select(mint, maxt, matchers);
        let blocks = self.blocks_overlapping(mint, maxt);
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
                    self.suspect(b, reason);
                }
                Err(e) => return Err(e.into()),
            }
        }
        parts.push(head);
        Ok(merge_series(parts))
    }

    /// The served local blocks holding any time of `[mint, maxt]`, oldest first.
    pub(super) fn blocks_overlapping(&self, mint: i64, maxt: i64) -> Vec<Arc<Block>> {
        self.blocks
            .read()
            .iter()
            .filter(|b| b.meta().min_time <= maxt && b.meta().max_time > mint)
            .cloned()
            .collect()
    }

    /// Stops serving `b` and leaves it to maintenance (once, however many reads found it).
    pub(super) fn suspect(&self, b: &Arc<Block>, reason: String) {
        let removed = {
            let mut blocks = self.blocks.write();
            let before = blocks.len();
            blocks.retain(|x| !Arc::ptr_eq(x, b));
            blocks.len() < before
        };
        if removed {
            tracing::warn!(
                block = %b.dir().display(),
                reason = %reason,
                "corrupt block found on read: no longer served, quarantined by the next maintenance"
            );
            self.suspects.lock().push(Suspect {
                block: b.clone(),
                reason,
            });
        }
    }
}
