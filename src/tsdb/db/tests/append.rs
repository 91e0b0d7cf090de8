//! The append path through `Db`: rules, windows, concurrency.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_rules_through_db() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_opts()).unwrap();
    let now = now_ms();
    let a = vec![("__name__", "a"), ("job", "x")];
    let st = write(&db, &[(a.clone(), vec![(now - 1000, 1.0), (now, 2.0)])])
        .await
        .unwrap();
    assert_eq!(st.samples_appended, 2);
    assert_eq!(st.series_created, 1);
    // Same timestamp and bits: silently accepted, nothing appended, no error.
    let st = write(&db, &[(a.clone(), vec![(now, 2.0)])]).await.unwrap();
    assert_eq!(st, AppendStats::default());
    let err = write(
        &db,
        &[(
            a.clone(),
            vec![
                (now - 5000, 1.0),          // out of order
                (now, 3.0),                 // duplicate
                (now - 2 * 3_600_000, 1.0), // out of bounds (head maxT - 1h)
                (now + 11 * 60_000, 1.0),   // too far in the future
                (now + 1000, 4.0),          // fine
            ],
        )],
    )
    .await
    .unwrap_err();
    let AppendError::Conflict { stats, message } = err else {
        panic!("want conflict, got {err:?}");
    };
    assert_eq!(
        stats,
        AppendStats {
            samples_appended: 1,
            series_created: 0,
            out_of_order: 1,
            duplicate: 1,
            out_of_bounds: 1,
            too_far_in_future: 1,
            rejected_series: vec![(0, 4)],
        }
    );
    assert!(message.starts_with(&format!(
        "out of order sample for series {{__name__=\"a\", job=\"x\"}} at timestamp {}",
        now - 5000
    )));
    assert_eq!(
        all(&db),
        vec![(
            "{__name__=\"a\", job=\"x\"}".to_string(),
            vec![
                (now - 1000, 1f64.to_bits()),
                (now, 2f64.to_bits()),
                (now + 1000, 4f64.to_bits())
            ]
        )]
    );
    let m = Matcher::new(MatchType::Regex, "job", "x|y").unwrap();
    assert_eq!(
        db.select(now, now, &[m]).unwrap()[0].samples,
        vec![(now, 2.0)]
    );
    assert_eq!(db.head().max_time(), now + 1000);

    // Rejections are listed per series, by index, whichever step found them: series 3 has
    // no sample in the window (rejected before the others are appended), 1 and 4 conflict.
    let err = write(
        &db,
        &[
            (vec![("__name__", "ok0")], vec![(now, 1.0)]),
            (
                a.clone(),
                vec![(now - 5000, 1.0), (now + 2000, 5.0), (now, 9.0)],
            ),
            (vec![("__name__", "ok2")], vec![(now, 1.0)]),
            (
                vec![("__name__", "old")],
                vec![(now - 3 * 3_600_000, 1.0), (now - 3 * 3_600_000 + 1, 1.0)],
            ),
            (a.clone(), vec![(now + 2000, 6.0)]),
        ],
    )
    .await
    .unwrap_err();
    let AppendError::Conflict { stats, .. } = err else {
        panic!("want conflict, got {err:?}");
    };
    assert_eq!(stats.rejected_series, vec![(1, 2), (3, 2), (4, 1)]);
    assert_eq!(stats.samples_appended, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sample_seeds_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_opts()).unwrap();
    let now = now_ms();
    let err = write(
        &db,
        &[
            (vec![("__name__", "a")], vec![(now, 1.0)]),
            (vec![("__name__", "b")], vec![(now - 3_700_000, 1.0)]),
        ],
    )
    .await
    .unwrap_err();
    let AppendError::Conflict { stats, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!((stats.samples_appended, stats.out_of_bounds), (1, 1));
    // A series none of whose samples can be stored is not created.
    assert_eq!((stats.series_created, db.head().num_series()), (1, 1));
    let err = write(
        &db,
        &[(vec![("__name__", "f")], vec![(now + 3_600_000, 1.0)])],
    )
    .await
    .unwrap_err();
    let AppendError::Conflict { stats, message } = err else {
        panic!("{err:?}")
    };
    assert_eq!((stats.too_far_in_future, db.head().num_series()), (1, 1));
    assert!(message.starts_with("too far in the future for series {__name__=\"f\"}"));

    // The empty head's sentinel timestamp never seeds or enters a head.
    let fresh = tempfile::tempdir().unwrap();
    let db2 = Db::open(fresh.path(), small_opts()).unwrap();
    let err = write(&db2, &[(vec![("__name__", "m")], vec![(i64::MIN, 1.0)])])
        .await
        .unwrap_err();
    let AppendError::Conflict { stats, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!((stats.out_of_bounds, db2.head().num_series()), (1, 0));
    assert!(!db2.head().initialized());
    write(&db2, &[(vec![("__name__", "m")], vec![(now, 1.0)])])
        .await
        .unwrap();
    assert!(!db2.compactable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), small_opts()).unwrap());
    let base = now_ms() - 600_000;
    const TASKS: i64 = 8;
    const N: i64 = 60;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let db = db.clone();
        handles.push(tokio::spawn(async move {
            let own = format!("own{task}");
            let mut accepted_shared = Vec::new();
            for k in 0..N {
                let t = base + k * TASKS + task;
                // Own series: always in order. Shared series: races with other tasks.
                let r = write(
                    &db,
                    &[
                        (vec![("__name__", own.as_str())], vec![(t, k as f64)]),
                        (vec![("__name__", "shared")], vec![(t, task as f64)]),
                    ],
                )
                .await;
                match r {
                    Ok(st) => {
                        assert_eq!(st.samples_appended, 2);
                        accepted_shared.push((t, (task as f64).to_bits()));
                    }
                    Err(AppendError::Conflict { stats, .. }) => {
                        assert_eq!((stats.samples_appended, stats.out_of_order), (1, 1));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            accepted_shared
        }));
    }
    let mut shared = Vec::new();
    for h in handles {
        shared.extend(h.await.unwrap());
    }
    shared.sort();
    let got = all(&db);
    assert_eq!(got.len(), TASKS as usize + 1);
    for (name, samples) in &got {
        if name.contains("shared") {
            assert_eq!(samples, &shared);
        } else {
            assert_eq!(samples.len(), N as usize);
        }
    }
    drop(db);
    let db = Db::open(dir.path(), small_opts()).unwrap();
    assert_eq!(all(&db), got);
}

#[test]
fn db_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Db>();
    check::<Head>();
}

