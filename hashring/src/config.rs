//! Thanos `hashrings.json`: types, parsing and validation.
//!
//! Parsing is done by hand over `serde_json::Value` so that it accepts what Go's
//! `encoding/json` accepts for this file: unknown fields are ignored, `null` means
//! "absent", keys match case-insensitively (an exact match wins), and an endpoint is
//! either a string or an object.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::glob::Glob;

/// Placement algorithm of a hashring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Endpoints sorted by address, replica n at `(hash + n) % len`; reshuffles on resize.
    Hashmod,
    /// Consistent hashing with 1000 sections per endpoint and AZ-aware replicas.
    Ketama,
}

impl Algorithm {
    /// The name used in `hashrings.json` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Hashmod => "hashmod",
            Algorithm::Ketama => "ketama",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an algorithm name other than `hashmod` or `ketama`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown hashring algorithm {0:?} (expected \"hashmod\" or \"ketama\")")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hashmod" => Ok(Algorithm::Hashmod),
            "ketama" => Ok(Algorithm::Ketama),
            other => Err(UnknownAlgorithm(other.to_owned())),
        }
    }
}

/// How the `tenants` of a ring are compared with a request's tenant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantMatcher {
    /// Byte-for-byte equality (Thanos default, also for an empty string).
    #[default]
    Exact,
    /// Go `filepath.Match` patterns.
    Glob,
}

/// One endpoint of a ring as written in the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct EndpointConfig {
    /// gRPC address (`host:port`) the router forwards to.
    pub address: String,
    /// Availability zone; only ketama uses it, hashmod refuses it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub az: String,
    /// Cap'n Proto replication address, kept for round-tripping; Ringest does not use it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capnproto_address: Option<String>,
}

impl EndpointConfig {
    /// The Cap'n Proto address Thanos would use: the explicit one, else the host part
    /// of `address` (up to the first `:`) with the default port 19391.
    pub fn effective_capnproto_address(&self) -> String {
        match &self.capnproto_address {
            Some(a) if !a.is_empty() => a.clone(),
            _ => {
                let host = self.address.split(':').next().unwrap_or_default();
                format!("{host}:19391")
            }
        }
    }
}

/// Per-tenant shard size override of shuffle sharding (parsed, not supported yet).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShuffleShardingOverride {
    /// Shard size for the matching tenants.
    pub shard_size: i64,
    /// Tenants the override applies to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// How `tenants` are matched.
    pub tenant_matcher_type: TenantMatcher,
}

/// Shuffle sharding settings; a ring only uses them when `shard_size > 0`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShuffleShardingConfig {
    /// Endpoints per tenant; 0 or less disables shuffle sharding (Thanos semantics).
    pub shard_size: i64,
    /// Size of Thanos's per-tenant sub-ring cache.
    pub cache_size: i64,
    /// Whether shards ignore availability zones.
    pub zone_awareness_disabled: bool,
    /// Per-tenant shard sizes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<ShuffleShardingOverride>,
}

impl ShuffleShardingConfig {
    /// Whether this config turns shuffle sharding on (Thanos: `shard_size > 0`).
    pub fn enabled(&self) -> bool {
        self.shard_size > 0
    }
}

/// One element of the `hashrings.json` array.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HashringConfig {
    /// Ring name, also the `hashring` label of metrics; may be empty.
    pub hashring: String,
    /// Tenants routed to this ring; empty means "every tenant" (catch-all).
    pub tenants: Vec<String>,
    /// How `tenants` are matched.
    pub tenant_matcher_type: TenantMatcher,
    /// Ring members in file order (ketama uses this order; hashmod sorts by address).
    pub endpoints: Vec<EndpointConfig>,
    /// Algorithm for this ring; `None` uses the default given to the router.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// Extra external labels for blocks of tenants on this ring.
    pub external_labels: BTreeMap<String, String>,
    /// Shuffle sharding settings (refused when enabled).
    pub shuffle_sharding_config: ShuffleShardingConfig,
}

