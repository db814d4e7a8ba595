use std::path::PathBuf;

/// Errors of the detect module. Each names the model (manifest id) and, where one is involved, the
/// file, and says what to do; none depends on a camera (the caller adds the camera name).
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// ONNX Runtime library missing, unloadable or too old; the message says how to fix it.
    #[error("{0}")]
    Runtime(String),
    #[error("model manifest {}: {msg}", path.display())]
    Manifest { path: PathBuf, msg: String },
    #[error(
        "model {model}: model file `{file}` not found (looked in {}): run scripts/fetch-model, or set `file` in the manifest to the model's path",
        list(looked_in)
    )]
    ModelMissing {
        model: String,
        file: String,
        looked_in: Vec<PathBuf>,
    },
    /// Corrupt file, checksum mismatch, input/output layout not as the manifest says.
    #[error("model {model} ({}): {msg}", file.display())]
    Model {
        model: String,
        file: PathBuf,
        msg: String,
    },
    #[error("model {model}: inference failed: {msg}")]
    Inference { model: String, msg: String },
    #[error("image {}: {msg}", path.display())]
    Image { path: PathBuf, msg: String },
}

pub(crate) fn list(paths: &[PathBuf]) -> String {
    let v: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    v.join(", ")
}
