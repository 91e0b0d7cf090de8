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

    /// Whether `tenant` is routed to this ring when no earlier ring claims it.
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
