//! Unit tests of the generator and encoders; bodies are decoded by independent decoders
//! (prost for v1, Ringest's own for v2).

use std::collections::{HashMap, HashSet};

use prost::Message;

use crate::parse_duration;
use crate::series::{
    series_labels, Protocol, SeriesConfig, Shard, FUTURE_LIMIT_MS, START_LOOKBACK_MS,
};

const NOW: i64 = 1_700_000_000_000;

fn cfg(series: u64) -> SeriesConfig {
    SeriesConfig {
        series,
        labels: 10,
        label_cardinality: 100,
        metrics: 7,
        seed: 1,
        scrape_interval_ms: 15_000,
    }
}

type Key = Vec<(String, String)>;

/// Decodes a body into (labels, timestamp, value) per sample, in order.
fn decode(protocol: Protocol, body: &[u8]) -> Vec<(Key, i64, f64)> {
    let mut out = Vec::new();
    match protocol {
        Protocol::V1 => {
            let req = proto::prompb::WriteRequest::decode(body).expect("v1 decodes");
            for ts in req.timeseries {
                let key: Key = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
                for s in ts.samples {
                    out.push((key.clone(), s.timestamp, s.value));
                }
            }
        }
        Protocol::V2 => {
            let req = ringest::remote_write::decode_v2(body).expect("v2 decodes");
            assert!(req.invalid.is_empty(), "{:?}", req.invalid);
            for s in &req.series {
                let key: Key = req
                    .series_labels(s)
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect();
                for smp in req.series_samples(s) {
                    out.push((key.clone(), smp.timestamp, smp.value));
                }
            }
        }
    }
    out
}

/// Sends `requests` requests of `n` samples from each of `workers` workers at the clock `now`
/// (advanced by `tick` ms per request), checking every series stays on one worker with strictly
/// increasing timestamps and never later than now + 5m. Returns timestamps per series.
fn exercise(
    protocol: Protocol,
    c: &SeriesConfig,
    workers: usize,
    n: usize,
    requests: usize,
    tick: i64,
) -> HashMap<Key, Vec<i64>> {
    let mut shards: Vec<Shard> = (0..workers)
        .map(|w| Shard::new(c, protocol, w, workers, NOW))
        .collect();
    let mut owner: HashMap<Key, usize> = HashMap::new();
    let mut stamps: HashMap<Key, Vec<i64>> = HashMap::new();
    let mut body = Vec::new();
    let mut now = NOW;
    for _ in 0..requests {
        // Interleave the workers as concurrent connections would.
        for (w, shard) in shards.iter_mut().enumerate() {
            let now_w = now.max(shard.ready_at(n));
            shard.build(now_w, n, &mut body);
            let samples = decode(protocol, &body);
            assert_eq!(samples.len(), n);
            for (key, ts, value) in samples {
                assert!(ts <= now_w + FUTURE_LIMIT_MS, "{ts} is past now + 5m");
                assert!(value.is_finite() && value >= 0.0);
                assert_eq!(key.len(), c.labels, "{key:?}");
                assert!(key.windows(2).all(|p| p[0].0 < p[1].0), "sorted: {key:?}");
                assert_eq!(key[0].0, "__name__");
                assert!(key.iter().all(|(n, v)| !n.is_empty() && !v.is_empty()));
                assert_eq!(
                    *owner.entry(key.clone()).or_insert(w),
                    w,
                    "{key:?} on two workers"
                );
                let v = stamps.entry(key).or_default();
                if let Some(&last) = v.last() {
                    assert!(ts > last, "timestamps must increase: {last} then {ts}");
                }
                v.push(ts);
            }
        }
        now += tick;
    }
    stamps
}

#[test]
fn v1_timestamps_increase_per_series_across_rounds_and_workers() {
    let c = cfg(100);
    // 70 samples per request over 34/33/33 series per worker: rounds wrap inside requests, so a
    // series appears twice in one request.
    let stamps = exercise(Protocol::V1, &c, 3, 70, 20, 60_000);
    assert_eq!(stamps.len(), 100, "every series is sent");
    // Plenty of room: each step is the scrape interval, from start - 5m.
    for v in stamps.values() {
        assert_eq!(v[0], NOW - START_LOOKBACK_MS);
        assert!(v.windows(2).all(|p| p[1] - p[0] == 15_000), "{v:?}");
    }
}

#[test]
fn v2_timestamps_increase_and_labels_match_the_generator() {
    let c = cfg(50);
    let stamps = exercise(Protocol::V2, &c, 2, 40, 10, 1000);
    assert_eq!(stamps.len(), 50);
    let expected: HashSet<Key> = (0..50).map(|i| series_labels(&c, i, 0)).collect();
    let got: HashSet<Key> = stamps.keys().cloned().collect();
    assert_eq!(got, expected);
}

#[test]
fn v1_labels_match_the_generator() {
    let c = cfg(30);
    let stamps = exercise(Protocol::V1, &c, 1, 30, 1, 0);
    let expected: HashSet<Key> = (0..30).map(|i| series_labels(&c, i, 0)).collect();
    assert_eq!(stamps.keys().cloned().collect::<HashSet<_>>(), expected);
}

