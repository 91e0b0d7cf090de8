//! The Thanos Store API of real `ringest` processes, read by a client not built from our Rust
//! types (Python grpcio with `.proto` files written from Thanos's field tables, its own XOR
//! decoder and xxhash64: `tests/thanos_store/`), against real Prometheus 2.42 as writer and as the
//! remote-read oracle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::support::ringest_bin;
use proto::prompb::WriteRequest;
use testkit::prelude::*;
use testkit::thanos_store::{
    assert_sorted, dedup_replicas, merge_split_frames, LabelsQuery, SeriesQuery, StoreClient,
    StoreSeries,
};

/// A series' labels without `drop`.
fn without(l: &Labels, drop: &[&str]) -> Labels {
    l.iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A NaN's payload does not survive Prometheus's HTTP API (it prints `NaN`): compare NaNs as one.
fn canonical(bits: u64) -> u64 {
    if f64::from_bits(bits).is_nan() {
        f64::NAN.to_bits()
    } else {
        bits
    }
}

/// `{labels: samples}` of a Store API answer deduplicated on `receive_replica`, in
/// `[start, end]`, without `drop` labels and (like PromQL range selectors) without stale markers;
/// NaNs [`canonical`] (the bits of every other value are compared as they are).
fn deduped(
    series: &[StoreSeries],
    start: i64,
    end: i64,
    drop: &[&str],
) -> BTreeMap<Labels, Samples> {
    let d = dedup_replicas(series, "receive_replica", start, end);
    assert!(
        d.conflicts.is_empty(),
        "replicas disagree: {:?}",
        &d.conflicts[..d.conflicts.len().min(5)]
    );
    d.series
        .into_iter()
        .map(|(l, s)| {
            let s: Samples = s
                .into_iter()
                .filter(|&(_, v)| v != STALE_NAN_BITS)
                .map(|(t, v)| (t, canonical(v)))
                .collect();
            (without(&l, drop), s)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

/// Starts `ringest ingest` number `n` with `--label receive_replica="n"` and `extra` flags.
fn ingestor(dir: &Path, n: usize, extra: &[&str]) -> Ingestor {
    let replica = format!("--label=receive_replica=\"{n}\"");
    let mut args = vec![replica.as_str()];
    args.extend_from_slice(extra);
    Ingestor::start(&ringest_bin(), &format!("ingest-{n}"), dir, &args)
}

#[test]
fn prometheus_through_router_rf3_each_ingestor_serves_what_prometheus_reads_back() {
    let tmp = test_dir(module_path!());
    let dir = tmp.path();
    let w0 = now_ms() - 1000;
    let ings: Vec<Ingestor> = (0..3).map(|n| ingestor(dir, n, &[])).collect();
    let eps: Vec<&str> = ings.iter().map(|i| i.grpc.as_str()).collect();
    let router = Router::start(&ringest_bin(), "router", dir, &eps, 3, &[]);

    // A scrapes itself, the router and the ingestors and writes through the router (RF 3).
    let a_addr = free_addr();
    let ing_http: Vec<&str> = ings.iter().map(|i| i.http.as_str()).collect();
    let a = Prometheus::start(
        "scraper",
        dir,
        &a_addr,
        &scraper_config(
            &a_addr,
            &[("router", &[&router.http]), ("ingestors", &ing_http)],
            &format!("http://{}/api/v1/receive", router.rw),
        ),
        &[],
    );
    // B reads through the router with Prometheus's own remote read: the oracle.
    let b_addr = free_addr();
    let b = Prometheus::start(
        "reader",
        dir,
        &b_addr,
        &reader_config(&format!("http://{}/api/v1/read", router.http)),
        &[],
    );
    std::thread::sleep(Duration::from_secs(12));
    let end = now_ms() - 2000;
    a.wait_sent_past(end + 1000, Duration::from_secs(30));
    let start = w0;

    // Prometheus's answer: every series in the window with its raw samples (a range selector
    // returns them unaltered; stale markers are left out by PromQL).
    let window_s = (end - start) / 1000 + 1;
    let oracle: BTreeMap<Labels, Samples> = b
        .query_matrix(&format!("{{__name__=~\".+\"}}[{window_s}s]"), end)
        .into_iter()
        .map(|m| {
            let s: Samples = m
                .values
                .iter()
                .filter(|(t, _)| *t >= start && *t <= end)
                .map(|(t, v)| (*t, canonical(v.parse::<f64>().unwrap().to_bits())))
                .collect();
            (m.labels, s)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect();
    assert!(
        oracle.len() >= 200,
        "Prometheus read back only {} series",
        oracle.len()
    );

    let mut all = Vec::new();
    for (n, ing) in ings.iter().enumerate() {
        let c = StoreClient::new(&ing.grpc);
        let info = c.info().expect("Info");
        assert_eq!(info.component_type, "receive");
        let want_set = vec![
            ("receive_replica".to_string(), n.to_string()),
            ("tenant_id".to_string(), "default-tenant".to_string()),
        ];
        assert_eq!(info.label_sets, vec![want_set.clone()]);
        let store = info.store.expect("store info");
        assert!(store.supports_without_replica_labels);
        assert!(
            store.min_time <= start + 60_000 && store.max_time == i64::MAX,
            "{store:?}"
        );
        assert_eq!(store.tsdb_infos.len(), 1);
        assert_eq!(store.tsdb_infos[0].labels, want_set);

        // Query v0.41+ asks for batches of 64.
        let res = c
            .series(
                &SeriesQuery::new(start, end)
                    .matcher("__name__=~.+")
                    .batch_size(64),
            )
            .expect("Series");
        assert!(res.hash_mismatches.is_empty(), "{:?}", res.hash_mismatches);
        assert!(res.decode_errors.is_empty(), "{:?}", res.decode_errors);
        assert!(
            res.frame_kinds.batch > 0 && res.frame_kinds.series == 0,
            "{:?}",
            res.frame_kinds
        );
        let merged = merge_split_frames(&res.series);
        assert_sorted(&merged);
        for s in &merged {
            let l = s.label_map();
            assert_eq!(l.get("receive_replica"), Some(&n.to_string()), "{l:?}");
            assert_eq!(
                l.get("tenant_id").map(String::as_str),
                Some("default-tenant")
            );
        }
        // Each ingestor alone holds every series (RF 3 on 3 ingestors).
        let alone = deduped(&merged, start, end, &["tenant_id"]);
        assert_eq!(
            alone.keys().collect::<Vec<_>>(),
            oracle.keys().collect::<Vec<_>>(),
            "ingestor {n}"
        );
        all.extend(merged);
    }
    let got = deduped(&all, start, end, &["tenant_id"]);
    assert_eq!(got.len(), oracle.len());
    for (l, want) in &oracle {
        assert_eq!(got.get(l), Some(want), "{l:?}");
    }

    // Label names and values equal Prometheus's for the window (plus the external labels).
    let prom_series = b.series("{__name__=~\".+\"}", start, end);
    let mut names: BTreeSet<String> = prom_series.iter().flat_map(|l| l.keys().cloned()).collect();
    let c = StoreClient::new(&ings[1].grpc);
    let q = LabelsQuery {
        start: Some(start),
        end: Some(end),
        ..Default::default()
    };
    let store_names: BTreeSet<String> = c
        .label_names(&q)
        .expect("LabelNames")
        .items
        .into_iter()
        .collect();
    names.extend(["receive_replica".to_string(), "tenant_id".to_string()]);
    assert_eq!(store_names, names);
    for name in ["__name__", "job", "instance"] {
        let want: BTreeSet<&String> = prom_series.iter().filter_map(|l| l.get(name)).collect();
        let got = c.label_values(name, &q).expect("LabelValues").items;
        assert_eq!(got.iter().collect::<BTreeSet<_>>(), want, "{name}");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    }
    // Without replica labels, as a deduplicating Query asks: gone from series and names.
    let res = c
        .series(
            &SeriesQuery::new(start, end)
                .matcher("job=router")
                .without_replica_label("receive_replica")
                .skip_chunks(),
        )
        .unwrap();
    assert!(!res.series.is_empty());
    assert!(res
        .series
        .iter()
        .all(|s| s.chunks.is_empty() && !s.label_map().contains_key("receive_replica")));
    let q2 = LabelsQuery {
        without_replica_labels: vec!["receive_replica".into()],
        ..q.clone()
    };
    assert!(!c
        .label_names(&q2)
        .unwrap()
        .items
        .contains(&"receive_replica".to_string()));
}

/// Writes `(t, v)` samples to `tenant` through remote write, one series per job, every value's
/// bits as given (`-0.0` included).
fn write_tenant(addr: &str, tenant: &str, series: &[(&str, Vec<(i64, f64)>)]) {
    let specs: Vec<crate::support::SeriesSpec<'_>> = series
        .iter()
        .map(|(job, s)| (vec![("__name__", "m"), ("job", *job)], s.clone()))
        .collect();
    let mut headers = WRITE_HEADERS.to_vec();
    headers.push(("THANOS-TENANT", tenant));
    let r = post_raw(
        addr,
        "/api/v1/receive",
        &headers,
        &crate::support::encode_write_exact(&specs),
    );
    assert!(r.status < 300, "write {tenant}: {} {}", r.status, r.text());
}

#[test]
fn blocks_head_and_wal_replay_two_tenants_and_byte_identical_block_chunks() {
    let tmp = test_dir(module_path!());
    let dir = tmp.path();
    let mut ing = ingestor(dir, 0, &["--tsdb.block-duration=10s"]);
    // 90 s of 1 s samples per series, with values whose bits must survive (-0.0, NaN payloads,
    // stale markers): old ranges are cut into 10 s blocks, the newest stay in the head.
    let now = now_ms();
    let start = now - 90_000;
    let special = [
        -0.0,
        f64::from_bits(STALE_NAN_BITS),
        f64::from_bits(GO_NAN_BITS),
        1e308,
    ];
    let samples = |k: f64| -> Vec<(i64, f64)> {
        (0..90)
            .map(|i| {
                (
                    start + i * 1000,
                    if i % 7 == 3 {
                        special[(i / 7) as usize % 4]
                    } else {
                        k + i as f64
                    },
                )
            })
            .collect()
    };
    write_tenant(
        &ing.rw,
        "alpha",
        &[("a1", samples(1.0)), ("a2", samples(2.0))],
    );
    write_tenant(&ing.rw, "beta", &[("b1", samples(3.0))]);
    let blocks_of = |tenant: &str| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir.join("ingest-0").join(tenant))
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("meta.json").exists())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    poll(Duration::from_secs(30), Duration::from_millis(200), || {
        (blocks_of("alpha").len() >= 3 && blocks_of("beta").len() >= 3).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no blocks cut: {:?}\n{}",
            blocks_of("alpha"),
            ing.proc.logs()
        )
    });

    // SIGKILL: the head comes back from the WAL.
    ing.proc.kill9();
    ing.proc.restart();
    ing.wait_ready();

    let end = start + 89_000;
    let c = StoreClient::new(&ing.grpc);
    let res = c
        .series(&SeriesQuery::new(start, end).matcher("__name__=m"))
        .expect("Series");
    let merged = merge_split_frames(&res.series);
    assert_sorted(&merged);
    let got: Vec<(Labels, Samples)> = merged
        .iter()
        .map(|s| (s.label_map(), s.samples_in(start, end)))
        .collect();
    let want_for = |job: &str, tenant: &str, k: f64| {
        let l = label_map(&[
            ("__name__", "m"),
            ("job", job),
            ("receive_replica", "0"),
            ("tenant_id", tenant),
        ]);
        let s: Samples = samples(k)
            .into_iter()
            .map(|(t, v)| (t, v.to_bits()))
            .collect();
        (l, s)
    };
    // Sorted by the whole label set: tenants interleave by job.
    assert_eq!(
        got,
        vec![
            want_for("a1", "alpha", 1.0),
            want_for("a2", "alpha", 2.0),
            want_for("b1", "beta", 3.0)
        ]
    );
    // Remote read agrees.
    let rr = read_all(&ing.http, Some("alpha"), start, end).unwrap();
    assert_eq!(rr.len(), 2);
    for (l, s) in &rr {
        let mut full = l.clone();
        full.insert("receive_replica".into(), "0".into());
        full.insert("tenant_id".into(), "alpha".into());
        assert_eq!(
            got.iter().find(|g| g.0 == full).map(|g| &g.1),
            Some(s),
            "{l:?}"
        );
    }

    // A matcher on tenant_id picks a tenant; thanos-tenant metadata restricts to one.
    let only = |r: testkit::thanos_store::SeriesResult| -> Vec<String> {
        merge_split_frames(&r.series)
            .iter()
            .map(|s| s.label_map()["job"].clone())
            .collect()
    };
    assert_eq!(
        only(
            c.series(
                &SeriesQuery::new(start, end)
                    .matcher("__name__=m")
                    .matcher("tenant_id=beta")
            )
            .unwrap()
        ),
        ["b1"]
    );
    assert_eq!(
        only(
            c.series(
                &SeriesQuery::new(start, end)
                    .matcher("__name__=m")
                    .matcher("tenant_id!=beta")
            )
            .unwrap()
        ),
        ["a1", "a2"]
    );
    let ct = StoreClient::new(&ing.grpc).tenant("beta");
    assert_eq!(
        only(
            ct.series(&SeriesQuery::new(start, end).matcher("__name__=m"))
                .unwrap()
        ),
        ["b1"]
    );
    let info = ct.info().unwrap();
    assert_eq!(info.label_sets.len(), 1);
    assert_eq!(
        StoreClient::new(&ing.grpc).info().unwrap().label_sets.len(),
        2
    );
    // Only external-label matchers: Thanos's InvalidArgument.
    let e = c
        .series(&SeriesQuery::new(start, end).matcher("tenant_id=beta"))
        .unwrap_err();
    assert_eq!(e.code, "INVALID_ARGUMENT", "{e}");
    assert!(e.message.contains("no matchers specified"), "{e}");

    // Chunks for a range a local block covers are that block's chunks, byte for byte.
    let block = &blocks_of("alpha")[1];
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(block.join("meta.json")).unwrap()).unwrap();
    let (bmin, bmax) = (
        meta["minTime"].as_i64().unwrap(),
        meta["maxTime"].as_i64().unwrap(),
    );
    let on_disk = crate::support::block_chunks(block);
    let res = c
        .series(
            &SeriesQuery::new(bmin, bmax - 1)
                .matcher("__name__=m")
                .matcher("tenant_id=alpha"),
        )
        .unwrap();
    let merged = merge_split_frames(&res.series);
    assert_eq!(merged.len(), on_disk.len());
    for s in &merged {
        let l = without(&s.label_map(), &["receive_replica", "tenant_id"]);
        let want = &on_disk[&l];
        let got: Vec<(i64, i64, &[u8])> = s
            .chunks
            .iter()
            .map(|c| (c.min_time, c.max_time, c.data.as_slice()))
            .collect();
        let want: Vec<(i64, i64, &[u8])> = want
            .iter()
            .map(|c| (c.min_time, c.max_time, c.data.as_slice()))
            .collect();
        assert_eq!(got, want, "{l:?}");
    }
}

#[test]
fn tenant_tokens_guard_the_store_api() {
    let tmp = test_dir(module_path!());
    let dir = tmp.path();
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, "tok-alpha alpha\ntok-beta beta\n").unwrap();
    let flag = format!("--receive.tenant-tokens-file={}", tokens.display());
    let ing = ingestor(dir, 0, &[flag.as_str()]);
    let t = now_ms() - 10_000;
    for (tok, job) in [("tok-alpha", "a"), ("tok-beta", "b")] {
        let req = WriteRequest {
            timeseries: vec![testkit::remote::series(
                &[("__name__", "m"), ("job", job)],
                &[(t, 1.0)],
            )],
            ..Default::default()
        };
        let mut headers = WRITE_HEADERS.to_vec();
        let auth = format!("Bearer {tok}");
        headers.push(("Authorization", &auth));
        let r = post_raw(&ing.rw, "/api/v1/receive", &headers, &encode_write(&req));
        assert!(r.status < 300, "{}", r.status);
    }
    let q = SeriesQuery::new(t - 1000, t + 1000).matcher("__name__=m");
    let e = StoreClient::new(&ing.grpc).series(&q).unwrap_err();
    assert_eq!(e.code, "UNAUTHENTICATED", "{e}");
    assert_eq!(
        StoreClient::new(&ing.grpc).info().unwrap_err().code,
        "UNAUTHENTICATED"
    );
    let e = StoreClient::new(&ing.grpc)
        .bearer("nope")
        .series(&q)
        .unwrap_err();
    assert_eq!(e.code, "UNAUTHENTICATED", "{e}");
    // A token sees its own tenant only, whatever the matchers ask.
    let a = StoreClient::new(&ing.grpc).bearer("tok-alpha");
    let jobs: Vec<String> = a
        .series(&q)
        .unwrap()
        .series
        .iter()
        .map(|s| s.label_map()["job"].clone())
        .collect();
    assert_eq!(jobs, ["a"]);
    assert_eq!(a.info().unwrap().label_sets.len(), 1);
    let e = a.clone().tenant("beta").series(&q).unwrap_err();
    assert_eq!(e.code, "PERMISSION_DENIED", "{e}");
    // Per-RPC metrics count the refusals and the answers.
    let m = http_get(&ing.http, "/metrics").unwrap().text();
    let count = |needle: &str| -> f64 {
        m.lines()
            .find(|l| l.starts_with("ringest_store_requests_total{") && l.contains(needle))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        count("method=\"Series\",code=\"Unauthenticated\"") >= 2.0,
        "{m}"
    );
    assert!(count("method=\"Series\",code=\"OK\"") >= 1.0, "{m}");
    assert!(m.contains("ringest_store_series_sent_total"), "{m}");
    // Query forwards its placeholder tenant when its client named none: not a restriction.
    let jobs = a
        .clone()
        .tenant("default-tenant")
        .series(&q)
        .unwrap()
        .series
        .len();
    assert_eq!(jobs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_compressed_series_call_is_answered_snappy_compressed() {
    use crate::grpc_snappy::{connect, raw_call};
    use prost::Message;
    use proto::storepb::{
        series_response::Result as Frame, LabelMatcher, SeriesRequest, SeriesResponse,
    };
    use ringest::grpc::snappy::{compress, message};

    let tmp = test_dir(module_path!());
    let dir = tmp.path();
    let ing = tokio::task::block_in_place(|| ingestor(dir, 0, &[]));
    let t = now_ms() - 10_000;
    let series: Vec<(&str, Vec<(i64, f64)>)> = vec![
        ("a", vec![(t, 1.5), (t + 1000, -0.0)]),
        ("b", vec![(t, 2.0)]),
    ];
    tokio::task::block_in_place(|| write_tenant(&ing.rw, "team", &series));
    let req = SeriesRequest {
        min_time: t - 1000,
        max_time: t + 2000,
        matchers: vec![LabelMatcher {
            r#type: 0,
            name: "__name__".into(),
            value: "m".into(),
        }],
        response_batch_size: 64,
        ..Default::default()
    };
    let ch = connect(&ing.grpc).await;
    let reply = raw_call(
        &ch,
        "/thanos.Store/Series",
        Some("snappy"),
        &[],
        &[message(true, &compress(&req.encode_to_vec()))],
    )
    .await;
    assert_eq!(reply.status.code(), tonic::Code::Ok, "{:?}", reply.status);
    assert_eq!(reply.encoding(), Some("snappy"));
    assert!(!reply.messages.is_empty() && reply.messages.iter().all(|(flag, _)| *flag == 1));
    let frames: Vec<Frame> = reply
        .payloads()
        .iter()
        .map(|p| SeriesResponse::decode(p.as_ref()).unwrap().result.unwrap())
        .collect();
    let Frame::Batch(b) = &frames[0] else {
        panic!("{frames:?}")
    };
    let jobs: Vec<&str> = b
        .series
        .iter()
        .map(|s| s.labels[1].value.as_str())
        .collect();
    assert_eq!(jobs, ["a", "b"]);
    // The same call uncompressed answers the same frames, uncompressed.
    let plain = raw_call(
        &ch,
        "/thanos.Store/Series",
        None,
        &[],
        &[message(false, &req.encode_to_vec())],
    )
    .await;
    assert_eq!(plain.encoding(), None);
    assert!(plain.messages.iter().all(|(flag, _)| *flag == 0));
    assert_eq!(plain.payloads(), reply.payloads());
    // An encoding Thanos does not register: what a Go server answers.
    let other = raw_call(
        &ch,
        "/thanos.Store/Series",
        Some("br"),
        &[],
        &[message(true, &req.encode_to_vec())],
    )
    .await;
    assert_eq!(other.status.code(), tonic::Code::Unimplemented);
}
