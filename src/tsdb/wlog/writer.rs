//! The WAL writer (Prometheus `wlog.go`): pages, fragments, compression, undo of failed writes.

use super::segments::{create_segment, fsync_dir, segment_path, segments};
use super::*;
use std::fs::{self, File, OpenOptions};
use std::io::Write;

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
    pub(super) fail_after: Option<usize>,
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
