//! Property tests of placement and configuration parsing.

use std::collections::{BTreeMap, HashMap, HashSet};

use hashring::{
    parse_config, Algorithm, ConfigError, EndpointConfig, HashringConfig, Multiring,
    ShuffleShardingConfig, ShuffleShardingOverride, TenantMatcher,
};
use proptest::prelude::*;

fn endpoint(address: String, az: &str) -> EndpointConfig {
    EndpointConfig {
        address,
        az: az.to_owned(),
        capnproto_address: None,
    }
}

fn ring(endpoints: Vec<EndpointConfig>, algorithm: Algorithm, rf: usize) -> Multiring {
    let config = HashringConfig {
        hashring: "r".into(),
        endpoints,
        algorithm: Some(algorithm),
        ..HashringConfig::default()
    };
    Multiring::new(&[config], algorithm, rf).unwrap()
}

fn replicas(m: &Multiring, hash: u64) -> Vec<String> {
    let id = m.ring_for_tenant("t").unwrap();
    (0..m.replication_factor())
        .map(|n| m.get_n(id, hash, n).unwrap().address.clone())
        .collect()
}

/// Distinct endpoint addresses in arbitrary order.
fn addresses(min: usize, max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::hash_set("[a-z]{1,6}-[0-9]{1,2}:[0-9]{4,5}", min..=max)
        .prop_map(|s| s.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Replicas of a series land on distinct endpoints (ketama, any hash).
    #[test]
    fn ketama_replicas_are_distinct(
        addrs in addresses(1, 8),
        rf in 1usize..=4,
        hashes in prop::collection::vec(any::<u64>(), 1..50),
    ) {
        prop_assume!(rf <= addrs.len());
        let m = ring(addrs.into_iter().map(|a| endpoint(a, "")).collect(), Algorithm::Ketama, rf);
        for h in hashes {
            let r = replicas(&m, h);
            prop_assert_eq!(r.iter().collect::<HashSet<_>>().len(), rf);
        }
    }

    /// hashmod: replica n is `(hash + n) % len` over address-sorted endpoints, and
    /// replicas are distinct unless `hash + n` wraps past 2^64 (as in Go).
    #[test]
    fn hashmod_is_hash_plus_n_mod_len(
        addrs in addresses(1, 9),
        rf in 1usize..=3,
        hashes in prop::collection::vec(any::<u64>(), 1..50),
    ) {
        prop_assume!(rf <= addrs.len());
        let mut sorted = addrs.clone();
        sorted.sort();
        let m = ring(addrs.into_iter().map(|a| endpoint(a, "")).collect(), Algorithm::Hashmod, rf);
        for h in hashes.into_iter().chain([u64::MAX, u64::MAX - 1, 0]) {
            let r = replicas(&m, h);
            for (n, got) in r.iter().enumerate() {
                let want = &sorted[(h.wrapping_add(n as u64) % sorted.len() as u64) as usize];
                prop_assert_eq!(got, want);
            }
            if h <= u64::MAX - rf as u64 {
                prop_assert_eq!(r.iter().collect::<HashSet<_>>().len(), rf);
            }
        }
    }

    /// With zones, replicas spread as evenly as the zones allow: a zone holds fewer
    /// than (most used zone - 1) replicas only when it has no endpoint left.
    #[test]
    fn ketama_spreads_replicas_across_zones(
        zone_sizes in prop::collection::vec(1usize..=4, 2..=4),
        rf in 1usize..=6,
        hashes in prop::collection::vec(any::<u64>(), 1..40),
    ) {
        let mut eps = Vec::new();
        let mut zone_of = HashMap::new();
        for (z, &size) in zone_sizes.iter().enumerate() {
            for i in 0..size {
                let a = format!("z{z}-n{i}:10901");
                zone_of.insert(a.clone(), z);
                eps.push(endpoint(a, &format!("zone-{z}")));
            }
        }
        let smallest = *zone_sizes.iter().min().unwrap();
        let max: usize = zone_sizes.iter().map(|&s| s.min(smallest + 1)).sum();
        let config = HashringConfig { endpoints: eps, ..HashringConfig::default() };
        let built = Multiring::new(&[config], Algorithm::Ketama, rf);
        if rf > zone_sizes.iter().sum() {
            let too_few = matches!(built, Err(ConfigError::TooFewEndpoints { .. }));
            prop_assert!(too_few);
            return Ok(());
        }
        if rf > max {
            // Thanos would spin forever here; we refuse up front.
            let refused = matches!(built, Err(ConfigError::AzSpreadImpossible { .. }));
            prop_assert!(refused);
            return Ok(());
        }
        let m = built.unwrap();
        for h in hashes {
            let r = replicas(&m, h);
            prop_assert_eq!(r.iter().collect::<HashSet<_>>().len(), rf);
            let mut per_zone = vec![0usize; zone_sizes.len()];
            for a in &r {
                per_zone[zone_of[a]] += 1;
            }
            let most = *per_zone.iter().max().unwrap();
            for (z, &count) in per_zone.iter().enumerate() {
                prop_assert!(
                    count + 1 >= most || count == zone_sizes[z],
                    "zones {:?} replicas {:?}", zone_sizes, per_zone
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Adding one endpoint to N moves about 1/(N+1) of the series, all onto the newcomer.
    #[test]
    fn ketama_growth_moves_about_one_over_n_plus_one(
        addrs in addresses(3, 13),
        seed in any::<u64>(),
    ) {
        let (new, old) = addrs.split_last().unwrap();
        let n = old.len();
        let before = ring(old.iter().map(|a| endpoint(a.clone(), "")).collect(), Algorithm::Ketama, 1);
        let after = ring(addrs.iter().map(|a| endpoint(a.clone(), "")).collect(), Algorithm::Ketama, 1);
        let (b, a) = (before.ring_for_tenant("t").unwrap(), after.ring_for_tenant("t").unwrap());
        let samples = 20_000;
        let mut moved = 0;
        let mut x = seed;
        for _ in 0..samples {
            // splitmix64: cheap, well-spread series hashes.
            x = x.wrapping_add(0x9e3779b97f4a7c15);
            let mut h = x;
            h = (h ^ (h >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            h = (h ^ (h >> 27)).wrapping_mul(0x94d049bb133111eb);
            h ^= h >> 31;
            let was = &before.get_n(b, h, 0).unwrap().address;
            let is = &after.get_n(a, h, 0).unwrap().address;
            if was != is {
                prop_assert_eq!(is, new);
                moved += 1;
            }
        }
        let frac = moved as f64 / samples as f64;
        let expected = 1.0 / (n + 1) as f64;
        prop_assert!(
            (frac - expected).abs() <= 0.25 * expected + 0.005,
            "moved {frac:.4}, expected {expected:.4} for {n} -> {} endpoints", n + 1
        );
    }
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.:/-]{0,12}"
}

fn endpoint_config() -> impl Strategy<Value = EndpointConfig> {
    (
        "[a-z0-9.-]{1,20}:[0-9]{1,5}",
        "[a-z0-9-]{0,6}",
        prop::option::of("[a-z0-9.-]{1,10}:[0-9]{1,5}"),
    )
        .prop_map(|(address, az, capnproto_address)| EndpointConfig {
            address,
            az,
            capnproto_address,
        })
}

fn matcher() -> impl Strategy<Value = TenantMatcher> {
    prop_oneof![Just(TenantMatcher::Exact), Just(TenantMatcher::Glob)]
}

fn hashring_config() -> impl Strategy<Value = HashringConfig> {
    (
        name(),
        prop::collection::vec("[a-z*?-]{0,8}", 0..4),
        matcher(),
        prop::collection::vec(endpoint_config(), 1..5),
        prop::option::of(prop_oneof![
            Just(Algorithm::Hashmod),
            Just(Algorithm::Ketama)
        ]),
        prop::collection::btree_map("[a-z_]{1,8}", ".{0,8}", 0..3),
        (-3i64..=0, any::<i64>(), any::<bool>()),
        prop::collection::vec(
            (
                any::<i64>(),
                prop::collection::vec("[a-z]{1,4}", 0..3),
                matcher(),
            ),
            0..2,
        ),
    )
        .prop_map(
            |(hashring, tenants, tenant_matcher_type, endpoints, algorithm, labels, s, ov)| {
                HashringConfig {
                    hashring,
                    tenants,
                    tenant_matcher_type,
                    endpoints,
                    algorithm,
                    external_labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                    shuffle_sharding_config: ShuffleShardingConfig {
                        shard_size: s.0,
                        cache_size: s.1,
                        zone_awareness_disabled: s.2,
                        overrides: ov
                            .into_iter()
                            .map(|(shard_size, tenants, tenant_matcher_type)| {
                                ShuffleShardingOverride {
                                    shard_size,
                                    tenants,
                                    tenant_matcher_type,
                                }
                            })
                            .collect(),
                    },
                }
            },
        )
}

proptest! {
    /// Serializing any valid configuration and parsing it back gives it back.
    #[test]
    fn config_round_trip(configs in prop::collection::vec(hashring_config(), 1..4)) {
        let json = serde_json::to_vec(&configs).unwrap();
        prop_assert_eq!(parse_config(&json).unwrap(), configs);
    }

    /// A plain-string endpoint is the same as an object with only an address.
    #[test]
    fn string_endpoint_equals_object(addr in "[a-z0-9.-]{1,20}:[0-9]{1,5}") {
        let s = format!(r#"[{{"endpoints": ["{addr}"]}}]"#);
        let o = format!(r#"[{{"endpoints": [{{"address": "{addr}"}}]}}]"#);
        prop_assert_eq!(parse_config(s.as_bytes()).unwrap(), parse_config(o.as_bytes()).unwrap());
    }
}
