//! Tenant glob patterns with Go `path/filepath.Match` semantics (Unix flavour).
//!
//! Thanos matches `tenant_matcher_type: glob` tenants with `filepath.Match`, so a
//! pattern must mean exactly the same here: `*` and `?` never match `/`, `?` and
//! character classes consume one UTF-8 character (an invalid byte counts as one),
//! literals compare bytes, `\` escapes, and a star retries its chunk byte by byte
//! without backtracking into earlier stars. Patterns are validated once up front,
//! so matching itself cannot fail.

use std::fmt;

/// Error for a pattern `filepath.Match` would reject with `ErrBadPattern`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPattern;

impl fmt::Display for BadPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("syntax error in pattern")
    }
}

impl std::error::Error for BadPattern {}

/// A validated glob pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    /// Validates `pattern`, refusing anything `filepath.Match` would call malformed.
    pub fn new(pattern: &str) -> Result<Self, BadPattern> {
        let mut rest = pattern.as_bytes();
        while !rest.is_empty() {
            let (_, chunk, tail) = next_chunk(rest);
            match_chunk(chunk, b"")?;
            rest = tail;
        }
        Ok(Self {
            pattern: pattern.to_owned(),
        })
    }

    /// The pattern as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `name` matches, as `filepath.Match(pattern, name)` would say.
    pub fn matches(&self, name: &str) -> bool {
        // Validation in `new` guarantees no chunk errors; treat one as a mismatch anyway.
        matches_bytes(self.pattern.as_bytes(), name.as_bytes()).unwrap_or(false)
    }
}

/// `filepath.Match` over bytes; `Err` only for malformed patterns.
pub(crate) fn matches_bytes(mut pattern: &[u8], mut name: &[u8]) -> Result<bool, BadPattern> {
    'chunks: while !pattern.is_empty() {
        let (star, chunk, rest) = next_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing star takes the rest of the name unless it crosses a separator.
            return Ok(!name.contains(&b'/'));
        }
        let is_last = pattern.is_empty();
        // Try the chunk where we stand first.
        if let Some(after) = match_chunk(chunk, name)? {
            if after.is_empty() || !is_last {
                name = after;
                continue;
            }
        }
        if star {
            // Let the star swallow one more byte at a time, never a separator.
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                if let Some(after) = match_chunk(chunk, &name[i + 1..])? {
                    if !is_last || after.is_empty() {
                        name = after;
                        continue 'chunks;
                    }
                }
                i += 1;
            }
        }
        // No match; Go still reports a malformed remainder as an error.
        while !pattern.is_empty() {
            let (_, chunk, tail) = next_chunk(pattern);
            match_chunk(chunk, b"")?;
            pattern = tail;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off leading stars and the following star-free chunk (stars inside a
/// class or after a backslash belong to the chunk), like Go's `scanChunk`.
fn next_chunk(pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let stars = pattern.iter().take_while(|&&b| b == b'*').count();
    let pattern = &pattern[stars..];
    let mut in_class = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            // An escape takes the next byte with it (a trailing one is caught later).
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'*' if !in_class => break,
            _ => {}
        }
        i += 1;
    }
    (stars > 0, &pattern[..i], &pattern[i..])
}

/// Decodes one character like Go's `utf8.DecodeRune`: invalid input is U+FFFD of width 1.
fn decode(s: &[u8]) -> (char, usize) {
    let head = &s[..s.len().min(4)];
    let valid = match std::str::from_utf8(head) {
        Ok(v) => v,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
    };
    match valid.chars().next() {
        Some(c) => (c, c.len_utf8()),
        None => (char::REPLACEMENT_CHARACTER, 1),
    }
}

