//! Ketama consistent hashing, placement-compatible with Thanos `ketamaHashring`.
//!
//! Every endpoint (by its index in file order) owns [`SECTIONS_PER_ENDPOINT`]
//! sections at `xxhash64("<address>:<i>")` for `i` in `1..=1000`. Sections are sorted
//! by hash; a series belongs to the first section whose hash is `>=` the series hash
//! (wrapping to the first section). Each section's replica list is precomputed at
//! build time by walking clockwise from the section itself, skipping endpoints
//! already chosen and, when the ring spans several AZs, skipping endpoints whose AZ
//! already holds more replicas than the least used AZ.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::hash::xxhash64;
use crate::Endpoint;

/// Sections per endpoint, as Thanos `SectionsPerNode`.
pub const SECTIONS_PER_ENDPOINT: usize = 1000;

/// Why a ketama ring cannot be built.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BuildError {
    /// Fewer endpoints than replicas.
    TooFewEndpoints,
    /// The even-AZ-spread rule can place at most `max` replicas.
    AzSpread { max: usize },
}

/// A built ketama ring: section hashes and their replica endpoint indices.
#[derive(Clone)]
pub(crate) struct Ketama {
    /// Sorted section hashes, kept apart from replicas so the binary search stays in cache.
    hashes: Vec<u64>,
    /// `replication_factor` endpoint indices per section, flattened.
    replicas: Vec<u32>,
    replication_factor: usize,
}

impl Ketama {
    /// Builds the ring over `endpoints` in file order.
    pub(crate) fn new(
        endpoints: &[Endpoint],
        replication_factor: usize,
    ) -> Result<Self, BuildError> {
        if endpoints.len() < replication_factor || u32::try_from(endpoints.len()).is_err() {
            return Err(BuildError::TooFewEndpoints);
        }

        // Intern AZs ("" is a zone of its own, as in Thanos).
        let mut zone_ids: HashMap<&str, usize> = HashMap::new();
        let zone_of: Vec<usize> = endpoints
            .iter()
            .map(|e| {
                let next = zone_ids.len();
                *zone_ids.entry(e.az.as_str()).or_insert(next)
            })
            .collect();
        let zones = zone_ids.len();
        if zones > 1 {
            let max = max_spread_replicas(&zone_of, zones);
            if replication_factor > max {
                return Err(BuildError::AzSpread { max });
            }
        }

        let mut sections: Vec<(u64, u32)> =
            Vec::with_capacity(endpoints.len() * SECTIONS_PER_ENDPOINT);
        let mut key = String::new();
        for (idx, e) in endpoints.iter().enumerate() {
            for i in 1..=SECTIONS_PER_ENDPOINT {
                key.clear();
                key.push_str(&e.address);
                // Writing into a String cannot fail.
                let _ = write!(key, ":{i}");
                sections.push((xxhash64(key.as_bytes()), idx as u32));
            }
        }
        // Thanos sorts by hash only (unstable); ties only arise between duplicate
        // addresses, which then place identically, so break them by index for determinism.
        sections.sort_unstable();

        let replicas = compute_replicas(&sections, &zone_of, zones, replication_factor)?;
        Ok(Self {
            hashes: sections.iter().map(|s| s.0).collect(),
            replicas,
            replication_factor,
        })
    }

    /// Index of the endpoint holding replica `n` (< replication factor) of `hash`.
    #[inline]
    pub(crate) fn get_n(&self, hash: u64, n: usize) -> Option<u32> {
        if n >= self.replication_factor {
            return None;
        }
        let mut i = self.hashes.partition_point(|&h| h < hash);
        if i == self.hashes.len() {
            i = 0;
        }
        self.replicas.get(i * self.replication_factor + n).copied()
    }

    /// Number of sections (for tests).
    #[cfg(test)]
    pub(crate) fn sections(&self) -> usize {
        self.hashes.len()
    }
}

impl std::fmt::Debug for Ketama {
    // Summarised: the section tables hold thousands of entries.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ketama")
            .field("sections", &self.hashes.len())
            .field("replication_factor", &self.replication_factor)
            .finish()
    }
}

