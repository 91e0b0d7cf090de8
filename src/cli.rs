//! Command-line interface: subcommands and flags, named like Thanos Receive's where they mean the same.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::duration::parse_duration;

/// `ringest`: a Thanos-compatible Prometheus remote-write receive tier.
#[derive(Debug, Parser)]
#[command(name = "ringest", version, about, long_about = None)]
pub struct Cli {
    /// Log format: `logfmt`-like text or `json`.
    #[arg(long = "log.format", global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Log filter, e.g. `info` or `ringest=debug` (also read from RUST_LOG).
    #[arg(long = "log.level", global = true, default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Route remote write to ingestors on the hash ring (Thanos RouterOnly).
    Router {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        routing: RoutingArgs,
    },
    /// Store remote write in per-tenant TSDBs (Thanos IngestorOnly); accepts replicated gRPC writes.
    Ingest {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Router and ingestor in one process; with no hashrings file every series is stored locally.
    AllInOne {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        routing: RoutingArgs,
        #[command(flatten)]
        storage: StorageArgs,
    },
    /// Hash ring tools.
    Hashring {
        #[command(subcommand)]
        command: HashringCommand,
    },
}

/// `ringest hashring ...`.
#[derive(Debug, Subcommand)]
pub enum HashringCommand {
    /// Read `{"tenant": ..., "labels": {...}}` JSON lines on stdin; print where each series lives.
    Locate {
        /// Thanos hashrings.json.
        #[arg(long = "receive.hashrings-file")]
        hashrings_file: PathBuf,
        /// Replicas per series.
        #[arg(long = "receive.replication-factor", default_value_t = 1)]
        replication_factor: usize,
        /// Default algorithm for rings that name none.
        #[arg(long = "receive.hashrings-algorithm", default_value = "hashmod")]
        algorithm: hashring::Algorithm,
    },
}

/// Listeners and request handling shared by every server subcommand.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Remote write listener (`POST /api/v1/receive`, alias `/api/v1/write`).
    #[arg(long = "remote-write.address", default_value = "0.0.0.0:19291")]
    pub remote_write_address: SocketAddr,
    /// TLS certificate (PEM) of the remote write listener; with the key, the listener speaks only TLS.
    #[arg(long = "remote-write.server-tls-cert")]
    pub rw_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of the remote write listener.
    #[arg(long = "remote-write.server-tls-key")]
    pub rw_tls_key: Option<PathBuf>,
    /// CA (PEM) to verify remote write clients against: a client certificate it signed is then required.
    #[arg(long = "remote-write.server-tls-client-ca")]
    pub rw_tls_client_ca: Option<PathBuf>,
    /// HTTP listener: `/metrics`, `/-/healthy`, `/-/ready`, `POST /api/v1/read`.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: SocketAddr,
    /// Exporter-toolkit web config YAML (Thanos's `--http.config`): `tls_server_config` makes the
    /// HTTP listener speak only TLS. Read at start.
    #[arg(long = "http.config")]
    pub http_config: Option<PathBuf>,
    /// gRPC listener: `thanos.WriteableStore/RemoteWrite` (replicated writes), reads for routers,
    /// and on ingestors the Thanos Store API (`thanos.info.Info`, `thanos.Store`) for Thanos Query.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    pub grpc_address: SocketAddr,
    /// TLS certificate (PEM) of the gRPC listener; with the key, it speaks only TLS.
    #[arg(long = "grpc-server-tls-cert")]
    pub grpc_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of the gRPC listener.
    #[arg(long = "grpc-server-tls-key")]
    pub grpc_tls_key: Option<PathBuf>,
    /// CA (PEM) to verify gRPC clients (routers) against: a client certificate it signed is then required.
    #[arg(long = "grpc-server-tls-client-ca")]
    pub grpc_tls_client_ca: Option<PathBuf>,
    /// HTTP header naming the tenant of a write or read.
    #[arg(long = "receive.tenant-header", default_value = "THANOS-TENANT")]
    pub tenant_header: String,
    /// Tenant used when the header is absent or empty.
    #[arg(long = "receive.default-tenant-id", default_value = "default-tenant")]
    pub default_tenant_id: String,
    /// External label naming the tenant in the blocks of its TSDB.
    #[arg(long = "receive.tenant-label-name", default_value = "tenant_id")]
    pub tenant_label_name: String,
    /// `<token> <tenant>` lines: every remote write and read must then carry
    /// `Authorization: Bearer <token>` and is the token's tenant's; re-read when it changes.
    #[arg(long = "receive.tenant-tokens-file")]
    pub tenant_tokens_file: Option<PathBuf>,
    /// How often the tenant tokens file is checked for changes.
    #[arg(long = "receive.tenant-tokens-file-refresh-interval", default_value = "5s", value_parser = parse_duration)]
    pub tenant_tokens_refresh: Duration,
    /// HTTP header carrying the replica number of an already replicated write.
    #[arg(long = "receive.replica-header", default_value = "THANOS-REPLICA")]
    pub replica_header: String,
    /// Largest accepted compressed request body, in bytes (413 above).
    #[arg(long = "remote-write.max-body-bytes", default_value_t = 64 << 20)]
    pub max_body_bytes: usize,
    /// Largest accepted decompressed request body, in bytes (413 above; checked before decompressing).
    #[arg(long = "remote-write.max-decompressed-bytes", default_value_t = 64 << 20)]
    pub max_decompressed_bytes: usize,
    /// Thanos limits YAML (request limits, max_concurrency, head_series_limit); re-read when it changes.
    #[arg(long = "receive.limits-config-file", conflicts_with = "limits_config")]
    pub limits_config_file: Option<PathBuf>,
    /// The same YAML inline (not reloaded).
    #[arg(long = "receive.limits-config")]
    pub limits_config: Option<String>,
    /// How often the limits file is checked for changes.
    #[arg(long = "receive.limits-config-reload-timer", default_value = "1s", value_parser = parse_duration)]
    pub limits_reload_interval: Duration,
}

