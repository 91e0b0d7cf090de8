//! Prometheus TSDB index, format version 2, as written by `tsdb/index/index.go`.
//!
//! Layout: magic `0xBAAAD700`, version byte 2, symbols, series (16-byte aligned, id = offset / 16),
//! postings lists (4-byte aligned; the all-series list under `("", "")` first, then by (name, value)),
//! postings offset table, TOC. As in current Prometheus no label indices nor label offset table are
//! written: the TOC's label-indices entry equals its postings entry (the end of the series, before the
//! postings' 4-byte padding) and its label-offset-table entry equals the postings offset table's.
//!
//! The writer builds the whole index in memory before writing it (fine for one tenant's 2 h block;
//! a streaming writer can replace it later without changing the format). The reader does the
//! opposite: it keeps the file open and holds only the TOC and every 32nd symbol and postings offset
//! table entry, since a receiver keeps days of blocks open.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::tsdb::block::BlockError;
use crate::tsdb::chunks::{get_uvarint, get_varint, put_uvarint, put_varint, ByteSource};
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

/// Every how many symbols, and postings offset table entries, one offset is kept in memory (as
/// Prometheus, which keeps every 32nd).
const SAMPLE_EVERY: usize = 32;

/// A kept postings offset table entry: key and where its table entry starts in the file.
struct TableSample {
    name: String,
    value: String,
    at: u64,
}

/// A reader of version-2 index files that keeps only the TOC, every 32nd symbol's offset and every
/// 32nd postings offset table entry in memory; the rest is read from the open file when needed.
///
/// Open checks the header, the TOC's CRC, and the CRCs and entries of the symbol table and the
/// postings offset table (which must be sorted); series entries and postings lists are checked
/// (CRC, bounds) when read.
pub struct IndexReader {
    src: ByteSource,
    toc: Toc,
    /// File offset of symbols 0, 32, 64, ...
    sym_at: Vec<u64>,
    num_symbols: u64,
    /// End of the symbol table's body.
    sym_end: u64,
    table: Vec<TableSample>,
    /// End of the postings offset table's body.
    table_end: u64,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn get_str<'a>(b: &'a [u8], pos: &mut usize) -> Option<&'a str> {
    let n = get_uvarint(b, pos)? as usize;
    let s = b.get(*pos..pos.checked_add(n)?)?;
    *pos += n;
    std::str::from_utf8(s).ok()
}

/// One postings offset table entry at `*pos`: name, value, postings list offset.
fn get_table_entry<'a>(b: &'a [u8], pos: &mut usize) -> Option<(&'a str, &'a str, u64)> {
    if get_uvarint(b, pos)? != 2 {
        return None;
    }
    Some((get_str(b, pos)?, get_str(b, pos)?, get_uvarint(b, pos)?))
}

impl IndexReader {
    /// Opens and checks the index file at `path`, keeping it open.
    pub fn open(path: &Path) -> Result<IndexReader, BlockError> {
        Self::new(ByteSource::open(path)?)
    }

    /// Parses an index held in memory.
    pub fn from_bytes(b: Vec<u8>) -> Result<IndexReader, BlockError> {
        Self::new(ByteSource::from_vec("<index in memory>", b))
    }

    fn new(src: ByteSource) -> Result<IndexReader, BlockError> {
        let head = src.read_upto(0, 5)?;
        if src.len() < (5 + TOC_LEN) as u64
            || be32(&head, 0) != Some(MAGIC_INDEX)
            || head[4] != FORMAT_V2
        {
            return Err(src.corrupt("not an index v2 file (bad magic, version or size)"));
        }
        let t = src.read(src.len() - TOC_LEN as u64, TOC_LEN as u64)?;
        if Some(crc32c::crc32c(&t[..48])) != be32(&t, 48) {
            return Err(src.corrupt("TOC checksum mismatch"));
        }
        let o = |i: usize| u64::from_be_bytes(t[8 * i..8 * i + 8].try_into().unwrap_or([0; 8]));
        let toc = Toc {
            symbols: o(0),
            series: o(1),
            label_indices: o(2),
            label_indices_table: o(3),
            postings: o(4),
            postings_table: o(5),
        };

        let (body, start) = Self::section(&src, toc.symbols, "symbol table")?;
        let bad = |i| src.corrupt(format_args!("symbol table: bad symbol {i}"));
        let num_symbols = be32(&body, 0).ok_or_else(|| bad(0))? as u64;
        let mut pos = 4;
        let mut sym_at = Vec::new();
        for i in 0..num_symbols {
            if i as usize % SAMPLE_EVERY == 0 {
                sym_at.push(start + pos as u64);
            }
            get_str(&body, &mut pos).ok_or_else(|| bad(i))?;
        }
        let sym_end = start + body.len() as u64;

        let (body, start) = Self::section(&src, toc.postings_table, "postings offset table")?;
        let bad = |i| src.corrupt(format_args!("postings offset table: bad entry {i}"));
        let count = be32(&body, 0).ok_or_else(|| bad(0))? as u64;
        let mut pos = 4;
        let mut table = Vec::new();
        let mut prev: Option<(&str, &str)> = None;
        for i in 0..count {
            let at = start + pos as u64;
            let (n, v, _) = get_table_entry(&body, &mut pos).ok_or_else(|| bad(i))?;
            if prev.is_some_and(|p| p >= (n, v)) {
                return Err(src.corrupt(format_args!(
                    "postings offset table: entry {i} ({n}={v:?}) out of order"
                )));
            }
            prev = Some((n, v));
            if i as usize % SAMPLE_EVERY == 0 {
                table.push(TableSample {
                    name: n.to_string(),
                    value: v.to_string(),
                    at,
                });
            }
        }
        Ok(IndexReader {
            toc,
            sym_at,
            num_symbols,
            sym_end,
            table,
            table_end: start + body.len() as u64,
            src,
        })
    }

