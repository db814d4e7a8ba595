//! `vidgest doctor` section for detection: runtime, manifest, model file and a test inference.

use super::{find_manifest, manifest::file_sha256, runtime, Detector, ModelManifest, RgbFrame};
use std::fmt::Write;
use std::path::Path;

/// Human-readable report: ONNX Runtime version and library path, the model's id, manifest, file,
/// sha256 check, and one inference on a grey frame. Problems are reported inline ("FAIL: ...")
/// with the fix; the report itself never fails.
pub fn doctor_report(explicit_runtime: Option<&Path>, model: &str) -> String {
    let mut r = String::new();
    let rt_ok = match runtime::init(explicit_runtime) {
        Ok(info) => {
            let _ = writeln!(
                r,
                "onnx runtime: {} ({})",
                info.version,
                info.library.display()
            );
            true
        }
        Err(e) => {
            let _ = writeln!(r, "onnx runtime: FAIL: {e}");
            false
        }
    };
    let manifest = match find_manifest(model).and_then(|p| ModelManifest::load(&p)) {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(r, "model {model}: FAIL: {e}");
            return r;
        }
    };
    let _ = writeln!(r, "model: {} ({})", manifest.id, manifest.name);
    let _ = writeln!(r, "  manifest: {}", manifest.path.display());
    let file = match manifest.resolve_model(manifest.dir()) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(r, "  file: FAIL: {e}");
            return r;
        }
    };
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let _ = writeln!(r, "  file: {} ({size} bytes)", file.display());
    let sha_ok = match (&manifest.sha256, file_sha256(&file)) {
        (_, Err(e)) => {
            let _ = writeln!(r, "  sha256: FAIL: cannot read the file: {e}");
            false
        }
        (Some(want), Ok(got)) if *want == got => {
            let _ = writeln!(r, "  sha256: {got} (matches the manifest)");
            true
        }
        (Some(want), Ok(got)) => {
            let _ = writeln!(
                r,
                "  sha256: FAIL: {got}, manifest says {want}: run scripts/fetch-model"
            );
            false
        }
        (None, Ok(got)) => {
            let _ = writeln!(r, "  sha256: {got} (not pinned in the manifest)");
            true
        }
    };
    let i = &manifest.input;
    let _ = writeln!(
        r,
        "  input: {} {}x{} {}; decoder {}; {} labels",
        i.name,
        i.width,
        i.height,
        format!(
            "{:?} {:?} {:?} {:?} {:?}",
            i.layout, i.dtype, i.color, i.normalize, i.resize
        )
        .to_lowercase(),
        manifest.output.decoder.name(),
        manifest.labels.len()
    );
    if !(rt_ok && sha_ok) {
        return r;
    }
    match Detector::load(&manifest, &file, 1) {
        Ok(mut d) => {
            let (w, h) = d.input_size();
            let grey = vec![128u8; w as usize * h as usize * 3];
            match d.detect(&RgbFrame::packed(w, h, &grey), 0.5) {
                Ok((_, t)) => {
                    let _ = writeln!(
                        r,
                        "  test inference: ok ({:.1} ms on 1 thread, first run)",
                        t.total().as_secs_f64() * 1e3
                    );
                }
                Err(e) => {
                    let _ = writeln!(r, "  test inference: FAIL: {e}");
                }
            }
        }
        Err(e) => {
            let _ = writeln!(r, "  load: FAIL: {e}");
        }
    }
    r
}
