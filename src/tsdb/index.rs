//! Prometheus TSDB index, format version 2, as written by `tsdb/index/index.go`.
//!
//! Layout: magic `0xBAAAD700`, version byte 2, symbols, series (16-byte aligned, id = offset / 16),
//! postings lists (4-byte aligned; the all-series list under `("", "")` first, then by (name, value)),
//! postings offset table, TOC. As in current Prometheus no label indices nor label offset table are
//! written: the TOC's label-indices entry equals its postings entry (the end of the series, before the
//! postings' 4-byte padding) and its label-offset-table entry equals the postings offset table's.
//!
//! The writer builds the whole index in memory before writing it (fine for one tenant's 2 h block;
//! a streaming writer can replace it later without changing the format).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::tsdb::block::BlockError;
use crate::tsdb::chunks::{get_uvarint, get_varint, put_uvarint, put_varint};
use crate::tsdb::labels::Labels;

/// Magic number at the start of an index file.
pub const MAGIC_INDEX: u32 = 0xBAAA_D700;
/// The index format version written (2).
pub const FORMAT_V2: u8 = 2;
/// Length of the table of contents at the end of the file (six offsets + CRC).
pub const TOC_LEN: usize = 6 * 8 + 4;

/// A chunk as referenced from the index: inclusive time range and chunk reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexChunk {
    /// Timestamp of the first sample.
    pub mint: i64,
    /// Timestamp of the last sample (inclusive).
    pub maxt: i64,
    /// Chunk reference: `(segment index << 32) | offset`.
    pub reference: u64,
}

/// Offsets of the index sections, as stored in the TOC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Toc {
    /// Start of the symbol table.
    pub symbols: u64,
    /// Start of the series section.
    pub series: u64,
    /// Where label indices would start (equals `postings`: none are written).
    pub label_indices: u64,
    /// Where the label offset table would start (equals `postings_table`).
    pub label_indices_table: u64,
    /// Start of the postings section (before its 4-byte alignment padding).
    pub postings: u64,
    /// Start of the postings offset table.
    pub postings_table: u64,
}

