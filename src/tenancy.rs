//! Tenants: which one a request belongs to, and which names are allowed; per-tenant bearer
//! tokens (`--receive.tenant-tokens-file`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::error::{Classify, ErrorClass};

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

impl Classify for TenantError {
    fn class(&self) -> ErrorClass {
        ErrorClass::BadRequest
    }
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

/// Why a tenant tokens file could not be used.
#[derive(Debug, Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("reading tenant tokens file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not `<token> <tenant>`.
    #[error("tenant tokens file line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A line names a tenant that is not allowed.
    #[error("tenant tokens file line {line}: {source}")]
    Tenant {
        /// 1-based line number.
        line: usize,
        /// Why the tenant is refused.
        source: TenantError,
    },
    /// The same token appears twice (whatever the tenants).
    #[error("tenant tokens file line {line}: duplicate token (first on line {first})")]
    Duplicate {
        /// 1-based line number of the repetition.
        line: usize,
        /// 1-based line number of the first occurrence.
        first: usize,
    },
}

/// Why a request with tenant tokens enabled was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer <token>` header.
    #[error("missing bearer token: send Authorization: Bearer <token>")]
    Missing,
    /// An `Authorization` header that is not a bearer token.
    #[error("malformed Authorization header: expected Bearer <token>")]
    Malformed,
    /// A token no tenant has.
    #[error("unknown bearer token")]
    Unknown,
    /// The tenant header names another tenant than the token's.
    #[error("token is for tenant {token:?}, header names {header:?}")]
    TenantMismatch {
        /// The token's tenant.
        token: String,
        /// The tenant named by the header.
        header: String,
    },
}

/// No valid token is 401; a valid token for another tenant than the header names is 403.
impl Classify for AuthError {
    fn class(&self) -> ErrorClass {
        match self {
            AuthError::Missing | AuthError::Malformed | AuthError::Unknown => {
                ErrorClass::Unauthenticated
            }
            AuthError::TenantMismatch { .. } => ErrorClass::Forbidden,
        }
    }
}

/// A request's tenant, resolved once (from its bearer token or its tenant header) and valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant(Arc<str>);

impl Tenant {
    /// The tenant's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a request's tenant could not be resolved.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResolveError {
    /// The tenant header has bytes that are not visible ASCII.
    #[error("tenant header is not valid ASCII")]
    HeaderNotAscii,
    /// Tenant tokens are on and the request's token is missing, unknown or for another tenant.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The tenant named is not allowed.
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

impl Classify for ResolveError {
    fn class(&self) -> ErrorClass {
        match self {
            ResolveError::HeaderNotAscii => ErrorClass::BadRequest,
            ResolveError::Auth(e) => e.class(),
            ResolveError::Tenant(e) => e.class(),
        }
    }
}

/// The tenant of a request, from its tenant header and `Authorization` header values: with
/// tenant tokens, the bearer token's (a tenant header naming another tenant is refused); else
/// the tenant header's, or `default` when it is absent or empty.
pub fn resolve(
    tenant_header: Option<&http::HeaderValue>,
    authorization: Option<&http::HeaderValue>,
    tokens: Option<&TokenStore>,
    default: &str,
) -> Result<Tenant, ResolveError> {
    let header = tenant_header
        .map(|v| v.to_str().map_err(|_| ResolveError::HeaderNotAscii))
        .transpose()?;
    if let Some(tokens) = tokens {
        // A header that is not ASCII is no valid token: answered as a missing one.
        let authorization = authorization.and_then(|v| v.to_str().ok());
        return Ok(Tenant(tokens.current().authorize(authorization, header)?));
    }
    Ok(Tenant(Arc::from(tenant_from_header(header, default)?)))
}

/// Tokens and their tenants. Tokens are kept only as HMAC-SHA256 digests under a key drawn at
/// start-up, and a lookup compares the presented token's digest with every entry in constant time,
/// so neither a token's bytes nor its length leak through timing.
pub struct TokenTable {
    key: ring::hmac::Key,
    entries: Vec<([u8; 32], Arc<str>)>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTable")
            .field("tokens", &self.entries.len())
            .finish_non_exhaustive()
    }
}

fn random_key() -> ring::hmac::Key {
    let rng = ring::rand::SystemRandom::new();
    ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
        .expect("the system random number generator works")
}

