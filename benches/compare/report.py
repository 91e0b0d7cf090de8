#!/usr/bin/env python3
"""Turns what benches/compare.sh collected into a side-by-side table and one JSON file.

Reads, in --work: machine.json, <receiver>.kv ("key value" lines written by compare.sh) and
<receiver>-<phase>.json (the load generator's --json summary of each phase).
"""
import argparse
import datetime
import json
import os
import sys


def load_kv(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            k, _, v = line.partition(" ")
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
    return out


def phases(work, name):
    out = {}
    prefix = name + "-"
    for f in sorted(os.listdir(work)):
        if f.startswith(prefix) and f.endswith(".json"):
            with open(os.path.join(work, f)) as fh:
                out[f[len(prefix) : -len(".json")]] = json.load(fh)
    return out


def figures(kv, ph, series):
    peak = ph.get("peak", {})
    half = ph.get("half", {})
    acc = peak.get("samples_accepted", 0)
    cpu = kv.get("cpu_peak_sec")
    dur = peak.get("duration_sec") or 0
    f = {
        "peak_samples_per_sec": peak.get("accepted_samples_per_sec"),
        "peak_p99_ms": peak.get("p99_ms"),
        "cpu_sec_per_million_samples": (cpu / (acc / 1e6)) if cpu is not None and acc else None,
        "samples_per_cpu_sec": (acc / cpu) if cpu else None,
        "cores_used_at_peak": (cpu / dur) if cpu is not None and dur else None,
        "loadtest_cores_at_peak": (kv["loadtest_cpu_peak_sec"] / dur) if kv.get("loadtest_cpu_peak_sec") is not None and dur else None,
        "other_cores_at_peak": (
            max(0.0, (kv["machine_busy_peak_sec"] - kv["cpu_peak_sec"] - kv.get("loadtest_cpu_peak_sec", 0)) / kv["wall_peak_sec"])
            if kv.get("machine_busy_peak_sec") is not None and kv.get("wall_peak_sec")
            else None
        ),
        "rss_bytes": kv.get("rss_bytes"),
        "rss_bytes_per_series": (kv["rss_bytes"] / series) if kv.get("rss_bytes") else None,
        "half_rate_target": kv.get("half_rate_target"),
        "half_rate_achieved": half.get("accepted_samples_per_sec"),
        "half_p50_ms": half.get("p50_ms"),
        "half_p99_ms": half.get("p99_ms"),
        "half_p999_ms": half.get("p999_ms"),
        "replay_sec": kv.get("replay_sec"),
        "samples_written": kv.get("samples_written"),
        "replay_samples_per_sec": (kv["samples_written"] / kv["replay_sec"]) if kv.get("replay_sec") else None,
        "wal_bytes": kv.get("wal_bytes"),
        "wal_bytes_per_sample": (kv["wal_bytes"] / kv["samples_written"]) if kv.get("wal_bytes") and kv.get("samples_written") else None,
    }
    errors = {}
    for name, p in ph.items():
        if p.get("errors"):
            errors[name] = p["errors"]
    f["errors_by_phase"] = errors
    return f


# (key, label, unit, higher is better?, format)
ROWS = [
    ("peak_samples_per_sec", "peak accepted samples/s", "", True, "{:,.0f}"),
    ("cpu_sec_per_million_samples", "CPU s per 1M samples (peak)", "s", False, "{:.3f}"),
    ("samples_per_cpu_sec", "samples per CPU-second", "", True, "{:,.0f}"),
    ("cores_used_at_peak", "cores used at peak", "", None, "{:.2f}"),
    ("loadtest_cores_at_peak", "load generator cores at peak", "", None, "{:.2f}"),
    ("other_cores_at_peak", "other processes' cores at peak", "", None, "{:.2f}"),
    ("rss_bytes_per_series", "RSS per active series", "B", False, "{:,.0f}"),
    ("rss_bytes", "RSS total", "MiB", False, "mib"),
    ("half_rate_target", "half-peak rate asked", "/s", None, "{:,.0f}"),
    ("half_rate_achieved", "half-peak rate achieved", "/s", None, "{:,.0f}"),
    ("half_p50_ms", "p50 latency at half peak", "ms", False, "{:.2f}"),
    ("half_p99_ms", "p99 latency at half peak", "ms", False, "{:.2f}"),
    ("half_p999_ms", "p99.9 latency at half peak", "ms", False, "{:.2f}"),
    # Each receiver replays what it accepted, so seconds are not comparable; samples/s are.
    ("replay_sec", "WAL replay to /-/ready", "s", None, "{:.2f}"),
    ("samples_written", "samples in the WAL", "", None, "{:,.0f}"),
    ("replay_samples_per_sec", "WAL replay samples/s", "", True, "{:,.0f}"),
    ("wal_bytes", "WAL size on disk", "MiB", None, "mib"),
    ("wal_bytes_per_sample", "WAL bytes per sample", "B", False, "{:.2f}"),
]


def fmt(v, f, unit):
    if v is None:
        return "n/a"
    s = "{:,.1f}".format(v / 2**20) if f == "mib" else f.format(v)
    return s + (" " + unit if unit else "")


def targets(r, p):
    """The issue's targets, where this run can judge them."""
    out = []

    def add(name, ok, measured):
        out.append({"target": name, "met": ok, "measured": measured})

    if r.get("peak_samples_per_sec") and p.get("peak_samples_per_sec"):
        x = r["peak_samples_per_sec"] / p["peak_samples_per_sec"]
        add(">= 3x Prometheus's accepted samples/s", x >= 3, "%.2fx" % x)
    if r.get("samples_per_cpu_sec"):
        add(">= 1M samples/s per core used by ringest", r["samples_per_cpu_sec"] >= 1e6, "{:,.0f}".format(r["samples_per_cpu_sec"]))
    if r.get("rss_bytes_per_series") and p.get("rss_bytes_per_series"):
        x = r["rss_bytes_per_series"] / p["rss_bytes_per_series"]
        add("RSS per series <= 0.5x Prometheus's", x <= 0.5, "%.2fx" % x)
    if r.get("half_p99_ms") is not None:
        add("p99 < 10 ms at half of peak", r["half_p99_ms"] < 10, "%.2f ms" % r["half_p99_ms"])
    if r.get("replay_samples_per_sec"):
        add("WAL replay >= 5M samples/s", r["replay_samples_per_sec"] >= 5e6, "{:,.0f}".format(r["replay_samples_per_sec"]))
    return out


def table(res, names):
    cols = ["", *names]
    two = names == ["ringest", "prometheus"]
    if two:
        cols += ["ringest/prom", "better"]
    rows = [cols]
    for key, label, unit, higher, f in ROWS:
        vals = [res[n]["figures"].get(key) for n in names]
        row = [label] + [fmt(v, f, unit) for v in vals]
        if two:
            a, b = vals
            if a is not None and b:
                ratio = a / b
                row.append("{:.2f}x".format(ratio))
                if higher is None or a == b:
                    row.append("")
                else:
                    row.append("ringest" if (a > b) == higher else "prometheus")
            else:
                row += ["n/a", ""]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = []
    for j, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(widths[i]) for i, c in enumerate(r) if i > 0]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--receivers", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", nargs="*", default=[])
    a = ap.parse_args()
    names = a.receivers.split()
    config = {}
    for kv in a.config:
        k, _, v = kv.partition("=")
        config[k] = int(v) if v.isdigit() else v
    with open(os.path.join(a.work, "machine.json")) as f:
        machine = json.load(f)
    series = int(config["series"])
    res = {}
    for n in names:
        kv = load_kv(os.path.join(a.work, n + ".kv"))
        ph = phases(a.work, n)
        res[n] = {"figures": figures(kv, ph, series), "raw": kv, "phases": ph}
    doc = {
        "when_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine,
        "config": config,
        "receivers": res,
    }
    if "ringest" in res and "prometheus" in res:
        doc["targets"] = targets(res["ringest"]["figures"], res["prometheus"]["figures"])

    d = machine.get("disk", {})
    print()
    print("Remote-write race, %s: %s" % (" vs ".join(names), doc["when_utc"]))
    machine["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    print(
        "machine: %s x %s, %.1f GiB RAM, data on %s %s (%s free); load average at start %s, at end %s"
        % (machine["nproc"], machine["cpu_model"], machine["mem_total_bytes"] / 2**30, d.get("filesystem"), d.get("type"), d.get("avail"), machine["loadavg"][0], machine["loadavg_at_end"][0])
    )
    print(
        "load: %s series x %s labels, %s samples/request, %s connections, %ss phases; ringest %s; %s"
        % (series, config.get("labels"), config.get("samples_per_request"), config.get("concurrency"), config.get("duration_sec"), config.get("ringest_commit"), config.get("prometheus_version") or "")
    )
    print("load generator: %s" % config.get("loadtest"))
    print()
    print(table(res, names))
    print()
    for n in names:
        raw = res[n]["raw"]
        print(
            "%s: head series after warm-up %s (%ss), before kill %s, after replay %s; blocks before kill %s; startup %.2fs; idle RSS %.1f MiB"
            % (n, raw.get("head_series_after_warmup"), raw.get("warmup_sec"), raw.get("head_series_before_kill"), raw.get("head_series_after_replay"), raw.get("blocks_before_kill"), raw.get("startup_sec", 0), raw.get("rss_idle_bytes", 0) / 2**20)
        )
        c, t = raw.get("ringest_wal_fsync_duration_seconds_count"), raw.get("ringest_wal_fsync_duration_seconds_sum")
        if isinstance(c, (int, float)) and isinstance(t, (int, float)) and c:
            print("%s: %d WAL fsyncs over the run, mean %.2f ms" % (n, c, 1000 * t / c))
        c, t = raw.get("go_gc_duration_seconds_count"), raw.get("go_gc_duration_seconds_sum")
        if isinstance(c, (int, float)) and isinstance(t, (int, float)):
            print("%s: %d Go GC cycles over the run, %.3f s of stop-the-world pauses" % (n, c, t))
        errs = res[n]["figures"]["errors_by_phase"]
        if errs:
            print("%s: non-2xx answers by phase: %s" % (n, json.dumps(errs)))
        if raw.get("head_series_after_warmup", series) < series:
            print("%s: WARNING: the head never held all %s series; RSS per series is not at full load" % (n, series))
    if "targets" in doc:
        print()
        for t in doc["targets"]:
            print("  [%s] %s: %s" % ("met " if t["met"] else "MISS", t["target"], t["measured"]))
    print()
    print("Receivers are SIGKILLed before the replay, so the whole WAL is replayed (no clean shutdown). Ringest")
    print("fsyncs the WAL before each 2xx (group commit); Prometheus 2.42 fsyncs only when a WAL segment closes.")
    print("Ratios are ringest / prometheus. CPU figures are user+sys of the receiver process only.")

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
