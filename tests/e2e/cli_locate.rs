//! `ringest hashring locate` (RF 3, ketama by default) against the `hashring` crate and against the
//! placement vectors derived from Thanos's algorithm (`hashring/tests/vectors/placement.jsonl`):
//! one answer line per input line, in order; `{"hashring", "endpoints"}` for a placeable series,
//! `{"error"}` naming the problem for a line that is not JSON, a line of the wrong shape or a tenant
//! no ring serves, a replica the ring cannot hold; exit code 0. A missing or invalid hashrings file
//! is a non-zero exit naming the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::support::ringest_bin;
use serde_json::{json, Value};
use testkit::prelude::*;

const RINGS: &str = include_str!("../../hashring/tests/vectors/rings.json");
const PLACEMENT: &str = include_str!("../../hashring/tests/vectors/placement.jsonl");

/// A vector ring's endpoints as they appear in a hashrings file (objects when an AZ is set).
fn vector_endpoints(ring: &str) -> Value {
    let rings: Value = serde_json::from_str(RINGS).unwrap();
    let r = rings
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == ring)
        .unwrap_or_else(|| panic!("no vector ring {ring}"));
    assert_eq!(r["replication_factor"], 3, "{ring}: vectors are not RF 3");
    Value::Array(
        r["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| match e.get("az") {
                Some(az) => json!({"address": e["address"], "az": az}),
                None => e["address"].clone(),
            })
            .collect(),
    )
}

/// A placement vector: tenant, labels, expected replicas.
struct Case {
    ring: String,
    tenant: String,
    labels: BTreeMap<String, String>,
    replicas: Vec<String>,
}

fn vector_cases(ring: &str, tenant_ok: impl Fn(&str) -> bool) -> Vec<Case> {
    PLACEMENT
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        // Cases without labels give a raw hash, which a series cannot express.
        .filter(|c| c["labels"].is_array())
        .filter(|c| c["ring"] == ring && tenant_ok(c["tenant"].as_str().unwrap()))
        .map(|c| {
            let mut labels = BTreeMap::new();
            for pair in c["labels"].as_array().unwrap() {
                let (n, v) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
                assert!(
                    labels.insert(n.to_owned(), v.to_owned()).is_none(),
                    "vector with a duplicate label: {c}"
                );
            }
            Case {
                ring: ring.to_owned(),
                tenant: c["tenant"].as_str().unwrap().to_owned(),
                labels,
                replicas: c["replicas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect(),
            }
        })
        .collect()
}

/// What one input line should produce.
enum Want {
    /// The vector's ring name and replicas.
    Vector(String, Vec<String>),
    /// Whatever the crate computes (ring name checked against this).
    Crate(&'static str),
    /// An error containing every one of these.
    Error(&'static [&'static str]),
}

const ARGS: [&str; 5] = [
    "hashring",
    "locate",
    "--receive.replication-factor",
    "3",
    "--receive.hashrings-algorithm",
];

fn locate(file: &Path, input: &str) -> Finished {
    let file = file.to_string_lossy();
    let mut args = ARGS.to_vec();
    args.extend(["ketama", "--receive.hashrings-file", &file]);
    run_to_exit(
        ringest_bin(),
        &args,
        input.as_bytes(),
        None,
        Duration::from_secs(20),
    )
}

/// Runs locate on `lines` with `rings` as the hashrings file and checks every answer.
fn check(dir: &Path, name: &str, rings: &Value, lines: &[(String, Want)]) -> usize {
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(rings).unwrap()).unwrap();
    let configs = hashring::parse_config(&std::fs::read(&file).unwrap()).unwrap();
    let multiring = hashring::Multiring::new(&configs, hashring::Algorithm::Ketama, 3).unwrap();

    let input: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
    let out = locate(&file, &input);
    assert!(
        out.status.success(),
        "{name}: exit {}; stderr: {}",
        out.status,
        out.stderr
    );
    let answers: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        answers.len(),
        lines.len(),
        "{name}: one answer per input line expected; stdout:\n{}",
        out.stdout
    );
    let mut vectors = 0;
    for ((line, want), answer) in lines.iter().zip(&answers) {
        let got: Value = serde_json::from_str(answer)
            .unwrap_or_else(|e| panic!("{name}: answer to {line} is not JSON ({e}): {answer}"));
        let obj = got
            .as_object()
            .unwrap_or_else(|| panic!("{name}: {answer}"));
        match want {
            Want::Error(words) => {
                assert_eq!(obj.len(), 1, "{name}: {line} -> {answer}");
                let msg = obj["error"].as_str().unwrap_or_else(|| panic!("{answer}"));
                for w in *words {
                    assert!(
                        msg.contains(w),
                        "{name}: error for {line} does not contain {w:?}: {msg}"
                    );
                }
            }
            Want::Vector(..) | Want::Crate(_) => {
                let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
                assert_eq!(
                    keys,
                    BTreeSet::from(["endpoints", "hashring"]),
                    "{name}: {line} -> {answer}"
                );
                assert!(
                    answer.starts_with("{\"hashring\":"),
                    "{name}: hashring is not the first key: {answer}"
                );
                let ring = obj["hashring"].as_str().unwrap();
                let endpoints: Vec<String> = obj["endpoints"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.as_str().unwrap().to_owned())
                    .collect();
                let distinct: BTreeSet<&String> = endpoints.iter().collect();
                assert!(
                    endpoints.len() == 3 && distinct.len() == 3,
                    "{name}: {line}: not 3 distinct endpoints: {answer}"
                );
                // The crate's placement for the same file.
                let input: Value = serde_json::from_str(line).unwrap();
                let labels: Vec<(String, String)> = input["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                let p = hashring::locate(&multiring, input["tenant"].as_str().unwrap(), &labels)
                    .unwrap();
                assert_eq!(
                    (ring, &endpoints),
                    (p.hashring.as_str(), &p.endpoints),
                    "{name}: {line}: CLI and hashring::locate disagree"
                );
                match want {
                    Want::Vector(vring, replicas) => {
                        assert_eq!(
                            (ring, &endpoints),
                            (vring.as_str(), replicas),
                            "{name}: {line}: CLI disagrees with the Thanos-derived vector"
                        );
                        vectors += 1;
                    }
                    Want::Crate(r) => assert_eq!(ring, *r, "{name}: {line}"),
                    Want::Error(_) => unreachable!(),
                }
            }
        }
    }
    eprintln!(
        "{name}: {} lines, {vectors} matched placement vectors",
        lines.len()
    );
    vectors
}

