#!/usr/bin/env python3
"""Measuring helpers for benches/compare.sh. Each subcommand prints one line (or one JSON value).

  port                          a free TCP port on 127.0.0.1
  cpu PID                       user+sys CPU seconds of PID so far (utime+stime / CLK_TCK)
  rss PID                       VmRSS of PID in bytes
  snap PID                      "cpu busy now": cpu PID, busy and now in one call
  busy                          CPU seconds the whole machine has been busy (/proc/stat, all cores)
  now                           wall clock, seconds since epoch
  hwm PID                       VmHWM (peak RSS) of PID in bytes
  wait-ready URL TIMEOUT PID    polls URL until it answers 200; prints the wall time (ns since epoch)
                                it did; fails if PID dies or TIMEOUT seconds pass
  metric URL NAME...            sum of the samples of the first NAME found in the exposition at URL
  save URL FILE                 saves what URL answers (e.g. /metrics) to FILE
  json-field FILE KEY           a field of the last JSON object line in FILE (dotted keys allowed)
  last-json FILE                the last line of FILE that parses as a JSON object (checked)
  du DIR NAME                   total bytes of every directory called NAME under DIR
  blocks DIR                    number of TSDB block directories (holding meta.json) under DIR
  machine DIR                   JSON: nproc, CPU model, memory, `df` of DIR
"""
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request


def die(msg):
    print("measure.py: " + msg, file=sys.stderr)
    sys.exit(1)


def proc_status(pid, key):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                parts = line.split()
                assert parts[2] == "kB", line
                return int(parts[1]) * 1024
    die("no %s in /proc/%s/status" % (key, pid))


def cpu_seconds(pid):
    with open("/proc/%s/stat" % pid) as f:
        stat = f.read()
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def machine_busy():
    with open("/proc/stat") as f:
        cpu = f.readline().split()
    assert cpu[0] == "cpu"
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    v = [int(x) for x in cpu[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def last_json(path):
    obj = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    pass
    if obj is None:
        die("no JSON object line in %s" % path)
    return obj


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def metric(url, names):
    text = scrape(url)
    for name in names:
        total, found = 0.0, False
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            head = line.split(" ", 1)[0]
            if head == name or head.startswith(name + "{"):
                rest = line.rsplit("}", 1)[1] if "}" in line else line.split(" ", 1)[1]
                total += float(rest.split()[0])
                found = True
        if found:
            return total
    die("none of %s in %s" % (", ".join(names), url))


def wait_ready(url, timeout, pid):
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.time_ns()
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if not os.path.exists("/proc/%s" % pid):
            die("process %s exited before %s answered 200" % (pid, url))
        with open("/proc/%s/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                die("process %s exited before %s answered 200" % (pid, url))
        time.sleep(0.02)
    die("%s did not answer 200 within %ss" % (url, timeout))


def du(root, name):
    total = 0
    for d, dirs, files in os.walk(root):
        if os.path.basename(d) == name:
            for sub, _, fs in os.walk(d):
                for f in fs:
                    try:
                        total += os.path.getsize(os.path.join(sub, f))
                    except OSError:
                        pass
    return total


def blocks(root):
    n = 0
    for d, dirs, files in os.walk(root):
        if "meta.json" in files and "index" in files:
            n += 1
    return n


def machine(path):
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = None
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    df = subprocess.run(["df", "-hT", path], capture_output=True, text=True, check=True).stdout.splitlines()[-1].split()
    return {
        "nproc": os.cpu_count(),
        "nproc_available": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "mem_total_bytes": mem,
        "kernel": os.uname().release,
        "disk": {"filesystem": df[0], "type": df[1], "size": df[2], "avail": df[4], "mounted_on": df[6]},
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }


def main():
    if len(sys.argv) < 2:
        die("usage: see the docstring")
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "port":
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])
        s.close()
    elif cmd == "cpu":
        print("%.2f" % cpu_seconds(a[0]))
    elif cmd == "snap":
        print("%.2f %.2f %.3f" % (cpu_seconds(a[0]), machine_busy(), time.time()))
    elif cmd == "busy":
        print("%.2f" % machine_busy())
    elif cmd == "now":
        print("%.3f" % time.time())
    elif cmd == "rss":
        print(proc_status(a[0], "VmRSS"))
    elif cmd == "hwm":
        print(proc_status(a[0], "VmHWM"))
    elif cmd == "wait-ready":
        print(wait_ready(a[0], a[1], a[2]))
    elif cmd == "metric":
        v = metric(a[0], a[1:])
        print(int(v) if v == int(v) else v)
    elif cmd == "save":
        with open(a[1], "w") as f:
            f.write(scrape(a[0]))
    elif cmd == "json-field":
        v = last_json(a[0])
        for k in a[1].split("."):
            v = v[k]
        print(json.dumps(v) if isinstance(v, (dict, list)) else v)
    elif cmd == "last-json":
        print(json.dumps(last_json(a[0])))
    elif cmd == "du":
        print(du(a[0], a[1]))
    elif cmd == "blocks":
        print(blocks(a[0]))
    elif cmd == "machine":
        print(json.dumps(machine(a[0])))
    else:
        die("unknown subcommand " + cmd)


if __name__ == "__main__":
    main()
