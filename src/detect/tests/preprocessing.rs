//! Preprocessing seen through the model: graphs echo their input (Identity), so the tensor that
//! ONNX Runtime received is compared with the frame, for each layout, colour order, normalization,
//! padded rows and letterbox.

use super::*;
use crate::detect::RgbFrame;

/// A w x h frame with row padding; pixel (x, y) = (x*10+y, 100+x+y, 200-y) (distinct channels).
fn frame(w: usize, h: usize, pad: usize) -> (Vec<u8>, usize) {
    let stride = w * 3 + pad;
    let mut d = vec![0xEE; stride * h]; // padding bytes must never show up
    for y in 0..h {
        for x in 0..w {
            let o = y * stride + x * 3;
            d[o..o + 3].copy_from_slice(&[
                (x * 10 + y) as u8,
                (100 + x + y) as u8,
                (200 - y) as u8,
            ]);
        }
    }
    (d, stride)
}

fn px(x: usize, y: usize) -> [f32; 3] {
    [(x * 10 + y) as f32, (100 + x + y) as f32, (200 - y) as f32]
}

/// Manifest + identity graph (plus the constant outputs a yolo_boxes_scores manifest needs).
fn echo_detector(dir: &Path, input: &str, dtype: &str, shape: Value) -> Detector {
    let file = dir.join("echo.onnx");
    make_graphs(json!([graph(
        &file,
        "images",
        dtype,
        shape,
        vec![
            json!({"name": "echo", "identity": true}),
            constant("boxes", "float32", &[1, 1, 4], &[0.5, 0.5, 0.5, 0.5]),
            constant("scores", "float32", &[1, 1, 1], &[0.9]),
        ],
    )]));
    let text = format!(
        r#"id = "test-echo"
name = "echo"
file = "echo.onnx"
[input]
name = "images"
{input}
[output]
decoder = "yolo_boxes_scores"
boxes = "boxes"
scores = "scores"
[labels]
names = ["thing"]
"#
    );
    load(&manifest(dir, "echo.toml", &text), &file)
}

fn echo(d: &mut Detector, f: &RgbFrame) -> (Vec<i64>, Vec<f32>) {
    let outs = d.run_raw(f);
    let (_, shape, data) = outs.into_iter().find(|(n, _, _)| n == "echo").unwrap();
    (shape, data)
}

#[test]
fn nchw_rgb_div255_padded_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (6, 4);
    let mut d = echo_detector(
        dir.path(),
        "width = 6\nheight = 4",
        "float32",
        json!([1, 3, 4, 6]),
    );
    let (data, stride) = frame(w, h, 2);
    let (shape, t) = echo(
        &mut d,
        &RgbFrame {
            width: 6,
            height: 4,
            stride,
            data: &data,
        },
    );
    assert_eq!(shape, [1, 3, 4, 6]);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let got = t[c * w * h + y * w + x];
                assert_eq!(got, px(x, y)[c] / 255.0, "c{c} x{x} y{y}");
            }
        }
    }
    // the buffer is reused: a second, different frame fully replaces the first
    let other = vec![255u8; w * h * 3];
    let (_, t) = echo(&mut d, &RgbFrame::packed(6, 4, &other));
    assert!(t.iter().all(|&v| v == 1.0));
}

#[test]
fn nhwc_bgr_imagenet() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (5, 3);
    let mut d = echo_detector(
        dir.path(),
        "width = 5\nheight = 3\nlayout = \"nhwc\"\ncolor = \"bgr\"\nnormalize = \"imagenet\"",
        "float32",
        json!([1, 3, 5, 3]),
    );
    let (data, stride) = frame(w, h, 0);
    let (_, t) = echo(
        &mut d,
        &RgbFrame {
            width: 5,
            height: 3,
            stride,
            data: &data,
        },
    );
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let rgb = 2 - c; // tensor channel 0 is blue
                let want = (px(x, y)[rgb] / 255.0 - mean[rgb]) / std[rgb];
                assert_close(t[(y * w + x) * 3 + c], want, &format!("x{x} y{y} c{c}"));
            }
        }
    }
}

