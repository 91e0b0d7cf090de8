//! Fuzzes the chunk segment reader and the XOR chunk decoder: the input is one segment file of a
//! block's `chunks/` directory. Every chunk is read in file order, as the index would reference
//! them, and decoded: iteration terminates with as many samples as the chunk header announces or
//! with an error; `XorChunk::from_bytes` agrees with the iterator and appending to the chunk it
//! returns keeps every sample; re-encoding the samples from scratch decodes to the same samples.
//!
//! Chunks carry a CRC32C, which stops most mutations before the decoder; an input whose CRCs are
//! wrong is read a second time with them recomputed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringest::tsdb::chunkenc::{iter_bytes, XorChunk};
use ringest::tsdb::chunks::{ChunkReader, SEGMENT_HEADER_SIZE};

/// Bounds the work per input.
const MAX_CHUNKS: usize = 1024;

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

/// Chunk records `uvarint(len) encoding(1) data(len) crc(4)` in file order: (start, crc start).
fn records(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut off = SEGMENT_HEADER_SIZE as usize;
    while off < b.len() && out.len() < MAX_CHUNKS {
        let mut pos = off;
        let Some(crc_at) = uvarint(b, &mut pos).and_then(|n| (pos + 1).checked_add(n)) else {
            break;
        };
        out.push((off, crc_at));
        match crc_at.checked_add(4) {
            Some(next) if next <= b.len() => off = next,
            _ => break,
        }
    }
    out
}

fn bits(s: &[(i64, f64)]) -> Vec<(i64, u64)> {
    s.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

fn check_chunk(b: &[u8]) {
    let mut it = iter_bytes(b);
    let mut samples = Vec::new();
    for s in it.by_ref() {
        samples.push(s);
        assert!(
            samples.len() <= u16::MAX as usize,
            "iteration does not terminate"
        );
    }
    let announced = if b.len() >= 2 {
        u16::from_be_bytes([b[0], b[1]]) as usize
    } else {
        0
    };
    let failed = it.err().is_some();
    if failed {
        assert!(
            samples.len() < announced || b.len() < 2,
            "error after every sample"
        );
    } else {
        assert_eq!(
            samples.len(),
            announced,
            "sample count differs from the header"
        );
    }

    match XorChunk::from_bytes(b) {
        Ok(mut c) => {
            assert!(!failed, "from_bytes accepts what the iterator refuses");
            assert_eq!(c.num_samples() as usize, announced);
            let again: Vec<_> = c.iter().collect();
            assert_eq!(
                bits(&again),
                bits(&samples),
                "from_bytes changes the samples"
            );
            if announced < u16::MAX as usize {
                let t = samples.last().map_or(0, |s| s.0.wrapping_add(15_000));
                let v = f64::from_bits(xxhash(b));
                c.append(t, v);
                let mut want = samples.clone();
                want.push((t, v));
                let after: Vec<_> = c.iter().collect();
                assert_eq!(bits(&after), bits(&want), "append after from_bytes");
            }
        }
        Err(_) => assert!(
            failed || b.len() < 2,
            "from_bytes refuses a chunk that iterates"
        ),
    }

    if !failed && !samples.is_empty() {
        let mut c = XorChunk::new();
        for &(t, v) in &samples {
            c.append(t, v);
        }
        let again: Vec<_> = iter_bytes(c.bytes()).collect();
        assert_eq!(bits(&again), bits(&samples), "re-encoded samples differ");
    }
}

/// Cheap deterministic value bits for the appended sample.
fn xxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

fn read(data: &[u8]) {
    let Ok(r) = ChunkReader::from_segments(vec![data.to_vec()]) else {
        return;
    };
    assert_eq!(r.num_segments(), 1);
    assert!(r.chunk(0).is_err(), "offset 0 is the segment header");
    assert!(
        r.chunk(1 << 32 | SEGMENT_HEADER_SIZE).is_err(),
        "no second segment"
    );
    for (off, _) in records(data) {
        match r.chunk(off as u64) {
            Ok(chunk) => check_chunk(&chunk),
            Err(_) => break,
        }
    }
}

fn fix_crcs(data: &[u8]) -> Vec<u8> {
    let mut b = data.to_vec();
    for (off, crc_at) in records(data) {
        if crc_at + 4 > b.len() {
            break;
        }
        let mut pos = off;
        uvarint(&b, &mut pos);
        let crc = crc32c::crc32c(&b[pos..crc_at]);
        b[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
    }
    b
}

fuzz_target!(|data: &[u8]| {
    read(data);
    let fixed = fix_crcs(data);
    if fixed != data {
        read(&fixed);
    }
    // The decoder alone, on bytes no CRC protects (as a head chunk is).
    check_chunk(data);
});
