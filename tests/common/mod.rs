//! Shared harness of the end-to-end tests: free loopback ports, child-process guards, a tiny blocking
//! HTTP/1.1 client, a Prometheus 2.42 launcher with helpers for its HTTP API and for `promtool tsdb dump`,
//! and Prometheus remote-read / remote-write clients built on the `proto` crate.
//!
//! Everything is bounded in time (every wait has a deadline, every socket a timeout) and talks to
//! 127.0.0.1 only.
//!
//! Environment: `RINGEST_BIN` (binary under test, default the one Cargo built), `PROMETHEUS_BIN`,
//! `PROMTOOL_BIN` (default `prometheus`, `promtool` on `$PATH`, Debian's 2.42), `RINGEST_E2E_KEEP`
//! (keep each test's directory with process logs and TSDBs). Process logs are printed when a test
//! panics.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use proto::prompb::{
    Label, LabelMatcher, MatcherType, Query, ReadRequest, ReadResponse, ResponseType, Sample,
    TimeSeries, WriteRequest,
};

/// Bits of the Prometheus stale marker (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// Bits of Go's `math.NaN()`, which Prometheus stores for a scraped `NaN`.
pub const GO_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// A label set, sorted by name.
pub type Labels = BTreeMap<String, String>;
/// Samples of one series as (timestamp ms, value bits), sorted by timestamp.
pub type Samples = Vec<(i64, u64)>;

// ---------------------------------------------------------------------------------------------
// Time, ports, paths
// ---------------------------------------------------------------------------------------------

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A Prometheus API time (`1795449137.915`) for a millisecond timestamp.
pub fn api_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// A loopback port that was free a moment ago and was never handed out before in this process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if given.insert(port) {
            return port;
        }
    }
    panic!("no free loopback port after 100 tries");
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// The binary under test: the one Cargo built for this test run, or `$RINGEST_BIN` to run the
/// end-to-end tests against another build (e.g. a release binary).
pub fn ringest_bin() -> PathBuf {
    match std::env::var_os("RINGEST_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_ringest")),
    }
}

/// The Prometheus binary (`$PROMETHEUS_BIN` or `prometheus` on `$PATH`, Debian's 2.42).
pub fn prometheus_bin() -> String {
    std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into())
}

/// The promtool binary (`$PROMTOOL_BIN` or `promtool` on `$PATH`).
pub fn promtool_bin() -> String {
    std::env::var("PROMTOOL_BIN").unwrap_or_else(|_| "promtool".into())
}

/// Runs promtool with `args` (bounded to 120 s), asserting success; returns its stdout.
pub fn promtool(args: &[&str]) -> String {
    let out = run_to_exit(promtool_bin(), args, b"", None, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "promtool {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// Polls `f` every `every` until it returns `Some` or `timeout` passed.
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(every.min(deadline.saturating_duration_since(Instant::now())));
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// A child process that is killed when dropped. Its stdout and stderr go to files under `log_dir`
/// (one pair per start); they are printed when the test panics.
pub struct Proc {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    log_dir: PathBuf,
    child: Option<Child>,
    starts: u32,
    /// Working directory of the child (`None`: the test's).
    cwd: Option<PathBuf>,
}

impl Proc {
    /// Spawns `program args`, logging under `log_dir`.
    pub fn spawn(name: &str, program: impl AsRef<Path>, args: &[String], log_dir: &Path) -> Proc {
        fs::create_dir_all(log_dir).unwrap();
        let mut p = Proc {
            name: name.to_string(),
            program: program.as_ref().to_path_buf(),
            args: args.to_vec(),
            log_dir: log_dir.to_path_buf(),
            child: None,
            starts: 0,
            cwd: None,
        };
        p.start();
        p
    }

    /// Like [`Proc::spawn`], with `cwd` as the child's working directory (for relative paths such
    /// as the default `./data`).
    pub fn spawn_in(
        name: &str,
        program: impl AsRef<Path>,
        args: &[String],
        log_dir: &Path,
        cwd: &Path,
    ) -> Proc {
        fs::create_dir_all(log_dir).unwrap();
        let mut p = Proc {
            name: name.to_string(),
            program: program.as_ref().to_path_buf(),
            args: args.to_vec(),
            log_dir: log_dir.to_path_buf(),
            child: None,
            starts: 0,
            cwd: Some(cwd.to_path_buf()),
        };
        p.start();
        p
    }

    /// Everything the child wrote to stderr so far, over all its starts.
    pub fn stderr_text(&self) -> String {
        (1..=self.starts)
            .map(|start| {
                String::from_utf8_lossy(
                    &fs::read(self.log_path(start, "stderr")).unwrap_or_default(),
                )
                .into_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn log_path(&self, start: u32, stream: &str) -> PathBuf {
        self.log_dir
            .join(format!("{}.{}.{}", self.name, start, stream))
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let out = File::create(self.log_path(self.starts, "stdout")).unwrap();
        let err = File::create(self.log_path(self.starts, "stderr")).unwrap();
        let mut cmd = Command::new(&self.program);
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        let child = cmd
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({:?}): {e}", self.name, self.program));
        eprintln!(
            "[harness] started {} pid {}: {:?} {}",
            self.name,
            child.id(),
            self.program,
            self.args.join(" ")
        );
        self.child = Some(child);
    }

    /// The process id of the running child.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The exit status if the child has exited (reaping it), `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            _ => None,
        }
    }

    /// Panics (with the logs) if the child is not running.
    pub fn assert_running(&mut self) {
        if self.child.is_none() {
            panic!("{} is not running\n{}", self.name, self.logs());
        }
        if let Some(status) = self.exited() {
            panic!("{} exited with {status}\n{}", self.name, self.logs());
        }
    }

    /// SIGKILL (`Child::kill`), then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("[harness] SIGKILLed {}", self.name);
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status if it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("[harness] {} exited after SIGTERM: {status}", self.name);
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "[harness] {} ignored SIGTERM for {grace:?}; SIGKILL",
            self.name
        );
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Starts the process again with the same program and arguments (it must be stopped).
    pub fn restart(&mut self) {
        self.start();
    }

    /// The last 16 KiB of every log of this process.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for start in 1..=self.starts {
            for stream in ["stdout", "stderr"] {
                let path = self.log_path(start, stream);
                let data = fs::read(&path).unwrap_or_default();
                let tail = &data[data.len().saturating_sub(16 * 1024)..];
                s.push_str(&format!(
                    "----- {} (start {start}) {stream}: {} -----\n{}\n",
                    self.name,
                    path.display(),
                    String::from_utf8_lossy(tail)
                ));
            }
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 client (blocking, one request per connection)
// ---------------------------------------------------------------------------------------------

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn is_2xx(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A TCP connection to `addr` (first resolved address) within `timeout`, Nagle off.
fn connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let sock: SocketAddr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("no address"))?;
    let stream = TcpStream::connect_timeout(&sock, timeout)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends one request to `addr` (`host:port`) and reads the whole response, within `timeout`.
pub fn http_request(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(addr, timeout)?;
    let left = |d: Instant| {
        d.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream.set_write_timeout(Some(left(deadline)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: ringest-e2e\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    // A server may answer (413, 415) and close before reading a large body: keep going to read it.
    let write_result = stream.write_all(&req).and_then(|_| stream.flush());
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{method} {addr}{path}: timeout"),
            ));
        }
        stream.set_read_timeout(Some(left(deadline)))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if !raw.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => {
                return Err(match write_result {
                    Err(w) => io::Error::new(
                        w.kind(),
                        format!("{method} {addr}{path}: write: {w}; read: {e}"),
                    ),
                    Ok(()) => io::Error::new(e.kind(), format!("{method} {addr}{path}: read: {e}")),
                })
            }
        }
    }
    parse_response(&raw).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{method} {addr}{path}: {e}"),
        )
    })
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no header end in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| e.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        if body.len() < len {
            return Err(format!("body truncated: {} of {len} bytes", body.len()));
        }
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line missing")?;
        let size_str = std::str::from_utf8(&data[..eol]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16)
            .map_err(|e| format!("bad chunk size {size_str:?}: {e}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("chunk truncated".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// `GET addr path` with a 10 s timeout.
pub fn http_get(addr: &str, path: &str) -> io::Result<Response> {
    http_request("GET", addr, path, &[], &[], Duration::from_secs(10))
}

/// `POST addr path` with a form body and a 60 s timeout.
pub fn http_post_form(addr: &str, path: &str, form: &[(&str, &str)]) -> io::Result<Response> {
    let body = form
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    http_request(
        "POST",
        addr,
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
        Duration::from_secs(60),
    )
}

/// Percent-encodes everything but unreserved characters.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Polls `GET addr path` until it answers 200, panicking after `timeout` (or as soon as `proc`
/// exited), with its logs.
pub fn wait_http_ok(addr: &str, path: &str, timeout: Duration, mut proc: Option<&mut Proc>) {
    let start = Instant::now();
    let mut last = String::from("no attempt");
    let ok = poll(timeout, Duration::from_millis(100), || {
        if let Some(p) = proc.as_deref_mut() {
            p.assert_running();
        }
        match http_get(addr, path) {
            Ok(r) if r.status == 200 => Some(()),
            Ok(r) => {
                last = format!("status {}: {}", r.status, r.text());
                None
            }
            Err(e) => {
                last = e.to_string();
                None
            }
        }
    });
    if ok.is_none() {
        let logs = proc.map(|p| p.logs()).unwrap_or_default();
        panic!("GET http://{addr}{path} not 200 after {timeout:?} (last: {last})\n{logs}");
    }
    eprintln!(
        "[harness] http://{addr}{path} is 200 after {:?}",
        start.elapsed()
    );
}

/// Sums every sample of metric `name` in the text exposition at `http://addr/metrics` whose line
/// contains all of `label_substrings`. `None` when no line matched.
pub fn scrape_metric(addr: &str, name: &str, label_substrings: &[&str]) -> Option<f64> {
    let r = http_get(addr, "/metrics").ok()?;
    if r.status != 200 {
        return None;
    }
    let text = r.text();
    let mut sum = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let rest = match line.strip_prefix(name) {
            Some(rest) if rest.starts_with('{') || rest.starts_with(' ') => rest,
            _ => continue,
        };
        if !label_substrings.iter().all(|s| rest.contains(s)) {
            continue;
        }
        let value = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
        *sum.get_or_insert(0.0) += value;
    }
    sum
}

// ---------------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------------

/// One series of a PromQL matrix: its labels and its raw `[time, "value"]` pairs as Prometheus
/// printed them (time in ms, value as the exact string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixSeries {
    pub labels: Labels,
    pub values: Vec<(i64, String)>,
}

