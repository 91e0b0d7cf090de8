//! Series hashing, bit-compatible with Thanos `labelpb.HashWithPrefix`.

use xxhash_rust::xxh64::{xxh64, Xxh64};

/// Separator byte Thanos writes after the prefix and after every label name and value.
pub const SEP: u8 = 0xff;

/// Bytes hashed in one shot before switching to the streaming hasher; most series fit,
/// and one-shot xxh64 over a stack buffer is cheaper than many tiny streaming updates.
const STACK_BUF: usize = 1024;

/// Hash of a series for `tenant` exactly as Thanos `labelpb.HashWithPrefix(tenant, labels)`:
/// xxhash64 (seed 0) of `tenant 0xff name1 0xff value1 0xff name2 0xff value2 0xff ...`.
///
/// Labels are hashed in the order given; callers pass them sorted by name, as the
/// receiver sorts labels before routing. Never allocates.
pub fn series_hash<'a>(tenant: &str, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = BufferedHasher::new();
    h.write(tenant.as_bytes());
    h.write(&[SEP]);
    for (name, value) in labels {
        h.write(name.as_bytes());
        h.write(&[SEP]);
        h.write(value.as_bytes());
        h.write(&[SEP]);
    }
    h.finish()
}

/// xxhash64 (seed 0) of `bytes`; the hash Thanos uses for series and ketama sections.
pub fn xxhash64(bytes: &[u8]) -> u64 {
    xxh64(bytes, 0)
}

/// Accumulates input on the stack and hashes it in one go, falling back to the
/// streaming hasher only for series longer than the buffer (same digest either way).
struct BufferedHasher {
    buf: [u8; STACK_BUF],
    len: usize,
    stream: Option<Xxh64>,
}

impl BufferedHasher {
    fn new() -> Self {
        Self {
            buf: [0; STACK_BUF],
            len: 0,
            stream: None,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
            self.len = end;
            return;
        }
        let stream = self.stream.get_or_insert_with(|| Xxh64::new(0));
        stream.update(&self.buf[..self.len]);
        self.len = 0;
        if let Some(dst) = self.buf.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len = bytes.len();
        } else {
            stream.update(bytes);
        }
    }

    fn finish(mut self) -> u64 {
        match self.stream.as_mut() {
            None => xxh64(&self.buf[..self.len], 0),
            Some(stream) => {
                stream.update(&self.buf[..self.len]);
                stream.digest()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: build the whole byte string and hash it in one shot.
    fn naive(tenant: &str, labels: &[(&str, &str)]) -> u64 {
        let mut b = Vec::new();
        b.extend_from_slice(tenant.as_bytes());
        b.push(SEP);
        for (n, v) in labels {
            b.extend_from_slice(n.as_bytes());
            b.push(SEP);
            b.extend_from_slice(v.as_bytes());
            b.push(SEP);
        }
        xxh64(&b, 0)
    }

    #[test]
    fn empty_string_vector() {
        // Published xxh64 test vector for the empty input with seed 0.
        assert_eq!(xxhash64(b""), 0xef46db3751d8e999);
    }

    #[test]
    fn empty_tenant_no_labels_is_hash_of_separator() {
        assert_eq!(series_hash("", std::iter::empty()), xxhash64(&[SEP]));
    }

    #[test]
    fn long_series_cross_buffer_boundary() {
        let long = "x".repeat(3000);
        let mid = "y".repeat(1000);
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![("__name__", &long)],
            vec![("a", &mid), ("b", &mid), ("c", "d")],
            vec![(&mid, "v"), ("b", &long), ("c", &mid)],
        ];
        for labels in cases {
            assert_eq!(
                series_hash("tenant", labels.iter().copied()),
                naive("tenant", &labels)
            );
        }
        assert_eq!(series_hash(&long, std::iter::empty()), naive(&long, &[]));
    }

    proptest::proptest! {
        #[test]
        fn streaming_equals_one_shot(
            tenant in ".{0,40}",
            labels in proptest::collection::vec((".{0,300}", ".{0,600}"), 0..8),
        ) {
            let borrowed: Vec<(&str, &str)> =
                labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            proptest::prop_assert_eq!(
                series_hash(&tenant, borrowed.iter().copied()),
                naive(&tenant, &borrowed)
            );
        }
    }
}
