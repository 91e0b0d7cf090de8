//! `thanos.info.Info/Info`: how Thanos Query discovers and health-checks the endpoint (every few
//! seconds; Query v0.37+ calls nothing else for that). A Receive answers component `receive`, one
//! label set per tenant and a store section with per-tenant TSDB infos (`cmd/thanos/receive.go`).

use proto::infopb::{InfoResponse, StoreInfo, TsdbInfo};
use proto::storepb::{Label, ZLabelSet};

use super::{Scope, Store, StoreError};
use crate::tsdb::labels::Labels;

/// The component type a Thanos Receive announces.
pub const COMPONENT_TYPE: &str = "receive";

fn label_set(l: &Labels) -> ZLabelSet {
    ZLabelSet {
        labels: l
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
    }
}

/// The Info answer for the tenants `scope` sees; an error until WAL replay is done (Query then
/// keeps the endpoint out, as it does with a Receive that is not ready).
pub fn info(store: &Store, scope: &Scope) -> Result<InfoResponse, StoreError> {
    let tenants = store.tenants(scope)?;
    let mut label_sets = Vec::with_capacity(tenants.len());
    let mut tsdb_infos = Vec::with_capacity(tenants.len());
    let mut min_time = i64::MAX;
    for t in &tenants {
        // Prometheus `DB.StartTime`: the oldest block's start, else the head's (MaxInt64 when
        // empty, so Query skips a tenant with no data yet).
        let start = t.db.start_time();
        min_time = min_time.min(start);
        label_sets.push(label_set(&t.external));
        tsdb_infos.push(TsdbInfo {
            labels: Some(label_set(&t.external)),
            min_time: start,
            max_time: i64::MAX,
        });
    }
    Ok(InfoResponse {
        label_sets,
        component_type: COMPONENT_TYPE.into(),
        store: Some(StoreInfo {
            min_time,
            max_time: i64::MAX,
            // Query shards client-side for stores that do not.
            supports_sharding: false,
            supports_without_replica_labels: true,
            tsdb_infos,
            supports_projections: false,
        }),
        exemplars: None,
    })
}
