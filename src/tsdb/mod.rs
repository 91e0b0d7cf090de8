//! Per-tenant TSDB: WAL, head, chunks.

pub mod batch;
pub mod block;
pub mod checkpoint;
pub mod chunkenc;
pub mod chunks;
pub mod db;
pub mod head;
pub mod index;
pub mod labels;
pub mod matcher;
pub mod querier;
pub mod record;
#[cfg(test)]
pub(crate) mod testutil;
pub mod wlog;

pub use batch::{AppendBatch, Sample};
