//! The series generator: label sets, values and timestamps of one worker's share of the series,
//! encoded straight into remote write 1.0 or 2.0 protobuf.
//!
//! Series `i` (0-based, global) belongs to worker `i % workers`, which is the only one ever to send
//! it, in order, so its timestamps strictly increase across requests whatever the concurrency.

use std::collections::HashMap;

/// Newest timestamp a request may carry, relative to the wall clock (receivers refuse > 10 min).
pub const FUTURE_LIMIT_MS: i64 = 5 * 60 * 1000;
/// How far before the start of the run the first round is stamped.
pub const START_LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Remote write protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Remote write 1.0 (`prometheus.WriteRequest`).
    V1,
    /// Remote write 2.0 (`io.prometheus.write.v2.Request`, symbols table).
    V2,
}

impl Protocol {
    /// The name used on the command line and in the JSON summary.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        }
    }

    /// The Content-Type header of a request.
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::V1 => "application/x-protobuf",
            Protocol::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    /// The X-Prometheus-Remote-Write-Version header of a request.
    pub fn version_header(self) -> &'static str {
        match self {
            Protocol::V1 => "0.1.0",
            Protocol::V2 => "2.0.0",
        }
    }
}

/// What a metric is, which decides how its values move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter (name ends in `_total`).
    Counter,
    /// Random-walk gauge.
    Gauge,
    /// Constant (`up`-like, `_info`-like).
    Constant,
}

/// Shape of the series set.
#[derive(Clone, Debug)]
pub struct SeriesConfig {
    /// Active series, all workers together.
    pub series: u64,
    /// Labels per series, `__name__` included (at least 2).
    pub labels: usize,
    /// Distinct values per label (the `pod` label also changes with churn).
    pub label_cardinality: u64,
    /// Distinct metric names.
    pub metrics: u64,
    /// Seeds label values and sample values; another seed gives other series.
    pub seed: u64,
    /// Timestamp step per round, in milliseconds.
    pub scrape_interval_ms: i64,
}

impl SeriesConfig {
    /// Checks that the series can be distinct and spread over `workers` workers.
    pub fn validate(&self, workers: usize) -> Result<(), String> {
        if self.labels < 2 {
            return Err("--labels must be at least 2 (__name__ and pod)".into());
        }
        if self.metrics == 0 || self.label_cardinality == 0 {
            return Err("--metrics and --label-cardinality must be at least 1".into());
        }
        if self.series < workers as u64 {
            return Err(format!(
                "--series ({}) must be at least --concurrency ({workers})",
                self.series
            ));
        }
        if self.scrape_interval_ms < 1 {
            return Err("--scrape-interval must be at least 1ms".into());
        }
        // Series i uses metric i % metrics and label values from the digits of i / metrics in base
        // label_cardinality: distinct as long as there are enough combinations.
        let mut combos = u128::from(self.metrics);
        for _ in 1..self.labels {
            combos = combos.saturating_mul(u128::from(self.label_cardinality));
        }
        if combos < u128::from(self.series) {
            return Err(format!(
                "{} series do not fit in {} metrics x {}^{} label values: raise --metrics, \
                 --labels or --label-cardinality",
                self.series,
                self.metrics,
                self.label_cardinality,
                self.labels - 1
            ));
        }
        Ok(())
    }
}

