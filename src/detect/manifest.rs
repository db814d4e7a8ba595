//! Model manifests (`models/*.toml`, schema in docs/models.md): how to feed a model and how to
//! read its outputs. Unknown keys are rejected so typos fail loudly.

use super::error::ManifestError;
use super::DetectError;
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    id: String,
    name: String,
    file: String,
    sha256: Option<String>,
    source: Option<String>,
    source_sha256: Option<String>,
    license: Option<String>,
    input: InputSpec,
    output: OutputSpec,
    labels: RawLabels,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabels {
    names: Option<Vec<String>>,
    file: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nchw,
    Nhwc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Float32,
    Uint8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    Div255,
    None,
    Imagenet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    Stretch,
    Letterbox,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub width: u32,
    pub height: u32,
    #[serde(default = "nchw")]
    pub layout: Layout,
    #[serde(default = "float32")]
    pub dtype: DType,
    #[serde(default = "rgb")]
    pub color: Color,
    #[serde(default = "div255")]
    pub normalize: Normalize,
    #[serde(default = "stretch")]
    pub resize: Resize,
    #[serde(default = "pad114")]
    pub letterbox_pad: u8,
}

fn nchw() -> Layout {
    Layout::Nchw
}
fn float32() -> DType {
    DType::Float32
}
fn rgb() -> Color {
    Color::Rgb
}
fn div255() -> Normalize {
    Normalize::Div255
}
fn stretch() -> Resize {
    Resize::Stretch
}
fn pad114() -> u8 {
    114
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecoderKind {
    YoloBoxesScores,
    Yolov5,
    Yolov8,
    Ssd,
}

impl DecoderKind {
    pub fn name(self) -> &'static str {
        match self {
            DecoderKind::YoloBoxesScores => "yolo_boxes_scores",
            DecoderKind::Yolov5 => "yolov5",
            DecoderKind::Yolov8 => "yolov8",
            DecoderKind::Ssd => "ssd",
        }
    }
    fn default_box_format(self) -> BoxFormat {
        match self {
            DecoderKind::YoloBoxesScores => BoxFormat::CxcywhNormalized,
            DecoderKind::Yolov5 | DecoderKind::Yolov8 => BoxFormat::CxcywhPixels,
            DecoderKind::Ssd => BoxFormat::YxyxNormalized,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxFormat {
    CxcywhNormalized,
    CxcywhPixels,
    XyxyNormalized,
    XyxyPixels,
    YxyxNormalized,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub decoder: DecoderKind,
    pub boxes: Option<String>,
    pub scores: Option<String>,
    pub classes: Option<String>,
    pub count: Option<String>,
    pub tensor: Option<String>,
    /// Default per decoder: cxcywh_normalized (yolo_boxes_scores), cxcywh_pixels (yolov5,
    /// yolov8), yxyx_normalized (ssd). Filled in by `ModelManifest::load`.
    pub box_format: Option<BoxFormat>,
    /// true: the graph already ran NMS.
    #[serde(default)]
    pub nms: bool,
    /// IoU threshold of the application's class-aware NMS.
    #[serde(default = "iou045")]
    pub iou_threshold: f32,
    #[serde(default)]
    pub class_offset: i64,
}

fn iou045() -> f32 {
    0.45
}

impl OutputSpec {
    pub fn box_format(&self) -> BoxFormat {
        self.box_format
            .unwrap_or_else(|| self.decoder.default_box_format())
    }
}

#[derive(Debug, Clone)]
pub struct ModelManifest {
    pub id: String,
    pub name: String,
    pub file: String,
    pub sha256: Option<String>,
    pub source: Option<String>,
    pub source_sha256: Option<String>,
    pub license: Option<String>,
    pub input: InputSpec,
    pub output: OutputSpec,
    /// Indexed by class id (after `class_offset`).
    pub labels: Vec<String>,
    /// Where the manifest was read from (empty for manifests built in code).
    pub path: PathBuf,
}

impl ModelManifest {
    pub fn load(path: &Path) -> Result<Self, DetectError> {
        let err = |source: ManifestError| DetectError::Manifest {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(ManifestError::Read(e)))?;
        let raw: Raw = toml::from_str(&text).map_err(|e| err(ManifestError::Toml(e)))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let labels = match (raw.labels.names, raw.labels.file) {
            (Some(n), None) => n,
            (None, Some(f)) => {
                let p = dir.join(&f);
                let t = std::fs::read_to_string(&p).map_err(|source| {
                    err(ManifestError::LabelsFile {
                        path: p.clone(),
                        source,
                    })
                })?;
                t.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            }
            _ => return Err(err(ManifestError::LabelsChoice)),
        };
        let m = ModelManifest {
            id: raw.id,
            name: raw.name,
            file: raw.file,
            sha256: raw.sha256.map(|s| s.to_ascii_lowercase()),
            source: raw.source,
            source_sha256: raw.source_sha256,
            license: raw.license,
            input: raw.input,
            output: raw.output,
            labels,
            path: path.to_path_buf(),
        };
        m.validate().map_err(err)?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        if self.id.is_empty() || self.id.chars().any(|c| c.is_whitespace()) {
            return Err(ManifestError::Id(self.id.clone()));
        }
        if let Some(s) = &self.sha256 {
            if s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ManifestError::Sha256(s.clone()));
            }
        }
        let i = &self.input;
        if !(1..=8192).contains(&i.width) || !(1..=8192).contains(&i.height) {
            return Err(ManifestError::InputSize(i.width, i.height));
        }
        if i.dtype == DType::Uint8 && i.normalize != Normalize::None {
            return Err(ManifestError::Uint8Normalize);
        }
        let o = &self.output;
        let need: &[(&'static str, &Option<String>)] = match o.decoder {
            DecoderKind::YoloBoxesScores => &[("boxes", &o.boxes), ("scores", &o.scores)],
            DecoderKind::Yolov5 | DecoderKind::Yolov8 => &[("tensor", &o.tensor)],
            DecoderKind::Ssd => &[
                ("boxes", &o.boxes),
                ("classes", &o.classes),
                ("scores", &o.scores),
            ],
        };
        for (key, v) in need {
            if v.is_none() {
                return Err(ManifestError::MissingOutputName {
                    key,
                    decoder: o.decoder.name(),
                });
            }
        }
        if !(o.iou_threshold > 0.0 && o.iou_threshold <= 1.0) {
            return Err(ManifestError::IouThreshold(o.iou_threshold));
        }
        if self.labels.is_empty() {
            return Err(ManifestError::LabelsEmpty);
        }
        Ok(())
    }

    /// The directory the manifest was read from.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Where the model file may be, in search order. A bare `file` name is looked up in
    /// vendor/models next to the manifest's models/ directory, next to the
    /// manifest, in `<exe>/../share/vidgest/models` and /usr/share/vidgest/models (the Debian
    /// package), and last (debug builds only) in the source tree's vendor/models; a path is
    /// taken relative to the manifest (or as is when absolute).
    pub fn model_candidates(&self, manifest_dir: &Path) -> Vec<PathBuf> {
        let f = Path::new(&self.file);
        if f.components().count() > 1 || f.is_absolute() {
            return vec![manifest_dir.join(f)];
        }
        let mut v = vec![
            manifest_dir.join("../vendor/models").join(f),
            manifest_dir.join(f),
        ];
        if let Some(d) = exe_share_models() {
            v.push(d.join(f));
        }
        v.push(Path::new(INSTALLED_MODELS).join(f));
        if let Some(src) = source_tree() {
            v.push(src.join("vendor/models").join(f));
        }
        dedup(v)
    }

    pub fn model_path(&self, manifest_dir: &Path) -> Option<PathBuf> {
        let found = self
            .model_candidates(manifest_dir)
            .into_iter()
            .find(|p| p.is_file())?;
        // "models/../vendor/models/x.onnx" reads badly in logs and records
        Some(found.canonicalize().unwrap_or(found))
    }

    /// `model_path` or a `ModelMissing` error listing where we looked.
    pub fn resolve_model(&self, manifest_dir: &Path) -> Result<PathBuf, DetectError> {
        self.model_path(manifest_dir)
            .ok_or_else(|| DetectError::ModelMissing {
                model: self.id.clone(),
                file: self.file.clone(),
                looked_in: self
                    .model_candidates(manifest_dir)
                    .iter()
                    .map(|p| p.parent().unwrap_or(p).to_path_buf())
                    .collect(),
            })
    }
}

/// `<exe dir>/../share/vidgest/models`, spelled without `..` (the path shows in logs, records
/// and `doctor`): /usr/share/vidgest/models for /usr/bin/vidgest.
fn exe_share_models() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.join("share/vidgest/models"))
}

