#!/usr/bin/env python3
"""Run a `yolo_boxes_scores` ONNX model on photos (setup-time check, not the product's code path).

Usage: yolo_detect.py MODEL.onnx MANIFEST.toml IMAGE... [--threads N] [--min-score S] [--expect IMAGE:LABEL ...]
Decodes each image with ffmpeg (plain bilinear resize to the model size, RGB/255), runs ONNX Runtime,
applies class-aware NMS (IoU 0.45) and prints one line per detection. With --expect, exits 1 unless each
IMAGE:LABEL pair (image file name without directory) has a detection of that label.
"""
import argparse
import os
import subprocess
import sys
import time
import tomllib

import numpy as np
import onnxruntime as ort


def load_rgb(path, w, h):
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                            "-of", "csv=p=0", path], check=True, capture_output=True, text=True).stdout
    ow, oh = (int(v) for v in probe.strip().split(",")[:2])
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-vf", f"scale={w}:{h}:flags=bilinear",
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    img = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
    return img.transpose(2, 0, 1)[None].astype(np.float32) / 255.0, ow, oh


def nms(boxes, scores, min_score, iou_thr):
    """Class-aware greedy NMS. boxes [N,4] cxcywh, scores [N,C] -> [(class, score, x1, y1, x2, y2)]."""
    cls = scores.argmax(1)
    best = scores[np.arange(len(cls)), cls]
    keep = best >= min_score
    b, s, c = boxes[keep], best[keep], cls[keep]
    xyxy = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)
    out = []
    for k in np.unique(c):
        idx = np.where(c == k)[0]
        idx = idx[np.argsort(-s[idx], kind="stable")]
        while idx.size:
            i, rest = idx[0], idx[1:]
            out.append((int(k), float(s[i]), *xyxy[i]))
            lt = np.maximum(xyxy[i, :2], xyxy[rest, :2])
            rb = np.minimum(xyxy[i, 2:], xyxy[rest, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), 1)
            area = lambda a: np.prod(a[:, 2:] - a[:, :2], 1)
            iou = inter / (area(xyxy[i:i + 1]) + area(xyxy[rest]) - inter + 1e-9)
            idx = rest[iou < iou_thr]
    return sorted(out, key=lambda d: -d[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("manifest")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-score", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--runs", type=int, default=5, help="timed inference runs per image (after one warm-up)")
    ap.add_argument("--expect", nargs="*", default=[])
    a = ap.parse_args()
    man = tomllib.load(open(a.manifest, "rb"))
    names, inp = man["labels"]["names"], man["input"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    found = {}
    for path in a.images:
        x, ow, oh = load_rgb(path, inp["width"], inp["height"])
        feed = {inp["name"]: x}
        outs = [man["output"]["boxes"], man["output"]["scores"]]
        boxes, scores = sess.run(outs, feed)  # warm-up
        times = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            boxes, scores = sess.run(outs, feed)
            times.append((time.perf_counter() - t0) * 1000)
        dets = nms(boxes[0], scores[0], a.min_score, a.iou)
        name = os.path.basename(path)
        print(f"{name} ({ow}x{oh}): median {np.median(times):.1f} ms / {a.threads} thread(s), {len(dets)} detection(s)")
        for k, s, x1, y1, x2, y2 in dets:
            print(f"  {names[k]:<14} {s:.3f}  box px [{x1 * ow:.0f},{y1 * oh:.0f} {x2 * ow:.0f},{y2 * oh:.0f}]")
            found.setdefault(name, set()).add(names[k])
    missing = [e for e in a.expect if e.split(":", 1)[1] not in found.get(e.split(":", 1)[0], set())]
    if missing:
        sys.exit(f"yolo_detect: expected detections missing: {', '.join(missing)}")


if __name__ == "__main__":
    main()
