//! WAL record encoding, byte-compatible with Prometheus `tsdb/record/record.go` (2.42).
//!
//! Series: `1`, then per series: ref (8 bytes BE), label count (uvarint),
//! name/value strings (uvarint length + bytes).
//! Samples: `2`, then (if any) base ref (8 BE) and base t (8 BE), then per
//! sample, the first included: ref delta (zigzag varint), t delta (zigzag
//! varint), value bits (8 BE). Other record types are reported as `Unknown`.

use thiserror::Error;

/// Record type byte of a Series record.
pub const SERIES: u8 = 1;
/// Record type byte of a Samples record.
pub const SAMPLES: u8 = 2;

/// Errors decoding a WAL record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// A record must have at least its type byte.
    #[error("empty record")]
    Empty,
    /// The decoder was asked for a type the record does not have.
    #[error("invalid record type {0}")]
    WrongType(u8),
    /// A field ran past the end of the record (Prometheus `ErrInvalidSize`).
    #[error("invalid size: record truncated at byte {0}")]
    InvalidSize(usize),
    /// A label name or value is not UTF-8 (Prometheus never writes these).
    #[error("label string at byte {0} is not valid UTF-8")]
    InvalidUtf8(usize),
}

/// One sample of a Samples record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefSample {
    /// Head series reference.
    pub r#ref: u64,
    /// Timestamp in milliseconds.
    pub t: i64,
    /// Value (compare by bits: stale markers are NaNs).
    pub v: f64,
}

/// One series of a Series record, borrowing label strings from the record.
#[derive(Clone, Debug, PartialEq)]
pub struct RefSeries<'a> {
    /// Head series reference.
    pub r#ref: u64,
    /// Label pairs in record order (Prometheus writes them sorted).
    pub labels: Vec<(&'a str, &'a str)>,
}

/// A decoded WAL record.
#[derive(Clone, Debug, PartialEq)]
pub enum Record<'a> {
    /// Type 1.
    Series(Vec<RefSeries<'a>>),
    /// Type 2.
    Samples(Vec<RefSample>),
    /// Any other type byte (tombstones, exemplars, metadata, histograms, ...), skipped.
    Unknown(u8),
}

#[inline]
fn put_uvarint(buf: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        buf.push((x as u8) | 0x80);
        x >>= 7;
    }
    buf.push(x as u8);
}

#[inline]
fn put_varint(buf: &mut Vec<u8>, x: i64) {
    put_uvarint(buf, ((x << 1) ^ (x >> 63)) as u64);
}

#[inline]
fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// Appends one Series record to `buf` (labels written in the given order;
/// pass them sorted, as Prometheus does).
pub fn encode_series<'a, I, L>(series: I, buf: &mut Vec<u8>)
where
    I: IntoIterator<Item = (u64, L)>,
    L: IntoIterator<Item = (&'a str, &'a str)>,
{
    buf.push(SERIES);
    for (r, labels) in series {
        buf.extend_from_slice(&r.to_be_bytes());
        // The count precedes the labels: write the iterator's size hint and
        // patch it afterwards in the (rare) case it was wrong.
        let labels = labels.into_iter();
        let guess = labels.size_hint().0 as u64;
        let at = buf.len();
        put_uvarint(buf, guess);
        let guess_len = buf.len() - at;
        let mut n = 0u64;
        for (name, value) in labels {
            put_str(buf, name);
            put_str(buf, value);
            n += 1;
        }
        if n != guess {
            let mut count = Vec::with_capacity(10);
            put_uvarint(&mut count, n);
            buf.splice(at..at + guess_len, count);
        }
    }
}

