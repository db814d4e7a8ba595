#!/usr/bin/env bash
# Low-latency live feed benchmark (GET /api/v1/cameras/<cam>/live.mp4, docs/http-api.md#live-feed).
# The daemon records a live 1080p30 camera (examples/test_camera serving the bench source over
# RTSP); then:
#   - daemon CPU over WINDOW s with no viewer (bench/lib/measure.py);
#   - 1 live viewer for WINDOW s: latency per chunk, client side (receive time minus the chunk's
#     tfdt, which is wall-clock time) and server side (access unit's arrival in the recorder to
#     its chunk handed to the connection, from /api/v1/health);
#   - VIEWERS (10) concurrent live viewers for WINDOW s, the daemon's CPU measured meanwhile;
#   - in the same run, an HLS LIVE session (bench/py/hls_viewers.py live): a frame reaches an HLS
#     player no earlier than its fragment is stored (up to fragment_duration = 2 s after it
#     arrived) plus the edge latency measured there.
#
# Usage: bench/live.sh
#   WINDOW=30 WARMUP=8   measurement window and recording warm-up (s)
#   REPEATS=3            measurement rounds in one daemon run (medians and ranges reported)
#   VIEWERS=10           concurrent live viewers ("10 browsers' worth" per camera)
#   BITRATE=5M           source bitrate
#   SKIP_BUILD=1         use the existing release binaries (in $CARGO_TARGET_DIR or target/)
#   QUIET_WAIT=600       wait up to this many seconds for running rustc processes to finish first
# Each round repeats all of it (REPEATS rounds in one daemon run).
# Output: target/bench-results/live-<date>.md
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
WINDOW=${WINDOW:-30}
REPEATS=${REPEATS:-3}
VIEWERS=${VIEWERS:-10}
WARMUP=${WARMUP:-8}
BITRATE=${BITRATE:-5M}
QUIET_WAIT=${QUIET_WAIT:-600}
CACHE=${CACHE:-$ROOT/target/bench-cache}
RESULTS=$ROOT/target/bench-results
WORK=$ROOT/target/bench-work/live
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
VIDGEST=$BIN/vidgest
CAMERA=$BIN/examples/test_camera
PY=$ROOT/vendor/venv/bin/python
STAMP=$(date +%Y%m%d-%H%M%S)
REPORT=$RESULTS/live-$STAMP.md

# shellcheck source=bench/lib/common.sh
source "$ROOT/bench/lib/common.sh"

for tool in ffmpeg curl; do
    command -v "$tool" >/dev/null || die "$tool not found (run scripts/bootstrap)"
done
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building vidgest and test_camera (release)"
    "${CARGO:-cargo}" build --release --quiet --bin vidgest --example test_camera
fi
mkdir -p "$CACHE" "$RESULTS"
rm -rf "$WORK"
mkdir -p "$WORK"
bench_source 120

STARTED=()
cleanup() {
    local p
    for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

wait_for_quiet 5
HEADER_MACHINE="machine: $(nproc) cores; $QUIET_NOTE; load $(cut -d' ' -f1-3 /proc/loadavg)"
HEADER_BUILD="vidgest $(git rev-parse --short HEAD); source $(basename "$SRC") over RTSP (test_camera), loopback"

mkfifo "$WORK/cam.in"
"$CAMERA" --mounts 1 --file "$SRC" <"$WORK/cam.in" >"$WORK/cam.out" 2>"$WORK/cam.err" &
CAM_PID=$!
STARTED+=("$CAM_PID")
exec {CAM_FD}>"$WORK/cam.in"
URL=
for ((i = 0; i < 100; i++)); do
    URL=$(sed -n 's/^READY //p' "$WORK/cam.out" 2>/dev/null || true)
    [[ -n $URL ]] && break
    sleep 0.1
done
[[ -n $URL ]] || die "test camera did not start: $(cat "$WORK/cam.err")"
CAM_PORT=${URL##*:}

PORT=$(free_port)
cat >"$WORK/vidgest.toml" <<TOML
[agent]
data_dir = "$WORK/data"
[api]
listen = "127.0.0.1:$PORT"
[storage]
fsync = "never"
[[camera]]
name = "live"
fragment_duration = "2s"
retention = "1h"
[camera.source]
kind = "rtsp"
url = "$URL/cam0"
transport = "tcp"
TOML
"$VIDGEST" run --config "$WORK/vidgest.toml" >"$WORK/daemon.log" 2>&1 &
DAEMON=$!
STARTED+=("$DAEMON")
wait_port "$PORT" "$DAEMON" || die "the daemon did not start: $(tail -5 "$WORK/daemon.log")"
LIVE=http://127.0.0.1:$PORT/api/v1/cameras/live/live.mp4
# Recording settles (streaming, first fragments stored) before the first window.
sleep "$WARMUP"

RUNS=()
for ((r = 1; r <= REPEATS; r++)); do
    RUN=$WORK/run-$r
    mkdir -p "$RUN"
    RUNS+=("$RUN")
    log "run $r/$REPEATS: recording alone, CPU over $WINDOW s"
    "$PY" "$ROOT/bench/lib/measure.py" --duration "$WINDOW" --port "$CAM_PORT" "$DAEMON" >"$RUN/idle.json"
    log "run $r/$REPEATS: 1 live viewer for $WINDOW s"
    "$PY" "$ROOT/bench/py/live_viewers.py" run --url "$LIVE" --viewers 1 --seconds "$WINDOW" \
        --out "$RUN/lat-1.json"
    log "run $r/$REPEATS: $VIEWERS live viewers for $WINDOW s, CPU measured meanwhile"
    "$PY" "$ROOT/bench/py/live_viewers.py" run --url "$LIVE" --viewers "$VIEWERS" \
        --seconds "$((WINDOW + 5))" --out "$RUN/lat-n.json" &
    VIEWERS_PID=$!
    sleep 3 # every viewer connected and past its first key frame
    "$PY" "$ROOT/bench/lib/measure.py" --duration "$WINDOW" --port "$CAM_PORT" "$DAEMON" >"$RUN/load.json"
    wait "$VIEWERS_PID" || die "the live viewers failed"
    log "run $r/$REPEATS: HLS LIVE session for comparison (20 s)"
    "$PY" "$ROOT/bench/py/hls_viewers.py" live --endpoint "http://127.0.0.1:$PORT" --stream live \
        --seconds 20 --out "$RUN/hls.json" || die "the HLS LIVE session failed"
done

kill -TERM "$DAEMON" 2>/dev/null || true
wait "$DAEMON" 2>/dev/null || true
exec {CAM_FD}>&-

"$PY" "$ROOT/bench/py/live_viewers.py" report --window "$WINDOW" --viewers "$VIEWERS" \
    --header "$HEADER_MACHINE" --header "$HEADER_BUILD" "${RUNS[@]}" >"$REPORT"
cat "$REPORT"
log "report: $REPORT"
