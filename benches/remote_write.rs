//! Remote-write decoding on requests captured from a real Prometheus 2.42: snappy
//! decompression, remote write 1.0 and 2.0 decoding (labels sorted and validated, as the
//! server does), and the whole body-to-request step with reused buffers.

mod common;

use std::hint::black_box;

use common::{fixtures, group, Fixture};
use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion, Throughput};
use ringest::remote_write::{
    decode_v1, decode_v1_into, decode_v2_into, decompress_into, DecodeError, Limits, WriteRequest,
};

/// Which protocol a body is in.
#[derive(Clone, Copy)]
enum Version {
    V1,
    V2,
}

impl Version {
    fn name(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }

    fn compressed(self, f: &Fixture) -> &[u8] {
        match self {
            Version::V1 => f.v1_compressed,
            Version::V2 => &f.v2_compressed,
        }
    }

    fn raw(self, f: &Fixture) -> &[u8] {
        match self {
            Version::V1 => &f.v1_raw,
            Version::V2 => &f.v2_raw,
        }
    }

    fn decode_into<'a>(self, buf: &'a [u8], req: &mut WriteRequest<'a>) -> Result<(), DecodeError> {
        match self {
            Version::V1 => decode_v1_into(buf, req),
            Version::V2 => decode_v2_into(buf, req),
        }
    }
}

/// Throughputs reported for one body: decompressed protobuf bytes, then samples.
fn throughputs(v: Version, f: &Fixture) -> [(&'static str, Throughput); 2] {
    [
        ("bytes", Throughput::Bytes(v.raw(f).len() as u64)),
        ("samples", Throughput::Elements(f.samples as u64)),
    ]
}

/// `snap` decompression into a reused buffer; throughput in decompressed bytes.
fn decompress<M: Measurement>(c: &mut Criterion<M>, fixtures: &[Fixture]) {
    let mut g = group(c, "decompress");
    let limits = Limits::default();
    for f in fixtures {
        for v in [Version::V1, Version::V2] {
            g.throughput(Throughput::Bytes(v.raw(f).len() as u64));
            g.bench_function(format!("{}-{}", v.name(), f.name), |b| {
                let mut out = Vec::new();
                b.iter(|| {
                    decompress_into(black_box(v.compressed(f)), &limits, &mut out).unwrap();
                    out.len()
                })
            });
        }
    }
    g.finish();
}

/// Protobuf decoding of a decompressed body into a reused `WriteRequest` (labels sorted and
/// validated, strings borrowed).
fn decode<M: Measurement>(c: &mut Criterion<M>, fixtures: &[Fixture], v: Version) {
    let mut g = group(c, &format!("decode_{}", v.name()));
    for f in fixtures {
        let raw = v.raw(f);
        for (unit, t) in throughputs(v, f) {
            g.throughput(t);
            g.bench_function(BenchmarkId::new(unit, f.name), |b| {
                let mut req = WriteRequest::default();
                b.iter(|| {
                    v.decode_into(black_box(raw), &mut req).unwrap();
                    req.num_samples()
                })
            });
        }
    }
    g.finish();
}

/// What the server does with a body: bounded decompression, then decode and validate, with
/// the decompression buffer and the request's vectors reused across requests
/// (`WriteRequest::recycle`).
fn body_to_request<M: Measurement>(c: &mut Criterion<M>, fixtures: &[Fixture]) {
    let mut g = group(c, "body_to_request");
    let limits = Limits::default();
    for f in fixtures {
        for v in [Version::V1, Version::V2] {
            for (unit, t) in throughputs(v, f) {
                g.throughput(t);
                g.bench_function(
                    BenchmarkId::new(unit, format!("{}-{}", v.name(), f.name)),
                    |b| {
                        let mut raw = Vec::new();
                        let mut spare: WriteRequest<'static> = WriteRequest::default();
                        b.iter(|| {
                            decompress_into(black_box(v.compressed(f)), &limits, &mut raw).unwrap();
                            let mut req = std::mem::take(&mut spare).recycle();
                            v.decode_into(&raw, &mut req).unwrap();
                            let n = req.num_samples();
                            spare = req.recycle();
                            n
                        })
                    },
                );
            }
        }
    }
    // The same with fresh buffers per request, as `src/server` does today.
    let f = &fixtures[0];
    g.throughput(Throughput::Elements(f.samples as u64));
    g.bench_function(BenchmarkId::new("samples", "v1-fresh-buffers"), |b| {
        b.iter(|| {
            let mut raw = Vec::new();
            decompress_into(black_box(f.v1_compressed), &limits, &mut raw).unwrap();
            let req = decode_v1(&raw).unwrap();
            req.num_samples()
        })
    });
    g.finish();
}

fn benches<M: Measurement>(c: &mut Criterion<M>) {
    let fixtures = fixtures();
    decompress(c, &fixtures);
    decode(c, &fixtures, Version::V1);
    decode(c, &fixtures, Version::V2);
    body_to_request(c, &fixtures);
}

fn main() {
    common::run(benches, benches);
}
