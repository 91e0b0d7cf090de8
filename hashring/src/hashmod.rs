//! Hashmod placement, compatible with Thanos `simpleHashring`.

/// Index of replica `n` of a series with hash `hash` among `len` endpoints sorted by
/// address: `(hash + n) % len`, with the addition wrapping at 2^64 exactly as Go's
/// `uint64` arithmetic does. `None` when `n >= len` (Thanos "insufficient nodes").
#[inline]
pub fn replica_index(hash: u64, n: usize, len: usize) -> Option<usize> {
    if n >= len {
        return None;
    }
    Some((hash.wrapping_add(n as u64) % len as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_like_go_uint64() {
        // u64::MAX + 1 wraps to 0 in Go, so the replica lands on index 0, not 1.
        assert_eq!(replica_index(u64::MAX, 1, 3), Some(0));
        assert_eq!(replica_index(u64::MAX, 0, 3), Some((u64::MAX % 3) as usize));
        assert_eq!(replica_index(7, 2, 2), None);
        assert_eq!(replica_index(7, 1, 2), Some(0));
    }
}
