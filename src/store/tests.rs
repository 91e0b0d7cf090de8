//! The Store API against real tenant TSDBs: written, cut into blocks, closed, then replayed by an
//! ingestor as after a restart, and read back through `plan`/`stream`, `info` and the names.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use prost::Message;
use proto::storepb::{
    series_response::Result as Frame, LabelMatcher, LabelNamesRequest, LabelValuesRequest,
    MatcherType, Series, SeriesRequest, SeriesResponse,
};

use super::series::{plan, stream, SeriesParams, SeriesStats};
use super::*;
use crate::ingest::multitsdb::TenantLabels;
use crate::tsdb::block::ThanosMeta;
use crate::tsdb::chunkenc::iter_bytes;
use crate::tsdb::db::DbOptions;
use crate::tsdb::testutil::batch;

const RANGE: i64 = 10_000;

fn labels_fn() -> TenantLabels {
    Arc::new(|tenant: &str| {
        BTreeMap::from([
            ("replica".to_string(), "0".to_string()),
            ("tenant_id".to_string(), tenant.to_string()),
        ])
    })
}

fn opts(tenant: &str) -> DbOptions {
    DbOptions {
        block_range_ms: RANGE,
        thanos: Some(ThanosMeta {
            labels: labels_fn()(tenant),
            source: "receive".into(),
        }),
        ..DbOptions::default()
    }
}

/// Writes `series` (label pairs, samples every 100 ms over `[0, end)`) into `tenant`'s TSDB
/// under `base`, cuts what is compactable, closes it.
async fn write_tenant(base: &Path, tenant: &str, series: &[Vec<(&str, &str)>], end: i64) {
    let db = Db::open(&base.join(tenant), opts(tenant)).unwrap();
    let samples: Vec<(i64, f64)> = (0..end / 100).map(|i| (i * 100, i as f64 * 0.5)).collect();
    let b: Vec<_> = series
        .iter()
        .map(|l| (l.clone(), samples.clone()))
        .collect();
    db.append(&batch(&b)).await.unwrap();
    db.compact().unwrap();
    db.close().unwrap();
}

fn store(base: &Path, limits: StoreLimits) -> Store {
    let ing = Ingestor::new(base.to_path_buf(), opts("unused"), labels_fn());
    ing.replay().unwrap();
    Store::new(Arc::new(ing), limits)
}

fn m(t: MatcherType, n: &str, v: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: t as i32,
        name: n.into(),
        value: v.into(),
    }
}

fn req(mint: i64, maxt: i64, matchers: Vec<LabelMatcher>) -> SeriesRequest {
    SeriesRequest {
        min_time: mint,
        max_time: maxt,
        matchers,
        ..Default::default()
    }
}

/// Runs a Series call; the frames as decoded.
fn series(
    s: &Store,
    scope: &Scope,
    r: &SeriesRequest,
) -> Result<(Vec<Frame>, SeriesStats), StoreError> {
    let p = SeriesParams::from_request(r)?;
    let pl = plan(s, scope, &p)?;
    let mut frames = Vec::new();
    let st = stream(&pl, &p, s.limits(), None, |f| {
        frames.push(
            SeriesResponse::decode(f.as_slice())
                .unwrap()
                .result
                .unwrap(),
        );
        true
    })?;
    Ok((frames, st))
}

fn flat(frames: &[Frame]) -> Vec<Series> {
    frames
        .iter()
        .flat_map(|f| match f {
            Frame::Series(s) => vec![s.clone()],
            Frame::Batch(b) => b.series.clone(),
            other => panic!("unexpected frame {other:?}"),
        })
        .collect()
}

