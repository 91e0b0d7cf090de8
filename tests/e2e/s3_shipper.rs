//! The block shipper against a real S3-protocol server: moto's `moto_server` (installed by
//! `scripts/install-test-deps.sh`; found at `$MOTO_SERVER_BIN`, `$RINGEST_VENV/bin/moto_server` or
//! `~/.cache/ringest/venv/bin/moto_server`). Two blocks written by Ringest's block writer are
//! shipped through an S3 bucket config (path style, plain HTTP, static keys, a prefix), compared
//! byte for byte with the local files, downloaded again and opened by `promtool tsdb list` and
//! `promtool tsdb analyze`. Also: a second sync uploads nothing, a lost state file does not cause
//! re-uploads, a store outage fails the sync without recording the block, and a multi-part upload.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use ringest::objstore::{parse_bucket_config, Bucket};
use ringest::shipper::{self, Shipper, STATE_FILE};
use ringest::tsdb::block::{write_block, BlockSeries, ChunkMeta, ThanosMeta, Ulid};
use ringest::tsdb::chunkenc::XorChunk;
use ringest::tsdb::labels::Labels as RLabels;
use testkit::{files::test_dir, promtool::promtool, s3::Moto};

const BUCKET: &str = "ringest-blocks";
const PREFIX: &str = "tenants/team-a";
const RANGE: i64 = 7_200_000;

/// A moto server with an empty bucket [`BUCKET`].
fn start_moto(log_dir: &Path) -> Moto {
    let moto = Moto::start(log_dir);
    moto.create_bucket(BUCKET);
    moto
}

/// The bucket config of [`BUCKET`] on `moto` (path style, plain HTTP, static keys, a prefix).
fn s3_bucket(moto: &Moto, extra: &str) -> Bucket {
    let yaml = format!(
        "type: S3\nconfig:\n  bucket: {BUCKET}\n  endpoint: {}\n  region: us-east-1\n  \
         access_key: test\n  secret_key: test\n  insecure: true\n  bucket_lookup_type: path\n  \
         max_retries: 1\n{extra}prefix: /{PREFIX}/\n",
        moto.addr
    );
    parse_bucket_config(&yaml).unwrap()
}

/// Writes a level-1 block `[mint, mint + 2h)` with `n` series of 120 samples; returns its ULID and
/// sample count.
fn make_block(dir: &Path, mint: i64, n: usize) -> (Ulid, usize) {
    let labels: Vec<RLabels> = (0..n)
        .map(|i| {
            let inst = format!("host-{i}");
            RLabels::from_pairs([("__name__", "node_load1"), ("instance", inst.as_str())])
        })
        .collect();
    let chunks: Vec<XorChunk> = (0..n)
        .map(|i| {
            let mut c = XorChunk::new();
            for j in 0..120i64 {
                c.append(mint + j * 15_000, (i as f64) * 0.5 + j as f64);
            }
            c
        })
        .collect();
    let series = labels.iter().zip(&chunks).map(|(l, c)| BlockSeries {
        labels: l,
        chunks: vec![ChunkMeta {
            mint: c.first_time().unwrap(),
            maxt: c.last_time().unwrap(),
            data: c.bytes(),
        }],
    });
    let th = ThanosMeta {
        labels: BTreeMap::from([
            ("receive_replica".to_string(), "0".to_string()),
            ("tenant_id".to_string(), "team-a".to_string()),
        ]),
        source: "receive".into(),
    };
    let ulid = write_block(dir, mint, mint + RANGE, series, Some(&th)).unwrap();
    (ulid, n * 120)
}

/// Every object key under the bucket's prefix, relative to it.
async fn list(bucket: &Bucket) -> BTreeSet<String> {
    let prefix = format!("{}/", bucket.prefix.as_ref());
    bucket
        .store
        .list(Some(&bucket.prefix))
        .map(|m| {
            let key = m.unwrap().location.to_string();
            key.strip_prefix(&prefix).unwrap().to_string()
        })
        .collect()
        .await
}

