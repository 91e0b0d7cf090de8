//! Thanos's `snappy` gRPC compression against a real `ringest ingest`: a Thanos-router-style
//! `RemoteWrite` with `grpc-encoding: snappy` and the message in the Snappy framing format is stored
//! and reads back; answers to snappy calls are snappy (`grpc-encoding` header and flag-1 messages);
//! an unknown encoding gets grpc-go's `Unimplemented`; bombs and corrupt frames get grpc-go's codes
//! and leave the connection serving.
//!
//! [`raw_call`] speaks gRPC over HTTP/2 by hand (tonic's `Channel` as a plain HTTP/2 client, no
//! codec), so a test sees the response headers and each message's compressed flag; other modules
//! (the Store API's snappy `Series`) can reuse it.

use std::time::Duration;

use crate::support::ringest_bin;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;
use prost::Message;
use proto::prompb::{LabelMatcher, Query, ReadRequest, ReadResponse};
use proto::storepb::WriteRequest as ThanosWrite;
use ringest::grpc::snappy::{self, message};
use ringest::grpc::PeerClient;
use testkit::prelude::*;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// What one raw gRPC call got back.
#[derive(Debug)]
pub struct RawReply {
    /// Response headers (`grpc-encoding`, `grpc-accept-encoding`, ...).
    pub headers: HeaderMap,
    /// Each response message: compressed flag and payload as sent.
    pub messages: Vec<(u8, Bytes)>,
    /// The call's status, from the trailers or a trailers-only answer.
    pub status: tonic::Status,
}

impl RawReply {
    /// The response messages' payloads, flag-1 ones inflated from the Snappy framing format.
    pub fn payloads(&self) -> Vec<Bytes> {
        self.messages
            .iter()
            .map(|(flag, payload)| match flag {
                0 => payload.clone(),
                1 => Bytes::from(snappy::decompress(payload, 1 << 30).expect("snappy answer")),
                f => panic!("compressed flag {f}"),
            })
            .collect()
    }

    /// The `grpc-encoding` response header, if any.
    pub fn encoding(&self) -> Option<&str> {
        self.headers
            .get(snappy::ENCODING_HEADER)
            .map(|v| v.to_str().unwrap())
    }
}

/// A plaintext HTTP/2 connection to a gRPC listener; clones share it.
pub async fn connect(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// One gRPC call by hand: `messages` (whole messages, see `ringest::grpc::snappy::message`) are
/// sent as the body of a POST to `path` with `grpc-encoding: <encoding>` when given and the
/// `metadata` headers; returns the response headers, messages as received and status.
pub async fn raw_call(
    channel: &Channel,
    path: &str,
    encoding: Option<&str>,
    metadata: &[(&str, &str)],
    messages: &[Bytes],
) -> RawReply {
    use tower::Service;
    let mut request = http::Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(messages.concat()),
        )))
        .unwrap();
    let headers = request.headers_mut();
    if let Some(e) = encoding {
        headers.insert(snappy::ENCODING_HEADER, HeaderValue::from_str(e).unwrap());
    }
    for (k, v) in metadata {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let mut channel = channel.clone();
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .expect("connection ready");
    let response = tokio::time::timeout(Duration::from_secs(30), channel.call(request))
        .await
        .expect("answer within 30 s")
        .expect("HTTP/2 answer");
    let (parts, mut body) = response.into_parts();
    let (mut data, mut trailers) = (Vec::new(), None);
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("response body");
        match frame.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    let status = trailers
        .as_ref()
        .and_then(tonic::Status::from_header_map)
        .or_else(|| tonic::Status::from_header_map(&parts.headers))
        .expect("a grpc-status");
    let messages = snappy::split_messages(&data).expect("whole response messages");
    RawReply {
        headers: parts.headers,
        messages,
        status,
    }
}

const REMOTE_WRITE: &str = "/thanos.WriteableStore/RemoteWrite";
const REMOTE_READ: &str = "/ringest.Reader/RemoteRead";

