//! Faults between the router and its ingestors (issue 5), with real processes on loopback:
//! - a hung ingestor (SIGSTOP: it accepts connections and answers nothing): the router's forward
//!   timeout and per-peer backoff keep writes answering 2xx from the other replicas, most of them
//!   without waiting for the timeout, and nothing piles up in the router;
//! - two of three ingestors down: writes answer 503 (retryable), none falsely 2xx; once they are
//!   back, retries succeed and every acknowledged sample reads back.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use proto::prompb::WriteRequest;

const SERIES: usize = 20;

/// One request: every test series at `ts` with value `v`.
fn request(ts: i64, v: f64) -> WriteRequest {
    let idx: Vec<String> = (0..SERIES).map(|i| i.to_string()).collect();
    WriteRequest {
        timeseries: idx
            .iter()
            .map(|i| series(&[("__name__", "ringest_fault"), ("i", i)], &[(ts, v)]))
            .collect(),
        ..Default::default()
    }
}

/// Records the samples of an acknowledged request.
fn remember(acked: &mut BTreeMap<Labels, Samples>, req: &WriteRequest) {
    for ts in &req.timeseries {
        acked
            .entry(pb_labels(&ts.labels))
            .or_default()
            .extend(ts.samples.iter().map(|s| (s.timestamp, s.value.to_bits())));
    }
}

/// Asserts every acknowledged sample reads back through `http` with the same bits.
fn assert_all_read_back(http: &str, acked: &BTreeMap<Labels, Samples>, from: i64, to: i64) {
    let got = read_all(http, None, from, to).unwrap();
    let mut n = 0;
    for (labels, samples) in acked {
        let have: BTreeMap<i64, u64> = got
            .get(labels)
            .unwrap_or_else(|| panic!("series {labels:?} lost"))
            .iter()
            .copied()
            .collect();
        for (t, bits) in samples {
            assert_eq!(have.get(t), Some(bits), "{labels:?}@{t}");
            n += 1;
        }
    }
    eprintln!("read back all {n} acknowledged samples");
}

