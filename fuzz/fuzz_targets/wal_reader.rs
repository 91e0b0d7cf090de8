//! Fuzzes the WAL reader on one segment file (the input is segment `00000000`): it never panics,
//! every record it returns goes through the record decoders, and a reported corruption is fixed by
//! `repair`, after which the segment reads again without error and yields exactly the records
//! read before the corruption.
//!
//! Fragment CRCs stop most mutations at the checksum, so an input whose CRCs are wrong is read a
//! second time with its CRCs recomputed: that reaches reassembly, snappy and the record decoders.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringest::tsdb::record::{self, Record};
use ringest::tsdb::wlog::{self, Reader, WalError, PAGE_SIZE};

/// A WAL directory of this process, on tmpfs when there is one.
fn wal_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("ringest-fuzz-wal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create fuzz WAL dir");
        d
    })
}

/// Decodes a record with every decoder and checks they agree.
fn check_record(rec: &[u8]) {
    assert!(!rec.is_empty(), "the reader never returns empty records");
    let typ = record::record_type(rec);
    assert_eq!(typ, rec.first().copied());
    let mut series = Vec::new();
    let mut samples = Vec::new();
    let s = record::decode_series_into(rec, &mut series);
    let m = record::decode_samples_into(rec, &mut samples);
    match record::decode(rec) {
        Ok(Record::Series(v)) => {
            assert_eq!(typ, Some(record::SERIES));
            assert!(s.is_ok());
            assert_eq!(v, series);
        }
        Ok(Record::Samples(v)) => {
            assert_eq!(typ, Some(record::SAMPLES));
            assert!(m.is_ok());
            assert_eq!(v.len(), samples.len());
            for (a, b) in v.iter().zip(&samples) {
                assert_eq!((a.r#ref, a.t, a.v.to_bits()), (b.r#ref, b.t, b.v.to_bits()));
            }
        }
        Ok(Record::Unknown(t)) => {
            assert_eq!(typ, Some(t));
            assert!(s.is_err() && m.is_err());
        }
        Err(e) => {
            assert!(
                s.is_err() || m.is_err(),
                "decode failed ({e}) but both decoders agreed"
            );
        }
    }
    // Series records re-encode to the bytes read (the encoder is canonical for what decodes).
    if typ == Some(record::SERIES) && s.is_ok() {
        let mut buf = Vec::new();
        record::encode_series(series.iter().map(|x| (x.r#ref, x.labels.clone())), &mut buf);
        let mut back = Vec::new();
        record::decode_series_into(&buf, &mut back).expect("re-encoded series decode");
        assert_eq!(back, series);
    }
}

/// Reads every record of `dir`, checking each; returns them and the error that stopped reading.
fn read_all(dir: &Path, seg_len: u64) -> (Vec<Vec<u8>>, Option<WalError>) {
    let mut r = Reader::open(dir).expect("open the WAL directory");
    let mut out = Vec::new();
    let mut last_off = 0;
    loop {
        match r.next() {
            Ok(Some(rec)) => {
                check_record(rec);
                out.push(rec.to_vec());
                assert_eq!(r.segment(), 0);
                assert!(r.offset() > last_off && r.offset() <= seg_len);
                last_off = r.offset();
            }
            Ok(None) => {
                assert!(matches!(r.next(), Ok(None)), "end of the WAL is sticky");
                return (out, None);
            }
            Err(e) => {
                assert!(
                    matches!(r.next(), Err(WalError::ReaderFailed)),
                    "a failed reader stays failed"
                );
                return (out, Some(e));
            }
        }
    }
}

/// Recomputes the CRC of every fragment whose header and data fit in its page.
fn fix_crcs(data: &[u8]) -> Vec<u8> {
    let mut b = data.to_vec();
    for page_start in (0..b.len()).step_by(PAGE_SIZE) {
        let page_end = (page_start + PAGE_SIZE).min(b.len());
        let mut pos = page_start;
        while pos + 7 <= page_end && b[pos] != 0 {
            let len = u16::from_be_bytes([b[pos + 1], b[pos + 2]]) as usize;
            let end = pos + 7 + len;
            if end > page_end {
                break;
            }
            let crc = crc32c::crc32c(&b[pos + 7..end]);
            b[pos + 3..pos + 7].copy_from_slice(&crc.to_be_bytes());
            pos = end;
        }
    }
    b
}

fn run(data: &[u8]) {
    let dir = wal_dir();
    let seg = wlog::segment_path(dir, 0);
    std::fs::write(&seg, data).expect("write the segment");
    let (records, err) = read_all(dir, data.len() as u64);
    let Some(err) = err else { return };
    let WalError::Corruption {
        segment, offset, ..
    } = err
    else {
        panic!("reading a segment file failed with a non-corruption error: {err}");
    };
    assert_eq!(segment, 0);
    wlog::repair(dir, segment, offset).expect("repair");
    let len = std::fs::metadata(&seg)
        .expect("stat the repaired segment")
        .len();
    assert_eq!(len % PAGE_SIZE as u64, 0, "repair pads the last page");
    let (again, err) = read_all(dir, len);
    if let Some(e) = err {
        panic!("the WAL still fails after repair at offset {offset}: {e}");
    }
    assert_eq!(
        again, records,
        "repair keeps exactly the records before the corruption"
    );
}

fuzz_target!(|data: &[u8]| {
    run(data);
    let fixed = fix_crcs(data);
    if fixed != data {
        run(&fixed);
    }
});
