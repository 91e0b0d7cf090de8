//! `ringest-loadtest`: a Prometheus remote write (1.0 and 2.0) load generator.
//!
//! Series are generated once and pre-encoded (v1: each series' `Label` fields; v2: interned
//! symbols), so a request costs one pass writing samples plus one snappy compression.

pub mod hist;
pub mod run;
pub mod series;

use std::time::Duration;

/// Parses durations such as `30s`, `1m30s`, `500ms`, `2h` (a bare number means seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{s}: {e}"));
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s}: missing unit (ms, s, m, h)"))?;
        let (num, tail) = rest.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("{s}: bad number {num:?}"))?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("{s}: unknown unit {unit:?} (ms, s, m, h)")),
        };
        total += value * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("{s}: {e}"))
}

#[cfg(test)]
mod tests;
