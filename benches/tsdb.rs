//! The storage side of an ingestor: head append (new and existing series), WAL record
//! encoding, WAL writes and fsyncs, `Db::append` with group commit, and XOR chunks.
//!
//! Series are the distinct series of a request captured from a real Prometheus 2.42, copied with an extra
//! `bench_copy` label where a bench needs more of them. WAL benches write to a temporary
//! directory under `$RINGEST_BENCH_DIR` (default: the system temp dir), so they measure that
//! disk's fsync.

mod common;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{config, copies, distinct, owned_series, request, OwnedSeries, Rng};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ringest::remote_write::{Series, WriteRequest};
use ringest::tsdb::chunkenc::{iter_bytes, XorChunk};
use ringest::tsdb::db::{Db, DbOptions};
use ringest::tsdb::head::{Head, HeadOptions, MemSeries};
use ringest::tsdb::labels::{pack_pairs, packed_hash};
use ringest::tsdb::record::{encode_samples, encode_series, RefSample};
use ringest::tsdb::wlog::{Wal, WalOptions};

/// Copies of the fixture's distinct series used by the head benches.
const HEAD_COPIES: usize = 25;
/// Samples per XOR chunk, as Prometheus cuts them.
const CHUNK_SAMPLES: usize = 120;
/// Scrape interval of the synthetic chunk data.
const SCRAPE_MS: i64 = 15_000;

