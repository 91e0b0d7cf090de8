#!/usr/bin/env python3
"""An independent Thanos Store API / Info API client for Ringest's end-to-end tests.

It is deliberately not built from Ringest's Rust types: the stubs come from the .proto files in
proto/ (written from Thanos's field tables), compiled at run time with grpc_tools.protoc, and the
chunk bytes are decoded by this file's own XOR decoder (Prometheus tsdb/chunkenc/xor.go bit
format) and hashed by its own xxhash64.

Every subcommand prints exactly one JSON document on stdout and exits 0 when it could talk gRPC at
all; a gRPC failure is reported as {"error": {"code": "UNAVAILABLE", "message": "..."}} so tests
can assert errors. Exit 2 means a usage error (argparse), anything else a bug here.

    store_client.py info ADDR
    store_client.py series ADDR --min-time MS --max-time MS --matcher 'job=~"a.*"' ...
    store_client.py label-names ADDR [--start MS --end MS] [--matcher ...]
    store_client.py label-values ADDR NAME [--start MS --end MS] [--matcher ...]
    store_client.py selftest-decode HEX   (decode one chunk; for debugging)

Sample values are printed as the u64 of their IEEE-754 bits so NaN payloads and -0.0 survive JSON.
Only the standard library, grpcio, grpcio-tools and protobuf are used (grpc imported lazily, so
the codecs can be tested without them).
"""

import argparse
import base64
import hashlib
import importlib
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "proto")
PROTO_FILES = [
    "store/labelpb/types.proto",
    "store/storepb/types.proto",
    "store/storepb/prompb/types.proto",
    "store/storepb/rpc.proto",
    "info/infopb/rpc.proto",
]

# Prometheus's HTTP API default start/end (what Thanos Query sends for an unbounded label query).
PROM_API_MIN_MS = -9223309901257974000
PROM_API_MAX_MS = 9223309901257974000

MASK64 = (1 << 64) - 1


def to_i64(x):
    """Wraps an integer to a signed 64-bit value, as Go's int64 arithmetic does."""
    x &= MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


# ---------------------------------------------------------------------------------------------
# xxhash64 (XXH64), the hash Thanos puts in storepb.Chunk.hash.


_P1 = 11400714785074694791
_P2 = 14029467366897019727
_P3 = 1609587929392839161
_P4 = 9650029242287828579
_P5 = 2870177450012600261


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & MASK64


def _round(acc, lane):
    acc = (acc + lane * _P2) & MASK64
    return (_rotl(acc, 31) * _P1) & MASK64


def _merge(acc, v):
    acc ^= _round(0, v)
    return (acc * _P1 + _P4) & MASK64


def xxh64(data, seed=0):
    """XXH64 of `data` (bytes) with `seed`, as an unsigned int."""
    n = len(data)
    i = 0
    if n >= 32:
        v1 = (seed + _P1 + _P2) & MASK64
        v2 = (seed + _P2) & MASK64
        v3 = seed & MASK64
        v4 = (seed - _P1) & MASK64
        while i + 32 <= n:
            a, b, c, d = struct.unpack_from("<4Q", data, i)
            v1, v2, v3, v4 = _round(v1, a), _round(v2, b), _round(v3, c), _round(v4, d)
            i += 32
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & MASK64
        for v in (v1, v2, v3, v4):
            h = _merge(h, v)
    else:
        h = (seed + _P5) & MASK64
    h = (h + n) & MASK64
    while i + 8 <= n:
        (lane,) = struct.unpack_from("<Q", data, i)
        h ^= _round(0, lane)
        h = (_rotl(h, 27) * _P1 + _P4) & MASK64
        i += 8
    if i + 4 <= n:
        (lane,) = struct.unpack_from("<I", data, i)
        h ^= (lane * _P1) & MASK64
        h = (_rotl(h, 23) * _P2 + _P3) & MASK64
        i += 4
    while i < n:
        h ^= (data[i] * _P5) & MASK64
        h = (_rotl(h, 11) * _P1) & MASK64
        i += 1
    h ^= h >> 33
    h = (h * _P2) & MASK64
    h ^= h >> 29
    h = (h * _P3) & MASK64
    h ^= h >> 32
    return h


# ---------------------------------------------------------------------------------------------
# XOR chunk decoder (Prometheus tsdb/chunkenc/xor.go; storepb Chunk type XOR = 0).