impl TokenTable {
    /// Parses `<token> <tenant>` lines; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, TokenFileError> {
        Self::parse_with_key(text, random_key())
    }

    fn parse_with_key(text: &str, key: ring::hmac::Key) -> Result<Self, TokenFileError> {
        let mut table = Self {
            key,
            entries: Vec::new(),
        };
        let mut lines_of: Vec<usize> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let mut fields = content.split_whitespace();
            let (Some(token), Some(tenant), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(TokenFileError::Malformed {
                    line,
                    reason: "expected `<token> <tenant>` (two fields separated by whitespace)"
                        .into(),
                });
            };
            validate(tenant).map_err(|source| TokenFileError::Tenant { line, source })?;
            let digest = table.digest(token.as_bytes());
            if let Some(pos) = table.entries.iter().position(|(d, _)| *d == digest) {
                return Err(TokenFileError::Duplicate {
                    line,
                    first: lines_of[pos],
                });
            }
            table.entries.push((digest, Arc::from(tenant)));
            lines_of.push(line);
        }
        Ok(table)
    }

    fn digest(&self, token: &[u8]) -> [u8; 32] {
        let tag = ring::hmac::sign(&self.key, token);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no token (every request is then refused).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tenant of `token`, comparing with every entry in constant time.
    pub fn lookup(&self, token: &str) -> Option<Arc<str>> {
        let digest = self.digest(token.as_bytes());
        let mut found = None;
        for (d, tenant) in &self.entries {
            if bool::from(d.ct_eq(&digest)) {
                found = Some(tenant.clone());
            }
        }
        found
    }

    /// The tenant of a request: the token's, checked against the tenant header (absent or empty
    /// means the token's tenant).
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        tenant_header: Option<&str>,
    ) -> Result<Arc<str>, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?.trim();
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(AuthError::Malformed),
        };
        if token.is_empty() {
            return Err(AuthError::Malformed);
        }
        let tenant = self.lookup(token).ok_or(AuthError::Unknown)?;
        match tenant_header {
            Some(h) if !h.is_empty() && h != &*tenant => Err(AuthError::TenantMismatch {
                token: tenant.to_string(),
                header: h.chars().take(MAX_TENANT_LEN).collect(),
            }),
            _ => Ok(tenant),
        }
    }
}

/// The token table in force, swapped whole by the file watcher.
#[derive(Debug, Clone)]
pub struct TokenStore {
    inner: Arc<RwLock<Arc<TokenTable>>>,
}

impl TokenStore {
    /// A store holding `table`.
    pub fn new(table: TokenTable) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Arc::new(table))),
        }
    }

    /// The table in force.
    pub fn current(&self) -> Arc<TokenTable> {
        self.inner.read().clone()
    }

    fn set(&self, table: TokenTable) {
        metrics::gauge!("ringest_tenant_tokens").set(table.len() as f64);
        *self.inner.write() = Arc::new(table);
    }

    /// Parses new file contents and puts them in force; on error the table in force stays.
    pub fn reload(&self, text: &str) -> Result<usize, TokenFileError> {
        let table = TokenTable::parse(text)?;
        let n = table.len();
        self.set(table);
        Ok(n)
    }

    /// Loads `path` (start-up fails on a bad file) and re-reads it every `interval`, putting a
    /// changed, valid file in force; a bad one keeps the table in force, logs why and sets
    /// `ringest_tenant_tokens_last_reload_successful` to 0.
    pub fn watch(path: PathBuf, interval: Duration) -> Result<Self, TokenFileError> {
        let last = read_tokens_file(&path)?;
        let table = TokenTable::parse(&last)?;
        tracing::info!(path = %path.display(), tokens = table.len(), "tenant tokens loaded");
        if table.is_empty() {
            tracing::warn!(path = %path.display(), "tenant tokens file has no token: every write and read is refused");
        }
        metrics::gauge!("ringest_tenant_tokens").set(table.len() as f64);
        let store = Self::new(table);
        let watcher = store.clone();
        crate::reload::watch(
            path,
            last.into_bytes(),
            interval,
            "tenant tokens file",
            "ringest_tenant_tokens",
            move |contents| match watcher.reload(&String::from_utf8_lossy(contents)) {
                Ok(n) => {
                    tracing::info!(tokens = n, "tenant tokens in force");
                    crate::reload::Applied::Ok
                }
                Err(e) => crate::reload::Applied::Invalid(e.to_string()),
            },
        );
        Ok(store)
    }
}

