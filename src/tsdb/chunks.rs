//! Prometheus chunk segment files (`<block>/chunks/000001`, ...), as `tsdb/chunks/chunks.go`.
//!
//! A segment starts with an 8-byte header (magic `0x85BD40DD`, version 1, 3 zero bytes); each chunk is
//! `uvarint(len(data)) | encoding byte | data | CRC32C(encoding | data)` (big-endian CRC). A chunk
//! reference is `(0-based segment index << 32) | byte offset in that segment`. The reader keeps the
//! segment files open and reads each chunk with a positioned read (`ByteSource`).

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::tsdb::block::BlockError;

/// Magic number at the start of every chunk segment file.
pub const MAGIC_CHUNKS: u32 = 0x85BD_40DD;
/// Chunk segment format version.
pub const CHUNKS_FORMAT_V1: u8 = 1;
/// Size of the segment header (magic, version, padding).
pub const SEGMENT_HEADER_SIZE: u64 = 8;
/// Default maximum size of a segment file (Prometheus `DefaultChunkSegmentSize`, 512 MiB).
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;
/// Encoding byte of an XOR chunk.
pub const ENCODING_XOR: u8 = 1;

/// Appends LEB128 `v` to `out`.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends zigzag LEB128 `v` to `out`.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads a LEB128 value at `*pos`, advancing it; `None` when truncated or longer than 10 bytes.
pub(crate) fn get_uvarint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Reads a zigzag LEB128 value at `*pos`, advancing it.
pub(crate) fn get_varint(b: &[u8], pos: &mut usize) -> Option<i64> {
    let u = get_uvarint(b, pos)?;
    Some(((u >> 1) as i64) ^ -((u & 1) as i64))
}

/// Name of the segment with 1-based sequence `n` (`%06d`).
pub fn segment_name(n: u32) -> String {
    format!("{n:06}")
}

/// Writes chunks into numbered segment files of one block's `chunks/` directory.
pub struct ChunkWriter {
    dir: PathBuf,
    max_segment_size: u64,
    cur: Option<BufWriter<File>>,
    /// 0-based index of the current segment.
    index: u32,
    pos: u64,
    files: Vec<PathBuf>,
    scratch: Vec<u8>,
}

impl ChunkWriter {
    /// A writer creating `dir` (if needed) with the default 512 MiB segment size.
    pub fn new(dir: &Path) -> Result<ChunkWriter, BlockError> {
        Self::with_segment_size(dir, DEFAULT_MAX_SEGMENT_SIZE)
    }

    /// A writer cutting a new segment once the next chunk would pass `max_segment_size` bytes.
    pub fn with_segment_size(dir: &Path, max_segment_size: u64) -> Result<ChunkWriter, BlockError> {
        std::fs::create_dir_all(dir).map_err(|e| BlockError::io(dir, e))?;
        Ok(ChunkWriter {
            dir: dir.to_path_buf(),
            max_segment_size,
            cur: None,
            index: 0,
            pos: 0,
            files: Vec::new(),
            scratch: Vec::new(),
        })
    }

    fn finish_segment(&mut self) -> Result<(), BlockError> {
        if let Some(w) = self.cur.take() {
            let path = self.files.last().cloned().unwrap_or_default();
            let f = w
                .into_inner()
                .map_err(|e| BlockError::io(&path, e.into_error()))?;
            f.sync_all().map_err(|e| BlockError::io(&path, e))?;
        }
        Ok(())
    }

    fn cut(&mut self) -> Result<(), BlockError> {
        if self.cur.is_some() {
            self.finish_segment()?;
            self.index += 1;
        }
        let path = self.dir.join(segment_name(self.index + 1));
        let f = File::create(&path).map_err(|e| BlockError::io(&path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut hdr = [0u8; SEGMENT_HEADER_SIZE as usize];
        hdr[..4].copy_from_slice(&MAGIC_CHUNKS.to_be_bytes());
        hdr[4] = CHUNKS_FORMAT_V1;
        w.write_all(&hdr).map_err(|e| BlockError::io(&path, e))?;
        self.pos = SEGMENT_HEADER_SIZE;
        self.cur = Some(w);
        self.files.push(path);
        Ok(())
    }

    /// Writes one XOR chunk (`data` = chunk bytes) and returns its chunk reference.
    pub fn write_chunk(&mut self, data: &[u8]) -> Result<u64, BlockError> {
        self.scratch.clear();
        put_uvarint(&mut self.scratch, data.len() as u64);
        let len = self.scratch.len() as u64 + 1 + data.len() as u64 + 4;
        let full = self.pos + len > self.max_segment_size && self.pos > SEGMENT_HEADER_SIZE;
        if self.cur.is_none() || full {
            self.cut()?;
        }
        let mut crc = crc32c::crc32c(&[ENCODING_XOR]);
        crc = crc32c::crc32c_append(crc, data);
        self.scratch.push(ENCODING_XOR);
        let reference = (u64::from(self.index) << 32) | self.pos;
        let path = self.files.last().cloned().unwrap_or_default();
        let w = self
            .cur
            .as_mut()
            .ok_or_else(|| BlockError::Corrupt("no open segment".into()))?;
        w.write_all(&self.scratch)
            .and_then(|_| w.write_all(data))
            .and_then(|_| w.write_all(&crc.to_be_bytes()))
            .map_err(|e| BlockError::io(&path, e))?;
        self.pos += len;
        Ok(reference)
    }

    /// Flushes and fsyncs every segment and the directory; returns the segment paths in order.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, BlockError> {
        self.finish_segment()?;
        sync_dir(&self.dir)?;
        Ok(std::mem::take(&mut self.files))
    }
}

/// Fsyncs a directory so that entries created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), BlockError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BlockError::io(dir, e))
}

