//! Uploads a tenant's finished TSDB blocks to object storage, with the Thanos shipper's semantics.
//!
//! A tenant directory holds `wal/`, finished blocks `<ULID>/` and the state file
//! `thanos.shipper.json` (`{"version": 1, "uploaded": [ULID…]}`, Thanos' format). [`Shipper::sync`]
//! uploads every block not listed there, oldest (by `minTime`) first, as Thanos does:
//!
//! - like Thanos, blocks without samples and compacted blocks (`compaction.level > 1`) are skipped,
//!   and a block whose `meta.json` is already in the bucket counts as uploaded (an upload finished
//!   but not recorded before a crash is never uploaded twice);
//! - a block's files go up as `<prefix>/<ULID>/chunks/…` (sorted), then `index`, then `meta.json`
//!   last, so a block in the bucket without `meta.json` is a partial upload that readers ignore
//!   and the next sync redoes. `tombstones` is not uploaded (Thanos does not either). The uploaded
//!   `meta.json` gets Thanos' `upload_time`, `files` and `segment_files`;
//! - each uploaded block is recorded in the state file at once (tmp file, fsync, rename, dir fsync);
//! - the first failing upload ends the sync with its error: later blocks wait for the next sync
//!   (Thanos' default, which keeps uploads in time order).
//!
//! [`run`] keeps every tenant shipped, retrying a failing tenant with exponential backoff;
//! [`sync_all_until_done`] is for shutdown. [`expired_uploaded_blocks`] tells the TSDB which
//! blocks it may delete.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use object_store::buffered::BufWriter;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::objstore::Bucket;
use crate::tsdb::block::{list_block_dirs, BlockError, MetaFile, MetaFileEntry, Ulid};

/// Name of the shipper's state file in a tenant directory (Thanos' `DefaultMetaFilename`).
pub const STATE_FILE: &str = "thanos.shipper.json";
/// First retry delay of a failing tenant.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay of a failing tenant.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Bytes read from a block file at a time.
const READ_SIZE: usize = 1024 * 1024;
/// Parts of one multipart upload in flight at once.
const UPLOAD_CONCURRENCY: usize = 2;