async fn get(bucket: &Bucket, rel: &str) -> Vec<u8> {
    bucket
        .store
        .get(&bucket.key(rel))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

#[test]
fn ships_blocks_to_s3_and_promtool_reads_the_copy() {
    let tmp = test_dir("s3-shipper");
    let mut moto = start_moto(&tmp.path().join("logs"));
    let tenant = tmp.path().join("tsdb/team-a");
    std::fs::create_dir_all(tenant.join("wal")).unwrap();
    let base = 1_700_000_000_000 / RANGE * RANGE;
    let (b1, s1) = make_block(&tenant, base, 40);
    let (b2, s2) = make_block(&tenant, base + RANGE, 25);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bucket = s3_bucket(&moto, "");
    assert_eq!(bucket.kind, "S3");
    assert!(bucket.warnings.is_empty(), "{:?}", bucket.warnings);
    let shipper = Shipper::new("team-a", &tenant, bucket.clone());

    let stats = rt.block_on(shipper.sync()).unwrap();
    assert_eq!(stats.uploaded, 2, "{stats:?}");

    // Exactly chunks, index and meta.json of both blocks, under the prefix; no tombstones.
    let want: BTreeSet<String> = [b1, b2]
        .iter()
        .flat_map(|u| ["chunks/000001", "index", "meta.json"].map(|f| format!("{u}/{f}")))
        .collect();
    assert_eq!(rt.block_on(list(&bucket)), want);
    for u in [b1, b2] {
        let local = tenant.join(u.to_string());
        for f in ["chunks/000001", "index"] {
            let want = std::fs::read(local.join(f)).unwrap();
            assert_eq!(
                rt.block_on(get(&bucket, &format!("{u}/{f}"))),
                want,
                "{u}/{f}"
            );
            assert_eq!(
                moto.get_raw(BUCKET, &format!("{PREFIX}/{u}/{f}")),
                want,
                "{u}/{f} raw"
            );
        }
        let mut up: serde_json::Value =
            serde_json::from_slice(&rt.block_on(get(&bucket, &format!("{u}/meta.json")))).unwrap();
        assert!(up["thanos"]["upload_time"].is_string(), "{up}");
        up["thanos"].as_object_mut().unwrap().remove("upload_time");
        let local_meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(local.join("meta.json")).unwrap()).unwrap();
        assert_eq!(up, local_meta, "{u}/meta.json");
    }
    let state = std::fs::read_to_string(tenant.join(STATE_FILE)).unwrap();
    assert_eq!(
        state,
        format!("{{\n\t\"version\": 1,\n\t\"uploaded\": [\n\t\t\"{b1}\",\n\t\t\"{b2}\"\n\t]\n}}\n")
    );

    // Nothing new: nothing uploaded.
    assert_eq!(
        rt.block_on(shipper.sync()).unwrap(),
        shipper::SyncStats::default()
    );

    // State file lost (say, a crash before it was written): the blocks are found in the bucket.
    std::fs::remove_file(tenant.join(STATE_FILE)).unwrap();
    let stats = rt.block_on(shipper.sync()).unwrap();
    assert_eq!(
        (stats.uploaded, stats.already_in_bucket),
        (0, 2),
        "{stats:?}"
    );
    assert_eq!(
        shipper::uploaded(&tenant).unwrap(),
        BTreeSet::from([b1, b2])
    );

    // promtool opens the copy downloaded from S3.
    let dl = tmp.path().join("download");
    for key in rt.block_on(list(&bucket)) {
        let path = dl.join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, rt.block_on(get(&bucket, &key))).unwrap();
    }
    let dl_str = dl.to_str().unwrap();
    let listing = promtool(&["tsdb", "list", dl_str]);
    for (u, samples, series) in [(b1, s1, 40), (b2, s2, 25)] {
        let row: Vec<&str> = listing
            .lines()
            .find(|l| l.starts_with(&u.to_string()))
            .unwrap_or_else(|| panic!("{u} not listed:\n{listing}"))
            .split_whitespace()
            .collect();
        assert_eq!(row[4], samples.to_string(), "{listing}");
        assert_eq!(row[6], series.to_string(), "{listing}");
        let analyze = promtool(&["tsdb", "analyze", dl_str, &u.to_string()]);
        assert!(analyze.contains(&u.to_string()), "{analyze}");
        assert!(analyze.contains(&format!("Series: {series}")), "{analyze}");
    }

    // An outage: the sync fails and records nothing; the block goes up once S3 is back.
    let (b3, _) = make_block(&tenant, base + 2 * RANGE, 5);
    moto.proc.kill9();
    let e = rt.block_on(shipper.sync()).unwrap_err();
    eprintln!("sync during the outage: {e}");
    assert_eq!(shipper::pending_blocks(&tenant).unwrap(), vec![b3]);
    moto.proc.restart();
    moto.wait_up();
    moto.create_bucket(BUCKET); // moto keeps nothing across restarts
    let stats = rt.block_on(shipper.sync()).unwrap();
    assert_eq!(stats.uploaded, 1, "{stats:?}");
    assert_eq!(
        rt.block_on(list(&bucket)),
        ["chunks/000001", "index", "meta.json"]
            .map(|f| format!("{b3}/{f}"))
            .into_iter()
            .collect()
    );
    assert!(shipper::pending_blocks(&tenant).unwrap().is_empty());
}

#[test]
fn large_files_go_up_in_parts() {
    let tmp = test_dir("s3-shipper-multipart");
    let moto = start_moto(&tmp.path().join("logs"));
    let tenant = tmp.path().join("tsdb/big");
    let (u, _) = make_block(&tenant, 0, 3);
    // A 12 MiB chunk segment (content is not checked by the shipper) and 5 MiB parts.
    let big: Vec<u8> = (0..12 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(tenant.join(u.to_string()).join("chunks/000002"), &big).unwrap();
    let bucket = s3_bucket(&moto, "  part_size: 5242880\n");
    assert_eq!(bucket.part_size, 5 * 1024 * 1024);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stats = rt
        .block_on(Shipper::new("big", &tenant, bucket.clone()).sync())
        .unwrap();
    assert_eq!(stats.uploaded, 1);
    assert!(stats.bytes > big.len() as u64);
    assert_eq!(
        rt.block_on(get(&bucket, &format!("{u}/chunks/000002"))),
        big
    );
    assert_eq!(
        moto.get_raw(BUCKET, &format!("{PREFIX}/{u}/chunks/000002")),
        big
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&rt.block_on(get(&bucket, &format!("{u}/meta.json")))).unwrap();
    assert_eq!(
        meta["thanos"]["segment_files"],
        serde_json::json!(["000001", "000002"])
    );
    assert_eq!(
        meta["thanos"]["files"][1],
        serde_json::json!({"rel_path": "chunks/000002", "size_bytes": big.len()})
    );
}
