//! Object detection: ONNX Runtime (through `ort`, loaded at run time) runs a model described by a
//! manifest (`models/*.toml`, schema in docs/models.md) on RGB frames that GStreamer already scaled
//! to the model input. Pipeline per frame: [`motion::MotionGate`] (skip still scenes) ->
//! [`detector::Detector`] (preprocess, inference, decode, NMS) -> [`filter::Filter`] (labels,
//! score, area, masks, zones).

pub mod decode;
pub mod detector;
mod doctor;
mod error;
pub mod filter;
pub mod image;
pub mod manifest;
pub mod motion;
pub mod nms;
mod preprocess;
pub mod runtime;

pub use detector::{BBox, Detection, Detector, RgbFrame, Timings};
pub use doctor::doctor_report;
pub use error::{DetectError, InferenceError, ManifestError, ModelError};
pub use filter::{Filter, Zone};
pub use image::{load_image_rgb, scale_chain};
pub use manifest::{find_manifest, ModelManifest};
pub use motion::MotionGate;
pub use preprocess::PreprocessError;
pub use runtime::RuntimeInfo;

#[cfg(test)]
mod tests;