/// Hash ring and replication flags.
#[derive(Debug, Clone, Args)]
pub struct RoutingArgs {
    /// Thanos hashrings.json; re-read when it changes.
    #[arg(long = "receive.hashrings-file")]
    pub hashrings_file: Option<PathBuf>,
    /// How often the hashrings file is checked for changes.
    #[arg(long = "receive.hashrings-file-refresh-interval", default_value = "5s", value_parser = parse_duration)]
    pub hashrings_refresh: Duration,
    /// Default placement algorithm for rings that name none.
    #[arg(long = "receive.hashrings-algorithm", default_value = "hashmod")]
    pub algorithm: hashring::Algorithm,
    /// Replicas per series; a write needs RF/2+1 of them (1 for RF=2).
    #[arg(long = "receive.replication-factor", default_value_t = 1)]
    pub replication_factor: usize,
    /// This node's endpoint in the hashrings file; writes for it skip the network.
    #[arg(long = "receive.local-endpoint")]
    pub local_endpoint: Option<String>,
    /// Use TLS to talk to the other receivers (implied by the other `--remote-write.client-tls-*` flags).
    #[arg(long = "remote-write.client-tls-secure")]
    pub client_tls_secure: bool,
    /// Certificate (PEM) identifying this router to the receivers (mTLS).
    #[arg(long = "remote-write.client-tls-cert")]
    pub client_tls_cert: Option<PathBuf>,
    /// Key (PEM) of `--remote-write.client-tls-cert`.
    #[arg(long = "remote-write.client-tls-key")]
    pub client_tls_key: Option<PathBuf>,
    /// CA (PEM) to verify the receivers' certificates against.
    #[arg(long = "remote-write.client-tls-ca")]
    pub client_tls_ca: Option<PathBuf>,
    /// Name to verify on the receivers' certificates (default: each endpoint's host).
    #[arg(long = "remote-write.client-server-name")]
    pub client_server_name: Option<String>,
    /// Timeout of each forwarded write.
    #[arg(long = "receive-forward-timeout", default_value = "5s", value_parser = parse_duration)]
    pub forward_timeout: Duration,
    /// Longest backoff of a peer that failed as unavailable or timed out (Thanos, hidden there too).
    #[arg(long = "receive-forward-max-backoff", default_value = "5s", value_parser = parse_duration, hide = true)]
    pub forward_max_backoff: Duration,
}

