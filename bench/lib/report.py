#!/usr/bin/env python3
"""Turns the raw CSV of bench/recording.sh into the markdown report (medians over repeats).

    report.py RAW.csv HEADER.md > REPORT.md

HEADER.md (machine, parameters) is copied first. Failed runs are listed and left out of the
medians.
"""

import csv
import statistics
import sys

TOOLS = ["vidgest", "gst-launch", "ffmpeg", "retina-bare"]
# Issue 12's targets (the recording core's were 1.2x gst-launch, below ffmpeg, 40 + 5 MiB/camera).
FF_MAX_RATIO = 0.5  # vidgest at most 0.5x ffmpeg
BARE_MAX_RATIO = 1.2  # and at most 1.2x a bare retina client


def rss_target_mib(n):
    return 25 + 3 * n


def med(rows, key):
    vals = [float(r[key]) for r in rows]
    return statistics.median(vals) if vals else None


def fmt(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f}"


def main():
    raw, header = sys.argv[1], sys.argv[2]
    with open(raw) as f:
        rows = list(csv.DictReader(f))
    with open(header) as f:
        out = [f.read().rstrip("\n"), ""]

    good = [r for r in rows if r["ok"] == "1"]
    bad = [r for r in rows if r["ok"] != "1"]
    counts = sorted({int(r["streams"]) for r in rows})
    tools = [t for t in TOOLS if any(r["tool"] == t for r in rows)]

    def sel(n, tool):
        return [r for r in good if int(r["streams"]) == n and r["tool"] == tool]

    out += [
        "### Per tool (medians over repeats)",
        "",
        "| streams | tool | processes | CPU s / stream-min | range | CPU % of a core | peak RSS MiB (VmHWM) | max VmRSS MiB | received Mbit/s per stream | runs ok |",
        "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n in counts:
        for t in tools:
            rs = sel(n, t)
            total = len([r for r in rows if int(r["streams"]) == n and r["tool"] == t])
            if not rs:
                out.append(f"| {n} | {t} | | failed | | | | | | 0/{total} |")
                continue
            per = [float(r["cpu_s_per_stream_min"]) for r in rs]
            out.append(
                f"| {n} | {t} | {rs[0]['processes']} | {fmt(med(rs, 'cpu_s_per_stream_min'), 3)} "
                f"| {min(per):.3f}..{max(per):.3f} | {fmt(med(rs, 'cpu_pct'), 1)} "
                f"| {fmt(med(rs, 'hwm_mib'), 1)} | {fmt(med(rs, 'rss_max_mib'), 1)} "
                f"| {fmt(med(rs, 'rx_mbit_per_stream'), 2)} | {len(rs)}/{total} |"
            )

    out += [
        "",
        "### Against the targets",
        "",
        f"Targets (issue 12): vidgest CPU at most {FF_MAX_RATIO}x ffmpeg and at most {BARE_MAX_RATIO}x "
        "retina-bare; vidgest peak RSS under 25 MiB + 3 MiB per camera. vidgest / gst-launch is for "
        "information. Ratios are of the medians.",
        "",
        "| streams | vidgest / gst-launch | vidgest / ffmpeg | vidgest / retina-bare | vidgest peak RSS MiB | RSS target MiB | CPU vs ffmpeg | CPU vs retina-bare | RSS |",
        "|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    all_met = True
    for n in counts:
        v = med(sel(n, "vidgest"), "cpu_s_per_stream_min")
        g = med(sel(n, "gst-launch"), "cpu_s_per_stream_min")
        f_ = med(sel(n, "ffmpeg"), "cpu_s_per_stream_min")
        b = med(sel(n, "retina-bare"), "cpu_s_per_stream_min")
        rss = med(sel(n, "vidgest"), "hwm_mib")
        rg = v / g if v is not None and g else None
        rf = v / f_ if v is not None and f_ else None
        rb = v / b if v is not None and b else None
        target = rss_target_mib(n)

        def verdict(ok):
            nonlocal all_met
            if ok is None:
                all_met = False
                return "n/a"
            all_met &= ok
            return "met" if ok else "**missed**"

        out.append(
            f"| {n} | {fmt(rg)} | {fmt(rf)} | {fmt(rb)} | {fmt(rss, 1)} | {target} "
            f"| {verdict(None if rf is None else rf <= FF_MAX_RATIO)} "
            f"| {verdict(None if rb is None else rb <= BARE_MAX_RATIO)} "
            f"| {verdict(None if rss is None else rss < target)} |"
        )
    out += ["", f"All targets met: **{'yes' if all_met and not bad else 'no'}**"]

    if bad:
        out += ["", "### Failed runs (left out of the medians)", ""]
        for r in bad:
            out.append(f"- {r['streams']} x {r['tool']}, repeat {r['repeat']}: {r['reason']}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
