//! TLS on the remote-write listener, with the real binary and certificates generated at test time
//! (`rcgen`: a CA, a server certificate for 127.0.0.1, a client certificate; no key is committed):
//!
//! - HTTPS remote write verified against the CA works, and the samples read back;
//! - plain HTTP to the TLS port gets no HTTP answer;
//! - with `--remote-write.server-tls-client-ca`, a client without a certificate is refused and one
//!   with a certificate signed by the CA writes;
//! - `--http.config` (exporter-toolkit web config) with `RequireAndVerifyClientCert`: a real
//!   Prometheus reads back over HTTPS with its client certificate, `/metrics` answers only a client
//!   with a certificate, plain HTTP gets no answer, and bad web configs stop the start.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::support::ringest_bin;
use proto::prompb::WriteRequest;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use testkit::prelude::*;

/// PEM files of a test PKI.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ringest test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "server");
    let (client_cert, client_key) = leaf(vec!["client".into()], "client");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server-key.pem", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client-key.pem", &client_key),
    }
}

fn client_config(pki: &Pki, with_cert: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = if with_cert {
        let certs = CertificateDer::pem_file_iter(&pki.client_cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&pki.client_key).unwrap();
        builder.with_client_auth_cert(certs, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

/// One HTTPS request; the status and the whole answer, or why it failed.
fn https_request(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), String> {
    let conn = rustls::ClientConnection::new(config, ServerName::try_from("127.0.0.1").unwrap())
        .map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes())
        .and_then(|_| tls.write_all(body))
        .and_then(|_| tls.flush())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    if let Err(e) = tls.read_to_end(&mut raw) {
        // A server closing without close_notify after a full answer is fine.
        if raw.is_empty() || e.kind() != std::io::ErrorKind::UnexpectedEof {
            return Err(format!("read: {e}"));
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    Ok((status, text))
}

/// One HTTPS POST of a remote-write body; the status and body, or why it failed.
fn https_write(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    req: &WriteRequest,
) -> Result<(u16, String), String> {
    https_request(
        addr,
        config,
        "POST",
        "/api/v1/receive",
        &WRITE_HEADERS,
        &encode_write(req),
    )
}

fn https_get(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(u16, String), String> {
    https_request(addr, config, "GET", path, &[], &[])
}

fn one_series(name: &str, t: i64) -> WriteRequest {
    WriteRequest {
        timeseries: vec![series(&[("__name__", name), ("job", "tls")], &[(t, 1.0)])],
        ..Default::default()
    }
}

fn start(dir: &Path, tls: &[String]) -> (Proc, String, String) {
    let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
    let mut args = server_args("all-in-one", &rw, &http, &grpc);
    args.push(format!("--tsdb.path={}", dir.join("data").display()));
    args.extend(tls.iter().cloned());
    let mut proc = Proc::spawn("aio", ringest_bin(), &args, &dir.join("logs"));
    wait_http_ok(&http, "/-/ready", Duration::from_secs(60), Some(&mut proc));
    (proc, rw, http)
}

fn server_flags(pki: &Pki) -> Vec<String> {
    vec![
        format!(
            "--remote-write.server-tls-cert={}",
            pki.server_cert.display()
        ),
        format!("--remote-write.server-tls-key={}", pki.server_key.display()),
    ]
}

#[test]
fn https_remote_write_and_plain_http_refused() {
    let dir = test_dir("tls");
    let pki = make_pki(dir.path());
    let (_proc, rw, http) = start(dir.path(), &server_flags(&pki));
    let t = now_ms();
    let (status, text) =
        https_write(&rw, client_config(&pki, false), &one_series("over_tls", t)).unwrap();
    assert_eq!(status, 204, "{text}");
    let read = read_all(&http, None, t - 60_000, t + 60_000).unwrap();
    assert_eq!(read.len(), 1, "{read:?}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = http_request(
        "POST",
        &rw,
        "/api/v1/receive",
        &WRITE_HEADERS,
        &encode_write(&one_series("plain", t)),
        Duration::from_secs(10),
    );
    assert!(
        plain.is_err(),
        "plain HTTP answered: {:?}",
        plain.map(|r| r.status)
    );
}

#[test]
fn client_ca_requires_a_client_certificate() {
    let dir = test_dir("mtls");
    let pki = make_pki(dir.path());
    let mut flags = server_flags(&pki);
    flags.push(format!(
        "--remote-write.server-tls-client-ca={}",
        pki.ca.display()
    ));
    let (_proc, rw, http) = start(dir.path(), &flags);
    let t = now_ms();
    let refused = https_write(&rw, client_config(&pki, false), &one_series("no_cert", t));
    assert!(
        refused.is_err(),
        "a client without a certificate wrote: {refused:?}"
    );
    let (status, text) =
        https_write(&rw, client_config(&pki, true), &one_series("with_cert", t)).unwrap();
    assert_eq!(status, 204, "{text}");
    let read = read_all(&http, None, t - 60_000, t + 60_000).unwrap();
    let names: Vec<&str> = read.keys().map(|l| l["__name__"].as_str()).collect();
    assert_eq!(names, ["with_cert"]);
}

#[test]
fn tls_flags_must_go_together() {
    let dir = test_dir("tls-flags");
    let pki = make_pki(dir.path());
    let cert = format!(
        "--remote-write.server-tls-cert={}",
        pki.server_cert.display()
    );
    let data = format!("--tsdb.path={}", dir.path().join("data").display());
    let done = run_to_exit(
        ringest_bin(),
        &["all-in-one", &cert, &data],
        b"",
        None,
        Duration::from_secs(30),
    );
    assert!(!done.status.success());
    assert!(done.stderr.contains("go together"), "{}", done.stderr);
}

#[test]
fn router_writes_to_an_ingestor_requiring_mtls_only_with_a_client_certificate() {
    let dir = test_dir("grpc-mtls");
    let pki = make_pki(dir.path());
    let ca = pki.ca.display().to_string();
    let ing_flags = [
        format!("--grpc-server-tls-cert={}", pki.server_cert.display()),
        format!("--grpc-server-tls-key={}", pki.server_key.display()),
        format!("--grpc-server-tls-client-ca={ca}"),
    ];
    let ing_flags: Vec<&str> = ing_flags.iter().map(String::as_str).collect();
    let ing = Ingestor::start(&ringest_bin(), "ing", dir.path(), &ing_flags);

    let with_cert = [
        format!(
            "--remote-write.client-tls-cert={}",
            pki.client_cert.display()
        ),
        format!("--remote-write.client-tls-key={}", pki.client_key.display()),
        format!("--remote-write.client-tls-ca={ca}"),
    ];
    let with_cert: Vec<&str> = with_cert.iter().map(String::as_str).collect();
    let good = Router::start(
        &ringest_bin(),
        "router-mtls",
        dir.path(),
        &[&ing.grpc],
        1,
        &with_cert,
    );
    let t = now_ms();
    let r = remote_write(&good.rw, Some("team"), &one_series("via_mtls", t));
    assert_eq!(r.status, 204, "{}", r.text());
    let read = read_all(&ing.http, Some("team"), t - 60_000, t + 60_000).unwrap();
    assert_eq!(read.len(), 1, "{read:?}");
    // Reads through the router use the same mTLS channel.
    let read = read_all(&good.http, Some("team"), t - 60_000, t + 60_000).unwrap();
    assert_eq!(read.len(), 1, "{read:?}");

    // TLS but no client certificate, and no TLS at all: both refused by the ingestor.
    let ca_only = format!("--remote-write.client-tls-ca={ca}");
    for (name, flags) in [
        (
            "router-no-cert",
            vec![ca_only.as_str(), "--receive-forward-timeout=2s"],
        ),
        ("router-plain", vec!["--receive-forward-timeout=2s"]),
    ] {
        let bad = Router::start(&ringest_bin(), name, dir.path(), &[&ing.grpc], 1, &flags);
        let r = remote_write(&bad.rw, Some("team"), &one_series(name, t));
        assert!(r.status >= 500, "{name}: {} {}", r.status, r.text());
    }
    let read = read_all(&ing.http, Some("team"), t - 60_000, t + 60_000).unwrap();
    assert_eq!(read.len(), 1, "only the mTLS router's series: {read:?}");
}

/// Starts `ringest ingest` with `--http.config` = `web_yaml` (written next to the PKI, so relative
/// names in it are the PKI's files) and waits for `/-/ready` over HTTPS with the client
/// certificate.
fn start_https_ingestor(dir: &Path, pki: &Pki, web_yaml: &str) -> (Proc, String, String) {
    let web = dir.join("web.yml");
    std::fs::write(&web, web_yaml).unwrap();
    let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
    let mut args = server_args("ingest", &rw, &http, &grpc);
    args.extend([
        format!("--tsdb.path={}", dir.join("data").display()),
        format!("--http.config={}", web.display()),
    ]);
    let mut proc = Proc::spawn("ing-https", ringest_bin(), &args, &dir.join("logs"));
    let mut last = String::new();
    let ready = poll(Duration::from_secs(60), Duration::from_millis(100), || {
        proc.assert_running();
        match https_get(&http, client_config(pki, true), "/-/ready") {
            Ok((200, _)) => Some(()),
            Ok((_, text)) => {
                last = text;
                None
            }
            Err(e) => {
                last = e;
                None
            }
        }
    });
    assert!(
        ready.is_some(),
        "https://{http}/-/ready not 200 (last: {last})\n{}",
        proc.logs()
    );
    (proc, rw, http)
}

#[test]
fn http_listener_tls_with_client_certificates_serves_prometheus_remote_read() {
    let dir = test_dir("http-tls");
    let pki = make_pki(dir.path());
    // Relative names: resolved against the web config's directory, not the working directory.
    let web = "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  client_ca_file: ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n";
    let (_proc, rw, http) = start_https_ingestor(dir.path(), &pki, web);

    // Samples through the plain remote-write listener.
    let t0 = (now_ms() - 120_000) / 1000 * 1000;
    let points = |vals: [f64; 3]| {
        vals.iter()
            .enumerate()
            .map(|(i, v)| (t0 + 15_000 * i as i64, *v))
            .collect::<Vec<_>>()
    };
    let req = WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "tls_read"), ("job", "tls"), ("instance", "a")],
                &points([1.5, 2.25, 4.0]),
            ),
            series(
                &[("__name__", "tls_read"), ("job", "tls"), ("instance", "b")],
                &points([-3.0, 0.125, 1e6]),
            ),
        ],
        ..Default::default()
    };
    let r = remote_write(&rw, None, &req);
    assert_eq!(r.status, 204, "{}", r.text());

    // /metrics over HTTPS with a client certificate: the ringest metrics, counting the 6 samples.
    let (status, text) = https_get(&http, client_config(&pki, true), "/metrics").unwrap();
    assert_eq!(status, 200, "{text}");
    let received: f64 = text
        .lines()
        .filter(|l| l.starts_with("ringest_samples_received_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(received, 6.0, "{text}");
    // Without a client certificate the handshake is refused; plain HTTP gets no HTTP answer.
    let refused = https_get(&http, client_config(&pki, false), "/metrics");
    assert!(
        refused.is_err(),
        "answered without a client certificate: {refused:?}"
    );
    let plain = http_get(&http, "/metrics");
    assert!(
        plain.is_err(),
        "plain HTTP answered: {:?}",
        plain.map(|r| r.status)
    );

    // A real Prometheus (2.42) reads back over HTTPS with its client certificate.
    let config = format!(
        "{}    tls_config:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
        reader_config(&format!("https://{http}/api/v1/read")),
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let prom = Prometheus::start("prom-reader", dir.path(), &free_addr(), &config, &[]);
    let got = prom.query_range("tls_read", t0, t0 + 30_000, 15_000);
    let want = |instance: &str, vals: [&str; 3]| MatrixSeries {
        labels: [
            ("__name__", "tls_read"),
            ("instance", instance),
            ("job", "tls"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        values: vals
            .iter()
            .enumerate()
            .map(|(i, v)| (t0 + 15_000 * i as i64, v.to_string()))
            .collect(),
    };
    assert_eq!(
        got,
        vec![
            want("a", ["1.5", "2.25", "4"]),
            want("b", ["-3", "0.125", "1000000"]),
        ]
    );
    let sum = prom.query_vector("sum(tls_read)", t0 + 30_000);
    assert_eq!(sum, vec![(Labels::new(), "1000004".to_string())]);
}

#[test]
fn bad_http_config_stops_the_start() {
    let dir = test_dir("http-tls-bad");
    make_pki(dir.path());
    let data = format!("--tsdb.path={}", dir.path().join("data").display());
    let tls = "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n";
    for (name, yaml, want) in [
        (
            "unknown-key",
            format!("{tls}  cert_fille: server.pem\n"),
            "unknown field `cert_fille`",
        ),
        (
            "missing-cert",
            "tls_server_config:\n  cert_file: absent.pem\n  key_file: server-key.pem\n".into(),
            "tls_server_config.cert_file: TLS certificate",
        ),
        (
            "no-client-ca",
            format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"),
            "RequireAndVerifyClientCert needs tls_server_config.client_ca_file",
        ),
    ] {
        let path = dir.path().join(format!("{name}.yml"));
        std::fs::write(&path, yaml).unwrap();
        let flag = format!("--http.config={}", path.display());
        let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
        let addrs = [
            format!("--remote-write.address={rw}"),
            format!("--http-address={http}"),
            format!("--grpc-address={grpc}"),
        ];
        let mut args = vec!["ingest", &data, &flag];
        args.extend(addrs.iter().map(String::as_str));
        let done = run_to_exit(ringest_bin(), &args, b"", None, Duration::from_secs(30));
        assert!(!done.status.success(), "{name}: {}", done.stderr);
        assert!(
            done.stderr
                .contains(&format!("--http.config {}", path.display()))
                && done.stderr.contains(want),
            "{name}: {}",
            done.stderr
        );
    }
}
