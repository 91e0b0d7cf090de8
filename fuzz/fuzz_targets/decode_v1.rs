//! Fuzzes `decode_v1`: never panics, and whatever decodes is consistent and re-encodes.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = ringest::remote_write::decode_v1(data) {
        common::check(&req);
    }
});
