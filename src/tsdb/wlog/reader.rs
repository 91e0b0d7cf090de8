//! The WAL reader (Prometheus `reader.go`): reassembles fragments, checks CRCs, decompresses,
//! and reports a torn or damaged record at the offset where it starts.

use super::segments::{list_segments, segment_path};
use super::*;
use std::fs::File;
use std::io::Read;

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
