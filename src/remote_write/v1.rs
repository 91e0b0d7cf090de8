//! Remote write 1.0 (`prometheus.WriteRequest`) and the Thanos replication RPC
//! (`thanos.WriteRequest`); both carry the same `TimeSeries` message in field 1.

use super::validate::{finish_series, SeriesExtras};
use super::wire::{wrong_type, Reader, Utf8Prefix, FIXED64, LEN, VARINT};
use super::{DecodeError, Label, Sample, WriteRequest};

/// Decodes a `prometheus.WriteRequest` into `req` (cleared first, allocations kept).
pub fn decode_v1_into<'a>(buf: &'a [u8], req: &mut WriteRequest<'a>) -> Result<(), DecodeError> {
    req.clear();
    let mut r = Reader::new(buf);
    let mut index = 0u32;
    while !r.is_empty() {
        match r.key()? {
            (1, LEN) => {
                timeseries(&mut r.sub()?, req, index)?;
                index = index.checked_add(1).ok_or(DecodeError::TooManyItems)?;
            }
            (1, wt) => return Err(wrong_type("WriteRequest", 1, wt)),
            // Field 3 is metadata: accepted and ignored, like any unknown field.
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(())
}

/// Decodes a `prometheus.WriteRequest` (metadata is skipped).
pub fn decode_v1(buf: &[u8]) -> Result<WriteRequest<'_>, DecodeError> {
    let mut req = WriteRequest::default();
    decode_v1_into(buf, &mut req)?;
    Ok(req)
}

/// Decodes a `thanos.WriteRequest` into `req` (cleared first, allocations kept).
pub fn decode_thanos_write_into<'a>(
    buf: &'a [u8],
    req: &mut WriteRequest<'a>,
) -> Result<(), DecodeError> {
    req.clear();
    let mut r = Reader::new(buf);
    let mut index = 0u32;
    while !r.is_empty() {
        match r.key()? {
            (1, LEN) => {
                timeseries(&mut r.sub()?, req, index)?;
                index = index.checked_add(1).ok_or(DecodeError::TooManyItems)?;
            }
            (2, LEN) => {
                let tenant = r.string("WriteRequest.tenant")?;
                // proto3 strings have no presence: empty means not set.
                req.tenant = (!tenant.is_empty()).then_some(tenant);
            }
            (3, VARINT) => req.replica = r.varint()? as i64,
            (4, LEN) => {
                // Per-tenant batch: counted here, decoded by the caller ([`thanos_tenant_batches`]).
                r.sub()?;
                req.tenant_batches = req.tenant_batches.saturating_add(1);
            }
            (f @ 1..=4, wt) => return Err(wrong_type("thanos.WriteRequest", f, wt)),
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(())
}

/// Decodes a `thanos.WriteRequest` (the router-to-ingestor gRPC body).
pub fn decode_thanos_write(buf: &[u8]) -> Result<WriteRequest<'_>, DecodeError> {
    let mut req = WriteRequest::default();
    decode_thanos_write_into(buf, &mut req)?;
    Ok(req)
}

/// The per-tenant batches of a `thanos.WriteRequest`, in order, or none.
///
/// Recent Thanos routers send each tenant's series as a `TimeSeriesTenantTuple` in
/// `timeseriesTenantData` (field 4) instead of `timeseries`/`tenant` (fields 1 and 2); like Thanos,
/// an ingestor then ignores fields 1 and 2. A tuple's fields 1 and 2 are those of
/// `thanos.WriteRequest`, so each returned slice decodes with [`decode_thanos_write`].
pub fn thanos_tenant_batches(buf: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let mut batches = Vec::new();
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        match r.key()? {
            (4, LEN) => batches.push(r.bytes()?),
            (4, wt) => return Err(wrong_type("thanos.WriteRequest", 4, wt)),
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(batches)
}

/// Decodes one `TimeSeries` straight into the flat vectors of `req`.
#[inline]
fn timeseries<'a>(
    r: &mut Reader<'a>,
    req: &mut WriteRequest<'a>,
    index: u32,
) -> Result<(), DecodeError> {
    let label_start = req.labels.len();
    let sample_start = req.samples.len();
    let mut histograms = 0u32;
    // Labels usually come first; validate their UTF-8 in one go.
    let text = r.utf8_prefix();
    while !r.is_empty() {
        match r.key()? {
            (1, LEN) => req.labels.push(label(&mut r.sub()?, &text)?),
            (2, LEN) => req.samples.push(sample(&mut r.sub()?)?),
            (3, LEN) => {
                exemplar(&mut r.sub()?)?;
                req.exemplars += 1;
            }
            (4, LEN) => {
                // Native histograms are counted, not decoded: the series is rejected anyway.
                r.sub()?;
                histograms = histograms.saturating_add(1);
                req.histograms += 1;
            }
            (f @ 1..=4, wt) => return Err(wrong_type("TimeSeries", f, wt)),
            (_, wt) => r.skip(wt)?,
        }
    }
    finish_series(
        req,
        label_start,
        sample_start,
        SeriesExtras {
            index,
            histograms,
            require_samples: false,
        },
    )
}

/// Decodes a `Label {name = 1, value = 2}`, borrowing its strings from `text` when it can.
#[inline]
fn label<'a>(r: &mut Reader<'a>, text: &Utf8Prefix<'a>) -> Result<Label<'a>, DecodeError> {
    if let Some((name, value)) = r.canonical_pair(text) {
        return Ok(Label { name, value });
    }
    let mut l = Label {
        name: "",
        value: "",
    };
    while !r.is_empty() {
        match r.key()? {
            (1, LEN) => l.name = r.string_in(text, "Label.name")?,
            (2, LEN) => l.value = r.string_in(text, "Label.value")?,
            (f @ 1..=2, wt) => return Err(wrong_type("Label", f, wt)),
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(l)
}

/// Decodes a `Sample {value = 1 (double), timestamp = 2 (int64)}`.
#[inline]
pub(crate) fn sample(r: &mut Reader<'_>) -> Result<Sample, DecodeError> {
    let mut s = Sample {
        timestamp: 0,
        value: 0.0,
    };
    while !r.is_empty() {
        match r.key()? {
            (1, FIXED64) => s.value = f64::from_bits(r.fixed64()?),
            (2, VARINT) => s.timestamp = r.varint()? as i64,
            (f @ 1..=2, wt) => return Err(wrong_type("Sample", f, wt)),
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(s)
}

/// Checks an `Exemplar {labels = 1, value = 2, timestamp = 3}`; exemplars are dropped.
fn exemplar(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    while !r.is_empty() {
        match r.key()? {
            (1, LEN) => {
                let mut sub = r.sub()?;
                let text = sub.utf8_prefix();
                label(&mut sub, &text)?;
            }
            (2, FIXED64) => {
                r.fixed64()?;
            }
            (3, VARINT) => {
                r.varint()?;
            }
            (f @ 1..=3, wt) => return Err(wrong_type("Exemplar", f, wt)),
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(())
}
