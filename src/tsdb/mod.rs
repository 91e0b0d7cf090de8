//! Per-tenant TSDB: WAL, head, chunks.
