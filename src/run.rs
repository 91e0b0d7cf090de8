//! Wires subcommands to their parts: listeners, router, ingestor, signals.

use std::future::IntoFuture;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::HeaderName;
use metrics_exporter_prometheus::{Matcher as MetricMatcher, PrometheusBuilder, PrometheusHandle};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::{Cli, Command, HashringCommand, RoutingArgs, ServerArgs, StorageArgs};
use crate::grpc::{RawService, ReaderServer, WriteableStoreServer};
use crate::ingest::Ingestor;
use crate::limits::Limiter;
use crate::remote_write::Limits;
use crate::router::{ring, Router};
use crate::server::{self, App, AppConfig, IngestGrpc};
use crate::store::service::{InfoServer, StoreApi, StoreServer};
use crate::store::{Store, StoreLimits};
use crate::tsdb::db::DbOptions;

/// A start-up or run-time failure, reported on stderr with exit code 1.
pub type RunError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the command line.
pub fn main(cli: Cli) -> Result<(), RunError> {
    init_logging(&cli.log_format, &cli.log_level);
    match cli.command {
        Command::Hashring {
            command:
                HashringCommand::Locate {
                    hashrings_file,
                    replication_factor,
                    algorithm,
                },
        } => locate(&hashrings_file, replication_factor, algorithm),
        Command::Router { server, routing } => serve(server, Some(routing), None, "router"),
        Command::Ingest { server, storage } => serve(server, None, Some(storage), "ingest"),
        Command::AllInOne {
            server,
            routing,
            storage,
        } => serve(server, Some(routing), Some(storage), "all-in-one"),
    }
}

fn init_logging(format: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.with_ansi(false).init();
    }
}

fn install_metrics() -> Result<PrometheusHandle, RunError> {
    let latency = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(MetricMatcher::Suffix("_seconds".into()), &latency)?
        .install_recorder()?)
}

/// `ringest hashring locate`: one JSON answer line per JSON input line.
fn locate(
    file: &std::path::Path,
    replication_factor: usize,
    algorithm: hashring::Algorithm,
) -> Result<(), RunError> {
    #[derive(serde::Deserialize)]
    struct Input {
        tenant: String,
        labels: std::collections::BTreeMap<String, String>,
    }
    #[derive(serde::Serialize)]
    struct Located {
        hashring: String,
        endpoints: Vec<String>,
    }
    let (multiring, _) = ring::load(file, algorithm, replication_factor)?;
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Input>(&line) {
            Err(e) => {
                serde_json::json!({ "error": format!("invalid input line: {e}") }).to_string()
            }
            Ok(input) => {
                let labels: Vec<(String, String)> = input.labels.into_iter().collect();
                match hashring::locate(&multiring, &input.tenant, &labels) {
                    // A struct keeps the documented key order: hashring, then endpoints.
                    Ok(p) => serde_json::to_string(&Located {
                        hashring: p.hashring,
                        endpoints: p.endpoints,
                    })?,
                    Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
                }
            }
        };
        writeln!(out, "{answer}")?;
    }
    out.flush()?;
    Ok(())
}

fn serve(
    server: ServerArgs,
    routing: Option<RoutingArgs>,
    storage: Option<StorageArgs>,
    mode: &'static str,
) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ringest")
        .build()?;
    runtime.block_on(serve_async(server, routing, storage, mode))
}

/// Serves `routes` on `listener`, over TLS with `tls`, until `stop` turns true.
fn spawn_http(
    tasks: &mut tokio::task::JoinSet<std::io::Result<()>>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    routes: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    match tls {
        Some(config) => {
            let listener = crate::tls::TlsListener::new(listener, config)?;
            tasks.spawn(
                axum::serve(listener, routes)
                    .with_graceful_shutdown(stopped)
                    .into_future(),
            );
        }
        None => {
            tasks.spawn(
                axum::serve(listener, routes)
                    .with_graceful_shutdown(stopped)
                    .into_future(),
            );
        }
    }
    Ok(())
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen for {what} on {addr}: {e}").into())
}

async fn serve_async(
    server: ServerArgs,
    routing: Option<RoutingArgs>,
    storage: Option<StorageArgs>,
    mode: &'static str,
) -> Result<(), RunError> {
    let metrics = install_metrics()?;
    let checked = validate(&server, routing.as_ref(), storage.as_ref())?;
    let node = Node::build(server, routing, storage, mode, metrics, checked)?;
    let mut running = node.listen().await?;
    let outcome = running.wait().await;
    running.shut_down(outcome).await
}

