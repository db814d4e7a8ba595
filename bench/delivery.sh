#!/usr/bin/env bash
# Delivery encoding benchmark: vidgest's object bodies against reference tools on the same bytes
# in the same run (issue 8):
#   jsonl gzip   JsonlBody (gzip level 6)           vs  gzip -6 -c CORPUS
#   jsonl zstd   JsonlBody (zstd level 3, 1 thread)  vs  zstd -3 --single-thread -c CORPUS
#                (`-T1` still compresses in a worker thread beside the I/O thread)
#   parquet      Parquet encoder, built-in detections schema, snappy
#                                                    vs  pyarrow pq.write_table, snappy, 1 thread
# The corpus is ~CORPUS_MIB MiB of detection-record JSON lines generated deterministically by
# benches/delivery_encode.rs (4 cameras, 0..4 objects per record, 5 % heartbeats). vidgest's
# numbers time the encode of the corpus already in memory (JSON parsing included for Parquet);
# the CLIs are timed as whole processes (reading the corpus from the page cache); pyarrow gets
# its rows pre-built in Python from the same JSON and is timed on pq.write_table only (plus,
# reported separately, building the Arrow table from the Python rows). Peak RSS is each
# process's ru_maxrss. Targets: gzip/zstd throughput >= 0.9x the CLI, Parquet rows/s >= 1x
# pyarrow.
#
# Usage: bench/delivery.sh
#   REPEATS=5        runs per tool (order rotates); the report gives medians and min..max
#   CORPUS_MIB=64    corpus size
#   QUIET_WAIT=600   wait up to this many seconds for running rustc processes to finish first
#   SKIP_BUILD=1     use the newest built benches/delivery_encode binary
# Output: target/bench-results/delivery-<date>.md (+ the per-run JSON lines in delivery-<date>.jsonl).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
REPEATS=${REPEATS:-5}
CORPUS_MIB=${CORPUS_MIB:-64}
QUIET_WAIT=${QUIET_WAIT:-600}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
RESULTS=$ROOT/target/bench-results
WORK=$ROOT/target/bench-work/delivery
PY=$ROOT/vendor/venv/bin/python
STAMP=$(date +%Y%m%d-%H%M%S)
RAW=$RESULTS/delivery-$STAMP.jsonl
REPORT=$RESULTS/delivery-$STAMP.md

# shellcheck source=bench/lib/common.sh
source "$ROOT/bench/lib/common.sh"

for tool in gzip zstd; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian packages gzip, zstd)"
done
[[ -x $PY ]] || die "$PY missing: run scripts/bootstrap"
"$PY" -c 'import pyarrow' 2>/dev/null || die "pyarrow missing in vendor/venv: run scripts/bootstrap"
for v in REPEATS CORPUS_MIB; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer"
done

mkdir -p "$RESULTS" "$WORK/bin"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building benches/delivery_encode (bench profile)"
    "${CARGO:-cargo}" bench --no-run --quiet --bench delivery_encode
fi
# The newest build of the bench (cargo names it delivery_encode-<hash>).
BIN=$(find "$TARGET/release/deps" -maxdepth 1 -type f -executable -name 'delivery_encode-*' \
    -printf '%T@ %p\n' 2>/dev/null | sort -nr | head -1 | cut -d' ' -f2-)
[[ -n $BIN ]] || die "no delivery_encode binary under $TARGET/release/deps: run without SKIP_BUILD=1"
# Snapshot it: a build elsewhere must not swap it between runs.
cp "$BIN" "$WORK/bin/delivery_encode"
BUILT=$(date -r "$BIN" '+%Y-%m-%d %H:%M')
BIN=$WORK/bin/delivery_encode

CORPUS=$WORK/corpus.jsonl
log "generating the corpus (${CORPUS_MIB} MiB)"
"$BIN" gen "$CORPUS" "$CORPUS_MIB"

# run.py TOOL RUN OUT -- CMD...: runs CMD with stdout to OUT, prints one JSON line: the wall
# time, the child's peak RSS, the output size and (if CMD printed one) CMD's own JSON.
cat >"$WORK/run.py" <<'EOF'
import json, os, subprocess, sys, time
tool, run, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cmd = sys.argv[5:]
with open(out, "wb") as f:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=f)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
res = {"tool": tool, "run": run, "ok": os.waitstatus_to_exitcode(status) == 0,
       "wall_seconds": round(wall, 6), "max_rss_kib": usage.ru_maxrss,
       "stdout_bytes": os.path.getsize(out)}
if tool in ("vidgest-gzip", "vidgest-zstd", "vidgest-parquet", "pyarrow"):
    with open(out) as f:
        res.update(json.loads(f.read()))
else:
    res["seconds"] = res["wall_seconds"]
    res["output_bytes"] = res["stdout_bytes"]
    res["input_bytes"] = os.path.getsize(cmd[-1])
print(json.dumps(res))
EOF

