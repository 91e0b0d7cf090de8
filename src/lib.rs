//! Ringest: a Thanos-compatible Prometheus remote-write receive tier.
//!
//! The write path reads top to bottom (Thanos `pkg/receive/` names in brackets):
//!
//! ```text
//! server      HTTP remote write, remote read, /metrics; gRPC WriteableStore   [handler]
//!  -> remote_write   decode v1 / v2 into one borrowed WriteRequest
//!  -> tenancy        name the tenant (header or token), once per request
//!  -> limits         request limits, rate and concurrency gates
//!  -> router         place each series on the ring (hashring crate), replicate
//!                    over grpc to RF ingestors, count the write quorum         [hashring, peers]
//!  -> ingest         one tsdb::Db per tenant                           [multitsdb, writer]
//!  -> tsdb           append (WAL group commit) -> head -> cut 2h blocks
//!  -> shipper        upload finished blocks to an objstore bucket               [shipper]
//! query       remote read over the head and local blocks, or fanned out by the router
//! store       Thanos Store API (Info, Series, LabelNames, LabelValues) over the tenants
//! ```
//!
//! Lower layers never import higher ones: [`tsdb`] knows nothing of shipping, routing, decoding
//! or HTTP (it takes an [`tsdb::AppendBatch`] and is told which blocks are uploaded); [`error`],
//! [`duration`], [`failpoint`], [`reload`] and [`blocking`] are leaves everyone may use. Every
//! error that can reach a client names its [`error::ErrorClass`], which [`server::status`] alone
//! turns into an HTTP status or a gRPC code (and a peer's gRPC code back into a class for the
//! router). [`blocking`] moves disk work (remote read, a tenant's first open) off the async
//! workers. [`run`] wires a subcommand together (validate, build, listen, shut down) from
//! [`cli`] flags; [`tls`] configures the listeners and the router's client.

pub mod blocking;
pub mod cli;
pub mod duration;
pub mod error;
pub mod failpoint;
pub mod grpc;
pub mod ingest;
pub mod limits;
pub mod objstore;
pub mod query;
pub mod reload;
pub mod remote_write;
pub mod router;
pub mod run;
pub mod server;
pub mod shipper;
pub mod store;
pub mod tenancy;
pub mod tls;
pub mod tsdb;
