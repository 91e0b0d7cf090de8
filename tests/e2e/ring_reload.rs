//! Hot reload of the hashrings file by a `ringest router` (RF 1, checked every 200 ms) in front of two
//! `ringest ingest` processes A and B, each read back directly:
//!
//! 1. a ring of A only: every write lands on A, none on B;
//! 2. garbage JSON: `ringest_hashring_config_last_reload_successful` drops to 0, the log names the
//!    problem, writes still succeed and still land on A only (the old ring is kept);
//! 3. a hashmod ring of A and B: the gauge returns to 1, `ringest_hashring_nodes` is 2, and new series
//!    land exactly where the `hashring` crate places them, some on each ingestor;
//! 4. a ring with `shuffle_sharding_config` is refused ("shuffle sharding" in the log), the A+B ring
//!    stays in force;
//! 5. the file disappears (gauge 0, logged, A+B ring kept) and comes back unchanged (gauge 1 again);
//! 6. a ring for one tenant only: the default tenant gets 500 naming it, that tenant is routed;
//! 7. a router started on a missing or invalid hashrings file exits non-zero and says why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{encode_write_exact, ringest_bin, SeriesSpec};
use testkit::prelude::*;

const RELOAD_OK: &str = "ringest_hashring_config_last_reload_successful";
const RELOAD_TS: &str = "ringest_hashring_config_last_reload_success_timestamp_seconds";
const NODES: &str = "ringest_hashring_nodes";
/// How long a reload may take to show (the file is polled every 200 ms).
const RELOAD_WAIT: Duration = Duration::from_secs(5);

fn series_labels(phase: &str, i: usize) -> Labels {
    label_map(&[
        ("__name__", "ring_reload_test"),
        ("phase", phase),
        ("i", &i.to_string()),
    ])
}

/// Writes `n` fresh series of `phase` (one sample each, at `ts`) through the router; asserts 2xx.
fn write_phase(router: &Router, phase: &str, n: usize, ts: i64) -> Vec<Labels> {
    let all: Vec<Labels> = (0..n).map(|i| series_labels(phase, i)).collect();
    let body: Vec<SeriesSpec<'_>> = all
        .iter()
        .map(|l| {
            (
                l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                vec![(ts, 1.5)],
            )
        })
        .collect();
    let r = post_raw(
        &router.rw,
        "/api/v1/receive",
        &WRITE_HEADERS,
        &encode_write_exact(&body),
    );
    assert!(
        r.is_2xx(),
        "phase {phase}: write through the router answered {}: {}\n{}",
        r.status,
        r.text(),
        router.proc.logs()
    );
    all
}

/// The series of `phase` stored on an ingestor (read directly from it), with their samples.
fn stored(ing: &Ingestor, phase: &str, since: i64) -> BTreeMap<Labels, Samples> {
    let mut all = read_all(&ing.http, None, since, now_ms() + 60_000)
        .unwrap_or_else(|e| panic!("remote read of {}: {e}", ing.proc.name));
    all.retain(|l, _| l.get("phase").map(String::as_str) == Some(phase));
    all
}

/// Waits until the router's reload gauge equals `want`; panics with the router's logs otherwise.
fn wait_reload_gauge(router: &Router, want: f64, what: &str) {
    let start = Instant::now();
    let (last, ok) = wait_metric(&router.http, RELOAD_OK, &[], RELOAD_WAIT, |v| v == want);
    assert!(
        ok,
        "{what}: {RELOAD_OK} is {last:?}, not {want}, {RELOAD_WAIT:?} after the file changed\n{}",
        router.proc.logs()
    );
    eprintln!("{what}: {RELOAD_OK} = {want} after {:?}", start.elapsed());
}

/// Waits until the router's stderr contains `needle` (case-insensitive); returns the matching line.
fn wait_log(router: &Router, needle: &str, what: &str) -> String {
    let needle = needle.to_lowercase();
    let line = poll(RELOAD_WAIT, Duration::from_millis(50), || {
        router
            .proc
            .stderr_text()
            .lines()
            .find(|l| l.to_lowercase().contains(&needle))
            .map(str::to_owned)
    });
    line.unwrap_or_else(|| {
        panic!(
            "{what}: the router's log never mentions {needle:?}\n{}",
            router.proc.logs()
        )
    })
}

