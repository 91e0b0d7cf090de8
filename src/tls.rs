//! TLS for the remote-write listener, the HTTP listener (`--http.config`, an exporter-toolkit web
//! config), the gRPC listener and the router's gRPC clients (rustls with ring): certificates and
//! keys from PEM files, an
//! optional client CA that makes client certificates mandatory, and an accept loop that does
//! handshakes off the accepting task so one slow client cannot hold up the others.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Why a TLS configuration could not be built.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{what} {path}: {reason}")]
    Pem {
        /// Which flag's file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificates or keys.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA could not be used to verify clients.
    #[error("client CA: {0}")]
    ClientCa(String),
    /// A flag needs another one.
    #[error("{0}")]
    Flags(String),
    /// The `--http.config` web config file is unreadable, malformed or asks for something Ringest
    /// does not do.
    #[error("--http.config {path}: {reason}")]
    HttpConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        reason: String,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file.
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(certs)
}

/// The first private key of a PEM file.
pub fn load_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// A server configuration from `--*-tls-cert`, `--*-tls-key` and the optional `--*-tls-client-ca`
/// (which makes a client certificate signed by it mandatory). ALPN offers HTTP/2 and HTTP/1.1.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    build_server_config(cert, key, client_ca, false, rustls::DEFAULT_VERSIONS)
}

/// A server configuration: with `client_ca`, client certificates are verified against it, and
/// mandatory unless `optional_client_cert`.
fn build_server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    optional_client_cert: bool,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certs("TLS certificate", cert)?;
    let key = load_key("TLS key", key)?;
    let builder =
        rustls::ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions)?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs("TLS client CA", ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            }
            let mut verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            );
            if optional_client_cert {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server TLS configuration named by a cert/key/client-CA flag triple, if any: cert and key
/// go together, and a client CA needs them.
pub fn server_config_from_flags(
    prefix: &str,
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    match (cert, key) {
        (Some(c), Some(k)) => server_config(c, k, client_ca).map(Some),
        (None, None) if client_ca.is_none() => Ok(None),
        _ => Err(TlsError::Flags(format!(
            "--{prefix}-tls-cert and --{prefix}-tls-key go together, and --{prefix}-tls-client-ca needs both"
        ))),
    }
}

/// The exporter-toolkit web config of `--http.config` (Thanos's and Prometheus's format). Keys
/// the toolkit knows but Ringest does not implement are parsed only to be refused by name.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfig {
    tls_server_config: Option<WebTlsConfig>,
    http_server_config: Option<serde_yaml_ng::Value>,
    basic_auth_users: Option<serde_yaml_ng::Value>,
    rate_limit: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WebTlsConfig {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    // Known to exporter-toolkit, refused here.
    cert: Option<serde_yaml_ng::Value>,
    key: Option<serde_yaml_ng::Value>,
    client_ca: Option<serde_yaml_ng::Value>,
    cipher_suites: Option<serde_yaml_ng::Value>,
    curve_preferences: Option<serde_yaml_ng::Value>,
    prefer_server_cipher_suites: Option<serde_yaml_ng::Value>,
    client_allowed_sans: Option<serde_yaml_ng::Value>,
}

fn tls_version(field: &str, v: &str) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match v {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        _ => Err(format!(
            "tls_server_config.{field}: {v:?} is not supported: rustls supports TLS 1.2 and 1.3 only (TLS12, TLS13)"
        )),
    }
}

