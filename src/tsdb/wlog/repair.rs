//! Repairing a WAL after corruption (Prometheus `Repair`): keep every intact record before the
//! damage, drop the rest.

use super::segments::{fsync_dir, list_segments, segment_path};
use super::*;
use std::fs::{self, OpenOptions};

/// Like Prometheus `Repair`: keeps every record of `segment` that ends at or
/// before `offset`, drops the rest of that segment (truncating it and
/// zero-padding its last page) and deletes all later segments.
pub fn repair(dir: &Path, segment: u64, offset: u64) -> Result<(), WalError> {
    let segs = list_segments(dir)?;
    tracing::warn!(dir = %dir.display(), segment, offset, "starting WAL corruption repair");
    for &i in segs.iter().filter(|&&i| i > segment) {
        let p = segment_path(dir, i);
        let size = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        tracing::warn!(
            segment = i,
            bytes = size,
            "deleting WAL segment after corruption"
        );
        fs::remove_file(&p).map_err(|e| WalError::io("delete segment", &p, e))?;
    }
    let path = segment_path(dir, segment);
    if !segs.contains(&segment) {
        return fsync_dir(dir);
    }
    // Find the end of the last intact record at or before `offset`.
    let mut keep_end = 0u64;
    let mut kept = 0u64;
    let mut r = Reader::open_range(dir, Some(segment), Some(segment))?;
    while let Ok(Some(_)) = r.next() {
        if r.offset() > offset {
            break;
        }
        keep_end = r.offset();
        kept += 1;
    }
    drop(r);
    let f = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| WalError::io("open segment", &path, e))?;
    let old_len = f
        .metadata()
        .map_err(|e| WalError::io("stat segment", &path, e))?
        .len();
    let padded = keep_end.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64;
    tracing::warn!(
        segment,
        kept_records = kept,
        kept_bytes = keep_end,
        dropped_bytes = old_len.saturating_sub(keep_end),
        "truncating corrupted WAL segment after the last intact record"
    );
    // Truncate, then zero-fill the rest of the last page (set_len extends with zeros).
    f.set_len(keep_end)
        .and_then(|_| f.set_len(padded))
        .and_then(|_| f.sync_all())
        .map_err(|e| WalError::io("truncate segment", &path, e))?;
    fsync_dir(dir)
}
