#!/usr/bin/env bash
# Kinesis HTTP benchmark: vidgest's Kinesis-compatible API against kinesalite 3.3.3 in the same run,
# driven by the same load generator (bench/py/load.py, vendor/venv from scripts/bootstrap):
#   PutRecords throughput   4 producer processes, PutRecords of 500 x 1 KiB records back to back
#                           (records/s and MB/s of acknowledged records), 4-shard stream
#   GetRecords throughput   one reader per shard reads everything back, Limit 10000
#   put-to-get latency      PutRecord paced at 1,000 records/s; a consumer polls GetRecords on its
#                           newest iterator in a tight loop; arrival minus the send time embedded
#                           in the payload, p50/p99
# Every run starts each server fresh on an empty data directory (kinesalite with its LevelDB store
# on disk, as vidgest stores on disk), REPEATS runs alternate the two; the report gives medians and
# vidgest/kinesalite ratios. Targets (issue): PutRecords >= 50x kinesalite, p99 put-to-get < 10 ms.
#
# Usage: bench/kinesis.sh
#   REPEATS=3        runs per target
#   PUT_SECONDS=10   length of the put phase
#   LAT_SECONDS=10   length of the paced latency phase
#   RATE=1000        records/s of the latency phase
#   TARGETS="vidgest kinesalite"
#   QUIET_WAIT=600   wait up to this many seconds for running rustc processes to finish first
#   SKIP_BUILD=1     use the existing target/release/vidgest
# Output: target/bench-results/kinesis-<date>.md (+ the per-run JSON in kinesis-<date>/).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
REPEATS=${REPEATS:-3}
PUT_SECONDS=${PUT_SECONDS:-10}
LAT_SECONDS=${LAT_SECONDS:-10}
RATE=${RATE:-1000}
TARGETS=${TARGETS:-"vidgest kinesalite"}
QUIET_WAIT=${QUIET_WAIT:-600}
RESULTS=$ROOT/target/bench-results
WORK=$ROOT/target/bench-work/kinesis
PY=$ROOT/vendor/venv/bin/python
KINESALITE=$ROOT/vendor/node/node_modules/kinesalite
VIDGEST=$ROOT/target/release/vidgest
STAMP=$(date +%Y%m%d-%H%M%S)
RUNS=$RESULTS/kinesis-$STAMP
REPORT=$RESULTS/kinesis-$STAMP.md

# shellcheck source=bench/lib/common.sh
source "$ROOT/bench/lib/common.sh"

[[ -x $PY ]] || die "$PY missing: run scripts/bootstrap"
[[ -f $KINESALITE/package.json ]] || die "$KINESALITE missing: run scripts/bootstrap"
command -v node >/dev/null || die "node not found: run scripts/bootstrap"
for v in REPEATS PUT_SECONDS LAT_SECONDS RATE; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer"
done

if [[ ${SKIP_BUILD:-0} != 1 && " $TARGETS " == *" vidgest "* ]]; then
    log "building vidgest (release)"
    "${CARGO:-cargo}" build --release --quiet --bin vidgest
fi
mkdir -p "$RESULTS" "$RUNS" "$WORK/bin"
if [[ " $TARGETS " == *" vidgest "* ]]; then
    [[ -x $VIDGEST ]] || die "missing $VIDGEST"
    # Snapshot the binary: a cargo build elsewhere must not swap it between runs.
    cp "$VIDGEST" "$WORK/bin/"
    BUILT=$(date -r "$VIDGEST" '+%Y-%m-%d %H:%M')
    VIDGEST=$WORK/bin/vidgest
fi

wait_for_quiet 5
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)


SERVER_PID=
stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap stop_server EXIT

start_server() { # target dir port
    local target=$1 dir=$2 port=$3
    rm -rf "$dir"; mkdir -p "$dir/data"
    case $target in
    vidgest)
        cat >"$dir/vidgest.toml" <<EOF
[agent]
data_dir = "$dir/data"
[api]
listen = "127.0.0.1:$port"
EOF
        VIDGEST_LOG=warn "$VIDGEST" run --config "$dir/vidgest.toml" >"$dir/server.log" 2>&1 &
        ;;
    kinesalite)
        node -e "require('$KINESALITE')({path: '$dir/data', createStreamMs: 50, deleteStreamMs: 50, updateStreamMs: 50}).listen($port, '127.0.0.1')" \
            >"$dir/server.log" 2>&1 &
        ;;
    *) die "unknown target $target" ;;
    esac
    SERVER_PID=$!
    wait_port "$port" "$SERVER_PID" || { cat "$dir/server.log" >&2; die "$target did not start"; }
}

failed=0
for rep in $(seq 1 "$REPEATS"); do
    for target in $TARGETS; do
        port=$(free_port)
        dir=$WORK/$target
        log "run $rep/$REPEATS: $target on 127.0.0.1:$port"
        start_server "$target" "$dir" "$port"
        if ! "$PY" "$ROOT/bench/py/load.py" run --endpoint "http://127.0.0.1:$port" --label "$target" \
            --out "$RUNS/$target-$rep.json" --put-seconds "$PUT_SECONDS" --lat-seconds "$LAT_SECONDS" \
            --rate "$RATE" --server-pid "$SERVER_PID"; then
            log "run $rep of $target FAILED (server log: $dir/server.log)"
            tail -n 20 "$dir/server.log" >&2 || true
            failed=1
        fi
        du -sh "$dir/data" 2>/dev/null | sed "s|^|[bench] $target data: |" >&2 || true
        stop_server
        rm -rf "$dir/data"
    done
done

{
    echo "# Kinesis HTTP benchmark, $(date '+%Y-%m-%d %H:%M')"
    echo
    echo "- vidgest: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (+ local changes)'), release build of ${BUILT:-n/a}, default stream settings"
    echo "- kinesalite $(node -p "require('$KINESALITE/package.json').version") on node $(node --version), LevelDB store on disk"
    echo "- client: bench/py/load.py (Python $("$PY" -c 'import platform; print(platform.python_version())'), http.client keep-alive, same code for both)"
    echo "- load: PutRecords 4 producers x 500 x 1 KiB for ${PUT_SECONDS}s into 4 shards; GetRecords Limit 10000, one reader per shard; latency at ${RATE} records/s for ${LAT_SECONDS}s, 1 shard"
    echo "- machine: $(nproc) cores shared by client and server, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB; load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end"
} >"$RUNS/header.md"
shopt -s nullglob
files=("$RUNS"/*-[0-9]*.json)
((${#files[@]})) || die "no run produced results"
"$PY" "$ROOT/bench/py/load.py" report --out "$REPORT" --header "$RUNS/header.md" "${files[@]}"
log "report: $REPORT"
exit $failed
