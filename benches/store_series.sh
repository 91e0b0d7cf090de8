#!/usr/bin/env bash
# A large Store API read (issue 11: "a query over many series streamed in bounded memory"):
# loads --series series x --samples samples into a fresh `ringest all-in-one` head with
# ringest-loadtest, then makes one Thanos Store API `Series` call over all of it with
# ringest-store-read (batches of 64, as Query v0.41+ asks) and reports how long it took and how
# much the server's RSS grew while it streamed (VmRSS sampled every 20 ms).
#
# Usage: benches/store_series.sh [--series N] [--samples S] [--workdir DIR] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
series=1000000 samples=120 workdir="${TMPDIR:-/tmp}" build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --series) series="$2"; shift 2 ;;
    --samples) samples="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
target="${CARGO_TARGET_DIR:-$HOME/.cache/ringest/target}"
[ "$build" = 1 ] && CARGO_TARGET_DIR="$target" cargo build --release -q --bin ringest -p loadtest
bin="$target/release"
dir="$(mktemp -d "$workdir/ringest-store-series.XXXXXX")"
trap 'kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rw=$(port) http=$(port) grpc=$(port)
"$bin/ringest" all-in-one --remote-write.address=127.0.0.1:$rw --http-address=127.0.0.1:$http \
  --grpc-address=127.0.0.1:$grpc --tsdb.path="$dir/data" --label='receive_replica="0"' \
  2>"$dir/ringest.log" &
pid=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$http/-/ready" >/dev/null && break; sleep 0.1; done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }

requests=$(( series * samples / 2000 ))
echo "loading $series series x $samples samples ($requests requests)..." >&2
load_started=$(date +%s.%N)
"$bin/ringest-loadtest" --url "http://127.0.0.1:$rw/api/v1/receive" --series "$series" \
  --requests "$requests" --samples-per-request 2000 --concurrency 4 --scrape-interval 1ms \
  --json >"$dir/load.json"
load_s=$(echo "$(date +%s.%N) - $load_started" | bc)
sleep 2
rss_before=$(rss)

"$bin/ringest-store-read" --addr "127.0.0.1:$grpc" --matcher '__name__=~.+' >"$dir/read.json" &
reader=$!
peak=$rss_before
while kill -0 "$reader" 2>/dev/null; do
  r=$(rss); [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r
  sleep 0.02
done
wait "$reader"
rss_after=$(rss)
python3 - "$dir/load.json" "$dir/read.json" "$series" "$samples" "$load_s" "$rss_before" "$peak" "$rss_after" <<'PY'
import json, sys
load = json.load(open(sys.argv[1])); read = json.load(open(sys.argv[2]))
series, samples, load_s = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
before, peak, after = (int(x) for x in sys.argv[6:9])
print(json.dumps({
  "series": series, "samples_per_series": samples,
  "samples_accepted": load.get("samples_accepted"), "load_seconds": round(load_s, 1),
  "rss_before_read_mib": round(before / 1024), "rss_peak_during_read_mib": round(peak / 1024),
  "rss_growth_during_read_mib": round((peak - before) / 1024),
  "rss_growth_per_series_bytes": round((peak - before) * 1024 / series),
  "rss_after_read_mib": round(after / 1024),
  "read": read,
}, indent=1))
PY
