#!/usr/bin/env python3
"""Measures the CPU, memory and received RTSP bytes of running processes over a fixed window.

    measure.py --duration 30 --port 8554 [--server PID] PID [PID ...]

CPU is utime+stime from /proc/<pid>/stat (whole thread group) of every given process and its
descendants, read at the start and at the end of the window. Memory: VmHWM (peak RSS over the
process lifetime, read at the end) and the largest VmRSS seen while sampling once a second, both
summed over the processes. Received bytes: tcpi_bytes_received (`ss -ti`) of the processes' TCP
connections to 127.0.0.1:<port> (the test camera), difference over the window. Prints one JSON
object; "alive" is false when a process died during the window.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: fields start after the last ')'.
    rest = data[data.rindex(")") + 2 :].split()
    return rest  # rest[0] is field 3 (state)


def alive(pid):
    f = stat_fields(pid)
    return f is not None and f[0] not in ("Z", "X")


def children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        f = stat_fields(d)
        if f is None:
            continue
        kids.setdefault(int(f[1]), []).append(int(d))
    return kids


def tree(roots):
    kids = children_map()
    out, todo = [], list(roots)
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pids):
    """pid -> utime+stime (clock ticks) for the pids that still exist."""
    ticks = {}
    for p in pids:
        f = stat_fields(p)
        if f is not None:
            ticks[p] = int(f[11]) + int(f[12])  # fields 14 and 15
    return ticks


def thread_ticks(pids):
    """(pid, tid) -> (thread name, utime+stime) for every thread of pids."""
    out = {}
    for p in pids:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            try:
                with open(f"/proc/{p}/task/{t}/stat") as f:
                    data = f.read()
            except OSError:
                continue
            name = data[data.index("(") + 1 : data.rindex(")")]
            rest = data[data.rindex(")") + 2 :].split()
            out[(p, int(t))] = (name, int(rest[11]) + int(rest[12]))
    return out


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def threads(pid):
    return status_kb(pid, "Threads")


SS_PID = re.compile(r"pid=(\d+)")
SS_RX = re.compile(r"bytes_received:(\d+)")


def rx_bytes(port, pids):
    """local address -> bytes received, for TCP connections to :port owned by pids."""
    try:
        out = subprocess.run(
            ["ss", "-tinpH", "state", "established", f"( dport = :{port} )"],
            capture_output=True, text=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"measure.py: ss failed: {e}")
    wanted, socks, key = set(pids), {}, None
    for line in out.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            cols = line.split()
            owners = {int(p) for p in SS_PID.findall(line)}
            key = cols[2] if len(cols) > 2 and owners & wanted else None
        elif key is not None:
            m = SS_RX.search(line)
            socks[key] = int(m.group(1)) if m else 0
            key = None
    return socks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server", type=int, help="test camera pid (its CPU is reported separately)")
    ap.add_argument("pids", type=int, nargs="+")
    a = ap.parse_args()

    procs = tree(a.pids)
    rx0 = rx_bytes(a.port, procs)
    t0_wall = time.time()
    t0 = time.monotonic()
    c0 = cpu_ticks(procs)
    th0 = thread_ticks(procs)
    s0 = cpu_ticks([a.server]) if a.server else {}

    ok, rss_max, died = True, 0, []
    end = t0 + a.duration
    while True:
        now = time.monotonic()
        if now >= end:
            break
        time.sleep(min(1.0, end - now))
        dead = [p for p in a.pids if not alive(p)]
        if dead:
            ok, died = False, dead
            break
        rss_max = max(rss_max, sum(status_kb(p, "VmRSS") for p in procs))

    c1 = cpu_ticks(procs)
    th1 = thread_ticks(procs)
    t1 = time.monotonic()
    t1_wall = time.time()
    s1 = cpu_ticks([a.server]) if a.server else {}
    rx1 = rx_bytes(a.port, procs)
    # A process gone by the end (it should not be) counts as 0 here and makes the run fail.
    ticks = sum(c1.get(p, c0.get(p, 0)) - c0.get(p, 0) for p in set(c0) | set(c1))
    rx = sum(v - rx0.get(k, 0) for k, v in rx1.items())
    # CPU by thread name over the window (threads that ended during it are missing).
    by_name = {}
    for k, (name, t) in th1.items():
        by_name[name] = by_name.get(name, 0) + t - th0.get(k, (name, 0))[1]
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:40]
    print(json.dumps({
        "alive": ok,
        "died": died,
        "window_start": t0_wall,
        "window_end": t1_wall,
        "wall_s": round(t1 - t0, 3),
        "cpu_s": round(ticks / CLK_TCK, 3),
        "server_cpu_s": round((s1.get(a.server, 0) - s0.get(a.server, 0)) / CLK_TCK, 3) if a.server else None,
        "rx_bytes": rx,
        "connections": len(rx1),
        "rss_max_kb": rss_max,
        "hwm_kb": sum(status_kb(p, "VmHWM") for p in procs),
        "processes": len(procs),
        "threads": sum(threads(p) for p in procs),
        "thread_cpu_s": {name: round(t / CLK_TCK, 2) for name, t in top if t > 0},
    }))


if __name__ == "__main__":
    main()
