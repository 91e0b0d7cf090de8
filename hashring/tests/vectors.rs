//! Placement, hash and glob vectors derived by `tests/vectors/gen` (Go, with the
//! cespare/xxhash library Thanos uses and Go's own `filepath.Match`).

use hashring::glob::Glob;
use hashring::{
    locate, series_hash, xxhash64, Algorithm, EndpointConfig, HashringConfig, Multiring,
};
use serde_json::Value;

const HASH: &str = include_str!("vectors/hash.json");
const RINGS: &str = include_str!("vectors/rings.json");
const PLACEMENT: &str = include_str!("vectors/placement.jsonl");
const GLOB: &str = include_str!("vectors/glob.jsonl");

fn hex(v: &Value, key: &str) -> u64 {
    u64::from_str_radix(v[key].as_str().unwrap(), 16).unwrap()
}

#[test]
fn hash_vectors() {
    let v: Value = serde_json::from_str(HASH).unwrap();
    assert_eq!(xxhash64(b""), hex(&v, "empty"));
    assert_eq!(xxhash64(b""), 0xef46db3751d8e999);
    assert_eq!(xxhash64(b"abc"), hex(&v, "abc"));
    assert_eq!(xxhash64(b"node-0:10901:1"), hex(&v, "node-0:10901:1"));
    assert_eq!(
        series_hash("tenant-a", [("__name__", "up"), ("job", "node")]),
        hex(&v, "prefix_tenant_a_up")
    );
    // The same input spelled out byte by byte.
    assert_eq!(
        xxhash64(b"tenant-a\xff__name__\xffup\xffjob\xffnode\xff"),
        hex(&v, "prefix_tenant_a_up")
    );
    assert_eq!(
        series_hash("default-tenant", std::iter::empty()),
        hex(&v, "prefix_default_no_lbl")
    );
}

/// One single-ring `Multiring` per vector ring, named like the ring.
fn vector_rings() -> Vec<(String, Multiring)> {
    let rings: Value = serde_json::from_str(RINGS).unwrap();
    rings
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap().to_owned();
            let config = HashringConfig {
                hashring: name.clone(),
                endpoints: r["endpoints"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| EndpointConfig {
                        address: e["address"].as_str().unwrap().to_owned(),
                        az: e["az"].as_str().unwrap_or("").to_owned(),
                        capnproto_address: None,
                    })
                    .collect(),
                algorithm: Some(r["algorithm"].as_str().unwrap().parse().unwrap()),
                ..HashringConfig::default()
            };
            let rf = r["replication_factor"].as_u64().unwrap() as usize;
            // The default algorithm must not matter: every vector ring names its own.
            let m = Multiring::new(&[config], Algorithm::Hashmod, rf).unwrap();
            (name, m)
        })
        .collect()
}

#[test]
fn placement_vectors() {
    let rings = vector_rings();
    let mut checked = 0;
    for line in PLACEMENT.lines() {
        let case: Value = serde_json::from_str(line).unwrap();
        let (_, m) = rings
            .iter()
            .find(|(n, _)| n == case["ring"].as_str().unwrap())
            .unwrap();
        let tenant = case["tenant"].as_str().unwrap();
        let hash: u64 = case["hash"].as_str().unwrap().parse().unwrap();
        let want: Vec<String> = case["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        let id = m.ring_for_tenant(tenant).unwrap();
        let got: Vec<String> = (0..m.replication_factor())
            .map(|n| m.get_n(id, hash, n).unwrap().address.clone())
            .collect();
        assert_eq!(got, want, "{line}");

        if let Some(labels) = case["labels"].as_array() {
            // Shuffle the labels: `locate` must sort them before hashing.
            let mut labels: Vec<(String, String)> = labels
                .iter()
                .map(|l| {
                    (
                        l[0].as_str().unwrap().to_owned(),
                        l[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            assert_eq!(
                series_hash(tenant, labels.iter().map(|(a, b)| (a.as_str(), b.as_str()))),
                hash
            );
            labels.reverse();
            let p = locate(m, tenant, &labels).unwrap();
            assert_eq!(p.endpoints, want, "{line}");
            assert_eq!(p.hashring, case["ring"].as_str().unwrap());
        }
        checked += 1;
    }
    assert_eq!(checked, 360);
}

#[test]
fn glob_vectors_match_go_filepath_match() {
    let mut checked = 0;
    for line in GLOB.lines() {
        let case: Value = serde_json::from_str(line).unwrap();
        let pattern = case["pattern"].as_str().unwrap();
        let name = case["name"].as_str().unwrap();
        let go_err = case["err"].as_bool().unwrap();
        let go_match = case["match"].as_bool().unwrap();
        match Glob::new(pattern) {
            Ok(g) => {
                assert!(!go_err, "Go refuses {pattern:?} but we accept it");
                assert_eq!(g.matches(name), go_match, "{pattern:?} vs {name:?}");
            }
            // The vectors come from Go 1.19, whose Match does not yet check the rest
            // of a pattern after an early mismatch; newer Go (which Thanos uses) and
            // we always refuse a malformed pattern. A match would have seen it all.
            Err(_) => assert!(!go_match, "Go matched malformed {pattern:?} on {name:?}"),
        }
        checked += 1;
    }
    assert!(checked > 3000);
}
