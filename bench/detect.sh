#!/usr/bin/env bash
# Detection benchmark, daemon level: CPU and memory of `vidgest run` recording N synthetic cameras
# (kind = "test": videotestsrc ball 640x480 15 fps, x264 encoded in-process) with and without
# `[camera.detect] fps = 2` (motion gate off, so every sampled frame is inferred). The encoder
# runs in both modes, so the difference is the cost of detection at 2 fps per camera: tee +
# H.264 decode of every frame + videorate + scale to 416x416 RGB + inference + records.
#
# Usage: bench/detect.sh
#   DURATION=30   measurement window per run, seconds
#   WARMUP=10     seconds between starting vidgest and the start of the window (model load etc.)
#   REPEATS=3     runs per (cameras, mode); the report gives medians
#   COUNTS="1 4"  numbers of cameras
#   DETECT_FPS=2  [camera.detect] fps
#   QUIET_WAIT=900  wait up to this many seconds for bench/recording.sh and rustc to finish
#   SKIP_BUILD=1  use the existing target/release/vidgest
#
# Each run writes a config to target/bench-work/detect/run, starts vidgest with
# VIDGEST_STATUS_INTERVAL_S=5, waits WARMUP, then measures utime+stime of the process (all
# threads, /proc/<pid>/stat) over DURATION, plus CPU by thread name, VmHWM and the largest VmRSS
# (sampled every second). The status lines logged inside the window give the per-camera rates of
# detect_frames, inferences, busy/still skips and fragments. A run is invalid (and the script exits
# 1 at the end) when vidgest dies, a camera stores under 80 % of the expected fragments, or, with detection,
# a camera's inference rate is outside 90..110 % of DETECT_FPS (or any inference happens without).
# Output: target/bench-results/detect-<date>.md (+ .csv raw runs, -threads.txt CPU by thread).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-10}
REPEATS=${REPEATS:-3}
COUNTS=${COUNTS:-"1 4"}
DETECT_FPS=${DETECT_FPS:-2}
QUIET_WAIT=${QUIET_WAIT:-900}
STATUS_S=5
FRAGMENT_S=2
RESULTS=$ROOT/target/bench-results
WORK=$ROOT/target/bench-work/detect
STAMP=$(date +%Y%m%d-%H%M%S)
RAW=$RESULTS/detect-$STAMP.csv
REPORT=$RESULTS/detect-$STAMP.md
THREADS=$RESULTS/detect-$STAMP-threads.txt
MANIFEST=$ROOT/models/yolov3-tiny.toml
ORT_LIB=$ROOT/vendor/onnxruntime/lib/libonnxruntime.so

# shellcheck source=bench/lib/common.sh
source "$ROOT/bench/lib/common.sh"

command -v python3 >/dev/null || die "python3 not found"
for v in DURATION WARMUP REPEATS QUIET_WAIT; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer"
done
((DURATION >= 3 * STATUS_S)) || die "DURATION must be at least $((3 * STATUS_S)) s (status lines come every ${STATUS_S} s)"
[[ -f $MANIFEST && -f $ORT_LIB ]] || die "model manifest or ONNX Runtime missing (run scripts/bootstrap)"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building vidgest (release)"
    "${CARGO:-cargo}" build --release --quiet --bin vidgest
fi
[[ -x $ROOT/target/release/vidgest ]] || die "missing target/release/vidgest"
rm -rf "$WORK"
mkdir -p "$RESULTS" "$WORK/bin"
# Snapshot the binary: a cargo build elsewhere must not swap it between runs.
cp "$ROOT/target/release/vidgest" "$WORK/bin/"
BUILT=$(date -r "$ROOT/target/release/vidgest" '+%Y-%m-%d %H:%M')
VIDGEST=$WORK/bin/vidgest

# --- wait for a quiet machine: another benchmark or a build would be measured with us.
wait_for_quiet 15 bench/recording.sh
UPTIME_START=$(uptime | sed "s/^ *//")