fn ring_json(rings: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec_pretty(&rings).unwrap()
}

#[test]
fn router_reloads_hashrings_file_and_keeps_old_ring_on_bad_files() {
    let t0 = Instant::now();
    let tmp = test_dir("ring-reload");
    let dir = tmp.path();
    let a = Ingestor::start(&ringest_bin(), "ingest-a", dir, &[]);
    let b = Ingestor::start(&ringest_bin(), "ingest-b", dir, &[]);
    // Router::start writes a one-ring file listing A only.
    let router = Router::start(
        &ringest_bin(),
        "router",
        dir,
        &[&a.grpc],
        1,
        &["--receive.hashrings-file-refresh-interval=200ms"],
    );
    let file = router.hashrings.clone();
    let since = now_ms() - 1000;
    assert_eq!(scrape_metric(&router.http, RELOAD_OK, &[]), Some(1.0));
    let loaded_at = scrape_metric(&router.http, RELOAD_TS, &[]).expect(RELOAD_TS);
    let now_s = now_ms() as f64 / 1000.0;
    assert!(
        (now_s - 60.0..=now_s + 1.0).contains(&loaded_at),
        "{RELOAD_TS} = {loaded_at} at start-up, now is {now_s}"
    );
    assert_eq!(scrape_metric(&router.http, NODES, &[]), Some(1.0));

    // 1. A alone.
    let one = write_phase(&router, "one", 20, now_ms());
    let one_all = one.clone();
    assert_eq!(
        stored(&a, "one", since)
            .into_keys()
            .collect::<BTreeSet<_>>(),
        one.into_iter().collect::<BTreeSet<_>>(),
        "ring of A only: A must hold every series"
    );
    assert!(
        stored(&b, "one", since).is_empty(),
        "ring of A only: B holds series"
    );

    // 2. Garbage JSON: gauge 0, logged, writes still go to A.
    write_atomic(&file, b"[{\"hashring\": \"default\", \"endpoints\": [");
    wait_reload_gauge(&router, 0.0, "garbage JSON");
    let line = wait_log(&router, "invalid hashrings file", "garbage JSON");
    assert!(
        line.contains("JSON") && line.contains(&*file.to_string_lossy()),
        "garbage JSON: the log line does not name the file and the JSON problem: {line}"
    );
    assert!(
        http_get(&router.http, "/-/ready").unwrap().status == 200,
        "garbage JSON: router no longer ready with the old ring in force"
    );
    let two = write_phase(&router, "two", 20, now_ms());
    let two_all = two.clone();
    assert_eq!(
        stored(&a, "two", since)
            .into_keys()
            .collect::<BTreeSet<_>>(),
        two.into_iter().collect::<BTreeSet<_>>(),
        "after garbage JSON: the old ring (A only) must still be used"
    );
    assert!(
        stored(&b, "two", since).is_empty(),
        "after garbage JSON: B got series"
    );
    assert_eq!(scrape_metric(&router.http, NODES, &[]), Some(1.0));

    // 3. A and B (hashmod): gauge back to 1, 2 nodes, series where the hashring crate puts them.
    let both = ring_json(serde_json::json!([{
        "hashring": "default",
        "algorithm": "hashmod",
        "endpoints": [a.grpc, b.grpc],
    }]));
    write_atomic(&file, &both);
    wait_reload_gauge(&router, 1.0, "ring of A and B");
    let reloaded_at = scrape_metric(&router.http, RELOAD_TS, &[]).expect(RELOAD_TS);
    assert!(
        reloaded_at > loaded_at,
        "{RELOAD_TS} did not advance on a successful reload: {loaded_at} then {reloaded_at}"
    );
    let (nodes, ok) = wait_metric(&router.http, NODES, &[], RELOAD_WAIT, |v| v == 2.0);
    assert!(ok, "ring of A and B: {NODES} is {nodes:?}");
    wait_log(&router, "hashring reloaded", "ring of A and B");
    let three = write_phase(&router, "three", 40, now_ms());
    let placed = assert_placement(&a, &b, &file, "three", &three, since);
    eprintln!("ring of A and B: {placed:?} series on (A, B)");

    // 4. Shuffle sharding (B only, so that taking it would be visible): refused, A+B ring kept.
    let shuffle = ring_json(serde_json::json!([{
        "hashring": "default",
        "algorithm": "hashmod",
        "endpoints": [b.grpc],
        "shuffle_sharding_config": {"shard_size": 2},
    }]));
    write_atomic(&file, &shuffle);
    wait_reload_gauge(&router, 0.0, "shuffle sharding");
    let line = wait_log(&router, "shuffle sharding", "shuffle sharding");
    eprintln!("shuffle sharding refused: {line}");
    assert_eq!(scrape_metric(&router.http, NODES, &[]), Some(2.0));
    let four = write_phase(&router, "four", 40, now_ms());
    // The placement of the A+B ring file, not of the refused one.
    let kept = dir.join("kept-ring.json");
    std::fs::write(&kept, &both).unwrap();
    let placed = assert_placement(&a, &b, &kept, "four", &four, since);
    eprintln!("after shuffle sharding: {placed:?} series on (A, B)");

    // 5. The file vanishes for a while (a ConfigMap swap gone wrong) and comes back unchanged: the
    //    gauge drops to 0 while it cannot be read, and returns to 1 once the same good file is read
    //    again (it must not stay 0 because the content equals the ring already in force).
    write_atomic(&file, &both);
    wait_reload_gauge(&router, 1.0, "A+B ring again");
    std::fs::remove_file(&file).unwrap();
    wait_reload_gauge(&router, 0.0, "file removed");
    wait_log(&router, "cannot read hashrings file", "file removed");
    let five = write_phase(&router, "five", 40, now_ms());
    let placed = assert_placement(&a, &b, &kept, "five", &five, since);
    eprintln!("with the file removed: {placed:?} series on (A, B)");
    write_atomic(&file, &both);
    wait_reload_gauge(&router, 1.0, "same file restored");
    assert_eq!(scrape_metric(&router.http, NODES, &[]), Some(2.0));

    // The router's remote read fans out over the current ring (A and B) and sees every phase,
    // including the series written while the ring was A only.
    let mut through_router = read_all(&router.http, None, since, now_ms() + 60_000)
        .unwrap_or_else(|e| panic!("remote read through the router: {e}"));
    through_router.retain(|l, _| l["__name__"] == "ring_reload_test");
    let want: BTreeSet<Labels> = [one_all, two_all, three, four, five]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        through_router.keys().cloned().collect::<BTreeSet<_>>(),
        want,
        "remote read through the router"
    );

    // 6. A ring for tenant team-x only: the default tenant has no ring any more (500, naming the
    //    tenant), team-x writes land on B.
    let only_x = ring_json(serde_json::json!([{
        "hashring": "x-only",
        "tenants": ["team-x"],
        "endpoints": [b.grpc],
    }]));
    write_atomic(&file, &only_x);
    let (nodes, ok) = wait_metric(&router.http, NODES, &[], RELOAD_WAIT, |v| v == 1.0);
    assert!(ok, "ring of team-x: {NODES} is {nodes:?}");
    wait_reload_gauge(&router, 1.0, "ring of team-x");
    let body = encode_write_exact(&[(
        vec![("__name__", "ring_reload_test"), ("phase", "six")],
        vec![(now_ms(), 6.0)],
    )]);
    let r = post_raw(&router.rw, "/api/v1/receive", &WRITE_HEADERS, &body);
    assert_eq!(r.status, 500, "default tenant without a ring: {}", r.text());
    assert!(
        r.text().contains("no matching hashring") && r.text().contains("default-tenant"),
        "default tenant without a ring: {}",
        r.text()
    );
    let mut headers = WRITE_HEADERS.to_vec();
    headers.push(("THANOS-TENANT", "team-x"));
    let r = post_raw(&router.rw, "/api/v1/receive", &headers, &body);
    assert!(r.is_2xx(), "team-x: {} {}", r.status, r.text());
    let on_b = read_all(&b.http, Some("team-x"), since, now_ms() + 60_000).unwrap();
    assert_eq!(on_b.len(), 1, "team-x on B: {on_b:?}");
    eprintln!("ring reload test took {:?}", t0.elapsed());
}