class ChunkDecodeError(Exception):
    """A chunk whose bytes do not follow the XOR format (truncated, bad varint, bad widths)."""


class _BitReader:
    """Reads a big-endian (most significant bit first) bit stream."""

    def __init__(self, data):
        self.data = data
        self.pos = 0  # in bits
        self.end = len(data) * 8

    def bits(self, n):
        if n == 0:
            return 0
        if self.pos + n > self.end:
            raise ChunkDecodeError(
                "truncated: need %d bits at bit %d of %d" % (n, self.pos, self.end))
        first = self.pos >> 3
        last = (self.pos + n - 1) >> 3
        word = int.from_bytes(self.data[first:last + 1], "big")
        shift = (last + 1) * 8 - (self.pos + n)
        self.pos += n
        return (word >> shift) & ((1 << n) - 1)

    def bit(self):
        return self.bits(1)

    def uvarint(self):
        # Go's binary.ReadUvarint over ReadByte: 7 bits a byte, at most 10 bytes.
        x = 0
        s = 0
        for i in range(10):
            b = self.bits(8)
            if b < 0x80:
                if i == 9 and b > 1:
                    raise ChunkDecodeError("uvarint overflows 64 bits")
                return x | (b << s)
            x |= (b & 0x7F) << s
            s += 7
        raise ChunkDecodeError("uvarint overflows 64 bits")

    def varint(self):
        ux = self.uvarint()
        x = ux >> 1
        if ux & 1:
            x = ~x
        return x


def decode_xor(data):
    """Decodes one XOR chunk (2-byte big-endian sample count, then the bit stream) into
    [(timestamp_ms, value_bits_u64), ...]. Raises ChunkDecodeError on malformed input."""
    return decode_xor_end(data)[0]


def decode_xor_end(data):
    """decode_xor, plus how many bits of the stream after the header the samples took (the
    rest is padding, and possibly one empty byte Go's bstream leaves after a whole-byte write)."""
    if len(data) < 2:
        raise ChunkDecodeError("chunk of %d bytes has no sample count header" % len(data))
    total = struct.unpack_from(">H", data, 0)[0]
    br = _BitReader(data[2:])
    out = []
    t = 0
    vbits = 0
    tdelta = 0  # kept as Go's uint64 reinterpreted as int64
    leading = None  # None until the first "new leading/trailing" control (Go's 0xff)
    trailing = 0
    for n in range(total):
        if n == 0:
            t = to_i64(br.varint())
            vbits = br.bits(64)
            out.append((t, vbits))
            continue
        if n == 1:
            tdelta = to_i64(br.uvarint())
            t = to_i64(t + tdelta)
        else:
            # Delta-of-delta bucket: 0, 10 (14 bits), 110 (17), 1110 (20), 1111 (64).
            d = 0
            for _ in range(4):
                d <<= 1
                if br.bit() == 0:
                    break
                d |= 1
            dod = 0
            sz = {0b0: 0, 0b10: 14, 0b110: 17, 0b1110: 20}.get(d)
            if d == 0b1111:
                dod = to_i64(br.bits(64))
            elif sz:
                bits = br.bits(sz)
                # Negative values come back as large unsigned ones (Prometheus docs/bstream.md).
                if bits > (1 << (sz - 1)):
                    bits -= 1 << sz
                dod = bits
            tdelta = to_i64(tdelta + dod)
            t = to_i64(t + tdelta)
        # Value: 0 = unchanged; 10 = XOR in the previous window; 11 = new window.
        if br.bit() == 1:
            if br.bit() == 0:
                if leading is None:
                    raise ChunkDecodeError(
                        "sample %d reuses a leading/trailing window never set" % n)
                mbits = 64 - leading - trailing
            else:
                leading = br.bits(5)
                mbits = br.bits(6)
                if mbits == 0:  # 64 significant bits do not fit in 6 bits; written as 0
                    mbits = 64
                trailing = 64 - leading - mbits
                if trailing < 0:
                    raise ChunkDecodeError(
                        "sample %d: %d leading + %d significant bits exceed 64"
                        % (n, leading, mbits))
            vbits ^= br.bits(mbits) << trailing
        out.append((t, vbits))
    return out, br.pos


# ---------------------------------------------------------------------------------------------
# Stubs, generated from proto/ at run time and cached by content.