/// Errors from shipping blocks.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// A local file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// File or directory concerned.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A block's meta.json is unreadable or unfit for upload.
    #[error("block {}: {msg}", path.display())]
    Meta {
        /// The block directory.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The state file is not valid (`thanos.shipper.json`).
    #[error("{}: {msg}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An object store request failed.
    #[error("object storage, {op} {key}: {source}")]
    Store {
        /// What was being done: "upload", "check exists".
        op: &'static str,
        /// Object key.
        key: String,
        /// Underlying error.
        #[source]
        source: object_store::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ShipError + '_ {
    move |source| ShipError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What one [`Shipper::sync`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    /// Blocks uploaded.
    pub uploaded: usize,
    /// Blocks found already in the bucket (`meta.json` present) and recorded without upload.
    pub already_in_bucket: usize,
    /// Bytes uploaded.
    pub bytes: u64,
}

/// `thanos.shipper.json`.
#[derive(Serialize, Deserialize)]
struct StateJson {
    version: i64,
    /// Go writes a nil slice as `null`.
    uploaded: Option<Vec<String>>,
}

/// Reads the state file: `Ok(None)` if there is none.
fn read_state(dir: &Path) -> Result<Option<Vec<Ulid>>, ShipError> {
    let path = dir.join(STATE_FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let bad = |msg: String| ShipError::State {
        path: path.clone(),
        msg,
    };
    let s: StateJson = serde_json::from_slice(&data).map_err(|e| bad(e.to_string()))?;
    if s.version != 1 {
        return Err(bad(format!("unexpected meta file version {}", s.version)));
    }
    s.uploaded
        .unwrap_or_default()
        .iter()
        .map(|u| u.parse::<Ulid>().map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Writes the state file as Thanos does (tab-indented JSON, trailing newline), atomically and durably.
fn write_state(dir: &Path, uploaded: &[Ulid]) -> Result<(), ShipError> {
    let state = StateJson {
        version: 1,
        uploaded: (!uploaded.is_empty()).then(|| uploaded.iter().map(Ulid::to_string).collect()),
    };
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    state.serialize(&mut ser).map_err(|e| ShipError::State {
        path: dir.join(STATE_FILE),
        msg: e.to_string(),
    })?;
    out.push(b'\n');
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&out)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// What the shipper needs from a block's meta.json.
#[derive(Debug, Clone)]
struct LocalBlock {
    ulid: Ulid,
    dir: PathBuf,
    min_time: i64,
    max_time: i64,
    level: i64,
    num_samples: u64,
}

impl LocalBlock {
    /// Whether the shipper uploads this block at all (Thanos skips empty and compacted blocks).
    fn shippable(&self) -> bool {
        self.num_samples > 0 && self.level <= 1
    }
}

/// A block's meta.json: `Ok(None)` if it is gone (deleted by retention since it was listed).
fn read_block_meta(dir: &Path) -> Result<Option<MetaFile>, ShipError> {
    match MetaFile::read(dir) {
        Ok(m) => Ok(Some(m)),
        Err(BlockError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(BlockError::Io { path, source }) => Err(ShipError::Io { path, source }),
        Err(e) => Err(ShipError::Meta {
            path: dir.to_path_buf(),
            msg: format!("meta.json: {e}"),
        }),
    }
}

/// The finished blocks of a tenant directory (subdirectories named by a ULID with a meta.json),
/// oldest `minTime` first (ties by ULID).
fn local_blocks(dir: &Path) -> Result<Vec<LocalBlock>, ShipError> {
    let mut blocks = Vec::new();
    for (ulid, bdir) in list_block_dirs(dir).map_err(io_err(dir))? {
        let Some(meta) = read_block_meta(&bdir)? else {
            continue;
        };
        blocks.push(LocalBlock {
            ulid,
            dir: bdir,
            min_time: meta.min_time,
            max_time: meta.max_time,
            level: i64::from(meta.compaction.level),
            num_samples: meta.stats.num_samples,
        });
    }
    blocks.sort_by_key(|b| (b.min_time, b.ulid));
    Ok(blocks)
}

/// The blocks recorded as uploaded in `tenant_dir`'s state file (empty if there is none).
pub fn uploaded(tenant_dir: &Path) -> Result<BTreeSet<Ulid>, ShipError> {
    Ok(read_state(tenant_dir)?
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// Local blocks the shipper would upload but has not yet, oldest first.
pub fn pending_blocks(tenant_dir: &Path) -> Result<Vec<Ulid>, ShipError> {
    let done = uploaded(tenant_dir)?;
    Ok(local_blocks(tenant_dir)?
        .into_iter()
        .filter(|b| b.shippable() && !done.contains(&b.ulid))
        .map(|b| b.ulid)
        .collect())
}

/// Uploaded local blocks whose data is older than `retention`: `maxTime < now_ms - retention`.
/// A `retention` of 0 keeps everything. The caller deletes them; a block not recorded as
/// uploaded is never listed (an unreadable state file is an error, so nothing gets deleted).
pub fn expired_uploaded_blocks(
    tenant_dir: &Path,
    retention: Duration,
    now_ms: i64,
) -> Result<Vec<Ulid>, ShipError> {
    if retention.is_zero() {
        return Ok(Vec::new());
    }
    let done = uploaded(tenant_dir)?;
    if done.is_empty() {
        return Ok(Vec::new());
    }
    let cutoff = now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    Ok(local_blocks(tenant_dir)?
        .into_iter()
        .filter(|b| done.contains(&b.ulid) && b.max_time < cutoff)
        .map(|b| b.ulid)
        .collect())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Go's `time.Time` JSON form (RFC 3339 with nanoseconds, trailing zeros trimmed) of a UTC time.
fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut s = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// The files of a block to upload, in upload order (chunk segments sorted, then `index`), with
/// their sizes; `meta.json` comes after them and is not listed.
fn block_files(bdir: &Path) -> Result<Vec<(String, u64)>, ShipError> {
    let cdir = bdir.join("chunks");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&cdir).map_err(io_err(&cdir))? {
        let entry = entry.map_err(io_err(&cdir))?;
        let md = entry.metadata().map_err(io_err(&entry.path()))?;
        if !md.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        files.push((format!("chunks/{name}"), md.len()));
    }
    files.sort();
    let index = bdir.join("index");
    let md = std::fs::metadata(&index).map_err(io_err(&index))?;
    files.push(("index".to_string(), md.len()));
    Ok(files)
}

/// Deletes object_store FILESYSTEM staging files (`<name>#<digits>`) under `dir` (missing: none);
/// returns how many.
fn remove_staging_files(dir: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            removed += remove_staging_files(&path)?;
            continue;
        }
        let name = entry.file_name();
        let staging = name
            .to_str()
            .and_then(|n| n.rsplit_once('#'))
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if staging {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The meta.json to upload: Thanos' `files` (from disk), `segment_files` and `upload_time` set.
fn upload_meta(bdir: &Path, files: &[(String, u64)]) -> Result<Vec<u8>, ShipError> {
    let path = bdir.join("meta.json");
    let bad = |msg: String| ShipError::Meta {
        path: bdir.to_path_buf(),
        msg,
    };
    let Some(mut meta) = read_block_meta(bdir)? else {
        return Err(io_err(&path)(std::io::ErrorKind::NotFound.into()));
    };
    let Some(thanos) = meta.thanos.as_mut().filter(|t| !t.labels.is_empty()) else {
        return Err(bad(
            "empty external labels are not allowed for Thanos block (meta.json has no thanos.labels)"
                .into(),
        ));
    };
    let mut listed: Vec<MetaFileEntry> = files
        .iter()
        .map(|(rel, size)| MetaFileEntry::new(rel.as_str(), *size))
        .collect();
    listed.push(MetaFileEntry::new("meta.json", 0));
    thanos.files = Some(listed);
    let segments: Vec<String> = files
        .iter()
        .filter_map(|(rel, _)| rel.strip_prefix("chunks/").map(str::to_string))
        .collect();
    thanos.segment_files = (!segments.is_empty()).then_some(segments);
    thanos.upload_time = Some(rfc3339_nano(SystemTime::now()));
    meta.encode()
        .map_err(|e| bad(format!("encode meta.json: {e}")))
}

/// Ships the blocks of one tenant directory to a bucket.
#[derive(Debug, Clone)]
pub struct Shipper {
    tenant: String,
    dir: PathBuf,
    bucket: Bucket,
}

impl Shipper {
    /// A shipper for `tenant`'s TSDB directory `dir`. Run one sync of a directory at a time.
    pub fn new(tenant: impl Into<String>, dir: impl Into<PathBuf>, bucket: Bucket) -> Shipper {
        Shipper {
            tenant: tenant.into(),
            dir: dir.into(),
            bucket,
        }
    }

    /// The tenant directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Uploads every local block not uploaded yet (see the module docs); stops at the first
    /// failing upload and returns its error (the block is retried by the next sync).
    pub async fn sync(&self) -> Result<SyncStats, ShipError> {
        let result = self.sync_inner().await;
        if result.is_err() {
            metrics::counter!("ringest_shipper_upload_failures_total", "tenant" => self.tenant.clone())
                .increment(1);
        }
        self.update_pending_gauge().await;
        result
    }

    async fn sync_inner(&self) -> Result<SyncStats, ShipError> {
        let dir = self.dir.clone();
        let tenant = self.tenant.clone();
        let (blocks, had) = blocking(move || {
            let had = match read_state(&dir) {
                Ok(Some(u)) => u,
                Ok(None) => Vec::new(),
                Err(e) => {
                    tracing::error!(%tenant, error = %e,
                        "failed to read shipper state file, treating it as empty (blocks already in the bucket are detected)");
                    Vec::new()
                }
            };
            Ok((local_blocks(&dir)?, had))
        })
        .await?;
        let had: BTreeSet<Ulid> = had.into_iter().collect();
        // Recorded blocks that still exist locally, plus the ones this sync uploads.
        let mut recorded: BTreeSet<Ulid> = blocks
            .iter()
            .filter(|b| had.contains(&b.ulid))
            .map(|b| b.ulid)
            .collect();
        let order: Vec<Ulid> = blocks.iter().map(|b| b.ulid).collect();
        let mut stats = SyncStats::default();
        let mut dirty = recorded.len() != had.len();
        for b in &blocks {
            if recorded.contains(&b.ulid) {
                continue;
            }
            if b.num_samples == 0 {
                tracing::debug!(tenant = %self.tenant, block = %b.ulid, "ignoring empty block");
                continue;
            }
            if b.level > 1 {
                continue;
            }
            let meta_key = self.bucket.key(&format!("{}/meta.json", b.ulid));
            if self.exists(&meta_key).await? {
                tracing::info!(tenant = %self.tenant, block = %b.ulid,
                    "block already in the bucket (meta.json present), recording it as uploaded");
                stats.already_in_bucket += 1;
            } else {
                stats.bytes += self.upload(b).await?;
                stats.uploaded += 1;
                crate::failpoint::hit("ship.after_meta");
            }
            recorded.insert(b.ulid);
            self.save(&order, &recorded).await?;
            dirty = false;
        }
        if dirty {
            self.save(&order, &recorded).await?;
        }
        Ok(stats)
    }

    async fn save(&self, order: &[Ulid], recorded: &BTreeSet<Ulid>) -> Result<(), ShipError> {
        let list: Vec<Ulid> = order
            .iter()
            .copied()
            .filter(|u| recorded.contains(u))
            .collect();
        let dir = self.dir.clone();
        blocking(move || write_state(&dir, &list)).await
    }

    async fn exists(&self, key: &object_store::path::Path) -> Result<bool, ShipError> {
        match self.bucket.store.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(ShipError::Store {
                op: "check exists",
                key: key.to_string(),
                source,
            }),
        }
    }

    /// Uploads one block, meta.json last; returns the bytes uploaded.
    async fn upload(&self, b: &LocalBlock) -> Result<u64, ShipError> {
        let start = Instant::now();
        let bdir = b.dir.clone();
        let (files, meta) = blocking(move || {
            let files = block_files(&bdir)?;
            let meta = upload_meta(&bdir, &files)?;
            Ok((files, meta))
        })
        .await?;
        if let Some(root) = &self.bucket.local_dir {
            // object_store's FILESYSTEM puts write `<file>#<n>` and rename it over `<file>`; a
            // crash mid-put leaves the staging file behind, and nothing else would remove it.
            let dir = root
                .join(self.bucket.prefix.as_ref())
                .join(b.ulid.to_string());
            let removed = blocking(move || {
                remove_staging_files(&dir).map_err(|e| ShipError::Io {
                    path: dir.clone(),
                    source: e,
                })
            })
            .await?;
            if removed > 0 {
                tracing::warn!(tenant = %self.tenant, block = %b.ulid, removed,
                    "removed staging files an interrupted upload left in the bucket");
            }
        }
        let mut bytes = 0u64;
        for (rel, _) in &files {
            let key = self.bucket.key(&format!("{}/{rel}", b.ulid));
            bytes += self.upload_file(&b.dir.join(rel), &key).await?;
        }
        crate::failpoint::hit("ship.before_meta");
        let key = self.bucket.key(&format!("{}/meta.json", b.ulid));
        bytes += meta.len() as u64;
        self.bucket
            .store
            .put(&key, meta.into())
            .await
            .map_err(|source| ShipError::Store {
                op: "upload",
                key: key.to_string(),
                source,
            })?;
        let secs = start.elapsed().as_secs_f64();
        let tenant = self.tenant.clone();
        metrics::counter!("ringest_shipper_uploads_total", "tenant" => tenant.clone()).increment(1);
        metrics::counter!("ringest_shipper_uploaded_bytes_total", "tenant" => tenant)
            .increment(bytes);
        metrics::histogram!("ringest_shipper_upload_duration_seconds").record(secs);
        tracing::info!(tenant = %self.tenant, block = %b.ulid, bytes, seconds = secs,
            bucket = %self.bucket.description, "uploaded block");
        Ok(bytes)
    }

    /// Streams one file to `key` (multipart past the bucket's part size); returns its size.
    async fn upload_file(
        &self,
        path: &Path,
        key: &object_store::path::Path,
    ) -> Result<u64, ShipError> {
        let mut f = tokio::fs::File::open(path).await.map_err(io_err(path))?;
        let store: Arc<dyn ObjectStore> = Arc::clone(&self.bucket.store);
        let mut w = BufWriter::with_capacity(store, key.clone(), self.bucket.part_size)
            .with_max_concurrency(UPLOAD_CONCURRENCY);
        let store_err = |source| ShipError::Store {
            op: "upload",
            key: key.to_string(),
            source,
        };
        let mut total = 0u64;
        let written: Result<(), ShipError> = async {
            loop {
                let mut buf = BytesMut::with_capacity(READ_SIZE);
                while buf.len() < READ_SIZE {
                    if f.read_buf(&mut buf).await.map_err(io_err(path))? == 0 {
                        break;
                    }
                }
                if buf.is_empty() {
                    return Ok(());
                }
                total += buf.len() as u64;
                w.put(buf.freeze()).await.map_err(store_err)?;
            }
        }
        .await;
        if let Err(e) = written {
            // Abandons a multipart upload already started (a single put never started).
            let _ = w.abort().await;
            return Err(e);
        }
        w.shutdown().await.map_err(|e| ShipError::Store {
            op: "upload",
            key: key.to_string(),
            source: object_store::Error::Generic {
                store: "BufWriter",
                source: Box::new(e),
            },
        })?;
        Ok(total)
    }

    /// Sets `ringest_shipper_oldest_pending_block_age_seconds{tenant}`.
    async fn update_pending_gauge(&self) {
        let dir = self.dir.clone();
        let pending = blocking(move || pending_blocks(&dir)).await;
        let age = match pending {
            Ok(p) => p
                .iter()
                .map(|u| u.timestamp_ms() as i64)
                .min()
                .map_or(0.0, |ts| (now_ms() - ts).max(0) as f64 / 1000.0),
            Err(_) => return,
        };
        metrics::gauge!("ringest_shipper_oldest_pending_block_age_seconds", "tenant" => self.tenant.clone())
            .set(age);
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ShipError> + Send + 'static,
) -> Result<T, ShipError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Retry state of a failing tenant.
struct Backoff {
    delay: Duration,
    next: Instant,
}

fn bump(backoff: Option<Backoff>, now: Instant) -> Backoff {
    let delay = backoff.map_or(BACKOFF_MIN, |b| (b.delay * 2).min(BACKOFF_MAX));
    Backoff {
        delay,
        next: now + delay,
    }
}

/// Ships every tenant until `stop` turns true: syncs all tenants (from `tenant_dirs()`, called each
/// round), then waits for `wake` (use `notify_one`, e.g. after a block was written), `interval`
/// or `stop`. A tenant whose sync fails is retried after 1 s, doubling up to 5 min, reset by a
/// success; the other tenants are not held up. A sync in progress when `stop` turns true is
/// abandoned (safe: `meta.json` goes last); follow with [`sync_all_until_done`].
pub async fn run(
    bucket: Bucket,
    tenant_dirs: impl Fn() -> Vec<(String, PathBuf)> + Send + 'static,
    wake: Arc<tokio::sync::Notify>,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tracing::info!(bucket = %bucket.description, "block shipper started");
    let mut backoff: HashMap<String, Backoff> = HashMap::new();
    'rounds: loop {
        if *stop.borrow() {
            break;
        }
        let tenants = tenant_dirs();
        backoff.retain(|t, _| tenants.iter().any(|(n, _)| n == t));
        for (tenant, dir) in tenants {
            if backoff
                .get(&tenant)
                .is_some_and(|b| b.next > Instant::now())
            {
                continue;
            }
            let shipper = Shipper::new(tenant.clone(), dir, bucket.clone());
            let result = tokio::select! {
                r = shipper.sync() => r,
                // Err: the sender is gone, which also means stop.
                _ = stop.wait_for(|s| *s) => break 'rounds,
            };
            match result {
                Ok(_) => {
                    backoff.remove(&tenant);
                }
                Err(e) => {
                    let b = bump(backoff.remove(&tenant), Instant::now());
                    tracing::warn!(%tenant, error = %e, retry_in = ?b.delay, "block shipping failed");
                    backoff.insert(tenant, b);
                }
            }
        }
        let now = Instant::now();
        let wait = backoff
            .values()
            .map(|b| b.next.saturating_duration_since(now))
            .fold(interval, Duration::min);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    tracing::info!("block shipper stopped");
}

/// Syncs every tenant, retrying failures with backoff (1 s doubling, at most until `deadline`),
/// for shutdown. Returns the tenants with blocks still not uploaded (oldest first), each logged
/// as a warning; an empty result means everything is shipped.
pub async fn sync_all_until_done(
    bucket: &Bucket,
    tenant_dirs: Vec<(String, PathBuf)>,
    deadline: Instant,
) -> Vec<(String, Vec<Ulid>)> {
    let mut todo: Vec<(String, PathBuf)> = tenant_dirs;
    let mut delay = BACKOFF_MIN;
    loop {
        let mut failed = Vec::new();
        for (tenant, dir) in todo {
            let shipper = Shipper::new(tenant.clone(), dir.clone(), bucket.clone());
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, shipper.sync()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(%tenant, error = %e, "block shipping failed at shutdown");
                    failed.push((tenant, dir));
                }
                Err(_) => {
                    tracing::warn!(%tenant, "block shipping timed out at shutdown");
                    failed.push((tenant, dir));
                }
            }
        }
        todo = failed;
        let now = Instant::now();
        if todo.is_empty() || now + delay >= deadline {
            break;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(BACKOFF_MAX);
    }
    let mut pending = Vec::new();
    for (tenant, dir) in todo {
        let d = dir.clone();
        let blocks = blocking(move || pending_blocks(&d)).await;
        match blocks {
            Ok(b) if b.is_empty() => {}
            Ok(b) => {
                let list: Vec<String> = b.iter().map(Ulid::to_string).collect();
                tracing::warn!(%tenant, blocks = ?list, dir = %dir.display(),
                    "blocks not uploaded at shutdown; they will be shipped at the next start");
                pending.push((tenant, b));
            }
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "cannot list blocks not uploaded at shutdown");
                pending.push((tenant, Vec::new()));
            }
        }
    }
    pending
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::objstore::local_bucket;
    use crate::tsdb::block::{write_block, BlockSeries, ChunkMeta, ThanosMeta};
    use crate::tsdb::chunkenc::XorChunk;
    use crate::tsdb::labels::Labels;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::path::Path as ObjPath;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };
    use parking_lot::Mutex;
    use serde_json::Value;
    use std::collections::BTreeMap;

    const RANGE: i64 = 7_200_000;

    /// Writes a level-1 block `[mint, mint + 2h)` with `n` series of 100 samples into `dir`.
    pub(crate) fn make_block(dir: &Path, mint: i64, n: usize) -> Ulid {
        let labels: Vec<Labels> = (0..n)
            .map(|i| {
                let inst = format!("host-{i}");
                Labels::from_pairs([("__name__", "up"), ("instance", inst.as_str())])
            })
            .collect();
        let chunks: Vec<XorChunk> = (0..n)
            .map(|i| {
                let mut c = XorChunk::new();
                for j in 0..100 {
                    c.append(mint + j * 15_000, (i * 1000 + j as usize) as f64);
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
            labels: BTreeMap::from([("tenant_id".to_string(), "team-a".to_string())]),
            source: "receive".into(),
        };
        write_block(dir, mint, mint + RANGE, series, Some(&th)).unwrap()
    }

    /// An in-memory store that records puts in order and fails puts whose key contains a string.
    #[derive(Debug, Default)]
    pub(crate) struct Recording {
        inner: InMemory,
        pub(crate) puts: Mutex<Vec<String>>,
        pub(crate) fail: Mutex<Option<String>>,
    }

    impl std::fmt::Display for Recording {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Recording")
        }
    }

    impl Recording {
        fn check(&self, location: &ObjPath) -> object_store::Result<()> {
            if let Some(f) = self.fail.lock().as_deref() {
                if location.as_ref().contains(f) {
                    return Err(object_store::Error::Generic {
                        store: "Recording",
                        source: "injected failure".into(),
                    });
                }
            }
            self.puts.lock().push(location.to_string());
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Recording {
        async fn put_opts(
            &self,
            location: &ObjPath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.check(location)?;
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &ObjPath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.check(location)?;
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &ObjPath,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<ObjPath>>,
        ) -> BoxStream<'static, object_store::Result<ObjPath>> {
            self.inner.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&ObjPath>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&ObjPath>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &ObjPath,
            to: &ObjPath,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn bucket_of(store: Arc<Recording>, prefix: &str) -> Bucket {
        Bucket {
            store,
            prefix: ObjPath::parse(prefix).unwrap(),
            kind: "TEST",
            description: "recording".into(),
            part_size: crate::objstore::DEFAULT_PART_SIZE,
            warnings: Vec::new(),
            local_dir: None,
        }
    }

    async fn get(store: &Recording, key: &str) -> Vec<u8> {
        store
            .get(&ObjPath::parse(key).unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn state_text(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(STATE_FILE)).unwrap()
    }

    #[test]
    fn uploads_blocks_in_order_meta_last_and_records_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir(dir.join("wal")).unwrap();
        let base = 1_700_000_000_000 / RANGE * RANGE;
        // Written newest first: the shipper orders by minTime.
        let b2 = make_block(dir, base + RANGE, 3);
        let b1 = make_block(dir, base, 2);
        std::fs::create_dir(dir.join(format!("{}.tmp-for-creation", Ulid::generate()))).unwrap();
        std::fs::create_dir(dir.join("not-a-block")).unwrap();
        let store = Arc::new(Recording::default());
        let bucket = bucket_of(store.clone(), "pre/fix");
        let shipper = Shipper::new("team-a", dir, bucket);
        let rt = rt();
        let stats = rt.block_on(shipper.sync()).unwrap();
        assert_eq!(stats.uploaded, 2);
        assert_eq!(stats.already_in_bucket, 0);
        let want: Vec<String> = [b1, b2]
            .iter()
            .flat_map(|u| {
                ["chunks/000001", "index", "meta.json"].map(|f| format!("pre/fix/{u}/{f}"))
            })
            .collect();
        assert_eq!(*store.puts.lock(), want);
        let local_bytes: u64 = [b1, b2]
            .iter()
            .flat_map(|u| ["chunks/000001", "index"].map(|f| dir.join(u.to_string()).join(f)))
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(
            stats.bytes > local_bytes,
            "{} vs {local_bytes}",
            stats.bytes
        );

        for u in [b1, b2] {
            let bdir = dir.join(u.to_string());
            for f in ["chunks/000001", "index"] {
                assert_eq!(
                    rt.block_on(get(&store, &format!("pre/fix/{u}/{f}"))),
                    std::fs::read(bdir.join(f)).unwrap(),
                    "{u}/{f}"
                );
            }
            // meta.json: the local one plus upload_time (files and segment_files as computed).
            let up = rt.block_on(get(&store, &format!("pre/fix/{u}/meta.json")));
            assert!(
                up.ends_with(b"\n\t}\n}\n"),
                "{}",
                String::from_utf8_lossy(&up)
            );
            let mut up: Value = serde_json::from_slice(&up).unwrap();
            let t = up["thanos"]
                .as_object_mut()
                .unwrap()
                .remove("upload_time")
                .unwrap();
            assert!(t.as_str().unwrap().ends_with('Z'), "{t}");
            let local: Value =
                serde_json::from_slice(&std::fs::read(bdir.join("meta.json")).unwrap()).unwrap();
            assert_eq!(up, local);
            assert!(!rt
                .block_on(shipper.exists(&shipper.bucket.key(&format!("{u}/tombstones"))))
                .unwrap());
        }
        assert_eq!(
            state_text(dir),
            format!(
                "{{\n\t\"version\": 1,\n\t\"uploaded\": [\n\t\t\"{b1}\",\n\t\t\"{b2}\"\n\t]\n}}\n"
            )
        );
        assert_eq!(uploaded(dir).unwrap(), BTreeSet::from([b1, b2]));
        assert!(pending_blocks(dir).unwrap().is_empty());

        // Nothing new: nothing uploaded.
        store.puts.lock().clear();
        let stats = rt.block_on(shipper.sync()).unwrap();
        assert_eq!(stats, SyncStats::default());
        assert!(store.puts.lock().is_empty());

        // A recorded block deleted locally is dropped from the state file (as Thanos does).
        std::fs::remove_dir_all(dir.join(b1.to_string())).unwrap();
        rt.block_on(shipper.sync()).unwrap();
        assert_eq!(uploaded(dir).unwrap(), BTreeSet::from([b2]));
        assert!(store.puts.lock().is_empty());
    }

    #[test]
    fn a_failed_upload_is_not_recorded_and_is_retried() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let base = 1_700_000_000_000 / RANGE * RANGE;
        let b1 = make_block(dir, base, 2);
        let b2 = make_block(dir, base + RANGE, 2);
        let store = Arc::new(Recording::default());
        *store.fail.lock() = Some(format!("{b2}/index"));
        let shipper = Shipper::new("t", dir, bucket_of(store.clone(), ""));
        let rt = rt();
        let e = rt.block_on(shipper.sync()).unwrap_err();
        assert!(e.to_string().contains("injected failure"), "{e}");
        assert!(e.to_string().contains(&format!("{b2}/index")), "{e}");
        // b1 recorded at once; b2 not, and its meta.json never went up.
        assert_eq!(uploaded(dir).unwrap(), BTreeSet::from([b1]));
        assert_eq!(pending_blocks(dir).unwrap(), vec![b2]);
        assert!(!rt
            .block_on(shipper.exists(&ObjPath::parse(format!("{b2}/meta.json")).unwrap()))
            .unwrap());

        *store.fail.lock() = None;
        store.puts.lock().clear();
        let stats = rt.block_on(shipper.sync()).unwrap();
        assert_eq!(stats.uploaded, 1);
        assert_eq!(
            *store.puts.lock(),
            vec![
                format!("{b2}/chunks/000001"),
                format!("{b2}/index"),
                format!("{b2}/meta.json")
            ]
        );
        assert_eq!(uploaded(dir).unwrap(), BTreeSet::from([b1, b2]));
    }

    #[test]
    fn a_block_already_in_the_bucket_is_recorded_without_upload() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let b1 = make_block(dir, 0, 1);
        let store = Arc::new(Recording::default());
        let rt = rt();
        rt.block_on(store.inner.put(
            &ObjPath::parse(format!("{b1}/meta.json")).unwrap(),
            "{}".into(),
        ))
        .unwrap();
        let shipper = Shipper::new("t", dir, bucket_of(store.clone(), ""));
        let stats = rt.block_on(shipper.sync()).unwrap();
        assert_eq!(stats.uploaded, 0);
        assert_eq!(stats.already_in_bucket, 1);
        assert!(store.puts.lock().is_empty());
        assert_eq!(uploaded(dir).unwrap(), BTreeSet::from([b1]));
    }

    #[test]
    fn compacted_blocks_unlabelled_blocks_and_corrupt_state() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let b1 = make_block(dir, 0, 1);
        let b2 = make_block(dir, RANGE, 1);
        // b1 is "compacted": skipped.
        let m1 = dir.join(b1.to_string()).join("meta.json");
        let text = std::fs::read_to_string(&m1).unwrap();
        std::fs::write(&m1, text.replace("\"level\": 1", "\"level\": 2")).unwrap();
        std::fs::write(dir.join(STATE_FILE), "{not json").unwrap();
        assert!(uploaded(dir).is_err());
        assert_eq!(
            expired_uploaded_blocks(dir, Duration::from_secs(1), i64::MAX).map_err(|_| ()),
            Err(())
        );
        let store = Arc::new(Recording::default());
        let shipper = Shipper::new("t", dir, bucket_of(store.clone(), ""));
        let rt = rt();
        let stats = rt.block_on(shipper.sync()).unwrap();
        assert_eq!(stats.uploaded, 1);
        assert_eq!(uploaded(dir).unwrap(), BTreeSet::from([b2]));
        assert!(store
            .puts
            .lock()
            .iter()
            .all(|p| p.starts_with(&b2.to_string())));

        // A block without external labels is refused, like Thanos.
        let b3 = make_block(dir, 2 * RANGE, 1);
        let m3 = dir.join(b3.to_string()).join("meta.json");
        let mut v: Value = serde_json::from_slice(&std::fs::read(&m3).unwrap()).unwrap();
        v["thanos"]["labels"] = serde_json::json!({});
        std::fs::write(&m3, serde_json::to_vec(&v).unwrap()).unwrap();
        let e = rt.block_on(shipper.sync()).unwrap_err();
        assert!(e.to_string().contains("empty external labels"), "{e}");
        assert_eq!(pending_blocks(dir).unwrap(), vec![b3]);
    }

    #[test]
    fn state_file_null_and_versions() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert!(uploaded(dir).unwrap().is_empty());
        std::fs::write(dir.join(STATE_FILE), "{\"version\":1,\"uploaded\":null}").unwrap();
        assert!(uploaded(dir).unwrap().is_empty());
        std::fs::write(dir.join(STATE_FILE), "{\"version\":2,\"uploaded\":[]}").unwrap();
        assert!(uploaded(dir).unwrap_err().to_string().contains("version 2"));
        write_state(dir, &[]).unwrap();
        assert_eq!(
            state_text(dir),
            "{\n\t\"version\": 1,\n\t\"uploaded\": null\n}\n"
        );
        assert!(!dir.join(format!("{STATE_FILE}.tmp")).exists());
    }

    #[test]
    fn expired_blocks_are_uploaded_and_past_retention() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let b1 = make_block(dir, 0, 1);
        let b2 = make_block(dir, RANGE, 1);
        let _b3 = make_block(dir, 2 * RANGE, 1);
        write_state(dir, &[b1, b2]).unwrap();
        let max1 = RANGE;
        let day = Duration::from_secs(86_400);
        let day_ms = 86_400_000;
        assert!(expired_uploaded_blocks(dir, day, max1 + day_ms)
            .unwrap()
            .is_empty());
        assert_eq!(
            expired_uploaded_blocks(dir, day, max1 + day_ms + 1).unwrap(),
            vec![b1]
        );
        // b3 is past retention too but not uploaded.
        assert_eq!(
            expired_uploaded_blocks(dir, day, i64::MAX).unwrap(),
            vec![b1, b2]
        );
        assert!(expired_uploaded_blocks(dir, Duration::ZERO, i64::MAX)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn go_time_format() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20.5Z");
        assert_eq!(
            rfc3339_nano(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339_nano(UNIX_EPOCH + Duration::new(0, 1)),
            "1970-01-01T00:00:00.000000001Z"
        );
    }

    #[test]
    fn large_files_stream_in_parts() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let b1 = make_block(dir, 0, 1);
        // A 7 MiB "index" and a 5 MiB part size: a multipart upload of 2 parts.
        let big: Vec<u8> = (0..7 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join(b1.to_string()).join("index"), &big).unwrap();
        let store = Arc::new(Recording::default());
        let mut bucket = bucket_of(store.clone(), "");
        bucket.part_size = 5 * 1024 * 1024;
        let shipper = Shipper::new("t", dir, bucket);
        let rt = rt();
        rt.block_on(shipper.sync()).unwrap();
        assert_eq!(rt.block_on(get(&store, &format!("{b1}/index"))), big);
    }

    #[test]
    fn run_ships_on_wake_and_retries_failures() {
        let tmp = tempfile::tempdir().unwrap();
        let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&da).unwrap();
        std::fs::create_dir_all(&db).unwrap();
        let store = Arc::new(Recording::default());
        let bucket = bucket_of(store.clone(), "");
        let wake = Arc::new(tokio::sync::Notify::new());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let rt = rt();
        let dirs = vec![("a".to_string(), da.clone()), ("b".to_string(), db.clone())];
        let task = rt.spawn(run(
            bucket.clone(),
            move || dirs.clone(),
            wake.clone(),
            Duration::from_secs(3600),
            stop_rx,
        ));
        let a1 = make_block(&da, 0, 1);
        let b1 = make_block(&db, 0, 1);
        *store.fail.lock() = Some(format!("{b1}/"));
        wake.notify_one();
        let wait = |dir: &Path, u: Ulid| {
            let t = Instant::now();
            while !uploaded(dir).unwrap().contains(&u) {
                assert!(t.elapsed() < Duration::from_secs(20), "{u} not shipped");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        // Tenant a ships although b fails; b is retried (after 1 s) without another wake.
        wait(&da, a1);
        assert!(pending_blocks(&db).unwrap() == vec![b1]);
        *store.fail.lock() = None;
        wait(&db, b1);
        stop_tx.send(true).unwrap();
        rt.block_on(task).unwrap();
    }

    #[test]
    fn sync_all_until_done_reports_what_is_left() {
        let tmp = tempfile::tempdir().unwrap();
        let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
        let a1 = make_block(&da, 0, 1);
        let b1 = make_block(&db, 0, 1);
        let store = Arc::new(Recording::default());
        *store.fail.lock() = Some(format!("{b1}/"));
        let bucket = bucket_of(store.clone(), "");
        let rt = rt();
        let t = Instant::now();
        let left = rt.block_on(sync_all_until_done(
            &bucket,
            vec![("a".into(), da.clone()), ("b".into(), db.clone())],
            Instant::now() + Duration::from_millis(2500),
        ));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(left, vec![("b".to_string(), vec![b1])]);
        assert_eq!(uploaded(&da).unwrap(), BTreeSet::from([a1]));
        // And with a working store, nothing is left.
        *store.fail.lock() = None;
        let left = rt.block_on(sync_all_until_done(
            &bucket,
            vec![("b".into(), db.clone())],
            Instant::now() + Duration::from_secs(10),
        ));
        assert!(left.is_empty());

        // The FILESYSTEM bucket works the same way.
        let dc = tmp.path().join("c");
        let c1 = make_block(&dc, 0, 1);
        let fs = local_bucket(&tmp.path().join("bucket")).unwrap();
        let left = rt.block_on(sync_all_until_done(
            &fs,
            vec![("c".into(), dc.clone())],
            Instant::now() + Duration::from_secs(10),
        ));
        assert!(left.is_empty());
        let up = tmp.path().join("bucket").join(c1.to_string());
        for f in ["chunks/000001", "index"] {
            assert_eq!(
                std::fs::read(up.join(f)).unwrap(),
                std::fs::read(dc.join(c1.to_string()).join(f)).unwrap()
            );
        }
        assert!(up.join("meta.json").is_file());
        assert!(!up.join("tombstones").exists());
    }
}