fn case_line(c: &Case) -> (String, Want) {
    (
        json!({"tenant": c.tenant, "labels": c.labels}).to_string(),
        Want::Vector(c.ring.clone(), c.replicas.clone()),
    )
}

fn series_line(tenant: &str, i: usize, want: Want) -> (String, Want) {
    (
        json!({"tenant": tenant, "labels": {"__name__": "up", "job": "node", "instance": format!("10.1.0.{i}:9100")}})
            .to_string(),
        want,
    )
}

#[test]
fn locate_matches_crate_and_thanos_vectors() {
    let tmp = test_dir("cli-locate");
    let dir = tmp.path();

    // File 1: a glob ring (team-?), an exact ring with AZs, a catch-all. Each is a vector ring, and
    // each gets the vector cases whose tenant it serves.
    let rings = json!([
        {"hashring": "ketama-3-rf3", "tenant_matcher_type": "glob", "tenants": ["team-?"],
         "endpoints": vector_endpoints("ketama-3-rf3")},
        {"hashring": "ketama-az-6-rf3", "tenants": ["default-tenant"],
         "endpoints": vector_endpoints("ketama-az-6-rf3")},
        {"hashring": "ketama-6-rf3", "endpoints": vector_endpoints("ketama-6-rf3")},
    ]);
    let glob = vector_cases("ketama-3-rf3", |t| t.starts_with("team-") && t.len() == 6);
    let az = vector_cases("ketama-az-6-rf3", |t| t == "default-tenant");
    let catch_all = vector_cases("ketama-6-rf3", |t| t.is_empty());
    assert!(glob.len() >= 20 && az.len() >= 10 && catch_all.len() >= 10);
    let mut lines: Vec<(String, Want)> = Vec::new();
    let mut vector_lines = 0;
    for (k, c) in glob.iter().chain(&az).chain(&catch_all).enumerate() {
        lines.push(case_line(c));
        vector_lines += 1;
        match k % 9 {
            0 => lines.push((
                "this is not JSON".into(),
                Want::Error(&["invalid input line"]),
            )),
            3 => lines.push(series_line("team-zz", k, Want::Crate("ketama-6-rf3"))),
            5 => lines.push(series_line("team-q", k, Want::Crate("ketama-3-rf3"))),
            7 => lines.push((
                json!({"tenant": "x", "labels": ["not", "a", "map"]}).to_string(),
                Want::Error(&["invalid input line", "map"]),
            )),
            _ => {}
        }
    }
    lines.push((
        r#"{"labels": {"__name__": "up"}}"#.into(),
        Want::Error(&["invalid input line", "tenant"]),
    ));
    let matched = check(dir, "glob-and-catch-all", &rings, &lines);
    assert_eq!(matched, vector_lines);

    // File 2: an exact hashmod ring and no catch-all, so some tenant has no ring.
    let rings = json!([
        {"hashring": "hashmod-3", "algorithm": "hashmod",
         "tenants": ["default-tenant", "team-a", "team-b"],
         "endpoints": vector_endpoints("hashmod-3")},
    ]);
    let hashmod = vector_cases("hashmod-3", |t| !t.is_empty());
    assert!(hashmod.len() >= 30);
    let mut lines: Vec<(String, Want)> = Vec::new();
    for (k, c) in hashmod.iter().enumerate() {
        lines.push(case_line(c));
        if k % 10 == 4 {
            lines.push(series_line(
                "nobody",
                k,
                Want::Error(&["no matching hashring", "nobody"]),
            ));
        }
        if k % 10 == 8 {
            lines.push((
                "{\"tenant\": \"team-a\", ".into(),
                Want::Error(&["invalid input line"]),
            ));
        }
    }
    let matched = check(dir, "exact-no-catch-all", &rings, &lines);
    assert_eq!(matched, hashmod.len());

    // File 3: a hashmod ring with fewer endpoints than the replication factor. Thanos's hashmod
    // refuses replica 2 of 2 endpoints ("insufficient nodes"), per series, not per file.
    let rings = json!([
        {"hashring": "small", "algorithm": "hashmod", "endpoints": ["a:10901", "b:10901"]},
    ]);
    let file = dir.join("small.json");
    std::fs::write(&file, serde_json::to_vec(&rings).unwrap()).unwrap();
    let out = locate(
        &file,
        &(0..3)
            .map(|i| series_line("t", i, Want::Crate("small")).0 + "\n")
            .collect::<String>(),
    );
    assert!(out.status.success(), "small ring: {out:?}");
    let answers: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(answers.len(), 3, "small ring: {}", out.stdout);
    for a in answers {
        let v: Value = serde_json::from_str(a).unwrap();
        assert_eq!(
            v,
            json!({"error": "insufficient nodes; have 2, want 3"}),
            "small ring"
        );
    }
}

