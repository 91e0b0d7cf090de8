//! Test helpers shared by the TSDB tests: running promtool and parsing `promtool tsdb dump`
//! (both through the `testkit` crate the end-to-end tests use), and building decoded requests.

use crate::tsdb::batch::{AppendBatch, Sample};
use crate::tsdb::labels::Labels;
use std::collections::HashMap;

/// Runs `promtool args…` (bounded in time), panics unless it succeeds; stdout.
pub(crate) use testkit::promtool::promtool;

/// Labels as `promtool tsdb dump` prints them: `{a="x", b="y"}`.
pub(crate) fn go_labels(ls: &Labels) -> String {
    let parts: Vec<String> = ls
        .iter()
        .map(|(n, v)| format!("{n}={}", testkit::promtool::go_quote(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Parses `promtool tsdb dump` output (`{labels} value ts` lines): samples `(ts, value bits)`
/// per printed label set, in printed order, and the number of lines.
pub(crate) fn parse_dump(dump: &str) -> (HashMap<String, Vec<(i64, u64)>>, u64) {
    let mut got: HashMap<String, Vec<(i64, u64)>> = HashMap::new();
    let mut lines = 0u64;
    for line in dump.lines() {
        let (printed, s) = testkit::promtool::parse_dump_line_printed(line)
            .unwrap_or_else(|e| panic!("promtool line {line:?}: {e}"));
        got.entry(printed.to_string())
            .or_default()
            .push((s.ts, s.value.to_bits()));
        lines += 1;
    }
    (got, lines)
}

/// Asserts that parsed `promtool tsdb dump` output holds exactly `want` (series → `(ts, bits)`),
/// values compared by bits except NaNs, which promtool prints alike (their bits are checked by
/// the round-trip tests).
pub(crate) fn assert_dump_eq(
    got: &HashMap<String, Vec<(i64, u64)>>,
    want: &HashMap<String, Vec<(i64, u64)>>,
) {
    assert_eq!(got.len(), want.len());
    for (ls, w) in want {
        let g = got
            .get(ls)
            .unwrap_or_else(|| panic!("series {ls} missing from dump"));
        assert_eq!(g.len(), w.len(), "{ls}");
        for ((gt, gv), (wt, wv)) in g.iter().zip(w) {
            assert_eq!(gt, wt, "{ls}");
            let (gf, wf) = (f64::from_bits(*gv), f64::from_bits(*wv));
            if wf.is_nan() {
                assert!(gf.is_nan(), "{ls} @{wt}");
            } else {
                assert_eq!(gv, wv, "{ls} @{wt}: {gf} != {wf}");
            }
        }
    }
}

/// A test series: label pairs and `(t, v)` samples.
pub(crate) type TestSeries<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);

/// One series of a [`TestBatch`]: sorted label pairs and samples.
pub(crate) type BatchSeries<'a> = (Vec<(&'a str, &'a str)>, Vec<Sample>);

/// An append batch owned by a test: each series' sorted label pairs and its samples.
#[derive(Clone, Debug, Default)]
pub(crate) struct TestBatch<'a> {
    /// The series, in append order.
    pub(crate) series: Vec<BatchSeries<'a>>,
}

impl AppendBatch for TestBatch<'_> {
    fn len(&self) -> usize {
        self.series.len()
    }

    fn labels(&self, i: usize) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
        self.series[i].0.iter().copied()
    }

    fn samples(&self, i: usize) -> &[Sample] {
        &self.series[i].1
    }
}

/// Builds an append batch; labels of each series are sorted here.
pub(crate) fn batch<'a>(series: &[TestSeries<'a>]) -> TestBatch<'a> {
    TestBatch {
        series: series
            .iter()
            .map(|(labels, samples)| {
                let mut labels = labels.clone();
                labels.sort();
                let samples = samples
                    .iter()
                    .map(|&(timestamp, value)| Sample { timestamp, value })
                    .collect();
                (labels, samples)
            })
            .collect(),
    }
}
