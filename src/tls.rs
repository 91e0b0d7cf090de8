//! TLS for the remote-write listener, the gRPC listener and the router's gRPC clients (rustls with
//! ring): certificates and keys from PEM files, an
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
    let certs = load_certs("TLS certificate", cert)?;
    let key = load_key("TLS key", key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs("TLS client CA", ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
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
}
