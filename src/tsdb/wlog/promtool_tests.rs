//! Cross-check with Prometheus itself: `promtool tsdb dump` (2.42) must
//! replay a WAL written by us. Skipped when promtool is not installed.

use super::*;
use crate::tsdb::record::{encode_samples, encode_series, RefSample};
use std::fs;
use std::process::Command;

fn promtool() -> Option<&'static str> {
    let p = "/usr/bin/promtool";
    Path::new(p).exists().then_some(p)
}

/// Our reader and record decoder on a WAL written by a real Prometheus
/// 2.42 (snappy by Go). Run with
/// `RINGEST_PROM_WAL=<data>/wal cargo test -- --ignored`.
#[test]
#[ignore]
fn read_prometheus_wal() {
    use crate::tsdb::record::{decode, Record};
    let dir = std::env::var("RINGEST_PROM_WAL").expect("set RINGEST_PROM_WAL");
    let mut r = Reader::open(Path::new(&dir)).unwrap();
    let (mut series, mut samples, mut other) = (0, 0, 0);
    let mut seen_up = false;
    while let Some(rec) = r.next().unwrap() {
        match decode(rec).unwrap() {
            Record::Series(s) => {
                series += s.len();
                seen_up |= s.iter().any(|s| s.labels.contains(&("__name__", "up")));
            }
            Record::Samples(s) => samples += s.len(),
            Record::Unknown(_) => other += 1,
        }
    }
    eprintln!("prometheus wal: {series} series, {samples} samples, {other} other records");
    assert!(seen_up && series > 0 && samples > 0);
}

/// Re-logging the records of a real Prometheus WAL segment through our
/// writer must reproduce the segment file. Run with
/// `RINGEST_PROM_WAL=<data>/wal cargo test -- --ignored` on a WAL of one
/// segment from a cleanly stopped Prometheus.
#[test]
#[ignore]
fn relog_prometheus_wal_identical() {
    let dir = std::env::var("RINGEST_PROM_WAL").expect("set RINGEST_PROM_WAL");
    let dir = Path::new(&dir);
    let orig = fs::read(segment_path(dir, 0)).unwrap();
    let mut r = Reader::open_range(dir, Some(0), Some(0)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    let mut n = 0;
    let mut buf = Vec::new();
    while let Some(rec) = r.next().unwrap() {
        // Our record encoders reproduce Prometheus's records too.
        buf.clear();
        match crate::tsdb::record::decode(rec).unwrap() {
            crate::tsdb::record::Record::Series(s) => {
                crate::tsdb::record::encode_series(
                    s.iter().map(|s| (s.r#ref, s.labels.iter().copied())),
                    &mut buf,
                );
                assert_eq!(&buf[..], rec, "series record {n}");
            }
            crate::tsdb::record::Record::Samples(s) => {
                crate::tsdb::record::encode_samples(&s, &mut buf);
                assert_eq!(&buf[..], rec, "samples record {n}");
            }
            crate::tsdb::record::Record::Unknown(_) => {}
        }
        w.log(&[rec]).unwrap();
        n += 1;
    }
    w.close().unwrap();
    let ours = fs::read(segment_path(tmp.path(), 0)).unwrap();
    let first_diff = ours.iter().zip(&orig).position(|(a, b)| a != b);
    assert_eq!(
        (ours.len(), first_diff),
        (orig.len(), None),
        "{n} records re-logged"
    );
    eprintln!(
        "{n} records re-logged byte-identically ({} bytes)",
        ours.len()
    );
}

#[test]
fn promtool_dumps_our_wal() {
    let Some(promtool) = promtool() else {
        eprintln!("promtool not installed; skipping");
        return;
    };
    for compress in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let wal_dir = tmp.path().join("wal");
        let mut w = Wal::open(
            &wal_dir,
            WalOptions {
                segment_size: 2 * PAGE_SIZE,
                compress,
            },
        )
        .unwrap();
        let mut buf = Vec::new();
        encode_series(
            [
                (1u64, vec![("__name__", "up"), ("job", "a")]),
                (2u64, vec![("__name__", "up"), ("job", "b")]),
            ],
            &mut buf,
        );
        w.log(&[&buf]).unwrap();
        // Enough samples that records span pages and segments.
        let t0 = 1_700_000_000_000i64;
        let mut want = Vec::new();
        for batch in 0..60i64 {
            let mut s = Vec::new();
            for i in 0..300i64 {
                let k = batch * 300 + i;
                let r = 1 + (k % 2) as u64;
                let v = (k * 7919 % 100_003) as f64 / 7.0;
                s.push(RefSample {
                    r#ref: r,
                    t: t0 + (k / 2) * 15_000,
                    v,
                });
                let job = if r == 1 { "a" } else { "b" };
                want.push(format!(
                    "{{__name__=\"up\", job=\"{job}\"}} {v} {}",
                    t0 + (k / 2) * 15_000
                ));
            }
            buf.clear();
            encode_samples(&s, &mut buf);
            w.log(&[&buf]).unwrap();
            if batch % 3 == 0 {
                w.flush().unwrap();
            }
        }
        w.sync().unwrap();
        drop(w);
        assert!(
            segments(&wal_dir).unwrap().unwrap().1 >= 1,
            "want several segments"
        );
        let out = Command::new(promtool)
            .args(["tsdb", "dump"])
            .arg(tmp.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "promtool failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got: Vec<&str> = stdout.lines().collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got.len(), want.len(), "compress={compress}");
        assert_eq!(got, want, "compress={compress}");
    }
}