/// A Prometheus server started by a test.
pub struct Prometheus {
    pub proc: Proc,
    pub addr: String,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
}

impl Prometheus {
    /// Writes `config_yaml` to `<dir>/<name>.yml` and starts Prometheus on `addr` with data under
    /// `<dir>/<name>-data`, lifecycle API on, plus `extra_args`; waits until `/-/ready`.
    pub fn start(
        name: &str,
        dir: &Path,
        addr: &str,
        config_yaml: &str,
        extra_args: &[&str],
    ) -> Prometheus {
        let config_path = dir.join(format!("{name}.yml"));
        let data_dir = dir.join(format!("{name}-data"));
        fs::write(&config_path, config_yaml).unwrap();
        let mut args = vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", data_dir.display()),
            format!("--web.listen-address={addr}"),
            "--web.enable-lifecycle".to_string(),
            "--log.level=info".to_string(),
        ];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let mut proc = Proc::spawn(name, prometheus_bin(), &args, &dir.join("logs"));
        wait_http_ok(addr, "/-/ready", Duration::from_secs(30), Some(&mut proc));
        Prometheus {
            proc,
            addr: addr.to_string(),
            data_dir,
            config_path,
        }
    }

    /// Rewrites the config file and `POST /-/reload`s it; panics unless Prometheus answers 200.
    pub fn reload(&self, config_yaml: &str) {
        fs::write(&self.config_path, config_yaml).unwrap();
        let r = http_request(
            "POST",
            &self.addr,
            "/-/reload",
            &[],
            &[],
            Duration::from_secs(30),
        )
        .expect("POST /-/reload");
        assert_eq!(
            r.status,
            200,
            "reload of {} failed: {}",
            self.proc.name,
            r.text()
        );
    }

    /// Sum of metric `name` (lines containing all `label_substrings`) on this Prometheus's `/metrics`.
    pub fn metric(&self, name: &str, label_substrings: &[&str]) -> Option<f64> {
        scrape_metric(&self.addr, name, label_substrings)
    }

    fn api(&self, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
        let r = http_post_form(&self.addr, path, form).unwrap_or_else(|e| panic!("{path}: {e}"));
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{path}: status {} bad JSON ({e}): {}", r.status, r.text()));
        assert_eq!(
            v["status"],
            "success",
            "{} {path} {form:?}: status {}: {}",
            self.proc.name,
            r.status,
            r.text()
        );
        // Prometheus 2.42 turns a failed remote read into a warning next to an (empty) successful
        // result: a warning means the data is incomplete, so it fails the test.
        if let Some(w) = v.get("warnings") {
            panic!("{} {path} {form:?}: warnings: {w}", self.proc.name);
        }
        v["data"].clone()
    }

    /// `/api/v1/series` for `matcher` over [start_ms, end_ms], sorted.
    pub fn series(&self, matcher: &str, start_ms: i64, end_ms: i64) -> Vec<Labels> {
        let (s, e) = (api_time(start_ms), api_time(end_ms));
        let data = self.api(
            "/api/v1/series",
            &[("match[]", matcher), ("start", &s), ("end", &e)],
        );
        let mut out: Vec<Labels> = data
            .as_array()
            .expect("series data is an array")
            .iter()
            .map(json_labels)
            .collect();
        out.sort();
        out
    }

    /// `/api/v1/query` of `query` at `time_ms`; the result must be a matrix (a range selector).
    /// Sorted by labels.
    pub fn query_matrix(&self, query: &str, time_ms: i64) -> Vec<MatrixSeries> {
        let t = api_time(time_ms);
        let data = self.api("/api/v1/query", &[("query", query), ("time", &t)]);
        matrix_of(&data, query)
    }

    /// `/api/v1/query_range` of `query` over [start_ms, end_ms] every `step_ms`; the result is a
    /// matrix, sorted by labels, values as the exact strings Prometheus printed.
    pub fn query_range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Vec<MatrixSeries> {
        let (s, e) = (api_time(start_ms), api_time(end_ms));
        let step = format!("{}", step_ms as f64 / 1000.0);
        let data = self.api(
            "/api/v1/query_range",
            &[
                ("query", query),
                ("start", &s),
                ("end", &e),
                ("step", &step),
            ],
        );
        matrix_of(&data, query)
    }

    /// Instant-vector `query` at `time_ms` as (labels, value string), sorted.
    pub fn query_vector(&self, query: &str, time_ms: i64) -> Vec<(Labels, String)> {
        let t = api_time(time_ms);
        let data = self.api("/api/v1/query", &[("query", query), ("time", &t)]);
        assert_eq!(data["resultType"], "vector", "{query}: not a vector");
        let mut out: Vec<(Labels, String)> = data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    json_labels(&s["metric"]),
                    s["value"][1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Stops with SIGTERM (waiting up to 30 s).
    pub fn stop(&mut self) {
        self.proc.terminate(Duration::from_secs(30));
    }
}

fn json_labels(v: &serde_json::Value) -> Labels {
    v.as_object()
        .expect("labels are an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// The matrix result of a Prometheus API answer, sorted by labels, values as printed.
fn matrix_of(data: &serde_json::Value, query: &str) -> Vec<MatrixSeries> {
    assert_eq!(data["resultType"], "matrix", "{query}: not a matrix");
    let mut out: Vec<MatrixSeries> = data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| MatrixSeries {
            labels: json_labels(&s["metric"]),
            values: s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let ts = p[0].as_f64().expect("time is a number");
                    (
                        (ts * 1000.0).round() as i64,
                        p[1].as_str().expect("value is a string").to_string(),
                    )
                })
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// One line of `promtool tsdb dump`.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpSample {
    pub labels: Labels,
    pub ts: i64,
    /// The value as promtool printed it (Go `%g`: shortest representation that round-trips).
    pub value_str: String,
    pub value: f64,
}

/// Runs `promtool tsdb dump --min-time --max-time <data_dir>` (bounded to 120 s) and parses it.
/// promtool 2.42 prints `{name="value", ...} <%g value> <ms timestamp>` per sample, reading the
/// blocks and the head (WAL) of the directory; both kinds of NaN print as `NaN`.
pub fn promtool_dump(data_dir: &Path, min_ms: i64, max_ms: i64) -> Vec<DumpSample> {
    let dir = data_dir.parent().unwrap();
    let out_path = dir.join(format!(
        "{}.dump.{}",
        data_dir.file_name().unwrap().to_string_lossy(),
        now_ms()
    ));
    let err_path = out_path.with_extension("stderr");
    let mut child = Command::new(promtool_bin())
        .args(["tsdb", "dump"])
        .arg(format!("--min-time={min_ms}"))
        .arg(format!("--max-time={max_ms}"))
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("promtool");
    let status = poll(Duration::from_secs(120), Duration::from_millis(100), || {
        child.try_wait().ok().flatten()
    });
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("promtool tsdb dump timed out");
        }
    };
    assert!(
        status.success(),
        "promtool tsdb dump failed: {status}: {}",
        fs::read_to_string(&err_path).unwrap_or_default()
    );
    let text = fs::read_to_string(&out_path).unwrap();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| parse_dump_line(l).unwrap_or_else(|e| panic!("promtool line {l:?}: {e}")))
        .collect()
}

