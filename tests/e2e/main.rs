//! Ringest's end-to-end tests, one module per topic, linked into one test binary (`e2e`): they start
//! the built `ringest` binary, Prometheus 2.42, promtool and moto as real processes on loopback,
//! through the `testkit` crate. Run one topic with `cargo test --release --test e2e faults::`.
//!
//! All modules share one test harness, so their tests run in parallel with each other
//! (`--test-threads`, by default one per CPU), as the tests of one file did when each file was its
//! own binary; nothing here sets process-wide state (environment variables go to the children).

mod support;

mod all_in_one;
mod blocks;
mod blocks_crash;
mod cli_locate;
mod faults;
mod grpc_compat;
mod grpc_snappy;
mod harness;
mod hostile;
mod hostile_corpus;
mod limits;
mod prometheus;
mod remote_write_v2;
mod ring_reload;
mod s3;
mod s3_shipper;
mod security;
mod store_api;
mod thanos_store;
mod tls;
