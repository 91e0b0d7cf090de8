//! Runs `ringest-loadtest` for a moment against a real `ringest all-in-one` on loopback (v1 then
//! v2) and checks that samples were accepted with no error. Needs the release binary
//! (`cargo build --release -p ringest`), found at `$RINGEST_BIN` or
//! `$CARGO_TARGET_DIR/release/ringest` (`target/release/ringest` by default); skipped otherwise.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The release `ringest` binary, if built.
fn ringest_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RINGEST_BIN") {
        return Some(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let p = target.join("release/ringest");
    p.exists().then_some(p)
}

/// A free loopback port (released before use; good enough on a quiet machine).
fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// Kills the child when dropped.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `GET path` on `addr` answers 200.
fn get_ok(addr: &str, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// Runs the load generator with `args` plus `--json` and returns its JSON summary.
fn loadtest(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ringest-loadtest"))
        .args(args)
        .arg("--json")
        .output()
        .expect("run ringest-loadtest");
    assert!(
        out.status.success(),
        "ringest-loadtest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "one JSON object: {stdout}"
    );
    serde_json::from_str(stdout.trim()).expect("JSON summary")
}

#[test]
fn loadtest_against_all_in_one_v1_and_v2() {
    let Some(bin) = ringest_bin() else {
        eprintln!(
            "SKIPPED: no release ringest binary (cargo build --release -p ringest, or set RINGEST_BIN)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
    let log = std::fs::File::create(dir.path().join("ringest.log")).expect("log");
    let child = Command::new(&bin)
        .current_dir(dir.path())
        .args([
            "all-in-one".to_string(),
            format!("--remote-write.address={rw}"),
            format!("--http-address={http}"),
            format!("--grpc-address={grpc}"),
            format!("--tsdb.path={}", dir.path().join("data").display()),
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start ringest all-in-one");
    let _guard = Kill(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get_ok(&http, "/-/ready") {
        assert!(Instant::now() < deadline, "ringest never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://{rw}/api/v1/receive");
    for (protocol, seed, duration) in [("v1", "1", "2s"), ("v2", "2", "1s")] {
        let s = loadtest(&[
            "--url",
            &url,
            "--protocol",
            protocol,
            "--seed",
            seed,
            "--duration",
            duration,
            "--series",
            "5000",
            "--concurrency",
            "2",
            "--tenant",
            "load-a,load-b",
            "--threads",
            "1",
        ]);
        eprintln!("{protocol}: {s}");
        assert_eq!(s["protocol"], protocol);
        assert_eq!(s["series"], 5000);
        assert!(s["samples_accepted"].as_u64().unwrap() > 0, "{s}");
        assert!(s["accepted_samples_per_sec"].as_f64().unwrap() > 0.0, "{s}");
        assert_eq!(s["errors"], serde_json::json!({}), "{s}");
        assert_eq!(s["samples_sent"], s["samples_accepted"], "{s}");
        for k in ["requests", "p50_ms", "p99_ms", "p999_ms", "duration_sec"] {
            assert!(s[k].is_number(), "{k} in {s}");
        }
    }
}
