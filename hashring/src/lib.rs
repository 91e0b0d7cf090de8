//! Thanos-compatible hash ring placement: parse `hashrings.json`, pick a tenant's
//! ring, and place each series replica on the same endpoint Thanos Receive would.
//!
//! Pure code, no I/O: the router reads the file and hands the bytes to
//! [`parse_config`], then builds a [`Multiring`] for lookups.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
pub mod glob;
mod hash;
pub mod hashmod;
mod ketama;

use std::collections::{BTreeMap, BTreeSet, HashSet};

pub use config::{
    parse_config, Algorithm, ConfigError, EndpointConfig, HashringConfig, RingName,
    ShuffleShardingConfig, ShuffleShardingOverride, TenantMatcher, UnknownAlgorithm,
};
pub use hash::{series_hash, xxhash64, SEP};
pub use ketama::SECTIONS_PER_ENDPOINT;

use glob::Glob;
use ketama::Ketama;

/// A ring member as the router needs it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// gRPC address (`host:port`) to forward writes to.
    pub address: String,
    /// Availability zone, empty when not configured.
    pub az: String,
}

/// Why a tenant or series could not be placed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No ring lists the tenant and there is no catch-all ring (Thanos wording).
    #[error("no matching hashring to handle tenant {tenant}")]
    NoMatchingHashring {
        /// The tenant asked for.
        tenant: String,
    },
    /// The ring has fewer endpoints than the replica asked for (Thanos wording).
    #[error("insufficient nodes; have {have}, want {want}")]
    InsufficientNodes {
        /// Endpoints in the ring.
        have: usize,
        /// Endpoints needed (`n + 1`).
        want: usize,
    },
    /// Replica number not below the replication factor.
    #[error("replica {n} out of range for replication factor {replication_factor}")]
    ReplicaOutOfRange {
        /// The replica asked for.
        n: usize,
        /// The ring's replication factor.
        replication_factor: usize,
    },
    /// A [`RingId`] from another [`Multiring`] (e.g. before a reload).
    #[error("unknown hashring id {0}")]
    UnknownRing(usize),
}

/// Handle of a ring inside one [`Multiring`]; cheap to copy, valid only for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RingId(usize);

impl RingId {
    /// Position of the ring in the configuration file.
    pub fn index(self) -> usize {
        self.0
    }
}

/// Which tenants a ring accepts.
#[derive(Clone, Debug)]
enum Tenants {
    /// No `tenants` listed: every tenant.
    All,
    Exact(HashSet<String>),
    Glob(Vec<Glob>),
}

impl Tenants {
    fn matches(&self, tenant: &str) -> bool {
        match self {
            Tenants::All => true,
            Tenants::Exact(set) => set.contains(tenant),
            Tenants::Glob(globs) => globs.iter().any(|g| g.matches(tenant)),
        }
    }
}

#[derive(Clone, Debug)]
enum Layout {
    Hashmod,
    Ketama(Ketama),
}

/// One built hashring.
#[derive(Clone, Debug)]
pub struct Ring {
    name: String,
    algorithm: Algorithm,
    endpoints: Vec<Endpoint>,
    external_labels: BTreeMap<String, String>,
    tenants: Tenants,
    layout: Layout,
    replication_factor: usize,
}

