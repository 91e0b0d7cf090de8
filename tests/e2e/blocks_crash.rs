//! Crash safety of block cutting and shipping in `ringest all-in-one` (local FILESYSTEM bucket
//! `<tsdb.path>/_bucket`, `--tsdb.block-duration=1m`):
//!
//! - one test per failpoint (`RINGEST_FAILPOINTS`): Ringest aborts exactly after a block is renamed
//!   into place (head and WAL not truncated), after a WAL checkpoint is written (old segments not
//!   deleted), after a block's chunks and index are uploaded (meta.json not), and after meta.json
//!   is uploaded (`thanos.shipper.json` not updated). The test checks the state the crash left,
//!   restarts without the failpoint, re-sends the request that failed, writes on, reads everything
//!   back, and stops with SIGTERM;
//! - a random-kill round: three writers on two tenants, SIGKILLed at seeded random moments eight
//!   times, every failed request retried until acknowledged.
//!
//! Afterwards, every time: every acknowledged sample is in exactly one bucket block, bit for bit,
//! and nothing else is; blocks of a tenant do not overlap; every bucket block is complete
//! (meta.json, index, chunks) and consistent with its meta.json; `thanos.shipper.json` lists
//! exactly the tenant's bucket blocks, which are exactly its local blocks; no `.tmp-for-creation`
//! is left; remote read after each restart returns every acknowledged sample.
//!
//! A damaged local block (a flipped chunk byte found on read, a truncated index found at start)
//! is quarantined, not served; reads and writes go on, and the bucket's copy keeps its samples
//! (a WAL replay bringing an uploaded, quarantined block's range back was a bug this found).
//!
//! Two tests pin bugs these tests found: a kill in the middle of an upload must not leave
//! object_store staging files (`<file>#<n>`) in the FILESYSTEM bucket for good (the shipper now
//! removes them before re-uploading the block), and Ringest's block reader must not take such a
//! stray file in `chunks/` for a segment (it now reads numbered files only, as Prometheus).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{
    assert_no_overlap, encode_write_exact, read_block, ringest_bin, union_no_duplicates, ReadBlock,
    SeriesSpec,
};
use testkit::prelude::*;

/// The block range the tests run with, and its flag.
const RANGE_MS: i64 = 60_000;
const BLOCK_DURATION: &str = "1m";
/// SIGABRT: what `std::process::abort` (a failpoint) ends the process with.
const SIGABRT: i32 = 6;

// ---------------------------------------------------------------------------------------------
// The process
// ---------------------------------------------------------------------------------------------

/// `ringest all-in-one` with a local bucket, restartable with or without a failpoint armed.
struct Aio {
    proc: Proc,
    /// Earlier processes, kept so that their logs are printed if the test fails.
    past: Vec<Proc>,
    exit: Option<ExitStatus>,
    args: Vec<String>,
    logs: PathBuf,
    rw: String,
    http: String,
    data: PathBuf,
    starts: usize,
}

impl Aio {
    fn start(dir: &Path, failpoint: Option<&str>) -> Aio {
        let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
        let data = dir.join("data");
        let mut args = server_args("all-in-one", &rw, &http, &grpc);
        args.extend([
            format!("--tsdb.path={}", data.display()),
            format!("--tsdb.block-duration={BLOCK_DURATION}"),
        ]);
        let logs = dir.join("logs");
        let proc = Aio::spawn(&args, &logs, 1, failpoint);
        let mut aio = Aio {
            proc,
            past: Vec::new(),
            exit: None,
            args,
            logs,
            rw,
            http,
            data,
            starts: 1,
        };
        aio.wait_ready();
        aio
    }

