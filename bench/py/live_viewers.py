#!/usr/bin/env python3
"""Low-latency live feed driver for bench/live.sh.

    live_viewers.py run --url http://127.0.0.1:P/api/v1/cameras/CAM/live.mp4 --viewers 10 \
        --seconds 30 --out R.json
    live_viewers.py report --window 30 --header H DIR

run: N threads each read the never-ending live.mp4 body as it arrives and split it into boxes;
  for every moof+mdat chunk, the client-side latency is its receive time minus its decode time
  (tfdt, 90 kHz ticks on the daemon's wall-clock timeline, so tfdt / 90000 is Unix time). Also
  reads /api/v1/health at the end: the daemon's own arrival-to-body latency quantiles.
report: a markdown table from the run directory (idle.json / load.json from measure.py,
  lat-1.json / lat-10.json from run, hls.json from hls_viewers.py live).
"""

import argparse
import http.client
import json
import statistics
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request

TIMESCALE = 90_000


def tfdt(moof):
    """base_media_decode_time of the first traf's tfdt box."""
    i = moof.find(b"tfdt")
    if i < 4:
        raise ValueError("moof without tfdt")
    version = moof[i + 4]
    if version == 1:
        return struct.unpack(">Q", moof[i + 8:i + 16])[0]
    return struct.unpack(">I", moof[i + 8:i + 12])[0]


def viewer(url, seconds, lat, counts, errors):
    u = urllib.parse.urlparse(url)
    try:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.request("GET", u.path)
        r = conn.getresponse()
        if r.status != 200:
            errors.append(f"HTTP {r.status}: {r.read()[:200]!r}")
            return
        buf = b""
        pending_moof = None
        chunks = 0
        deadline = time.time() + seconds
        while time.time() < deadline:
            data = r.read1(1 << 16)
            now = time.time()
            if not data:
                errors.append("the live body ended")
                return
            buf += data
            while len(buf) >= 8:
                size = struct.unpack(">I", buf[:4])[0]
                if len(buf) < size:
                    break
                kind, box = buf[4:8], buf[:size]
                buf = buf[size:]
                if kind == b"moof":
                    pending_moof = box
                elif kind == b"mdat" and pending_moof is not None:
                    lat.append(now - tfdt(pending_moof) / TIMESCALE)
                    chunks += 1
                    pending_moof = None
        counts.append(chunks)
        conn.close()
    except Exception as e:  # noqa: BLE001 - reported, fails the run
        errors.append(repr(e))


def q(values, p):
    v = sorted(values)
    return v[round((len(v) - 1) * p)]


def run(a):
    lat, counts, errors = [], [], []
    threads = [threading.Thread(target=viewer, args=(a.url, a.seconds, lat, counts, errors))
               for _ in range(a.viewers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"live viewers failed: {errors[:3]}")
    base = a.url.split("/api/v1/")[0]
    with urllib.request.urlopen(f"{base}/api/v1/health", timeout=10) as r:
        health = json.load(r)
    server = health["playback"]["live_latency_ms"]
    res = {"viewers": a.viewers, "chunks": counts, "client_p50_s": q(lat, 0.5),
           "client_p95_s": q(lat, 0.95), "server_ms": server}
    json.dump(res, open(a.out, "w"))
    print(f"[bench] {a.viewers} viewers: {sum(counts)} chunks, client p50 {res['client_p50_s'] * 1000:.0f} ms "
          f"p95 {res['client_p95_s'] * 1000:.0f} ms; server p50 {server['p50']:.1f} ms "
          f"p95 {server['p95']:.1f} ms", file=sys.stderr)


def report(a):
    d = a.dir
    idle = json.load(open(f"{d}/idle.json"))
    load = json.load(open(f"{d}/load.json"))
    print("## Low-latency live feed (live.mp4)\n")
    for h in a.header:
        print(f"- {h}")
    print()
    print("| viewers | chunks/viewer | client latency p50 / p95 | server latency p50 / p95 |")
    print("|---|---|---|---|")
    for n in (1, 10):
        r = json.load(open(f"{d}/lat-{n}.json"))
        s = r["server_ms"]
        print(f"| {n} | {statistics.median(r['chunks']):.0f} | "
              f"{r['client_p50_s'] * 1000:.0f} ms / {r['client_p95_s'] * 1000:.0f} ms | "
              f"{s['p50']:.1f} ms / {s['p95']:.1f} ms |")
    hls = f"{d}/hls.json"
    try:
        h = json.load(open(hls))
        lat = h["edge_latency_s"]
        print(f"HLS LIVE in the same run (fragment_duration 2 s): time to first byte "
              f"{h['ttfb_s'] * 1000:.0f} ms; fragment stored to listed in the playlist p50 "
              f"{q(lat, 0.5) * 1000:.0f} ms, p95 {q(lat, 0.95) * 1000:.0f} ms over {len(lat)} fragments; "
              f"a frame waits up to the 2 s fragment before that.")
    except OSError:
        pass
    print()
    print("| daemon CPU over the window | % of one core |")
    print("|---|---|")
    print(f"| recording, no viewer | {idle['cpu_s'] / a.window * 100:.1f} |")
    print(f"| recording + 10 live viewers | {load['cpu_s'] / a.window * 100:.1f} |")
    print()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--url", required=True)
    r.add_argument("--viewers", type=int, default=1)
    r.add_argument("--seconds", type=float, default=30)
    r.add_argument("--out", required=True)
    rep = sub.add_parser("report")
    rep.add_argument("--window", type=float, required=True)
    rep.add_argument("--header", action="append", default=[])
    rep.add_argument("dir")
    a = p.parse_args()
    run(a) if a.cmd == "run" else report(a)


if __name__ == "__main__":
    main()
