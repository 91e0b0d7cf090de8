//! Fixtures and settings shared by the benches: remote-write bodies captured from a real
//! Prometheus 2.42 (see `benches/fixtures/README.md`) and a short criterion configuration.

// Each bench uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use ringest::remote_write::{
    decode_v1, decompress_into, Label, Limits, Sample, Series, V2Encoder, WriteRequest,
};

/// Tenant used wherever a bench needs one (the receiver's default).
pub const TENANT: &str = "default-tenant";

/// The captured bodies: name and snappy-compressed remote write 1.0 `WriteRequest`, as sent.
pub const CAPTURED: [(&str, &[u8]); 2] = [
    ("2000", include_bytes!("../fixtures/v1-2000.snappy")),
    ("500", include_bytes!("../fixtures/v1-500.snappy")),
];

/// Criterion settings that keep every bench short on a shared 2-core machine.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
}

/// Whether `RINGEST_BENCH_CPU=1` asks single-threaded benches to measure [`ThreadCpuTime`].
pub fn cpu_time() -> bool {
    std::env::var("RINGEST_BENCH_CPU").is_ok_and(|v| v == "1")
}

/// Runs `benches` like `criterion_group!` + `criterion_main!`, timing wall-clock time or, with
/// `RINGEST_BENCH_CPU=1`, the bench thread's CPU time.
pub fn run(benches: fn(&mut Criterion<WallTime>), cpu_benches: fn(&mut Criterion<ThreadCpuTime>)) {
    if cpu_time() {
        let mut c = config()
            .with_measurement(ThreadCpuTime)
            .configure_from_args();
        cpu_benches(&mut c);
    } else {
        let mut c = config().configure_from_args();
        benches(&mut c);
    }
    Criterion::default().configure_from_args().final_summary();
}

/// A benchmark group; with [`ThreadCpuTime`] every sample runs the same number of iterations
/// (`SamplingMode::Flat`), so that none is short enough for the tick-sized lag to matter.
pub fn group<'a, M: Measurement>(c: &'a mut Criterion<M>, name: &str) -> BenchmarkGroup<'a, M> {
    let mut g = c.benchmark_group(name);
    if cpu_time() {
        g.sampling_mode(SamplingMode::Flat);
    }
    g
}

/// CPU time of the bench thread, from `/proc/thread-self/schedstat` (Linux; the kernel updates it
/// at every context switch and scheduler tick, so each reading may lag by one tick, 4 ms here).
///
/// Time the thread spends waiting for a CPU that other processes hold is not counted, so on a
/// loaded machine this gives per-core figures where wall-clock time gives fractions of a core.
/// Only for single-threaded benches: other threads' work is not counted either.
pub struct ThreadCpuTime;

/// Wall-clock measurement whose nanosecond formatter [`ThreadCpuTime`] reuses.
static WALL: WallTime = WallTime;

