#!/usr/bin/env bash
# Delivery end to end: records from PutRecords to objects confirmed by a local S3 (moto server),
# against the same daemon taking the same records with no delivery (the baseline), in the same
# run, plus the latency of one record to its object with a 1 s buffer interval.
# Driver: bench/py/delivery_e2e.py (vendor/venv from scripts/bootstrap: boto3, moto[server]).
#
# Usage: bench/delivery-e2e.sh
#   REPEATS=3        runs of each phase (ingest, e2e, latency), alternating
#   RECORDS=200000   records per ingest/e2e run (~400 bytes of JSON each, 8 partition keys)
#   SAMPLES=20       latency samples per run
#   QUIET_WAIT=600   wait up to this many seconds for running rustc processes to finish first
#   SKIP_BUILD=1     use the existing target/release/vidgest
# Output: target/bench-results/delivery-e2e-<date>.md (+ per-run JSON in delivery-e2e-<date>/).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
REPEATS=${REPEATS:-3}
RECORDS=${RECORDS:-200000}
SAMPLES=${SAMPLES:-20}
QUIET_WAIT=${QUIET_WAIT:-600}
RESULTS=$ROOT/target/bench-results
WORK=$ROOT/target/bench-work/delivery-e2e
PY=$ROOT/vendor/venv/bin/python
MOTO=$ROOT/vendor/venv/bin/moto_server
VIDGEST=${VIDGEST:-$ROOT/target/release/vidgest}
STAMP=$(date +%Y%m%d-%H%M%S)
RUNS=$RESULTS/delivery-e2e-$STAMP
REPORT=$RESULTS/delivery-e2e-$STAMP.md

# shellcheck source=bench/lib/common.sh
source "$ROOT/bench/lib/common.sh"

[[ -x $PY ]] || die "$PY missing: run scripts/bootstrap"
[[ -x $MOTO ]] || die "$MOTO missing: run scripts/bootstrap (moto[server] in tests/py/requirements.txt)"
for v in REPEATS RECORDS SAMPLES; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer"
done
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building vidgest (release)"
    "${CARGO:-cargo}" build --release --quiet --bin vidgest
fi
[[ -x $VIDGEST ]] || die "missing $VIDGEST"
mkdir -p "$RESULTS" "$RUNS" "$WORK/bin"
cp "$VIDGEST" "$WORK/bin/"
BUILT=$(date -r "$VIDGEST" '+%Y-%m-%d %H:%M')
VIDGEST=$WORK/bin/vidgest

wait_for_quiet 5
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)


PIDS=()
stop_all() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap stop_all EXIT

S3_PORT=$(free_port)
"$MOTO" -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
wait_port "$S3_PORT" "$MOTO_PID" || { cat "$WORK/moto.log" >&2; die "moto did not start"; }

new_bucket() { # name
    "$PY" - "$S3_PORT" "$1" <<'EOF'
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:%s" % sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="bench", aws_secret_access_key="bench", config=Config(s3={"addressing_style": "path"}))
s3.create_bucket(Bucket=sys.argv[2])
EOF
}

start_vidgest() { # dir port phase bucket
    local dir=$1 port=$2 phase=$3 bucket=$4
    rm -rf "$dir"; mkdir -p "$dir/data"
    {
        echo "[agent]"
        echo "data_dir = \"$dir/data\""
        echo "[api]"
        echo "listen = \"127.0.0.1:$port\""
        echo "[[stream]]"
        echo "name = \"bench\""
        echo "shards = 4"
        if [[ $phase != ingest ]]; then
            local interval=2s
            [[ $phase == latency ]] && interval=1s
            cat <<EOF
[[delivery]]
name = "bench-s3"
source = "bench"
compression = "gzip"
buffer_size = "5MiB"
buffer_interval = "$interval"
prefix = "detections/camera=!{partitionKeyFromQuery:camera}/dt=!{timestamp:yyyy-MM-dd}/"
[delivery.destination]
kind = "s3"
bucket = "$bucket"
region = "us-east-1"
endpoint = "http://127.0.0.1:$S3_PORT"
path_style = true
access_key_id = "bench"
secret_access_key = "bench"
EOF
        fi
    } >"$dir/vidgest.toml"
    VIDGEST_LOG=warn "$VIDGEST" run --config "$dir/vidgest.toml" >"$dir/server.log" 2>&1 &
    SERVER_PID=$!
    wait_port "$port" "$SERVER_PID" || { cat "$dir/server.log" >&2; die "vidgest did not start"; }
}

failed=0
for rep in $(seq 1 "$REPEATS"); do
    for phase in ingest e2e latency; do
        port=$(free_port)
        bucket="bench-$phase-$rep-$STAMP"
        bucket=${bucket,,}
        [[ $phase != ingest ]] && new_bucket "$bucket"
        dir=$WORK/$phase
        log "run $rep/$REPEATS: $phase"
        start_vidgest "$dir" "$port" "$phase" "$bucket"
        if ! "$PY" "$ROOT/bench/py/delivery_e2e.py" run --endpoint "http://127.0.0.1:$port" \
            --s3 "http://127.0.0.1:$S3_PORT" --bucket "$bucket" --phase "$phase" --records "$RECORDS" \
            --samples "$SAMPLES" --server-pid "$SERVER_PID" --rep "$rep" --out "$RUNS/$phase-$rep.json"; then
            log "run $rep of $phase FAILED (server log: $dir/server.log)"
            tail -n 20 "$dir/server.log" >&2 || true
            failed=1
        fi
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        rm -rf "$dir/data"
    done
done

{
    echo "# Delivery end to end, $(date '+%Y-%m-%d %H:%M')"
    echo
    echo "- vidgest: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (+ local changes)'), release build of $BUILT"
    echo "- S3: moto server $("$PY" -c 'import moto; print(moto.__version__)') on 127.0.0.1 (in memory)"
    echo "- load: $RECORDS detection-like JSON records (~400 B, 8 partition keys) by 4 producer processes, PutRecords of 500, 4-shard stream (fsync on)"
    echo "- delivery: jsonl gzip, buffer_size 5MiB, buffer_interval 2s (the last partial buffers wait at most that), partitioned by camera and day; latency phase buffer_interval 1s, $SAMPLES records one at a time"
    echo "- machine: $(nproc) cores shared by client, moto and the daemon, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end; $QUIET_NOTE"
} >"$RUNS/header.md"
shopt -s nullglob
files=("$RUNS"/*-[0-9]*.json)
((${#files[@]})) || die "no run produced results"
"$PY" "$ROOT/bench/py/delivery_e2e.py" report --out "$REPORT" --header "$RUNS/header.md" "${files[@]}"
log "report: $REPORT"
exit $failed