/// Appends one Samples record to `buf`, exactly as Prometheus `Encoder.Samples`.
pub fn encode_samples(samples: &[RefSample], buf: &mut Vec<u8>) {
    buf.push(SAMPLES);
    let Some(first) = samples.first() else {
        return;
    };
    buf.reserve(16 + samples.len() * 12);
    buf.extend_from_slice(&first.r#ref.to_be_bytes());
    buf.extend_from_slice(&first.t.to_be_bytes());
    for s in samples {
        put_varint(buf, (s.r#ref as i64).wrapping_sub(first.r#ref as i64));
        put_varint(buf, s.t.wrapping_sub(first.t));
        buf.extend_from_slice(&s.v.to_bits().to_be_bytes());
    }
}

/// Cursor over record bytes with Prometheus `Decbuf` semantics.
struct Dec<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    #[inline]
    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    #[inline]
    fn be64(&mut self) -> Result<u64, RecordError> {
        let s = self
            .b
            .get(self.pos..self.pos + 8)
            .ok_or(RecordError::InvalidSize(self.pos))?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        self.pos += 8;
        Ok(u64::from_be_bytes(a))
    }

    /// Go `binary.Uvarint`: at most 10 bytes, the 10th at most 1.
    #[inline]
    fn uvarint(&mut self) -> Result<u64, RecordError> {
        let mut x = 0u64;
        let mut s = 0u32;
        for i in 0..10 {
            let Some(&b) = self.b.get(self.pos + i) else {
                break;
            };
            if b < 0x80 {
                if i == 9 && b > 1 {
                    break;
                }
                self.pos += i + 1;
                return Ok(x | (b as u64) << s);
            }
            x |= ((b & 0x7f) as u64) << s;
            s += 7;
        }
        Err(RecordError::InvalidSize(self.pos))
    }

    #[inline]
    fn varint(&mut self) -> Result<i64, RecordError> {
        let ux = self.uvarint()?;
        let x = (ux >> 1) as i64;
        Ok(if ux & 1 != 0 { !x } else { x })
    }

    #[inline]
    fn str(&mut self) -> Result<&'a str, RecordError> {
        let at = self.pos;
        let len = self.uvarint()?;
        if (self.remaining() as u64) < len {
            return Err(RecordError::InvalidSize(at));
        }
        let s = &self.b[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        std::str::from_utf8(s).map_err(|_| RecordError::InvalidUtf8(at))
    }
}

/// Decodes a record; types other than Series and Samples become `Unknown`.
pub fn decode(rec: &[u8]) -> Result<Record<'_>, RecordError> {
    match rec.first() {
        None => Err(RecordError::Empty),
        Some(&SERIES) => {
            let mut v = Vec::new();
            decode_series_into(rec, &mut v)?;
            Ok(Record::Series(v))
        }
        Some(&SAMPLES) => {
            let mut v = Vec::new();
            decode_samples_into(rec, &mut v)?;
            Ok(Record::Samples(v))
        }
        Some(&t) => Ok(Record::Unknown(t)),
    }
}

/// Record type byte, or `None` for an empty record.
pub fn record_type(rec: &[u8]) -> Option<u8> {
    rec.first().copied()
}

/// Decodes a Series record, appending to `out` (reuse it across records).
/// On error `out` keeps what was appended before the bad series.
pub fn decode_series_into<'a>(
    rec: &'a [u8],
    out: &mut Vec<RefSeries<'a>>,
) -> Result<(), RecordError> {
    match rec.first() {
        None => return Err(RecordError::Empty),
        Some(&SERIES) => {}
        Some(&t) => return Err(RecordError::WrongType(t)),
    }
    let mut d = Dec { b: rec, pos: 1 };
    while d.remaining() > 0 {
        let r = d.be64()?;
        let n = d.uvarint()?;
        // Each label needs at least two bytes: bound the allocation.
        let cap = (n as usize).min(d.remaining() / 2);
        let mut labels = Vec::with_capacity(cap);
        for _ in 0..n {
            let name = d.str()?;
            let value = d.str()?;
            labels.push((name, value));
        }
        out.push(RefSeries { r#ref: r, labels });
    }
    Ok(())
}

/// Decodes a Samples record, appending to `out` (reuse it across records).
/// On error `out` keeps what was appended before the bad sample.
pub fn decode_samples_into(rec: &[u8], out: &mut Vec<RefSample>) -> Result<(), RecordError> {
    match rec.first() {
        None => return Err(RecordError::Empty),
        Some(&SAMPLES) => {}
        Some(&t) => return Err(RecordError::WrongType(t)),
    }
    let mut d = Dec { b: rec, pos: 1 };
    if d.remaining() == 0 {
        return Ok(());
    }
    let base_ref = d.be64()? as i64;
    let base_t = d.be64()? as i64;
    // A sample takes at least 10 bytes.
    out.reserve(d.remaining() / 10);
    while d.remaining() > 0 {
        let dref = d.varint()?;
        let dt = d.varint()?;
        let v = d.be64()?;
        out.push(RefSample {
            r#ref: base_ref.wrapping_add(dref) as u64,
            t: base_t.wrapping_add(dt),
            v: f64::from_bits(v),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hand-derived from record.go `Encoder.Series`.
    #[test]
    fn series_known_bytes() {
        let mut buf = Vec::new();
        encode_series(
            [
                (1u64, vec![("__name__", "up"), ("job", "a")]),
                (0x0102030405060708, vec![]),
            ],
            &mut buf,
        );
        let mut want = vec![1u8];
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 2]);
        want.extend_from_slice(b"\x08__name__\x02up\x03job\x01a");
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0]);
        assert_eq!(buf, want);
        let Record::Series(s) = decode(&buf).unwrap() else {
            panic!()
        };
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels, vec![("__name__", "up"), ("job", "a")]);
        assert_eq!(s[1].r#ref, 0x0102030405060708);
        // Iterators with a wrong size hint give the same bytes.
        type It<'x> = Box<dyn Iterator<Item = (&'x str, &'x str)> + 'x>;
        let a: It = Box::new(
            vec![("__name__", "up"), ("job", "a"), ("x", "y")]
                .into_iter()
                .filter(|l| l.0 != "x"),
        );
        let b: It = Box::new(std::iter::empty());
        let mut buf2 = Vec::new();
        encode_series([(1u64, a), (0x0102030405060708, b)], &mut buf2);
        assert_eq!(buf2, want);
    }

    /// Hand-derived from record.go `Encoder.Samples`: base ref/t then
    /// zigzag varint deltas (the first sample included as 0,0).
    #[test]
    fn samples_known_bytes() {
        let stale = f64::from_bits(0x7ff0000000000002);
        let s = [
            RefSample {
                r#ref: 10,
                t: 1000,
                v: 1.0,
            },
            RefSample {
                r#ref: 9,
                t: 1064,
                v: stale,
            },
        ];
        let mut buf = Vec::new();
        encode_samples(&s, &mut buf);
        let want: Vec<u8> = [
            &[2u8][..],
            &10u64.to_be_bytes(),
            &1000u64.to_be_bytes(),
            &[0, 0],
            &[0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
            &[0x01, 0x80, 0x01], // ref -1 -> 1; t +64 -> 128 -> 80 01
            &[0x7f, 0xf0, 0, 0, 0, 0, 0, 2],
        ]
        .concat();
        assert_eq!(buf, want);
        let mut out = Vec::new();
        decode_samples_into(&buf, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].v.to_bits(), 0x7ff0000000000002);
        assert_eq!(out[0], s[0]);

        let mut empty = Vec::new();
        encode_samples(&[], &mut empty);
        assert_eq!(empty, vec![2]);
        assert_eq!(decode(&empty).unwrap(), Record::Samples(vec![]));
    }

    #[test]
    fn unknown_and_errors() {
        for t in [3u8, 4, 5, 6, 7, 8, 9, 10, 255, 0] {
            assert_eq!(decode(&[t, 1, 2]).unwrap(), Record::Unknown(t));
        }
        assert_eq!(decode(&[]), Err(RecordError::Empty));
        assert!(matches!(
            decode(&[2, 0, 0]),
            Err(RecordError::InvalidSize(_))
        ));
        assert!(matches!(
            decode(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 5, b'a']),
            Err(RecordError::InvalidSize(_))
        ));
        assert!(matches!(
            decode(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0xff, 0]),
            Err(RecordError::InvalidUtf8(_))
        ));
        let mut v = Vec::new();
        assert_eq!(
            decode_samples_into(&[1], &mut v),
            Err(RecordError::WrongType(1))
        );
        // Overlong varint.
        let mut bad = vec![2u8];
        bad.extend_from_slice(&[0; 16]);
        bad.extend_from_slice(&[0xff; 10]);
        assert!(decode(&bad).is_err());
    }

    fn arb_label() -> impl Strategy<Value = (String, String)> {
        ("[a-z_]{1,12}", "\\PC{0,20}")
    }

    proptest! {
        #[test]
        fn prop_samples_roundtrip(
            s in prop::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..50)
        ) {
            let s: Vec<RefSample> = s
                .into_iter()
                .map(|(r, t, v)| RefSample { r#ref: r, t, v: f64::from_bits(v) })
                .collect();
            let mut buf = vec![0xaa];
            encode_samples(&s, &mut buf);
            let mut out = vec![RefSample { r#ref: 7, t: 7, v: 7.0 }];
            decode_samples_into(&buf[1..], &mut out).unwrap();
            prop_assert_eq!(out.len(), s.len() + 1);
            for (a, b) in out[1..].iter().zip(&s) {
                prop_assert_eq!((a.r#ref, a.t, a.v.to_bits()), (b.r#ref, b.t, b.v.to_bits()));
            }
        }

        #[test]
        fn prop_series_roundtrip(
            s in prop::collection::vec((any::<u64>(), prop::collection::vec(arb_label(), 0..8)), 0..10)
        ) {
            let mut buf = Vec::new();
            encode_series(
                s.iter().map(|(r, l)| (*r, l.iter().map(|(n, v)| (n.as_str(), v.as_str())))),
                &mut buf,
            );
            let Record::Series(got) = decode(&buf).unwrap() else { panic!() };
            prop_assert_eq!(got.len(), s.len());
            for (g, (r, l)) in got.iter().zip(&s) {
                prop_assert_eq!(g.r#ref, *r);
                let want: Vec<(&str, &str)> = l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                prop_assert_eq!(&g.labels, &want);
            }
        }

        #[test]
        fn prop_decode_never_panics(b in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&b);
        }
    }
}
