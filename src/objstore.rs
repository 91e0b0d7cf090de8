//! Object storage for shipped blocks, configured like Thanos (`--objstore.config`).
//!
//! The configuration is Thanos objstore's "bucket config" YAML:
//!
//! ```yaml
//! type: S3            # FILESYSTEM | S3 | GCS | AZURE, any case
//! config:
//!   bucket: metrics
//!   endpoint: s3.eu-west-1.amazonaws.com
//! prefix: some/prefix # optional
//! ```
//!
//! Like Thanos, parsing is strict: an unknown field is an error naming it. Known Thanos fields that
//! Ringest does not implement (tracing, HTTP transport tuning, …) are accepted with a warning, so an
//! existing Thanos config keeps working. [`parse_bucket_config`] turns the YAML into a [`Bucket`]:
//! an [`ObjectStore`] plus the prefix every object key goes under.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use serde::Deserialize;
use serde_yaml_ng::Value;

/// Default size of the parts of a multipart upload (files larger than this are streamed in parts).
pub const DEFAULT_PART_SIZE: usize = 16 * 1024 * 1024;
/// Smallest part size S3 accepts (except for the last part).
const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Per-request timeout for cloud stores (Thanos' default transport waits 2 min for headers).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Errors from reading an objstore configuration or creating its store.
#[derive(Debug, thiserror::Error)]
pub enum ObjstoreError {
    /// The YAML is malformed, has an unknown or mistyped field, or a value is invalid.
    #[error("objstore config: {0}")]
    Invalid(String),
    /// `type` names a provider Ringest does not support.
    #[error("objstore config: bucket type {0:?} is not supported (supported: FILESYSTEM, S3, GCS, AZURE)")]
    UnsupportedType(String),
    /// A provider's configuration is invalid (`kind` is "S3", "GCS", …).
    #[error("objstore {kind} config: {msg}")]
    Config {
        /// Provider name.
        kind: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// The object store client could not be created.
    #[error("objstore {kind}: {source}")]
    Store {
        /// Provider name.
        kind: &'static str,
        /// Underlying error.
        #[source]
        source: object_store::Error,
    },
    /// A local directory could not be created or read.
    #[error("objstore FILESYSTEM: {path}: {source}")]
    Io {
        /// Directory concerned.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// An object store and the prefix under which blocks go.
#[derive(Clone)]
pub struct Bucket {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Prefix of every object key (empty for none); a block's files are `<prefix>/<ULID>/…`.
    pub prefix: object_store::path::Path,
    /// Provider: "FILESYSTEM", "S3", "GCS" or "AZURE".
    pub kind: &'static str,
    /// Where the bucket is, for logs (never contains secrets).
    pub description: String,
    /// Part size for multipart uploads (S3 `part_size`, GCS `chunk_size_bytes`, else 16 MiB).
    pub part_size: usize,
    /// Warnings about accepted but unimplemented settings (already logged when parsing).
    pub warnings: Vec<String>,
    /// The directory of a FILESYSTEM bucket (`None` for remote stores).
    pub local_dir: Option<PathBuf>,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket")
            .field("kind", &self.kind)
            .field("description", &self.description)
            .field("prefix", &self.prefix.as_ref())
            .finish_non_exhaustive()
    }
}

impl Bucket {
    /// The object key `<prefix>/<rel>` (`rel` is `/`-separated, e.g. `<ULID>/chunks/000001`).
    pub fn key(&self, rel: &str) -> object_store::path::Path {
        let mut parts: Vec<object_store::path::PathPart<'static>> = self
            .prefix
            .parts()
            .map(|p| p.as_ref().to_string().into())
            .collect();
        parts.extend(
            rel.split('/')
                .filter(|s| !s.is_empty())
                .map(|s| object_store::path::PathPart::from(s.to_string())),
        );
        object_store::path::Path::from_iter(parts)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketConfigYaml {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    prefix: String,
}

/// Thanos `exthttp.HTTPConfig`: only `insecure_skip_verify` is implemented.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpConfigYaml {
    idle_conn_timeout: Option<Value>,
    response_header_timeout: Option<Value>,
    #[serde(default)]
    insecure_skip_verify: bool,
    tls_handshake_timeout: Option<Value>,
    expect_continue_timeout: Option<Value>,
    max_idle_conns: Option<Value>,
    max_idle_conns_per_host: Option<Value>,
    max_conns_per_host: Option<Value>,
    tls_config: Option<TlsConfigYaml>,
    disable_compression: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsConfigYaml {
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    server_name: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

impl HttpConfigYaml {
    /// Client options for this transport config; unimplemented settings are reported in `warn`.
    fn client_options(
        &self,
        kind: &'static str,
        allow_http: bool,
        warn: &mut Vec<String>,
    ) -> Result<ClientOptions, ObjstoreError> {
        let mut opts = ClientOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_allow_http(allow_http);
        let mut ignored = Vec::new();
        for (name, set) in [
            ("idle_conn_timeout", self.idle_conn_timeout.is_some()),
            (
                "response_header_timeout",
                self.response_header_timeout.is_some(),
            ),
            (
                "tls_handshake_timeout",
                self.tls_handshake_timeout.is_some(),
            ),
            (
                "expect_continue_timeout",
                self.expect_continue_timeout.is_some(),
            ),
            ("max_idle_conns", self.max_idle_conns.is_some()),
            (
                "max_idle_conns_per_host",
                self.max_idle_conns_per_host.is_some(),
            ),
            ("max_conns_per_host", self.max_conns_per_host.is_some()),
            ("disable_compression", self.disable_compression.is_some()),
        ] {
            if set {
                ignored.push(name);
            }
        }
        let mut skip_verify = self.insecure_skip_verify;
        if let Some(tls) = &self.tls_config {
            skip_verify |= tls.insecure_skip_verify;
            if tls.cert_file.is_some() || tls.key_file.is_some() {
                return Err(ObjstoreError::Config {
                    kind,
                    msg: "http_config.tls_config: client certificates (cert_file, key_file) are not supported".into(),
                });
            }
            if let Some(ca) = &tls.ca_file {
                let pem = std::fs::read(ca).map_err(|e| ObjstoreError::Config {
                    kind,
                    msg: format!("http_config.tls_config.ca_file {ca}: {e}"),
                })?;
                let cert = object_store::Certificate::from_pem(&pem).map_err(|e| {
                    ObjstoreError::Config {
                        kind,
                        msg: format!("http_config.tls_config.ca_file {ca}: {e}"),
                    }
                })?;
                opts = opts.with_root_certificate(cert);
            }
            if tls.server_name.is_some() {
                ignored.push("tls_config.server_name");
            }
        }
        if skip_verify {
            opts = opts.with_allow_invalid_certificates(true);
        }
        if !ignored.is_empty() {
            warn.push(format!(
                "http_config: {} not implemented, ignored",
                ignored.join(", ")
            ));
        }
        Ok(opts)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesystemYaml {
    #[serde(default)]
    directory: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SseYaml {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    kms_key_id: String,
    kms_encryption_context: Option<BTreeMap<String, String>>,
    #[serde(default)]
    encryption_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Yaml {
    #[serde(default)]
    bucket: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    region: String,
    disable_dualstack: Option<bool>,
    #[serde(default)]
    aws_sdk_auth: bool,
    #[serde(default)]
    access_key: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    signature_version2: bool,
    #[serde(default)]
    secret_key: String,
    #[serde(default)]
    session_token: String,
    put_user_metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    http_config: HttpConfigYaml,
    trace: Option<Value>,
    list_objects_version: Option<String>,
    bucket_lookup_type: Option<String>,
    send_content_md5: Option<bool>,
    disable_multipart: Option<bool>,
    part_size: Option<u64>,
    #[serde(default)]
    sse_config: SseYaml,
    #[serde(default)]
    sts_endpoint: String,
    #[serde(default)]
    max_retries: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GcsYaml {
    #[serde(default)]
    bucket: String,
    #[serde(default)]
    service_account: String,
    #[serde(default)]
    use_grpc: bool,
    grpc_conn_pool_size: Option<Value>,
    #[serde(default)]
    http_config: HttpConfigYaml,
    chunk_size_bytes: Option<u64>,
    #[serde(default)]
    max_retries: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AzureYaml {
    #[serde(default)]
    az_tenant_id: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    storage_account: String,
    #[serde(default)]
    storage_account_key: String,
    #[serde(default)]
    storage_connection_string: String,
    storage_create_container: Option<bool>,
    #[serde(default)]
    container: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    user_assigned_id: String,
    #[serde(default)]
    max_retries: i64,
    reader_config: Option<Value>,
    pipeline_config: Option<Value>,
    #[serde(default)]
    http_config: HttpConfigYaml,
    msi_resource: Option<Value>,
}

/// Installs rustls' ring provider as the process default (reqwest is built without one).
fn install_tls_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn yaml_error(kind: Option<&'static str>, e: serde_yaml_ng::Error) -> ObjstoreError {
    match kind {
        Some(kind) => ObjstoreError::Config {
            kind,
            msg: e.to_string(),
        },
        None => ObjstoreError::Invalid(e.to_string()),
    }
}

fn provider_config<T: for<'de> Deserialize<'de>>(
    kind: &'static str,
    config: Value,
) -> Result<T, ObjstoreError> {
    let config = match config {
        Value::Null => Value::Mapping(Default::default()),
        v => v,
    };
    serde_yaml_ng::from_value(config).map_err(|e| yaml_error(Some(kind), e))
}

fn required(kind: &'static str, field: &str, value: &str) -> Result<(), ObjstoreError> {
    if value.is_empty() {
        return Err(ObjstoreError::Config {
            kind,
            msg: format!("`{field}` is required"),
        });
    }
    Ok(())
}

fn config_err(kind: &'static str, msg: impl Into<String>) -> ObjstoreError {
    ObjstoreError::Config {
        kind,
        msg: msg.into(),
    }
}

fn parse_prefix(prefix: &str) -> Result<object_store::path::Path, ObjstoreError> {
    // Thanos trims leading and trailing slashes; a prefix of only slashes is no prefix.
    let trimmed = prefix.trim_matches('/');
    object_store::path::Path::parse(trimmed)
        .map_err(|e| ObjstoreError::Invalid(format!("prefix {prefix:?}: {e}")))
}

/// Thanos' retry count (0 = the client default) as a retry config.
fn retry_config(max_retries: i64) -> Option<RetryConfig> {
    (max_retries > 0).then(|| RetryConfig {
        max_retries: max_retries as usize,
        ..RetryConfig::default()
    })
}

/// Parses a Thanos objstore bucket config (YAML) and creates its store.
///
/// Unimplemented but known Thanos settings are logged as warnings and listed in
/// [`Bucket::warnings`]. No request is made: a wrong endpoint or bad credentials show on first use.
pub fn parse_bucket_config(yaml: &str) -> Result<Bucket, ObjstoreError> {
    let top: BucketConfigYaml = serde_yaml_ng::from_str(yaml).map_err(|e| yaml_error(None, e))?;
    let prefix = parse_prefix(&top.prefix)?;
    let mut warnings = Vec::new();
    let mut bucket = match top.kind.to_ascii_uppercase().as_str() {
        "FILESYSTEM" => {
            let c: FilesystemYaml = provider_config("FILESYSTEM", top.config)?;
            required("FILESYSTEM", "directory", &c.directory)?;
            local_bucket(Path::new(&c.directory))?
        }
        "S3" => s3_bucket(provider_config("S3", top.config)?, &mut warnings)?,
        "GCS" => gcs_bucket(provider_config("GCS", top.config)?, &mut warnings)?,
        "AZURE" => azure_bucket(provider_config("AZURE", top.config)?, &mut warnings)?,
        "" => return Err(ObjstoreError::Invalid("`type` is required".into())),
        _ => return Err(ObjstoreError::UnsupportedType(top.kind)),
    };
    if !prefix.as_ref().is_empty() {
        bucket.description = format!("{} prefix {:?}", bucket.description, prefix.as_ref());
    }
    bucket.prefix = prefix;
    for w in &warnings {
        tracing::warn!(kind = bucket.kind, "objstore {} config: {w}", bucket.kind);
    }
    bucket.warnings = warnings;
    Ok(bucket)
}

/// A FILESYSTEM bucket in `dir` (created if missing), no prefix.
pub fn local_bucket(dir: &Path) -> Result<Bucket, ObjstoreError> {
    let io = |source| ObjstoreError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let abs = std::fs::canonicalize(dir).map_err(io)?;
    let store = LocalFileSystem::new_with_prefix(&abs).map_err(|source| ObjstoreError::Store {
        kind: "FILESYSTEM",
        source,
    })?;
    Ok(Bucket {
        store: Arc::new(store),
        prefix: object_store::path::Path::default(),
        kind: "FILESYSTEM",
        description: format!("FILESYSTEM directory {}", abs.display()),
        part_size: DEFAULT_PART_SIZE,
        warnings: Vec::new(),
        local_dir: Some(abs),
    })
}

/// Region from an AWS endpoint such as `s3.eu-west-1.amazonaws.com` or `s3-eu-west-1.amazonaws.com`.
fn region_from_endpoint(host: &str) -> Option<String> {
    let rest = host.strip_suffix(".amazonaws.com")?;
    let labels: Vec<&str> = rest.split('.').collect();
    let pos = labels
        .iter()
        .position(|l| *l == "s3" || l.starts_with("s3-"))?;
    if let Some(r) = labels[pos].strip_prefix("s3-") {
        return (r != "external-1" && !r.is_empty()).then(|| r.to_string());
    }
    labels[pos + 1..]
        .iter()
        .find(|l| **l != "dualstack" && **l != "fips" && !l.is_empty())
        .map(|l| l.to_string())
}

fn is_ip_or_localhost(endpoint: &str) -> bool {
    let host = if let Some(rest) = endpoint.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if endpoint.matches(':').count() == 1 {
        endpoint.split(':').next().unwrap_or(endpoint)
    } else {
        endpoint
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok()
}

fn s3_bucket(c: S3Yaml, warn: &mut Vec<String>) -> Result<Bucket, ObjstoreError> {
    const K: &str = "S3";
    required(K, "bucket", &c.bucket)?;
    required(K, "endpoint", &c.endpoint)?;
    if c.signature_version2 {
        return Err(config_err(
            K,
            "signature_version2: true is not supported (only AWS Signature Version 4)",
        ));
    }
    if c.aws_sdk_auth && !c.access_key.is_empty() {
        return Err(config_err(
            K,
            "aws_sdk_auth and access_key are mutually exclusive",
        ));
    }
    if c.access_key.is_empty() != c.secret_key.is_empty() {
        return Err(config_err(
            K,
            "access_key and secret_key must be set together (or neither, to use the environment or instance credentials)",
        ));
    }
    if c.endpoint.contains("://") || c.endpoint.contains('/') {
        return Err(config_err(
            K,
            format!(
                "endpoint {:?} must be a host[:port] without scheme or path (use `insecure: true` for http)",
                c.endpoint
            ),
        ));
    }
    let path_style = match c.bucket_lookup_type.as_deref() {
        None | Some("auto") => {
            // Like minio-go: virtual-hosted style for AWS (if the bucket name allows it), path
            // style for other endpoints.
            !c.endpoint.ends_with("amazonaws.com") || c.bucket.contains('.')
        }
        // A bucket cannot be a subdomain of an IP address.
        Some("virtual-hosted") if is_ip_or_localhost(&c.endpoint) => {
            warn.push(format!(
                "bucket_lookup_type: virtual-hosted is impossible with endpoint {:?}, using path style",
                c.endpoint
            ));
            true
        }
        Some("virtual-hosted") => false,
        Some("path") => true,
        Some(other) => {
            return Err(config_err(
                K,
                format!("unsupported bucket_lookup_type {other:?} (auto, virtual-hosted or path)"),
            ))
        }
    };
    let region = if !c.region.is_empty() {
        c.region.clone()
    } else {
        region_from_endpoint(&c.endpoint).unwrap_or_else(|| "us-east-1".to_string())
    };
    let scheme = if c.insecure { "http" } else { "https" };
    let url = if path_style {
        format!("{scheme}://{}", c.endpoint)
    } else {
        format!("{scheme}://{}.{}", c.bucket, c.endpoint)
    };

    let mut b = if c.access_key.is_empty() {
        // Environment (AWS_ACCESS_KEY_ID…, AWS_WEB_IDENTITY_TOKEN_FILE, container credentials),
        // else instance metadata: what `aws_sdk_auth` and Thanos' default chain also find.
        AmazonS3Builder::from_env()
    } else {
        let mut b = AmazonS3Builder::new()
            .with_access_key_id(&c.access_key)
            .with_secret_access_key(&c.secret_key);
        if !c.session_token.is_empty() {
            b = b.with_token(&c.session_token);
        }
        b
    };
    b = b
        .with_bucket_name(&c.bucket)
        .with_region(&region)
        .with_endpoint(&url)
        .with_virtual_hosted_style_request(!path_style);
    if !c.sts_endpoint.is_empty() {
        b = b.with_config(AmazonS3ConfigKey::StsEndpoint, &c.sts_endpoint);
    }
    if let Some(r) = retry_config(c.max_retries) {
        b = b.with_retry(r);
    }
    match c.sse_config.kind.as_str() {
        "" => {}
        "SSE-S3" => {
            let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                .parse()
                .map_err(|e| config_err(K, format!("sse_config: {e}")))?;
            b = b.with_config(key, "AES256");
        }
        "SSE-KMS" => {
            if c.sse_config.kms_key_id.is_empty() {
                return Err(config_err(
                    K,
                    "sse_config: kms_key_id must be set for SSE-KMS",
                ));
            }
            if c.sse_config
                .kms_encryption_context
                .as_ref()
                .is_some_and(|m| !m.is_empty())
            {
                warn.push("sse_config.kms_encryption_context not implemented, ignored".into());
            }
            b = b.with_sse_kms_encryption(&c.sse_config.kms_key_id);
        }
        "SSE-C" => {
            if c.sse_config.encryption_key.is_empty() {
                return Err(config_err(
                    K,
                    "sse_config: encryption_key must be set for SSE-C",
                ));
            }
            let key = std::fs::read(&c.sse_config.encryption_key).map_err(|e| {
                config_err(
                    K,
                    format!(
                        "sse_config.encryption_key {}: {e}",
                        c.sse_config.encryption_key
                    ),
                )
            })?;
            b = b.with_ssec_encryption(base64_encode(&key));
        }
        other => {
            return Err(config_err(
                K,
                format!("sse_config: unsupported type {other:?} (SSE-S3, SSE-KMS or SSE-C)"),
            ))
        }
    }
    if let Some(v) = &c.list_objects_version {
        if v != "v1" && v != "v2" {
            return Err(config_err(
                K,
                format!("unsupported list_objects_version {v:?} (v1 or v2)"),
            ));
        }
    }
    let mut ignored = Vec::new();
    for (name, set) in [
        ("disable_dualstack", c.disable_dualstack.is_some()),
        (
            "put_user_metadata",
            c.put_user_metadata.as_ref().is_some_and(|m| !m.is_empty()),
        ),
        ("trace", c.trace.is_some()),
        (
            "list_objects_version",
            c.list_objects_version.as_deref().is_some_and(|v| v != "v2"),
        ),
        ("send_content_md5", c.send_content_md5.is_some()),
        ("disable_multipart", c.disable_multipart == Some(true)),
    ] {
        if set {
            ignored.push(name);
        }
    }
    if !ignored.is_empty() {
        warn.push(format!("{} not implemented, ignored", ignored.join(", ")));
    }
    b = b.with_client_options(c.http_config.client_options(K, c.insecure, warn)?);
    install_tls_provider();
    let store = b
        .build()
        .map_err(|source| ObjstoreError::Store { kind: K, source })?;
    let part_size = match c.part_size {
        Some(p) if p > 0 => (p as usize).max(MIN_PART_SIZE),
        _ => DEFAULT_PART_SIZE,
    };
    let creds = if c.access_key.is_empty() {
        "environment/instance credentials"
    } else {
        "static credentials"
    };
    Ok(Bucket {
        store: Arc::new(store),
        prefix: object_store::path::Path::default(),
        kind: K,
        description: format!(
            "S3 bucket {:?} at {}://{} region {region} ({}, {creds})",
            c.bucket,
            scheme,
            c.endpoint,
            if path_style {
                "path-style"
            } else {
                "virtual-hosted"
            }
        ),
        part_size,
        warnings: Vec::new(),
        local_dir: None,
    })
}

fn gcs_bucket(c: GcsYaml, warn: &mut Vec<String>) -> Result<Bucket, ObjstoreError> {
    const K: &str = "GCS";
    required(K, "bucket", &c.bucket)?;
    let mut b = if c.service_account.is_empty() {
        // GOOGLE_SERVICE_ACCOUNT…, GOOGLE_APPLICATION_CREDENTIALS, else application default
        // credentials (gcloud, instance metadata): Google's default logic, as in Thanos.
        GoogleCloudStorageBuilder::from_env()
    } else {
        GoogleCloudStorageBuilder::new().with_service_account_key(&c.service_account)
    };
    b = b.with_bucket_name(&c.bucket);
    if let Some(r) = retry_config(c.max_retries) {
        b = b.with_retry(r);
    }
    let mut ignored = Vec::new();
    if c.use_grpc {
        ignored.push("use_grpc (the JSON/XML API is used)");
    }
    if c.grpc_conn_pool_size.is_some() {
        ignored.push("grpc_conn_pool_size");
    }
    if !ignored.is_empty() {
        warn.push(format!("{} not implemented, ignored", ignored.join(", ")));
    }
    b = b.with_client_options(c.http_config.client_options(K, false, warn)?);
    install_tls_provider();
    let store = b
        .build()
        .map_err(|source| ObjstoreError::Store { kind: K, source })?;
    let part_size = match c.chunk_size_bytes {
        Some(p) if p > 0 => (p as usize).max(MIN_PART_SIZE),
        _ => DEFAULT_PART_SIZE,
    };
    Ok(Bucket {
        store: Arc::new(store),
        prefix: object_store::path::Path::default(),
        kind: K,
        description: format!(
            "GCS bucket {:?} ({})",
            c.bucket,
            if c.service_account.is_empty() {
                "default credentials"
            } else {
                "service account from config"
            }
        ),
        part_size,
        warnings: Vec::new(),
        local_dir: None,
    })
}

/// The settings of an Azure storage connection string (`Key=Value;…`).
fn parse_connection_string(s: &str) -> Result<BTreeMap<String, String>, ObjstoreError> {
    let mut m = BTreeMap::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            config_err("AZURE", "storage_connection_string: expected `Key=Value;…`")
        })?;
        m.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(m)
}

fn azure_bucket(c: AzureYaml, warn: &mut Vec<String>) -> Result<Bucket, ObjstoreError> {
    const K: &str = "AZURE";
    required(K, "storage_account", &c.storage_account)?;
    required(K, "container", &c.container)?;
    let mut errs = Vec::new();
    if !c.user_assigned_id.is_empty() && !c.storage_account_key.is_empty() {
        errs.push("user_assigned_id cannot be set with storage_account_key");
    }
    if !c.user_assigned_id.is_empty() && !c.storage_connection_string.is_empty() {
        errs.push("user_assigned_id cannot be set with storage_connection_string");
    }
    if !c.user_assigned_id.is_empty() && !c.client_id.is_empty() {
        errs.push("user_assigned_id cannot be set with client_id");
    }
    let sp = [&c.az_tenant_id, &c.client_id, &c.client_secret];
    if sp.iter().any(|s| !s.is_empty()) && sp.iter().any(|s| s.is_empty()) {
        errs.push("az_tenant_id, client_id and client_secret must be set together");
    }
    if !c.storage_account_key.is_empty() && !c.storage_connection_string.is_empty() {
        errs.push("storage_account_key and storage_connection_string cannot both be set");
    }
    if !errs.is_empty() {
        return Err(config_err(K, errs.join(", ")));
    }
    let suffix = if c.endpoint.is_empty() {
        "blob.core.windows.net"
    } else {
        c.endpoint.as_str()
    };
    let mut endpoint = format!("https://{}.{suffix}", c.storage_account);
    let mut b = MicrosoftAzureBuilder::new()
        .with_account(&c.storage_account)
        .with_container_name(&c.container);
    let auth;
    if !c.storage_account_key.is_empty() {
        b = b.with_access_key(&c.storage_account_key);
        auth = "account key";
    } else if !c.storage_connection_string.is_empty() {
        let cs = parse_connection_string(&c.storage_connection_string)?;
        for (k, v) in &cs {
            match k.as_str() {
                "AccountName" if *v != c.storage_account => {
                    return Err(config_err(
                        K,
                        "storage_connection_string: AccountName differs from storage_account",
                    ))
                }
                "AccountName" => {}
                "AccountKey" => b = b.with_access_key(v),
                "BlobEndpoint" => endpoint = v.trim_end_matches('/').to_string(),
                "DefaultEndpointsProtocol" | "EndpointSuffix" => {}
                other => {
                    return Err(config_err(
                        K,
                        format!("storage_connection_string: {other} is not supported"),
                    ))
                }
            }
        }
        if !cs.contains_key("BlobEndpoint") {
            let proto = cs
                .get("DefaultEndpointsProtocol")
                .map_or("https", String::as_str);
            let suffix = cs
                .get("EndpointSuffix")
                .map_or("core.windows.net".to_string(), |s| s.clone());
            endpoint = format!("{proto}://{}.blob.{suffix}", c.storage_account);
        }
        auth = "connection string";
    } else if !c.client_id.is_empty() {
        b = b.with_client_secret_authorization(&c.client_id, &c.client_secret, &c.az_tenant_id);
        auth = "client secret";
    } else if !c.user_assigned_id.is_empty() {
        b = b.with_client_id(&c.user_assigned_id);
        auth = "managed identity (user assigned)";
    } else {
        auth = "managed identity";
    }
    b = b.with_endpoint(endpoint.clone());
    if let Some(r) = retry_config(c.max_retries) {
        b = b.with_retry(r);
    }
    let mut ignored = Vec::new();
    for (name, set) in [
        ("reader_config", c.reader_config.is_some()),
        ("pipeline_config", c.pipeline_config.is_some()),
        ("msi_resource", c.msi_resource.is_some()),
        (
            "storage_create_container (the container must exist)",
            c.storage_create_container == Some(true),
        ),
    ] {
        if set {
            ignored.push(name);
        }
    }
    if !ignored.is_empty() {
        warn.push(format!("{} not implemented, ignored", ignored.join(", ")));
    }
    b = b.with_client_options(c.http_config.client_options(
        K,
        endpoint.starts_with("http://"),
        warn,
    )?);
    install_tls_provider();
    let store = b
        .build()
        .map_err(|source| ObjstoreError::Store { kind: K, source })?;
    Ok(Bucket {
        store: Arc::new(store),
        prefix: object_store::path::Path::default(),
        kind: K,
        description: format!("AZURE container {:?} at {endpoint} ({auth})", c.container),
        part_size: DEFAULT_PART_SIZE,
        warnings: Vec::new(),
        local_dir: None,
    })
}

/// Standard base64 with padding.
fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    fn err(yaml: &str) -> String {
        parse_bucket_config(yaml).unwrap_err().to_string()
    }

    #[test]
    fn filesystem_config_creates_directory_and_prefix_is_trimmed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let yaml = format!(
            "type: filesystem\nconfig:\n  directory: {}\nprefix: /tenant-x/blocks/\n",
            dir.display()
        );
        let b = parse_bucket_config(&yaml).unwrap();
        assert_eq!(b.kind, "FILESYSTEM");
        assert!(dir.is_dir());
        assert_eq!(b.prefix.as_ref(), "tenant-x/blocks");
        assert_eq!(
            b.key("01ABC/chunks/000001").as_ref(),
            "tenant-x/blocks/01ABC/chunks/000001"
        );
        assert!(
            b.description.contains("tenant-x/blocks"),
            "{}",
            b.description
        );
        assert!(b.warnings.is_empty());

        // Objects land under the prefix in the directory.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(b.store.put(&b.key("x/meta.json"), "{}".into()))
            .unwrap();
        assert_eq!(
            std::fs::read(dir.join("tenant-x/blocks/x/meta.json")).unwrap(),
            b"{}"
        );
    }

    #[test]
    fn no_prefix_and_slash_only_prefix_mean_none() {
        let tmp = tempfile::tempdir().unwrap();
        for p in ["", "prefix: \"\"\n", "prefix: /\n"] {
            let yaml = format!(
                "type: FILESYSTEM\nconfig:\n  directory: {}\n{p}",
                tmp.path().display()
            );
            let b = parse_bucket_config(&yaml).unwrap();
            assert_eq!(b.prefix.as_ref(), "");
            assert_eq!(b.key("U/meta.json").as_ref(), "U/meta.json");
        }
    }

    #[test]
    fn local_bucket_creates_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("new");
        let b = local_bucket(&dir).unwrap();
        assert!(dir.is_dir());
        assert_eq!(b.kind, "FILESYSTEM");
        assert_eq!(b.prefix.as_ref(), "");
    }

    #[test]
    fn s3_config_with_keys_is_path_style_for_ip_endpoints_and_hides_secrets() {
        let yaml = "type: s3\nconfig:\n  bucket: blocks\n  endpoint: 127.0.0.1:9000\n  access_key: AKIDEXAMPLE\n  secret_key: TOPSECRET\n  insecure: true\n";
        let b = parse_bucket_config(yaml).unwrap();
        assert_eq!(b.kind, "S3");
        assert!(
            b.description.contains("http://127.0.0.1:9000"),
            "{}",
            b.description
        );
        assert!(b.description.contains("path-style"), "{}", b.description);
        assert!(!b.description.contains("TOPSECRET"));
        assert!(!format!("{b:?}").contains("TOPSECRET"));
        assert_eq!(b.part_size, DEFAULT_PART_SIZE);
    }

    #[test]
    fn s3_lookup_type_and_region() {
        let b = parse_bucket_config(
            "type: S3\nconfig:\n  bucket: blocks\n  endpoint: s3.eu-west-1.amazonaws.com\n",
        )
        .unwrap();
        assert!(
            b.description.contains("virtual-hosted"),
            "{}",
            b.description
        );
        assert!(
            b.description.contains("region eu-west-1"),
            "{}",
            b.description
        );
        assert!(b.description.contains("https://"), "{}", b.description);
        let b = parse_bucket_config(
            "type: S3\nconfig:\n  bucket: blocks\n  endpoint: s3.amazonaws.com\n  region: us-west-2\n  bucket_lookup_type: path\n",
        )
        .unwrap();
        assert!(b.description.contains("path-style"), "{}", b.description);
        assert!(
            b.description.contains("region us-west-2"),
            "{}",
            b.description
        );
        let b = parse_bucket_config(
            "type: S3\nconfig:\n  bucket: blocks\n  endpoint: minio.local:9000\n  bucket_lookup_type: virtual-hosted\n  aws_sdk_auth: true\n",
        )
        .unwrap();
        assert!(
            b.description.contains("virtual-hosted"),
            "{}",
            b.description
        );
        let b = parse_bucket_config(
            "type: S3\nconfig:\n  bucket: blocks\n  endpoint: localhost:9000\n  bucket_lookup_type: virtual-hosted\n",
        )
        .unwrap();
        assert!(b.description.contains("path-style"), "{}", b.description);
        assert_eq!(b.warnings.len(), 1, "{:?}", b.warnings);
        assert_eq!(
            region_from_endpoint("s3-us-west-1.amazonaws.com").as_deref(),
            Some("us-west-1")
        );
        assert_eq!(
            region_from_endpoint("s3.dualstack.ap-south-1.amazonaws.com").as_deref(),
            Some("ap-south-1")
        );
        assert_eq!(region_from_endpoint("s3.amazonaws.com"), None);
        assert_eq!(region_from_endpoint("minio:9000"), None);
        assert!(is_ip_or_localhost("[::1]:9000"));
        assert!(is_ip_or_localhost("10.0.0.1"));
        assert!(!is_ip_or_localhost("example.com:9000"));
    }

    #[test]
    fn s3_known_unimplemented_fields_warn() {
        let yaml = r#"
type: S3
config:
  bucket: b
  endpoint: minio:9000
  access_key: a
  secret_key: s
  http_config:
    idle_conn_timeout: 90s
    response_header_timeout: 2m
    insecure_skip_verify: true
  trace:
    enable: true
  part_size: 134217728
  list_objects_version: v1
  put_user_metadata:
    X-Amz-Storage-Class: STANDARD_IA
  send_content_md5: false
  disable_dualstack: true
  max_retries: 3
  sse_config:
    type: SSE-KMS
    kms_key_id: key
"#;
        let b = parse_bucket_config(yaml).unwrap();
        assert_eq!(b.part_size, 134_217_728);
        let all = b.warnings.join("\n");
        for f in [
            "idle_conn_timeout",
            "response_header_timeout",
            "trace",
            "list_objects_version",
            "put_user_metadata",
            "send_content_md5",
            "disable_dualstack",
        ] {
            assert!(all.contains(f), "{f} not warned: {all}");
        }
        assert!(!all.contains("insecure_skip_verify"), "{all}");
        assert!(!all.contains("max_retries"), "{all}");
        assert!(!all.contains("part_size"), "{all}");
    }

    #[test]
    fn errors_name_the_problem() {
        let e = err("type: S3\nconfig:\n  endpoint: minio:9000\n");
        assert!(
            e.contains("objstore S3 config: `bucket` is required"),
            "{e}"
        );
        let e = err("type: S3\nconfig:\n  bucket: b\n");
        assert!(e.contains("`endpoint` is required"), "{e}");
        let e = err("type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  bukket: x\n");
        assert!(e.contains("unknown field `bukket`"), "{e}");
        let e = err("type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  signature_version2: true\n");
        assert!(e.contains("signature_version2"), "{e}");
        let e = err("type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  access_key: a\n");
        assert!(e.contains("secret_key"), "{e}");
        let e = err("type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  access_key: a\n  secret_key: s\n  aws_sdk_auth: true\n");
        assert!(e.contains("mutually exclusive"), "{e}");
        let e = err("type: S3\nconfig:\n  bucket: b\n  endpoint: http://e:9000\n");
        assert!(e.contains("without scheme"), "{e}");
        let e = err("type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  bucket_lookup_type: dns\n");
        assert!(e.contains("bucket_lookup_type"), "{e}");
        let e = err(
            "type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  sse_config:\n    type: SSE-KMS\n",
        );
        assert!(e.contains("kms_key_id"), "{e}");
        let e = err("type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  http_config:\n    foo: 1\n");
        assert!(e.contains("unknown field `foo`"), "{e}");
        let e = err("type: SWIFT\nconfig: {}\n");
        assert!(e.contains("\"SWIFT\" is not supported"), "{e}");
        let e = err("config:\n  bucket: b\n");
        assert!(e.contains("type"), "{e}");
        let e = err("type: S3\nconfig: {}\nprefixx: a\n");
        assert!(e.contains("unknown field `prefixx`"), "{e}");
        let e = err("type: FILESYSTEM\nconfig: {}\n");
        assert!(
            e.contains("objstore FILESYSTEM config: `directory` is required"),
            "{e}"
        );
        let e = err("type: FILESYSTEM\n");
        assert!(e.contains("`directory` is required"), "{e}");
        let e = err("type: GCS\nconfig:\n  service_account: x\n");
        assert!(
            e.contains("objstore GCS config: `bucket` is required"),
            "{e}"
        );
        let e = err("type: GCS\nconfig:\n  bucket: b\n  no_auth: true\n");
        assert!(e.contains("unknown field `no_auth`"), "{e}");
        let e = err("type: AZURE\nconfig:\n  container: c\n");
        assert!(e.contains("`storage_account` is required"), "{e}");
        let e = err("type: AZURE\nconfig:\n  storage_account: a\n");
        assert!(e.contains("`container` is required"), "{e}");
        let e = err("type: AZURE\nconfig:\n  storage_account: a\n  container: c\n  client_id: x\n");
        assert!(e.contains("must be set together"), "{e}");
        let e = err("type: S3\nconfig: [1, 2]\n");
        assert!(e.starts_with("objstore S3 config:"), "{e}");
        let e = err(": : :");
        assert!(e.starts_with("objstore config:"), "{e}");
    }

    #[test]
    fn gcs_and_azure_configs() {
        // A syntactically valid service account key (the private key is never used here).
        let b = parse_bucket_config(
            "type: gcs\nconfig:\n  bucket: blocks\n  use_grpc: true\n  max_retries: 2\n",
        )
        .unwrap();
        assert_eq!(b.kind, "GCS");
        assert!(b.description.contains("\"blocks\""), "{}", b.description);
        assert!(
            b.warnings.iter().any(|w| w.contains("use_grpc")),
            "{:?}",
            b.warnings
        );

        let b = parse_bucket_config(
            "type: AZURE\nconfig:\n  storage_account: acct\n  storage_account_key: c2VjcmV0\n  container: blocks\n  max_retries: 2\n",
        )
        .unwrap();
        assert_eq!(b.kind, "AZURE");
        assert!(
            b.description.contains("https://acct.blob.core.windows.net"),
            "{}",
            b.description
        );
        assert!(!b.description.contains("c2VjcmV0"));
        let b = parse_bucket_config(
            "type: azure\nconfig:\n  storage_account: acct\n  container: blocks\n  endpoint: blob.core.chinacloudapi.cn\n  pipeline_config:\n    max_tries: 3\n",
        )
        .unwrap();
        assert!(
            b.description
                .contains("https://acct.blob.core.chinacloudapi.cn"),
            "{}",
            b.description
        );
        assert!(
            b.warnings.iter().any(|w| w.contains("pipeline_config")),
            "{:?}",
            b.warnings
        );
        let b = parse_bucket_config(
            "type: AZURE\nconfig:\n  storage_account: devstoreaccount1\n  container: blocks\n  storage_connection_string: \"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;\"\n",
        )
        .unwrap();
        assert!(
            b.description
                .contains("http://127.0.0.1:10000/devstoreaccount1"),
            "{}",
            b.description
        );
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(i.as_bytes()), o);
        }
    }
}