def _stub_dir():
    """Compiles proto/ with grpc_tools.protoc into a cache dir named by the protos' content (and
    the grpcio-tools version), once; concurrent runs race harmlessly through an atomic rename."""
    from grpc_tools import protoc  # noqa: WPS433 (lazy: codec tests need no grpc)
    import grpc_tools

    h = hashlib.sha256()
    h.update(getattr(grpc_tools, "__version__", "").encode())
    try:
        import importlib.metadata as md
        h.update(md.version("grpcio-tools").encode())
        h.update(md.version("protobuf").encode())
    except Exception:  # pragma: no cover - metadata missing is only a weaker cache key
        pass
    for f in PROTO_FILES:
        with open(os.path.join(PROTO_DIR, f), "rb") as fh:
            h.update(f.encode() + b"\0" + fh.read())
    base = os.environ.get("RINGEST_STORE_STUBS") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "ringest", "thanos_store_stubs")
    target = os.path.join(base, h.hexdigest()[:16])
    if os.path.isdir(target):
        return target
    os.makedirs(base, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".gen-", dir=base)
    try:
        wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        rc = protoc.main(["grpc_tools.protoc", "-I" + PROTO_DIR, "-I" + wkt,
                          "--python_out=" + tmp, "--grpc_python_out=" + tmp] + PROTO_FILES)
        if rc != 0:
            raise RuntimeError("grpc_tools.protoc failed with %d on %s" % (rc, PROTO_DIR))
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.isdir(target):
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return target


class Stubs:
    """The generated message modules and service stubs."""

    def __init__(self):
        d = _stub_dir()
        if d not in sys.path:
            sys.path.insert(0, d)
        self.types = importlib.import_module("store.storepb.types_pb2")
        self.rpc = importlib.import_module("store.storepb.rpc_pb2")
        self.rpc_grpc = importlib.import_module("store.storepb.rpc_pb2_grpc")
        self.info = importlib.import_module("info.infopb.rpc_pb2")
        self.info_grpc = importlib.import_module("info.infopb.rpc_pb2_grpc")


# ---------------------------------------------------------------------------------------------
# Requests.

_MATCHER_RE = re.compile(r"^([^=!~]+?)(=~|!~|!=|=)(.*)$", re.S)
_MATCHER_TYPES = {"=": "EQ", "!=": "NEQ", "=~": "RE", "!~": "NRE"}


def parse_matcher(text):
    """'name=value', 'name!=value', 'name=~re', 'name!~re' -> (type name, name, value). A value
    in double quotes is unquoted (so PromQL-style 'job="x"' works too)."""
    m = _MATCHER_RE.match(text)
    if not m:
        raise ValueError("matcher %r is not name(=|!=|=~|!~)value" % text)
    name, op, value = m.group(1).strip(), m.group(2), m.group(3)
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = json.loads(value)
    return _MATCHER_TYPES[op], name, value


def _matchers(stubs, texts):
    out = []
    for t in texts or []:
        typ, name, value = parse_matcher(t)
        out.append(stubs.types.LabelMatcher(
            type=stubs.types.LabelMatcher.Type.Value(typ), name=name, value=value))
    return out


def _metadata(args):
    md = []
    if args.tenant is not None:
        md.append(("thanos-tenant", args.tenant))
    if args.bearer is not None:
        md.append(("authorization", "Bearer " + args.bearer))
    return md


def _channel(args):
    import grpc

    limit = -1 if args.max_message_mib is None else args.max_message_mib * 1024 * 1024
    # Thanos Query receives up to MaxInt32; -1 (unlimited) stands for that unless a test asks.
    opts = [("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", -1)]
    compression = {
        None: None, "none": grpc.Compression.NoCompression,
        "gzip": grpc.Compression.Gzip, "deflate": grpc.Compression.Deflate,
    }[args.compression]
    return grpc.insecure_channel(args.addr, options=opts, compression=compression)


def _grpc_error(e):
    code = e.code() if hasattr(e, "code") else None
    return {"code": code.name if code is not None else "UNKNOWN",
            "message": (e.details() if hasattr(e, "details") else str(e)) or ""}


def _pairs(labels):
    return [[lb.name, lb.value] for lb in labels]


# ---------------------------------------------------------------------------------------------
# Subcommands.


