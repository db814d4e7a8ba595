#!/usr/bin/env bash
# Metrics collector benchmark: CPU per collection of the `[metrics]` collector in a running
# daemon that records CAMERAS synthetic cameras (kind = "test") into a real store, and what that
# means at the default 60 s interval (CPU per hour, share of one core; the target is < 1 %).
#
# Usage: bench/metrics.sh
#   CAMERAS=4      test cameras (320x240, 10 fps, 1 s fragments)
#   INTERVAL=200ms [metrics] interval while measuring (many collections, so the per-collection
#                  figure is precise; the cost of one collection does not depend on the interval)
#   DURATION=30    measurement window per run, seconds
#   WARMUP=5       seconds between the API listening and the window (fragments get stored)
#   REPEATS=5      runs; the report gives median and range
#   QUIET_WAIT=600 wait up to this many seconds for rustc to finish
#   BIN=path       the vidgest binary (default: target/release/vidgest, built unless SKIP_BUILD=1)
#
# Per run: the daemon's own counters at the start and end of the window (GET /metrics:
# vidgest_metrics_collections_total and vidgest_metrics_collector_cpu_seconds_total, the
# collector thread's CPU clock around collect + encode + put) give CPU per collection. As a
# cross-check, utime+stime of the `metrics` thread from /proc/<pid>/task/*/stat (10 ms ticks,
# includes the thread's waiting machinery) over the same window.
# Output: target/bench-results/metrics-<date>.md (+ .csv raw runs).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
CAMERAS=${CAMERAS:-4}
INTERVAL=${INTERVAL:-200ms}
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-5}
REPEATS=${REPEATS:-5}
QUIET_WAIT=${QUIET_WAIT:-600}
RESULTS=$ROOT/target/bench-results
WORK=$ROOT/target/bench-work/metrics
STAMP=$(date +%Y%m%d-%H%M%S)
RAW=$RESULTS/metrics-$STAMP.csv
REPORT=$RESULTS/metrics-$STAMP.md
PY=$ROOT/vendor/venv/bin/python
[[ -x $PY ]] || PY=python3

# shellcheck source=bench/lib/common.sh
source "$ROOT/bench/lib/common.sh"

for v in CAMERAS DURATION WARMUP REPEATS QUIET_WAIT; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer"
done
if [[ -z ${BIN:-} ]]; then
    BIN=$ROOT/target/release/vidgest
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
        log "building vidgest (release)"
        "${CARGO:-cargo}" build --release --quiet --bin vidgest
    fi
fi
[[ -x $BIN ]] || die "missing $BIN"
rm -rf "$WORK"
mkdir -p "$RESULTS" "$WORK/bin"
# Snapshot the binary: a cargo build elsewhere must not swap it between runs.
cp "$BIN" "$WORK/bin/vidgest"
VIDGEST=$WORK/bin/vidgest

wait_for_quiet 15

PID=
cleanup() { [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_daemon() {
    local deadline=$((SECONDS + 20))
    kill -TERM "$PID" 2>/dev/null || true
    while running "$PID" && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
}

# "collections cpu_s" from the daemon's /metrics.
scrape() {
    "$PY" - "$1" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode()
v = {}
for line in text.splitlines():
    if line.startswith("vidgest_metrics_"):
        name, value = line.rsplit(" ", 1)
        v[name] = float(value)
print(int(v["vidgest_metrics_collections_total"]), v["vidgest_metrics_collector_cpu_seconds_total"])
EOF
}

# utime+stime (ticks) of the daemon's `metrics` thread.
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        if [[ $(cat "$t/comm" 2>/dev/null) == metrics ]]; then
            sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}'
            return
        fi
    done
    echo 0
}

echo "run,cameras,interval,collections,cpu_ms_per_collection,thread_ticks_ms_per_collection,fragments" >"$RAW"
HZ=$(getconf CLK_TCK)
for rep in $(seq 1 "$REPEATS"); do
    dir=$WORK/run$rep
    mkdir -p "$dir"
    port=$(free_port)
    {
        printf '[agent]\ndata_dir = "%s/data"\ndevice_id = "bench"\n' "$dir"
        printf '[api]\nlisten = "127.0.0.1:%s"\n' "$port"
        printf '[metrics]\ninterval = "%s"\n' "$INTERVAL"
        for ((i = 0; i < CAMERAS; i++)); do
            printf '[[camera]]\nname = "cam%d"\nfragment_duration = "1s"\n' "$i"
            printf '[camera.source]\nkind = "test"\nwidth = 320\nheight = 240\nfps = 10\n'
        done
    } >"$dir/vidgest.toml"
    "$VIDGEST" run --config "$dir/vidgest.toml" >"$dir/vidgest.log" 2>&1 &
    PID=$!
    wait_port "$port" "$PID" || die "vidgest did not listen: $(tail -n 5 "$dir/vidgest.log")"
    sleep "$WARMUP"
    read -r c0 cpu0 < <(scrape "$port")
    t0=$(thread_ticks "$PID")
    sleep "$DURATION"
    read -r c1 cpu1 < <(scrape "$port")
    t1=$(thread_ticks "$PID")
    frags=$("$PY" -c "
import sys, urllib.request
t = urllib.request.urlopen('http://127.0.0.1:$port/metrics', timeout=10).read().decode()
print(int(sum(float(l.rsplit(' ', 1)[1]) for l in t.splitlines() if l.startswith('vidgest_camera_stored_fragments_total'))))")
    stop_daemon
    n=$((c1 - c0))
    ((n > 0)) || die "no collections in the window (run $rep)"
    per=$("$PY" -c "print(f'{($cpu1 - $cpu0) * 1000 / $n:.3f}')")
    per_ticks=$("$PY" -c "print(f'{($t1 - $t0) * 1000 / $HZ / $n:.3f}')")
    log "run $rep: $n collections, ${per} ms CPU each (thread ticks: ${per_ticks} ms), $frags fragments stored"
    echo "$rep,$CAMERAS,$INTERVAL,$n,$per,$per_ticks,$frags" >>"$RAW"
done

"$PY" - "$RAW" "$REPORT" "$QUIET_NOTE" "$(git rev-parse --short HEAD)" "$(basename "$BIN")" <<'EOF'
import csv, statistics, sys
raw, report, quiet, rev, binary = sys.argv[1:6]
rows = list(csv.DictReader(open(raw)))
per = [float(r["cpu_ms_per_collection"]) for r in rows]
ticks = [float(r["thread_ticks_ms_per_collection"]) for r in rows]
med = statistics.median(per)
lines = [
    f"metrics collector, vidgest {rev} ({binary}), {rows[0]['cameras']} test cameras, "
    f"interval {rows[0]['interval']} while measuring, {len(rows)} runs; {quiet}",
    "",
    "| | median | range |",
    "|---|---|---|",
    f"| CPU per collection (collector clock) | {med:.3f} ms | {min(per):.3f}–{max(per):.3f} ms |",
    f"| CPU per collection (`metrics` thread ticks) | {statistics.median(ticks):.3f} ms | {min(ticks):.3f}–{max(ticks):.3f} ms |",
    f"| CPU per hour at the default 60 s | {med * 60:.1f} ms | {min(per) * 60:.1f}–{max(per) * 60:.1f} ms |",
    f"| share of one core at 60 s (target < 1 %) | {med / 600:.5f} % | {min(per) / 600:.5f}–{max(per) / 600:.5f} % |",
]
open(report, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
if med / 600 >= 1.0:
    sys.exit(1)
EOF
log "report: $REPORT"
