//! Fuzzes Thanos's `snappy` gRPC compression as the gRPC listener meets it: body bytes split at
//! arbitrary points are reassembled into messages and inflated under a size limit. Never panics,
//! never hands on more than the limit, gives the same messages however the body is split, and what
//! it inflates matches the one-shot decoder; compressing a message and inflating it round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringest::grpc::snappy::{compress, decompress, split_messages, Messages, Mode};

const LIMIT: usize = 1 << 16;

/// Feeds `body` in pieces of the sizes `cuts` gives (cycled), collecting messages until an error.
fn run(body: &[u8], cuts: &[u8]) -> (Vec<Vec<u8>>, bool) {
    let mut m = Messages::new(Mode::Decompress { limit: LIMIT });
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = (cuts.get(i % cuts.len().max(1)).copied().unwrap_or(0) as usize + 1).min(rest.len());
        i += 1;
        m.push(&rest[..n]);
        rest = &rest[n..];
        loop {
            match m.next_message() {
                Ok(Some(msg)) => {
                    assert!(msg.len() >= 5);
                    let len = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]) as usize;
                    assert_eq!(len, msg.len() - 5, "prefix matches payload");
                    assert!(len <= LIMIT, "over the limit: {len}");
                    out.push(msg.to_vec());
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let (cuts, body) = data.split_at(data.len().min(4));
    let (a, a_err) = run(body, cuts);
    let (b, b_err) = run(body, &[255]);
    assert_eq!((&a, a_err), (&b, b_err), "same messages whatever the split");
    if !a_err {
        // Whole messages only: the one-shot splitter and decoder agree with the stream.
        if let Some(whole) = split_messages(body) {
            assert_eq!(whole.len(), a.len());
            for ((flag, payload), got) in whole.iter().zip(&a) {
                if *flag == 1 {
                    assert_eq!(decompress(payload, LIMIT).ok().as_deref(), Some(&got[5..]));
                    assert_eq!(got[0], 0);
                } else {
                    assert_eq!(&got[5..], &payload[..]);
                }
            }
        }
    }
    if body.len() <= LIMIT {
        assert_eq!(decompress(&compress(body), LIMIT).unwrap(), body);
    }
});
