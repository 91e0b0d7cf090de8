//! Fuzzes the block index reader: `IndexReader::from_bytes`, then a walk as a querier does it
//! (symbols, postings keys, the postings list of each key, the series of each id). It must never
//! panic; errors are fine. Labels read from a series are symbols of the table.
//!
//! Every section of an index carries a CRC32C, which stops most mutations early; an input whose
//! CRCs are wrong is read a second time with them recomputed (TOC, symbol table, postings offset
//! table, postings lists and the series they reference).
#![no_main]

use std::collections::{BTreeSet, HashSet};

use libfuzzer_sys::fuzz_target;
use ringest::tsdb::index::{IndexReader, TOC_LEN};

/// Bounds the work per input (a postings list can name every 16-byte offset of the file).
const MAX_SERIES: usize = 4096;

fn walk(data: &[u8]) {
    let Ok(r) = IndexReader::from_bytes(data.to_vec()) else {
        return;
    };
    let len = data.len() as u64;
    let symbols: Option<HashSet<String>> = r.symbols().ok().map(|s| s.into_iter().collect());
    let keys = r.postings_keys().unwrap_or_default();
    let mut ids = BTreeSet::new();
    for (n, v) in keys.iter().chain([(String::new(), String::new())].iter()) {
        if let Ok(list) = r.postings(n, v) {
            ids.extend(list);
        }
        if ids.len() > MAX_SERIES {
            break;
        }
    }
    for &id in ids.iter().take(MAX_SERIES) {
        let Ok((labels, chunks)) = r.series(id) else {
            continue;
        };
        if let Some(symbols) = &symbols {
            for (n, v) in labels.iter() {
                assert!(symbols.contains(n), "label name {n:?} is not a symbol");
                assert!(symbols.contains(v), "label value {v:?} is not a symbol");
            }
        }
        assert!(chunks.len() as u64 <= len);
    }
    // Absent keys answer empty lists.
    let _ = r.postings("\u{10ffff}", "absent");
}

fn be32(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

fn be64(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at.checked_add(8)?)?;
    usize::try_from(u64::from_be_bytes(s.try_into().ok()?)).ok()
}

fn uvarint(b: &[u8], pos: &mut usize) -> Option<usize> {
    let mut x = 0u64;
    for shift in (0..64).step_by(7) {
        let c = *b.get(*pos)?;
        *pos += 1;
        x |= u64::from(c & 0x7f) << shift;
        if c < 0x80 {
            return usize::try_from(x).ok();
        }
    }
    None
}

/// Writes the CRC32C of `b[from..to]` at `to`.
fn put_crc(b: &mut [u8], from: usize, to: usize) -> Option<()> {
    if from > to || to.checked_add(4)? > b.len() {
        return None;
    }
    let crc = crc32c::crc32c(&b[from..to]);
    b[to..to + 4].copy_from_slice(&crc.to_be_bytes());
    Some(())
}

/// Fixes a `len(4) body crc(4)` section at `off`; returns the body range.
fn fix_section(b: &mut [u8], off: usize) -> Option<(usize, usize)> {
    let n = be32(b, off)?;
    let start = off.checked_add(4)?;
    let end = start.checked_add(n)?;
    put_crc(b, start, end)?;
    Some((start, end))
}

/// Fixes a series entry `uvarint(len) body crc(4)` at `off`.
fn fix_series(b: &mut [u8], off: usize) -> Option<()> {
    let mut pos = off;
    let n = uvarint(b, &mut pos)?;
    put_crc(b, pos, pos.checked_add(n)?)
}

fn fix_crcs(data: &[u8]) -> Vec<u8> {
    let mut b = data.to_vec();
    let Some(t) = b.len().checked_sub(TOC_LEN) else {
        return b;
    };
    let _ = put_crc(&mut b, t, t + 48);
    let symbols = be64(&b, t);
    let postings_table = be64(&b, t + 40);
    if let Some(off) = symbols {
        let _ = fix_section(&mut b, off);
    }
    let Some((start, end)) = postings_table.and_then(|off| fix_section(&mut b, off)) else {
        return b;
    };
    // Entries: uvarint(2) name value uvarint(offset of the postings list).
    let mut lists = Vec::new();
    let mut pos = start + 4;
    while pos < end && lists.len() < MAX_SERIES {
        let entry = (|| {
            uvarint(&b, &mut pos)?;
            for _ in 0..2 {
                let n = uvarint(&b, &mut pos)?;
                pos = pos.checked_add(n)?;
            }
            uvarint(&b, &mut pos)
        })();
        match entry {
            Some(off) => lists.push(off),
            None => break,
        }
    }
    let mut series = BTreeSet::new();
    for off in lists {
        if let Some((start, end)) = fix_section(&mut b, off) {
            let mut p = start + 4;
            while p + 4 <= end && series.len() < MAX_SERIES {
                if let Some(id) = be32(&b, p) {
                    series.insert(id);
                }
                p += 4;
            }
        }
    }
    for id in series {
        if let Some(off) = id.checked_mul(16) {
            let _ = fix_series(&mut b, off);
        }
    }
    b
}

fuzz_target!(|data: &[u8]| {
    walk(data);
    let fixed = fix_crcs(data);
    if fixed != data {
        walk(&fixed);
    }
});
