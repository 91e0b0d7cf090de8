//! Remote write 1.0 / 2.0 decoding (step 1 of the data flow in DESIGN.md).
//!
//! A request goes through [`negotiate`] (headers, 415), [`decompress_into`] (size limits, 413,
//! before allocating), then [`decode`] into a [`WriteRequest`] that borrows every string from
//! the decompressed buffer. Labels and samples live in two flat vectors that [`Series`] index
//! into, so decoding allocates nothing per series or label (2.0 adds one symbols table per
//! request) and the vectors can be reused across requests ([`decode_into`],
//! [`WriteRequest::recycle`]). Whole-request problems are [`DecodeError`]s; series
//! with bad labels land in [`WriteRequest::invalid`] and the rest is still written (partial
//! write, as remote write 2.0 allows).
//!
//! Deliberate differences from the receivers we replace (see the tests):
//! - Prometheus 1.0 skips series with bad labels and still answers 204; we report them
//!   (`invalid`, so the caller answers 400 with the rest written), as its own TODO says 1.0 should.
//! - Prometheus accepts empty label values; we refuse them, like Thanos (`ValidateLabels`).
//! - Thanos refuses unsorted labels; we sort them, like Prometheus (senders do send them unsorted).
//!   Thanos does not require `__name__`; we do, like Prometheus.
//! - Content-Type parsing trims spaces and ignores case in the media type and parameter names;
//!   Prometheus compares exactly, so `application/x-protobuf; proto=...v2.Request` (with a
//!   space) is silently read as 1.0 there and as 2.0 here.
//! - 2.0 series with neither samples nor histograms are refused (the spec's MUST); Prometheus
//!   writes nothing for them and does not complain.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod encode;
mod error;
mod negotiate;
mod v1;
mod v2;
mod validate;
mod wire;

#[cfg(test)]
mod tests;

use std::ops::Range;

use crate::tsdb::AppendBatch;

pub use encode::{
    encode_thanos_trailer, encode_thanos_write, encode_timeseries, encode_timeseries_sized,
    encode_v1, encode_v2, timeseries_body_len, timeseries_field_len, V2Encoder,
};
pub use error::{DecodeError, InvalidReason};
pub use negotiate::{decompress_into, negotiate, Limits};
pub use v1::{
    decode_thanos_write, decode_thanos_write_into, decode_v1, decode_v1_into, thanos_tenant_batches,
};
pub use v2::{decode_v2, decode_v2_into};
pub use validate::METRIC_NAME;

/// Remote write protocol version, chosen from the Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Remote write 1.0: `prometheus.WriteRequest`.
    V1,
    /// Remote write 2.0: `io.prometheus.write.v2.Request`.
    V2,
}

/// A label borrowed from the request buffer; ordered by name, then value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label<'a> {
    /// Label name (any non-empty UTF-8).
    pub name: &'a str,
    /// Label value (non-empty UTF-8).
    pub value: &'a str,
}

/// One float sample: the TSDB's own type, decoded straight into, so an append reads the
/// request's samples in place.
pub use crate::tsdb::Sample;

/// A valid series: ranges into [`WriteRequest::labels`] and [`WriteRequest::samples`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    /// Range of its labels, sorted by name.
    pub labels: Range<u32>,
    /// Range of its samples, in the order received.
    pub samples: Range<u32>,
}

/// A series that was rejected while the rest of the request is kept (partial write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSeries {
    /// Position of the series in the request (0-based).
    pub index: u32,
    /// What is wrong with it; its Display names the series.
    pub reason: InvalidReason,
    /// Samples and native histograms it carried, all rejected.
    pub samples: u32,
}

/// A decoded write request, borrowing every string from the decompressed body.
#[derive(Default, Debug)]
pub struct WriteRequest<'a> {
    /// Labels of all valid series, flat; each series' labels are sorted by name.
    pub labels: Vec<Label<'a>>,
    /// Samples of all valid series, flat.
    pub samples: Vec<Sample>,
    /// Valid series only, ranges into `labels` and `samples`.
    pub series: Vec<Series>,
    /// Series rejected; the valid ones are still to be written (partial write).
    pub invalid: Vec<InvalidSeries>,
    /// Native histograms received; not stored yet, their series are in `invalid`.
    pub histograms: u64,
    /// Exemplars received; accepted and dropped, not counted as written.
    pub exemplars: u64,
    /// `thanos.WriteRequest` field 2 (gRPC path only); `None` when absent or empty.
    pub tenant: Option<&'a str>,
    /// `thanos.WriteRequest` field 3 (gRPC path only), 0 otherwise.
    pub replica: i64,
    /// `thanos.WriteRequest` field 4 entries seen (per-tenant batches, read with
    /// [`thanos_tenant_batches`]); when non-zero, fields 1 and 2 are to be ignored, as Thanos does.
    pub tenant_batches: u32,
}