/// splitmix64: a cheap, well-mixed hash of a 64-bit value.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Label names after `__name__`; `pod` is first so it is always present and carries the churn.
const LABEL_NAMES: &[&str] = &[
    "pod",
    "instance",
    "namespace",
    "job",
    "container",
    "node",
    "cluster",
    "service",
    "endpoint",
    "region",
    "zone",
    "app",
    "team",
    "env",
    "version",
];
const APPS: &[&str] = &[
    "api-gateway",
    "checkout",
    "payments",
    "search",
    "frontend",
    "auth-service",
    "inventory",
    "orders",
    "billing-worker",
    "notifications",
];
const NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "monitoring",
    "ingress-nginx",
    "payments",
    "checkout",
    "search",
    "logging",
    "cert-manager",
    "data",
];
const JOBS: &[&str] = &[
    "kubernetes-pods",
    "node-exporter",
    "kube-state-metrics",
    "kubelet",
    "cadvisor",
    "apiserver",
    "coredns",
    "blackbox",
];
const CONTAINERS: &[&str] = &[
    "app",
    "istio-proxy",
    "envoy",
    "nginx",
    "redis",
    "postgres",
    "worker",
    "sidecar",
];
const CLUSTERS: &[&str] = &[
    "prod-eu-west-1",
    "prod-us-east-1",
    "staging-eu-west-1",
    "prod-ap-south-1",
    "dev-eu-central-1",
];
const ENDPOINTS: &[&str] = &["http-metrics", "metrics", "https", "web", "grpc"];
const REGIONS: &[&str] = &[
    "eu-west-1",
    "us-east-1",
    "us-west-2",
    "ap-south-1",
    "eu-central-1",
];
const ENVS: &[&str] = &["production", "staging", "development", "canary"];
const COUNTERS: &[&str] = &[
    "http_requests",
    "container_cpu_usage_seconds",
    "node_network_receive_bytes",
    "node_network_transmit_bytes",
    "grpc_server_handled",
    "node_disk_read_bytes",
    "node_disk_written_bytes",
    "process_cpu_seconds",
    "http_request_duration_seconds_count",
    "kube_pod_container_status_restarts",
];
const GAUGES: &[&str] = &[
    "container_memory_working_set_bytes",
    "node_memory_MemAvailable_bytes",
    "go_goroutines",
    "node_load1",
    "process_resident_memory_bytes",
    "node_filesystem_avail_bytes",
    "kube_deployment_status_replicas_available",
];
const CONSTANTS: &[&str] = &["up", "kube_pod_info", "node_uname_info"];

/// The `v`-th value of a list, made unique past its end (`checkout`, ..., `checkout-1`).
fn list_value(list: &[&str], v: u64) -> String {
    let n = list.len() as u64;
    if v < n {
        list[v as usize].to_string()
    } else {
        format!("{}-{}", list[(v % n) as usize], v / n)
    }
}

/// Three bytes of `v` as an IPv4-like string, unique for every `v`.
fn ip(v: u64) -> String {
    let base = format!("10.{}.{}.{}", (v >> 16) & 255, (v >> 8) & 255, v & 255);
    if v >> 24 == 0 {
        base
    } else {
        format!("{base}-{}", v >> 24)
    }
}

