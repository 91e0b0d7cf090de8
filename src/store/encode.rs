//! `thanos.SeriesResponse` frames written straight from a series' labels and borrowed chunk
//! bytes: no owned prost tree (label strings, chunk copies) per frame. Field numbers are those of
//! `pkg/store/storepb/{rpc,types}.proto`; zero and empty fields are left out as proto3 encoders
//! do, so the bytes equal prost's encoding of the same message (tested below).

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

use crate::tsdb::labels::Labels;

/// Most bytes of chunk data and labels per `series` frame (Thanos `RemoteReadFrameLimit`):
/// a longer series continues in the next frame.
pub const MAX_BYTES_PER_FRAME: usize = 1 << 20;

/// One chunk of a series as sent: `AggrChunk{min_time, max_time, raw: Chunk{type, data, hash}}`.
#[derive(Clone, Copy, Debug)]
pub struct ChunkRef<'a> {
    /// First sample's timestamp.
    pub mint: i64,
    /// Last sample's timestamp.
    pub maxt: i64,
    /// `thanos.Chunk.Encoding`: the TSDB encoding minus one (XOR = 0).
    pub encoding: i32,
    /// The chunk bytes as stored.
    pub data: &'a [u8],
    /// xxhash64 of `data` (Query's chunk dedup keys on it; 0 = not computed).
    pub hash: u64,
}

fn key_len(tag: u32) -> usize {
    encoded_len_varint(u64::from(tag << 3))
}

/// Length of a length-delimited field holding `len` bytes.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn varint_field_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(v)
    }
}

fn put_varint_field(tag: u32, v: u64, out: &mut Vec<u8>) {
    if v != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(v, out);
    }
}

fn put_delimited(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn string_field_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        delimited_len(tag, s.len())
    }
}

fn label_len(name: &str, value: &str) -> usize {
    string_field_len(1, name) + string_field_len(2, value)
}

/// Encoded size of one label inside `Series.labels` (Thanos counts these against the frame).
pub fn label_size(name: &str, value: &str) -> usize {
    delimited_len(1, label_len(name, value))
}

fn raw_chunk_len(c: &ChunkRef<'_>) -> usize {
    varint_field_len(1, c.encoding as u64)
        + (if c.data.is_empty() {
            0
        } else {
            delimited_len(2, c.data.len())
        })
        + varint_field_len(3, c.hash)
}

fn aggr_chunk_len(c: &ChunkRef<'_>) -> usize {
    varint_field_len(1, c.mint as u64)
        + varint_field_len(2, c.maxt as u64)
        + delimited_len(3, raw_chunk_len(c))
}

/// Encoded size of one chunk inside `Series.chunks`.
pub fn chunk_size(c: &ChunkRef<'_>) -> usize {
    delimited_len(2, aggr_chunk_len(c))
}

