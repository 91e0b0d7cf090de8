//! Thanos-compatible hash ring placement.