tool_cmd() {
    case $1 in
        vidgest-gzip) echo "$BIN jsonl gzip $CORPUS" ;;
        gzip-cli) echo "gzip -6 -c $CORPUS" ;;
        vidgest-zstd) echo "$BIN jsonl zstd $CORPUS" ;;
        zstd-cli) echo "zstd -3 --single-thread -q -c $CORPUS" ;;
        vidgest-parquet) echo "$BIN parquet $CORPUS" ;;
        pyarrow) echo "$PY $ROOT/tests/py/parquet_bench_pyarrow.py $CORPUS" ;;
    esac
}

TOOLS=(vidgest-gzip gzip-cli vidgest-zstd zstd-cli vidgest-parquet pyarrow)
wait_for_quiet 5
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
FAILED=0
for run in $(seq 1 "$REPEATS"); do
    # Rotate the order so no tool always runs first (cold caches, CPU boost).
    n=${#TOOLS[@]}
    for i in $(seq 0 $((n - 1))); do
        tool=${TOOLS[$(((i + run - 1) % n))]}
        log "run $run/$REPEATS: $tool"
        # shellcheck disable=SC2046
        if ! "$PY" "$WORK/run.py" "$tool" "$run" "$WORK/out-$tool" -- $(tool_cmd "$tool") >>"$RAW"; then
            log "error: $tool failed"; FAILED=1
        fi
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

"$PY" - "$RAW" >"$REPORT" <<EOF
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
bad = [r for r in rows if not r["ok"]]
by = {}
for r in rows:
    if r["ok"]:
        by.setdefault(r["tool"], []).append(r)
def stat(tool, f):
    vals = [f(r) for r in by.get(tool, [])]
    return (statistics.median(vals), min(vals), max(vals)) if vals else None
def fmt(s, d=1):
    return "n/a" if s is None else f"{s[0]:.{d}f} ({s[1]:.{d}f}..{s[2]:.{d}f})"
mbs = lambda r: r["input_bytes"] / r["seconds"] / 1e6
rows_s = lambda r: r["rows"] / r["seconds"] / 1e3
build_rows_s = lambda r: r["rows"] / (r["seconds"] + r["build_seconds"]) / 1e3
ratio = lambda r: r["input_bytes"] / r["output_bytes"]
rss = lambda r: r["max_rss_kib"] / 1024
print("# Delivery encoding benchmark ($STAMP)\n")
print("- corpus: ${CORPUS_MIB} MiB of detection-record JSON lines (benches/delivery_encode.rs gen), "
      f"{by['vidgest-parquet'][0]['records'] if 'vidgest-parquet' in by else '?'} records, "
      f"{by['vidgest-parquet'][0]['rows'] if 'vidgest-parquet' in by else '?'} detection rows")
print("- binary built $BUILT; $REPEATS runs per tool, order rotated; medians (min..max)")
print("- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); "
      "load average at start $LOAD_START, at end $LOAD_END; $QUIET_NOTE")
print()
print("| body | vidgest MB/s | reference | reference MB/s | vidgest / reference | ratio vidgest | ratio reference | RSS vidgest MiB | RSS reference MiB |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
for ours, ref, name in (("vidgest-gzip", "gzip-cli", "gzip -6"), ("vidgest-zstd", "zstd-cli", "zstd -3 --single-thread")):
    a, b = stat(ours, mbs), stat(ref, mbs)
    rel = "n/a" if not (a and b) else f"**{a[0] / b[0]:.2f}x**"
    print(f"| jsonl {ours.split('-')[1]} | {fmt(a)} | \`{name}\` | {fmt(b)} | {rel} | "
          f"{fmt(stat(ours, ratio), 2)} | {fmt(stat(ref, ratio), 2)} | {fmt(stat(ours, rss))} | {fmt(stat(ref, rss))} |")
print()
finish_rows_s = lambda r: r["rows"] / r["finish_seconds"] / 1e3
print("| Parquet (snappy) | k rows/s | output MB | peak RSS MiB |")
print("|---|---:|---:|---:|")
for tool, label, f in (("vidgest-parquet", "vidgest: push (JSON parse, columns) + finish", rows_s),
                       ("vidgest-parquet", "vidgest: finish only (columns to file)", finish_rows_s),
                       ("pyarrow", "pyarrow: write_table only (Arrow table given)", rows_s),
                       ("pyarrow", "pyarrow: Table.from_pydict (Python rows) + write_table", build_rows_s)):
    print(f"| {label} | {fmt(stat(tool, f))} | {fmt(stat(tool, lambda r: r['output_bytes'] / 1e6), 2)} | {fmt(stat(tool, rss))} |")
a, w, b, c = (stat("vidgest-parquet", rows_s), stat("vidgest-parquet", finish_rows_s),
              stat("pyarrow", rows_s), stat("pyarrow", build_rows_s))
if a and w and b and c:
    print(f"\nvidgest (all, from JSON) / pyarrow write_table: **{a[0] / b[0]:.2f}x**; "
          f"vidgest finish / pyarrow write_table: **{w[0] / b[0]:.2f}x**; "
          f"vidgest (all, from JSON) / pyarrow (from Python rows): **{a[0] / c[0]:.2f}x**")
if bad:
    print("\nFailed runs: " + ", ".join(f"{r['tool']} #{r['run']}" for r in bad))
EOF
log "report: $REPORT"
cat "$REPORT"
exit $FAILED
