//! Per-tenant TSDB: WAL, head, chunks, blocks, in the Prometheus 2.42 formats.
//!
//! Storage knows none of its callers: appends take an [`AppendBatch`] (a borrowed view the
//! decoded request implements), the caller says which blocks are uploaded
//! ([`db::Db::open_with_uploaded`]) and when to quarantine damaged ones
//! ([`db::Db::quarantine_suspect_blocks`]).
//!
//! - [`db`]: one tenant's TSDB ([`db::Db`]), split by concern: `append`, `commit_log` (the
//!   group-commit WAL thread), `replay`, `select`, `cut` (compaction, flush, WAL truncation),
//!   `blocks` (open, delete, quarantine); tests by topic in `db/tests/`.
//! - [`head`]: the in-memory head (series, chunks, postings; `head/stripe.rs` the hash stripes).
//! - [`wlog`]: WAL segments (`writer`, `reader`, `repair`, `segments`); [`record`] its records;
//!   [`checkpoint`] WAL checkpoints.
//! - [`block`]: writing blocks, `block/meta.rs` the one `meta.json` model (writer, reader,
//!   shipper), [`block::list_block_dirs`]; [`querier`] reads blocks; [`index`], [`chunks`],
//!   [`chunkenc`] the file formats; [`labels`], [`matcher`] label sets and matchers.

pub mod batch;
pub mod block;
pub mod checkpoint;
pub mod chunkenc;
pub mod chunks;
pub mod class;
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
