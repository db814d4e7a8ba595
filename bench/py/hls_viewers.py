#!/usr/bin/env python3
"""HLS load and latency driver for bench/playback.sh (any HLS server; sessions from the daemon's
KVS-compatible API through boto3, as KVS consumer code gets them).

    hls_viewers.py viewers --endpoint URL --stream CAM --viewers 20 --seconds 30 --out R.json
    hls_viewers.py live --endpoint URL --stream CAM --seconds 60 --out R.json

viewers: N threads each open their own ON_DEMAND session over the stored range and play it at
  real time: master playlist, media playlist, the init segment, then each media segment no earlier
  than the sum of the previous segments' durations after the first (a player's steady state with
  no buffer ahead). Counts segments and bytes; any HTTP error fails the run.
live: a LIVE session: time from the GetHLSStreamingSessionURL call to the first byte of the first
  media segment (time to first byte), then the media playlist polled every 20 ms; for each new
  segment, the delay from its fragment's server timestamp (when the daemon stored it, from
  ListFragments) to the poll that first lists it (the live edge latency).
"""

import argparse
import json
import re
import statistics
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

import boto3


def clients(endpoint, stream, api):
    kw = dict(region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="x")
    kv = boto3.client("kinesisvideo", endpoint_url=endpoint, **kw)
    ep = kv.get_data_endpoint(StreamName=stream, APIName=api)["DataEndpoint"]
    return boto3.client("kinesis-video-archived-media", endpoint_url=ep, **kw)


def tfdt(segment):
    """base_media_decode_time of a fragment's first tfdt box (90 kHz wall-clock ticks here)."""
    i = segment.find(b"tfdt")
    if i < 4:
        raise ValueError("segment without tfdt")
    if segment[i + 4] == 1:
        return struct.unpack(">Q", segment[i + 8:i + 16])[0]
    return struct.unpack(">I", segment[i + 8:i + 12])[0]


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def first_variant(master_url):
    text = get(master_url).decode()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            return urllib.parse.urljoin(master_url, line)
    raise RuntimeError(f"no variant in the master playlist:\n{text}")


def parse_media(url):
    """(init URL or None, [(duration_s, segment URL)]) of a media playlist."""
    text = get(url).decode()
    init, segs, dur = None, [], None
    for line in text.splitlines():
        m = re.match(r'#EXT-X-MAP:URI="([^"]+)"', line)
        if m and init is None:
            init = urllib.parse.urljoin(url, m.group(1))
        elif line.startswith("#EXTINF:"):
            dur = float(line[8:].split(",")[0])
        elif line and not line.startswith("#"):
            segs.append((dur or 0.0, urllib.parse.urljoin(url, line)))
    return init, segs


def stored_range(endpoint, stream):
    """(oldest, newest) stored video of the stream, from /api/v1/health."""
    try:
        health = json.loads(get(f"{endpoint}/api/v1/health"))
    except urllib.error.HTTPError as e:  # 503 "degraded" still carries the parts
        health = json.load(e)
    for c in health["storage"]["cameras"]:
        if c["camera"] == stream:
            parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
            return parse(c["oldest"]), parse(c["newest"])
    sys.exit(f"{stream} has no stored video")


def viewer(session_url, seconds, stats, errors):
    try:
        media = first_variant(session_url)
        init, segs = parse_media(media)
        n = len(get(init)) if init else 0
        t0, played = time.monotonic(), 0.0
        count = 0
        for dur, seg in segs:
            wait = t0 + played - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if time.monotonic() - t0 >= seconds:
                break
            n += len(get(seg))
            played += dur
            count += 1
        stats.append((count, n))
    except Exception as e:  # reported, fails the run
        errors.append(repr(e))


def run_viewers(a):
    am = clients(a.endpoint, a.stream, "GET_HLS_STREAMING_SESSION_URL")
    start, end = stored_range(a.endpoint, a.stream)
    urls = [am.get_hls_streaming_session_url(
        StreamName=a.stream, PlaybackMode="ON_DEMAND", Expires=43200,
        MaxMediaPlaylistFragmentResults=5000,
        HLSFragmentSelector={"FragmentSelectorType": "PRODUCER_TIMESTAMP",
                             "TimestampRange": {"StartTimestamp": start, "EndTimestamp": end}},
    )["HLSStreamingSessionURL"] for _ in range(a.viewers)]
    stats, errors = [], []
    threads = [threading.Thread(target=viewer, args=(u, a.seconds, stats, errors)) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"{len(errors)} viewers failed: {errors[:3]}")
    res = {"viewers": a.viewers, "segments": sum(s[0] for s in stats),
           "bytes": sum(s[1] for s in stats)}
    json.dump(res, open(a.out, "w"))
    print(f"[bench] {res}", file=sys.stderr)


