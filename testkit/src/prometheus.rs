//! A Prometheus 2.42 launcher, its HTTP API (series, instant and range queries, remote-write
//! counters) and the scraper / reader configs the end-to-end tests use.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::http::{http_post_form, http_request, scrape_metric, wait_http_ok};
use crate::proc::Proc;
use crate::time::poll;
use crate::Labels;

/// A Prometheus API time (`1795449137.915`) for a millisecond timestamp.
pub fn api_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// The Prometheus binary (`$PROMETHEUS_BIN` or `prometheus` on `$PATH`, Debian's 2.42).
pub fn prometheus_bin() -> String {
    std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into())
}

/// One series of a PromQL matrix: its labels and its raw `[time, "value"]` pairs as Prometheus
/// printed them (time in ms, value as the exact string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixSeries {
    pub labels: Labels,
    pub values: Vec<(i64, String)>,
}

/// A Prometheus server started by a test.
pub struct Prometheus {
    pub proc: Proc,
    pub addr: String,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
}

impl Prometheus {
    /// Writes `config_yaml` to `<dir>/<name>.yml` and starts Prometheus on `addr` with data under
    /// `<dir>/<name>-data`, lifecycle API on, plus `extra_args`; waits until `/-/ready`.
    pub fn start(
        name: &str,
        dir: &Path,
        addr: &str,
        config_yaml: &str,
        extra_args: &[&str],
    ) -> Prometheus {
        let config_path = dir.join(format!("{name}.yml"));
        let data_dir = dir.join(format!("{name}-data"));
        fs::write(&config_path, config_yaml).unwrap();
        let mut args = vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", data_dir.display()),
            format!("--web.listen-address={addr}"),
            "--web.enable-lifecycle".to_string(),
            "--log.level=info".to_string(),
        ];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let mut proc = Proc::spawn(name, prometheus_bin(), &args, &dir.join("logs"));
        wait_http_ok(addr, "/-/ready", Duration::from_secs(30), Some(&mut proc));
        Prometheus {
            proc,
            addr: addr.to_string(),
            data_dir,
            config_path,
        }
    }

    /// Rewrites the config file and `POST /-/reload`s it; panics unless Prometheus answers 200.
    pub fn reload(&self, config_yaml: &str) {
        fs::write(&self.config_path, config_yaml).unwrap();
        let r = http_request(
            "POST",
            &self.addr,
            "/-/reload",
            &[],
            &[],
            Duration::from_secs(30),
        )
        .expect("POST /-/reload");
        assert_eq!(
            r.status,
            200,
            "reload of {} failed: {}",
            self.proc.name,
            r.text()
        );
    }

    /// Sum of metric `name` (lines containing all `label_substrings`) on this Prometheus's `/metrics`.
    pub fn metric(&self, name: &str, label_substrings: &[&str]) -> Option<f64> {
        scrape_metric(&self.addr, name, label_substrings)
    }

    fn api(&self, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
        let r = http_post_form(&self.addr, path, form).unwrap_or_else(|e| panic!("{path}: {e}"));
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{path}: status {} bad JSON ({e}): {}", r.status, r.text()));
        assert_eq!(
            v["status"],
            "success",
            "{} {path} {form:?}: status {}: {}",
            self.proc.name,
            r.status,
            r.text()
        );
        // Prometheus 2.42 turns a failed remote read into a warning next to an (empty) successful
        // result: a warning means the data is incomplete, so it fails the test.
        if let Some(w) = v.get("warnings") {
            panic!("{} {path} {form:?}: warnings: {w}", self.proc.name);
        }
        v["data"].clone()
    }

    /// `/api/v1/series` for `matcher` over [start_ms, end_ms], sorted.
    pub fn series(&self, matcher: &str, start_ms: i64, end_ms: i64) -> Vec<Labels> {
        let (s, e) = (api_time(start_ms), api_time(end_ms));
        let data = self.api(
            "/api/v1/series",
            &[("match[]", matcher), ("start", &s), ("end", &e)],
        );
        let mut out: Vec<Labels> = data
            .as_array()
            .expect("series data is an array")
            .iter()
            .map(json_labels)
            .collect();
        out.sort();
        out
    }

    /// `/api/v1/query` of `query` at `time_ms`; the result must be a matrix (a range selector).
    /// Sorted by labels.
    pub fn query_matrix(&self, query: &str, time_ms: i64) -> Vec<MatrixSeries> {
        let t = api_time(time_ms);
        let data = self.api("/api/v1/query", &[("query", query), ("time", &t)]);
        matrix_of(&data, query)
    }

    /// `/api/v1/query_range` of `query` over [start_ms, end_ms] every `step_ms`; the result is a
    /// matrix, sorted by labels, values as the exact strings Prometheus printed.
    pub fn query_range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Vec<MatrixSeries> {
        let (s, e) = (api_time(start_ms), api_time(end_ms));
        let step = format!("{}", step_ms as f64 / 1000.0);
        let data = self.api(
            "/api/v1/query_range",
            &[
                ("query", query),
                ("start", &s),
                ("end", &e),
                ("step", &step),
            ],
        );
        matrix_of(&data, query)
    }

    /// Instant-vector `query` at `time_ms` as (labels, value string), sorted.
    pub fn query_vector(&self, query: &str, time_ms: i64) -> Vec<(Labels, String)> {
        let t = api_time(time_ms);
        let data = self.api("/api/v1/query", &[("query", query), ("time", &t)]);
        assert_eq!(data["resultType"], "vector", "{query}: not a vector");
        let mut out: Vec<(Labels, String)> = data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    json_labels(&s["metric"]),
                    s["value"][1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Stops with SIGTERM (waiting up to 30 s).
    pub fn stop(&mut self) {
        self.proc.terminate(Duration::from_secs(30));
    }
}

fn json_labels(v: &serde_json::Value) -> Labels {
    v.as_object()
        .expect("labels are an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// The matrix result of a Prometheus API answer, sorted by labels, values as printed.
fn matrix_of(data: &serde_json::Value, query: &str) -> Vec<MatrixSeries> {
    assert_eq!(data["resultType"], "matrix", "{query}: not a matrix");
    let mut out: Vec<MatrixSeries> = data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| MatrixSeries {
            labels: json_labels(&s["metric"]),
            values: s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let ts = p[0].as_f64().expect("time is a number");
                    (
                        (ts * 1000.0).round() as i64,
                        p[1].as_str().expect("value is a string").to_string(),
                    )
                })
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// Config of the scraping Prometheus ("A"): 1 s scrapes of itself and of `jobs` (job name, targets),
/// remote write to `remote_write_url` with a short queue so that samples leave within ~1 s.
/// Metadata is sent every 5 s so that the receiver sees metadata-only requests during the run.
pub fn scraper_config(self_addr: &str, jobs: &[(&str, &[&str])], remote_write_url: &str) -> String {
    let mut y = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
    );
    y.push_str(&format!(
        "  - job_name: prometheus\n    static_configs: [{{targets: ['{self_addr}']}}]\n"
    ));
    for (job, targets) in jobs {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        y.push_str(&format!(
            "  - job_name: {job}\n    static_configs: [{{targets: [{}]}}]\n",
            targets.join(", ")
        ));
    }
    y.push_str(&format!(
        "remote_write:\n  - url: {remote_write_url}\n    remote_timeout: 10s\n    queue_config:\n      capacity: 10000\n      min_shards: 1\n      max_shards: 1\n      max_samples_per_send: 2000\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n    metadata_config:\n      send: true\n      send_interval: 5s\n"
    ));
    y
}

/// Config of the reading Prometheus ("B"): no scrape jobs, one remote read endpoint, recent data
/// read remotely too.
pub fn reader_config(remote_read_url: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\nscrape_configs: []\nremote_read:\n  - url: {remote_read_url}\n    read_recent: true\n    remote_timeout: 30s\n"
    )
}

/// Remote-write counters of a Prometheus, summed over its queues.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoteWriteStats {
    pub samples_total: f64,
    pub samples_failed: f64,
    pub samples_retried: f64,
    pub samples_dropped: f64,
    pub metadata_total: f64,
    pub metadata_failed: f64,
    pub highest_ts_s: f64,
    pub highest_sent_s: f64,
}

