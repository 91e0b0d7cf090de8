//! Profiling driver for the ingest hot path without HTTP: snappy → decode → append (WAL on).
//!
//! `cargo run --release --example profile_ingest -- [series] [rounds] [writers]`, or under
//! `valgrind --tool=callgrind` for repeatable instruction counts. Prints samples/s and CPU time.
//! Requests are pre-encoded (2000 one-sample series each, 10 labels), like Prometheus batches.

use std::sync::Arc;
use std::time::Instant;

use ringest::ingest::Ingestor;
use ringest::remote_write::{self, Label, Limits, Sample, Series, WriteRequest};
use ringest::tsdb::db::DbOptions;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().unwrap());
    let n_series = args.next().unwrap_or(100_000);
    let rounds = args.next().unwrap_or(5);
    let writers = args.next().unwrap_or(2);
    let per_request = 2000;

    // Label sets: 10 labels, realistic cardinalities.
    let names: Vec<String> = (0..n_series)
        .map(|i| format!("metric_{}", i % 200))
        .collect();
    let pods: Vec<String> = (0..n_series)
        .map(|i| format!("pod-{:06}", i / 20))
        .collect();
    let owned: Vec<Vec<(String, String)>> = (0..n_series)
        .map(|i| {
            vec![
                ("__name__".into(), names[i].clone()),
                ("cluster".into(), "eu-west-1".into()),
                ("container".into(), format!("c{}", i % 7)),
                (
                    "instance".into(),
                    format!("10.0.{}.{}:9100", (i / 250) % 250, i % 250),
                ),
                ("job".into(), format!("job-{}", i % 13)),
                ("le".into(), format!("{}", i % 20)),
                ("namespace".into(), format!("ns-{}", i % 31)),
                ("node".into(), format!("node-{}", i % 97)),
                ("pod".into(), pods[i].clone()),
                ("series".into(), format!("{i}")),
            ]
        })
        .collect();

    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 30 * 60_000;
    let mut bodies = Vec::new();
    let mut raw = Vec::new();
    for round in 0..rounds {
        for chunk in (0..n_series).collect::<Vec<_>>().chunks(per_request) {
            let mut req = WriteRequest::default();
            for &i in chunk {
                let l0 = req.labels.len() as u32;
                req.labels
                    .extend(owned[i].iter().map(|(n, v)| Label { name: n, value: v }));
                let s0 = req.samples.len() as u32;
                req.samples.push(Sample {
                    timestamp: t0 + round as i64 * 15_000,
                    value: (i * 7 + round) as f64,
                });
                req.series.push(Series {
                    labels: l0..req.labels.len() as u32,
                    samples: s0..req.samples.len() as u32,
                });
            }
            raw.clear();
            remote_write::encode_v1(&req, req.series.iter(), &mut raw);
            bodies.push(snap::raw::Encoder::new().compress_vec(&raw).unwrap());
        }
    }
    let samples_total = n_series * rounds;
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    eprintln!(
        "{} requests, {samples_total} samples, {:.1} MiB compressed",
        bodies.len(),
        bytes as f64 / (1 << 20) as f64
    );

    // RINGEST_PROFILE_DIR keeps the data (e.g. to profile WAL replay with `profile_replay`).
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("RINGEST_PROFILE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let ingestor = Arc::new(Ingestor::new(
        dir,
        DbOptions::default(),
        ringest::ingest::multitsdb::tenant_label("tenant_id"),
    ));
    ingestor.replay().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(writers)
        .enable_all()
        .build()
        .unwrap();
    let bodies = Arc::new(bodies);
    let per_round = n_series.div_ceil(per_request);
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    rt.block_on(async {
        for round in 0..rounds {
            // One round at a time, so every series' samples arrive in time order.
            let mut tasks = Vec::new();
            for w in 0..writers {
                let ingestor = ingestor.clone();
                let bodies = bodies.clone();
                tasks.push(tokio::spawn(async move {
                    let limits = Limits::default();
                    // Buffers reused across requests, as the server does.
                    let mut raw = Vec::new();
                    let mut spare = WriteRequest::default();
                    for i in (round * per_round..(round + 1) * per_round)
                        .skip(w)
                        .step_by(writers)
                    {
                        remote_write::decompress_into(&bodies[i], &limits, &mut raw).unwrap();
                        let mut req = spare.recycle();
                        remote_write::decode_v1_into(&raw, &mut req).unwrap();
                        let series: Vec<&Series> = req.series.iter().collect();
                        ingestor
                            .write("default-tenant", &req, &series)
                            .await
                            .unwrap();
                        drop(series);
                        spare = req.recycle();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    });
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{samples_total} samples in {wall:.2}s: {:.0} samples/s, {:.2} CPU s per million samples ({:.0} samples per CPU-second)",
        samples_total as f64 / wall,
        cpu / (samples_total as f64 / 1e6),
        samples_total as f64 / cpu
    );
    ingestor.close();
}
