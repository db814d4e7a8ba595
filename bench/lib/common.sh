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
