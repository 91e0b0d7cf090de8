//! WAL checkpoints (Prometheus `wlog.Checkpoint`): the live series and recent samples of a
//! range of segments, written as a small WAL in `wal/checkpoint.%08d/`, so the segments can
//! be deleted. Replay reads the last checkpoint, then the segments after its index.
//!
//! Kept: Series records of refs with `keep(ref)`, Samples with `t >= mint` of kept refs.
//! Dropped: every other record type (tombstones, exemplars, metadata, histograms): Ringest
//! never writes them, and Prometheus drops their old entries the same way.

use crate::tsdb::record::{self, Record, RecordError, RefSample, RefSeries};
use crate::tsdb::wlog::{segment_path, segments, Reader, Wal, WalError, WalOptions};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

const PREFIX: &str = "checkpoint.";
const TMP_SUFFIX: &str = ".tmp";
/// Records are handed to the checkpoint WAL in batches of about this many bytes.
const BATCH_BYTES: usize = 1024 * 1024;

/// Errors creating, finding or deleting checkpoints.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// A filesystem operation failed.
    #[error("checkpoint {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// File or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading the segments or writing the checkpoint WAL failed.
    #[error("checkpoint wal: {0}")]
    Wal(#[from] WalError),
    /// A record could not be decoded (repair is no option: series would be lost).
    #[error("checkpoint decode: {0}")]
    Record(#[from] RecordError),
    /// `from` is past the segment after the last checkpoint.
    #[error("gap to last checkpoint: expected segment {expected}, requested {requested}")]
    Gap {
        /// First segment not covered by the last checkpoint.
        expected: u64,
        /// Requested first segment.
        requested: u64,
    },
    /// A `checkpoint.N` entry is not a directory.
    #[error("checkpoint {0} is not a directory")]
    NotADirectory(PathBuf),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io { op, path, source }
}

/// Counts of a created checkpoint (Prometheus `CheckpointStats`, float samples only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Series read, including dropped ones.
    pub total_series: u64,
    /// Series dropped because `keep` was false.
    pub dropped_series: u64,
    /// Samples read, including dropped ones.
    pub total_samples: u64,
    /// Samples dropped (older than `mint` or of a series not kept).
    pub dropped_samples: u64,
    /// Records of other types, all dropped.
    pub dropped_other_records: u64,
}

/// Path of checkpoint `i` in `wal_dir` (`checkpoint.%08d`).
pub fn checkpoint_dir(wal_dir: &Path, i: u64) -> PathBuf {
    wal_dir.join(format!("{PREFIX}{i:08}"))
}

/// Checkpoints (name, index) in `wal_dir`, sorted by index; `.tmp` leftovers are skipped.
fn list_checkpoints(wal_dir: &Path) -> Result<Vec<(String, u64)>, CheckpointError> {
    let mut out = Vec::new();
    for ent in fs::read_dir(wal_dir).map_err(io_err("read dir", wal_dir))? {
        let ent = ent.map_err(io_err("read dir", wal_dir))?;
        let Ok(name) = ent.file_name().into_string() else {
            continue;
        };
        let Some(num) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Ok(i) = num.parse::<u64>() else { continue };
        if !ent
            .file_type()
            .map_err(io_err("stat", &ent.path()))?
            .is_dir()
        {
            return Err(CheckpointError::NotADirectory(ent.path()));
        }
        out.push((name, i));
    }
    out.sort_unstable_by_key(|&(_, i)| i);
    Ok(out)
}

/// Directory and index of the most recent checkpoint in `wal_dir`, if any.
pub fn last_checkpoint(wal_dir: &Path) -> Result<Option<(PathBuf, u64)>, CheckpointError> {
    Ok(list_checkpoints(wal_dir)?
        .pop()
        .map(|(name, i)| (wal_dir.join(name), i)))
}

/// Deletes checkpoints with an index below `index` (Prometheus `DeleteCheckpoints`).
pub fn delete_checkpoints_before(wal_dir: &Path, index: u64) -> Result<(), CheckpointError> {
    for (name, i) in list_checkpoints(wal_dir)? {
        if i < index {
            let p = wal_dir.join(name);
            fs::remove_dir_all(&p).map_err(io_err("remove", &p))?;
        }
    }
    Ok(())
}

/// Deletes WAL segments with an index below `index`, oldest first (Prometheus `Truncate`).
pub fn delete_segments_before(wal_dir: &Path, index: u64) -> Result<(), CheckpointError> {
    let Some((first, _)) = segments(wal_dir)? else {
        return Ok(());
    };
    // Oldest first: a crash leaves a sequential suffix of segments.
    for i in first..index {
        let p = segment_path(wal_dir, i);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &p)(e)),
        }
    }
    Ok(())
}