fn write_of(tenant: &str, name: &str, samples: &[(i64, f64)]) -> Vec<u8> {
    ThanosWrite {
        timeseries: vec![series(&[("__name__", name), ("job", "snappy")], samples)],
        tenant: tenant.into(),
        replica: 0,
        timeseries_tenant_data: vec![],
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thanos_snappy_grpc_calls_are_served_and_answered_in_kind() {
    let dir = test_dir("e2e_grpc_snappy");
    // A 1 MiB receive limit, so a bomb is cheap to build.
    let ing = tokio::task::block_in_place(|| {
        Ingestor::start(
            &ringest_bin(),
            "ingest",
            dir.path(),
            &["--remote-write.max-decompressed-bytes=1048576"],
        )
    });
    let ch = connect(&ing.grpc).await;
    let t0 = now_ms() - 60_000;

    // A Thanos router's write: snappy-framed message, grpc-encoding: snappy.
    let body = write_of("team-s", "framed", &[(t0, 1.5), (t0 + 1000, 2.5)]);
    let reply = raw_call(
        &ch,
        REMOTE_WRITE,
        Some("snappy"),
        &[],
        &[message(true, &snappy::compress(&body))],
    )
    .await;
    assert_eq!(reply.status.code(), Code::Ok, "{:?}", reply.status);
    assert_eq!(reply.encoding(), Some("snappy"), "{:?}", reply.headers);
    let accept = reply.headers[snappy::ACCEPT_ENCODING_HEADER]
        .to_str()
        .unwrap();
    assert!(accept.split(',').any(|e| e == "snappy"), "{accept}");
    // The WriteResponse is empty, and grpc-go sends empty messages uncompressed.
    assert_eq!(reply.messages, vec![(0, Bytes::new())]);

    // An uncompressed message in a snappy call is fine too, as grpc-go allows.
    let body = write_of("team-s", "plain_in_snappy", &[(t0, 3.0)]);
    let reply = raw_call(
        &ch,
        REMOTE_WRITE,
        Some("snappy"),
        &[],
        &[message(false, &body)],
    )
    .await;
    assert_eq!(reply.status.code(), Code::Ok, "{:?}", reply.status);

    // Our client helper sends the same way.
    let client = PeerClient::new(&ing.grpc, Duration::from_secs(5), 64 << 20, None)
        .unwrap()
        .with_snappy();
    let body = write_of("team-s", "peer_client", &[(t0, 4.0)]);
    client
        .remote_write(Bytes::from(body), Duration::from_secs(10))
        .await
        .expect("snappy PeerClient write");

    // Everything reads back through HTTP remote read.
    let http = ing.http.clone();
    let got =
        tokio::task::block_in_place(|| read_all(&http, Some("team-s"), t0 - 1, now_ms())).unwrap();
    let key = |name: &str| -> Labels {
        [("__name__", name), ("job", "snappy")]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got[&key("framed")],
        vec![(t0, 1.5f64.to_bits()), (t0 + 1000, 2.5f64.to_bits())]
    );
    assert_eq!(got[&key("plain_in_snappy")], vec![(t0, 3f64.to_bits())]);
    assert_eq!(got[&key("peer_client")], vec![(t0, 4f64.to_bits())]);

    // A call with a non-empty answer: the response message is snappy-framed (flag 1).
    let read = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: t0 - 1,
            end_timestamp_ms: now_ms(),
            matchers: vec![LabelMatcher {
                r#type: 0,
                name: "__name__".into(),
                value: "framed".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let reply = raw_call(
        &ch,
        REMOTE_READ,
        Some("snappy"),
        &[("thanos-tenant", "team-s")],
        &[message(true, &snappy::compress(&read.encode_to_vec()))],
    )
    .await;
    assert_eq!(reply.status.code(), Code::Ok, "{:?}", reply.status);
    assert_eq!(reply.encoding(), Some("snappy"));
    assert_eq!(reply.messages.len(), 1);
    assert_eq!(reply.messages[0].0, 1, "answer not compressed");
    let answer = ReadResponse::decode(reply.payloads()[0].clone()).unwrap();
    let ts = &answer.results[0].timeseries;
    assert_eq!(ts.len(), 1, "{answer:?}");
    let samples: Vec<(i64, f64)> = ts[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value))
        .collect();
    assert_eq!(samples, vec![(t0, 1.5), (t0 + 1000, 2.5)]);
    // The same read without compression is answered uncompressed.
    let reply = raw_call(
        &ch,
        REMOTE_READ,
        None,
        &[("thanos-tenant", "team-s")],
        &[message(false, &read.encode_to_vec())],
    )
    .await;
    assert_eq!(reply.status.code(), Code::Ok, "{:?}", reply.status);
    assert_eq!(reply.encoding(), None);
    assert_eq!(reply.messages[0].0, 0);
    assert_eq!(
        ReadResponse::decode(reply.messages[0].1.clone()).unwrap(),
        answer
    );

    // An encoding we lack: what a Go gRPC server answers.
    let body = write_of("team-s", "brotli", &[(t0, 5.0)]);
    let reply = raw_call(&ch, REMOTE_WRITE, Some("br"), &[], &[message(true, &body)]).await;
    assert_eq!(
        reply.status.code(),
        Code::Unimplemented,
        "{:?}",
        reply.status
    );
    assert_eq!(
        reply.status.message(),
        "grpc: Decompressor is not installed for grpc-encoding \"br\""
    );
    let accept = reply.headers[snappy::ACCEPT_ENCODING_HEADER]
        .to_str()
        .unwrap();
    assert!(accept.split(',').any(|e| e == "snappy"), "{accept}");

    // A snappy bomb: 16 MiB of zeros in a message under the 1 MiB limit (snappy caps near 21:1).
    let bomb = snappy::compress(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let reply = raw_call(
        &ch,
        REMOTE_WRITE,
        Some("snappy"),
        &[],
        &[message(true, &bomb)],
    )
    .await;
    assert_eq!(
        reply.status.code(),
        Code::ResourceExhausted,
        "{:?}",
        reply.status
    );
    assert!(
        reply
            .status
            .message()
            .contains("after decompression larger than max 1048576"),
        "{}",
        reply.status.message()
    );

    // Corrupt framing (a flipped byte fails the CRC): Internal, in grpc-go's words.
    let mut bad = snappy::compress(&write_of("team-s", "corrupt", &[(t0, 6.0)]));
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let reply = raw_call(
        &ch,
        REMOTE_WRITE,
        Some("snappy"),
        &[],
        &[message(true, &bad)],
    )
    .await;
    assert_eq!(reply.status.code(), Code::Internal, "{:?}", reply.status);
    assert!(
        reply
            .status
            .message()
            .starts_with("grpc: failed to decompress the received message: "),
        "{}",
        reply.status.message()
    );

    // The same connection still serves after the refusals.
    let body = write_of("team-s", "framed", &[(t0 + 2000, 7.0)]);
    let reply = raw_call(
        &ch,
        REMOTE_WRITE,
        Some("snappy"),
        &[],
        &[message(true, &snappy::compress(&body))],
    )
    .await;
    assert_eq!(reply.status.code(), Code::Ok, "{:?}", reply.status);
    let got =
        tokio::task::block_in_place(|| read_all(&http, Some("team-s"), t0 - 1, now_ms())).unwrap();
    assert_eq!(got.len(), 3, "refused writes stored something: {got:?}");
    assert_eq!(got[&key("framed")].len(), 3);
}
