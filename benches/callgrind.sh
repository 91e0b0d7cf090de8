#!/usr/bin/env bash
# Instructions per call of a function while a criterion bench runs under callgrind (repeatable on
# noisy machines, unlike wall-clock time).
#
# Usage: benches/callgrind.sh BENCH FILTER FUNCTION...
#   benches/callgrind.sh remote_write '^decode_v1/bytes/2000$' decode_v1_into
#   benches/callgrind.sh remote_write '^body_to_request/bytes/v1-2000$' decompress_into decode_v1_into
#   benches/callgrind.sh hashring '^series_hash' 'xxh64::xxh64' 'Bencher<M>::iter'
# FUNCTION matches the end of a symbol name. Output file: $CARGO_TARGET_DIR/callgrind.<BENCH>.out
set -euo pipefail
cd "$(dirname "$0")/.."
bench="$1" filter="$2"
shift 2
target="${CARGO_TARGET_DIR:-target}"
bin="$(cargo bench --bench "$bench" --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["kind"] == ["bench"] and m.get("executable"):
        print(m["executable"])' | tail -1)"
out="$target/callgrind.$bench.out"
valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" --bench --profile-time 2 "$filter" >/dev/null 2>&1
python3 - "$out" "$@" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().split("\n")
names = {}
for l in lines:
    m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", l)
    if m and m.group(2):
        names[m.group(1)] = m.group(2)
for want in sys.argv[2:]:
    ids = {k for k, v in names.items() if v.endswith(want)}
    calls = ir = 0
    for i, l in enumerate(lines):
        m = re.match(r"cfn=\((\d+)\)", l)
        if m and m.group(1) in ids:
            calls += int(lines[i + 1].split("=")[1].split()[0])
            ir += int(lines[i + 2].split()[1])
    per = ir / calls if calls else 0
    print(f"{want}: {calls} calls, {ir} Ir inclusive, {per:,.0f} Ir per call")
PY