fn names(s: &Series) -> Vec<(String, String)> {
    s.labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Samples of a series' chunks, in order.
fn samples(s: &Series) -> Vec<(i64, u64)> {
    s.chunks
        .iter()
        .flat_map(|c| {
            let raw = c.raw.as_ref().unwrap();
            assert_eq!(raw.r#type, 0, "XOR");
            assert_eq!(raw.hash, xxhash_rust::xxh64::xxh64(&raw.data, 0));
            iter_bytes(&raw.data)
                .map(|(t, v)| (t, v.to_bits()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_interleave_sorted_by_full_labels_with_external_labels_set() {
    let dir = tempfile::tempdir().unwrap();
    // A series label named like an external one is overridden by it.
    write_tenant(
        dir.path(),
        "b",
        &[vec![
            ("__name__", "up"),
            ("job", "x"),
            ("tenant_id", "fake"),
        ]],
        35_000,
    )
    .await;
    write_tenant(
        dir.path(),
        "a",
        &[
            vec![("__name__", "up"), ("job", "x")],
            vec![("__name__", "up"), ("job", "y")],
        ],
        35_000,
    )
    .await;
    let s = store(dir.path(), StoreLimits::default());
    let (frames, st) = series(
        &s,
        &Scope::All,
        &req(0, 40_000, vec![m(MatcherType::Eq, "__name__", "up")]),
    )
    .unwrap();
    let got: Vec<_> = flat(&frames).iter().map(names).collect();
    let ext = |job: &str, t: &str| {
        pairs(&[
            ("__name__", "up"),
            ("job", job),
            ("replica", "0"),
            ("tenant_id", t),
        ])
    };
    // Sorted by the whole label set: job=x of both tenants before job=y of tenant a.
    assert_eq!(got, vec![ext("x", "a"), ext("x", "b"), ext("y", "a")]);
    assert_eq!(st.series, 3);
    // Every sample of [0, 35 s) is there, across the cut blocks and the replayed head.
    for sr in flat(&frames) {
        let want: Vec<(i64, u64)> = (0..350)
            .map(|i| (i * 100, (i as f64 * 0.5).to_bits()))
            .collect();
        assert_eq!(samples(&sr), want);
    }

    // Matchers on external labels pick a tenant; without other matchers, InvalidArgument.
    let (frames, _) = series(
        &s,
        &Scope::All,
        &req(
            0,
            40_000,
            vec![
                m(MatcherType::Eq, "__name__", "up"),
                m(MatcherType::Eq, "tenant_id", "b"),
            ],
        ),
    )
    .unwrap();
    assert_eq!(
        flat(&frames).iter().map(names).collect::<Vec<_>>(),
        vec![ext("x", "b")]
    );
    let e = series(
        &s,
        &Scope::All,
        &req(0, 40_000, vec![m(MatcherType::Eq, "tenant_id", "b")]),
    )
    .unwrap_err();
    assert!(matches!(e, StoreError::NoMatchers), "{e}");
    assert_eq!(e.class(), ErrorClass::BadRequest);
    // A scope restricts as a matcher would.
    let (frames, _) = series(
        &s,
        &Scope::Tenant("a".into()),
        &req(0, 40_000, vec![m(MatcherType::Re, "job", "x|y")]),
    )
    .unwrap();
    assert_eq!(
        flat(&frames).iter().map(names).collect::<Vec<_>>(),
        vec![ext("x", "a"), ext("y", "a")]
    );

    // Replica labels dropped; skip_chunks sends labels only; limit keeps the first series.
    let mut r = req(0, 40_000, vec![m(MatcherType::Neq, "job", "x")]);
    r.without_replica_labels = vec!["replica".into()];
    r.skip_chunks = true;
    let (frames, st) = series(&s, &Scope::All, &r).unwrap();
    let got = flat(&frames);
    assert_eq!(
        got.iter().map(names).collect::<Vec<_>>(),
        vec![pairs(&[
            ("__name__", "up"),
            ("job", "y"),
            ("tenant_id", "a")
        ])]
    );
    assert!(got[0].chunks.is_empty());
    assert_eq!(st.chunks, 0);
    let mut r = req(0, 40_000, vec![m(MatcherType::Eq, "__name__", "up")]);
    r.limit = 2;
    let (frames, _) = series(&s, &Scope::All, &r).unwrap();
    assert_eq!(flat(&frames).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_are_sent_as_stored_untrimmed_and_block_chunks_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    write_tenant(dir.path(), "t", &[vec![("__name__", "up")]], 35_000).await;
    let s = store(dir.path(), StoreLimits::default());
    let t = &s.tenants(&Scope::All).unwrap()[0];
    let blocks = t.db.blocks();
    assert!(blocks.len() >= 2, "the test needs cut blocks");
    // A range inside the first block: its chunks, as the block stores them, untrimmed.
    let b = &blocks[0];
    let mut want = Vec::new();
    for (_, metas) in b.chunk_series(1_000, 2_000, &[]).unwrap() {
        for c in metas {
            want.push((c.mint, c.maxt, b.chunk(c.reference).unwrap()));
        }
    }
    let (frames, _) = series(
        &s,
        &Scope::All,
        &req(1_000, 2_000, vec![m(MatcherType::Eq, "__name__", "up")]),
    )
    .unwrap();
    let got: Vec<_> = flat(&frames)[0]
        .chunks
        .iter()
        .map(|c| (c.min_time, c.max_time, c.raw.clone().unwrap().data))
        .collect();
    assert_eq!(got, want);
    assert!(
        got[0].0 < 1_000,
        "a chunk overlapping the start is not trimmed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_series_split_into_frames_and_batches_hold_many_series() {
    let dir = tempfile::tempdir().unwrap();
    // ~2.5 MiB of chunks in one series: random-ish values compress badly.
    let db = Db::open(&dir.path().join("t"), opts("t")).unwrap();
    let mut x: u64 = 1;
    let data: Vec<(i64, f64)> = (0..300_000)
        .map(|i| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            (i as i64 * 10, f64::from_bits(x >> 2))
        })
        .collect();
    let mut b = vec![(vec![("__name__", "big")], data.clone())];
    for i in 0..20 {
        let name: &'static str = Box::leak(format!("s{i:02}").into_boxed_str());
        b.push((vec![("__name__", name)], data[..50].to_vec()));
    }
    db.append(&batch(&b)).await.unwrap();
    db.close().unwrap();
    drop(db);
    let s = store(dir.path(), StoreLimits::default());
    let (frames, st) = series(
        &s,
        &Scope::All,
        &req(0, i64::MAX, vec![m(MatcherType::Eq, "__name__", "big")]),
    )
    .unwrap();
    assert!(frames.len() >= 3, "{} frames", frames.len());
    let mut all = Vec::new();
    for f in &frames {
        let Frame::Series(sr) = f else { panic!() };
        assert_eq!(
            names(sr),
            pairs(&[("__name__", "big"), ("replica", "0"), ("tenant_id", "t")])
        );
        assert!(
            sr.encoded_len() < (1 << 20) + 2048,
            "frame of {} bytes",
            sr.encoded_len()
        );
        all.extend(samples(sr));
    }
    let want: Vec<(i64, u64)> = data.iter().map(|&(t, v)| (t, v.to_bits())).collect();
    assert_eq!(all, want);
    assert_eq!(st.samples, 300_000);

    // Batches of 8: 21 series in 3 frames (the big one's pieces count as series entries).
    let mut r = req(0, i64::MAX, vec![m(MatcherType::Re, "__name__", "s.*")]);
    r.response_batch_size = 8;
    let (frames, st) = series(&s, &Scope::All, &r).unwrap();
    assert_eq!(st.series, 20);
    assert_eq!(frames.len(), 3);
    assert!(frames.iter().all(|f| matches!(f, Frame::Batch(_))));
    let got: Vec<String> = flat(&frames)
        .iter()
        .map(|s| s.labels[0].value.clone())
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(got, sorted);

    // Limits answer ResourceExhausted with a message.
    let s = store(
        dir.path(),
        StoreLimits {
            request_series: 5,
            request_samples: 0,
        },
    );
    let e = series(&s, &Scope::All, &r).unwrap_err();
    assert!(
        e.to_string().contains("20 series match, the limit is 5"),
        "{e}"
    );
    assert_eq!(
        crate::server::status::grpc_status(&e).code(),
        tonic::Code::ResourceExhausted
    );
    let s = store(
        dir.path(),
        StoreLimits {
            request_series: 0,
            request_samples: 999,
        },
    );
    let e = series(&s, &Scope::All, &r).unwrap_err();
    assert!(matches!(e, StoreError::SamplesLimit { limit: 999 }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_label_apis_show_tenants_as_thanos_does() {
    let dir = tempfile::tempdir().unwrap();
    write_tenant(
        dir.path(),
        "a",
        &[vec![("__name__", "up"), ("job", "x")]],
        35_000,
    )
    .await;
    write_tenant(
        dir.path(),
        "b",
        &[vec![("__name__", "down"), ("env", "prod")]],
        35_000,
    )
    .await;
    let s = store(dir.path(), StoreLimits::default());
    let i = info::info(&s, &Scope::All).unwrap();
    assert_eq!(i.component_type, "receive");
    assert_eq!(i.label_sets.len(), 2);
    assert_eq!(i.label_sets[1].labels[1].value, "b");
    let st = i.store.unwrap();
    assert_eq!((st.min_time, st.max_time), (0, i64::MAX));
    assert!(st.supports_without_replica_labels);
    assert_eq!(st.tsdb_infos.len(), 2);
    assert_eq!(
        info::info(&s, &Scope::Tenant("b".into()))
            .unwrap()
            .label_sets
            .len(),
        1
    );

    let ln = |ms: Vec<LabelMatcher>, without: Vec<String>| {
        names::label_names(
            &s,
            &Scope::All,
            &LabelNamesRequest {
                start: 0,
                end: 40_000,
                matchers: ms,
                without_replica_labels: without,
                ..Default::default()
            },
        )
        .unwrap()
    };
    assert_eq!(
        ln(vec![], vec![]),
        ["__name__", "env", "job", "replica", "tenant_id"]
    );
    assert_eq!(
        ln(vec![m(MatcherType::Eq, "job", "x")], vec!["replica".into()]),
        ["__name__", "job", "tenant_id"]
    );
    // No data in range: no names at all (not even external ones).
    let none = names::label_names(
        &s,
        &Scope::All,
        &LabelNamesRequest {
            start: 100_000,
            end: 200_000,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(none.is_empty(), "{none:?}");

    let lv = |label: &str, ms: Vec<LabelMatcher>| {
        names::label_values(
            &s,
            &Scope::All,
            &LabelValuesRequest {
                label: label.into(),
                start: 0,
                end: 40_000,
                matchers: ms,
                ..Default::default()
            },
        )
    };
    assert_eq!(lv("__name__", vec![]).unwrap(), ["down", "up"]);
    assert_eq!(lv("tenant_id", vec![]).unwrap(), ["a", "b"]);
    assert_eq!(
        lv("tenant_id", vec![m(MatcherType::Eq, "env", "prod")]).unwrap(),
        ["b"]
    );
    assert_eq!(
        lv("job", vec![m(MatcherType::Eq, "tenant_id", "b")]).unwrap(),
        Vec::<String>::new()
    );
    assert!(matches!(lv("", vec![]), Err(StoreError::EmptyLabelName)));
}

fn l(p: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(p.iter().copied())
}

#[test]
fn external_labels_are_merged_in_order_and_override() {
    let s = l(&[("__name__", "up"), ("job", "a"), ("tenant_id", "fake")]);
    let e = l(&[("replica", "1"), ("tenant_id", "t1")]);
    assert_eq!(
        with_external(&s, &e, &[]),
        l(&[
            ("__name__", "up"),
            ("job", "a"),
            ("replica", "1"),
            ("tenant_id", "t1")
        ])
    );
    // Replica labels go from both sides.
    assert_eq!(
        with_external(&s, &e, &["replica".into(), "job".into()]),
        l(&[("__name__", "up"), ("tenant_id", "t1")])
    );
    assert_eq!(with_external(&s, &Labels::empty(), &[]), s);
    assert_eq!(with_external(&Labels::empty(), &e, &[]), e);
}

fn arb_labels() -> impl proptest::strategy::Strategy<Value = Labels> {
    use proptest::prelude::*;
    proptest::collection::btree_map("[a-e]{1,2}", "[xy]{1,2}", 0..5)
        .prop_map(|m| Labels::from_sorted(m.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
}

proptest::proptest! {
    /// The lazy final labels equal the obvious construction (a map: series, then drops, then
    /// external set over), and sorting by them equals sorting the built label sets.
    #[test]
    fn final_labels_match_a_map_and_sort_like_built_sets(
        series in proptest::collection::vec(arb_labels(), 1..8),
        ext in arb_labels(),
        drop in proptest::collection::vec("[a-e]{1,2}", 0..2),
    ) {
        for s in &series {
            let mut m: BTreeMap<&str, &str> = s.iter().collect();
            let mut e: BTreeMap<&str, &str> = ext.iter().collect();
            m.retain(|k, _| !drop.iter().any(|d| d == k));
            e.retain(|k, _| !drop.iter().any(|d| d == k));
            m.extend(e);
            let want = Labels::from_sorted(m.into_iter());
            proptest::prop_assert_eq!(with_external(s, &ext, &drop), want);
        }
        let mut lazy: Vec<usize> = (0..series.len()).collect();
        lazy.sort_by(|&a, &b| {
            FinalLabels::new(&series[a], &ext, &drop).cmp(FinalLabels::new(&series[b], &ext, &drop))
        });
        let built: Vec<Labels> = series.iter().map(|s| with_external(s, &ext, &drop)).collect();
        let mut sorted = built.clone();
        sorted.sort();
        let lazy: Vec<Labels> = lazy.into_iter().map(|i| built[i].clone()).collect();
        proptest::prop_assert_eq!(lazy, sorted);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_deadline_or_a_gone_client_stops_the_scan_and_replay_gates_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let jobs: Vec<String> = (0..50).map(|i| format!("j{i:02}")).collect();
    let series: Vec<Vec<(&str, &str)>> = jobs
        .iter()
        .map(|j| vec![("__name__", "up"), ("job", j.as_str())])
        .collect();
    write_tenant(dir.path(), "t", &series, 35_000).await;
    let s = store(dir.path(), StoreLimits::default());
    let p = SeriesParams::from_request(&req(0, 40_000, vec![m(MatcherType::Eq, "__name__", "up")]))
        .unwrap();
    let pl = plan(&s, &Scope::All, &p).unwrap();
    assert_eq!(pl.len(), 50);
    let past = std::time::Instant::now();
    let e = stream(&pl, &p, s.limits(), Some(past), |_| true).unwrap_err();
    assert!(
        matches!(e, StoreError::DeadlineExceeded { sent_series: 0 }),
        "{e}"
    );
    // The client goes away after 3 frames: nothing more is read or sent.
    let mut sent = 0;
    let e = stream(&pl, &p, s.limits(), None, |_| {
        sent += 1;
        sent < 3
    })
    .unwrap_err();
    assert!(matches!(e, StoreError::Cancelled { sent_series: 2 }), "{e}");
    assert_eq!(sent, 3);

    // Before WAL replay finished, every call (Info included) says not ready.
    let ing = Ingestor::new(dir.path().to_path_buf(), opts("unused"), labels_fn());
    let s = Store::new(Arc::new(ing), StoreLimits::default());
    let e = info::info(&s, &Scope::All).unwrap_err();
    assert!(matches!(e, StoreError::NotReady), "{e}");
    assert_eq!(
        crate::server::status::grpc_status(&e).code(),
        tonic::Code::Unavailable
    );
    assert!(matches!(
        plan(&s, &Scope::All, &p),
        Err(StoreError::NotReady)
    ));
}
