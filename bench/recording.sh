#!/usr/bin/env bash
# Recording benchmark: CPU and memory of `vidgest run` recording N loopback RTSP streams of
# pre-encoded 1080p30 H.264, against three baselines on the same streams in the same run:
#   gst-launch-1.0 rtspsrc location=URL protocols=tcp ! rtph264depay ! h264parse ! fakesink
#     (ONE process with N such branches, as vidgest is one process for N cameras)
#   ffmpeg -rtsp_transport tcp -i URL -c copy -f segment ... (2 s MP4 segments on disk)
#     (N processes: one ffmpeg per camera is how ffmpeg recorders are run; sums are reported)
#   retina-bare: examples/retina_recv URL... (ONE process, one tokio thread: retina receives and
#     demuxes frames and counts them, nothing else; the floor of a retina-based recorder)
#
# Usage: bench/recording.sh            (or `make bench`)
#   DURATION=30   measurement window per run, seconds
#   WARMUP=5      seconds between starting a tool and the start of the window
#   REPEATS=3     runs per (streams, tool); the report gives medians
#   COUNTS="1 4 8 16"  TOOLS="vidgest gst-launch ffmpeg retina-bare"
#   VIDGEST_BACKEND=   `[camera.source] backend` for vidgest (empty: the daemon's default)
#   BITRATE=5M    bitrate of the generated source (cached in target/bench-cache/)
#   QUIET_WAIT=600  wait up to this many seconds for running rustc processes to finish first
#   SKIP_BUILD=1  use the existing target/release binaries
#
# Each run starts its own test camera (examples/test_camera --mounts N --file SRC: the MP4 is
# served without re-encoding, from its start, in real time), starts the tool, waits WARMUP,
# measures utime+stime (/proc/<pid>/stat, all threads, plus child processes) over DURATION,
# VmHWM/VmRSS and the bytes the tool received from the camera (ss), then stops everything.
# A run fails (and the script exits 1 at the end) when a tool dies, receives less than 80% of
# the stream's bitrate, or (vidgest) indexes fewer than half the expected fragments of any
# camera in the window, or (ffmpeg) writes no segment for a camera.
# Output: target/bench-results/recording-<date>.{md,csv} (+ -threads.txt: CPU s by thread name).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-5}
REPEATS=${REPEATS:-3}
COUNTS=${COUNTS:-"1 4 8 16"}
TOOLS=${TOOLS:-"vidgest gst-launch ffmpeg retina-bare"}
VIDGEST_BACKEND=${VIDGEST_BACKEND:-}
BITRATE=${BITRATE:-5M}
QUIET_WAIT=${QUIET_WAIT:-600}
FRAGMENT_S=2
CACHE=$ROOT/target/bench-cache
RESULTS=$ROOT/target/bench-results
WORK=$ROOT/target/bench-work/recording
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VIDGEST=$TARGET/release/vidgest
CAMERA=$TARGET/release/examples/test_camera
RETINA=$TARGET/release/examples/retina_recv
STAMP=$(date +%Y%m%d-%H%M%S)
RAW=$RESULTS/recording-$STAMP.csv
REPORT=$RESULTS/recording-$STAMP.md
THREADS=$RESULTS/recording-$STAMP-threads.txt

# shellcheck source=bench/lib/common.sh
source "$ROOT/bench/lib/common.sh"

for tool in ffmpeg ffprobe gst-launch-1.0 python3 ss; do
    command -v "$tool" >/dev/null || die "$tool not found (run scripts/bootstrap)"
done
for v in DURATION WARMUP REPEATS; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer"
done

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building vidgest, test_camera and retina_recv (release)"
    "${CARGO:-cargo}" build --release --quiet --bin vidgest --example test_camera --example retina_recv
fi
[[ -x $VIDGEST && -x $CAMERA && -x $RETINA ]] || die "missing $VIDGEST, $CAMERA or $RETINA"
mkdir -p "$CACHE" "$RESULTS" "$WORK/bin"
# Snapshot the binaries: a cargo build elsewhere must not swap them between runs.
cp "$VIDGEST" "$CAMERA" "$RETINA" "$WORK/bin/"
BUILT=$(date -r "$VIDGEST" '+%Y-%m-%d %H:%M')
VIDGEST=$WORK/bin/vidgest
CAMERA=$WORK/bin/test_camera
RETINA=$WORK/bin/retina_recv

