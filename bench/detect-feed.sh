#!/usr/bin/env bash
# Detection decode feed benchmark (issue 12, item 2): CPU of `DetectFeed` (appsrc ! avdec_h264 !
# videorate ! videoscale ! videoconvert ! 416x416 RGB appsink) decoding key frames only
# (`detect.keyframes_only = true`) against every frame, on the 1080p30 H.264 bench source
# (bench_source: High, no B-frames, 5 Mbit/s) re-encoded with each GOP length in GOPS.
# Target: key-frame-only decode at most 10 % of full decode.
#
# Usage: bench/detect-feed.sh
#   GOPS="30 60 120"  GOP lengths in frames (30 = 1 s); 30 is bench_source itself
#   SECONDS_PER_RUN=20  seconds of video pushed per run (in real time)
#   REPEATS=3     runs per (GOP, mode); modes alternate so both see the same load
#   DETECT_FPS=2  detect fps (frames handed on after the decoder)
#   BITRATE=5M    source bitrate
#   QUIET_WAIT=300  wait up to this many seconds for rustc to finish
#   SKIP_BUILD=1  use the existing examples/detect_feed binary
#   IDLE_GOP=120  also run the feed with nothing pushed (same pacing loop) on this GOP's file,
#                 REPEATS times: the fixed cost, reported and subtracted in the "net" column
#   PROFILE=debug cargo profile of the example (debug: the decode work is all in libav/GStreamer)
#
# Each run is `examples/detect_feed`: it demuxes the file into memory, then pushes its access
# units at their timestamps and reports the process's user+system CPU from the first push until
# the feed drained. Output: target/bench-results/detect-feed-<date>.md (+ .csv raw runs).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
GOPS=${GOPS:-"30 60 120"}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
REPEATS=${REPEATS:-3}
DETECT_FPS=${DETECT_FPS:-2}
BITRATE=${BITRATE:-5M}
QUIET_WAIT=${QUIET_WAIT:-300}
PROFILE=${PROFILE:-debug}
IDLE_GOP=${IDLE_GOP:-120}
CACHE=${CACHE:-$ROOT/target/bench-cache}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RESULTS=$ROOT/target/bench-results
STAMP=$(date +%Y%m%d-%H%M%S)
RAW=$RESULTS/detect-feed-$STAMP.csv
REPORT=$RESULTS/detect-feed-$STAMP.md

# shellcheck source=bench/lib/common.sh
source "$ROOT/bench/lib/common.sh"

for v in SECONDS_PER_RUN REPEATS QUIET_WAIT; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer"
done
command -v ffmpeg >/dev/null || die "ffmpeg not found"
command -v python3 >/dev/null || die "python3 not found"

profile_flag=()
[[ $PROFILE == release ]] && profile_flag=(--release)
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building examples/detect_feed ($PROFILE)"
    nice -n 10 "${CARGO:-cargo}" build --quiet "${profile_flag[@]}" --example detect_feed
fi
BIN=$TARGET/$PROFILE/examples/detect_feed
[[ -x $BIN ]] || die "missing $BIN"

