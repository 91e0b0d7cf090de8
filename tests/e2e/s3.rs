//! The `ringest` binary end to end with a real S3-protocol server, moto's `moto_server` (installed
//! by `scripts/install-test-deps.sh`; see `testkit::s3::moto_bin`):
//!
//! - `ringest all-in-one --objstore.config-file=<S3 YAML: path style, plain HTTP, dummy keys, a
//!   prefix> --tsdb.block-duration=1m`, written two tenants' samples over several ranges, uploads
//!   blocks while running and the rest at SIGTERM (exit 0): every local block is in the bucket as
//!   `<prefix>/<ULID>/{chunks/000001, index, meta.json}` (the same bytes, nothing else under the
//!   prefix), `thanos.shipper.json` lists them, and a copy downloaded over HTTP is read by
//!   `promtool tsdb list`, `analyze` and `dump`, whose dump equals the acknowledged samples bit for
//!   bit;
//! - a bad objstore config (unknown field, missing bucket, unknown type, missing file) stops it at
//!   start with a non-zero exit and a message naming the problem;
//! - S3 down when the first blocks are cut: uploads fail and are retried after a backoff
//!   (`ringest_shipper_upload_failures_total` reaches 2), and once moto is up the blocks arrive
//!   at a later retry, nothing lost, nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{
    assert_no_overlap, encode_write_exact, read_block, ringest_bin, union_no_duplicates, ReadBlock,
    SeriesSpec,
};
use testkit::prelude::*;

const BUCKET: &str = "ringest-e2e";
const PREFIX: &str = "e2e/blocks";
const RANGE_MS: i64 = 60_000;

/// Thanos objstore YAML for [`BUCKET`] on `endpoint`, plus `extra` config lines.
fn s3_config(endpoint: &str, extra: &str) -> String {
    format!(
        "type: S3\nconfig:\n  bucket: {BUCKET}\n  endpoint: {endpoint}\n  region: us-east-1\n  \
         access_key: dummy-access\n  secret_key: dummy-secret\n  insecure: true\n  \
         bucket_lookup_type: path\n{extra}prefix: /{PREFIX}/\n"
    )
}

/// `ringest all-in-one` with an objstore config file.
struct Aio {
    proc: Proc,
    rw: String,
    http: String,
    data: PathBuf,
}

impl Aio {
    fn start(dir: &Path, config_yaml: &str) -> Aio {
        let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
        let data = dir.join("data");
        let config = dir.join("objstore.yml");
        std::fs::write(&config, config_yaml).unwrap();
        let mut args = server_args("all-in-one", &rw, &http, &grpc);
        args.extend([
            format!("--tsdb.path={}", data.display()),
            format!("--objstore.config-file={}", config.display()),
            "--tsdb.block-duration=1m".to_string(),
        ]);
        let mut proc = Proc::spawn("ringest", ringest_bin(), &args, &dir.join("logs"));
        wait_http_ok(&http, "/-/ready", Duration::from_secs(60), Some(&mut proc));
        Aio {
            proc,
            rw,
            http,
            data,
        }
    }

    fn stop(&mut self) {
        let status = self.proc.terminate(Duration::from_secs(90));
        assert!(
            status.is_some_and(|s| s.success()),
            "all-in-one did not exit 0 within 90 s of SIGTERM: {status:?}\n{}",
            self.proc.logs()
        );
    }
}

/// A tenant's writer: `series` series of metric `name`, one request per `per_req` samples 1 s
/// apart, in time order from `base`.
struct Writer {
    tenant: &'static str,
    name: &'static str,
    series: usize,
    per_req: usize,
    base: i64,
    want: BTreeMap<Labels, Samples>,
}

impl Writer {
    fn new(tenant: &'static str, name: &'static str, series: usize, base: i64) -> Writer {
        Writer {
            tenant,
            name,
            series,
            per_req: 5,
            base,
            want: BTreeMap::new(),
        }
    }

    fn ts(&self, k: usize, j: usize) -> i64 {
        self.base + (k * self.per_req + j) as i64 * 1000
    }

