//! Write limits (`--receive.limits-config-file`, Thanos's limits YAML) against the real binary:
//!
//! - request limits (body size, series, samples) answer 413 naming the limit, the tenant and the
//!   value; tenant overrides apply field by field; other tenants are unaffected; the file is hot
//!   reloaded (a raised limit lets the same request pass) and a bad file keeps the old limits,
//!   saying why in logs and metrics; a bad file at start stops the process with the field named;
//! - `max_concurrency` makes requests wait for a slot (as Thanos), and answers 429 + Retry-After
//!   once `max_concurrency_wait` passed;
//! - `samples_per_second` (inline `--receive.limits-config`) answers 429 + Retry-After;
//! - `head_series_limit` keeps the head at the limit under a flood of 200k new series, with the
//!   process's RSS bounded, while existing series keep being written; a router in front of the
//!   ingestor answers the same 429.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::ringest_bin;
use proto::prompb::WriteRequest;
use testkit::prelude::*;

/// `n` series `name{i="0".."n"}`, `samples` samples each ending at `ts`.
fn request(name: &str, n: usize, samples: usize, ts: i64) -> WriteRequest {
    WriteRequest {
        timeseries: (0..n)
            .map(|i| {
                let i = i.to_string();
                let pts: Vec<(i64, f64)> = (0..samples)
                    .map(|j| (ts - (samples - 1 - j) as i64, j as f64))
                    .collect();
                series(&[("__name__", name), ("i", &i)], &pts)
            })
            .collect(),
        ..Default::default()
    }
}

/// A valid request of `n` series whose snappy body is incompressible and above `min_bytes`.
fn big_body(n: usize, min_bytes: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut noise = |len: usize| {
        let mut s = String::new();
        while s.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push_str(&format!("{x:016x}"));
        }
        s
    };
    let per = min_bytes * 2 / n;
    let req = WriteRequest {
        timeseries: (0..n)
            .map(|_| {
                series(
                    &[("__name__", "big"), ("v", &noise(per))],
                    &[(now_ms(), 1.0)],
                )
            })
            .collect(),
        ..Default::default()
    };
    let body = encode_write(&req);
    assert!(body.len() > min_bytes, "{} bytes", body.len());
    body
}

fn write(addr: &str, tenant: &str, req: &WriteRequest) -> Response {
    remote_write(addr, Some(tenant), req)
}

fn assert_refused(what: &str, r: &Response, status: u16, message: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert!(
        r.text().contains(message),
        "{what}: {:?} does not contain {message:?}",
        r.text()
    );
}

fn assert_2xx(what: &str, r: &Response) {
    assert!(r.is_2xx(), "{what}: {} {}", r.status, r.text());
}

fn refused_count(http: &str, tenant: &str, limit: &str) -> f64 {
    scrape_metric(
        http,
        "ringest_limits_refused_requests_total",
        &[
            &format!("tenant=\"{tenant}\""),
            &format!("limit=\"{limit}\""),
        ],
    )
    .unwrap_or(0.0)
}

const LIMITS_V1: &str = r#"
write:
  default:
    request:
      size_bytes_limit: 4096
      series_limit: 10
      samples_limit: 20
  tenants:
    acme:
      request:
        series_limit: 1000
    free:
      request:
        size_bytes_limit: 0
        series_limit: 0
        samples_limit: 0
"#;

