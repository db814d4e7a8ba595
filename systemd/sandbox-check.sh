#!/bin/bash
# Runs `vidgest run` for a while under what systemd/vidgest.service applies, as far as it can be
# applied without systemd as PID 1 (docs/operations.md#running-under-systemd says which settings
# this covers), and checks that GStreamer (file, test pattern and RTSP sources, decoding and
# scaling for detection), ONNX Runtime and RTSP still work.
#
#   sudo systemd/sandbox-check.sh VIDGEST_BIN TEST_CAMERA_BIN [SECONDS]
#
# VIDGEST_BIN: a built vidgest; TEST_CAMERA_BIN: `cargo build --example test_camera`. Needs root
# (unshare, setpriv), python3 and libseccomp (both on any systemd machine), vendor/ set up by
# scripts/bootstrap (demo clip, model, ONNX Runtime).
set -euo pipefail
vidgest=$(realpath "$1")
test_camera=$(realpath "$2")
seconds=${3:-30}
repo=$(cd "$(dirname "$0")/.." && pwd)
stage=$(mktemp -d /var/tmp/vidgest-sandbox.XXXXXX)
cleanup() {
    [ -n "${camera_pid:-}" ] && kill "$camera_pid" 2>/dev/null || true
    rm -rf "$stage"
}
trap cleanup EXIT

# The service's view: its binary, config and ORT library readable; only its state and cache
# directories writable (StateDirectory=, CacheDirectory=), owned by its user.
mkdir -p "$stage/bin" "$stage/state" "$stage/cache"
chmod 755 "$stage" "$stage/bin"
cp "$vidgest" "$stage/bin/vidgest"
cp "$repo/systemd/sandbox-exec.py" "$stage/bin/"
ort=$(find -L "$repo/vendor/onnxruntime" -name 'libonnxruntime.so*' -type f | head -1)
chown nobody:nogroup "$stage/state" "$stage/cache"
chmod 700 "$stage/state" "$stage/cache"

# A real RTSP camera outside the sandbox.
coproc CAMERA { exec "$test_camera" --port 0 < /dev/null; }
camera_pid=$CAMERA_PID
read -r ready url <&"${CAMERA[0]}"
[ "$ready" = READY ] || { echo "test camera did not start" >&2; exit 1; }
# By name: resolving goes through glibc without netlink sockets (AF_NETLINK is not allowed).
url=${url/127.0.0.1/localhost}

cat > "$stage/vidgest.toml" <<EOF
[agent]
data_dir = "$stage/state"
[api]
listen = "127.0.0.1:0"
[detect]
onnxruntime = "$ort"
model = "$repo/models/yolov3-tiny.toml"
[[stream]]
name = "detections"
shards = 1
[[camera]]
name = "file"
fragment_duration = "2s"
[camera.source]
kind = "file"
path = "$repo/vendor/demo/objects.mp4"
loop = true
realtime = true
[camera.detect]
enabled = true
fps = 2
stream = "detections"
min_score = 0.3
[[camera]]
name = "pattern"
fragment_duration = "2s"
[camera.source]
kind = "test"
pattern = "ball"
width = 320
height = 240
fps = 15
[[camera]]
name = "rtsp"
fragment_duration = "2s"
[camera.source]
kind = "rtsp"
url = "$url/cam"
EOF
chmod 644 "$stage/vidgest.toml"

log="$stage/vidgest.log"
# ProtectSystem=strict, ProtectHome=yes, PrivateTmp=yes in a private mount namespace; then the
# user without capabilities (User=, CapabilityBoundingSet=, SupplementaryGroups=video, UMask=),
# then the seccomp filter, MDWE and no_new_privs (sandbox-exec.py).
unshare --mount --propagation private -- bash -c '
    set -e
    stage=$1; seconds=$2; shift 2
    for m in $(findmnt -rn -o TARGET | sort -u); do
        case "$m" in /proc*|/sys*|/dev*|/run*) continue;; esac
        mount -o remount,bind,ro "$m" 2>/dev/null || { mount --bind "$m" "$m" && mount -o remount,bind,ro "$m"; }
    done
    for rw in "$stage/state" "$stage/cache"; do
        mount --bind "$rw" "$rw"; mount -o remount,bind,rw "$rw"
    done
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    for h in /root /home; do mount -t tmpfs -o ro,mode=755 tmpfs "$h"; done
    umask 0077
    exec timeout --signal=TERM --kill-after=30 "$seconds" \
        setpriv --reuid=nobody --regid=nogroup --groups=video --bounding-set=-all \
            --inh-caps=-all --ambient-caps=-all \
        env -i PATH=/usr/bin:/bin LANG=C.UTF-8 HOME=/nonexistent VIDGEST_LOG=info \
            VIDGEST_STATUS_INTERVAL_S=5 XDG_CACHE_HOME="$stage/cache" \
        /usr/bin/python3 "$stage/bin/sandbox-exec.py" "$stage/bin/vidgest" run --config "$stage/vidgest.toml"
' sandbox "$stage" "$seconds" > "$log" 2>&1 || status=$?
status=${status:-0}
cat "$log"
echo "---"
# 124: stopped by `timeout` (SIGTERM), the expected end; vidgest exits 0 on SIGTERM.
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ]; then
    echo "FAIL: vidgest exited with $status under the sandbox" >&2
    exit 1
fi
fail=0
for cam in file pattern rtsp; do
    frags=$(grep "status:" "$log" | grep "camera=$cam " | tail -1 | sed -n 's/.*fragments=\([0-9]*\).*/\1/p')
    echo "camera $cam: ${frags:-0} fragments"
    [ "${frags:-0}" -gt 0 ] || fail=1
done
inferences=$(grep "status:" "$log" | grep "camera=file " | tail -1 | sed -n 's/.*inferences=\([0-9]*\).*/\1/p')
echo "camera file: ${inferences:-0} inferences (ONNX Runtime)"
[ "${inferences:-0}" -gt 0 ] || fail=1
if grep -Eiq "operation not permitted|permission denied|read-only file system|EPERM|EACCES" "$log"; then
    echo "FAIL: a permission error in the log (above)" >&2
    fail=1
fi
grep -q "stopped cleanly" "$log" || { echo "FAIL: no clean stop" >&2; fail=1; }
[ "$fail" -eq 0 ] && echo "OK: vidgest works under the sandbox"
exit "$fail"