/// Most replicas the even-spread rule can ever choose. A candidate is taken only if
/// its zone is among the least used, so every zone caps at `min(size, smallest + 1)`;
/// asking for more makes Thanos's walk spin forever, so we refuse instead.
fn max_spread_replicas(zone_of: &[usize], zones: usize) -> usize {
    let mut sizes = vec![0usize; zones];
    for &z in zone_of {
        sizes[z] += 1;
    }
    let smallest = sizes.iter().copied().min().unwrap_or(0);
    sizes.iter().map(|&s| s.min(smallest + 1)).sum()
}

fn compute_replicas(
    sections: &[(u64, u32)],
    zone_of: &[usize],
    zones: usize,
    replication_factor: usize,
) -> Result<Vec<u32>, BuildError> {
    let total = sections.len();
    let mut out = Vec::with_capacity(total * replication_factor);
    let mut chosen: Vec<u32> = Vec::with_capacity(replication_factor);
    let mut per_zone = vec![0usize; zones];
    // Feasibility was checked, so a walk ends within `replication_factor` laps; the
    // bound only guards against a logic error turning into a hang.
    let max_steps = total.saturating_mul(replication_factor + 1);
    for start in 0..total {
        chosen.clear();
        per_zone.iter_mut().for_each(|c| *c = 0);
        let mut j = start;
        let mut steps = 0;
        while chosen.len() < replication_factor {
            if steps > max_steps {
                return Err(BuildError::AzSpread { max: chosen.len() });
            }
            let endpoint = sections[j].1;
            if !chosen.contains(&endpoint) {
                let z = zone_of[endpoint as usize];
                let least = per_zone.iter().copied().min().unwrap_or(0);
                let crowded = zones > 1 && per_zone[z] > 0 && per_zone[z] > least;
                if !crowded {
                    chosen.push(endpoint);
                    per_zone[z] += 1;
                }
            }
            j += 1;
            if j == total {
                j = 0;
            }
            steps += 1;
        }
        out.extend_from_slice(&chosen);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(list: &[(&str, &str)]) -> Vec<Endpoint> {
        list.iter()
            .map(|(a, z)| Endpoint {
                address: a.to_string(),
                az: z.to_string(),
            })
            .collect()
    }

    #[test]
    fn sections_and_lookup_wrap() {
        let e = eps(&[("a:1", ""), ("b:1", "")]);
        let k = Ketama::new(&e, 2).unwrap();
        assert_eq!(k.sections(), 2000);
        // A hash above every section wraps to the first section.
        assert_eq!(k.get_n(u64::MAX, 0), k.get_n(0, 0));
        assert!(k.get_n(0, 2).is_none());
    }

    #[test]
    fn first_section_hash_matches_definition() {
        let e = eps(&[("node-0:10901", "")]);
        let k = Ketama::new(&e, 1).unwrap();
        let mut expected: Vec<u64> = (1..=1000)
            .map(|i| xxhash64(format!("node-0:10901:{i}").as_bytes()))
            .collect();
        expected.sort_unstable();
        assert_eq!(k.hashes, expected);
    }

    #[test]
    fn too_few_endpoints() {
        let e = eps(&[("a", "")]);
        assert_eq!(Ketama::new(&e, 2).unwrap_err(), BuildError::TooFewEndpoints);
    }

    #[test]
    fn unbalanced_zones_refused_instead_of_hanging() {
        // Zone x has 1 endpoint, y and z 3 each: at most 1 + 2 + 2 = 5 replicas.
        let e = eps(&[
            ("x1", "x"),
            ("y1", "y"),
            ("y2", "y"),
            ("y3", "y"),
            ("z1", "z"),
            ("z2", "z"),
            ("z3", "z"),
        ]);
        assert!(Ketama::new(&e, 5).is_ok());
        assert_eq!(
            Ketama::new(&e, 6).unwrap_err(),
            BuildError::AzSpread { max: 5 }
        );
    }
}