/// Asserts that every series of `phase` is on exactly the ingestor the `hashring` crate computes
/// for the ring in `ring_file` (RF 1), and that both ingestors got some. Returns the counts.
fn assert_placement(
    a: &Ingestor,
    b: &Ingestor,
    ring_file: &Path,
    phase: &str,
    written: &[Labels],
    since: i64,
) -> (usize, usize) {
    let configs = hashring::parse_config(&std::fs::read(ring_file).unwrap()).unwrap();
    let ring = hashring::Multiring::new(&configs, hashring::Algorithm::Ketama, 1).unwrap();
    let on_a = stored(a, phase, since);
    let on_b = stored(b, phase, since);
    let mut counts = (0, 0);
    for l in written {
        let pairs: Vec<(String, String)> = l.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let want = hashring::locate(&ring, "default-tenant", &pairs).unwrap();
        let (in_a, in_b) = (on_a.contains_key(l), on_b.contains_key(l));
        let got: Vec<&str> = [(in_a, a.grpc.as_str()), (in_b, b.grpc.as_str())]
            .iter()
            .filter(|(x, _)| *x)
            .map(|(_, addr)| *addr)
            .collect();
        assert_eq!(
            got, want.endpoints,
            "phase {phase}: {l:?} is stored on {got:?}, the ring places it on {:?}",
            want.endpoints
        );
        if in_a {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }
    assert!(
        counts.0 > 0 && counts.1 > 0,
        "phase {phase}: series not spread over both ingestors: {counts:?}"
    );
    assert_eq!(on_a.len() + on_b.len(), written.len(), "phase {phase}");
    counts
}

/// A start-up case: name, file contents (`None`: no file), words stderr must contain.
type StartCase = (&'static str, Option<&'static [u8]>, &'static [&'static str]);

