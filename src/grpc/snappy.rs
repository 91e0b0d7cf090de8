//! Thanos's `snappy` gRPC compression, which tonic does not ship.
//!
//! Thanos registers a grpc-go compressor named `snappy` (`pkg/extgrpc/snappy`), and its routers
//! send `grpc-encoding: snappy` to ingestors by default. Every gRPC message whose 5-byte prefix has
//! the compressed flag set then carries its bytes in the Snappy **framing** format (stream
//! identifier, then compressed or uncompressed chunks of at most 64 KiB, each with a masked
//! CRC-32C), not as one raw snappy block.
//!
//! [`SnappyLayer`] wraps the whole tonic server. For a snappy request it rewrites the body's
//! messages to uncompressed ones and drops `grpc-encoding`, so the services see identity; it then
//! compresses every response message, one at a time as they stream out, and answers with
//! `grpc-encoding: snappy` (grpc-go's rule: a server replies with the compressor the request
//! used). Any other encoding than snappy or identity gets grpc-go's `Unimplemented` answer, and
//! every response advertises `grpc-accept-encoding: snappy`. [`SnappyClient`] is the same
//! rewriting on the client side, for [`super::PeerClient::with_snappy`] and tests.

use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use tonic::body::Body;
use tonic::Status;

/// The name Thanos (grpc-go) registers its framing-format snappy compressor under.
pub const SNAPPY: &str = "snappy";
/// Header naming the compression of a call's messages.
pub const ENCODING_HEADER: &str = "grpc-encoding";
/// Header listing the compressions a peer accepts.
pub const ACCEPT_ENCODING_HEADER: &str = "grpc-accept-encoding";
/// Length of a gRPC message prefix: compressed flag (1 byte) and big-endian length (4 bytes).
pub const PREFIX_LEN: usize = 5;

/// Why a message could not be taken from a snappy call; the texts are grpc-go's.
#[derive(Debug, thiserror::Error)]
pub enum SnappyError {
    /// The message on the wire is over the receive limit (before decompression).
    #[error("grpc: received message larger than max ({len} vs. {limit})")]
    WireTooLarge {
        /// Length in the message prefix.
        len: usize,
        /// The receive limit.
        limit: usize,
    },
    /// The message decompresses to more than the receive limit (a snappy bomb, or just big).
    #[error("grpc: received message after decompression larger than max {limit}")]
    DecompressedTooLarge {
        /// The receive limit.
        limit: usize,
    },
    /// The framing-format bytes are corrupt (bad chunk, checksum mismatch, truncation).
    #[error("grpc: failed to decompress the received message: {0}")]
    Corrupt(#[source] std::io::Error),
}

impl From<SnappyError> for Status {
    /// The codes grpc-go answers: size limits are `ResourceExhausted`, corruption `Internal`.
    fn from(e: SnappyError) -> Status {
        match e {
            SnappyError::WireTooLarge { .. } | SnappyError::DecompressedTooLarge { .. } => {
                Status::resource_exhausted(e.to_string())
            }
            SnappyError::Corrupt(_) => Status::internal(e.to_string()),
        }
    }
}

/// Compresses one message body into the Snappy framing format, as Thanos's codec does.
pub fn compress(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(snap::raw::max_compress_len(message.len()) + 32);
    append_compressed(message, &mut out);
    out
}

fn append_compressed(message: &[u8], out: &mut Vec<u8>) {
    let mut enc = snap::write::FrameEncoder::new(out);
    // Writing to a Vec cannot fail, and neither can the flush in into_inner.
    enc.write_all(message)
        .expect("snappy framing into a Vec cannot fail");
    enc.into_inner()
        .map_err(|e| e.into_error())
        .expect("snappy framing into a Vec cannot fail");
}

/// Decompresses one framing-format message, refusing more than `limit` decompressed bytes.
pub fn decompress(framed: &[u8], limit: usize) -> Result<Vec<u8>, SnappyError> {
    let mut out = Vec::new();
    append_decompressed(framed, limit, &mut out)?;
    Ok(out)
}

fn append_decompressed(framed: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), SnappyError> {
    let start = out.len();
    // Reading one byte past the limit tells "exactly at the limit" from "over it" while a bomb
    // never allocates more than the limit.
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    snap::read::FrameDecoder::new(framed)
        .take(cap)
        .read_to_end(out)
        .map_err(SnappyError::Corrupt)?;
    if out.len() - start > limit {
        out.truncate(start);
        return Err(SnappyError::DecompressedTooLarge { limit });
    }
    Ok(())
}

/// Builds a gRPC message (prefix and payload) with the given compressed flag.
pub fn message(compressed: bool, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX_LEN + payload.len());
    out.put_u8(u8::from(compressed));
    out.put_u32(prefix_len(payload.len()));
    out.extend_from_slice(payload);
    out.freeze()
}

