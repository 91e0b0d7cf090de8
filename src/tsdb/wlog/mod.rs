//! Write-ahead log in the Prometheus `tsdb/wlog` format (2.42).
//!
//! A WAL directory holds segments named `%08d`, each a sequence of 32 KiB
//! pages. A record is split into fragments that never cross a page; each
//! fragment has a 7-byte header: type (low 3 bits: 1 full, 2 first,
//! 3 middle, 4 last; 0x08 = snappy-compressed record), 2-byte BE length,
//! 4-byte BE CRC32-Castagnoli of the fragment data. A page with fewer than
//! 7 bytes left is zero padded. A record never spans segments. Segment files
//! are not pre-allocated: they grow page by page, and a partially written
//! last page is continued in place (only the unflushed tail is written).
//!
//! The reader is stricter than Prometheus's at the tail: a record cut short
//! (partial header or data, missing continuation, zeros where a continuation
//! belongs) is reported as [`WalError::Corruption`] at the offset of the
//! record's first fragment, so [`repair`] can truncate exactly there.
//!
//! Split as Prometheus's `tsdb/wlog/` is: `segments.rs` (naming, listing, creating segment
//! files), `writer.rs` ([`Wal`]), `reader.rs` ([`Reader`]), `repair.rs` ([`repair`]).

use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Prometheus `DefaultSegmentSize`: 128 MiB.
pub const DEFAULT_SEGMENT_SIZE: usize = 128 * 1024 * 1024;
/// Page size: fragments never cross a page.
pub const PAGE_SIZE: usize = 32 * 1024;
/// Fragment header: type, length (2), CRC (4).
const HEADER_SIZE: usize = 7;
/// Header flag of a snappy-compressed record.
const SNAPPY_FLAG: u8 = 0x08;
/// Low bits of the header: fragment type.
const TYPE_MASK: u8 = 0x07;
const FRAG_FULL: u8 = 1;
const FRAG_FIRST: u8 = 2;
const FRAG_MIDDLE: u8 = 3;
const FRAG_LAST: u8 = 4;

/// Errors of the WAL writer, reader and repair.
#[derive(Debug, Error)]
pub enum WalError {
    /// An I/O operation failed.
    #[error("wal {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// File or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Bad data at a precise place; `repair(dir, segment, offset)` fixes it.
    #[error("wal corruption in segment {segment} at offset {offset}: {reason}")]
    Corruption {
        /// Segment index.
        segment: u64,
        /// Byte offset in the segment of the first fragment of the bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Segment indexes have a gap (Prometheus refuses these too).
    #[error("wal segments in {0} are not sequential")]
    NotSequential(PathBuf),
    /// Segment size must be a positive multiple of the page size.
    #[error("invalid wal segment size {0}: must be a positive multiple of 32 KiB")]
    InvalidSegmentSize(usize),
    /// An fsync failed, or undoing a failed write failed: the on-disk state
    /// is unknown, so the writer refuses further work.
    #[error("wal unusable after an earlier fsync or rollback error; replay, repair and reopen it")]
    Poisoned,
    /// `next` was called again after the reader returned an error.
    #[error("wal reader already failed")]
    ReaderFailed,
}

impl WalError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the disk (or quota) is full: callers answer a retryable 5xx.
    pub fn is_disk_full(&self) -> bool {
        match self {
            WalError::Io { source, .. } => {
                source.kind() == io::ErrorKind::StorageFull
                    || matches!(source.raw_os_error(), Some(28) | Some(122)) // ENOSPC, EDQUOT
            }
            _ => false,
        }
    }

    /// Whether this is a [`WalError::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, WalError::Corruption { .. })
    }
}

/// WAL writer options.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Segment size in bytes (multiple of 32 KiB); Prometheus default 128 MiB.
    pub segment_size: usize,
    /// Snappy-compress records when that makes them smaller (Prometheus 2.42 default: on).
    pub compress: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            compress: true,
        }
    }
}

mod reader;
mod repair;
mod segments;
mod writer;

#[cfg(test)]
mod promtool_tests;
#[cfg(test)]
mod tests;

pub use reader::Reader;
pub use repair::repair;
pub use segments::{segment_path, segments};
pub use writer::Wal;