/// Names a ring in error messages: its name and position in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingName {
    /// Position in the `hashrings.json` array.
    pub index: usize,
    /// The `hashring` field (possibly empty).
    pub name: String,
}

impl RingName {
    pub(crate) fn new(index: usize, name: &str) -> Self {
        Self {
            index,
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for RingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hashring {:?} (#{})", self.name, self.index)
    }
}

/// Why a hashring configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The bytes are not JSON.
    #[error("hashrings configuration is not valid JSON: {0}")]
    Json(String),
    /// The top level is not an array of objects.
    #[error("hashrings configuration must be a JSON array of hashring objects")]
    NotAnArray,
    /// `[]` or `null`: Thanos refuses an empty file too.
    #[error("hashrings configuration is empty: it must define at least one hashring")]
    Empty,
    /// A field has the wrong JSON type or an impossible value.
    #[error("{ring}: field {field:?}: {reason}")]
    InvalidField {
        /// Offending ring.
        ring: RingName,
        /// Field path inside the ring object.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A ring lists no endpoints.
    #[error("{ring}: no endpoints")]
    NoEndpoints {
        /// Offending ring.
        ring: RingName,
    },
    /// An endpoint has an empty address.
    #[error("{ring}: endpoint #{endpoint}: address must be set")]
    EmptyAddress {
        /// Offending ring.
        ring: RingName,
        /// Position of the endpoint in the ring.
        endpoint: usize,
    },
    /// `algorithm` is neither `hashmod` nor `ketama`.
    #[error("{ring}: unknown algorithm {algorithm:?} (expected \"hashmod\" or \"ketama\")")]
    UnknownAlgorithm {
        /// Offending ring.
        ring: RingName,
        /// The value found.
        algorithm: String,
    },
    /// `tenant_matcher_type` is neither `exact` nor `glob`.
    #[error("{ring}: unknown tenant_matcher_type {matcher:?} (expected \"exact\" or \"glob\")")]
    UnknownTenantMatcher {
        /// Offending ring.
        ring: RingName,
        /// The value found.
        matcher: String,
    },
    /// A glob tenant pattern is malformed (Go `filepath.ErrBadPattern`).
    #[error("{ring}: invalid tenant glob pattern {pattern:?}: syntax error in pattern")]
    BadGlob {
        /// Offending ring.
        ring: RingName,
        /// The pattern.
        pattern: String,
    },
    /// Shuffle sharding is configured; Ringest cannot place like Thanos yet.
    #[error("{ring}: shuffle sharding is not supported yet (shuffle_sharding_config.shard_size = {shard_size})")]
    ShuffleShardingUnsupported {
        /// Offending ring.
        ring: RingName,
        /// Configured shard size.
        shard_size: i64,
    },
    /// hashmod with an `az` set: Thanos refuses this combination.
    #[error("{ring}: hashmod algorithm does not support AZ aware hashring configuration; use ketama or remove the az fields")]
    HashmodWithAz {
        /// Offending ring.
        ring: RingName,
    },
    /// ketama needs at least as many endpoints as the replication factor.
    #[error("{ring}: ketama needs at least as many endpoints ({endpoints}) as the replication factor ({replication_factor})")]
    TooFewEndpoints {
        /// Offending ring.
        ring: RingName,
        /// Endpoints in the ring.
        endpoints: usize,
        /// Requested replication factor.
        replication_factor: usize,
    },
    /// AZ spreading cannot place this many replicas (Thanos would loop forever).
    #[error("{ring}: availability zones are too unbalanced to spread {replication_factor} replicas evenly (at most {max} possible)")]
    AzSpreadImpossible {
        /// Offending ring.
        ring: RingName,
        /// Requested replication factor.
        replication_factor: usize,
        /// Most replicas the even-spread rule can place.
        max: usize,
    },
    /// Replication factor 0 stores nothing.
    #[error("replication factor must be at least 1")]
    ZeroReplicationFactor,
}

/// Parses a Thanos `hashrings.json` document and validates every ring.
pub fn parse_config(json: &[u8]) -> Result<Vec<HashringConfig>, ConfigError> {
    let value: Value =
        serde_json::from_slice(json).map_err(|e| ConfigError::Json(e.to_string()))?;
    let items = match value {
        Value::Null => return Err(ConfigError::Empty),
        Value::Array(items) => items,
        _ => return Err(ConfigError::NotAnArray),
    };
    if items.is_empty() {
        return Err(ConfigError::Empty);
    }
    let mut configs = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let config = parse_ring(index, item)?;
        config.validate(index)?;
        configs.push(config);
    }
    Ok(configs)
}

impl HashringConfig {
    /// Checks what can be checked without knowing the default algorithm or the
    /// replication factor; `index` is the ring's position, for error messages.
    pub fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let ring = || RingName::new(index, &self.hashring);
        if self.endpoints.is_empty() {
            return Err(ConfigError::NoEndpoints { ring: ring() });
        }
        if let Some(endpoint) = self.endpoints.iter().position(|e| e.address.is_empty()) {
            return Err(ConfigError::EmptyAddress {
                ring: ring(),
                endpoint,
            });
        }
        if self.tenant_matcher_type == TenantMatcher::Glob {
            for pattern in &self.tenants {
                if Glob::new(pattern).is_err() {
                    return Err(ConfigError::BadGlob {
                        ring: ring(),
                        pattern: pattern.clone(),
                    });
                }
            }
        }
        if self.shuffle_sharding_config.enabled() {
            return Err(ConfigError::ShuffleShardingUnsupported {
                ring: ring(),
                shard_size: self.shuffle_sharding_config.shard_size,
            });
        }
        Ok(())
    }
}