/// Five base-36 characters naming generation `gen` of pod `v`; for one pod, distinct for 36^5
/// generations.
fn pod_token(seed_hash: u64, v: u64, gen: u32) -> String {
    const SPACE: u64 = 36u64.pow(5);
    // 2654435761 is prime, hence invertible modulo 36^5: a bijection on generations.
    let mut x = (seed_hash % SPACE
        + (v % SPACE) * 7_777_777 % SPACE
        + u64::from(gen) * 2_654_435_761 % SPACE)
        % SPACE;
    let mut out = [b'0'; 5];
    for c in out.iter_mut().rev() {
        *c = b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize];
        x /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of label `k` (0-based after `__name__`) for value index `v`.
fn label_value(k: usize, v: u64, seed_hash: u64, gen: u32) -> String {
    match LABEL_NAMES.get(k).copied() {
        Some("pod") => format!(
            "{}-{:06x}{v:x}-{}",
            APPS[(v % APPS.len() as u64) as usize],
            mix(seed_hash ^ v) & 0xff_ffff,
            pod_token(seed_hash, v, gen)
        ),
        Some("instance") => format!("{}:9100", ip(v)),
        Some("namespace") => list_value(NAMESPACES, v),
        Some("job") => list_value(JOBS, v),
        Some("container") => list_value(CONTAINERS, v),
        Some("node") => format!("ip-{}.eu-west-1.compute.internal", ip(v).replace('.', "-")),
        Some("cluster") => list_value(CLUSTERS, v),
        Some("service") | Some("app") => list_value(APPS, v),
        Some("endpoint") => list_value(ENDPOINTS, v),
        Some("region") => list_value(REGIONS, v),
        Some("zone") => format!(
            "{}{}",
            list_value(REGIONS, v / 3),
            ["a", "b", "c"][(v % 3) as usize]
        ),
        Some("team") => format!("team-{}", list_value(NAMESPACES, v)),
        Some("env") => list_value(ENVS, v),
        Some("version") => format!("v1.{}.{}", v / 10, v % 10),
        _ => format!("value-{v:04}"),
    }
}

/// The name of label `k` (0-based after `__name__`).
fn label_name(k: usize) -> String {
    match LABEL_NAMES.get(k) {
        Some(n) => (*n).to_string(),
        None => format!("label_{k:02}"),
    }
}

/// Kind of metric `m`: half counters, a third gauges, the rest constants.
pub fn metric_kind(m: u64) -> Kind {
    match m % 20 {
        0..=9 => Kind::Counter,
        10..=16 => Kind::Gauge,
        _ => Kind::Constant,
    }
}

/// Name of metric `m`, unique per `m`.
pub fn metric_name(m: u64) -> String {
    let (list, nth, suffix) = match m % 20 {
        r @ 0..=9 => (COUNTERS, (m / 20) * 10 + r, "_total"),
        r @ 10..=16 => (GAUGES, (m / 20) * 7 + (r - 10), ""),
        r => (CONSTANTS, (m / 20) * 3 + (r - 17), ""),
    };
    let n = list.len() as u64;
    if nth < n {
        format!("{}{suffix}", list[nth as usize])
    } else {
        format!("{}_{}{suffix}", list[(nth % n) as usize], nth / n)
    }
}

/// The sorted labels of global series `global` in generation `gen` (churn bumps the generation).
pub fn series_labels(cfg: &SeriesConfig, global: u64, gen: u32) -> Vec<(String, String)> {
    let seed_hash = mix(cfg.seed);
    let m = global % cfg.metrics;
    let j = global / cfg.metrics;
    let c = cfg.label_cardinality;
    let mut out = Vec::with_capacity(cfg.labels);
    out.push(("__name__".to_string(), metric_name(m)));
    // Label k takes digit k of j in base c, shifted by a hash of the lower digits: every label
    // varies, and the digits (hence j) can be recovered from the values, so label sets are distinct.
    let mut rem = j;
    let mut low_mod: u64 = 1;
    for k in 0..cfg.labels - 1 {
        let digit = rem % c;
        rem /= c;
        let low = if low_mod == u64::MAX { j } else { j % low_mod };
        let v = (digit + mix(low ^ ((k as u64) << 48) ^ seed_hash) % c) % c;
        low_mod = low_mod.saturating_mul(c);
        out.push((label_name(k), label_value(k, v, seed_hash, gen)));
    }
    out.sort();
    out
}

/// Encodes `v` as a protobuf varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Length of `v` as a protobuf varint.
#[inline]
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends a length-delimited field.
fn put_bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Strings of the v2 symbols table of one worker, with reference counts so churn frees them.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    strings: Vec<String>,
    refs: Vec<u32>,
    free: Vec<u32>,
}

impl Interner {
    /// The id of `s`, one more reference to it.
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            self.refs[id as usize] += 1;
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                self.strings[id as usize] = s.to_string();
                self.refs[id as usize] = 1;
                id
            }
            None => {
                self.strings.push(s.to_string());
                self.refs.push(1);
                (self.strings.len() - 1) as u32
            }
        };
        self.ids.insert(s.to_string(), id);
        id
    }

    /// Drops one reference to `id`, forgetting the string at zero.
    fn release(&mut self, id: u32) {
        let r = &mut self.refs[id as usize];
        *r -= 1;
        if *r == 0 {
            let s = std::mem::take(&mut self.strings[id as usize]);
            self.ids.remove(&s);
            self.free.push(id);
        }
    }
}

