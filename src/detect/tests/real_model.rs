//! The shipped model (vendor/models/yolov3-tiny.onnx) on the darknet sample photos, decoded and
//! scaled by GStreamer as on the live path.

use super::*;
use crate::detect::{doctor_report, find_manifest, load_image_rgb, Detection, RgbFrame, Timings};
use std::time::Duration;

fn default_model() -> (ModelManifest, PathBuf) {
    require_runtime();
    let m = ModelManifest::load(&find_manifest("yolov3-tiny-coco").unwrap()).unwrap();
    let file = m.resolve_model(m.dir()).unwrap_or_else(|e| panic!("{e}"));
    (m, file)
}

fn photo(name: &str) -> Vec<u8> {
    let p = repo().join("vendor/darknet").join(name);
    assert!(
        p.is_file(),
        "{} missing: run scripts/bootstrap",
        p.display()
    );
    load_image_rgb(&p, 416, 416).unwrap_or_else(|e| panic!("{e}"))
}

fn show(name: &str, dets: &[Detection], t: &Timings) {
    eprintln!(
        "{name}: preprocess {:?}, inference {:?}, postprocess {:?}",
        t.preprocess, t.inference, t.postprocess
    );
    for d in dets {
        eprintln!("  {:<12} {:.3} {:?}", d.label, d.score, d.bbox);
    }
}

fn best<'a>(dets: &'a [Detection], label: &str) -> &'a Detection {
    dets.iter()
        .find(|d| d.label == label)
        .unwrap_or_else(|| panic!("no {label} in {dets:#?}"))
}

#[test]
fn dog_jpg() {
    let (m, file) = default_model();
    let mut d = Detector::load(&m, &file, 1).unwrap();
    assert_eq!(d.input_size(), (416, 416));
    assert_eq!(d.model_id(), "yolov3-tiny-coco");
    let img = photo("dog.jpg");
    let (dets, t) = d.detect(&RgbFrame::packed(416, 416, &img), 0.25).unwrap();
    show("dog.jpg", &dets, &t);
    for (label, want) in [("dog", 0.782), ("truck", 0.673), ("car", 0.623)] {
        let got = best(&dets, label).score;
        assert!((got - want).abs() <= 0.08, "{label}: {got} vs {want}");
    }
    // the dog sits in the lower left, the truck upper right (darknet's well-known picture)
    let dog = best(&dets, "dog").bbox;
    assert!(
        dog.x + dog.w / 2.0 < 0.5 && dog.y + dog.h / 2.0 > 0.5,
        "{dog:?}"
    );
    let truck = best(&dets, "truck").bbox;
    assert!(
        truck.x + truck.w / 2.0 > 0.5 && truck.y + truck.h / 2.0 < 0.5,
        "{truck:?}"
    );
    assert!(
        dets.windows(2).all(|w| w[0].score >= w[1].score),
        "sorted by score"
    );
}

#[test]
fn person_jpg() {
    let (m, file) = default_model();
    let mut d = Detector::load(&m, &file, 1).unwrap();
    let img = photo("person.jpg");
    let (dets, t) = d.detect(&RgbFrame::packed(416, 416, &img), 0.25).unwrap();
    show("person.jpg", &dets, &t);
    assert!(best(&dets, "person").score >= 0.9, "{dets:#?}");
    assert!(dets.iter().any(|d| d.label == "dog"), "{dets:#?}");
}

/// Median timings over repeated runs (debug build of vidgest, optimized dependencies); rerun with
/// `cargo test --release --lib detect::tests::real_model::timings -- --nocapture` for release numbers.
#[test]
fn timings() {
    let (m, file) = default_model();
    let mut d = Detector::load(&m, &file, 1).unwrap();
    let img = photo("horses.jpg");
    let f = RgbFrame::packed(416, 416, &img);
    d.detect(&f, 0.25).unwrap(); // warm-up
    let mut all: Vec<Timings> = (0..7).map(|_| d.detect(&f, 0.25).unwrap().1).collect();
    let median = |k: fn(&Timings) -> Duration, all: &mut Vec<Timings>| {
        all.sort_by_key(k);
        k(&all[all.len() / 2])
    };
    let pre = median(|t| t.preprocess, &mut all);
    let inf = median(|t| t.inference, &mut all);
    let post = median(|t| t.postprocess, &mut all);
    eprintln!(
        "yolov3-tiny 416, 1 intra thread, median of 7 ({}): preprocess {pre:?}, inference {inf:?}, postprocess {post:?}",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    let (dets, _) = d.detect(&f, 0.25).unwrap();
    assert!(
        dets.iter().filter(|d| d.label == "horse").count() >= 3,
        "{dets:#?}"
    );
}

#[test]
fn doctor() {
    default_model();
    let r = doctor_report(None, "yolov3-tiny-coco");
    eprintln!("{r}");
    assert!(!r.contains("FAIL"), "{r}");
    assert!(
        r.contains("onnx runtime: 1.") && r.contains("libonnxruntime.so"),
        "{r}"
    );
    assert!(
        r.contains("yolov3-tiny-coco") && r.contains("(matches the manifest)"),
        "{r}"
    );
    assert!(r.contains("test inference: ok"), "{r}");
    let r = doctor_report(None, "nope");
    assert!(r.contains("FAIL") && r.contains("nope"), "{r}");
}

#[test]
fn image_errors() {
    let e = load_image_rgb(Path::new("/nonexistent.jpg"), 8, 8)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/nonexistent.jpg") && e.contains("no such file"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("junk.jpg");
    std::fs::write(&p, b"this is not a jpeg at all").unwrap();
    let e = load_image_rgb(&p, 8, 8).unwrap_err().to_string();
    assert!(e.contains("junk.jpg"), "{e}");
    // odd sizes come back tightly packed (GStreamer pads rows to 4 bytes internally)
    let img = load_image_rgb(&repo().join("vendor/darknet/kite.jpg"), 33, 17).unwrap();
    assert_eq!(img.len(), 33 * 17 * 3);
}