impl Ring {
    fn new(
        index: usize,
        config: &HashringConfig,
        default_algorithm: Algorithm,
        replication_factor: usize,
    ) -> Result<Self, ConfigError> {
        config.validate(index)?;
        let ring_name = || RingName::new(index, &config.hashring);
        let algorithm = config.algorithm.unwrap_or(default_algorithm);
        let mut endpoints: Vec<Endpoint> = config
            .endpoints
            .iter()
            .map(|e| Endpoint {
                address: e.address.clone(),
                az: e.az.clone(),
            })
            .collect();
        let layout = match algorithm {
            Algorithm::Hashmod => {
                if endpoints.iter().any(|e| !e.az.is_empty()) {
                    return Err(ConfigError::HashmodWithAz { ring: ring_name() });
                }
                // Thanos sorts by address; fewer endpoints than replicas is only an
                // error when such a replica is asked for, as in Thanos.
                endpoints.sort_by(|a, b| a.address.cmp(&b.address));
                Layout::Hashmod
            }
            Algorithm::Ketama => match Ketama::new(&endpoints, replication_factor) {
                Ok(k) => Layout::Ketama(k),
                Err(ketama::BuildError::TooFewEndpoints) => {
                    return Err(ConfigError::TooFewEndpoints {
                        ring: ring_name(),
                        endpoints: endpoints.len(),
                        replication_factor,
                    })
                }
                Err(ketama::BuildError::AzSpread { max }) => {
                    return Err(ConfigError::AzSpreadImpossible {
                        ring: ring_name(),
                        replication_factor,
                        max,
                    })
                }
            },
        };
        let tenants = if config.tenants.is_empty() {
            Tenants::All
        } else {
            match config.tenant_matcher_type {
                TenantMatcher::Exact => Tenants::Exact(config.tenants.iter().cloned().collect()),
                TenantMatcher::Glob => Tenants::Glob(
                    config
                        .tenants
                        .iter()
                        .map(|p| {
                            Glob::new(p).map_err(|_| ConfigError::BadGlob {
                                ring: ring_name(),
                                pattern: p.clone(),
                            })
                        })
                        .collect::<Result<_, _>>()?,
                ),
            }
        };
        Ok(Self {
            name: config.hashring.clone(),
            algorithm,
            endpoints,
            external_labels: config.external_labels.clone(),
            tenants,
            layout,
            replication_factor,
        })
    }

    /// The `hashring` name from the file (may be empty).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Members: sorted by address for hashmod, in file order for ketama (as Thanos `Nodes()`).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Extra external labels for blocks of this ring's tenants.
    pub fn external_labels(&self) -> &BTreeMap<String, String> {
        &self.external_labels
    }

    /// The algorithm in effect (the ring's own, else the default).
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Replicas per series.
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// Whether `tenant` is written literally in the ring's `tenants` list (Thanos applies a
    /// ring's `external_labels` to such tenants only, not to glob or catch-all matches).
    pub fn lists_tenant(&self, tenant: &str) -> bool {
        match &self.tenants {
            Tenants::All => false,
            Tenants::Exact(set) => set.contains(tenant),
            Tenants::Glob(globs) => globs.iter().any(|g| g.as_str() == tenant),
        }
    }

    /// Whether the ring serves `tenant` (its `tenants` list matches it, or it has none).
    pub fn matches_tenant(&self, tenant: &str) -> bool {
        self.tenants.matches(tenant)
    }

    /// Endpoint of replica `n` of the series with hash `series_hash`; never allocates.
    #[inline]
    pub fn get_n(&self, series_hash: u64, n: usize) -> Result<&Endpoint, LookupError> {
        let len = self.endpoints.len();
        if n >= len {
            return Err(LookupError::InsufficientNodes {
                have: len,
                want: n + 1,
            });
        }
        let out_of_range = LookupError::ReplicaOutOfRange {
            n,
            replication_factor: self.replication_factor,
        };
        if n >= self.replication_factor {
            return Err(out_of_range);
        }
        let index = match &self.layout {
            Layout::Hashmod => hashmod::replica_index(series_hash, n, len),
            Layout::Ketama(k) => k.get_n(series_hash, n).map(|i| i as usize),
        };
        index
            .and_then(|i| self.endpoints.get(i))
            .ok_or(out_of_range)
    }
}

/// All rings of one `hashrings.json`, ready for lookups.
#[derive(Clone, Debug)]
pub struct Multiring {
    rings: Vec<Ring>,
    replication_factor: usize,
    nodes: usize,
}

