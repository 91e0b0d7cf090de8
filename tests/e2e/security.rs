//! Security of the HTTP listeners, with the real binary:
//!
//! - per-tenant bearer tokens (`--receive.tenant-tokens-file`): a write or read without a token,
//!   or with an unknown one, is refused with 401 and `WWW-Authenticate: Bearer`; a tenant header
//!   naming another tenant than the token's is refused with 403; writes land in the token's tenant
//!   and a token reads only its tenant's series; the file is hot-reloaded (a new token works, a
//!   removed one gets 401, a bad file keeps the tokens in force); a malformed file stops start-up
//!   naming the line.

use std::path::Path;
use std::time::Duration;

use crate::support::ringest_bin;
use proto::prompb::WriteRequest;
use testkit::prelude::*;

fn write_as(rw: &str, headers: &[(&str, &str)], req: &WriteRequest) -> Response {
    let mut h = WRITE_HEADERS.to_vec();
    h.extend_from_slice(headers);
    post_raw(rw, "/api/v1/receive", &h, &encode_write(req))
}

fn one_series(name: &str, t: i64) -> WriteRequest {
    WriteRequest {
        timeseries: vec![series(&[("__name__", name), ("job", "sec")], &[(t, 1.0)])],
        ..Default::default()
    }
}

fn read_raw(http: &str, headers: &[(&str, &str)]) -> Response {
    let mut h = vec![
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
    ];
    h.extend_from_slice(headers);
    // Any body: refusals come before it is decoded.
    post_raw(http, "/api/v1/read", &h, b"")
}

fn assert_refused(r: &Response, status: u16, message: &str) {
    assert_eq!(r.status, status, "body: {}", r.text());
    assert!(
        r.text().contains(message),
        "expected {message:?} in {:?}",
        r.text()
    );
    if status == 401 {
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer"),
            "WWW-Authenticate {challenge:?}"
        );
    }
}

fn names(read: &std::collections::BTreeMap<Labels, Samples>) -> Vec<String> {
    read.keys().map(|l| l["__name__"].clone()).collect()
}

fn start(dir: &Path, tokens: &Path) -> (Proc, String, String) {
    let (rw, http, grpc) = (free_addr(), free_addr(), free_addr());
    let mut args = server_args("all-in-one", &rw, &http, &grpc);
    args.extend([
        format!("--tsdb.path={}", dir.join("data").display()),
        format!("--receive.tenant-tokens-file={}", tokens.display()),
        "--receive.tenant-tokens-file-refresh-interval=200ms".to_string(),
    ]);
    let mut proc = Proc::spawn("aio", ringest_bin(), &args, &dir.join("logs"));
    wait_http_ok(&http, "/-/ready", Duration::from_secs(60), Some(&mut proc));
    (proc, rw, http)
}