/// Parses `{a="b", c="d"} 1.5 1700000000000`.
pub fn parse_dump_line(line: &str) -> Result<DumpSample, String> {
    let (labels, rest) = parse_go_labels(line)?;
    let mut parts = rest.split_ascii_whitespace();
    let value_str = parts.next().ok_or("no value")?.to_string();
    let ts = parts
        .next()
        .ok_or("no timestamp")?
        .parse::<i64>()
        .map_err(|e| e.to_string())?;
    if parts.next().is_some() {
        return Err("trailing fields".into());
    }
    let value = parse_go_float(&value_str)?;
    Ok(DumpSample {
        labels,
        ts,
        value_str,
        value,
    })
}

/// Parses a float printed by Go (`NaN`, `+Inf`, `-Inf`, `1e-05`, ...).
pub fn parse_go_float(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::from_bits(GO_NAN_BITS)),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse::<f64>().map_err(|e| format!("float {s:?}: {e}")),
    }
}

/// Parses a Go `labels.Labels.String()` (`{a="b", c="d"}`, values `strconv.Quote`d) at the start
/// of `s`; returns the labels and the rest after the closing brace.
pub fn parse_go_labels(s: &str) -> Result<(Labels, &str), String> {
    let b = s.as_bytes();
    if b.first() != Some(&b'{') {
        return Err("labels must start with '{'".into());
    }
    let mut i = 1;
    let mut labels = Labels::new();
    if b.get(i) == Some(&b'}') {
        return Ok((labels, &s[i + 1..]));
    }
    loop {
        let eq = s[i..].find('=').ok_or("no '='")? + i;
        let name = s[i..eq].to_string();
        i = eq + 1;
        if b.get(i) != Some(&b'"') {
            return Err("value must be quoted".into());
        }
        i += 1;
        let mut value = String::new();
        loop {
            let c = s[i..].chars().next().ok_or("unterminated value")?;
            i += c.len_utf8();
            match c {
                '"' => break,
                '\\' => {
                    let e = s[i..].chars().next().ok_or("dangling escape")?;
                    i += 1;
                    match e {
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        'r' => value.push('\r'),
                        'a' => value.push('\x07'),
                        'b' => value.push('\x08'),
                        'f' => value.push('\x0c'),
                        'v' => value.push('\x0b'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        '\'' => value.push('\''),
                        'x' | 'u' | 'U' => {
                            let n = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex = s.get(i..i + n).ok_or("short escape")?;
                            let code = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                            i += n;
                            value.push(char::from_u32(code).ok_or("bad code point")?);
                        }
                        other => return Err(format!("unknown escape \\{other}")),
                    }
                }
                c => value.push(c),
            }
        }
        labels.insert(name, value);
        match b.get(i) {
            Some(b',') => {
                i += 1;
                if b.get(i) == Some(&b' ') {
                    i += 1;
                }
            }
            Some(b'}') => return Ok((labels, &s[i + 1..])),
            _ => return Err(format!("unexpected byte at {i}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Remote read / remote write
// ---------------------------------------------------------------------------------------------

/// A label matcher.
pub fn matcher(kind: MatcherType, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: kind as i32,
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// A query for every series (`__name__=~".+"`) over [start_ms, end_ms].
pub fn query_all(start_ms: i64, end_ms: i64) -> Query {
    Query {
        start_timestamp_ms: start_ms,
        end_timestamp_ms: end_ms,
        matchers: vec![matcher(MatcherType::Re, "__name__", ".+")],
        hints: None,
    }
}

/// Sends a remote-read request (SAMPLES) to `http://addr/api/v1/read`. `Err` carries the status and
/// body of a non-200 answer or the transport error.
pub fn remote_read(
    addr: &str,
    tenant: Option<&str>,
    queries: Vec<Query>,
) -> Result<ReadResponse, String> {
    let mut headers = Vec::new();
    if let Some(t) = tenant {
        headers.push(("THANOS-TENANT", t));
    }
    remote_read_with(addr, &headers, queries)
}

/// [`remote_read`] with extra request headers (a tenant, `Authorization`, ...).
pub fn remote_read_with(
    addr: &str,
    extra_headers: &[(&str, &str)],
    queries: Vec<Query>,
) -> Result<ReadResponse, String> {
    let req = ReadRequest {
        queries,
        accepted_response_types: vec![ResponseType::Samples as i32],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    let mut headers = vec![
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Read-Version", "0.1.0"),
    ];
    headers.extend_from_slice(extra_headers);
    let r = http_request(
        "POST",
        addr,
        "/api/v1/read",
        &headers,
        &body,
        Duration::from_secs(60),
    )
    .map_err(|e| format!("remote read {addr}: {e}"))?;
    if r.status != 200 {
        return Err(format!(
            "remote read {addr}: status {}: {}",
            r.status,
            r.text()
        ));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&r.body)
        .map_err(|e| format!("remote read {addr}: snappy: {e}"))?;
    ReadResponse::decode(raw.as_slice()).map_err(|e| format!("remote read {addr}: protobuf: {e}"))
}

/// Labels of a protobuf series as a map; panics on duplicate names.
pub fn pb_labels(labels: &[Label]) -> Labels {
    let mut out = Labels::new();
    for l in labels {
        assert!(
            out.insert(l.name.clone(), l.value.clone()).is_none(),
            "duplicate label {} in {labels:?}",
            l.name
        );
    }
    out
}

/// Remote-reads every series over [start_ms, end_ms] and returns them as labels -> samples (bits).
/// Panics if a series appears twice, if its samples are not strictly increasing in time, or if a
/// sample lies outside the queried range.
pub fn read_all(
    addr: &str,
    tenant: Option<&str>,
    start_ms: i64,
    end_ms: i64,
) -> Result<BTreeMap<Labels, Samples>, String> {
    let mut headers = Vec::new();
    if let Some(t) = tenant {
        headers.push(("THANOS-TENANT", t));
    }
    read_all_with(addr, &headers, start_ms, end_ms)
}

/// [`read_all`] with extra request headers (a tenant, `Authorization`, ...).
pub fn read_all_with(
    addr: &str,
    extra_headers: &[(&str, &str)],
    start_ms: i64,
    end_ms: i64,
) -> Result<BTreeMap<Labels, Samples>, String> {
    let resp = remote_read_with(addr, extra_headers, vec![query_all(start_ms, end_ms)])?;
    if resp.results.len() != 1 {
        return Err(format!("{} results for 1 query", resp.results.len()));
    }
    let mut out = BTreeMap::new();
    for ts in &resp.results[0].timeseries {
        let labels = pb_labels(&ts.labels);
        let samples: Samples = ts
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value.to_bits()))
            .collect();
        if let Some(w) = samples.windows(2).find(|w| w[0].0 >= w[1].0) {
            return Err(format!(
                "{labels:?}: samples not strictly increasing in time: {w:?}"
            ));
        }
        if let Some(s) = samples.iter().find(|s| s.0 < start_ms || s.0 > end_ms) {
            return Err(format!(
                "{labels:?}: sample {s:?} outside [{start_ms}, {end_ms}]"
            ));
        }
        if out.insert(labels.clone(), samples).is_some() {
            return Err(format!("series {labels:?} returned twice"));
        }
    }
    Ok(out)
}

/// A series from label pairs (kept in the given order) and (timestamp ms, value) samples.
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

/// A snappy-compressed (block format) protobuf `WriteRequest`.
pub fn encode_write(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

/// The headers of a remote-write 1.0 request.
pub const WRITE_HEADERS: [(&str, &str); 3] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
];

/// POSTs a raw body to `http://addr path` with the given headers (10 s timeout).
pub fn post_raw(addr: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    http_request("POST", addr, path, headers, body, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("POST {addr}{path}: {e}"))
}

/// Sends a remote-write 1.0 request to `http://addr/api/v1/receive`.
pub fn remote_write(addr: &str, tenant: Option<&str>, req: &WriteRequest) -> Response {
    let mut headers = WRITE_HEADERS.to_vec();
    if let Some(t) = tenant {
        headers.push(("THANOS-TENANT", t));
    }
    post_raw(addr, "/api/v1/receive", &headers, &encode_write(req))
}

// ---------------------------------------------------------------------------------------------
// Ringest processes
// ---------------------------------------------------------------------------------------------

/// The arguments every Ringest server subcommand starts with: `cmd` and its three listeners.
pub fn server_args(cmd: &str, rw: &str, http: &str, grpc: &str) -> Vec<String> {
    vec![
        cmd.to_string(),
        format!("--remote-write.address={rw}"),
        format!("--http-address={http}"),
        format!("--grpc-address={grpc}"),
    ]
}

/// A `ringest ingest` process and its addresses.
pub struct Ingestor {
    pub proc: Proc,
    pub rw: String,
    pub http: String,
    pub grpc: String,
    pub data: PathBuf,
}

impl Ingestor {
    /// Starts `ringest ingest` with data under `<dir>/<name>` and waits for `/-/ready`.
    pub fn start(name: &str, dir: &Path, extra_args: &[&str]) -> Ingestor {
        let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
        let data = dir.join(name);
        fs::create_dir_all(&data).unwrap();
        let mut args = server_args("ingest", &rw, &http, &grpc);
        args.push(format!("--tsdb.path={}", data.display()));
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let proc = Proc::spawn(name, ringest_bin(), &args, &dir.join("logs"));
        let mut ing = Ingestor {
            proc,
            rw,
            http,
            grpc,
            data,
        };
        ing.wait_ready();
        ing
    }

    pub fn wait_ready(&mut self) {
        wait_http_ok(
            &self.http,
            "/-/ready",
            Duration::from_secs(60),
            Some(&mut self.proc),
        );
    }
}

/// `n` ingestors (`ingest-0`, …) under `dir` and a router over all of them with replication
/// factor `rf` and `router_args`.
pub fn start_cluster(
    dir: &Path,
    n: usize,
    rf: usize,
    router_args: &[&str],
) -> (Vec<Ingestor>, Router) {
    let ings: Vec<Ingestor> = (0..n)
        .map(|i| Ingestor::start(&format!("ingest-{i}"), dir, &[]))
        .collect();
    let eps: Vec<&str> = ings.iter().map(|i| i.grpc.as_str()).collect();
    let router = Router::start("router", dir, &eps, rf, router_args);
    (ings, router)
}

/// A `ringest router` process and its addresses.
pub struct Router {
    pub proc: Proc,
    pub rw: String,
    pub http: String,
    pub grpc: String,
    pub hashrings: PathBuf,
}

impl Router {
    /// Writes a one-ring `hashrings.json` with `endpoints` and starts `ringest router` (ketama, `rf`)
    /// and waits for `/-/ready`.
    pub fn start(
        name: &str,
        dir: &Path,
        endpoints: &[&str],
        rf: usize,
        extra_args: &[&str],
    ) -> Router {
        let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
        let hashrings = dir.join(format!("{name}-hashrings.json"));
        let ring = serde_json::json!([{ "hashring": "default", "endpoints": endpoints }]);
        fs::write(&hashrings, serde_json::to_string_pretty(&ring).unwrap()).unwrap();
        let mut args = server_args("router", &rw, &http, &grpc);
        args.extend([
            format!("--receive.hashrings-file={}", hashrings.display()),
            "--receive.hashrings-algorithm=ketama".to_string(),
            format!("--receive.replication-factor={rf}"),
        ]);
        if !extra_args
            .iter()
            .any(|a| a.starts_with("--receive-forward-timeout"))
        {
            args.push("--receive-forward-timeout=5s".to_string());
        }
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let mut proc = Proc::spawn(name, ringest_bin(), &args, &dir.join("logs"));
        wait_http_ok(&http, "/-/ready", Duration::from_secs(60), Some(&mut proc));
        Router {
            proc,
            rw,
            http,
            grpc,
            hashrings,
        }
    }
}

/// Opens (creating) a file for appending; used for test reports.
pub fn append_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Prometheus configs and oracles shared by the end-to-end tests
// ---------------------------------------------------------------------------------------------

/// Config of the scraping Prometheus ("A"): 1 s scrapes of itself and of `jobs` (job name, targets),
/// remote write to `remote_write_url` with a short queue so that samples leave within ~1 s.
/// Metadata is sent every 5 s so that the receiver sees metadata-only requests during the run.
pub fn scraper_config(self_addr: &str, jobs: &[(&str, &[&str])], remote_write_url: &str) -> String {
    let mut y = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
    );
    y.push_str(&format!(
        "  - job_name: prometheus\n    static_configs: [{{targets: ['{self_addr}']}}]\n"
    ));
    for (job, targets) in jobs {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        y.push_str(&format!(
            "  - job_name: {job}\n    static_configs: [{{targets: [{}]}}]\n",
            targets.join(", ")
        ));
    }
    y.push_str(&format!(
        "remote_write:\n  - url: {remote_write_url}\n    remote_timeout: 10s\n    queue_config:\n      capacity: 10000\n      min_shards: 1\n      max_shards: 1\n      max_samples_per_send: 2000\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n    metadata_config:\n      send: true\n      send_interval: 5s\n"
    ));
    y
}

/// Config of the reading Prometheus ("B"): no scrape jobs, one remote read endpoint, recent data
/// read remotely too.
pub fn reader_config(remote_read_url: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\nscrape_configs: []\nremote_read:\n  - url: {remote_read_url}\n    read_recent: true\n    remote_timeout: 30s\n"
    )
}

/// Remote-write counters of a Prometheus, summed over its queues.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoteWriteStats {
    pub samples_total: f64,
    pub samples_failed: f64,
    pub samples_retried: f64,
    pub samples_dropped: f64,
    pub metadata_total: f64,
    pub metadata_failed: f64,
    pub highest_ts_s: f64,
    pub highest_sent_s: f64,
}

impl Prometheus {
    /// Its remote-write counters (2.42 names: `prometheus_remote_storage_samples_{total,failed_total,
    /// retried_total,dropped_total}`, `..._highest_timestamp_in_seconds` (appended) and
    /// `..._queue_highest_sent_timestamp_seconds`, both whole seconds).
    pub fn remote_write_stats(&self) -> RemoteWriteStats {
        let m = |n: &str| {
            self.metric(n, &[])
                .unwrap_or_else(|| panic!("{} has no metric {n}", self.proc.name))
        };
        RemoteWriteStats {
            samples_total: m("prometheus_remote_storage_samples_total"),
            samples_failed: m("prometheus_remote_storage_samples_failed_total"),
            samples_retried: m("prometheus_remote_storage_samples_retried_total"),
            samples_dropped: m("prometheus_remote_storage_samples_dropped_total"),
            metadata_total: m("prometheus_remote_storage_metadata_total"),
            metadata_failed: m("prometheus_remote_storage_metadata_failed_total"),
            highest_ts_s: m("prometheus_remote_storage_highest_timestamp_in_seconds"),
            highest_sent_s: m("prometheus_remote_storage_queue_highest_sent_timestamp_seconds"),
        }
    }

    /// Waits until the remote-write queue has sent a sample stamped at least 3 s after `cutoff_ms`
    /// (the metric has whole-second resolution and scrapes of different jobs commit slightly out of
    /// order, hence the margin). With one shard the queue sends in WAL order, so everything stamped
    /// up to the cutoff has been acknowledged by then.
    pub fn wait_sent_past(&self, cutoff_ms: i64, timeout: Duration) -> RemoteWriteStats {
        let want = (cutoff_ms / 1000 + 3) as f64;
        let mut last = RemoteWriteStats::default();
        let ok = poll(timeout, Duration::from_millis(250), || {
            last = self.remote_write_stats();
            (last.highest_sent_s >= want).then_some(())
        });
        assert!(
            ok.is_some(),
            "{}: remote write did not send past {want} s within {timeout:?}: {last:?}",
            self.proc.name
        );
        last
    }
}

/// Samples of a PromQL matrix as (labels, ts) -> value string.
pub fn matrix_points(m: &[MatrixSeries]) -> BTreeMap<(Labels, i64), String> {
    let mut out = BTreeMap::new();
    for s in m {
        for (ts, v) in &s.values {
            out.insert((s.labels.clone(), *ts), v.clone());
        }
    }
    out
}

/// Panics, naming a few missing and unexpected series, unless both lists hold the same series in
/// the same order.
fn assert_same_series(
    what: &str,
    (e_name, e): (&str, &[&Labels]),
    (a_name, a): (&str, &[&Labels]),
) {
    if e == a {
        return;
    }
    let es: HashSet<&Labels> = e.iter().copied().collect();
    let as_: HashSet<&Labels> = a.iter().copied().collect();
    let missing: Vec<_> = es.difference(&as_).take(5).collect();
    let extra: Vec<_> = as_.difference(&es).take(5).collect();
    panic!(
        "{what}: series differ: {e_name} {} {a_name} {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
        es.len(),
        as_.len()
    );
}

/// Asserts that two PromQL matrices are identical (labels, timestamps, value strings); returns the
/// number of samples compared.
pub fn assert_matrices_equal(
    what: &str,
    expected: &[MatrixSeries],
    actual: &[MatrixSeries],
) -> usize {
    let e: Vec<&Labels> = expected.iter().map(|s| &s.labels).collect();
    let a: Vec<&Labels> = actual.iter().map(|s| &s.labels).collect();
    assert_same_series(what, ("expected", &e), ("actual", &a));
    let mut n = 0;
    for (x, y) in expected.iter().zip(actual) {
        if x.values != y.values {
            let first = x
                .values
                .iter()
                .zip(&y.values)
                .find(|(p, q)| p != q)
                .map(|(p, q)| format!("expected {p:?} got {q:?}"))
                .unwrap_or_else(|| format!("{} vs {} samples", x.values.len(), y.values.len()));
            panic!("{what}: samples of {:?} differ: {first}", x.labels);
        }
        n += x.values.len();
    }
    n
}

/// What [`assert_read_matches_dump`] compared.
#[derive(Debug, Default, Clone)]
pub struct DumpComparison {
    pub series: usize,
    pub samples: usize,
    pub stale_markers: usize,
    pub real_nans: usize,
    /// Stale markers per `job` label.
    pub stale_by_job: BTreeMap<String, usize>,
}

/// Asserts that a remote-read result holds exactly the samples `promtool tsdb dump` printed, bit for
/// bit: numbers must have the bits of the printed value (Go `%g` round-trips), and a printed `NaN`
/// must be a stale marker (`0x7ff0000000000002`) unless PromQL (`matrix`, which hides stale
/// markers) shows a `NaN` at that point, in which case it is a scraped NaN and must not carry the
/// stale bits. Also checks the dump against the matrix (every non-stale dump sample is in the
/// matrix with the same printed value and vice versa) so that the dump parsing is cross-checked.
pub fn assert_read_matches_dump(
    what: &str,
    dump: &[DumpSample],
    matrix: &[MatrixSeries],
    read: &BTreeMap<Labels, Samples>,
) -> DumpComparison {
    let points = matrix_points(matrix);
    let mut by_series: BTreeMap<&Labels, Vec<&DumpSample>> = BTreeMap::new();
    for d in dump {
        by_series.entry(&d.labels).or_default().push(d);
    }
    let read_nonempty: BTreeMap<&Labels, &Samples> =
        read.iter().filter(|(_, s)| !s.is_empty()).collect();
    let dump_keys: Vec<&Labels> = by_series.keys().copied().collect();
    let read_keys: Vec<&Labels> = read_nonempty.keys().copied().collect();
    assert_same_series(what, ("promtool", &dump_keys), ("remote read", &read_keys));
    let mut c = DumpComparison::default();
    let mut matrix_seen = 0usize;
    for (labels, ds) in &by_series {
        let rs = read_nonempty[labels];
        let dts: Vec<i64> = ds.iter().map(|d| d.ts).collect();
        let rts: Vec<i64> = rs.iter().map(|r| r.0).collect();
        assert_eq!(
            dts, rts,
            "{what}: timestamps of {labels:?} differ (promtool vs remote read)"
        );
        for (d, &(ts, bits)) in ds.iter().zip(rs.iter()) {
            let got = f64::from_bits(bits);
            let in_matrix = points.get(&((*labels).clone(), ts));
            if d.value_str == "NaN" {
                assert!(
                    got.is_nan(),
                    "{what}: {labels:?}@{ts}: promtool NaN, remote read {got} ({bits:#x})"
                );
                if let Some(v) = in_matrix {
                    assert_eq!(
                        v, "NaN",
                        "{what}: {labels:?}@{ts}: promtool NaN, PromQL {v}"
                    );
                    assert_ne!(
                        bits, STALE_NAN_BITS,
                        "{what}: {labels:?}@{ts}: scraped NaN came back as a stale marker"
                    );
                    c.real_nans += 1;
                    matrix_seen += 1;
                } else {
                    assert_eq!(
                        bits, STALE_NAN_BITS,
                        "{what}: {labels:?}@{ts}: stale marker came back with bits {bits:#x}"
                    );
                    c.stale_markers += 1;
                    let job = labels.get("job").cloned().unwrap_or_default();
                    *c.stale_by_job.entry(job).or_default() += 1;
                }
            } else {
                assert_eq!(
                    bits,
                    d.value.to_bits(),
                    "{what}: {labels:?}@{ts}: promtool {} remote read {got} ({bits:#x})",
                    d.value_str
                );
                let v = in_matrix.unwrap_or_else(|| {
                    panic!("{what}: {labels:?}@{ts} in promtool dump but not in PromQL")
                });
                assert_eq!(
                    parse_go_float(v).unwrap().to_bits(),
                    d.value.to_bits(),
                    "{what}: {labels:?}@{ts}: PromQL {v} promtool {}",
                    d.value_str
                );
                matrix_seen += 1;
            }
            c.samples += 1;
        }
        c.series += 1;
    }
    assert_eq!(
        matrix_seen,
        points.len(),
        "{what}: PromQL has samples that promtool did not dump"
    );
    c
}

/// Asserts that two remote-read results are identical, with a short message naming the first
/// differences (never the whole data).
pub fn assert_same_samples(
    what: &str,
    expected: &BTreeMap<Labels, Samples>,
    actual: &BTreeMap<Labels, Samples>,
) {
    if expected == actual {
        return;
    }
    let missing: Vec<&Labels> = expected
        .keys()
        .filter(|l| !actual.contains_key(*l))
        .take(3)
        .collect();
    let extra: Vec<&Labels> = actual
        .keys()
        .filter(|l| !expected.contains_key(*l))
        .take(3)
        .collect();
    let differ: Vec<String> = expected
        .iter()
        .filter_map(|(l, s)| actual.get(l).filter(|a| *a != s).map(|a| (l, s, a)))
        .take(3)
        .map(|(l, s, a)| {
            let show = |v: &Samples| {
                v.iter()
                    .take(4)
                    .map(|(t, b)| format!("{t}:{b:#x}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            format!(
                "{l:?}: expected {} samples [{}..], got {} [{}..]",
                s.len(),
                show(s),
                a.len(),
                show(a)
            )
        })
        .collect();
    panic!(
        "{what}: expected {} series, got {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}; differing e.g. {differ:?}",
        expected.len(),
        actual.len()
    );
}

/// A fresh temporary directory for one test (`ringest-<name>-XXXX` under the system temp dir),
/// removed at the end unless `$RINGEST_E2E_KEEP` is set (then its path is printed).
pub fn test_dir(name: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("ringest-{name}-"))
        .tempdir()
        .unwrap();
    if std::env::var_os("RINGEST_E2E_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("[harness] keeping {}", dir.path().display());
    }
    dir
}

// ---------------------------------------------------------------------------------------------
// One-shot runs, metrics, files and exact encodings (ring reload, all-in-one, CLI tests)
// ---------------------------------------------------------------------------------------------

/// What a process run to completion by [`run_to_exit`] left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args` with `stdin` fed on its standard input (then closed), in `cwd` if given,
/// and waits for it to exit. Panics, after killing it, if it is still running after `timeout`.
pub fn run_to_exit(
    program: impl AsRef<Path>,
    args: &[&str],
    stdin: &[u8],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Finished {
    let program = program.as_ref();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // A process that exits early closes its stdin: a broken pipe here is not an error.
    let feeder = thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = feeder.join();
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    match status {
        Some(status) => Finished {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{program:?} {args:?} still running after {timeout:?}; killed.\nstdout:\n{stdout}\nstderr:\n{stderr}"
        ),
    }
}

/// Polls metric `name` (see [`scrape_metric`]) on `addr` until `want` holds for its value;
/// returns the last value seen (`None` if never exposed) and whether `want` held in time.
pub fn wait_metric(
    addr: &str,
    name: &str,
    label_substrings: &[&str],
    timeout: Duration,
    want: impl Fn(f64) -> bool,
) -> (Option<f64>, bool) {
    let mut last = None;
    let ok = poll(timeout, Duration::from_millis(50), || {
        last = scrape_metric(addr, name, label_substrings);
        last.filter(|v| want(*v)).map(|_| ())
    });
    (last, ok.is_some())
}

/// A label set from pairs.
pub fn label_map(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Replaces `path` atomically (write a sibling, then rename), so a poller never sees a half file.
pub fn write_atomic(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, contents).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// A series to write: labels (in the order to send them) and (timestamp ms, value) samples.
pub type SeriesSpec<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);

/// A snappy-compressed remote-write 1.0 body built with Ringest's own encoder, which writes every
/// sample value whose bits are not all zero (prost would drop `-0.0`). Labels keep the given order.
pub fn encode_write_exact(series: &[SeriesSpec<'_>]) -> Vec<u8> {
    use ringest::remote_write as rw;
    let mut raw = Vec::new();
    for (labels, samples) in series {
        let labels: Vec<rw::Label<'_>> = labels
            .iter()
            .map(|&(name, value)| rw::Label { name, value })
            .collect();
        let samples: Vec<rw::Sample> = samples
            .iter()
            .map(|&(timestamp, value)| rw::Sample { timestamp, value })
            .collect();
        rw::encode_timeseries(&labels, &samples, &mut raw);
    }
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

/// Up to `max` differences between two remote-read results, sample by sample
/// (`labels@ts: expected bits, got bits`), then missing and unexpected series.
pub fn sample_differences(
    expected: &BTreeMap<Labels, Samples>,
    actual: &BTreeMap<Labels, Samples>,
    max: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (labels, want) in expected {
        let Some(got) = actual.get(labels) else {
            out.push(format!("{labels:?}: missing ({} samples)", want.len()));
            continue;
        };
        let got_map: BTreeMap<i64, u64> = got.iter().copied().collect();
        let want_map: BTreeMap<i64, u64> = want.iter().copied().collect();
        for (ts, bits) in &want_map {
            match got_map.get(ts) {
                Some(b) if b == bits => {}
                Some(b) => out.push(format!(
                    "{labels:?}@{ts}: expected {bits:#018x} ({}), got {b:#018x} ({})",
                    f64::from_bits(*bits),
                    f64::from_bits(*b)
                )),
                None => out.push(format!("{labels:?}@{ts}: expected {bits:#018x}, missing")),
            }
        }
        for ts in got_map.keys().filter(|t| !want_map.contains_key(t)) {
            out.push(format!("{labels:?}@{ts}: unexpected sample"));
        }
    }
    for labels in actual.keys().filter(|l| !expected.contains_key(*l)) {
        out.push(format!("{labels:?}: unexpected series"));
    }
    let n = out.len();
    if n > max {
        out.truncate(max);
        out.push(format!("... {} differences in all", n));
    }
    out
}

/// Asserts that two remote-read results are identical bit for bit, listing the first differing
/// samples (not only series) when they are not.
pub fn assert_same_bits(
    what: &str,
    expected: &BTreeMap<Labels, Samples>,
    actual: &BTreeMap<Labels, Samples>,
) {
    let diff = sample_differences(expected, actual, 8);
    assert!(
        diff.is_empty(),
        "{what}: {} series expected, {} read; differences:\n  {}",
        expected.len(),
        actual.len(),
        diff.join("\n  ")
    );
}

// =============================================================================================
// Block crash tests and S3 (tests/e2e_blocks_crash.rs, tests/e2e_s3.rs, tests/e2e_s3_shipper.rs)
// =============================================================================================

/// A child started with extra environment variables: `env K=V… program args…` (env execs the
/// program, so the pid, signals and exit status are the program's own).
pub fn spawn_with_env(
    name: &str,
    env: &[(&str, &str)],
    program: impl AsRef<Path>,
    args: &[String],
    log_dir: &Path,
) -> Proc {
    let mut full: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    full.push(program.as_ref().display().to_string());
    full.extend(args.iter().cloned());
    Proc::spawn(name, "env", &full, log_dir)
}

/// The signal that ended a process, if a signal did.
pub fn exit_signal(status: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// Waits up to `timeout` for `proc` to exit; its status, or `None` if it is still running.
pub fn wait_exit(proc: &mut Proc, timeout: Duration) -> Option<ExitStatus> {
    poll(timeout, Duration::from_millis(20), || proc.exited())
}

/// A small deterministic PRNG (SplitMix64), for seeded random schedules.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}

/// Whether `name` looks like a block directory name (a 26-character Crockford base32 ULID).
pub fn is_ulid(name: &str) -> bool {
    name.len() == 26
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)))
}

/// Names of the block directories (ULIDs) directly under `dir`, sorted.
pub fn block_dirs(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| is_ulid(n))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Every file under `dir`, as `/`-separated paths relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap();
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The ULIDs listed in `<tenant_dir>/thanos.shipper.json` (in file order); empty if there is none.
pub fn shipper_state(tenant_dir: &Path) -> Vec<String> {
    let path = tenant_dir.join("thanos.shipper.json");
    let Ok(data) = fs::read(&path) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&data)
        .unwrap_or_else(|e| panic!("{}: bad JSON ({e})", path.display()));
    assert_eq!(v["version"], 1, "{}: {v}", path.display());
    match &v["uploaded"] {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|u| u.as_str().expect("ULID string").to_string())
            .collect(),
        other => panic!("{}: uploaded is {other}", path.display()),
    }
}

/// A block read back from disk: its meta.json and every sample, through Ringest's own block reader
/// (`ringest::tsdb::querier::Block`).
#[derive(Debug, Clone)]
pub struct ReadBlock {
    pub ulid: String,
    pub meta: serde_json::Value,
    pub min_time: i64,
    pub max_time: i64,
    /// `thanos.labels.tenant_id` (empty when absent).
    pub tenant: String,
    pub samples: BTreeMap<Labels, Samples>,
}

impl ReadBlock {
    pub fn num_samples(&self) -> usize {
        self.samples.values().map(Vec::len).sum()
    }
}

/// Opens the block in `dir` and reads all of it. Panics (naming the block) if it cannot be opened
/// or read, if a series' samples are not strictly increasing in time, or if a sample lies outside
/// `[minTime, maxTime)`.
pub fn read_block(dir: &Path) -> ReadBlock {
    let ulid = dir.file_name().unwrap().to_string_lossy().into_owned();
    let meta: serde_json::Value = serde_json::from_slice(
        &fs::read(dir.join("meta.json"))
            .unwrap_or_else(|e| panic!("{}/meta.json: {e}", dir.display())),
    )
    .unwrap_or_else(|e| panic!("{}/meta.json: {e}", dir.display()));
    let block = ringest::tsdb::querier::Block::open(dir)
        .unwrap_or_else(|e| panic!("opening block {}: {e}", dir.display()));
    let (min_time, max_time) = (block.meta().min_time, block.meta().max_time);
    let series = block
        .select(i64::MIN, i64::MAX, &[])
        .unwrap_or_else(|e| panic!("reading block {}: {e}", dir.display()));
    let mut samples = BTreeMap::new();
    for s in series {
        let labels: Labels = s
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ss: Samples = s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        if let Some(w) = ss.windows(2).find(|w| w[0].0 >= w[1].0) {
            panic!(
                "block {ulid}: {labels:?}: timestamps not strictly increasing: {} then {}",
                w[0].0, w[1].0
            );
        }
        if let Some(x) = ss.iter().find(|x| x.0 < min_time || x.0 >= max_time) {
            panic!(
                "block {ulid}: {labels:?}: sample at {} outside the block's [{min_time}, {max_time})",
                x.0
            );
        }
        assert!(
            samples.insert(labels.clone(), ss).is_none(),
            "block {ulid}: series {labels:?} listed twice"
        );
    }
    let tenant = meta["thanos"]["labels"]["tenant_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ReadBlock {
        ulid,
        meta,
        min_time,
        max_time,
        tenant,
        samples,
    }
}

/// The union of the samples of `blocks`, panicking (with up to 5 examples) if a (series,
/// timestamp) appears in two blocks.
pub fn union_no_duplicates(what: &str, blocks: &[&ReadBlock]) -> BTreeMap<Labels, Samples> {
    let mut seen: BTreeMap<Labels, BTreeMap<i64, (u64, &str)>> = BTreeMap::new();
    let mut dups = Vec::new();
    let mut n_dups = 0usize;
    for b in blocks {
        for (labels, ss) in &b.samples {
            let m = seen.entry(labels.clone()).or_default();
            for &(t, bits) in ss {
                if let Some((_, other)) = m.insert(t, (bits, &b.ulid)) {
                    n_dups += 1;
                    if dups.len() < 5 {
                        dups.push(format!("{labels:?}@{t} in {other} and {}", b.ulid));
                    }
                }
            }
        }
    }
    assert!(
        n_dups == 0,
        "{what}: {n_dups} samples are in two blocks, e.g.:\n  {}",
        dups.join("\n  ")
    );
    seen.into_iter()
        .map(|(l, m)| (l, m.into_iter().map(|(t, (b, _))| (t, b)).collect()))
        .collect()
}

/// Panics unless the `[minTime, maxTime)` ranges of `blocks` are pairwise disjoint.
pub fn assert_no_overlap(what: &str, blocks: &[&ReadBlock]) {
    let mut v: Vec<&&ReadBlock> = blocks.iter().collect();
    v.sort_by_key(|b| (b.min_time, b.max_time));
    for w in v.windows(2) {
        assert!(
            w[0].max_time <= w[1].min_time,
            "{what}: blocks overlap: {} [{}, {}) and {} [{}, {})",
            w[0].ulid,
            w[0].min_time,
            w[0].max_time,
            w[1].ulid,
            w[1].min_time,
            w[1].max_time
        );
    }
}

/// `moto_server`: `$MOTO_SERVER_BIN`, `$RINGEST_VENV/bin/moto_server` or
/// `~/.cache/ringest/venv/bin/moto_server`; panics pointing at `scripts/install-test-deps.sh` when
/// none exists.
pub fn moto_bin() -> PathBuf {
    let candidates: Vec<PathBuf> = [
        std::env::var_os("MOTO_SERVER_BIN").map(PathBuf::from),
        std::env::var_os("RINGEST_VENV").map(|v| PathBuf::from(v).join("bin/moto_server")),
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/ringest/venv/bin/moto_server")),
    ]
    .into_iter()
    .flatten()
    .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "moto_server not found (looked at {candidates:?}): run scripts/install-test-deps.sh \
                 (it installs moto[server] into ~/.cache/ringest/venv), or set MOTO_SERVER_BIN"
            )
        })
}

