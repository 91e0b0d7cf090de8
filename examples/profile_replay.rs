//! Profiling driver for WAL replay: opens every tenant TSDB under a data directory, as an ingestor
//! does at start-up, and prints series, samples and replay speed.
//!
//! `RINGEST_PROFILE_DIR=/tmp/p cargo run --release --example profile_ingest -- 200000 20 2` writes a
//! WAL; then `cargo run --release --example profile_replay -- /tmp/p`.

use std::time::Instant;

use ringest::ingest::Ingestor;
use ringest::tsdb::db::DbOptions;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: profile_replay <tsdb.path>");
    let started = Instant::now();
    let ingestor = Ingestor::new(
        dir.into(),
        DbOptions::default(),
        ringest::ingest::multitsdb::tenant_label("tenant_id"),
    );
    ingestor.replay().expect("replay");
    let elapsed = started.elapsed().as_secs_f64();
    println!("replayed in {elapsed:.2}s");
    ingestor.close();
}