#[test]
fn request_limits_answer_413_and_follow_the_file() {
    let dir = test_dir("limits-request");
    let file = dir.path().join("limits.yaml");
    fs::write(&file, LIMITS_V1).unwrap();
    let ing = Ingestor::start(
        &ringest_bin(),
        "ingest",
        dir.path(),
        &[
            &format!("--receive.limits-config-file={}", file.display()),
            "--receive.limits-config-reload-timer=100ms",
        ],
    );
    let rw = ing.rw.as_str();
    let http = ing.http.as_str();
    assert_eq!(
        scrape_metric(http, "ringest_limits_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert!(
        scrape_metric(
            http,
            "ringest_limits_config_last_reload_success_timestamp_seconds",
            &[]
        )
        .unwrap()
            > 1.7e9
    );

    let ts = now_ms();
    // Series: 11 over the default 10.
    let eleven = request("s", 11, 1, ts);
    let r = write(rw, "other", &eleven);
    assert_refused(
        "11 series",
        &r,
        413,
        r#"request has 11 series, over the series limit 10 of tenant "other""#,
    );
    assert_eq!(r.header("Retry-After"), None);
    assert_2xx("10 series", &write(rw, "other", &request("s", 10, 1, ts)));
    // Samples: 5 series x 5 samples, over 20.
    let many = request("m", 5, 5, ts);
    assert_refused(
        "25 samples",
        &write(rw, "other", &many),
        413,
        r#"request has 25 samples, over the samples limit 20 of tenant "other""#,
    );
    // Size: an incompressible body over 4096 bytes (5 series).
    let big = big_body(5, 4096);
    let mut headers = WRITE_HEADERS.to_vec();
    headers.push(("THANOS-TENANT", "other"));
    let r = post_raw(rw, "/api/v1/receive", &headers, &big);
    assert_refused(
        "big body",
        &r,
        413,
        &format!(
            r#"request body of {} bytes, over the size_bytes limit 4096 of tenant "other""#,
            big.len()
        ),
    );
    // A small body decompressing past the limit: refused on the decompressed size.
    let compressible = request("c", 10, 2, ts + 1);
    let body = encode_write(&WriteRequest {
        timeseries: compressible
            .timeseries
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s.labels.push(proto::prompb::Label {
                    name: "pad".into(),
                    value: "x".repeat(1000),
                });
                s
            })
            .collect(),
        ..Default::default()
    });
    assert!(body.len() < 4096);
    let r = post_raw(rw, "/api/v1/receive", &headers, &body);
    assert_refused(
        "decompressed body",
        &r,
        413,
        "bytes decompressed, over the size_bytes limit 4096 of tenant \"other\"",
    );

    // acme: its own series limit, the default samples and size limits.
    assert_2xx("acme 11 series", &write(rw, "acme", &eleven));
    assert_refused(
        "acme 25 samples",
        &write(rw, "acme", &many),
        413,
        r#"over the samples limit 20 of tenant "acme""#,
    );
    // free: 0 is no limit.
    assert_2xx("free 11 series", &write(rw, "free", &eleven));
    assert_2xx("free 25 samples", &write(rw, "free", &many));
    let mut free_headers = WRITE_HEADERS.to_vec();
    free_headers.push(("THANOS-TENANT", "free"));
    assert_2xx(
        "free big body",
        &post_raw(rw, "/api/v1/receive", &free_headers, &big),
    );
    assert_eq!(refused_count(http, "other", "series"), 1.0);
    assert_eq!(refused_count(http, "other", "samples"), 1.0);
    assert_eq!(refused_count(http, "other", "body_size"), 2.0);
    assert_eq!(refused_count(http, "acme", "samples"), 1.0);

    // Hot reload: raising the limits lets the same request pass.
    write_atomic(
        &file,
        LIMITS_V1
            .replace("series_limit: 10\n", "series_limit: 100\n")
            .replace("samples_limit: 20\n", "samples_limit: 200\n")
            .as_bytes(),
    );
    let passed = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let r = write(rw, "other", &request("s", 11, 1, now_ms()));
        r.is_2xx().then_some(())
    });
    assert!(passed.is_some(), "the raised series limit was not applied");
    assert_2xx(
        "25 samples after reload",
        &write(rw, "other", &request("m", 5, 5, now_ms())),
    );

    // A bad file (unknown field) keeps the limits in force and says why.
    write_atomic(
        &file,
        b"write:\n  default:\n    request:\n      series_limt: 1\n",
    );
    let (v, ok) = wait_metric(
        http,
        "ringest_limits_config_last_reload_successful",
        &[],
        Duration::from_secs(10),
        |v| v == 0.0,
    );
    assert!(ok, "reload gauge stayed {v:?}");
    let logs = ing.proc.stderr_text();
    assert!(
        logs.contains("series_limt")
            && logs.contains("invalid limits config file; keeping the one in force"),
        "the log does not name the bad field:\n{logs}"
    );
    assert_2xx(
        "11 series after a bad reload",
        &write(rw, "other", &request("s", 11, 1, now_ms())),
    );
    assert_refused(
        "101 series after a bad reload",
        &write(rw, "other", &request("s", 101, 1, now_ms())),
        413,
        "over the series limit 100 of tenant \"other\"",
    );
    // A good file again: the gauge recovers.
    write_atomic(&file, LIMITS_V1.as_bytes());
    let (v, ok) = wait_metric(
        http,
        "ringest_limits_config_last_reload_successful",
        &[],
        Duration::from_secs(10),
        |v| v == 1.0,
    );
    assert!(ok, "reload gauge stayed {v:?}");
    assert_refused(
        "11 series, back to 10",
        &write(rw, "other", &request("s", 11, 1, now_ms())),
        413,
        "over the series limit 10",
    );
}

