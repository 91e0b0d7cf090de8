//! Write limits and gates: Thanos Receive's limits YAML (`--receive.limits-config-file`), hot
//! reloaded, plus a per-tenant samples/s rate limit (a Ringest extension).
//!
//! Semantics follow Thanos `pkg/receive/limiter_config.go`, `request_limiter.go` and the "Limits &
//! gates" section of its receive docs:
//! - `0` (or a negative request limit) means no limit; a value absent from `default` means no limit;
//!   a value absent from a tenant's section is the default's. A tenant's `request` section
//!   overrides the default field by field.
//! - Request limits (`size_bytes_limit`, `series_limit`, `samples_limit`) answer 413. The size
//!   limit is checked against the compressed body and the decompressed size, like Thanos.
//! - `max_concurrency` is a gate: requests over it wait for a slot, as in Thanos; Ringest bounds
//!   the wait with `max_concurrency_wait` (default 10s; `0s` refuses at once) and then answers 429.
//! - `head_series_limit` is enforced by each ingestor on its own head (Thanos asks a
//!   meta-monitoring Prometheus for the tenant's total): a request that would take the tenant's
//!   head past the limit is refused whole with 429; writes to existing series keep passing.
//! - `samples_per_second` (Ringest): a token bucket per tenant, burst one second's worth, 429.
//!
//! The file is parsed strictly (unknown fields are errors naming the field, as Thanos's
//! `UnmarshalStrict`) and polled for changes; a bad reload keeps the limits in force and logs why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Classify, ErrorClass};

/// How long a client refused by a head series limit is told to wait: the head only shrinks when
/// a block is cut, so an immediate retry would be refused again.
pub const HEAD_SERIES_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How long a client refused by the concurrency gate is told to wait.
pub const CONCURRENCY_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Default bound of the wait at the concurrency gate.
pub const DEFAULT_MAX_CONCURRENCY_WAIT: Duration = Duration::from_secs(10);

/// The limits of one tenant, resolved (defaults applied). `None` is unlimited.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantLimits {
    /// Largest body, compressed and decompressed, in bytes (413).
    pub size_bytes: Option<u64>,
    /// Most series in one request (413).
    pub series: Option<u64>,
    /// Most samples in one request (413).
    pub samples: Option<u64>,
    /// Most series in this ingestor's head of the tenant (429).
    pub head_series: Option<u64>,
    /// Samples accepted per second, burst one second's worth (429).
    pub samples_per_second: Option<f64>,
}

/// A parsed limits file.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitsConfig {
    /// Remote write requests processed at once (`None`: unlimited).
    pub max_concurrency: Option<usize>,
    /// How long a request waits for a slot before 429.
    pub max_concurrency_wait: Duration,
    /// Limits of tenants not listed.
    pub default: TenantLimits,
    /// Limits of listed tenants, defaults applied.
    pub tenants: HashMap<String, TenantLimits>,
    /// Accepted fields that Ringest ignores (meta-monitoring), for a warning.
    pub ignored: Vec<&'static str>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_concurrency: None,
            max_concurrency_wait: DEFAULT_MAX_CONCURRENCY_WAIT,
            default: TenantLimits::default(),
            tenants: HashMap::new(),
            ignored: Vec::new(),
        }
    }
}

impl LimitsConfig {
    /// The limits of `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> &TenantLimits {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }
}

// The file as written. Every struct refuses unknown fields; optional values tell "absent" from 0.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    #[serde(default)]
    write: Option<RawWrite>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWrite {
    #[serde(default)]
    global: Option<RawGlobal>,
    #[serde(default)]
    default: Option<RawTenant>,
    #[serde(default)]
    tenants: Option<HashMap<String, Option<RawTenant>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    #[serde(default)]
    max_concurrency: Option<i64>,
    /// Ringest: bound of the wait at the gate (Prometheus duration).
    #[serde(default)]
    max_concurrency_wait: Option<String>,
    #[serde(default)]
    meta_monitoring_url: Option<String>,
    #[serde(default)]
    meta_monitoring_limit_query: Option<String>,
    #[serde(default)]
    meta_monitoring_http_client: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    size_bytes_limit: Option<i64>,
    #[serde(default)]
    series_limit: Option<i64>,
    #[serde(default)]
    samples_limit: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    #[serde(default)]
    request: Option<RawRequest>,
    #[serde(default)]
    head_series_limit: Option<u64>,
    /// Ringest: samples per second.
    #[serde(default)]
    samples_per_second: Option<f64>,
}

