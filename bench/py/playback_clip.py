#!/usr/bin/env python3
"""Times clip exports against ffmpeg concat over the same video: the stored hours as one MP4
(REST clip.mp4 through curl) and GetClip just under its 100 MB limit.

Called by bench/playback.sh with a running daemon; prints a Markdown report. Each export's output
is checked with ffprobe (duration within 1 % of what was asked) and deleted.
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
from datetime import datetime
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


def vidgest_export(args, curl_args, out):
    before_rss = rss_bytes(args.daemon_pid)
    before_cpu = cpu_s(args.daemon_pid)
    before_children = children_cpu()
    sampler = RssPeak(args.daemon_pid)
    sampler.start()
    t0 = time.monotonic()
    subprocess.run(["curl", "-sS", "--fail", "-o", out, *curl_args], check=True)
    wall = time.monotonic() - t0
    sampler.done.set()
    sampler.join()
    return {
        "wall_s": wall,
        "cpu_s": cpu_s(args.daemon_pid) - before_cpu + children_cpu() - before_children,
        "rss_growth_mib": (sampler.peak - before_rss) / 2**20,
    }


def ffmpeg_export(concat_list, out):
    t0 = time.monotonic()
    p = subprocess.Popen(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                          "-f", "concat", "-safe", "0", "-i", concat_list, "-c", "copy", out])
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

    oldest, newest = stored_range(args.port, args.camera)
    base = f"http://127.0.0.1:{args.port}"
    # GetClip serves at most 200 fragments and 100 MB (the service's limits): 80 fragments of 2 s
    # at 5 Mbit/s (~96 MiB), against ffmpeg concat over the same first 80 segments.
    first80 = os.path.join(args.work, "first80.txt")
    with open(args.concat) as src, open(first80, "w") as dst:
        dst.writelines(src.readlines()[:80])
    t0 = datetime.fromisoformat(oldest.replace("Z", "+00:00")).timestamp()
    getclip = json.dumps({"StreamName": args.camera, "ClipFragmentSelector": {
        "FragmentSelectorType": "PRODUCER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": t0, "EndTimestamp": t0 + 159.9}}})
    cases = [
        (f"{args.hours} h as one MP4: REST clip.mp4", args.hours * 3600.0,
         [f"{base}/api/v1/cameras/{args.camera}/clip.mp4?start={oldest}&end={newest}"], args.concat),
        ("GetClip (kinesis-video-archived-media), 80 fragments, just under its 100 MB limit", 160.0,
         ["-X", "POST", "-H", "Content-Type: application/json", "-d", getclip, f"{base}/getClip"],
         first80),
    ]
    print(f"## Playback benchmark: clip export, 1080p30 5 Mbit/s, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print()
    for h in args.header:
        print(f"- {h}")
    print(f"- {args.repeats} repeats after one untimed warm-up export each, alternating order; median (min–max); "
          "vidgest CPU = daemon + curl; ffmpeg: `ffmpeg -f concat -safe 0 -i list -c copy out.mp4` over 2 s MP4 "
          "segments written by ffmpeg's segment muxer")
    for title, expected, curl_args, concat_list in cases:
        runs = {"vidgest": [], "ffmpeg": []}
        out = os.path.join(args.work, "out.mp4")
        for rep in range(args.repeats + 1):
            order = ["vidgest", "ffmpeg"] if rep % 2 == 0 else ["ffmpeg", "vidgest"]
            for tool in order:
                if tool == "vidgest":
                    r = vidgest_export(args, curl_args, out)
                else:
                    r = ffmpeg_export(concat_list, out)
                d = probe_duration(out)
                r["duration_s"] = d
                r["bytes"] = os.path.getsize(out)
                os.remove(out)
                if abs(d - expected) > expected * 0.01:
                    sys.exit(f"{title}: {tool} exported {d:.1f} s, expected {expected:.0f} s")
                print(f"[bench] {title}: {'warm-up' if rep == 0 else f'repeat {rep}'} {tool}: {r}",
                      file=sys.stderr)
                if rep > 0:
                    runs[tool].append(r)
        v, f = runs["vidgest"], runs["ffmpeg"]
        ratios = [b["wall_s"] / a["wall_s"] for a, b in zip(v, f)]
        print()
        print(f"### {title} ({expected:.0f} s, {v[0]['bytes'] / 2**20:.0f} MiB)")
        print()
        print("| | wall s | CPU s | memory |")
        print("|---|---|---|---|")
        print(f"| vidgest | {summary([r['wall_s'] for r in v])} | {summary([r['cpu_s'] for r in v])} | daemon RSS growth {summary([r['rss_growth_mib'] for r in v], '{:.1f}')} MiB |")
        print(f"| ffmpeg concat | {summary([r['wall_s'] for r in f])} | {summary([r['cpu_s'] for r in f])} | peak RSS {summary([r['peak_rss_mib'] for r in f], '{:.1f}')} MiB |")
        print()
        print(f"vidgest is {summary(ratios)}x faster than ffmpeg concat (wall time, paired per repeat; target >= 2x).")


if __name__ == "__main__":
    main()
