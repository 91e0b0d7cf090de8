//! Protobuf wire-format primitives: a bounds-checked reader that borrows from the buffer, and the
//! few writer helpers the encoders need.
//!
//! Hand-rolled rather than prost so that decoding allocates nothing per field and strings are
//! borrowed from the decompressed request. Every read is checked; malformed input yields a
//! [`DecodeError`], never a panic.

use super::DecodeError;

/// Wire type 0: varint.
pub(crate) const VARINT: u8 = 0;
/// Wire type 1: 8 little-endian bytes.
pub(crate) const FIXED64: u8 = 1;
/// Wire type 2: length-delimited.
pub(crate) const LEN: u8 = 2;
/// Wire type 5: 4 little-endian bytes.
pub(crate) const FIXED32: u8 = 5;

/// A cursor over `buf[pos..end]`. Sub-messages share `buf`, so error offsets are absolute.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over the whole buffer.
    #[inline]
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// True when the message is fully consumed.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// Absolute offset of the cursor (tests walk field boundaries with it).
    #[cfg(test)]
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    #[inline]
    fn malformed(&self, what: &'static str) -> DecodeError {
        DecodeError::Malformed {
            offset: self.pos,
            what,
        }
    }

    /// Reads a LEB128 varint of at most 10 bytes (64 bits).
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        // Fast path: most tags, lengths and small values fit in one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if self.pos < self.end && b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow()
    }

    #[cold]
    fn varint_slow(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            if self.pos >= self.end {
                return Err(self.malformed("truncated varint"));
            }
            let b = match self.buf.get(self.pos) {
                Some(&b) => b,
                None => return Err(self.malformed("truncated varint")),
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(self.malformed("varint overflows 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(self.malformed("varint longer than 10 bytes"))
    }

    /// Reads a field key; rejects field number 0, groups and unknown wire types.
    #[inline]
    pub(crate) fn key(&mut self) -> Result<(u32, u8), DecodeError> {
        let start = self.pos;
        let key = self.varint()?;
        let wire_type = (key & 7) as u8;
        let field = key >> 3;
        if field == 0 || field > (u32::MAX >> 3) as u64 {
            return Err(DecodeError::Malformed {
                offset: start,
                what: "invalid field number",
            });
        }
        match wire_type {
            VARINT | FIXED64 | LEN | FIXED32 => Ok((field as u32, wire_type)),
            3 | 4 => Err(DecodeError::Malformed {
                offset: start,
                what: "groups are not supported",
            }),
            _ => Err(DecodeError::Malformed {
                offset: start,
                what: "invalid wire type",
            }),
        }
    }

    /// Reads 8 little-endian bytes.
    #[inline]
    pub(crate) fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let bytes = self.take(8, "truncated fixed64")?;
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(b))
    }

    /// Takes `n` raw bytes.
    #[inline]
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.end - self.pos < n {
            return Err(self.malformed(what));
        }
        let start = self.pos;
        self.pos += n;
        self.buf
            .get(start..self.pos)
            .ok_or_else(|| self.malformed(what))
    }

    /// Reads a length prefix and returns a reader over the delimited bytes.
    #[inline]
    pub(crate) fn sub(&mut self) -> Result<Reader<'a>, DecodeError> {
        let len = self.varint()?;
        if len > (self.end - self.pos) as u64 {
            return Err(self.malformed("length-delimited field exceeds its message"));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(Reader {
            buf: self.buf,
            pos: start,
            end: self.pos,
        })
    }

    /// Reads a length-delimited field as raw bytes.
    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let sub = self.sub()?;
        self.buf
            .get(sub.pos..sub.end)
            .ok_or_else(|| self.malformed("length-delimited field exceeds its message"))
    }

    /// The longest valid UTF-8 prefix of the rest of this message (see [`Utf8Prefix`]).
    #[inline]
    pub(crate) fn utf8_prefix(&self) -> Utf8Prefix<'a> {
        let rest = self.buf.get(self.pos..self.end).unwrap_or_default();
        let text = match std::str::from_utf8(rest) {
            Ok(text) => text,
            Err(e) => std::str::from_utf8(rest.get(..e.valid_up_to()).unwrap_or_default())
                .unwrap_or_default(),
        };
        Utf8Prefix {
            base: self.pos,
            text,
        }
    }

    /// Like [`Reader::string`], but borrows from `prefix` when the string lies inside it.
    #[inline]
    pub(crate) fn string_in(
        &mut self,
        prefix: &Utf8Prefix<'a>,
        what: &'static str,
    ) -> Result<&'a str, DecodeError> {
        let offset = self.pos;
        let sub = self.sub()?;
        if let Some(s) = prefix.get(sub.pos, sub.end) {
            return Ok(s);
        }
        let bytes = self.buf.get(sub.pos..sub.end).unwrap_or_default();
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 {
            offset,
            field: what,
        })
    }

    /// Fast path for a `Label` message encoded the way senders do: field 1 then field 2, each
    /// shorter than 128 bytes, nothing else, text inside `prefix`. `None` means "use the general
    /// decoder", which gives the same result or the error.
    #[inline]
    pub(crate) fn canonical_pair(&self, prefix: &Utf8Prefix<'a>) -> Option<(&'a str, &'a str)> {
        let msg = self.buf.get(self.pos..self.end)?;
        let (&[0x0a, name_len], rest) = msg.split_first_chunk::<2>()? else {
            return None;
        };
        let name_len = usize::from(name_len);
        let (&[0x12, value_len], rest) = rest.get(name_len..)?.split_first_chunk::<2>()? else {
            return None;
        };
        let value_len = usize::from(value_len);
        if name_len >= 0x80 || value_len >= 0x80 || rest.len() != value_len {
            return None;
        }
        let name_start = self.pos + 2;
        let value_start = name_start + name_len + 2;
        Some((
            prefix.get(name_start, name_start + name_len)?,
            prefix.get(value_start, value_start + value_len)?,
        ))
    }

    /// Reads a length-delimited field that must be UTF-8; `what` names it in the error.
    #[inline]
    pub(crate) fn string(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let offset = self.pos;
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 {
            offset,
            field: what,
        })
    }

    /// Skips a field of the given wire type (the key is already read).
    #[inline]
    pub(crate) fn skip(&mut self, wire_type: u8) -> Result<(), DecodeError> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8, "truncated fixed64").map(drop),
            LEN => self.sub().map(drop),
            FIXED32 => self.take(4, "truncated fixed32").map(drop),
            _ => Err(self.malformed("invalid wire type")),
        }
    }
}

