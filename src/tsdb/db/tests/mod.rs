//! Tests of [`Db`], by topic; the helpers here are shared by all of them.

mod append;
mod blocks;
mod commit_log;
mod cut;
mod replay;

use super::blocks::open_blocks;
use super::*;
use crate::tsdb::labels::Labels;
use crate::tsdb::matcher::{MatchType, Matcher};
use crate::tsdb::testutil::{
    assert_dump_eq, batch, go_labels, parse_dump, promtool, TestBatch, TestSeries,
};
use crate::tsdb::wlog::segments;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const STALE: u64 = 0x7ff0000000000002;

async fn write(db: &Db, series: &[TestSeries<'_>]) -> Result<AppendStats, AppendError> {
    db.append(&batch(series)).await
}

/// Asserts that a sample at `t` is refused as out of bounds (below the last cut).
async fn assert_out_of_bounds(db: &Db, t: i64) {
    let late = write(
        db,
        &[(
            vec![("__name__", "up"), ("instance", "host-1")],
            vec![(t, 1.0)],
        )],
    )
    .await;
    assert!(
        matches!(&late, Err(AppendError::Conflict { stats, .. }) if stats.out_of_bounds == 1),
        "a sample at {t}: {late:?}"
    );
}

fn all(db: &Db) -> Vec<(String, Vec<(i64, u64)>)> {
    db.select(i64::MIN, i64::MAX, &[])
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
            )
        })
        .collect()
}

/// The default block range (2 h).
const RANGE: i64 = 7_200_000;

/// A TSDB with [`small_opts`] in a fresh directory, and the start of the range `ranges_back`
/// ranges before now, where tests write their history.
fn open_aligned(ranges_back: i64) -> (tempfile::TempDir, PathBuf, Db, i64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, small_opts()).unwrap();
    (
        dir,
        path,
        db,
        now_ms() / RANGE * RANGE - ranges_back * RANGE,
    )
}

fn small_opts() -> DbOptions {
    DbOptions {
        wal_segment_size: 128 * 1024,
        ..DbOptions::default()
    }
}

/// Value of series `s` at step `i`: mostly ordinary floats, sometimes special ones.
fn block_value(s: usize, i: usize) -> f64 {
    match (s * 7 + i) % 53 {
        0 => f64::from_bits(STALE),
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => -0.0,
        4 => f64::MAX,
        5 => f64::MIN_POSITIVE,
        k => (s as f64) * 1.25 + (i as f64) * 0.1 - (k as f64) / 3.0,
    }
}

/// Copies the finished blocks of the TSDB at `db_dir` into a fresh directory and returns what
/// `promtool tsdb dump` prints for them (head and WAL left out), parsed.
fn dump_blocks(db_dir: &Path) -> (HashMap<String, Vec<(i64, u64)>>, u64) {
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(out.path().join("wal")).unwrap(); // promtool 2.42 opens it
    for b in open_blocks(db_dir, &Default::default()).unwrap().0 {
        let ulid = b.meta().ulid;
        let (src, dst) = (
            db_dir.join(ulid.to_string()),
            out.path().join(ulid.to_string()),
        );
        std::fs::create_dir_all(dst.join("chunks")).unwrap();
        for f in ["meta.json", "index", "tombstones"] {
            std::fs::copy(src.join(f), dst.join(f)).unwrap();
        }
        for e in std::fs::read_dir(src.join("chunks")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dst.join("chunks").join(e.file_name())).unwrap();
        }
    }
    let dump = promtool(&[
        "tsdb",
        "dump",
        &format!("--min-time={}", i64::MIN / 2),
        &format!("--max-time={}", i64::MAX / 2),
        out.path().to_str().unwrap(),
    ]);
    parse_dump(&dump)
}

/// Everything `db` holds in its head, keyed like [`dump_blocks`].
fn head_samples(db: &Db) -> HashMap<String, Vec<(i64, u64)>> {
    db.head()
        .select(i64::MIN, i64::MAX, &[])
        .into_iter()
        .map(|s| {
            (
                go_labels(&s.labels),
                s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
            )
        })
        .collect()
}

/// Merges per-series sample lists (blocks and head never overlap in time).
fn union(parts: &[&HashMap<String, Vec<(i64, u64)>>]) -> HashMap<String, Vec<(i64, u64)>> {
    let mut out: HashMap<String, Vec<(i64, u64)>> = HashMap::new();
    for p in parts {
        for (k, v) in p.iter() {
            out.entry(k.clone()).or_default().extend(v);
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|x| x.0);
    }
    out
}

/// Writes `steps` samples a minute apart from `base` for `series` series (series `s` stops
/// after `stop(s)` steps), returning what was written, keyed like [`dump_blocks`].
async fn write_minutes(
    db: &Db,
    base: i64,
    steps: std::ops::Range<usize>,
    series: usize,
    stop: impl Fn(usize) -> usize,
    want: &mut HashMap<String, Vec<(i64, u64)>>,
) {
    let insts: Vec<String> = (0..series).map(|s| format!("host-{s}")).collect();
    for step in steps {
        let batch: Vec<TestSeries<'_>> = (0..series)
            .filter(|&s| step < stop(s))
            .map(|s| {
                let labels = vec![("__name__", "up"), ("instance", insts[s].as_str())];
                (
                    labels,
                    vec![(base + step as i64 * 60_000, block_value(s, step))],
                )
            })
            .collect();
        write(db, &batch).await.unwrap();
        for (labels, samples) in &batch {
            let ls = Labels::from_pairs(labels.iter().copied());
            let e = want.entry(go_labels(&ls)).or_default();
            e.extend(samples.iter().map(|&(t, v)| (t, v.to_bits())));
        }
    }
}

/// Flips a byte in the middle of `path`.
fn flip_middle(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0xff;
    std::fs::write(path, b).unwrap();
}

/// Length of a segment without its zero padding.
fn content_len(path: &Path) -> u64 {
    let b = std::fs::read(path).unwrap();
    b.iter().rposition(|&x| x != 0).map_or(0, |p| p as u64 + 1)
}

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace()
        .nth(1)
        .and_then(|x| x.parse::<usize>().ok())
        .unwrap_or(0)
        * 4096
}
