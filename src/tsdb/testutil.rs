//! Test helpers shared by the TSDB tests: running promtool and parsing `promtool tsdb dump`.

use crate::tsdb::batch::{AppendBatch, Sample};
use crate::tsdb::labels::Labels;
use std::collections::HashMap;
use std::process::Command;

/// Runs `promtool args…`, panics (pointing at the install script) unless it succeeds; stdout.
pub(crate) fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool").args(args).output().unwrap_or_else(|e| {
        panic!("promtool not runnable ({e}): install Prometheus 2.42 with scripts/install-test-deps.sh")
    });
    assert!(
        out.status.success(),
        "promtool {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Go `strconv.Quote` for printable UTF-8 (what our test labels contain).
pub(crate) fn go_quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// Labels as `promtool tsdb dump` prints them: `{a="x", b="y"}`.
pub(crate) fn go_labels(ls: &Labels) -> String {
    let parts: Vec<String> = ls
        .iter()
        .map(|(n, v)| format!("{n}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Parses `promtool tsdb dump` output (`{labels} value ts` lines): samples `(ts, value bits)`
/// per printed label set, in printed order, and the number of lines.
pub(crate) fn parse_dump(dump: &str) -> (HashMap<String, Vec<(i64, u64)>>, u64) {
    let mut got: HashMap<String, Vec<(i64, u64)>> = HashMap::new();
    let mut lines = 0u64;
    for line in dump.lines() {
        let mut it = line.rsplitn(3, ' ');
        let (ts, val, ls) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        let v: f64 = match val {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("bad value {v:?}: {e}")),
        };
        got.entry(ls.to_string())
            .or_default()
            .push((ts.parse().unwrap(), v.to_bits()));
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