# --- process bookkeeping: the daemon started here is stopped on exit.
PID=
cleanup() { [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_daemon() {
    local deadline=$((SECONDS + 20))
    kill -TERM "$PID" 2>/dev/null || true
    while running "$PID" && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL "$PID" 2>/dev/null || true
    STOP_RC=0
    wait "$PID" 2>/dev/null || STOP_RC=$?
    PID=
}

write_config() {
    local n=$1 mode=$2 dir=$3 i
    {
        printf '[agent]\ndata_dir = "%s/data"\ndevice_id = "bench"\n' "$dir"
        printf '[api]\nlisten = "127.0.0.1:0"\n'
        printf '[storage]\nmin_free = "1GiB"\n'
        printf '[detect]\nonnxruntime = "%s"\nmodel = "%s"\nworkers = 1\nintra_threads = 1\n' "$ORT_LIB" "$MANIFEST"
        for ((i = 0; i < n; i++)); do
            printf '[[camera]]\nname = "cam%d"\nfragment_duration = "%ds"\nretention = "1h"\n' "$i" "$FRAGMENT_S"
            printf '[camera.source]\nkind = "test"\npattern = "ball"\ncodec = "h264"\nwidth = 640\nheight = 480\nfps = 15\n'
            if [[ $mode == detect ]]; then
                printf '[camera.detect]\nenabled = true\nfps = %s\nmotion = false\nstream = "detections"\n' "$DETECT_FPS"
            fi
        done
    } >"$dir/vidgest.toml"
}

CSV_HEAD="date,cameras,mode,repeat,ok,reason,wall_s,cpu_s,cpu_s_per_cam_min,hwm_mib,rss_max_mib,threads,infer_per_s_min,infer_per_s_max,frames_per_s_min,busy_per_s,still,fragments_per_s_min,dropped,detect_thread_cpu_s,decode_thread_cpu_s,load1"
echo "$CSV_HEAD" >"$RAW"
: >"$THREADS"
FAILED=0

run_one() {
    local n=$1 mode=$2 rep=$3 dir=$WORK/run
    rm -rf "$dir"; mkdir -p "$dir"
    write_config "$n" "$mode" "$dir"
    VIDGEST_STATUS_INTERVAL_S=$STATUS_S VIDGEST_LOG=info \
        "$VIDGEST" run --config "$dir/vidgest.toml" >"$dir/vidgest.log" 2>&1 &
    PID=$!
    sleep "$WARMUP"
    local reason=
    running "$PID" || reason="vidgest died during warm-up: $(tail -n 5 "$dir/vidgest.log" | tr '\n' ' ')"
    if [[ -z $reason ]]; then
        python3 - "$PID" "$DURATION" >"$dir/measure.json" <<'EOF'
import json, os, sys, time
pid, duration = int(sys.argv[1]), float(sys.argv[2])
tck = os.sysconf("SC_CLK_TCK")
def stat(path):
    with open(path) as f:
        d = f.read()
    return d[d.index("(") + 1 : d.rindex(")")], d[d.rindex(")") + 2 :].split()
def cpu():
    return sum(int(x) for x in stat(f"/proc/{pid}/stat")[1][11:13])
def threads():
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            name, f = stat(f"/proc/{pid}/task/{t}/stat")
        except OSError:
            continue
        out[int(t)] = (name, int(f[11]) + int(f[12]))
    return out
def status(key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0
alive, rss_max = True, 0
w0, m0, c0, th0 = time.time(), time.monotonic(), cpu(), threads()
end = m0 + duration
while time.monotonic() < end:
    time.sleep(min(1.0, end - time.monotonic()))
    try:
        rss_max = max(rss_max, status("VmRSS"))
    except OSError:
        alive = False
        break
try:
    c1, th1, m1, w1 = cpu(), threads(), time.monotonic(), time.time()
    hwm, nthreads = status("VmHWM"), status("Threads")
except OSError:
    alive, c1, th1, m1, w1, hwm, nthreads = False, c0, th0, time.monotonic(), time.time(), 0, 0
by_name = {}
for t, (name, ticks) in th1.items():
    by_name[name] = by_name.get(name, 0) + ticks - th0.get(t, (name, 0))[1]
print(json.dumps({
    "alive": alive, "window_start": w0, "window_end": w1, "wall_s": round(m1 - m0, 3),
    "cpu_s": round((c1 - c0) / tck, 3), "hwm_kb": hwm, "rss_max_kb": rss_max, "threads": nthreads,
    "thread_cpu_s": {k: round(v / tck, 2) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1]) if v > 0},
}))
EOF
    fi
    local load1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    stop_daemon
    local rc=$STOP_RC
    # Status-line rates inside the window, per camera, and the verdict; appends the CSV row.
    python3 - "$dir/measure.json" "$dir/vidgest.log" "$n" "$mode" "$rep" "$DETECT_FPS" "$reason" "$rc" "$load1" "$STATUS_S" "$FRAGMENT_S" >>"$RAW" 2>"$dir/verdict.txt" <<'EOF'
import csv, datetime, json, re, sys
mpath, logpath, n, mode, rep, fps, reason, rc, load1, status_s, frag_s = sys.argv[1:]
n, fps, rc, status_s, frag_s = int(n), float(fps), int(rc), float(status_s), float(frag_s)
try:
    m = json.load(open(mpath))
except (OSError, ValueError):
    m = None
LINE = re.compile(r"^(\S+Z)\s+INFO\s+status:.*?\bcamera=(\S+)")
FIELD = re.compile(r"\b(fragments|dropped|detect_frames|inferences|still|busy)=(\d+)")
by_cam = {}
for line in open(logpath, errors="replace"):
    g = LINE.match(line)
    if not g:
        continue
    t = datetime.datetime.fromisoformat(g.group(1).replace("Z", "+00:00")).timestamp()
    by_cam.setdefault(g.group(2), []).append((t, {k: int(v) for k, v in FIELD.findall(line)}))
rates = {}
if m is not None and not reason:
    for i in range(n):
        cam = f"cam{i}"
        pts = [p for p in by_cam.get(cam, []) if m["window_start"] - 0.5 <= p[0] <= m["window_end"] + 0.5]
        if len(pts) < 2 or pts[-1][0] - pts[0][0] < 2 * status_s - 1:
            reason = f"{cam}: too few status lines in the window ({len(pts)})"
            break
        (ta, a), (tb, b) = pts[0], pts[-1]
        dt = tb - ta
        rates[cam] = {k: (b.get(k, 0) - a.get(k, 0)) / dt for k in ("fragments", "dropped", "detect_frames", "inferences", "still", "busy")}
        rates[cam]["fragments_n"] = b.get("fragments", 0) - a.get("fragments", 0)
        rates[cam]["dropped_n"] = b.get("dropped", 0) - a.get("dropped", 0)
if not reason:
    if m is None or not m["alive"]:
        reason = "vidgest died during the window"
    elif rc not in (0,):
        reason = f"vidgest exited with status {rc}"
if not reason:
    for cam, r in rates.items():
        if r["fragments_n"] < 1 or r["fragments"] < 0.8 / frag_s:
            reason = f"{cam}: {r['fragments']:.2f} fragments/s stored, want about {1 / frag_s:g}"
        elif mode == "detect" and not (0.9 * fps <= r["inferences"] <= 1.1 * fps):
            reason = f"{cam}: {r['inferences']:.2f} inferences/s, want {fps:g} +-10 %"
        elif mode == "off" and r["inferences"] > 0:
            reason = f"{cam}: inferences without detection"
        if reason:
            break
ok = 0 if reason else 1
print(f"{'ok' if ok else 'FAILED'} {reason}", file=sys.stderr)
vals = list(rates.values())
mn = lambda k: round(min(r[k] for r in vals), 3) if vals else ""
mx = lambda k: round(max(r[k] for r in vals), 3) if vals else ""
cpu = m["cpu_s"] if m else ""
wall = m["wall_s"] if m else ""
# detect-N: inference workers; detect-queue:sr (name cut to 15 chars): the detect branch's
# streaming thread (H.264 decode, videorate, scale and convert to 416x416 RGB), all cameras.
thread_sum = lambda pred: round(sum(v for k, v in m["thread_cpu_s"].items() if pred(k)), 2) if m else ""
det_cpu = thread_sum(lambda k: re.fullmatch(r"detect-\d+", k) is not None)
dec_cpu = thread_sum(lambda k: k.startswith("detect-queue"))
csv.writer(sys.stdout).writerow([
    datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S"), n, mode, rep, ok, reason, wall, cpu,
    round(cpu / (n * wall / 60), 4) if m else "",
    round(m["hwm_kb"] / 1024, 1) if m else "", round(m["rss_max_kb"] / 1024, 1) if m else "",
    m["threads"] if m else "", mn("inferences"), mx("inferences"), mn("detect_frames"),
    round(sum(r["busy"] for r in vals) / max(len(vals), 1), 3), round(sum(r["still"] for r in vals), 3),
    mn("fragments"), sum(r["dropped_n"] for r in vals), det_cpu, dec_cpu, load1,
])
EOF
    local verdict
    verdict=$(cat "$dir/verdict.txt")
    if [[ $verdict != ok* ]]; then
        FAILED=1
        log "FAILED: $n cameras, $mode #$rep: ${verdict#FAILED }"
        mkdir -p "$RESULTS/failed-detect-$STAMP"
        cp "$dir/vidgest.log" "$RESULTS/failed-detect-$STAMP/$n-$mode-$rep.log" 2>/dev/null || true
        cp "$dir/vidgest.toml" "$RESULTS/failed-detect-$STAMP/$n-$mode-$rep.toml" 2>/dev/null || true
    fi
    [[ -f $dir/measure.json ]] &&
        echo "$n cameras, $mode, repeat $rep: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["thread_cpu_s"])' "$dir/measure.json")" >>"$THREADS"
    log "$(tail -n1 "$RAW" | cut -d, -f2-3,5,8-12)"
    rm -rf "$dir"
}

REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] &&
    REV+=" + uncommitted changes"
