//! Label matchers with Prometheus semantics.
//!
//! Regexes are compiled as `^(?s:<re>)$` like Prometheus `labels.NewFastRegexMatcher`: fully
//! anchored, and `.` matches newlines. A series without the label behaves as if the label had the
//! empty value, so `foo=""` and `foo=~".*"` match series that lack `foo`.

use regex::Regex;
use std::fmt;

/// How a matcher compares a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchType {
    /// `=`: value equals.
    Equal,
    /// `!=`: value differs.
    NotEqual,
    /// `=~`: value matches the anchored regex.
    Regex,
    /// `!~`: value does not match the anchored regex.
    NotRegex,
}

impl MatchType {
    /// The type numbered as on the wire: Prometheus remote read and the Thanos Store API number
    /// them alike (EQ = 0, NEQ = 1, RE = 2, NRE = 3).
    pub fn from_wire(n: i32) -> Option<MatchType> {
        match n {
            0 => Some(MatchType::Equal),
            1 => Some(MatchType::NotEqual),
            2 => Some(MatchType::Regex),
            3 => Some(MatchType::NotRegex),
            _ => None,
        }
    }
}

/// Why a matcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    /// The regex did not compile.
    #[error("invalid regex {pattern:?}: {source}")]
    Regex {
        /// The pattern as given.
        pattern: String,
        /// The compiler's error.
        source: regex::Error,
    },
}

/// One label matcher, e.g. `job=~"api|web"`.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// How to compare.
    pub kind: MatchType,
    /// Label name.
    pub name: String,
    /// Value or regex source, as given.
    pub value: String,
    re: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher; regexes are anchored and dot-matches-newline as in Prometheus.
    pub fn new(
        kind: MatchType,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Matcher, MatcherError> {
        let value = value.into();
        let re = match kind {
            MatchType::Regex | MatchType::NotRegex => {
                Some(Regex::new(&format!("^(?s:{value})$")).map_err(|source| {
                    MatcherError::Regex {
                        pattern: value.clone(),
                        source,
                    }
                })?)
            }
            _ => None,
        };
        Ok(Matcher {
            kind,
            name: name.into(),
            value,
            re,
        })
    }

    /// Whether `value` satisfies this matcher (pass `""` for a missing label).
    pub fn matches(&self, value: &str) -> bool {
        match self.kind {
            MatchType::Equal => value == self.value,
            MatchType::NotEqual => value != self.value,
            MatchType::Regex => self.re.as_ref().is_some_and(|r| r.is_match(value)),
            MatchType::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// Whether this matcher accepts the empty string, i.e. also series lacking the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.kind {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regex => "=~",
            MatchType::NotRegex => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let m = |k, v: &str| Matcher::new(k, "a", v).unwrap();
        assert!(m(MatchType::Equal, "x").matches("x"));
        assert!(!m(MatchType::Equal, "x").matches("xy"));
        assert!(m(MatchType::NotEqual, "x").matches("y"));
        assert!(!m(MatchType::NotEqual, "x").matches("x"));
        // Anchored on both sides.
        assert!(m(MatchType::Regex, "a.c").matches("abc"));
        assert!(!m(MatchType::Regex, "b").matches("abc"));
        assert!(!m(MatchType::Regex, "a|b").matches("ab"));
        assert!(m(MatchType::Regex, "a|b").matches("b"));
        // Dot matches newline.
        assert!(m(MatchType::Regex, "a.b").matches("a\nb"));
        assert!(m(MatchType::NotRegex, "a.*").matches("ba"));
        assert!(!m(MatchType::NotRegex, "a.*").matches("ab"));
        assert!(m(MatchType::Regex, ".*").matches_empty());
        assert!(!m(MatchType::Regex, ".+").matches_empty());
        assert!(Matcher::new(MatchType::Regex, "a", "(").is_err());
        assert_eq!(m(MatchType::Regex, "x").to_string(), "a=~\"x\"");
    }
}