def run_live(a):
    am = clients(a.endpoint, a.stream, "GET_HLS_STREAMING_SESSION_URL")
    t0 = time.time()
    url = am.get_hls_streaming_session_url(
        StreamName=a.stream, PlaybackMode="LIVE")["HLSStreamingSessionURL"]
    media = first_variant(url)
    init, segs = parse_media(media)
    if init:
        get(init)
    if not segs:
        sys.exit("the LIVE playlist lists no segment")
    with urllib.request.urlopen(segs[-1][1], timeout=30) as r:
        r.read(1)
        ttfb = time.time() - t0
        r.read()

    lf = clients(a.endpoint, a.stream, "LIST_FRAGMENTS")
    seen = {s for _, s in segs}
    appeared = {}  # fragment number -> wall time first listed
    # Per new segment, what a player polling the playlist this often sees: listed time minus the
    # wall-clock time of the segment's first frame (tfdt / 90000) and its duration, so the
    # latency of every frame in it is known (frames are spread evenly over the duration).
    frames = []  # (listed - first frame time, duration) per segment
    deadline = time.time() + a.seconds
    while time.time() < deadline:
        _, now_segs = parse_media(media)
        t = time.time()
        for dur, s in now_segs:
            if s not in seen:
                seen.add(s)
                q = urllib.parse.parse_qs(urllib.parse.urlparse(s).query)
                num = (q.get("FragmentNumber") or [None])[0]
                if num is None:
                    sys.exit(f"segment URL without FragmentNumber: {s}")
                appeared[num] = t
                frames.append((t - tfdt(get(s)) / 90_000, dur))
        time.sleep(0.02)
    end = datetime.now(timezone.utc)
    frags = lf.list_fragments(StreamName=a.stream, FragmentSelector={
        "FragmentSelectorType": "SERVER_TIMESTAMP",
        "TimestampRange": {"StartTimestamp": end - timedelta(seconds=a.seconds + 60),
                           "EndTimestamp": end}})["Fragments"]
    server = {f["FragmentNumber"]: f["ServerTimestamp"].timestamp() for f in frags}
    lat = [appeared[n] - server[n] for n in appeared if n in server]
    if not lat:
        sys.exit("no new fragment appeared in the live playlist")
    # Every frame's latency, 30 per second of each segment, for quantiles comparable with the
    # low-latency feed's per-chunk latency.
    frame_lat = [first - k / 30 for first, dur in frames for k in range(max(1, round(dur * 30)))]
    res = {"ttfb_s": ttfb, "edge_latency_s": lat, "frame_latency_s": frame_lat}
    json.dump(res, open(a.out, "w"))
    print(f"[bench] ttfb {ttfb:.3f} s; edge latency median {statistics.median(lat):.3f} s over {len(lat)}",
          file=sys.stderr)


def recording_cpu(m):
    """CPU s of every thread but the HTTP runtime's (`api`: handlers and their blocking reads)."""
    return sum(v for k, v in m["thread_cpu_s"].items() if k != "api")


def med(values, fmt="{:.2f}"):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def report(a):
    rows = []
    for d in a.dirs:
        load = lambda n: json.load(open(f"{d}/{n}.json"))  # noqa: E731
        rows.append({k: load(k) for k in ("idle", "load", "viewers", "live")})
    w = a.window
    idle_cpu = [r["idle"]["cpu_s"] / w * 100 for r in rows]
    load_cpu = [r["load"]["cpu_s"] / w * 100 for r in rows]
    per_viewer = [(r["load"]["cpu_s"] - r["idle"]["cpu_s"]) / a.viewers / w * 100 for r in rows]
    rec_idle = [recording_cpu(r["idle"]) / w * 100 for r in rows]
    rec_load = [recording_cpu(r["load"]) / w * 100 for r in rows]
    rec_ratio = [b / a_ for a_, b in zip(rec_idle, rec_load)]
    mbit = [r["viewers"]["bytes"] * 8 / 1e6 / (w + 10) / a.viewers for r in rows]
    ttfb = [r["live"]["ttfb_s"] for r in rows]
    lat = sorted(x for r in rows for x in r["live"]["edge_latency_s"])
    print()
    print(f"## Playback benchmark: {a.viewers} HLS ON_DEMAND viewers and LIVE latency, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print()
    for h in a.header:
        print(f"- {h}")
    print(f"- {len(rows)} runs; per run the daemon records one live 1080p30 5 Mbit/s RTSP camera; CPU over {w:.0f} s windows; median (min–max); % of one core")
    print()
    print("| | daemon CPU % | recording threads CPU % |")
    print("|---|---|---|")
    print(f"| recording only | {med(idle_cpu)} | {med(rec_idle)} |")
    print(f"| + {a.viewers} viewers at real time | {med(load_cpu)} | {med(rec_load)} |")
    print()
    print(f"- per viewer: {med(per_viewer, '{:.3f}')} % of a core, each receiving {med(mbit)} Mbit/s")
    print(f"- recording threads with viewers / without: {med(rec_ratio)}x (target: 1.0 within noise)")
    grew = {}
    for r in rows:
        for k, v in r["load"]["thread_cpu_s"].items():
            grew[k] = grew.get(k, 0) + v - r["idle"]["thread_cpu_s"].get(k, 0)
    top = sorted(grew.items(), key=lambda kv: -kv[1])[:6]
    print("- CPU s added by the viewers, by thread name (sum over runs): "
          + ", ".join(f"{k} {v:+.2f}" for k, v in top))
    print(f"- LIVE session, time to first byte (session URL request to the first media byte): {med(ttfb, '{:.3f}')} s")
    p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))]
    print(f"- live edge latency (fragment stored to listed in the LIVE playlist, polled every 20 ms), {len(lat)} fragments: p50 {statistics.median(lat):.3f} s, p95 {p95:.3f} s, max {lat[-1]:.3f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["viewers", "live", "report"])
    ap.add_argument("dirs", nargs="*")
    ap.add_argument("--window", type=float, default=30)
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--endpoint")
    ap.add_argument("--stream")
    ap.add_argument("--viewers", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--out")
    a = ap.parse_intermixed_args()
    {"viewers": run_viewers, "live": run_live, "report": report}[a.mode](a)


if __name__ == "__main__":
    main()