log "window ${DURATION}s after ${WARMUP}s warm-up; $REPEATS repeats; cameras: $COUNTS; detect fps $DETECT_FPS"
log "columns: cameras,mode,ok,cpu_s,cpu_s_per_cam_min,hwm_mib,rss_max_mib,threads"
for n in $COUNTS; do
    for ((rep = 1; rep <= REPEATS; rep++)); do
        # Alternate the order so drifting background load hits both modes alike.
        if ((rep % 2)); then modes="off detect"; else modes="detect off"; fi
        for mode in $modes; do
            run_one "$n" "$mode" "$rep"
        done
    done
done
UPTIME_END=$(uptime | sed "s/^ *//")

{
    echo "## Detection benchmark (daemon), $(date '+%Y-%m-%d %H:%M %Z')"
    echo
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB; $QUIET_NOTE"
    echo "- uptime at start: \`$UPTIME_START\`; at end: \`$UPTIME_END\`"
    echo "- vidgest $REV (binary built $BUILT), $(gst-launch-1.0 --version 2>/dev/null | sed -n 2p), ONNX Runtime $(readlink "$ORT_LIB" | sed 's/libonnxruntime.so.//'), model yolov3-tiny-coco 416x416, [detect] workers = 1, intra_threads = 1"
    echo "- cameras: kind = \"test\" (videotestsrc ball), 640x480 15 fps, x264 ultrafast zerolatency 2048 kbit/s encoded in-process, ${FRAGMENT_S} s fragments; with detection: [camera.detect] fps = $DETECT_FPS, motion = false"
    echo "- per run: ${WARMUP} s warm-up, ${DURATION} s window, $REPEATS repeats, medians; CPU = utime+stime of the vidgest process over the window; camera-minute = 1 camera for 60 s; % core = CPU s per camera per wall s"
} >"$WORK/header.md"
python3 - "$RAW" "$WORK/header.md" "$DETECT_FPS" >"$REPORT" <<'EOF'
import csv, statistics, sys
raw, header, fps = sys.argv[1], sys.argv[2], float(sys.argv[3])
rows = list(csv.DictReader(open(raw)))
print(open(header).read())
med = lambda xs: statistics.median(xs) if xs else float("nan")
groups = {}
for r in rows:
    groups.setdefault((int(r["cameras"]), r["mode"]), []).append(r)
