//! Crash points for the crash tests: `RINGEST_FAILPOINTS=name[,name…]` makes the process abort
//! (no destructors, no flush: as `kill -9`) when it reaches a named point, so a test can crash
//! exactly between two steps of a cut or an upload instead of hoping a random kill lands there.
//!
//! Unset (always, outside tests), a check is one relaxed load of a cached empty list.

use std::sync::OnceLock;

/// Every failpoint, for the docs and a test that each name is reachable by its test.
pub const NAMES: &[&str] = &[
    "cut.after_block_write",
    "cut.after_wal_checkpoint",
    "ship.before_meta",
    "ship.after_meta",
];

fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("RINGEST_FAILPOINTS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Aborts the process if the failpoint `name` is armed.
pub fn hit(name: &str) {
    debug_assert!(NAMES.contains(&name), "unknown failpoint {name}");
    if armed().iter().any(|a| a == name) {
        eprintln!("failpoint {name} hit: aborting");
        std::process::abort();
    }
}
