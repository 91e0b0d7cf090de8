//! Content negotiation and bounded snappy decompression: everything checked before decoding.

use super::{DecodeError, Protocol};

/// The only media type remote write uses.
const PROTOBUF: &str = "application/x-protobuf";
/// `proto=` value of remote write 1.0.
const PROTO_V1: &str = "prometheus.WriteRequest";
/// `proto=` value of remote write 2.0.
const PROTO_V2: &str = "io.prometheus.write.v2.Request";

/// Size limits applied before any allocation proportional to the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted body as received (snappy-compressed).
    pub max_compressed_bytes: usize,
    /// Largest accepted body once decompressed, as declared by the snappy header.
    pub max_decompressed_bytes: usize,
}

impl Default for Limits {
    /// 64 MiB each.
    fn default() -> Self {
        Limits {
            max_compressed_bytes: 64 << 20,
            max_decompressed_bytes: 64 << 20,
        }
    }
}

/// Checks Content-Type and Content-Encoding before anything is decoded (415 otherwise).
///
/// Like Prometheus, a missing Content-Type means remote write 1.0 and a missing
/// Content-Encoding means snappy, so that old 1.0 clients keep working.
pub fn negotiate(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<Protocol, DecodeError> {
    let protocol = match content_type.map(str::trim) {
        None | Some("") => Protocol::V1,
        Some(ct) => {
            parse_content_type(ct).ok_or_else(|| DecodeError::UnsupportedContentType(ct.into()))?
        }
    };
    match content_encoding.map(str::trim) {
        None | Some("") => {}
        Some(enc) if enc.eq_ignore_ascii_case("snappy") => {}
        Some(enc) => return Err(DecodeError::UnsupportedContentEncoding(enc.into())),
    }
    Ok(protocol)
}

/// Parses `application/x-protobuf[; proto=...][; other=...]`; `None` when not acceptable.
fn parse_content_type(ct: &str) -> Option<Protocol> {
    let mut parts = ct.split(';');
    // Media types and parameter names are case-insensitive (RFC 9110); values are not.
    if !parts.next()?.trim().eq_ignore_ascii_case(PROTOBUF) {
        return None;
    }
    for param in parts.map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=')?;
        if key.trim().eq_ignore_ascii_case("proto") {
            // The first proto= decides, as in Prometheus.
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            return match value {
                PROTO_V1 => Some(Protocol::V1),
                PROTO_V2 => Some(Protocol::V2),
                _ => None,
            };
        }
    }
    // No proto= parameter means remote write 1.0.
    Some(Protocol::V1)
}

/// Checks the compressed size, then the size the snappy header declares against the limit
/// BEFORE allocating, then decompresses into `out` (cleared, its allocation reused).
pub fn decompress_into(body: &[u8], limits: &Limits, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let result = decompress_checked(body, limits, out);
    if result.is_err() {
        out.clear();
    }
    result
}

fn decompress_checked(body: &[u8], limits: &Limits, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    if body.len() > limits.max_compressed_bytes {
        return Err(DecodeError::CompressedTooLarge {
            size: body.len(),
            limit: limits.max_compressed_bytes,
        });
    }
    let size = match snap::raw::decompress_len(body) {
        Ok(size) => size,
        // A header declaring 4 GiB or more: snap refuses it as too big before we can compare it
        // with the limit; it is an oversized body all the same (413), not a corrupt one.
        Err(snap::Error::TooBig { given, .. }) => {
            return Err(DecodeError::DecompressedTooLarge {
                size: usize::try_from(given).unwrap_or(usize::MAX),
                limit: limits.max_decompressed_bytes,
            })
        }
        Err(e) => return Err(e.into()),
    };
    if size > limits.max_decompressed_bytes {
        return Err(DecodeError::DecompressedTooLarge {
            size,
            limit: limits.max_decompressed_bytes,
        });
    }
    // The decoder overwrites every byte it reports, so keep old contents instead of zeroing the
    // whole reused buffer again; only newly grown space is zeroed.
    out.resize(size, 0);
    let n = snap::raw::Decoder::new().decompress(body, out)?;
    out.truncate(n);
    Ok(())
}
