//! Every failure names the model (id and file) or the manifest and says what to do.

use super::*;
use crate::detect::{find_manifest, DetectError};

const SMALL: &str = r#"
id = "tiny-test"
name = "t"
file = "tiny.onnx"
[input]
name = "images"
width = 416
height = 416
[output]
decoder = "yolo_boxes_scores"
boxes = "boxes"
scores = "scores"
[labels]
names = ["a", "b"]
"#;

fn tiny_graph(dir: &Path, name: &str, size: usize, classes: usize) -> PathBuf {
    let file = dir.join(name);
    make_graphs(json!([graph(
        &file,
        "images",
        "float32",
        json!([1, 3, size, size]),
        vec![
            constant("boxes", "float32", &[1, 1, 4], &[0.5; 4]),
            constant("scores", "float32", &[1, 1, classes], &vec![0.5; classes]),
        ],
    )]));
    file
}

fn load_err(m: &ModelManifest, file: &Path) -> String {
    require_runtime();
    let e = Detector::load(m, file, 1).unwrap_err();
    let s = e.to_string();
    eprintln!("{s}");
    s
}

#[test]
fn missing_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "m.toml", SMALL);
    let e = m.resolve_model(dir.path()).unwrap_err();
    assert!(matches!(e, DetectError::ModelMissing { .. }));
    let s = e.to_string();
    assert!(
        s.contains("tiny-test") && s.contains("tiny.onnx") && s.contains("scripts/fetch-model"),
        "{s}"
    );
    assert!(
        s.contains("vendor/models") && s.contains("/usr/share/vidgest/models"),
        "{s}"
    );
    let s = load_err(&m, &dir.path().join("tiny.onnx"));
    assert!(
        s.contains("tiny-test") && s.contains("tiny.onnx") && s.contains("not found"),
        "{s}"
    );
}

#[test]
fn corrupt_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tiny.onnx");
    // deterministic "random" bytes
    let mut x = 0x2545F4914F6CDD1Du64;
    let junk: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&file, &junk).unwrap();
    let m = manifest(dir.path(), "m.toml", SMALL);
    let s = load_err(&m, &file);
    assert!(
        s.contains("model tiny-test") && s.contains(&file.display().to_string()),
        "{s}"
    );
    assert!(s.contains("cannot load"), "{s}");
    // with a pinned sha256 the checksum catches it first, with the fix
    let pinned = SMALL.replace(
        "file = \"tiny.onnx\"",
        "file = \"tiny.onnx\"\nsha256 = \"988d7a4d1d2391cbbe7ddaa0c6be98a407138945c146ab1a19bf96cc6b3536c4\"",
    );
    let m = manifest(dir.path(), "pinned.toml", &pinned);
    let s = load_err(&m, &file);
    assert!(
        s.contains("sha256 is") && s.contains("scripts/fetch-model") && s.contains("tiny-test"),
        "{s}"
    );
    assert!(
        s.contains(&hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&junk))),
        "{s}"
    );
}

#[test]
fn wrong_input_shape() {
    let dir = tempfile::tempdir().unwrap();
    let file = tiny_graph(dir.path(), "tiny.onnx", 32, 2);
    let m = manifest(dir.path(), "m.toml", SMALL);
    let s = load_err(&m, &file);
    assert!(s.contains("tiny-test") && s.contains("tiny.onnx"), "{s}");
    assert!(
        s.contains("[1,3,32,32]") && s.contains("[1,3,416,416]"),
        "{s}"
    );
    assert!(s.contains("width/height/layout"), "{s}");
    // nhwc against an nchw graph
    let nhwc = SMALL
        .replace("height = 416", "height = 416\nlayout = \"nhwc\"")
        .replace("416", "32");
    let s = load_err(&manifest(dir.path(), "nhwc.toml", &nhwc), &file);
    assert!(s.contains("[1,32,32,3]"), "{s}");
    // uint8 declared, float32 graph
    let u8m = SMALL
        .replace("416", "32")
        .replace("width", "dtype = \"uint8\"\nnormalize = \"none\"\nwidth");
    let s = load_err(&manifest(dir.path(), "u8.toml", &u8m), &file);
    assert!(s.contains("uint8") && s.contains("dtype"), "{s}");
}

#[test]
fn wrong_names_and_class_count() {
    let dir = tempfile::tempdir().unwrap();
    let file = tiny_graph(dir.path(), "tiny.onnx", 32, 3);
    let base = SMALL.replace("416", "32");
    let s = load_err(
        &manifest(
            dir.path(),
            "a.toml",
            &base.replace("\"images\"", "\"input\""),
        ),
        &file,
    );
    assert!(
        s.contains("no input named `input`") && s.contains("images"),
        "{s}"
    );
    let s = load_err(
        &manifest(
            dir.path(),
            "b.toml",
            &base.replace("scores = \"scores\"", "scores = \"probs\""),
        ),
        &file,
    );
    assert!(
        s.contains("no output named `probs`") && s.contains("boxes, scores"),
        "{s}"
    );
    let s = load_err(&manifest(dir.path(), "c.toml", &base), &file);
    assert!(s.contains("3 classes") && s.contains("2 labels"), "{s}");
}