/// Why a limits configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum LimitsConfigError {
    /// The file could not be read.
    #[error("reading limits config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not parse or has unknown fields.
    #[error("parsing limits config{}: {message}", origin(.path))]
    Parse {
        /// The file, if from one.
        path: Option<PathBuf>,
        /// The parser's message (names the field and position).
        message: String,
    },
    /// A value is out of range.
    #[error("limits config{}: {message}", origin(.path))]
    Invalid {
        /// The file, if from one.
        path: Option<PathBuf>,
        /// What is wrong.
        message: String,
    },
}

fn origin(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

/// A positive request limit (Thanos: `<= 0` is no limit).
fn positive(v: i64) -> Option<u64> {
    (v > 0).then_some(v as u64)
}

/// Parses a limits YAML document; `path` only names it in errors.
pub fn parse(yaml: &str, path: Option<&Path>) -> Result<LimitsConfig, LimitsConfigError> {
    let path = path.map(Path::to_path_buf);
    let invalid = |message: String| LimitsConfigError::Invalid {
        path: path.clone(),
        message,
    };
    let raw: RawRoot = if yaml.trim().is_empty() {
        RawRoot::default()
    } else {
        serde_yaml_ng::from_str(yaml).map_err(|e| LimitsConfigError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?
    };
    let write = raw.write.unwrap_or_default();
    let global = write.global.unwrap_or_default();
    let mut cfg = LimitsConfig {
        max_concurrency: global
            .max_concurrency
            .and_then(positive)
            .map(|v| v as usize),
        ..LimitsConfig::default()
    };
    if let Some(w) = &global.max_concurrency_wait {
        cfg.max_concurrency_wait = crate::duration::parse_duration(w)
            .map_err(|e| invalid(format!("write.global.max_concurrency_wait: {e}")))?;
    }
    if global.meta_monitoring_url.is_some() {
        cfg.ignored.push("meta_monitoring_url");
    }
    if global.meta_monitoring_limit_query.is_some() {
        cfg.ignored.push("meta_monitoring_limit_query");
    }
    if global.meta_monitoring_http_client.is_some() {
        cfg.ignored.push("meta_monitoring_http_client");
    }

    let rate = |v: Option<f64>, at: &str| -> Result<Option<f64>, LimitsConfigError> {
        match v {
            Some(r) if !r.is_finite() || r < 0.0 => Err(invalid(format!(
                "{at}.samples_per_second must be a number >= 0, got {r}"
            ))),
            Some(r) => Ok((r > 0.0).then_some(r)),
            None => Ok(None),
        }
    };

    let default = write.default.unwrap_or_default();
    let req = default.request.unwrap_or_default();
    cfg.default = TenantLimits {
        size_bytes: req.size_bytes_limit.and_then(positive),
        series: req.series_limit.and_then(positive),
        samples: req.samples_limit.and_then(positive),
        head_series: default.head_series_limit.filter(|&v| v > 0),
        samples_per_second: rate(default.samples_per_second, "write.default")?,
    };

    for (tenant, t) in write.tenants.unwrap_or_default() {
        let d = &cfg.default;
        let Some(t) = t else {
            cfg.tenants.insert(tenant, d.clone());
            continue;
        };
        // Thanos OverlayWith: a field absent from the tenant's request section is the default's.
        let pick = |own: Option<i64>, default: Option<u64>| match own {
            Some(v) => positive(v),
            None => default,
        };
        let (size_bytes, series, samples) = match &t.request {
            None => (d.size_bytes, d.series, d.samples),
            Some(r) => (
                pick(r.size_bytes_limit, d.size_bytes),
                pick(r.series_limit, d.series),
                pick(r.samples_limit, d.samples),
            ),
        };
        let limits = TenantLimits {
            size_bytes,
            series,
            samples,
            // Set (even to 0, unlimited) overrides the default; absent inherits it.
            head_series: match t.head_series_limit {
                Some(v) => (v > 0).then_some(v),
                None => d.head_series,
            },
            samples_per_second: match t.samples_per_second {
                Some(_) => rate(t.samples_per_second, &format!("write.tenants.{tenant}"))?,
                None => d.samples_per_second,
            },
        };
        cfg.tenants.insert(tenant, limits);
    }
    Ok(cfg)
}

/// Why a request was refused by a limit.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The body (compressed, or once decompressed) is over `size_bytes_limit` (413).
    #[error("request body of {size} bytes{}, over the size_bytes limit {limit} of tenant {tenant:?}", if *.decompressed { " decompressed" } else { "" })]
    BodySize {
        /// The tenant.
        tenant: String,
        /// The size seen.
        size: u64,
        /// The limit.
        limit: u64,
        /// Whether `size` is the decompressed size.
        decompressed: bool,
    },
    /// More series than `series_limit` (413).
    #[error("request has {series} series, over the series limit {limit} of tenant {tenant:?}")]
    Series {
        /// The tenant.
        tenant: String,
        /// Series in the request.
        series: u64,
        /// The limit.
        limit: u64,
    },
    /// More samples than `samples_limit` (413).
    #[error("request has {samples} samples, over the samples limit {limit} of tenant {tenant:?}")]
    Samples {
        /// The tenant.
        tenant: String,
        /// Samples in the request.
        samples: u64,
        /// The limit.
        limit: u64,
    },
    /// The request would take the tenant's head past `head_series_limit` (429).
    #[error("request would create {new_series} new series, over the head series limit {limit} of tenant {tenant:?} ({head_series} series in the head)")]
    HeadSeries {
        /// The tenant.
        tenant: String,
        /// Series in the head now.
        head_series: u64,
        /// Series the request would create.
        new_series: u64,
        /// The limit.
        limit: u64,
    },
    /// No slot of `max_concurrency` freed in time (429).
    #[error("{max} remote write requests in progress, the max_concurrency limit: no slot freed within {waited:?}")]
    Concurrency {
        /// The tenant of the refused request.
        tenant: String,
        /// The limit.
        max: usize,
        /// How long the request waited.
        waited: Duration,
    },
    /// The tenant's `samples_per_second` budget is spent (429).
    #[error("request has {samples} samples, over the rate limit of {rate} samples/s of tenant {tenant:?}")]
    Rate {
        /// The tenant.
        tenant: String,
        /// Samples in the request.
        samples: u64,
        /// The limit.
        rate: f64,
        /// When the budget allows the request again.
        retry_after: Duration,
    },
}

impl LimitError {
    /// The `limit` label of `ringest_limits_refused_requests_total` (Thanos's names where it has them).
    pub fn limit_name(&self) -> &'static str {
        match self {
            LimitError::BodySize { .. } => "body_size",
            LimitError::Series { .. } => "series",
            LimitError::Samples { .. } => "samples",
            LimitError::HeadSeries { .. } => "head_series",
            LimitError::Concurrency { .. } => "max_concurrency",
            LimitError::Rate { .. } => "samples_per_second",
        }
    }

    /// The tenant of the refused request.
    pub fn tenant(&self) -> &str {
        match self {
            LimitError::BodySize { tenant, .. }
            | LimitError::Series { tenant, .. }
            | LimitError::Samples { tenant, .. }
            | LimitError::HeadSeries { tenant, .. }
            | LimitError::Concurrency { tenant, .. }
            | LimitError::Rate { tenant, .. } => tenant,
        }
    }

    /// Counts the refusal in `ringest_limits_refused_requests_total{tenant,limit}`.
    pub fn record(&self) {
        metrics::counter!("ringest_limits_refused_requests_total", "tenant" => self.tenant().to_string(), "limit" => self.limit_name())
            .increment(1);
    }
}

