#!/usr/bin/env bash
# The race (issue #3, deliverable 3): the same remote-write load against `ringest all-in-one` and
# against Prometheus's own receiver (`prometheus --web.enable-remote-write-receiver`, Debian 2.42), one
# after the other on this machine, each with its data in a fresh temp dir on local disk. Prints the
# figures side by side with ratios (ringest / prometheus) and writes them all to a JSON file.
#
# Per receiver, in order:
#   start, wait for /-/ready
#   warm-up   loadtest --rate 0 until the head holds every series (head-series metric >= --series)
#   peak      loadtest --rate 0 for --duration: accepted samples/s; receiver CPU (utime+stime from
#             /proc/<pid>/stat) before/after -> CPU seconds per million accepted samples
#   memory    VmRSS after warm-up + peak (every series written a few times) / --series
#   half      loadtest --rate peak/2 for --duration: p50/p99/p999 write latency
#   replay    SIGKILL (both receivers, so the whole WAL must be replayed: no clean shutdown, no
#             flush), restart on the same data dir, time from exec to /-/ready = 200; samples/s =
#             samples accepted during the whole run / seconds
#
# Usage: benches/compare.sh [--quick] [--series N] [--duration SEC] [--concurrency C] [--out FILE]
#          [--labels N] [--loadtest BIN] [--receivers "ringest prometheus"] [--workdir DIR]
#          [--no-build] [--keep]
#   --quick        100k series, 10 s phases (results go to a temp file unless --out is given)
#   --series N     active series (default 1000000), --labels labels per series (default 10)
#   --duration S   seconds of the peak and half-rate phases (default 30)
#   --concurrency  loadtest connections (default 6)
#   --out FILE     JSON with every figure (default benches/compare-results.json)
#   --loadtest BIN load generator with ringest-loadtest's flags and --json summary (default: the one
#                  built from loadtest/)
#   --scrape-interval D  timestamp step between rounds of a series (default 1ms, see below)
#   --workdir DIR  where the temp dir goes (default $TMPDIR or /tmp; must be local disk)
#   --keep         keep the temp dir (data and logs) and say where it is
#
# Timestamps: ringest-loadtest stamps round r of every series (its start - 5m) + r * --scrape-interval
# (capped at now + 5m), so a second run against the same receiver re-sends every series from
# (start - 5m), before the first run's last sample, and would be refused as out of order, unless the
# first run's rounds advanced less than the wall clock did. With 1ms per round that holds up to 1000
# rounds/s (e.g. 3M samples/s down to 3000 series): the phases can run one after the other on the same
# series, and the head never spans more than a few minutes, so neither receiver cuts a block and the
# replay covers every sample. Delta-of-delta timestamps compress the same whatever the step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELP="$ROOT/benches/compare"
M() { python3 "$HELP/measure.py" "$@"; }
log() { printf '[compare %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
fail() { log "error: $*"; exit 1; }

series=1000000
duration=30
concurrency=6
labels=10
samples_per_request=2000
scrape_interval=1ms
out=""
quick=0
loadtest=""
receivers="ringest prometheus"
workdir="${TMPDIR:-/tmp}"
build=1
keep=0
warmup_max=900     # seconds of warm-up at most, per receiver
ready_timeout=900  # seconds to wait for /-/ready (startup and WAL replay)

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; series=100000; duration=10 ;;
    --series) series="${2:?--series needs a value}"; shift ;;
    --duration) duration="${2:?--duration needs seconds}"; duration="${duration%s}"; shift ;;
    --concurrency) concurrency="${2:?--concurrency needs a value}"; shift ;;
    --labels) labels="${2:?--labels needs a value}"; shift ;;
    --out) out="${2:?--out needs a path}"; shift ;;
    --loadtest) loadtest="${2:?--loadtest needs a path}"; shift ;;
    --receivers) receivers="${2:?--receivers needs a list}"; shift ;;
    --scrape-interval) scrape_interval="${2:?--scrape-interval needs a duration}"; shift ;;
    --workdir) workdir="${2:?--workdir needs a path}"; shift ;;
    --no-build) build=0 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown flag $1 (see --help)" ;;
  esac
  shift
done
for v in series duration concurrency labels; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || fail "--$v must be a positive integer, got '${!v}'"
done
for r in $receivers; do
  case "$r" in ringest|prometheus) ;; *) fail "--receivers: unknown receiver $r" ;; esac
done

