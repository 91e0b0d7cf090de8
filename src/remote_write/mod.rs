//! Remote write 1.0 / 2.0 decoding.
