//! Tests against the real ONNX Runtime and real files: tiny graphs generated at test time with the
//! model venv (vendor/model-venv, made by scripts/fetch-model), the default model, sample photos.
//! Missing prerequisites fail the test with what to run; nothing is skipped silently.

mod decoders;
mod errors;
mod preprocessing;
mod real_model;

use super::manifest::ModelManifest;
use super::{runtime, Detector};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub(super) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The runtime, or a failing test that says how to get it.
pub(super) fn require_runtime() -> &'static runtime::RuntimeInfo {
    match runtime::init(None) {
        Ok(i) => i,
        Err(e) => panic!("ONNX Runtime is needed for this test: {e} (run scripts/fetch-model)"),
    }
}

/// Builds ONNX graphs from a JSON list of specs:
/// {path, input, input_dtype, input_shape (ints or names for dynamic dims),
///  outputs: [{name, identity: true} | {name, dtype, shape, values}]}.
const MAKE_GRAPHS: &str = r#"
import json, sys
import numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
DT = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8, "int64": TensorProto.INT64}
for spec in json.load(sys.stdin):
    inp = helper.make_tensor_value_info(spec["input"], DT[spec["input_dtype"]], spec["input_shape"])
    nodes, outs = [], []
    for o in spec["outputs"]:
        if o.get("identity"):
            nodes.append(helper.make_node("Identity", [spec["input"]], [o["name"]]))
            outs.append(helper.make_tensor_value_info(o["name"], DT[spec["input_dtype"]], spec["input_shape"]))
        else:
            arr = np.array(o["values"], dtype=o["dtype"]).reshape(o["shape"])
            nodes.append(helper.make_node("Constant", [], [o["name"]], value=numpy_helper.from_array(arr, o["name"] + "_v")))
            outs.append(helper.make_tensor_value_info(o["name"], DT[o["dtype"]], o["shape"]))
    model = helper.make_model(helper.make_graph(nodes, "t", [inp], outs), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, spec["path"])
"#;

pub(super) fn make_graphs(specs: Value) {
    let py = repo().join("vendor/model-venv/bin/python");
    assert!(
        py.is_file(),
        "{} missing: run scripts/fetch-model (it creates the model venv used to generate test graphs)",
        py.display()
    );
    let mut child = Command::new(&py)
        .arg("-c")
        .arg(MAKE_GRAPHS)
        .stdin(Stdio::piped())
        .spawn()
        .expect("start python");
    serde_json::to_writer(child.stdin.take().unwrap(), &specs).unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "generating test graphs failed: {st}");
}

/// A constant output for `make_graphs`.
pub(super) fn constant(name: &str, dtype: &str, shape: &[usize], values: &[f64]) -> Value {
    assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
    json!({"name": name, "dtype": dtype, "shape": shape, "values": values})
}

pub(super) fn graph(
    path: &Path,
    input: &str,
    dtype: &str,
    shape: Value,
    outputs: Vec<Value>,
) -> Value {
    json!({"path": path, "input": input, "input_dtype": dtype, "input_shape": shape, "outputs": outputs})
}

/// Writes a manifest (TOML text) to dir/name and loads it.
pub(super) fn manifest(dir: &Path, name: &str, text: &str) -> ModelManifest {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    ModelManifest::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn load(m: &ModelManifest, file: &Path) -> Detector {
    require_runtime();
    Detector::load(m, file, 1).unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn assert_close(a: f32, b: f32, what: &str) {
    assert!((a - b).abs() < 1e-5, "{what}: {a} != {b}");
}

#[test]
fn detector_can_move_to_a_detect_thread() {
    fn send<T: Send>() {}
    send::<Detector>();
    send::<crate::detect::MotionGate>();
}
