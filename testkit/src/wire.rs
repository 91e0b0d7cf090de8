//! A raw protobuf writer for remote-write bodies prost would not produce (invalid UTF-8, fields in
//! any order, every value's bits) and snappy compression.

/// Protobuf wire type of a varint, for [`pb_key`].
pub const PB_VARINT: u8 = 0;
/// Protobuf wire type of a little-endian 64-bit field.
pub const PB_FIXED64: u8 = 1;
/// Protobuf wire type of a length-delimited field.
pub const PB_LEN: u8 = 2;
/// Protobuf wire type of a little-endian 32-bit field.
pub const PB_FIXED32: u8 = 5;

/// Appends `v` as a LEB128 varint.
pub fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends the key of field `field` with wire type `wire_type`.
pub fn pb_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    pb_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

/// Appends a length-delimited field.
pub fn pb_len(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    pb_key(out, field, PB_LEN);
    pb_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A remote-write 1.0 `Label` body from raw bytes (so names and values may be invalid UTF-8).
pub fn pb_label(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    pb_len(&mut out, 1, name);
    pb_len(&mut out, 2, value);
    out
}

/// A `Sample` body (1.0 and 2.0 share it) with both fields always written, so every value's bits
/// (`-0.0`, NaN payloads) and every timestamp (0, `i64::MIN`) go on the wire as given.
pub fn pb_sample(timestamp: i64, value: f64) -> Vec<u8> {
    let mut out = Vec::new();
    pb_key(&mut out, 1, PB_FIXED64);
    out.extend_from_slice(&value.to_bits().to_le_bytes());
    pb_key(&mut out, 2, PB_VARINT);
    pb_varint(&mut out, timestamp as u64);
    out
}

/// A remote-write 1.0 `TimeSeries` body: labels (raw bytes, in the given order), then samples.
pub fn pb_series(labels: &[(&[u8], &[u8])], samples: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in labels {
        pb_len(&mut out, 1, &pb_label(name, value));
    }
    for &(ts, v) in samples {
        pb_len(&mut out, 2, &pb_sample(ts, v));
    }
    out
}

/// A remote-write 1.0 `WriteRequest` (also the classic `thanos.WriteRequest` without a tenant)
/// from `TimeSeries` bodies.
pub fn pb_write_request(series: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in series {
        pb_len(&mut out, 1, s);
    }
    out
}

/// Snappy block-format compression.
pub fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}