def cmd_info(args, stubs):
    with _channel(args) as ch:
        stub = stubs.info_grpc.InfoStub(ch)
        resp = stub.Info(stubs.info.InfoRequest(), timeout=args.timeout, metadata=_metadata(args))
    out = {
        "label_sets": [_pairs(ls.labels) for ls in resp.label_sets],
        "component_type": resp.ComponentType,
        "store": None,
        "apis": [f for f in ("rules", "metric_metadata", "targets", "exemplars", "query", "status")
                 if resp.HasField(f)],
    }
    if resp.HasField("store"):
        s = resp.store
        out["store"] = {
            "min_time": s.min_time,
            "max_time": s.max_time,
            "supports_sharding": s.supports_sharding,
            "supports_without_replica_labels": s.supports_without_replica_labels,
            "supports_projections": s.supports_projections,
            "tsdb_infos": [{"labels": _pairs(ti.labels.labels), "min_time": ti.min_time,
                            "max_time": ti.max_time} for ti in s.tsdb_infos],
        }
    return out


_AGGR_FIELDS = ("raw", "count", "sum", "min", "max", "counter")


def _chunk_json(stubs, aggr, kind, chunk, no_data):
    enc = stubs.types.Chunk.Encoding.Name(chunk.type) if chunk.type in (0, 1, 2) else chunk.type
    data = bytes(chunk.data)
    c = {"min_time": aggr.min_time, "max_time": aggr.max_time, "kind": kind, "type": enc,
         "hash": chunk.hash, "len": len(data), "samples": None, "decode_error": None,
         "hash_ok": None}
    if not no_data:
        c["data"] = base64.b64encode(data).decode()
    if chunk.hash != 0:
        c["hash_ok"] = xxh64(data) == chunk.hash
    if chunk.type == 0:
        try:
            c["samples"] = [[t, v] for t, v in decode_xor(data)]
        except ChunkDecodeError as e:
            c["decode_error"] = str(e)
    else:
        c["decode_error"] = "chunk type %s is not decoded by this client" % enc
    return c


def cmd_series(args, stubs):
    # Every outcome, errors included, has the same shape.
    out = {"frames": 0, "frame_kinds": {"series": 0, "batch": 0, "warning": 0, "hints": 0},
           "max_batch_series": 0, "warnings": [], "series": [], "hash_mismatches": [],
           "decode_errors": [], "error": None, "elapsed_ms": 0}
    try:
        req = stubs.rpc.SeriesRequest(
            min_time=args.min_time, max_time=args.max_time,
            matchers=_matchers(stubs, args.matcher), skip_chunks=args.skip_chunks,
            without_replica_labels=args.without_replica_label, limit=args.limit or 0,
            response_batch_size=args.batch_size or 0)
    except ValueError as e:
        out["error"] = {"code": "CLIENT", "message": str(e)}
        return out
    start = time.monotonic()

    def take(series, frame):
        idx = len(out["series"])
        chunks = []
        for ci, aggr in enumerate(series.chunks):
            for kind in _AGGR_FIELDS:
                if aggr.HasField(kind):
                    c = _chunk_json(stubs, aggr, kind, getattr(aggr, kind), args.no_data)
                    if c["hash_ok"] is False:
                        out["hash_mismatches"].append(
                            {"series": idx, "chunk": ci, "sent": c["hash"],
                             "computed": xxh64(bytes(getattr(aggr, kind).data))})
                    if c["decode_error"] is not None and c["type"] == "XOR":
                        out["decode_errors"].append(
                            {"series": idx, "chunk": ci, "error": c["decode_error"]})
                    chunks.append(c)
        out["series"].append({"labels": _pairs(series.labels), "chunks": chunks, "frame": frame})

    import grpc

    with _channel(args) as ch:
        stub = stubs.rpc_grpc.StoreStub(ch)
        try:
            for resp in stub.Series(req, timeout=args.timeout, metadata=_metadata(args)):
                frame = out["frames"]
                out["frames"] += 1
                kind = resp.WhichOneof("result")
                if kind is None:
                    out["frame_kinds"].setdefault("empty", 0)
                    out["frame_kinds"]["empty"] += 1
                    continue
                out["frame_kinds"][kind] += 1
                if kind == "series":
                    take(resp.series, frame)
                elif kind == "batch":
                    out["max_batch_series"] = max(out["max_batch_series"],
                                                  len(resp.batch.series))
                    for s in resp.batch.series:
                        take(s, frame)
                elif kind == "warning":
                    out["warnings"].append(resp.warning)
        except grpc.RpcError as e:
            # Keep what arrived before the error: a test may assert a mid-stream failure.
            out["error"] = _grpc_error(e)
    out["elapsed_ms"] = int((time.monotonic() - start) * 1000)
    return out


