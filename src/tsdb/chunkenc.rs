//! Prometheus XOR ("Gorilla") float chunk encoding, bit-compatible with
//! `tsdb/chunkenc/xor.go` and `bstream.go` of Prometheus 2.42.
//!
//! Layout: 2-byte big-endian sample count, then an MSB-first bit stream:
//! sample 0 = zigzag varint t + raw 64-bit value; sample 1 = uvarint(t1-t0) +
//! XOR value; later samples = delta-of-delta bucket + XOR value.
//!
//! The bit writer mirrors Go's `bstream` exactly, including its quirk that a
//! write ending with whole bytes on a byte boundary leaves an extra, empty
//! trailing byte; `bytes().len()` therefore equals `len(chunk.Bytes())` in
//! Prometheus, which matters for the 1005-byte cut rule and for chunk files.

use thiserror::Error;

/// Errors found while decoding XOR chunk bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    /// Fewer than the 2 header bytes.
    #[error("xor chunk shorter than its 2-byte header ({0} bytes)")]
    TooShort(usize),
    /// The bit stream ended before the announced number of samples.
    #[error("xor chunk truncated while reading sample {sample}")]
    UnexpectedEof {
        /// Index of the sample being decoded.
        sample: u16,
    },
    /// A varint longer than 10 bytes or overflowing 64 bits.
    #[error("xor chunk varint overflow at sample {sample}")]
    VarintOverflow {
        /// Index of the sample being decoded.
        sample: u16,
    },
    /// Leading zeros + significant bits exceed 64 (never written by Prometheus).
    #[error("xor chunk invalid value window at sample {sample}")]
    BadValueWindow {
        /// Index of the sample being decoded.
        sample: u16,
    },
}

/// Sentinel for "no leading/trailing window chosen yet" (Go uses 0xff too).
const UNSET: u8 = 0xff;
/// Growth step of the byte buffer: keeps per-chunk slack small.
const GROW_STEP: usize = 32;

/// An XOR chunk being built (or rebuilt from disk) one sample at a time.
#[derive(Clone, Debug)]
pub struct XorChunk {
    /// Chunk data exactly as Prometheus stores it.
    buf: Vec<u8>,
    /// Last appended timestamp.
    t: i64,
    /// Bits of the last appended value (compared by bits, never as float).
    v: u64,
    /// Last timestamp delta (as Go, an unsigned wrapping quantity).
    t_delta: u64,
    /// XOR window (leading zeros) or `UNSET`.
    leading: u8,
    /// XOR window (trailing zeros).
    trailing: u8,
    /// Free bits in the last byte of `buf` (Go `bstream.count`, 0..=8).
    count: u8,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl XorChunk {
    /// Empty chunk (count header 0).
    pub fn new() -> Self {
        XorChunk {
            buf: vec![0, 0],
            t: i64::MIN,
            v: 0,
            t_delta: 0,
            leading: UNSET,
            trailing: 0,
            count: 0,
        }
    }

    /// Number of samples, read from the 2-byte header.
    pub fn num_samples(&self) -> u16 {
        u16::from_be_bytes([self.buf[0], self.buf[1]])
    }

    /// Chunk data as stored in Prometheus chunk files (header + bit stream).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// `bytes().len()`, used by the 1005-byte chunk cut rule.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Timestamp of the first sample, if any.
    pub fn first_time(&self) -> Option<i64> {
        if self.num_samples() == 0 {
            return None;
        }
        let mut r = BitReader::new(&self.buf[2..]);
        r.read_varint().ok()
    }

    /// Timestamp of the last sample, if any.
    pub fn last_time(&self) -> Option<i64> {
        (self.num_samples() > 0).then_some(self.t)
    }

    /// Value of the last sample, if any (bit exact).
    pub fn last_value(&self) -> Option<f64> {
        (self.num_samples() > 0).then_some(f64::from_bits(self.v))
    }

    /// Iterates the samples of this chunk.
    pub fn iter(&self) -> XorIter<'_> {
        iter_bytes(&self.buf)
    }

    /// Releases spare capacity once the chunk is complete.
    pub fn shrink_to_fit(&mut self) {
        self.buf.shrink_to_fit();
    }

