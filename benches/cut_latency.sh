#!/usr/bin/env bash
# Write latency while many tenants cut blocks at the same moment (issue #4: "cutting many tenants at
# once must not stall writes"). Runs the same multi-tenant load twice against `ringest all-in-one`,
# side by side in one run:
#   baseline  --tsdb.block-duration=2h: no block is cut during the run;
#   cutting   --tsdb.block-duration=30s: every tenant's head crosses a block boundary at the same
#             timestamps, so all tenants become compactable together, again and again.
# Timestamps advance one second per round of all series (ringest-loadtest --scrape-interval 1s), so
# `--rate` fixes how fast the data's clock runs: 100k series at 100k samples/s = 1 data-second per
# second, i.e. a cut of every tenant every 30 s.
# Prints p50/p99/p999/max write latency of both runs, their ratio, and the blocks cut.
#
# Usage: benches/cut_latency.sh [--tenants N] [--series N] [--rate R] [--duration SEC] [--no-build]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tenants=50; series=100000; rate=100000; duration=120; build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --tenants) tenants="$2"; shift 2;;
    --series) series="$2"; shift 2;;
    --rate) rate="$2"; shift 2;;
    --duration) duration="$2"; shift 2;;
    --no-build) build=0; shift;;
    *) echo "unknown flag $1" >&2; exit 2;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ringest/target}"
[ "$build" = 1 ] && (cd "$ROOT" && cargo build --release --workspace --bins >&2)
BIN="$CARGO_TARGET_DIR/release"
tenant_list=$(seq -s, -f 't%g' 0 $((tenants - 1)))
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run() { # name block-duration
  local name="$1" bd="$2" port=$((20000 + RANDOM % 20000))
  "$BIN/ringest" all-in-one --tsdb.path="$work/$name" --tsdb.block-duration="$bd" \
    --remote-write.address=127.0.0.1:$port --http-address=127.0.0.1:$((port + 1)) \
    --grpc-address=127.0.0.1:$((port + 2)) 2>"$work/$name.log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((port + 1))/-/ready" >/dev/null && break; sleep 0.1; done
  "$BIN/ringest-loadtest" --url "http://127.0.0.1:$port/api/v1/receive" --tenant "$tenant_list" \
    --concurrency "$tenants" --series "$series" --samples-per-request 500 --scrape-interval 1s \
    --rate "$rate" --duration "${duration}s" --json > "$work/$name.json"
  local cuts; cuts=$(curl -s "http://127.0.0.1:$((port + 1))/metrics" | awk '/^ringest_tsdb_blocks_cut_total/ {print $2}')
  kill -TERM $pid; wait $pid || true
  python3 - "$work/$name.json" "$name" "${cuts:-0}" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:9} cuts={sys.argv[3]:>5}  accepted={d['accepted_samples_per_sec']:.0f}/s errors={d['errors']}  "
      + "  ".join(f"{k}={d[k + '_ms']:.2f}ms" for k in ("p50", "p99", "p999", "max")))
PY
}
echo "tenants=$tenants series=$series rate=$rate/s duration=${duration}s" >&2
run baseline 2h | tee "$work/out.txt"
run cutting 30s | tee -a "$work/out.txt"
python3 - "$work/baseline.json" "$work/cutting.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
print("ratio cutting/baseline: " + "  ".join(f"{k}={b[k + '_ms'] / a[k + '_ms']:.2f}x" for k in ("p50", "p99", "p999", "max")))
PY