    /// Reads the `len | body | CRC32C` section at `at`, checks the CRC; the body and its offset.
    fn section(src: &ByteSource, at: u64, what: &str) -> Result<(Vec<u8>, u64), BlockError> {
        let named = |e| match e {
            BlockError::Corrupt(m) => BlockError::Corrupt(format!("{what} at {at}: {m}")),
            e => e,
        };
        let len = src.read(at, 4).map_err(named)?;
        let len = u64::from(be32(&len, 0).unwrap_or(0));
        let mut b = src.read(at + 4, len + 4).map_err(named)?;
        let crc = b.split_off(len as usize);
        if crc32c::crc32c(&b).to_be_bytes()[..] != crc[..] {
            return Err(src.corrupt(format_args!("{what} at {at}: checksum mismatch")));
        }
        Ok((b, at + 4))
    }

    /// The table of contents.
    pub fn toc(&self) -> Toc {
        self.toc
    }

    /// The whole symbol table, in order (a symbol's reference is its position); read from the file.
    pub fn symbols(&self) -> Result<Vec<String>, BlockError> {
        let (body, _) = Self::section(&self.src, self.toc.symbols, "symbol table")?;
        let mut pos = 4;
        (0..self.num_symbols)
            .map(|i| {
                get_str(&body, &mut pos).map(str::to_string).ok_or_else(|| {
                    self.src
                        .corrupt(format_args!("symbol table: bad symbol {i}"))
                })
            })
            .collect()
    }

    /// Symbol `r`: reads the run of up to 32 symbols it belongs to.
    fn symbol(&self, r: u64) -> Result<String, BlockError> {
        let bad = || {
            self.src.corrupt(format_args!(
                "bad symbol reference {r} ({} symbols)",
                self.num_symbols
            ))
        };
        if r >= self.num_symbols {
            return Err(bad());
        }
        let run = r as usize / SAMPLE_EVERY;
        let start = self.sym_at[run];
        let end = self.sym_at.get(run + 1).copied().unwrap_or(self.sym_end);
        let b = self.src.read(start, end - start)?;
        let mut pos = 0;
        for _ in 0..r as usize % SAMPLE_EVERY {
            get_str(&b, &mut pos).ok_or_else(bad)?;
        }
        get_str(&b, &mut pos).map(str::to_string).ok_or_else(bad)
    }

    /// Every (name, value) pair that has a postings list, in order, including `("", "")`.
    pub fn postings_keys(&self) -> Result<Vec<(String, String)>, BlockError> {
        let (body, _) = Self::section(&self.src, self.toc.postings_table, "postings offset table")?;
        let mut pos = 4;
        let mut keys = Vec::new();
        while pos < body.len() {
            let (n, v, _) = get_table_entry(&body, &mut pos)
                .ok_or_else(|| self.src.corrupt("postings offset table: bad entry"))?;
            keys.push((n.to_string(), v.to_string()));
        }
        Ok(keys)
    }