/// Field lookup the way Go's `encoding/json` does it: exact key first, then any key
/// equal ignoring ASCII case; `null` counts as absent.
fn field<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    let found = obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    });
    found.filter(|v| !v.is_null())
}

/// Context for type errors inside one ring.
struct Ctx<'a> {
    index: usize,
    name: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidField {
            ring: RingName::new(self.index, self.name),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    fn string(&self, v: Option<&Value>, field: &str) -> Result<String, ConfigError> {
        match v {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(self.err(field, format!("expected a string, got {}", kind(other)))),
        }
    }

    fn strings(&self, v: Option<&Value>, field: &str) -> Result<Vec<String>, ConfigError> {
        match v {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    // Go leaves a null array element as the zero value.
                    Value::Null => Ok(String::new()),
                    other => Err(self.err(
                        &format!("{field}[{i}]"),
                        format!("expected a string, got {}", kind(other)),
                    )),
                })
                .collect(),
            Some(other) => Err(self.err(
                field,
                format!("expected an array of strings, got {}", kind(other)),
            )),
        }
    }

    fn int(&self, v: Option<&Value>, field: &str) -> Result<i64, ConfigError> {
        match v {
            None => Ok(0),
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| self.err(field, format!("expected an integer, got {n}"))),
            Some(other) => {
                Err(self.err(field, format!("expected an integer, got {}", kind(other))))
            }
        }
    }

    fn bool(&self, v: Option<&Value>, field: &str) -> Result<bool, ConfigError> {
        match v {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.err(field, format!("expected a boolean, got {}", kind(other)))),
        }
    }

    fn object<'v>(
        &self,
        v: Option<&'v Value>,
        field: &str,
    ) -> Result<Option<&'v Map<String, Value>>, ConfigError> {
        match v {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(other) => Err(self.err(field, format!("expected an object, got {}", kind(other)))),
        }
    }

    fn matcher(&self, v: Option<&Value>, field: &str) -> Result<TenantMatcher, ConfigError> {
        match self.string(v, field)?.as_str() {
            "" | "exact" => Ok(TenantMatcher::Exact),
            "glob" => Ok(TenantMatcher::Glob),
            other => Err(ConfigError::UnknownTenantMatcher {
                ring: RingName::new(self.index, self.name),
                matcher: other.to_owned(),
            }),
        }
    }
}