    /// Appends one sample; the caller guarantees `t` is after the last one.
    ///
    /// Panics if the chunk already holds `u16::MAX` samples (a caller bug:
    /// chunks are cut at 240 samples long before that).
    pub fn append(&mut self, t: i64, v: f64) {
        let num = self.num_samples();
        assert!(num < u16::MAX, "xor chunk capacity exceeded");
        let vb = v.to_bits();
        let mut t_delta = 0u64;
        match num {
            0 => {
                let mut tmp = [0u8; 10];
                let n = put_uvarint(&mut tmp, zigzag(t));
                for &b in &tmp[..n] {
                    self.write_bits(b as u64, 8);
                }
                self.write_bits(vb, 64);
            }
            1 => {
                t_delta = (t as u64).wrapping_sub(self.t as u64);
                let mut tmp = [0u8; 10];
                let n = put_uvarint(&mut tmp, t_delta);
                for &b in &tmp[..n] {
                    self.write_bits(b as u64, 8);
                }
                self.write_value(vb);
            }
            _ => {
                t_delta = (t as u64).wrapping_sub(self.t as u64);
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                if dod == 0 {
                    self.write_bit(false);
                } else if bit_range(dod, 14) {
                    self.write_bits(0b10, 2);
                    self.write_bits(dod as u64, 14);
                } else if bit_range(dod, 17) {
                    self.write_bits(0b110, 3);
                    self.write_bits(dod as u64, 17);
                } else if bit_range(dod, 20) {
                    self.write_bits(0b1110, 4);
                    self.write_bits(dod as u64, 20);
                } else {
                    self.write_bits(0b1111, 4);
                    self.write_bits(dod as u64, 64);
                }
                self.write_value(vb);
            }
        }
        self.t = t;
        self.v = vb;
        self.t_delta = t_delta;
        let [h0, h1] = (num + 1).to_be_bytes();
        self.buf[0] = h0;
        self.buf[1] = h1;
    }

    /// Parses chunk data, validating every sample, and restores the appender
    /// state so that appending continues exactly where the data ends.
    ///
    /// Bytes after the last announced sample are dropped. If no non-zero
    /// value XOR was seen yet the window stays unset, so `from_bytes(b)` +
    /// `append` produces the same bytes as appending everything from scratch.
    pub fn from_bytes(b: &[u8]) -> Result<XorChunk, ChunkError> {
        if b.len() < 2 {
            return Err(ChunkError::TooShort(b.len()));
        }
        let mut it = iter_bytes(b);
        for _ in it.by_ref() {}
        if let Some(e) = it.err() {
            return Err(e.clone());
        }
        if it.num_total == 0 {
            return Ok(XorChunk::new());
        }
        // Bit position (from chunk start) where the last sample ends.
        let end_bit = 16 + it.br.pos;
        let mut len = end_bit.div_ceil(8);
        let mut count = (len * 8 - end_bit) as u8;
        // Go leaves an empty trailing byte when the last write was a whole
        // byte landing on a byte boundary.
        if count == 0 && it.last_byte_write {
            len += 1;
            count = 8;
        }
        let mut buf = Vec::with_capacity(len + GROW_STEP);
        buf.extend_from_slice(&b[..len.min(b.len())]);
        buf.resize(len, 0);
        // Clear padding bits after the last sample so later ORs are exact.
        if count > 0 {
            let last = len - 1;
            let keep_bits = 8 - count.min(8);
            buf[last] &= if keep_bits == 0 {
                0
            } else {
                0xffu8 << (8 - keep_bits)
            };
        }
        Ok(XorChunk {
            buf,
            t: it.t,
            v: it.v,
            t_delta: it.t_delta,
            leading: it.leading,
            trailing: it.trailing,
            count,
        })
    }

    fn write_value(&mut self, vb: u64) {
        let delta = vb ^ self.v;
        if delta == 0 {
            self.write_bit(false);
            return;
        }
        self.write_bit(true);
        let mut lead = delta.leading_zeros() as u8;
        let trail = delta.trailing_zeros() as u8;
        // 5 bits hold at most 31 leading zeros.
        if lead >= 32 {
            lead = 31;
        }
        if self.leading != UNSET && lead >= self.leading && trail >= self.trailing {
            self.write_bit(false);
            let sig = 64 - self.leading as u32 - self.trailing as u32;
            self.write_bits(delta >> self.trailing, sig);
            return;
        }
        self.leading = lead;
        self.trailing = trail;
        self.write_bit(true);
        self.write_bits(lead as u64, 5);
        let sig = 64 - lead as u32 - trail as u32;
        // 64 significant bits are stored as 0 (6 bits cannot hold 64).
        self.write_bits((sig & 63) as u64, 6);
        self.write_bits(delta >> trail, sig);
    }

