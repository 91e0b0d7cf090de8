//! Ringest: a Thanos-compatible Prometheus remote-write receive tier.
//!
//! Data flows top to bottom through the modules: [`remote_write`] decodes a request, [`tenancy`]
//! names its tenant, [`router`] places each series on the hash ring and replicates it over [`grpc`],
//! [`ingest`] appends to the tenant's [`tsdb`], which cuts blocks that [`shipper`] uploads to an
//! [`objstore`] bucket, and [`query`] reads it back for Prometheus remote read. [`server`] holds
//! the HTTP and gRPC front ends and [`run`] wires a subcommand together.
//!
//! Beside the flow: every error that can reach a client names its [`error::ErrorClass`], which
//! [`server::status`] alone turns into an HTTP status or a gRPC code; [`blocking`] moves disk
//! work (remote read, a tenant's first open) off the async workers.

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
pub mod tenancy;
pub mod tls;
pub mod tsdb;