    /// Values with bits promtool's `%g` round-trips, specials included (a printed `NaN` is
    /// checked to be a NaN sent).
    fn value(i: usize, n: usize) -> f64 {
        match (i * 5 + n) % 41 {
            0 => f64::from_bits(STALE_NAN_BITS),
            1 => -0.0,
            2 => f64::INFINITY,
            3 => f64::NEG_INFINITY,
            4 => f64::MIN_POSITIVE / 8.0,
            5 => f64::MAX,
            _ => (i as f64 + 1.0) * 0.1 + n as f64 * 1e-3,
        }
    }

    /// Sends request `k`; panics unless it is acknowledged.
    fn send(&mut self, rw: &str, k: usize) {
        let names: Vec<String> = (0..self.series).map(|i| i.to_string()).collect();
        let spec: Vec<SeriesSpec<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    vec![("__name__", self.name), ("series", s.as_str())],
                    (0..self.per_req)
                        .map(|j| (self.ts(k, j), Writer::value(i, k * self.per_req + j)))
                        .collect(),
                )
            })
            .collect();
        let mut headers = WRITE_HEADERS.to_vec();
        headers.push(("THANOS-TENANT", self.tenant));
        let r = post_raw(rw, "/api/v1/receive", &headers, &encode_write_exact(&spec));
        assert!(
            r.is_2xx(),
            "{} request {k}: {} {}",
            self.tenant,
            r.status,
            r.text()
        );
        for (labels, samples) in spec {
            self.want
                .entry(label_map(&labels))
                .or_default()
                .extend(samples.iter().map(|&(t, v)| (t, v.to_bits())));
        }
    }

    /// Requests per block range.
    fn per_range(&self) -> usize {
        (RANGE_MS / 1000) as usize / self.per_req
    }
}

/// Blocks a head holding `[base, max_ts]` must have been cut into by now.
fn cuts_due(base: i64, max_ts: i64) -> usize {
    let d = max_ts - base;
    let mut n = 0;
    while (n as i64 + 1) * RANGE_MS + RANGE_MS / 2 < d {
        n += 1;
    }
    n
}

/// Writes requests `from..to` of every writer (interleaved), waiting after each round for the
/// local blocks the data calls for.
fn write_rounds(aio: &mut Aio, writers: &mut [Writer], from: usize, to: usize) {
    for k in from..to {
        for w in writers.iter_mut() {
            w.send(&aio.rw, k);
        }
        for w in writers.iter() {
            let due = cuts_due(w.base, w.ts(k, w.per_req - 1));
            let tdir = aio.data.join(w.tenant);
            let ok = poll(Duration::from_secs(20), Duration::from_millis(10), || {
                (block_dirs(&tdir).len() >= due).then_some(())
            });
            assert!(
                ok.is_some(),
                "{}: {due} blocks due after request {k}, have {:?}\n{}",
                w.tenant,
                block_dirs(&tdir),
                aio.proc.logs()
            );
        }
    }
}

/// Every local block of every tenant: (tenant, ULID).
fn local_blocks(data: &Path, tenants: &[&str]) -> BTreeSet<(String, String)> {
    tenants
        .iter()
        .flat_map(|t| {
            block_dirs(&data.join(t))
                .into_iter()
                .map(|u| (t.to_string(), u))
        })
        .collect()
}

/// The keys every block in `blocks` must have in the bucket, with the local file each must equal
/// (`None` for meta.json, which gets Thanos' upload fields); every local file but `tombstones`.
fn expected_keys(
    data: &Path,
    blocks: &BTreeSet<(String, String)>,
) -> BTreeMap<String, Option<PathBuf>> {
    let mut out = BTreeMap::new();
    for (tenant, u) in blocks {
        let local = data.join(tenant).join(u);
        // Like Thanos, the shipper does not upload tombstones.
        for f in files_under(&local)
            .into_iter()
            .filter(|f| f != "tombstones")
        {
            let key = format!("{PREFIX}/{u}/{f}");
            out.insert(key, (f != "meta.json").then(|| local.join(&f)));
        }
    }
    out
}