    fn spawn(args: &[String], logs: &Path, n: usize, failpoint: Option<&str>) -> Proc {
        match failpoint {
            Some(fp) => spawn_with_env(
                &format!("ringest-{n}-{fp}"),
                &[("RINGEST_FAILPOINTS", fp)],
                ringest_bin(),
                args,
                logs,
            ),
            None => Proc::spawn(&format!("ringest-{n}"), ringest_bin(), args, logs),
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

    /// Starts a new process (no failpoint) on the same addresses and data; the old one must have
    /// exited.
    fn restart_clean(&mut self) {
        assert!(self.proc.pid().is_none(), "restart of a running process");
        self.starts += 1;
        let proc = Aio::spawn(&self.args, &self.logs, self.starts, None);
        self.past.push(std::mem::replace(&mut self.proc, proc));
        self.exit = None;
        self.wait_ready();
    }

    /// Whether the process has exited (its status kept in `self.exit`).
    fn has_exited(&mut self) -> bool {
        if self.exit.is_none() {
            self.exit = self.proc.exited();
        }
        self.exit.is_some()
    }

    fn all_logs(&self) -> String {
        self.past
            .iter()
            .chain(std::iter::once(&self.proc))
            .map(Proc::stderr_text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGTERM: must exit 0 within 60 s (flush, upload).
    fn stop(&mut self) {
        let status = self.proc.terminate(Duration::from_secs(60));
        assert!(
            status.is_some_and(|s| s.success()),
            "all-in-one did not exit 0 within 60 s of SIGTERM: {status:?}\n{}",
            self.proc.logs()
        );
        self.exit = status;
    }
}

// ---------------------------------------------------------------------------------------------
// Synthetic data
// ---------------------------------------------------------------------------------------------

/// A series of a request: labels in sending order, (timestamp, value) samples.
type OwnedSeries = (Vec<(String, String)>, Vec<(i64, f64)>);

/// Request `k` of one writer: every one of its `series` series gets `per_req` samples, `step` ms
/// apart, request after request in time order from `base`.
#[derive(Clone)]
struct Synth {
    tenant: String,
    writer: usize,
    series: usize,
    per_req: usize,
    step: i64,
    base: i64,
}

impl Synth {
    fn ts(&self, k: usize, j: usize) -> i64 {
        self.base + (k * self.per_req + j) as i64 * self.step
    }

    fn last_ts(&self, k: usize) -> i64 {
        self.ts(k, self.per_req - 1)
    }

    /// The value of series `i` at its `n`th sample: mostly ordinary numbers, some stale markers,
    /// negative zeros and infinities.
    fn value(&self, i: usize, n: usize) -> f64 {
        match (i * 7 + n * 3 + self.writer) % 53 {
            0 => f64::from_bits(STALE_NAN_BITS),
            1 => -0.0,
            2 => f64::INFINITY,
            _ => i as f64 * 0.001 + n as f64 * 1.5 - 1000.0,
        }
    }

    fn labels(&self, i: usize) -> Vec<(String, String)> {
        vec![
            ("__name__".into(), "crash_test_samples".into()),
            ("writer".into(), self.writer.to_string()),
            ("series".into(), i.to_string()),
            ("pad".into(), format!("{i:0>24}")),
        ]
    }

    fn request(&self, k: usize) -> Vec<OwnedSeries> {
        (0..self.series)
            .map(|i| {
                let samples = (0..self.per_req)
                    .map(|j| (self.ts(k, j), self.value(i, k * self.per_req + j)))
                    .collect();
                (self.labels(i), samples)
            })
            .collect()
    }

    fn body(&self, k: usize) -> Vec<u8> {
        let req = self.request(k);
        let spec: Vec<SeriesSpec<'_>> = req
            .iter()
            .map(|(l, s)| {
                (
                    l.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect(),
                    s.clone(),
                )
            })
            .collect();
        encode_write_exact(&spec)
    }

    fn send(&self, rw: &str, k: usize) -> std::io::Result<Response> {
        let mut headers = WRITE_HEADERS.to_vec();
        headers.push(("THANOS-TENANT", &self.tenant));
        http_request(
            "POST",
            rw,
            "/api/v1/receive",
            &headers,
            &self.body(k),
            Duration::from_secs(20),
        )
    }

    /// Adds the samples of request `k` to `want`.
    fn acknowledged(&self, k: usize, want: &mut BTreeMap<Labels, Samples>) {
        for (l, s) in self.request(k) {
            want.entry(l.into_iter().collect())
                .or_default()
                .extend(s.iter().map(|&(t, v)| (t, v.to_bits())));
        }
    }
}

/// Whether the answer to a re-sent request says its samples are all stored already: 2xx, or a
/// 409 whose only rejections are out-of-order samples (a re-sent request whose samples were
/// persisted before the crash: every one but the newest of a series is then older than the
/// series' newest sample, which Prometheus rejects as out of order).
fn stored_already(r: &Response) -> bool {
    let t = r.text();
    r.is_2xx()
        || (r.status == 409
            && t.contains("out of order")
            && t.contains("duplicate 0,")
            && t.contains("out of bounds 0,")
            && t.contains("too far in the future 0)"))
}

/// A block-range-aligned start `hours` in the past (well within the 15 d retention).
fn aligned_base(hours: i64) -> i64 {
    (now_ms() - hours * 3_600_000) / RANGE_MS * RANGE_MS
}

/// How many blocks a head holding `[base, max_ts]` must have been cut into by now: a head is
/// cut while it spans more than 1.5 ranges, one range at a time.
fn cuts_due(base: i64, max_ts: i64) -> usize {
    let d = max_ts - base;
    let mut n = 0;
    while (n as i64 + 1) * RANGE_MS + RANGE_MS / 2 < d {
        n += 1;
    }
    n
}

/// Every sample of `tenant` readable through remote read.
fn read_tenant(aio: &Aio, tenant: &str, base: i64) -> BTreeMap<Labels, Samples> {
    read_all(&aio.http, Some(tenant), base - 1, now_ms() + 3_600_000)
        .unwrap_or_else(|e| panic!("remote read of {tenant}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The invariants
// ---------------------------------------------------------------------------------------------

/// What [`check_bucket`] found, per tenant: blocks and samples.
#[derive(Debug, Default)]
struct BucketReport {
    blocks: BTreeMap<String, Vec<ReadBlock>>,
    /// Staging files of object_store's FILESYSTEM store (`<file>#<n>`, written then renamed
    /// over `<file>`) that a crash in the middle of a put left behind, `<ULID>/<path>`. Readers
    /// ignore them (Prometheus reads numbered segments only, Thanos the files of meta.json), so
    /// the data invariants do not count them; [`kill_mid_upload_leaves_no_staging_files`] does.
    staging_leftovers: Vec<String>,
}

/// Whether `file` is an object_store staging file (`<name>#<digits>`).
fn is_staging_file(file: &str) -> bool {
    file.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks the local bucket `<data>/_bucket` and the tenant directories after a clean stop against
/// `want` (tenant -> every acknowledged sample). See the module docs for what is checked.
fn check_bucket(data: &Path, want: &BTreeMap<String, BTreeMap<Labels, Samples>>) -> BucketReport {
    let bucket = data.join("_bucket");
    let mut report = BucketReport::default();
    let mut entries: Vec<String> = std::fs::read_dir(&bucket)
        .unwrap_or_else(|e| panic!("{}: {e}", bucket.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    for name in &entries {
        let bdir = bucket.join(name);
        assert!(
            is_ulid(name) && bdir.is_dir(),
            "bucket holds {name:?}, which is not a block directory (entries: {entries:?})"
        );
        // Complete: meta.json, index and consecutive chunk segments from 000001, nothing else
        // (but staging files, reported).
        let (staging, files): (Vec<String>, Vec<String>) = files_under(&bdir)
            .into_iter()
            .partition(|f| is_staging_file(f));
        report
            .staging_leftovers
            .extend(staging.iter().map(|f| format!("{name}/{f}")));
        let segments: Vec<&String> = files.iter().filter(|f| f.starts_with("chunks/")).collect();
        let mut expect: Vec<String> = (1..=segments.len().max(1))
            .map(|i| format!("chunks/{i:06}"))
            .collect();
        expect.push("index".into());
        expect.push("meta.json".into());
        expect.sort();
        assert_eq!(
            files, expect,
            "bucket block {name} is not a complete block (a partial upload left behind?)"
        );
        // Ringest's chunk reader takes every file in chunks/ for a segment (Prometheus only
        // numbered ones): read a copy without the staging files.
        let scratch = tempfile::tempdir().unwrap();
        let b = if staging.is_empty() {
            read_block(&bdir)
        } else {
            let copy = scratch.path().join(name);
            for f in &files {
                let to = copy.join(f);
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(bdir.join(f), to).unwrap();
            }
            read_block(&copy)
        };
        // meta.json agrees with the data and with the files next to it.
        let meta = &b.meta;
        assert_eq!(meta["ulid"], name.as_str(), "{name}: meta.json ulid");
        assert_eq!(meta["compaction"]["level"], 1, "{name}: level: {meta}");
        assert_eq!(meta["thanos"]["source"], "receive", "{name}: {meta}");
        assert_eq!(
            meta["stats"]["numSamples"].as_u64(),
            Some(b.num_samples() as u64),
            "{name}: numSamples in meta.json vs samples in the block"
        );
        assert_eq!(
            meta["stats"]["numSeries"].as_u64(),
            Some(b.samples.len() as u64),
            "{name}: numSeries"
        );
        assert!(b.num_samples() > 0, "{name}: an empty block was shipped");
        let listed: BTreeMap<String, Option<u64>> = meta["thanos"]["files"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: meta.json has no thanos.files: {meta}"))
            .iter()
            .map(|f| {
                (
                    f["rel_path"].as_str().unwrap().to_string(),
                    f["size_bytes"].as_u64(),
                )
            })
            .collect();
        for f in &files {
            assert!(listed.contains_key(f), "{name}: {f} not in thanos.files");
            if f != "meta.json" {
                let len = std::fs::metadata(bdir.join(f)).unwrap().len();
                assert_eq!(listed[f], Some(len), "{name}: size of {f} in thanos.files");
            }
        }
        assert_eq!(listed.len(), files.len(), "{name}: thanos.files {listed:?}");
        assert!(
            want.contains_key(&b.tenant),
            "{name}: block of unexpected tenant {:?} (labels {})",
            b.tenant,
            meta["thanos"]["labels"]
        );
        report.blocks.entry(b.tenant.clone()).or_default().push(b);
    }
    for (tenant, want) in want {
        let blocks: Vec<&ReadBlock> = report
            .blocks
            .get(tenant)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let what = format!("tenant {tenant}");
        assert_no_overlap(&what, &blocks);
        let got = union_no_duplicates(&what, &blocks);
        assert_same_bits(
            &format!("{what}: the bucket's blocks hold exactly the acknowledged samples"),
            want,
            &got,
        );
        let in_bucket: BTreeSet<String> = blocks.iter().map(|b| b.ulid.clone()).collect();
        let tdir = data.join(tenant);
        let state = shipper_state(&tdir);
        let state_set: BTreeSet<String> = state.iter().cloned().collect();
        assert_eq!(
            state.len(),
            state_set.len(),
            "{what}: {state:?} has repeats"
        );
        assert_eq!(
            state_set, in_bucket,
            "{what}: thanos.shipper.json vs the tenant's blocks in the bucket"
        );
        let local: BTreeSet<String> = block_dirs(&tdir).into_iter().collect();
        assert_eq!(
            local, in_bucket,
            "{what}: local blocks vs the tenant's blocks in the bucket"
        );
        let leftovers: Vec<String> = std::fs::read_dir(&tdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-for-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{what}: leftovers in {}: {leftovers:?}",
            tdir.display()
        );
    }
    report
}

// ---------------------------------------------------------------------------------------------
// One failpoint
// ---------------------------------------------------------------------------------------------

/// What the crash left on disk, for the checks after the restart.
#[derive(Default)]
struct CrashState {
    /// The block whose upload the crash interrupted (ship.* failpoints).
    block: Option<String>,
    /// Its meta.json as uploaded before the crash (ship.after_meta).
    uploaded_meta: Option<Vec<u8>>,
}

fn wal_entries(tdir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(tdir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Asserts the state a failpoint crash left behind; returns what later checks need.
fn check_crash_state(fp: &str, aio: &Aio, tdir: &Path) -> CrashState {
    let bucket = aio.data.join("_bucket");
    let local = block_dirs(tdir);
    let wal = wal_entries(tdir);
    let in_bucket = block_dirs(&bucket);
    let state = shipper_state(tdir);
    let summary = format!(
        "local blocks {local:?}, wal {wal:?}, bucket {in_bucket:?}, shipper state {state:?}"
    );
    eprintln!("[{fp}] after the crash: {summary}");
    let mut cs = CrashState::default();
    match fp {
        "cut.after_block_write" => {
            assert_eq!(local.len(), 1, "{fp}: {summary}");
            assert!(
                !wal.iter().any(|w| w.starts_with("checkpoint.")),
                "{fp}: the WAL was checkpointed: {summary}"
            );
            assert!(in_bucket.is_empty(), "{fp}: {summary}");
        }
        "cut.after_wal_checkpoint" => {
            assert!(
                wal.iter().any(|w| w.starts_with("checkpoint.")),
                "{fp}: no checkpoint: {summary}"
            );
            assert!(
                wal.iter().any(|w| w == "00000000"),
                "{fp}: the checkpointed segments are gone already: {summary}"
            );
        }
        "ship.before_meta" => {
            assert_eq!(in_bucket.len(), 1, "{fp}: {summary}");
            let u = &in_bucket[0];
            assert_eq!(
                files_under(&bucket.join(u)),
                ["chunks/000001", "index"],
                "{fp}: the partial upload of {u}"
            );
            assert!(!state.contains(u), "{fp}: {summary}");
            cs.block = Some(u.clone());
        }
        "ship.after_meta" => {
            assert_eq!(in_bucket.len(), 1, "{fp}: {summary}");
            let u = &in_bucket[0];
            assert_eq!(
                files_under(&bucket.join(u)),
                ["chunks/000001", "index", "meta.json"],
                "{fp}: the upload of {u}"
            );
            assert!(!state.contains(u), "{fp}: recorded already: {summary}");
            cs.uploaded_meta = Some(std::fs::read(bucket.join(u).join("meta.json")).unwrap());
            cs.block = Some(u.clone());
        }
        other => panic!("unknown failpoint {other}"),
    }
    cs
}

/// Sends requests `from..to` in order, recording the acknowledged ones, and after each one waits
/// (20 s at most) for the blocks the data calls for. Returns the first request that failed at the
/// transport level (the process died), or `None` if all were acknowledged.
fn write_until_death(
    aio: &mut Aio,
    synth: &Synth,
    from: usize,
    to: usize,
    want: &mut BTreeMap<Labels, Samples>,
) -> Option<usize> {
    let tdir = aio.data.join(&synth.tenant);
    for k in from..to {
        match synth.send(&aio.rw, k) {
            Ok(r) if r.is_2xx() => synth.acknowledged(k, want),
            Ok(r) => panic!(
                "request {k}: {} {}\n{}",
                r.status,
                r.text(),
                aio.proc.logs()
            ),
            Err(e) => {
                eprintln!("request {k} failed: {e}");
                return Some(k);
            }
        }
        let due = cuts_due(synth.base, synth.last_ts(k));
        let cut = poll(Duration::from_secs(20), Duration::from_millis(10), || {
            (block_dirs(&tdir).len() >= due || aio.has_exited()).then_some(())
        });
        assert!(
            cut.is_some(),
            "{due} blocks due after request {k}, local blocks: {:?}\n{}",
            block_dirs(&tdir),
            aio.proc.logs()
        );
    }
    None
}

fn failpoint_round(fp: &str) {
    let t0 = Instant::now();
    let tmp = test_dir(&format!("crash-{fp}"));
    let mut aio = Aio::start(tmp.path(), Some(fp));
    let synth = Synth {
        tenant: "crash".into(),
        writer: 0,
        series: 300,
        per_req: 5,
        step: 1000,
        base: aligned_base(3),
    };
    let tdir = aio.data.join(&synth.tenant);
    let mut want = BTreeMap::new();

    // Write until the failpoint aborts the process (the 3rd cut checkpoints the WAL: ~4 ranges).
    const MAX_REQUESTS: usize = 150;
    let failed = write_until_death(&mut aio, &synth, 0, MAX_REQUESTS, &mut want);
    let Some(failed) = failed else {
        panic!(
            "failpoint {fp} never hit in {MAX_REQUESTS} requests ({} blocks)\n{}",
            block_dirs(&tdir).len(),
            aio.proc.logs()
        );
    };
    let status = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        aio.has_exited().then_some(())
    })
    .and(aio.exit)
    .unwrap_or_else(|| {
        panic!(
            "request {failed} failed but the process still runs\n{}",
            aio.proc.logs()
        )
    });
    assert_eq!(
        exit_signal(&status),
        Some(SIGABRT),
        "{fp}: expected an abort, got {status}\n{}",
        aio.proc.logs()
    );
    let hit = format!("failpoint {fp} hit");
    assert!(
        aio.proc.stderr_text().contains(&hit),
        "{fp}: the log does not say {hit:?}\n{}",
        aio.proc.logs()
    );
    let crash = check_crash_state(fp, &aio, &tdir);

    // Restart without the failpoint; the request that failed is sent again (as a remote-write
    // client retries), then two more ranges of data.
    aio.restart_clean();
    let r = synth.send(&aio.rw, failed).expect("re-send after restart");
    assert!(
        stored_already(&r),
        "re-sent request {failed}: {} {}",
        r.status,
        r.text()
    );
    eprintln!("[{fp}] re-sent request {failed}: {} {}", r.status, r.text());
    synth.acknowledged(failed, &mut want);
    let more = failed + 1 + 2 * (RANGE_MS / (synth.per_req as i64 * synth.step)) as usize;
    assert_eq!(
        write_until_death(&mut aio, &synth, failed + 1, more, &mut want),
        None,
        "{fp}: the restarted process died\n{}",
        aio.proc.logs()
    );
    for s in want.values_mut() {
        s.sort();
    }
    assert_same_bits(
        &format!("{fp}: remote read after the restart"),
        &want,
        &read_tenant(&aio, &synth.tenant, synth.base),
    );

    aio.stop();
    let report = check_bucket(&aio.data, &BTreeMap::from([(synth.tenant.clone(), want)]));
    let blocks = &report.blocks[&synth.tenant];

    let logs = aio.all_logs();
    match fp {
        "ship.before_meta" => {
            let u = crash.block.unwrap();
            assert!(
                blocks.iter().any(|b| b.ulid == u),
                "{fp}: the partially uploaded block {u} is not in the bucket after the restart"
            );
        }
        "ship.after_meta" => {
            let u = crash.block.unwrap();
            let meta = std::fs::read(aio.data.join("_bucket").join(&u).join("meta.json")).unwrap();
            assert_eq!(
                Some(meta),
                crash.uploaded_meta,
                "{fp}: {u} was uploaded again after the restart (meta.json changed)"
            );
            assert!(
                logs.contains("already in the bucket"),
                "{fp}: no log line says {u} was found in the bucket"
            );
        }
        _ => {}
    }
    eprintln!(
        "[{fp}] aborted at request {failed}; {} blocks in the bucket, {} samples, all acknowledged \
         samples exactly once; {:?}",
        blocks.len(),
        blocks.iter().map(ReadBlock::num_samples).sum::<usize>(),
        t0.elapsed()
    );
}

#[test]
fn crash_after_block_write_before_head_truncation() {
    failpoint_round("cut.after_block_write");
}

#[test]
fn crash_after_wal_checkpoint_before_segment_deletion() {
    failpoint_round("cut.after_wal_checkpoint");
}

#[test]
fn crash_after_chunks_and_index_uploaded_before_meta() {
    failpoint_round("ship.before_meta");
}

#[test]
fn crash_after_meta_uploaded_before_shipper_state() {
    failpoint_round("ship.after_meta");
}

// ---------------------------------------------------------------------------------------------
// Random SIGKILLs
// ---------------------------------------------------------------------------------------------

/// Writer threads that send their requests in order as fast as the pace allows, each request
/// again and again until acknowledged (the process may be dead, restarting or replaying).
struct Writers {
    synths: Vec<Synth>,
    handles: Vec<thread::JoinHandle<Result<usize, String>>>,
    progress: Arc<Vec<AtomicUsize>>,
    stop: Arc<AtomicBool>,
    retries: Arc<AtomicUsize>,
    conflicts: Arc<AtomicUsize>,
}

impl Writers {
    /// A writer sends request k only once every writer has had request k - `lag` - 1
    /// acknowledged (so that all writes stay inside the appendable window, half a range), no
    /// sooner than `interval` × k after the start, and never more than 5 minutes into the future.
    fn spawn(synths: &[Synth], rw: &str, lag: usize, interval: Duration) -> Writers {
        let progress: Arc<Vec<AtomicUsize>> =
            Arc::new((0..synths.len()).map(|_| AtomicUsize::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let retries = Arc::new(AtomicUsize::new(0));
        let conflicts = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let handles = synths
            .iter()
            .cloned()
            .enumerate()
            .map(|(w, s)| {
                let (progress, stop, retries, conflicts, rw) = (
                    progress.clone(),
                    stop.clone(),
                    retries.clone(),
                    conflicts.clone(),
                    rw.to_string(),
                );
                thread::spawn(move || -> Result<usize, String> {
                    let mut k = 0usize;
                    'requests: loop {
                        loop {
                            if stop.load(Ordering::Relaxed) {
                                break 'requests;
                            }
                            let slowest = progress
                                .iter()
                                .map(|p| p.load(Ordering::Acquire))
                                .min()
                                .unwrap();
                            if slowest + lag >= k
                                && started.elapsed() >= interval * k as u32
                                && s.last_ts(k) < now_ms() + 300_000
                            {
                                break;
                            }
                            thread::sleep(Duration::from_millis(1));
                        }
                        let mut failing_since: Option<Instant> = None;
                        loop {
                            let err = match s.send(&rw, k) {
                                Ok(r) if r.is_2xx() => break,
                                Ok(r) if failing_since.is_some() && stored_already(&r) => {
                                    conflicts.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                                Ok(r) if r.status >= 500 => format!("{} {}", r.status, r.text()),
                                Ok(r) => {
                                    return Err(format!(
                                        "writer {w} request {k}: {} {}",
                                        r.status,
                                        r.text()
                                    ))
                                }
                                Err(e) => e.to_string(),
                            };
                            retries.fetch_add(1, Ordering::Relaxed);
                            let since = *failing_since.get_or_insert_with(Instant::now);
                            if since.elapsed() > Duration::from_secs(60) {
                                return Err(format!(
                                    "writer {w} request {k}: failing for 60 s: {err}"
                                ));
                            }
                            thread::sleep(Duration::from_millis(25));
                        }
                        k += 1;
                        progress[w].store(k, Ordering::Release);
                    }
                    Ok(k)
                })
            })
            .collect();
        Writers {
            synths: synths.to_vec(),
            handles,
            progress,
            stop,
            retries,
            conflicts,
        }
    }

    fn acked(&self) -> Vec<usize> {
        self.progress
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .collect()
    }

    /// Stops the writers; returns every acknowledged sample per tenant and the number of
    /// acknowledged requests per writer.
    fn finish(self) -> (BTreeMap<String, BTreeMap<Labels, Samples>>, Vec<usize>) {
        self.stop.store(true, Ordering::Relaxed);
        let acked: Vec<usize> = self
            .handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let mut want: BTreeMap<String, BTreeMap<Labels, Samples>> = BTreeMap::new();
        for (s, &n) in self.synths.iter().zip(&acked) {
            let m = want.entry(s.tenant.clone()).or_default();
            for k in 0..n {
                s.acknowledged(k, m);
            }
        }
        for m in want.values_mut() {
            for s in m.values_mut() {
                s.sort();
            }
        }
        (want, acked)
    }
}

/// Whether any tenant directory holds a block being written.
fn cut_in_progress(data: &Path, tenants: &[&str]) -> bool {
    tenants.iter().any(|t| {
        std::fs::read_dir(data.join(t)).is_ok_and(|rd| {
            rd.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .ends_with(".tmp-for-creation")
            })
        })
    })
}

/// Whether the local bucket holds a block without meta.json (an upload under way).
fn upload_in_progress(data: &Path) -> bool {
    let bucket = data.join("_bucket");
    block_dirs(&bucket)
        .iter()
        .any(|u| !bucket.join(u).join("meta.json").exists())
}

/// What a SIGKILL left behind: blocks being written, several checkpoints, partial uploads.
fn interrupted_work(data: &Path, tenants: &[&str]) -> Vec<String> {
    let mut seen = Vec::new();
    for tenant in tenants {
        let tdir = data.join(tenant);
        let Ok(rd) = std::fs::read_dir(&tdir) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.contains(".tmp-for-") {
                seen.push(format!("{tenant}/{n}"));
            }
        }
        let cps = wal_entries(&tdir)
            .iter()
            .filter(|w| w.starts_with("checkpoint."))
            .count();
        if cps > 1 {
            seen.push(format!("{tenant}: {cps} checkpoints"));
        }
    }
    let bucket = data.join("_bucket");
    for u in block_dirs(&bucket) {
        if !bucket.join(&u).join("meta.json").exists() {
            seen.push(format!(
                "partial upload {u}: {:?}",
                files_under(&bucket.join(&u))
            ));
        }
    }
    seen
}

#[test]
fn random_sigkills_with_concurrent_writers() {
    const SERIES: usize = 700;
    const ROUNDS: usize = 8;
    /// Pace of the data: block ranges per second of real time (12 requests per range).
    const RANGES_PER_SEC: u32 = 6;
    const TENANTS: [&str; 2] = ["alpha", "beta"];
    let t0 = Instant::now();
    let seed: u64 = std::env::var("RINGEST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0de);
    eprintln!("random kills: seed {seed} (RINGEST_CRASH_SEED)");
    let mut rng = SplitMix64(seed);
    let tmp = test_dir("crash-random");
    let mut aio = Aio::start(tmp.path(), None);
    let base = aligned_base(6);
    // Writers 0 and 1 write tenant alpha, writer 2 tenant beta.
    let synths: Vec<Synth> = (0..3)
        .map(|w| Synth {
            tenant: TENANTS[w / 2].into(),
            writer: w,
            series: SERIES,
            per_req: 1,
            step: 5000,
            base,
        })
        .collect();
    let interval =
        Duration::from_secs(1) * synths[0].step as u32 / (RANGE_MS as u32 * RANGES_PER_SEC);
    let writers = Writers::spawn(&synths, &aio.rw, 2, interval);

    let mut observed = Vec::new();
    for round in 0..ROUNDS {
        let wait = Duration::from_millis(rng.range(500, 3000));
        thread::sleep(wait);
        // Every third round kills as soon as a block is being written, and every third as soon
        // as an upload is under way (within 3 s; else wherever it is then).
        let target = ["anything", "a cut", "an upload"][round % 3];
        let hit = poll(Duration::from_secs(3), Duration::ZERO, || {
            match round % 3 {
                1 => cut_in_progress(&aio.data, &TENANTS),
                2 => upload_in_progress(&aio.data),
                _ => true,
            }
            .then_some(())
        });
        assert!(!aio.has_exited(), "round {round}: the process died");
        aio.proc.kill9();
        let seen = interrupted_work(&aio.data, &TENANTS);
        eprintln!(
            "round {round}: SIGKILL after {wait:?} aiming at {target} ({}), requests acknowledged {:?}, left behind: {seen:?}",
            if hit.is_some() { "found" } else { "not found in 3 s" },
            writers.acked()
        );
        observed.extend(seen);
        aio.restart_clean();
    }
    thread::sleep(Duration::from_secs(1));
    let (retries, conflicts) = (writers.retries.clone(), writers.conflicts.clone());
    let (want, acked) = writers.finish();
    for (tenant, w) in &want {
        assert_same_bits(
            &format!("{tenant}: remote read after {ROUNDS} SIGKILLs"),
            w,
            &read_tenant(&aio, tenant, base),
        );
    }
    aio.stop();
    let report = check_bucket(&aio.data, &want);

    // Once more from the blocks alone (the WAL was emptied by the flush).
    aio.restart_clean();
    for (tenant, w) in &want {
        assert_same_bits(
            &format!("{tenant}: remote read after SIGTERM and a restart"),
            w,
            &read_tenant(&aio, tenant, base),
        );
    }
    // The head is empty now, but what the blocks cover stays closed: a sample there (new series,
    // else well inside the 10 min future window) is refused, so no block overlapping them can
    // be cut later.
    let newest = report.blocks["alpha"]
        .iter()
        .map(|b| b.max_time)
        .max()
        .unwrap();
    let late = Synth {
        tenant: "alpha".into(),
        writer: 99,
        series: 1,
        per_req: 1,
        step: 1,
        base: newest - 1,
    };
    let r = late.send(&aio.rw, 0).unwrap();
    assert!(
        !r.is_2xx() && r.text().contains("out of bounds"),
        "a sample at {} (inside the newest block, which ends at {newest}) after a restart: {} {}",
        newest - 1,
        r.status,
        r.text()
    );
    assert_same_bits(
        "alpha after the refused late sample",
        &want["alpha"],
        &read_tenant(&aio, "alpha", base),
    );
    aio.stop();
    assert_eq!(
        block_dirs(&aio.data.join("alpha")).len(),
        report.blocks["alpha"].len(),
        "a block was cut from the refused late sample"
    );
    let cut_lines = aio.all_logs().matches("cut block").count();
    eprintln!(
        "random kills: {ROUNDS} SIGKILLs, requests acknowledged per writer {acked:?} ({} retries, \
         {} re-sent requests found stored already), {} samples; blocks per tenant {:?} \
         ({cut_lines} cuts logged); interrupted: {observed:?}; staging files left in the bucket: \
         {:?}; {:?}",
        retries.load(Ordering::Relaxed),
        conflicts.load(Ordering::Relaxed),
        want.values()
            .flat_map(|m| m.values())
            .map(Vec::len)
            .sum::<usize>(),
        report
            .blocks
            .iter()
            .map(|(t, b)| (t.clone(), b.len()))
            .collect::<Vec<_>>(),
        report.staging_leftovers,
        t0.elapsed()
    );
    // Every block interrupted mid-upload was uploaded again after the restart, which clears the
    // staging files the kill left.
    assert!(
        report.staging_leftovers.is_empty(),
        "staging files left in the bucket: {:?}",
        report.staging_leftovers
    );
}

/// A SIGKILL while a file is being put into the FILESYSTEM bucket leaves object_store's staging
/// file (`<ULID>/chunks/000001#1`, `<ULID>/index#1`) behind: the upload after the restart stages
/// under the next free name (`#2`) and renames it over the object, so something else must remove
/// the orphan, or every crash mid-upload leaks up to a whole file into the bucket, and tools that
/// copy a block directory by listing it (Thanos' `DownloadDir`, bucket replication) carry it
/// along.
#[test]
fn kill_mid_upload_leaves_no_staging_files() {
    const TENANTS: [&str; 1] = ["staging"];
    let tmp = test_dir("crash-staging");
    let mut aio = Aio::start(tmp.path(), None);
    let base = aligned_base(3);
    let synths = vec![Synth {
        tenant: TENANTS[0].into(),
        writer: 0,
        series: 4000,
        per_req: 1,
        step: 5000,
        base,
    }];
    let writers = Writers::spawn(&synths, &aio.rw, 0, Duration::ZERO);
    let bucket = aio.data.join("_bucket");
    // Kill the moment a staging file shows up in the bucket.
    let caught = poll(Duration::from_secs(30), Duration::ZERO, || {
        files_under(&bucket)
            .into_iter()
            .find(|f| is_staging_file(f))
    });
    aio.proc.kill9();
    let Some(staged) = caught else {
        panic!(
            "no upload caught in the act in 30 s ({:?} requests acknowledged)",
            writers.acked()
        );
    };
    eprintln!("SIGKILL while {staged} was being written");
    aio.restart_clean();
    thread::sleep(Duration::from_secs(2));
    let (want, _) = writers.finish();
    aio.stop();
    let report = check_bucket(&aio.data, &want);
    assert!(
        report.staging_leftovers.is_empty(),
        "staging files left in the bucket after the restart and a clean stop: {:?}",
        report.staging_leftovers
    );
}

/// Prometheus reads only the numbered files of a block's `chunks/` directory as segments
/// (`sequenceFiles`); Ringest's block reader takes every file there, in name order, for a segment.
/// So a stray file, such as the staging file a kill mid-upload leaves in a FILESYSTEM bucket
/// (above), makes a block that promtool reads fine unreadable to Ringest ("segment shorter than
/// its header"), and a non-empty one would shift the segment numbers of the files after it.
#[test]
fn block_reader_ignores_files_that_are_not_segments() {
    use ringest::tsdb::block::{write_block, BlockSeries, ChunkMeta};
    use ringest::tsdb::chunkenc::XorChunk;
    use ringest::tsdb::labels::Labels as RLabels;

    let tmp = test_dir("stray-chunk-file");
    let dir = tmp.path().join("tsdb");
    std::fs::create_dir_all(dir.join("wal")).unwrap();
    let labels = RLabels::from_pairs([("__name__", "stray"), ("i", "0")]);
    let mut c = XorChunk::new();
    for j in 0..10i64 {
        c.append(RANGE_MS + j * 1000, j as f64);
    }
    let series = [BlockSeries {
        labels: &labels,
        chunks: vec![ChunkMeta {
            mint: c.first_time().unwrap(),
            maxt: c.last_time().unwrap(),
            data: c.bytes(),
        }],
    }];
    let ulid = write_block(&dir, RANGE_MS, 2 * RANGE_MS, series, None).unwrap();
    let bdir = dir.join(ulid.to_string());
    std::fs::write(bdir.join("chunks/000001#1"), b"").unwrap();
    // promtool ignores the stray file.
    let dump = promtool_dump(&dir, i64::MIN / 2, i64::MAX / 2);
    assert_eq!(dump.len(), 10, "promtool: {dump:?}");
    // Ringest should too.
    let b = read_block(&bdir);
    assert_eq!(b.num_samples(), 10);
}

/// Samples of `all` inside `[min, max)`, by series.
fn in_range(all: &BTreeMap<Labels, Samples>, min: i64, max: i64) -> BTreeMap<Labels, Samples> {
    all.iter()
        .map(|(l, s)| {
            let s: Samples = s
                .iter()
                .copied()
                .filter(|x| x.0 >= min && x.0 < max)
                .collect();
            (l.clone(), s)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

/// A damaged local block is quarantined and no longer served, whether the damage is found on
/// read (a flipped chunk byte, process running) or at open (a truncated index, after a restart):
/// remote read keeps answering from the other blocks and the head, writes keep being accepted,
/// and the uploaded copies in the bucket still hold every sample of the quarantined blocks.
#[test]
fn corrupt_local_blocks_are_quarantined_not_served() {
    const TENANT: &str = "quarantine";
    let tmp = test_dir("crash-quarantine");
    let mut aio = Aio::start(tmp.path(), None);
    let synth = Synth {
        tenant: TENANT.into(),
        writer: 0,
        series: 50,
        per_req: 1,
        step: 5000,
        base: aligned_base(1),
    };
    let mut want = BTreeMap::new();
    let mut k = 0;
    let tdir = aio.data.join(TENANT);
    let shipped = |tdir: &Path| -> Vec<String> {
        std::fs::read(tdir.join("thanos.shipper.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["uploaded"].as_array().cloned())
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Write until the head was cut into at least two blocks and both are uploaded.
    let uploaded = poll(Duration::from_secs(60), Duration::ZERO, || {
        let r = synth.send(&aio.rw, k).unwrap();
        assert!(r.is_2xx(), "write {k}: {} {}", r.status, r.text());
        synth.acknowledged(k, &mut want);
        k += 1;
        let up = shipped(&tdir);
        (up.len() >= 2).then_some(up)
    })
    .expect("two blocks cut and uploaded within 60 s");
    let blocks: Vec<ReadBlock> = uploaded.iter().map(|u| read_block(&tdir.join(u))).collect();
    assert_eq!(read_tenant(&aio, TENANT, synth.base), want);

    // Damage found on read: flip bytes in the middle of the newest block's chunk segment.
    let (newer, older) = (&blocks[1], &blocks[0]);
    let seg = tdir.join(&newer.ulid).join("chunks").join("000001");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8] {
        *b ^= 0xff;
    }
    std::fs::write(&seg, &bytes).unwrap();
    let got = read_tenant(&aio, TENANT, synth.base);
    let served_without =
        |want: &BTreeMap<Labels, Samples>, got: &BTreeMap<Labels, Samples>, gone: &[&ReadBlock]| {
            let mut expect = want.clone();
            for b in gone {
                for s in expect.values_mut() {
                    s.retain(|x| x.0 < b.min_time || x.0 >= b.max_time);
                }
            }
            expect.retain(|_, s| !s.is_empty());
            assert_same_bits(
                "served: everything but the quarantined blocks",
                &expect,
                got,
            );
        };
    served_without(&want, &got, &[newer]);
    // The read only stops serving the block; maintenance, woken by it, moves it aside.
    let moved = poll(Duration::from_secs(10), Duration::from_millis(20), || {
        tdir.join("quarantine")
            .join(&newer.ulid)
            .exists()
            .then_some(())
    });
    assert!(
        moved.is_some(),
        "not quarantined by maintenance within 10 s"
    );
    assert!(!tdir.join(&newer.ulid).exists());
    // Still serving writes.
    let r = synth.send(&aio.rw, k).unwrap();
    assert!(r.is_2xx(), "write after quarantine: {}", r.text());
    synth.acknowledged(k, &mut want);

    // Damage found at open: truncate the older block's index, then restart.
    aio.proc.kill9();
    let index = tdir.join(&older.ulid).join("index");
    let len = std::fs::metadata(&index).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    aio.restart_clean();
    served_without(
        &want,
        &read_tenant(&aio, TENANT, synth.base),
        &[newer, older],
    );
    assert!(tdir.join("quarantine").join(&older.ulid).exists());
    let logs = aio.all_logs();
    for b in [newer, older] {
        assert!(
            logs.lines()
                .any(|l| l.contains("corrupt block quarantined") && l.contains(&b.ulid)),
            "no quarantine log line for {}:\n{logs}",
            b.ulid
        );
    }

    // Nothing acknowledged is lost: the bucket still has both blocks, whole, and after a clean
    // stop (the head flushed and shipped) every acknowledged sample is in exactly one bucket
    // block: the WAL did not bring the quarantined ranges back as overlapping blocks.
    for b in [newer, older] {
        let copy = read_block(&aio.data.join("_bucket").join(&b.ulid));
        assert_same_bits(
            &format!("bucket copy of {}", b.ulid),
            &in_range(&want, b.min_time, b.max_time),
            &copy.samples,
        );
    }
    aio.stop();
    let bucket = aio.data.join("_bucket");
    let blocks: Vec<ReadBlock> = block_dirs(&bucket)
        .iter()
        .map(|u| read_block(&bucket.join(u)))
        .filter(|b| b.tenant == TENANT)
        .collect();
    assert!(blocks.len() >= 3, "{} bucket blocks", blocks.len());
    assert_no_overlap("bucket", &blocks.iter().collect::<Vec<_>>());
    let mut stored: BTreeMap<Labels, Samples> = BTreeMap::new();
    for b in &blocks {
        for (l, s) in &b.samples {
            stored.entry(l.clone()).or_default().extend(s);
        }
    }
    for s in stored.values_mut() {
        s.sort_unstable();
    }
    assert_same_bits("bucket after a clean stop", &want, &stored);
}
