//! Encoders: router forwarding (`thanos.WriteRequest`), tests, benches and the load generator.
//!
//! Output is canonical proto3 (fields in number order, defaults omitted) except that a sample
//! value is written whenever its bits are not all zero, so `-0.0` and every NaN payload (the
//! stale marker) survive bit-exact.

use std::collections::HashMap;

use super::wire::{
    len_field_size, put_bytes, put_key, put_varint, varint_len, FIXED64, LEN, VARINT,
};
use super::{Label, Sample, Series, WriteRequest};

/// Encoded size of a `Label` message body.
#[inline]
fn label_size(l: &Label<'_>) -> usize {
    let mut n = 0;
    if !l.name.is_empty() {
        n += len_field_size(l.name.len());
    }
    if !l.value.is_empty() {
        n += len_field_size(l.value.len());
    }
    n
}

/// Encoded size of a `Sample` message body (same layout in 1.0 and 2.0).
#[inline]
fn sample_size(s: &Sample) -> usize {
    let mut n = 0;
    if s.value.to_bits() != 0 {
        n += 9;
    }
    if s.timestamp != 0 {
        n += 1 + varint_len(s.timestamp as u64);
    }
    n
}

/// Appends a `Sample` message body.
#[inline]
fn put_sample(out: &mut Vec<u8>, s: &Sample) {
    if s.value.to_bits() != 0 {
        put_key(out, 1, FIXED64);
        out.extend_from_slice(&s.value.to_bits().to_le_bytes());
    }
    if s.timestamp != 0 {
        put_key(out, 2, VARINT);
        put_varint(out, s.timestamp as u64);
    }
}

/// Appends samples as repeated field 2 of a `TimeSeries` (1.0 and 2.0 share the layout).
#[inline]
fn put_samples(out: &mut Vec<u8>, samples: &[Sample]) {
    for s in samples {
        put_key(out, 2, LEN);
        put_varint(out, sample_size(s) as u64);
        put_sample(out, s);
    }
}

/// Size of a `TimeSeries` message body; what [`encode_timeseries_sized`] takes.
#[inline]
pub fn timeseries_body_len(labels: &[Label<'_>], samples: &[Sample]) -> usize {
    labels
        .iter()
        .map(|l| len_field_size(label_size(l)))
        .chain(samples.iter().map(|s| len_field_size(sample_size(s))))
        .sum()
}

/// Bytes [`encode_timeseries`] appends for a body of `body_len` bytes (key and length included).
#[inline]
pub fn timeseries_field_len(body_len: usize) -> usize {
    len_field_size(body_len)
}

/// Appends one field-1 `TimeSeries` submessage (1.0 `WriteRequest` and `thanos.WriteRequest` share it).
pub fn encode_timeseries(labels: &[Label<'_>], samples: &[Sample], out: &mut Vec<u8>) {
    let body = timeseries_body_len(labels, samples);
    out.reserve(len_field_size(body));
    encode_timeseries_sized(labels, samples, body, out);
}

/// [`encode_timeseries`] with the body size already known ([`timeseries_body_len`]), so a caller
/// that sends one series to several peers sizes it once.
pub fn encode_timeseries_sized(
    labels: &[Label<'_>],
    samples: &[Sample],
    body_len: usize,
    out: &mut Vec<u8>,
) {
    put_key(out, 1, LEN);
    put_varint(out, body_len as u64);
    for l in labels {
        put_key(out, 1, LEN);
        put_varint(out, label_size(l) as u64);
        if !l.name.is_empty() {
            put_bytes(out, 1, l.name.as_bytes());
        }
        if !l.value.is_empty() {
            put_bytes(out, 2, l.value.as_bytes());
        }
    }
    put_samples(out, samples);
}

/// Appends the `tenant` and `replica` fields that close a `thanos.WriteRequest`.
pub fn encode_thanos_trailer(tenant: &str, replica: i64, out: &mut Vec<u8>) {
    if !tenant.is_empty() {
        put_bytes(out, 2, tenant.as_bytes());
    }
    if replica != 0 {
        put_key(out, 3, VARINT);
        put_varint(out, replica as u64);
    }
}

/// Appends a remote write 1.0 `prometheus.WriteRequest` holding the given series of `req`.
pub fn encode_v1<'s>(
    req: &WriteRequest<'_>,
    series: impl IntoIterator<Item = &'s Series>,
    out: &mut Vec<u8>,
) {
    for s in series {
        encode_timeseries(req.series_labels(s), req.series_samples(s), out);
    }
}

/// Appends a `thanos.WriteRequest` holding the given series of `req` (exemplars are not forwarded).
pub fn encode_thanos_write<'s>(
    req: &WriteRequest<'_>,
    series: impl IntoIterator<Item = &'s Series>,
    tenant: &str,
    replica: i64,
    out: &mut Vec<u8>,
) {
    encode_v1(req, series, out);
    encode_thanos_trailer(tenant, replica, out);
}

/// Builds a remote write 2.0 `io.prometheus.write.v2.Request`, interning every string once.
#[derive(Debug)]
pub struct V2Encoder<'s> {
    /// Symbols table; `symbols[0]` is always "".
    symbols: Vec<&'s str>,
    /// Symbol -> its index.
    index: HashMap<&'s str, u32>,
    /// Encoded field-5 `TimeSeries` messages, in order.
    series: Vec<u8>,
    /// Scratch for one series' label references.
    refs: Vec<u32>,
}