impl<'a> WriteRequest<'a> {
    /// The labels of `s`, sorted by name (empty if `s` is not from this request).
    #[inline]
    pub fn series_labels(&self, s: &Series) -> &[Label<'a>] {
        self.labels
            .get(s.labels.start as usize..s.labels.end as usize)
            .unwrap_or_default()
    }

    /// The samples of `s` (empty if `s` is not from this request).
    #[inline]
    pub fn series_samples(&self, s: &Series) -> &[Sample] {
        self.samples
            .get(s.samples.start as usize..s.samples.end as usize)
            .unwrap_or_default()
    }

    /// `series` (of this request) as a TSDB append batch, read in place.
    #[inline]
    pub fn batch<'r>(&'r self, series: &'r [&'r Series]) -> SeriesBatch<'r, 'a> {
        SeriesBatch { req: self, series }
    }

    /// Float samples in valid series: what a successful write stores.
    #[inline]
    pub fn num_samples(&self) -> usize {
        self.samples.len()
    }

    /// Samples and histograms in rejected series.
    pub fn num_invalid_samples(&self) -> u64 {
        self.invalid.iter().map(|i| u64::from(i.samples)).sum()
    }

    /// Empties the request, keeping its allocations.
    pub fn clear(&mut self) {
        self.labels.clear();
        self.samples.clear();
        self.series.clear();
        self.invalid.clear();
        self.histograms = 0;
        self.exemplars = 0;
        self.tenant = None;
        self.replica = 0;
        self.tenant_batches = 0;
    }

    /// Empties the request and rebinds it to another buffer's lifetime, keeping allocations,
    /// so a connection can reuse one set of vectors for all its requests.
    pub fn recycle<'b>(self) -> WriteRequest<'b> {
        // Collecting a vector's own IntoIter reuses its buffer (same element layout); the vector
        // is empty, so the closure never runs and only the lifetime changes.
        let mut labels = self.labels;
        labels.clear();
        let labels = labels
            .into_iter()
            .map(|_| Label {
                name: "",
                value: "",
            })
            .collect();
        let mut samples = self.samples;
        samples.clear();
        let mut series = self.series;
        series.clear();
        let mut invalid = self.invalid;
        invalid.clear();
        WriteRequest {
            labels,
            samples,
            series,
            invalid,
            histograms: 0,
            exemplars: 0,
            tenant: None,
            replica: 0,
            tenant_batches: 0,
        }
    }
}

/// Some series of a [`WriteRequest`] seen as a TSDB append batch: labels and samples are
/// borrowed from the request, nothing is copied.
#[derive(Clone, Copy, Debug)]
pub struct SeriesBatch<'r, 'a> {
    req: &'r WriteRequest<'a>,
    series: &'r [&'r Series],
}

impl AppendBatch for SeriesBatch<'_, '_> {
    #[inline]
    fn len(&self) -> usize {
        self.series.len()
    }

    #[inline]
    fn labels(&self, i: usize) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
        let labels = match self.series.get(i) {
            Some(s) => self.req.series_labels(s),
            None => &[],
        };
        labels.iter().map(|l| (l.name, l.value))
    }

    #[inline]
    fn samples(&self, i: usize) -> &[Sample] {
        match self.series.get(i) {
            Some(s) => self.req.series_samples(s),
            None => &[],
        }
    }
}

/// Decodes a decompressed body of the given protocol.
pub fn decode(protocol: Protocol, buf: &[u8]) -> Result<WriteRequest<'_>, DecodeError> {
    match protocol {
        Protocol::V1 => decode_v1(buf),
        Protocol::V2 => decode_v2(buf),
    }
}

/// Decodes a decompressed body of the given protocol into `req` (cleared first).
pub fn decode_into<'a>(
    protocol: Protocol,
    buf: &'a [u8],
    req: &mut WriteRequest<'a>,
) -> Result<(), DecodeError> {
    match protocol {
        Protocol::V1 => decode_v1_into(buf, req),
        Protocol::V2 => decode_v2_into(buf, req),
    }
}