/// JSON type name for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_ring(index: usize, item: &Value) -> Result<HashringConfig, ConfigError> {
    let obj = match item {
        Value::Object(o) => o,
        other => {
            return Err(ConfigError::InvalidField {
                ring: RingName::new(index, ""),
                field: String::new(),
                reason: format!("expected a hashring object, got {}", kind(other)),
            })
        }
    };
    // The name first, so that later errors can mention it.
    let name = match field(obj, "hashring") {
        Some(Value::String(s)) => s.as_str(),
        _ => "",
    };
    let cx = Ctx { index, name };
    let hashring = cx.string(field(obj, "hashring"), "hashring")?;
    let tenants = cx.strings(field(obj, "tenants"), "tenants")?;
    let tenant_matcher_type =
        cx.matcher(field(obj, "tenant_matcher_type"), "tenant_matcher_type")?;

    let endpoints = match field(obj, "endpoints") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, e)| parse_endpoint(&cx, i, e))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(cx.err(
                "endpoints",
                format!("expected an array, got {}", kind(other)),
            ))
        }
    };

    let algorithm = match cx.string(field(obj, "algorithm"), "algorithm")?.as_str() {
        "" => None,
        s => Some(
            s.parse::<Algorithm>()
                .map_err(|e| ConfigError::UnknownAlgorithm {
                    ring: RingName::new(index, name),
                    algorithm: e.0,
                })?,
        ),
    };

    let mut external_labels = BTreeMap::new();
    if let Some(labels) = cx.object(field(obj, "external_labels"), "external_labels")? {
        for (k, v) in labels {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => {
                    return Err(cx.err(
                        &format!("external_labels.{k}"),
                        format!("expected a string, got {}", kind(other)),
                    ))
                }
            };
            external_labels.insert(k.clone(), v);
        }
    }

    let shuffle_sharding_config = match cx.object(
        field(obj, "shuffle_sharding_config"),
        "shuffle_sharding_config",
    )? {
        None => ShuffleShardingConfig::default(),
        Some(s) => parse_shuffle(&cx, s)?,
    };

    Ok(HashringConfig {
        hashring,
        tenants,
        tenant_matcher_type,
        endpoints,
        algorithm,
        external_labels,
        shuffle_sharding_config,
    })
}

fn parse_endpoint(cx: &Ctx<'_>, i: usize, v: &Value) -> Result<EndpointConfig, ConfigError> {
    let path = format!("endpoints[{i}]");
    match v {
        // Go decodes null into an empty address, then refuses it.
        Value::Null => Ok(EndpointConfig::default()),
        Value::String(s) => Ok(EndpointConfig {
            address: s.clone(),
            ..EndpointConfig::default()
        }),
        Value::Object(o) => {
            let capnp = cx.string(
                field(o, "capnproto_address"),
                &format!("{path}.capnproto_address"),
            )?;
            Ok(EndpointConfig {
                address: cx.string(field(o, "address"), &format!("{path}.address"))?,
                az: cx.string(field(o, "az"), &format!("{path}.az"))?,
                capnproto_address: (!capnp.is_empty()).then_some(capnp),
            })
        }
        other => Err(cx.err(
            &path,
            format!("expected a string or an object, got {}", kind(other)),
        )),
    }
}