impl Multiring {
    /// Builds every ring; fails like Thanos on configurations it cannot serve.
    pub fn new(
        configs: &[HashringConfig],
        default_algorithm: Algorithm,
        replication_factor: usize,
    ) -> Result<Self, ConfigError> {
        if replication_factor == 0 {
            return Err(ConfigError::ZeroReplicationFactor);
        }
        if configs.is_empty() {
            return Err(ConfigError::Empty);
        }
        let rings = configs
            .iter()
            .enumerate()
            .map(|(i, c)| Ring::new(i, c, default_algorithm, replication_factor))
            .collect::<Result<Vec<_>, _>>()?;
        let nodes = rings
            .iter()
            .flat_map(|r| r.endpoints.iter().map(|e| e.address.as_str()))
            .collect::<BTreeSet<_>>()
            .len();
        Ok(Self {
            rings,
            replication_factor,
            nodes,
        })
    }

    /// The ring serving `tenant`: the first whose tenants match, a ring without
    /// tenants matching everyone.
    pub fn ring_for_tenant(&self, tenant: &str) -> Result<RingId, LookupError> {
        self.rings
            .iter()
            .position(|r| r.matches_tenant(tenant))
            .map(RingId)
            .ok_or_else(|| LookupError::NoMatchingHashring {
                tenant: tenant.to_owned(),
            })
    }

    /// The ring behind `id`; `None` only for an id from another `Multiring`.
    pub fn ring(&self, id: RingId) -> Option<&Ring> {
        self.rings.get(id.0)
    }

    /// All rings in file order.
    pub fn rings(&self) -> &[Ring] {
        &self.rings
    }

    /// Endpoint of replica `n` (< replication factor) of a series in ring `ring`.
    #[inline]
    pub fn get_n(
        &self,
        ring: RingId,
        series_hash: u64,
        n: usize,
    ) -> Result<&Endpoint, LookupError> {
        self.rings
            .get(ring.0)
            .ok_or(LookupError::UnknownRing(ring.0))?
            .get_n(series_hash, n)
    }

    /// Every endpoint of the tenant's ring, for read fan-out.
    pub fn endpoints_for_tenant(&self, tenant: &str) -> Result<&[Endpoint], LookupError> {
        let id = self.ring_for_tenant(tenant)?;
        Ok(&self.rings[id.0].endpoints)
    }

    /// Distinct endpoint addresses across all rings.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Replicas per series.
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }
}

/// Where a series goes: the ring name and replicas `0..RF` in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Name of the ring chosen for the tenant.
    pub hashring: String,
    /// Address of replica 0, 1, ... RF-1.
    pub endpoints: Vec<String>,
}