/// One series of a worker and its value state.
struct Slot {
    global: u64,
    gen: u32,
    kind: Kind,
    /// Integer-valued (request counts, bytes) rather than fractional (seconds, load).
    integer: bool,
    value: f64,
    step: f64,
    /// v1: the encoded `Label` fields of its `TimeSeries`.
    v1_labels: Box<[u8]>,
    /// v2: interned name, value, name, value, ...
    v2_ids: Box<[u32]>,
}

/// The series of one worker and the encoder of its requests.
pub struct Shard {
    cfg: SeriesConfig,
    protocol: Protocol,
    slots: Vec<Slot>,
    /// Next slot to send; `slots.len()` means the round is complete.
    pos: usize,
    /// Timestamp of the current round.
    round_ts: i64,
    rng: u64,
    churn_cursor: usize,
    churn_carry: f64,
    churned: u64,
    interner: Interner,
    // v2 per-request symbol refs, indexed by interned id, valid when `ref_epoch == epoch`.
    epoch: u32,
    ref_epoch: Vec<u32>,
    ref_of: Vec<u32>,
    req_symbols: Vec<u32>,
    series_buf: Vec<u8>,
    refs_buf: Vec<u8>,
}

impl Shard {
    /// The series of worker `worker` out of `workers`, first round stamped `now_ms - 5m`.
    pub fn new(
        cfg: &SeriesConfig,
        protocol: Protocol,
        worker: usize,
        workers: usize,
        now_ms: i64,
    ) -> Shard {
        let mut shard = Shard {
            cfg: cfg.clone(),
            protocol,
            slots: Vec::new(),
            pos: 0,
            round_ts: now_ms - START_LOOKBACK_MS,
            rng: mix(cfg.seed ^ (worker as u64).wrapping_mul(0x5851_f42d_4c95_7f2d)),
            churn_cursor: 0,
            churn_carry: 0.0,
            churned: 0,
            interner: Interner::default(),
            epoch: 0,
            ref_epoch: Vec::new(),
            ref_of: Vec::new(),
            req_symbols: Vec::new(),
            series_buf: Vec::new(),
            refs_buf: Vec::new(),
        };
        if protocol == Protocol::V2 {
            // Symbol 0 is always the empty string.
            shard.interner.intern("");
        }
        let mut global = worker as u64;
        while global < cfg.series {
            let slot = shard.make_slot(global, 0);
            shard.slots.push(slot);
            global += workers as u64;
        }
        shard
    }

    /// Builds the slot of series `global`, generation `gen`, with a fresh value state.
    fn make_slot(&mut self, global: u64, gen: u32) -> Slot {
        let labels = series_labels(&self.cfg, global, gen);
        let kind = metric_kind(global % self.cfg.metrics);
        let h = mix(global ^ mix(self.cfg.seed) ^ (u64::from(gen) << 40));
        let integer = h & 1 == 0;
        let (value, step) = match kind {
            Kind::Counter => (
                (h >> 8) as f64 % 1.0e6,
                [1.0, 10.0, 100.0, 1000.0][(h >> 4) as usize & 3],
            ),
            Kind::Gauge => (
                (h >> 8) as f64 % 1.0e4,
                [0.5, 5.0, 50.0, 500.0][(h >> 4) as usize & 3],
            ),
            Kind::Constant => (1.0, 0.0),
        };
        let value = if integer {
            value.floor()
        } else {
            value / 1000.0
        };
        let mut slot = Slot {
            global,
            gen,
            kind,
            integer,
            value,
            step,
            v1_labels: Box::default(),
            v2_ids: Box::default(),
        };
        match self.protocol {
            Protocol::V1 => {
                let mut enc = Vec::new();
                let mut label = Vec::new();
                for (n, v) in &labels {
                    label.clear();
                    put_bytes(&mut label, 0x0a, n.as_bytes());
                    put_bytes(&mut label, 0x12, v.as_bytes());
                    put_bytes(&mut enc, 0x0a, &label);
                }
                slot.v1_labels = enc.into_boxed_slice();
            }
            Protocol::V2 => {
                let mut ids = Vec::with_capacity(labels.len() * 2);
                for (n, v) in &labels {
                    ids.push(self.interner.intern(n));
                    ids.push(self.interner.intern(v));
                }
                slot.v2_ids = ids.into_boxed_slice();
            }
        }
        slot
    }