#[test]
fn bad_limits_stop_the_start_with_the_field_named() {
    let dir = test_dir("limits-bad-start");
    let file = dir.path().join("limits.yaml");
    fs::write(&file, "write:\n  global:\n    max_concurency: 3\n").unwrap();
    let data = dir.path().join("data");
    let out = run_to_exit(
        ringest_bin(),
        &[
            "all-in-one",
            &format!("--remote-write.address={}", free_addr()),
            &format!("--http-address={}", free_addr()),
            &format!("--grpc-address={}", free_addr()),
            &format!("--tsdb.path={}", data.display()),
            &format!("--receive.limits-config-file={}", file.display()),
        ],
        b"",
        None,
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("max_concurency") && out.stderr.contains("limits.yaml"),
        "{}",
        out.stderr
    );
    let out = run_to_exit(
        ringest_bin(),
        &[
            "all-in-one",
            &format!("--remote-write.address={}", free_addr()),
            &format!("--http-address={}", free_addr()),
            &format!("--grpc-address={}", free_addr()),
            &format!("--tsdb.path={}", data.display()),
            "--receive.limits-config=write: {tenants: {a: {head_series_limit: -1}}}",
        ],
        b"",
        None,
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("head_series_limit"), "{}", out.stderr);
}

/// Starts a request whose body is only half sent, so the server holds a concurrency slot while it
/// waits for the rest; returns the stream and the rest of the request.
fn half_sent(addr: &str, req: &WriteRequest) -> (TcpStream, Vec<u8>) {
    let body = encode_write(req);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "POST /api/v1/receive HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in WRITE_HEADERS {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("THANOS-TENANT: slow\r\n\r\n");
    let half = body.len() / 2;
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..half]).unwrap();
    s.flush().unwrap();
    (s, body[half..].to_vec())
}

