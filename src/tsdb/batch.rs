//! What an append takes: a batch of series viewed in place, so the decoded request that holds
//! the labels and samples is read without copying (the storage never names the wire format).

/// One float sample. Compare values by bits: the stale marker is a NaN.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The value, bit-exact as received.
    pub value: f64,
}

/// A batch of series to append, each with its labels and samples, read where they lie.
///
/// Series are addressed by index `0..len()`; [`crate::tsdb::db::AppendStats::rejected_series`]
/// reports rejections by these indexes.
pub trait AppendBatch {
    /// Number of series in the batch.
    fn len(&self) -> usize;

    /// Whether the batch holds no series.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Labels of series `i` as `(name, value)` pairs, sorted by name, names unique.
    fn labels(&self, i: usize) -> impl Iterator<Item = (&str, &str)> + Clone + '_;

    /// Samples of series `i`, in the order received.
    fn samples(&self, i: usize) -> &[Sample];
}