impl Default for V2Encoder<'_> {
    /// Same as [`V2Encoder::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl<'s> V2Encoder<'s> {
    /// An empty request whose symbols table starts with "" as the spec requires.
    pub fn new() -> Self {
        V2Encoder {
            symbols: vec![""],
            index: HashMap::from([("", 0)]),
            series: Vec::new(),
            refs: Vec::new(),
        }
    }

    /// Interns `s` and returns its reference.
    pub fn symbol(&mut self, s: &'s str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.symbols.len() as u32;
        self.symbols.push(s);
        self.index.insert(s, i);
        i
    }

    /// Adds a series with float samples; labels are written in the order given.
    pub fn add_series(&mut self, labels: &[Label<'s>], samples: &[Sample]) {
        let mut refs = std::mem::take(&mut self.refs);
        refs.clear();
        for l in labels {
            refs.push(self.symbol(l.name));
            refs.push(self.symbol(l.value));
        }
        let refs_len: usize = refs.iter().map(|&r| varint_len(u64::from(r))).sum();
        let mut body = if refs.is_empty() {
            0
        } else {
            len_field_size(refs_len)
        };
        body += samples
            .iter()
            .map(|s| len_field_size(sample_size(s)))
            .sum::<usize>();
        let out = &mut self.series;
        out.reserve(len_field_size(body));
        put_key(out, 5, LEN);
        put_varint(out, body as u64);
        if !refs.is_empty() {
            put_key(out, 1, LEN);
            put_varint(out, refs_len as u64);
            for &r in &refs {
                put_varint(out, u64::from(r));
            }
        }
        put_samples(out, samples);
        self.refs = refs;
    }

    /// Appends the encoded request (symbols, then series) to `out`.
    pub fn finish(&self, out: &mut Vec<u8>) {
        let symbols: usize = self.symbols.iter().map(|s| len_field_size(s.len())).sum();
        out.reserve(symbols + self.series.len());
        for s in &self.symbols {
            put_bytes(out, 4, s.as_bytes());
        }
        out.extend_from_slice(&self.series);
    }

    /// Forgets all series and symbols, keeping allocations.
    pub fn clear(&mut self) {
        self.symbols.truncate(1);
        self.index.clear();
        self.index.insert("", 0);
        self.series.clear();
    }
}

/// Appends a remote write 2.0 request holding the given series of `req`.
pub fn encode_v2<'s>(
    req: &WriteRequest<'_>,
    series: impl IntoIterator<Item = &'s Series>,
    out: &mut Vec<u8>,
) {
    let mut enc = V2Encoder::new();
    for s in series {
        enc.add_series(req.series_labels(s), req.series_samples(s));
    }
    enc.finish(out);
}