/// Downloads every key under the prefix into `dir` (`<ULID>/...`), with an empty `wal/` beside.
fn download(moto: &Moto, dir: &Path) -> Vec<String> {
    let keys = moto.list(BUCKET, &format!("{PREFIX}/"));
    for (key, size) in &keys {
        let rel = key.strip_prefix(&format!("{PREFIX}/")).unwrap();
        let bytes = moto.get_raw(BUCKET, key);
        assert_eq!(bytes.len() as u64, *size, "{key}: size vs listing");
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    std::fs::create_dir_all(dir.join("wal")).unwrap();
    block_dirs(dir)
}

#[test]
fn all_in_one_ships_blocks_to_s3_and_promtool_reads_them() {
    let t0 = Instant::now();
    let tmp = test_dir("s3-e2e");
    let dir = tmp.path();
    let moto = Moto::start(&dir.join("logs"));
    moto.create_bucket(BUCKET);
    let mut aio = Aio::start(dir, &s3_config(&moto.addr, ""));
    let base = (now_ms() - 3 * 3_600_000) / RANGE_MS * RANGE_MS;
    let mut writers = vec![
        Writer::new("team-s3", "s3_e2e_a", 120, base),
        Writer::new("team-other", "s3_e2e_b", 30, base),
    ];
    let tenants = ["team-s3", "team-other"];

    // Four and a half ranges: three blocks cut (and shipped) while running, the rest at SIGTERM.
    let n = writers[0].per_range() * 9 / 2;
    write_rounds(&mut aio, &mut writers, 0, n);
    let cut = local_blocks(&aio.data, &tenants);
    assert_eq!(cut.len(), 6, "blocks cut while running: {cut:?}");
    let running = poll(Duration::from_secs(60), Duration::from_millis(200), || {
        let keys = moto.list(BUCKET, &format!("{PREFIX}/"));
        cut.iter()
            .all(|(_, u)| keys.contains_key(&format!("{PREFIX}/{u}/meta.json")))
            .then_some(keys.len())
    });
    assert!(
        running.is_some(),
        "blocks cut while running not uploaded within 60 s: {:?}\n{}",
        moto.list(BUCKET, &format!("{PREFIX}/")),
        aio.proc.logs()
    );
    eprintln!(
        "{} blocks in S3 while running after {:?}",
        cut.len(),
        t0.elapsed()
    );

    aio.stop();
    let blocks = local_blocks(&aio.data, &tenants);
    assert_eq!(blocks.len(), 10, "local blocks after SIGTERM: {blocks:?}");

    // Exactly the local blocks' files under the prefix, each the same bytes.
    let keys = moto.list(BUCKET, "");
    let want_keys = expected_keys(&aio.data, &blocks);
    assert_eq!(
        keys.keys().collect::<Vec<_>>(),
        want_keys.keys().collect::<Vec<_>>(),
        "keys in the bucket vs the files of the local blocks"
    );
    for (tenant, u) in &blocks {
        for f in ["chunks/000001", "index", "meta.json"] {
            assert!(
                keys.contains_key(&format!("{PREFIX}/{u}/{f}")),
                "{tenant} block {u}: {f} missing in S3"
            );
        }
    }
    for (key, local) in &want_keys {
        if let Some(local) = local {
            assert_eq!(
                moto.get_raw(BUCKET, key),
                std::fs::read(local).unwrap(),
                "{key} differs from {}",
                local.display()
            );
        }
    }
    for t in tenants {
        let state: BTreeSet<String> = shipper_state(&aio.data.join(t)).into_iter().collect();
        let local: BTreeSet<String> = block_dirs(&aio.data.join(t)).into_iter().collect();
        assert_eq!(state, local, "{t}: thanos.shipper.json vs local blocks");
    }

    // promtool reads the copy from S3.
    let dl = dir.join("download");
    let ulids = download(&moto, &dl);
    assert_eq!(ulids.len(), blocks.len());
    let dl_str = dl.to_str().unwrap();
    let listing = promtool(&["tsdb", "list", dl_str]);
    for u in &ulids {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dl.join(u).join("meta.json")).unwrap()).unwrap();
        let tenant = meta["thanos"]["labels"]["tenant_id"].as_str().unwrap();
        assert!(tenants.contains(&tenant), "{u}: tenant_id {tenant}");
        assert!(meta["thanos"]["upload_time"].is_string(), "{u}: {meta}");
        let row: Vec<&str> = listing
            .lines()
            .find(|l| l.starts_with(u.as_str()))
            .unwrap_or_else(|| panic!("{u} not listed:\n{listing}"))
            .split_whitespace()
            .collect();
        assert_eq!(
            row[4],
            meta["stats"]["numSamples"].to_string(),
            "{u} samples:\n{listing}"
        );
        assert_eq!(
            row[6],
            meta["stats"]["numSeries"].to_string(),
            "{u} series:\n{listing}"
        );
        let analyze = promtool(&["tsdb", "analyze", dl_str, u]);
        assert!(
            analyze.contains(&format!("Block ID: {u}")),
            "{u}: analyze:\n{analyze}"
        );
        assert!(
            analyze.contains(&format!("Series: {}", meta["stats"]["numSeries"])),
            "{u}: analyze:\n{analyze}"
        );
    }
    let dump = promtool_dump(&dl, i64::MIN / 2, i64::MAX / 2);
    let mut want: BTreeMap<Labels, Samples> = BTreeMap::new();
    for w in &writers {
        want.extend(w.want.clone());
    }
    let mut got: BTreeMap<Labels, Vec<(i64, String, f64)>> = BTreeMap::new();
    for d in dump {
        got.entry(d.labels)
            .or_default()
            .push((d.ts, d.value_str, d.value));
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "series dumped by promtool vs written"
    );
    let mut compared = 0;
    for (labels, ws) in &want {
        let gs = &got[labels];
        let gts: Vec<i64> = gs.iter().map(|g| g.0).collect();
        let wts: Vec<i64> = ws.iter().map(|w| w.0).collect();
        assert_eq!(gts, wts, "{labels:?}: timestamps dumped vs written");
        for ((ts, s, v), (_, bits)) in gs.iter().zip(ws) {
            let sent = f64::from_bits(*bits);
            if s == "NaN" {
                assert!(sent.is_nan(), "{labels:?}@{ts}: dumped NaN, sent {sent}");
            } else {
                assert_eq!(
                    v.to_bits(),
                    *bits,
                    "{labels:?}@{ts}: dumped {s}, sent {sent} ({bits:#x})"
                );
            }
            compared += 1;
        }
    }
    eprintln!(
        "S3 end to end: {} blocks, {} keys, {compared} samples dumped by promtool equal to the \
         acknowledged ones; {:?}",
        blocks.len(),
        keys.len(),
        t0.elapsed()
    );
}