/// Flags checked before anything is loaded, opened or bound.
struct Checked {
    tenant_header: HeaderName,
    replica_header: HeaderName,
    limits: Limits,
}

/// Checks the flags that need no file or socket: a bad combination fails before anything starts.
fn validate(
    server: &ServerArgs,
    routing: Option<&RoutingArgs>,
    storage: Option<&StorageArgs>,
) -> Result<Checked, RunError> {
    if server.limits_config_file.is_some() && server.limits_reload_interval.is_zero() {
        return Err("--receive.limits-config-reload-timer must be above 0".into());
    }
    match routing.filter(|r| r.hashrings_file.is_some()) {
        Some(r) => {
            if r.replication_factor == 0 {
                return Err("--receive.replication-factor must be at least 1".into());
            }
            if storage.is_some() && r.local_endpoint.is_none() {
                return Err("all-in-one with --receive.hashrings-file needs --receive.local-endpoint naming this node's endpoint in that file".into());
            }
        }
        None if storage.is_none() => return Err("router needs --receive.hashrings-file".into()),
        None => {}
    }
    if server.tenant_tokens_file.is_some() && server.tenant_tokens_refresh.is_zero() {
        return Err("--receive.tenant-tokens-file-refresh-interval must be above 0".into());
    }
    let checked = Checked {
        tenant_header: HeaderName::try_from(server.tenant_header.as_str())
            .map_err(|e| format!("bad --receive.tenant-header: {e}"))?,
        replica_header: HeaderName::try_from(server.replica_header.as_str())
            .map_err(|e| format!("bad --receive.replica-header: {e}"))?,
        limits: Limits {
            max_compressed_bytes: server.max_body_bytes,
            max_decompressed_bytes: server.max_decompressed_bytes,
        },
    };
    crate::tenancy::validate(&server.default_tenant_id)?;
    Ok(checked)
}

/// A process's parts, built from its flags and config files but not yet serving.
struct Node {
    server: ServerArgs,
    storage: Option<StorageArgs>,
    mode: &'static str,
    app: Arc<App>,
    ingestor: Option<Arc<Ingestor>>,
    bucket: Option<crate::objstore::Bucket>,
    rw_tls: Option<Arc<rustls::ServerConfig>>,
    http_tls: Option<Arc<rustls::ServerConfig>>,
    grpc_tls: Option<tonic::transport::ServerTlsConfig>,
}

impl Node {
    /// Loads the config files and builds limits, ring, storage, router and TLS (file watchers
    /// start here too).
    fn build(
        server: ServerArgs,
        routing: Option<RoutingArgs>,
        storage: Option<StorageArgs>,
        mode: &'static str,
        metrics: PrometheusHandle,
        checked: Checked,
    ) -> Result<Self, RunError> {
        let limits = checked.limits;
        let limiter = match (&server.limits_config_file, &server.limits_config) {
            (Some(file), _) => {
                let (cfg, text) = crate::limits::load_file(file)?;
                let limiter = Arc::new(Limiter::new(cfg));
                limiter.watch(file.clone(), text, server.limits_reload_interval);
                tracing::info!(path = %file.display(), "limits config loaded");
                limiter
            }
            (None, Some(yaml)) => Arc::new(Limiter::new(crate::limits::parse(yaml, None)?)),
            (None, None) => Arc::new(Limiter::default()),
        };

        let ring = match routing
            .as_ref()
            .and_then(|r| r.hashrings_file.clone().map(|f| (r, f)))
        {
            Some((r, file)) => {
                let handle =
                    ring::watch(file, r.algorithm, r.replication_factor, r.hashrings_refresh)?;
                Some((r, handle))
            }
            None => None,
        };

        let ingestor = storage.as_ref().map(|s| {
            let opts = DbOptions {
                block_range_ms: s.block_duration.as_millis() as i64,
                too_far_in_future_ms: s.too_far_in_future.as_millis() as i64,
                wal_compression: s.wal_compression,
                ..DbOptions::default()
            };
            let labels = tenant_labels(
                s.labels.clone(),
                server.tenant_label_name.clone(),
                ring.as_ref().map(|(_, h)| h.clone()),
            );
            Arc::new(Ingestor::new(s.tsdb_path.clone(), opts, labels).with_limits(limiter.clone()))
        });
        let bucket = match &storage {
            Some(s) => open_bucket(s, mode)?,
            None => None,
        };

        // `validate` made sure a process without a ring has storage.
        let router = match ring {
            Some((r, handle)) => Some(Arc::new(
                Router::new(
                    handle,
                    r.replication_factor,
                    r.forward_timeout,
                    limits.max_decompressed_bytes,
                    r.forward_max_backoff,
                    r.local_endpoint.clone(),
                    ingestor.clone(),
                )
                .with_client_tls(crate::tls::grpc_client_config(
                    &crate::tls::ClientTlsFlags {
                        secure: r.client_tls_secure,
                        cert: r.client_tls_cert.as_deref(),
                        key: r.client_tls_key.as_deref(),
                        ca: r.client_tls_ca.as_deref(),
                        server_name: r.client_server_name.as_deref(),
                    },
                )?),
            )),
            None => None,
        };

        let rw_tls = crate::tls::server_config_from_flags(
            "remote-write.server",
            server.rw_tls_cert.as_deref(),
            server.rw_tls_key.as_deref(),
            server.rw_tls_client_ca.as_deref(),
        )?;
        let http_tls = match &server.http_config {
            Some(path) => crate::tls::http_config(path)?,
            None => None,
        };
        let grpc_tls = crate::tls::grpc_server_config(
            server.grpc_tls_cert.as_deref(),
            server.grpc_tls_key.as_deref(),
            server.grpc_tls_client_ca.as_deref(),
        )?;

        let tokens = match &server.tenant_tokens_file {
            Some(file) => Some(crate::tenancy::TokenStore::watch(
                file.clone(),
                server.tenant_tokens_refresh,
            )?),
            None => None,
        };

        let app = Arc::new(App {
            config: AppConfig {
                tenant_header: checked.tenant_header,
                default_tenant: server.default_tenant_id.clone(),
                replica_header: checked.replica_header,
                limits,
            },
            router,
            ingestor: ingestor.clone(),
            metrics,
            limiter,
            tokens,
        });
        Ok(Self {
            server,
            storage,
            mode,
            app,
            ingestor,
            bucket,
            rw_tls,
            http_tls,
            grpc_tls,
        })
    }

