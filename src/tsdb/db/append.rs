//! The append path of [`Db`]: series are resolved in the head outside any global lock, then one
//! short commit applies the samples and queues their WAL records (see `commit_log.rs`).

use super::commit_log::Seq;
use super::{now_ms, AppendError, AppendStats, Db};
use crate::tsdb::batch::{AppendBatch, Sample};
use crate::tsdb::head::{MemSeries, Rejection};
use crate::tsdb::labels::{pack_pairs, packed_hash, Labels};
use crate::tsdb::record::{encode_samples, encode_series, RefSample};
use std::sync::Arc;

impl Db {
    /// Appends the samples of every series of `batch` under Prometheus's append rules.
    ///
    /// Durability contract: when this returns `Ok` or [`AppendError::Conflict`], every sample
    /// of this call that was accepted, and every earlier sample it was silently deduplicated
    /// against, is in the WAL and fsynced. On [`AppendError::Wal`] nothing is acknowledged; the
    /// samples may still become durable once the WAL recovers, so a retry succeeds (as silent
    /// same-bits duplicates where they were kept). Cancelling the future after the commit step
    /// leaves the samples applied and queued for the WAL, like a timed-out request.
    pub async fn append<B: AppendBatch + ?Sized>(
        &self,
        batch: &B,
    ) -> Result<AppendStats, AppendError> {
        self.append_limited(batch, None).await
    }

    /// [`Db::append`] with a head series limit: when the series this call would create would
    /// take the head past `max_series`, nothing is appended and [`AppendError::SeriesLimit`] is
    /// returned. Calls creating no series always pass. Limited calls that create series do so one
    /// at a time, so concurrent calls cannot overshoot the limit together.
    pub async fn append_limited<B: AppendBatch + ?Sized>(
        &self,
        batch: &B,
        max_series: Option<u64>,
    ) -> Result<AppendStats, AppendError> {
        let max_t = now_ms().saturating_add(self.opts.too_far_in_future_ms);
        if !self.head.initialized() {
            // Prometheus initAppender: the first appendable timestamp seeds the head's range.
            let first = (0..batch.len())
                .flat_map(|i| batch.samples(i))
                .map(|s| s.timestamp)
                .find(|&t| t <= max_t && t > i64::MIN);
            if let Some(t) = first {
                self.head.init_time(t);
            }
        }
        let min_valid = self.head.appendable_min_valid_time();

        let mut stats = AppendStats::default();
        let mut first_err = None;
        let mut packed = String::with_capacity(256);
        let mut resolved = Vec::with_capacity(batch.len());
        // Held while this call creates series under a limit.
        let creating = match max_series {
            Some(limit) => self.check_series_limit(batch, min_valid, max_t, limit)?,
            None => None,
        };
        for idx in 0..batch.len() {
            let samples = batch.samples(idx);
            if samples.is_empty() {
                continue;
            }
            let pairs = batch.labels(idx);
            let in_window = |t: i64| t >= min_valid && t <= max_t;
            if !samples.iter().any(|x| in_window(x.timestamp)) {
                // Like Prometheus, do not create a series none of whose samples can be stored.
                for x in samples {
                    let r = if x.timestamp > max_t {
                        Rejection::TooFarInFuture
                    } else {
                        Rejection::OutOfBounds
                    };
                    stats.count(idx, r);
                    if first_err.is_none() {
                        let labels = Labels::from_sorted(pairs.clone());
                        first_err = Some(format!(
                            "{r} for series {labels} at timestamp {}",
                            x.timestamp
                        ));
                    }
                }
                continue;
            }
            pack_pairs(pairs, &mut packed);
            let (ms, created) = self.head.get_or_create(packed_hash(&packed), &packed);
            stats.series_created += u64::from(created);
            resolved.push((idx, ms, samples));
        }
        drop(creating);

        let target = self.commit(&resolved, min_valid, max_t, &mut stats, &mut first_err)?;
        self.log.wait_durable(target).await?;

        if let Some(first) = first_err {
            // Out-of-window series are counted before the others: order by index.
            stats.rejected_series.sort_unstable();
            let message = format!(
                "{first}; {} of {} samples rejected (out of order {}, duplicate {}, out of bounds {}, too far in the future {})",
                stats.rejected(),
                stats.rejected() + stats.samples_appended,
                stats.out_of_order,
                stats.duplicate,
                stats.out_of_bounds,
                stats.too_far_in_future
            );
            return Err(AppendError::Conflict { stats, message });
        }
        Ok(stats)
    }

