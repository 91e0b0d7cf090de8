//! Oracles: PromQL matrices, `promtool tsdb dump` and remote-read results compared with each
//! other, failing with a short message that names the first differences.

use std::collections::{BTreeMap, HashSet};

use crate::prometheus::MatrixSeries;
use crate::promtool::{parse_go_float, DumpSample};
use crate::{Labels, Samples, STALE_NAN_BITS};

/// Samples of a PromQL matrix as (labels, ts) -> value string.
pub fn matrix_points(m: &[MatrixSeries]) -> BTreeMap<(Labels, i64), String> {
    let mut out = BTreeMap::new();
    for s in m {
        for (ts, v) in &s.values {
            out.insert((s.labels.clone(), *ts), v.clone());
        }
    }
    out
}

/// Panics, naming a few missing and unexpected series, unless both lists hold the same series in
/// the same order.
fn assert_same_series(
    what: &str,
    (e_name, e): (&str, &[&Labels]),
    (a_name, a): (&str, &[&Labels]),
) {
    if e == a {
        return;
    }
    let es: HashSet<&Labels> = e.iter().copied().collect();
    let as_: HashSet<&Labels> = a.iter().copied().collect();
    let missing: Vec<_> = es.difference(&as_).take(5).collect();
    let extra: Vec<_> = as_.difference(&es).take(5).collect();
    panic!(
        "{what}: series differ: {e_name} {} {a_name} {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
        es.len(),
        as_.len()
    );
}

/// Asserts that two PromQL matrices are identical (labels, timestamps, value strings); returns the
/// number of samples compared.
pub fn assert_matrices_equal(
    what: &str,
    expected: &[MatrixSeries],
    actual: &[MatrixSeries],
) -> usize {
    let e: Vec<&Labels> = expected.iter().map(|s| &s.labels).collect();
    let a: Vec<&Labels> = actual.iter().map(|s| &s.labels).collect();
    assert_same_series(what, ("expected", &e), ("actual", &a));
    let mut n = 0;
    for (x, y) in expected.iter().zip(actual) {
        if x.values != y.values {
            let first = x
                .values
                .iter()
                .zip(&y.values)
                .find(|(p, q)| p != q)
                .map(|(p, q)| format!("expected {p:?} got {q:?}"))
                .unwrap_or_else(|| format!("{} vs {} samples", x.values.len(), y.values.len()));
            panic!("{what}: samples of {:?} differ: {first}", x.labels);
        }
        n += x.values.len();
    }
    n
}

/// What [`assert_read_matches_dump`] compared.
#[derive(Debug, Default, Clone)]
pub struct DumpComparison {
    pub series: usize,
    pub samples: usize,
    pub stale_markers: usize,
    pub real_nans: usize,
    /// Stale markers per `job` label.
    pub stale_by_job: BTreeMap<String, usize>,
}

/// Asserts that a remote-read result holds exactly the samples `promtool tsdb dump` printed, bit for
/// bit: numbers must have the bits of the printed value (Go `%g` round-trips), and a printed `NaN`
/// must be a stale marker (`0x7ff0000000000002`) unless PromQL (`matrix`, which hides stale
/// markers) shows a `NaN` at that point, in which case it is a scraped NaN and must not carry the
/// stale bits. Also checks the dump against the matrix (every non-stale dump sample is in the
/// matrix with the same printed value and vice versa) so that the dump parsing is cross-checked.
pub fn assert_read_matches_dump(
    what: &str,
    dump: &[DumpSample],
    matrix: &[MatrixSeries],
    read: &BTreeMap<Labels, Samples>,
) -> DumpComparison {
    let points = matrix_points(matrix);
    let mut by_series: BTreeMap<&Labels, Vec<&DumpSample>> = BTreeMap::new();
    for d in dump {
        by_series.entry(&d.labels).or_default().push(d);
    }
    let read_nonempty: BTreeMap<&Labels, &Samples> =
        read.iter().filter(|(_, s)| !s.is_empty()).collect();
    let dump_keys: Vec<&Labels> = by_series.keys().copied().collect();
    let read_keys: Vec<&Labels> = read_nonempty.keys().copied().collect();
    assert_same_series(what, ("promtool", &dump_keys), ("remote read", &read_keys));
    let mut c = DumpComparison::default();
    let mut matrix_seen = 0usize;
    for (labels, ds) in &by_series {
        let rs = read_nonempty[labels];
        let dts: Vec<i64> = ds.iter().map(|d| d.ts).collect();
        let rts: Vec<i64> = rs.iter().map(|r| r.0).collect();
        assert_eq!(
            dts, rts,
            "{what}: timestamps of {labels:?} differ (promtool vs remote read)"
        );
        for (d, &(ts, bits)) in ds.iter().zip(rs.iter()) {
            let got = f64::from_bits(bits);
            let in_matrix = points.get(&((*labels).clone(), ts));
            if d.value_str == "NaN" {
                assert!(
                    got.is_nan(),
                    "{what}: {labels:?}@{ts}: promtool NaN, remote read {got} ({bits:#x})"
                );
                if let Some(v) = in_matrix {
                    assert_eq!(
                        v, "NaN",
                        "{what}: {labels:?}@{ts}: promtool NaN, PromQL {v}"
                    );
                    assert_ne!(
                        bits, STALE_NAN_BITS,
                        "{what}: {labels:?}@{ts}: scraped NaN came back as a stale marker"
                    );
                    c.real_nans += 1;
                    matrix_seen += 1;
                } else {
                    assert_eq!(
                        bits, STALE_NAN_BITS,
                        "{what}: {labels:?}@{ts}: stale marker came back with bits {bits:#x}"
                    );
                    c.stale_markers += 1;
                    let job = labels.get("job").cloned().unwrap_or_default();
                    *c.stale_by_job.entry(job).or_default() += 1;
                }
            } else {
                assert_eq!(
                    bits,
                    d.value.to_bits(),
                    "{what}: {labels:?}@{ts}: promtool {} remote read {got} ({bits:#x})",
                    d.value_str
                );
                let v = in_matrix.unwrap_or_else(|| {
                    panic!("{what}: {labels:?}@{ts} in promtool dump but not in PromQL")
                });
                assert_eq!(
                    parse_go_float(v).unwrap().to_bits(),
                    d.value.to_bits(),
                    "{what}: {labels:?}@{ts}: PromQL {v} promtool {}",
                    d.value_str
                );
                matrix_seen += 1;
            }
            c.samples += 1;
        }
        c.series += 1;
    }
    assert_eq!(
        matrix_seen,
        points.len(),
        "{what}: PromQL has samples that promtool did not dump"
    );
    c
}

