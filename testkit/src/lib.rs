//! Ringest's test kit: what the end-to-end tests (and the unit tests' promtool checks) need to drive
//! real processes on loopback. Dev-only; never published.
//!
//! - [`proc`]: child-process guards (killed on drop, logs printed when a test panics), one-shot
//!   runs, the binary under test;
//! - [`net`], [`http`]: free ports, a tiny blocking HTTP/1.1 client and a raw request sender;
//! - [`cluster`]: `ringest ingest` / `ringest router` processes and a router over `n` ingestors;
//! - [`prometheus`], [`promtool`]: a Prometheus 2.42 launcher with its HTTP API, and `promtool`
//!   with `tsdb dump` parsing;
//! - [`remote`], [`wire`]: remote-read / remote-write clients on the `proto` crate, and a raw
//!   protobuf writer for bodies prost would not produce;
//! - [`s3`]: a moto S3-protocol server;
//! - [`thanos_store`]: an independent Thanos Store API / Info API client (Python grpcio, its own
//!   chunk decoder) with replica dedup helpers;
//! - [`compare`]: oracles comparing PromQL, promtool dumps and remote reads;
//! - [`files`], [`time`], [`rng`]: test directories and TSDB layouts on disk, bounded polling,
//!   a seeded PRNG.
//!
//! Everything is bounded in time (every wait has a deadline, every socket a timeout) and talks to
//! 127.0.0.1 only. It does not depend on the `ringest` crate: the binary under test is a path
//! (see [`proc::binary_under_test`]).
//!
//! Environment: `RINGEST_BIN` (binary under test, default the one Cargo built), `PROMETHEUS_BIN`,
//! `PROMTOOL_BIN` (default `prometheus`, `promtool` on `$PATH`, Debian's 2.42), `MOTO_SERVER_BIN`,
//! `RINGEST_VENV` (the Python venv with moto and grpcio),
//! `RINGEST_E2E_KEEP` (keep each test's directory with process logs and TSDBs).

use std::collections::BTreeMap;

pub mod cluster;
pub mod compare;
pub mod files;
pub mod http;
pub mod net;
pub mod proc;
pub mod prometheus;
pub mod promtool;
pub mod remote;
pub mod rng;
pub mod s3;
pub mod thanos_store;
pub mod time;
pub mod wire;

/// Bits of the Prometheus stale marker (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// Bits of Go's `math.NaN()`, which Prometheus stores for a scraped `NaN`.
pub const GO_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// A label set, sorted by name.
pub type Labels = BTreeMap<String, String>;
/// Samples of one series as (timestamp ms, value bits), sorted by timestamp.
pub type Samples = Vec<(i64, u64)>;

/// A label set from pairs.
pub fn label_map(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Everything above in one import, for test files: `use testkit::prelude::*;`.
pub mod prelude {
    pub use crate::cluster::*;
    pub use crate::compare::*;
    pub use crate::files::*;
    pub use crate::http::*;
    pub use crate::net::*;
    pub use crate::proc::*;
    pub use crate::prometheus::*;
    pub use crate::promtool::*;
    pub use crate::remote::*;
    pub use crate::rng::*;
    pub use crate::s3::*;
    pub use crate::thanos_store::*;
    pub use crate::time::*;
    pub use crate::wire::*;
    pub use crate::{label_map, Labels, Samples, GO_NAN_BITS, STALE_NAN_BITS};
}