/// The HTTP listener's TLS from the exporter-toolkit web config file of `--http.config`:
/// `None` when the file configures no TLS (empty, or no `tls_server_config`), as in
/// exporter-toolkit. Relative file names are relative to the config file's directory. The
/// certificates are read once, here. Every key Ringest does not implement is refused.
pub fn http_config(path: &Path) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    let err = |reason: String| TlsError::HttpConfig {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let config: Option<WebConfig> =
        serde_yaml_ng::from_str(&text).map_err(|e| err(e.to_string()))?;
    let config = config.unwrap_or_default();
    let unsupported = |key: &str| err(format!("{key} is not supported by Ringest"));
    for (key, set) in [
        ("http_server_config", config.http_server_config.is_some()),
        ("basic_auth_users", config.basic_auth_users.is_some()),
        ("rate_limit", config.rate_limit.is_some()),
    ] {
        if set {
            return Err(unsupported(key));
        }
    }
    let Some(tls) = config.tls_server_config else {
        return Ok(None);
    };
    for (key, set) in [
        ("cert", tls.cert.is_some()),
        ("key", tls.key.is_some()),
        ("client_ca", tls.client_ca.is_some()),
        ("cipher_suites", tls.cipher_suites.is_some()),
        ("curve_preferences", tls.curve_preferences.is_some()),
        (
            "prefer_server_cipher_suites",
            tls.prefer_server_cipher_suites.is_some(),
        ),
        ("client_allowed_sans", tls.client_allowed_sans.is_some()),
    ] {
        if set {
            let hint = match key {
                "cert" | "key" | "client_ca" => " (use cert_file, key_file, client_ca_file)",
                _ => "",
            };
            return Err(err(format!(
                "tls_server_config.{key} is not supported by Ringest{hint}"
            )));
        }
    }
    let set = tls.cert_file.is_some()
        || tls.key_file.is_some()
        || tls.client_ca_file.is_some()
        || tls.client_auth_type.is_some()
        || tls.min_version.is_some()
        || tls.max_version.is_some();
    if !set {
        return Ok(None);
    }
    let dir = path.parent().unwrap_or(Path::new(""));
    let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
        return Err(err(
            "tls_server_config needs both cert_file and key_file".into()
        ));
    };
    let (cert, key) = (dir.join(cert), dir.join(key));
    let client_ca = tls.client_ca_file.as_ref().map(|c| dir.join(c));
    let auth = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let optional = match auth {
        "" | "NoClientCert" => {
            if client_ca.is_some() {
                return Err(err(
                    "tls_server_config.client_ca_file is set but client_auth_type is NoClientCert: \
                     set client_auth_type to RequireAndVerifyClientCert or VerifyClientCertIfGiven"
                        .into(),
                ));
            }
            false
        }
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            if client_ca.is_none() {
                return Err(err(format!(
                    "tls_server_config.client_auth_type {auth} needs tls_server_config.client_ca_file"
                )));
            }
            auth == "VerifyClientCertIfGiven"
        }
        "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => {
            return Err(err(format!(
                "tls_server_config.client_auth_type {auth} is not supported: Ringest does not \
                 accept unverified client certificates (use RequireAndVerifyClientCert or \
                 VerifyClientCertIfGiven with client_ca_file)"
            )));
        }
        other => {
            return Err(err(format!(
                "tls_server_config.client_auth_type {other:?} is unknown (NoClientCert, \
                 RequireAndVerifyClientCert, VerifyClientCertIfGiven)"
            )))
        }
    };
    let min = match &tls.min_version {
        Some(v) => tls_version("min_version", v).map_err(err)?,
        None => &rustls::version::TLS12,
    };
    let max = match &tls.max_version {
        Some(v) => tls_version("max_version", v).map_err(err)?,
        None => &rustls::version::TLS13,
    };
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| {
                (u16::from(min.version)..=u16::from(max.version)).contains(&u16::from(v.version))
            })
            .collect();
    if versions.is_empty() {
        return Err(err(
            "tls_server_config.min_version is above max_version".into()
        ));
    }
    build_server_config(&cert, &key, client_ca.as_deref(), optional, &versions)
        .map(Some)
        .map_err(|e| {
            let field = match &e {
                TlsError::Pem { what, .. } => match *what {
                    "TLS certificate" => "tls_server_config.cert_file: ",
                    "TLS key" => "tls_server_config.key_file: ",
                    _ => "tls_server_config.client_ca_file: ",
                },
                TlsError::ClientCa(_) => "tls_server_config.client_ca_file: ",
                _ => "tls_server_config: ",
            };
            err(format!("{field}{e}"))
        })
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP listener whose connections are TLS streams, for `axum::serve`.
pub struct TlsListener {
    local: SocketAddr,
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `listener`, handshaking each connection in its own task; failed handshakes are
    /// logged at debug level and dropped.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local, rx })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task ended (never, short of a panic): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The gRPC listener's TLS (`--grpc-server-tls-*`), if any; a client CA makes client certificates
/// mandatory. The files are parsed here so a bad one stops the start with its name.
pub fn grpc_server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> Result<Option<tonic::transport::ServerTlsConfig>, TlsError> {
    // Validates the files (and the pair) the same way as the HTTP listener.
    let Some(_) = server_config_from_flags("grpc-server", cert, key, client_ca)? else {
        return Ok(None);
    };
    let (cert, key) = (cert.expect("checked"), key.expect("checked"));
    let identity = tonic::transport::Identity::from_pem(
        read_pem("TLS certificate", cert)?,
        read_pem("TLS key", key)?,
    );
    let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = client_ca {
        config = config.client_ca_root(tonic::transport::Certificate::from_pem(read_pem(
            "TLS client CA",
            ca,
        )?));
    }
    Ok(Some(config))
}

/// Flags of the router's TLS to the receivers (`--remote-write.client-tls-*`, Thanos's names).
#[derive(Debug, Default, Clone)]
pub struct ClientTlsFlags<'a> {
    /// `--remote-write.client-tls-secure`.
    pub secure: bool,
    /// `--remote-write.client-tls-cert`.
    pub cert: Option<&'a Path>,
    /// `--remote-write.client-tls-key`.
    pub key: Option<&'a Path>,
    /// `--remote-write.client-tls-ca`.
    pub ca: Option<&'a Path>,
    /// `--remote-write.client-server-name`.
    pub server_name: Option<&'a str>,
}

