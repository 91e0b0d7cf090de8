//! `ringest-loadtest`: sends Prometheus remote write (1.0 or 2.0) to a URL and measures it.

use std::time::Duration;

use clap::Parser;
use loadtest::parse_duration;
use loadtest::run::{run, RunConfig};
use loadtest::series::{Protocol, SeriesConfig};

const AFTER_HELP: &str = "\
Series: series i has metric i % --metrics and label values drawn from i / --metrics (at most
--label-cardinality values per label); label names are __name__, pod, instance, namespace, job,
container, node, cluster, ... Metrics are a mix of counters (_total), random-walk gauges and
constants. Series i is sent only by worker i % --concurrency, one sample per series per round, in
order, so every series' timestamps strictly increase across requests.

Timestamps: the first round is stamped (start - 5m). Each round (one sample of each of a worker's
series) advances by --scrape-interval. When that would stamp a request's newest sample later than
now + 5m, that request's rounds advance by (now + 5m - last timestamp) / rounds in the request
instead, at least 1 ms; when even 1 ms per round would pass now + 5m, the worker waits (counted as
clock_waits). Receivers refuse samples more than 10m in the future or older than their newest - 1h,
so none is refused. A second run against the same receiver re-sends the same series from (start - 5m):
give it another --seed (label values differ) or the receiver answers out of order.

Requests: no retries. 2xx counts as accepted; other statuses are errors by code; failures to connect
or read an answer count as `connection`, answers later than --timeout as `timeout`.";

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "ringest-loadtest",
    version,
    about = "Prometheus remote write (1.0/2.0) load generator",
    after_help = AFTER_HELP
)]
struct Args {
    /// Remote write URL (http only), e.g. Prometheus: http://127.0.0.1:9090/api/v1/write.
    #[arg(long, default_value = "http://127.0.0.1:19291/api/v1/receive")]
    url: String,
    /// Tenant(s) to send as (repeatable or comma-separated); worker w sends as tenant w % count.
    /// None: no tenant header.
    #[arg(long, value_delimiter = ',')]
    tenant: Vec<String>,
    /// Header carrying the tenant.
    #[arg(long, default_value = "THANOS-TENANT")]
    tenant_header: String,
    /// Active series, all workers together.
    #[arg(long, default_value_t = 10_000)]
    series: u64,
    /// Labels per series, __name__ included (at least 2).
    #[arg(long, default_value_t = 10)]
    labels: usize,
    /// Distinct values per label.
    #[arg(long, default_value_t = 100)]
    label_cardinality: u64,
    /// Distinct metric names.
    #[arg(long, default_value_t = 100)]
    metrics: u64,
    /// Samples per request (Prometheus's max_samples_per_send).
    #[arg(long, default_value_t = 2000)]
    samples_per_request: usize,
    /// Concurrent connections, one request in flight each.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How long to run, e.g. 30s, 1m30s, 500ms [default: 30s unless --requests is given].
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many requests (with --duration, whichever comes first).
    #[arg(long)]
    requests: Option<u64>,
    /// Target samples/s over all connections; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Remote write version.
    #[arg(long, value_enum, default_value_t = Proto::V1)]
    protocol: Proto,
    /// Percentage of series replaced (new pod label value) every --churn-interval.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Period of churn.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    churn_interval: Duration,
    /// Timestamp step between rounds of a series (see Timestamps below).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    scrape_interval: Duration,
    /// Seed of label and sample values; another seed gives other series.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Timeout of one request.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Runtime threads [default: min(cores, --concurrency)].
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object on stdout at the end, and no progress line.
    #[arg(long)]
    json: bool,
}

/// Protocol flag values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Proto {
    /// Remote write 1.0.
    V1,
    /// Remote write 2.0.
    V2,
}

fn main() {
    let args = Args::parse();
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(args.concurrency.max(1))
    });
    let duration = match (args.duration, args.requests) {
        (None, None) => Some(Duration::from_secs(30)),
        (d, _) => d,
    };
    let cfg = RunConfig {
        url: args.url,
        tenants: args.tenant.into_iter().filter(|t| !t.is_empty()).collect(),
        tenant_header: args.tenant_header,
        series: SeriesConfig {
            series: args.series,
            labels: args.labels,
            label_cardinality: args.label_cardinality,
            metrics: args.metrics,
            seed: args.seed,
            scrape_interval_ms: args.scrape_interval.as_millis() as i64,
        },
        samples_per_request: args.samples_per_request,
        concurrency: args.concurrency,
        duration,
        requests: args.requests,
        rate: args.rate,
        protocol: match args.protocol {
            Proto::V1 => Protocol::V1,
            Proto::V2 => Protocol::V2,
        },
        churn: args.churn,
        churn_interval: args.churn_interval,
        timeout: args.timeout,
        progress: !args.json,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringest-loadtest: starting the runtime: {e}");
            std::process::exit(2);
        }
    };
    match rt.block_on(run(cfg)) {
        Ok(summary) => {
            if args.json {
                println!("{}", summary.to_json());
            } else {
                println!("{}", summary.to_text());
            }
        }
        Err(e) => {
            eprintln!("ringest-loadtest: {e}");
            std::process::exit(2);
        }
    }
}