#[test]
fn manifest_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = |name: &str, text: &str| -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let e = ModelManifest::load(&p).unwrap_err();
        assert!(matches!(e, DetectError::Manifest { .. }));
        let s = e.to_string();
        assert!(s.contains(name), "{s}");
        eprintln!("{s}");
        s
    };
    let s = bad("dec.toml", &SMALL.replace("yolo_boxes_scores", "yolov9"));
    assert!(
        s.contains("yolov9") && s.contains("yolo_boxes_scores") && s.contains("ssd"),
        "{s}"
    );
    let s = bad("typo.toml", &SMALL.replace("width = 416", "widht = 416"));
    assert!(s.contains("widht"), "{s}");
    let s = bad("noscores.toml", &SMALL.replace("scores = \"scores\"", ""));
    assert!(
        s.contains("output.scores") && s.contains("yolo_boxes_scores"),
        "{s}"
    );
    let s = bad(
        "u8.toml",
        &SMALL.replace("width", "dtype = \"uint8\"\nwidth"),
    );
    assert!(s.contains("normalize"), "{s}");
    let s = bad(
        "sha.toml",
        &SMALL.replace("name = \"t\"", "name = \"t\"\nsha256 = \"abc\""),
    );
    assert!(s.contains("64 hex"), "{s}");
    let s = bad(
        "labels.toml",
        &SMALL.replace("names = [\"a\", \"b\"]", "file = \"nope.names\""),
    );
    assert!(s.contains("nope.names"), "{s}");
    // labels from a file, one per line
    std::fs::write(dir.path().join("x.names"), "cat\n\ndog\n").unwrap();
    let m = manifest(
        dir.path(),
        "ok.toml",
        &SMALL.replace("names = [\"a\", \"b\"]", "file = \"x.names\""),
    );
    assert_eq!(m.labels, ["cat", "dog"]);
}

#[test]
fn find_manifest_by_id_and_path() {
    let p = find_manifest("yolov3-tiny-coco").unwrap();
    assert!(p.ends_with("models/yolov3-tiny.toml"), "{}", p.display());
    let by_path = repo().join("models/yolov3-tiny.toml");
    assert_eq!(find_manifest(by_path.to_str().unwrap()).unwrap(), by_path);
    let s = find_manifest("no-such-model").unwrap_err().to_string();
    assert!(
        s.contains("no-such-model") && s.contains("yolov3-tiny-coco"),
        "{s}"
    );
    assert!(find_manifest("/nope/x.toml").is_err());
}

#[test]
fn missing_runtime_library() {
    let bad = Path::new("/nonexistent/libonnxruntime.so");
    assert_eq!(
        runtime::locate(Some(bad)),
        None,
        "an explicit path is not replaced by another"
    );
    let s = runtime::resolve(Some(bad)).unwrap_err().to_string();
    assert!(
        s.contains("ONNX Runtime library not found")
            && s.contains("/nonexistent/libonnxruntime.so"),
        "{s}"
    );
    assert!(
        s.contains("run scripts/fetch-model") && s.contains("[detect] onnxruntime"),
        "{s}"
    );
    // the default search finds the vendored library
    let found = runtime::locate(None).expect("run scripts/fetch-model");
    assert!(found.ends_with("libonnxruntime.so"), "{}", found.display());
    let info = require_runtime();
    let minor: u32 = info.version.split('.').nth(1).unwrap().parse().unwrap();
    assert!(minor >= 31, "{}", info.version);
    // init is once per process: the same info again
    assert_eq!(runtime::init(None).unwrap(), info);
}

#[test]
fn errors_keep_their_cause_typed() {
    use crate::detect::decode::{self, DecodeError, Geometry, View};
    use crate::detect::manifest::BoxFormat;
    use crate::detect::ManifestError;
    let g = Geometry {
        format: BoxFormat::CxcywhNormalized,
        in_w: 416.0,
        in_h: 416.0,
    };
    let t = View {
        shape: &[1, 10, 4],
        data: &[0.0; 40],
    };
    let e = decode::yolov5(t, g, 0.5, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::Layout {
                family: "yolov5",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "yolov5 output has shape [1, 10, 4], expected [1,N,5+C]"
    );

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("iou.toml");
    std::fs::write(
        &p,
        SMALL.replace("[labels]", "iou_threshold = 2.0\n[labels]"),
    )
    .unwrap();
    let e = ModelManifest::load(&p).unwrap_err();
    assert!(
        matches!(
            &e,
            DetectError::Manifest { path, source: ManifestError::IouThreshold(v) }
                if path == &p && *v == 2.0
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .ends_with("output.iou_threshold 2 not in (0, 1]"),
        "{e}"
    );
}
