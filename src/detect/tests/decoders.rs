//! Every decoder on a generated graph whose outputs are constants, so results are known exactly.

use super::*;
use crate::detect::{BBox, Detection, RgbFrame};

fn grey(w: u32, h: u32) -> Vec<u8> {
    vec![100; (w * h * 3) as usize]
}

fn check(dets: &[Detection], want: &[(&str, u32, f32, [f32; 4])]) {
    let got: Vec<String> = dets
        .iter()
        .map(|d| format!("{} {} {:.4} {:?}", d.label, d.class_id, d.score, d.bbox))
        .collect();
    assert_eq!(dets.len(), want.len(), "detections: {got:#?}");
    for (d, (label, class, score, [x, y, w, h])) in dets.iter().zip(want) {
        assert_eq!((d.label.as_str(), d.class_id), (*label, *class), "{got:#?}");
        assert_close(d.score, *score, "score");
        let BBox {
            x: bx,
            y: by,
            w: bw,
            h: bh,
        } = d.bbox;
        for (a, b) in [(bx, x), (by, y), (bw, w), (bh, h)] {
            assert_close(a, *b, &format!("bbox of {label}: {:?}", d.bbox));
        }
        assert!(d.zones.is_empty());
    }
}

#[test]
fn yolo_boxes_scores() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ybs.onnx");
    #[rustfmt::skip]
    let boxes = [
        0.5, 0.5, 0.2, 0.2,    // cat 0.9
        0.51, 0.5, 0.2, 0.2,   // cat 0.8, overlaps the first: suppressed
        0.51, 0.5, 0.2, 0.2,   // dog 0.7: other class, kept
        0.1, 0.1, 0.1, 0.1,    // bird 0.2: under 0.25
    ];
    #[rustfmt::skip]
    let scores = [
        0.1, 0.9, 0.0,
        0.0, 0.8, 0.0,
        0.7, 0.0, 0.0,
        0.0, 0.0, 0.2,
    ];
    make_graphs(json!([graph(
        &file,
        "images",
        "float32",
        json!([1, 3, 32, 32]),
        vec![
            constant("boxes", "float32", &[1, 4, 4], &boxes),
            constant("scores", "float32", &[1, 4, 3], &scores),
        ],
    )]));
    let m = manifest(
        dir.path(),
        "ybs.toml",
        r#"
id = "test-ybs"
name = "t"
file = "ybs.onnx"
[input]
name = "images"
width = 32
height = 32
[output]
decoder = "yolo_boxes_scores"
boxes = "boxes"
scores = "scores"
[labels]
names = ["dog", "cat", "bird"]
"#,
    );
    assert_eq!(
        m.model_path(dir.path()).unwrap(),
        file,
        "found next to the manifest"
    );
    let mut d = load(&m, &file);
    assert_eq!(d.model_id(), "test-ybs");
    assert_eq!(d.input_size(), (32, 32));
    let img = grey(32, 32);
    let (dets, t) = d.detect(&RgbFrame::packed(32, 32, &img), 0.25).unwrap();
    check(
        &dets,
        &[
            ("cat", 1, 0.9, [0.4, 0.4, 0.2, 0.2]),
            ("dog", 0, 0.7, [0.41, 0.4, 0.2, 0.2]),
        ],
    );
    assert!(t.inference > std::time::Duration::ZERO);
    let (dets, _) = d.detect(&RgbFrame::packed(32, 32, &img), 0.1).unwrap();
    assert_eq!(dets.len(), 3);
    check(&dets[2..], &[("bird", 2, 0.2, [0.05, 0.05, 0.1, 0.1])]);
}

#[test]
fn yolov5() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v5.onnx");
    #[rustfmt::skip]
    let t = [
        32.0, 32.0, 16.0, 16.0, 0.9, 0.5, 1.0,   // class 1: 0.9 * 1.0
        10.0, 10.0, 8.0, 8.0, 0.2, 1.0, 1.0,     // objectness 0.2: dropped
        48.0, 16.0, 8.0, 16.0, 0.8, 0.5, 0.25,   // class 0: 0.8 * 0.5
    ];
    make_graphs(json!([graph(
        &file,
        "images",
        "float32",
        json!([1, 3, 64, 64]),
        vec![constant("output0", "float32", &[1, 3, 7], &t)],
    )]));
    let m = manifest(
        dir.path(),
        "v5.toml",
        r#"
id = "test-v5"
name = "t"
file = "v5.onnx"
[input]
name = "images"
width = 64
height = 64
[output]
decoder = "yolov5"
tensor = "output0"
[labels]
names = ["person", "car"]
"#,
    );
    let mut d = load(&m, &file);
    let img = grey(64, 64);
    let (dets, _) = d.detect(&RgbFrame::packed(64, 64, &img), 0.25).unwrap();
    check(
        &dets,
        &[
            ("car", 1, 0.9, [0.375, 0.375, 0.25, 0.25]),
            ("person", 0, 0.4, [0.6875, 0.125, 0.125, 0.25]),
        ],
    );
}