#[test]
fn locate_with_invalid_hashrings_file_fails_naming_it() {
    let tmp = test_dir("cli-locate-invalid");
    let cases: [(&str, &[u8], &str); 3] = [
        ("garbage", b"garbage", "not valid JSON"),
        ("object", b"{\"hashring\": \"x\"}", "JSON array"),
        (
            "ketama-too-small",
            br#"[{"hashring": "x", "endpoints": ["a:1", "b:1"]}]"#,
            "replication factor",
        ),
    ];
    for (name, contents, keyword) in cases {
        let file = tmp.path().join(format!("{name}.json"));
        std::fs::write(&file, contents).unwrap();
        let out = locate(
            &file,
            "{\"tenant\": \"a\", \"labels\": {\"__name__\": \"up\"}}\n",
        );
        assert!(!out.status.success(), "{name}: exit 0: {out:?}");
        assert!(
            out.stderr.contains(&*file.to_string_lossy()) && out.stderr.contains(keyword),
            "{name}: stderr does not name the file and {keyword:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{name}: answers: {}", out.stdout);
    }
}

#[test]
fn locate_with_missing_hashrings_file_fails_naming_it() {
    let tmp = test_dir("cli-locate-missing");
    let file = tmp.path().join("no-such-hashrings.json");
    let out = locate(
        &file,
        "{\"tenant\": \"a\", \"labels\": {\"__name__\": \"up\"}}\n",
    );
    assert!(
        !out.status.success(),
        "exit 0 without a hashrings file: {out:?}"
    );
    assert!(
        out.stderr.contains(&*file.to_string_lossy()),
        "stderr does not name {}: {}",
        file.display(),
        out.stderr
    );
    assert!(
        out.stdout.is_empty(),
        "answers without a ring: {}",
        out.stdout
    );
}