    /// Binds every listener and starts serving; an ingestor also starts its background work
    /// and its WAL replay.
    async fn listen(self) -> Result<Running, RunError> {
        let Node {
            server,
            storage,
            mode,
            app,
            ingestor,
            bucket,
            rw_tls,
            http_tls,
            grpc_tls,
        } = self;
        let limits = app.config.limits;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        let rw_listener = bind("remote write", server.remote_write_address).await?;
        let http_listener = bind("HTTP", server.http_address).await?;
        let mut tasks = tokio::task::JoinSet::new();
        let routes = server::remote_write_routes(app.clone());
        spawn_http(&mut tasks, rw_listener, rw_tls, routes, stop_rx.clone())?;
        let routes = server::http_routes(app.clone());
        spawn_http(&mut tasks, http_listener, http_tls, routes, stop_rx.clone())?;

        let mut replay = None;
        if let (Some(ingestor), Some(s)) = (&ingestor, &storage) {
            let grpc_listener = bind("gRPC", server.grpc_address).await?;
            let handler: Arc<dyn crate::grpc::GrpcHandler> = Arc::new(IngestGrpc {
                ingestor: ingestor.clone(),
            });
            let mut builder = tonic::transport::Server::builder();
            if let Some(tls) = grpc_tls {
                builder = builder
                    .tls_config(tls)
                    .map_err(|e| format!("gRPC TLS: {e}"))?;
            }
            let store_api = StoreApi::new(
                Store::new(
                    ingestor.clone(),
                    StoreLimits {
                        request_series: s.store_request_series,
                        request_samples: s.store_request_samples,
                    },
                ),
                app.tokens.clone(),
                server.default_tenant_id.clone(),
                limits.max_decompressed_bytes,
            );
            let grpc = builder
                .tcp_nodelay(true)
                // Thanos routers send grpc-encoding: snappy by default; tonic has no snappy.
                .layer(crate::grpc::snappy::SnappyLayer::new(
                    limits.max_decompressed_bytes,
                ))
                .add_service(RawService(WriteableStoreServer::new(
                    handler.clone(),
                    limits.max_decompressed_bytes,
                )))
                .add_service(RawService(ReaderServer::new(
                    handler,
                    limits.max_decompressed_bytes,
                )))
                .add_service(RawService(InfoServer::new(store_api.clone())))
                .add_service(RawService(StoreServer::new(store_api)));
            let incoming =
                tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
            let rx = stop_rx.clone();
            tasks.spawn(async move {
                grpc.serve_with_incoming_shutdown(incoming, stopped(rx))
                    .await
                    .map_err(std::io::Error::other)
            });

            let shipper_wake = bucket.as_ref().map(|b| {
                let wake = Arc::new(tokio::sync::Notify::new());
                let ing = ingestor.clone();
                tokio::spawn(crate::shipper::run(
                    b.clone(),
                    move || ing.tenant_dirs(),
                    wake.clone(),
                    SHIPPER_INTERVAL,
                    stop_rx.clone(),
                ));
                wake
            });
            let check =
                (s.block_duration / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
            tokio::spawn(ingestor.clone().run_maintenance(
                check,
                s.retention,
                bucket.is_some(),
                shipper_wake,
                stop_rx.clone(),
            ));

            let replaying = ingestor.clone();
            replay = Some((
                std::time::Instant::now(),
                tokio::task::spawn_blocking(move || replaying.replay()),
            ));
        }

        tracing::info!(
            mode,
            remote_write = %server.remote_write_address,
            http = %server.http_address,
            grpc = %server.grpc_address,
            "ringest started"
        );
        Ok(Running {
            tasks,
            stop_tx,
            replay,
            ingestor,
            bucket,
            storage,
        })
    }
}

/// A WAL replay in progress: when it started, and its task.
type Replay = (
    std::time::Instant,
    tokio::task::JoinHandle<Result<(), crate::ingest::IngestError>>,
);

/// A serving process.
struct Running {
    /// The listeners; none ends before a stop unless it failed.
    tasks: tokio::task::JoinSet<std::io::Result<()>>,
    stop_tx: watch::Sender<bool>,
    /// Until it finished.
    replay: Option<Replay>,
    ingestor: Option<Arc<Ingestor>>,
    bucket: Option<crate::objstore::Bucket>,
    storage: Option<StorageArgs>,
}

impl Running {
    /// Serves until a signal (`Ok`), or until a listener or the WAL replay fails (`Err`).
    async fn wait(&mut self) -> Result<(), RunError> {
        let signal = shutdown_signal();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                _ = &mut signal => {
                    tracing::info!("shutting down");
                    return Ok(());
                }
                Some(res) = self.tasks.join_next() => {
                    return Err(match res {
                        Ok(Ok(())) => "a listener stopped unexpectedly".into(),
                        Ok(Err(e)) => format!("listener failed: {e}").into(),
                        Err(e) => format!("listener task failed: {e}").into(),
                    });
                }
                done = replay_done(&mut self.replay) => {
                    self.replay = None;
                    done?;
                }
            }
        }
    }

    /// Stops the listeners. After a signal, makes the WAL durable, persists every head as
    /// blocks and ships them; after a failure, only closes storage and returns the failure.
    async fn shut_down(mut self, outcome: Result<(), RunError>) -> Result<(), RunError> {
        let _ = self.stop_tx.send(true);
        if let Err(e) = outcome {
            // Listeners drain their connections; storage is synced as it is.
            while self.tasks.join_next().await.is_some() {}
            if let Some(ing) = self.ingestor {
                if let Some((_, replay)) = self.replay {
                    // A listener failed during replay: let it finish before closing.
                    let _ = replay.await;
                }
                tokio::task::spawn_blocking(move || ing.close()).await?;
            }
            return Err(e);
        }
        while self.tasks.join_next().await.is_some() {}
        if let (Some(ingestor), Some(s)) = (self.ingestor, self.storage) {
            // Nothing is accepted any more: make the WAL durable, persist every head as blocks,
            // then ship them (what cannot be shipped now stays on disk for the next start).
            let ing = ingestor.clone();
            let blocks = tokio::task::spawn_blocking(move || {
                ing.close();
                if ing.is_ready() {
                    ing.flush()
                } else {
                    0
                }
            })
            .await?;
            tracing::info!(blocks, "heads flushed to blocks");
            if let Some(bucket) = &self.bucket {
                let deadline = std::time::Instant::now() + s.shipper_shutdown_timeout;
                let pending =
                    crate::shipper::sync_all_until_done(bucket, ingestor.tenant_dirs(), deadline)
                        .await;
                if pending.is_empty() {
                    tracing::info!("all blocks uploaded");
                }
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Waits for the WAL replay (forever when none is running): `Ok` once ready, or the failure
/// that stops the process.
async fn replay_done(replay: &mut Option<Replay>) -> Result<(), RunError> {
    let Some((started, task)) = replay else {
        return std::future::pending().await;
    };
    match task.await {
        Ok(Ok(())) => {
            tracing::info!(elapsed = ?started.elapsed(), "WAL replay done; ready");
            Ok(())
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "WAL replay failed");
            Err(format!("WAL replay failed: {e}").into())
        }
        Err(e) => {
            tracing::error!(error = %e, "WAL replay panicked");
            Err(format!("WAL replay panicked: {e}").into())
        }
    }
}

/// How often the shipper looks for blocks besides being woken after each cut.
const SHIPPER_INTERVAL: Duration = Duration::from_secs(30);

/// External labels of a tenant's blocks, as Thanos receive sets them: the `external_labels` of
/// the first hashring listing the tenant by name, overridden by the `--label` flags and the tenant
/// label (Thanos `extractTenantsLabels`). Read when the tenant's TSDB is opened.
fn tenant_labels(
    flags: Vec<(String, String)>,
    tenant_label: String,
    ring: Option<ring::RingHandle>,
) -> crate::ingest::multitsdb::TenantLabels {
    Arc::new(move |tenant: &str| {
        let mut labels = std::collections::BTreeMap::new();
        if let Some(m) = ring.as_ref().and_then(|r| r.current()) {
            if let Some(r) = m.rings().iter().find(|r| r.lists_tenant(tenant)) {
                labels.extend(r.external_labels().clone());
            }
        }
        labels.extend(flags.iter().cloned());
        labels.insert(tenant_label.clone(), tenant.to_string());
        labels
    })
}

/// The bucket blocks are shipped to: the objstore config when given, else (all-in-one) a local
/// directory `<tsdb.path>/_bucket`, else none (an ingestor keeps blocks until retention).
fn open_bucket(s: &StorageArgs, mode: &str) -> Result<Option<crate::objstore::Bucket>, RunError> {
    let yaml = match (&s.objstore_config_file, &s.objstore_config) {
        (Some(f), _) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| format!("reading --objstore.config-file {}: {e}", f.display()))?,
        ),
        (None, Some(y)) => Some(y.clone()),
        (None, None) => None,
    };
    let bucket = match yaml {
        Some(y) => crate::objstore::parse_bucket_config(&y)?,
        None if mode == "all-in-one" => {
            let dir = s.tsdb_path.join(crate::tenancy::LOCAL_BUCKET_DIR);
            crate::objstore::local_bucket(&dir)
                .map_err(|e| format!("local bucket {}: {e}", dir.display()))?
        }
        None => {
            tracing::warn!("no --objstore.config-file: blocks are not uploaded and stay local until --tsdb.retention");
            return Ok(None);
        }
    };
    tracing::info!(bucket = %bucket.description, "shipping blocks");
    Ok(Some(bucket))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_labels_are_flags_ring_labels_and_tenant() {
        let json = br#"[
            {"hashring": "a", "tenants": ["team-a"], "endpoints": ["x:1"], "external_labels": {"ring": "a", "region": "eu"}},
            {"hashring": "g", "tenant_matcher_type": "glob", "tenants": ["team-*"], "endpoints": ["z:1"], "external_labels": {"ring": "g"}},
            {"hashring": "rest", "endpoints": ["y:1"]}
        ]"#;
        let m = ring::build_ring(
            std::path::Path::new("hashrings.json"),
            json,
            hashring::Algorithm::Hashmod,
            1,
        )
        .unwrap();
        let labels = tenant_labels(
            vec![
                ("cluster".into(), "c1".into()),
                ("region".into(), "us".into()),
            ],
            "tenant_id".into(),
            Some(ring::RingHandle::new(Some(m))),
        );
        let get = |t: &str| -> Vec<(String, String)> { labels(t).into_iter().collect() };
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter().map(|&(a, b)| (a.into(), b.into())).collect()
        };
        // Flags override the ring's labels of the same name (Thanos extends the ring's labels
        // with the flags and the tenant label).
        assert_eq!(
            get("team-a"),
            pairs(&[
                ("cluster", "c1"),
                ("region", "us"),
                ("ring", "a"),
                ("tenant_id", "team-a")
            ])
        );
        // A glob match is not a listing: no ring labels (as Thanos).
        assert_eq!(
            get("team-b"),
            pairs(&[("cluster", "c1"), ("region", "us"), ("tenant_id", "team-b")])
        );
        assert_eq!(
            get("other"),
            pairs(&[("cluster", "c1"), ("region", "us"), ("tenant_id", "other")])
        );
        let no_ring = tenant_labels(Vec::new(), "tenant".into(), None);
        assert_eq!(
            no_ring("t").into_iter().collect::<Vec<_>>(),
            pairs(&[("tenant", "t")])
        );
    }
}
