//! The load run: one worker per connection, each sending its own series in order over a
//! keep-alive HTTP/1.1 connection, paced to `--rate`, until `--duration` or `--requests`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::hist::Histogram;
use crate::series::{Protocol, SeriesConfig, Shard};

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Target URL (`http://host:port/path`).
    pub url: String,
    /// Tenants; worker `w` sends as `tenants[w % len]`; empty sends no tenant header.
    pub tenants: Vec<String>,
    /// Name of the tenant header.
    pub tenant_header: String,
    /// Shape of the series.
    pub series: SeriesConfig,
    /// Samples (one series, one timestamp each) per request.
    pub samples_per_request: usize,
    /// Workers, each with one connection and one request in flight.
    pub concurrency: usize,
    /// Stop after this long (if set).
    pub duration: Option<Duration>,
    /// Stop after this many requests (if set).
    pub requests: Option<u64>,
    /// Target samples/s over all workers; 0 = as fast as possible.
    pub rate: f64,
    /// Remote write version.
    pub protocol: Protocol,
    /// Percentage of series replaced every `churn_interval`.
    pub churn: f64,
    /// Period of churn.
    pub churn_interval: Duration,
    /// Timeout of one request (counted as error `timeout`).
    pub timeout: Duration,
    /// Print a progress line on stderr every second.
    pub progress: bool,
}

/// Counters shared by the workers and the progress line.
#[derive(Default)]
struct Shared {
    requests: AtomicU64,
    samples_sent: AtomicU64,
    samples_accepted: AtomicU64,
    errors: AtomicU64,
    tickets: AtomicU64,
    stop: AtomicBool,
}

/// What one worker measured.
#[derive(Default)]
struct WorkerResult {
    hist: Histogram,
    errors: BTreeMap<String, u64>,
    bytes_sent: u64,
    bytes_uncompressed: u64,
    churned: u64,
    clock_waits: u64,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Remote write version used.
    pub protocol: Protocol,
    /// Active series configured.
    pub series: u64,
    /// Workers (connections).
    pub concurrency: usize,
    /// Samples per request.
    pub samples_per_request: usize,
    /// Wall-clock length of the run, seconds.
    pub duration_sec: f64,
    /// Requests completed (any outcome).
    pub requests: u64,
    /// Requests answered 2xx.
    pub requests_ok: u64,
    /// Samples in all requests sent.
    pub samples_sent: u64,
    /// Samples in requests answered 2xx.
    pub samples_accepted: u64,
    /// Snappy-compressed bytes sent (bodies only).
    pub bytes_sent: u64,
    /// Uncompressed protobuf bytes sent.
    pub bytes_uncompressed: u64,
    /// Errors by status code, `connection` or `timeout`.
    pub errors: BTreeMap<String, u64>,
    /// Latency quantiles and mean, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile latency, ms.
    pub p90_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// 99.9th percentile latency, ms.
    pub p999_ms: f64,
    /// Largest latency, ms.
    pub max_ms: f64,
    /// Mean latency, ms.
    pub mean_ms: f64,
    /// Series replaced by churn.
    pub churned_series: u64,
    /// Times a worker waited so timestamps stay under now + 5m.
    pub clock_waits: u64,
}

impl Summary {
    /// Accepted samples per second.
    pub fn accepted_samples_per_sec(&self) -> f64 {
        per_sec(self.samples_accepted, self.duration_sec)
    }

