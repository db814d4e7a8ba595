#!/usr/bin/env python3
"""Convert a darknet YOLOv3(-tiny) cfg + weights into an ONNX detector (numpy + onnx only).

Graph contract (what vidgest's `yolo_boxes_scores` decoder expects):
  input  images  float32 [1,3,H,W]  RGB, values /255, plain resize (no letterbox)
  output boxes   float32 [1,N,4]    cx, cy, w, h normalized to 0..1 of the input image
  output scores  float32 [1,N,C]    objectness * class probability
No NMS in the graph. Output is byte-for-byte deterministic for the same inputs.

Supported layers: [convolutional] (batch_normalize, leaky|linear), [maxpool], [route],
[upsample], [yolo]. Usage: yolo_convert.py CFG WEIGHTS OUT.onnx
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13      # Resize/Split forms used below; widely supported (ONNX Runtime, tract)
IR_VERSION = 7  # the IR version that goes with opset 13; fixed so the bytes never depend on the onnx package


def parse_cfg(path):
    sections = []
    for raw in open(path, encoding="utf-8"):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append((line.strip("[]").strip(), {}))
        else:
            key, value = line.split("=", 1)
            sections[-1][1][key.strip()] = value.strip()
    return sections


def ints(s):
    return [int(v) for v in s.split(",") if v.strip()]


class Weights:
    def __init__(self, path):
        with open(path, "rb") as f:
            major, minor, revision = np.frombuffer(f.read(12), dtype="<i4")
            f.read(8 if major * 10 + minor >= 2 else 4)  # images "seen" while training
            self.data = np.frombuffer(f.read(), dtype="<f4")
        self.pos = 0

    def take(self, n):
        if self.pos + n > self.data.size:
            sys.exit(f"yolo_convert: weights file too short ({self.data.size} floats, need more than {self.pos + n})")
        out = self.data[self.pos:self.pos + n].astype(np.float64)
        self.pos += n
        return out


def convert(cfg_path, weights_path):
    sections = parse_cfg(cfg_path)
    net = sections[0][1]
    assert sections[0][0] in ("net", "network"), "cfg must start with [net]"
    width, height, channels = int(net["width"]), int(net["height"]), int(net.get("channels", 3))
    wts = Weights(weights_path)
    nodes, inits = [], []
    outputs = []          # per layer: (tensor name, channels, h, w)
    heads = []            # (boxes tensor, scores tensor)
    cur, c, h, w = "images", channels, height, width

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    for i, (kind, opt) in enumerate(sections[1:]):
        p = f"l{i:03d}_{kind}"
        if kind == "convolutional":
            n, k, s = int(opt["filters"]), int(opt["size"]), int(opt.get("stride", 1))
            pad = k // 2 if int(opt.get("pad", 0)) else int(opt.get("padding", 0))
            if int(opt.get("batch_normalize", 0)):
                beta, gamma, mean, var = (wts.take(n) for _ in range(4))
                kern = wts.take(n * c * k * k).reshape(n, c, k, k)
                f = gamma / (np.sqrt(var) + 1e-6)  # darknet normalize_cpu: (x-mean)/(sqrt(var)+.000001)
                kern, bias = kern * f[:, None, None, None], beta - mean * f
            else:
                bias = wts.take(n)
                kern = wts.take(n * c * k * k).reshape(n, c, k, k)
            cur = node("Conv", [cur, const(p + "_W", kern.astype(np.float32)), const(p + "_B", bias.astype(np.float32))],
                       p, kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4)
            c, h, w = n, (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
            act = opt.get("activation", "logistic")
            if act == "leaky":
                cur = node("LeakyRelu", [cur], p + "_leaky", alpha=0.1)
            elif act != "linear":
                sys.exit(f"yolo_convert: layer {i}: activation {act!r} not supported")
        elif kind == "maxpool":
            k, s = int(opt["size"]), int(opt.get("stride", 1))
            padding = int(opt.get("padding", k - 1))  # darknet: window starts at -padding/2
            b = padding // 2
            cur = node("MaxPool", [cur], p, kernel_shape=[k, k], strides=[s, s], pads=[b, b, padding - b, padding - b])
            h, w = (h + padding - k) // s + 1, (w + padding - k) // s + 1
        elif kind == "route":
            src = [outputs[j if j >= 0 else i + j] for j in ints(opt["layers"])]
            if len(src) == 1:
                cur, c, h, w = src[0]
            else:
                assert all(t[2:] == src[0][2:] for t in src), f"layer {i}: route of different sizes"
                cur = node("Concat", [t[0] for t in src], p, axis=1)
                c, h, w = sum(t[1] for t in src), src[0][2], src[0][3]
        elif kind == "upsample":
            s = int(opt.get("stride", 2))
            cur = node("Resize", [cur, "", const(p + "_scales", np.array([1, 1, s, s], np.float32))], p,
                       mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            h, w = h * s, w * s
        elif kind == "yolo":
            mask, anchors, ncls = ints(opt["mask"]), ints(opt["anchors"]), int(opt["classes"])
            na = len(mask)
            assert c == na * (5 + ncls), f"layer {i}: {c} channels for {na} anchors x {5 + ncls}"
            assert float(opt.get("scale_x_y", 1)) == 1, "scale_x_y != 1 not supported"
            # [1, na*(5+C), h, w] -> [1, na, h, w, 5+C]
            t = node("Reshape", [cur, const(p + "_shape5", np.array([1, na, 5 + ncls, h, w], np.int64))], p + "_r5")
            t = node("Transpose", [t], p + "_t", perm=[0, 1, 3, 4, 2])
            nodes.append(helper.make_node("Split", [t, const(p + "_split", np.array([2, 2, 1, ncls], np.int64))],
                                          [p + "_xy", p + "_wh", p + "_obj", p + "_cls"], name=p + "_split", axis=4))
            gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            grid = np.stack([gx, gy], axis=-1).reshape(1, 1, h, w, 2).astype(np.float32)
            xy = node("Add", [node("Sigmoid", [p + "_xy"], p + "_xy_sig"), const(p + "_grid", grid)], p + "_xy_grid")
            xy = node("Div", [xy, const(p + "_gridsize", np.array([w, h], np.float32))], p + "_xy_norm")
            anc = np.array([[anchors[2 * m] / width, anchors[2 * m + 1] / height] for m in mask], np.float64)
            wh = node("Mul", [node("Exp", [p + "_wh"], p + "_wh_exp"),
                              const(p + "_anchors", anc.astype(np.float32).reshape(1, na, 1, 1, 2))], p + "_wh_norm")
            box = node("Concat", [xy, wh], p + "_box", axis=4)
            box = node("Reshape", [box, const(p + "_shape_b", np.array([1, na * h * w, 4], np.int64))], p + "_boxes")
            sc = node("Mul", [node("Sigmoid", [p + "_obj"], p + "_obj_sig"), node("Sigmoid", [p + "_cls"], p + "_cls_sig")],
                      p + "_sc")
            sc = node("Reshape", [sc, const(p + "_shape_s", np.array([1, na * h * w, ncls], np.int64))], p + "_scores")
            heads.append((box, sc, na * h * w, ncls))
        else:
            sys.exit(f"yolo_convert: layer {i}: [{kind}] not supported")
        outputs.append((cur, c, h, w))

    if wts.pos != wts.data.size:
        sys.exit(f"yolo_convert: {wts.data.size - wts.pos} unused floats in weights: cfg and weights do not match")
    if not heads:
        sys.exit("yolo_convert: no [yolo] layer in cfg")
    total, ncls = sum(hd[2] for hd in heads), heads[0][3]
    nodes.append(helper.make_node("Concat", [hd[0] for hd in heads], ["boxes"], name="boxes", axis=1))
    nodes.append(helper.make_node("Concat", [hd[1] for hd in heads], ["scores"], name="scores", axis=1))
    graph = helper.make_graph(
        nodes, "yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, channels, height, width])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, total, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, total, ncls])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="vidgest tools/yolo_convert.py", producer_version="1",
                              doc_string="darknet YOLO; images RGB/255 [1,3,H,W]; boxes cxcywh normalized; "
                                         "scores = objectness * class prob; no NMS")
    onnx.checker.check_model(model)
    return model


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__)
    model = convert(argv[1], argv[2])
    tmp = argv[3] + ".tmp"
    with open(tmp, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    os.replace(tmp, argv[3])


if __name__ == "__main__":
    main(sys.argv)