fn prefix_len(len: usize) -> u32 {
    // A message cannot exceed u32::MAX bytes on the wire; a bigger one is a bug upstream.
    u32::try_from(len).expect("gRPC message over 4 GiB")
}

/// Splits a gRPC body into `(compressed flag, payload)` messages; `None` if it ends mid-message.
pub fn split_messages(mut body: &[u8]) -> Option<Vec<(u8, Bytes)>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < PREFIX_LEN {
            return None;
        }
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let end = PREFIX_LEN.checked_add(len)?;
        if body.len() < end {
            return None;
        }
        out.push((body[0], Bytes::copy_from_slice(&body[PREFIX_LEN..end])));
        body = &body[end..];
    }
    Some(out)
}

/// What a body rewriter does to each message.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Inflate flag-1 messages to flag-0 ones; refuse messages over `limit` bytes.
    Decompress {
        /// Most bytes of one message, on the wire and inflated.
        limit: usize,
    },
    /// Compress non-empty flag-0 messages to flag-1 ones.
    Compress,
}

/// gRPC messages reassembled from body bytes split anywhere and rewritten one by one (the state
/// machine of the body rewriter, apart from HTTP so it can be fuzzed on its own).
pub struct Messages {
    mode: Mode,
    /// Bytes received but not yet a whole message.
    buf: BytesMut,
}

impl Messages {
    /// No bytes yet.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            buf: BytesMut::new(),
        }
    }

    /// Appends received body bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that are not a whole message yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The held bytes, leaving none (what is left when the body ends mid-message).
    pub fn take_rest(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// Drops the held bytes (after an error).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// The next whole message, prefix included and rewritten, if the held bytes have one.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, SnappyError> {
        if self.buf.len() < PREFIX_LEN {
            return Ok(None);
        }
        let flag = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if let Mode::Decompress { limit } = self.mode {
            // Checked before buffering the message, so a huge length prefix costs nothing.
            if len > limit {
                return Err(SnappyError::WireTooLarge { len, limit });
            }
        }
        let total = PREFIX_LEN + len;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let whole = self.buf.split_to(total);
        let payload = &whole[PREFIX_LEN..];
        let out = match (self.mode, flag) {
            (Mode::Decompress { limit }, 1) => {
                let mut out = Vec::with_capacity(PREFIX_LEN + 2 * payload.len());
                out.extend_from_slice(&[0; PREFIX_LEN]);
                append_decompressed(payload, limit, &mut out)?;
                let n = prefix_len(out.len() - PREFIX_LEN);
                out[1..PREFIX_LEN].copy_from_slice(&n.to_be_bytes());
                Bytes::from(out)
            }
            // grpc-go sends empty messages uncompressed even on a compressed call.
            (Mode::Compress, 0) if !payload.is_empty() => {
                let mut out = Vec::with_capacity(
                    PREFIX_LEN + snap::raw::max_compress_len(payload.len()) + 32,
                );
                out.extend_from_slice(&[1, 0, 0, 0, 0]);
                append_compressed(payload, &mut out);
                let n = prefix_len(out.len() - PREFIX_LEN);
                out[1..PREFIX_LEN].copy_from_slice(&n.to_be_bytes());
                Bytes::from(out)
            }
            // Uncompressed messages of a snappy request, and anything with another flag
            // (which tonic refuses with its own protocol error), go on as they are.
            _ => whole.freeze(),
        };
        Ok(Some(out))
    }
}

/// A gRPC body whose messages are rewritten one by one as they arrive, however the data frames
/// split them; trailers pass through untouched.
struct Reframe {
    inner: Body,
    messages: Messages,
    /// The inner body ended (with these trailers, if any) and only the held bytes are left.
    ended: Option<Option<HeaderMap>>,
    done: bool,
}

