//! Fuzzes what a peer sends over gRPC: `decode_thanos_write` (a router's replicated write) never
//! panics, and whatever decodes is consistent and re-encodes; the same bytes as a conflict
//! answer's rejected-series metadata decode to ascending indexes that round-trip.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = ringest::remote_write::decode_thanos_write(data) {
        common::check(&req);
    }
    if let Some(v) = ringest::grpc::decode_rejected_series(data) {
        assert!(v.windows(2).all(|w| w[0].0 < w[1].0), "{v:?}");
        let again = ringest::grpc::encode_rejected_series(&v).expect("decoded lists fit");
        assert_eq!(ringest::grpc::decode_rejected_series(&again), Some(v));
    }
});