/// Nanoseconds the calling thread has run on a CPU.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("reading /proc/thread-self/schedstat")
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = Duration;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> Duration {
        Duration::from_nanos(thread_cpu_ns().saturating_sub(start))
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

/// One captured request, in both protocol versions.
pub struct Fixture {
    /// Short name: the `max_samples_per_send` it was captured with.
    pub name: &'static str,
    /// Remote write 1.0 body as Prometheus sent it (snappy).
    pub v1_compressed: &'static [u8],
    /// Remote write 1.0 body, decompressed protobuf.
    pub v1_raw: Vec<u8>,
    /// The same request re-encoded as remote write 2.0 with `V2Encoder`, snappy-compressed.
    pub v2_compressed: Vec<u8>,
    /// The remote write 2.0 body, decompressed protobuf.
    pub v2_raw: Vec<u8>,
    /// Valid series in the request.
    pub series: usize,
    /// Float samples in the request.
    pub samples: usize,
    /// Labels in the request.
    pub labels: usize,
}

/// Decompresses and decodes every captured body, and re-encodes each as remote write 2.0.
pub fn fixtures() -> Vec<Fixture> {
    CAPTURED
        .iter()
        .map(|&(name, v1_compressed)| {
            let mut v1_raw = Vec::new();
            decompress_into(v1_compressed, &Limits::default(), &mut v1_raw)
                .expect("fixture decompresses");
            let req = decode_v1(&v1_raw).expect("fixture decodes");
            assert!(req.invalid.is_empty(), "fixture has invalid series");
            let mut enc = V2Encoder::new();
            for s in &req.series {
                enc.add_series(req.series_labels(s), req.series_samples(s));
            }
            let mut v2_raw = Vec::new();
            enc.finish(&mut v2_raw);
            let v2_compressed = snap::raw::Encoder::new()
                .compress_vec(&v2_raw)
                .expect("snappy compresses");
            let (series, samples, labels) = (req.series.len(), req.num_samples(), req.labels.len());
            drop(req);
            eprintln!(
                "fixture {name}: {series} series, {samples} samples, {labels} labels; \
                 v1 {} B snappy / {} B raw ({:.1} B per sample); v2 {} B snappy / {} B raw",
                v1_compressed.len(),
                v1_raw.len(),
                v1_raw.len() as f64 / samples as f64,
                v2_compressed.len(),
                v2_raw.len(),
            );
            Fixture {
                name,
                v1_compressed,
                v1_raw,
                v2_compressed,
                v2_raw,
                series,
                samples,
                labels,
            }
        })
        .collect()
}

/// A series with owned labels (sorted by name) and samples, for benches that rewrite requests.
#[derive(Clone, Debug)]
pub struct OwnedSeries {
    /// Label pairs sorted by name.
    pub labels: Vec<(String, String)>,
    /// `(timestamp ms, value)` pairs.
    pub samples: Vec<(i64, f64)>,
}

impl OwnedSeries {
    /// The labels as borrowed pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.labels.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// The series of the largest captured request, with owned strings.
pub fn owned_series() -> Vec<OwnedSeries> {
    let mut raw = Vec::new();
    decompress_into(CAPTURED[0].1, &Limits::default(), &mut raw).expect("fixture decompresses");
    let req = decode_v1(&raw).expect("fixture decodes");
    req.series
        .iter()
        .map(|s| OwnedSeries {
            labels: req
                .series_labels(s)
                .iter()
                .map(|l| (l.name.to_owned(), l.value.to_owned()))
                .collect(),
            samples: req
                .series_samples(s)
                .iter()
                .map(|x| (x.timestamp, x.value))
                .collect(),
        })
        .collect()
}

/// The first occurrence of each label set: remote write 1.0 batches from Prometheus carry one
/// sample per `TimeSeries`, so a series scraped several times within a batch repeats.
pub fn distinct(series: &[OwnedSeries]) -> Vec<OwnedSeries> {
    let mut seen = std::collections::HashSet::new();
    series
        .iter()
        .filter(|s| seen.insert(&s.labels))
        .cloned()
        .collect()
}

/// `copies` distinct copies of `series`: copy `i` gets the extra label `bench_copy="i"`.
pub fn copies(series: &[OwnedSeries], copies: usize) -> Vec<OwnedSeries> {
    (0..copies)
        .flat_map(|i| {
            series.iter().map(move |s| {
                let mut labels = s.labels.clone();
                labels.push(("bench_copy".to_owned(), i.to_string()));
                labels.sort();
                OwnedSeries {
                    labels,
                    samples: s.samples.clone(),
                }
            })
        })
        .collect()
}

/// A decoded-looking request borrowing from `series`, as the decoder would produce it.
pub fn request(series: &[OwnedSeries]) -> WriteRequest<'_> {
    let mut req = WriteRequest::default();
    for s in series {
        let (l0, s0) = (req.labels.len() as u32, req.samples.len() as u32);
        req.labels.extend(s.labels.iter().map(|(n, v)| Label {
            name: n.as_str(),
            value: v.as_str(),
        }));
        req.samples.extend(
            s.samples
                .iter()
                .map(|&(timestamp, value)| Sample { timestamp, value }),
        );
        req.series.push(Series {
            labels: l0..req.labels.len() as u32,
            samples: s0..req.samples.len() as u32,
        });
    }
    req
}

/// A deterministic pseudo-random generator (xorshift64*), so runs see the same data.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
