//! Faults between the router and its ingestors (issue 5), with real processes on loopback:
//! - a hung ingestor (SIGSTOP: it accepts connections and answers nothing): the router's forward
//!   timeout and per-peer backoff keep writes answering 2xx from the other replicas, most of them
//!   without waiting for the timeout, and nothing piles up in the router;
//! - two of three ingestors down: writes answer 503 (retryable), none falsely 2xx; once they are
//!   back, retries succeed and every acknowledged sample reads back. Once with a hand-written
//!   retrying client, once with a real Prometheus 2.42 scraping and remote-writing through the
//!   router: it counts retries and no failures, and after the restart everything it scraped (the
//!   ~10 s outage window included) reads back bit for bit, each sample on a write quorum.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::ringest_bin;
use proto::prompb::WriteRequest;
use testkit::prelude::*;

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
    let (ings, mut router) =
        start_cluster(&ringest_bin(), dir, 3, 3, &["--receive-forward-timeout=1s"]);
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
    let (mut ings, router) =
        start_cluster(&ringest_bin(), dir, 3, 3, &["--receive-forward-timeout=2s"]);
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

/// A tmpfs mounted at `path` for the test's lifetime (the test runs as root, as CI does).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs for the disk-full test needs root (CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(path.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount {size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A request of 200 series × 20 samples at `round` with values that compress poorly.
fn bulky_request(start: i64, round: usize) -> WriteRequest {
    let mut x = (round as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let idx: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    WriteRequest {
        timeseries: idx
            .iter()
            .map(|i| {
                let samples: Vec<(i64, f64)> = (0..20)
                    .map(|k| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (
                            start + (round * 20 + k) as i64 * 10,
                            f64::from_bits(x >> 12) * 1e3,
                        )
                    })
                    .collect();
                series(&[("__name__", "ringest_disk_full"), ("i", i)], &samples)
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn disk_full_answers_5xx_then_recovers_without_restart() {
    let tmp = test_dir("faults-disk-full");
    let dir = tmp.path();
    let fs = Tmpfs::mount(&dir.join("ingest-df"), "4m");
    let mut ing = Ingestor::start(&ringest_bin(), "ingest-df", dir, &[]);
    let start = now_ms() - 3_600_000;
    let mut acked = BTreeMap::new();
    let mut refused = Vec::new();
    let mut round = 0;
    // Fill the disk: writes are acknowledged until the WAL cannot grow, then refused as 5xx.
    // Like Prometheus, a refused request is retried (here three times) before the next is sent.
    let mut req = bulky_request(start, round);
    while refused.len() < 3 {
        assert!(round < 2000, "the 4 MiB disk never filled up");
        let r = remote_write(&ing.rw, None, &req);
        if r.is_2xx() {
            assert!(
                refused.is_empty(),
                "a retry succeeded while the disk is full"
            );
            remember(&mut acked, &req);
            round += 1;
            req = bulky_request(start, round);
        } else {
            assert_eq!(r.status, 503, "disk full: {} {}", r.status, r.text());
            refused.push(r.text());
        }
    }
    eprintln!(
        "disk full after {round} acknowledged writes: {}",
        refused[0]
    );
    assert!(
        refused[0].contains("No space left"),
        "the 503 should say the disk is full: {}",
        refused[0]
    );
    ing.proc.assert_running();
    wait_http_ok(&ing.http, "/-/healthy", Duration::from_secs(5), None);

    // Space comes back: the same process accepts writes again (the WAL recovers by itself).
    fs.resize("64m");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = remote_write(&ing.rw, None, &req);
        if r.is_2xx() {
            break;
        }
        assert!(
            r.status == 503 && Instant::now() < deadline,
            "after freeing space: {} {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    remember(&mut acked, &req);
    let more = bulky_request(start, round + 1);
    assert!(remote_write(&ing.rw, None, &more).is_2xx());
    remember(&mut acked, &more);
    assert_all_read_back(&ing.http, &acked, start - 1, now_ms());

    // Nothing on disk is corrupt: after a SIGKILL the WAL replays every acknowledged sample.
    ing.proc.kill9();
    ing.proc.restart();
    ing.wait_ready();
    assert_all_read_back(&ing.http, &acked, start - 1, now_ms());
    // (While the disk was full the WAL writer repaired its own torn segment and moved on to a
    // new one; replay must find nothing left to repair.)
    let logs = ing.proc.logs();
    assert!(
        !logs.contains("WAL corruption: keeping records before it"),
        "replay after the disk-full episode found corruption:\n{logs}"
    );
    ing.proc.kill9();
}

/// The only WAL segment of the default tenant under `data`.
fn last_segment(data: &std::path::Path) -> std::path::PathBuf {
    let wal = data.join("default-tenant").join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .collect();
    segs.sort();
    segs.pop().expect("a WAL segment")
}

#[test]
fn torn_wal_tail_and_corrupt_record_are_repaired_and_replicas_cover_the_loss() {
    let tmp = test_dir("faults-wal");
    let dir = tmp.path();
    let (mut ings, router) = start_cluster(&ringest_bin(), dir, 3, 3, &[]);
    let start = now_ms() - 600_000;
    let mut acked = BTreeMap::new();
    for k in 0..100 {
        let req = request(start + k * 1000, k as f64 + 0.5);
        assert!(remote_write(&router.rw, None, &req).is_2xx());
        remember(&mut acked, &req);
    }

    // Ingestor 0: a torn tail, as a crash in the middle of an unacknowledged write leaves it (a
    // record header promising more bytes than follow).
    ings[0].proc.kill9();
    let seg = last_segment(&ings[0].data);
    // Where the last record ends, as the WAL reader sees it (records may end in zero bytes).
    let end = {
        let mut r = ringest::tsdb::wlog::Reader::open(seg.parent().unwrap()).unwrap();
        while r.next().unwrap().is_some() {}
        r.offset() as usize
    };
    let mut bytes = std::fs::read(&seg).unwrap();
    let torn = [1u8, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef, 7, 7, 7, 7];
    bytes.truncate(end);
    bytes.extend_from_slice(&torn);
    std::fs::write(&seg, &bytes).unwrap();
    ings[0].proc.restart();
    ings[0].wait_ready();
    let logs = ings[0].proc.logs();
    assert!(
        logs.contains("WAL corruption"),
        "the repair should be logged:\n{logs}"
    );
    // The tail held nothing acknowledged: the ingestor alone still has everything.
    assert_all_read_back(&ings[0].http, &acked, start - 1, now_ms());

    // Ingestor 1: a flipped byte in the middle of an acknowledged record. It drops that record
    // and everything after it (logging where), serves what came before, and the other replicas
    // cover what it lost.
    ings[1].proc.kill9();
    let seg = last_segment(&ings[1].data);
    let mut bytes = std::fs::read(&seg).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    bytes[end / 2] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    ings[1].proc.restart();
    ings[1].wait_ready();
    let logs = ings[1].proc.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("WAL corruption"))
        .unwrap_or_else(|| panic!("the repair should be logged:\n{logs}"));
    assert!(
        line.contains("segment") && line.contains("offset"),
        "the log should say where: {line}"
    );
    let own = read_all(&ings[1].http, None, start - 1, now_ms()).unwrap();
    let own_n: usize = own.values().map(Vec::len).sum();
    let all_n: usize = acked.values().map(Vec::len).sum();
    assert!(
        own_n > 0 && own_n < all_n,
        "ingestor 1 kept {own_n} of {all_n} samples"
    );
    // Through the router (replicas merged) nothing acknowledged is missing.
    assert_all_read_back(&router.http, &acked, start - 1, now_ms());
    // And it serves new writes.
    let req = request(start + 200_000, 9.0);
    assert!(remote_write(&ings[1].rw, None, &req).is_2xx());
    eprintln!("corrupt record: ingestor 1 kept {own_n} of {all_n} samples; line: {line}");
}

/// Writers that keep sending their own series in time order through `rw` until told to stop,
/// retrying a refused request (as Prometheus retries 5xx) before the next; returns what was
/// acknowledged and how many answers were 5xx.
fn spawn_writers(
    rw: &str,
    writers: usize,
    start: i64,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<(BTreeMap<Labels, Samples>, usize)>> {
    (0..writers)
        .map(|w| {
            let (rw, stop) = (rw.to_string(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = BTreeMap::new();
                let mut refused = 0;
                let names: Vec<String> = (0..SERIES).map(|i| format!("w{w}-{i}")).collect();
                let mut k = 0i64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let req = WriteRequest {
                        timeseries: names
                            .iter()
                            .map(|n| {
                                series(
                                    &[("__name__", "ringest_fault_load"), ("s", n)],
                                    &[(start + k * 10, k as f64)],
                                )
                            })
                            .collect(),
                        ..Default::default()
                    };
                    loop {
                        let r = remote_write(&rw, None, &req);
                        if r.is_2xx() {
                            remember(&mut acked, &req);
                            break;
                        }
                        assert!(r.status >= 500, "{} {}", r.status, r.text());
                        refused += 1;
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            return (acked, refused);
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    k += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                (acked, refused)
            })
        })
        .collect()
}

fn join_writers(
    handles: Vec<std::thread::JoinHandle<(BTreeMap<Labels, Samples>, usize)>>,
) -> (BTreeMap<Labels, Samples>, usize) {
    let mut all = BTreeMap::new();
    let mut refused = 0;
    for h in handles {
        let (acked, r) = h.join().unwrap();
        all.extend(acked);
        refused += r;
    }
    (all, refused)
}

#[test]
fn sigkill_a_random_ingestor_twenty_times_under_load_loses_nothing() {
    let tmp = test_dir("faults-sigkill");
    let dir = tmp.path();
    let (mut ings, router) =
        start_cluster(&ringest_bin(), dir, 3, 3, &["--receive-forward-timeout=2s"]);
    let start = now_ms() - 600_000;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = spawn_writers(&router.rw, 2, start, &stop);
    // A small xorshift, seeded, so a failing schedule can be replayed.
    let mut x: u64 = std::env::var("RINGEST_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let t0 = Instant::now();
    for round in 0..20 {
        let victim = rnd(3) as usize;
        std::thread::sleep(Duration::from_millis(300 + rnd(700)));
        ings[victim].proc.kill9();
        std::thread::sleep(Duration::from_millis(200 + rnd(500)));
        ings[victim].proc.restart();
        ings[victim].wait_ready();
        eprintln!("round {round}: killed and restarted ingestor {victim}");
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, refused) = join_writers(writers);
    let n: usize = acked.values().map(Vec::len).sum();
    eprintln!(
        "20 SIGKILLs in {:?}: {n} samples acknowledged, {refused} answers 5xx (retried)",
        t0.elapsed()
    );
    assert!(n > 10_000, "only {n} samples acknowledged");
    assert_all_read_back(&router.http, &acked, start - 1, now_ms());
}

#[test]
fn ring_change_under_load_loses_nothing_and_flushes_no_head() {
    let tmp = test_dir("faults-ring");
    let dir = tmp.path();
    let ings: Vec<Ingestor> = (0..4)
        .map(|i| Ingestor::start(&ringest_bin(), &format!("ingest-{i}"), dir, &[]))
        .collect();
    let eps: Vec<&str> = ings[..3].iter().map(|i| i.grpc.as_str()).collect();
    let router = Router::start(
        &ringest_bin(),
        "router",
        dir,
        &eps,
        3,
        &["--receive.hashrings-file-refresh-interval=1s"],
    );
    let write_ring = |endpoints: &[&str]| {
        let ring = serde_json::json!([{ "hashring": "default", "endpoints": endpoints }]);
        let tmp = router.hashrings.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&ring).unwrap()).unwrap();
        std::fs::rename(&tmp, &router.hashrings).unwrap();
    };
    let start = now_ms() - 600_000;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers = spawn_writers(&router.rw, 2, start, &stop);
    std::thread::sleep(Duration::from_secs(2));
    // Add a fourth ingestor, then remove the first, under load.
    let four: Vec<&str> = ings.iter().map(|i| i.grpc.as_str()).collect();
    write_ring(&four);
    std::thread::sleep(Duration::from_secs(3));
    write_ring(&four[1..]);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, refused) = join_writers(writers);
    let n: usize = acked.values().map(Vec::len).sum();
    eprintln!("ring change under load: {n} samples acknowledged, {refused} answers 5xx");
    assert!(
        refused <= 10,
        "{refused} 5xx answers during the ring change"
    );
    assert!(
        scrape_metric(&router.http, "ringest_hashring_nodes", &[]) == Some(3.0),
        "the router did not pick up the last ring"
    );
    // No ingestor flushed its head: no node cut a block (Thanos flushes on hashmod ring changes).
    for ing in &ings {
        let cuts = scrape_metric(&ing.http, "ringest_tsdb_blocks_cut_total", &[]).unwrap_or(0.0);
        assert_eq!(cuts, 0.0, "{} cut blocks", ing.grpc);
    }
    // Everything acknowledged reads back through the router's current ring.
    assert_all_read_back(&router.http, &acked, start - 1, now_ms());
}

/// A real Prometheus 2.42 scrapes (1 s) and remote-writes through a router (RF 3) into three
/// ingestors, two of which are SIGKILLed for ~10 s. Meanwhile the router answers 503 (never a 2xx
/// with samples), Prometheus counts retries and no failures and its queue acknowledges nothing
/// newer than the kill; once both are back, its retries fill the gap: everything it scraped, the
/// outage window included, reads back bit for bit through the router, and each sample of the
/// window is on a write quorum (2 of 3) of the ingestors.
#[test]
fn two_of_three_ingestors_down_a_real_prometheus_retries_and_fills_the_gap() {
    let t0 = Instant::now();
    let tmp = test_dir("faults-quorum-prometheus");
    let dir = tmp.path();
    let w0 = now_ms() - 1000;
    let (mut ings, mut router) =
        start_cluster(&ringest_bin(), dir, 3, 3, &["--receive-forward-timeout=2s"]);
    let eps: Vec<String> = ings.iter().map(|i| i.grpc.clone()).collect();
    let a_addr = free_addr();
    let ing_http: Vec<String> = ings.iter().map(|i| i.http.clone()).collect();
    let ing_http: Vec<&str> = ing_http.iter().map(String::as_str).collect();
    let config = scraper_config(
        &a_addr,
        &[("router", &[&router.http]), ("ingestors", &ing_http)],
        &format!("http://{}/api/v1/receive", router.rw),
    );
    let mut a = Prometheus::start("scraper", dir, &a_addr, &config, &[]);

    // Data flows: 5 targets scraped a few times and some of it acknowledged by the router.
    let flowing = poll(Duration::from_secs(30), Duration::from_millis(500), || {
        let up = a.query_vector("sum_over_time(up[1m])", now_ms());
        let ok = up.len() == 5 && up.iter().all(|(_, v)| v.parse::<f64>().unwrap() >= 3.0);
        (ok && a.remote_write_stats().highest_sent_s > 0.0).then_some(())
    });
    assert!(
        flowing.is_some(),
        "no data flowing: up {:?}, {:?}",
        a.query_vector("sum_over_time(up[1m])", now_ms()),
        a.remote_write_stats()
    );
    let received =
        |r: &Router| scrape_metric(&r.http, "ringest_samples_received_total", &[]).unwrap_or(0.0);
    let answered_503 = |r: &Router| {
        scrape_metric(
            &r.http,
            "ringest_http_requests_total",
            &["handler=\"receive\"", "code=\"503\""],
        )
        .unwrap_or(0.0)
    };
    let before = a.remote_write_stats();
    assert_eq!(before.samples_retried, 0.0, "{before:?}");
    assert!(received(&router) > 0.0, "the router acknowledged nothing");

    // Two of three down.
    ings[0].proc.kill9();
    ings[1].proc.kill9();
    let kill_ms = now_ms();
    let killed = Instant::now();
    // Requests in flight at the kill have settled after one forward timeout; from then on
    // nothing with samples may be acknowledged while only one replica is up.
    std::thread::sleep(Duration::from_millis(2500));
    let received_at_kill = received(&router);
    let refused_at_kill = answered_503(&router);
    let retried = poll(Duration::from_secs(8), Duration::from_millis(250), || {
        let s = a.remote_write_stats();
        (s.samples_retried > before.samples_retried).then_some(s)
    });
    assert!(
        retried.is_some(),
        "Prometheus did not retry with two of three ingestors down: {:?}",
        a.remote_write_stats()
    );
    std::thread::sleep(Duration::from_secs(10).saturating_sub(killed.elapsed()));
    let during = a.remote_write_stats();
    let received_during = received(&router);
    let refused_during = answered_503(&router) - refused_at_kill;
    router.proc.assert_running();
    assert_eq!(
        during.samples_failed, 0.0,
        "Prometheus dropped samples as non-retryable while 2 of 3 ingestors were down: {during:?}"
    );
    assert_eq!(
        received_during, received_at_kill,
        "the router acknowledged samples with 2 of 3 ingestors down"
    );
    assert!(
        refused_during >= 3.0,
        "the router answered only {refused_during} writes 503 during the outage"
    );
    // Prometheus's view: no sample newer than the kill was acknowledged (whole seconds).
    assert!(
        during.highest_sent_s <= (kill_ms / 1000 + 1) as f64,
        "Prometheus had samples stamped after the kill acknowledged: {during:?}, kill at {kill_ms}"
    );
    assert!(
        during.highest_ts_s >= (kill_ms / 1000 + 5) as f64,
        "Prometheus did not keep scraping: {during:?}"
    );

    // Per peer: forwards that succeeded, and sends skipped while the peer was backed off.
    let peer_counts = |r: &Router| -> Vec<(f64, f64)> {
        eps.iter()
            .map(|ep| {
                let peer = format!("peer=\"{ep}\"");
                let m = |name: &str, l: &str| scrape_metric(&r.http, name, &[&peer, l]);
                (
                    m("ringest_forward_requests_total", "result=\"success\"").unwrap_or(0.0),
                    m("ringest_forward_errors_total", "cause=\"BackedOff\"").unwrap_or(0.0),
                )
            })
            .collect()
    };

    // Back up on the same data directories; the queue catches up with what A had at restart.
    let at_restart = peer_counts(&router);
    let restart_ms = now_ms();
    ings[0].proc.restart();
    ings[1].proc.restart();
    ings[0].wait_ready();
    ings[1].wait_ready();
    let outage = killed.elapsed();
    let back = Instant::now();
    let target_s = a.remote_write_stats().highest_ts_s;
    let caught_up = poll(Duration::from_secs(30), Duration::from_millis(100), || {
        let s = a.remote_write_stats();
        (s.highest_sent_s >= target_s).then_some(s)
    });
    let catch_up = back.elapsed();
    let peers_catching_up: Vec<(f64, f64)> = peer_counts(&router)
        .iter()
        .zip(&at_restart)
        .map(|(now, then)| (now.0 - then.0, now.1 - then.1))
        .collect();
    assert!(
        caught_up.is_some(),
        "Prometheus did not catch up to {target_s} s within 30 s: {:?}",
        a.remote_write_stats()
    );
    // A few scrapes of the restarted ingestors, then everything up to a cutoff sent.
    std::thread::sleep(Duration::from_secs(3));
    let cutoff = now_ms() - 500;
    let stats = a.wait_sent_past(cutoff, Duration::from_secs(30));
    assert_eq!(stats.samples_failed, 0.0, "{stats:?}");
    assert_eq!(stats.samples_dropped, 0.0, "{stats:?}");
    assert!(
        received(&router) > received_during,
        "the router acknowledged nothing after the restart"
    );

    let window_ms = cutoff - w0;
    let a_matrix = a.query_matrix(&format!("{{__name__=~\".+\"}}[{window_ms}ms]"), cutoff);
    a.stop();

    // Everything A stored, stale markers included, reads back bit for bit through the router.
    let dump = promtool_dump(&a.data_dir, w0, cutoff);
    let read = read_all(&router.http, None, w0, cutoff).expect("remote read of the router");
    let c = assert_read_matches_dump(
        "promtool dump of the scraper vs router remote read",
        &dump,
        &a_matrix,
        &read,
    );

    // The outage window: scraped while only one replica was up, acknowledged only after the
    // restart. Every such sample is on at least a write quorum of the ingestors.
    let in_gap = |ts: i64| ts >= kill_ms && ts < restart_ms;
    let gap: Vec<(&Labels, i64, u64)> = read
        .iter()
        .flat_map(|(l, s)| {
            s.iter()
                .filter(|(ts, _)| in_gap(*ts))
                .map(move |&(ts, bits)| (l, ts, bits))
        })
        .collect();
    let per_ing: Vec<BTreeMap<Labels, BTreeMap<i64, u64>>> = ings
        .iter()
        .map(|i| {
            read_all(&i.http, None, kill_ms, restart_ms)
                .unwrap_or_else(|e| panic!("remote read of {}: {e}", i.grpc))
                .into_iter()
                .map(|(l, s)| (l, s.into_iter().collect()))
                .collect()
        })
        .collect();
    let mut held = [0usize; 3];
    for (l, ts, bits) in &gap {
        let on: Vec<usize> = (0..3)
            .filter(|&i| per_ing[i].get(*l).and_then(|s| s.get(ts)) == Some(bits))
            .collect();
        assert!(
            on.len() >= 2,
            "{l:?}@{ts} (bits {bits:#x}) is on ingestors {on:?} only"
        );
        for i in on {
            held[i] += 1;
        }
    }
    eprintln!(
        "two of three down under a real Prometheus: outage {:.1}s, {} samples stamped in it \
         ({} series); router answered {refused_during} writes 503 during it; Prometheus retried \
         {} samples, failed {}, sent {} in all; caught up {:.1}s after both were ready; \
         replicas hold {held:?} of the window's samples (while catching up, per peer: \
         (forwards ok, sends skipped as backed off) {peers_catching_up:?}); promtool vs router: {} series, {} \
         samples, {} stale markers; total {:.1}s",
        outage.as_secs_f64(),
        gap.len(),
        gap.iter()
            .map(|g| g.0)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        stats.samples_retried,
        stats.samples_failed,
        stats.samples_total,
        catch_up.as_secs_f64(),
        c.series,
        c.samples,
        c.stale_markers,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        gap.len() >= 2000,
        "only {} samples in the outage window",
        gap.len()
    );
    router.proc.assert_running();
    for i in &mut ings {
        i.proc.assert_running();
    }
}
