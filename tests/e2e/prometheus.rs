//! The main end-to-end proof: a real Prometheus 2.42 remote-writes through a Ringest router (ketama,
//! RF 3) into three Ringest ingestors, one of which is SIGKILLed and restarted mid-run; a second
//! Prometheus reads everything back through the router with remote read, and what it sees must equal
//! what the first one scraped, sample for sample. Stale markers are compared bit for bit through
//! remote read against `promtool tsdb dump` of the scraper's TSDB.
//!
//! The `harness` module runs the same oracles with Prometheus's own receiver in Ringest's place.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::ringest_bin;
use proto::prompb::WriteRequest;
use testkit::prelude::*;

const DIRECT_TENANT: &str = "e2e-direct";
const DIRECT_SERIES: usize = 50;

/// Asserts that `after` holds every sample of `before`, with the same bits.
fn assert_contains_all(
    what: &str,
    before: &BTreeMap<Labels, Samples>,
    after: &BTreeMap<Labels, Samples>,
) -> usize {
    let mut n = 0;
    for (labels, samples) in before {
        let got = after.get(labels).unwrap_or_else(|| {
            panic!("{what}: series {labels:?} ({} samples) lost", samples.len())
        });
        let got: BTreeMap<i64, u64> = got.iter().copied().collect();
        for (ts, bits) in samples {
            match got.get(ts) {
                Some(b) if b == bits => {}
                Some(b) => panic!("{what}: {labels:?}@{ts}: had bits {bits:#x}, now {b:#x}"),
                None => panic!("{what}: {labels:?}@{ts} (bits {bits:#x}) lost"),
            }
            n += 1;
        }
    }
    n
}

