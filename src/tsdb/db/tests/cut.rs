//! Cutting blocks: what a block holds, compaction, flush, and crashes in between.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_block_dumps_exactly_the_range() {
    const SERIES: usize = 500;
    const STEPS: usize = 240; // one sample a minute over two ranges
    let (dir, _, db, base) = open_aligned(2);
    let names: Vec<String> = (0..SERIES).map(|s| format!("m{}", s % 7)).collect();
    let insts: Vec<String> = (0..SERIES).map(|s| format!("host-{s}")).collect();
    let ts = |s: usize, i: usize| base + i as i64 * 60_000 + (s % 60) as i64 * 1000;
    // Samples of the first range, as promtool prints their labels, with value bits.
    let mut want: HashMap<String, Vec<(i64, u64)>> = HashMap::new();
    let mut want_n = 0u64;
    for step0 in (0..STEPS).step_by(20) {
        let batch: Vec<TestSeries<'_>> = (0..SERIES)
            .map(|s| {
                let labels = vec![
                    ("__name__", names[s].as_str()),
                    ("instance", insts[s].as_str()),
                    ("job", "node"),
                ];
                let samples = (step0..step0 + 20)
                    .map(|i| (ts(s, i), block_value(s, i)))
                    .collect();
                (labels, samples)
            })
            .collect();
        let st = write(&db, &batch).await.unwrap();
        assert_eq!(st.samples_appended, (SERIES * 20) as u64);
        for (labels, samples) in &batch {
            let mut labels = labels.clone();
            labels.sort();
            let ls = Labels::from_pairs(labels.iter().copied());
            for &(t, v) in samples {
                if t < base + RANGE {
                    want.entry(go_labels(&ls))
                        .or_default()
                        .push((t, v.to_bits()));
                    want_n += 1;
                }
            }
        }
    }
    assert_eq!(want.len(), SERIES);
    assert!(db.head().min_time() < base + RANGE && db.head().max_time() >= base + RANGE);

    let bdir = dir.path().join("blocks");
    std::fs::create_dir_all(bdir.join("wal")).unwrap(); // promtool 2.42 opens it
    assert_eq!(
        db.write_head_block(&bdir, base - RANGE, base, None)
            .unwrap(),
        None,
        "no samples before the first range"
    );
    let th = ThanosMeta {
        labels: [("tenant_id".to_string(), "t1".to_string())].into(),
        source: "receive".into(),
    };
    let ulid = db
        .write_head_block(&bdir, base, base + RANGE, Some(&th))
        .unwrap()
        .expect("a block");
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(bdir.join(ulid.to_string()).join("meta.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["minTime"], base);
    assert_eq!(meta["maxTime"], base + RANGE);
    assert_eq!(meta["stats"]["numSamples"], want_n);
    assert_eq!(meta["stats"]["numSeries"], SERIES as u64);

    // Dump over both ranges: the block must hold the first range only, sample for sample.
    let dump = promtool(&[
        "tsdb",
        "dump",
        &format!("--min-time={}", base - RANGE),
        &format!("--max-time={}", base + 3 * RANGE),
        bdir.to_str().unwrap(),
    ]);
    let (got, lines) = parse_dump(&dump);
    assert_eq!(lines, want_n);
    assert_dump_eq(&got, &want);
    // The head is not truncated yet: both ranges are still readable.
    let total: usize = db
        .select(i64::MIN, i64::MAX, &[])
        .unwrap()
        .iter()
        .map(|s| s.samples.len())
        .sum();
    assert_eq!(total, SERIES * STEPS);
    db.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_cuts_blocks_releases_head_and_truncates_wal() {
    const SERIES: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let opts = DbOptions {
        wal_segment_size: 32 * 1024,
        ..DbOptions::default()
    };
    let db = Db::open(&path, opts.clone()).unwrap();
    let base = now_ms() / RANGE * RANGE - 4 * RANGE;
    let mut want = HashMap::new();
    // Half of the series stop after 150 minutes: the second cut releases them.
    let stop = |s: usize| if s % 2 == 0 { 150 } else { usize::MAX };
    let mut blocks = Vec::new();
    for hour in 0..7 {
        write_minutes(
            &db,
            base,
            hour * 60..hour * 60 + 60,
            SERIES,
            stop,
            &mut want,
        )
        .await;
        let st = db.compact().unwrap();
        blocks.extend(st.blocks.clone());
        if hour == 3 {
            // 0..4h: span > 3h only once the fourth hour is in.
            assert_eq!(st.blocks.len(), 1, "{st:?}");
            assert_eq!(st.series_removed, 0);
            assert!(st.wal_segments_truncated > 0, "{st:?}");
        }
        if hour == 5 {
            assert_eq!(st.blocks.len(), 1, "{st:?}");
            assert_eq!(st.series_removed, SERIES / 2, "stopped series are released");
        }
    }
    assert_eq!(blocks.len(), 2);
    let metas = open_blocks(&path, &Default::default()).unwrap().0;
    assert_eq!(
        metas.iter().map(|b| b.meta().max_time).collect::<Vec<_>>(),
        vec![base + RANGE, base + 2 * RANGE]
    );
    // Appends below the last cut are out of bounds now.
    assert_out_of_bounds(&db, base + 2 * RANGE - 1).await;

    let (blocks_got, _) = dump_blocks(&path);
    let head = head_samples(&db);
    assert!(head.values().flatten().all(|&(t, _)| t >= base + 2 * RANGE));
    assert_eq!(
        head.len(),
        SERIES / 2,
        "only the live series stay in the head"
    );
    assert_dump_eq(&union(&[&blocks_got, &head]), &want);
    // Reads see blocks and head as one.
    let read_all = db.select(i64::MIN, i64::MAX, &[]).unwrap();
    let read_map: HashMap<String, Vec<(i64, u64)>> = read_all
        .iter()
        .map(|s| {
            (
                go_labels(&s.labels),
                s.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
            )
        })
        .collect();
    assert_dump_eq(&read_map, &want);
    let m = Matcher::new(MatchType::Equal, "instance", "host-3").unwrap();
    let one = db
        .select(base + RANGE - 60_000, base + RANGE + 60_000, &[m])
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(
        one[0].samples.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![base + RANGE - 60_000, base + RANGE, base + RANGE + 60_000],
        "across the cut"
    );
    assert!(last_checkpoint(&path.join("wal")).unwrap().is_some());
    db.close().unwrap();
    drop(db);

    // Restart: checkpoint + remaining segments give back exactly the head, nothing persisted.
    let db = Db::open(&path, opts).unwrap();
    assert_eq!(head_samples(&db), head);
    assert_eq!(db.head().num_series(), SERIES / 2);
    assert_out_of_bounds(&db, base + 2 * RANGE - 1).await;
    db.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_gap_is_skipped_not_cut_range_by_range() {
    let (_dir, path, db, base) = open_aligned(100);
    let mut want = HashMap::new();
    write_minutes(&db, base, 0..240, 10, |_| usize::MAX, &mut want).await;
    assert_eq!(db.compact().unwrap().blocks.len(), 1);
    // Five days later the same series carry on: two ranges to cut, not sixty empty ones.
    write_minutes(
        &db,
        base + 60 * RANGE,
        0..240,
        10,
        |_| usize::MAX,
        &mut want,
    )
    .await;
    let st = db.compact().unwrap();
    assert_eq!((st.blocks.len(), st.empty_ranges), (2, 0), "{st:?}");
    let mins: Vec<i64> = db.blocks().iter().map(|b| b.meta().min_time).collect();
    assert_eq!(mins, vec![base, base + RANGE, base + 60 * RANGE]);
    let (blocks_got, _) = dump_blocks(&path);
    assert_dump_eq(&union(&[&blocks_got, &head_samples(&db)]), &want);
    db.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_cut_and_wal_truncation_duplicates_nothing() {
    let (_dir, path, db, base) = open_aligned(4);
    let mut want = HashMap::new();
    write_minutes(&db, base, 0..200, 50, |_| usize::MAX, &mut want).await;
    // A cut whose WAL truncation never ran, and a block a crash left half written.
    let mut st = CompactStats::default();
    db.cut_range(db.head().min_time(), base + RANGE, &mut st)
        .unwrap();
    std::fs::create_dir_all(path.join("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp-for-creation/chunks"))
        .unwrap();
    db.close().unwrap();
    drop(db);

    let db = Db::open(&path, small_opts()).unwrap();
    assert!(!path
        .join("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp-for-creation")
        .exists());
    let (blocks_got, _) = dump_blocks(&path);
    let head = head_samples(&db);
    assert!(
        head.values().flatten().all(|&(t, _)| t >= base + RANGE),
        "persisted samples were replayed into the head"
    );
    assert_dump_eq(&union(&[&blocks_got, &head]), &want);
    db.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_persists_the_whole_head_and_empties_the_wal() {
    let (_dir, path, db, base) = open_aligned(3);
    let mut want = HashMap::new();
    write_minutes(
        &db,
        base + 30 * 60_000,
        0..170,
        40,
        |_| usize::MAX,
        &mut want,
    )
    .await;
    db.close().unwrap();
    let st = db.flush().unwrap();
    // 0:30..2:00, 2:00..3:19 + 1 ms.
    assert_eq!(st.blocks.len(), 2, "{st:?}");
    let last = base + 30 * 60_000 + 169 * 60_000;
    assert_eq!(
        open_blocks(&path, &Default::default())
            .unwrap()
            .0
            .iter()
            .map(|b| b.meta().max_time)
            .collect::<Vec<_>>(),
        vec![base + RANGE, last + 1]
    );
    assert!(segments(&path.join("wal")).unwrap().is_none());
    assert!(last_checkpoint(&path.join("wal")).unwrap().is_none());
    let (blocks_got, _) = dump_blocks(&path);
    assert_dump_eq(&blocks_got, &want);
    drop(db);

    let db = Db::open(&path, small_opts()).unwrap();
    assert_eq!(db.head().num_series(), 0);
    assert_out_of_bounds(&db, last).await;
    write(&db, &[(vec![("__name__", "up")], vec![(last + 1, 1.0)])])
        .await
        .unwrap();
    db.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_beside_appends_loses_nothing() {
    // Short ranges so many cuts (and series releases) race the writers.
    const RANGE: i64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let opts = DbOptions {
        block_range_ms: RANGE,
        wal_segment_size: 32 * 1024,
        ..DbOptions::default()
    };
    let db = Arc::new(Db::open(&path, opts).unwrap());
    let base = now_ms() / RANGE * RANGE - 200 * RANGE;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let compactor = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut blocks = 0;
            while !stop.load(Ordering::Relaxed) {
                blocks += db.compact().unwrap().blocks.len();
            }
            blocks
        })
    };
    let mut writers = Vec::new();
    for w in 0..4usize {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            let mut want: HashMap<String, Vec<(i64, u64)>> = HashMap::new();
            let mut rejected = 0;
            let insts: Vec<String> = (0..20).map(|s| format!("w{w}-{s}")).collect();
            for step in 0..2000usize {
                // Each series lives 5 ranges, then a new one takes over (churn to release).
                let gen = step / 500;
                let t = base + step as i64 * 5_000;
                let series: Vec<String> = insts.iter().map(|i| format!("{i}-g{gen}")).collect();
                let batch: Vec<TestSeries<'_>> = series
                    .iter()
                    .enumerate()
                    .map(|(s, i)| {
                        (
                            vec![("__name__", "x"), ("instance", i.as_str())],
                            vec![(t, block_value(s, step))],
                        )
                    })
                    .collect();
                match write(&db, &batch).await {
                    Ok(_) => {
                        for (labels, samples) in &batch {
                            let ls = Labels::from_pairs(labels.iter().copied());
                            want.entry(go_labels(&ls))
                                .or_default()
                                .extend(samples.iter().map(|&(t, v)| (t, v.to_bits())));
                        }
                    }
                    // Another writer pushed the head ahead: some of this step is out of
                    // bounds. Only fully acknowledged requests are checked.
                    Err(AppendError::Conflict { stats, .. }) if stats.out_of_bounds > 0 => {
                        rejected += 1
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(rejected < 1000, "{rejected} of 2000 requests out of bounds");
            want
        }));
    }
    let mut want = HashMap::new();
    for w in writers {
        want.extend(w.await.unwrap());
    }
    let n: usize = want.values().map(Vec::len).sum();
    assert!(n > 80_000, "only {n} samples acknowledged");
    stop.store(true, Ordering::Relaxed);
    let cut = compactor.join().unwrap();
    assert!(cut > 20, "only {cut} blocks cut");
    db.close().unwrap();
    db.flush().unwrap();
    let (blocks_got, _) = dump_blocks(&path);
    let got = union(&[&blocks_got]);
    // Every acknowledged sample is in exactly one block.
    for (k, v) in &want {
        let g = got.get(k).unwrap_or_else(|| panic!("{k} lost"));
        for x in v {
            assert!(
                g.binary_search_by_key(&x.0, |y| y.0).is_ok(),
                "{k} lost sample at {}",
                x.0
            );
        }
        assert!(
            g.windows(2).all(|w| w[0].0 < w[1].0),
            "{k} duplicated samples"
        );
    }
}
