//! `vidgest check`: the config file, then the environment it needs. Exit 0 only when both pass.

use std::path::Path;
use std::process::ExitCode;
use vidgest::capture::{check_elements, required_elements};
use vidgest::config::{
    bind_api_listener, CameraConfig, Config, ConfigError, ListenError, RtspBackend, SourceKind,
};

pub fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(ConfigError::Invalid { problems, .. }) => {
            eprintln!("{}: {} problem(s)", path.display(), problems.len());
            for p in problems {
                eprintln!("  {p}");
            }
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    // The same bind `run` does first (released at once).
    match bind_api_listener(&config.api.listen) {
        Ok(listener) => drop(listener),
        // Only a warning: `check` may run beside the vidgest it is about to replace.
        Err(ListenError::InUse { addr }) => warnings.push(format!(
            "api.listen: {addr} is in use (is vidgest already running?); `run` fails until it is free"
        )),
        Err(e) => problems.push(format!("api.listen: {e}")),
    }
    let needs: Vec<Vec<&str>> = config.cameras.iter().map(required_elements).collect();
    // Cameras on retina without detection need no GStreamer at all.
    if needs.iter().any(|n| !n.is_empty()) {
        if let Err(e) = gstreamer::init() {
            problems.push(format!(
                "GStreamer cannot start: {e}; run scripts/bootstrap"
            ));
        } else {
            for (i, need) in needs.iter().enumerate() {
                let missing = check_elements(need);
                if !missing.is_empty() {
                    problems.push(format!(
                        "camera[{i}].source: GStreamer elements missing: {} (install the GStreamer plugin packages; scripts/bootstrap does)",
                        missing.join(", ")
                    ));
                }
            }
        }
    }
    for (i, cam) in config.cameras.iter().enumerate() {
        match cam.source.kind {
            SourceKind::File => {
                if let Some(p) = &cam.source.path {
                    if !p.is_file() {
                        problems.push(format!(
                            "camera[{i}].source.path: {} does not exist",
                            p.display()
                        ));
                    }
                }
            }
            SourceKind::V4l2 => {
                if let Some(d) = &cam.source.device {
                    if !d.exists() {
                        problems.push(format!(
                            "camera[{i}].source.device: {} does not exist",
                            d.display()
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    // The certificate and key as `run` loads them (messages name api.tls_cert / api.tls_key).
    if let Some(files) = vidgest::api::TlsFiles::from_config(&config.api) {
        if let Err(e) = files.load() {
            problems.push(e.to_string());
        }
    }
    problems.extend(detection_problems(&config));
    if let Err(e) = check_writable(&config.agent.data_dir) {
        problems.push(format!(
            "agent.data_dir: {} is not writable: {e}",
            config.agent.data_dir.display()
        ));
    }
    warnings.extend(disk_warning(&config));
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    for cam in &config.cameras {
        println!("{}", backend_line(cam));
    }
    if problems.is_empty() {
        println!(
            "{}: ok ({} camera(s), data in {})",
            path.display(),
            config.cameras.len(),
            config.agent.data_dir.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{}: {} problem(s)", path.display(), problems.len());
        for p in problems {
            eprintln!("  {p}");
        }
        Ok(ExitCode::from(1))
    }
}

/// `camera NAME: rtsp via retina, GStreamer: none` — what receives a camera's video and which
/// GStreamer elements it needs (shared by `check` and `doctor`).
pub fn backend_line(cam: &CameraConfig) -> String {
    let kind = match cam.source.kind {
        SourceKind::Rtsp => "rtsp",
        SourceKind::File => "file",
        SourceKind::V4l2 => "v4l2",
        SourceKind::Test => "test",
    };
    let backend = match cam.source.backend() {
        RtspBackend::Retina => "retina",
        RtspBackend::Gstreamer => "gstreamer",
    };
    let need = required_elements(cam);
    let gst = if need.is_empty() {
        "none".to_string()
    } else {
        need.join(" ")
    };
    format!(
        "camera {}: {kind} via {backend}, GStreamer: {gst}",
        cam.name
    )
}

fn check_writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(".vidgest-write-test");
    std::fs::write(&probe, b"ok")?;
    std::fs::remove_file(&probe)
}

/// ONNX Runtime and every model a camera with detection uses: loadable, right shape.
fn detection_problems(config: &Config) -> Vec<String> {
    let users: Vec<(usize, &str)> = config
        .cameras
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            c.detection()
                .map(|d| (i, d.model.as_deref().unwrap_or(&config.detect.model)))
        })
        .collect();
    if users.is_empty() {
        return Vec::new();
    }
    if let Err(e) = vidgest::detect::runtime::init(config.detect.onnxruntime.as_deref()) {
        return vec![format!(
            "detect.onnxruntime: {e} (recording still works; detection stays off)"
        )];
    }
    let mut problems = Vec::new();
    let mut checked = std::collections::HashMap::new();
    for (i, model) in users {
        let outcome = checked.entry(model.to_string()).or_insert_with(|| {
            vidgest::detect::find_manifest(model)
                .and_then(|p| vidgest::detect::ModelManifest::load(&p))
                .and_then(|m| {
                    let file = m.resolve_model(m.dir())?;
                    vidgest::detect::Detector::load(&m, &file, 1).map(|_| ())
                })
                .map_err(|e| e.to_string())
        });
        if let Err(e) = outcome {
            problems.push(format!("camera[{i}].detect: {e}"));
        }
    }
    problems
}

/// `storage.min_free` against the file system the data dir lives on: a reserve as large as the
/// disk leaves retention nothing to keep recording with.
fn disk_warning(config: &Config) -> Option<String> {
    use vidgest::store::{existing_ancestor, DiskSpace, Statvfs};
    let min_free = config.storage.min_free?.0;
    let dir = existing_ancestor(&config.agent.data_dir)?;
    let total = Statvfs.total(dir).ok()?;
    (min_free >= total / 2).then(|| {
        format!(
            "storage.min_free: {} is {} of the {} file system under {}: retention keeps deleting \
             video to hold it free, and recording stops once it cannot; leave it unset to keep 5 % \
             free (at most 512MiB)",
            vidgest::config::format_bytes(min_free),
            if min_free >= total {
                "more than all"
            } else {
                "over half"
            },
            vidgest::config::format_bytes(total),
            dir.display()
        )
    })
}
