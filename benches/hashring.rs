//! Placement cost per series: the Thanos series hash over the labels of a request captured
//! from a real Prometheus, and replica lookups (replication factor 3) on hashmod and ketama
//! rings of 3 and 30 endpoints.

mod common;

use std::hint::black_box;

use common::{group, owned_series, TENANT};
use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion, Throughput};
use hashring::{parse_config, series_hash, Algorithm, Multiring};

/// Replication factor of the lookups.
const RF: usize = 3;

/// A `hashrings.json` with one catch-all ring of `n` endpoints named like a StatefulSet's pods.
fn hashrings_json(n: usize) -> String {
    let endpoints: Vec<String> = (0..n)
        .map(|i| {
            format!("\"thanos-receive-{i}.thanos-receive.monitoring.svc.cluster.local:10901\"")
        })
        .collect();
    format!(
        "[{{\"hashring\": \"default\", \"endpoints\": [{}]}}]",
        endpoints.join(", ")
    )
}

fn benches<M: Measurement>(c: &mut Criterion<M>) {
    let series = owned_series();
    let n = series.len() as u64;

    let mut g = group(c, "series_hash");
    g.throughput(Throughput::Elements(n));
    g.bench_function("fixture-2000", |b| {
        b.iter(|| {
            series.iter().fold(0u64, |acc, s| {
                acc ^ series_hash(black_box(TENANT), black_box(s).pairs())
            })
        })
    });
    g.finish();

    let hashes: Vec<u64> = series
        .iter()
        .map(|s| series_hash(TENANT, s.pairs()))
        .collect();
    let mut g = group(c, "get_n_rf3");
    g.throughput(Throughput::Elements(n));
    for algorithm in [Algorithm::Hashmod, Algorithm::Ketama] {
        for endpoints in [3, 30] {
            let configs = parse_config(hashrings_json(endpoints).as_bytes()).unwrap();
            let ring = Multiring::new(&configs, algorithm, RF).unwrap();
            let id = ring.ring_for_tenant(TENANT).unwrap();
            g.bench_function(BenchmarkId::new(algorithm.as_str(), endpoints), |b| {
                b.iter(|| {
                    let mut acc = 0usize;
                    for &h in black_box(&hashes) {
                        for r in 0..RF {
                            acc = acc.wrapping_add(ring.get_n(id, h, r).unwrap().address.len());
                        }
                    }
                    acc
                })
            });
        }
    }
    g.finish();
}

fn main() {
    common::run(benches, benches);
}