impl Prometheus {
    /// Its remote-write counters (2.42 names: `prometheus_remote_storage_samples_{total,failed_total,
    /// retried_total,dropped_total}`, `..._highest_timestamp_in_seconds` (appended) and
    /// `..._queue_highest_sent_timestamp_seconds`, both whole seconds).
    pub fn remote_write_stats(&self) -> RemoteWriteStats {
        let m = |n: &str| {
            self.metric(n, &[])
                .unwrap_or_else(|| panic!("{} has no metric {n}", self.proc.name))
        };
        RemoteWriteStats {
            samples_total: m("prometheus_remote_storage_samples_total"),
            samples_failed: m("prometheus_remote_storage_samples_failed_total"),
            samples_retried: m("prometheus_remote_storage_samples_retried_total"),
            samples_dropped: m("prometheus_remote_storage_samples_dropped_total"),
            metadata_total: m("prometheus_remote_storage_metadata_total"),
            metadata_failed: m("prometheus_remote_storage_metadata_failed_total"),
            highest_ts_s: m("prometheus_remote_storage_highest_timestamp_in_seconds"),
            highest_sent_s: m("prometheus_remote_storage_queue_highest_sent_timestamp_seconds"),
        }
    }

    /// Waits until the remote-write queue has sent a sample stamped at least 3 s after `cutoff_ms`
    /// (the metric has whole-second resolution and scrapes of different jobs commit slightly out of
    /// order, hence the margin). With one shard the queue sends in WAL order, so everything stamped
    /// up to the cutoff has been acknowledged by then.
    pub fn wait_sent_past(&self, cutoff_ms: i64, timeout: Duration) -> RemoteWriteStats {
        let want = (cutoff_ms / 1000 + 3) as f64;
        let mut last = RemoteWriteStats::default();
        let ok = poll(timeout, Duration::from_millis(250), || {
            last = self.remote_write_stats();
            (last.highest_sent_s >= want).then_some(())
        });
        assert!(
            ok.is_some(),
            "{}: remote write did not send past {want} s within {timeout:?}: {last:?}",
            self.proc.name
        );
        last
    }
}
