//! Tenants: which one a request belongs to, and which names are allowed.

use thiserror::Error;

/// Longest accepted tenant name, in bytes: one path component on every filesystem we run on.
pub const MAX_TENANT_LEN: usize = 255;

/// Why a tenant name was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TenantError {
    /// The name cannot be used as a directory name under `--tsdb.path`.
    #[error("invalid tenant {0:?}: a tenant must be one plain path component (no '/', '\\', NUL, '.' or '..', at most 255 bytes)")]
    Invalid(String),
    /// The name is a directory the ingestor uses for itself under `--tsdb.path`.
    #[error("tenant name {0:?} is reserved: it is the local bucket directory under --tsdb.path")]
    Reserved(String),
}

/// Directory of the default local bucket under `--tsdb.path` (never a tenant).
pub const LOCAL_BUCKET_DIR: &str = "_bucket";

/// Picks the tenant from the header value, falling back to the default when absent or empty.
pub fn tenant_from_header<'a>(
    header: Option<&'a str>,
    default: &'a str,
) -> Result<&'a str, TenantError> {
    let tenant = match header {
        Some(h) if !h.is_empty() => h,
        _ => default,
    };
    validate(tenant)?;
    Ok(tenant)
}

/// Refuses names that are not a plain path component, like Thanos's `tenancy.IsTenantValid`.
pub fn validate(tenant: &str) -> Result<(), TenantError> {
    let bad = tenant.is_empty()
        || tenant == "."
        || tenant == ".."
        || tenant.len() > MAX_TENANT_LEN
        || tenant.contains(['/', '\\', '\0']);
    if bad {
        return Err(TenantError::Invalid(tenant.chars().take(64).collect()));
    }
    if tenant == LOCAL_BUCKET_DIR {
        return Err(TenantError::Reserved(tenant.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_wins_and_default_fills_in() {
        assert_eq!(
            tenant_from_header(Some("team-a"), "default-tenant"),
            Ok("team-a")
        );
        assert_eq!(
            tenant_from_header(Some(""), "default-tenant"),
            Ok("default-tenant")
        );
        assert_eq!(
            tenant_from_header(None, "default-tenant"),
            Ok("default-tenant")
        );
    }

    #[test]
    fn path_tricks_are_refused() {
        for bad in ["..", ".", "../x", "a/b", "a\\b", "a\0b", ""] {
            assert!(validate(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(validate(&"x".repeat(256)).is_err());
        assert_eq!(
            validate(LOCAL_BUCKET_DIR),
            Err(TenantError::Reserved(LOCAL_BUCKET_DIR.into()))
        );
        assert!(validate("tenant.with.dots").is_ok());
        assert!(validate("..x").is_ok());
    }
}
