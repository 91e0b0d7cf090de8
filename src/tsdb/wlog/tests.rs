//! Writer, reader and repair against each other: round trips, layout, torn tails, failed writes.

use super::*;
use proptest::prelude::*;
use std::fs;

fn small_opts(compress: bool) -> WalOptions {
    WalOptions {
        segment_size: 4 * PAGE_SIZE,
        compress,
    }
}

/// Records read, and the error that stopped reading, if any.
type ReadAll = Result<Vec<Vec<u8>>, (Vec<Vec<u8>>, WalError)>;

fn read_all(dir: &Path) -> ReadAll {
    let mut r = Reader::open(dir).unwrap();
    let mut out = Vec::new();
    loop {
        match r.next() {
            Ok(Some(rec)) => out.push(rec.to_vec()),
            Ok(None) => return Ok(out),
            Err(e) => return Err((out, e)),
        }
    }
}

/// Deterministic pseudo-random record: sometimes compressible.
fn make_record(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    let compressible = seed % 3 == 0;
    (0..len)
        .map(|i| {
            if compressible {
                (i % 17) as u8 ^ (seed as u8)
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

fn sizes() -> Vec<usize> {
    let mut v = vec![1, 2, 100, PAGE_SIZE - 7, PAGE_SIZE - 8, PAGE_SIZE - 6];
    v.extend([PAGE_SIZE, PAGE_SIZE + 1, 3 * PAGE_SIZE + 5, 70_000]);
    for i in 0..60u64 {
        v.push(((i * 7919) % 5000) as usize + 1);
    }
    v
}

#[test]
fn roundtrip_with_and_without_compression_across_segments() {
    for compress in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let recs: Vec<Vec<u8>> = sizes()
            .iter()
            .enumerate()
            .map(|(i, &n)| make_record(i as u64, n))
            .collect();
        let half = recs.len() / 2;
        {
            let mut w = Wal::open(&dir, small_opts(compress)).unwrap();
            for (i, r) in recs[..half].iter().enumerate() {
                w.log(&[r]).unwrap();
                if i % 5 == 0 {
                    w.flush().unwrap();
                }
            }
            w.sync().unwrap();
        }
        {
            // Reopen: a new segment is started after the last one.
            let before = segments(&dir).unwrap().unwrap().1;
            let mut w = Wal::open(&dir, small_opts(compress)).unwrap();
            assert_eq!(w.current_segment(), before + 1);
            let rest: Vec<&[u8]> = recs[half..].iter().map(|r| r.as_slice()).collect();
            w.log(&rest).unwrap();
            w.close().unwrap();
        }
        let (first, last) = segments(&dir).unwrap().unwrap();
        assert_eq!(first, 0);
        assert!(last >= 2, "tiny segments should have rolled: {last}");
        let got = read_all(&dir).unwrap();
        assert_eq!(got.len(), recs.len());
        assert!(got == recs, "records differ (compress={compress})");
        // No segment beyond its size unless one record was bigger than a segment.
        for i in first..=last {
            let len = fs::metadata(segment_path(&dir, i)).unwrap().len() as usize;
            assert!(len <= 4 * PAGE_SIZE || len % PAGE_SIZE == 0);
        }
    }
}

#[test]
fn known_layout_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut w = Wal::open(dir, small_opts(false)).unwrap();
    w.log(&[b"abc"]).unwrap();
    w.flush().unwrap();
    let b = fs::read(segment_path(dir, 0)).unwrap();
    let crc = crc32c::crc32c(b"abc").to_be_bytes();
    assert_eq!(b, [&[1u8, 0, 3][..], &crc, b"abc"].concat());
    // Fill the page to exactly 7 bytes left: a zero-length FIRST fragment ends it.
    let filler = vec![7u8; PAGE_SIZE - 10 - 14];
    w.log(&[&filler]).unwrap();
    w.log(&[b"0123456789"]).unwrap();
    w.flush().unwrap();
    let b = fs::read(segment_path(dir, 0)).unwrap();
    let p = PAGE_SIZE - 7;
    assert_eq!(&b[p..PAGE_SIZE], &[2u8, 0, 0, 0, 0, 0, 0]); // crc32c("") = 0
    let crc = crc32c::crc32c(b"0123456789").to_be_bytes();
    assert_eq!(
        &b[PAGE_SIZE..],
        &[&[4u8, 0, 10][..], &crc, b"0123456789"].concat()[..]
    );
    // Fewer than 7 bytes left: the page is zero padded.
    let filler = vec![9u8; PAGE_SIZE - 17 - 7 - 3];
    w.log(&[&filler]).unwrap();
    w.log(&[b"x"]).unwrap();
    w.close().unwrap();
    let b = fs::read(segment_path(dir, 0)).unwrap();
    assert_eq!(b.len(), 3 * PAGE_SIZE);
    assert_eq!(&b[2 * PAGE_SIZE - 3..2 * PAGE_SIZE], &[0, 0, 0]);
    assert_eq!(b[2 * PAGE_SIZE], 1);
    assert_eq!(read_all(dir).unwrap().len(), 5);
}

#[test]
fn compressed_flag_set_only_when_smaller() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Wal::open(tmp.path(), WalOptions::default()).unwrap();
    w.log(&[&[0u8; 1000][..], &b"ab"[..]]).unwrap();
    w.flush().unwrap();
    let b = fs::read(segment_path(tmp.path(), 0)).unwrap();
    assert_eq!(b[0], FRAG_FULL | SNAPPY_FLAG);
    let l = u16::from_be_bytes([b[1], b[2]]) as usize;
    assert_eq!(b[7 + l], FRAG_FULL);
    let got = read_all(tmp.path()).unwrap();
    assert_eq!(got, vec![vec![0u8; 1000], b"ab".to_vec()]);
}

fn write_recs(dir: &Path, recs: &[Vec<u8>], compress: bool) {
    let mut w = Wal::open(dir, small_opts(compress)).unwrap();
    for r in recs {
        w.log(&[r]).unwrap();
    }
    w.flush().unwrap();
}

/// Cut the last record at every byte (and zero-fill instead of cut):
/// corruption is reported at the record's start, and repair keeps
/// every earlier record.
#[test]
fn torn_tail_every_offset_then_repair() {
    for (compress, last_len) in [(false, 40_000), (true, 300), (false, 9)] {
        let src = tempfile::tempdir().unwrap();
        let mut recs: Vec<Vec<u8>> = (0..5).map(|i| make_record(i + 1, 3000)).collect();
        recs.push(make_record(3, last_len));
        write_recs(src.path(), &recs, compress);
        let seg = segment_path(src.path(), 0);
        let full = fs::read(&seg).unwrap();
        // Where the last record starts: end of the record before it.
        let mut r = Reader::open(src.path()).unwrap();
        for _ in 0..5 {
            r.next().unwrap().unwrap();
        }
        let start = r.offset() as usize;
        // Every byte for small records; for the page-spanning one, a
        // stride plus every byte around its start and the page boundary.
        let cuts: Vec<usize> = (start..full.len())
            .filter(|&c| {
                last_len < 1000 || c % 197 == 0 || c < start + 16 || c.abs_diff(PAGE_SIZE) <= 16
            })
            .collect();
        for cut in cuts {
            for zero_fill in [false, true] {
                let tmp = tempfile::tempdir().unwrap();
                let mut b = full[..cut].to_vec();
                if zero_fill {
                    b.resize(full.len(), 0);
                    if b == full {
                        continue; // the cut-off bytes were zeros already
                    }
                }
                fs::write(segment_path(tmp.path(), 0), &b).unwrap();
                match read_all(tmp.path()) {
                    Ok(got) => {
                        assert_eq!(
                            cut,
                            start,
                            "torn tail undetected at {cut} zero_fill={zero_fill} len={}",
                            full.len()
                        );
                        assert_eq!(got, recs[..5]);
                    }
                    Err((got, e)) => {
                        assert_eq!(got, recs[..5], "cut {cut}");
                        let WalError::Corruption {
                            segment, offset, ..
                        } = e
                        else {
                            panic!("{e}")
                        };
                        assert_eq!((segment, offset), (0, start as u64), "cut {cut}");
                        repair(tmp.path(), segment, offset).unwrap();
                        assert_eq!(read_all(tmp.path()).unwrap(), recs[..5]);
                        if cut % 11 != 0 {
                            continue; // the reopen check below is fsync-heavy
                        }
                        // And the WAL is writable again after repair.
                        let mut w = Wal::open(tmp.path(), small_opts(compress)).unwrap();
                        w.log(&[b"after"]).unwrap();
                        w.close().unwrap();
                        let got = read_all(tmp.path()).unwrap();
                        assert_eq!(got.len(), 6);
                        assert_eq!(got[5], b"after");
                    }
                }
            }
        }
    }
}

#[test]
fn flipped_byte_reports_segment_and_repair_drops_later_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let recs: Vec<Vec<u8>> = (0..40).map(|i| make_record(i + 7, 9000)).collect();
    write_recs(tmp.path(), &recs, false);
    let (_, last) = segments(tmp.path()).unwrap().unwrap();
    assert!(last >= 2);
    // Records per segment, via the reader's positions.
    let mut r = Reader::open(tmp.path()).unwrap();
    let mut before = 0;
    while r.next().unwrap().is_some() {
        if r.segment() == 0 {
            before += 1;
        }
    }
    let p = segment_path(tmp.path(), 1);
    let mut b = fs::read(&p).unwrap();
    b[20_000] ^= 0x40;
    fs::write(&p, &b).unwrap();
    let (got, e) = read_all(tmp.path()).unwrap_err();
    let WalError::Corruption {
        segment, offset, ..
    } = e
    else {
        panic!("{e}")
    };
    assert_eq!(segment, 1);
    assert!(got.len() > before && got[..] == recs[..got.len()]);
    repair(tmp.path(), segment, offset).unwrap();
    assert_eq!(segments(tmp.path()).unwrap(), Some((0, 1)));
    assert_eq!(read_all(tmp.path()).unwrap(), got);
}