fn pad(buf: &mut Vec<u8>, n: usize) {
    let rem = buf.len() % n;
    if rem != 0 {
        buf.resize(buf.len() + n - rem, 0);
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Fills the 4-byte length at `start` (bytes after it) and appends the CRC32C of those bytes.
fn close_section(buf: &mut Vec<u8>, start: usize) -> Result<(), BlockError> {
    let len = u32::try_from(buf.len() - start - 4)
        .map_err(|_| BlockError::TooLarge("index section over 4 GiB".into()))?;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&buf[start + 4..]);
    buf.extend_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Encodes an index for `series` (which must be strictly sorted by labels, chunks in time order).
pub fn encode_index(series: &[(&Labels, Vec<IndexChunk>)]) -> Result<Vec<u8>, BlockError> {
    for w in series.windows(2) {
        if w[0].0 >= w[1].0 {
            return Err(BlockError::OutOfOrder(w[1].0.to_string()));
        }
    }
    let mut buf = Vec::with_capacity(1 << 16);
    buf.extend_from_slice(&MAGIC_INDEX.to_be_bytes());
    buf.push(FORMAT_V2);
    let mut toc = Toc::default();

    // Symbols: every label name and value, plus "" (the name and value of the all-postings key):
    // Prometheus's head lists it among its symbols, so the blocks it writes contain it.
    let mut syms: BTreeSet<&str> = BTreeSet::new();
    syms.insert("");
    for (ls, _) in series {
        for (n, v) in ls.iter() {
            syms.insert(n);
            syms.insert(v);
        }
    }
    toc.symbols = buf.len() as u64;
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&(syms.len() as u32).to_be_bytes());
    let mut sym_ref: HashMap<&str, u32> = HashMap::with_capacity(syms.len());
    for (i, s) in syms.iter().enumerate() {
        put_str(&mut buf, s);
        sym_ref.insert(s, i as u32);
    }
    close_section(&mut buf, start)?;

    // Series.
    toc.series = buf.len() as u64;
    let mut all: Vec<u32> = Vec::with_capacity(series.len());
    let mut postings: BTreeMap<(&str, &str), Vec<u32>> = BTreeMap::new();
    let mut entry = Vec::new();
    for (ls, chunks) in series {
        pad(&mut buf, 16);
        let id = u32::try_from(buf.len() / 16)
            .map_err(|_| BlockError::TooLarge("series section over 64 GiB".into()))?;
        all.push(id);
        entry.clear();
        put_uvarint(&mut entry, ls.len() as u64);
        for (n, v) in ls.iter() {
            put_uvarint(&mut entry, u64::from(sym_ref[n]));
            put_uvarint(&mut entry, u64::from(sym_ref[v]));
            postings.entry((n, v)).or_default().push(id);
        }
        put_uvarint(&mut entry, chunks.len() as u64);
        if let Some(first) = chunks.first() {
            put_varint(&mut entry, first.mint);
            put_uvarint(&mut entry, first.maxt.wrapping_sub(first.mint) as u64);
            put_uvarint(&mut entry, first.reference);
            let (mut t0, mut ref0) = (first.maxt, first.reference as i64);
            for c in &chunks[1..] {
                put_uvarint(&mut entry, c.mint.wrapping_sub(t0) as u64);
                put_uvarint(&mut entry, c.maxt.wrapping_sub(c.mint) as u64);
                t0 = c.maxt;
                put_varint(&mut entry, (c.reference as i64).wrapping_sub(ref0));
                ref0 = c.reference as i64;
            }
        }
        put_uvarint(&mut buf, entry.len() as u64);
        buf.extend_from_slice(&entry);
        buf.extend_from_slice(&crc32c::crc32c(&entry).to_be_bytes());
    }

    // Postings.
    toc.label_indices = buf.len() as u64;
    toc.postings = buf.len() as u64;
    pad(&mut buf, 4);
    let mut offsets: Vec<(&str, &str, u64)> = Vec::with_capacity(postings.len() + 1);
    let lists = std::iter::once((("", ""), &all)).chain(postings.iter().map(|(k, v)| (*k, v)));
    for ((n, v), ids) in lists {
        pad(&mut buf, 4);
        offsets.push((n, v, buf.len() as u64));
        let start = buf.len();
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            buf.extend_from_slice(&id.to_be_bytes());
        }
        close_section(&mut buf, start)?;
    }

    // Postings offset table.
    toc.label_indices_table = buf.len() as u64;
    toc.postings_table = buf.len() as u64;
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&(offsets.len() as u32).to_be_bytes());
    for (n, v, off) in &offsets {
        put_uvarint(&mut buf, 2);
        put_str(&mut buf, n);
        put_str(&mut buf, v);
        put_uvarint(&mut buf, *off);
    }
    close_section(&mut buf, start)?;

    // TOC.
    let start = buf.len();
    for o in [
        toc.symbols,
        toc.series,
        toc.label_indices,
        toc.label_indices_table,
        toc.postings,
        toc.postings_table,
    ] {
        buf.extend_from_slice(&o.to_be_bytes());
    }
    let crc = crc32c::crc32c(&buf[start..]);
    buf.extend_from_slice(&crc.to_be_bytes());
    Ok(buf)
}

/// Writes and fsyncs the index file at `path`; returns its size in bytes.
pub fn write_index(path: &Path, series: &[(&Labels, Vec<IndexChunk>)]) -> Result<u64, BlockError> {
    let buf = encode_index(series)?;
    let mut f = File::create(path).map_err(|e| BlockError::io(path, e))?;
    f.write_all(&buf)
        .and_then(|_| f.sync_all())
        .map_err(|e| BlockError::io(path, e))?;
    Ok(buf.len() as u64)
}

/// A minimal reader of version-2 index files (symbols, series by id, postings), loaded in memory.
pub struct IndexReader {
    b: Vec<u8>,
    toc: Toc,
    symbols: Vec<String>,
    postings: BTreeMap<(String, String), u64>,
}

fn corrupt(m: impl Into<String>) -> BlockError {
    BlockError::Corrupt(m.into())
}

fn be32(b: &[u8], at: usize) -> Result<u32, BlockError> {
    b.get(
        at..at
            .checked_add(4)
            .ok_or_else(|| corrupt("index offset overflow"))?,
    )
    .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    .ok_or_else(|| corrupt("index truncated"))
}

/// Checks the `len | body | crc` section at `at` and returns the body's range.
fn section(b: &[u8], at: usize) -> Result<std::ops::Range<usize>, BlockError> {
    let len = be32(b, at)? as usize;
    let body = at + 4..at + 4 + len;
    let crc = be32(b, body.end)?;
    if crc32c::crc32c(&b[body.clone()]) != crc {
        return Err(corrupt(format!("index section at {at}: checksum mismatch")));
    }
    Ok(body)
}