# Sets SRC to the bench source with a key frame every $1 frames (same encoder settings).
gop_source() {
    local gop=$1 need_s=$2 f s
    if ((gop == 30)); then bench_source "$need_s"; return; fi
    for f in "$CACHE"/1080p30-h264-"$BITRATE"-gop"$gop"-*s.mp4; do
        [[ -f $f ]] || continue
        s=${f##*-}; s=${s%s.mp4}
        if [[ $s =~ ^[0-9]+$ ]] && ((s >= need_s)); then SRC=$f; return; fi
    done
    mkdir -p "$CACHE"
    SRC=$CACHE/1080p30-h264-$BITRATE-gop$gop-${need_s}s.mp4
    log "encoding ${need_s}s of 1080p30 H.264 at $BITRATE, GOP $gop, into $SRC (once)"
    ffmpeg -nostdin -hide_banner -loglevel error -y \
        -f lavfi -i "testsrc2=size=1920x1080:rate=30" -t "$need_s" \
        -c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p \
        -g "$gop" -keyint_min "$gop" -sc_threshold 0 -bf 0 \
        -b:v "$BITRATE" -maxrate "$BITRATE" -bufsize "$BITRATE" \
        -movflags +faststart "$SRC.tmp.mp4"
    mv "$SRC.tmp.mp4" "$SRC"
}

declare -A SOURCES
for gop in $GOPS; do
    gop_source "$gop" "$SECONDS_PER_RUN"
    SOURCES[$gop]=$SRC
done

wait_for_quiet 10
mkdir -p "$RESULTS"
echo "gop,mode,run,video_s,cpu_s,frames,dropped" >"$RAW"
for gop in $GOPS; do
    for run in $(seq 1 "$REPEATS"); do
        # Alternate the order so neither mode always runs first.
        modes="full key"; ((run % 2 == 0)) && modes="key full"
        [[ $gop == "$IDLE_GOP" ]] && modes="$modes idle"
        for mode in $modes; do
            line=$("$BIN" --mode "$mode" --fps "$DETECT_FPS" --seconds "$SECONDS_PER_RUN" "${SOURCES[$gop]}")
            log "GOP $gop run $run: $line"
            # mode=key gop=30 video_s=20.0 cpu_s=0.412 frames=40 dropped=0
            eval "$(tr ' ' '\n' <<<"$line" | sed -n 's/^\(video_s\|cpu_s\|frames\|dropped\)=/R_\1=/p')"
            echo "$gop,$mode,$run,$R_video_s,$R_cpu_s,$R_frames,$R_dropped" >>"$RAW"
        done
    done
done

python3 - "$RAW" "$DETECT_FPS" "$QUIET_NOTE" "$PROFILE" >"$REPORT" <<'EOF'
import csv, statistics, sys
raw, fps, quiet, profile = sys.argv[1:5]
rows = list(csv.DictReader(open(raw)))
print(f"1080p30 H.264 5 Mbit/s, detect fps {fps}, 416x416 RGB out; {quiet}; example built {profile}.\n")
idle = [100 * float(r["cpu_s"]) / float(r["video_s"]) for r in rows if r["mode"] == "idle"]
base = statistics.median(idle) if idle else 0.0
if idle:
    print(f"Fixed cost (the feed and the pacing loop, nothing pushed): {base:.2f} % of a core "
          f"({min(idle):.2f}..{max(idle):.2f}), subtracted from both modes in the net column.\n")
print("| GOP | full decode, CPU % of a core | key frames only, CPU % | key/full, median (range) | key/full net of the fixed cost | frames out full / key | dropped |")
print("|---|---|---|---|---|---|---|")
for gop in dict.fromkeys(r["gop"] for r in rows):
    def pct(mode):
        return [100 * float(r["cpu_s"]) / float(r["video_s"]) for r in rows if r["gop"] == gop and r["mode"] == mode]
    def frames(mode):
        return statistics.median(int(r["frames"]) for r in rows if r["gop"] == gop and r["mode"] == mode)
    full, key = pct("full"), pct("key")
    ratios = [100 * k / f for k, f in zip(key, full)]
    dropped = sum(int(r["dropped"]) for r in rows if r["gop"] == gop and r["mode"] != "idle")
    fmt = lambda v: f"{statistics.median(v):.1f} ({min(v):.1f}..{max(v):.1f})"
    secs = int(gop) / 30
    net = [100 * (k - base) / (f - base) for k, f in zip(key, full)]
    print(f"| {gop} ({secs:g} s) | {fmt(full)} | {fmt(key)} | {fmt(ratios)} % | {fmt(net)} % | {frames('full'):g} / {frames('key'):g} | {dropped} |")
EOF
cat "$REPORT"
log "report: $REPORT (raw: $RAW)"