#[test]
fn router_refuses_to_start_on_missing_or_invalid_hashrings_file() {
    let tmp = test_dir("ring-start");
    let dir = tmp.path();
    let run_router = |file: &Path| {
        let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
        let args = [
            "router".to_string(),
            format!("--remote-write.address={rw}"),
            format!("--http-address={http}"),
            format!("--grpc-address={grpc}"),
            format!("--receive.hashrings-file={}", file.display()),
            "--receive.hashrings-file-refresh-interval=200ms".to_string(),
            "--receive.replication-factor=1".to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_to_exit(ringest_bin(), &args, b"", None, Duration::from_secs(15))
    };
    let cases: [StartCase; 4] = [
        ("missing", None, &["reading hashrings file", "No such file"]),
        ("garbage", Some(b"{not json"), &["not valid JSON"]),
        ("empty-array", Some(b"[]"), &["empty"]),
        (
            "shuffle",
            Some(br#"[{"hashring": "x", "endpoints": ["127.0.0.1:1"], "shuffle_sharding_config": {"shard_size": 2}}]"#),
            &["shuffle sharding"],
        ),
    ];
    for (name, contents, keywords) in cases {
        let file = dir.join(format!("{name}.json"));
        if let Some(c) = contents {
            std::fs::write(&file, c).unwrap();
        }
        let out = run_router(&file);
        eprintln!("{name}: {} stderr: {}", out.status, out.stderr.trim());
        assert!(
            !out.status.success(),
            "{name}: router exited successfully: {out:?}"
        );
        for k in keywords {
            assert!(
                out.stderr.contains(k),
                "{name}: stderr does not contain {k:?}: {}",
                out.stderr
            );
        }
        assert!(
            out.stderr.contains(&*file.to_string_lossy()),
            "{name}: stderr does not name the file {}: {}",
            file.display(),
            out.stderr
        );
    }
}