impl Reframe {
    fn new(inner: Body, mode: Mode) -> Self {
        Self {
            inner,
            messages: Messages::new(mode),
            ended: None,
            done: false,
        }
    }
}

impl http_body::Body for Reframe {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.messages.next_message() {
                Ok(Some(msg)) => return Poll::Ready(Some(Ok(Frame::data(msg)))),
                Ok(None) => {}
                Err(e) => {
                    this.done = true;
                    this.messages.clear();
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            if let Some(trailers) = &mut this.ended {
                // A partial message left at the end goes on as is: the decoder behind us
                // reports the truncation in its own words.
                if this.messages.pending() > 0 {
                    return Poll::Ready(Some(Ok(Frame::data(this.messages.take_rest()))));
                }
                this.done = true;
                return Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.messages.push(&data),
                    Err(frame) => this.ended = Some(frame.into_trailers().ok()),
                },
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.ended = Some(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// The compression a request's `grpc-encoding` asks for.
enum Encoding {
    Identity,
    Snappy,
    Unsupported(String),
}

fn encoding_of(headers: &HeaderMap) -> Encoding {
    match headers.get(ENCODING_HEADER).map(HeaderValue::as_bytes) {
        None | Some(b"identity") => Encoding::Identity,
        Some(b"snappy") => Encoding::Snappy,
        Some(other) => Encoding::Unsupported(String::from_utf8_lossy(other).into_owned()),
    }
}

/// Adds `snappy` to the response's `grpc-accept-encoding`, keeping what tonic put there.
fn advertise(headers: &mut HeaderMap) {
    let value = match headers.get(ACCEPT_ENCODING_HEADER).map(HeaderValue::to_str) {
        Some(Ok(v)) if v.split(',').any(|e| e.trim() == SNAPPY) => return,
        Some(Ok(v)) if !v.trim().is_empty() => HeaderValue::from_str(&format!("{v},{SNAPPY}"))
            .unwrap_or(HeaderValue::from_static(SNAPPY)),
        _ => HeaderValue::from_static(SNAPPY),
    };
    headers.insert(ACCEPT_ENCODING_HEADER, value);
}

/// Wraps a gRPC server in Thanos's `snappy` compression; see the module docs.
#[derive(Clone, Copy, Debug)]
pub struct SnappyLayer {
    max_message_bytes: usize,
}

impl SnappyLayer {
    /// A layer refusing request messages over `max_message_bytes`, compressed or decompressed
    /// (the services' own receive limit).
    pub fn new(max_message_bytes: usize) -> Self {
        Self { max_message_bytes }
    }
}

impl<S> tower::Layer<S> for SnappyLayer {
    type Service = SnappyService<S>;

    fn layer(&self, inner: S) -> SnappyService<S> {
        SnappyService {
            inner,
            max_message_bytes: self.max_message_bytes,
        }
    }
}

/// The service [`SnappyLayer`] makes.
#[derive(Clone, Debug)]
pub struct SnappyService<S> {
    inner: S,
    max_message_bytes: usize,
}

impl<S> tower::Service<Request<Body>> for SnappyService<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        match encoding_of(request.headers()) {
            Encoding::Identity => {
                let fut = self.inner.call(request);
                Box::pin(async move {
                    let mut response = fut.await?;
                    advertise(response.headers_mut());
                    Ok(response)
                })
            }
            Encoding::Unsupported(name) => {
                // grpc-go's server answer, before reading any message.
                let status = Status::unimplemented(format!(
                    "grpc: Decompressor is not installed for grpc-encoding {name:?}"
                ));
                let mut response: Response<Body> = status.into_http();
                advertise(response.headers_mut());
                Box::pin(async move { Ok(response) })
            }
            Encoding::Snappy => {
                request.headers_mut().remove(ENCODING_HEADER);
                let limit = self.max_message_bytes;
                let request =
                    request.map(|b| Body::new(Reframe::new(b, Mode::Decompress { limit })));
                let fut = self.inner.call(request);
                Box::pin(async move {
                    let mut response = fut.await?;
                    let headers = response.headers_mut();
                    advertise(headers);
                    // A trailers-only answer (an error status in the headers) has no messages,
                    // and a body some service already compressed is left alone.
                    if headers.contains_key(Status::GRPC_STATUS)
                        || headers.contains_key(ENCODING_HEADER)
                    {
                        return Ok(response);
                    }
                    headers.insert(ENCODING_HEADER, HeaderValue::from_static(SNAPPY));
                    Ok(response.map(|b| Body::new(Reframe::new(b, Mode::Compress))))
                })
            }
        }
    }
}

/// A client transport (such as a tonic `Channel`) that sends every request message compressed
/// with `grpc-encoding: snappy` and inflates snappy responses, so tonic's client sees identity.
#[derive(Clone, Debug)]
pub struct SnappyClient<S> {
    inner: S,
    max_message_bytes: usize,
}

impl<S> SnappyClient<S> {
    /// Wraps `inner`; response messages over `max_message_bytes` are refused.
    pub fn new(inner: S, max_message_bytes: usize) -> Self {
        Self {
            inner,
            max_message_bytes,
        }
    }
}

impl<S> tower::Service<Request<Body>> for SnappyClient<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let headers = request.headers_mut();
        headers.insert(ENCODING_HEADER, HeaderValue::from_static(SNAPPY));
        headers.insert(ACCEPT_ENCODING_HEADER, HeaderValue::from_static(SNAPPY));
        let request = request.map(|b| Body::new(Reframe::new(b, Mode::Compress)));
        let fut = self.inner.call(request);
        let limit = self.max_message_bytes;
        Box::pin(async move {
            let mut response = fut.await?;
            if encoding_of(response.headers()).is_snappy() {
                response.headers_mut().remove(ENCODING_HEADER);
                return Ok(response.map(|b| Body::new(Reframe::new(b, Mode::Decompress { limit }))));
            }
            Ok(response)
        })
    }
}

