//! A `ringest ingest` fed the way a Thanos router feeds its ingestors: `thanos.WriteableStore/RemoteWrite`
//! over gRPC, with bodies encoded by prost from the Thanos field numbers (an encoder independent of
//! ours), both in the classic `timeseries`/`tenant` form and the per-tenant `timeseriesTenantData`
//! form recent Thanos routers send. Errors must carry the gRPC codes Thanos routers count.

use std::time::Duration;

use crate::support::ringest_bin;
use bytes::Bytes;
use prost::Message;
use proto::storepb::{TimeSeriesTenantTuple, WriteRequest as ThanosWrite};
use ringest::grpc::PeerClient;
use testkit::prelude::*;
use tonic::Code;

fn client(addr: &str) -> PeerClient {
    PeerClient::new(addr, Duration::from_secs(5), 64 << 20, None).unwrap()
}

async fn send(c: &PeerClient, req: &ThanosWrite) -> Result<(), tonic::Status> {
    c.remote_write(Bytes::from(req.encode_to_vec()), Duration::from_secs(10))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thanos_shaped_grpc_writes_are_stored_per_tenant_with_thanos_error_codes() {
    let dir = test_dir("e2e_grpc_compat");
    let ing =
        tokio::task::block_in_place(|| Ingestor::start(&ringest_bin(), "ingest", dir.path(), &[]));
    let c = client(&ing.grpc);
    let t0 = now_ms() - 60_000;
    let stale = f64::from_bits(STALE_NAN_BITS);

    // Classic form: fields 1 (timeseries), 2 (tenant), 3 (replica).
    let classic = ThanosWrite {
        timeseries: vec![
            series(
                &[("job", "a"), ("__name__", "classic")],
                &[(t0, 1.0), (t0 + 1000, stale)],
            ),
            series(&[("__name__", "classic"), ("job", "b")], &[(t0, 2.5)]),
        ],
        tenant: "team-a".into(),
        replica: 1,
        timeseries_tenant_data: vec![],
    };
    send(&c, &classic).await.expect("classic write");

    // Per-tenant form: field 4 only, two tenants in one request.
    let tuples = ThanosWrite {
        timeseries: vec![],
        tenant: String::new(),
        replica: 2,
        timeseries_tenant_data: vec![
            TimeSeriesTenantTuple {
                timeseries: vec![series(&[("__name__", "tuple"), ("t", "a")], &[(t0, 3.0)])],
                tenant: "team-a".into(),
            },
            TimeSeriesTenantTuple {
                timeseries: vec![series(&[("__name__", "tuple"), ("t", "b")], &[(t0, 4.0)])],
                tenant: "team-b".into(),
            },
        ],
    };
    send(&c, &tuples).await.expect("per-tenant write");

    let http = ing.http.clone();
    let (a, b, default) = tokio::task::block_in_place(|| {
        (
            read_all(&http, Some("team-a"), t0 - 1, now_ms()).unwrap(),
            read_all(&http, Some("team-b"), t0 - 1, now_ms()).unwrap(),
            read_all(&http, None, t0 - 1, now_ms()).unwrap(),
        )
    });
    let key = |pairs: &[(&str, &str)]| -> Labels {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(a.len(), 3, "team-a series: {a:?}");
    assert_eq!(
        a[&key(&[("__name__", "classic"), ("job", "a")])],
        vec![(t0, 1f64.to_bits()), (t0 + 1000, STALE_NAN_BITS)]
    );
    assert_eq!(
        a[&key(&[("__name__", "classic"), ("job", "b")])],
        vec![(t0, 2.5f64.to_bits())]
    );
    assert_eq!(
        a[&key(&[("__name__", "tuple"), ("t", "a")])],
        vec![(t0, 3f64.to_bits())]
    );
    assert_eq!(b.len(), 1, "team-b series: {b:?}");
    assert_eq!(
        b[&key(&[("__name__", "tuple"), ("t", "b")])],
        vec![(t0, 4f64.to_bits())]
    );
    assert!(
        default.is_empty(),
        "tenants leaked into the default tenant: {default:?}"
    );

    // An out-of-order sample is a conflict: AlreadyExists, as Thanos ingestors answer.
    let old = ThanosWrite {
        timeseries: vec![series(
            &[("__name__", "classic"), ("job", "b")],
            &[(t0 - 5000, 9.0)],
        )],
        tenant: "team-a".into(),
        replica: 1,
        timeseries_tenant_data: vec![],
    };
    let err = send(&c, &old)
        .await
        .expect_err("out-of-order sample accepted");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("out of order"), "{}", err.message());

    // Resending each series' latest acknowledged sample unchanged is fine (a retried batch).
    let resend = ThanosWrite {
        timeseries: vec![
            series(
                &[("__name__", "classic"), ("job", "a")],
                &[(t0 + 1000, stale)],
            ),
            series(&[("__name__", "classic"), ("job", "b")], &[(t0, 2.5)]),
        ],
        ..classic.clone()
    };
    send(&c, &resend).await.expect("identical resend");

    // A body that is not a thanos.WriteRequest, and a tenant that is a path trick.
    let err = c
        .remote_write(
            Bytes::from_static(b"\x0a\xff\xff\xff\xff\x0f"),
            Duration::from_secs(10),
        )
        .await
        .expect_err("garbage accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let bad_tenant = ThanosWrite {
        tenant: "../x".into(),
        ..classic.clone()
    };
    let err = send(&c, &bad_tenant)
        .await
        .expect_err("tenant ../x accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("tenant"), "{}", err.message());
    assert!(!ing.data.join("x").exists() && !dir.path().join("x").exists());

    // The server still serves after all that.
    let later = ThanosWrite {
        timeseries: vec![series(
            &[("__name__", "classic"), ("job", "a")],
            &[(t0 + 2000, 7.0)],
        )],
        ..classic.clone()
    };
    send(&c, &later).await.expect("write after refusals");
}
