//! Damaged local blocks: quarantined at open, and after a read found them, by maintenance.

use super::*;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_blocks_are_quarantined_not_served() {
    for uploaded in [false, true] {
        let (_dir, path, db, base) = open_aligned(4);
        let mut want = HashMap::new();
        write_minutes(&db, base, 0..200, 20, |_| usize::MAX, &mut want).await;
        // A cut whose WAL truncation never ran: the WAL still holds the block's samples.
        let mut st = CompactStats::default();
        db.cut_range(db.head().min_time(), base + RANGE, &mut st)
            .unwrap();
        let ulid = st.blocks[0];
        db.close().unwrap();
        drop(db);
        let shipped: BTreeSet<Ulid> = if uploaded {
            [ulid].into()
        } else {
            BTreeSet::new()
        };
        // Damage the index (caught when the block is opened).
        let index = path.join(ulid.to_string()).join("index");
        let len = std::fs::metadata(&index).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&index)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let db = Db::open_with_uploaded(&path, small_opts(), &shipped).unwrap();
        assert!(db.blocks().is_empty());
        assert!(!path.join(ulid.to_string()).exists());
        assert!(path
            .join("quarantine")
            .join(ulid.to_string())
            .join("index")
            .exists());
        let got = head_samples(&db);
        let in_range = |t: i64| t < base + RANGE;
        if uploaded {
            // The bucket has the block: the WAL must not bring its samples back.
            assert!(got.values().flatten().all(|&(t, _)| !in_range(t)));
        } else {
            // Never uploaded: the WAL still had them, so nothing is lost.
            assert_dump_eq(&got, &want);
        }
        db.close().unwrap();
    }

    // Damage inside a chunk is found on read: the query is answered from the rest, the block is
    // no longer served, and maintenance (not the read) quarantines it.
    let (_dir, path, db, base) = open_aligned(4);
    let mut want = HashMap::new();
    write_minutes(&db, base, 0..300, 20, |_| usize::MAX, &mut want).await;
    assert_eq!(db.compact().unwrap().blocks.len(), 1);
    let ulid = db.blocks()[0].meta().ulid;
    flip_middle(&path.join(ulid.to_string()).join("chunks").join("000001"));
    let got = db.select(i64::MIN, i64::MAX, &[]).unwrap();
    assert!(db.blocks().is_empty());
    assert!(db.has_suspect_blocks());
    assert!(
        path.join(ulid.to_string()).exists(),
        "the read moved the block itself"
    );
    assert_eq!(db.quarantine_suspect_blocks().unwrap(), 1);
    assert!(!db.has_suspect_blocks());
    assert!(path.join("quarantine").join(ulid.to_string()).exists());
    assert!(!path.join(ulid.to_string()).exists());
    let n: usize = got.iter().map(|s| s.samples.len()).sum();
    assert_eq!(n, 20 * (300 - 120), "the head's samples are still served");
    db.close().unwrap();
    drop(db);
    // The block had been uploaded: after a restart the WAL must not bring its samples back
    // (they would be cut into a second block overlapping the bucket's copy).
    let db = Db::open_with_uploaded(&path, small_opts(), &[ulid].into()).unwrap();
    let got = head_samples(&db);
    assert!(
        got.values().flatten().all(|&(t, _)| t >= base + RANGE),
        "samples of the quarantined, uploaded block came back from the WAL"
    );
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), 20 * (300 - 120));
    db.close().unwrap();
}
