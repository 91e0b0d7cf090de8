//! Per-tenant TSDB: WAL, head, chunks.

pub mod chunkenc;
pub mod db;
pub mod head;
pub mod labels;
pub mod matcher;
pub mod record;
pub mod wlog;