    fn reserve_for(&mut self, extra: usize) {
        if self.buf.capacity() - self.buf.len() < extra {
            self.buf.reserve_exact(extra.max(GROW_STEP));
        }
    }

    /// Go `bstream.writeBit`.
    fn write_bit(&mut self, bit: bool) {
        if self.count == 0 {
            self.reserve_for(1);
            self.buf.push(0);
            self.count = 8;
        }
        if bit {
            let i = self.buf.len() - 1;
            self.buf[i] |= 1 << (self.count - 1);
        }
        self.count -= 1;
    }

    /// Go `bstream.writeBits` (bytes first via writeByte, then single bits),
    /// done in one pass with the same resulting length and `count`.
    fn write_bits(&mut self, u: u64, nbits: u32) {
        if nbits == 0 {
            return;
        }
        let val = if nbits == 64 {
            u
        } else {
            u & ((1u64 << nbits) - 1)
        };
        let start = self.buf.len() * 8 - self.count as usize;
        let end = start + nbits as usize;
        let new_len = end.div_ceil(8);
        if new_len > self.buf.len() {
            self.reserve_for(new_len - self.buf.len() + 1);
            self.buf.resize(new_len, 0);
        }
        let mut pos = start;
        let mut remaining = nbits;
        while remaining > 0 {
            let off = (pos % 8) as u32;
            let free = 8 - off;
            let take = free.min(remaining);
            let part = (val >> (remaining - take)) & ((1u64 << take) - 1);
            self.buf[pos / 8] |= (part << (free - take)) as u8;
            pos += take as usize;
            remaining -= take;
        }
        self.count = (new_len * 8 - end) as u8;
        if nbits % 8 == 0 && self.count == 0 {
            // writeByte always appends the byte that would hold the remainder.
            self.buf.push(0);
            self.count = 8;
        }
    }
}

/// Go `bitRange`: whether `x` fits the asymmetric n-bit dod bucket.
fn bit_range(x: i64, nbits: u32) -> bool {
    -((1i64 << (nbits - 1)) - 1) <= x && x <= 1i64 << (nbits - 1)
}

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn put_uvarint(buf: &mut [u8; 10], mut x: u64) -> usize {
    let mut i = 0;
    while x >= 0x80 {
        buf[i] = (x as u8) | 0x80;
        x >>= 7;
        i += 1;
    }
    buf[i] = x as u8;
    i + 1
}

/// MSB-first bit reader over a byte slice.
#[derive(Clone, Debug)]
struct BitReader<'a> {
    data: &'a [u8],
    /// Bit position from the start of `data`.
    pos: usize,
}

enum ReadErr {
    Eof,
    Overflow,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    #[inline]
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    #[inline]
    fn read_bits(&mut self, n: u32) -> Option<u64> {
        if n == 0 {
            return Some(0);
        }
        let end = self.pos + n as usize;
        if end > self.data.len() * 8 {
            return None;
        }
        let byte = self.pos / 8;
        let off = (self.pos % 8) as u32;
        let v = if let Some(w) = self.data.get(byte..byte + 16) {
            let mut a = [0u8; 16];
            a.copy_from_slice(w);
            let w = u128::from_be_bytes(a);
            ((w << off) >> (128 - n)) as u64
        } else {
            let mut v = 0u64;
            let mut p = self.pos;
            let mut rem = n;
            while rem > 0 {
                let o = (p % 8) as u32;
                let take = (8 - o).min(rem);
                let b = self.data[p / 8] as u64;
                let part = (b >> (8 - o - take)) & ((1u64 << take) - 1);
                v = if take == 64 { part } else { (v << take) | part };
                p += take as usize;
                rem -= take;
            }
            v
        };
        self.pos = end;
        Some(v)
    }

    /// Go `binary.ReadUvarint` over whole bytes of the bit stream.
    fn read_uvarint(&mut self) -> Result<u64, ReadErr> {
        let mut x = 0u64;
        let mut s = 0u32;
        for i in 0..10 {
            let b = self.read_bits(8).ok_or(ReadErr::Eof)? as u8;
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err(ReadErr::Overflow);
                }
                return Ok(x | (b as u64) << s);
            }
            x |= ((b & 0x7f) as u64) << s;
            s += 7;
        }
        Err(ReadErr::Overflow)
    }

    fn read_varint(&mut self) -> Result<i64, ReadErr> {
        let ux = self.read_uvarint()?;
        let mut x = (ux >> 1) as i64;
        if ux & 1 != 0 {
            x = !x;
        }
        Ok(x)
    }
}

