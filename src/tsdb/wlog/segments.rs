//! Segment files of a WAL directory: `%08d` names, listing, creating.

use super::{WalError, PAGE_SIZE};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

/// Path of segment `i` in `dir` (`%08d`).
pub fn segment_path(dir: &Path, i: u64) -> PathBuf {
    dir.join(format!("{i:08}"))
}

/// Sorted segment indexes of `dir`; names that are not all digits are ignored.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let rd = fs::read_dir(dir).map_err(|e| WalError::io("read dir", dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| WalError::io("read dir", dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(i) = name.parse::<u64>() {
            out.push(i);
        }
    }
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] + 1 != w[1]) {
        return Err(WalError::NotSequential(dir.to_path_buf()));
    }
    Ok(out)
}

/// First and last segment index in `dir` (None if there are none).
/// Ignores `checkpoint.*` directories and other non-numeric names.
pub fn segments(dir: &Path) -> Result<Option<(u64, u64)>, WalError> {
    let s = list_segments(dir)?;
    Ok(s.first().map(|&f| (f, *s.last().unwrap_or(&f))))
}

pub(super) fn fsync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io("fsync dir", dir, e))
}

/// Prometheus `CreateSegment`: create-or-open in append mode.
pub(super) fn create_segment(dir: &Path, i: u64) -> Result<(File, usize), WalError> {
    let p = segment_path(dir, i);
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .map_err(|e| WalError::io("create segment", &p, e))?;
    let mut len = f
        .metadata()
        .map_err(|e| WalError::io("stat segment", &p, e))?
        .len();
    // Like Prometheus `OpenWriteSegment`: zero-fill a torn last page so the
    // file length stays a whole number of pages.
    let torn = len % PAGE_SIZE as u64;
    if torn != 0 {
        tracing::warn!(segment = %p.display(), "last page of the WAL is torn, filling it with zeros");
        len += PAGE_SIZE as u64 - torn;
        f.set_len(len)
            .map_err(|e| WalError::io("zero-pad segment", &p, e))?;
    }
    Ok((f, (len / PAGE_SIZE as u64) as usize))
}