fn signal(p: &Proc, sig: &str) {
    let pid = p.pid().expect("running").to_string();
    let st = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

fn rss_kib(p: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid().unwrap())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn hung_ingestor_is_backed_off_and_the_other_replicas_keep_serving() {
    let tmp = test_dir("faults-hung");
    let dir = tmp.path();
    let ings: Vec<Ingestor> = (0..3)
        .map(|i| Ingestor::start(&format!("ingest-{i}"), dir, &[]))
        .collect();
    let eps: Vec<&str> = ings.iter().map(|i| i.grpc.as_str()).collect();
    let mut router = Router::start("router", dir, &eps, 3, &["--receive-forward-timeout=1s"]);
    let start = now_ms() - 60_000;
    let mut acked = BTreeMap::new();
    let warm = request(start, 0.5);
    assert!(remote_write(&router.rw, None, &warm).is_2xx());
    remember(&mut acked, &warm);
    let rss_before = rss_kib(&router.proc);

    // Hang one ingestor: its socket accepts, nothing answers.
    signal(&ings[2].proc, "-STOP");
    const N: usize = 80;
    let mut slow = 0;
    let mut latencies = Vec::with_capacity(N);
    let t0 = Instant::now();
    for k in 1..=N {
        let req = request(start + k as i64 * 100, k as f64);
        let t = Instant::now();
        let r = remote_write(&router.rw, None, &req);
        let took = t.elapsed();
        assert!(
            r.is_2xx(),
            "write {k} with one replica hung: {} {}",
            r.status,
            r.text()
        );
        remember(&mut acked, &req);
        if took >= Duration::from_millis(900) {
            slow += 1;
        }
        latencies.push(took);
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = t0.elapsed();
    latencies.sort();
    let backed_off = scrape_metric(
        &router.http,
        "ringest_forward_errors_total",
        &["cause=\"BackedOff\""],
    )
    .unwrap_or(0.0);
    let rss_after = rss_kib(&router.proc);
    eprintln!(
        "hung replica: {N} writes in {elapsed:?}, {slow} waited out the 1 s forward timeout, \
         p50 {:?} p90 {:?} max {:?}; {backed_off} sends skipped while backed off; router RSS \
         {rss_before} -> {rss_after} KiB",
        latencies[N / 2],
        latencies[N * 9 / 10],
        latencies[N - 1]
    );
    // Without backoff every write would wait the full timeout. With it, only the probe after
    // each backoff expires does (100 ms doubling to 5 s: about 10 in these ~16 s).
    assert!(
        slow <= N / 4,
        "{slow} of {N} writes waited for the hung replica"
    );
    assert!(
        backed_off >= (N / 2) as f64,
        "only {backed_off} sends skipped by backoff"
    );
    assert!(
        rss_after < rss_before + 32 * 1024,
        "router RSS grew from {rss_before} to {rss_after} KiB"
    );
    router.proc.assert_running();

    // Resume it: it serves again, and everything acknowledged reads back through the router.
    signal(&ings[2].proc, "-CONT");
    std::thread::sleep(Duration::from_secs(6)); // past the longest backoff
    let req = request(start + (N as i64 + 1) * 100, 0.25);
    assert!(remote_write(&router.rw, None, &req).is_2xx());
    remember(&mut acked, &req);
    assert_all_read_back(&router.http, &acked, start - 1, now_ms());
}

#[test]
fn two_of_three_ingestors_down_answers_503_and_retries_fill_the_gap() {
    let tmp = test_dir("faults-quorum");
    let dir = tmp.path();
    let mut ings: Vec<Ingestor> = (0..3)
        .map(|i| Ingestor::start(&format!("ingest-{i}"), dir, &[]))
        .collect();
    let eps: Vec<&str> = ings.iter().map(|i| i.grpc.as_str()).collect();
    let router = Router::start("router", dir, &eps, 3, &["--receive-forward-timeout=2s"]);
    let start = now_ms() - 60_000;
    let mut acked = BTreeMap::new();
    let first = request(start, 1.0);
    assert!(remote_write(&router.rw, None, &first).is_2xx());
    remember(&mut acked, &first);

    ings[0].proc.kill9();
    ings[1].proc.kill9();
    // Writes while only one replica is up: never 2xx, always a retryable 503 saying why.
    let mut pending = Vec::new();
    for k in 1..=5 {
        let req = request(start + k * 1000, k as f64);
        let r = remote_write(&router.rw, None, &req);
        assert_eq!(
            r.status,
            503,
            "write {k} with 2 of 3 replicas down: {}",
            r.text()
        );
        assert!(r.text().contains("quorum"), "{}", r.text());
        pending.push(req);
    }

    // Back up (same data dirs): the client's retries (as Prometheus retries 5xx) now succeed.
    ings[0].proc.restart();
    ings[0].wait_ready();
    ings[1].proc.restart();
    ings[1].wait_ready();
    for req in &pending {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = remote_write(&router.rw, None, req);
            if r.is_2xx() {
                break;
            }
            assert!(
                r.status >= 500 && Instant::now() < deadline,
                "retry: {} {}",
                r.status,
                r.text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        remember(&mut acked, req);
    }
    assert_all_read_back(&router.http, &acked, start - 1, now_ms());
    // Every replica holds what it acknowledged: each ingestor reads back the last write.
    for ing in &ings {
        let got = read_all(&ing.http, None, start - 1, now_ms()).unwrap();
        let last = pending.last().unwrap();
        for ts in &last.timeseries {
            let have = got.get(&pb_labels(&ts.labels));
            assert!(
                have.is_some_and(|s| s.iter().any(|x| x.0 == ts.samples[0].timestamp)),
                "{}: replica missing the retried write of {:?}",
                ing.grpc,
                ts.labels
            );
        }
    }
}
