//! Whole-request errors ([`DecodeError`], each of an [`ErrorClass`]) and per-series rejections
//! ([`InvalidReason`], a partial write).

use crate::error::{Classify, ErrorClass};

/// Why a whole request was refused. Variants are grouped by [`ErrorClass`] (415, 413, then 400).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    // --- 415 Unsupported Media Type ---
    /// Content-Type is not snappy protobuf of a known remote write message.
    #[error("unsupported content type {0:?}: expected application/x-protobuf with proto=prometheus.WriteRequest or proto=io.prometheus.write.v2.Request")]
    UnsupportedContentType(Box<str>),
    /// Content-Encoding is not snappy.
    #[error("unsupported content encoding {0:?}: only snappy is accepted")]
    UnsupportedContentEncoding(Box<str>),

    // --- 413 Payload Too Large ---
    /// The compressed body is over `Limits::max_compressed_bytes`.
    #[error("compressed body of {size} bytes exceeds the limit of {limit} bytes")]
    CompressedTooLarge {
        /// Body size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The snappy header declares more than `Limits::max_decompressed_bytes`.
    #[error("decompressed body of {size} bytes exceeds the limit of {limit} bytes")]
    DecompressedTooLarge {
        /// Declared decompressed size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// More labels or samples than the u32 ranges of [`super::Series`] can address.
    #[error("request has more than 2^32 labels or samples")]
    TooManyItems,

    // --- 400 Bad Request ---
    /// The body is not valid snappy (block format).
    #[error("corrupt snappy body: {0}")]
    Snappy(#[from] snap::Error),
    /// The protobuf is truncated or otherwise not well-formed.
    #[error("malformed protobuf at byte {offset}: {what}")]
    Malformed {
        /// Offset in the decompressed body.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// A known field was sent with a wire type its schema does not allow.
    #[error("malformed protobuf: {message} field {field} has wire type {wire_type}")]
    WrongWireType {
        /// Message name.
        message: &'static str,
        /// Field number.
        field: u32,
        /// Wire type received.
        wire_type: u8,
    },
    /// A string field is not UTF-8.
    #[error("invalid UTF-8 in {field} at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the field in the decompressed body.
        offset: usize,
        /// Which field.
        field: &'static str,
    },
    /// Remote write 2.0: a symbol reference points past the symbols table.
    #[error("symbol reference {reference} out of range: the request has {symbols} symbols")]
    SymbolOutOfRange {
        /// The reference received.
        reference: u64,
        /// Length of the symbols table.
        symbols: usize,
    },
    /// Remote write 2.0: a `labels_refs` list has an odd length.
    #[error("labels_refs of {what} {index} has an odd length")]
    OddLabelRefs {
        /// "series" or "exemplar".
        what: &'static str,
        /// Position of the series in the request.
        index: u32,
    },
    /// Remote write 2.0: `symbols[0]` must be the empty string.
    #[error("symbols[0] must be the empty string")]
    FirstSymbolNotEmpty,
}

impl Classify for DecodeError {
    fn class(&self) -> ErrorClass {
        match self {
            DecodeError::UnsupportedContentType(_) | DecodeError::UnsupportedContentEncoding(_) => {
                ErrorClass::UnsupportedMediaType
            }
            DecodeError::CompressedTooLarge { .. }
            | DecodeError::DecompressedTooLarge { .. }
            | DecodeError::TooManyItems => ErrorClass::TooLarge,
            DecodeError::Snappy(_)
            | DecodeError::Malformed { .. }
            | DecodeError::WrongWireType { .. }
            | DecodeError::InvalidUtf8 { .. }
            | DecodeError::SymbolOutOfRange { .. }
            | DecodeError::OddLabelRefs { .. }
            | DecodeError::FirstSymbolNotEmpty => ErrorClass::BadRequest,
        }
    }
}

/// Why one series was rejected; the rest of the request is still written (partial write).
/// `series` is a short rendering of its sorted labels (long values truncated).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReason {
    /// The series has no labels at all.
    #[error("series {{}}: no labels")]
    NoLabels,
    /// The series has no `__name__` label.
    #[error("series {series}: missing metric name (__name__)")]
    MissingName {
        /// The series' labels, shortened.
        series: Box<str>,
    },
    /// `__name__` is present but empty.
    #[error("series {series}: empty metric name (__name__)")]
    EmptyName {
        /// The series' labels, shortened.
        series: Box<str>,
    },
    /// A label has an empty name.
    #[error("series {series}: empty label name")]
    EmptyLabelName {
        /// The series' labels, shortened.
        series: Box<str>,
    },
    /// A label has an empty value (Prometheus treats that as an absent label; we refuse it).
    #[error("series {series}: empty value for label {name:?}")]
    EmptyLabelValue {
        /// The series' labels, shortened.
        series: Box<str>,
        /// The label name.
        name: Box<str>,
    },
    /// Two labels share a name.
    #[error("series {series}: duplicate label name {name:?}")]
    DuplicateLabelName {
        /// The series' labels, shortened.
        series: Box<str>,
        /// The repeated name.
        name: Box<str>,
    },
    /// Remote write 2.0: the series carries neither samples nor histograms.
    #[error("series {series}: no samples or histograms")]
    NoSamples {
        /// The series' labels, shortened.
        series: Box<str>,
    },
    /// The series carries native histograms, which the storage cannot hold yet.
    #[error("series {series}: native histograms are not supported yet")]
    Histograms {
        /// The series' labels, shortened.
        series: Box<str>,
    },
}
