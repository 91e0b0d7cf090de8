//! `ringest-store-read`: one Thanos Store API `Series` call over plain HTTP/2 (gRPC framing written
//! here, no generated types), reading the stream as fast as it comes and counting it. For measuring
//! a large read (time, throughput, the server's memory while it streams); prints one JSON line.
//!
//! `ringest-store-read --addr 127.0.0.1:10901 --matcher '__name__=~.+' --min-time 0 --max-time -1`

use std::time::Instant;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Debug, Parser)]
#[command(
    name = "ringest-store-read",
    about = "One Thanos Store API Series call, counted"
)]
struct Args {
    /// gRPC address of the Store API (`host:port`).
    #[arg(long, default_value = "127.0.0.1:10901")]
    addr: String,
    /// Matchers `name=v`, `name!=v`, `name=~re`, `name!~re` (repeatable).
    #[arg(long = "matcher", required = true)]
    matchers: Vec<String>,
    /// Start of the range (ms).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    min_time: i64,
    /// End of the range (ms; -1 = the largest time).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    max_time: i64,
    /// `response_batch_size` (Query v0.41+ sends 64).
    #[arg(long, default_value_t = 64)]
    batch_size: i64,
    /// Labels only.
    #[arg(long)]
    skip_chunks: bool,
}

fn put_key(tag: u32, wire: u32, out: &mut BytesMut) {
    put_varint(u64::from(tag << 3 | wire), out);
}

fn put_varint(mut v: u64, out: &mut BytesMut) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn put_bytes(tag: u32, b: &[u8], out: &mut BytesMut) {
    put_key(tag, 2, out);
    put_varint(b.len() as u64, out);
    out.put_slice(b);
}

/// `thanos.SeriesRequest` (field numbers of `pkg/store/storepb/rpc.proto`).
fn series_request(a: &Args) -> Result<BytesMut, String> {
    let mut out = BytesMut::new();
    let max_time = if a.max_time < 0 { i64::MAX } else { a.max_time };
    for (tag, v) in [(1, a.min_time), (2, max_time)] {
        put_key(tag, 0, &mut out);
        put_varint(v as u64, &mut out);
    }
    for m in &a.matchers {
        let (name, kind, value) = ["!~", "=~", "!=", "="]
            .iter()
            .zip([3u64, 2, 1, 0])
            .find_map(|(op, k)| m.split_once(op).map(|(n, v)| (n, k, v)))
            .ok_or_else(|| format!("matcher {m:?}: expected name=v, !=, =~ or !~"))?;
        let mut mb = BytesMut::new();
        if kind != 0 {
            put_key(1, 0, &mut mb);
            put_varint(kind, &mut mb);
        }
        put_bytes(2, name.as_bytes(), &mut mb);
        put_bytes(3, value.as_bytes(), &mut mb);
        put_bytes(3, &mb, &mut out);
    }
    if a.skip_chunks {
        put_key(8, 0, &mut out);
        put_varint(1, &mut out);
    }
    if a.batch_size > 0 {
        put_key(16, 0, &mut out);
        put_varint(a.batch_size as u64, &mut out);
    }
    Ok(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let msg = series_request(&args)?;
    let mut body = BytesMut::with_capacity(msg.len() + 5);
    body.put_u8(0);
    body.put_u32(msg.len() as u32);
    body.put_slice(&msg);

    let stream = tokio::net::TcpStream::connect(&args.addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{}/thanos.Store/Series", args.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(body.freeze()))?;
    let started = Instant::now();
    let resp = sender.send_request(req).await?;
    let mut body = resp.into_body();
    let (mut buf, mut frames, mut bytes) = (BytesMut::new(), 0u64, 0u64);
    let mut first_frame_ms = None;
    let mut status = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Some(t) = frame.trailers_ref() {
            status = t
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if status.as_deref() != Some("0") {
                let m = t
                    .get("grpc-message")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                return Err(format!("grpc-status {status:?}: {m}").into());
            }
            continue;
        }
        if let Ok(data) = frame.into_data() {
            buf.put(data);
            while buf.len() >= 5 {
                let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                if buf.len() < 5 + len {
                    break;
                }
                buf.advance(5);
                let _msg: Bytes = buf.split_to(len).freeze();
                frames += 1;
                bytes += len as u64;
                first_frame_ms.get_or_insert(started.elapsed().as_millis());
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "frames": frames,
            "bytes": bytes,
            "seconds": secs,
            "first_frame_ms": first_frame_ms,
            "mib_per_second": bytes as f64 / secs / (1 << 20) as f64,
            "grpc_status": status,
        })
    );
    Ok(())
}