/// Asserts that two remote-read results are identical, with a short message naming the first
/// differences (never the whole data).
pub fn assert_same_samples(
    what: &str,
    expected: &BTreeMap<Labels, Samples>,
    actual: &BTreeMap<Labels, Samples>,
) {
    if expected == actual {
        return;
    }
    let missing: Vec<&Labels> = expected
        .keys()
        .filter(|l| !actual.contains_key(*l))
        .take(3)
        .collect();
    let extra: Vec<&Labels> = actual
        .keys()
        .filter(|l| !expected.contains_key(*l))
        .take(3)
        .collect();
    let differ: Vec<String> = expected
        .iter()
        .filter_map(|(l, s)| actual.get(l).filter(|a| *a != s).map(|a| (l, s, a)))
        .take(3)
        .map(|(l, s, a)| {
            let show = |v: &Samples| {
                v.iter()
                    .take(4)
                    .map(|(t, b)| format!("{t}:{b:#x}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            format!(
                "{l:?}: expected {} samples [{}..], got {} [{}..]",
                s.len(),
                show(s),
                a.len(),
                show(a)
            )
        })
        .collect();
    panic!(
        "{what}: expected {} series, got {}; missing e.g. {missing:?}; unexpected e.g. {extra:?}; differing e.g. {differ:?}",
        expected.len(),
        actual.len()
    );
}

/// Up to `max` differences between two remote-read results, sample by sample
/// (`labels@ts: expected bits, got bits`), then missing and unexpected series.
pub fn sample_differences(
    expected: &BTreeMap<Labels, Samples>,
    actual: &BTreeMap<Labels, Samples>,
    max: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (labels, want) in expected {
        let Some(got) = actual.get(labels) else {
            out.push(format!("{labels:?}: missing ({} samples)", want.len()));
            continue;
        };
        let got_map: BTreeMap<i64, u64> = got.iter().copied().collect();
        let want_map: BTreeMap<i64, u64> = want.iter().copied().collect();
        for (ts, bits) in &want_map {
            match got_map.get(ts) {
                Some(b) if b == bits => {}
                Some(b) => out.push(format!(
                    "{labels:?}@{ts}: expected {bits:#018x} ({}), got {b:#018x} ({})",
                    f64::from_bits(*bits),
                    f64::from_bits(*b)
                )),
                None => out.push(format!("{labels:?}@{ts}: expected {bits:#018x}, missing")),
            }
        }
        for ts in got_map.keys().filter(|t| !want_map.contains_key(t)) {
            out.push(format!("{labels:?}@{ts}: unexpected sample"));
        }
    }
    for labels in actual.keys().filter(|l| !expected.contains_key(*l)) {
        out.push(format!("{labels:?}: unexpected series"));
    }
    let n = out.len();
    if n > max {
        out.truncate(max);
        out.push(format!("... {} differences in all", n));
    }
    out
}

/// Asserts that two remote-read results are identical bit for bit, listing the first differing
/// samples (not only series) when they are not.
pub fn assert_same_bits(
    what: &str,
    expected: &BTreeMap<Labels, Samples>,
    actual: &BTreeMap<Labels, Samples>,
) {
    let diff = sample_differences(expected, actual, 8);
    assert!(
        diff.is_empty(),
        "{what}: {} series expected, {} read; differences:\n  {}",
        expected.len(),
        actual.len(),
        diff.join("\n  ")
    );
}