    /// Number of series of this worker.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether this worker has no series.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Series replaced by churn so far.
    pub fn churned(&self) -> u64 {
        self.churned
    }

    /// Global index and generation of each series of this worker, in sending order.
    pub fn series_ids(&self) -> Vec<(u64, u32)> {
        self.slots.iter().map(|s| (s.global, s.gen)).collect()
    }

    /// Round boundaries a request of `n` samples crosses.
    fn wraps(&self, n: usize) -> i64 {
        if n == 0 || self.slots.is_empty() {
            return 0;
        }
        ((self.pos + n - 1) / self.slots.len()) as i64
    }

    /// Wall-clock time (ms) from which a request of `n` samples fits under `now + 5m` with at
    /// least 1 ms per round; the worker waits until then.
    pub fn ready_at(&self, n: usize) -> i64 {
        match self.wraps(n) {
            0 => i64::MIN,
            k => self.round_ts + k - FUTURE_LIMIT_MS,
        }
    }

    /// The timestamp step of the rounds in a request of `n` samples built at `now_ms`: the scrape
    /// interval, or less (evenly, at least 1 ms) so the newest timestamp stays under `now + 5m`.
    fn step(&self, now_ms: i64, n: usize) -> i64 {
        let k = self.wraps(n);
        if k == 0 {
            return self.cfg.scrape_interval_ms;
        }
        let room = now_ms + FUTURE_LIMIT_MS - self.round_ts;
        (room / k).clamp(1, self.cfg.scrape_interval_ms)
    }

    /// Replaces `percent`% of this worker's series (fractions carried over to the next call) by
    /// new ones, in rotation; returns how many were replaced.
    pub fn churn_percent(&mut self, percent: f64) -> usize {
        let want = self.slots.len() as f64 * percent / 100.0 + self.churn_carry;
        let n = (want.floor() as usize).min(self.slots.len());
        self.churn_carry = want - n as f64;
        for _ in 0..n {
            let i = self.churn_cursor;
            let (global, gen) = (self.slots[i].global, self.slots[i].gen.wrapping_add(1));
            let slot = self.make_slot(global, gen);
            let old = std::mem::replace(&mut self.slots[i], slot);
            for &id in old.v2_ids.iter() {
                self.interner.release(id);
            }
            self.churn_cursor = (i + 1) % self.slots.len();
        }
        self.churned += n as u64;
        n
    }