#[test]
fn bad_objstore_config_stops_all_in_one_at_start() {
    let tmp = test_dir("s3-bad-config");
    let dir = tmp.path();
    let cases: [(&str, Option<&str>, &[&str]); 5] = [
        (
            "unknown field",
            Some(&*s3_config("127.0.0.1:9", "  bucket_lookup_typo: path\n")),
            &["bucket_lookup_typo"],
        ),
        (
            "missing bucket",
            Some("type: S3\nconfig:\n  endpoint: 127.0.0.1:9\n  insecure: true\n"),
            &["bucket", "required"],
        ),
        (
            "unknown top-level field",
            Some("type: S3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:9\nprefixx: a\n"),
            &["prefixx"],
        ),
        (
            "unsupported type",
            Some("type: FTP\nconfig:\n  bucket: b\n"),
            &["FTP"],
        ),
        (
            "missing file",
            None,
            &["objstore.config-file", "missing.yml"],
        ),
    ];
    for (what, yaml, needles) in cases {
        let config = match yaml {
            Some(y) => {
                let p = dir.join(format!("{}.yml", what.replace(' ', "-")));
                std::fs::write(&p, y).unwrap();
                p
            }
            None => dir.join("missing.yml"),
        };
        let data = dir.join(format!("data-{}", what.replace(' ', "-")));
        let args = [
            "all-in-one".to_string(),
            format!("--remote-write.address={}", free_addr()),
            format!("--http-address={}", free_addr()),
            format!("--grpc-address={}", free_addr()),
            format!("--tsdb.path={}", data.display()),
            format!("--objstore.config-file={}", config.display()),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_to_exit(
            ringest_bin(),
            &args,
            b"",
            Some(dir),
            Duration::from_secs(20),
        );
        assert!(!out.status.success(), "{what}: all-in-one started: {out:?}");
        for n in needles {
            assert!(
                out.stderr.contains(n),
                "{what}: stderr does not name {n:?}:\n{}",
                out.stderr
            );
        }
        eprintln!(
            "{what}: exit {}: {}",
            out.status,
            out.stderr.lines().last().unwrap_or_default()
        );
    }
}

#[test]
fn blocks_cut_while_s3_is_down_arrive_once_it_is_up() {
    let t0 = Instant::now();
    let tmp = test_dir("s3-down");
    let dir = tmp.path();
    let port = free_port();
    let endpoint = format!("127.0.0.1:{port}");
    // One retry inside the client: a failed upload shows as a failed sync at once.
    let mut aio = Aio::start(dir, &s3_config(&endpoint, "  max_retries: 1\n"));
    let base = (now_ms() - 3 * 3_600_000) / RANGE_MS * RANGE_MS;
    let mut writers = vec![Writer::new("team-down", "s3_down", 80, base)];
    let n = writers[0].per_range() * 7 / 2;
    write_rounds(&mut aio, &mut writers, 0, n);
    let cut = local_blocks(&aio.data, &["team-down"]);
    assert_eq!(cut.len(), 2, "{cut:?}");
    let (failures, ok) = wait_metric(
        &aio.http,
        "ringest_shipper_upload_failures_total",
        &["tenant=\"team-down\""],
        Duration::from_secs(30),
        |v| v >= 2.0,
    );
    assert!(
        ok,
        "not two failed syncs (first try, retry after backoff) counted with S3 down: {failures:?}\n{}",
        aio.proc.logs()
    );
    eprintln!(
        "S3 down: {failures:?} failed syncs after {:?}",
        t0.elapsed()
    );

    let up = Instant::now();
    let moto = Moto::start_on(port, &dir.join("logs"));
    moto.create_bucket(BUCKET);
    let arrived = poll(Duration::from_secs(60), Duration::from_millis(200), || {
        let keys = moto.try_list(BUCKET, &format!("{PREFIX}/")).ok()?;
        cut.iter()
            .all(|(_, u)| keys.contains_key(&format!("{PREFIX}/{u}/meta.json")))
            .then_some(())
    });
    assert!(
        arrived.is_some(),
        "blocks not uploaded within 60 s of S3 coming up\n{}",
        aio.proc.logs()
    );
    let failures_after = scrape_metric(
        &aio.http,
        "ringest_shipper_upload_failures_total",
        &["tenant=\"team-down\""],
    );
    eprintln!(
        "S3 up: blocks arrived {:?} after moto started; {failures_after:?} failed syncs in all",
        up.elapsed()
    );

    // More data, a clean stop: everything in S3, nothing lost, nothing twice.
    let more = n + writers[0].per_range();
    write_rounds(&mut aio, &mut writers, n, more);
    aio.stop();
    let blocks = local_blocks(&aio.data, &["team-down"]);
    let keys = moto.list(BUCKET, "");
    let want_keys = expected_keys(&aio.data, &blocks);
    assert_eq!(
        keys.keys().collect::<Vec<_>>(),
        want_keys.keys().collect::<Vec<_>>(),
        "keys in the bucket vs the files of the local blocks"
    );
    let state: BTreeSet<String> = shipper_state(&aio.data.join("team-down"))
        .into_iter()
        .collect();
    let local: BTreeSet<String> = blocks.iter().map(|(_, u)| u.clone()).collect();
    assert_eq!(state, local, "thanos.shipper.json vs local blocks");
    let dl = dir.join("download");
    download(&moto, &dl);
    let read: Vec<ReadBlock> = block_dirs(&dl)
        .iter()
        .map(|u| read_block(&dl.join(u)))
        .collect();
    let refs: Vec<&ReadBlock> = read.iter().collect();
    assert_no_overlap("S3 copy", &refs);
    let got = union_no_duplicates("S3 copy", &refs);
    let mut want = writers[0].want.clone();
    for s in want.values_mut() {
        s.sort();
    }
    assert_same_bits("S3 copy vs acknowledged samples", &want, &got);
    eprintln!(
        "S3 down then up: {} blocks, {} samples all in S3 exactly once; {:?}",
        read.len(),
        read.iter().map(ReadBlock::num_samples).sum::<usize>(),
        t0.elapsed()
    );
}
