//! Group commit and WAL failures.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_shares_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), small_opts()).unwrap());
    db.log.set_sync_delay(Duration::from_millis(30));
    let now = now_ms();
    const N: usize = 32;
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut hs = Vec::new();
    for i in 0..N {
        let (db, barrier) = (db.clone(), barrier.clone());
        hs.push(tokio::spawn(async move {
            let name = format!("s{i}");
            barrier.wait().await;
            write(
                &db,
                &[(vec![("__name__", name.as_str())], vec![(now, 1.0)])],
            )
            .await
            .unwrap();
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    let n = db.fsync_count();
    assert!(n >= 1 && n < N as u64 / 2, "{n} fsyncs for {N} appends");
    assert_eq!(db.head().num_series(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_failure_then_recovery_keeps_head_and_wal_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let a = || vec![("__name__", "a")];
    let b = || vec![("__name__", "b")];
    let got = {
        let db = Db::open(dir.path(), small_opts()).unwrap();
        write(&db, &[(a(), vec![(now - 10, 1.0)])]).await.unwrap();
        db.log.fail_next_batch();
        // The batch fails: nothing acknowledged.
        let e = write(
            &db,
            &[(a(), vec![(now - 5, 2.0)]), (b(), vec![(now - 5, 2.0)])],
        )
        .await
        .unwrap_err();
        assert!(matches!(e, AppendError::Wal { .. }), "{e:?}");
        // The next call fails fast while broken, and triggers recovery.
        let mut tries = 0;
        let st = loop {
            match write(
                &db,
                &[(a(), vec![(now - 5, 2.0)]), (b(), vec![(now - 5, 2.0)])],
            )
            .await
            {
                Ok(st) => break st,
                Err(AppendError::Wal { .. }) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("{e:?}"),
            }
        };
        // The retry is silently accepted: the failed samples were kept and re-logged.
        assert_eq!(st, AppendStats::default());
        write(
            &db,
            &[
                (a(), vec![(now, 3.0)]),
                (vec![("__name__", "c")], vec![(now, 3.0)]),
            ],
        )
        .await
        .unwrap();
        all(&db)
    };
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].1.len(), 3);
    let db = Db::open(dir.path(), small_opts()).unwrap();
    assert_eq!(all(&db), got);
}
