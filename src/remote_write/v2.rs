//! Remote write 2.0 (`io.prometheus.write.v2.Request`): strings live once in a symbols table and
//! series refer to them by index.

use super::v1::sample;
use super::validate::{finish_series, SeriesExtras};
use super::wire::{wrong_type, Reader, FIXED64, LEN, VARINT};
use super::{DecodeError, Label, WriteRequest};

/// Decodes an `io.prometheus.write.v2.Request` into `req` (cleared first, allocations kept).
pub fn decode_v2_into<'a>(buf: &'a [u8], req: &mut WriteRequest<'a>) -> Result<(), DecodeError> {
    req.clear();
    // Fields may come in any order, so collect the symbols first: series need all of them.
    let mut symbols: Vec<&'a str> = Vec::new();
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        match r.key()? {
            (4, LEN) => symbols.push(r.string("Request.symbols")?),
            (4, wt) => return Err(wrong_type("Request", 4, wt)),
            (5, LEN) => {
                r.sub()?;
            }
            (5, wt) => return Err(wrong_type("Request", 5, wt)),
            (_, wt) => r.skip(wt)?,
        }
    }
    if symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(DecodeError::FirstSymbolNotEmpty);
    }
    // Second pass: the message is known to be well-formed at the top level.
    let mut r = Reader::new(buf);
    let mut index = 0u32;
    while !r.is_empty() {
        match r.key()? {
            (5, LEN) => {
                timeseries(&mut r.sub()?, req, &symbols, index)?;
                index = index.checked_add(1).ok_or(DecodeError::TooManyItems)?;
            }
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(())
}

/// Decodes an `io.prometheus.write.v2.Request`.
pub fn decode_v2(buf: &[u8]) -> Result<WriteRequest<'_>, DecodeError> {
    let mut req = WriteRequest::default();
    decode_v2_into(buf, &mut req)?;
    Ok(req)
}

/// Looks a symbol up.
#[inline]
fn symbol<'a>(symbols: &[&'a str], reference: u64) -> Result<&'a str, DecodeError> {
    usize::try_from(reference)
        .ok()
        .and_then(|i| symbols.get(i).copied())
        .ok_or(DecodeError::SymbolOutOfRange {
            reference,
            symbols: symbols.len(),
        })
}

/// Pairs label references into labels, across however many chunks the sender split them in.
struct LabelRefs<'a> {
    pending_name: Option<&'a str>,
}

impl<'a> LabelRefs<'a> {
    #[inline]
    fn push(
        &mut self,
        reference: u64,
        symbols: &[&'a str],
        out: &mut Vec<Label<'a>>,
    ) -> Result<(), DecodeError> {
        let s = symbol(symbols, reference)?;
        match self.pending_name.take() {
            Some(name) => out.push(Label { name, value: s }),
            None => self.pending_name = Some(s),
        }
        Ok(())
    }

    /// Reads a `labels_refs` field, packed or not.
    #[inline]
    fn read(
        &mut self,
        r: &mut Reader<'a>,
        wire_type: u8,
        symbols: &[&'a str],
        out: &mut Vec<Label<'a>>,
    ) -> Result<(), DecodeError> {
        if wire_type == LEN {
            let mut packed = r.sub()?;
            while !packed.is_empty() {
                self.push(packed.varint()?, symbols, out)?;
            }
            Ok(())
        } else {
            self.push(r.varint()?, symbols, out)
        }
    }
}

/// Decodes one `TimeSeries` straight into the flat vectors of `req`.
#[inline]
fn timeseries<'a>(
    r: &mut Reader<'a>,
    req: &mut WriteRequest<'a>,
    symbols: &[&'a str],
    index: u32,
) -> Result<(), DecodeError> {
    let label_start = req.labels.len();
    let sample_start = req.samples.len();
    let mut histograms = 0u32;
    let mut refs = LabelRefs { pending_name: None };
    while !r.is_empty() {
        match r.key()? {
            (1, wt @ (LEN | VARINT)) => refs.read(r, wt, symbols, &mut req.labels)?,
            (2, LEN) => req.samples.push(sample(&mut r.sub()?)?),
            (3, LEN) => {
                // Native histograms are counted, not decoded: the series is rejected anyway.
                r.sub()?;
                histograms = histograms.saturating_add(1);
                req.histograms += 1;
            }
            (4, LEN) => {
                exemplar(&mut r.sub()?, symbols, index)?;
                req.exemplars += 1;
            }
            (5, LEN) => metadata(&mut r.sub()?, symbols)?,
            (f @ 1..=5, wt) => return Err(wrong_type("TimeSeries", f, wt)),
            // Includes field 6, the former created_timestamp, still sent by some clients.
            (_, wt) => r.skip(wt)?,
        }
    }
    if refs.pending_name.is_some() {
        return Err(DecodeError::OddLabelRefs {
            what: "series",
            index,
        });
    }
    finish_series(
        req,
        label_start,
        sample_start,
        SeriesExtras {
            index,
            histograms,
            require_samples: true,
        },
    )
}

/// Checks an `Exemplar {labels_refs = 1, value = 2, timestamp = 3}`; exemplars are dropped.
fn exemplar(r: &mut Reader<'_>, symbols: &[&str], index: u32) -> Result<(), DecodeError> {
    let mut odd = false;
    while !r.is_empty() {
        match r.key()? {
            (1, LEN) => {
                let mut packed = r.sub()?;
                while !packed.is_empty() {
                    symbol(symbols, packed.varint()?)?;
                    odd = !odd;
                }
            }
            (1, VARINT) => {
                symbol(symbols, r.varint()?)?;
                odd = !odd;
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
    if odd {
        return Err(DecodeError::OddLabelRefs {
            what: "an exemplar of series",
            index,
        });
    }
    Ok(())
}

/// Checks a `Metadata {type = 1, help_ref = 3, unit_ref = 4}`; metadata is not stored yet.
fn metadata(r: &mut Reader<'_>, symbols: &[&str]) -> Result<(), DecodeError> {
    while !r.is_empty() {
        match r.key()? {
            (1, VARINT) => {
                r.varint()?;
            }
            (3 | 4, VARINT) => {
                symbol(symbols, r.varint()?)?;
            }
            (f @ (1 | 3 | 4), wt) => return Err(wrong_type("Metadata", f, wt)),
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok(())
}
