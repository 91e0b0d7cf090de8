//! `Store/LabelNames` and `Store/LabelValues` over every tenant (Thanos `TSDBStore.LabelNames`,
//! `LabelValues`): names and values of the series with samples in the range that match the
//! matchers, external labels included as Thanos includes them, merged and sorted.

use std::collections::BTreeSet;

use proto::storepb::{LabelNamesRequest, LabelValuesRequest};

use super::matchers::{convert, split_external};
use super::{Scope, Store, StoreError};
use crate::tsdb::matcher::Matcher;

fn limited(set: BTreeSet<String>, limit: i64) -> Vec<String> {
    let n = usize::try_from(limit).ok().filter(|&n| n > 0);
    set.into_iter().take(n.unwrap_or(usize::MAX)).collect()
}

/// Label names of the matching series (external label names added for a tenant with any
/// series, less `without_replica_labels`), sorted. Blocking.
pub fn label_names(
    store: &Store,
    scope: &Scope,
    req: &LabelNamesRequest,
) -> Result<Vec<String>, StoreError> {
    let matchers = convert(&req.matchers)?;
    let mut names = BTreeSet::new();
    for t in store.tenants(scope)? {
        let Some(rest) = split_external(&matchers, &t.external) else {
            continue;
        };
        let rest: Vec<Matcher> = rest.into_iter().cloned().collect();
        let q = t.db.chunk_querier(req.start, req.end, &rest)?;
        if q.is_empty() {
            continue;
        }
        for s in q.series() {
            for (n, _) in s.labels.iter() {
                if !names.contains(n) {
                    names.insert(n.to_string());
                }
            }
        }
        for (n, _) in t.external.iter() {
            if !req.without_replica_labels.iter().any(|r| r == n) {
                names.insert(n.to_string());
            }
        }
    }
    Ok(limited(names, req.limit))
}

/// Values of label `req.label` on the matching series, sorted. For an external label, the
/// tenant's value when it has a matching series. Blocking.
pub fn label_values(
    store: &Store,
    scope: &Scope,
    req: &LabelValuesRequest,
) -> Result<Vec<String>, StoreError> {
    if req.label.is_empty() {
        return Err(StoreError::EmptyLabelName);
    }
    let matchers = convert(&req.matchers)?;
    if req.without_replica_labels.contains(&req.label) {
        return Ok(Vec::new());
    }
    let mut values = BTreeSet::new();
    for t in store.tenants(scope)? {
        let Some(rest) = split_external(&matchers, &t.external) else {
            continue;
        };
        let rest: Vec<Matcher> = rest.into_iter().cloned().collect();
        if let Some(v) = t.external.get(&req.label).filter(|v| !v.is_empty()) {
            // Thanos answers the external value without looking when nothing else constrains.
            if rest.is_empty() || !t.db.chunk_querier(req.start, req.end, &rest)?.is_empty() {
                values.insert(v.to_string());
            }
            continue;
        }
        let q = t.db.chunk_querier(req.start, req.end, &rest)?;
        for s in q.series() {
            if let Some(v) = s.labels.get(&req.label) {
                if !values.contains(v) {
                    values.insert(v.to_string());
                }
            }
        }
    }
    Ok(limited(values, req.limit))
}