/// Bytes read by offset from a file kept open (nothing of it held in memory) or from a buffer.
///
/// Every read is bounds-checked against the length seen at open, so a corrupt length or offset is a
/// [`BlockError::Corrupt`] naming the file, never a panic nor a huge allocation. An open file stays
/// readable after its directory is deleted (Linux semantics), so a query can outlive retention.
pub(crate) struct ByteSource {
    path: PathBuf,
    len: u64,
    inner: SourceInner,
}

enum SourceInner {
    Mem(Vec<u8>),
    File(File),
}

impl ByteSource {
    /// Opens `path` for positioned reads.
    pub(crate) fn open(path: &Path) -> Result<ByteSource, BlockError> {
        let file = File::open(path).map_err(|e| BlockError::io(path, e))?;
        let len = file.metadata().map_err(|e| BlockError::io(path, e))?.len();
        Ok(ByteSource {
            path: path.to_path_buf(),
            len,
            inner: SourceInner::File(file),
        })
    }

    /// Wraps bytes held in memory; `name` stands for the file in error messages.
    pub(crate) fn from_vec(name: &str, b: Vec<u8>) -> ByteSource {
        ByteSource {
            path: PathBuf::from(name),
            len: b.len() as u64,
            inner: SourceInner::Mem(b),
        }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// A [`BlockError::Corrupt`] naming this file.
    pub(crate) fn corrupt(&self, what: impl fmt::Display) -> BlockError {
        BlockError::Corrupt(format!("{}: {what}", self.path.display()))
    }

    /// Exactly `len` bytes at `off`; corrupt if they pass the end.
    pub(crate) fn read(&self, off: u64, len: u64) -> Result<Vec<u8>, BlockError> {
        let end = off
            .checked_add(len)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                self.corrupt(format_args!(
                    "{len} bytes at offset {off} pass the end ({} bytes)",
                    self.len
                ))
            })?;
        match &self.inner {
            SourceInner::Mem(b) => Ok(b[off as usize..end as usize].to_vec()),
            SourceInner::File(f) => {
                let mut buf = vec![0u8; len as usize];
                f.read_exact_at(&mut buf, off)
                    .map_err(|e| BlockError::io(&self.path, e))?;
                Ok(buf)
            }
        }
    }

    /// Up to `max` bytes at `off` (fewer at the end of the file); corrupt if `off` is past the end.
    pub(crate) fn read_upto(&self, off: u64, max: u64) -> Result<Vec<u8>, BlockError> {
        if off > self.len {
            return Err(self.corrupt(format_args!(
                "offset {off} past the end ({} bytes)",
                self.len
            )));
        }
        self.read(off, max.min(self.len - off))
    }

    /// The record at `off` made of a uvarint `n`, then `n + extra` bytes: returns all its bytes
    /// (`b[..p]` the uvarint, `b[p..]` the rest) and `p`. Reads `guess` bytes first, and a second
    /// time only when the record is longer.
    pub(crate) fn read_record(
        &self,
        off: u64,
        extra: u64,
        guess: u64,
    ) -> Result<(Vec<u8>, usize), BlockError> {
        let mut b = self.read_upto(off, guess)?;
        let mut p = 0;
        let total = get_uvarint(&b, &mut p)
            .and_then(|n| n.checked_add(p as u64 + extra))
            .filter(|&t| t <= self.len - off)
            .ok_or_else(|| {
                self.corrupt(format_args!(
                    "record at offset {off}: bad length or past the end"
                ))
            })?;
        if (b.len() as u64) < total {
            b = self.read(off, total)?;
        }
        b.truncate(total as usize);
        Ok((b, p))
    }
}

/// `seg` if it starts with a chunks segment header (magic, format 1).
fn checked_segment(seg: ByteSource) -> Result<ByteSource, BlockError> {
    let hdr = seg
        .read(0, SEGMENT_HEADER_SIZE)
        .map_err(|_| seg.corrupt("segment shorter than its header"))?;
    if hdr[..4] != MAGIC_CHUNKS.to_be_bytes() || hdr[4] != CHUNKS_FORMAT_V1 {
        return Err(seg.corrupt("bad segment header"));
    }
    Ok(seg)
}