# --- source: 1080p30 H.264 (see bench_source). The file plays once per run, so it must outlast
# warm-up + window + start/stop.
need_s=$((WARMUP + DURATION + 30))
((need_s < 120)) && need_s=120
bench_source "$need_s"
SRC_BPS=$(ffprobe -v error -show_entries format=bit_rate -of default=nw=1:nk=1 "$SRC")
[[ $SRC_BPS =~ ^[0-9]+$ ]] || die "cannot read the bitrate of $SRC"

# --- wait for a quieter machine (other builds make the numbers noisy, not wrong).
wait_for_quiet 10

# --- process bookkeeping: everything started here is stopped on exit.
STARTED=()
CAM_FD=
cleanup() {
    local p
    for p in "${STARTED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    [[ -n $CAM_FD ]] && exec {CAM_FD}>&- || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Sends SIGTERM to the given pids, SIGKILL after 15 s; sets STOP_RC to the first pid's status.
stop_pids() {
    local p deadline=$((SECONDS + 15)) first=1
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "$@"; do
        while running "$p" && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        local rc=0
        wait "$p" 2>/dev/null || rc=$?
        ((first)) && STOP_RC=$rc
        first=0
    done
    local keep=()
    for p in "${STARTED[@]}"; do
        [[ " $* " == *" $p "* ]] || keep+=("$p")
    done
    STARTED=("${keep[@]}")
}

# Starts the test camera with N mounts; sets CAM_PID, CAM_FD (its stdin) and URL.
start_camera() {
    local n=$1 dir=$2 i
    mkfifo "$dir/cam.in"
    : >"$dir/cam.out"
    "$CAMERA" --mounts "$n" --file "$SRC" <"$dir/cam.in" >"$dir/cam.out" 2>"$dir/cam.err" &
    CAM_PID=$!
    STARTED+=("$CAM_PID")
    exec {CAM_FD}>"$dir/cam.in"
    URL=
    for ((i = 0; i < 100; i++)); do
        URL=$(sed -n 's/^READY //p' "$dir/cam.out" 2>/dev/null || true)
        [[ -n $URL ]] && return 0
        running "$CAM_PID" || break
        sleep 0.1
    done
    die "test camera did not start: $(cat "$dir/cam.err")"
}

stop_camera() {
    local deadline=$((SECONDS + 3))
    exec {CAM_FD}>&-
    CAM_FD=
    while running "$CAM_PID" && ((SECONDS < deadline)); do sleep 0.1; done # exits on stdin EOF
    stop_pids "$CAM_PID"
}

# Starts TOOL on N streams; sets PIDS.
start_tool() {
    local tool=$1 n=$2 dir=$3 i
    PIDS=()
    case $tool in
    vidgest)
        {
            printf '[agent]\ndata_dir = "%s/data"\n[storage]\nmin_free = "1GiB"\n' "$dir"
            for ((i = 0; i < n; i++)); do
                printf '[[camera]]\nname = "cam%d"\nfragment_duration = "%ds"\nretention = "1h"\n' "$i" "$FRAGMENT_S"
                printf '[camera.source]\nkind = "rtsp"\nurl = "%s/cam%d"\ntransport = "tcp"\n' "$URL" "$i"
                if [[ -n $VIDGEST_BACKEND ]]; then printf 'backend = "%s"\n' "$VIDGEST_BACKEND"; fi
            done
        } >"$dir/vidgest.toml"
        "$VIDGEST" run --config "$dir/vidgest.toml" >"$dir/vidgest.log" 2>&1 {CAM_FD}>&- &
        PIDS+=($!)
        ;;
    gst-launch)
        local args=()
        for ((i = 0; i < n; i++)); do
            args+=(rtspsrc "location=$URL/cam$i" protocols=tcp ! rtph264depay ! h264parse ! fakesink)
        done
        gst-launch-1.0 -q "${args[@]}" >"$dir/gst.log" 2>&1 {CAM_FD}>&- &
        PIDS+=($!)
        ;;
    ffmpeg)
        mkdir -p "$dir/ff"
        for ((i = 0; i < n; i++)); do
            ffmpeg -nostdin -hide_banner -loglevel error -rtsp_transport tcp -i "$URL/cam$i" \
                -c copy -f segment -segment_time "$FRAGMENT_S" -segment_format mp4 \
                -reset_timestamps 1 "$dir/ff/cam$i-%05d.mp4" >"$dir/ff$i.log" 2>&1 {CAM_FD}>&- &
            PIDS+=($!)
        done
        ;;
    retina-bare)
        local urls=()
        for ((i = 0; i < n; i++)); do urls+=("$URL/cam$i"); done
        "$RETINA" "${urls[@]}" >"$dir/retina.out" 2>"$dir/retina.log" {CAM_FD}>&- &
        PIDS+=($!)
        ;;
    *) die "unknown tool $tool" ;;
    esac
    STARTED+=("${PIDS[@]}")
}