/// Validated UTF-8 covering `buf[base..base + text.len()]`.
///
/// Label messages are mostly keys, short lengths and text, all valid UTF-8 together, so one
/// validation of the whole run is much cheaper than one `from_utf8` call per short string.
/// Any byte range inside a valid UTF-8 run that starts and ends at character boundaries is
/// itself valid, and `str::get` checks those boundaries.
pub(crate) struct Utf8Prefix<'a> {
    base: usize,
    text: &'a str,
}

impl<'a> Utf8Prefix<'a> {
    /// The text of `buf[start..end]` if it lies inside the validated run.
    #[inline]
    fn get(&self, start: usize, end: usize) -> Option<&'a str> {
        self.text
            .get(start.checked_sub(self.base)?..end.checked_sub(self.base)?)
    }
}

/// Error for a known field sent with the wrong wire type.
#[cold]
pub(crate) fn wrong_type(message: &'static str, field: u32, wire_type: u8) -> DecodeError {
    DecodeError::WrongWireType {
        message,
        field,
        wire_type,
    }
}

/// Number of bytes the varint encoding of `v` takes.
#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 still takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends `v` as a varint.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a field key.
#[inline]
pub(crate) fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

/// Appends a length-delimited field.
#[inline]
pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Size of a length-delimited field with a one-byte key (fields 1..=15) and `len` payload bytes.
#[inline]
pub(crate) fn len_field_size(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_len_matches_encoding() {
        for v in [
            0u64,
            1,
            127,
            128,
            16383,
            16384,
            u32::MAX as u64,
            u64::MAX >> 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader::new(&out);
            assert_eq!(r.varint().unwrap(), v);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn varint_rejects_overflow_and_truncation() {
        // 10th byte may only carry the top bit.
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert!(Reader::new(&over).varint().is_err());
        let eleven = vec![0x80; 11];
        assert!(Reader::new(&eleven).varint().is_err());
        assert!(Reader::new(&[0x80]).varint().is_err());
        assert!(Reader::new(&[]).varint().is_err());
    }

    #[test]
    fn key_rejects_groups_field_zero_and_bad_wire_types() {
        for bad in [[0x0b], [0x0c], [0x0e], [0x0f], [0x00], [0x02]] {
            assert!(Reader::new(&bad).key().is_err(), "{bad:?}");
        }
        assert_eq!(Reader::new(&[0x0a]).key().unwrap(), (1, LEN));
    }

    #[test]
    fn sub_messages_cannot_read_past_their_end() {
        // Field with length 1 followed by a byte that belongs to the parent.
        let buf = [0x01, 0x80, 0x01];
        let mut r = Reader::new(&buf);
        let mut sub = r.sub().unwrap();
        assert!(
            sub.varint().is_err(),
            "varint must stop at the sub-message end"
        );
        assert_eq!(r.varint().unwrap(), 1);
        assert!(Reader::new(&[0x05, 1, 2]).sub().is_err());
    }
}