/// Where the Debian package installs the manifests and model files.
const INSTALLED_MODELS: &str = "/usr/share/vidgest/models";

/// The checkout, for `cargo run` and tests. A release binary has no such fallback (as for the
/// ONNX Runtime library): an installed vidgest must find its own files, not a source tree that
/// happens to be on the build machine.
fn source_tree() -> Option<&'static Path> {
    cfg!(debug_assertions).then(|| Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// Directories searched for manifests by id: `<exe>/../share/vidgest/models`,
/// /usr/share/vidgest/models, and (debug builds) the source tree's models/. Never the current
/// directory: what runs must not depend on where the daemon was started (a config names a
/// manifest by path for that, as configs/demo.toml does).
pub fn manifest_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = exe_share_models().into_iter().collect();
    v.push(PathBuf::from(INSTALLED_MODELS));
    if let Some(src) = source_tree() {
        v.push(src.join("models"));
    }
    dedup(v)
}

/// Keeps the first of equal paths (the exe's share dir is /usr/share/vidgest/models when
/// installed in /usr/bin).
fn dedup(v: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::with_capacity(v.len());
    for p in v {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Finds a manifest by id ("yolov3-tiny-coco" -> models/yolov3-tiny.toml) or by path (anything
/// ending in .toml or containing a '/').
pub fn find_manifest(id_or_path: &str) -> Result<PathBuf, DetectError> {
    if id_or_path.ends_with(".toml") || id_or_path.contains('/') {
        let p = PathBuf::from(id_or_path);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(DetectError::Manifest {
                path: p,
                source: ManifestError::NoSuchFile,
            })
        };
    }
    let dirs = manifest_dirs();
    let mut known = Vec::new();
    for dir in &dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for p in files {
            // Only the id is needed; a broken manifest elsewhere must not hide the one asked for.
            match manifest_id(&p) {
                Some(id) if id == id_or_path => return Ok(p),
                Some(id) => known.push(id),
                None => {}
            }
        }
    }
    known.sort();
    known.dedup();
    Err(DetectError::Manifest {
        path: PathBuf::from(id_or_path),
        source: ManifestError::UnknownId {
            id: id_or_path.to_string(),
            searched: dirs,
            known,
        },
    })
}

fn manifest_id(path: &Path) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: String,
    }
    let text = std::fs::read_to_string(path).ok()?;
    toml::from_str::<IdOnly>(&text).ok().map(|m| m.id)
}