/// A fresh temporary directory for a WAL or a Db.
fn temp_dir() -> tempfile::TempDir {
    let base = std::env::var_os("RINGEST_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("ringest-bench-")
        .tempdir_in(base)
        .expect("temp dir")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// The value sample `step` of series `i` gets: even series behave as counters, odd ones as
/// constants (the mix keeps XOR encoding realistic without making every value change).
fn value(base: f64, i: usize, step: i64) -> f64 {
    if i % 2 == 0 {
        base + step as f64
    } else {
        base
    }
}

/// Appends one sample to every series through the head's own path (hash once, find or create
/// in the striped map, lock the series, apply Prometheus's append rules).
fn head_append(head: &Head, series: &[OwnedSeries], t: i64, step: i64, buf: &mut String) {
    for (i, s) in series.iter().enumerate() {
        pack_pairs(s.pairs(), buf);
        let (ms, _) = head.get_or_create(packed_hash(buf), buf);
        let mut d = ms.lock();
        let v = value(s.samples[0].1, i, step);
        head.append_sample(&mut d, t, v, i64::MIN, i64::MAX)
            .expect("appendable");
    }
}

fn head(c: &mut Criterion, base: &[OwnedSeries]) {
    let series = copies(base, HEAD_COPIES);
    let t0 = series[0].samples[0].0;
    let mut g = c.benchmark_group("head_append");
    g.throughput(Throughput::Elements(series.len() as u64));

    // Every series is new: creation, label interning and both stripe maps.
    g.bench_function("new_series", |b| {
        let mut buf = String::new();
        b.iter_batched(
            || Head::new(HeadOptions::default()),
            |head| {
                head_append(&head, &series, t0, 0, &mut buf);
                head // dropped outside the measurement
            },
            BatchSize::PerIteration,
        )
    });

    // Every series exists: hash, lookup, lock, append (what `Db::append` does per series).
    g.bench_function("existing_series", |b| {
        let head = Head::new(HeadOptions::default());
        let mut buf = String::new();
        let mut step = 0;
        head_append(&head, &series, t0, step, &mut buf);
        b.iter(|| {
            step += 1;
            head_append(&head, &series, t0 + step * SCRAPE_MS, step, &mut buf);
        })
    });

    // Series already resolved: only the per-series lock and the XOR append.
    g.bench_function("existing_series_resolved", |b| {
        let head = Head::new(HeadOptions::default());
        let mut buf = String::new();
        let mut step = 0;
        head_append(&head, &series, t0, step, &mut buf);
        let resolved: Vec<(std::sync::Arc<MemSeries>, f64)> = series
            .iter()
            .map(|s| {
                pack_pairs(s.pairs(), &mut buf);
                (
                    head.get_or_create(packed_hash(&buf), &buf).0,
                    s.samples[0].1,
                )
            })
            .collect();
        b.iter(|| {
            step += 1;
            let t = t0 + step * SCRAPE_MS;
            for (i, (ms, base)) in resolved.iter().enumerate() {
                let mut d = ms.lock();
                head.append_sample(&mut d, t, value(*base, i, step), i64::MIN, i64::MAX)
                    .expect("appendable");
            }
        })
    });
    g.finish();
}

fn records(c: &mut Criterion, series: &[OwnedSeries]) {
    let mut g = c.benchmark_group("wal_record");
    let mut buf = Vec::new();
    g.throughput(Throughput::Elements(series.len() as u64));
    g.bench_function("encode_series", |b| {
        b.iter(|| {
            buf.clear();
            encode_series(
                series
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (i as u64 + 1, s.pairs())),
                &mut buf,
            );
            buf.len()
        })
    });
    let samples = ref_samples(series, 0);
    g.throughput(Throughput::Elements(samples.len() as u64));
    g.bench_function("encode_samples", |b| {
        b.iter(|| {
            buf.clear();
            encode_samples(black_box(&samples), &mut buf);
            buf.len()
        })
    });
    g.finish();
}

/// The fixture's samples as a Samples record's content, refs 1..=n, `step` scrapes later.
fn ref_samples(series: &[OwnedSeries], step: i64) -> Vec<RefSample> {
    series
        .iter()
        .enumerate()
        .map(|(i, s)| RefSample {
            r#ref: i as u64 + 1,
            t: s.samples[0].0 + step * SCRAPE_MS,
            v: value(s.samples[0].1, i, step),
        })
        .collect()
}

fn wal(c: &mut Criterion, series: &[OwnedSeries]) {
    let mut rec = Vec::new();
    encode_samples(&ref_samples(series, 1), &mut rec);
    let mut g = c.benchmark_group("wal");
    g.throughput(Throughput::Bytes(rec.len() as u64));

    // Paging, CRC32C and snappy of one Samples record per iteration, no fsync. A fresh WAL per
    // measurement keeps the disk used small.
    g.bench_function("log", |b| {
        b.iter_custom(|iters| {
            let dir = temp_dir();
            let mut w = Wal::open(dir.path(), WalOptions::default()).expect("open wal");
            let start = Instant::now();
            for _ in 0..iters {
                w.log(&[&rec]).expect("log");
            }
            let elapsed = start.elapsed();
            drop(w);
            elapsed
        })
    });

    // One record, then flush and fdatasync: the latency floor of an acknowledged write.
    let dir = temp_dir();
    let mut w = Wal::open(dir.path(), WalOptions::default()).expect("open wal");
    g.bench_function("log_sync", |b| {
        b.iter(|| {
            w.log(&[&rec]).expect("log");
            w.sync().expect("sync");
        })
    });
    g.finish();
}

/// One request per writer, each over its own copy of the fixture's series.
struct Writer<'a> {
    req: WriteRequest<'a>,
    series: Vec<Series>,
}