    /// The summary as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "accepted_samples_per_sec": round1(self.accepted_samples_per_sec()),
            "sent_samples_per_sec": round1(per_sec(self.samples_sent, self.duration_sec)),
            "requests": self.requests,
            "requests_ok": self.requests_ok,
            "requests_per_sec": round1(per_sec(self.requests, self.duration_sec)),
            "p50_ms": round3(self.p50_ms),
            "p90_ms": round3(self.p90_ms),
            "p99_ms": round3(self.p99_ms),
            "p999_ms": round3(self.p999_ms),
            "max_ms": round3(self.max_ms),
            "mean_ms": round3(self.mean_ms),
            "errors": self.errors,
            "samples_sent": self.samples_sent,
            "samples_accepted": self.samples_accepted,
            "bytes_sent": self.bytes_sent,
            "bytes_uncompressed": self.bytes_uncompressed,
            "duration_sec": round3(self.duration_sec),
            "series": self.series,
            "protocol": self.protocol.name(),
            "concurrency": self.concurrency,
            "samples_per_request": self.samples_per_request,
            "churned_series": self.churned_series,
            "clock_waits": self.clock_waits,
        })
    }

    /// The summary for people.
    pub fn to_text(&self) -> String {
        let errors = if self.errors.is_empty() {
            "none".to_string()
        } else {
            self.errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "protocol {} | {} series | {} workers | {} samples/request | {:.2}s\n\
             accepted: {:.0} samples/s ({} of {} samples), {:.1} requests/s ({} of {} ok)\n\
             latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}  mean {:.3}\n\
             bytes: {:.1} MB snappy ({:.1} MB protobuf, {:.1} B/sample on the wire)\n\
             errors: {errors}{}{}",
            self.protocol.name(),
            self.series,
            self.concurrency,
            self.samples_per_request,
            self.duration_sec,
            self.accepted_samples_per_sec(),
            self.samples_accepted,
            self.samples_sent,
            per_sec(self.requests, self.duration_sec),
            self.requests_ok,
            self.requests,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
            self.mean_ms,
            self.bytes_sent as f64 / 1e6,
            self.bytes_uncompressed as f64 / 1e6,
            self.bytes_sent as f64 / self.samples_sent.max(1) as f64,
            if self.churned_series > 0 {
                format!("\nchurn: {} series replaced", self.churned_series)
            } else {
                String::new()
            },
            if self.clock_waits > 0 {
                format!(
                    "\nclock: workers waited {} times to keep timestamps under now + 5m \
                     (more series per worker would avoid it)",
                    self.clock_waits
                )
            } else {
                String::new()
            },
        )
    }
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `http://host:port/path` split into what a request needs.
#[derive(Clone, Debug)]
pub struct Target {
    /// Host and port, as in the URL (the Host header).
    pub authority: String,
    /// Path and query.
    pub path: String,
}

impl Target {
    /// Parses an `http://` URL (no TLS).
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("bad --url {url}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("--url {url}: only http:// is supported"));
        }
        let auth = uri
            .authority()
            .ok_or_else(|| format!("--url {url}: no host"))?;
        let authority = if auth.port().is_some() {
            auth.as_str().to_string()
        } else {
            format!("{}:80", auth.host())
        };
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        Ok(Target { authority, path })
    }
}

/// One keep-alive HTTP/1.1 connection, reopened after a failure.
struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// How a request ended.
enum Outcome {
    Status(u16),
    Connection,
    Timeout,
}

impl Conn {
    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, ()> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|_| ())?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|_| ())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or(())
    }

    async fn send(&mut self, req: http::Request<Full<Bytes>>) -> Outcome {
        let Ok(sender) = self.connect().await else {
            self.sender = None;
            return Outcome::Connection;
        };
        if sender.ready().await.is_err() {
            self.sender = None;
            return Outcome::Connection;
        }
        match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                // Read the whole answer so the connection can be reused.
                if resp.into_body().collect().await.is_err() {
                    self.sender = None;
                    return Outcome::Connection;
                }
                Outcome::Status(status)
            }
            Err(_) => {
                self.sender = None;
                Outcome::Connection
            }
        }
    }
}