/// Places one series like Thanos would; labels are sorted by name first, as the
/// receiver does before hashing. Backs `ringest hashring locate`.
pub fn locate(
    multiring: &Multiring,
    tenant: &str,
    labels: &[(String, String)],
) -> Result<Placement, LookupError> {
    let id = multiring.ring_for_tenant(tenant)?;
    let ring = &multiring.rings[id.0];
    let mut sorted: Vec<(&str, &str)> = labels
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let hash = series_hash(tenant, sorted.iter().copied());
    let endpoints = (0..multiring.replication_factor)
        .map(|n| ring.get_n(hash, n).map(|e| e.address.clone()))
        .collect::<Result<_, _>>()?;
    Ok(Placement {
        hashring: ring.name.clone(),
        endpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(json: &str, algorithm: Algorithm, rf: usize) -> Result<Multiring, ConfigError> {
        Multiring::new(&parse_config(json.as_bytes())?, algorithm, rf)
    }

    const RINGS: &str = r#"[
        {"hashring": "exact", "tenants": ["team-a", "team-*"], "endpoints": ["e1:1", "e2:1"]},
        {"hashring": "glob", "tenant_matcher_type": "glob", "tenants": ["team-*", "ops-?"],
         "endpoints": ["g1:1", "g2:1", "e1:1"], "external_labels": {"ring": "glob"}},
        {"hashring": "catch-all", "endpoints": ["c1:1"], "algorithm": "hashmod"},
        {"hashring": "never", "tenants": ["team-b"], "endpoints": ["n1:1", "n2:1"]}
    ]"#;

    fn ring_name<'m>(m: &'m Multiring, tenant: &str) -> &'m str {
        m.ring(m.ring_for_tenant(tenant).unwrap()).unwrap().name()
    }

    #[test]
    fn tenant_matching_first_ring_wins() {
        let m = build(RINGS, Algorithm::Ketama, 1).unwrap();
        // Exact match, and an exact ring takes `team-*` literally.
        assert_eq!(ring_name(&m, "team-a"), "exact");
        assert_eq!(ring_name(&m, "team-*"), "exact");
        // Glob ring: `team-b` matches there before reaching the later exact ring.
        assert_eq!(ring_name(&m, "team-b"), "glob");
        assert_eq!(ring_name(&m, "ops-1"), "glob");
        // `?` is one character, and `*` does not cross `/`.
        assert_eq!(ring_name(&m, "ops-12"), "catch-all");
        assert_eq!(ring_name(&m, "team-x/y"), "catch-all");
        assert_eq!(ring_name(&m, "default-tenant"), "catch-all");
        assert_eq!(m.ring_for_tenant("team-b").unwrap().index(), 1);
    }

    #[test]
    fn no_matching_ring() {
        let m = build(
            r#"[{"hashring": "a", "tenants": ["a"], "endpoints": ["x:1"]}]"#,
            Algorithm::Hashmod,
            1,
        )
        .unwrap();
        let err = m.ring_for_tenant("b").unwrap_err();
        assert_eq!(err.to_string(), "no matching hashring to handle tenant b");
        assert_eq!(m.endpoints_for_tenant("b").unwrap_err(), err);
        assert!(locate(&m, "b", &[]).is_err());
    }

    #[test]
    fn ring_accessors_nodes_and_fan_out() {
        let m = build(RINGS, Algorithm::Ketama, 1).unwrap();
        // e1:1 is in two rings but counts once.
        assert_eq!(m.nodes(), 7);
        let glob = m.ring(m.ring_for_tenant("ops-1").unwrap()).unwrap();
        assert_eq!(glob.algorithm(), Algorithm::Ketama);
        assert_eq!(glob.external_labels().get("ring").unwrap(), "glob");
        // Ketama keeps file order.
        let addrs: Vec<&str> = glob
            .endpoints()
            .iter()
            .map(|e| e.address.as_str())
            .collect();
        assert_eq!(addrs, ["g1:1", "g2:1", "e1:1"]);
        assert_eq!(m.endpoints_for_tenant("ops-1").unwrap(), glob.endpoints());
        let catch_all = &m.rings()[2];
        assert_eq!(catch_all.algorithm(), Algorithm::Hashmod);
        assert!(catch_all.matches_tenant("anything"));
    }

    #[test]
    fn hashmod_sorts_by_address() {
        let m = build(
            r#"[{"endpoints": ["c:1", "a:1", "b:1"]}]"#,
            Algorithm::Hashmod,
            3,
        )
        .unwrap();
        let id = m.ring_for_tenant("t").unwrap();
        let addrs: Vec<&str> = m.rings()[0]
            .endpoints()
            .iter()
            .map(|e| e.address.as_str())
            .collect();
        assert_eq!(addrs, ["a:1", "b:1", "c:1"]);
        // hash 4: replicas at 4%3=1, 5%3=2, 6%3=0.
        let got: Vec<&str> = (0..3)
            .map(|n| m.get_n(id, 4, n).unwrap().address.as_str())
            .collect();
        assert_eq!(got, ["b:1", "c:1", "a:1"]);
        assert_eq!(
            m.get_n(id, 4, 3).unwrap_err(),
            LookupError::InsufficientNodes { have: 3, want: 4 }
        );
    }

    #[test]
    fn fewer_endpoints_than_replication_factor() {
        // ketama refuses to build, like Thanos.
        let err = build(
            r#"[{"hashring": "small", "endpoints": ["a:1", "b:1"]}]"#,
            Algorithm::Ketama,
            3,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::TooFewEndpoints {
                endpoints: 2,
                replication_factor: 3,
                ..
            }
        ));
        assert!(err.to_string().contains("\"small\""));
        // hashmod builds, and fails per replica at lookup time, like Thanos.
        let m = build(r#"[{"endpoints": ["a:1", "b:1"]}]"#, Algorithm::Hashmod, 3).unwrap();
        let id = m.ring_for_tenant("t").unwrap();
        assert!(m.get_n(id, 7, 1).is_ok());
        let err = m.get_n(id, 7, 2).unwrap_err();
        assert_eq!(err.to_string(), "insufficient nodes; have 2, want 3");
        assert_eq!(locate(&m, "t", &[]).unwrap_err(), err);
    }

    #[test]
    fn other_build_refusals() {
        let err = build(
            r#"[{"hashring": "h", "endpoints": [{"address": "a", "az": "z"}]}]"#,
            Algorithm::Hashmod,
            1,
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::HashmodWithAz { .. }), "{err}");
        // The ring's own algorithm overrides the default.
        assert!(build(
            r#"[{"endpoints": [{"address": "a", "az": "z"}], "algorithm": "ketama"}]"#,
            Algorithm::Hashmod,
            1
        )
        .is_ok());
        assert_eq!(
            build(r#"[{"endpoints": ["a"]}]"#, Algorithm::Ketama, 0).unwrap_err(),
            ConfigError::ZeroReplicationFactor
        );
        assert_eq!(
            Multiring::new(&[], Algorithm::Ketama, 1).unwrap_err(),
            ConfigError::Empty
        );
        // Hand-built configs are validated too.
        let mut c = HashringConfig {
            endpoints: vec![EndpointConfig {
                address: "a".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        c.shuffle_sharding_config.shard_size = 3;
        assert!(matches!(
            Multiring::new(&[c], Algorithm::Ketama, 1).unwrap_err(),
            ConfigError::ShuffleShardingUnsupported { .. }
        ));
    }

    #[test]
    fn replica_out_of_range_and_foreign_ids() {
        let m = build(r#"[{"endpoints": ["a", "b", "c"]}]"#, Algorithm::Ketama, 2).unwrap();
        let id = m.ring_for_tenant("t").unwrap();
        assert!(matches!(
            m.get_n(id, 1, 2),
            Err(LookupError::ReplicaOutOfRange { n: 2, .. })
        ));
        let big = build(
            r#"[{"tenants": ["x"], "endpoints": ["a"]}, {"endpoints": ["b"]}]"#,
            Algorithm::Ketama,
            1,
        )
        .unwrap();
        let foreign = big.ring_for_tenant("t").unwrap();
        assert_eq!(m.get_n(foreign, 1, 0), Err(LookupError::UnknownRing(1)));
        assert!(m.ring(foreign).is_none());
    }

    #[test]
    fn locate_sorts_labels() {
        let m = build(RINGS, Algorithm::Ketama, 2).unwrap();
        let l = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        let sorted = [l("__name__", "up"), l("instance", "x"), l("job", "j")];
        let unsorted = [l("job", "j"), l("__name__", "up"), l("instance", "x")];
        let a = locate(&m, "ops-1", &sorted).unwrap();
        assert_eq!(a, locate(&m, "ops-1", &unsorted).unwrap());
        assert_eq!(a.hashring, "glob");
        assert_eq!(a.endpoints.len(), 2);
        assert_ne!(a.endpoints[0], a.endpoints[1]);
        let h = series_hash(
            "ops-1",
            [("__name__", "up"), ("instance", "x"), ("job", "j")],
        );
        let id = m.ring_for_tenant("ops-1").unwrap();
        assert_eq!(a.endpoints[0], m.get_n(id, h, 0).unwrap().address);
    }
}
