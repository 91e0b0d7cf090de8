//! promtool: a bounded runner and the parsing of `promtool tsdb dump` (Go-printed labels and
//! floats). Shared by the end-to-end tests and the ringest crate's unit tests.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::proc::run_to_exit;
use crate::time::{now_ms, poll};
use crate::{Labels, GO_NAN_BITS};

/// The promtool binary (`$PROMTOOL_BIN` or `promtool` on `$PATH`).
pub fn promtool_bin() -> String {
    std::env::var("PROMTOOL_BIN").unwrap_or_else(|_| "promtool".into())
}

/// Runs promtool with `args` (bounded to 120 s), asserting success; returns its stdout.
pub fn promtool(args: &[&str]) -> String {
    let out = run_to_exit(promtool_bin(), args, b"", None, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "promtool {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// One line of `promtool tsdb dump`.
#[derive(Debug, Clone, PartialEq)]
pub struct DumpSample {
    pub labels: Labels,
    pub ts: i64,
    /// The value as promtool printed it (Go `%g`: shortest representation that round-trips).
    pub value_str: String,
    pub value: f64,
}

/// Runs `promtool tsdb dump --min-time --max-time <data_dir>` (bounded to 120 s) and parses it.
/// promtool 2.42 prints `{name="value", ...} <%g value> <ms timestamp>` per sample, reading the
/// blocks and the head (WAL) of the directory; both kinds of NaN print as `NaN`.
pub fn promtool_dump(data_dir: &Path, min_ms: i64, max_ms: i64) -> Vec<DumpSample> {
    let dir = data_dir.parent().unwrap();
    let out_path = dir.join(format!(
        "{}.dump.{}",
        data_dir.file_name().unwrap().to_string_lossy(),
        now_ms()
    ));
    let err_path = out_path.with_extension("stderr");
    let mut child = Command::new(promtool_bin())
        .args(["tsdb", "dump"])
        .arg(format!("--min-time={min_ms}"))
        .arg(format!("--max-time={max_ms}"))
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("promtool");
    let status = poll(Duration::from_secs(120), Duration::from_millis(100), || {
        child.try_wait().ok().flatten()
    });
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("promtool tsdb dump timed out");
        }
    };
    assert!(
        status.success(),
        "promtool tsdb dump failed: {status}: {}",
        fs::read_to_string(&err_path).unwrap_or_default()
    );
    let text = fs::read_to_string(&out_path).unwrap();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| parse_dump_line(l).unwrap_or_else(|e| panic!("promtool line {l:?}: {e}")))
        .collect()
}

/// Parses `{a="b", c="d"} 1.5 1700000000000`.
pub fn parse_dump_line(line: &str) -> Result<DumpSample, String> {
    parse_dump_line_printed(line).map(|(_, sample)| sample)
}

/// [`parse_dump_line`], also returning the label set as promtool printed it (`{a="b", c="d"}`),
/// for callers that key series by their printed form.
pub fn parse_dump_line_printed(line: &str) -> Result<(&str, DumpSample), String> {
    let (labels, rest) = parse_go_labels(line)?;
    let printed = &line[..line.len() - rest.len()];
    let mut parts = rest.split_ascii_whitespace();
    let value_str = parts.next().ok_or("no value")?.to_string();
    let ts = parts
        .next()
        .ok_or("no timestamp")?
        .parse::<i64>()
        .map_err(|e| e.to_string())?;
    if parts.next().is_some() {
        return Err("trailing fields".into());
    }
    let value = parse_go_float(&value_str)?;
    Ok((
        printed,
        DumpSample {
            labels,
            ts,
            value_str,
            value,
        },
    ))
}

/// Go `strconv.Quote` for printable UTF-8, as promtool prints label values (the inverse of
/// [`parse_go_labels`]'s unquoting for such values).
pub fn go_quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// Parses a float printed by Go (`NaN`, `+Inf`, `-Inf`, `1e-05`, ...).
pub fn parse_go_float(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::from_bits(GO_NAN_BITS)),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse::<f64>().map_err(|e| format!("float {s:?}: {e}")),
    }
}

/// Parses a Go `labels.Labels.String()` (`{a="b", c="d"}`, values `strconv.Quote`d) at the start
/// of `s`; returns the labels and the rest after the closing brace.
pub fn parse_go_labels(s: &str) -> Result<(Labels, &str), String> {
    let b = s.as_bytes();
    if b.first() != Some(&b'{') {
        return Err("labels must start with '{'".into());
    }
    let mut i = 1;
    let mut labels = Labels::new();
    if b.get(i) == Some(&b'}') {
        return Ok((labels, &s[i + 1..]));
    }
    loop {
        let eq = s[i..].find('=').ok_or("no '='")? + i;
        let name = s[i..eq].to_string();
        i = eq + 1;
        if b.get(i) != Some(&b'"') {
            return Err("value must be quoted".into());
        }
        i += 1;
        let mut value = String::new();
        loop {
            let c = s[i..].chars().next().ok_or("unterminated value")?;
            i += c.len_utf8();
            match c {
                '"' => break,
                '\\' => {
                    let e = s[i..].chars().next().ok_or("dangling escape")?;
                    i += 1;
                    match e {
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        'r' => value.push('\r'),
                        'a' => value.push('\x07'),
                        'b' => value.push('\x08'),
                        'f' => value.push('\x0c'),
                        'v' => value.push('\x0b'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        '\'' => value.push('\''),
                        'x' | 'u' | 'U' => {
                            let n = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex = s.get(i..i + n).ok_or("short escape")?;
                            let code = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                            i += n;
                            value.push(char::from_u32(code).ok_or("bad code point")?);
                        }
                        other => return Err(format!("unknown escape \\{other}")),
                    }
                }
                c => value.push(c),
            }
        }
        labels.insert(name, value);
        match b.get(i) {
            Some(b',') => {
                i += 1;
                if b.get(i) == Some(&b' ') {
                    i += 1;
                }
            }
            Some(b'}') => return Ok((labels, &s[i + 1..])),
            _ => return Err(format!("unexpected byte at {i}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_line_keeps_the_printed_labels_and_unquotes_values() {
        let line = r#"{__name__="up", path="a\"b\\c"} NaN 1700000000000"#;
        let (printed, s) = parse_dump_line_printed(line).unwrap();
        assert_eq!(printed, r#"{__name__="up", path="a\"b\\c"}"#);
        assert_eq!(s.labels["path"], "a\"b\\c");
        assert_eq!(s.value.to_bits(), GO_NAN_BITS);
        assert_eq!(s.ts, 1_700_000_000_000);
        assert_eq!(
            format!("{{path={}}}", go_quote("a\"b\\c")),
            r#"{path="a\"b\\c"}"#
        );
        assert!(
            parse_dump_line("{a=\"b\"} 1").is_err(),
            "a line without timestamp"
        );
    }
}
