//! Store API matchers: conversion to TSDB matchers (Prometheus semantics: anchored regexes, a
//! missing label matches as `""`) and the split of a request's matchers against a tenant's
//! external labels (Thanos `matchesExternalLabels`).

use proto::storepb::LabelMatcher;

use super::StoreError;
use crate::tsdb::labels::Labels;
use crate::tsdb::matcher::{MatchType, Matcher};

/// Converts the request's matchers.
pub fn convert(matchers: &[LabelMatcher]) -> Result<Vec<Matcher>, StoreError> {
    matchers
        .iter()
        .map(|m| {
            let kind =
                MatchType::from_wire(m.r#type).ok_or(StoreError::UnknownMatcherType(m.r#type))?;
            Matcher::new(kind, &m.name, &m.value).map_err(|source| StoreError::Matcher {
                name: m.name.clone(),
                source,
            })
        })
        .collect()
}

/// Splits `matchers` against a tenant's `external` labels: `None` when a matcher on an external
/// label rejects its value (the tenant has nothing to answer), else the matchers left once those
/// on external labels (which all match) are removed.
pub fn split_external<'a>(matchers: &'a [Matcher], external: &Labels) -> Option<Vec<&'a Matcher>> {
    let mut rest = Vec::with_capacity(matchers.len());
    for m in matchers {
        match external.get(&m.name) {
            // Thanos treats an empty external value as absent.
            Some(v) if !v.is_empty() => {
                if !m.matches(v) {
                    return None;
                }
            }
            _ => rest.push(m),
        }
    }
    Some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::storepb::MatcherType;

    fn m(t: MatcherType, n: &str, v: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: t as i32,
            name: n.into(),
            value: v.into(),
        }
    }

    #[test]
    fn external_matchers_select_or_skip_a_tenant_and_are_removed() {
        let ext = Labels::from_pairs([("tenant_id", "a"), ("replica", "1")]);
        let ms = convert(&[
            m(MatcherType::Eq, "__name__", "up"),
            m(MatcherType::Re, "tenant_id", "a|b"),
        ])
        .unwrap();
        let rest = split_external(&ms, &ext).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].name, "__name__");
        let ms = convert(&[m(MatcherType::Neq, "tenant_id", "a")]).unwrap();
        assert!(split_external(&ms, &ext).is_none());
        // Regexes are anchored as in Prometheus: "a|b" does not match "ab".
        let ms = convert(&[m(MatcherType::Re, "tenant_id", "a|b")]).unwrap();
        assert!(split_external(&ms, &Labels::from_pairs([("tenant_id", "ab")])).is_none());
        // Only external matchers: nothing left (the caller refuses that).
        let ms = convert(&[m(MatcherType::Eq, "replica", "1")]).unwrap();
        assert!(split_external(&ms, &ext).unwrap().is_empty());
    }

    #[test]
    fn bad_matchers_are_named() {
        let e = convert(&[m(MatcherType::Re, "job", "(")]).unwrap_err();
        assert!(e.to_string().contains("\"job\""), "{e}");
        let e = convert(&[LabelMatcher {
            r#type: 9,
            name: "x".into(),
            value: String::new(),
        }])
        .unwrap_err();
        assert_eq!(e.to_string(), "invalid matcher type 9");
    }
}