    /// Series of `batch` not in the head that `append` would create (those with a sample in
    /// `[min_valid, max_t]`).
    fn count_new_series<B: AppendBatch + ?Sized>(
        &self,
        batch: &B,
        min_valid: i64,
        max_t: i64,
        packed: &mut String,
    ) -> u64 {
        // Hashes of the new series, so one sent twice in a request counts once.
        let mut new: Vec<u64> = Vec::new();
        for i in 0..batch.len() {
            let in_window = |t: i64| t >= min_valid && t <= max_t;
            if !batch.samples(i).iter().any(|x| in_window(x.timestamp)) {
                continue;
            }
            pack_pairs(batch.labels(i), packed);
            let hash = packed_hash(packed);
            if !self.head.contains(hash, packed) {
                new.push(hash);
            }
        }
        new.sort_unstable();
        new.dedup();
        new.len() as u64
    }

    /// Refuses a call whose new series would take the head past `limit`; when it creates series
    /// within the limit, returns the guard serializing limited creators (recounted under it).
    fn check_series_limit<B: AppendBatch + ?Sized>(
        &self,
        batch: &B,
        min_valid: i64,
        max_t: i64,
        limit: u64,
    ) -> Result<Option<parking_lot::MutexGuard<'_, ()>>, AppendError> {
        let mut packed = String::with_capacity(256);
        if self.count_new_series(batch, min_valid, max_t, &mut packed) == 0 {
            return Ok(None);
        }
        let guard = self.create_lock.lock();
        let new_series = self.count_new_series(batch, min_valid, max_t, &mut packed);
        let head_series = self.head.num_series() as u64;
        if new_series > 0 && head_series + new_series > limit {
            return Err(AppendError::SeriesLimit {
                head_series,
                new_series,
                limit,
            });
        }
        Ok(Some(guard))
    }

    /// Applies samples to the head and queues their WAL records, all under the commit lock.
    /// Returns the sequence the caller must see synced.
    fn commit(
        &self,
        resolved: &[(usize, Arc<MemSeries>, &[Sample])],
        min_valid: i64,
        max_t: i64,
        stats: &mut AppendStats,
        first_err: &mut Option<String>,
    ) -> Result<Seq, AppendError> {
        let mut c = self.log.begin()?;
        // A cut raises the floor under this lock before persisting a range, so a request that
        // computed its window earlier cannot slip a sample into a range already written.
        let min_valid = min_valid.max(self.head.min_valid_time());
        let mut accepted = self.accepted.lock();
        accepted.clear();
        let mut new_series: Vec<Arc<MemSeries>> = Vec::new();
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        for (idx, s, samples) in resolved {
            let mut s = s;
            let mut fresh: Arc<MemSeries>;
            let mut d = s.lock();
            while d.removed {
                // Garbage-collected by a head truncation after this request resolved it.
                drop(d);
                let packed = s.labels.packed();
                fresh = self.head.get_or_create(packed_hash(packed), packed).0;
                s = &fresh;
                d = s.lock();
            }
            if !d.logged {
                d.logged = true;
                new_series.push(s.clone());
            }
            for smp in samples.iter() {
                let (t, v) = (smp.timestamp, smp.value);
                match self.head.append_sample(&mut d, t, v, min_valid, max_t) {
                    Ok(true) => {
                        accepted.push(RefSample {
                            r#ref: s.r#ref,
                            t,
                            v,
                        });
                        mint = mint.min(t);
                        maxt = maxt.max(t);
                    }
                    Ok(false) => {}
                    Err(r) => {
                        stats.count(*idx, r);
                        if first_err.is_none() {
                            *first_err =
                                Some(format!("{r} for series {} at timestamp {t}", s.labels));
                        }
                    }
                }
            }
        }
        stats.samples_appended = accepted.len() as u64;
        if !accepted.is_empty() {
            self.head.update_min_max_time(mint, maxt);
        }
        if !new_series.is_empty() {
            let mut buf = c.buffer();
            encode_series(
                new_series.iter().map(|s| (s.r#ref, s.labels.iter())),
                &mut buf,
            );
            c.enqueue(buf);
        }
        if !accepted.is_empty() {
            let mut buf = c.buffer();
            encode_samples(&accepted, &mut buf);
            c.enqueue(buf);
        }
        drop(accepted);
        Ok(c.finish())
    }
}