impl Encoding {
    fn is_snappy(&self) -> bool {
        matches!(self, Encoding::Snappy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Inputs and their framing made by python-snappy over libsnappy (see the vectors' README).
    const VECTORS: [(&str, &[u8], &[u8]); 4] = [
        (
            "empty",
            include_bytes!("../../tests/vectors/snappy_framing/empty.bin"),
            include_bytes!("../../tests/vectors/snappy_framing/empty.sz"),
        ),
        (
            "short_text",
            include_bytes!("../../tests/vectors/snappy_framing/short_text.bin"),
            include_bytes!("../../tests/vectors/snappy_framing/short_text.sz"),
        ),
        (
            "protobuf_100k",
            include_bytes!("../../tests/vectors/snappy_framing/protobuf_100k.bin"),
            include_bytes!("../../tests/vectors/snappy_framing/protobuf_100k.sz"),
        ),
        (
            "random_4k",
            include_bytes!("../../tests/vectors/snappy_framing/random_4k.bin"),
            include_bytes!("../../tests/vectors/snappy_framing/random_4k.sz"),
        ),
    ];

    /// `(chunk type, chunk length)` of each chunk of a framed stream.
    fn chunks(mut framed: &[u8]) -> Vec<(u8, usize)> {
        let mut out = Vec::new();
        while !framed.is_empty() {
            let len =
                usize::from(framed[1]) | usize::from(framed[2]) << 8 | usize::from(framed[3]) << 16;
            out.push((framed[0], len));
            framed = &framed[4 + len..];
        }
        out
    }

    #[test]
    fn python_made_frames_decode_to_their_inputs() {
        for (name, input, framed) in VECTORS {
            let got = decompress(framed, 1 << 20).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, input, "{name}");
        }
        // The vectors cover what they claim: both chunk kinds, and a message over two chunks.
        let kinds = |name: &str| {
            let (_, _, framed) = VECTORS.iter().find(|v| v.0 == name).unwrap();
            chunks(framed).iter().map(|c| c.0).collect::<Vec<_>>()
        };
        assert_eq!(kinds("empty"), [0xff]);
        assert_eq!(kinds("short_text"), [0xff, 0x01]);
        assert_eq!(kinds("protobuf_100k"), [0xff, 0x00, 0x00]);
        assert_eq!(kinds("random_4k"), [0xff, 0x01]);
    }

    #[test]
    fn our_frames_decode_back_and_match_the_format() {
        for (name, input, framed) in VECTORS {
            let ours = compress(input);
            assert_eq!(decompress(&ours, 1 << 20).unwrap(), input, "{name}");
            if input.is_empty() {
                // No chunk at all: grpc-go's reader takes that as an empty message too.
                assert!(ours.is_empty(), "{name}: {ours:?}");
                continue;
            }
            // Same stream identifier; data chunks of at most 64 KiB each, as many as Python's.
            assert_eq!(ours[..10], framed[..10], "{name}");
            let (theirs, ours) = (chunks(framed), chunks(&ours));
            assert_eq!(ours.len(), theirs.len(), "{name}: {ours:?} vs {theirs:?}");
            assert!(ours[1..].iter().all(|c| c.0 <= 1), "{name}: {ours:?}");
        }
        // Repeated protobuf compresses like libsnappy's output does (within 10%).
        let (_, input, framed) = VECTORS[2];
        let ours = compress(input).len();
        assert!(ours * 10 <= framed.len() * 11, "{ours} vs {}", framed.len());
    }

    #[test]
    fn corrupt_frames_are_refused() {
        let (_, _, short) = VECTORS[1];
        let (_, _, proto) = VECTORS[2];
        // A flipped payload byte fails the masked CRC-32C, in both chunk kinds.
        for framed in [short, proto] {
            let mut bad = framed.to_vec();
            let last = bad.len() - 1;
            bad[last] ^= 0x40;
            let err = decompress(&bad, 1 << 20).unwrap_err();
            assert!(matches!(err, SnappyError::Corrupt(_)), "{err:?}");
        }
        // Truncated mid-chunk, and data without the stream identifier.
        let err = decompress(&proto[..proto.len() - 1], 1 << 20).unwrap_err();
        assert!(matches!(err, SnappyError::Corrupt(_)), "{err:?}");
        let err = decompress(&short[10..], 1 << 20).unwrap_err();
        assert!(matches!(err, SnappyError::Corrupt(_)), "{err:?}");
        // A raw snappy block (not the framing format) is not accepted either.
        let raw = snap::raw::Encoder::new().compress_vec(b"hello").unwrap();
        assert!(decompress(&raw, 1 << 20).is_err());
        let status = Status::from(err);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(
            status
                .message()
                .starts_with("grpc: failed to decompress the received message: "),
            "{}",
            status.message()
        );
    }

    #[test]
    fn decompression_stops_at_the_limit() {
        let big = vec![7u8; 1 << 20];
        let framed = compress(&big);
        assert!(framed.len() < 64 << 10, "a bomb: {} bytes", framed.len());
        let err = decompress(&framed, 100_000).unwrap_err();
        assert!(matches!(
            err,
            SnappyError::DecompressedTooLarge { limit: 100_000 }
        ));
        let status = Status::from(err);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status.message(),
            "grpc: received message after decompression larger than max 100000"
        );
        // Exactly at the limit is fine.
        assert_eq!(decompress(&framed, 1 << 20).unwrap().len(), 1 << 20);
    }

    fn body_of(chunks: Vec<Bytes>, trailers: Option<HeaderMap>) -> Body {
        let mut frames: Vec<Result<Frame<Bytes>, Status>> =
            chunks.into_iter().map(|c| Ok(Frame::data(c))).collect();
        frames.extend(trailers.map(|t| Ok(Frame::trailers(t))));
        Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
    }

    /// Everything a body yields: data concatenated, trailers, and the error that ended it.
    async fn drain(mut body: Body) -> (Vec<u8>, Option<HeaderMap>, Option<Status>) {
        let (mut data, mut trailers) = (Vec::new(), None);
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(f) => trailers = f.into_trailers().ok(),
                },
                Err(e) => return (data, trailers, Some(e)),
            }
        }
        (data, trailers, None)
    }

    fn reframe(chunks: Vec<Bytes>, mode: Mode) -> Body {
        Body::new(Reframe::new(body_of(chunks, None), mode))
    }

    fn concat(parts: &[Bytes]) -> Bytes {
        parts.concat().into()
    }

    #[tokio::test]
    async fn messages_split_anywhere_are_inflated_in_order() {
        let a = b"first message, compressed ".repeat(10);
        let b = b"second, sent uncompressed".to_vec();
        let c = VECTORS[3].1.to_vec();
        let wire = concat(&[
            message(true, &compress(&a)),
            message(false, &b),
            message(true, VECTORS[3].2),
            message(true, VECTORS[0].2),
            message(false, b""),
        ]);
        let want = concat(&[
            message(false, &a),
            message(false, &b),
            message(false, &c),
            message(false, b""),
            message(false, b""),
        ]);
        let mode = Mode::Decompress { limit: 1 << 20 };
        // One data frame holding all messages, then every split into two frames.
        for at in 0..=wire.len() {
            let parts = vec![wire.slice(..at), wire.slice(at..)];
            let (got, _, err) = drain(reframe(parts, mode)).await;
            assert!(err.is_none(), "split at {at}: {err:?}");
            assert_eq!(got, want, "split at {at}");
        }
        // One byte per data frame.
        let parts = (0..wire.len()).map(|i| wire.slice(i..i + 1)).collect();
        let (got, _, err) = drain(reframe(parts, mode)).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn oversized_bombs_and_corrupt_messages_end_the_body_with_go_codes() {
        let mode = Mode::Decompress { limit: 100_000 };
        // A length prefix over the limit is refused before its bytes arrive.
        let huge = Bytes::from_static(&[1, 0xff, 0xff, 0xff, 0xff]);
        let (data, _, err) = drain(reframe(vec![huge], mode)).await;
        let err = err.expect("refused");
        assert!(data.is_empty());
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            err.message(),
            "grpc: received message larger than max (4294967295 vs. 100000)"
        );
        // A small message inflating past the limit, after a good one that still gets through.
        let bomb = concat(&[
            message(true, &compress(b"ok")),
            message(true, &compress(&vec![0u8; 1 << 20])),
        ]);
        let (data, _, err) = drain(reframe(vec![bomb], mode)).await;
        assert_eq!(data, message(false, b"ok"));
        assert_eq!(err.expect("refused").code(), tonic::Code::ResourceExhausted);
        // A corrupt one.
        let mut bad = compress(&b"abc".repeat(100));
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let (_, _, err) = drain(reframe(vec![message(true, &bad)], mode)).await;
        assert_eq!(err.expect("refused").code(), tonic::Code::Internal);
        // A message cut short by the end of the body goes on as is, for tonic to report.
        let cut = message(true, &compress(b"abc")).slice(..7);
        let (data, _, err) = drain(reframe(vec![cut.clone()], mode)).await;
        assert!(err.is_none());
        assert_eq!(data, cut);
    }

    #[tokio::test]
    async fn responses_are_compressed_per_message_and_trailers_kept() {
        let msgs: Vec<Vec<u8>> = vec![b"x".repeat(200_000), vec![], b"tail".to_vec()];
        let wire = concat(&msgs.iter().map(|m| message(false, m)).collect::<Vec<_>>());
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let parts = vec![
            wire.slice(..3),
            wire.slice(3..100_003),
            wire.slice(100_003..),
        ];
        let body = Body::new(Reframe::new(
            body_of(parts, Some(trailers.clone())),
            Mode::Compress,
        ));
        let (data, got_trailers, err) = drain(body).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got_trailers, Some(trailers));
        let got = split_messages(&data).expect("whole messages");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, 1);
        assert!(got[0].1.len() < 20_000, "{}", got[0].1.len());
        assert_eq!(decompress(&got[0].1, 1 << 20).unwrap(), msgs[0]);
        // Empty messages stay uncompressed, as grpc-go sends them.
        assert_eq!((got[1].0, got[1].1.len()), (0, 0));
        assert_eq!(got[2].0, 1);
        assert_eq!(decompress(&got[2].1, 1 << 20).unwrap(), msgs[2]);
    }

    /// Answers with the request body echoed, `x-saw-encoding` set when the request still had a
    /// `grpc-encoding` header, and an OK trailer; or with `fail` as a trailers-only error.
    #[derive(Clone, Default)]
    struct Echo {
        calls: Arc<AtomicUsize>,
        fail: Option<tonic::Code>,
    }

    impl tower::Service<Request<Body>> for Echo {
        type Response = Response<Body>;
        type Error = std::convert::Infallible;
        type Future = BoxFuture<'static, Result<Response<Body>, std::convert::Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<Body>) -> Self::Future {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let fail = self.fail;
            Box::pin(async move {
                if let Some(code) = fail {
                    return Ok(Status::new(code, "nope").into_http());
                }
                let saw = request.headers().contains_key(ENCODING_HEADER);
                let (data, _, err) = drain(request.into_body()).await;
                if let Some(status) = err {
                    return Ok(status.into_http());
                }
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                let mut response = Response::new(body_of(vec![Bytes::from(data)], Some(trailers)));
                if saw {
                    response
                        .headers_mut()
                        .insert("x-saw-encoding", HeaderValue::from_static("1"));
                }
                Ok(response)
            })
        }
    }

    async fn call(
        echo: Echo,
        encoding: Option<&'static str>,
        body: Bytes,
    ) -> (http::response::Parts, Vec<u8>, Option<HeaderMap>) {
        use tower::{Layer, Service};
        let mut svc = SnappyLayer::new(1 << 20).layer(echo);
        let mut request = Request::new(body_of(vec![body], None));
        if let Some(e) = encoding {
            request
                .headers_mut()
                .insert(ENCODING_HEADER, HeaderValue::from_static(e));
        }
        let response = svc.call(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let (data, trailers, err) = drain(body).await;
        assert!(err.is_none(), "{err:?}");
        (parts, data, trailers)
    }

    #[tokio::test]
    async fn the_layer_inflates_snappy_calls_and_answers_in_kind() {
        let payload = b"a WriteRequest, say ".repeat(50);
        let (parts, data, trailers) = call(
            Echo::default(),
            Some("snappy"),
            message(true, &compress(&payload)),
        )
        .await;
        assert!(!parts.headers.contains_key("x-saw-encoding"));
        assert_eq!(parts.headers[ENCODING_HEADER], "snappy");
        assert_eq!(parts.headers[ACCEPT_ENCODING_HEADER], "snappy");
        assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
        let got = split_messages(&data).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 1);
        assert_eq!(decompress(&got[0].1, 1 << 20).unwrap(), payload);

        // Identity and no header pass through untouched (the inner service sees the header).
        for enc in [None, Some("identity")] {
            let wire = message(false, &payload);
            let (parts, data, _) = call(Echo::default(), enc, wire.clone()).await;
            assert_eq!(data, wire);
            assert!(!parts.headers.contains_key(ENCODING_HEADER));
            assert_eq!(parts.headers.contains_key("x-saw-encoding"), enc.is_some());
            assert_eq!(parts.headers[ACCEPT_ENCODING_HEADER], "snappy");
        }

        // A trailers-only error answer to a snappy call gets no grpc-encoding.
        let echo = Echo {
            fail: Some(tonic::Code::NotFound),
            ..Echo::default()
        };
        let (parts, data, _) = call(echo, Some("snappy"), message(true, b"")).await;
        assert!(data.is_empty());
        assert!(!parts.headers.contains_key(ENCODING_HEADER));
        assert_eq!(parts.headers["grpc-status"], "5");
    }

    #[tokio::test]
    async fn unknown_encodings_get_grpc_gos_unimplemented() {
        let echo = Echo::default();
        let (parts, data, _) = call(echo.clone(), Some("br"), message(true, b"zz")).await;
        assert_eq!(echo.calls.load(Ordering::SeqCst), 0);
        assert!(data.is_empty());
        let status = Status::from_header_map(&parts.headers).expect("a status");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert_eq!(
            status.message(),
            "grpc: Decompressor is not installed for grpc-encoding \"br\""
        );
        assert_eq!(parts.headers[ACCEPT_ENCODING_HEADER], "snappy");
    }

    #[test]
    fn advertising_keeps_what_is_there() {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING_HEADER, HeaderValue::from_static("gzip"));
        advertise(&mut h);
        assert_eq!(h[ACCEPT_ENCODING_HEADER], "gzip,snappy");
        advertise(&mut h);
        assert_eq!(h[ACCEPT_ENCODING_HEADER], "gzip,snappy");
    }
}
