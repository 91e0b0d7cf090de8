//! Files and directories: per-test temporary directories, atomic replacement, copies, sizes and the
//! layout of a TSDB data directory (block ULIDs, shipper state).

use std::fs;
use std::path::Path;

/// A fresh temporary directory for one test (`ringest-<name>-XXXX` under the system temp dir),
/// removed at the end unless `$RINGEST_E2E_KEEP` is set (then its path is printed).
pub fn test_dir(name: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("ringest-{name}-"))
        .tempdir()
        .unwrap();
    if std::env::var_os("RINGEST_E2E_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("[harness] keeping {}", dir.path().display());
    }
    dir
}

/// Replaces `path` atomically (write a sibling, then rename), so a poller never sees a half file.
pub fn write_atomic(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, contents).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// Whether `name` looks like a block directory name (a 26-character Crockford base32 ULID).
pub fn is_ulid(name: &str) -> bool {
    name.len() == 26
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)))
}

/// Names of the block directories (ULIDs) directly under `dir`, sorted.
pub fn block_dirs(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| is_ulid(n))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Every file under `dir`, as `/`-separated paths relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap();
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The ULIDs listed in `<tenant_dir>/thanos.shipper.json` (in file order); empty if there is none.
pub fn shipper_state(tenant_dir: &Path) -> Vec<String> {
    let path = tenant_dir.join("thanos.shipper.json");
    let Ok(data) = fs::read(&path) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_slice(&data)
        .unwrap_or_else(|e| panic!("{}: bad JSON ({e})", path.display()));
    assert_eq!(v["version"], 1, "{}: {v}", path.display());
    match &v["uploaded"] {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|u| u.as_str().expect("ULID string").to_string())
            .collect(),
        other => panic!("{}: uploaded is {other}", path.display()),
    }
}

/// Copies the directory tree `src` to `dst` (created), files byte for byte.
pub fn copy_dir_all(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for entry in fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir_all(&entry.path(), &to);
        } else {
            fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// Builds at `dst` a TSDB directory that promtool and Prometheus 2.42 open: a copy of each block
/// directory in `blocks` plus an empty `wal/` (promtool 2.42 opens the WAL even to read blocks).
pub fn tsdb_dir_of_blocks(blocks: &[&Path], dst: &Path) {
    fs::create_dir_all(dst.join("wal")).unwrap();
    for b in blocks {
        copy_dir_all(b, &dst.join(b.file_name().unwrap()));
    }
}

/// Total size in bytes of the regular files under `dir` (recursively).
pub fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dir_size(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}