/// Storage flags.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Data directory: one TSDB per tenant under `<path>/<tenant>`.
    #[arg(long = "tsdb.path", default_value = "./data")]
    pub tsdb_path: PathBuf,
    /// External label `name="value"` of every block (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Most series one Store API `Series` call may return (0 = no limit): ResourceExhausted above.
    #[arg(long = "store.limits.request-series", default_value_t = 0)]
    pub store_request_series: u64,
    /// Most samples one Store API `Series` call may return (0 = no limit): ResourceExhausted above.
    #[arg(long = "store.limits.request-samples", default_value_t = 0)]
    pub store_request_samples: u64,
    /// Samples newer than now + this are rejected as too far in the future.
    #[arg(long = "tsdb.too-far-in-future.time-window", default_value = "10m", value_parser = parse_duration)]
    pub too_far_in_future: Duration,
    /// Compress WAL records with snappy, as Prometheus does by default.
    #[arg(long = "tsdb.wal-compression", default_value_t = true, action = clap::ArgAction::Set)]
    pub wal_compression: bool,
    /// Block range (hidden: tests use minutes).
    #[arg(long = "tsdb.block-duration", default_value = "2h", value_parser = parse_duration, hide = true)]
    pub block_duration: Duration,
    /// Local blocks older than this are deleted, once uploaded when a bucket is configured (0 keeps them).
    #[arg(long = "tsdb.retention", default_value = "15d", value_parser = parse_duration)]
    pub retention: Duration,
    /// Thanos objstore YAML file (`type: FILESYSTEM|S3|GCS|AZURE`, `config: {...}`) to upload blocks to.
    #[arg(long = "objstore.config-file", conflicts_with = "objstore_config")]
    pub objstore_config_file: Option<PathBuf>,
    /// The same YAML inline (alternative to --objstore.config-file).
    #[arg(long = "objstore.config")]
    pub objstore_config: Option<String>,
    /// How long shutdown keeps retrying uploads of the last blocks before exiting.
    #[arg(long = "shipper.shutdown-timeout", default_value = "2m", value_parser = parse_duration)]
    pub shipper_shutdown_timeout: Duration,
}

/// Parses an external label flag `name="value"` (quotes optional).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid label {s:?}: expected name=\"value\""))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("invalid label {s:?}: empty name"));
    }
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Ok((name.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_with_or_without_quotes() {
        assert_eq!(
            parse_label(r#"replica="a""#).unwrap(),
            ("replica".to_string(), "a".to_string())
        );
        assert_eq!(parse_label("dc=eu").unwrap(), ("dc".into(), "eu".into()));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("=x").is_err());
    }

    #[test]
    fn defaults_match_thanos_receive() {
        let cli = Cli::try_parse_from(["ringest", "all-in-one"]).unwrap();
        let Command::AllInOne {
            server,
            routing,
            storage,
        } = cli.command
        else {
            panic!("wrong subcommand")
        };
        assert_eq!(server.remote_write_address.port(), 19291);
        assert_eq!(server.http_address.port(), 10902);
        assert_eq!(server.grpc_address.port(), 10901);
        assert_eq!(server.tenant_header, "THANOS-TENANT");
        assert_eq!(server.default_tenant_id, "default-tenant");
        assert_eq!(routing.replication_factor, 1);
        assert_eq!(routing.forward_timeout, Duration::from_secs(5));
        assert_eq!(storage.tsdb_path, PathBuf::from("./data"));
    }
}
