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

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
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

    /// Kind of the underlying I/O error, if this is one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            WalError::Io { source, .. } => Some(source.kind()),
            _ => None,
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

/// Path of segment `i` in `dir` (`%08d`).
pub fn segment_path(dir: &Path, i: u64) -> PathBuf {
    dir.join(format!("{i:08}"))
}

/// Sorted segment indexes of `dir`; names that are not all digits are ignored.
fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
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

fn fsync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io("fsync dir", dir, e))
}

/// The WAL writer: buffers the current page, writes it with `flush`/`sync`
/// or when it fills.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    segment: File,
    segment_index: u64,
    /// Completed pages in the current segment.
    done_pages: usize,
    page: Box<[u8; PAGE_SIZE]>,
    /// Bytes of the page in use.
    alloc: usize,
    /// Bytes of the page already written to the file.
    flushed: usize,
    /// Closed-out segments not yet fsynced (synced on the next `sync`).
    unsynced: Vec<(u64, File)>,
    /// A segment was created since the last directory fsync.
    dir_dirty: bool,
    poisoned: bool,
    encoder: snap::raw::Encoder,
    snappy_buf: Vec<u8>,
    /// Writer position at the start of the current `log`/`flush` call.
    mark: Option<Mark>,
    /// Copy of the marked page, taken only if the call completes that page.
    saved_page: Vec<u8>,
    saved_taken: bool,
    /// Test hook: bytes that may still be written before writes fail with ENOSPC.
    #[cfg(test)]
    fail_after: Option<usize>,
}

/// Where the writer stood before a call, so a failed write can be undone
/// (otherwise a partial record would sit in the segment, and the next
/// replay would stop there and repair would drop everything after it).
#[derive(Clone, Copy)]
struct Mark {
    segment_index: u64,
    done_pages: usize,
    alloc: usize,
    flushed: usize,
}

