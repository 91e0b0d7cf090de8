#!/usr/bin/env python3
"""A slow stand-in for `ringest-loadtest`, to test benches/compare.sh before the real one exists.

Same flags and same `--json` summary as ringest-loadtest (the subset compare.sh uses). Remote write
1.0 only; snappy is written as one literal (valid snappy, no compression), so it sends ~10x more bytes
than a real client and is CPU-bound in Python: its figures measure the stand-in, not the receiver.

Each worker process owns a fixed, strided set of 2000-series chunks and sends them in order, so a
series never races itself. Timestamps follow ringest-loadtest: round r is stamped
start - 5m + r * --scrape-interval (capped at now + 5m), so a second run against the same receiver
goes back in time unless the rounds of the first advanced less than the wall clock did.
"""
import argparse
import http.client
import json
import multiprocessing as mp
import random
import struct
import sys
import time
import urllib.parse


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, payload):
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def snappy_literal(data):
    n = len(data)
    out = bytearray(varint(n))
    if n == 0:
        return bytes(out)
    m = n - 1
    if m < 60:
        out.append(m << 2)
    elif m < 1 << 8:
        out += bytes([60 << 2]) + m.to_bytes(1, "little")
    elif m < 1 << 16:
        out += bytes([61 << 2]) + m.to_bytes(2, "little")
    elif m < 1 << 24:
        out += bytes([62 << 2]) + m.to_bytes(3, "little")
    else:
        out += bytes([63 << 2]) + m.to_bytes(4, "little")
    out += data
    return bytes(out)


def series_labels(i, nlabels):
    labels = [("__name__", "loadtest_metric_%d" % (i % 50))]
    for k in range(1, nlabels):
        # label_0 makes every series unique; the others have small cardinality.
        value = str(i) if k == 1 else "value_%d" % ((i // (k * 7 + 1)) % (k * 3 + 2))
        labels.append(("label_%d" % (k - 1), value))
    labels.sort()
    return b"".join(field_bytes(1, field_bytes(1, n.encode()) + field_bytes(2, v.encode())) for n, v in labels)


def parse_duration(s):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for u in ("ms", "s", "m", "h"):
        if s.endswith(u):
            return float(s[: -len(u)]) * units[u]
    return float(s)


def worker(wid, args, deadline, q):
    u = urllib.parse.urlsplit(args.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    path = u.path or "/"
    per_req = args.samples_per_request
    chunks = [c for c in range((args.series + per_req - 1) // per_req) if c % args.concurrency == wid]
    rate = args.rate / args.concurrency if args.rate > 0 else 0
    labels = {}
    lat, errors, sent, accepted, reqs = [], {}, 0, 0, 0
    last_ts = 0
    rounds = 0
    interval_ms = max(1, int(parse_duration(args.scrape_interval) * 1000))
    start_ms = args.start_ms - 300000
    counter = 0.0
    t0 = time.monotonic()
    headers = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
        "THANOS-TENANT": args.tenant,
    }
    while time.monotonic() < deadline and chunks:
        ts = max(min(start_ms + rounds * interval_ms, int(time.time() * 1000) + 300000), last_ts + 1)
        last_ts = ts
        rounds += 1
        counter += random.random() * 10
        for c in chunks:
            if time.monotonic() >= deadline:
                break
            lo, hi = c * per_req, min((c + 1) * per_req, args.series)
            body = bytearray()
            sample_tail = b"\x09" + struct.pack("<d", counter) + b"\x10" + varint(ts)
            sample = field_bytes(2, sample_tail)
            for i in range(lo, hi):
                lb = labels.get(i)
                if lb is None:
                    lb = labels[i] = series_labels(i, args.labels)
                body += field_bytes(1, lb + sample)
            payload = snappy_literal(bytes(body))
            if rate:
                due = t0 + (sent + (hi - lo)) / rate
                now = time.monotonic()
                if due > now:
                    time.sleep(min(due - now, max(0.0, deadline - now)))
            start = time.monotonic()
            try:
                conn.request("POST", path, body=payload, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except Exception:
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                status = "conn"
            lat.append((time.monotonic() - start) * 1000)
            reqs += 1
            sent += hi - lo
            if isinstance(status, int) and 200 <= status < 300:
                accepted += hi - lo
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
    q.put((lat, errors, sent, accepted, reqs))


def pct(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    return sorted_vals[min(len(sorted_vals) - 1, int(p * len(sorted_vals)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--tenant", default="default-tenant")
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--labels", type=int, default=10)
    ap.add_argument("--samples-per-request", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--protocol", default="v1", choices=["v1"])
    ap.add_argument("--scrape-interval", default="15s")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    args.start_ms = int(time.time() * 1000)
    dur = parse_duration(args.duration)
    q = mp.Queue()
    start = time.monotonic()
    deadline = start + dur
    procs = [mp.Process(target=worker, args=(w, args, deadline, q)) for w in range(args.concurrency)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - start
    lat = sorted(x for r in results for x in r[0])
    errors = {}
    for r in results:
        for k, v in r[1].items():
            errors[k] = errors.get(k, 0) + v
    sent = sum(r[2] for r in results)
    accepted = sum(r[3] for r in results)
    reqs = sum(r[4] for r in results)
    out = {
        "accepted_samples_per_sec": accepted / elapsed,
        "requests": reqs,
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "p999_ms": pct(lat, 0.999),
        "errors": errors,
        "samples_sent": sent,
        "samples_accepted": accepted,
        "duration_sec": elapsed,
        "standin": True,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(out)
    print("standin-loadtest: %d samples in %.1fs" % (accepted, elapsed), file=sys.stderr)


if __name__ == "__main__":
    main()
