//! Owned, sorted, immutable label sets.
//!
//! A [`Labels`] is one reference-counted `str` holding every name and value back to back, each
//! preceded by its length. Lengths use a little-endian base-64 varint whose bytes are all ASCII
//! (`0x00..=0x7f`), so the whole buffer stays valid UTF-8 and can be sliced into `&str` without
//! `unsafe` or re-validation. One allocation per series (16-byte `Arc` header + the text + about
//! two bytes per string) is much smaller than a slice of string pairs, and clone is one refcount
//! increment. Equality is byte equality because the encoding is canonical.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// Separator byte Prometheus uses between names and values when hashing a label set.
const HASH_SEP: u8 = 0xff;

/// An owned, sorted, immutable set of label pairs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Labels {
    buf: Arc<str>,
}

/// Reads an ASCII varint written by [`put_len`] at `*pos`, advancing `*pos`.
fn get_len(buf: &[u8], pos: &mut usize) -> usize {
    let mut n = 0usize;
    let mut shift = 0;
    loop {
        let b = buf[*pos];
        *pos += 1;
        n |= ((b & 0x3f) as usize) << shift;
        if b & 0x40 == 0 {
            return n;
        }
        shift += 6;
    }
}

impl Labels {
    /// The empty label set.
    pub fn empty() -> Labels {
        Labels { buf: Arc::from("") }
    }

    /// Builds a label set from pairs; sorts them by name. Later duplicates of a name are dropped.
    pub fn from_pairs<'a, I>(pairs: I) -> Labels
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut v: Vec<(&str, &str)> = pairs.into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.dedup_by(|later, earlier| later.0 == earlier.0);
        Self::from_sorted(v)
    }

    /// Builds a label set from pairs the caller guarantees are sorted by name and unique.
    pub fn from_sorted<'a, I>(pairs: I) -> Labels
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        // A per-thread scratch buffer: WAL replay builds a label set per series, and growing a
        // fresh String for each was a tenth of replay.
        thread_local! {
            static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            pack_pairs(pairs, &mut s);
            Labels::from_packed(&s)
        })
    }

    /// A label set from the output of [`pack_pairs`].
    pub fn from_packed(packed: &str) -> Labels {
        Labels {
            buf: Arc::from(packed),
        }
    }

    /// The packed form, as [`pack_pairs`] writes it: equal label sets have equal packed forms.
    pub fn packed(&self) -> &str {
        &self.buf
    }

    /// Iterates over `(name, value)` pairs in name order.
    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter {
            s: &self.buf,
            pos: 0,
        }
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Number of label pairs.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Prometheus `labels.Hash`: xxhash64 of `name 0xff value 0xff ...`.
    pub fn stable_hash(&self) -> u64 {
        let mut buf = Vec::with_capacity(self.buf.len() + 16);
        hash_pairs(self.iter(), &mut buf)
    }

    /// True when this set equals the given sorted pairs, without allocating.
    pub fn eq_pairs<'a, I>(&self, pairs: I) -> bool
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut mine = self.iter();
        for p in pairs {
            match mine.next() {
                Some(m) if m == p => {}
                _ => return false,
            }
        }
        mine.next().is_none()
    }
}

/// Writes sorted pairs in the packed form a [`Labels`] stores, so the head can find a series by
/// comparing bytes instead of walking pairs.
pub fn pack_pairs<'a, I>(pairs: I, out: &mut String)
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    // Bytes, not `String::push`: this runs once per series on the append path.
    let mut bytes = std::mem::take(out).into_bytes();
    bytes.clear();
    for (n, v) in pairs {
        put_len(&mut bytes, n.len());
        bytes.extend_from_slice(n.as_bytes());
        put_len(&mut bytes, v.len());
        bytes.extend_from_slice(v.as_bytes());
    }
    // SAFETY: `bytes` is a concatenation of `&str`s (valid UTF-8) and length prefixes whose bytes
    // are all below 0x80 (see `put_len`), so it is valid UTF-8. Exercised by the proptest
    // `prop_roundtrip` (arbitrary UTF-8 values) and every head test, which build labels here.
    *out = unsafe { String::from_utf8_unchecked(bytes) };
}

/// Appends `n` as an ASCII-only varint: 6 payload bits per byte, bit 6 set on all but the last.
#[inline]
fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x40 {
        out.push((n & 0x3f) as u8 | 0x40);
        n >>= 6;
    }
    out.push(n as u8);
}

/// The head's hash of a packed label set: xxh3, which is in-memory only and never persisted, so
/// it need not match Prometheus's `labels.Hash`.
pub fn packed_hash(packed: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(packed.as_bytes())
}