fn db(c: &mut Criterion, base: &[OwnedSeries]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("db_append");
    for writers in [1usize, 4, 16] {
        let owned = copies(base, writers);
        let per_writer = base.len();
        let mut ws: Vec<Writer<'_>> = owned
            .chunks(per_writer)
            .map(|chunk| {
                let req = request(chunk);
                let series = req.series.clone();
                Writer { req, series }
            })
            .collect();
        // Timestamps start 50 minutes ago and advance 10 ms per iteration, staying inside the
        // appendable window (one hour behind the newest sample, 10 minutes into the future).
        let t0 = now_ms() - 50 * 60 * 1000;
        let samples: usize = ws.iter().map(|w| w.req.num_samples()).sum();
        g.throughput(Throughput::Elements(samples as u64));
        let dir = temp_dir();
        let db = Db::open(dir.path(), DbOptions::default()).expect("open db");
        let mut step = 0i64;
        let mut appends = 0u64;
        let fsyncs_before = db.fsync_count();
        g.bench_function(BenchmarkId::new("concurrent_requests", writers), |b| {
            b.iter(|| {
                step += 1;
                for w in ws.iter_mut() {
                    for (i, smp) in w.req.samples.iter_mut().enumerate() {
                        smp.timestamp = t0 + step * 10;
                        smp.value = value(smp.value, i, 1);
                    }
                }
                let db = &db;
                rt.block_on(futures::future::join_all(ws.iter().map(|w| {
                    let refs: Vec<&Series> = w.series.iter().collect();
                    async move { db.append(&w.req.batch(&refs)).await }
                })))
                .into_iter()
                .for_each(|r| {
                    r.expect("append");
                });
                appends += writers as u64;
            })
        });
        let fsyncs = db.fsync_count() - fsyncs_before;
        if appends > 0 {
            eprintln!(
            "db_append/concurrent_requests/{writers}: {appends} appends of {per_writer} series, \
             {fsyncs} fsyncs ({:.2} appends per fsync)",
            appends as f64 / fsyncs.max(1) as f64
        );
        }
        db.close().expect("close db");
    }
    g.finish();
}

/// 120 samples of one kind of series, scraped every 15 s with a few ms of jitter.
fn chunk_samples(kind: &str, rng: &mut Rng) -> Vec<(i64, f64)> {
    let mut t = 1_700_000_000_000i64;
    let mut v = match kind {
        "counter" => 1_234_567.0,
        "gauge" => 52.5,
        _ => 1.0,
    };
    (0..CHUNK_SAMPLES)
        .map(|_| {
            let sample = (t + (rng.next_u64() % 5) as i64 - 2, v);
            t += SCRAPE_MS;
            match kind {
                // A request counter: integer increments of 0..1000.
                "counter" => v += (rng.next_u64() % 1000) as f64,
                // A random walk with two decimals, like a temperature or a latency.
                "gauge" => v = ((v + rng.next_f64() * 2.0 - 1.0) * 100.0).round() / 100.0,
                // `up`: constant.
                _ => {}
            }
            sample
        })
        .collect()
}

fn xor(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut g = c.benchmark_group("xor_chunk");
    g.throughput(Throughput::Elements(CHUNK_SAMPLES as u64));
    for kind in ["counter", "gauge", "constant"] {
        let samples = chunk_samples(kind, &mut rng);
        let mut chunk = XorChunk::new();
        for &(t, v) in &samples {
            chunk.append(t, v);
        }
        let bytes = chunk.bytes().to_vec();
        eprintln!(
            "xor_chunk {kind}: {} samples in {} bytes ({:.2} bytes per sample)",
            CHUNK_SAMPLES,
            bytes.len(),
            bytes.len() as f64 / CHUNK_SAMPLES as f64
        );
        g.bench_function(BenchmarkId::new("encode", kind), |b| {
            b.iter(|| {
                let mut chunk = XorChunk::new();
                for &(t, v) in black_box(&samples) {
                    chunk.append(t, v);
                }
                chunk
            })
        });
        g.bench_function(BenchmarkId::new("decode", kind), |b| {
            b.iter(|| {
                let mut it = iter_bytes(black_box(&bytes));
                let sum = it.by_ref().fold(0.0, |acc, (t, v)| acc + v + t as f64);
                assert!(it.err().is_none());
                sum
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let series = distinct(&owned_series());
    eprintln!(
        "tsdb benches: {} distinct series of the fixture",
        series.len()
    );
    xor(c);
    records(c, &series);
    head(c, &series);
    wal(c, &series);
    db(c, &series);
}

criterion_group! {
    name = tsdb;
    config = config().measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(tsdb);