/// Matches one star-free chunk at the start of `s`; `Ok(Some(rest))` on a match.
/// Keeps parsing after a mismatch so malformed chunks are always reported.
fn match_chunk<'s>(mut chunk: &[u8], mut s: &'s [u8]) -> Result<Option<&'s [u8]>, BadPattern> {
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        if s.is_empty() {
            failed = true;
        }
        match c {
            b'[' => {
                let mut r = '\0';
                if !failed {
                    let (ch, n) = decode(s);
                    r = ch;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut hit = false;
                let mut ranges = 0;
                loop {
                    if ranges > 0 && chunk.first() == Some(&b']') {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = class_char(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&b'-') {
                        let (h, rest) = class_char(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        hit = true;
                    }
                    ranges += 1;
                }
                if hit == negated {
                    failed = true;
                }
            }
            b'?' => {
                if !failed {
                    if s[0] == b'/' {
                        failed = true;
                    }
                    let (_, n) = decode(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(BadPattern);
                    }
                }
                if !failed {
                    if chunk[0] != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

/// Reads one possibly escaped character of a class range, like Go's `getEsc`:
/// it may not be `-` or `]` unescaped, and the class must continue after it.
fn class_char(chunk: &[u8]) -> Result<(char, &[u8]), BadPattern> {
    let mut chunk = match chunk.first() {
        None | Some(b'-') | Some(b']') => return Err(BadPattern),
        Some(_) => chunk,
    };
    if chunk[0] == b'\\' {
        chunk = &chunk[1..];
        if chunk.is_empty() {
            return Err(BadPattern);
        }
    }
    let (r, n) = decode(chunk);
    let rest = &chunk[n..];
    if (r == char::REPLACEMENT_CHARACTER && n == 1) || rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((r, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> Result<bool, BadPattern> {
        matches_bytes(p.as_bytes(), n.as_bytes())
    }

    #[test]
    fn go_documented_cases() {
        // Cases from the filepath.Match documentation and common shell use.
        assert_eq!(m("abc", "abc"), Ok(true));
        assert_eq!(m("*", "abc"), Ok(true));
        assert_eq!(m("*c", "abc"), Ok(true));
        assert_eq!(m("a*", "a"), Ok(true));
        assert_eq!(m("a*", "ab/c"), Ok(false));
        assert_eq!(m("a*/b", "abc/b"), Ok(true));
        assert_eq!(m("a*/b", "a/c/b"), Ok(false));
        assert_eq!(m("a*b*c*d*e*/f", "axbxcxdxe/f"), Ok(true));
        assert_eq!(m("a*b?c*x", "abxbbxdbxebxczzx"), Ok(true));
        assert_eq!(m("a*b?c*x", "abxbbxdbxebxczzy"), Ok(false));
        assert_eq!(m("ab[c]", "abc"), Ok(true));
        assert_eq!(m("ab[b-d]", "abc"), Ok(true));
        assert_eq!(m("ab[^c]", "abc"), Ok(false));
        assert_eq!(m("ab[^e-g]", "abc"), Ok(true));
        assert_eq!(m("a\\*b", "a*b"), Ok(true));
        assert_eq!(m("a\\*b", "ab"), Ok(false));
        assert_eq!(m("a?b", "a☺b"), Ok(true));
        assert_eq!(m("a?b", "a/b"), Ok(false));
        assert_eq!(m("a*b", "a/b"), Ok(false));
        assert_eq!(m("[\\]a]", "]"), Ok(true));
        assert_eq!(m("[\\-]", "-"), Ok(true));
        assert_eq!(m("[x\\-]", "z"), Ok(false));
        assert_eq!(m("*x", "xxx"), Ok(true));
        assert_eq!(m("tenant-*", "tenant-a"), Ok(true));
        assert_eq!(m("tenant-*", "tenant"), Ok(false));
        // Byte-wise star retries: the second `?` can start inside a multi-byte character.
        assert_eq!(m("*??", "€"), Ok(true));
    }

    #[test]
    fn malformed_patterns() {
        for p in [
            "[]a]", "[-]", "[x-]", "[", "[^", "[^bc", "a[", "a\\", "[a-b-c]", "[\\", "*[",
        ] {
            assert_eq!(Glob::new(p), Err(BadPattern), "{p}");
        }
        // Go reports a malformed tail even when the head already failed to match.
        assert_eq!(m("a[", "x"), Err(BadPattern));
        assert_eq!(m("x*[", "y"), Err(BadPattern));
        assert!(Glob::new("a*").is_ok());
        assert!(Glob::new("").is_ok());
    }

    #[test]
    fn decode_like_go() {
        assert_eq!(decode(b"a"), ('a', 1));
        assert_eq!(decode("€x".as_bytes()), ('€', 3));
        assert_eq!(decode(&[0x82, 0xac]), (char::REPLACEMENT_CHARACTER, 1));
    }
}