/// Iterator over the samples of raw XOR chunk data.
#[derive(Clone, Debug)]
pub struct XorIter<'a> {
    br: BitReader<'a>,
    num_total: u16,
    num_read: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
    /// Whether the last sample's encoding ended with a whole-byte write
    /// (needed to restore Go's trailing-empty-byte state).
    last_byte_write: bool,
    err: Option<ChunkError>,
}

/// Iterates raw chunk data (2-byte count + bit stream); check `err()` at the end.
pub fn iter_bytes(b: &[u8]) -> XorIter<'_> {
    let (num_total, err, data) = if b.len() < 2 {
        (0, Some(ChunkError::TooShort(b.len())), &b[..0])
    } else {
        (u16::from_be_bytes([b[0], b[1]]), None, &b[2..])
    };
    XorIter {
        br: BitReader::new(data),
        num_total,
        num_read: 0,
        t: 0,
        v: 0,
        t_delta: 0,
        leading: UNSET,
        trailing: 0,
        last_byte_write: false,
        err,
    }
}

impl XorIter<'_> {
    /// The decoding error that stopped iteration early, if any.
    pub fn err(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    fn fail(&mut self, e: ReadErr) -> Option<(i64, f64)> {
        let sample = self.num_read;
        self.err = Some(match e {
            ReadErr::Eof => ChunkError::UnexpectedEof { sample },
            ReadErr::Overflow => ChunkError::VarintOverflow { sample },
        });
        None
    }

    fn read_value(&mut self) -> Result<(), ChunkError> {
        let sample = self.num_read;
        let eof = ChunkError::UnexpectedEof { sample };
        if !self.br.read_bit().ok_or(eof.clone())? {
            self.last_byte_write = false;
            return Ok(());
        }
        let (trail, mbits);
        if !self.br.read_bit().ok_or(eof.clone())? {
            // Reuse the window; before any window exists Go's reader has 0/0.
            let (l, t) = if self.leading == UNSET {
                (0, 0)
            } else {
                (self.leading, self.trailing)
            };
            trail = t;
            mbits = 64 - l as u32 - t as u32;
        } else {
            let l = self.br.read_bits(5).ok_or(eof.clone())? as u8;
            let mut m = self.br.read_bits(6).ok_or(eof.clone())? as u32;
            if m == 0 {
                m = 64;
            }
            if l as u32 + m > 64 {
                return Err(ChunkError::BadValueWindow { sample });
            }
            trail = (64 - l as u32 - m) as u8;
            mbits = m;
            self.leading = l;
            self.trailing = trail;
        }
        let bits = self.br.read_bits(mbits).ok_or(eof)?;
        self.v ^= bits << trail;
        self.last_byte_write = mbits % 8 == 0;
        Ok(())
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.err.is_some() || self.num_read == self.num_total {
            return None;
        }
        match self.num_read {
            0 => {
                let t = match self.br.read_varint() {
                    Ok(t) => t,
                    Err(e) => return self.fail(e),
                };
                let Some(v) = self.br.read_bits(64) else {
                    return self.fail(ReadErr::Eof);
                };
                self.t = t;
                self.v = v;
                self.last_byte_write = true;
            }
            1 => {
                let d = match self.br.read_uvarint() {
                    Ok(d) => d,
                    Err(e) => return self.fail(e),
                };
                self.t_delta = d;
                self.t = self.t.wrapping_add(d as i64);
                if let Err(e) = self.read_value() {
                    self.err = Some(e);
                    return None;
                }
            }
            _ => {
                let mut d = 0u8;
                for _ in 0..4 {
                    d <<= 1;
                    match self.br.read_bit() {
                        None => return self.fail(ReadErr::Eof),
                        Some(false) => break,
                        Some(true) => d |= 1,
                    }
                }
                let dod: i64 = match d {
                    0b0 => 0,
                    0b1111 => match self.br.read_bits(64) {
                        Some(b) => b as i64,
                        None => return self.fail(ReadErr::Eof),
                    },
                    _ => {
                        let sz = match d {
                            0b10 => 14,
                            0b110 => 17,
                            _ => 20,
                        };
                        let Some(mut bits) = self.br.read_bits(sz) else {
                            return self.fail(ReadErr::Eof);
                        };
                        // Negative dods come back as large unsigned values.
                        if bits > (1u64 << (sz - 1)) {
                            bits = bits.wrapping_sub(1u64 << sz);
                        }
                        bits as i64
                    }
                };
                self.t_delta = self.t_delta.wrapping_add(dod as u64);
                self.t = self.t.wrapping_add(self.t_delta as i64);
                if let Err(e) = self.read_value() {
                    self.err = Some(e);
                    return None;
                }
            }
        }
        self.num_read += 1;
        Some((self.t, f64::from_bits(self.v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(samples: &[(i64, f64)]) -> XorChunk {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        assert_eq!(c.num_samples() as usize, samples.len());
        let got: Vec<(i64, u64)> = c.iter().map(|(t, v)| (t, v.to_bits())).collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(got, want);
        let mut it = c.iter();
        for _ in it.by_ref() {}
        assert!(it.err().is_none());
        assert_eq!(c.size(), c.bytes().len());
        if let (Some(&(t0, _)), Some(&(tn, vn))) = (samples.first(), samples.last()) {
            assert_eq!(c.first_time(), Some(t0));
            assert_eq!(c.last_time(), Some(tn));
            assert_eq!(c.last_value().map(f64::to_bits), Some(vn.to_bits()));
        }
        // Resuming from bytes at every prefix must give identical bytes.
        let mut prefix = XorChunk::new();
        for (i, &(t, v)) in samples.iter().enumerate() {
            let mut r = XorChunk::from_bytes(prefix.bytes()).unwrap();
            assert_eq!(r.bytes(), prefix.bytes(), "from_bytes changed bytes at {i}");
            r.append(t, v);
            prefix.append(t, v);
            assert_eq!(r.bytes(), prefix.bytes(), "resume diverged at sample {i}");
        }
        c
    }

    /// Hand-derived from xor.go/bstream.go:
    /// samples (1000, 1.0), (2000, 1.0), (3000, 2.0).
    #[test]
    fn known_bytes_three_samples() {
        let mut c = XorChunk::new();
        c.append(1000, 1.0);
        // header 00 01; varint(1000): zigzag 2000 = 0x7d0 -> d0 0f;
        // 1.0 = 3ff0000000000000; whole-byte writes leave an empty byte.
        assert_eq!(
            c.bytes(),
            &[0x00, 0x01, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x00]
        );
        c.append(2000, 1.0);
        // uvarint(1000) = e8 07 (fills the empty byte + one more, leaving an
        // empty byte again), then value xor 0 -> single 0 bit.
        assert_eq!(
            c.bytes(),
            &[0x00, 0x02, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xe8, 0x07, 0x00]
        );
        c.append(3000, 2.0);
        // dod 0 -> bit 0; xor 1.0^2.0 = 0x7ff0000000000000: lead 1, trail 52,
        // sig 11 -> bits 1,1, 00001 (5), 001011 (6), 11111111111 (11).
        // Stream after the 0 bit of sample 2: 0 | 0 1 1 00001 001011 11111111111
        // = 0011 0000 1001 0111 1111 1111 11(000000)
        assert_eq!(
            c.bytes(),
            &[
                0x00, 0x03, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xe8, 0x07, 0x30, 0x97, 0xff,
                0xc0
            ]
        );
        roundtrip(&[(1000, 1.0), (2000, 1.0), (3000, 2.0)]);
    }

    /// Reuse-window path and 14-bit dod bucket, hand-derived.
    #[test]
    fn known_bytes_dod_bucket_and_reuse() {
        let mut c = XorChunk::new();
        c.append(0, 0.0);
        c.append(10, 1.0);
        c.append(21, 3.0);
        // s0: varint(0)=00, 64 zero bits, empty byte.
        // s1: uvarint(10)=0a; xor 0x3ff0.. lead 2 trail 52 sig 10:
        //   1 1 00010 001010 1111111111
        // s2: dod 1 -> 10 + 14-bit 00000000000001; xor 1.0^3.0 =
        //   0x7ff8000000000000 lead 1 trail 51 -> outside the window (lead 1 < 2)
        //   -> 1 1 00001 001100 111111111111
        let bits = "11000100010101111111111\
                    1000000000000001\
                    1100001001100111111111111";
        let mut want = vec![0x00, 0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a];
        let padded = format!("{bits:0<width$}", width = bits.len().div_ceil(8) * 8);
        for chunk in padded.as_bytes().chunks(8) {
            want.push(u8::from_str_radix(std::str::from_utf8(chunk).unwrap(), 2).unwrap());
        }
        assert_eq!(c.bytes(), &want[..]);
        roundtrip(&[(0, 0.0), (10, 1.0), (21, 3.0)]);
    }

    #[test]
    fn dod_bucket_boundaries() {
        let edges: &[i64] = &[
            0,
            1,
            -1,
            8191,
            8192,
            8193,
            -8191,
            -8192,
            65535,
            65536,
            65537,
            -65535,
            -65536,
            524287,
            524288,
            524289,
            -524287,
            -524288,
            1 << 40,
            -(1 << 40),
            i32::MAX as i64,
        ];
        for &dod in edges {
            let t1 = 1_000_000_000_000i64;
            let d1 = 1_000_000i64;
            let s = vec![
                (t1, 1.0),
                (t1 + d1, 2.0),
                (t1 + 2 * d1 + dod, 3.0),
                (t1 + 3 * d1 + 2 * dod, 3.0),
            ];
            roundtrip(&s);
        }
        // Extreme timestamps wrap like Go's int64 arithmetic.
        roundtrip(&[(i64::MIN + 1, 0.0), (0, 1.0), (i64::MAX, 2.0)]);
    }

    #[test]
    fn special_values_bit_exact() {
        let stale = f64::from_bits(0x7ff0000000000002);
        let nan = f64::from_bits(0x7ff8000000000001);
        let vals = [
            stale,
            1.0,
            nan,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            stale,
            stale,
            f64::MIN_POSITIVE,
            f64::MAX,
            -f64::MAX,
            f64::from_bits(1),
            f64::from_bits(u64::MAX),
            f64::from_bits(0x8000000000000001),
        ];
        let s: Vec<(i64, f64)> = vals
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64 * 15_000, v))
            .collect();
        roundtrip(&s);
    }

    #[test]
    fn corrupt_inputs_do_not_panic() {
        assert_eq!(
            XorChunk::from_bytes(&[0]).unwrap_err(),
            ChunkError::TooShort(1)
        );
        let mut c = XorChunk::new();
        for i in 0..50 {
            c.append(i * 1000 + (i * i) % 7, (i as f64).sin());
        }
        let b = c.bytes().to_vec();
        for cut in 0..b.len() {
            let _ = XorChunk::from_bytes(&b[..cut]);
            let mut it = iter_bytes(&b[..cut]);
            for _ in it.by_ref() {}
        }
        // Truncated data must report an error.
        assert!(XorChunk::from_bytes(&b[..b.len() - 3]).is_err());
        let mut x = b.clone();
        x[0] = 0xff;
        assert!(XorChunk::from_bytes(&x).is_err());
        for i in 2..b.len() {
            let mut y = b.clone();
            y[i] ^= 0x5a;
            let mut it = iter_bytes(&y);
            for _ in it.by_ref() {}
            let _ = XorChunk::from_bytes(&y);
        }
    }

    #[test]
    fn trailing_garbage_is_dropped_on_restore() {
        let mut c = XorChunk::new();
        c.append(1, 1.5);
        c.append(2, 2.5);
        let mut b = c.bytes().to_vec();
        *b.last_mut().unwrap() |= 0x01;
        b.extend_from_slice(&[0xff, 0xff]);
        let mut r = XorChunk::from_bytes(&b).unwrap();
        assert_eq!(r.bytes(), c.bytes());
        r.append(3, 7.0);
        c.append(3, 7.0);
        assert_eq!(r.bytes(), c.bytes());
    }

    #[test]
    fn typical_scrape_chunk_size() {
        // 120 samples at 15 s with a slowly growing counter stays small.
        let mut c = XorChunk::new();
        for i in 0..120i64 {
            c.append(1_700_000_000_000 + i * 15_000, (i * 3) as f64);
        }
        assert!(c.size() < 300, "size {}", c.size());
    }

    /// Chunks written by a real Prometheus 2.42 (scraping itself every
    /// 100 ms), taken from its `chunks_head/000001`: (mint, maxt, data hex).
    /// The smallest, a median and the largest chunk of that run.
    const PROMETHEUS_CHUNKS: &[(i64, i64, &str)] = &[
        (1795449665643, 1795449677143, "0074d6e19d92c1683f10f51232a9edc764040012fff100042fffd0004bfff017ffe80025fff2003d7fc88011\
         5ffd2000c10002bffe4000880015fff200097ffebfff4000880015fff200097ffebfff4000880015fff8bfff\
         40012fff9000280015fff2000404000afffc17ffe80025fff200050006bffa4001880015fff200050002bffe\
         4000800200057ffebfff4000a00057ffebfff4000a00057ffc800110002bfff5fffa00097ffe2fffd0002080\
         015fff82fffd0002080015fff8bfff4000880010"),
        (1795449630743, 1795449642243, "0074aec09992c1684018000000000000634000a00057ffc800104000afffcda0cbfff40008080015fff82fff\
         d000280015fff806a13efffd0002200057ffebfff400080200057ffe2fffd000280015fff2000770380015ff\
         f200050002bffe40012fffc05fffa00044000afffd7ffe8001368590002bfff5fffa00097ffc80045ffda000\
         50002200057ffebfff4000a00057ffc80025fff4c0008200057ffe2fffd0004bffe40012fff9000280015fff\
         200097ffc80025fff6c0fc000a00057ffc80025fffafffd0002200057ffc8001100020"),
        (1795449619042, 1795449630643, "0075c4899892c1683f814a86e1dbfd9765d1c7a8a536ff5d196dfffc3d5ee50045563882625ff570d9d16fff\
         e1ec79e7abcfca88001846210c1bf6ff39012f244fb5a5e6a1eb134481e1f0543cbfdfb91d5d2887e047210d\
         b5dd10b8af179f5e696a0c0baf32c12ccb40673ce5221cfa500030cf6a4b228797b5fffc015bdac8efc70b7f\
         ff0dde3eea411bd3c00140194d423c84b6d7ffd07a2de8bcbed7d4000c0f949c1a8caacf0003074bb728753f\
         e4dfff400b4241432bd550005036a9cb99129465fffc0051d8337d13437fff0dd689b66c68594001403449b0\
         12e17337ffd0e5077a761c4aec000c0d330509bfe4ed00030c89e20f2581575fff4041b36b89d1c2700050bd\
         482ade736c1dfff4123dc6f247d3d500050565714de21def5fffc0337685a35cbb8800e1a83f6c5e6104811c\
         ccfe82825fffc0434472f0c1f59000300490805386c104000c0f29485008afe77fff02b9dac30854fc21b87e\
         ca7335029bfff87440f0a3ce0382000618d7fa29d6cdb6800185a83feadbd7a5afffa0810b2313db29880018\
         1d49ec9674e1d600061bcadfd8da9353bfff802e8952687bd9d785d8f19ab0920dfffdd777aeb1ddfdfb0005\
         027d9f591155c3dfffc2420d6ccf7c6a6823d51da05bfddafffe0cc07feaf5478d800184ad2c8e007caa902e\
         10e505ee6c021e6abc0dc51b9a800187b39375de55eeefffa066d3ecbf393de800180aaaf934b0f1ed0d906e\
         b5090cfd21633d8fc260c478001834f6373ac5bd6afffe0281363f2259ef40227cedb8fac317fff053e7e064\
         e03c64000c10d9de69296d2c82109730a79759600060936d1eb8887fdbfff817e2900c5a2c990648ef7ba822\
         58dfffc16f5289418c66d000301325653f6c9102045738abc337ec8001ba0eb7bc209c1a2fffeeb8deb329b5\
         ef3bfff87f6cfa9b7cb3a6000a035a6c9c752694bffe80c19994ca6c902000600d9084890f92a80018749bfa\
         a06d58a6fffa00c9d0657479298002822db97adb982b6fffa0003b7056ab51c800182e3836e387b63e000601\
         5f769104a57abffe874e1b0905104b2000619a4a61c59e5ac4301fda620b7b15000301c8ca5bb45627dfffc3\
         d01beed3bc3d97fff03de16bec60e50c0014375361b94f72977ffd0df540978ea663400140bbc1174d089c97\
         ffd034ddbc55677364001419a8b26d87e3317ffd017a5b4bb7e088c000c2d8b73cbab24f300030cb558e05cf\
         1f3dfff40923e73c867b1f000305e0d1e0885389a0006bdc5624342800183bc8413cb01f52fffe055bd590c5\
         5bacbfff8753380ead7801e000a1a8ab816000f69bffe86b65d34e35ecae000a0bcef2fefb5dc6bffe847451\
         e180a7fda000a030cae1741c57bbffe805460056db996a000a0b69680075a88abffe8317173269455a2000a0\
         3c87440e26eb1bffe808d1cdaf8dd546000604db9d6a02db3180018101c5a27c543f40"),
    ];

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Re-encoding the samples of Prometheus-written chunks from scratch
    /// reproduces their bytes exactly.
    #[test]
    fn prometheus_chunks_reencode_identically() {
        for &(mint, maxt, hex) in PROMETHEUS_CHUNKS {
            let data = unhex(hex);
            let c = XorChunk::from_bytes(&data).unwrap();
            assert_eq!(c.bytes(), &data[..]);
            assert_eq!((c.first_time(), c.last_time()), (Some(mint), Some(maxt)));
            let mut fresh = XorChunk::new();
            for (t, v) in iter_bytes(&data) {
                fresh.append(t, v);
            }
            assert_eq!(fresh.num_samples(), c.num_samples());
            assert_eq!(fresh.bytes(), &data[..]);
        }
    }

    /// Parses a Prometheus 2.42 `chunks_head/NNNNNN` file (magic 0x0130BC91,
    /// then ref 8, mint 8, maxt 8, encoding 1, uvarint len, data, crc 4).
    fn head_chunks(b: &[u8]) -> Vec<(i64, i64, Vec<u8>)> {
        assert_eq!(&b[..4], &[0x01, 0x30, 0xbc, 0x91]);
        let mut out = Vec::new();
        let mut p = 8;
        while p + 25 < b.len() && b[p..p + 25].iter().any(|&x| x != 0) {
            let mint = i64::from_be_bytes(b[p + 8..p + 16].try_into().unwrap());
            let maxt = i64::from_be_bytes(b[p + 16..p + 24].try_into().unwrap());
            let enc = b[p + 24];
            p += 25;
            let mut len = 0usize;
            let mut s = 0;
            loop {
                let x = b[p];
                p += 1;
                len |= ((x & 0x7f) as usize) << s;
                s += 7;
                if x < 0x80 {
                    break;
                }
            }
            if enc == 1 {
                out.push((mint, maxt, b[p..p + len].to_vec()));
            }
            p += len + 4;
        }
        out
    }

    /// Byte-compatibility against chunks written by a real Prometheus 2.42:
    /// decoding each mmapped head chunk and re-encoding its samples from
    /// scratch must give the identical bytes. Run with
    /// `RINGEST_PROM_CHUNKS_HEAD=<data>/chunks_head cargo test -- --ignored`.
    #[test]
    #[ignore]
    fn reencode_prometheus_head_chunks() {
        let dir = std::env::var("RINGEST_PROM_CHUNKS_HEAD").expect("set RINGEST_PROM_CHUNKS_HEAD");
        let mut n = 0;
        for ent in std::fs::read_dir(dir).unwrap() {
            let b = std::fs::read(ent.unwrap().path()).unwrap();
            for (mint, maxt, data) in head_chunks(&b) {
                let c = XorChunk::from_bytes(&data).unwrap();
                assert_eq!(c.bytes(), &data[..]);
                assert_eq!((c.first_time(), c.last_time()), (Some(mint), Some(maxt)));
                let mut fresh = XorChunk::new();
                for (t, v) in iter_bytes(&data) {
                    fresh.append(t, v);
                }
                assert_eq!(fresh.bytes(), &data[..], "chunk {n} differs");
                n += 1;
            }
        }
        assert!(n > 0);
        eprintln!("{n} Prometheus chunks re-encoded byte-identically");
    }

    proptest! {
        #[test]
        fn prop_roundtrip(
            start in any::<i64>().prop_map(|x| x / 4),
            deltas in prop::collection::vec(
                prop_oneof![Just(15_000i64), 1i64..100_000, 1i64..(1i64 << 40)], 0..60),
            vals in prop::collection::vec(
                prop_oneof![any::<f64>(), any::<u64>().prop_map(f64::from_bits),
                            (0u32..1000).prop_map(|x| x as f64), Just(1.0f64)], 60),
        ) {
            let mut t = start;
            let mut s = vec![(t, vals[0])];
            for (i, d) in deltas.iter().enumerate() {
                t = t.wrapping_add(*d);
                s.push((t, vals[(i + 1) % vals.len()]));
            }
            roundtrip(&s);
        }
    }
}