/// A write failing at any byte (disk full) leaves no trace of the failed
/// batch, even across a segment switch; retrying then succeeds.
#[test]
fn failed_writes_roll_back() {
    // The batch overflows the 4-page segment, so some failures hit after
    // the switch to a new segment.
    let batch: Vec<Vec<u8>> = (0..6).map(|i| make_record(i + 100, 20_000)).collect();
    let before: Vec<Vec<u8>> = (0..3).map(|i| make_record(i + 200, 9_000)).collect();
    let mut failures = 0;
    for fail_at in (0..160_000)
        .step_by(3_331)
        .chain([1, 6, 7, 27_000, 131_072 - 27_017])
    {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = Wal::open(tmp.path(), small_opts(false)).unwrap();
        w.log(&before).unwrap();
        w.flush().unwrap();
        w.log(&[&make_record(7, 3)]).unwrap(); // unflushed bytes in the page
        let seg_before = w.current_segment();
        w.fail_after = Some(fail_at);
        if let Err(e) = w.log(&batch) {
            failures += 1;
            assert!(e.is_disk_full(), "{e}");
            assert_eq!(w.current_segment(), seg_before);
            w.fail_after = None;
            w.log(&batch).unwrap();
        }
        // A failing flush keeps the buffered page for a retry.
        w.fail_after = Some(fail_at % 5_000);
        if let Err(e) = w.flush() {
            assert!(e.is_disk_full(), "{e}");
            w.fail_after = None;
            w.flush().unwrap();
        }
        w.fail_after = None;
        let mut want = before.clone();
        want.push(make_record(7, 3));
        want.extend(batch.iter().cloned());
        w.close().unwrap();
        let got = read_all(tmp.path()).unwrap_or_else(|(_, e)| panic!("fail_at {fail_at}: {e}"));
        assert_eq!(got.len(), want.len(), "fail_at {fail_at}");
        assert!(got == want, "fail_at {fail_at}");
        assert_eq!(segments(tmp.path()).unwrap(), Some((0, 1)));
    }
    assert!(failures > 30, "{failures}");
}