/// The router's TLS to the receivers, if any flag asks for it. Without a CA the receivers'
/// certificates cannot be verified, so TLS needs `--remote-write.client-tls-ca`.
pub fn grpc_client_config(
    flags: &ClientTlsFlags<'_>,
) -> Result<Option<tonic::transport::ClientTlsConfig>, TlsError> {
    let wanted = flags.secure || flags.cert.is_some() || flags.key.is_some() || flags.ca.is_some();
    if !wanted {
        return Ok(None);
    }
    let Some(ca) = flags.ca else {
        return Err(TlsError::Flags(
            "TLS to the receivers needs --remote-write.client-tls-ca to verify them".into(),
        ));
    };
    load_certs("TLS CA", ca)?;
    let mut config = tonic::transport::ClientTlsConfig::new().ca_certificate(
        tonic::transport::Certificate::from_pem(read_pem("TLS CA", ca)?),
    );
    match (flags.cert, flags.key) {
        (Some(cert), Some(key)) => {
            load_certs("TLS client certificate", cert)?;
            load_key("TLS client key", key)?;
            config = config.identity(tonic::transport::Identity::from_pem(
                read_pem("TLS client certificate", cert)?,
                read_pem("TLS client key", key)?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(TlsError::Flags(
                "--remote-write.client-tls-cert and --remote-write.client-tls-key go together"
                    .into(),
            ))
        }
    }
    if let Some(name) = flags.server_name {
        config = config.domain_name(name);
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let p = |n: &str, t: &str| {
            let p = dir.join(n);
            std::fs::write(&p, t).unwrap();
            p
        };
        (
            p("cert.pem", &cert.pem()),
            p("key.pem", &key.serialize_pem()),
            p("ca.pem", &ca.pem()),
        )
    }

    #[test]
    fn server_flags_go_together_and_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = write_pki(dir.path());
        assert!(server_config_from_flags("x", None, None, None)
            .unwrap()
            .is_none());
        for (c, k, a) in [
            (Some(cert.as_path()), None, None),
            (None, Some(key.as_path()), None),
            (None, None, Some(ca.as_path())),
        ] {
            let e = server_config_from_flags("x", c, k, a)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("--x-tls-cert and --x-tls-key go together"),
                "{e}"
            );
        }
        assert!(server_config_from_flags("x", Some(&cert), Some(&key), None)
            .unwrap()
            .is_some());
        assert!(
            server_config_from_flags("x", Some(&cert), Some(&key), Some(&ca))
                .unwrap()
                .is_some()
        );
        let missing = dir.path().join("absent.pem");
        let e = server_config_from_flags("x", Some(&missing), Some(&key), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent.pem"), "{e}");
        // A key file given as the certificate holds no certificate.
        let e = server_config(&key, &key, None).unwrap_err().to_string();
        assert!(e.contains("key.pem"), "{e}");
        assert!(grpc_server_config(Some(&cert), Some(&key), Some(&ca))
            .unwrap()
            .is_some());
    }

    #[test]
    fn client_tls_needs_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = write_pki(dir.path());
        assert!(grpc_client_config(&ClientTlsFlags::default())
            .unwrap()
            .is_none());
        let e = grpc_client_config(&ClientTlsFlags {
            secure: true,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--remote-write.client-tls-ca"), "{e}");
        let e = grpc_client_config(&ClientTlsFlags {
            ca: Some(&ca),
            cert: Some(&cert),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("go together"), "{e}");
        assert!(grpc_client_config(&ClientTlsFlags {
            ca: Some(&ca),
            cert: Some(&cert),
            key: Some(&key),
            server_name: Some("ingestor"),
            ..Default::default()
        })
        .unwrap()
        .is_some());
    }

    /// Writes `yaml` as `web.yml` next to the PKI of `dir` and parses it.
    fn web(dir: &Path, yaml: &str) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
        let path = dir.join("web.yml");
        std::fs::write(&path, yaml).unwrap();
        http_config(&path).map_err(|e| {
            let e = e.to_string();
            assert!(e.contains("--http.config") && e.contains("web.yml"), "{e}");
            e
        })
    }

    /// A handshake in memory between `server` and a client trusting `ca`, with `client_cert`
    /// (cert, key) if given.
    fn handshake(
        server: Arc<rustls::ServerConfig>,
        ca: &Path,
        client_cert: Option<(&Path, &Path)>,
    ) -> Result<rustls::ProtocolVersion, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in load_certs("ca", ca).unwrap() {
            roots.add(c).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client_cert {
            Some((c, k)) => builder
                .with_client_auth_cert(load_certs("c", c).unwrap(), load_key("k", k).unwrap())
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut server = rustls::ServerConnection::new(server).unwrap();
        // The client sends application data so that TLS 1.3's late client-auth failure shows.
        use std::io::Write;
        client.writer().write_all(b"ping").unwrap();
        for _ in 0..20 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
                server.process_new_packets().map_err(|e| e.to_string())?;
            }
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().map_err(|e| e.to_string())?;
            }
            let mut got = [0u8; 4];
            if !server.is_handshaking()
                && std::io::Read::read(&mut server.reader(), &mut got).is_ok()
            {
                assert_eq!(&got, b"ping");
                return Ok(server.protocol_version().unwrap());
            }
        }
        Err("handshake did not finish".into())
    }

    #[test]
    fn http_config_builds_tls_from_a_web_config() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = write_pki(dir.path());
        // Relative names are relative to the config file's directory, not the working directory.
        let required = web(
            dir.path(),
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_ca_file: ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            required.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let e = handshake(required.clone(), &ca, None).unwrap_err();
        assert!(e.contains("no certificates"), "{e}");
        assert_eq!(
            handshake(required, &ca, Some((&cert, &key))).unwrap(),
            rustls::ProtocolVersion::TLSv1_3
        );

        let if_given = web(
            dir.path(),
            &format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_ca_file: ca.pem\n  client_auth_type: VerifyClientCertIfGiven\n  max_version: TLS12\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            handshake(if_given.clone(), &ca, None).unwrap(),
            rustls::ProtocolVersion::TLSv1_2
        );
        assert_eq!(
            handshake(if_given, &ca, Some((&cert, &key))).unwrap(),
            rustls::ProtocolVersion::TLSv1_2
        );
        // A client certificate from another CA is refused even though it is optional.
        let other = tempfile::tempdir().unwrap();
        let (ocert, okey, _) = write_pki(other.path());
        let if_given = web(
            dir.path(),
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  client_ca_file: ca.pem\n  client_auth_type: VerifyClientCertIfGiven\n",
        )
        .unwrap()
        .unwrap();
        assert!(handshake(if_given, &ca, Some((&ocert, &okey))).is_err());

        let plain_tls = web(
            dir.path(),
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  min_version: TLS13\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            handshake(plain_tls, &ca, Some((&cert, &key))).unwrap(),
            rustls::ProtocolVersion::TLSv1_3
        );

        // No TLS configured: plain HTTP, as with exporter-toolkit.
        for yaml in [
            "",
            "# nothing\n",
            "tls_server_config:\n",
            "tls_server_config: {}\n",
        ] {
            assert!(web(dir.path(), yaml).unwrap().is_none(), "{yaml:?}");
        }
    }

    #[test]
    fn http_config_refuses_what_it_does_not_do() {
        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path());
        let tls = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";
        let mtls =
            |auth: &str| format!("{tls}  client_ca_file: ca.pem\n  client_auth_type: {auth}\n");
        let cases: Vec<(String, &str)> = vec![
            ("tls_config: {}\n".into(), "unknown field `tls_config`"),
            (format!("{tls}  cert_fille: x\n"), "unknown field `cert_fille`"),
            (format!("{tls}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"), "tls_server_config.cipher_suites is not supported"),
            (format!("{tls}  curve_preferences: [X25519]\n"), "tls_server_config.curve_preferences is not supported"),
            (format!("{tls}  prefer_server_cipher_suites: true\n"), "tls_server_config.prefer_server_cipher_suites is not supported"),
            (format!("{tls}  client_allowed_sans: [a]\n"), "tls_server_config.client_allowed_sans is not supported"),
            ("tls_server_config:\n  cert: inline\n  key_file: key.pem\n".into(), "tls_server_config.cert is not supported by Ringest (use cert_file"),
            (format!("{tls}http_server_config:\n  http2: true\n"), "http_server_config is not supported"),
            (format!("{tls}http_server_config:\n  headers: {{X-Frame-Options: deny}}\n"), "http_server_config is not supported"),
            ("basic_auth_users:\n  alice: $2y$10$x\n".into(), "basic_auth_users is not supported"),
            ("rate_limit:\n  burst: 1\n".into(), "rate_limit is not supported"),
            (mtls("RequestClientCert"), "RequestClientCert is not supported: Ringest does not accept unverified client certificates"),
            (mtls("RequireAnyClientCert"), "RequireAnyClientCert is not supported: Ringest does not accept unverified client certificates"),
            (mtls("Sometimes"), "client_auth_type \"Sometimes\" is unknown"),
            (format!("{tls}  client_ca_file: ca.pem\n"), "client_ca_file is set but client_auth_type is NoClientCert"),
            (mtls("NoClientCert"), "client_ca_file is set but client_auth_type is NoClientCert"),
            (format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"), "client_auth_type RequireAndVerifyClientCert needs tls_server_config.client_ca_file"),
            (format!("{tls}  client_auth_type: VerifyClientCertIfGiven\n"), "client_auth_type VerifyClientCertIfGiven needs tls_server_config.client_ca_file"),
            (format!("{tls}  min_version: TLS10\n"), "tls_server_config.min_version: \"TLS10\" is not supported: rustls supports TLS 1.2 and 1.3 only"),
            (format!("{tls}  max_version: TLS11\n"), "tls_server_config.max_version: \"TLS11\" is not supported: rustls supports TLS 1.2 and 1.3 only"),
            (format!("{tls}  min_version: TLS13\n  max_version: TLS12\n"), "min_version is above max_version"),
            ("tls_server_config:\n  cert_file: cert.pem\n".into(), "needs both cert_file and key_file"),
            ("tls_server_config:\n  min_version: TLS12\n".into(), "needs both cert_file and key_file"),
            ("tls_server_config:\n  cert_file: absent.pem\n  key_file: key.pem\n".into(), "tls_server_config.cert_file: TLS certificate"),
            ("tls_server_config:\n  cert_file: cert.pem\n  key_file: absent.pem\n".into(), "tls_server_config.key_file: TLS key"),
            (format!("{tls}  client_ca_file: absent.pem\n  client_auth_type: RequireAndVerifyClientCert\n"), "tls_server_config.client_ca_file: TLS client CA"),
            ("tls_server_config: [\n".into(), "web.yml: "),
        ];
        for (yaml, want) in cases {
            let e = web(dir.path(), &yaml).unwrap_err();
            assert!(e.contains(want), "{yaml:?}: {e:?} lacks {want:?}");
        }
        let e = http_config(&dir.path().join("missing.yml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--http.config") && e.contains("missing.yml"),
            "{e}"
        );
    }
}
