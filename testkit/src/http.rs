//! A tiny blocking HTTP/1.1 client (one request per connection, every socket with a timeout), a raw
//! request sender for what a regular client cannot send, and `/metrics` scraping.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::net::connect;
use crate::proc::Proc;
use crate::time::poll;

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

    /// Whether the status is a success (2xx).
    pub fn is_2xx(&self) -> bool {
        (200..300).contains(&self.status)
    }
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