#[test]
fn garbage_and_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("checkpoint.00000003")).unwrap();
    fs::write(tmp.path().join("00000001.repair"), b"x").unwrap();
    assert_eq!(segments(tmp.path()).unwrap(), None);
    fs::write(segment_path(tmp.path(), 3), [0x81u8, 0, 0]).unwrap();
    assert_eq!(segments(tmp.path()).unwrap(), Some((3, 3)));
    let (_, e) = read_all(tmp.path()).unwrap_err();
    assert!(e.is_corruption(), "{e}");
    fs::write(segment_path(tmp.path(), 5), b"").unwrap();
    assert!(matches!(
        segments(tmp.path()),
        Err(WalError::NotSequential(_))
    ));
    assert!(matches!(
        Wal::open(
            tmp.path(),
            WalOptions {
                segment_size: 1000,
                compress: false
            }
        ),
        Err(WalError::InvalidSegmentSize(1000))
    ));
    let e = WalError::io("write", Path::new("x"), io::Error::from_raw_os_error(28));
    assert!(e.is_disk_full());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn prop_reader_never_panics(data in prop::collection::vec(any::<u8>(), 0..3000), flip in any::<usize>()) {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = Wal::open(tmp.path(), small_opts(true)).unwrap();
        w.log(&[&data[..], &b"tail"[..]]).unwrap();
        w.flush().unwrap();
        let p = segment_path(tmp.path(), 0);
        let mut b = fs::read(&p).unwrap();
        let i = flip % b.len();
        b[i] = b[i].wrapping_add(1 + (flip >> 20) as u8 % 255);
        fs::write(&p, &b).unwrap();
        let _ = read_all(tmp.path());
    }

    #[test]
    fn prop_roundtrip_random_sizes(
        lens in prop::collection::vec(prop_oneof![1usize..200, 1usize..40_000, (PAGE_SIZE - 20)..(PAGE_SIZE + 20)], 1..25),
        compress in any::<bool>(),
        flush_every in 1usize..5,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let recs: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &n)| make_record(i as u64 * 31 + n as u64, n)).collect();
        let mut w = Wal::open(tmp.path(), small_opts(compress)).unwrap();
        for (i, r) in recs.iter().enumerate() {
            w.log(&[r]).unwrap();
            if i % flush_every == 0 { w.flush().unwrap(); }
        }
        drop(w);
        prop_assert!(read_all(tmp.path()).unwrap() == recs);
    }
}
