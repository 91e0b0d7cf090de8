//! Per-tenant TSDB: WAL, head, chunks.

pub mod head;
pub mod labels;
pub mod matcher;
