#!/usr/bin/env bash
# Runs every check Ringest has: formatting, lints, unit, property and end-to-end tests.
# Installs what the tests need (Debian's prometheus package for Prometheus 2.42 and promtool) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ringest/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

scripts/install-test-deps.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --release --bins
cargo test --workspace --release
[ "${RINGEST_SKIP_FUZZ:-0}" = 1 ] || scripts/fuzz-smoke.sh # every fuzz target ~15 s; RINGEST_SKIP_FUZZ=1 skips
