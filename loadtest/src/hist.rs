//! A log-linear latency histogram (about 1% precision), cheap to record into and to merge.

/// Sub-buckets per power of two: 128 gives a relative error under 1%.
const SUB: usize = 128;
const SUB_BITS: u32 = 7;

/// Latencies in microseconds.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; SUB * 64],
            total: 0,
            max: 0,
            sum: 0,
        }
    }
}

/// Bucket of `v`: exact below `SUB`, then `SUB` buckets per power of two.
fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros() - SUB_BITS + 1; // >= 1
    let sub = (v >> (exp - 1)) as usize & (SUB - 1);
    exp as usize * SUB + sub
}

/// Largest value of bucket `i`.
fn upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let exp = (i / SUB) as u32;
    let sub = (i % SUB) as u64;
    ((SUB as u64 + sub + 1) << (exp - 1)) - 1
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, micros: u64) {
        self.counts[index(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
        self.sum += u128::from(micros);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest recorded value.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Mean of the recorded values (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The `q` quantile (0..=1), as the upper bound of its bucket (0 when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_within_one_percent() {
        for v in [0u64, 1, 127, 128, 129, 1000, 12_345, 999_999, 1 << 40] {
            let i = index(v);
            assert!(upper(i) >= v, "{v}");
            assert!(
                (upper(i) - v) as f64 <= v as f64 * 0.01 + 1.0,
                "{v} -> {}",
                upper(i)
            );
            if i > 0 {
                assert!(upper(i - 1) < v, "{v}");
            }
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000 {
            h.record(v);
        }
        let mut g = Histogram::default();
        g.record(100_000);
        h.merge(&g);
        assert_eq!(h.count(), 1001);
        assert_eq!(h.quantile(0.5), 501);
        assert!((990..=1000).contains(&h.quantile(0.99)));
        assert_eq!(h.quantile(1.0), 100_000);
    }
}