    /// Offset of the postings list of `name=value`, from the run of the table holding it.
    fn postings_offset(&self, name: &str, value: &str) -> Result<Option<u64>, BlockError> {
        let run = self
            .table
            .partition_point(|s| (s.name.as_str(), s.value.as_str()) <= (name, value));
        if run == 0 {
            return Ok(None);
        }
        let start = self.table[run - 1].at;
        let end = self.table.get(run).map_or(self.table_end, |s| s.at);
        let b = self.src.read(start, end - start)?;
        let mut pos = 0;
        while pos < b.len() {
            let (n, v, off) = get_table_entry(&b, &mut pos)
                .ok_or_else(|| self.src.corrupt("postings offset table: bad entry"))?;
            match (n, v).cmp(&(name, value)) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Ok(Some(off)),
                std::cmp::Ordering::Greater => break,
            }
        }
        Ok(None)
    }

    /// The series ids of the postings list for `name=value` (`("", "")` = all series); empty if absent.
    pub fn postings(&self, name: &str, value: &str) -> Result<Vec<u32>, BlockError> {
        let Some(off) = self.postings_offset(name, value)? else {
            return Ok(Vec::new());
        };
        let what = format!("postings list {name}={value:?}");
        let (b, _) = Self::section(&self.src, off, &what)?;
        let n = be32(&b, 0).unwrap_or(0) as usize;
        if b.len() != 4 + 4 * n {
            return Err(self.src.corrupt(format_args!("{what}: length mismatch")));
        }
        Ok(b[4..]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// The labels and chunk metas of the series with id `id` (offset / 16).
    pub fn series(&self, id: u32) -> Result<(Labels, Vec<IndexChunk>), BlockError> {
        self.series_cached(id, &mut SymbolCache::default())
    }

    /// [`Self::series`] looking symbols up in (and adding them to) `cache`.
    pub(crate) fn series_cached(
        &self,
        id: u32,
        cache: &mut SymbolCache,
    ) -> Result<(Labels, Vec<IndexChunk>), BlockError> {
        let bad = |m: &str| self.src.corrupt(format_args!("series {id}: {m}"));
        let (b, p) = self
            .src
            .read_record(u64::from(id) * 16, 4, SERIES_READ_GUESS)?;
        let (e, crc) = b[p..].split_at(b.len() - p - 4);
        if crc32c::crc32c(e).to_be_bytes()[..] != crc[..] {
            return Err(bad("checksum mismatch"));
        }
        let mut p = 0;
        let nl = get_uvarint(e, &mut p).ok_or_else(|| bad("bad entry"))?;
        let mut refs = Vec::new();
        for _ in 0..nl {
            let n = get_uvarint(e, &mut p).ok_or_else(|| bad("bad entry"))?;
            let v = get_uvarint(e, &mut p).ok_or_else(|| bad("bad entry"))?;
            for r in [n, v] {
                if let std::collections::hash_map::Entry::Vacant(e) = cache.0.entry(r) {
                    e.insert(self.symbol(r)?);
                }
            }
            refs.push((n, v));
        }
        let pairs = refs
            .iter()
            .map(|(n, v)| (cache.0[n].as_str(), cache.0[v].as_str()));
        let labels = Labels::from_sorted(pairs);
        let bad = || bad("bad chunk metas");
        let nc = get_uvarint(e, &mut p).ok_or_else(bad)?;
        let mut chunks = Vec::new();
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
        Ok((labels, chunks))
    }
}

/// How many bytes a first read of a series entry fetches.
const SERIES_READ_GUESS: u64 = 512;

/// Symbols already read, by reference: one per query, so that `__name__`, `job`, ... are read once.
#[derive(Default)]
pub(crate) struct SymbolCache(HashMap<u64, String>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_small_indexes_parse() {
        let r = IndexReader::from_bytes(encode_index(&[]).unwrap()).unwrap();
        assert_eq!(r.symbols().unwrap(), [""]);
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
        assert_eq!(
            r.symbols().unwrap(),
            ["", "__name__", "a", "b", "job", "up"]
        );
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
        let keys = r.postings_keys().unwrap();
        let keys: Vec<(&str, &str)> = keys.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
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

    /// More than 32 symbols and table entries: lookups cross the kept samples' runs.
    #[test]
    fn sampled_symbols_and_postings_table_find_every_key() {
        let names: Vec<String> = (0..100).map(|i| format!("v{i:03}")).collect();
        let labels: Vec<Labels> = names
            .iter()
            .map(|v| Labels::from_pairs([("__name__", "up"), ("i", v.as_str())]))
            .collect();
        let series: Vec<(&Labels, Vec<IndexChunk>)> =
            labels.iter().map(|l| (l, Vec::new())).collect();
        let r = IndexReader::from_bytes(encode_index(&series).unwrap()).unwrap();
        assert_eq!(r.symbols().unwrap().len(), 104);
        // Only every 32nd symbol offset and table entry is kept.
        assert_eq!((r.sym_at.len(), r.table.len()), (4, 4));
        let all = r.postings("", "").unwrap();
        assert_eq!(all.len(), 100);
        for (k, (id, ls)) in all.iter().zip(&labels).enumerate() {
            assert_eq!(&r.series(*id).unwrap().0, ls);
            assert_eq!(r.postings("i", &names[k]).unwrap(), vec![*id]);
        }
        assert_eq!(r.postings_keys().unwrap().len(), 102);
        for (n, v) in [
            ("", "x"),
            ("a", ""),
            ("i", "v0311"),
            ("i", "v"),
            ("i", "z"),
            ("zz", ""),
        ] {
            assert_eq!(r.postings(n, v).unwrap(), Vec::<u32>::new(), "{n}={v}");
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