#[test]
fn tenant_tokens_bind_writes_and_reads_to_their_tenant() {
    let dir = test_dir("tokens");
    let tokens = dir.path().join("tokens");
    write_atomic(&tokens, b"# team tokens\n\ntok-a team-a\ntok-b team-b\n");
    let (_proc, rw, http) = start(dir.path(), &tokens);
    let t = now_ms();
    let auth_a = ("Authorization", "Bearer tok-a");
    let auth_b = ("Authorization", "Bearer tok-b");

    // Refusals, on writes and reads alike.
    for (headers, status, message) in [
        (vec![], 401, "missing bearer token"),
        (
            vec![("THANOS-TENANT", "team-a")],
            401,
            "missing bearer token",
        ),
        (
            vec![("Authorization", "Bearer nope")],
            401,
            "unknown bearer token",
        ),
        (
            vec![("Authorization", "Basic dG9rLWE=")],
            401,
            "expected Bearer",
        ),
        (
            vec![auth_a, ("THANOS-TENANT", "team-b")],
            403,
            "token is for tenant \"team-a\", header names \"team-b\"",
        ),
    ] {
        assert_refused(
            &write_as(&rw, &headers, &one_series("refused", t)),
            status,
            message,
        );
        assert_refused(&read_raw(&http, &headers), status, message);
    }

    // The token is checked before anything else: no 415 for an unauthenticated client.
    let r = post_raw(
        &rw,
        "/api/v1/receive",
        &[("Content-Type", "text/plain")],
        b"x",
    );
    assert_refused(&r, 401, "missing bearer token");

    // Writes land in the token's tenant, with or without a matching header.
    let r = write_as(&rw, &[auth_a], &one_series("a_plain", t));
    assert_eq!(r.status, 204, "{}", r.text());
    let r = write_as(
        &rw,
        &[auth_a, ("THANOS-TENANT", "team-a")],
        &one_series("a_header", t),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = write_as(&rw, &[auth_b], &one_series("b_plain", t));
    assert_eq!(r.status, 204, "{}", r.text());
    let data = dir.path().join("data");
    assert!(data.join("team-a").is_dir() && data.join("team-b").is_dir());
    assert!(
        !data.join("default-tenant").exists(),
        "nothing in the default tenant"
    );

    // Each token reads its tenant's series only, whatever the header says.
    let (lo, hi) = (t - 60_000, t + 60_000);
    let a = read_all_with(&http, &[auth_a], lo, hi).unwrap();
    assert_eq!(names(&a), ["a_header", "a_plain"]);
    let a = read_all_with(&http, &[auth_a, ("THANOS-TENANT", "team-a")], lo, hi).unwrap();
    assert_eq!(names(&a), ["a_header", "a_plain"]);
    let b = read_all_with(&http, &[auth_b], lo, hi).unwrap();
    assert_eq!(names(&b), ["b_plain"]);
    let e = read_all_with(&http, &[auth_a, ("THANOS-TENANT", "team-b")], lo, hi).unwrap_err();
    assert!(e.contains("status 403"), "{e}");

    // Hot reload: tok-c is added, tok-a removed.
    write_atomic(&tokens, b"tok-b team-b\ntok-c team-c\n");
    let added = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let r = write_as(
            &rw,
            &[("Authorization", "Bearer tok-c")],
            &one_series("c", t),
        );
        (r.status == 204).then_some(())
    });
    assert!(added.is_some(), "tok-c never accepted");
    assert_refused(
        &write_as(&rw, &[auth_a], &one_series("a_late", t)),
        401,
        "unknown bearer token",
    );
    let c = read_all_with(&http, &[("Authorization", "Bearer tok-c")], lo, hi).unwrap();
    assert_eq!(names(&c), ["c"]);
    let (v, ok) = wait_metric(
        &http,
        "ringest_tenant_tokens_last_reload_successful",
        &[],
        Duration::from_secs(5),
        |v| v == 1.0,
    );
    assert!(ok, "reload gauge {v:?}");

    // A bad file keeps the tokens in force and says so in the gauge.
    write_atomic(&tokens, b"tok-b team-b\ntok-d\n");
    let (v, ok) = wait_metric(
        &http,
        "ringest_tenant_tokens_last_reload_successful",
        &[],
        Duration::from_secs(10),
        |v| v == 0.0,
    );
    assert!(ok, "reload gauge {v:?}");
    let r = write_as(
        &rw,
        &[("Authorization", "Bearer tok-c")],
        &one_series("c", t + 1),
    );
    assert_eq!(r.status, 204, "{}", r.text());
}

#[test]
fn malformed_tokens_file_stops_start_up_naming_the_line() {
    let dir = test_dir("tokens-bad");
    let tokens = dir.path().join("tokens");
    for (text, want) in [
        ("tok-a team-a\n# c\nlonely\n", "line 3"),
        (
            "tok-a team-a\ntok-a team-b\n",
            "line 2: duplicate token (first on line 1)",
        ),
    ] {
        std::fs::write(&tokens, text).unwrap();
        let tokens_flag = format!("--receive.tenant-tokens-file={}", tokens.display());
        let data = format!("--tsdb.path={}", dir.path().join("data").display());
        let (rw, http, grpc) = (
            format!("--remote-write.address={}", free_addr()),
            format!("--http-address={}", free_addr()),
            format!("--grpc-address={}", free_addr()),
        );
        let done = run_to_exit(
            ringest_bin(),
            &["all-in-one", &rw, &http, &grpc, &data, &tokens_flag],
            b"",
            None,
            Duration::from_secs(30),
        );
        assert!(!done.status.success(), "started with {text:?}");
        assert!(
            done.stderr.contains(want),
            "{want:?} not in {}",
            done.stderr
        );
    }
}
