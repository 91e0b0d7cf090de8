//! `ringest all-in-one` as a user first meets it:
//!
//! - started with only its three listen addresses in an empty working directory, it stores under
//!   `./data/<tenant>`, answers health, readiness and metrics, reads back what it was written, keeps
//!   tenants apart and refuses a tenant that is not a plain path component;
//! - every acknowledged sample (stale marker, NaN, infinities and -0.0 included) survives a SIGKILL,
//!   bit for bit, in two tenants; SIGTERM exits cleanly and loses nothing either; four concurrent
//!   writers SIGKILLed mid-flight find every acknowledged request after the restart, and nothing but
//!   the one request each had in flight besides;
//! - with a hashrings file naming itself (`--receive.local-endpoint`) and one `ringest ingest` peer at
//!   RF 2, both nodes hold every series, and writes keep succeeding when the peer dies;
//! - a hashrings file without `--receive.local-endpoint`, or a taken port, stops it at start-up
//!   with a message saying so.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{encode_write_exact, ringest_bin, SeriesSpec};
use testkit::prelude::*;

/// An all-in-one process started in `cwd` with only its listen addresses, plus `extra`.
struct AllInOne {
    proc: Proc,
    rw: String,
    http: String,
    grpc: String,
}

impl AllInOne {
    fn start(name: &str, dir: &Path, cwd: &Path, extra: &[String]) -> AllInOne {
        let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
        AllInOne::start_on(name, dir, cwd, rw, http, grpc, extra)
    }

    fn start_on(
        name: &str,
        dir: &Path,
        cwd: &Path,
        rw: String,
        http: String,
        grpc: String,
        extra: &[String],
    ) -> AllInOne {
        let mut args = server_args("all-in-one", &rw, &http, &grpc);
        args.extend(extra.iter().cloned());
        let mut proc = Proc::spawn_in(name, ringest_bin(), &args, &dir.join("logs"), cwd);
        wait_http_ok(&http, "/-/ready", Duration::from_secs(60), Some(&mut proc));
        AllInOne {
            proc,
            rw,
            http,
            grpc,
        }
    }

    fn wait_ready(&mut self) {
        wait_http_ok(
            &self.http,
            "/-/ready",
            Duration::from_secs(60),
            Some(&mut self.proc),
        );
    }
}

type Batch = Vec<(Vec<(String, String)>, Vec<(i64, f64)>)>;

/// Posts `batch` as one remote-write 1.0 request (values bit-exact) for `tenant`.
fn post_batch(rw: &str, tenant: Option<&str>, batch: &Batch) -> Response {
    let body: Vec<SeriesSpec<'_>> = batch
        .iter()
        .map(|(l, s)| {
            (
                l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                s.clone(),
            )
        })
        .collect();
    let mut headers = WRITE_HEADERS.to_vec();
    if let Some(t) = tenant {
        headers.push(("THANOS-TENANT", t));
    }
    post_raw(rw, "/api/v1/receive", &headers, &encode_write_exact(&body))
}

/// The labels -> samples (bits) a batch should read back as.
fn expected(batch: &Batch) -> BTreeMap<Labels, Samples> {
    batch
        .iter()
        .map(|(l, s)| {
            (
                l.iter().cloned().collect(),
                s.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
            )
        })
        .collect()
}

