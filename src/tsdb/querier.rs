//! Reading persisted blocks for queries (Prometheus `OpenBlock` + block querier), and merging the
//! series of several blocks and the head.
//!
//! A [`Block`] keeps its index and chunk segment files open and reads them with positioned reads;
//! only the TOC, every 32nd symbol offset and every 32nd postings offset table entry stay in memory,
//! so days of blocks cost little memory. Because the files are open, a block whose directory is
//! deleted (retention) while a query runs stays readable until the [`Block`] is dropped.

use std::path::{Path, PathBuf};

use crate::tsdb::block::{read_meta, BlockError, BlockMeta};
use crate::tsdb::chunkenc::iter_bytes;
use crate::tsdb::chunks::ChunkReader;
use crate::tsdb::head::{intersect, SeriesSamples};
use crate::tsdb::index::{IndexChunk, IndexReader, SymbolCache};
use crate::tsdb::labels::Labels;
use crate::tsdb::matcher::{MatchType, Matcher};

/// An open, read-only block: `<dir>/{meta.json, index, chunks/}`.
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader,
    chunks: ChunkReader,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("dir", &self.dir)
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

impl Block {
    /// Opens the block in `dir`: reads and checks meta.json, the index (magic, version 2, TOC CRC,
    /// symbol table and postings offset table) and every chunk segment's header.
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let meta = read_meta(dir)?;
        let index = IndexReader::open(&dir.join("index"))?;
        let chunks = ChunkReader::open(&dir.join("chunks"))?;
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            index,
            chunks,
        })
    }

    /// What meta.json says.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The block directory it was opened from (it may have been deleted since).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Candidate series ids: the intersection of the postings of every equality matcher with a
    /// non-empty value, or every series when there is none.
    fn candidates(&self, matchers: &[Matcher]) -> Result<Vec<u32>, BlockError> {
        let mut acc: Option<Vec<u32>> = None;
        for m in matchers {
            if m.kind != MatchType::Equal || m.value.is_empty() {
                continue;
            }
            let mut list = self.index.postings(&m.name, &m.value)?;
            // Written sorted; sorting already sorted ids is linear and guards the intersection.
            list.sort_unstable();
            let list = match acc {
                None => list,
                Some(a) => intersect(&a, &list),
            };
            if list.is_empty() {
                return Ok(list);
            }
            acc = Some(list);
        }
        match acc {
            Some(ids) => Ok(ids),
            None => self.index.postings("", ""),
        }
    }

    /// Samples in `[mint, maxt]` (inclusive) of every series matching all `matchers` (a missing
    /// label matches as `""`), sorted by labels; series without samples in range are left out.
    ///
    /// Corrupt data (checksums, bounds, undecodable chunks) is an error naming the file or block.
    pub fn select(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<SeriesSamples>, BlockError> {
        if mint > maxt || maxt < self.meta.min_time || mint >= self.meta.max_time {
            return Ok(Vec::new());
        }
        let mut cache = SymbolCache::default();
        let mut out = Vec::new();
        for id in self.candidates(matchers)? {
            let (labels, metas) = self.index.series_cached(id, &mut cache)?;
            if !matchers
                .iter()
                .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
            {
                continue;
            }
            let mut samples = Vec::new();
            for c in metas.iter().filter(|c| c.maxt >= mint && c.mint <= maxt) {
                let data = self.chunks.chunk(c.reference)?;
                let mut it = iter_bytes(&data);
                for (t, v) in it.by_ref() {
                    if t > maxt {
                        break;
                    }
                    if t >= mint {
                        samples.push((t, v));
                    }
                }
                if let Some(e) = it.err() {
                    return Err(BlockError::Corrupt(format!(
                        "block {}: series {labels}: chunk ref {:#x}: {e}",
                        self.dir.display(),
                        c.reference
                    )));
                }
            }
            if !samples.is_empty() {
                out.push(SeriesSamples { labels, samples });
            }
        }
        // Series ids follow label order in a valid index; keep the promise even if not.
        if !out.windows(2).all(|w| w[0].labels < w[1].labels) {
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        Ok(out)
    }
}

impl Block {
    /// Labels and chunk references of every series matching all `matchers` with a chunk
    /// overlapping `[mint, maxt]`, only those chunks, sorted by labels. Reads the index only:
    /// chunk bytes come later from [`Block::chunk`], so a query can stream them series by series.
    pub fn chunk_series(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<(Labels, Vec<IndexChunk>)>, BlockError> {
        if mint > maxt || maxt < self.meta.min_time || mint >= self.meta.max_time {
            return Ok(Vec::new());
        }
        let mut cache = SymbolCache::default();
        let mut out = Vec::new();
        for id in self.candidates(matchers)? {
            let (labels, mut metas) = self.index.series_cached(id, &mut cache)?;
            if !matchers
                .iter()
                .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
            {
                continue;
            }
            metas.retain(|c| c.maxt >= mint && c.mint <= maxt);
            if !metas.is_empty() {
                out.push((labels, metas));
            }
        }
        if !out.windows(2).all(|w| w[0].0 < w[1].0) {
            out.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(out)
    }

    /// The bytes of the chunk at `reference` (checked: encoding and CRC).
    pub fn chunk(&self, reference: u64) -> Result<Vec<u8>, BlockError> {
        self.chunks.chunk(reference)
    }
}

/// Merges series lists (each normally sorted by labels, e.g. one per block, oldest first, the head
/// last) into one list sorted by labels: one entry per label set, its samples in time order with
/// one sample per timestamp, the earliest part's value winning (compared by position, not value).
///
/// Inputs need not be sorted (by labels or by time); already sorted input costs linear time.
pub fn merge_series(parts: Vec<Vec<SeriesSamples>>) -> Vec<SeriesSamples> {
    let mut all: Vec<SeriesSamples> = parts.into_iter().flatten().collect();
    // Stable: the parts' order is kept among equal label sets.
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<SeriesSamples> = Vec::with_capacity(all.len());
    for s in all {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => last.samples.extend(s.samples),
            _ => out.push(s),
        }
    }
    for s in &mut out {
        if !s.samples.windows(2).all(|w| w[0].0 < w[1].0) {
            // Stable, so the first part's sample comes first among equal timestamps.
            s.samples.sort_by_key(|&(t, _)| t);
            s.samples.dedup_by_key(|&mut (t, _)| t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::block::tests::{
        block_series, data, promtool_block, thanos, Data, BASE, RANGE, STALE,
    };
    use crate::tsdb::block::{write_block, write_block_segmented};
    use crate::tsdb::labels::Labels;
    use std::collections::BTreeMap;

    type Bits = Vec<(Labels, Vec<(i64, u64)>)>;

    fn bits(v: &[SeriesSamples]) -> Bits {
        v.iter()
            .map(|s| {
                let b = s.samples.iter().map(|&(t, x)| (t, x.to_bits())).collect();
                (s.labels.clone(), b)
            })
            .collect()
    }

    /// What a select must return, computed from the test data.
    fn expected(d: &Data, mint: i64, maxt: i64, ms: &[Matcher]) -> Bits {
        let mut out: Bits = d
            .series
            .iter()
            .filter(|(ls, _)| ms.iter().all(|m| m.matches(ls.get(&m.name).unwrap_or(""))))
            .map(|(ls, cs)| {
                let s = cs
                    .iter()
                    .flat_map(|c| c.iter())
                    .filter(|&(t, _)| t >= mint && t <= maxt)
                    .map(|(t, v)| (t, v.to_bits()))
                    .collect::<Vec<_>>();
                (ls.clone(), s)
            })
            .filter(|(_, s)| !s.is_empty())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn m(kind: MatchType, n: &str, v: &str) -> Matcher {
        Matcher::new(kind, n, v).unwrap()
    }

    fn matcher_sets() -> Vec<Vec<Matcher>> {
        use MatchType::*;
        vec![
            vec![],
            vec![m(Equal, "__name__", "metric_a")],
            vec![m(Equal, "__name__", "metric_a"), m(Equal, "job", "node")],
            vec![m(Equal, "instance", "host-7")],
            vec![
                m(Equal, "instance", "host-7"),
                m(Equal, "__name__", "metric_a"),
            ],
            vec![
                m(Equal, "__name__", "metric_b"),
                m(NotEqual, "instance", "host-3"),
            ],
            vec![m(Regex, "instance", "host-1.*")],
            vec![m(NotRegex, "instance", "host-[0-4]")],
            vec![m(Equal, "utf8", "")],
            vec![m(NotEqual, "utf8", "")],
            vec![m(Regex, "utf8", ".*")],
            vec![m(Regex, "utf8", "é日本 \"q\" \\\\ [0-2]")],
            vec![m(Equal, "__name__", "nope")],
            vec![m(Equal, "nolabel", "")],
            vec![m(NotEqual, "nolabel", "")],
            vec![m(Equal, "job", "node"), m(NotRegex, "__name__", "metric_a")],
        ]
    }

    fn write(dir: &Path, d: &Data, segment_size: u64) -> PathBuf {
        let th = thanos();
        let ulid = write_block_segmented(
            dir,
            BASE,
            BASE + RANGE,
            block_series(d),
            Some(&th),
            segment_size,
        )
        .unwrap();
        dir.join(ulid.to_string())
    }

    #[test]
    fn round_trip_with_matchers() {
        let d = data(60);
        let dir = tempfile::tempdir().unwrap();
        let bdir = write(dir.path(), &d, 1 << 20);
        let b = Block::open(&bdir).unwrap();
        assert_eq!(b.dir(), bdir);
        let meta = b.meta();
        assert_eq!(
            meta.ulid.to_string(),
            bdir.file_name().unwrap().to_str().unwrap()
        );
        assert_eq!((meta.min_time, meta.max_time), (BASE, BASE + RANGE));
        assert_eq!(meta.num_series, 60);
        assert_eq!(meta.compaction_level, 1);
        assert_eq!(meta.thanos_labels, thanos().labels);
        let total: usize = d.series.iter().map(|s| s.1.len()).sum();
        assert_eq!(meta.num_chunks, total as u64);
        let mut saw_stale = false;
        for ms in matcher_sets() {
            let got = bits(&b.select(BASE, BASE + RANGE, &ms).unwrap());
            let want = expected(&d, BASE, BASE + RANGE, &ms);
            assert_eq!(got, want, "{ms:?}");
            saw_stale |= got.iter().any(|s| s.1.iter().any(|&(_, v)| v == STALE));
        }
        assert!(saw_stale);
        // Spot checks that the model is not trivially empty or full.
        let n = |ms: &[Matcher]| b.select(BASE, BASE + RANGE, ms).unwrap().len();
        assert_eq!(n(&[]), 60);
        assert_eq!(n(&[m(MatchType::Equal, "utf8", "")]), 60 - 9);
        assert_eq!(n(&[m(MatchType::Equal, "instance", "host-7")]), 1);
        assert_eq!(n(&[m(MatchType::Equal, "__name__", "nope")]), 0);
        // Blocks written without a Thanos section have no external labels.
        let u = write_block(dir.path(), BASE, BASE + RANGE, block_series(&d), None).unwrap();
        let plain = Block::open(&dir.path().join(u.to_string())).unwrap();
        assert!(plain.meta().thanos_labels.is_empty());
    }

    #[test]
    fn time_ranges_cut_samples_inclusively() {
        let d = data(30);
        let dir = tempfile::tempdir().unwrap();
        let b = Block::open(&write(dir.path(), &d, 1 << 20)).unwrap();
        // Chunk 0 of series 0 spans BASE .. BASE + 119 * 15 s; chunk 1 starts 15 s later.
        let c0_end = BASE + 119 * 15_000;
        let ranges = [
            (BASE, BASE),
            (BASE - 10_000, BASE + 5_000),
            (c0_end, c0_end),
            (c0_end, c0_end + 15_000),
            (c0_end + 1, c0_end + 14_999),
            (c0_end + 1, BASE + RANGE),
            (BASE + 1_000, BASE + 1_800_000),
            (BASE + 3_600_000, i64::MAX),
            (i64::MIN, i64::MAX),
            (BASE + RANGE, BASE + 2 * RANGE),
            (0, BASE - 1),
            (BASE + 10, BASE),
        ];
        let sets = matcher_sets();
        for (mint, maxt) in ranges {
            for ms in [&sets[0], &sets[2], &sets[7]] {
                let got = bits(&b.select(mint, maxt, ms).unwrap());
                assert_eq!(got, expected(&d, mint, maxt, ms), "[{mint}, {maxt}] {ms:?}");
            }
        }
        let one = b.select(c0_end, c0_end, &[]).unwrap();
        assert!(one.iter().all(|s| s.samples.len() == 1));
        assert!(!one.is_empty());
    }

    #[test]
    fn many_chunk_segments() {
        let d = data(200);
        let dir = tempfile::tempdir().unwrap();
        let bdir = write(dir.path(), &d, 16 * 1024);
        let segments = std::fs::read_dir(bdir.join("chunks")).unwrap().count();
        assert!(segments > 3, "{segments} segments");
        let b = Block::open(&bdir).unwrap();
        for ms in matcher_sets() {
            let got = bits(&b.select(BASE, BASE + RANGE, &ms).unwrap());
            assert_eq!(got, expected(&d, BASE, BASE + RANGE, &ms), "{ms:?}");
        }
    }

    #[test]
    fn deleted_directory_stays_readable_while_open() {
        let d = data(40);
        let dir = tempfile::tempdir().unwrap();
        let bdir = write(dir.path(), &d, 4 * 1024);
        let b = Block::open(&bdir).unwrap();
        std::fs::remove_dir_all(&bdir).unwrap();
        assert!(!bdir.exists());
        for ms in matcher_sets() {
            let got = bits(&b.select(BASE, BASE + RANGE, &ms).unwrap());
            assert_eq!(got, expected(&d, BASE, BASE + RANGE, &ms), "{ms:?}");
        }
        assert!(Block::open(&bdir).is_err());
    }

    fn flip(path: &Path, at: u64) {
        let mut b = std::fs::read(path).unwrap();
        b[at as usize] ^= 0x5a;
        std::fs::write(path, b).unwrap();
    }

    /// Opens `bdir` and selects everything: must fail (not panic), naming the block's ULID.
    fn assert_fails(bdir: &Path, what: &str) -> String {
        let ulid = bdir.file_name().unwrap().to_str().unwrap().to_string();
        let err = match Block::open(bdir) {
            Err(e) => e,
            Ok(b) => match b.select(i64::MIN, i64::MAX, &[]) {
                Err(e) => e,
                Ok(_) => panic!("{what}: no error"),
            },
        };
        let msg = err.to_string();
        assert!(msg.contains(&ulid), "{what}: {msg}");
        msg
    }

    #[test]
    fn corrupt_data_is_an_error_naming_the_block() {
        let d = data(20);
        let dir = tempfile::tempdir().unwrap();
        let src = write(dir.path(), &d, 1 << 20);
        let fresh = |name: &str| {
            let bdir = dir.path().join(name).join(src.file_name().unwrap());
            std::fs::create_dir_all(bdir.join("chunks")).unwrap();
            for f in ["meta.json", "index", "tombstones", "chunks/000001"] {
                std::fs::copy(src.join(f), bdir.join(f)).unwrap();
            }
            bdir
        };
        let toc = IndexReader::open(&src.join("index")).unwrap().toc();

        let b = fresh("series");
        flip(&b.join("index"), toc.series.div_ceil(16) * 16 + 3);
        assert!(assert_fails(&b, "series").contains("series"));

        let b = fresh("postings");
        // The all-postings list comes first: 4-byte aligned, then len and count, then ids.
        flip(&b.join("index"), toc.postings.div_ceil(4) * 4 + 9);
        assert!(assert_fails(&b, "postings").contains("postings list"));

        let b = fresh("chunk");
        flip(&b.join("chunks/000001"), 8 + 5);
        assert!(assert_fails(&b, "chunk").contains("checksum mismatch"));

        let b = fresh("toc");
        let len = std::fs::metadata(b.join("index")).unwrap().len();
        flip(&b.join("index"), len - 10);
        assert!(assert_fails(&b, "toc").contains("TOC"));

        let b = fresh("segment-header");
        flip(&b.join("chunks/000001"), 1);
        assert!(assert_fails(&b, "segment header").contains("segment header"));

        let b = fresh("meta");
        std::fs::write(b.join("meta.json"), "{\"ulid\": 3}").unwrap();
        assert!(assert_fails(&b, "meta").contains("meta.json"));
        std::fs::write(
            b.join("meta.json"),
            r#"{"ulid":"01ARZ3NDEKTSV4RRFFQ69G5FAV","minTime":1,"maxTime":2,"version":2}"#,
        )
        .unwrap();
        assert!(assert_fails(&b, "meta version").contains("version 2"));
        std::fs::write(
            b.join("meta.json"),
            r#"{"ulid":"01ARZ3NDEKTSV4RRFFQ69G5FAV","minTime":1,"maxTime":2,"version":1,"x":[]}"#,
        )
        .unwrap();
        let m = read_meta(&b).unwrap();
        assert_eq!((m.num_samples, m.compaction_level, m.min_time), (0, 0, 1));
        std::fs::remove_file(b.join("meta.json")).unwrap();
        assert!(assert_fails(&b, "no meta").contains("meta.json"));
    }

    #[test]
    fn truncated_files_are_errors_not_panics() {
        let d = data(20);
        let dir = tempfile::tempdir().unwrap();
        let src = write(dir.path(), &d, 1 << 20);
        for file in ["index", "chunks/000001"] {
            let len = std::fs::metadata(src.join(file)).unwrap().len();
            let cuts = [
                0,
                1,
                4,
                5,
                8,
                9,
                12,
                100,
                len / 3,
                len / 2,
                len - 53,
                len - 5,
                len - 1,
            ];
            for cut in cuts {
                let bdir = dir
                    .path()
                    .join(format!("cut-{cut}"))
                    .join(src.file_name().unwrap());
                std::fs::create_dir_all(bdir.join("chunks")).unwrap();
                for f in ["meta.json", "index", "chunks/000001"] {
                    std::fs::copy(src.join(f), bdir.join(f)).unwrap();
                }
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(bdir.join(file))
                    .unwrap();
                f.set_len(cut).unwrap();
                assert_fails(&bdir, &format!("{file} cut at {cut}"));
                std::fs::remove_dir_all(bdir.parent().unwrap()).unwrap();
            }
        }
    }

    /// Every byte of a small block's index flipped in turn: errors or wrong answers, never a panic.
    #[test]
    fn flipped_index_bytes_never_panic() {
        let d = data(4);
        let dir = tempfile::tempdir().unwrap();
        let bdir = write(dir.path(), &d, 1 << 20);
        let path = bdir.join("index");
        let good = std::fs::read(&path).unwrap();
        let sets = matcher_sets();
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0xff;
            std::fs::write(&path, &b).unwrap();
            if let Ok(block) = Block::open(&bdir) {
                for ms in [&sets[0], &sets[2], &sets[3]] {
                    let _ = block.select(i64::MIN, i64::MAX, ms);
                }
            }
        }
    }

    /// A block Prometheus wrote (promtool 2.42, which also writes label indices) reads the same.
    #[test]
    fn reads_a_block_written_by_promtool() {
        let d = data(120);
        let dir = tempfile::tempdir().unwrap();
        let b = Block::open(&promtool_block(dir.path(), &d)).unwrap();
        assert_eq!(b.meta().num_series, 120);
        assert!(b.meta().thanos_labels.is_empty());
        // promtool parses every NaN (stale markers included) to Go's math.NaN().
        let canon = |mut v: Bits| {
            for s in &mut v {
                for x in &mut s.1 {
                    if f64::from_bits(x.1).is_nan() {
                        x.1 = f64::NAN.to_bits();
                    }
                }
            }
            v
        };
        for ms in matcher_sets() {
            for (mint, maxt) in [(i64::MIN, i64::MAX), (BASE + 60_000, BASE + 3_000_000)] {
                let got = canon(bits(&b.select(mint, maxt, &ms).unwrap()));
                assert_eq!(got, canon(expected(&d, mint, maxt, &ms)), "{ms:?}");
            }
        }
    }

    #[test]
    fn block_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Block>();
    }

    mod merge {
        use super::*;
        use proptest::prelude::*;

        fn series(name: &str, samples: &[(i64, f64)]) -> SeriesSamples {
            SeriesSamples {
                labels: Labels::from_pairs([("__name__", name)]),
                samples: samples.to_vec(),
            }
        }

        #[test]
        fn first_part_wins_and_time_order_is_restored() {
            let stale = f64::from_bits(STALE);
            let old = vec![
                series("a", &[(1, 1.0), (2, stale)]),
                series("c", &[(5, 5.0)]),
            ];
            let head = vec![
                series("a", &[(2, 9.0), (3, 3.0)]),
                series("b", &[(0, -0.0)]),
            ];
            let got = bits(&merge_series(vec![old, vec![], head]));
            let l = |n| Labels::from_pairs([("__name__", n)]);
            let want: Bits = vec![
                (
                    l("a"),
                    vec![(1, 1f64.to_bits()), (2, STALE), (3, 3f64.to_bits())],
                ),
                (l("b"), vec![(0, (-0.0f64).to_bits())]),
                (l("c"), vec![(5, 5f64.to_bits())]),
            ];
            assert_eq!(got, want);
            assert!(merge_series(vec![]).is_empty());
            // A later part with older samples (an out-of-order block) is put in time order.
            let got = merge_series(vec![
                vec![series("a", &[(5, 1.0)])],
                vec![series("a", &[(1, 2.0), (5, 3.0)])],
            ]);
            assert_eq!(got[0].samples, vec![(1, 2.0), (5, 1.0)]);
        }

        /// Parts: up to 5 lists; each a set of series (from 6 names) with sorted unique samples.
        fn parts() -> impl Strategy<Value = Vec<Vec<SeriesSamples>>> {
            let part = prop::collection::btree_map(
                0usize..6,
                prop::collection::btree_map(-20i64..20, any::<u64>(), 0..8),
                0..6,
            );
            prop::collection::vec(part, 0..5).prop_map(|parts| {
                parts
                    .into_iter()
                    .map(|p| {
                        p.into_iter()
                            .map(|(n, s)| SeriesSamples {
                                labels: Labels::from_pairs([
                                    ("__name__", "m"),
                                    ("i", ["a", "b", "c", "d", "e", "f"][n]),
                                ]),
                                samples: s
                                    .into_iter()
                                    .map(|(t, v)| (t, f64::from_bits(v)))
                                    .collect(),
                            })
                            .collect()
                    })
                    .collect()
            })
        }

        proptest! {
            #[test]
            fn merge_matches_a_btreemap_model(parts in parts()) {
                let mut model: BTreeMap<Labels, BTreeMap<i64, u64>> = BTreeMap::new();
                for p in &parts {
                    for s in p {
                        let e = model.entry(s.labels.clone()).or_default();
                        for &(t, v) in &s.samples {
                            e.entry(t).or_insert(v.to_bits());
                        }
                    }
                }
                let want: Bits = model
                    .into_iter()
                    .map(|(l, s)| (l, s.into_iter().collect()))
                    .collect();
                prop_assert_eq!(bits(&merge_series(parts)), want);
            }
        }
    }
}