# Checks that the tool recorded; sets REASON (empty when fine) and FRAGS (per-camera counts).
verify() {
    local tool=$1 n=$2 dir=$3 w0=$4 w1=$5 i c min_frags
    case $tool in
    vidgest)
        ((TOOL_RC == 0)) || { REASON="vidgest exited with status $TOOL_RC"; return; }
        min_frags=$((DURATION / FRAGMENT_S / 2))
        ((min_frags < 1)) && min_frags=1
        FRAGS=
        for ((i = 0; i < n; i++)); do
            c=$("$VIDGEST" fragments "cam$i" --config "$dir/vidgest.toml" --json \
                --start "$w0" --end "$w1" 2>/dev/null | grep -c fragment_number || true)
            FRAGS+="${FRAGS:+ }$c"
            ((c >= min_frags)) || { REASON="cam$i: $c fragments in the window (want >= $min_frags)"; return; }
        done
        ;;
    retina-bare)
        # FRAMES lines are printed at SIGTERM; frames over the whole run (warm-up included).
        ((TOOL_RC == 0)) || { REASON="retina_recv exited with status $TOOL_RC: $(head -c 300 "$dir/retina.log")"; return; }
        local min_count=$((DURATION * 30 / 2))
        FRAGS=
        for ((i = 0; i < n; i++)); do
            c=$(awk -v u="$URL/cam$i" '$1 == "FRAMES" && $2 == u { print $3 }' "$dir/retina.out")
            FRAGS+="${FRAGS:+ }${c:-0}"
            ((${c:-0} >= min_count)) || { REASON="cam$i: ${c:-0} frames received (want >= $min_count)"; return; }
        done
        ;;
    ffmpeg)
        FRAGS=
        for ((i = 0; i < n; i++)); do
            c=$(find "$dir/ff" -name "cam$i-*.mp4" -size +0 | wc -l)
            FRAGS+="${FRAGS:+ }$c"
            ((c > 0)) || { REASON="ffmpeg wrote no segment for cam$i: $(head -c 300 "$dir/ff$i.log")"; return; }
        done
        ;;
    esac
    return 0
}

json() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print(json.dumps(v) if isinstance(v,(list,dict)) else v)' "$@"; }

CSV_HEAD="date,streams,tool,repeat,ok,reason,processes,threads,wall_s,cpu_s,cpu_pct,cpu_s_per_stream_min,hwm_mib,rss_max_mib,rx_mbit_per_stream,fragments,server_cpu_s,load1,rustc"
echo "$CSV_HEAD" >"$RAW"
: >"$THREADS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
FAILED=0

