#!/usr/bin/env bash
# Installs the real components the end-to-end tests (tests/e2e/) drive, and nothing else:
#   - Prometheus 2.42 and promtool (Debian package `prometheus`; the tests' oracles),
#   - an external `kill` binary (procps; the harness sends SIGTERM with it),
#   - moto's S3-protocol server (`moto_server`, PyPI `moto[server]`, pinned) in a Python venv at
#     ${RINGEST_VENV:-$HOME/.cache/ringest/venv}, for the block shipper's S3 test
#     (testkit/src/s3.rs finds it there, or at $MOTO_SERVER_BIN),
#   - grpcio, grpcio-tools and protobuf (pinned) in the same venv, for the independent Thanos Store
#     API client tests/thanos_store/store_client.py (testkit/src/thanos_store.rs runs it).
# Idempotent: installs only what is missing, and is quiet when everything is there.
# The test kit (testkit/) honours $PROMETHEUS_BIN and $PROMTOOL_BIN to use other binaries instead.
set -euo pipefail

prometheus_bin="${PROMETHEUS_BIN:-prometheus}"
promtool_bin="${PROMTOOL_BIN:-promtool}"

need=()
command -v "$prometheus_bin" >/dev/null 2>&1 || need+=(prometheus)
command -v "$promtool_bin" >/dev/null 2>&1 || need+=(prometheus)
type -P kill >/dev/null 2>&1 || need+=(procps)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)

if [ ${#need[@]} -gt 0 ]; then
  # Unique package names.
  mapfile -t pkgs < <(printf '%s\n' "${need[@]}" | sort -u)
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: missing ${pkgs[*]} and no apt-get; install Prometheus 2.42 + promtool" \
         "(or set PROMETHEUS_BIN/PROMTOOL_BIN) and procps by hand" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-test-deps: need root or sudo for apt-get" >&2; exit 1; }
    SUDO="sudo"
  fi
  echo "install-test-deps: installing ${pkgs[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  # The Debian package enables a system Prometheus on :9090. The tests start their own on free
  # loopback ports; stop the system one where systemd runs so it does not compete for the CPU.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
fi

# Check that what we have is usable, and say what it is.
version="$("$prometheus_bin" --version 2>&1 | head -n 1)"
"$promtool_bin" --version >/dev/null 2>&1 || { echo "install-test-deps: $promtool_bin does not run" >&2; exit 1; }
"$promtool_bin" tsdb dump --help >/dev/null 2>&1 || { echo "install-test-deps: $promtool_bin has no 'tsdb dump'" >&2; exit 1; }
case "$version" in
  *"version 2.42."*) ;;
  *) echo "install-test-deps: warning: the e2e tests were written against Prometheus 2.42, found: $version" >&2 ;;
esac
echo "$version"

# moto's S3 server, pinned, in its own venv (no system Python packages touched).
moto_version="5.2.5"
venv="${RINGEST_VENV:-$HOME/.cache/ringest/venv}"
moto_ok() {
  [ -x "$venv/bin/moto_server" ] &&
    [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" = "$moto_version" ]
}
if ! moto_ok; then
  echo "install-test-deps: installing moto[server]==$moto_version into $venv" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "moto[server]==$moto_version" >&2
  moto_ok || { echo "install-test-deps: moto_server not usable in $venv" >&2; exit 1; }
fi
echo "moto_server $moto_version: $venv/bin/moto_server"

# The Store API test client's gRPC stack, pinned (manylinux wheels for CPython 3.9-3.13), same venv.
grpcio_version="1.85.1"
protobuf_version="7.36.2"
grpc_ok() {
  [ "$("$venv/bin/python" -c 'import importlib.metadata as m
print(m.version("grpcio"), m.version("grpcio-tools"), m.version("protobuf"))' 2>/dev/null)" = \
    "$grpcio_version $grpcio_version $protobuf_version" ]
}
if ! grpc_ok; then
  echo "install-test-deps: installing grpcio/grpcio-tools==$grpcio_version protobuf==$protobuf_version into $venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "grpcio==$grpcio_version" \
    "grpcio-tools==$grpcio_version" "protobuf==$protobuf_version" >&2
  grpc_ok || { echo "install-test-deps: grpcio not usable in $venv" >&2; exit 1; }
fi
echo "grpcio $grpcio_version, protobuf $protobuf_version: $venv/bin/python"
