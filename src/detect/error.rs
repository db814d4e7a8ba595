use super::decode::DecodeError;
use super::manifest::Layout;
use super::preprocess::PreprocessError;
use std::path::PathBuf;

/// Errors of the detect module. Each names the model (manifest id) and, where one is involved, the
/// file, and says what to do; none depends on a camera (the caller adds the camera name).
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// ONNX Runtime library missing, unloadable or too old; the message says how to fix it.
    #[error("{0}")]
    Runtime(String),
    #[error("model manifest {}: {source}", path.display())]
    Manifest {
        path: PathBuf,
        source: ManifestError,
    },
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
    #[error("model {model} ({}): {source}", file.display())]
    Model {
        model: String,
        file: PathBuf,
        // boxed: the variant would make every Result<_, DetectError> large
        source: Box<ModelError>,
    },
    #[error("model {model}: inference failed: {source}")]
    Inference {
        model: String,
        source: InferenceError,
    },
    #[error("image {}: {source}", path.display())]
    Image {
        path: PathBuf,
        source: super::image::ImageError,
    },
}

pub(crate) fn list(paths: &[PathBuf]) -> String {
    let v: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    v.join(", ")
}

/// What went wrong running one frame through a model.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error(transparent)]
    Runtime(#[from] ort::Error),
    #[error("output {0} missing")]
    MissingOutput(String),
    #[error("output {name}: output of type {dtype} is not a float or integer tensor")]
    OutputType { name: String, dtype: String },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A model file that cannot be used: unreadable, not the pinned file, not loadable, or inputs
/// and outputs that differ from its manifest (each names the manifest key to fix).
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("sha256 is {got}, but manifest {} says {want}: the file is damaged or another model; run scripts/fetch-model (or, if you replaced the model on purpose, update sha256 in the manifest)", manifest.display())]
    Checksum {
        got: String,
        want: String,
        manifest: PathBuf,
    },
    #[error("ONNX Runtime cannot load it ({0}): is it a complete .onnx file? run scripts/fetch-model or check `file` in the manifest")]
    Load(ort::Error),
    #[error("has no input named `{name}` (its inputs: {}): fix [input] name in {}", inputs.join(", "), manifest.display())]
    NoInput {
        name: String,
        inputs: Vec<String>,
        manifest: PathBuf,
    },
    #[error("has {} inputs ({}); only single-input models are supported", inputs.len(), inputs.join(", "))]
    ManyInputs { inputs: Vec<String> },
    #[error("input `{name}` has shape {}, but the manifest says {} ({}, {width}x{height}): fix [input] width/height/layout in {}", dims(have), dims(want), format!("{layout:?}").to_lowercase(), manifest.display())]
    InputShape {
        name: String,
        have: Box<[i64]>,
        want: Box<[i64]>,
        layout: Layout,
        width: u32,
        height: u32,
        manifest: PathBuf,
    },
    #[error("input `{name}` is {have}, but the manifest says {want}: fix [input] dtype in {}", manifest.display())]
    InputType {
        name: String,
        have: String,
        want: String,
        manifest: PathBuf,
    },
    #[error("has no output named `{name}` (its outputs: {}): fix output.{key} in {}", outputs.join(", "), manifest.display())]
    NoOutput {
        name: String,
        key: &'static str,
        outputs: Vec<String>,
        manifest: PathBuf,
    },
    #[error("the model has {have} classes but the manifest lists {labels} labels: fix [labels] in {}", manifest.display())]
    Classes {
        have: i64,
        labels: i64,
        manifest: PathBuf,
    },
}

/// A tensor shape with unknown dimensions as `?`, e.g. `[1,3,?,?]`.
pub(crate) fn dims(shape: &[i64]) -> String {
    let v: Vec<String> = shape
        .iter()
        .map(|&d| if d < 0 { "?".into() } else { d.to_string() })
        .collect();
    format!("[{}]", v.join(","))
}

/// A manifest that cannot be found, read or used; the path is in [`DetectError::Manifest`].
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("no such file")]
    NoSuchFile,
    #[error("no model manifest with id \"{id}\" in {} (known ids: {}); give a manifest path or an id from models/", list(searched), if known.is_empty() { "none".to_string() } else { known.join(", ") })]
    UnknownId {
        id: String,
        searched: Vec<PathBuf>,
        known: Vec<String>,
    },
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    // toml's message ends in a newline
    #[error("{}", .0.to_string().trim_end())]
    Toml(toml::de::Error),
    #[error("labels.file {}: {source}", path.display())]
    LabelsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("[labels] needs exactly one of `names` or `file`")]
    LabelsChoice,
    #[error("[labels] is empty")]
    LabelsEmpty,
    #[error("id {0:?} must be non-empty without spaces")]
    Id(String),
    #[error("sha256 {0:?} is not 64 hex digits")]
    Sha256(String),
    #[error("input size {0}x{1} out of range")]
    InputSize(u32, u32),
    #[error("input.dtype = \"uint8\" needs input.normalize = \"none\"")]
    Uint8Normalize,
    #[error("output.{key} (a tensor name) is required by decoder {decoder}")]
    MissingOutputName {
        key: &'static str,
        decoder: &'static str,
    },
    #[error("output.iou_threshold {0} not in (0, 1]")]
    IouThreshold(f32),
}