#[test]
fn yolov8_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    // rows: cx, cy, w, h, score person, score car (3 boxes)
    #[rustfmt::skip]
    let rows = [
        [32.0, 32.0, 16.0, 16.0, 0.3, 0.6],
        [60.0, 60.0, 16.0, 16.0, 0.7, 0.1],   // crosses the frame's corner: clipped
        [20.0, 20.0, 4.0, 4.0, 0.1, 0.2],     // under threshold
    ];
    let transposed: Vec<f64> = rows.iter().flatten().copied().collect();
    let channels_first: Vec<f64> = (0..6)
        .flat_map(|c| rows.iter().map(move |r| r[c]))
        .collect();
    let (f1, f2) = (dir.path().join("v8.onnx"), dir.path().join("v8t.onnx"));
    make_graphs(json!([
        graph(
            &f1,
            "images",
            "float32",
            json!([1, 3, 64, 64]),
            vec![constant("output0", "float32", &[1, 6, 3], &channels_first)]
        ),
        graph(
            &f2,
            "images",
            "float32",
            json!([1, 3, 64, 64]),
            vec![constant("output0", "float32", &[1, 3, 6], &transposed)]
        ),
    ]));
    let text = |file: &str| {
        format!(
            r#"
id = "test-v8"
name = "t"
file = "{file}"
[input]
name = "images"
width = 64
height = 64
[output]
decoder = "yolov8"
tensor = "output0"
[labels]
names = ["person", "car"]
"#
        )
    };
    for (name, file) in [("v8.toml", &f1), ("v8t.toml", &f2)] {
        let m = manifest(
            dir.path(),
            name,
            &text(file.file_name().unwrap().to_str().unwrap()),
        );
        let mut d = load(&m, file);
        let img = grey(64, 64);
        let (dets, _) = d.detect(&RgbFrame::packed(64, 64, &img), 0.25).unwrap();
        check(
            &dets,
            &[
                ("person", 0, 0.7, [0.8125, 0.8125, 0.1875, 0.1875]),
                ("car", 1, 0.6, [0.375, 0.375, 0.25, 0.25]),
            ],
        );
    }
}

#[test]
fn ssd_uint8_nhwc_with_offset_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ssd.onnx");
    #[rustfmt::skip]
    let boxes = [
        0.1, 0.2, 0.5, 0.6,    // ymin, xmin, ymax, xmax
        0.1, 0.2, 0.5, 0.61,   // same class, overlapping: the graph did NMS, so kept
        0.5, 0.5, 0.9, 0.7,
        0.0, 0.0, 1.0, 1.0,    // past `count`: ignored
    ];
    make_graphs(json!([graph(
        &file,
        "input_tensor",
        "uint8",
        json!([1, 32, 32, 3]),
        vec![
            constant("detection_boxes", "float32", &[1, 4, 4], &boxes),
            constant("detection_classes", "int64", &[1, 4], &[1.0, 1.0, 3.0, 1.0]),
            constant(
                "detection_scores",
                "float32",
                &[1, 4],
                &[0.95, 0.5, 0.3, 0.99]
            ),
            constant("num_detections", "float32", &[1], &[3.0]),
        ],
    )]));
    let m = manifest(
        dir.path(),
        "ssd.toml",
        r#"
id = "test-ssd"
name = "t"
file = "ssd.onnx"
[input]
name = "input_tensor"
width = 32
height = 32
layout = "nhwc"
dtype = "uint8"
normalize = "none"
[output]
decoder = "ssd"
boxes = "detection_boxes"
classes = "detection_classes"
scores = "detection_scores"
count = "num_detections"
nms = true
class_offset = 1
[labels]
names = ["person", "bicycle", "car"]
"#,
    );
    let mut d = load(&m, &file);
    let img = grey(32, 32);
    let (dets, _) = d.detect(&RgbFrame::packed(32, 32, &img), 0.25).unwrap();
    check(
        &dets,
        &[
            ("person", 0, 0.95, [0.2, 0.1, 0.4, 0.4]),
            ("person", 0, 0.5, [0.2, 0.1, 0.41, 0.4]),
            ("car", 2, 0.3, [0.5, 0.5, 0.2, 0.4]),
        ],
    );
}