def agg(n, mode):
    rs = [r for r in groups.get((n, mode), []) if r["ok"] == "1"]
    f = lambda k: med([float(r[k]) for r in rs])
    return {
        "valid": len(rs), "runs": len(groups.get((n, mode), [])),
        "cpu": f("cpu_s_per_cam_min"), "hwm": f("hwm_mib"), "rss": f("rss_max_mib"),
        "wall": f("wall_s"), "cpu_s": f("cpu_s"), "det": f("detect_thread_cpu_s"),
        "dec": f("decode_thread_cpu_s"), "frag": min((float(r["fragments_per_s_min"]) for r in rs), default=float("nan")),
        "dropped": sum(int(r["dropped"]) for r in rs),
        "inf_min": min((float(r["infer_per_s_min"]) for r in rs), default=float("nan")),
        "inf_max": max((float(r["infer_per_s_max"]) for r in rs), default=float("nan")),
        "busy": f("busy_per_s"), "threads": f("threads"),
    }
counts = sorted({n for n, _ in groups})
print("\n| cameras | detection | CPU s per camera-minute | % of a core per camera | VmHWM MiB | max VmRSS MiB | threads | inferences/s per camera (min..max) | fragments/s per camera (min) | dropped | valid runs |")
print("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
for n in counts:
    for mode in ("off", "detect"):
        a = agg(n, mode)
        label = "off" if mode == "off" else f"{fps:g} fps"
        inf = f"{a['inf_min']:.2f}..{a['inf_max']:.2f}" if a["valid"] else "-"
        print(f"| {n} | {label} | {a['cpu']:.2f} | {a['cpu'] / 60 * 100:.1f} | {a['hwm']:.0f} | {a['rss']:.0f} | {a['threads']:.0f} | {inf} | {a['frag']:.2f} | {a['dropped']} | {a['valid']}/{a['runs']} |")
print(f"\nCost of detection at {fps:g} fps per camera (median with detection − median without):\n")
print("| cameras | extra CPU s per camera-minute | extra % of a core per camera | extra CPU ms per inferred frame | inference thread (detect-N) CPU ms per frame | decode branch (detect-queue) CPU ms per frame | extra VmHWM MiB |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for n in counts:
    off, on = agg(n, "off"), agg(n, "detect")
    d = on["cpu"] - off["cpu"]
    per_inf_ms = d / 60 / fps * 1000
    per_frame = lambda cpu_s: cpu_s / on["wall"] / n / fps * 1000 if on["valid"] else float("nan")
    print(f"| {n} | {d:.2f} | {d / 60 * 100:.1f} | {per_inf_ms:.1f} | {per_frame(on['det']):.1f} | {per_frame(on['dec']):.1f} | {on['hwm'] - off['hwm']:+.0f} |")
bad = [r for r in rows if r["ok"] != "1"]
if bad:
    print("\nInvalid runs (excluded from the medians):\n")
    for r in bad:
        print(f"- {r['cameras']} cameras, {r['mode']}, repeat {r['repeat']}: {r['reason']}")
EOF
rm -rf "$WORK"
cat "$REPORT"
echo
log "report: $REPORT"
log "raw:    $RAW"
log "CPU by thread name: $THREADS"
if ((FAILED)); then
    log "some runs were invalid (see the report and $RESULTS/failed-detect-$STAMP/)"
    exit 1
fi
