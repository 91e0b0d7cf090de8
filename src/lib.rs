//! Ringest: a Thanos-compatible Prometheus remote-write receive tier.
//!
//! Data flows top to bottom through the modules: [`remote_write`] decodes a request, [`tenancy`]
//! names its tenant, [`router`] places each series on the hash ring and replicates it, [`ingest`]
//! appends to the tenant's [`tsdb`], and [`query`] reads it back for Prometheus remote read.

pub mod remote_write;
pub mod tsdb;