/// Hashes sorted pairs like Prometheus `labels.Hash`, using `buf` as scratch space.
pub fn hash_pairs<'a, I>(pairs: I, buf: &mut Vec<u8>) -> u64
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    buf.clear();
    for (n, v) in pairs {
        buf.extend_from_slice(n.as_bytes());
        buf.push(HASH_SEP);
        buf.extend_from_slice(v.as_bytes());
        buf.push(HASH_SEP);
    }
    xxhash_rust::xxh64::xxh64(buf, 0)
}

/// Iterator over the pairs of a [`Labels`].
#[derive(Clone)]
pub struct LabelsIter<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Iterator for LabelsIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        if self.pos >= self.s.len() {
            return None;
        }
        let b = self.s.as_bytes();
        let n = get_len(b, &mut self.pos);
        let name = &self.s[self.pos..self.pos + n];
        self.pos += n;
        let n = get_len(b, &mut self.pos);
        let value = &self.s[self.pos..self.pos + n];
        self.pos += n;
        Some((name, value))
    }
}

impl Ord for Labels {
    /// Prometheus `labels.Compare`: pairwise by name then value; a prefix sorts first.
    fn cmp(&self, other: &Labels) -> Ordering {
        // Over bytes, which order as the strings do, without `str` slicing's boundary checks:
        // sorting a large query's series is mostly this.
        if self.buf == other.buf {
            return Ordering::Equal;
        }
        BytePairs::new(&self.buf).cmp(BytePairs::new(&other.buf))
    }
}

/// The pairs of a packed label set as byte slices (see [`Ord for Labels`](Labels)).
struct BytePairs<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> BytePairs<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            b: s.as_bytes(),
            pos: 0,
        }
    }
}

impl<'a> Iterator for BytePairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        if self.pos >= self.b.len() {
            return None;
        }
        let n = get_len(self.b, &mut self.pos);
        let name = &self.b[self.pos..self.pos + n];
        self.pos += n;
        let n = get_len(self.b, &mut self.pos);
        let value = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Some((name, value))
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Labels) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Default for Labels {
    fn default() -> Labels {
        Labels::empty()
    }
}

/// Writes a label value with Go `strconv.Quote` style escapes, as Prometheus does.
fn write_quoted(f: &mut fmt::Formatter<'_>, v: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in v.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\x{:02x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Labels {
    /// Prometheus form: `{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(n)?;
            f.write_str("=")?;
            write_quoted(f, v)?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_sorted_and_get() {
        let long = "x".repeat(5000);
        let l = Labels::from_pairs([("job", "a"), ("__name__", "up"), ("long", long.as_str())]);
        let v: Vec<_> = l.iter().collect();
        assert_eq!(
            v,
            vec![("__name__", "up"), ("job", "a"), ("long", long.as_str())]
        );
        assert_eq!(l.get("job"), Some("a"));
        assert_eq!(l.get("nope"), None);
        assert_eq!(l.len(), 3);
        assert!(l.eq_pairs([("__name__", "up"), ("job", "a"), ("long", long.as_str())]));
        assert!(!l.eq_pairs([("__name__", "up"), ("job", "a")]));
    }

    #[test]
    fn display_and_order() {
        let l = Labels::from_pairs([("a", "b\"\n"), ("c", "ü")]);
        assert_eq!(l.to_string(), "{a=\"b\\\"\\n\", c=\"ü\"}");
        let a = Labels::from_pairs([("a", "1")]);
        let b = Labels::from_pairs([("a", "1"), ("b", "0")]);
        let c = Labels::from_pairs([("a", "2")]);
        assert!(a < b && b < c);
        assert_eq!(Labels::empty().to_string(), "{}");
    }

    #[test]
    fn hash_matches_prometheus_layout() {
        let l = Labels::from_pairs([("a", "b")]);
        assert_eq!(l.stable_hash(), xxhash_rust::xxh64::xxh64(b"a\xffb\xff", 0));
    }

    proptest::proptest! {
        #[test]
        fn prop_roundtrip(pairs in proptest::collection::btree_map("[a-z_]{1,70}", "\\PC{0,90}", 0..8)) {
            let l = Labels::from_sorted(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())));
            let got: Vec<(String, String)> = l.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
            let want: Vec<(String, String)> = pairs.into_iter().collect();
            proptest::prop_assert_eq!(got, want);
        }

        /// The byte-level order is Prometheus's `labels.Compare`: pairwise, names then values.
        #[test]
        fn prop_order_is_pairwise(
            a in proptest::collection::btree_map("[a-c]{1,3}", "\\PC{0,3}", 0..4),
            b in proptest::collection::btree_map("[a-c]{1,3}", "\\PC{0,3}", 0..4),
        ) {
            let la = Labels::from_sorted(a.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let lb = Labels::from_sorted(b.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let want = a.iter().cmp(b.iter());
            proptest::prop_assert_eq!(la.cmp(&lb), want);
            proptest::prop_assert_eq!(la.iter().cmp(lb.iter()), want);
        }
    }
}