/// `n` series of metric `name`, each with samples at `ts0`, `ts0 + 1000`, ... of `values` (plus the
/// series number for finite non-zero values).
fn batch(name: &str, n: usize, ts0: i64, values: &[f64]) -> Batch {
    (0..n)
        .map(|i| {
            (
                vec![
                    ("job".to_string(), "aio".to_string()),
                    ("__name__".to_string(), name.to_string()),
                    ("i".to_string(), i.to_string()),
                ],
                values
                    .iter()
                    .enumerate()
                    .map(|(k, &v)| {
                        (
                            ts0 + 1000 * k as i64,
                            // Special values (NaNs, infinities, zeros) are sent as they are.
                            if v.is_finite() && v != 0.0 {
                                v + i as f64
                            } else {
                                v
                            },
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Every series of metric `name` readable at `addr` for `tenant`.
fn read_metric(
    addr: &str,
    tenant: Option<&str>,
    name: &str,
    since: i64,
) -> BTreeMap<Labels, Samples> {
    let mut all = read_all(addr, tenant, since, now_ms() + 60_000)
        .unwrap_or_else(|e| panic!("remote read of {addr} ({tenant:?}): {e}"));
    all.retain(|l, _| l["__name__"] == name);
    all
}

#[test]
fn all_in_one_with_only_port_flags() {
    let t0 = Instant::now();
    let tmp = test_dir("aio-defaults");
    let dir = tmp.path();
    let cwd = dir.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let aio = AllInOne::start("all-in-one", dir, &cwd, &[]);
    let since = now_ms() - 60_000;

    for path in ["/-/ready", "/-/healthy"] {
        let r = http_get(&aio.http, path).unwrap();
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    }

    // Default tenant.
    let ts = now_ms();
    let def = batch("aio_default", 5, ts - 5000, &[1.0, 2.5, 4.0]);
    let r = post_batch(&aio.rw, None, &def);
    assert!(
        r.is_2xx(),
        "default-tenant write: {} {}",
        r.status,
        r.text()
    );
    assert_eq!(
        r.header("X-Prometheus-Remote-Write-Samples-Written"),
        Some("15"),
        "default-tenant write: samples written header"
    );
    assert_same_bits(
        "default tenant read back",
        &expected(&def),
        &read_metric(&aio.http, None, "aio_default", since),
    );
    let wal0 = cwd.join("data/default-tenant/wal/00000000");
    assert!(wal0.is_file(), "{} does not exist", wal0.display());

    let metrics = http_get(&aio.http, "/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.text().contains("ringest_http_requests_total"),
        "/metrics lacks ringest_http_requests_total:\n{}",
        metrics.text()
    );

    // Tenant team-a: its own directory, invisible to the default tenant and the other way round.
    let team = batch("aio_team", 3, ts - 4000, &[7.0, 8.0]);
    let r = post_batch(&aio.rw, Some("team-a"), &team);
    assert!(r.is_2xx(), "team-a write: {} {}", r.status, r.text());
    let team_wal = cwd.join("data/team-a/wal/00000000");
    assert!(team_wal.is_file(), "{} does not exist", team_wal.display());
    assert_same_bits(
        "team-a read back",
        &expected(&team),
        &read_metric(&aio.http, Some("team-a"), "aio_team", since),
    );
    assert!(
        read_metric(&aio.http, None, "aio_team", since).is_empty(),
        "team-a series visible to a default-tenant read"
    );
    assert!(
        read_metric(&aio.http, Some("team-a"), "aio_default", since).is_empty(),
        "default-tenant series visible to a team-a read"
    );
    let everything_default = read_all(&aio.http, None, since, now_ms() + 60_000).unwrap();
    assert_eq!(
        everything_default.len(),
        def.len(),
        "default tenant sees other series: {:?}",
        everything_default.keys().collect::<Vec<_>>()
    );
    let everything_team = read_all(&aio.http, Some("team-a"), since, now_ms() + 60_000).unwrap();
    assert_eq!(everything_team.len(), team.len());

    // A tenant that would escape the data directory.
    let evil = batch("aio_evil", 1, ts, &[1.0]);
    let r = post_batch(&aio.rw, Some("../x"), &evil);
    assert_eq!(r.status, 400, "tenant ../x: {}", r.text());
    assert!(
        r.text().contains("tenant"),
        "tenant ../x: the answer does not name the tenant: {}",
        r.text()
    );
    assert!(!cwd.join("x").exists(), "tenant ../x created ./x");
    let long = "t".repeat(256);
    for bad in [".", "..", "a/b", "a\\b", "/abs", long.as_str()] {
        let r = post_batch(&aio.rw, Some(bad), &evil);
        assert_eq!(r.status, 400, "tenant {bad:?}: {}", r.text());
        let r = remote_read(&aio.http, Some(bad), vec![query_all(since, now_ms())]);
        assert!(
            r.as_ref().is_err_and(|e| e.contains("status 400")),
            "remote read as tenant {bad:?}: {r:?}"
        );
    }
    // An empty tenant header means the default tenant.
    let empty = batch("aio_empty_header", 1, ts, &[3.0]);
    let r = post_batch(&aio.rw, Some(""), &empty);
    assert!(r.is_2xx(), "empty tenant header: {} {}", r.status, r.text());
    assert_same_bits(
        "empty tenant header",
        &expected(&empty),
        &read_metric(&aio.http, None, "aio_empty_header", since),
    );
    let (count, ok) = wait_metric(
        &aio.http,
        "ringest_http_requests_total",
        &["handler=\"receive\"", "tenant=\"team-a\"", "code=\"204\""],
        Duration::from_secs(5),
        |v| v >= 1.0,
    );
    assert!(ok, "no successful receive counted for team-a: {count:?}");
    let mut tenants: Vec<String> = std::fs::read_dir(cwd.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    tenants.sort();
    // One directory per tenant, plus the default local bucket blocks are shipped to.
    assert_eq!(
        tenants,
        ["_bucket", "default-tenant", "team-a"],
        "tenant directories"
    );
    eprintln!("all-in-one defaults: {:?}", t0.elapsed());
}

#[test]
fn all_in_one_keeps_acknowledged_samples_across_sigkill() {
    let t0 = Instant::now();
    let tmp = test_dir("aio-durability");
    let dir = tmp.path();
    let cwd = dir.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut aio = AllInOne::start("all-in-one", dir, &cwd, &[]);
    let since = now_ms() - 120_000;

    let specials = [
        f64::from_bits(STALE_NAN_BITS),
        f64::from_bits(GO_NAN_BITS),
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        f64::MIN_POSITIVE / 4.0, // subnormal
        f64::MAX,
        -1.0e-300,
    ];
    // 40 requests of 10 series x 5 samples (2000 samples), the specials spread over them, each
    // acknowledged before the next is sent; series are split across requests so that a request
    // appends to series created by earlier ones.
    let base = now_ms() - 100_000;
    let mut want: BTreeMap<Labels, Samples> = BTreeMap::new();
    let mut acked = 0usize;
    for req in 0..40usize {
        let b: Batch = (0..10usize)
            .map(|s| {
                let id = (req % 8) * 10 + s;
                let labels = vec![
                    ("__name__".to_string(), "aio_durable".to_string()),
                    ("series".to_string(), id.to_string()),
                ];
                let samples = (0..5usize)
                    .map(|k| {
                        let ts = base + (req / 8 * 5 + k) as i64 * 1000;
                        let n = req * 50 + s * 5 + k;
                        let v = if n % 7 == 0 {
                            specials[(n / 7) % specials.len()]
                        } else {
                            n as f64 * 0.1
                        };
                        (ts, v)
                    })
                    .collect();
                (labels, samples)
            })
            .collect();
        let r = post_batch(&aio.rw, None, &b);
        assert!(r.is_2xx(), "request {req}: {} {}", r.status, r.text());
        for (l, s) in expected(&b) {
            want.entry(l).or_default().extend(s);
        }
        acked += 50;
    }
    for s in want.values_mut() {
        s.sort();
    }
    let n_specials: Vec<u64> = specials.iter().map(|v| v.to_bits()).collect();
    let present: usize = want
        .values()
        .flatten()
        .filter(|(_, b)| n_specials.contains(b))
        .count();
    assert!(
        present >= 2 * specials.len(),
        "too few special values: {present}"
    );
    for v in [
        STALE_NAN_BITS,
        GO_NAN_BITS,
        f64::INFINITY.to_bits(),
        (-0.0f64).to_bits(),
    ] {
        assert!(
            want.values().flatten().any(|(_, b)| *b == v),
            "test data lacks {v:#x}"
        );
    }

    // A second tenant, written last: its WAL is the freshest when the process dies.
    let mut team = batch(
        "aio_durable_team",
        7,
        base + 30_000,
        &[1.0, -0.0, f64::INFINITY],
    );
    team[0]
        .1
        .push((base + 33_000, f64::from_bits(STALE_NAN_BITS)));
    let r = post_batch(&aio.rw, Some("team-b"), &team);
    assert!(r.is_2xx(), "team-b: {} {}", r.status, r.text());

    aio.proc.kill9();
    aio.proc.restart();
    aio.wait_ready();
    let got = read_metric(&aio.http, None, "aio_durable", since);
    assert_same_bits("after SIGKILL and restart", &want, &got);
    assert_same_bits(
        "team-b after SIGKILL and restart",
        &expected(&team),
        &read_metric(&aio.http, Some("team-b"), "aio_durable_team", since),
    );
    assert!(
        read_metric(&aio.http, None, "aio_durable_team", since).is_empty(),
        "team-b series visible to the default tenant after restart"
    );

    // Graceful shutdown: more writes, SIGTERM, a clean exit, and everything back after a restart.
    let more = batch("aio_durable_more", 10, base + 40_000, &[0.5, -0.0, 2.5]);
    let r = post_batch(&aio.rw, None, &more);
    assert!(
        r.is_2xx(),
        "write before SIGTERM: {} {}",
        r.status,
        r.text()
    );
    let status = aio.proc.terminate(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "all-in-one did not exit cleanly on SIGTERM within 15 s: {status:?}\n{}",
        aio.proc.logs()
    );
    aio.proc.restart();
    aio.wait_ready();
    assert_same_bits(
        "after SIGTERM and restart",
        &want,
        &read_metric(&aio.http, None, "aio_durable", since),
    );
    assert_same_bits(
        "written just before SIGTERM",
        &expected(&more),
        &read_metric(&aio.http, None, "aio_durable_more", since),
    );
    eprintln!(
        "durability: {acked} acknowledged samples in {} series read back bit for bit after SIGKILL, {:?}",
        want.len(),
        t0.elapsed()
    );
}

/// The value of round `round` in the ring test: special values included, so that forwarding over
/// gRPC and replica reads are checked bit for bit too.
fn ring_value(round: i64) -> f64 {
    match round {
        1 => -0.0,
        3 => f64::from_bits(STALE_NAN_BITS),
        6 => f64::NEG_INFINITY,
        r => r as f64 + 0.5,
    }
}

#[test]
fn all_in_one_in_a_ring_with_a_peer_rf2() {
    let t0 = Instant::now();
    let tmp = test_dir("aio-ring");
    let dir = tmp.path();
    let mut peer = Ingestor::start(&ringest_bin(), "peer", dir, &[]);
    let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
    let file = dir.join("hashrings.json");
    let ring = serde_json::json!([{ "hashring": "default", "endpoints": [grpc, peer.grpc] }]);
    std::fs::write(&file, serde_json::to_vec_pretty(&ring).unwrap()).unwrap();
    let cwd = dir.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let extra = [
        format!("--receive.hashrings-file={}", file.display()),
        format!("--receive.local-endpoint={grpc}"),
        "--receive.replication-factor=2".to_string(),
        "--receive.hashrings-algorithm=ketama".to_string(),
        "--receive-forward-timeout=2s".to_string(),
    ];
    let aio = AllInOne::start_on("all-in-one", dir, &cwd, rw, http, grpc, &extra);
    let since = now_ms() - 60_000;

    let ts = now_ms() - 10_000;
    let mut want = BTreeMap::new();
    for round in 0..5 {
        let b = batch("aio_ring", 20, ts + round * 1000, &[ring_value(round)]);
        // Same series every round, one more sample each.
        let r = post_batch(&aio.rw, None, &b);
        assert!(r.is_2xx(), "round {round}: {} {}", r.status, r.text());
        for (l, s) in expected(&b) {
            want.entry(l).or_insert_with(Vec::new).extend(s);
        }
    }
    assert_same_bits(
        "peer (direct read) holds every series at RF 2",
        &want,
        &read_metric(&peer.http, None, "aio_ring", since),
    );
    assert_same_bits(
        "all-in-one read with both nodes up",
        &want,
        &read_metric(&aio.http, None, "aio_ring", since),
    );
    assert!(
        cwd.join("data/default-tenant/wal/00000000").is_file(),
        "the all-in-one stored nothing locally"
    );

    // Kill the peer: quorum of RF 2 is 1, the local replica suffices.
    peer.proc.kill9();
    // With the peer gone the all-in-one's read can only come from its own replica.
    assert_same_bits(
        "all-in-one (local replica only) holds every series at RF 2",
        &want,
        &read_metric(&aio.http, None, "aio_ring", since),
    );
    for round in 5..8 {
        let b = batch("aio_ring", 20, ts + round * 1000, &[ring_value(round)]);
        let r = post_batch(&aio.rw, None, &b);
        assert!(
            r.is_2xx(),
            "round {round} with the peer dead: {} {}\n{}",
            r.status,
            r.text(),
            aio.proc.logs()
        );
        for (l, s) in expected(&b) {
            want.entry(l).or_insert_with(Vec::new).extend(s);
        }
    }
    assert_same_bits(
        "all-in-one after writes with the peer dead",
        &want,
        &read_metric(&aio.http, None, "aio_ring", since),
    );
    eprintln!(
        "all-in-one ring RF 2 ({} local, {} peer): {:?}",
        aio.grpc,
        peer.grpc,
        t0.elapsed()
    );
}

#[test]
fn all_in_one_refuses_to_start_when_misconfigured() {
    let tmp = test_dir("aio-bad-start");
    let dir = tmp.path();
    let file = dir.join("hashrings.json");
    let grpc = free_addr();
    std::fs::write(
        &file,
        serde_json::to_vec(&serde_json::json!([{"hashring": "default", "endpoints": [grpc]}]))
            .unwrap(),
    )
    .unwrap();
    let run = |rw: &str, extra: &[String]| {
        let mut args = server_args("all-in-one", rw, &free_addr(), &grpc);
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_to_exit(
            ringest_bin(),
            &args,
            b"",
            Some(dir),
            Duration::from_secs(15),
        )
    };

    // A hashrings file without --receive.local-endpoint: which node is this?
    let out = run(
        &free_addr(),
        &[format!("--receive.hashrings-file={}", file.display())],
    );
    assert!(
        !out.status.success(),
        "started without a local endpoint: {out:?}"
    );
    assert!(
        out.stderr.contains("--receive.local-endpoint"),
        "no local endpoint: stderr does not say what is missing: {}",
        out.stderr
    );

    // The remote-write port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let out = run(&taken_addr, &[]);
    assert!(!out.status.success(), "started on a taken port: {out:?}");
    assert!(
        out.stderr.contains("cannot listen") && out.stderr.contains(&taken_addr),
        "taken port: stderr does not name the address: {}",
        out.stderr
    );
    drop(taken);
}

#[test]
fn all_in_one_keeps_every_acknowledged_sample_when_killed_mid_flight() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    const WRITERS: usize = 4;
    const SERIES_PER_REQUEST: usize = 20;
    let t0 = Instant::now();
    let tmp = test_dir("aio-kill-mid-flight");
    let dir = tmp.path();
    let cwd = dir.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut aio = AllInOne::start("all-in-one", dir, &cwd, &[]);
    let base = now_ms() - 300_000;
    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // Each writer sends request k = 0, 1, ... with one sample per series at base + k ms (value k,
    // or a stale marker every 5th request) until a request fails; it returns how many were
    // acknowledged (2xx) in a row.
    let value = |k: usize| {
        if k % 5 == 4 {
            f64::from_bits(STALE_NAN_BITS)
        } else {
            k as f64
        }
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (rw, acks, stop) = (aio.rw.clone(), acks.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = 0usize;
                while !stop.load(Ordering::Relaxed) && acked < 100_000 {
                    let k = acked;
                    let names: Vec<String> =
                        (0..SERIES_PER_REQUEST).map(|s| s.to_string()).collect();
                    let writer = w.to_string();
                    let body: Vec<SeriesSpec<'_>> = names
                        .iter()
                        .map(|s| {
                            (
                                vec![
                                    ("__name__", "aio_mid_flight"),
                                    ("w", writer.as_str()),
                                    ("s", s.as_str()),
                                ],
                                vec![(base + k as i64, value(k))],
                            )
                        })
                        .collect();
                    let r = http_request(
                        "POST",
                        &rw,
                        "/api/v1/receive",
                        &WRITE_HEADERS,
                        &encode_write_exact(&body),
                        Duration::from_secs(10),
                    );
                    match r {
                        Ok(r) if r.is_2xx() => {
                            acked += 1;
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    let enough = poll(Duration::from_secs(20), Duration::from_millis(5), || {
        (acks.load(Ordering::Relaxed) >= 400).then_some(())
    });
    aio.proc.kill9();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<usize> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(enough.is_some(), "writers too slow: {acked:?} acknowledged");
    eprintln!("killed with {acked:?} requests acknowledged per writer");

    aio.proc.restart();
    aio.wait_ready();
    let got = read_metric(&aio.http, None, "aio_mid_flight", base - 1);
    for (w, &n) in acked.iter().enumerate() {
        for s in 0..SERIES_PER_REQUEST {
            let labels = label_map(&[
                ("__name__", "aio_mid_flight"),
                ("w", &w.to_string()),
                ("s", &s.to_string()),
            ]);
            let samples = got.get(&labels).cloned().unwrap_or_default();
            // Acknowledged requests 0..n are all there; request n was in flight and may or may
            // not be; nothing later was ever sent.
            let want: Samples = (0..n)
                .map(|k| (base + k as i64, value(k).to_bits()))
                .collect();
            let in_flight = (base + n as i64, value(n).to_bits());
            let ok = samples == want
                || (samples.len() == n + 1 && samples[..n] == want[..] && samples[n] == in_flight);
            if !ok {
                let diff = sample_differences(
                    &BTreeMap::from([(labels.clone(), want.clone())]),
                    &BTreeMap::from([(labels.clone(), samples.clone())]),
                    5,
                );
                panic!(
                    "writer {w} series {s}: {n} requests acknowledged, {} samples after restart: {diff:?}",
                    samples.len()
                );
            }
        }
    }
    eprintln!(
        "kill mid-flight: {} acknowledged requests of {SERIES_PER_REQUEST} samples all back, {:?}",
        acked.iter().sum::<usize>(),
        t0.elapsed()
    );
}