/// A fake SigV4 authorization header: moto wants one on private objects but does not check it.
const MOTO_AUTH: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
                         SignedHeaders=host, Signature=0000";

/// A moto S3-protocol server on a loopback port, spoken to with raw HTTP (path style).
pub struct Moto {
    pub proc: Proc,
    pub addr: String,
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers.
    pub fn start(log_dir: &Path) -> Moto {
        Moto::start_on(free_port(), log_dir)
    }

    /// Starts moto on `port` and waits until it answers.
    pub fn start_on(port: u16, log_dir: &Path) -> Moto {
        let proc = Proc::spawn(
            "moto",
            moto_bin(),
            &[
                "-H".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
            ],
            log_dir,
        );
        let mut m = Moto {
            proc,
            addr: format!("127.0.0.1:{port}"),
        };
        m.wait_up();
        m
    }

    /// Waits (60 s at most) until moto answers `GET /`.
    pub fn wait_up(&mut self) {
        let up = poll(Duration::from_secs(60), Duration::from_millis(100), || {
            http_request("GET", &self.addr, "/", &[], b"", Duration::from_secs(2))
                .ok()
                .filter(|r| r.is_2xx())
        });
        if up.is_none() {
            self.proc.assert_running();
            panic!("moto did not answer on {}\n{}", self.addr, self.proc.logs());
        }
    }

