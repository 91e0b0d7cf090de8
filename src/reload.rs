//! Hot reload of a configuration file (hashrings, limits, tenant tokens): the file is polled, a
//! changed and valid content is put in force, an invalid one keeps what is in force, says why in
//! the log and turns `<metric>_last_reload_successful` to 0.

use std::path::PathBuf;
use std::time::Duration;

/// Sets `<metric>_last_reload_successful` (and, on success, `..._success_timestamp_seconds`).
pub fn record(metric: &str, ok: bool) {
    metrics::gauge!(format!("{metric}_last_reload_successful")).set(if ok { 1.0 } else { 0.0 });
    if ok {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        metrics::gauge!(format!("{metric}_last_reload_success_timestamp_seconds")).set(now);
    }
}

/// What `apply` made of a changed file.
pub enum Applied {
    /// Put in force.
    Ok,
    /// Invalid: the message says why; what is in force stays.
    Invalid(String),
    /// Nobody uses the result any more: stop watching.
    Stop,
}

/// Polls `path` every `interval` from a tokio task. `last` is the content in force (loaded at
/// start, which records success); when the content differs, `apply` parses it and puts it in
/// force. `what` names the file in logs ("hashrings file"), `metric` prefixes the gauges.
pub fn watch(
    path: PathBuf,
    mut last: Vec<u8>,
    interval: Duration,
    what: &'static str,
    metric: &'static str,
    mut apply: impl FnMut(&[u8]) -> Applied + Send + 'static,
) {
    record(metric, true);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        // Whether `last` is in force, and whether the previous read failed: unchanged content
        // after a read error reports `last`'s outcome again instead of keeping the error.
        let mut last_ok = true;
        let mut read_failed = false;
        loop {
            tick.tick().await;
            let contents = match tokio::fs::read(&path).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read {what}; keeping the one in force");
                    record(metric, false);
                    read_failed = true;
                    continue;
                }
            };
            if contents == last {
                if read_failed {
                    tracing::info!(path = %path.display(), "{what} readable again, unchanged");
                    record(metric, last_ok);
                    read_failed = false;
                }
                continue;
            }
            read_failed = false;
            match apply(&contents) {
                Applied::Ok => {
                    tracing::info!(path = %path.display(), "{what} reloaded");
                    record(metric, true);
                    last_ok = true;
                }
                Applied::Invalid(e) => {
                    tracing::error!(path = %path.display(), error = %e, "invalid {what}; keeping the one in force");
                    record(metric, false);
                    last_ok = false;
                }
                Applied::Stop => return,
            }
            last = contents;
        }
    });
}
