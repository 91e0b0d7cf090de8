//! Proves the end-to-end harness on real Prometheus 2.42 alone, without Ringest: Prometheus "R"
//! (`--web.enable-remote-write-receiver`) stands where the Ringest router stands in the
//! `prometheus` module. A scraper remote-writes to R, a reader remote-reads R, and the same oracles
//! (PromQL matrices, `promtool tsdb dump`, stale-marker bits through remote read) must agree. This
//! also checks our own remote-write and remote-read clients against Prometheus's server side.

use std::time::{Duration, Instant};

use testkit::prelude::*;

#[test]
fn harness_against_prometheus_receiver() {
    let t0 = Instant::now();
    let tmp = test_dir(module_path!());
    let dir = tmp.path();
    let w0 = now_ms() - 1000;

    // R: the stand-in receiver. No scrape jobs: it only holds what is written to it.
    let r_addr = free_addr();
    let r = Prometheus::start(
        "receiver",
        dir,
        &r_addr,
        "global: {scrape_interval: 1m}\nscrape_configs: []\n",
        &["--web.enable-remote-write-receiver"],
    );

    // Our remote-write client against Prometheus's receiver: unsorted labels, then read back.
    let now = now_ms();
    let direct = proto::prompb::WriteRequest {
        timeseries: vec![series(
            &[("job", "direct"), ("__name__", "harness_direct_write")],
            &[
                (now - 2000, 1.5),
                (now - 1000, f64::from_bits(STALE_NAN_BITS)),
            ],
        )],
        ..Default::default()
    };
    let mut headers = WRITE_HEADERS.to_vec();
    headers.push(("User-Agent", "ringest-e2e"));
    let resp = post_raw(&r_addr, "/api/v1/write", &headers, &encode_write(&direct));
    assert!(
        resp.is_2xx(),
        "direct write to Prometheus: {} {}",
        resp.status,
        resp.text()
    );
    let back = read_all(&r_addr, None, now - 5000, now).unwrap();
    let mut want = Labels::new();
    want.insert("__name__".into(), "harness_direct_write".into());
    want.insert("job".into(), "direct".into());
    assert_eq!(
        back.get(&want),
        Some(&vec![
            (now - 2000, 1.5f64.to_bits()),
            (now - 1000, STALE_NAN_BITS)
        ]),
        "remote read of Prometheus: {back:?}"
    );
    // Prometheus's own answer to a corrupt body, for reference.
    let bad = post_raw(&r_addr, "/api/v1/write", &WRITE_HEADERS, b"not snappy");
    eprintln!(
        "Prometheus answers a corrupt body with {}: {}",
        bad.status,
        bad.text().trim()
    );
    assert_eq!(bad.status, 400);

    // A: scrapes itself and a job that goes away, remote-writes to R.
    let a_addr = free_addr();
    let rw_url = format!("http://{r_addr}/api/v1/write");
    // B: reads R.
    let b_addr = free_addr();
    let b = Prometheus::start(
        "reader",
        dir,
        &b_addr,
        &reader_config(&format!("http://{r_addr}/api/v1/read")),
        &[],
    );
    let mut a = Prometheus::start(
        "scraper",
        dir,
        &a_addr,
        &scraper_config(&a_addr, &[("others", &[&r_addr, &b_addr])], &rw_url),
        &[],
    );

    // Prometheus applies scrape targets on a 5 s tick after start: wait for a few scrapes.
    let up = poll(Duration::from_secs(20), Duration::from_millis(500), || {
        let up = a.query_vector("count_over_time(up[1m])", now_ms());
        (up.len() == 3 && up.iter().all(|(_, v)| v.parse::<f64>().unwrap() >= 3.0)).then_some(up)
    });
    assert!(up.is_some(), "scraper did not scrape its 3 targets 3 times");
    // Removing a target of a job that stays makes Prometheus write end-of-run stale markers for it
    // ~2 intervals later (removing the whole job does not: its pool's context is cancelled).
    a.reload(&scraper_config(&a_addr, &[("others", &[&r_addr])], &rw_url));
    std::thread::sleep(Duration::from_secs(4));

    let cutoff = now_ms() - 500;
    let stats = a.wait_sent_past(cutoff, Duration::from_secs(30));
    eprintln!("scraper remote write: {stats:?}");
    assert_eq!(stats.samples_failed, 0.0);

    let window_ms = cutoff - w0;
    let selector =
        format!("{{__name__=~\".+\",__name__!=\"harness_direct_write\"}}[{window_ms}ms]");
    let a_series = a.series("{__name__=~\".+\"}", w0, cutoff);
    let a_matrix = a.query_matrix(&selector, cutoff);
    a.stop();

    let b_series: Vec<Labels> = b
        .series("{__name__=~\".+\"}", w0, cutoff)
        .into_iter()
        .filter(|l| l["__name__"] != "harness_direct_write")
        .collect();
    assert_eq!(a_series, b_series, "series API of scraper vs reader");
    let b_matrix = b.query_matrix(&selector, cutoff);
    let compared = assert_matrices_equal("scraper vs reader PromQL", &a_matrix, &b_matrix);

    let dump = promtool_dump(&a.data_dir, w0, cutoff);
    let mut read = read_all(&r_addr, None, w0, cutoff).unwrap();
    read.retain(|l, _| l["__name__"] != "harness_direct_write");
    let c = assert_read_matches_dump(
        "promtool(scraper) vs remote read(R)",
        &dump,
        &a_matrix,
        &read,
    );
    eprintln!(
        "harness: {} series in the series API, {} PromQL samples compared, promtool vs remote read {c:?}, {:?}",
        a_series.len(),
        compared,
        t0.elapsed()
    );
    assert!(a_series.len() >= 300, "too few series: {}", a_series.len());
    assert!(compared >= 2000, "too few samples: {compared}");
    assert!(c.stale_markers >= 1, "no stale marker compared");
    assert!(
        c.stale_by_job.get("others").copied().unwrap_or(0) >= 100,
        "no end-of-run stale markers: {c:?}"
    );
    drop(r);
}