fn parse_shuffle(
    cx: &Ctx<'_>,
    obj: &Map<String, Value>,
) -> Result<ShuffleShardingConfig, ConfigError> {
    const P: &str = "shuffle_sharding_config";
    let overrides = match field(obj, "overrides") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let path = format!("{P}.overrides[{i}]");
                let o = match cx.object(Some(item).filter(|v| !v.is_null()), &path)? {
                    Some(o) => o,
                    None => return Ok(ShuffleShardingOverride::default()),
                };
                Ok(ShuffleShardingOverride {
                    shard_size: cx.int(field(o, "shard_size"), &format!("{path}.shard_size"))?,
                    tenants: cx.strings(field(o, "tenants"), &format!("{path}.tenants"))?,
                    tenant_matcher_type: cx.matcher(
                        field(o, "tenant_matcher_type"),
                        &format!("{path}.tenant_matcher_type"),
                    )?,
                })
            })
            .collect::<Result<_, ConfigError>>()?,
        Some(other) => {
            return Err(cx.err(
                &format!("{P}.overrides"),
                format!("expected an array, got {}", kind(other)),
            ))
        }
    };
    Ok(ShuffleShardingConfig {
        shard_size: cx.int(field(obj, "shard_size"), &format!("{P}.shard_size"))?,
        cache_size: cx.int(field(obj, "cache_size"), &format!("{P}.cache_size"))?,
        zone_awareness_disabled: cx.bool(
            field(obj, "zone_awareness_disabled"),
            &format!("{P}.zone_awareness_disabled"),
        )?,
        overrides,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<HashringConfig>, ConfigError> {
        parse_config(s.as_bytes())
    }

    #[test]
    fn full_example_with_string_and_object_endpoints() {
        let c = parse(
            r#"[
              {
                "hashring": "tenants-a",
                "tenants": ["a", "b"],
                "endpoints": ["r-0:10901", {"address": "r-1:10901", "az": "z1",
                              "capnproto_address": "r-1:19391"}],
                "algorithm": "ketama",
                "external_labels": {"ring": "a", "env": "prod"},
                "shuffle_sharding_config": {"shard_size": 0, "cache_size": 10,
                    "zone_awareness_disabled": true,
                    "overrides": [{"shard_size": 2, "tenants": ["x*"], "tenant_matcher_type": "glob"}]},
                "some_future_field": 1
              },
              {"hashring": "glob", "tenant_matcher_type": "glob", "tenants": ["team-*"],
               "endpoints": ["g:1"]},
              {"endpoints": ["d:1"]}
            ]"#,
        )
        .unwrap();
        assert_eq!(c.len(), 3);
        let a = &c[0];
        assert_eq!(a.hashring, "tenants-a");
        assert_eq!(a.tenants, ["a", "b"]);
        assert_eq!(a.tenant_matcher_type, TenantMatcher::Exact);
        assert_eq!(
            a.endpoints,
            [
                EndpointConfig {
                    address: "r-0:10901".into(),
                    ..Default::default()
                },
                EndpointConfig {
                    address: "r-1:10901".into(),
                    az: "z1".into(),
                    capnproto_address: Some("r-1:19391".into()),
                },
            ]
        );
        assert_eq!(a.endpoints[0].effective_capnproto_address(), "r-0:19391");
        assert_eq!(a.algorithm, Some(Algorithm::Ketama));
        assert_eq!(
            a.external_labels.get("env").map(String::as_str),
            Some("prod")
        );
        assert!(!a.shuffle_sharding_config.enabled());
        assert_eq!(a.shuffle_sharding_config.cache_size, 10);
        assert_eq!(a.shuffle_sharding_config.overrides[0].shard_size, 2);
        assert_eq!(c[1].tenant_matcher_type, TenantMatcher::Glob);
        assert_eq!(c[2].hashring, "");
        assert!(c[2].tenants.is_empty());
        assert_eq!(c[2].algorithm, None);
    }

    #[test]
    fn go_json_leniency() {
        // Keys match case-insensitively, null means absent, unknown keys are ignored.
        let c = parse(
            r#"[{"Hashring": "x", "TENANTS": null, "Endpoints": [{"Address": "a:1", "AZ": "z"}],
                 "algorithm": null, "external_labels": null, "shuffle_sharding_config": null}]"#,
        )
        .unwrap();
        assert_eq!(c[0].hashring, "x");
        assert!(c[0].tenants.is_empty());
        assert_eq!(c[0].endpoints[0].address, "a:1");
        assert_eq!(c[0].endpoints[0].az, "z");
        // An exact key wins over a case-folded one.
        let c =
            parse(r#"[{"HASHRING": "folded", "hashring": "exact", "endpoints": ["a"]}]"#).unwrap();
        assert_eq!(c[0].hashring, "exact");
    }

    #[test]
    fn shuffle_sharding_is_refused_naming_the_ring() {
        let err = parse(
            r#"[{"hashring": "shuffled", "endpoints": ["a", "b"], "algorithm": "ketama",
                 "shuffle_sharding_config": {"shard_size": 1}}]"#,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::ShuffleShardingUnsupported { shard_size: 1, .. }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("shuffle sharding is not supported yet"),
            "{msg}"
        );
        assert!(msg.contains("\"shuffled\""), "{msg}");
    }

    #[test]
    fn refusals_name_the_ring_and_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("[]", "empty"),
            ("null", "empty"),
            ("{}", "JSON array"),
            ("[1]", "expected a hashring object"),
            ("not json", "not valid JSON"),
            (
                r#"[{"hashring": "r"}]"#,
                "hashring \"r\" (#0): no endpoints",
            ),
            (r#"[{"hashring": "r", "endpoints": []}]"#, "no endpoints"),
            (
                r#"[{"hashring": "r", "endpoints": [""]}]"#,
                "endpoint #0: address must be set",
            ),
            (
                r#"[{"hashring": "r", "endpoints": [null]}]"#,
                "address must be set",
            ),
            (
                r#"[{"hashring": "r", "endpoints": [{"az": "z"}]}]"#,
                "address must be set",
            ),
            (r#"[{"hashring": "r", "endpoints": [1]}]"#, "endpoints[0]"),
            (
                r#"[{"hashring": "r", "endpoints": "a"}]"#,
                "expected an array",
            ),
            (
                r#"[{"hashring": "r", "endpoints": ["a"], "algorithm": "consistent"}]"#,
                "unknown algorithm \"consistent\"",
            ),
            (
                r#"[{"hashring": "r", "endpoints": ["a"], "tenant_matcher_type": "regex", "tenants": ["a"]}]"#,
                "unknown tenant_matcher_type \"regex\"",
            ),
            (
                r#"[{"hashring": "r", "endpoints": ["a"], "tenant_matcher_type": "glob", "tenants": ["ok*", "bad["]}]"#,
                "invalid tenant glob pattern \"bad[\"",
            ),
            (
                r#"[{"hashring": "r", "endpoints": ["a"], "tenants": "a"}]"#,
                "\"tenants\"",
            ),
            (
                r#"[{"hashring": "r", "endpoints": ["a"], "external_labels": {"a": 1}}]"#,
                "external_labels.a",
            ),
            (
                r#"[{"hashring": "r", "endpoints": ["a"], "shuffle_sharding_config": {"shard_size": 1.5}}]"#,
                "shard_size",
            ),
            (
                r#"[{"endpoints": ["a"]}, {"hashring": "second"}]"#,
                "hashring \"second\" (#1)",
            ),
        ];
        for (json, want) in cases {
            let msg = parse(json).unwrap_err().to_string();
            assert!(msg.contains(want), "{json}: {msg:?} lacks {want:?}");
        }
    }

    #[test]
    fn exact_matcher_treats_glob_characters_literally() {
        // With the default matcher a `*` is just a character: no pattern check.
        let c = parse(r#"[{"tenants": ["bad[", "a*"], "endpoints": ["a"]}]"#).unwrap();
        assert_eq!(c[0].tenant_matcher_type, TenantMatcher::Exact);
    }

    #[test]
    fn algorithm_from_str() {
        assert_eq!("hashmod".parse(), Ok(Algorithm::Hashmod));
        assert_eq!("ketama".parse(), Ok(Algorithm::Ketama));
        assert!("Ketama".parse::<Algorithm>().is_err());
        assert_eq!(Algorithm::Ketama.to_string(), "ketama");
    }
}