# --- processes and temp dir, all cleaned up on exit ------------------------------------------------
PIDS=()
WORK=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$keep" = 1 ]; then
      log "data and logs kept in $WORK (remove it when done)"
    elif [ "$rc" != 0 ]; then
      rm -rf "$WORK"/*/data
      log "the run failed: logs kept in $WORK (data removed; remove it when done)"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() { # drop $1 from PIDS
  local keep_pids=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep_pids+=("$p"); done
  PIDS=("${keep_pids[@]+"${keep_pids[@]}"}")
}

# --- what we need -----------------------------------------------------------------------------------
command -v python3 >/dev/null || fail "python3 is needed for the measuring helpers"
# Paths given relative to the caller's directory, before moving to the repository.
abspath() { python3 -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' "$1"; }
[ -n "$loadtest" ] && loadtest="$(abspath "$loadtest")"
[ -n "$out" ] && out="$(abspath "$out")"
workdir="$(abspath "$workdir")"
cd "$ROOT"
target="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "$loadtest" ] && ! cargo metadata --no-deps --format-version 1 2>/dev/null | grep -q '"name":"loadtest"'; then
  fail "the loadtest crate is not in this workspace; pass --loadtest BIN"
fi
if [ "$build" = 1 ]; then
  pkgs=(-p ringest)
  [ -z "$loadtest" ] && pkgs+=(-p loadtest)
  log "cargo build --release ${pkgs[*]}"
  cargo build --release "${pkgs[@]}" >&2 || fail "cargo build failed"
fi
ringest="$target/release/ringest"
loadtest="${loadtest:-$target/release/ringest-loadtest}"
[ -x "$ringest" ] || fail "$ringest not found (build it, or drop --no-build)"
[ -x "$loadtest" ] || fail "$loadtest not found or not executable"
if [[ " $receivers " == *" prometheus "* ]]; then
  if ! command -v prometheus >/dev/null 2>&1; then
    log "prometheus not installed: scripts/install-test-deps.sh"
    "$ROOT/scripts/install-test-deps.sh" >&2 || fail "could not install prometheus"
  fi
  prometheus_version="$(prometheus --version 2>&1 | head -n1)"
  case "$prometheus_version" in
    *"version 2.42."*) ;;
    *) log "warning: written against Prometheus 2.42, found: $prometheus_version" ;;
  esac
else
  prometheus_version=""
fi

mkdir -p "$workdir"
WORK="$(mktemp -d "$workdir/ringest-compare.XXXXXX")"
if [ -z "$out" ]; then
  if [ "$quick" = 1 ]; then out="$workdir/ringest-compare-quick-$(date -u +%Y%m%dT%H%M%SZ).json"; else out="$ROOT/benches/compare-results.json"; fi
fi
M machine "$WORK" > "$WORK/machine.json"
log "work dir $WORK; $series series x $labels labels, ${duration}s phases, concurrency $concurrency"
log "machine: $(cat "$WORK/machine.json")"
clk_tck="$(getconf CLK_TCK)"

# --- one receiver -----------------------------------------------------------------------------------
# Globals set by start_receiver: PID, READY_URL, METRICS_URL, WRITE_URL, HEAD_METRIC.
start_receiver() { # name dir logfile
  local name=$1 dir=$2 logf=$3
  case "$name" in
    ringest)
      "$ringest" all-in-one --remote-write.address="127.0.0.1:$RW_PORT" \
        --http-address="127.0.0.1:$HTTP_PORT" --grpc-address="127.0.0.1:$GRPC_PORT" \
        --tsdb.path="$dir/data" >>"$logf" 2>&1 &
      ;;
    prometheus)
      # Scraping disabled (no scrape_configs); retention at its default (15d) stated explicitly.
      printf 'global: {}\nscrape_configs: []\n' > "$dir/prometheus.yml"
      prometheus --config.file="$dir/prometheus.yml" --web.listen-address="127.0.0.1:$HTTP_PORT" \
        --storage.tsdb.path="$dir/data" --storage.tsdb.retention.time=15d \
        --web.enable-remote-write-receiver >>"$logf" 2>&1 &
      ;;
  esac
  PID=$!
  PIDS+=("$PID")
}

# The head-series gauge of the receiver, or n/a when it does not export one (yet).
head_series() { M metric "$METRICS_URL" "$HEAD_METRIC" 2>/dev/null || echo n/a; }

# User+sys CPU seconds of the children this shell reaped between two `times` snapshots (second line
# of `times`). `times` must run in this shell itself: a $(...) subshell has no children of its own.
cpu_between() { # file0 file1
  python3 - "$1" "$2" <<'PY'
import re, sys
def children(path):
    line = open(path).read().splitlines()[-1]
    return sum(float(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", line))
print(round(children(sys.argv[2]) - children(sys.argv[1]), 3))
PY
}

# run_load name phase rate duration: runs the load generator, keeps its JSON summary in
# $WORK/<name>-<phase>.json and its log beside; fails clearly if it gave no summary. SNAP0 and SNAP1
# hold "receiver-cpu machine-busy wall" just before the generator starts and just after it ends.
run_load() {
  local name=$1 phase=$2 rate=$3 dur=$4
  local outf="$WORK/$name-$phase.out" errf="$WORK/$name-$phase.log"
  SNAP0="$(M snap "$PID")"
  timeout --kill-after=10 "$((dur + 120))" "$loadtest" --url "$WRITE_URL" --tenant bench \
    --series "$series" --labels "$labels" --samples-per-request "$samples_per_request" \
    --concurrency "$concurrency" --duration "${dur}s" --rate "$rate" --protocol v1 \
    --scrape-interval "$scrape_interval" --json >"$outf" 2>"$errf" &
  local lpid=$!
  PIDS+=("$lpid")
  local rc=0
  times > "$WORK/times0"
  wait "$lpid" || rc=$?
  times > "$WORK/times1"
  SNAP1="$(M snap "$PID")"
  forget_pid "$lpid"
  echo "loadtest_cpu_${phase}_sec $(cpu_between "$WORK/times0" "$WORK/times1")" >> "$WORK/$name.kv"
  if [ "$rc" != 0 ]; then
    tail -n 5 "$errf" >&2 || true
    fail "$name $phase: load generator exited with $rc (log: $errf)"
  fi
  M last-json "$outf" > "$WORK/$name-$phase.json" || fail "$name $phase: no JSON summary in $outf"
  local acc errs
  acc="$(M json-field "$outf" samples_accepted)"
  errs="$(M json-field "$outf" errors)"
  TOTAL_ACCEPTED=$((TOTAL_ACCEPTED + acc))
  log "$name $phase: $(M json-field "$outf" accepted_samples_per_sec | xargs printf '%.0f') samples/s accepted," \
      "$acc samples, p99 $(M json-field "$outf" p99_ms) ms, errors $errs"
  if [ "$errs" != "{}" ]; then log "warning: $name $phase: non-2xx answers $errs"; fi
}

race() { # name
  local name=$1
  local dir="$WORK/$name"
  mkdir -p "$dir"
  local logf="$dir/$name.log" kv="$WORK/$name.kv"
  : > "$kv"
  put() { echo "$1 $2" >> "$kv"; }
  RW_PORT="$(M port)"; HTTP_PORT="$(M port)"; GRPC_PORT="$(M port)"
  case "$name" in
    ringest)
      WRITE_URL="http://127.0.0.1:$RW_PORT/api/v1/receive"; HEAD_METRIC=ringest_head_series ;;
    prometheus)
      WRITE_URL="http://127.0.0.1:$HTTP_PORT/api/v1/write"; HEAD_METRIC=prometheus_tsdb_head_series ;;
  esac
  READY_URL="http://127.0.0.1:$HTTP_PORT/-/ready"
  METRICS_URL="http://127.0.0.1:$HTTP_PORT/metrics"
  TOTAL_ACCEPTED=0

  log "$name: starting (log $logf)"
  local t0 t1
  t0="$(date +%s%N)"
  start_receiver "$name" "$dir" "$logf"
  t1="$(M wait-ready "$READY_URL" "$ready_timeout" "$PID")" || { tail -n 20 "$logf" >&2; fail "$name did not become ready"; }
  put startup_sec "$(python3 -c "print(($t1 - $t0) / 1e9)")"
  put rss_idle_bytes "$(M rss "$PID")"

  # Warm-up: until the head holds every series. A first short run tells the rate; if the head is not
  # full yet, one run long enough for more than one full round (the generator may restart at series 0).
  local warm=$(( duration < 10 ? duration : 10 )) spent=0 i=0 hs rate
  while :; do
    i=$((i + 1))
    run_load "$name" "warmup$i" 0 "$warm"
    spent=$((spent + warm))
    hs="$(head_series)"
    log "$name: head series $hs / $series after ${spent}s of warm-up"
    [ "$hs" != n/a ] && [ "$hs" -ge "$series" ] && break
    if [ "$i" -ge 4 ] || [ "$spent" -ge "$warmup_max" ]; then
      log "warning: $name: head holds $hs series, not $series, after ${spent}s of warm-up; going on"
      break
    fi
    rate="$(M json-field "$WORK/$name-warmup$i.json" accepted_samples_per_sec)"
    warm="$(python3 -c "import math; r=max(float('$rate'), 1.0); print(max(10, min($warmup_max - $spent, math.ceil(1.5 * $series / r) + 5)))")"
  done
  put warmup_sec "$spent"
  put head_series_after_warmup "$hs"
  put rss_after_warmup_bytes "$(M rss "$PID")"

  # Peak, with the receiver's CPU around it.
  # The whole machine's busy CPU too: on a shared machine, what neither the receiver nor the load
  # generator used was taken by someone else during the measurement.
  run_load "$name" peak 0 "$duration"
  local s0 s1
  read -r -a s0 <<< "$SNAP0"; read -r -a s1 <<< "$SNAP1"
  put cpu_peak_sec "$(python3 -c "print(round(${s1[0]} - ${s0[0]}, 3))")"
  put machine_busy_peak_sec "$(python3 -c "print(round(${s1[1]} - ${s0[1]}, 3))")"
  put wall_peak_sec "$(python3 -c "print(round(${s1[2]} - ${s0[2]}, 3))")"
  put loadavg_after_peak "$(cut -d' ' -f1 /proc/loadavg)"

  # Memory, now that every series has been written a few times.
  sleep 1
  put head_series "$(head_series)"
  put rss_bytes "$(M rss "$PID")"
  put rss_hwm_bytes "$(M hwm "$PID")"

  # Latency at half of the peak.
  local peak half
  peak="$(M json-field "$WORK/$name-peak.json" accepted_samples_per_sec)"
  half="$(python3 -c "print(int(float('$peak') / 2))")"
  [ "$half" -gt 0 ] || fail "$name: peak rate is 0, nothing to halve (see $WORK/$name-peak.log)"
  put half_rate_target "$half"
  run_load "$name" half "$half" "$duration"
  read -r -a s0 <<< "$SNAP0"; read -r -a s1 <<< "$SNAP1"
  put cpu_half_sec "$(python3 -c "print(round(${s1[0]} - ${s0[0]}, 3))")"

  # What a restart has to replay.
  put samples_written "$TOTAL_ACCEPTED"
  put wal_bytes "$(M du "$dir/data" wal)"
  put blocks_before_kill "$(M blocks "$dir/data")"
  put head_series_before_kill "$(head_series)"
  put rss_final_bytes "$(M rss "$PID")"
  # The receiver's own view, for diagnosis: its whole /metrics, plus WAL fsyncs (ringest) or Go GC
  # (prometheus) over the whole run.
  M save "$METRICS_URL" "$WORK/$name-metrics.txt" || log "warning: could not save $name's /metrics"
  local mname
  case "$name" in
    ringest) for mname in ringest_wal_fsync_duration_seconds_count ringest_wal_fsync_duration_seconds_sum; do
               put "$mname" "$(M metric "$METRICS_URL" "$mname" 2>/dev/null || echo n/a)"; done ;;
    prometheus) for mname in go_gc_duration_seconds_count go_gc_duration_seconds_sum; do
               put "$mname" "$(M metric "$METRICS_URL" "$mname" 2>/dev/null || echo n/a)"; done ;;
  esac

  log "$name: SIGKILL, then restart on the same data dir"
  kill -KILL "$PID"
  wait "$PID" 2>/dev/null || true
  forget_pid "$PID"
  echo "----- restart after SIGKILL -----" >> "$logf"
  t0="$(date +%s%N)"
  start_receiver "$name" "$dir" "$logf"
  t1="$(M wait-ready "$READY_URL" "$ready_timeout" "$PID")" || { tail -n 20 "$logf" >&2; fail "$name did not become ready after the restart"; }
  put replay_sec "$(python3 -c "print(($t1 - $t0) / 1e9)")"
  put head_series_after_replay "$(head_series)"
  put rss_after_replay_bytes "$(M rss "$PID")"
  put blocks_after_replay "$(M blocks "$dir/data")"
  log "$name: ready again after $(python3 -c "print(round(($t1 - $t0) / 1e9, 2))")s"

  kill -TERM "$PID"
  local waited=0
  while kill -0 "$PID" 2>/dev/null && [ "$waited" -lt 300 ]; do sleep 0.1; waited=$((waited + 1)); done
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  forget_pid "$PID"
  put data_bytes "$(du -sb "$dir/data" | cut -f1)"
  if [ "$keep" = 0 ]; then rm -rf "$dir/data"; fi
}

for r in $receivers; do race "$r"; done

python3 "$HELP/report.py" --work "$WORK" --receivers "$receivers" --out "$out" \
  --config "series=$series" "labels=$labels" "duration_sec=$duration" "concurrency=$concurrency" \
  "samples_per_request=$samples_per_request" "scrape_interval=$scrape_interval" "quick=$quick" "loadtest=$loadtest" \
  "prometheus_version=$prometheus_version" "ringest_commit=$(git -C "$ROOT" rev-parse --short HEAD)" \
  "clk_tck=$clk_tck"
log "figures written to $out"