#[test]
fn uint8_nchw_bgr_and_dynamic_dims() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (4, 2);
    // dynamic batch/height/width dims are accepted; the manifest size is fed
    let mut d = echo_detector(
        dir.path(),
        "width = 4\nheight = 2\ndtype = \"uint8\"\nnormalize = \"none\"\ncolor = \"bgr\"",
        "uint8",
        json!(["N", 3, "H", "W"]),
    );
    let (data, stride) = frame(w, h, 4);
    let (shape, t) = echo(
        &mut d,
        &RgbFrame {
            width: 4,
            height: 2,
            stride,
            data: &data,
        },
    );
    assert_eq!(shape, [1, 3, 2, 4]);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                assert_eq!(t[c * w * h + y * w + x], px(x, y)[2 - c]);
            }
        }
    }
}

#[test]
fn letterbox_pads_and_maps_boxes_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lb.onnx");
    // one yolov8 box (input pixels) at the centre of the 64x64 input; echo shows the padding
    make_graphs(json!([graph(
        &file,
        "images",
        "float32",
        json!([1, 3, 64, 64]),
        vec![
            json!({"name": "echo", "identity": true}),
            constant(
                "output0",
                "float32",
                &[1, 5, 1],
                &[32.0, 32.0, 16.0, 16.0, 0.8]
            ),
        ],
    )]));
    let m = manifest(
        dir.path(),
        "lb.toml",
        r#"
id = "test-letterbox"
name = "t"
file = "lb.onnx"
[input]
name = "images"
width = 64
height = 64
resize = "letterbox"
[output]
decoder = "yolov8"
tensor = "output0"
[labels]
names = ["thing"]
"#,
    );
    let mut d = load(&m, &file);
    assert_eq!(d.frame_size_for(1280, 720), (64, 36));
    assert_eq!(d.frame_size_for(720, 1280), (36, 64));
    assert_eq!(d.frame_size_for(500, 500), (64, 64));
    let img = vec![255u8; 64 * 32 * 3];
    let f = RgbFrame::packed(64, 32, &img);
    let (dets, _) = d.detect(&f, 0.25).unwrap();
    // the 64x32 frame sits at rows 16..48: box rows 24..40 are frame rows 8..24 of 32
    assert_eq!(dets.len(), 1);
    let b = dets[0].bbox;
    for (a, want) in [(b.x, 0.375), (b.y, 0.25), (b.w, 0.25), (b.h, 0.5)] {
        assert_close(a, want, &format!("{b:?}"));
    }
    let (_, t) = echo(&mut d, &f);
    let pad = 114.0 / 255.0;
    for c in 0..3 {
        for (y, want) in [
            (0, pad),
            (15, pad),
            (16, 1.0),
            (47, 1.0),
            (48, pad),
            (63, pad),
        ] {
            assert_eq!(t[c * 4096 + y * 64 + 10], want, "c{c} row {y}");
        }
    }
    // a frame that does not fit is refused with the reason
    let big = vec![0u8; 64 * 65 * 3];
    let e = d
        .detect(&RgbFrame::packed(64, 65, &big), 0.25)
        .unwrap_err()
        .to_string();
    assert!(e.contains("test-letterbox") && e.contains("64x65"), "{e}");
}

#[test]
fn wrong_frame_size_is_an_inference_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = echo_detector(
        dir.path(),
        "width = 8\nheight = 8",
        "float32",
        json!([1, 3, 8, 8]),
    );
    let img = vec![0u8; 10 * 10 * 3];
    let e = d.detect(&RgbFrame::packed(10, 10, &img), 0.5).unwrap_err();
    assert!(
        matches!(e, crate::detect::DetectError::Inference { .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("test-echo") && msg.contains("10x10") && msg.contains("8x8"),
        "{msg}"
    );
    // a truncated buffer too
    let short = vec![0u8; 8 * 8 * 3 - 1];
    assert!(d.detect(&RgbFrame::packed(8, 8, &short), 0.5).is_err());
}