/// Runs the load and returns its summary.
pub async fn run(cfg: RunConfig) -> Result<Summary, String> {
    cfg.series.validate(cfg.concurrency)?;
    if cfg.samples_per_request == 0 {
        return Err("--samples-per-request must be at least 1".into());
    }
    if cfg.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if cfg.tenants.len() > cfg.concurrency {
        return Err(format!(
            "{} tenants need --concurrency of at least {} (each worker sends as one tenant)",
            cfg.tenants.len(),
            cfg.tenants.len()
        ));
    }
    if cfg.duration.is_none() && cfg.requests.is_none() {
        return Err("set --duration or --requests".into());
    }
    let target = Target::parse(&cfg.url)?;
    let addr = tokio::net::lookup_host(&target.authority)
        .await
        .map_err(|e| format!("resolving {}: {e}", target.authority))?
        .next()
        .ok_or_else(|| format!("{} resolves to nothing", target.authority))?;

    // Build every worker's series before the clock starts.
    let start_ms = now_ms();
    let shards: Vec<Shard> = (0..cfg.concurrency)
        .map(|w| Shard::new(&cfg.series, cfg.protocol, w, cfg.concurrency, start_ms))
        .collect();

    let shared = Arc::new(Shared::default());
    let start = Instant::now();
    let deadline = cfg.duration.map(|d| start + d);
    let progress = cfg.progress.then(|| {
        let shared = shared.clone();
        tokio::spawn(async move { progress_loop(shared, start).await })
    });

    let mut handles = Vec::new();
    for (w, shard) in shards.into_iter().enumerate() {
        let cfg = cfg.clone();
        let shared = shared.clone();
        let target = target.clone();
        handles.push(tokio::spawn(async move {
            worker(w, shard, cfg, target, addr, shared, deadline).await
        }));
    }
    let mut total = WorkerResult::default();
    for h in handles {
        let r = h.await.map_err(|e| format!("worker failed: {e}"))?;
        total.hist.merge(&r.hist);
        for (k, v) in r.errors {
            *total.errors.entry(k).or_default() += v;
        }
        total.bytes_sent += r.bytes_sent;
        total.bytes_uncompressed += r.bytes_uncompressed;
        total.churned += r.churned;
        total.clock_waits += r.clock_waits;
    }
    let elapsed = start.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        p.abort();
    }
    let ms = |q: f64| total.hist.quantile(q) as f64 / 1000.0;
    let requests = shared.requests.load(Ordering::Relaxed);
    let error_count: u64 = total.errors.values().sum();
    Ok(Summary {
        protocol: cfg.protocol,
        series: cfg.series.series,
        concurrency: cfg.concurrency,
        samples_per_request: cfg.samples_per_request,
        duration_sec: elapsed,
        requests,
        requests_ok: requests - error_count,
        samples_sent: shared.samples_sent.load(Ordering::Relaxed),
        samples_accepted: shared.samples_accepted.load(Ordering::Relaxed),
        bytes_sent: total.bytes_sent,
        bytes_uncompressed: total.bytes_uncompressed,
        errors: total.errors,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: total.hist.max() as f64 / 1000.0,
        mean_ms: total.hist.mean() / 1000.0,
        churned_series: total.churned,
        clock_waits: total.clock_waits,
    })
}

/// Prints accepted samples/s, requests/s and errors of the last second, every second.
async fn progress_loop(shared: Arc<Shared>, start: Instant) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(start) + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let (mut last_acc, mut last_req, mut last_err) = (0, 0, 0);
    let mut last_t = 0.0;
    loop {
        tick.tick().await;
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let t = start.elapsed().as_secs_f64();
        let acc = shared.samples_accepted.load(Ordering::Relaxed);
        let req = shared.requests.load(Ordering::Relaxed);
        let err = shared.errors.load(Ordering::Relaxed);
        let dt = (t - last_t).max(1e-9);
        eprintln!(
            "[{t:6.1}s] {:>10.0} accepted samples/s {:>8.1} requests/s {:>6} errors (total {} accepted, {} errors)",
            (acc - last_acc) as f64 / dt,
            (req - last_req) as f64 / dt,
            err - last_err,
            acc,
            err
        );
        (last_acc, last_req, last_err, last_t) = (acc, req, err, t);
    }
}

