//! WAL replay: what was acknowledged comes back, torn tails cost nothing earlier.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_restores_acked_samples_and_refs() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let stale = f64::from_bits(STALE);
    let (before, ref_a, next_ref) = {
        let db = Db::open(dir.path(), small_opts()).unwrap();
        for i in 0..300i64 {
            let v = if i % 50 == 49 { stale } else { i as f64 * 0.5 };
            let t = now - 300_000 + i * 1000;
            write(
                &db,
                &[
                    (vec![("__name__", "a"), ("i", "1")], vec![(t, v)]),
                    (vec![("__name__", "b")], vec![(t, -v)]),
                ],
            )
            .await
            .unwrap();
        }
        let ms = db.head().series_by_ref(1).unwrap();
        (all(&db), ms.labels.clone(), db.head().next_ref())
    };
    assert_eq!(before[0].1.len(), 300);
    assert!(before[0].1.iter().any(|&(_, b)| b == STALE));
    let db = Db::open(dir.path(), small_opts()).unwrap();
    assert_eq!(all(&db), before);
    assert_eq!(db.head().series_by_ref(1).unwrap().labels, ref_a);
    assert_eq!(db.head().next_ref(), next_ref);
    // New samples continue the same series; a new series gets a fresh ref.
    let st = write(
        &db,
        &[
            (vec![("__name__", "a"), ("i", "1")], vec![(now + 1, 7.0)]),
            (vec![("__name__", "c")], vec![(now + 1, 7.0)]),
        ],
    )
    .await
    .unwrap();
    assert_eq!(st.series_created, 1);
    assert_eq!(db.head().num_series(), 3);
    assert!(db.head().series_by_ref(next_ref).is_some());
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), small_opts()).unwrap();
    let after = all(&db);
    assert_eq!(after[0].1.len(), 301);
    assert_eq!(after.len(), 3);
    assert_eq!(
        db.head()
            .series_by_ref(next_ref)
            .unwrap()
            .labels
            .get("__name__"),
        Some("c")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_torn_tail_keeps_earlier_samples() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let before = {
        let db = Db::open(dir.path(), small_opts()).unwrap();
        for i in 0..200i64 {
            write(
                &db,
                &[(
                    vec![("__name__", "a")],
                    vec![(now - 200_000 + i * 1000, i as f64)],
                )],
            )
            .await
            .unwrap();
        }
        let before = all(&db);
        write(&db, &[(vec![("__name__", "a")], vec![(now + 5, 1e300)])])
            .await
            .unwrap();
        before
    };
    let wal = dir.path().join("wal");
    let (_, last) = segments(&wal).unwrap().unwrap();
    let mut seg = last;
    while content_len(&crate::tsdb::wlog::segment_path(&wal, seg)) == 0 {
        seg -= 1;
    }
    let p = crate::tsdb::wlog::segment_path(&wal, seg);
    let len = content_len(&p);
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let db = Db::open(dir.path(), small_opts()).unwrap();
    assert_eq!(all(&db), before);
    // The repaired WAL takes new appends and replays again.
    write(&db, &[(vec![("__name__", "a")], vec![(now + 10, 2.0)])])
        .await
        .unwrap();
    drop(db);
    let db = Db::open(dir.path(), small_opts()).unwrap();
    let got = all(&db);
    assert_eq!(got[0].1.len(), 201);
    assert_eq!(got[0].1.last(), Some(&(now + 10, 2f64.to_bits())));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]
    #[test]
    fn prop_replay_equals_acknowledged(reqs in proptest::collection::vec(
        proptest::collection::vec((0usize..3, 0i64..40, 0u8..3), 1..6), 1..12)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let base = now_ms() - 100_000;
            let names = ["x", "y", "z"];
            let before = {
                let db = Db::open(dir.path(), small_opts()).unwrap();
                let mut model: Vec<Vec<(i64, u64)>> = vec![Vec::new(); 3];
                for r in &reqs {
                    let series: Vec<_> = r
                        .iter()
                        .map(|&(s, t, v)| (vec![("__name__", names[s])], vec![(base + t, v as f64)]))
                        .collect();
                    let _ = write(&db, &series).await;
                    for &(s, t, v) in r {
                        let (t, v) = (base + t, (v as f64).to_bits());
                        let m = &mut model[s];
                        if m.last().is_none_or(|&(lt, _)| t > lt) {
                            m.push((t, v));
                        }
                    }
                }
                let got = all(&db);
                let want: Vec<_> = model
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| !m.is_empty())
                    .map(|(i, m)| (format!("{{__name__=\"{}\"}}", names[i]), m.clone()))
                    .collect();
                assert_eq!(got, want);
                got
            };
            let db = Db::open(dir.path(), small_opts()).unwrap();
            assert_eq!(all(&db), before);
        });
    }
}
