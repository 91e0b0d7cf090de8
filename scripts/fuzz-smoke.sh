#!/usr/bin/env bash
# Fuzz smoke test: runs every cargo-fuzz target of fuzz/ for a few seconds from its committed
# corpus (fuzz/corpus/<target>/) and fails on any crash, hang or leak libFuzzer reports.
# Installs the nightly toolchain (minimal profile) and cargo-fuzz when missing; quiet when present.
# The fuzz build has its own target directory, kept between runs:
#   RINGEST_FUZZ_TARGET_DIR   (default $HOME/.cache/ringest/fuzz-target)
#   RINGEST_FUZZ_SECONDS      seconds per target (default 15)
# Inputs found during the run go to a temporary directory, never into the committed corpus; a
# crashing input is kept under fuzz/artifacts/<target>/ (reproduce with
#   cd fuzz && cargo +nightly fuzz run <target> artifacts/<target>/<file>).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${RINGEST_FUZZ_SECONDS:-15}"
target_dir="${RINGEST_FUZZ_TARGET_DIR:-$HOME/.cache/ringest/fuzz-target}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing the nightly toolchain" >&2
  rustup toolchain install nightly --profile minimal >/dev/null
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --quiet
fi

cd fuzz
start=$SECONDS
cargo +nightly fuzz build --target-dir "$target_dir"
echo "fuzz-smoke: built the fuzz targets in $((SECONDS - start)) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for target in $(cargo +nightly fuzz list); do
  mkdir -p "$work/$target" "artifacts/$target"
  log="$work/$target.log"
  # New inputs go to $work/$target (first directory); the committed corpus is only read.
  if cargo +nightly fuzz run --target-dir "$target_dir" "$target" "$work/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
      -artifact_prefix="artifacts/$target/" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n1 || true)
    echo "fuzz-smoke: $target ok: ${execs:-?} executions, ${cov:-cov: ?}"
  else
    echo "fuzz-smoke: $target FAILED; last lines of its log:" >&2
    tail -n 60 "$log" >&2
    failed+=("$target")
  fi
done
echo "fuzz-smoke: done in $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: crashes in ${failed[*]}; inputs under fuzz/artifacts/" >&2
  exit 1
fi
