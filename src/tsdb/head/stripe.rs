//! The head's series index: stripes of series by label hash with their postings, and the
//! cheap hashers they are keyed with.

use super::MemSeries;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Hasher for `u64` keys that are already hashes or dense ids: a cheap mixer instead of SipHash.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, x: u64) {
        // MurmurHash3 fmix64: every output bit depends on every input bit. A plain multiply is
        // not enough: stripes are chosen by the key's low bits, and a product's low bits depend
        // only on the factors' low bits, so all keys of a stripe would share their buckets.
        let mut h = x ^ (x >> 33);
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        self.0 = h ^ (h >> 33);
    }
}

/// A map keyed by ids or hashes.
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Hasher for label-name keys: seeded xxh3 instead of SipHash, since every new series looks up
/// each of its label names in the postings. Names are client input, so the seed is random per
/// process (as `RandomState`'s is) to keep crafted collisions from piling names into one bucket.
#[derive(Clone, Copy)]
pub struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        NameHasher(*SEED.get_or_init(|| {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0u64)
        }))
    }
}

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
}

/// Sorted refs of one (name, value-hash) pair; most values (pod, instance) have one series.
pub(super) enum PostingList {
    One(u64),
    Many(Vec<u64>),
}

impl PostingList {
    pub(super) fn insert(&mut self, r: u64) {
        match self {
            PostingList::One(x) if *x == r => {}
            PostingList::One(x) => {
                let mut v = vec![(*x).min(r), (*x).max(r)];
                v.shrink_to_fit();
                *self = PostingList::Many(v);
            }
            PostingList::Many(list) => insert_sorted(list, r),
        }
    }

    /// Removes `r`; returns whether the list is now empty.
    pub(super) fn remove(&mut self, r: u64) -> bool {
        match self {
            PostingList::One(x) => *x == r,
            PostingList::Many(list) => {
                if let Ok(i) = list.binary_search(&r) {
                    list.remove(i);
                }
                match list.len() {
                    0 => true,
                    1 => {
                        *self = PostingList::One(list[0]);
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    pub(super) fn as_slice(&self) -> &[u64] {
        match self {
            PostingList::One(x) => std::slice::from_ref(x),
            PostingList::Many(v) => v,
        }
    }
}

/// Series whose labels hash alike, plus their postings.
///
/// Postings are keyed by label name, then by the xxhash64 of the value rather than the value
/// itself, so a unique value (pod, instance) costs a 32-byte table entry instead of a second
/// copy of the string; colliding values only widen the candidate set, which `select` filters
/// by the real labels anyway.
#[derive(Default)]
pub(super) struct HashStripe {
    pub(super) series: IdMap<Arc<MemSeries>>,
    /// Further series whose hash equals one already in `series` (true xxhash collisions).
    pub(super) conflicts: IdMap<Vec<Arc<MemSeries>>>,
    pub(super) postings: HashMap<Box<str>, IdMap<PostingList>, BuildHasherDefault<NameHasher>>,
}

pub(super) fn value_hash(v: &str) -> u64 {
    xxhash_rust::xxh64::xxh64(v.as_bytes(), 0)
}

impl HashStripe {
    pub(super) fn find(&self, hash: u64, packed: &str) -> Option<&Arc<MemSeries>> {
        let s = self.series.get(&hash)?;
        if s.labels.packed() == packed {
            return Some(s);
        }
        self.conflicts
            .get(&hash)?
            .iter()
            .find(|s| s.labels.packed() == packed)
    }

    pub(super) fn insert(&mut self, hash: u64, s: Arc<MemSeries>) {
        let r = s.r#ref;
        for (n, v) in s.labels.iter() {
            let values = match self.postings.get_mut(n) {
                Some(m) => m,
                None => self.postings.entry(n.into()).or_default(),
            };
            match values.entry(value_hash(v)) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(PostingList::One(r));
                }
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().insert(r),
            }
        }
        match self.series.entry(hash) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(s);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.conflicts.entry(hash).or_default().push(s);
            }
        }
    }

    /// Removes series `s` (stored under `hash`) and its postings; returns whether it was here.
    pub(super) fn remove(&mut self, hash: u64, s: &Arc<MemSeries>) -> bool {
        let r = s.r#ref;
        let found = match self.series.get(&hash) {
            Some(x) if Arc::ptr_eq(x, s) => {
                // Promote a colliding series, if any, into the main map.
                match self.conflicts.get_mut(&hash).and_then(|v| v.pop()) {
                    Some(next) => {
                        self.series.insert(hash, next);
                    }
                    None => {
                        self.series.remove(&hash);
                    }
                }
                true
            }
            _ => match self.conflicts.get_mut(&hash) {
                Some(v) => {
                    let n = v.len();
                    v.retain(|x| !Arc::ptr_eq(x, s));
                    n != v.len()
                }
                None => false,
            },
        };
        if self.conflicts.get(&hash).is_some_and(|v| v.is_empty()) {
            self.conflicts.remove(&hash);
        }
        if !found {
            return false;
        }
        for (n, v) in s.labels.iter() {
            let Some(values) = self.postings.get_mut(n) else {
                continue;
            };
            let h = value_hash(v);
            if values.get_mut(&h).is_some_and(|l| l.remove(r)) {
                values.remove(&h);
            }
            if values.is_empty() {
                self.postings.remove(n);
            }
        }
        true
    }

    /// Every series of the stripe.
    pub(super) fn all(&self) -> impl Iterator<Item = &Arc<MemSeries>> {
        self.series
            .values()
            .chain(self.conflicts.values().flat_map(|v| v.iter()))
    }
}

pub(super) fn insert_sorted(list: &mut Vec<u64>, r: u64) {
    if list.last().is_none_or(|&l| l < r) {
        list.push(r);
    } else if let Err(i) = list.binary_search(&r) {
        list.insert(i, r);
    }
}
