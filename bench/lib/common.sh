# Shared by the bench scripts (source it): logging, process checks, waiting for a quiet machine.
# shellcheck shell=bash

log() { echo "[bench] $*" >&2; }
die() { log "error: $*"; exit 2; }

# True while pid exists and is not a zombie (our children stay zombies until waited for).
running() {
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $st && ${st:0:1} != Z ]]
}

# Waits up to $QUIET_WAIT seconds, polling every $1 s, while rustc runs or (optional $2, a
# `pgrep -f` pattern) another benchmark does: builds make the numbers noisy, not wrong.
# Sets QUIET_NOTE for the report.
wait_for_quiet() {
    local poll=$1 other=${2:-} waited=0 what=rustc
    [[ -n $other ]] && what="$other or rustc"
    quiet_busy() { pgrep -x rustc >/dev/null || { [[ -n $other ]] && pgrep -f "$other" >/dev/null; }; }
    while quiet_busy && ((waited < QUIET_WAIT)); do
        ((waited == 0)) && log "$what is running; waiting up to ${QUIET_WAIT}s (polling every ${poll} s)"
        sleep "$poll"; waited=$((waited + poll))
    done
    QUIET_NOTE="machine quiet at start (waited ${waited} s)"
    if quiet_busy; then
        QUIET_NOTE="NOT quiet: $what still running after ${QUIET_WAIT} s; numbers are noisy"
        log "warning: $QUIET_NOTE"
    fi
}

# A free TCP port on 127.0.0.1 (uses $PY, the venv's python).
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits until 127.0.0.1:port accepts connections while pid lives (60 s at most).
wait_port() {
    local port=$1 pid=$2 i
    for i in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || return 1
        "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Sets SRC to a cached 1080p30 H.264 file (High, no B-frames, GOP 30 = 1 s, ~$BITRATE CBR-like, as
# a camera sends it) of at least $1 seconds, encoding it once into $CACHE when none is there.
bench_source() {
    local need_s=$1 f s
    SRC=
    for f in "$CACHE"/1080p30-h264-"$BITRATE"-*s.mp4; do
        [[ -f $f ]] || continue
        s=${f##*-}; s=${s%s.mp4}
        if [[ $s =~ ^[0-9]+$ ]] && ((s >= need_s)); then SRC=$f; return; fi
    done
    mkdir -p "$CACHE"
    SRC=$CACHE/1080p30-h264-$BITRATE-${need_s}s.mp4
    log "encoding ${need_s}s of 1080p30 H.264 at $BITRATE into $SRC (once)"
    ffmpeg -nostdin -hide_banner -loglevel error -y \
        -f lavfi -i "testsrc2=size=1920x1080:rate=30" -t "$need_s" \
        -c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p \
        -g 30 -keyint_min 30 -sc_threshold 0 -bf 0 \
        -b:v "$BITRATE" -maxrate "$BITRATE" -bufsize "$BITRATE" \
        -movflags +faststart "$SRC.tmp.mp4"
    mv "$SRC.tmp.mp4" "$SRC"
}
