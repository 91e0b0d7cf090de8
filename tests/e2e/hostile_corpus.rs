//! A corpus of hostile remote-write requests driven against a real `ringest all-in-one`, then against
//! a router (RF 1) in front of a `ringest ingest`, plus malformed `thanos.WriteableStore/RemoteWrite`
//! bodies on the gRPC ports and oversized bodies against an all-in-one started with small limits.
//!
//! Every case is one row of a table: a request, the status it must get (HTTP or gRPC) and words
//! its message must contain. Between cases a valid write must be answered 2xx. Each case's payload
//! uses its own metric name, which is read back after the case: a refused request must have stored
//! nothing, a partial or conflicting one exactly its valid samples, an accepted edge case (NaN,
//! stale marker, odd label names, 100 KB values) its samples bit for bit. Before the corpus a set
//! of valid series is written; at the end everything acknowledged is read back and must be
//! unchanged bit for bit, `/-/ready` must be 200, the processes alive, and the data directories
//! must hold no directory a path-trick tenant could have made.
//!
//! Expected answers follow README.md "Status codes" (400 malformed or invalid, 409 conflicts,
//! 413 too large, 415 unsupported media) and the remote-write 2.0 specification (label names and
//! values are any UTF-8; unsorted labels, NaN, the stale marker and unknown metadata types are
//! accepted). Cases listed in [`KNOWN_PRODUCT_BUGS`] fail because the product answers wrongly;
//! they are reported loudly but do not fail the run unless `RINGEST_HOSTILE_STRICT` is set, and
//! the run fails as soon as one of them passes (so the list is kept honest).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringest::grpc::PeerClient;
use testkit::prelude::*;
use tonic::Code;

use crate::support::ringest_bin;
use cases::{bits, corpus, one_series, thanos_write, v1_tenant};

mod cases;

/// Product bugs this corpus found: (case name, words of the problem the check reports; empty for
/// every problem of the case). Each case expects the right answer and fails on it; a listed
/// problem is reported as KNOWN instead of failing the run, any other problem of the case still
/// fails it. Remove an entry once the product is fixed (the run fails while a listed one passes).
const KNOWN_PRODUCT_BUGS: &[(&str, &str)] = &[
    // None open. Fixed: through a router, a 409 whose request was partly stored said
    // X-Prometheus-Remote-Write-Samples-Written: 0 (peers now list the series they refused).
];

/// A label as (name, value).
type Pair<'a> = (&'a str, &'a str);