/// Removes `checkpoint.*.tmp` leftovers of an interrupted checkpoint.
fn delete_tmp_checkpoints(wal_dir: &Path) -> Result<(), CheckpointError> {
    for ent in fs::read_dir(wal_dir).map_err(io_err("read dir", wal_dir))? {
        let ent = ent.map_err(io_err("read dir", wal_dir))?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && name.ends_with(TMP_SUFFIX) {
            let p = ent.path();
            fs::remove_dir_all(&p).map_err(io_err("remove", &p))?;
        }
    }
    Ok(())
}

/// Filters one record into `buf` (appending nothing if all of it is dropped).
fn filter_record(
    rec: &[u8],
    keep: &impl Fn(u64) -> bool,
    mint: i64,
    stats: &mut CheckpointStats,
    buf: &mut Vec<u8>,
) -> Result<(), CheckpointError> {
    match record::decode(rec)? {
        Record::Series(series) => {
            let kept: Vec<&RefSeries<'_>> = series.iter().filter(|s| keep(s.r#ref)).collect();
            stats.total_series += series.len() as u64;
            stats.dropped_series += (series.len() - kept.len()) as u64;
            if !kept.is_empty() {
                record::encode_series(
                    kept.iter().map(|s| (s.r#ref, s.labels.iter().copied())),
                    buf,
                );
            }
        }
        Record::Samples(samples) => {
            let kept: Vec<RefSample> = samples
                .iter()
                .filter(|s| s.t >= mint && keep(s.r#ref))
                .copied()
                .collect();
            stats.total_samples += samples.len() as u64;
            stats.dropped_samples += (samples.len() - kept.len()) as u64;
            if !kept.is_empty() {
                record::encode_samples(&kept, buf);
            }
        }
        Record::Unknown(_) => stats.dropped_other_records += 1,
    }
    Ok(())
}

/// Checkpoints segments `from..=to` of `wal_dir` (plus the last checkpoint) into
/// `checkpoint.<to>`, keeping series with `keep(ref)` and their samples at `t >= mint`;
/// deletes older checkpoints afterwards (segments are left to `delete_segments_before`).
pub fn checkpoint(
    wal_dir: &Path,
    from: u64,
    to: u64,
    keep: impl Fn(u64) -> bool,
    mint: i64,
    compress: bool,
) -> Result<CheckpointStats, CheckpointError> {
    let mut from = from;
    let mut readers = Vec::new();
    if let Some((dir, idx)) = last_checkpoint(wal_dir)?.filter(|&(_, i)| i <= to) {
        if from > idx + 1 {
            return Err(CheckpointError::Gap {
                expected: idx + 1,
                requested: from,
            });
        }
        // Segments below the checkpoint are already in it.
        from = idx + 1;
        readers.push(Reader::open(&dir)?);
    }
    readers.push(Reader::open_range(wal_dir, Some(from), Some(to))?);

    delete_tmp_checkpoints(wal_dir)?;
    let cpdir = checkpoint_dir(wal_dir, to);
    let tmp = PathBuf::from(format!("{}{TMP_SUFFIX}", cpdir.display()));
    let res = write_checkpoint(&mut readers, &tmp, &cpdir, &keep, mint, compress);
    if res.is_err() {
        // Best effort: the error at hand matters more than a failed cleanup.
        let _ = fs::remove_dir_all(&tmp);
    }
    let stats = res?;
    delete_checkpoints_before(wal_dir, to)?;
    Ok(stats)
}

fn write_checkpoint(
    readers: &mut [Reader],
    tmp: &Path,
    cpdir: &Path,
    keep: &impl Fn(u64) -> bool,
    mint: i64,
    compress: bool,
) -> Result<CheckpointStats, CheckpointError> {
    let mut cp = Wal::open(
        tmp,
        WalOptions {
            compress,
            ..WalOptions::default()
        },
    )?;
    let mut stats = CheckpointStats::default();
    let mut buf = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    for r in readers.iter_mut() {
        while let Some(rec) = r.next()? {
            filter_record(rec, keep, mint, &mut stats, &mut buf)?;
            if ends.last().copied().unwrap_or(0) < buf.len() {
                ends.push(buf.len());
            }
            if buf.len() > BATCH_BYTES {
                log_batch(&mut cp, &buf, &ends)?;
                buf.clear();
                ends.clear();
            }
        }
    }
    log_batch(&mut cp, &buf, &ends)?;
    cp.close()?;
    File::open(tmp)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync dir", tmp))?;
    if cpdir.exists() {
        // A checkpoint with this index exists already (checkpointing the same range again).
        fs::remove_dir_all(cpdir).map_err(io_err("remove", cpdir))?;
    }
    fs::rename(tmp, cpdir).map_err(io_err("rename", tmp))?;
    let parent = cpdir.parent().unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync dir", parent))?;
    Ok(stats)
}

/// Logs the records `buf[ends[i-1]..ends[i]]`.
fn log_batch(cp: &mut Wal, buf: &[u8], ends: &[usize]) -> Result<(), CheckpointError> {
    if ends.is_empty() {
        return Ok(());
    }
    let mut start = 0;
    let recs: Vec<&[u8]> = ends
        .iter()
        .map(|&e| {
            let r = &buf[start..e];
            start = e;
            r
        })
        .collect();
    cp.log(&recs)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::labels::Labels;
    use crate::tsdb::testutil::{assert_dump_eq, go_labels, parse_dump, promtool};
    use std::collections::{BTreeMap, HashMap};

    const SEG: usize = 32 * 1024;

    /// Series (ref → labels) and samples (ref, t, value bits) of a WAL, in order.
    type Contents = (BTreeMap<u64, Vec<(String, String)>>, Vec<(u64, i64, u64)>);
    const N_SERIES: u64 = 20;

    fn labels_of(r: u64) -> Vec<(String, String)> {
        vec![
            ("__name__".to_string(), "cp_metric".to_string()),
            ("id".to_string(), format!("s{r}")),
        ]
    }

    fn value(r: u64, t: i64) -> f64 {
        (r as f64) * 1000.0 + (t as f64) / 7.0
    }

    /// Writes series 1..=N_SERIES, then `rounds` sample records (t = 1000 * round) into
    /// 32 KiB segments; returns every sample written with its segment.
    fn write_wal(dir: &Path, rounds: i64, compress: bool) -> Vec<(u64, RefSample)> {
        let mut w = Wal::open(
            dir,
            WalOptions {
                segment_size: SEG,
                compress,
            },
        )
        .unwrap();
        let ls: Vec<(u64, Vec<(String, String)>)> =
            (1..=N_SERIES).map(|r| (r, labels_of(r))).collect();
        let mut buf = Vec::new();
        record::encode_series(
            ls.iter()
                .map(|(r, l)| (*r, l.iter().map(|(a, b)| (a.as_str(), b.as_str())))),
            &mut buf,
        );
        w.log(&[&buf]).unwrap();
        let mut all = Vec::new();
        for t in 0..rounds {
            let samples: Vec<RefSample> = (1..=N_SERIES)
                .map(|r| RefSample {
                    r#ref: r,
                    t: t * 1000,
                    v: value(r, t * 1000),
                })
                .collect();
            buf.clear();
            record::encode_samples(&samples, &mut buf);
            w.log(&[&buf]).unwrap();
            let seg = w.current_segment();
            all.extend(samples.into_iter().map(|s| (seg, s)));
        }
        w.close().unwrap();
        all
    }

    /// All series and samples of a WAL dir (or a checkpoint dir).
    fn read_all(dir: &Path) -> Contents {
        let mut series = BTreeMap::new();
        let mut samples = Vec::new();
        let mut r = Reader::open(dir).unwrap();
        while let Some(rec) = r.next().unwrap() {
            match record::decode(rec).unwrap() {
                Record::Series(ss) => {
                    for s in ss {
                        let l = s
                            .labels
                            .iter()
                            .map(|(a, b)| (a.to_string(), b.to_string()))
                            .collect();
                        assert!(series.insert(s.r#ref, l).is_none(), "duplicate series");
                    }
                }
                Record::Samples(ss) => {
                    samples.extend(ss.iter().map(|s| (s.r#ref, s.t, s.v.to_bits())))
                }
                Record::Unknown(t) => panic!("unexpected record type {t}"),
            }
        }
        (series, samples)
    }

    fn keep(r: u64) -> bool {
        r % 3 != 0
    }

    fn expected(all: &[(u64, RefSample)], to: u64, mint: i64) -> Contents {
        let series = (1..=N_SERIES)
            .filter(|&r| keep(r))
            .map(|r| (r, labels_of(r)))
            .collect();
        let samples = all
            .iter()
            .filter(|(seg, s)| *seg <= to && s.t >= mint && keep(s.r#ref))
            .map(|(_, s)| (s.r#ref, s.t, s.v.to_bits()))
            .collect();
        (series, samples)
    }

    #[test]
    fn checkpoint_keeps_exactly_the_live_series_and_recent_samples() {
        for compress in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let wal = dir.path();
            let all = write_wal(wal, 1500, compress);
            let (first, last) = segments(wal).unwrap().unwrap();
            assert_eq!(first, 0);
            assert!(last >= 5, "want several segments, got {last}");
            assert_eq!(last_checkpoint(wal).unwrap(), None);

            // A crashed earlier attempt left a tmp dir with garbage behind.
            let junk = wal.join("checkpoint.00000001.tmp");
            fs::create_dir_all(&junk).unwrap();
            fs::write(junk.join("00000000"), b"garbage").unwrap();

            let mint = 100_000;
            let st = checkpoint(wal, 0, 1, keep, mint, compress).unwrap();
            assert!(!junk.exists(), "tmp leftover replaced");
            let cp1 = checkpoint_dir(wal, 1);
            assert_eq!(last_checkpoint(wal).unwrap(), Some((cp1.clone(), 1)));
            let want = expected(&all, 1, mint);
            assert_eq!(read_all(&cp1), want);
            assert_eq!(st.total_series, N_SERIES);
            assert_eq!(st.dropped_series, N_SERIES / 3);
            let in_range = all.iter().filter(|(s, _)| *s <= 1).count() as u64;
            assert_eq!(st.total_samples, in_range);
            assert_eq!(st.dropped_samples, in_range - want.1.len() as u64);
            assert!(!want.1.is_empty() && want.1.len() < in_range as usize);

            // The second checkpoint includes the first and supersedes it.
            let mint2 = 200_000;
            delete_segments_before(wal, 2).unwrap();
            assert_eq!(segments(wal).unwrap(), Some((2, last)));
            // `from` below the checkpoint is fine (already covered), a gap is not.
            assert!(matches!(
                checkpoint(wal, 3, 3, keep, mint2, compress),
                Err(CheckpointError::Gap {
                    expected: 2,
                    requested: 3
                })
            ));
            checkpoint(wal, 0, 3, keep, mint2, compress).unwrap();
            assert!(!cp1.exists(), "older checkpoint deleted");
            let cp3 = checkpoint_dir(wal, 3);
            assert_eq!(last_checkpoint(wal).unwrap(), Some((cp3.clone(), 3)));
            assert_eq!(read_all(&cp3), expected(&all, 3, mint2));
        }
    }

    #[test]
    fn promtool_replays_checkpoint_then_segments() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        let all = write_wal(&wal, 1500, true);
        let (_, last) = segments(&wal).unwrap().unwrap();
        let (to, mint) = (2, 150_000);
        checkpoint(&wal, 0, to, keep, mint, true).unwrap();
        delete_segments_before(&wal, to + 1).unwrap();
        assert_eq!(segments(&wal).unwrap(), Some((to + 1, last)));

        // Checkpointed samples of kept series, then everything after the checkpoint.
        let mut want: HashMap<String, Vec<(i64, u64)>> = HashMap::new();
        let mut n = 0u64;
        let mut from_checkpoint = 0u64;
        for (seg, s) in &all {
            let from_cp = *seg <= to && s.t >= mint && keep(s.r#ref);
            if from_cp || *seg > to {
                let l = labels_of(s.r#ref);
                let ls = Labels::from_pairs(l.iter().map(|(a, b)| (a.as_str(), b.as_str())));
                want.entry(go_labels(&ls))
                    .or_default()
                    .push((s.t, s.v.to_bits()));
                n += 1;
                from_checkpoint += u64::from(from_cp);
            }
        }
        assert!(
            from_checkpoint > 0,
            "some expected samples live only in the checkpoint"
        );
        // Series 3, 6, ... lost their series record; their later samples are dropped on replay.
        for r in (1..=N_SERIES).filter(|&r| !keep(r)) {
            let l = labels_of(r);
            let ls = Labels::from_pairs(l.iter().map(|(a, b)| (a.as_str(), b.as_str())));
            n -= want.remove(&go_labels(&ls)).map_or(0, |v| v.len() as u64);
        }
        let dump = promtool(&["tsdb", "dump", dir.path().to_str().unwrap()]);
        let (got, lines) = parse_dump(&dump);
        assert_eq!(lines, n);
        assert_dump_eq(&got, &want);
    }
}