async fn worker(
    w: usize,
    mut shard: Shard,
    cfg: RunConfig,
    target: Target,
    addr: SocketAddr,
    shared: Arc<Shared>,
    deadline: Option<Instant>,
) -> WorkerResult {
    let mut res = WorkerResult::default();
    let mut conn = Conn { addr, sender: None };
    let tenant = (!cfg.tenants.is_empty()).then(|| cfg.tenants[w % cfg.tenants.len()].clone());
    let n = cfg.samples_per_request;
    let mut body = Vec::new();
    let mut compressed = Vec::new();
    let mut snappy = snap::raw::Encoder::new();
    // Pacing: this worker's share of --rate, one request every `interval`.
    let interval = (cfg.rate > 0.0)
        .then(|| Duration::from_secs_f64(n as f64 * cfg.concurrency as f64 / cfg.rate));
    let mut next_send = Instant::now();
    let mut next_churn = Instant::now() + cfg.churn_interval;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if let Some(max) = cfg.requests {
            if shared.tickets.fetch_add(1, Ordering::Relaxed) >= max {
                break;
            }
        }
        if let Some(iv) = interval {
            let now = Instant::now();
            if next_send > now {
                let wake = deadline.map_or(next_send, |d| next_send.min(d));
                tokio::time::sleep_until(wake.into()).await;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
            } else if now - next_send > iv {
                // Too far behind (slow answers): do not burst to catch up.
                next_send = now;
            }
            next_send += iv;
        }
        if cfg.churn > 0.0 && Instant::now() >= next_churn {
            res.churned += shard.churn_percent(cfg.churn) as u64;
            next_churn += cfg.churn_interval;
        }
        // Keep timestamps under now + 5m: wait while even 1 ms per round would not fit.
        let ready = shard.ready_at(n);
        let mut now = now_ms();
        if ready > now {
            res.clock_waits += 1;
            tokio::time::sleep(Duration::from_millis((ready - now) as u64)).await;
            now = now_ms().max(ready);
        }
        shard.build(now, n, &mut body);
        compressed.resize(snap::raw::max_compress_len(body.len()), 0);
        let len = match snappy.compress(&body, &mut compressed) {
            Ok(len) => len,
            Err(e) => {
                eprintln!("snappy: {e}");
                break;
            }
        };
        let payload = Bytes::copy_from_slice(&compressed[..len]);
        let mut req = http::Request::post(target.path.as_str())
            .header(http::header::HOST, target.authority.as_str())
            .header(http::header::CONTENT_TYPE, cfg.protocol.content_type())
            .header(http::header::CONTENT_ENCODING, "snappy")
            .header(http::header::USER_AGENT, "ringest-loadtest")
            .header(
                "X-Prometheus-Remote-Write-Version",
                cfg.protocol.version_header(),
            );
        if let Some(t) = &tenant {
            req = req.header(cfg.tenant_header.as_str(), t.as_str());
        }
        let req = match req.body(Full::new(payload)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("building request: {e}");
                break;
            }
        };
        let t0 = Instant::now();
        let outcome = match tokio::time::timeout(cfg.timeout, conn.send(req)).await {
            Ok(o) => o,
            Err(_) => {
                conn.sender = None;
                Outcome::Timeout
            }
        };
        let micros = t0.elapsed().as_micros() as u64;
        res.bytes_sent += len as u64;
        res.bytes_uncompressed += body.len() as u64;
        shared.requests.fetch_add(1, Ordering::Relaxed);
        shared.samples_sent.fetch_add(n as u64, Ordering::Relaxed);
        let error = match outcome {
            Outcome::Status(s) => {
                res.hist.record(micros);
                if (200..300).contains(&s) {
                    shared
                        .samples_accepted
                        .fetch_add(n as u64, Ordering::Relaxed);
                    None
                } else {
                    Some(s.to_string())
                }
            }
            Outcome::Connection => Some("connection".to_string()),
            Outcome::Timeout => Some("timeout".to_string()),
        };
        if let Some(e) = error {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            let backoff = e == "connection";
            *res.errors.entry(e).or_default() += 1;
            if backoff {
                // The receiver is down or refusing: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    res
}
