//! The finished local blocks of [`Db`]: opening them at start, deleting them for retention, and
//! quarantining damaged ones (found at open, or found by a read and moved by maintenance).

use super::{Db, TsdbError};
use crate::tsdb::block::{list_block_dirs, read_meta, BlockError, Ulid};
use crate::tsdb::querier::Block;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// A block a read found damaged, waiting for maintenance to quarantine it.
pub(super) struct Suspect {
    pub(super) block: Arc<Block>,
    pub(super) reason: String,
}

impl Db {
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

    /// Whether a read found a damaged block that [`Db::quarantine_suspect_blocks`] has not moved
    /// aside yet.
    pub fn has_suspect_blocks(&self) -> bool {
        !self.suspects.lock().is_empty()
    }

    /// Maintenance: moves every block a read found damaged to `<dir>/quarantine/` (reads already
    /// stopped serving them). Returns how many were moved; one that fails to move stays listed
    /// for the next run.
    pub fn quarantine_suspect_blocks(&self) -> Result<usize, TsdbError> {
        let suspects = std::mem::take(&mut *self.suspects.lock());
        let mut moved = 0;
        let mut left = suspects.into_iter();
        while let Some(s) = left.next() {
            if let Err(e) = quarantine(&self.dir, s.block.dir(), &s.reason) {
                let mut pending = self.suspects.lock();
                pending.push(s);
                pending.extend(left);
                return Err(e);
            }
            moved += 1;
        }
        Ok(moved)
    }
}

/// Deletes `<ULID>.tmp-for-creation` directories a crash left in the middle of a cut (the head
/// still holds their samples, so the next cut writes them again).
pub(super) fn remove_unfinished_blocks(dir: &Path) -> Result<(), TsdbError> {
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
/// the blocks and the end of the newest quarantined block that was `uploaded`: its samples
/// are safe in the bucket, so the WAL must not bring them back as a second, overlapping block.
/// The samples of a quarantined block never uploaded are left to WAL replay, which restores what
/// the WAL still holds.
pub(super) fn open_blocks(
    dir: &Path,
    uploaded: &BTreeSet<Ulid>,
) -> Result<(Vec<Arc<Block>>, Option<i64>), TsdbError> {
    let mut out = Vec::new();
    // Blocks quarantined earlier (also those a read found damaged while running) bound replay
    // the same way when they were uploaded.
    let mut persisted_until = quarantined_uploaded_until(dir, uploaded);
    let listed = list_block_dirs(dir).map_err(|source| TsdbError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    for (ulid, path) in listed {
        match Block::open(&path) {
            Ok(b) => out.push(Arc::new(b)),
            Err(e @ (BlockError::Corrupt(_) | BlockError::Io { .. })) => {
                if uploaded.contains(&ulid) {
                    let maxt = read_meta(&path).map(|m| m.max_time).ok();
                    persisted_until = persisted_until.max(maxt);
                }
                quarantine(dir, &path, &e.to_string())?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by_key(|b| b.meta().ulid);
    Ok((out, persisted_until))
}

/// The end of the newest block in `<dir>/quarantine/` that was `uploaded`.
fn quarantined_uploaded_until(dir: &Path, uploaded: &BTreeSet<Ulid>) -> Option<i64> {
    if uploaded.is_empty() {
        return None;
    }
    let entries = std::fs::read_dir(dir.join("quarantine")).ok()?;
    entries
        .flatten()
        .filter(|e| {
            // `<ULID>` or `<ULID>.<n>` (the same block quarantined again).
            let name = e.file_name();
            let ulid = name.to_str().and_then(|n| n.split('.').next());
            ulid.and_then(|u| u.parse::<Ulid>().ok())
                .is_some_and(|u| uploaded.contains(&u))
        })
        .filter_map(|e| read_meta(&e.path()).ok())
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
        // Already moved by a concurrent maintenance run, or deleted by retention.
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