run_one() {
    local tool=$1 n=$2 rep=$3 dir=$WORK/run reason= m
    rm -rf "$dir"; mkdir -p "$dir"
    local load1 rustc
    load1=$(cut -d' ' -f1 /proc/loadavg)
    rustc=$(pgrep -cx rustc || true)
    start_camera "$n" "$dir"
    start_tool "$tool" "$n" "$dir"
    sleep "$WARMUP"
    m=$dir/measure.json
    python3 "$ROOT/bench/lib/measure.py" --duration "$DURATION" --port "${URL##*:}" \
        --server "$CAM_PID" "${PIDS[@]}" >"$m"
    local w0 w1
    w0=$(json "$m" window_start | cut -d. -f1)
    w1=$(($(json "$m" window_end | cut -d. -f1) + 1))
    stop_pids "${PIDS[@]}"
    TOOL_RC=$STOP_RC
    stop_camera
    FRAGS=
    REASON=
    local rx_mbit
    rx_mbit=$(awk -v b="$(json "$m" rx_bytes)" -v w="$(json "$m" wall_s)" -v n="$n" \
        'BEGIN { printf "%.3f", b * 8 / w / n / 1e6 }')
    if [[ $(json "$m" alive) != True ]]; then
        REASON="$tool died during the window (pids $(json "$m" died))"
    elif awk -v r="$rx_mbit" -v s="$SRC_BPS" 'BEGIN { exit !(r * 1e6 < 0.8 * s) }'; then
        REASON="received $rx_mbit Mbit/s per stream, source is $((SRC_BPS / 1000)) kbit/s"
    else
        verify "$tool" "$n" "$dir" "$w0" "$w1"
    fi
    reason=$REASON
    local ok=1
    if [[ -n $reason ]]; then
        ok=0; FAILED=1
        log "FAILED: $n x $tool #$rep: $reason"
        mkdir -p "$RESULTS/failed-$STAMP"
        cp -r "$dir"/*.log "$dir"/*.toml "$dir"/cam.err "$dir"/measure.json "$RESULTS/failed-$STAMP/" 2>/dev/null || true
    fi
    python3 - "$m" "$n" "$tool" "$rep" "$ok" "$reason" "$rx_mbit" "$FRAGS" "$load1" "$rustc" >>"$RAW" <<'EOF'
import csv, json, sys, time
m = json.load(open(sys.argv[1]))
n, tool, rep, ok, reason, rx, frags, load1, rustc = sys.argv[2:]
n = int(n)
cpu = m["cpu_s"]
csv.writer(sys.stdout).writerow([
    time.strftime("%Y-%m-%dT%H:%M:%S"), n, tool, rep, ok, reason, m["processes"], m["threads"],
    m["wall_s"], cpu, round(100 * cpu / m["wall_s"], 1),
    round(cpu / (n * m["wall_s"] / 60), 4),
    round(m["hwm_kb"] / 1024, 1), round(m["rss_max_kb"] / 1024, 1), rx, frags,
    m["server_cpu_s"], load1, rustc,
])
EOF
    echo "$n x $tool, repeat $rep: $(json "$m" thread_cpu_s)" >>"$THREADS"
    log "$(tail -n1 "$RAW" | cut -d, -f2-3,5,10-15)"
    rm -rf "$dir"
}

REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] &&
    REV+=" + uncommitted changes in src/"
read -ra TOOL_LIST <<<"$TOOLS"
log "source $(basename "$SRC") ($((SRC_BPS / 1000)) kbit/s); window ${DURATION}s after ${WARMUP}s warm-up; $REPEATS repeats"
log "columns: streams,tool,ok,cpu_s,cpu_pct,cpu_s_per_stream_min,hwm_mib,rss_max_mib,rx_mbit_per_stream"
for n in $COUNTS; do
    for ((rep = 1; rep <= REPEATS; rep++)); do
        # Rotate the tool order between repeats so drifting background load hits all tools.
        for ((k = 0; k < ${#TOOL_LIST[@]}; k++)); do
            tool=${TOOL_LIST[$(((k + rep - 1) % ${#TOOL_LIST[@]}))]}
            run_one "$tool" "$n" "$rep"
        done
    done
done

{
    echo "## Recording benchmark, $(date '+%Y-%m-%d %H:%M %Z')"
    echo
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB; load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
    echo "- vidgest $REV (binary built $BUILT), $(gst-launch-1.0 --version | sed -n 2p), $(ffmpeg -version | head -1 | cut -d' ' -f1-3)"
    echo "- source: $(basename "$SRC"), 1920x1080 30 fps H.264 High, GOP 30, no B-frames, $((SRC_BPS / 1000)) kbit/s, served by examples/test_camera over RTSP/TCP on loopback without re-encoding"
    echo "- per run: ${WARMUP} s warm-up, ${DURATION} s window, $REPEATS repeats, medians; gst-launch: 1 process with N branches; ffmpeg: N processes (CPU and RSS are sums); retina-bare: examples/retina_recv, 1 process, 1 thread, receive + demux only"
    echo "- vidgest backend: ${VIDGEST_BACKEND:-the daemon default}"
    echo "- CPU = utime+stime of the tool's processes over the window; stream-minute = 1 stream for 60 s"
} >"$RESULTS/header-$STAMP.md"
python3 "$ROOT/bench/lib/report.py" "$RAW" "$RESULTS/header-$STAMP.md" >"$REPORT"
rm -f "$RESULTS/header-$STAMP.md"
rm -rf "$WORK"
cat "$REPORT"
echo
log "report: $REPORT"
log "raw:    $RAW"
log "CPU by thread name: $THREADS"
if ((FAILED)); then
    log "some runs failed (see the report and $RESULTS/failed-$STAMP/)"
    exit 1
fi