#[test]
fn steps_shrink_to_stay_under_now_plus_5m_and_workers_wait_at_1ms() {
    for protocol in [Protocol::V1, Protocol::V2] {
        // 4 series per worker and 2000 samples per request: 500 rounds per request, far more
        // than 10 minutes of 15 s steps. The clock stands still, so workers must wait.
        let c = cfg(8);
        let stamps = exercise(protocol, &c, 2, 2000, 5, 0);
        for v in stamps.values() {
            let max_step = v.windows(2).map(|p| p[1] - p[0]).max().unwrap();
            let min_step = v.windows(2).map(|p| p[1] - p[0]).min().unwrap();
            assert!(
                max_step <= 15_000 && min_step >= 1,
                "{min_step}..{max_step}"
            );
            assert!(min_step < 15_000, "steps were compressed");
        }
    }
    let c = cfg(4);
    let mut shard = Shard::new(&c, Protocol::V1, 0, 1, NOW);
    let mut body = Vec::new();
    // 10 minutes of room, 4 series: 40 rounds at 15 s fit, more need smaller steps.
    assert_eq!(
        shard.ready_at(4 * 40),
        NOW - START_LOOKBACK_MS + 39 - FUTURE_LIMIT_MS
    );
    shard.build(NOW, 4 * 40, &mut body);
    let last = decode(Protocol::V1, &body).last().unwrap().1;
    assert_eq!(last, NOW - START_LOOKBACK_MS + 39 * 15_000);
    // 600_000 ms of room left is less than one step per round for 700_000 rounds: wait.
    assert!(shard.ready_at(4 * 700_000) > NOW);
}

#[test]
fn churn_replaces_the_requested_share() {
    let c = cfg(1000);
    let mut shard = Shard::new(&c, Protocol::V2, 0, 1, NOW);
    let before = shard.series_ids();
    assert_eq!(shard.churn_percent(10.0), 100);
    let after = shard.series_ids();
    let changed: Vec<usize> = (0..1000).filter(|&i| before[i] != after[i]).collect();
    assert_eq!(
        changed,
        (0..100).collect::<Vec<_>>(),
        "the first 10%, in rotation"
    );
    for &i in &changed {
        let (global, gen) = after[i];
        assert_eq!(gen, 1);
        let old = series_labels(&c, global, 0);
        let new = series_labels(&c, global, 1);
        let diff: Vec<_> = old.iter().zip(&new).filter(|(a, b)| a != b).collect();
        assert_eq!(diff.len(), 1, "only the pod label changes");
        assert_eq!(diff[0].0 .0, "pod");
    }
    // Fractions carry over: 2.5% of 1000 = 25 each time; 0.25% twice = 2 + 3.
    assert_eq!(shard.churn_percent(2.5), 25);
    let mut small = Shard::new(&cfg(1000), Protocol::V1, 0, 1, NOW);
    assert_eq!(small.churn_percent(0.25), 2);
    assert_eq!(small.churn_percent(0.25), 3);
    assert_eq!(small.churned(), 5);
    // The churned series are sent (v2 symbols of replaced series are released and reused).
    let mut body = Vec::new();
    shard.build(NOW, 1000, &mut body);
    let sent: HashSet<Key> = decode(Protocol::V2, &body)
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(sent.len(), 1000);
    assert!(sent.contains(&series_labels(&c, 0, 1)));
    assert!(!sent.contains(&series_labels(&c, 0, 0)));
    // Over ten rounds of churn every series is replaced exactly once.
    let mut shard = Shard::new(&c, Protocol::V1, 0, 1, NOW);
    for _ in 0..10 {
        shard.churn_percent(10.0);
    }
    assert!(shard.series_ids().iter().all(|&(_, gen)| gen == 1));
}

#[test]
fn label_sets_are_distinct_up_to_capacity_and_respect_cardinality() {
    let c = SeriesConfig {
        series: 3 * 4 * 4,
        labels: 3,
        label_cardinality: 4,
        metrics: 3,
        seed: 7,
        scrape_interval_ms: 1000,
    };
    c.validate(1).unwrap();
    let all: Vec<Key> = (0..c.series).map(|i| series_labels(&c, i, 0)).collect();
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len());
    for k in 0..3 {
        let values: HashSet<&String> = all.iter().map(|l| &l[k].1).collect();
        let want = if k == 0 { 3 } else { 4 };
        assert_eq!(values.len(), want, "label {k}");
    }
    assert!(SeriesConfig {
        series: 49,
        ..c.clone()
    }
    .validate(1)
    .is_err());
    assert!(SeriesConfig {
        labels: 1,
        ..c.clone()
    }
    .validate(1)
    .is_err());
    assert!(c.validate(100).is_err(), "fewer series than workers");
    // Another seed gives other series.
    let other = SeriesConfig {
        seed: 8,
        ..c.clone()
    };
    assert_ne!(series_labels(&c, 0, 0), series_labels(&other, 0, 0));
}

#[test]
fn durations() {
    assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
    assert_eq!(parse_duration("1m30s").unwrap().as_secs(), 90);
    assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
    assert_eq!(parse_duration("2h").unwrap().as_secs(), 7200);
    assert_eq!(parse_duration("2").unwrap().as_secs(), 2);
    assert!(parse_duration("10x").is_err());
    assert!(parse_duration("").is_err());
}