/// One remote-write request of the directly written series, all stamped `ts`.
fn direct_request(ts: i64, round: usize) -> WriteRequest {
    let idx: Vec<String> = (0..DIRECT_SERIES).map(|i| i.to_string()).collect();
    WriteRequest {
        timeseries: idx
            .iter()
            .map(|i| {
                series(
                    &[("__name__", "ringest_e2e_direct"), ("i", i)],
                    &[(ts, round as f64 + 0.25)],
                )
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn prometheus_remote_write_through_router_survives_ingestor_kill_and_reads_back_identically() {
    let t0 = Instant::now();
    let tmp = test_dir(module_path!());
    let dir = tmp.path();
    let w0 = now_ms() - 1000;

    // Three ingestors and a router over them (ketama, RF 3: every series on every ingestor).
    let (mut ings, mut router) = start_cluster(&ringest_bin(), dir, 3, 3, &[]);

    // B reads through the router; A scrapes and writes through it.
    let b_addr = free_addr();
    let b = Prometheus::start(
        "reader",
        dir,
        &b_addr,
        &reader_config(&format!("http://{}/api/v1/read", router.http)),
        &[],
    );
    let a_addr = free_addr();
    let rw_url = format!("http://{}/api/v1/receive", router.rw);
    let (victim_http, keep_http, drop_http) = (
        ings[0].http.clone(),
        ings[1].http.clone(),
        ings[2].http.clone(),
    );
    let router_http = router.http.clone();
    let config = |ingestors: &[&str]| {
        scraper_config(
            &a_addr,
            &[
                ("router", &[&router_http]),
                ("victim", &[&victim_http]),
                ("ingestors", ingestors),
            ],
            &rw_url,
        )
    };
    let mut a = Prometheus::start(
        "scraper",
        dir,
        &a_addr,
        &config(&[&keep_http, &drop_http]),
        &[],
    );
    let a_started = Instant::now();

    // Prometheus applies scrape targets on a 5 s tick after start; wait for 5 scrapes of each.
    let scraped = poll(Duration::from_secs(30), Duration::from_millis(500), || {
        let up = a.query_vector("sum_over_time(up[1m])", now_ms());
        (up.len() == 5 && up.iter().all(|(_, v)| v.parse::<f64>().unwrap() >= 5.0)).then_some(())
    });
    if scraped.is_none() {
        panic!(
            "scraper did not scrape its 5 targets 5 times: {:?}",
            a.query_vector("sum_over_time(up[1m])", now_ms())
        );
    }

    // Everything the victim acknowledged so far, as it answers it.
    let snap_end = now_ms();
    let before = read_all(&ings[0].http, None, w0, snap_end)
        .expect("remote read of the victim before the kill");
    let before_samples: usize = before.values().map(Vec::len).sum();
    assert!(
        before.len() >= 300 && before_samples >= 1000,
        "victim holds too little before the kill: {} series, {before_samples} samples",
        before.len()
    );

    // SIGKILL it. A's scrapes of it now fail, which writes stale markers for its series.
    ings[0].proc.kill9();
    let killed = Instant::now();
    // Drop one target of the "ingestors" job: end-of-run stale markers for its series.
    a.reload(&config(&[&keep_http]));

    // While the victim is down, writes must keep succeeding (quorum 2 of 3).
    let mut direct_written: Vec<(i64, usize)> = Vec::new();
    for round in 0..8 {
        let ts = now_ms();
        let r = remote_write(&router.rw, Some(DIRECT_TENANT), &direct_request(ts, round));
        assert!(
            r.is_2xx(),
            "write to the router with one ingestor down answered {}: {}",
            r.status,
            r.text()
        );
        direct_written.push((ts, round));
        std::thread::sleep(Duration::from_millis(1000));
    }
    router.proc.assert_running();
    let mid = a.remote_write_stats();
    assert_eq!(
        mid.samples_failed, 0.0,
        "Prometheus samples failed while an ingestor was down: {mid:?}"
    );
    assert_eq!(
        mid.samples_retried, 0.0,
        "router answered non-2xx while an ingestor was down: {mid:?}"
    );

    // The directly written series are complete through the router and on both live ingestors.
    let direct_start = direct_written[0].0;
    let direct_end = direct_written.last().unwrap().0;
    let mut direct_expected: BTreeMap<Labels, Samples> = BTreeMap::new();
    for i in 0..DIRECT_SERIES {
        let mut l = Labels::new();
        l.insert("__name__".into(), "ringest_e2e_direct".into());
        l.insert("i".into(), i.to_string());
        let samples = direct_written
            .iter()
            .map(|&(ts, round)| (ts, (round as f64 + 0.25).to_bits()))
            .collect();
        direct_expected.insert(l, samples);
    }
    for (what, addr) in [
        ("router", &router.http),
        ("ingest-1", &ings[1].http),
        ("ingest-2", &ings[2].http),
    ] {
        let got = read_all(addr, Some(DIRECT_TENANT), direct_start, direct_end)
            .unwrap_or_else(|e| panic!("remote read of tenant {DIRECT_TENANT} from {what}: {e}"));
        assert_same_samples(
            &format!("tenant {DIRECT_TENANT} as read from {what}"),
            &direct_expected,
            &got,
        );
    }

    // Restart the victim on the same data directory: everything it had acknowledged is still there.
    ings[0].proc.restart();
    ings[0].wait_ready();
    let outage = killed.elapsed();
    let after =
        read_all(&ings[0].http, None, w0, snap_end).expect("remote read of the restarted victim");
    let survived = assert_contains_all("victim after SIGKILL + restart", &before, &after);

    // Let A scrape the restarted victim again, then pick the cutoff and wait until A sent past it.
    std::thread::sleep(Duration::from_secs(6));
    let cutoff = now_ms() - 500;
    let stats = a.wait_sent_past(cutoff, Duration::from_secs(60));
    let run_s = a_started.elapsed().as_secs_f64();
    assert_eq!(
        stats.samples_failed, 0.0,
        "Prometheus remote write failed samples: {stats:?}"
    );
    assert_eq!(
        stats.samples_retried, 0.0,
        "router answered Prometheus with retryable errors: {stats:?}"
    );
    assert_eq!(stats.samples_dropped, 0.0, "{stats:?}");
    assert_eq!(
        stats.metadata_failed, 0.0,
        "router rejected metadata-only requests: {stats:?}"
    );
    assert!(stats.metadata_total > 0.0, "no metadata sent: {stats:?}");

    let window_ms = cutoff - w0;
    let selector = format!("{{__name__=~\".+\"}}[{window_ms}ms]");
    let a_series = a.series("{__name__=~\".+\"}", w0, cutoff);
    let a_matrix = a.query_matrix(&selector, cutoff);
    a.stop();

    // B (remote read through the router) sees exactly what A stored.
    let b_series = b.series("{__name__=~\".+\"}", w0, cutoff);
    assert_eq!(
        a_series.len(),
        b_series.len(),
        "number of series: scraper vs reader"
    );
    assert_eq!(
        a_series, b_series,
        "series API: scraper vs reader (remote read through the router)"
    );
    let compared = assert_matrices_equal(
        "PromQL raw samples: scraper vs reader",
        &a_matrix,
        &b.query_matrix(&selector, cutoff),
    );

    // Bit for bit, stale markers included: promtool's dump of A vs the router's remote read.
    let dump = promtool_dump(&a.data_dir, w0, cutoff);
    let read = read_all(&router.http, None, w0, cutoff).expect("remote read of the router");
    let c = assert_read_matches_dump(
        "promtool dump of the scraper vs router remote read",
        &dump,
        &a_matrix,
        &read,
    );

    eprintln!(
        "e2e: {} series; {compared} PromQL samples equal; promtool vs router: {} series, {} samples, {} stale markers {:?}, {} scraped NaNs; \
         victim kept {survived} of its acknowledged samples across SIGKILL (outage {:.1}s); \
         Prometheus sent {} samples in {run_s:.1}s ({:.0} samples/s), retried {}, failed {}; total {:.1}s",
        a_series.len(),
        c.series,
        c.samples,
        c.stale_markers,
        c.stale_by_job,
        c.real_nans,
        outage.as_secs_f64(),
        stats.samples_total,
        stats.samples_total / run_s,
        stats.samples_retried,
        stats.samples_failed,
        t0.elapsed().as_secs_f64()
    );
    assert!(a_series.len() >= 300, "too few series: {}", a_series.len());
    assert!(compared >= 10_000, "too few samples compared: {compared}");
    assert!(
        c.stale_by_job.get("victim").copied().unwrap_or(0) >= 1,
        "no stale marker of the killed target: {c:?}"
    );
    assert!(
        c.stale_by_job.get("ingestors").copied().unwrap_or(0) >= 1,
        "no end-of-run stale marker: {c:?}"
    );
    router.proc.assert_running();
    for i in &mut ings {
        i.proc.assert_running();
    }
}
