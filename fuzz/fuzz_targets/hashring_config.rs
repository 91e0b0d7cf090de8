//! Fuzzes the `hashrings.json` parser: it never panics; what parses serializes back to JSON that
//! parses to the same configuration; and when the rings build (hashmod and ketama, replication
//! factors 1 to 3), lookups answer an endpoint of the ring or a lookup error, never a panic.
#![no_main]

use hashring::{locate, parse_config, xxhash64, Algorithm, LookupError, Multiring};
use libfuzzer_sys::fuzz_target;

/// Ketama builds 1000 points per endpoint: bigger rings only slow the fuzzer down.
const MAX_ENDPOINTS: usize = 64;

fn lookups(m: &Multiring, configs: &[hashring::HashringConfig], seed: u64) {
    let rf = m.replication_factor();
    let mut tenants: Vec<&str> = configs
        .iter()
        .flat_map(|c| c.tenants.iter().map(String::as_str))
        .take(8)
        .collect();
    tenants.extend(["", "default-tenant", "team-a"]);
    for (i, tenant) in tenants.iter().enumerate() {
        let id = match m.ring_for_tenant(tenant) {
            Ok(id) => id,
            Err(LookupError::NoMatchingHashring { .. }) => continue,
            Err(e) => panic!("ring_for_tenant({tenant:?}): unexpected {e}"),
        };
        let ring = m.ring(id).expect("id of this multiring");
        assert!(ring.matches_tenant(tenant));
        assert_eq!(
            m.endpoints_for_tenant(tenant).expect("tenant has a ring"),
            ring.endpoints()
        );
        let hash = xxhash64(&seed.wrapping_add(i as u64).to_le_bytes());
        for n in 0..=rf {
            match m.get_n(id, hash, n) {
                Ok(e) => {
                    assert!(n < rf, "replica {n} answered with replication factor {rf}");
                    assert!(ring.endpoints().contains(e), "endpoint outside its ring");
                    assert_eq!(m.get_n(id, hash, n).ok(), Some(e), "lookups are pure");
                }
                Err(LookupError::ReplicaOutOfRange { .. }) => assert!(n >= rf),
                Err(LookupError::InsufficientNodes { have, want }) => {
                    assert_eq!(have, ring.endpoints().len());
                    assert!(want > have);
                }
                Err(e) => panic!("get_n({n}): unexpected {e}"),
            }
        }
        let labels = [("__name__".to_owned(), format!("m{seed}"))];
        let _ = locate(m, tenant, &labels);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(configs) = parse_config(data) else {
        return;
    };
    assert!(!configs.is_empty());
    let json = serde_json::to_vec(&configs).expect("configs serialize");
    let back = parse_config(&json).unwrap_or_else(|e| {
        panic!(
            "serialized config does not parse: {e}\n{}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(back, configs, "parse -> serialize -> parse");

    let endpoints: usize = configs.iter().map(|c| c.endpoints.len()).sum();
    if endpoints > MAX_ENDPOINTS {
        return;
    }
    let seed = xxhash64(data);
    for algorithm in [Algorithm::Hashmod, Algorithm::Ketama] {
        for rf in 1..=3 {
            if let Ok(m) = Multiring::new(&configs, algorithm, rf) {
                assert_eq!(m.replication_factor(), rf);
                assert_eq!(m.rings().len(), configs.len());
                assert!(m.nodes() >= 1 && m.nodes() <= endpoints);
                lookups(&m, &configs, seed);
            }
        }
    }
    assert!(Multiring::new(&configs, Algorithm::Hashmod, 0).is_err());
});