/// Reads chunks back from a block's `chunks/` directory; segment files are kept open, not loaded.
pub struct ChunkReader {
    segments: Vec<ByteSource>,
}

/// How many bytes a first read of a chunk fetches (a 120-sample chunk is ~150 bytes).
const CHUNK_READ_GUESS: u64 = 512;

impl ChunkReader {
    /// Opens every segment file in `dir`, in name order, and checks their headers.
    pub fn open(dir: &Path) -> Result<ChunkReader, BlockError> {
        // Like Prometheus's `sequenceFiles`: only numbered files are segments, in number order
        // (anything else, e.g. a stray upload staging file, is not part of the block).
        let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(|e| BlockError::io(dir, e))?
            .filter_map(|e| {
                let e = e.ok()?;
                let n = e.file_name().to_str()?.parse::<u64>().ok()?;
                Some((n, e.path()))
            })
            .collect();
        names.sort();
        let segments = names
            .iter()
            .map(|(_, p)| checked_segment(ByteSource::open(p)?))
            .collect::<Result<_, _>>()?;
        Ok(ChunkReader { segments })
    }

    /// Reader over segment files held in memory, `segments[i]` standing for the file numbered
    /// `i + 1`; checks their headers like [`Self::open`]. For fuzzing and tests: a block on disk
    /// is read with [`Self::open`].
    pub fn from_segments(segments: Vec<Vec<u8>>) -> Result<ChunkReader, BlockError> {
        let segments = segments
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let name = segment_name(u32::try_from(i + 1).unwrap_or(u32::MAX));
                checked_segment(ByteSource::from_vec(&name, b))
            })
            .collect::<Result<_, _>>()?;
        Ok(ChunkReader { segments })
    }

    /// Number of segment files.
    pub fn num_segments(&self) -> usize {
        self.segments.len()
    }

    /// The XOR chunk bytes at `reference`, after checking the encoding and CRC.
    pub fn chunk(&self, reference: u64) -> Result<Vec<u8>, BlockError> {
        let Some(seg) = self.segments.get((reference >> 32) as usize) else {
            return Err(BlockError::Corrupt(format!(
                "chunk ref {reference:#x}: no segment {} of {}",
                (reference >> 32) + 1,
                self.segments.len()
            )));
        };
        let bad = |m: &str| seg.corrupt(format_args!("chunk ref {reference:#x}: {m}"));
        let off = reference & 0xffff_ffff;
        if off < SEGMENT_HEADER_SIZE {
            return Err(bad("offset inside the segment header"));
        }
        let (mut b, pos) = seg.read_record(off, 1 + 4, CHUNK_READ_GUESS)?;
        let end = b.len();
        if b[pos] != ENCODING_XOR {
            return Err(bad("unknown encoding"));
        }
        let want = u32::from_be_bytes([b[end - 4], b[end - 3], b[end - 2], b[end - 1]]);
        if crc32c::crc32c(&b[pos..end - 4]) != want {
            return Err(bad("checksum mismatch"));
        }
        b.truncate(end - 4);
        b.drain(..pos + 1);
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 1 << 40, i64::MIN, i64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut p = 0;
            assert_eq!(get_varint(&b, &mut p), Some(v));
            assert_eq!(p, b.len());
        }
        let mut b = Vec::new();
        put_uvarint(&mut b, 300);
        assert_eq!(b, [0xac, 0x02]);
    }

    #[test]
    fn segments_are_cut_and_refs_are_zero_based() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("chunks");
        let mut w = ChunkWriter::with_segment_size(&cdir, 64).unwrap();
        let data: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 30]).collect();
        let refs: Vec<u64> = data.iter().map(|d| w.write_chunk(d).unwrap()).collect();
        let files = w.finish().unwrap();
        assert_eq!(files.len(), 5);
        assert_eq!(files[0].file_name().unwrap(), "000001");
        assert_eq!(refs[0], 8);
        assert_eq!(refs[1], (1 << 32) | 8);
        let r = ChunkReader::open(&cdir).unwrap();
        for (d, rf) in data.iter().zip(&refs) {
            assert_eq!(r.chunk(*rf).unwrap(), &d[..]);
        }
        // Two small chunks fit in one segment.
        let cdir2 = dir.path().join("c2");
        let mut w = ChunkWriter::with_segment_size(&cdir2, 1024).unwrap();
        let a = w.write_chunk(&[1, 2, 3]).unwrap();
        let b = w.write_chunk(&[4]).unwrap();
        assert_eq!((a, b), (8, 8 + 1 + 1 + 3 + 4));
        w.finish().unwrap();
        let raw = std::fs::read(cdir2.join("000001")).unwrap();
        assert_eq!(&raw[..8], &[0x85, 0xBD, 0x40, 0xDD, 1, 0, 0, 0]);
    }
}