type HashKey = (PathBuf, u64, Option<SystemTime>);
static SHA256_CACHE: Mutex<Option<HashMap<HashKey, String>>> = Mutex::new(None);

/// Lowercase hex sha256 of a model file, cached while its path, size and mtime stay the same so
/// many cameras sharing one model hash it once.
pub(crate) fn file_sha256(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
    if let Some(h) = SHA256_CACHE.lock().as_ref().and_then(|m| m.get(&key)) {
        return Ok(h.clone());
    }
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    let h = hex::encode(hasher.finalize());
    SHA256_CACHE
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(key, h.clone());
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Debian package's places are searched (vidgest issue 11) and come before the source
    /// tree, which a release binary never searches.
    #[test]
    fn installed_places_before_the_source_tree() {
        let dirs = manifest_dirs();
        let installed = dirs
            .iter()
            .position(|d| d == Path::new("/usr/share/vidgest/models"))
            .expect("installed manifests searched");
        let src = dirs
            .iter()
            .position(|d| d.starts_with(env!("CARGO_MANIFEST_DIR")));
        assert_eq!(src.is_some(), cfg!(debug_assertions), "{dirs:?}");
        assert!(src.is_none_or(|s| s > installed), "{dirs:?}");

        let m = ModelManifest::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("models/yolov3-tiny.toml"),
        )
        .unwrap();
        let c = m.model_candidates(Path::new("/usr/share/vidgest/models"));
        let at = |p: &str| c.iter().position(|c| c == Path::new(p));
        let next_to =
            at("/usr/share/vidgest/models/yolov3-tiny.onnx").unwrap_or_else(|| panic!("{c:?}"));
        let src = c
            .iter()
            .position(|p| p.starts_with(env!("CARGO_MANIFEST_DIR")));
        assert_eq!(src.is_some(), cfg!(debug_assertions), "{c:?}");
        assert!(src.is_none_or(|s| s > next_to), "{c:?}");
    }

    #[test]
    fn file_sha256_known_vectors_and_rehash_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.onnx");
        std::fs::write(&f, b"").unwrap();
        assert_eq!(
            file_sha256(&f).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // a new size is a new cache key: the digest follows the content
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            file_sha256(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(file_sha256(&dir.path().join("missing")).is_err());
    }
}
