#!/usr/bin/env bash
# Playback benchmark. Clips: one hour of stored 1080p30 5 Mbit/s video as one MP4, and GetClip
# just under its 100 MB limit (80 fragments, 160 s).
#   vidgest: GET /api/v1/cameras/<cam>/clip.mp4?start=&end= and POST /getClip (curl -o; the
#            daemon streams the stored fragments out of its segment files)
#   baseline: ffmpeg -f concat -safe 0 -i list.txt -c copy out.mp4 over the same hour stored the
#            way ffmpeg-based recorders store it (2 s MP4 segments written by ffmpeg's segment
#            muxer), in the same run, alternating order.
# Reports wall time, CPU (daemon + curl vs ffmpeg), the daemon's RSS growth while serving (peak
# VmRSS during the export minus VmRSS before it) and ffmpeg's peak RSS, medians and ranges.
#
# Usage: bench/playback.sh
#   HOURS=1         video to export (seeded once into target/bench-cache/playback-<h>h/)
#   REPEATS=3       exports per tool, and HLS runs
#   MODES="clip hls"  which parts to run
#   VIEWERS=20 WINDOW=30 WARMUP=8   HLS: concurrent ON_DEMAND viewers, measurement window (s),
#                   recording warm-up before it (s)
#   BITRATE=5M      source bitrate
#   SKIP_BUILD=1    use the existing target/release binaries
#   QUIET_WAIT=600  wait up to this many seconds for running rustc processes to finish first
# Output: target/bench-results/playback-<date>.md
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
HOURS=${HOURS:-1}
REPEATS=${REPEATS:-3}
MODES=${MODES:-"clip hls"}
VIEWERS=${VIEWERS:-20}
WINDOW=${WINDOW:-30}
WARMUP=${WARMUP:-8}
BITRATE=${BITRATE:-5M}
QUIET_WAIT=${QUIET_WAIT:-600}
CACHE=$ROOT/target/bench-cache
RESULTS=$ROOT/target/bench-results
WORK=$ROOT/target/bench-work/playback
VIDGEST=$ROOT/target/release/vidgest
SEED=$ROOT/target/release/examples/seed_store
CAMERA=$ROOT/target/release/examples/test_camera
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
    "${CARGO:-cargo}" build --release --quiet --bin vidgest --example seed_store --example test_camera
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
retention = "8760h"
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
HEADER_MACHINE="machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $QUIET_NOTE; load $(cut -d' ' -f1-3 /proc/loadavg)"
HEADER_BUILD="vidgest $(git rev-parse --short HEAD), $(ffmpeg -version | head -1 | cut -d' ' -f1-3); source $(basename "$SRC") looped to $HOURS h; warm page cache"
STARTED=()
trap 'for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait; rm -rf "$WORK"' EXIT

# Starts the daemon on $1 (a config with `listen` replaced); sets PORT and DAEMON.
start_daemon() {
    PORT=$(free_port)
    sed "s/^listen = .*/listen = \"127.0.0.1:$PORT\"/" "$1" >"$WORK/vidgest.toml"
    "$VIDGEST" run --config "$WORK/vidgest.toml" >"$WORK/daemon.log" 2>&1 &
    DAEMON=$!
    STARTED+=("$DAEMON")
    wait_port "$PORT" "$DAEMON" || die "the daemon did not start: $(tail -5 "$WORK/daemon.log")"
}
stop_daemon() {
    kill -TERM "$DAEMON" 2>/dev/null || true
    wait "$DAEMON" 2>/dev/null || true
}

: >"$REPORT"
if [[ " $MODES " == *" clip "* ]]; then
    start_daemon "$CONFIG"
    "$PY" "$ROOT/bench/py/playback_clip.py" --port "$PORT" --daemon-pid "$DAEMON" --camera cam \
        --concat "$DATA/ffmpeg/list.txt" --hours "$HOURS" --repeats "$REPEATS" --work "$WORK" \
        --header "$HEADER_MACHINE" --header "$HEADER_BUILD" >>"$REPORT"
    stop_daemon
fi

# --- HLS: the same daemon also records a live 1080p camera (examples/test_camera serving the
# source over RTSP). Per repeat: the daemon's CPU over WINDOW s with no viewer, then with VIEWERS
# ON_DEMAND viewers of the stored hour playing at real time; recording's share is the CPU of every
# thread but the HTTP runtime's (`api`: handlers and their blocking reads). Then a
# LIVE session of the live camera: time to first byte and the live edge latency.
if [[ " $MODES " == *" hls "* ]]; then
    for ((rep = 1; rep <= REPEATS; rep++)); do
        dir=$WORK/hls-$rep
        mkdir -p "$dir"
        mkfifo "$dir/cam.in"
        "$CAMERA" --mounts 1 --file "$SRC" <"$dir/cam.in" >"$dir/cam.out" 2>"$dir/cam.err" &
        CAM_PID=$!
        STARTED+=("$CAM_PID")
        exec {CAM_FD}>"$dir/cam.in"
        URL=
        for ((i = 0; i < 100; i++)); do
            URL=$(sed -n 's/^READY //p' "$dir/cam.out" 2>/dev/null || true)
            [[ -n $URL ]] && break
            sleep 0.1
        done
        [[ -n $URL ]] || die "test camera did not start: $(cat "$dir/cam.err")"
        CAM_PORT=${URL##*:}
        {
            cat "$CONFIG"
            printf '[[camera]]\nname = "live"\nfragment_duration = "2s"\nretention = "1h"\n'
            printf '[camera.source]\nkind = "rtsp"\nurl = "%s/cam0"\ntransport = "tcp"\n' "$URL"
        } >"$dir/vidgest.toml"
        start_daemon "$dir/vidgest.toml"
        # Recording settles (first fragments stored) before the first window.
        sleep "$WARMUP"
        "$PY" "$ROOT/bench/lib/measure.py" --duration "$WINDOW" --port "$CAM_PORT" "$DAEMON" >"$dir/idle.json"
        "$PY" "$ROOT/bench/py/hls_viewers.py" viewers --endpoint "http://127.0.0.1:$PORT" --stream cam \
            --viewers "$VIEWERS" --seconds "$((WINDOW + 10))" --out "$dir/viewers.json" &
        VIEWERS_PID=$!
        sleep 5 # sessions opened, every viewer in its steady state
        "$PY" "$ROOT/bench/lib/measure.py" --duration "$WINDOW" --port "$CAM_PORT" "$DAEMON" >"$dir/load.json"
        wait "$VIEWERS_PID" || die "the HLS viewers failed"
        "$PY" "$ROOT/bench/py/hls_viewers.py" live --endpoint "http://127.0.0.1:$PORT" --stream live \
            --seconds 20 --out "$dir/live.json" || die "the LIVE session failed"
        stop_daemon
        exec {CAM_FD}>&-
        kill -TERM "$CAM_PID" 2>/dev/null || true
        wait "$CAM_PID" 2>/dev/null || true
    done
    "$PY" "$ROOT/bench/py/hls_viewers.py" report --viewers "$VIEWERS" --window "$WINDOW" \
        --header "$HEADER_MACHINE" --header "$HEADER_BUILD" "$WORK"/hls-* >>"$REPORT"
fi
cat "$REPORT"
log "report: $REPORT"