    /// Next value of slot `i`.
    #[inline]
    fn next_value(slot: &mut Slot, rng: &mut u64) -> f64 {
        *rng = rng.wrapping_add(0xa076_1d64_78bd_642f);
        let r = mix(*rng);
        let unit = (r >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        match slot.kind {
            Kind::Counter => {
                let inc = unit * slot.step;
                slot.value += if slot.integer {
                    inc.floor()
                } else {
                    inc / 100.0
                };
            }
            Kind::Gauge => {
                let d = (unit - 0.5) * slot.step;
                let v = (slot.value + if slot.integer { d.round() } else { d / 100.0 }).abs();
                slot.value = v;
            }
            Kind::Constant => {}
        }
        slot.value
    }

    /// Encodes the next `n` samples (one per series, series in order, rounds advancing) as an
    /// uncompressed request body in `body`. Call no earlier than [`Shard::ready_at`].
    pub fn build(&mut self, now_ms: i64, n: usize, body: &mut Vec<u8>) {
        body.clear();
        if self.slots.is_empty() {
            return;
        }
        let step = self.step(now_ms, n);
        match self.protocol {
            Protocol::V1 => self.build_v1(n, step, body),
            Protocol::V2 => self.build_v2(n, step, body),
        }
    }

    fn build_v1(&mut self, n: usize, step: i64, body: &mut Vec<u8>) {
        for _ in 0..n {
            let (ts, value) = self.next_sample(step);
            let slot = &self.slots[self.pos];
            let sample_len = 1 + 8 + 1 + varint_len(ts as u64);
            let series_len = slot.v1_labels.len() + 2 + sample_len;
            body.push(0x0a);
            put_varint(body, series_len as u64);
            body.extend_from_slice(&slot.v1_labels);
            body.push(0x12);
            body.push(sample_len as u8);
            body.push(0x09);
            body.extend_from_slice(&value.to_le_bytes());
            body.push(0x10);
            put_varint(body, ts as u64);
            self.pos += 1;
        }
    }

    /// Moves to the next series of the round (starting a new round, `step` later, after the last)
    /// and draws its next value; the series is `self.slots[self.pos]`.
    fn next_sample(&mut self, step: i64) -> (i64, f64) {
        if self.pos == self.slots.len() {
            self.pos = 0;
            self.round_ts += step;
        }
        let value = Self::next_value(&mut self.slots[self.pos], &mut self.rng);
        (self.round_ts, value)
    }

    fn build_v2(&mut self, n: usize, step: i64, body: &mut Vec<u8>) {
        let symbols = self.interner.strings.len();
        if self.ref_epoch.len() < symbols {
            self.ref_epoch.resize(symbols, 0);
            self.ref_of.resize(symbols, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.ref_epoch.iter_mut().for_each(|e| *e = 0);
            self.epoch = 1;
        }
        self.req_symbols.clear();
        self.series_buf.clear();
        // The empty string (id 0) is symbol 0.
        self.ref_epoch[0] = self.epoch;
        self.ref_of[0] = 0;
        self.req_symbols.push(0);
        for _ in 0..n {
            let (ts, value) = self.next_sample(step);
            let slot = &self.slots[self.pos];
            self.refs_buf.clear();
            for &id in slot.v2_ids.iter() {
                let id = id as usize;
                if self.ref_epoch[id] != self.epoch {
                    self.ref_epoch[id] = self.epoch;
                    self.ref_of[id] = self.req_symbols.len() as u32;
                    self.req_symbols.push(id as u32);
                }
                put_varint(&mut self.refs_buf, u64::from(self.ref_of[id]));
            }
            let sample_len = 1 + 8 + 1 + varint_len(ts as u64);
            let metric_type = match slot.kind {
                Kind::Counter => 1,
                Kind::Gauge | Kind::Constant => 2,
            };
            let series_len = 1
                + varint_len(self.refs_buf.len() as u64)
                + self.refs_buf.len()
                + 2
                + sample_len
                + 4;
            let out = &mut self.series_buf;
            out.push(0x2a); // Request.timeseries = 5
            put_varint(out, series_len as u64);
            put_bytes(out, 0x0a, &self.refs_buf); // labels_refs = 1, packed
            out.push(0x12); // samples = 2
            out.push(sample_len as u8);
            out.push(0x09);
            out.extend_from_slice(&value.to_le_bytes());
            out.push(0x10);
            put_varint(out, ts as u64);
            out.extend_from_slice(&[0x2a, 0x02, 0x08, metric_type]); // metadata = 5 { type = 1 }
            self.pos += 1;
        }
        for &id in &self.req_symbols {
            put_bytes(body, 0x22, self.interner.strings[id as usize].as_bytes());
            // symbols = 4
        }
        body.extend_from_slice(&self.series_buf);
    }
}