    /// Creates `bucket` (moto keeps nothing across restarts).
    pub fn create_bucket(&self, bucket: &str) {
        let r = http_request(
            "PUT",
            &self.addr,
            &format!("/{bucket}"),
            &[],
            b"",
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(
            r.is_2xx(),
            "create bucket {bucket}: {} {}",
            r.status,
            r.text()
        );
    }

    /// Raw object bytes straight from the server.
    pub fn get_raw(&self, bucket: &str, key: &str) -> Vec<u8> {
        let r = http_request(
            "GET",
            &self.addr,
            &format!("/{bucket}/{key}"),
            &[("Authorization", MOTO_AUTH)],
            b"",
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(r.is_2xx(), "GET {bucket}/{key}: {}", r.status);
        r.body
    }

    /// Every object key under `prefix` with its size (ListObjectsV2, following continuation
    /// tokens), or the error (moto down, bucket missing).
    pub fn try_list(&self, bucket: &str, prefix: &str) -> Result<BTreeMap<String, u64>, String> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{bucket}?list-type=2&prefix={}", urlencode(prefix));
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={}", urlencode(t)));
            }
            let r = http_request(
                "GET",
                &self.addr,
                &path,
                &[("Authorization", MOTO_AUTH)],
                b"",
                Duration::from_secs(30),
            )
            .map_err(|e| format!("list {bucket}/{prefix}: {e}"))?;
            if !r.is_2xx() {
                return Err(format!("list {bucket}/{prefix}: {} {}", r.status, r.text()));
            }
            let xml = r.text();
            for c in xml_elements(&xml, "Contents") {
                let key = xml_elements(c, "Key")
                    .first()
                    .map(|k| xml_unescape(k))
                    .ok_or_else(|| format!("no Key in {c}"))?;
                let size = xml_elements(c, "Size")
                    .first()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| format!("no Size in {c}"))?;
                out.insert(key, size);
            }
            let truncated = xml_elements(&xml, "IsTruncated").first() == Some(&"true");
            token = xml_elements(&xml, "NextContinuationToken")
                .first()
                .map(|t| xml_unescape(t));
            if !truncated || token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Like [`Moto::try_list`], panicking on errors.
    pub fn list(&self, bucket: &str, prefix: &str) -> BTreeMap<String, u64> {
        self.try_list(bucket, prefix)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The contents of every `<tag>…</tag>` in `xml` (no nesting of the same tag).
fn xml_elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

// ---------------------------------------------------------------------------------------------
// TSDB blocks on disk (block tests)
// ---------------------------------------------------------------------------------------------

/// Copies the directory tree `src` to `dst` (created), files byte for byte.
pub fn copy_dir_all(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir_all(&entry.path(), &to);
        } else {
            fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// Builds at `dst` a TSDB directory that promtool and Prometheus 2.42 open: a copy of each block
/// directory in `blocks` plus an empty `wal/` (promtool 2.42 opens the WAL even to read blocks).
pub fn tsdb_dir_of_blocks(blocks: &[&Path], dst: &Path) {
    fs::create_dir_all(dst.join("wal")).unwrap();
    for b in blocks {
        copy_dir_all(b, &dst.join(b.file_name().unwrap()));
    }
}

/// Total size in bytes of the regular files under `dir` (recursively).
pub fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dir_size(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

// =============================================================================================
// Hostile corpus (tests/e2e_hostile_corpus.rs): raw HTTP requests and a raw protobuf writer
// =============================================================================================

/// Sends `request` (a complete HTTP/1.1 request, head and body, exactly as given) on a fresh
/// connection and reads the answer until the server closes, within `timeout`. For requests the
/// regular client cannot send: chunked bodies, lying `Content-Length`, bytes HTTP forbids in a header.
/// A write error is ignored when an answer arrives anyway (a server may refuse before reading all).
pub fn http_raw(addr: &str, request: &[u8], timeout: Duration) -> io::Result<Response> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    let write_result = stream.write_all(request).and_then(|_| stream.flush());
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("raw request to {addr}: no complete answer in {timeout:?}"),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                // An answer with a complete Content-Length body is enough (the server may keep
                // the connection open while it drains what we sent).
                if parse_response(&raw).is_ok_and(|r| {
                    r.header("content-length")
                        .and_then(|v| v.parse::<usize>().ok())
                        .is_some_and(|len| r.body.len() == len)
                }) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if !raw.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("raw request to {addr}: read: {e}; write: {write_result:?}"),
                ))
            }
        }
    }
    parse_response(&raw).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("raw request to {addr}: {e} (write: {write_result:?})"),
        )
    })
}

