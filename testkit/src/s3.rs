//! moto, an S3-protocol server, on a loopback port, spoken to with raw HTTP (path style).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::http::{http_request, urlencode};
use crate::net::free_port;
use crate::proc::Proc;
use crate::time::poll;

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
