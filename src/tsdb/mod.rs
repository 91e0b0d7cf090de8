//! Per-tenant TSDB: WAL, head, chunks.

pub mod chunkenc;
pub mod record;
pub mod wlog;