/// Peak resident set size (`VmHWM`) of process `pid` in KiB, from `/proc`.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Protobuf wire types, for [`pb_key`].
pub const PB_VARINT: u8 = 0;
pub const PB_FIXED64: u8 = 1;
pub const PB_LEN: u8 = 2;
pub const PB_FIXED32: u8 = 5;

/// Appends `v` as a LEB128 varint.
pub fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends the key of field `field` with wire type `wire_type`.
pub fn pb_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    pb_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

/// Appends a length-delimited field.
pub fn pb_len(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    pb_key(out, field, PB_LEN);
    pb_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A remote-write 1.0 `Label` body from raw bytes (so names and values may be invalid UTF-8).
pub fn pb_label(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    pb_len(&mut out, 1, name);
    pb_len(&mut out, 2, value);
    out
}

/// A `Sample` body (1.0 and 2.0 share it) with both fields always written, so every value's bits
/// (`-0.0`, NaN payloads) and every timestamp (0, `i64::MIN`) go on the wire as given.
pub fn pb_sample(timestamp: i64, value: f64) -> Vec<u8> {
    let mut out = Vec::new();
    pb_key(&mut out, 1, PB_FIXED64);
    out.extend_from_slice(&value.to_bits().to_le_bytes());
    pb_key(&mut out, 2, PB_VARINT);
    pb_varint(&mut out, timestamp as u64);
    out
}

/// A remote-write 1.0 `TimeSeries` body: labels (raw bytes, in the given order), then samples.
pub fn pb_series(labels: &[(&[u8], &[u8])], samples: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in labels {
        pb_len(&mut out, 1, &pb_label(name, value));
    }
    for &(ts, v) in samples {
        pb_len(&mut out, 2, &pb_sample(ts, v));
    }
    out
}

/// A remote-write 1.0 `WriteRequest` (also the classic `thanos.WriteRequest` without a tenant)
/// from `TimeSeries` bodies.
pub fn pb_write_request(series: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in series {
        pb_len(&mut out, 1, s);
    }
    out
}

/// Snappy block-format compression.
pub fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}