/// Request limits are too large (Thanos answers 413: retrying the same request cannot help);
/// head series, concurrency and rate limits are limited (429, retry after `Retry-After`).
impl Classify for LimitError {
    fn class(&self) -> ErrorClass {
        match self {
            LimitError::BodySize { .. }
            | LimitError::Series { .. }
            | LimitError::Samples { .. } => ErrorClass::TooLarge,
            LimitError::HeadSeries { .. }
            | LimitError::Concurrency { .. }
            | LimitError::Rate { .. } => ErrorClass::Limited,
        }
    }

    /// How long the client should wait before retrying; `None` when a retry cannot help (413).
    fn retry_after(&self) -> Option<Duration> {
        match self {
            LimitError::BodySize { .. }
            | LimitError::Series { .. }
            | LimitError::Samples { .. } => None,
            LimitError::HeadSeries { .. } => Some(HEAD_SERIES_RETRY_AFTER),
            LimitError::Concurrency { .. } => Some(CONCURRENCY_RETRY_AFTER),
            LimitError::Rate { retry_after, .. } => Some(*retry_after),
        }
    }
}

/// The configuration in force and its gate.
struct Active {
    config: Arc<LimitsConfig>,
    gate: Option<Arc<Semaphore>>,
}

/// One tenant's rate budget.
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Buckets idle this long are dropped when the map grows (they would be full again anyway,
/// unless a huge request left a long debt).
const BUCKET_IDLE: Duration = Duration::from_secs(60);
const BUCKETS_PRUNE_AT: usize = 4096;

/// The limits in force, shared by every request; swapped by the file watcher.
pub struct Limiter {
    active: RwLock<Arc<Active>>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(LimitsConfig::default())
    }
}

