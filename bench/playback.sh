#!/usr/bin/env bash
# Playback benchmark: exporting one hour of stored 1080p30 5 Mbit/s video as one MP4.
#   vidgest: GET /api/v1/cameras/<cam>/clip.mp4?start=&end= (curl -o, the daemon streams the
#            stored fragments out of its segment files)
#   baseline: ffmpeg -f concat -safe 0 -i list.txt -c copy out.mp4 over the same hour stored the
#            way ffmpeg-based recorders store it (2 s MP4 segments written by ffmpeg's segment
#            muxer), in the same run, alternating order.
# Reports wall time, CPU (daemon + curl vs ffmpeg), the daemon's RSS growth while serving (peak
# VmRSS during the export minus VmRSS before it) and ffmpeg's peak RSS, medians and ranges.
#
# Usage: bench/playback.sh
#   HOURS=1         video to export (seeded once into target/bench-cache/playback-<h>h/)
#   REPEATS=3       exports per tool
#   BITRATE=5M      source bitrate
#   SKIP_BUILD=1    use the existing target/release binaries
#   QUIET_WAIT=600  wait up to this many seconds for running rustc processes to finish first
# Output: target/bench-results/playback-<date>.md
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
HOURS=${HOURS:-1}
REPEATS=${REPEATS:-3}
BITRATE=${BITRATE:-5M}
QUIET_WAIT=${QUIET_WAIT:-600}
CACHE=$ROOT/target/bench-cache
RESULTS=$ROOT/target/bench-results
WORK=$ROOT/target/bench-work/playback
VIDGEST=$ROOT/target/release/vidgest
SEED=$ROOT/target/release/examples/seed_store
PY=$ROOT/vendor/venv/bin/python
STAMP=$(date +%Y%m%d-%H%M%S)
REPORT=$RESULTS/playback-$STAMP.md

# shellcheck source=bench/lib/common.sh
source "$ROOT/bench/lib/common.sh"

for tool in ffmpeg ffprobe curl; do
    command -v "$tool" >/dev/null || die "$tool not found (run scripts/bootstrap)"
done
[[ $HOURS =~ ^[0-9]+$ && $HOURS -gt 0 ]] || die "HOURS must be a positive integer"
[[ $REPEATS =~ ^[0-9]+$ && $REPEATS -gt 0 ]] || die "REPEATS must be a positive integer"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building vidgest and seed_store (release)"
    "${CARGO:-cargo}" build --release --quiet --bin vidgest --example seed_store
fi
mkdir -p "$CACHE" "$RESULTS"
rm -rf "$WORK"
mkdir -p "$WORK"

bench_source 120
SECONDS_STORED=$((HOURS * 3600))

# --- the hour, stored by vidgest (its real recording path, see examples/seed_store.rs) and by
# ffmpeg's segment muxer; both cached (a few GB) and reused while the source is unchanged.
DATA=$CACHE/playback-${HOURS}h
CONFIG=$DATA/vidgest.toml
stamp="$(basename "$SRC") $(stat -c %s "$SRC") $SECONDS_STORED"
if [[ ! -f $DATA/vidgest.ready || $(cat "$DATA/vidgest.ready") != "$stamp" ]]; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
    cat >"$CONFIG" <<TOML
[agent]
data_dir = "$DATA/vidgest"
[api]
listen = "127.0.0.1:0"
[storage]
fsync = "never"
[[camera]]
name = "cam"
enabled = false
fragment_duration = "2s"
retention = "$((HOURS * 2 + 24))h"
[camera.source]
kind = "rtsp"
url = "rtsp://127.0.0.1:9/unused"
TOML
    log "seeding $HOURS h of video into $DATA (once)"
    "$SEED" --config "$CONFIG" --camera cam --source "$SRC" --duration-s "$SECONDS_STORED" >&2
    echo "$stamp" >"$DATA/vidgest.ready"
fi
# Each segment starts at time 0 (-reset_timestamps 1), as the concat demuxer expects of its files.
if [[ ! -f $DATA/ffmpeg.ready || $(cat "$DATA/ffmpeg.ready") != "$stamp reset" ]]; then
    log "writing the same $HOURS h as ffmpeg 2 s MP4 segments (once)"
    rm -rf "$DATA/ffmpeg"
    mkdir -p "$DATA/ffmpeg"
    loops=$(((SECONDS_STORED + 119) / 120))
    ffmpeg -nostdin -hide_banner -loglevel error -stream_loop "$((loops - 1))" -i "$SRC" \
        -t "$SECONDS_STORED" -c copy -f segment -segment_time 2 -segment_format mp4 \
        -reset_timestamps 1 "$DATA/ffmpeg/seg%06d.mp4"
    for f in "$DATA"/ffmpeg/seg*.mp4; do echo "file '$f'"; done >"$DATA/ffmpeg/list.txt"
    echo "$stamp reset" >"$DATA/ffmpeg.ready"
fi

wait_for_quiet 10
PORT=$(free_port)
sed "s/^listen = .*/listen = \"127.0.0.1:$PORT\"/" "$CONFIG" >"$WORK/vidgest.toml"
"$VIDGEST" run --config "$WORK/vidgest.toml" >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
trap 'kill -TERM $DAEMON 2>/dev/null || true; wait $DAEMON 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_port "$PORT" "$DAEMON" || die "the daemon did not start (see $WORK/daemon.log)"

"$PY" "$ROOT/bench/py/playback_clip.py" --port "$PORT" --daemon-pid "$DAEMON" --camera cam \
    --concat "$DATA/ffmpeg/list.txt" --hours "$HOURS" --repeats "$REPEATS" --work "$WORK" \
    --header "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $QUIET_NOTE; load $(cut -d' ' -f1-3 /proc/loadavg)" \
    --header "vidgest $(git rev-parse --short HEAD), $(ffmpeg -version | head -1 | cut -d' ' -f1-3); source $(basename "$SRC") looped to $HOURS h; warm page cache" \
    >"$REPORT"
cat "$REPORT"
log "report: $REPORT"