def cmd_label_names(args, stubs):
    req = stubs.rpc.LabelNamesRequest(
        start=args.start, end=args.end, matchers=_matchers(stubs, args.matcher),
        without_replica_labels=args.without_replica_label, limit=args.limit or 0)
    with _channel(args) as ch:
        resp = stubs.rpc_grpc.StoreStub(ch).LabelNames(
            req, timeout=args.timeout, metadata=_metadata(args))
    return {"names": list(resp.names), "warnings": list(resp.warnings)}


def cmd_label_values(args, stubs):
    req = stubs.rpc.LabelValuesRequest(
        label=args.name, start=args.start, end=args.end, matchers=_matchers(stubs, args.matcher),
        without_replica_labels=args.without_replica_label, limit=args.limit or 0)
    with _channel(args) as ch:
        resp = stubs.rpc_grpc.StoreStub(ch).LabelValues(
            req, timeout=args.timeout, metadata=_metadata(args))
    return {"values": list(resp.values), "warnings": list(resp.warnings)}


def _common(p, matchers=True):
    p.add_argument("addr", help="host:port of the gRPC endpoint")
    p.add_argument("--tenant", help="sent as `thanos-tenant` gRPC metadata")
    p.add_argument("--bearer", help="sent as `authorization: Bearer TOKEN` metadata")
    p.add_argument("--timeout", type=float, default=60.0, help="RPC deadline in seconds")
    p.add_argument("--max-message-mib", type=int, default=None,
                   help="receive limit in MiB (default: unlimited, as Thanos Query)")
    p.add_argument("--compression", choices=["none", "gzip", "deflate"], default=None,
                   help="request compression (grpcio has no snappy)")
    if matchers:
        p.add_argument("--matcher", action="append", default=[],
                       help="name=v, name!=v, name=~re or name!~re (repeatable)")
        p.add_argument("--without-replica-label", action="append", default=[])
        p.add_argument("--limit", type=int, default=None)


def build_parser():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("info", help="thanos.info.Info/Info")
    _common(p, matchers=False)
    p.set_defaults(fn=cmd_info)

    p = sub.add_parser("series", help="thanos.Store/Series")
    _common(p)
    p.add_argument("--min-time", type=int, default=PROM_API_MIN_MS)
    p.add_argument("--max-time", type=int, default=PROM_API_MAX_MS)
    p.add_argument("--skip-chunks", action="store_true")
    p.add_argument("--batch-size", type=int, default=None, help="response_batch_size")
    p.add_argument("--no-data", action="store_true",
                   help="leave chunk bytes (base64) out of the output; samples stay")
    p.set_defaults(fn=cmd_series)

    for name, fn in (("label-names", cmd_label_names), ("label-values", cmd_label_values)):
        p = sub.add_parser(name, help="thanos.Store/" + name.title().replace("-", ""))
        _common(p)
        if name == "label-values":
            p.add_argument("name")
        p.add_argument("--start", type=int, default=PROM_API_MIN_MS)
        p.add_argument("--end", type=int, default=PROM_API_MAX_MS)
        p.set_defaults(fn=fn)

    p = sub.add_parser("decode", help="decode one XOR chunk given as hex (debugging aid)")
    p.add_argument("hex")
    p.set_defaults(fn=None)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.cmd == "decode":
        data = bytes.fromhex(args.hex)
        try:
            out = {"samples": [[t, v] for t, v in decode_xor(data)], "xxh64": xxh64(data)}
        except ChunkDecodeError as e:
            out = {"error": {"code": "DECODE", "message": str(e)}}
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 0
    try:
        stubs = Stubs()
        import grpc
        try:
            out = args.fn(args, stubs)
        except grpc.RpcError as e:
            out = {"error": _grpc_error(e)}
        except ValueError as e:  # a malformed --matcher
            out = {"error": {"code": "CLIENT", "message": str(e)}}
    finally:
        sys.stdout.flush()
    out.setdefault("error", None)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
