#!/usr/bin/env bash
# Reruns the cargo-fuzz targets one after another and prints the executions each reached.
#   fuzz/run.sh [RUNS] [TARGET...]      RUNS defaults to 10000000; no TARGET means all of them.
# Environment: FUZZ_MAX_TIME caps each target's seconds (default 1800; 0 = no cap),
# CARGO_TARGET_DIR (default fuzz/target). Needs the nightly toolchain and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"

runs=${1:-10000000}
[ $# -gt 0 ] && shift
max_time=${FUZZ_MAX_TIME:-1800}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
# No sanitizer: the parsers are safe Rust (ASan only slows them down); -a keeps debug assertions
# and overflow checks on, so arithmetic overflow is a crash.
flags=(--sanitizer none --debug-assertions)

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# One build for all targets (cargo fuzz build takes at most one target name).
build_target=()
[ ${#targets[@]} -eq 1 ] && build_target=("${targets[0]}")
nice -n 19 cargo +nightly fuzz build "${flags[@]}" "${build_target[@]}"
mkdir -p logs
summary=()
status=0
for t in "${targets[@]}"; do
    args=(-runs="$runs" -max_total_time="$max_time" -timeout=10 -print_final_stats=1)
    [ -f "dict/$t.dict" ] && args+=(-dict="dict/$t.dict")
    echo "== $t: ${args[*]}"
    if ! nice -n 19 cargo +nightly fuzz run "${flags[@]}" "$t" -- "${args[@]}" >"logs/$t.log" 2>&1; then
        status=1
        echo "!! $t failed; see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "logs/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "logs/$t.log" | tail -1)
    summary+=("$(printf '%-18s %12s execs %6s s %8s exec/s' "$t" "${execs:-?}" "${secs:-?}" "${rate:-?}")")
done
printf '%s\n' "${summary[@]}"
exit $status