const V2_CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
const DEFAULT_TENANT: &str = "default-tenant";
/// `--remote-write.max-body-bytes` of the small-limit all-in-one.
const SMALL_BODY: usize = 4096;
/// `--remote-write.max-decompressed-bytes` of the small-limit all-in-one.
const SMALL_DECOMPRESSED: usize = 32768;
/// Every answer must come within this (a hang is a failure).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const STALE: u64 = STALE_NAN_BITS;
/// An error message names the problem in a few lines, whatever the request (100 KB values, 10^5
/// bad series).
const MAX_MESSAGE_BYTES: usize = 2048;

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/// How a case's request is sent.
enum Send {
    /// An HTTP request to `/api/v1/receive` of the remote-write listener.
    Http {
        method: &'static str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Bytes written as they are on a fresh connection to the remote-write listener.
    Raw(Vec<u8>),
    /// A `thanos.WriteableStore/RemoteWrite` body to the gRPC listener.
    Grpc(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Http(u16),
    Grpc(Code),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// The all-in-one with default limits, or the router in front of an ingestor.
    Main,
    /// The all-in-one with `--remote-write.max-body-bytes={SMALL_BODY}`.
    Small,
}

struct Case {
    group: &'static str,
    name: String,
    server: Server,
    send: Send,
    want: Want,
    /// Words the answer's message must contain (case-insensitive).
    msg: Vec<String>,
    /// Expected `X-Prometheus-Remote-Write-Samples-Written`, when checked.
    written: Option<u64>,
    /// The metric name of this case's payload: read back after the case in `tenants`.
    metric: Option<String>,
    /// Tenants to read `metric` from (always includes the default tenant).
    tenants: Vec<String>,
    /// What must be stored under `metric` afterwards, per tenant.
    stores: Vec<(String, Labels, Samples)>,
    /// Counts toward the malformed corpus (false for valid edge cases that must be accepted).
    malformed: bool,
}

impl Case {
    fn new(group: &'static str, name: &str, send: Send, want: Want, msg: &[&str]) -> Case {
        Case {
            group,
            name: format!("{group}/{name}"),
            server: Server::Main,
            send,
            want,
            msg: msg.iter().map(|s| s.to_lowercase()).collect(),
            written: None,
            metric: None,
            tenants: vec![DEFAULT_TENANT.to_string()],
            stores: Vec::new(),
            malformed: true,
        }
    }

    /// A 2xx case: a valid edge the product must accept.
    fn accepted(group: &'static str, name: &str, send: Send) -> Case {
        let mut c = Case::new(group, name, send, Want::Http(204), &[]);
        c.malformed = false;
        c
    }

    fn metric(mut self, m: &str) -> Self {
        self.metric = Some(m.to_string());
        self
    }

    fn tenant(mut self, t: &str) -> Self {
        self.tenants.push(t.to_string());
        self
    }

    fn written(mut self, n: u64) -> Self {
        self.written = Some(n);
        self
    }

    fn small(mut self) -> Self {
        self.server = Server::Small;
        self
    }

    /// `labels` (any order) must be stored in `tenant` with exactly `samples` (value bits).
    fn stores(mut self, tenant: &str, labels: &[(&str, &str)], samples: &[(i64, u64)]) -> Self {
        self.stores
            .push((tenant.to_string(), label_map(labels), samples.to_vec()));
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

/// Where a run sends its cases.
struct Target {
    name: &'static str,
    /// Remote-write listener.
    rw: String,
    /// HTTP listeners to read back from (all must agree).
    reads: Vec<String>,
    /// gRPC listener of the storing process.
    grpc: String,
    /// The process answering remote write (for its peak RSS).
    pid: u32,
}

/// The answer a case got.
struct Outcome {
    target: &'static str,
    case: String,
    got: String,
    message: String,
    problems: Vec<String>,
}

type Store = BTreeMap<String, BTreeMap<Labels, Samples>>;

fn add(store: &mut Store, tenant: &str, labels: Labels, samples: Samples) {
    let s = store
        .entry(tenant.to_string())
        .or_default()
        .entry(labels)
        .or_default();
    s.extend(samples);
    s.sort_unstable();
    s.dedup();
}

fn read_tenant(addr: &str, tenant: &str) -> Result<BTreeMap<Labels, Samples>, String> {
    let t = (tenant != DEFAULT_TENANT).then_some(tenant);
    read_all(addr, t, i64::MIN, i64::MAX)
}

struct Runner {
    rt: tokio::runtime::Runtime,
    outcomes: Vec<Outcome>,
    probe: u64,
}

impl Runner {
    fn send(&self, t: &Target, send: &Send) -> Result<(String, String, Option<u64>), String> {
        match send {
            Send::Http {
                method,
                headers,
                body,
            } => {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let r = http_request(method, &t.rw, "/api/v1/receive", &h, body, REQUEST_TIMEOUT)
                    .map_err(|e| e.to_string())?;
                Ok(http_outcome(&r))
            }
            Send::Raw(bytes) => {
                let r = http_raw(&t.rw, bytes, REQUEST_TIMEOUT).map_err(|e| e.to_string())?;
                Ok(http_outcome(&r))
            }
            Send::Grpc(body) => {
                let _runtime = self.rt.enter();
                let client = PeerClient::new(&t.grpc, REQUEST_TIMEOUT, 64 << 20, None)
                    .map_err(|e| e.to_string())?;
                let r = self
                    .rt
                    .block_on(client.remote_write(Bytes::from(body.clone()), REQUEST_TIMEOUT));
                Ok(match r {
                    Ok(()) => ("Ok".to_string(), String::new(), None),
                    Err(s) => (format!("{:?}", s.code()), s.message().to_string(), None),
                })
            }
        }
    }

    /// A valid write after a case: it must be answered 2xx (HTTP, and gRPC after gRPC cases).
    fn probe(&mut self, t: &Target, after: &str, grpc: bool, store: &mut Store) -> Vec<String> {
        let mut problems = Vec::new();
        self.probe += 1;
        let ts = now_ms();
        let value = self.probe as f64;
        let labels = [("__name__", "hostile_alive"), ("after", after)];
        let r = http_request(
            "POST",
            &t.rw,
            "/api/v1/receive",
            &WRITE_HEADERS,
            &snappy(&one_series(&labels, &[(ts, value)])),
            REQUEST_TIMEOUT,
        );
        match r {
            Ok(r) if r.is_2xx() => add(
                store,
                DEFAULT_TENANT,
                label_map(&labels),
                vec![(ts, value.to_bits())],
            ),
            Ok(r) => problems.push(format!(
                "valid write afterwards: {} {}",
                r.status,
                r.text().trim()
            )),
            Err(e) => problems.push(format!("valid write afterwards: {e}")),
        }
        if grpc {
            let labels = [("__name__", "hostile_alive_grpc"), ("after", after)];
            let body = thanos_write(
                &[pb_series(
                    &labels.map(|(k, v)| (k.as_bytes(), v.as_bytes())),
                    &[(ts, value)],
                )],
                b"team-grpc",
            );
            match self.send(t, &Send::Grpc(body)) {
                Ok((got, _, _)) if got == "Ok" => add(
                    store,
                    "team-grpc",
                    label_map(&labels),
                    vec![(ts, value.to_bits())],
                ),
                Ok((got, msg, _)) => {
                    problems.push(format!("valid gRPC write afterwards: {got} {msg}"))
                }
                Err(e) => problems.push(format!("valid gRPC write afterwards: {e}")),
            }
        }
        problems
    }

    fn run(&mut self, t: &Target, cases: &[&Case], store: &mut Store) {
        for case in cases {
            let started = Instant::now();
            let rss_before = peak_rss_kib(t.pid);
            let result = self.send(t, &case.send);
            let elapsed = started.elapsed();
            let mut problems = Vec::new();
            let (got, message) = match result {
                Err(e) => {
                    problems.push(format!("no answer: {e}"));
                    (format!("error after {elapsed:?}"), e)
                }
                Ok((got, message, written)) => {
                    let want = match case.want {
                        Want::Http(s) => s.to_string(),
                        Want::Grpc(c) => format!("{c:?}"),
                    };
                    if got != want {
                        problems.push(format!("expected {want}, got {got}"));
                    }
                    let lower = message.to_lowercase();
                    let missing: Vec<&String> = case
                        .msg
                        .iter()
                        .filter(|w| !lower.contains(w.as_str()))
                        .collect();
                    if !missing.is_empty() {
                        problems.push(format!("message does not contain {missing:?}"));
                    }
                    if message.len() > MAX_MESSAGE_BYTES {
                        problems.push(format!(
                            "message of {} bytes (more than {MAX_MESSAGE_BYTES})",
                            message.len()
                        ));
                    }
                    if let (Some(want), Want::Http(_)) = (case.written, case.want) {
                        if written != Some(want) {
                            problems.push(format!(
                                "X-Prometheus-Remote-Write-Samples-Written: expected {want}, got {written:?}"
                            ));
                        }
                    }
                    (got, message)
                }
            };
            if case.name == "bomb/100MB-of-zeros" {
                let after = peak_rss_kib(t.pid);
                if let (Some(b), Some(a)) = (rss_before, after) {
                    eprintln!("[corpus] {}: peak RSS {b} KiB -> {a} KiB", t.name);
                    if a > b + 48 * 1024 {
                        problems.push(format!(
                            "peak RSS grew by {} KiB: the bomb was decompressed",
                            a - b
                        ));
                    }
                }
            }
            // What the case's payload left behind, per tenant.
            if let Some(metric) = &case.metric {
                for tenant in &case.tenants {
                    let mut want: BTreeMap<Labels, Samples> = BTreeMap::new();
                    for (tn, l, s) in &case.stores {
                        if tn == tenant {
                            want.insert(l.clone(), s.clone());
                        }
                    }
                    for read in &t.reads {
                        match read_tenant(read, tenant) {
                            Ok(mut got) => {
                                got.retain(|l, _| l.get("__name__") == Some(metric));
                                let diff = sample_differences(&want, &got, 4);
                                if !diff.is_empty() {
                                    problems.push(format!(
                                        "stored in {tenant} (read from {read}): {}",
                                        diff.join("; ")
                                    ));
                                }
                                if read == &t.reads[0] {
                                    for (l, s) in got {
                                        add(store, tenant, l, s);
                                    }
                                }
                            }
                            Err(e) => problems.push(format!("read back of {tenant}: {e}")),
                        }
                    }
                }
            }
            let grpc = matches!(case.send, Send::Grpc(_));
            problems.extend(self.probe(t, &case.name, grpc, store));
            self.outcomes.push(Outcome {
                target: t.name,
                case: case.name.clone(),
                got,
                message,
                problems,
            });
        }
    }
}

fn http_outcome(r: &Response) -> (String, String, Option<u64>) {
    let written = r
        .header("X-Prometheus-Remote-Write-Samples-Written")
        .and_then(|v| v.parse().ok());
    (r.status.to_string(), r.text().trim().to_string(), written)
}

/// The valid data written before the corpus: special values, unsorted labels, two tenants.
fn write_baseline(t: &Target, base: i64, store: &mut Store) {
    for tenant in [DEFAULT_TENANT, "team-a"] {
        let mut series = Vec::new();
        for i in 0..20 {
            let labels = [
                ("job", "baseline"),
                ("__name__", "hostile_baseline"),
                ("i", &i.to_string()),
                ("zone", "é€"),
            ];
            let samples: Vec<(i64, f64)> = (0..30)
                .map(|k| {
                    let ts = base - 60_000 + k * 1000;
                    let v = match (i + k) % 7 {
                        0 => f64::from_bits(STALE),
                        1 => -0.0,
                        2 => f64::INFINITY,
                        3 => f64::from_bits(GO_NAN_BITS),
                        4 => 1e-310,
                        _ => (i * 100 + k) as f64 * 0.25,
                    };
                    (ts, v)
                })
                .collect();
            series.push(pb_series(
                &labels.map(|(k, v)| (k.as_bytes(), v.as_bytes())),
                &samples,
            ));
            add(store, tenant, label_map(&labels), bits(&samples));
        }
        let send = v1_tenant(tenant, &pb_write_request(&series));
        let Send::Http { headers, body, .. } = send else {
            unreachable!()
        };
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = post_raw(&t.rw, "/api/v1/receive", &h, &body);
        assert!(
            r.is_2xx(),
            "{}: baseline write for {tenant}: {} {}",
            t.name,
            r.status,
            r.text()
        );
    }
}

/// Everything acknowledged reads back unchanged, from every read address.
fn verify_store(t: &Target, store: &Store) -> Vec<String> {
    let mut problems = Vec::new();
    for (tenant, want) in store {
        for read in &t.reads {
            match read_tenant(read, tenant) {
                Ok(got) => {
                    let diff = sample_differences(want, &got, 8);
                    if !diff.is_empty() {
                        problems.push(format!(
                            "{}: tenant {tenant} read from {read} differs from what was acknowledged:\n    {}",
                            t.name,
                            diff.join("\n    ")
                        ));
                    }
                }
                Err(e) => problems.push(format!("{}: read of {tenant} from {read}: {e}", t.name)),
            }
        }
    }
    problems
}

/// Tenant directories under a `--tsdb.path`, and anything that is not one of `allowed`.
fn unexpected_dirs(tsdb: &Path, allowed: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(tsdb).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if !allowed.contains(&name) {
            out.push(name);
        }
    }
    out
}

fn start_all_in_one(
    name: &str,
    dir: &Path,
    extra: &[String],
) -> (Proc, Target, std::path::PathBuf) {
    let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
    let data = dir.join(format!("{name}-data"));
    let mut args = server_args("all-in-one", &rw, &http, &grpc);
    args.push(format!("--tsdb.path={}", data.display()));
    args.extend(extra.iter().cloned());
    let mut proc = Proc::spawn(name, ringest_bin(), &args, &dir.join("logs"));
    wait_http_ok(&http, "/-/ready", Duration::from_secs(60), Some(&mut proc));
    let pid = proc.pid().unwrap();
    (
        proc,
        Target {
            name: "all-in-one",
            rw,
            reads: vec![http],
            grpc,
            pid,
        },
        data,
    )
}

#[test]
fn payloads_are_what_they_claim() {
    let base = 1_700_000_000_000;
    let cases = corpus(base);
    let malformed = cases.iter().filter(|c| c.malformed).count();
    assert!(malformed >= 50, "only {malformed} malformed cases");
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "case names must be unique");
    for (name, _) in KNOWN_PRODUCT_BUGS {
        assert!(names.contains(name), "known bug {name} is not a case");
    }
    for c in &cases {
        let Send::Http { body, headers, .. } = &c.send else {
            continue;
        };
        let is_snappy = headers
            .iter()
            .any(|(k, v)| k == "Content-Encoding" && v.eq_ignore_ascii_case("snappy"));
        let decoded = snap::raw::Decoder::new().decompress_vec(body);
        match (c.group, is_snappy) {
            ("snappy", _) => assert!(decoded.is_err(), "{}: is valid snappy", c.name),
            ("protobuf" | "utf8", true) if !headers.iter().any(|(_, v)| v == V2_CONTENT_TYPE) => {
                let raw = decoded.unwrap_or_else(|e| panic!("{}: snappy: {e}", c.name));
                assert!(
                    <proto::prompb::WriteRequest as prost::Message>::decode(raw.as_slice())
                        .is_err(),
                    "{}: prost decodes it",
                    c.name
                );
            }
            _ => {}
        }
    }
}

#[test]
fn hostile_corpus_gets_precise_answers_and_touches_no_acknowledged_data() {
    let t0 = Instant::now();
    let tmp = test_dir("hostile-corpus");
    let dir = tmp.path();
    let base = now_ms() - 30_000;
    let cases = corpus(base);
    let malformed = cases.iter().filter(|c| c.malformed).count();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = Runner {
        rt,
        outcomes: Vec::new(),
        probe: 0,
    };
    let main_cases: Vec<&Case> = cases.iter().filter(|c| c.server == Server::Main).collect();
    let small_cases: Vec<&Case> = cases.iter().filter(|c| c.server == Server::Small).collect();
    let mut end_problems = Vec::new();

    // 1. The all-in-one with default limits: every main case, HTTP and gRPC.
    let (mut aio, aio_t, aio_data) = start_all_in_one("all-in-one", dir, &[]);
    let mut aio_store = Store::new();
    write_baseline(&aio_t, base, &mut aio_store);
    runner.run(&aio_t, &main_cases, &mut aio_store);

    // Clients stalled mid-body do not keep others from writing.
    let stalled: Vec<std::net::TcpStream> = (0..32)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&aio_t.rw).unwrap();
            c.write_all(
                b"POST /api/v1/receive HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n0123456789",
            )
            .unwrap();
            c
        })
        .collect();
    end_problems.extend(
        runner
            .probe(&aio_t, "32-stalled-clients", true, &mut aio_store)
            .into_iter()
            .map(|p| format!("all-in-one with 32 clients stalled mid-body: {p}")),
    );
    drop(stalled);

    // 2. The all-in-one with small limits: body sizes.
    let (mut small, small_t, _) = start_all_in_one(
        "all-in-one-small",
        dir,
        &[
            format!("--remote-write.max-body-bytes={SMALL_BODY}"),
            format!("--remote-write.max-decompressed-bytes={SMALL_DECOMPRESSED}"),
        ],
    );
    let mut small_store = Store::new();
    runner.run(&small_t, &small_cases, &mut small_store);

    // 3. A router (RF 1) in front of an ingestor: every main case again, gRPC to the ingestor.
    let mut ing = Ingestor::start(&ringest_bin(), "ingest", dir, &[]);
    let mut router = Router::start(&ringest_bin(), "router", dir, &[&ing.grpc], 1, &[]);
    let routed_t = Target {
        name: "router+ingest",
        rw: router.rw.clone(),
        reads: vec![router.http.clone(), ing.http.clone()],
        grpc: ing.grpc.clone(),
        pid: router.proc.pid().unwrap(),
    };
    let mut routed_store = Store::new();
    write_baseline(&routed_t, base, &mut routed_store);
    runner.run(&routed_t, &main_cases, &mut routed_store);

    // Everything acknowledged is unchanged; everyone is alive and ready.
    end_problems.extend(verify_store(&aio_t, &aio_store));
    end_problems.extend(verify_store(&small_t, &small_store));
    end_problems.extend(verify_store(&routed_t, &routed_store));
    for (name, addr) in [
        ("all-in-one", &aio_t.reads[0]),
        ("all-in-one-small", &small_t.reads[0]),
        ("router", &router.http),
        ("ingest", &ing.http),
    ] {
        match http_get(addr, "/-/ready") {
            Ok(r) if r.status == 200 => {}
            Ok(r) => end_problems.push(format!("{name} /-/ready: {} {}", r.status, r.text())),
            Err(e) => end_problems.push(format!("{name} /-/ready: {e}")),
        }
    }
    aio.assert_running();
    small.assert_running();
    ing.proc.assert_running();
    router.proc.assert_running();

    // No directory but the tenants written to (a path trick would have made one).
    let tenants = |store: &Store, extra: &[&str]| -> BTreeSet<String> {
        store
            .keys()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let mut allowed = tenants(&aio_store, &["_bucket"]);
    // A tenant's TSDB may be created by a write that is then refused (as in Thanos).
    allowed.extend(cases.iter().flat_map(|c| c.tenants.iter().cloned()));
    allowed.extend(tenants(&routed_store, &[]));
    for (what, tsdb) in [("all-in-one", &aio_data), ("ingest", &ing.data)] {
        let extra = unexpected_dirs(tsdb, &allowed);
        if !extra.is_empty() {
            end_problems.push(format!(
                "{what}: unexpected entries under --tsdb.path: {extra:?}"
            ));
        }
    }
    for stray in ["x", "a", "b"] {
        if dir.join(stray).exists() {
            end_problems.push(format!("{stray} was created next to the data directories"));
        }
    }

    // Summary.
    let strict = std::env::var_os("RINGEST_HOSTILE_STRICT").is_some();
    let mut unexpected = Vec::new();
    let mut known_failed = BTreeSet::new();
    eprintln!(
        "\n{:<14} {:<44} {:<16} {:<6} message",
        "target", "case", "answer", "result"
    );
    for o in &runner.outcomes {
        let is_known = |p: &String| {
            KNOWN_PRODUCT_BUGS
                .iter()
                .any(|(case, words)| *case == o.case && p.contains(words))
        };
        let (known, other): (Vec<&String>, Vec<&String>) =
            o.problems.iter().partition(|p| is_known(p));
        let result = match (known.is_empty(), other.is_empty()) {
            (true, true) => "ok",
            (false, true) => "KNOWN",
            (_, false) => "FAIL",
        };
        let short: String = o.message.replace('\n', " ").chars().take(80).collect();
        eprintln!(
            "{:<14} {:<44} {:<16} {:<6} {short}",
            o.target, o.case, o.got, result
        );
        for p in &known {
            known_failed.insert(o.case.clone());
            eprintln!("    KNOWN PRODUCT BUG: {p}");
        }
        if !other.is_empty() {
            let line = format!(
                "{} {}: {}",
                o.target,
                o.case,
                other
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            eprintln!("    FAIL: {line}");
            unexpected.push(line);
        }
    }
    eprintln!(
        "\n{} cases ({malformed} malformed, {} valid edges) x targets = {} requests in {:?}",
        cases.len(),
        cases.len() - malformed,
        runner.outcomes.len(),
        t0.elapsed()
    );
    let fixed: Vec<&str> = KNOWN_PRODUCT_BUGS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !known_failed.contains(*n))
        .collect();
    let mut failures = unexpected;
    failures.extend(end_problems);
    if !fixed.is_empty() {
        failures.push(format!(
            "listed in KNOWN_PRODUCT_BUGS but passing now (remove them): {fixed:?}"
        ));
    }
    if strict && !known_failed.is_empty() {
        failures.push(format!(
            "known product bugs (strict mode): {known_failed:?}"
        ));
    }
    assert!(malformed >= 50, "only {malformed} malformed cases");
    assert!(
        failures.is_empty(),
        "{} problems:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
