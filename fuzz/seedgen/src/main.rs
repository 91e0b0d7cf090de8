//! Writes `fuzz/corpus/{wal_reader,index_reader,chunk_reader}/seed_*` from real WAL segments and a
//! real block, each under 64 KiB. Run it from anywhere: the corpus is found from this crate's path.

use std::fs;
use std::path::{Path, PathBuf};

use ringest::tsdb::block::{write_block, BlockSeries, ChunkMeta};
use ringest::tsdb::chunkenc::XorChunk;
use ringest::tsdb::labels::Labels;
use ringest::tsdb::record::{encode_samples, encode_series, RefSample};
use ringest::tsdb::wlog::{segment_path, Wal, WalOptions, PAGE_SIZE};

const MAX_SEED: u64 = 64 * 1024;

fn corpus(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target);
    fs::create_dir_all(&d).unwrap();
    d
}

fn copy_seed(from: &Path, target: &str, name: &str) {
    let len = fs::metadata(from).unwrap().len();
    assert!(len <= MAX_SEED, "{} is {len} bytes", from.display());
    let to = corpus(target).join(name);
    fs::copy(from, &to).unwrap();
    println!("{} ({len} bytes)", to.display());
}

/// Series and samples records of a small scrape: `n` series, `scrapes` sample records.
fn wal_records(n: u64, scrapes: i64) -> Vec<Vec<u8>> {
    let names: Vec<String> = (0..n).map(|i| format!("instance-{i}")).collect();
    let mut series = Vec::new();
    encode_series(
        (0..n).map(|i| {
            (
                i + 1,
                vec![
                    ("__name__", "http_requests_total"),
                    ("instance", names[i as usize].as_str()),
                    ("job", "api"),
                ],
            )
        }),
        &mut series,
    );
    let mut out = vec![series];
    for s in 0..scrapes {
        let samples: Vec<RefSample> = (0..n)
            .map(|i| RefSample {
                r#ref: i + 1,
                t: 1_700_000_000_000 + s * 15_000,
                v: (s * 10 + i as i64) as f64 * 1.5,
            })
            .collect();
        let mut buf = Vec::new();
        encode_samples(&samples, &mut buf);
        out.push(buf);
    }
    out
}

fn write_wal(name: &str, compress: bool, records: &[Vec<u8>]) {
    let dir = tempdir(name);
    let mut w = Wal::open(
        &dir,
        WalOptions {
            segment_size: 4 * PAGE_SIZE,
            compress,
        },
    )
    .unwrap();
    w.log(records).unwrap();
    w.close().unwrap();
    // The last page is zero padded; the reader takes a short last page as padded, so the seed
    // stops at the last record.
    let seg = segment_path(&dir, 0);
    let mut b = fs::read(&seg).unwrap();
    b.truncate(b.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1));
    fs::write(&seg, b).unwrap();
    copy_seed(&seg, "wal_reader", name);
    fs::remove_dir_all(&dir).unwrap();
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringest-seedgen-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn write_block_seeds() {
    const BASE: i64 = 1_700_000_000_000;
    let labels: Vec<Labels> = (0..4)
        .map(|i| {
            let inst = format!("10.0.0.{i}:9100");
            Labels::from_pairs([
                ("__name__", if i % 2 == 0 { "up" } else { "node_load1" }),
                ("instance", inst.as_str()),
                ("job", "node"),
            ])
        })
        .collect();
    // Two chunks per series: a regular one and one with jitter and varied values.
    let chunks: Vec<Vec<(i64, i64, XorChunk)>> = (0..labels.len())
        .map(|i| {
            (0..2)
                .map(|c| {
                    let mut x = XorChunk::new();
                    let start = BASE + c * 120 * 15_000;
                    let mut t = start;
                    for s in 0..120i64 {
                        let v = if c == 0 {
                            1.0
                        } else {
                            (s as f64 * 0.37 + i as f64).sin() * 100.0
                        };
                        x.append(t, v);
                        t += 15_000 + if c == 1 { (s * 7919) % 23 - 11 } else { 0 };
                    }
                    let last = x.iter().last().unwrap().0;
                    (start, last, x)
                })
                .collect()
        })
        .collect();
    let series = labels.iter().zip(&chunks).map(|(l, cs)| BlockSeries {
        labels: l,
        chunks: cs
            .iter()
            .map(|(mint, maxt, x)| ChunkMeta {
                mint: *mint,
                maxt: *maxt,
                data: x.bytes(),
            })
            .collect(),
    });
    let dir = tempdir("block");
    let ulid = write_block(&dir, BASE, BASE + 2 * 3_600_000, series, None).unwrap();
    let block = dir.join(ulid.to_string());
    copy_seed(&block.join("index"), "index_reader", "seed_block_index");
    copy_seed(
        &block.join("chunks").join("000001"),
        "chunk_reader",
        "seed_block_chunks",
    );
    fs::remove_dir_all(&dir).unwrap();
}

fn main() {
    let small = wal_records(3, 4);
    write_wal("seed_small_snappy", true, &small);
    write_wal("seed_small_plain", false, &small);
    // One record over a page: first, middle and last fragments.
    let mut big = wal_records(1, 0);
    let mut series = Vec::new();
    let value = "x".repeat(PAGE_SIZE + 512);
    encode_series(
        [(7u64, vec![("__name__", "big"), ("v", value.as_str())])],
        &mut series,
    );
    big.push(series);
    write_wal("seed_multipage_plain", false, &big);
    write_block_seeds();
}