fn get_str<'a>(b: &'a [u8], pos: &mut usize) -> Result<&'a str, BlockError> {
    let n = get_uvarint(b, pos).ok_or_else(|| corrupt("bad string length"))? as usize;
    let s = pos
        .checked_add(n)
        .and_then(|end| b.get(*pos..end))
        .ok_or_else(|| corrupt("string truncated"))?;
    *pos += n;
    std::str::from_utf8(s).map_err(|_| corrupt("string not UTF-8"))
}

impl IndexReader {
    /// Reads and checks the index file at `path`.
    pub fn open(path: &Path) -> Result<IndexReader, BlockError> {
        let b = std::fs::read(path).map_err(|e| BlockError::io(path, e))?;
        Self::from_bytes(b)
    }

    /// Parses an index held in memory.
    pub fn from_bytes(b: Vec<u8>) -> Result<IndexReader, BlockError> {
        if b.len() < 5 + TOC_LEN || be32(&b, 0)? != MAGIC_INDEX || b[4] != FORMAT_V2 {
            return Err(corrupt("not an index v2 file"));
        }
        let t = b.len() - TOC_LEN;
        if crc32c::crc32c(&b[t..t + 48]) != be32(&b, t + 48)? {
            return Err(corrupt("TOC checksum mismatch"));
        }
        let o =
            |i: usize| u64::from_be_bytes(b[t + 8 * i..t + 8 * i + 8].try_into().unwrap_or([0; 8]));
        let toc = Toc {
            symbols: o(0),
            series: o(1),
            label_indices: o(2),
            label_indices_table: o(3),
            postings: o(4),
            postings_table: o(5),
        };
        let body = section(&b, toc.symbols as usize)?;
        let count = be32(&b, body.start)? as usize;
        let mut pos = body.start + 4;
        let mut symbols = Vec::with_capacity(count);
        for _ in 0..count {
            symbols.push(get_str(&b[..body.end], &mut pos)?.to_string());
        }
        let body = section(&b, toc.postings_table as usize)?;
        let count = be32(&b, body.start)? as usize;
        let mut pos = body.start + 4;
        let mut postings = BTreeMap::new();
        let tb = &b[..body.end];
        for _ in 0..count {
            if get_uvarint(tb, &mut pos) != Some(2) {
                return Err(corrupt("postings offset entry without 2 keys"));
            }
            let n = get_str(tb, &mut pos)?.to_string();
            let v = get_str(tb, &mut pos)?.to_string();
            let off = get_uvarint(tb, &mut pos).ok_or_else(|| corrupt("bad postings offset"))?;
            postings.insert((n, v), off);
        }
        Ok(IndexReader {
            b,
            toc,
            symbols,
            postings,
        })
    }

    /// The table of contents.
    pub fn toc(&self) -> Toc {
        self.toc
    }

    /// The symbol table, in order (a symbol's reference is its position).
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// Every (name, value) pair that has a postings list, in order, including `("", "")`.
    pub fn postings_keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.postings.keys().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The series ids of the postings list for `name=value` (`("", "")` = all series); empty if absent.
    pub fn postings(&self, name: &str, value: &str) -> Result<Vec<u32>, BlockError> {
        let Some(&off) = self.postings.get(&(name.to_string(), value.to_string())) else {
            return Ok(Vec::new());
        };
        let body = section(&self.b, off as usize)?;
        let n = be32(&self.b, body.start)? as usize;
        if body.len() != 4 + 4 * n {
            return Err(corrupt("postings list length mismatch"));
        }
        (0..n)
            .map(|i| be32(&self.b, body.start + 4 + 4 * i))
            .collect()
    }

    fn symbol(&self, r: Option<u64>) -> Result<&str, BlockError> {
        r.and_then(|r| self.symbols.get(r as usize))
            .map(String::as_str)
            .ok_or_else(|| corrupt("bad symbol reference"))
    }