fn finish(mut s: TcpStream, rest: &[u8]) -> u16 {
    s.write_all(rest).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn max_concurrency_queues_then_answers_429() {
    let dir = test_dir("limits-concurrency");
    let file = dir.path().join("limits.yaml");
    let v1 = "write:\n  global:\n    max_concurrency: 1\n    max_concurrency_wait: 300ms\n";
    fs::write(&file, v1).unwrap();
    let ing = Ingestor::start(
        &ringest_bin(),
        "ingest",
        dir.path(),
        &[
            &format!("--receive.limits-config-file={}", file.display()),
            "--receive.limits-config-reload-timer=100ms",
        ],
    );
    let rw = ing.rw.as_str();
    assert_2xx("alone", &write(rw, "t", &request("c", 1, 1, now_ms())));

    // One request holds the only slot: the next waits 300ms, then 429 + Retry-After.
    let (held, rest) = half_sent(rw, &request("c", 1, 1, now_ms() + 1));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let r = write(rw, "t", &request("c", 1, 1, now_ms() + 2));
    assert_refused(
        "second request",
        &r,
        429,
        "1 remote write requests in progress, the max_concurrency limit",
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert_eq!(finish(held, &rest), 204, "the held request");
    assert_2xx(
        "slot free",
        &write(rw, "t", &request("c", 1, 1, now_ms() + 3)),
    );
    assert_eq!(refused_count(&ing.http, "t", "max_concurrency"), 1.0);

    // With a long wait, a request queues until the slot frees (Thanos's gate).
    write_atomic(
        &file,
        b"write:\n  global:\n    max_concurrency: 1\n    max_concurrency_wait: 20s\n",
    );
    std::thread::sleep(Duration::from_millis(500));
    let (held, rest) = half_sent(rw, &request("c", 1, 1, now_ms() + 4));
    std::thread::sleep(Duration::from_millis(200));
    let queued = {
        let rw = rw.to_string();
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = write(&rw, "t", &request("c", 1, 1, now_ms() + 5));
            (r, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(finish(held, &rest), 204, "the held request");
    let (r, waited) = queued.join().unwrap();
    assert_2xx("queued request", &r);
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
}

#[test]
fn samples_per_second_answers_429_with_retry_after() {
    let dir = test_dir("limits-rate");
    let ing = Ingestor::start(
        &ringest_bin(),
        "ingest",
        dir.path(),
        &["--receive.limits-config=write: {tenants: {slow: {samples_per_second: 100}}}"],
    );
    let rw = ing.rw.as_str();
    let ts = now_ms();
    assert_2xx(
        "first second's worth",
        &write(rw, "slow", &request("r", 10, 10, ts)),
    );
    let r = write(rw, "slow", &request("r", 10, 10, ts + 1000));
    assert_refused(
        "over the rate",
        &r,
        429,
        r#"request has 100 samples, over the rate limit of 100 samples/s of tenant "slow""#,
    );
    let retry: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    // Other tenants are not limited.
    for i in 0..5 {
        assert_2xx(
            "other tenant",
            &write(rw, "fast", &request("r", 10, 10, ts + i * 1000)),
        );
    }
    std::thread::sleep(Duration::from_secs(retry));
    assert_2xx(
        "after Retry-After",
        &write(rw, "slow", &request("r", 10, 10, ts + 2000)),
    );
    assert_eq!(refused_count(&ing.http, "slow", "samples_per_second"), 1.0);
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

const HEAD_LIMIT: usize = 1000;
const FLOOD_REQUESTS: usize = 200;
const FLOOD_SERIES: usize = 1000;

/// `n` fresh series of flood request `k`.
fn flood_request(k: usize, ts: i64) -> WriteRequest {
    let k = k.to_string();
    WriteRequest {
        timeseries: (0..FLOOD_SERIES)
            .map(|i| {
                let i = i.to_string();
                series(
                    &[
                        ("__name__", "flood"),
                        ("k", &k),
                        ("i", &i),
                        ("pad", "abcdefghijklmnop"),
                    ],
                    &[(ts, 1.0)],
                )
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn head_series_limit_holds_under_a_flood_with_bounded_memory() {
    let dir = test_dir("limits-flood");
    let ing = Ingestor::start(
        &ringest_bin(),
        "ingest",
        dir.path(),
        &[&format!(
            "--receive.limits-config=write: {{default: {{head_series_limit: {HEAD_LIMIT}}}}}"
        )],
    );
    let rw = ing.rw.clone();
    let http = ing.http.as_str();
    let pid = ing.proc.pid().unwrap();
    let ts = now_ms();
    // Fill the head to the limit; existing series keep passing.
    assert_2xx(
        "the first 1000 series",
        &write(&rw, "t", &request("kept", HEAD_LIMIT, 1, ts)),
    );
    // Warm up the refusal path (decode buffers), then measure.
    for k in 0..4 {
        let r = write(&rw, "t", &flood_request(1_000_000 + k, ts));
        assert_eq!(r.status, 429, "{}", r.text());
    }
    let rss_before = vm_rss_kib(pid);

    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let rw = rw.clone();
            std::thread::spawn(move || {
                let mut refused = 0;
                for k in (w..FLOOD_REQUESTS).step_by(4) {
                    let r = write(&rw, "t", &flood_request(k, ts + 1 + k as i64));
                    assert_eq!(r.status, 429, "flood request {k}: {}", r.text());
                    assert_eq!(r.header("Retry-After"), Some("30"));
                    assert!(
                        r.text().contains(
                            r#"request would create 1000 new series, over the head series limit 1000 of tenant "t" (1000 series in the head)"#
                        ),
                        "{}",
                        r.text()
                    );
                    refused += 1;
                }
                refused
            })
        })
        .collect();
    let refused: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let elapsed = started.elapsed();
    assert_eq!(refused, FLOOD_REQUESTS);
    let rss_after = vm_rss_kib(pid);
    eprintln!(
        "flood: {} requests of {FLOOD_SERIES} new series ({} series) refused in {elapsed:?}; \
         VmRSS {rss_before} kB before, {rss_after} kB after ({:+} kB)",
        FLOOD_REQUESTS,
        FLOOD_REQUESTS * FLOOD_SERIES,
        rss_after as i64 - rss_before as i64
    );
    // Without the limit the same flood grows the RSS by about 100 MB (200k series in the head).
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} kB to {rss_after} kB"
    );
    assert_eq!(
        scrape_metric(http, "ringest_head_series", &["tenant=\"t\""]),
        Some(HEAD_LIMIT as f64)
    );
    assert_eq!(
        refused_count(http, "t", "head_series"),
        (FLOOD_REQUESTS + 4) as f64
    );
    // Existing series still get 2xx; a request mixing them with one new series is refused whole.
    assert_2xx(
        "existing series after the flood",
        &write(&rw, "t", &request("kept", HEAD_LIMIT, 1, now_ms())),
    );
    let mut mixed = request("kept", 3, 1, now_ms() + 1);
    mixed
        .timeseries
        .push(series(&[("__name__", "new_one")], &[(now_ms(), 1.0)]));
    assert_refused(
        "mixed",
        &write(&rw, "t", &mixed),
        429,
        "request would create 1 new series",
    );
    // Another tenant has its own head.
    assert_2xx("other tenant", &write(&rw, "u", &flood_request(0, ts)));
    assert_eq!(
        scrape_metric(http, "ringest_head_series", &["tenant=\"t\""]),
        Some(HEAD_LIMIT as f64)
    );
}

#[test]
fn router_answers_429_for_an_ingestor_head_series_limit() {
    let dir = test_dir("limits-router");
    let file = dir.path().join("limits.yaml");
    fs::write(&file, "write:\n  default:\n    head_series_limit: 5\n").unwrap();
    let ing = Ingestor::start(
        &ringest_bin(),
        "ingest",
        dir.path(),
        &[&format!("--receive.limits-config-file={}", file.display())],
    );
    let router = Router::start(&ringest_bin(), "router", dir.path(), &[&ing.grpc], 1, &[]);
    let ts = now_ms();
    assert_2xx(
        "5 series through the router",
        &write(&router.rw, "t", &request("r", 5, 1, ts)),
    );
    let r = write(&router.rw, "t", &request("r", 6, 1, ts + 1));
    assert_refused(
        "a sixth series",
        &r,
        429,
        r#"request would create 1 new series, over the head series limit 5 of tenant "t""#,
    );
    assert_eq!(r.header("Retry-After"), Some("30"));
    assert_2xx(
        "existing series",
        &write(&router.rw, "t", &request("r", 5, 1, ts + 2)),
    );
    assert_eq!(refused_count(&ing.http, "t", "head_series"), 1.0);
    assert_eq!(
        scrape_metric(&ing.http, "ringest_head_series", &["tenant=\"t\""]),
        Some(5.0)
    );
}