fn read_tokens_file(path: &Path) -> Result<String, TokenFileError> {
    std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: path.to_path_buf(),
        source,
    })
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

    fn table(text: &str) -> TokenTable {
        TokenTable::parse(text).unwrap()
    }

    #[test]
    fn tokens_file_parses_with_comments_and_blank_lines() {
        let t = table("# tokens\n\n  tok-a team-a\nlong-token-b\tteam-b\n");
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(t.lookup("tok-a").as_deref(), Some("team-a"));
        assert_eq!(t.lookup("long-token-b").as_deref(), Some("team-b"));
        assert_eq!(t.lookup("tok-"), None);
        assert_eq!(t.lookup("tok-ab"), None);
        assert_eq!(t.lookup(""), None);
        assert!(table("").is_empty());
        assert!(table("# only a comment\n\n").is_empty());
    }

    #[test]
    fn tokens_file_errors_name_the_line() {
        let err = |text: &str| TokenTable::parse(text).unwrap_err().to_string();
        let e = err("a t1\n\nlonely\n");
        assert!(e.contains("line 3") && e.contains("two fields"), "{e}");
        let e = err("a t1\nb t2 extra\n");
        assert!(e.contains("line 2") && e.contains("two fields"), "{e}");
        let e = err("a t1\nb t2\n# c\na t3\n");
        assert!(
            e.contains("line 4") && e.contains("duplicate token") && e.contains("line 1"),
            "{e}"
        );
        let e = err("a ../x\n");
        assert!(e.contains("line 1") && e.contains("invalid tenant"), "{e}");
        let e = err("a t\nb _bucket\n");
        assert!(e.contains("line 2") && e.contains("reserved"), "{e}");
        // The same tenant may have several tokens (rotation).
        assert_eq!(table("a t\nb t\n").len(), 2);
    }

    #[test]
    fn authorize_binds_the_tenant_to_the_token() {
        let t = table("tok-a team-a\ntok-b team-b\n");
        assert_eq!(t.authorize(None, None), Err(AuthError::Missing));
        assert_eq!(
            t.authorize(Some("Basic xyz"), None),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            t.authorize(Some("Bearer "), None),
            Err(AuthError::Malformed)
        );
        assert_eq!(t.authorize(Some("tok-a"), None), Err(AuthError::Malformed));
        assert_eq!(
            t.authorize(Some("Bearer nope"), None),
            Err(AuthError::Unknown)
        );
        assert_eq!(
            t.authorize(Some("Bearer tok-a"), None).as_deref(),
            Ok("team-a")
        );
        assert_eq!(
            t.authorize(Some("bearer  tok-b "), Some("")).as_deref(),
            Ok("team-b")
        );
        assert_eq!(
            t.authorize(Some("Bearer tok-a"), Some("team-a")).as_deref(),
            Ok("team-a")
        );
        let e = t
            .authorize(Some("Bearer tok-a"), Some("team-b"))
            .unwrap_err();
        assert_eq!(
            e,
            AuthError::TenantMismatch {
                token: "team-a".into(),
                header: "team-b".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "token is for tenant \"team-a\", header names \"team-b\""
        );
    }

    #[test]
    fn digests_are_keyed_and_fixed_size() {
        // Each table draws its own key: the same token digests differently.
        let a = table("tok t\n");
        let b = table("tok t\n");
        assert_ne!(a.entries[0].0, b.entries[0].0);
        assert_eq!(a.digest(b"x").len(), a.digest(&[7u8; 1000]).len());
    }

    #[test]
    fn reload_keeps_the_old_table_on_error() {
        let store = TokenStore::new(table("old t1\n"));
        assert_eq!(store.reload("new t2\nnew2 t3\n").unwrap(), 2);
        assert_eq!(store.current().lookup("old"), None);
        assert_eq!(store.current().lookup("new").as_deref(), Some("t2"));
        assert!(store.reload("new t2\nbroken\n").is_err());
        assert_eq!(store.current().lookup("new2").as_deref(), Some("t3"));
    }

    #[tokio::test]
    async fn watch_polls_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "tok-a team-a\n").unwrap();
        let store = TokenStore::watch(path.clone(), Duration::from_millis(20)).unwrap();
        assert_eq!(store.current().lookup("tok-a").as_deref(), Some("team-a"));
        std::fs::write(&path, "tok-b team-b\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while store.current().lookup("tok-b").is_none() {
            assert!(std::time::Instant::now() < deadline, "reload not seen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.current().lookup("tok-a"), None);
        // A bad file keeps the tokens in force.
        std::fs::write(&path, "tok-c\n").unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(store.current().lookup("tok-b").as_deref(), Some("team-b"));
        // A missing file at start-up is an error.
        assert!(TokenStore::watch(dir.path().join("absent"), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn resolve_reads_the_token_or_the_header_once() {
        use http::HeaderValue;
        let hv = |s: &'static str| HeaderValue::from_static(s);
        let name = |r: Result<Tenant, ResolveError>| r.map(|t| t.to_string());
        // Without tokens: the header, else the default; a bad name is a bad request.
        assert_eq!(
            name(resolve(Some(&hv("team-a")), None, None, "d")),
            Ok("team-a".into())
        );
        assert_eq!(
            name(resolve(None, Some(&hv("Bearer x")), None, "d")),
            Ok("d".into())
        );
        let bad = resolve(Some(&hv("..")), None, None, "d").unwrap_err();
        assert_eq!(bad.class(), ErrorClass::BadRequest);
        let not_ascii = HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        assert_eq!(
            resolve(Some(&not_ascii), None, None, "d"),
            Err(ResolveError::HeaderNotAscii)
        );
        // With tokens: the token's tenant; 401 without one, 403 for another tenant's header.
        let tokens = TokenStore::new(table("tok-a team-a\n"));
        let auth = hv("Bearer tok-a");
        assert_eq!(
            name(resolve(None, Some(&auth), Some(&tokens), "d")),
            Ok("team-a".into())
        );
        let missing = resolve(Some(&hv("team-a")), None, Some(&tokens), "d").unwrap_err();
        assert_eq!(missing.class(), ErrorClass::Unauthenticated);
        let other = resolve(Some(&hv("team-b")), Some(&auth), Some(&tokens), "d").unwrap_err();
        assert_eq!(other.class(), ErrorClass::Forbidden);
    }
}
