#!/usr/bin/env python3
"""Times exporting the stored hours as one MP4: vidgest's clip.mp4 (curl) against ffmpeg concat.

Called by bench/playback.sh with a running daemon; prints a Markdown report. Each export's output
is checked with ffprobe (duration within 1 % of the hours stored) and deleted.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def probe_duration(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", path],
        check=True, capture_output=True, text=True).stdout
    return float(json.loads(out)["format"]["duration"])


class RssPeak(threading.Thread):
    """Samples a process's VmRSS every 20 ms until stopped."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, rss_bytes(pid), threading.Event()

    def run(self):
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid))


def stored_range(port, camera):
    """(oldest, newest) stored video of the camera, RFC 3339, from /api/v1/health."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health") as r:
            health = json.load(r)
    except urllib.error.HTTPError as e:  # 503 "degraded" still carries the parts
        health = json.load(e)
    for c in health["storage"]["cameras"]:
        if c["camera"] == camera:
            return c["oldest"], c["newest"]
    sys.exit(f"camera {camera} has no stored video")


def vidgest_export(args, start, end, out):
    url = (f"http://127.0.0.1:{args.port}/api/v1/cameras/{args.camera}/clip.mp4"
           f"?start={start}&end={end}")
    before_rss = rss_bytes(args.daemon_pid)
    before_cpu = cpu_s(args.daemon_pid)
    before_children = children_cpu()
    sampler = RssPeak(args.daemon_pid)
    sampler.start()
    t0 = time.monotonic()
    subprocess.run(["curl", "-sS", "--fail", "-o", out, url], check=True)
    wall = time.monotonic() - t0
    sampler.done.set()
    sampler.join()
    return {
        "wall_s": wall,
        "cpu_s": cpu_s(args.daemon_pid) - before_cpu + children_cpu() - before_children,
        "rss_growth_mib": (sampler.peak - before_rss) / 2**20,
    }


def ffmpeg_export(args, out):
    t0 = time.monotonic()
    p = subprocess.Popen(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                          "-f", "concat", "-safe", "0", "-i", args.concat, "-c", "copy", out])
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if status != 0:
        sys.exit(f"ffmpeg failed with status {status}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mib": usage.ru_maxrss / 1024,
    }


def summary(values, fmt="{:.2f}"):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--daemon-pid", type=int, required=True)
    ap.add_argument("--camera", required=True)
    ap.add_argument("--concat", required=True)
    ap.add_argument("--hours", type=int, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", required=True)
    ap.add_argument("--header", action="append", default=[])
    args = ap.parse_args()

    expected = args.hours * 3600.0
    start, end = stored_range(args.port, args.camera)
    runs = {"vidgest": [], "ffmpeg": []}
    out = os.path.join(args.work, "out.mp4")
    # One untimed export each first: both read from a warm page cache afterwards.
    for rep in range(args.repeats + 1):
        order = ["vidgest", "ffmpeg"] if rep % 2 == 0 else ["ffmpeg", "vidgest"]
        for tool in order:
            r = vidgest_export(args, start, end, out) if tool == "vidgest" else ffmpeg_export(args, out)
            d = probe_duration(out)
            r["duration_s"] = d
            r["bytes"] = os.path.getsize(out)
            os.remove(out)
            if abs(d - expected) > expected * 0.01:
                sys.exit(f"{tool}: exported {d:.1f} s, expected {expected:.0f} s")
            print(f"[bench] {'warm-up' if rep == 0 else f'repeat {rep}'} {tool}: {r}", file=sys.stderr)
            if rep > 0:
                runs[tool].append(r)

    v, f = runs["vidgest"], runs["ffmpeg"]
    ratios = [b["wall_s"] / a["wall_s"] for a, b in zip(v, f)]
    print(f"## Playback benchmark: export {args.hours} h of 1080p30 5 Mbit/s as one MP4, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print()
    for h in args.header:
        print(f"- {h}")
    print(f"- {args.repeats} repeats after one untimed warm-up export each, alternating order; median (min–max)")
    print(f"- output: {v[0]['bytes'] / 2**30:.2f} GiB (vidgest), {f[0]['bytes'] / 2**30:.2f} GiB (ffmpeg)")
    print()
    print("| | wall s | CPU s | memory |")
    print("|---|---|---|---|")
    print(f"| vidgest clip.mp4 (daemon + curl) | {summary([r['wall_s'] for r in v])} | {summary([r['cpu_s'] for r in v])} | daemon RSS growth {summary([r['rss_growth_mib'] for r in v], '{:.1f}')} MiB |")
    print(f"| ffmpeg -f concat -c copy | {summary([r['wall_s'] for r in f])} | {summary([r['cpu_s'] for r in f])} | peak RSS {summary([r['peak_rss_mib'] for r in f], '{:.1f}')} MiB |")
    print()
    print(f"vidgest is {summary(ratios)}x faster than ffmpeg concat (wall time, paired per repeat; target >= 2x).")


if __name__ == "__main__":
    main()