impl Limiter {
    /// A limiter enforcing `config`.
    pub fn new(config: LimitsConfig) -> Self {
        let limiter = Self {
            active: RwLock::new(Arc::new(Active {
                config: Arc::new(LimitsConfig::default()),
                gate: None,
            })),
            buckets: Mutex::new(HashMap::new()),
        };
        limiter.set(config);
        limiter
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<LimitsConfig> {
        self.active.read().config.clone()
    }

    /// Puts `config` in force. The gate is kept when `max_concurrency` did not change, so
    /// requests in flight keep counting; otherwise a new gate starts empty.
    pub fn set(&self, config: LimitsConfig) {
        for field in &config.ignored {
            tracing::warn!(
                field,
                "limits config: ignored; Ringest ingestors enforce head_series_limit on their own heads"
            );
        }
        let mut active = self.active.write();
        let gate = match config.max_concurrency {
            None => None,
            Some(n) if active.config.max_concurrency == Some(n) => active.gate.clone(),
            Some(n) => Some(Arc::new(Semaphore::new(n))),
        };
        *active = Arc::new(Active {
            config: Arc::new(config),
            gate,
        });
    }

    /// Waits for a slot of the concurrency gate; the permit frees it when dropped.
    pub async fn admit(&self, tenant: &str) -> Result<Option<OwnedSemaphorePermit>, LimitError> {
        let active = self.active.read().clone();
        let Some(gate) = active.gate.clone() else {
            return Ok(None);
        };
        if let Ok(p) = gate.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        let wait = active.config.max_concurrency_wait;
        let refused = || {
            let e = LimitError::Concurrency {
                tenant: tenant.to_string(),
                max: active.config.max_concurrency.unwrap_or_default(),
                waited: wait,
            };
            e.record();
            e
        };
        if wait.is_zero() {
            return Err(refused());
        }
        match tokio::time::timeout(wait, gate.acquire_owned()).await {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => Err(refused()),
        }
    }

    /// Checks a body size (compressed, or decompressed) against `tenant`'s size limit.
    pub fn check_size(
        &self,
        tenant: &str,
        size: u64,
        decompressed: bool,
    ) -> Result<(), LimitError> {
        match self.config().for_tenant(tenant).size_bytes {
            Some(limit) if size > limit => Err(recorded(LimitError::BodySize {
                tenant: tenant.to_string(),
                size,
                limit,
                decompressed,
            })),
            _ => Ok(()),
        }
    }

    /// Checks the series and samples of a decoded request against `tenant`'s request limits,
    /// then takes its samples from the tenant's rate budget.
    pub fn check_request(&self, tenant: &str, series: u64, samples: u64) -> Result<(), LimitError> {
        let config = self.config();
        let limits = config.for_tenant(tenant);
        if let Some(limit) = limits.series.filter(|&l| series > l) {
            return Err(recorded(LimitError::Series {
                tenant: tenant.to_string(),
                series,
                limit,
            }));
        }
        if let Some(limit) = limits.samples.filter(|&l| samples > l) {
            return Err(recorded(LimitError::Samples {
                tenant: tenant.to_string(),
                samples,
                limit,
            }));
        }
        if let Some(rate) = limits.samples_per_second {
            if let Err(retry_after) = self.take(tenant, samples, rate, Instant::now()) {
                return Err(recorded(LimitError::Rate {
                    tenant: tenant.to_string(),
                    samples,
                    rate,
                    retry_after,
                }));
            }
        }
        Ok(())
    }

    /// `tenant`'s head series limit, if any.
    pub fn head_series_limit(&self, tenant: &str) -> Option<u64> {
        self.config().for_tenant(tenant).head_series
    }

    /// Token bucket: `rate` tokens a second, holding at most `rate` (one second's worth). A
    /// request needs `min(n, burst)` tokens and takes `n`, so one larger than the burst passes on
    /// a full bucket and leaves a debt that later requests wait out.
    fn take(&self, tenant: &str, n: u64, rate: f64, now: Instant) -> Result<(), Duration> {
        let burst = rate;
        let mut buckets = self.buckets.lock();
        if buckets.len() >= BUCKETS_PRUNE_AT {
            buckets.retain(|_, b| now.saturating_duration_since(b.last) < BUCKET_IDLE);
        }
        let b = buckets.entry(tenant.to_string()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        let need = (n as f64).min(burst);
        if b.tokens >= need {
            b.tokens -= n as f64;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((need - b.tokens) / rate))
        }
    }

    /// Polls `path` every `interval` and puts a changed, valid file in force; a bad one keeps the
    /// limits in force, logs why and sets `ringest_limits_config_last_reload_successful` to 0.
    /// `last` is the content already in force.
    pub fn watch(self: &Arc<Self>, path: PathBuf, last: String, interval: Duration) {
        let weak = Arc::downgrade(self);
        let p = path.clone();
        crate::reload::watch(
            path,
            last.into_bytes(),
            interval,
            "limits config file",
            "ringest_limits_config",
            move |contents| {
                let Some(limiter) = weak.upgrade() else {
                    return crate::reload::Applied::Stop;
                };
                let text = String::from_utf8_lossy(contents);
                match parse(&text, Some(&p)) {
                    Ok(cfg) => {
                        limiter.set(cfg);
                        crate::reload::Applied::Ok
                    }
                    Err(e) => crate::reload::Applied::Invalid(e.to_string()),
                }
            },
        );
    }
}

/// Reads and parses a limits file; returns its content too, for [`Limiter::watch`]. Startup
/// fails on a bad file, as Thanos does.
pub fn load_file(path: &Path) -> Result<(LimitsConfig, String), LimitsConfigError> {
    let text = read(path)?;
    Ok((parse(&text, Some(path))?, text))
}

fn read(path: &Path) -> Result<String, LimitsConfigError> {
    std::fs::read_to_string(path).map_err(|source| LimitsConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn recorded(e: LimitError) -> LimitError {
    e.record();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thanos's own example (`pkg/receive/testdata/limits_config/good_limits.yaml`).
    const THANOS_EXAMPLE: &str = r#"
write:
  global:
    max_concurrency: 30
    meta_monitoring_url: "http://localhost:9090"
    meta_monitoring_limit_query: "sum(prometheus_tsdb_head_series) by (tenant)"
  default:
    request:
      size_bytes_limit: 1024
      series_limit: 1000
      samples_limit: 10
    head_series_limit: 1000
  tenants:
    acme:
      request:
        size_bytes_limit: 0
        series_limit: 0
        samples_limit: 0
      head_series_limit: 2000
    ajax:
      request:
        series_limit: 50000
        samples_limit: 500
"#;

    #[test]
    fn thanos_example_resolves_as_its_docs_say() {
        let cfg = parse(THANOS_EXAMPLE, None).unwrap();
        assert_eq!(cfg.max_concurrency, Some(30));
        assert_eq!(
            cfg.ignored,
            vec!["meta_monitoring_url", "meta_monitoring_limit_query"]
        );
        let default = TenantLimits {
            size_bytes: Some(1024),
            series: Some(1000),
            samples: Some(10),
            head_series: Some(1000),
            samples_per_second: None,
        };
        assert_eq!(cfg.for_tenant("someone"), &default);
        // acme: 0 is "no limit", explicitly; its own head series limit.
        assert_eq!(
            cfg.for_tenant("acme"),
            &TenantLimits {
                head_series: Some(2000),
                ..TenantLimits::default()
            }
        );
        // ajax: two request fields of its own, the size limit and head series inherited.
        assert_eq!(
            cfg.for_tenant("ajax"),
            &TenantLimits {
                size_bytes: Some(1024),
                series: Some(50000),
                samples: Some(500),
                head_series: Some(1000),
                samples_per_second: None,
            }
        );
    }

    #[test]
    fn absent_sections_inherit_and_zero_or_negative_is_unlimited() {
        let cfg = parse(
            r#"
write:
  default:
    request: {series_limit: 10, samples_limit: -5}
    head_series_limit: 100
    samples_per_second: 50
  tenants:
    nothing:
    no_request: {head_series_limit: 0}
    rate: {samples_per_second: 0, request: {samples_limit: 7}}
"#,
            None,
        )
        .unwrap();
        assert_eq!(cfg.max_concurrency, None);
        assert_eq!(cfg.max_concurrency_wait, DEFAULT_MAX_CONCURRENCY_WAIT);
        let d = cfg.for_tenant("x").clone();
        assert_eq!(
            d,
            TenantLimits {
                size_bytes: None,
                series: Some(10),
                samples: None,
                head_series: Some(100),
                samples_per_second: Some(50.0),
            }
        );
        assert_eq!(cfg.for_tenant("nothing"), &d);
        assert_eq!(
            cfg.for_tenant("no_request"),
            &TenantLimits {
                head_series: None,
                ..d.clone()
            }
        );
        assert_eq!(
            cfg.for_tenant("rate"),
            &TenantLimits {
                samples: Some(7),
                samples_per_second: None,
                ..d.clone()
            }
        );
    }

    #[test]
    fn empty_documents_mean_no_limits() {
        for y in ["", "  \n", "write:", "write: {}\n", "write:\n  tenants:\n"] {
            let cfg = parse(y, None).unwrap_or_else(|e| panic!("{y:?}: {e}"));
            assert_eq!(cfg, LimitsConfig::default(), "{y:?}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_by_name() {
        // Thanos's own invalid example: `request` directly under `write`.
        let thanos_invalid =
            "write:\n  global:\n    max_concurrency: 30\n  request:\n    size_bytes_limit: 1024\n";
        let cases = [
            (thanos_invalid, "request"),
            ("writes: {}", "writes"),
            ("write: {global: {max_concurency: 3}}", "max_concurency"),
            (
                "write: {default: {request: {series: 3}}}",
                "unknown field `series`",
            ),
            ("write: {tenants: {a: {head_series: 3}}}", "head_series"),
            (
                "write: {default: {head_series_limit: -1}}",
                "head_series_limit",
            ),
            (
                "write: {default: {request: {series_limit: ten}}}",
                "series_limit",
            ),
            (
                "write: {global: {max_concurrency_wait: soon}}",
                "max_concurrency_wait",
            ),
            (
                "write: {tenants: {a: {samples_per_second: -2}}}",
                "write.tenants.a.samples_per_second",
            ),
            ("write: [1, 2]", "write"),
        ];
        for (yaml, needle) in cases {
            let err = parse(yaml, Some(Path::new("limits.yaml")))
                .expect_err(yaml)
                .to_string();
            assert!(err.contains(needle), "{yaml:?}: {err:?} lacks {needle:?}");
            assert!(err.contains("limits.yaml"), "{err}");
        }
    }

    #[test]
    fn request_checks_name_the_limit_tenant_and_value() {
        let limiter = Limiter::new(parse(THANOS_EXAMPLE, None).unwrap());
        let e = limiter.check_request("other", 1500, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"request has 1500 series, over the series limit 1000 of tenant "other""#
        );
        assert_eq!(e.limit_name(), "series");
        assert_eq!(e.retry_after(), None);
        let e = limiter.check_request("ajax", 10, 501).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"request has 501 samples, over the samples limit 500 of tenant "ajax""#
        );
        limiter.check_request("ajax", 50000, 500).unwrap();
        limiter.check_request("acme", 1 << 40, 1 << 40).unwrap();
        let e = limiter.check_size("other", 2000, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"request body of 2000 bytes decompressed, over the size_bytes limit 1024 of tenant "other""#
        );
        limiter.check_size("other", 1024, false).unwrap();
        limiter.check_size("acme", 1 << 30, false).unwrap();
        assert_eq!(limiter.head_series_limit("acme"), Some(2000));
        assert_eq!(limiter.head_series_limit("x"), Some(1000));
    }

    #[test]
    fn rate_bucket_bursts_one_second_and_refills() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        // 100/s: a full second's worth passes at once, then nothing until refilled.
        assert!(limiter.take("a", 100, 100.0, t0).is_ok());
        let wait = limiter.take("a", 10, 100.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // Other tenants have their own bucket.
        assert!(limiter.take("b", 60, 100.0, t0).is_ok());
        let t1 = t0 + Duration::from_millis(100);
        assert!(limiter.take("a", 10, 100.0, t1).is_ok());
        assert!(limiter.take("a", 1, 100.0, t1).is_err());
        // A request over the burst passes on a full bucket and leaves a debt.
        let t2 = t1 + Duration::from_secs(5);
        assert!(limiter.take("a", 300, 100.0, t2).is_ok());
        let wait = limiter.take("a", 1, 100.0, t2).unwrap_err();
        assert!((wait.as_secs_f64() - 2.01).abs() < 1e-6, "{wait:?}");
    }

    #[tokio::test]
    async fn gate_waits_then_refuses_and_survives_unchanged_reloads() {
        let mut cfg = parse(
            "write: {global: {max_concurrency: 1, max_concurrency_wait: 50ms}}",
            None,
        )
        .unwrap();
        let limiter = Limiter::new(cfg.clone());
        let first = limiter.admit("t").await.unwrap().expect("a permit");
        let started = Instant::now();
        let e = limiter.admit("t").await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(e.limit_name(), "max_concurrency");
        assert_eq!(e.retry_after(), Some(CONCURRENCY_RETRY_AFTER));
        // The same limit reloaded keeps the slot taken.
        limiter.set(cfg.clone());
        assert!(limiter.admit("t").await.is_err());
        // A longer wait, same max_concurrency: the slot stays taken, and a waiting request gets
        // it when it frees.
        cfg.max_concurrency_wait = Duration::from_secs(5);
        limiter.set(cfg.clone());
        let (waiter, ()) = tokio::join!(limiter.admit("t"), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(first);
        });
        assert!(waiter.unwrap().is_some());
        // No limit: no gate.
        limiter.set(LimitsConfig::default());
        assert!(limiter.admit("t").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn file_reloads_keep_the_old_limits_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("limits.yaml");
        let v1 = "write: {default: {request: {series_limit: 10}}}";
        std::fs::write(&path, v1).unwrap();
        let (cfg, text) = load_file(&path).unwrap();
        let limiter = Arc::new(Limiter::new(cfg));
        limiter.watch(path.clone(), text, Duration::from_millis(20));
        let settle = || tokio::time::sleep(Duration::from_millis(200));
        assert_eq!(limiter.config().default.series, Some(10));
        std::fs::write(&path, "write: {default: {request: {series_limit: 20}}}").unwrap();
        settle().await;
        assert_eq!(limiter.config().default.series, Some(20));
        std::fs::write(&path, "write: {default: {request: {serie_limit: 30}}}").unwrap();
        settle().await;
        assert_eq!(limiter.config().default.series, Some(20));
        std::fs::remove_file(&path).unwrap();
        settle().await;
        assert_eq!(limiter.config().default.series, Some(20));
        std::fs::write(&path, "write: {default: {request: {series_limit: 40}}}").unwrap();
        settle().await;
        assert_eq!(limiter.config().default.series, Some(40));
    }
}
