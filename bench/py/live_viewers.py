#!/usr/bin/env python3
"""Low-latency live feed driver for bench/live.sh.

    live_viewers.py run --url http://127.0.0.1:P/api/v1/cameras/CAM/live.mp4 --viewers 10 \
        --seconds 30 --out R.json
    live_viewers.py report --window 30 --header H DIR

run: N threads each read the never-ending live.mp4 body as it arrives and split it into boxes;
  for every moof+mdat chunk, the client-side latency is its receive time minus its decode time
  (tfdt, 90 kHz ticks on the daemon's wall-clock timeline, so tfdt / 90000 is Unix time). Also
  reads /api/v1/health at the end: the daemon's own arrival-to-body latency quantiles.
report: markdown tables over the rounds' directories (idle.json / load.json from measure.py,
  lat-1.json / lat-n.json from run, hls.json from hls_viewers.py live).
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


def med(values, fmt="{:.0f}"):
    """median (min–max) over the rounds."""
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def report(a):
    rounds = []
    for d in a.dirs:
        load = lambda n: json.load(open(f"{d}/{n}.json"))  # noqa: E731
        rounds.append({k: load(k) for k in ("idle", "load", "lat-1", "lat-n", "hls")})
    ms = "{:.0f} ms"
    print(f"## Low-latency live feed (live.mp4), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    for h in a.header:
        print(f"- {h}")
    print(f"- {len(rounds)} rounds in one daemon run; median (min–max) over the rounds; CPU in % of one "
          f"core over {a.window:.0f} s windows")
    print()
    print("| | latency p50 | latency p95 |")
    print("|---|---|---|")
    for key, label in (("lat-1", "live.mp4, 1 viewer, client side"),
                       ("lat-n", f"live.mp4, {a.viewers} viewers, client side")):
        print(f"| {label} | {med([r[key]['client_p50_s'] * 1000 for r in rounds], ms)} | "
              f"{med([r[key]['client_p95_s'] * 1000 for r in rounds], ms)} |")
    print(f"| live.mp4, {a.viewers} viewers, server side (arrival in the recorder to the socket) | "
          f"{med([r['lat-n']['server_ms']['p50'] for r in rounds], '{:.1f} ms')} | "
          f"{med([r['lat-n']['server_ms']['p95'] for r in rounds], '{:.1f} ms')} |")
    print(f"| HLS LIVE, every frame, player polling every 20 ms (frame time to its segment listed) | "
          f"{med([q(r['hls']['frame_latency_s'], 0.5) * 1000 for r in rounds], ms)} | "
          f"{med([q(r['hls']['frame_latency_s'], 0.95) * 1000 for r in rounds], ms)} |")
    print(f"| HLS LIVE, fragment stored to listed in the playlist | "
          f"{med([q(r['hls']['edge_latency_s'], 0.5) * 1000 for r in rounds], ms)} | "
          f"{med([q(r['hls']['edge_latency_s'], 0.95) * 1000 for r in rounds], ms)} |")
    print()
    idle = [r["idle"]["cpu_s"] / a.window * 100 for r in rounds]
    loaded = [r["load"]["cpu_s"] / a.window * 100 for r in rounds]
    ratio = [b / x for x, b in zip(idle, loaded)]
    per = [(r["load"]["cpu_s"] - r["idle"]["cpu_s"]) / a.viewers / a.window * 100 for r in rounds]
    f2 = "{:.2f}"
    print("| daemon CPU | % of one core |")
    print("|---|---|")
    print(f"| recording alone | {med(idle, f2)} |")
    print(f"| recording + {a.viewers} live viewers | {med(loaded, f2)} |")
    print(f"| ratio (with viewers / alone) | {med(ratio, f2)}x |")
    print(f"| per viewer | {med(per, '{:.3f}')} |")
    rss = [r["load"].get("rss_max_kb") for r in rounds]
    if all(rss):
        print(f"| daemon peak RSS with viewers | {med([x / 1024 for x in rss], '{:.1f} MiB')} |")
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
    rep.add_argument("--viewers", type=int, default=10)
    rep.add_argument("--header", action="append", default=[])
    rep.add_argument("dirs", nargs="+")
    a = p.parse_args()
    run(a) if a.cmd == "run" else report(a)


if __name__ == "__main__":
    main()
