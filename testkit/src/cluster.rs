//! Ringest server processes: the common argument list, `ringest ingest`, `ringest router` and a
//! router in front of `n` ingestors.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::http::wait_http_ok;
use crate::net::free_addr;
use crate::proc::Proc;

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
    /// Starts `bin ingest` (the Ringest binary under test) with data under `<dir>/<name>` and waits
    /// for `/-/ready`.
    pub fn start(bin: &Path, name: &str, dir: &Path, extra_args: &[&str]) -> Ingestor {
        let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
        let data = dir.join(name);
        fs::create_dir_all(&data).unwrap();
        let mut args = server_args("ingest", &rw, &http, &grpc);
        args.push(format!("--tsdb.path={}", data.display()));
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let proc = Proc::spawn(name, bin, &args, &dir.join("logs"));
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

    /// Waits (60 s at most) until `/-/ready` answers 200, panicking with the logs otherwise.
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
/// factor `rf` and `router_args`, all running `bin`.
pub fn start_cluster(
    bin: &Path,
    dir: &Path,
    n: usize,
    rf: usize,
    router_args: &[&str],
) -> (Vec<Ingestor>, Router) {
    let ings: Vec<Ingestor> = (0..n)
        .map(|i| Ingestor::start(bin, &format!("ingest-{i}"), dir, &[]))
        .collect();
    let eps: Vec<&str> = ings.iter().map(|i| i.grpc.as_str()).collect();
    let router = Router::start(bin, "router", dir, &eps, rf, router_args);
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
    /// Writes a one-ring `hashrings.json` with `endpoints` and starts `bin router` (ketama, `rf`)
    /// and waits for `/-/ready`.
    pub fn start(
        bin: &Path,
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
        let mut proc = Proc::spawn(name, bin, &args, &dir.join("logs"));
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