impl Wal {
    /// Opens (creating) `dir` and starts a new segment after the last one, like Prometheus.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<Wal, WalError> {
        Self::open_from(dir, opts, 0)
    }

    /// [`Wal::open`], numbering the new segment at least `min_index` (one past the last
    /// checkpoint: replay skips segments a checkpoint covers, so they must never be reused).
    pub fn open_from(dir: &Path, opts: WalOptions, min_index: u64) -> Result<Wal, WalError> {
        if opts.segment_size == 0 || opts.segment_size % PAGE_SIZE != 0 {
            return Err(WalError::InvalidSegmentSize(opts.segment_size));
        }
        fs::create_dir_all(dir).map_err(|e| WalError::io("create dir", dir, e))?;
        let next = match segments(dir)? {
            Some((_, last)) => last + 1,
            None => 0,
        }
        .max(min_index);
        let (segment, done_pages) = create_segment(dir, next)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            opts,
            segment,
            segment_index: next,
            done_pages,
            page: Box::new([0u8; PAGE_SIZE]),
            alloc: 0,
            flushed: 0,
            unsynced: Vec::new(),
            dir_dirty: true,
            poisoned: false,
            encoder: snap::raw::Encoder::new(),
            snappy_buf: Vec::new(),
            mark: None,
            saved_page: Vec::new(),
            saved_taken: false,
            #[cfg(test)]
            fail_after: None,
        })
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Index of the segment being written.
    pub fn current_segment(&self) -> u64 {
        self.segment_index
    }

    /// Appends records (buffered; full pages are written as they complete).
    /// All or nothing: on a write error (e.g. disk full) none of `records`
    /// stays in the WAL and the writer remains usable, so the caller may retry.
    /// Empty records are skipped: Prometheus never writes them and a zeroed
    /// header would otherwise decode as one.
    pub fn log<R: AsRef<[u8]>>(&mut self, records: &[R]) -> Result<(), WalError> {
        self.begin()?;
        for rec in records {
            let rec = rec.as_ref();
            if rec.is_empty() {
                continue;
            }
            if let Err(e) = self.log_one(rec) {
                return Err(self.abort(e));
            }
        }
        self.mark = None;
        Ok(())
    }

    /// Writes the buffered partial page to the file (no fsync); the page is
    /// continued in place by later records. On error nothing is lost from
    /// the buffer and the call can be retried.
    pub fn flush(&mut self) -> Result<(), WalError> {
        self.begin()?;
        if self.alloc > self.flushed {
            if let Err(e) = self.flush_page(false) {
                return Err(self.abort(e));
            }
        }
        self.mark = None;
        Ok(())
    }

    fn begin(&mut self) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        self.mark = Some(Mark {
            segment_index: self.segment_index,
            done_pages: self.done_pages,
            alloc: self.alloc,
            flushed: self.flushed,
        });
        self.saved_taken = false;
        Ok(())
    }

    /// Undoes the current call after `e`; poisons the writer if that fails.
    fn abort(&mut self, e: WalError) -> WalError {
        if let Some(m) = self.mark.take() {
            if let Err(e2) = self.rollback(m) {
                tracing::error!(error = %e2, "wal rollback after a write error failed");
                self.poisoned = true;
            }
        } else {
            self.poisoned = true;
        }
        e
    }

    fn rollback(&mut self, m: Mark) -> Result<(), WalError> {
        if self.segment_index != m.segment_index {
            // Segments created by the failed call go away entirely.
            for i in m.segment_index + 1..=self.segment_index {
                let p = segment_path(&self.dir, i);
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(WalError::io("delete segment", &p, e)),
                }
            }
            let old = match self
                .unsynced
                .iter()
                .position(|(i, _)| *i == m.segment_index)
            {
                Some(k) => self.unsynced.remove(k).1,
                None => {
                    let p = segment_path(&self.dir, m.segment_index);
                    OpenOptions::new()
                        .append(true)
                        .open(&p)
                        .map_err(|e| WalError::io("reopen segment", &p, e))?
                }
            };
            self.unsynced.retain(|(i, _)| *i < m.segment_index);
            self.segment = old;
            self.segment_index = m.segment_index;
        }
        let len = (m.done_pages * PAGE_SIZE + m.flushed) as u64;
        self.segment
            .set_len(len)
            .map_err(|e| WalError::io("truncate segment", &self.seg_path(), e))?;
        if self.saved_taken {
            self.page[..m.alloc].copy_from_slice(&self.saved_page[..m.alloc]);
        }
        self.page[m.alloc..].fill(0);
        self.alloc = m.alloc;
        self.flushed = m.flushed;
        self.done_pages = m.done_pages;
        self.saved_taken = false;
        Ok(())
    }

    /// Appends `page[from..to]` to the segment.
    fn write_page(&mut self, from: usize, to: usize) -> io::Result<()> {
        #[cfg(test)]
        if let Some(left) = self.fail_after {
            if to - from > left {
                self.fail_after = Some(0);
                self.segment.write_all(&self.page[from..from + left])?;
                return Err(io::Error::from_raw_os_error(28));
            }
            self.fail_after = Some(left - (to - from));
        }
        self.segment.write_all(&self.page[from..to])
    }

    /// `flush`, then fdatasync of earlier unsynced segments and the current
    /// one, and fsync of the directory if a segment was created.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.flush()?;
        let r = self.sync_inner();
        if r.is_err() {
            // After a failed fsync the page cache state is unknown.
            self.poisoned = true;
        }
        r
    }

    fn sync_inner(&mut self) -> Result<(), WalError> {
        for (i, f) in self.unsynced.drain(..) {
            f.sync_data()
                .map_err(|e| WalError::io("fsync segment", &segment_path(&self.dir, i), e))?;
        }
        self.segment.sync_data().map_err(|e| {
            WalError::io(
                "fsync segment",
                &segment_path(&self.dir, self.segment_index),
                e,
            )
        })?;
        if self.dir_dirty {
            fsync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Pads the current page, syncs and closes (Prometheus `Close`).
    pub fn close(mut self) -> Result<(), WalError> {
        self.begin()?;
        if self.alloc > 0 {
            if let Err(e) = self.flush_page(true) {
                return Err(self.abort(e));
            }
        }
        self.mark = None;
        self.sync()
    }

    /// Closes the current segment and starts the next one (for truncation/checkpoints).
    pub fn next_segment(&mut self) -> Result<u64, WalError> {
        self.begin()?;
        if let Err(e) = self.next_segment_inner() {
            return Err(self.abort(e));
        }
        self.mark = None;
        Ok(self.segment_index)
    }

    fn page_full(&self) -> bool {
        PAGE_SIZE - self.alloc < HEADER_SIZE
    }

    fn seg_path(&self) -> PathBuf {
        segment_path(&self.dir, self.segment_index)
    }

    /// Prometheus `flushPage`: writes the unflushed part; with `clear` (or a
    /// full page) the page is padded to its end and a new page begins.
    fn flush_page(&mut self, clear: bool) -> Result<(), WalError> {
        let clear = clear || self.page_full();
        if clear {
            self.alloc = PAGE_SIZE;
        }
        if self.alloc > self.flushed {
            if let Err(e) = self.write_page(self.flushed, self.alloc) {
                return Err(WalError::io("write segment", &self.seg_path(), e));
            }
        }
        self.flushed = self.alloc;
        if clear {
            if let Some(m) = self.mark {
                // The first page completed in a call is the marked one.
                if !self.saved_taken {
                    self.saved_page.clear();
                    self.saved_page.extend_from_slice(&self.page[..m.alloc]);
                    self.saved_taken = true;
                }
            }
            self.page.fill(0);
            self.alloc = 0;
            self.flushed = 0;
            self.done_pages += 1;
        }
        Ok(())
    }

    fn next_segment_inner(&mut self) -> Result<(), WalError> {
        if self.alloc > 0 {
            self.flush_page(true)?;
        }
        let next = self.segment_index + 1;
        let (f, done) = create_segment(&self.dir, next)?;
        let prev = std::mem::replace(&mut self.segment, f);
        self.unsynced.push((self.segment_index, prev));
        self.segment_index = next;
        self.done_pages = done;
        self.dir_dirty = true;
        Ok(())
    }

    fn log_one(&mut self, rec: &[u8]) -> Result<(), WalError> {
        if self.page_full() {
            self.flush_page(true)?;
        }
        // `snappy_buf` keeps its length at its high-water mark so that it is
        // not zero-filled again for every record.
        let mut sbuf = std::mem::take(&mut self.snappy_buf);
        let mut compressed_len = None;
        if self.opts.compress {
            let max = snap::raw::max_compress_len(rec.len());
            if max > 0 {
                if sbuf.len() < max {
                    sbuf.resize(max, 0);
                }
                if let Ok(n) = self.encoder.compress(rec, &mut sbuf) {
                    // Like Prometheus: keep the compressed form only if smaller.
                    if n < rec.len() {
                        compressed_len = Some(n);
                    }
                }
            }
        }
        let r = match compressed_len {
            Some(n) => self.write_fragments(&sbuf[..n], true),
            None => self.write_fragments(rec, false),
        };
        self.snappy_buf = sbuf;
        r
    }

    fn write_fragments(&mut self, mut rec: &[u8], compressed: bool) -> Result<(), WalError> {
        // Free space left in this segment, as Prometheus computes it.
        let pages_per_segment = (self.opts.segment_size / PAGE_SIZE) as i64;
        let left = (PAGE_SIZE - self.alloc) as i64 - HEADER_SIZE as i64
            + (PAGE_SIZE - HEADER_SIZE) as i64 * (pages_per_segment - self.done_pages as i64 - 1);
        if rec.len() as i64 > left {
            self.next_segment_inner()?;
        }
        let mut first = true;
        loop {
            let l = rec.len().min(PAGE_SIZE - self.alloc - HEADER_SIZE);
            let part = &rec[..l];
            let last = l == rec.len();
            let mut typ = match (first, last) {
                (true, true) => FRAG_FULL,
                (false, true) => FRAG_LAST,
                (true, false) => FRAG_FIRST,
                (false, false) => FRAG_MIDDLE,
            };
            if compressed {
                typ |= SNAPPY_FLAG;
            }
            let a = self.alloc;
            self.page[a] = typ;
            self.page[a + 1..a + 3].copy_from_slice(&(l as u16).to_be_bytes());
            self.page[a + 3..a + 7].copy_from_slice(&crc32c::crc32c(part).to_be_bytes());
            self.page[a + HEADER_SIZE..a + HEADER_SIZE + l].copy_from_slice(part);
            self.alloc += HEADER_SIZE + l;
            if self.page_full() {
                self.flush_page(true)?;
            }
            rec = &rec[l..];
            first = false;
            if rec.is_empty() {
                return Ok(());
            }
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        // Best effort: a clean shutdown should not lose logged records.
        if !self.poisoned && self.alloc > self.flushed {
            let _ = self.flush_page(false);
        }
    }
}

/// Prometheus `CreateSegment`: create-or-open in append mode.
fn create_segment(dir: &Path, i: u64) -> Result<(File, usize), WalError> {
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

/// Reads every record of a range of segments in order, reassembling
/// fragments and decompressing snappy records into a reused buffer.
pub struct Reader {
    dir: PathBuf,
    segs: Vec<u64>,
    /// Index into `segs` of the open segment.
    cur: usize,
    file: Option<File>,
    page: Box<[u8; PAGE_SIZE]>,
    /// Bytes of `page` present in the file (the rest reads as zeros).
    page_len: usize,
    /// Read position in `page`; `PAGE_SIZE` means "load the next page".
    page_pos: usize,
    /// Segment offset of `page[0]`.
    page_off: u64,
    rec: Vec<u8>,
    snappy_buf: Vec<u8>,
    decoder: snap::raw::Decoder,
    /// Segment and end offset of the last record returned.
    last: (u64, u64),
    failed: bool,
}

impl Reader {
    /// Reader over all segments of `dir`.
    pub fn open(dir: &Path) -> Result<Reader, WalError> {
        Self::open_range(dir, None, None)
    }

    /// Reader over segments `first..=last` of `dir` (None = unbounded).
    pub fn open_range(
        dir: &Path,
        first: Option<u64>,
        last: Option<u64>,
    ) -> Result<Reader, WalError> {
        let segs = list_segments(dir)?
            .into_iter()
            .filter(|&i| first.is_none_or(|f| i >= f) && last.is_none_or(|l| i <= l))
            .collect::<Vec<_>>();
        let start = segs.first().copied().unwrap_or(0);
        Ok(Reader {
            dir: dir.to_path_buf(),
            segs,
            cur: 0,
            file: None,
            page: Box::new([0u8; PAGE_SIZE]),
            page_len: 0,
            page_pos: PAGE_SIZE,
            page_off: 0,
            rec: Vec::new(),
            snappy_buf: Vec::new(),
            decoder: snap::raw::Decoder::new(),
            last: (start, 0),
            failed: false,
        })
    }

    /// Segment of the last record returned.
    pub fn segment(&self) -> u64 {
        self.last.0
    }

    /// Offset in its segment just after the last record returned.
    pub fn offset(&self) -> u64 {
        self.last.1
    }

    /// The next record, `Ok(None)` at the end; the slice is valid until the next call.
    #[allow(clippy::should_implement_trait)] // lending: the item borrows the reader
    pub fn next(&mut self) -> Result<Option<&[u8]>, WalError> {
        if self.failed {
            return Err(WalError::ReaderFailed);
        }
        match self.next_inner() {
            Ok(true) => Ok(Some(&self.rec)),
            Ok(false) => Ok(None),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn seg(&self) -> u64 {
        self.segs.get(self.cur).copied().unwrap_or(0)
    }

    fn corrupt(&self, offset: u64, reason: impl Into<String>) -> WalError {
        WalError::Corruption {
            segment: self.seg(),
            offset,
            reason: reason.into(),
        }
    }

    /// Loads the next page of the current segment, opening segments as
    /// needed. Returns false at the end of the current segment.
    fn load_page(&mut self) -> Result<bool, WalError> {
        let path = segment_path(&self.dir, self.seg());
        if self.file.is_none() {
            let f = File::open(&path).map_err(|e| WalError::io("open segment", &path, e))?;
            self.file = Some(f);
            self.page_off = 0;
            self.page_len = 0;
        } else {
            self.page_off += PAGE_SIZE as u64;
        }
        let Some(f) = self.file.as_mut() else {
            return Ok(false);
        };
        let mut n = 0;
        while n < PAGE_SIZE {
            match f.read(&mut self.page[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WalError::io("read segment", &path, e)),
            }
        }
        self.page_len = n;
        self.page_pos = 0;
        Ok(n > 0)
    }

    fn next_inner(&mut self) -> Result<bool, WalError> {
        self.rec.clear();
        self.snappy_buf.clear();
        // Offset of the first fragment of the record being assembled.
        let mut rec_start: Option<u64> = None;
        let mut compressed = false;
        loop {
            if self.page_pos >= self.page_len {
                // Past the data of this page; bytes missing at the end of a
                // short last page read as padding (as in Prometheus).
                if self.cur >= self.segs.len() {
                    return Ok(false);
                }
                let at_eof = self.file.is_some() && self.page_len < PAGE_SIZE;
                if at_eof || !self.load_page()? {
                    // End of this segment: records never span segments.
                    if let Some(start) = rec_start {
                        return Err(self.corrupt(start, "last record is torn"));
                    }
                    self.file = None;
                    self.cur += 1;
                    self.page_pos = PAGE_SIZE;
                    self.page_len = 0;
                    continue;
                }
            }
            let pos = self.page_pos;
            let frag_off = self.page_off + pos as u64;
            let err_off = rec_start.unwrap_or(frag_off);
            let typ = self.page[pos];
            if typ == 0 || PAGE_SIZE - pos < HEADER_SIZE {
                // Padding to the end of the page.
                if let Some(start) = rec_start {
                    return Err(self.corrupt(start, "record torn: padding inside a record"));
                }
                if let Some(k) = self.page[pos..self.page_len].iter().position(|&b| b != 0) {
                    return Err(self.corrupt(
                        frag_off + k as u64,
                        "unexpected non-zero byte in padded page",
                    ));
                }
                self.page_pos = PAGE_SIZE;
                continue;
            }
            if typ & !(TYPE_MASK | SNAPPY_FLAG) != 0 {
                return Err(self.corrupt(err_off, format!("unsupported fragment flags {typ:#04x}")));
            }
            if pos + HEADER_SIZE > self.page_len {
                return Err(self.corrupt(err_off, "record torn: partial fragment header"));
            }
            let len = u16::from_be_bytes([self.page[pos + 1], self.page[pos + 2]]) as usize;
            let crc = u32::from_be_bytes([
                self.page[pos + 3],
                self.page[pos + 4],
                self.page[pos + 5],
                self.page[pos + 6],
            ]);
            let end = pos + HEADER_SIZE + len;
            if end > PAGE_SIZE {
                return Err(self.corrupt(err_off, format!("invalid fragment size {len}")));
            }
            if end > self.page_len {
                return Err(self.corrupt(err_off, "record torn: partial fragment data"));
            }
            let data = &self.page[pos + HEADER_SIZE..end];
            let got = crc32c::crc32c(data);
            if got != crc {
                return Err(self.corrupt(
                    err_off,
                    format!("unexpected checksum {got:08x}, expected {crc:08x}"),
                ));
            }
            let kind = typ & TYPE_MASK;
            let comp = typ & SNAPPY_FLAG != 0;
            // Continuations start a fresh page and are never empty: an empty
            // one is a zeroed header (crc32c of nothing is 0), i.e. a torn tail.
            if len == 0 && (kind == FRAG_MIDDLE || kind == FRAG_LAST) {
                return Err(self.corrupt(err_off, "empty continuation fragment"));
            }
            match kind {
                FRAG_FULL | FRAG_FIRST => {
                    if rec_start.is_some() {
                        let what = if kind == FRAG_FULL { "full" } else { "first" };
                        return Err(self.corrupt(err_off, format!("unexpected {what} fragment")));
                    }
                    rec_start = Some(frag_off);
                    compressed = comp;
                }
                FRAG_MIDDLE | FRAG_LAST => {
                    if rec_start.is_none() {
                        let what = if kind == FRAG_LAST { "last" } else { "middle" };
                        return Err(self.corrupt(err_off, format!("unexpected {what} fragment")));
                    }
                    if comp != compressed {
                        return Err(self.corrupt(err_off, "mixed compression in one record"));
                    }
                }
                _ => {
                    return Err(self.corrupt(err_off, format!("invalid fragment type {kind}")));
                }
            }
            if compressed {
                self.snappy_buf.extend_from_slice(data);
            } else {
                self.rec.extend_from_slice(data);
            }
            self.page_pos = end;
            if kind == FRAG_FULL || kind == FRAG_LAST {
                let start = rec_start.unwrap_or(frag_off);
                if compressed {
                    self.decompress(start)?;
                }
                if self.rec.is_empty() {
                    // Never written by Prometheus or us; typical of a zeroed tail.
                    return Err(self.corrupt(start, "empty record"));
                }
                self.last = (self.seg(), self.page_off + end as u64);
                return Ok(true);
            }
        }
    }

    fn decompress(&mut self, start: u64) -> Result<(), WalError> {
        let n = snap::raw::decompress_len(&self.snappy_buf)
            .map_err(|e| self.corrupt(start, format!("snappy: {e}")))?;
        // Snappy expands at most ~22x; refuse absurd lengths before allocating.
        if n > self.snappy_buf.len().saturating_mul(32) + 1024 {
            return Err(self.corrupt(start, format!("snappy: implausible length {n}")));
        }
        self.rec.clear();
        self.rec.resize(n, 0);
        match self.decoder.decompress(&self.snappy_buf, &mut self.rec) {
            Ok(k) => {
                self.rec.truncate(k);
                Ok(())
            }
            Err(e) => Err(self.corrupt(start, format!("snappy: {e}"))),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small_opts(compress: bool) -> WalOptions {
        WalOptions {
            segment_size: 4 * PAGE_SIZE,
            compress,
        }
    }

    /// Records read, and the error that stopped reading, if any.
    type ReadAll = Result<Vec<Vec<u8>>, (Vec<Vec<u8>>, WalError)>;

    fn read_all(dir: &Path) -> ReadAll {
        let mut r = Reader::open(dir).unwrap();
        let mut out = Vec::new();
        loop {
            match r.next() {
                Ok(Some(rec)) => out.push(rec.to_vec()),
                Ok(None) => return Ok(out),
                Err(e) => return Err((out, e)),
            }
        }
    }

    /// Deterministic pseudo-random record: sometimes compressible.
    fn make_record(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
        let compressible = seed % 3 == 0;
        (0..len)
            .map(|i| {
                if compressible {
                    (i % 17) as u8 ^ (seed as u8)
                } else {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                }
            })
            .collect()
    }

    fn sizes() -> Vec<usize> {
        let mut v = vec![1, 2, 100, PAGE_SIZE - 7, PAGE_SIZE - 8, PAGE_SIZE - 6];
        v.extend([PAGE_SIZE, PAGE_SIZE + 1, 3 * PAGE_SIZE + 5, 70_000]);
        for i in 0..60u64 {
            v.push(((i * 7919) % 5000) as usize + 1);
        }
        v
    }

    #[test]
    fn roundtrip_with_and_without_compression_across_segments() {
        for compress in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("wal");
            let recs: Vec<Vec<u8>> = sizes()
                .iter()
                .enumerate()
                .map(|(i, &n)| make_record(i as u64, n))
                .collect();
            let half = recs.len() / 2;
            {
                let mut w = Wal::open(&dir, small_opts(compress)).unwrap();
                for (i, r) in recs[..half].iter().enumerate() {
                    w.log(&[r]).unwrap();
                    if i % 5 == 0 {
                        w.flush().unwrap();
                    }
                }
                w.sync().unwrap();
            }
            {
                // Reopen: a new segment is started after the last one.
                let before = segments(&dir).unwrap().unwrap().1;
                let mut w = Wal::open(&dir, small_opts(compress)).unwrap();
                assert_eq!(w.current_segment(), before + 1);
                let rest: Vec<&[u8]> = recs[half..].iter().map(|r| r.as_slice()).collect();
                w.log(&rest).unwrap();
                w.close().unwrap();
            }
            let (first, last) = segments(&dir).unwrap().unwrap();
            assert_eq!(first, 0);
            assert!(last >= 2, "tiny segments should have rolled: {last}");
            let got = read_all(&dir).unwrap();
            assert_eq!(got.len(), recs.len());
            assert!(got == recs, "records differ (compress={compress})");
            // No segment beyond its size unless one record was bigger than a segment.
            for i in first..=last {
                let len = fs::metadata(segment_path(&dir, i)).unwrap().len() as usize;
                assert!(len <= 4 * PAGE_SIZE || len % PAGE_SIZE == 0);
            }
        }
    }

    #[test]
    fn known_layout_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut w = Wal::open(dir, small_opts(false)).unwrap();
        w.log(&[b"abc"]).unwrap();
        w.flush().unwrap();
        let b = fs::read(segment_path(dir, 0)).unwrap();
        let crc = crc32c::crc32c(b"abc").to_be_bytes();
        assert_eq!(b, [&[1u8, 0, 3][..], &crc, b"abc"].concat());
        // Fill the page to exactly 7 bytes left: a zero-length FIRST fragment ends it.
        let filler = vec![7u8; PAGE_SIZE - 10 - 14];
        w.log(&[&filler]).unwrap();
        w.log(&[b"0123456789"]).unwrap();
        w.flush().unwrap();
        let b = fs::read(segment_path(dir, 0)).unwrap();
        let p = PAGE_SIZE - 7;
        assert_eq!(&b[p..PAGE_SIZE], &[2u8, 0, 0, 0, 0, 0, 0]); // crc32c("") = 0
        let crc = crc32c::crc32c(b"0123456789").to_be_bytes();
        assert_eq!(
            &b[PAGE_SIZE..],
            &[&[4u8, 0, 10][..], &crc, b"0123456789"].concat()[..]
        );
        // Fewer than 7 bytes left: the page is zero padded.
        let filler = vec![9u8; PAGE_SIZE - 17 - 7 - 3];
        w.log(&[&filler]).unwrap();
        w.log(&[b"x"]).unwrap();
        w.close().unwrap();
        let b = fs::read(segment_path(dir, 0)).unwrap();
        assert_eq!(b.len(), 3 * PAGE_SIZE);
        assert_eq!(&b[2 * PAGE_SIZE - 3..2 * PAGE_SIZE], &[0, 0, 0]);
        assert_eq!(b[2 * PAGE_SIZE], 1);
        assert_eq!(read_all(dir).unwrap().len(), 5);
    }

    #[test]
    fn compressed_flag_set_only_when_smaller() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        w.log(&[&[0u8; 1000][..], &b"ab"[..]]).unwrap();
        w.flush().unwrap();
        let b = fs::read(segment_path(tmp.path(), 0)).unwrap();
        assert_eq!(b[0], FRAG_FULL | SNAPPY_FLAG);
        let l = u16::from_be_bytes([b[1], b[2]]) as usize;
        assert_eq!(b[7 + l], FRAG_FULL);
        let got = read_all(tmp.path()).unwrap();
        assert_eq!(got, vec![vec![0u8; 1000], b"ab".to_vec()]);
    }

    fn write_recs(dir: &Path, recs: &[Vec<u8>], compress: bool) {
        let mut w = Wal::open(dir, small_opts(compress)).unwrap();
        for r in recs {
            w.log(&[r]).unwrap();
        }
        w.flush().unwrap();
    }

    /// Cut the last record at every byte (and zero-fill instead of cut):
    /// corruption is reported at the record's start, and repair keeps
    /// every earlier record.
    #[test]
    fn torn_tail_every_offset_then_repair() {
        for (compress, last_len) in [(false, 40_000), (true, 300), (false, 9)] {
            let src = tempfile::tempdir().unwrap();
            let mut recs: Vec<Vec<u8>> = (0..5).map(|i| make_record(i + 1, 3000)).collect();
            recs.push(make_record(3, last_len));
            write_recs(src.path(), &recs, compress);
            let seg = segment_path(src.path(), 0);
            let full = fs::read(&seg).unwrap();
            // Where the last record starts: end of the record before it.
            let mut r = Reader::open(src.path()).unwrap();
            for _ in 0..5 {
                r.next().unwrap().unwrap();
            }
            let start = r.offset() as usize;
            // Every byte for small records; for the page-spanning one, a
            // stride plus every byte around its start and the page boundary.
            let cuts: Vec<usize> = (start..full.len())
                .filter(|&c| {
                    last_len < 1000 || c % 197 == 0 || c < start + 16 || c.abs_diff(PAGE_SIZE) <= 16
                })
                .collect();
            for cut in cuts {
                for zero_fill in [false, true] {
                    let tmp = tempfile::tempdir().unwrap();
                    let mut b = full[..cut].to_vec();
                    if zero_fill {
                        b.resize(full.len(), 0);
                        if b == full {
                            continue; // the cut-off bytes were zeros already
                        }
                    }
                    fs::write(segment_path(tmp.path(), 0), &b).unwrap();
                    match read_all(tmp.path()) {
                        Ok(got) => {
                            assert_eq!(
                                cut,
                                start,
                                "torn tail undetected at {cut} zero_fill={zero_fill} len={}",
                                full.len()
                            );
                            assert_eq!(got, recs[..5]);
                        }
                        Err((got, e)) => {
                            assert_eq!(got, recs[..5], "cut {cut}");
                            let WalError::Corruption {
                                segment, offset, ..
                            } = e
                            else {
                                panic!("{e}")
                            };
                            assert_eq!((segment, offset), (0, start as u64), "cut {cut}");
                            repair(tmp.path(), segment, offset).unwrap();
                            assert_eq!(read_all(tmp.path()).unwrap(), recs[..5]);
                            if cut % 11 != 0 {
                                continue; // the reopen check below is fsync-heavy
                            }
                            // And the WAL is writable again after repair.
                            let mut w = Wal::open(tmp.path(), small_opts(compress)).unwrap();
                            w.log(&[b"after"]).unwrap();
                            w.close().unwrap();
                            let got = read_all(tmp.path()).unwrap();
                            assert_eq!(got.len(), 6);
                            assert_eq!(got[5], b"after");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn flipped_byte_reports_segment_and_repair_drops_later_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let recs: Vec<Vec<u8>> = (0..40).map(|i| make_record(i + 7, 9000)).collect();
        write_recs(tmp.path(), &recs, false);
        let (_, last) = segments(tmp.path()).unwrap().unwrap();
        assert!(last >= 2);
        // Records per segment, via the reader's positions.
        let mut r = Reader::open(tmp.path()).unwrap();
        let mut before = 0;
        while r.next().unwrap().is_some() {
            if r.segment() == 0 {
                before += 1;
            }
        }
        let p = segment_path(tmp.path(), 1);
        let mut b = fs::read(&p).unwrap();
        b[20_000] ^= 0x40;
        fs::write(&p, &b).unwrap();
        let (got, e) = read_all(tmp.path()).unwrap_err();
        let WalError::Corruption {
            segment, offset, ..
        } = e
        else {
            panic!("{e}")
        };
        assert_eq!(segment, 1);
        assert!(got.len() > before && got[..] == recs[..got.len()]);
        repair(tmp.path(), segment, offset).unwrap();
        assert_eq!(segments(tmp.path()).unwrap(), Some((0, 1)));
        assert_eq!(read_all(tmp.path()).unwrap(), got);
    }

    /// A write failing at any byte (disk full) leaves no trace of the failed
    /// batch, even across a segment switch; retrying then succeeds.
    #[test]
    fn failed_writes_roll_back() {
        // The batch overflows the 4-page segment, so some failures hit after
        // the switch to a new segment.
        let batch: Vec<Vec<u8>> = (0..6).map(|i| make_record(i + 100, 20_000)).collect();
        let before: Vec<Vec<u8>> = (0..3).map(|i| make_record(i + 200, 9_000)).collect();
        let mut failures = 0;
        for fail_at in (0..160_000)
            .step_by(3_331)
            .chain([1, 6, 7, 27_000, 131_072 - 27_017])
        {
            let tmp = tempfile::tempdir().unwrap();
            let mut w = Wal::open(tmp.path(), small_opts(false)).unwrap();
            w.log(&before).unwrap();
            w.flush().unwrap();
            w.log(&[&make_record(7, 3)]).unwrap(); // unflushed bytes in the page
            let seg_before = w.current_segment();
            w.fail_after = Some(fail_at);
            if let Err(e) = w.log(&batch) {
                failures += 1;
                assert!(e.is_disk_full(), "{e}");
                assert_eq!(w.current_segment(), seg_before);
                w.fail_after = None;
                w.log(&batch).unwrap();
            }
            // A failing flush keeps the buffered page for a retry.
            w.fail_after = Some(fail_at % 5_000);
            if let Err(e) = w.flush() {
                assert!(e.is_disk_full(), "{e}");
                w.fail_after = None;
                w.flush().unwrap();
            }
            w.fail_after = None;
            let mut want = before.clone();
            want.push(make_record(7, 3));
            want.extend(batch.iter().cloned());
            w.close().unwrap();
            let got =
                read_all(tmp.path()).unwrap_or_else(|(_, e)| panic!("fail_at {fail_at}: {e}"));
            assert_eq!(got.len(), want.len(), "fail_at {fail_at}");
            assert!(got == want, "fail_at {fail_at}");
            assert_eq!(segments(tmp.path()).unwrap(), Some((0, 1)));
        }
        assert!(failures > 30, "{failures}");
    }

    #[test]
    fn garbage_and_gaps() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("checkpoint.00000003")).unwrap();
        fs::write(tmp.path().join("00000001.repair"), b"x").unwrap();
        assert_eq!(segments(tmp.path()).unwrap(), None);
        fs::write(segment_path(tmp.path(), 3), [0x81u8, 0, 0]).unwrap();
        assert_eq!(segments(tmp.path()).unwrap(), Some((3, 3)));
        let (_, e) = read_all(tmp.path()).unwrap_err();
        assert!(e.is_corruption(), "{e}");
        fs::write(segment_path(tmp.path(), 5), b"").unwrap();
        assert!(matches!(
            segments(tmp.path()),
            Err(WalError::NotSequential(_))
        ));
        assert!(matches!(
            Wal::open(
                tmp.path(),
                WalOptions {
                    segment_size: 1000,
                    compress: false
                }
            ),
            Err(WalError::InvalidSegmentSize(1000))
        ));
        let e = WalError::io("write", Path::new("x"), io::Error::from_raw_os_error(28));
        assert!(e.is_disk_full());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn prop_reader_never_panics(data in prop::collection::vec(any::<u8>(), 0..3000), flip in any::<usize>()) {
            let tmp = tempfile::tempdir().unwrap();
            let mut w = Wal::open(tmp.path(), small_opts(true)).unwrap();
            w.log(&[&data[..], &b"tail"[..]]).unwrap();
            w.flush().unwrap();
            let p = segment_path(tmp.path(), 0);
            let mut b = fs::read(&p).unwrap();
            let i = flip % b.len();
            b[i] = b[i].wrapping_add(1 + (flip >> 20) as u8 % 255);
            fs::write(&p, &b).unwrap();
            let _ = read_all(tmp.path());
        }

        #[test]
        fn prop_roundtrip_random_sizes(
            lens in prop::collection::vec(prop_oneof![1usize..200, 1usize..40_000, (PAGE_SIZE - 20)..(PAGE_SIZE + 20)], 1..25),
            compress in any::<bool>(),
            flush_every in 1usize..5,
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let recs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &n)| make_record(i as u64 * 31 + n as u64, n)).collect();
            let mut w = Wal::open(tmp.path(), small_opts(compress)).unwrap();
            for (i, r) in recs.iter().enumerate() {
                w.log(&[r]).unwrap();
                if i % flush_every == 0 { w.flush().unwrap(); }
            }
            drop(w);
            prop_assert!(read_all(tmp.path()).unwrap() == recs);
        }
    }
}

/// Cross-check with Prometheus itself: `promtool tsdb dump` (2.42) must
/// replay a WAL written by us. Skipped when promtool is not installed.
#[cfg(test)]
mod promtool_tests {
    use super::*;
    use crate::tsdb::record::{encode_samples, encode_series, RefSample};
    use std::process::Command;

    fn promtool() -> Option<&'static str> {
        let p = "/usr/bin/promtool";
        Path::new(p).exists().then_some(p)
    }

    /// Our reader and record decoder on a WAL written by a real Prometheus
    /// 2.42 (snappy by Go). Run with
    /// `RINGEST_PROM_WAL=<data>/wal cargo test -- --ignored`.
    #[test]
    #[ignore]
    fn read_prometheus_wal() {
        use crate::tsdb::record::{decode, Record};
        let dir = std::env::var("RINGEST_PROM_WAL").expect("set RINGEST_PROM_WAL");
        let mut r = Reader::open(Path::new(&dir)).unwrap();
        let (mut series, mut samples, mut other) = (0, 0, 0);
        let mut seen_up = false;
        while let Some(rec) = r.next().unwrap() {
            match decode(rec).unwrap() {
                Record::Series(s) => {
                    series += s.len();
                    seen_up |= s.iter().any(|s| s.labels.contains(&("__name__", "up")));
                }
                Record::Samples(s) => samples += s.len(),
                Record::Unknown(_) => other += 1,
            }
        }
        eprintln!("prometheus wal: {series} series, {samples} samples, {other} other records");
        assert!(seen_up && series > 0 && samples > 0);
    }

    /// Re-logging the records of a real Prometheus WAL segment through our
    /// writer must reproduce the segment file. Run with
    /// `RINGEST_PROM_WAL=<data>/wal cargo test -- --ignored` on a WAL of one
    /// segment from a cleanly stopped Prometheus.
    #[test]
    #[ignore]
    fn relog_prometheus_wal_identical() {
        let dir = std::env::var("RINGEST_PROM_WAL").expect("set RINGEST_PROM_WAL");
        let dir = Path::new(&dir);
        let orig = fs::read(segment_path(dir, 0)).unwrap();
        let mut r = Reader::open_range(dir, Some(0), Some(0)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut w = Wal::open(tmp.path(), WalOptions::default()).unwrap();
        let mut n = 0;
        let mut buf = Vec::new();
        while let Some(rec) = r.next().unwrap() {
            // Our record encoders reproduce Prometheus's records too.
            buf.clear();
            match crate::tsdb::record::decode(rec).unwrap() {
                crate::tsdb::record::Record::Series(s) => {
                    crate::tsdb::record::encode_series(
                        s.iter().map(|s| (s.r#ref, s.labels.iter().copied())),
                        &mut buf,
                    );
                    assert_eq!(&buf[..], rec, "series record {n}");
                }
                crate::tsdb::record::Record::Samples(s) => {
                    crate::tsdb::record::encode_samples(&s, &mut buf);
                    assert_eq!(&buf[..], rec, "samples record {n}");
                }
                crate::tsdb::record::Record::Unknown(_) => {}
            }
            w.log(&[rec]).unwrap();
            n += 1;
        }
        w.close().unwrap();
        let ours = fs::read(segment_path(tmp.path(), 0)).unwrap();
        let first_diff = ours.iter().zip(&orig).position(|(a, b)| a != b);
        assert_eq!(
            (ours.len(), first_diff),
            (orig.len(), None),
            "{n} records re-logged"
        );
        eprintln!(
            "{n} records re-logged byte-identically ({} bytes)",
            ours.len()
        );
    }

    #[test]
    fn promtool_dumps_our_wal() {
        let Some(promtool) = promtool() else {
            eprintln!("promtool not installed; skipping");
            return;
        };
        for compress in [true, false] {
            let tmp = tempfile::tempdir().unwrap();
            let wal_dir = tmp.path().join("wal");
            let mut w = Wal::open(
                &wal_dir,
                WalOptions {
                    segment_size: 2 * PAGE_SIZE,
                    compress,
                },
            )
            .unwrap();
            let mut buf = Vec::new();
            encode_series(
                [
                    (1u64, vec![("__name__", "up"), ("job", "a")]),
                    (2u64, vec![("__name__", "up"), ("job", "b")]),
                ],
                &mut buf,
            );
            w.log(&[&buf]).unwrap();
            // Enough samples that records span pages and segments.
            let t0 = 1_700_000_000_000i64;
            let mut want = Vec::new();
            for batch in 0..60i64 {
                let mut s = Vec::new();
                for i in 0..300i64 {
                    let k = batch * 300 + i;
                    let r = 1 + (k % 2) as u64;
                    let v = (k * 7919 % 100_003) as f64 / 7.0;
                    s.push(RefSample {
                        r#ref: r,
                        t: t0 + (k / 2) * 15_000,
                        v,
                    });
                    let job = if r == 1 { "a" } else { "b" };
                    want.push(format!(
                        "{{__name__=\"up\", job=\"{job}\"}} {v} {}",
                        t0 + (k / 2) * 15_000
                    ));
                }
                buf.clear();
                encode_samples(&s, &mut buf);
                w.log(&[&buf]).unwrap();
                if batch % 3 == 0 {
                    w.flush().unwrap();
                }
            }
            w.sync().unwrap();
            drop(w);
            assert!(
                segments(&wal_dir).unwrap().unwrap().1 >= 1,
                "want several segments"
            );
            let out = Command::new(promtool)
                .args(["tsdb", "dump"])
                .arg(tmp.path())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "promtool failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut got: Vec<&str> = stdout.lines().collect();
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got.len(), want.len(), "compress={compress}");
            assert_eq!(got, want, "compress={compress}");
        }
    }
}