/// Not a test: `cargo test --release -p ringest tsdb::db::tests::bench -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_append_replay_memory() {
    const SERIES: usize = 100_000;
    const ROUNDS: i64 = 50;
    const PER_REQ: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    // Leaked so requests borrowing them can move into spawned tasks (benchmark only).
    let names: &'static [String] = Vec::leak((0..SERIES).map(|i| format!("pod-{i:07}")).collect());
    let base = now_ms() - 3_000_000;
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    // Requests are built once; each round only rewrites their timestamps and values.
    let mut reqs: Vec<TestBatch<'static>> = names
        .chunks(PER_REQ)
        .map(|chunk| {
            let series: Vec<TestSeries<'_>> = chunk
                .iter()
                .map(|n| {
                    (
                        vec![
                            ("__name__", "http_requests_total"),
                            ("cluster", "prod-eu-1"),
                            ("instance", n.as_str()),
                            ("job", "kubernetes-pods"),
                            ("namespace", "default"),
                            ("pod", n.as_str()),
                        ],
                        vec![(0, 0.0)],
                    )
                })
                .collect();
            batch(&series)
        })
        .collect();
    let rss0 = rss_bytes();
    let mut busy = Duration::ZERO;
    for round in 0..ROUNDS {
        for r in reqs.iter_mut() {
            for s in r.series.iter_mut().flat_map(|(_, samples)| samples) {
                s.timestamp = base + round * 15_000;
                s.value = (round * 7) as f64;
            }
            let t0 = Instant::now();
            db.append(r).await.unwrap();
            busy += t0.elapsed();
        }
    }
    let started = Instant::now() - busy;
    let secs = started.elapsed().as_secs_f64();
    let total = SERIES as f64 * ROUNDS as f64;
    println!(
        "append: {:.0} samples/s, {} fsyncs, rss {:.0} bytes/series",
        total / secs,
        db.fsync_count(),
        (rss_bytes() - rss0) as f64 / SERIES as f64
    );
    drop(db);
    let rss1 = rss_bytes();
    let started = Instant::now();
    let db = Db::open(dir.path(), DbOptions::default()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "replay: {:.0} samples/s ({:.2}s), rss {:.0} bytes/series after replay",
        total / secs,
        secs,
        (rss_bytes().saturating_sub(rss1)) as f64 / SERIES as f64
    );
    assert_eq!(db.head().num_series(), SERIES);

    // Concurrent writers on the replayed head: group commit shares fsyncs between them.
    let db = Arc::new(db);
    let fsyncs0 = db.fsync_count();
    let reqs = Arc::new(reqs);
    const WRITERS: usize = 4;
    let started = Instant::now();
    let mut hs = Vec::new();
    for w in 0..WRITERS {
        let (db, reqs) = (db.clone(), reqs.clone());
        hs.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            // Reuse the requests: each writer owns every WRITERS-th one, new timestamps.
            for round in ROUNDS..ROUNDS + 10 {
                for r in reqs.iter().skip(w).step_by(WRITERS) {
                    let mut r2 = r.clone();
                    for s in r2.series.iter_mut().flat_map(|(_, samples)| samples) {
                        *s = Sample {
                            timestamp: base + round * 15_000,
                            value: round as f64,
                        };
                    }
                    let t0 = Instant::now();
                    db.append(&r2).await.unwrap();
                    lat.push(t0.elapsed());
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in hs {
        lat.extend(h.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "concurrent ({WRITERS} writers): {:.0} samples/s, {} appends, {} fsyncs, p50 {:?}, p99 {:?}",
        (SERIES * 10) as f64 / secs,
        lat.len(),
        db.fsync_count() - fsyncs0,
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
}