    /// The labels and chunk metas of the series with id `id` (offset / 16).
    pub fn series(&self, id: u32) -> Result<(Labels, Vec<IndexChunk>), BlockError> {
        let mut pos = id as usize * 16;
        let len =
            get_uvarint(&self.b, &mut pos).ok_or_else(|| corrupt("bad series length"))? as usize;
        let e = pos
            .checked_add(len)
            .and_then(|end| self.b.get(pos..end))
            .ok_or_else(|| corrupt("series truncated"))?;
        if crc32c::crc32c(e) != be32(&self.b, pos + len)? {
            return Err(corrupt(format!("series {id}: checksum mismatch")));
        }
        let mut p = 0;
        let bad = || corrupt(format!("series {id}: bad entry"));
        let nl = get_uvarint(e, &mut p).ok_or_else(bad)?;
        let mut pairs = Vec::with_capacity(nl as usize);
        for _ in 0..nl {
            let n = self.symbol(get_uvarint(e, &mut p))?;
            let v = self.symbol(get_uvarint(e, &mut p))?;
            pairs.push((n, v));
        }
        let nc = get_uvarint(e, &mut p).ok_or_else(bad)?;
        let mut chunks = Vec::with_capacity(nc as usize);
        let (mut t0, mut ref0) = (0i64, 0i64);
        for i in 0..nc {
            let mint = if i == 0 {
                get_varint(e, &mut p).ok_or_else(bad)?
            } else {
                t0.wrapping_add(get_uvarint(e, &mut p).ok_or_else(bad)? as i64)
            };
            let maxt = mint.wrapping_add(get_uvarint(e, &mut p).ok_or_else(bad)? as i64);
            let reference = if i == 0 {
                get_uvarint(e, &mut p).ok_or_else(bad)? as i64
            } else {
                ref0.wrapping_add(get_varint(e, &mut p).ok_or_else(bad)?)
            };
            t0 = maxt;
            ref0 = reference;
            chunks.push(IndexChunk {
                mint,
                maxt,
                reference: reference as u64,
            });
        }
        Ok((Labels::from_sorted(pairs), chunks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_small_indexes_parse() {
        let r = IndexReader::from_bytes(encode_index(&[]).unwrap()).unwrap();
        assert_eq!(r.symbols(), [""]);
        assert_eq!(r.postings("", "").unwrap(), Vec::<u32>::new());

        let a = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs([("__name__", "up"), ("job", "b")]);
        let ca = vec![
            IndexChunk {
                mint: -5,
                maxt: 10,
                reference: 8,
            },
            IndexChunk {
                mint: 11,
                maxt: 20,
                reference: 40,
            },
        ];
        let cb = vec![IndexChunk {
            mint: 3,
            maxt: 3,
            reference: 100,
        }];
        let buf = encode_index(&[(&a, ca.clone()), (&b, cb.clone())]).unwrap();
        let r = IndexReader::from_bytes(buf).unwrap();
        assert_eq!(r.symbols(), ["", "__name__", "a", "b", "job", "up"]);
        let toc = r.toc();
        assert_eq!(toc.label_indices, toc.postings);
        assert_eq!(toc.label_indices_table, toc.postings_table);
        let all = r.postings("", "").unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(r.series(all[0]).unwrap(), (a.clone(), ca));
        assert_eq!(r.series(all[1]).unwrap(), (b.clone(), cb));
        assert_eq!(r.postings("job", "b").unwrap(), vec![all[1]]);
        assert_eq!(r.postings("__name__", "up").unwrap(), all);
        assert_eq!(r.postings("job", "c").unwrap(), Vec::<u32>::new());
        let keys: Vec<_> = r.postings_keys().collect();
        assert_eq!(
            keys,
            [("", ""), ("__name__", "up"), ("job", "a"), ("job", "b")]
        );
    }

    #[test]
    fn corrupt_indexes_are_errors_not_panics() {
        let a = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let c = vec![IndexChunk {
            mint: 1,
            maxt: 2,
            reference: 8,
        }];
        let good = encode_index(&[(&a, c)]).unwrap();
        for cut in 0..good.len() {
            assert!(IndexReader::from_bytes(good[..cut].to_vec()).is_err());
        }
        for i in 0..good.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = good.clone();
                b[i] ^= x;
                if let Ok(r) = IndexReader::from_bytes(b) {
                    for id in 0..(good.len() / 16) as u32 {
                        let _ = r.series(id);
                    }
                    let _ = r.postings("", "");
                    let _ = r.postings("job", "a");
                }
            }
        }
    }

    #[test]
    fn unsorted_series_are_refused() {
        let a = Labels::from_pairs([("__name__", "b")]);
        let b = Labels::from_pairs([("__name__", "a")]);
        assert!(matches!(
            encode_index(&[(&a, vec![]), (&b, vec![])]),
            Err(BlockError::OutOfOrder(_))
        ));
    }
}