fn series_len(labels: &Labels, chunks: &[ChunkRef<'_>]) -> usize {
    labels.iter().map(|(n, v)| label_size(n, v)).sum::<usize>()
        + chunks.iter().map(chunk_size).sum::<usize>()
}

/// Appends a `thanos.Series` message (labels, then chunks) to `out`.
fn put_series(labels: &Labels, chunks: &[ChunkRef<'_>], out: &mut Vec<u8>) {
    for (n, v) in labels.iter() {
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(label_len(n, v) as u64, out);
        if !n.is_empty() {
            put_delimited(1, n.as_bytes(), out);
        }
        if !v.is_empty() {
            put_delimited(2, v.as_bytes(), out);
        }
    }
    for c in chunks {
        encode_key(2, WireType::LengthDelimited, out);
        encode_varint(aggr_chunk_len(c) as u64, out);
        put_varint_field(1, c.mint as u64, out);
        put_varint_field(2, c.maxt as u64, out);
        encode_key(3, WireType::LengthDelimited, out);
        encode_varint(raw_chunk_len(c) as u64, out);
        put_varint_field(1, c.encoding as u64, out);
        if !c.data.is_empty() {
            put_delimited(2, c.data, out);
        }
        put_varint_field(3, c.hash, out);
    }
}

/// A `SeriesResponse` frame carrying one series (oneof field 1).
pub fn series_frame(labels: &Labels, chunks: &[ChunkRef<'_>]) -> Vec<u8> {
    let len = series_len(labels, chunks);
    let mut out = Vec::with_capacity(delimited_len(1, len));
    encode_key(1, WireType::LengthDelimited, &mut out);
    encode_varint(len as u64, &mut out);
    put_series(labels, chunks, &mut out);
    out
}

/// A `SeriesResponse` frame carrying a warning (oneof field 2).
pub fn warning_frame(warning: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(delimited_len(2, warning.len()));
    put_delimited(2, warning.as_bytes(), &mut out);
    out
}

/// Builds a `SeriesResponse` frame carrying a `SeriesBatch` (oneof field 4), series by series.
#[derive(Default)]
pub struct BatchBuilder {
    body: Vec<u8>,
    len: usize,
}

impl BatchBuilder {
    /// Adds one series (or one frame's share of a long series).
    pub fn push(&mut self, labels: &Labels, chunks: &[ChunkRef<'_>]) {
        let len = series_len(labels, chunks);
        encode_key(1, WireType::LengthDelimited, &mut self.body);
        encode_varint(len as u64, &mut self.body);
        put_series(labels, chunks, &mut self.body);
        self.len += 1;
    }

    /// Series in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no series.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Encoded bytes of the series so far.
    pub fn bytes(&self) -> usize {
        self.body.len()
    }

    /// The frame, leaving the builder empty.
    pub fn take_frame(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(delimited_len(4, self.body.len()));
        put_delimited(4, &self.body, &mut out);
        self.body.clear();
        self.len = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;
    use proto::storepb::{
        series_response::Result as R, AggrChunk, Chunk, Label, Series, SeriesBatch, SeriesResponse,
    };

    fn prost_series(labels: &Labels, chunks: &[ChunkRef<'_>]) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.into(),
                    value: v.into(),
                })
                .collect(),
            chunks: chunks
                .iter()
                .map(|c| AggrChunk {
                    min_time: c.mint,
                    max_time: c.maxt,
                    raw: Some(Chunk {
                        r#type: c.encoding,
                        data: c.data.to_vec(),
                        hash: c.hash,
                    }),
                    ..Default::default()
                })
                .collect(),
        }
    }

    fn arb_chunks() -> impl Strategy<Value = Vec<(i64, i64, i32, Vec<u8>, u64)>> {
        proptest::collection::vec(
            (
                any::<i64>(),
                any::<i64>(),
                0..3i32,
                proptest::collection::vec(any::<u8>(), 0..40),
                prop_oneof![Just(0u64), any::<u64>()],
            ),
            0..4,
        )
    }

    fn arb_labels() -> impl Strategy<Value = Labels> {
        proptest::collection::btree_map("[a-z_]{1,6}", "[a-z0-9]{0,5}", 0..5)
            .prop_map(|m| Labels::from_sorted(m.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    }

    proptest! {
        #[test]
        fn frames_equal_prost_encoding(labels in arb_labels(), raw in arb_chunks(), raw2 in arb_chunks()) {
            let chunks: Vec<ChunkRef<'_>> = raw.iter().map(|(a, b, e, d, h)| ChunkRef {
                mint: *a, maxt: *b, encoding: *e, data: d, hash: *h,
            }).collect();
            let chunks2: Vec<ChunkRef<'_>> = raw2.iter().map(|(a, b, e, d, h)| ChunkRef {
                mint: *a, maxt: *b, encoding: *e, data: d, hash: *h,
            }).collect();
            let want = SeriesResponse { result: Some(R::Series(prost_series(&labels, &chunks))) };
            let got = series_frame(&labels, &chunks);
            prop_assert_eq!(&got, &want.encode_to_vec());
            prop_assert_eq!(got.len(), delimited_len(1, series_len(&labels, &chunks)));

            let mut b = BatchBuilder::default();
            b.push(&labels, &chunks);
            b.push(&labels, &chunks2);
            prop_assert_eq!(b.len(), 2);
            let want = SeriesResponse { result: Some(R::Batch(SeriesBatch {
                series: vec![prost_series(&labels, &chunks), prost_series(&labels, &chunks2)],
            })) };
            prop_assert_eq!(b.take_frame(), want.encode_to_vec());
            prop_assert!(b.is_empty());
        }
    }

    #[test]
    fn warning_frames_decode() {
        let f = warning_frame("partial");
        let got = SeriesResponse::decode(f.as_slice()).unwrap();
        assert_eq!(got.result, Some(R::Warning("partial".into())));
    }
}
