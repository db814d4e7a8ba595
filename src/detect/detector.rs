//! Detector = ONNX Runtime session + manifest + decoder. `load` checks the model against its
//! manifest up front (checksum, input shape and type, output names, class count) so a bad model
//! fails at start-up with a clear message instead of on the first frame.

use super::decode::{self, Candidate, Geometry, SsdOutputs, View};
use super::error::{InferenceError, ModelError};
use super::manifest::{DType, DecoderKind, Layout, ModelManifest, OutputSpec};
use super::preprocess::{Placement, Preprocessor};
use super::{manifest, nms, runtime, DetectError};
use ort::session::{Session, SessionInputValue, SessionOutputs};
use ort::value::{DynValue, TensorElementType, TensorRef};
use serde::Serialize;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An RGB24 frame; rows may be padded (`stride` bytes apart, e.g. GStreamer's 4-byte alignment).
#[derive(Debug, Clone, Copy)]
pub struct RgbFrame<'a> {
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub data: &'a [u8],
}

impl<'a> RgbFrame<'a> {
    /// A tightly packed frame (stride = width * 3).
    pub fn packed(width: u32, height: u32, data: &'a [u8]) -> Self {
        RgbFrame {
            width,
            height,
            stride: width as usize * 3,
            data,
        }
    }
}

/// Top-left corner and size, normalized 0..1 to the frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub label: String,
    pub class_id: u32,
    pub score: f32,
    pub bbox: BBox,
    /// Filled by `Filter::apply`.
    pub zones: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub preprocess: Duration,
    pub inference: Duration,
    pub postprocess: Duration,
}

impl Timings {
    pub fn total(&self) -> Duration {
        self.preprocess + self.inference + self.postprocess
    }
}

pub struct Detector {
    id: String,
    file: PathBuf,
    session: Session,
    pre: Preprocessor,
    dtype: DType,
    output: OutputSpec,
    labels: Vec<String>,
    geometry: Geometry,
    candidates: Vec<Candidate>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("model", &self.id)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// Loads and checks the model: sha256 (when the manifest has one), the input tensor's shape
    /// and type against the manifest (e.g. `[1,3,416,416]` float32), named outputs and class count.
    /// Initialises the runtime from the default places if `runtime::init` was not called.
    pub fn load(
        manifest: &ModelManifest,
        model_file: &Path,
        intra_threads: usize,
    ) -> Result<Detector, DetectError> {
        let err = |source| DetectError::Model {
            model: manifest.id.clone(),
            file: model_file.to_path_buf(),
            source: Box::new(source),
        };
        if !model_file.is_file() {
            return Err(DetectError::ModelMissing {
                model: manifest.id.clone(),
                file: model_file.display().to_string(),
                looked_in: vec![model_file.parent().unwrap_or(Path::new(".")).to_path_buf()],
            });
        }
        if let Some(want) = &manifest.sha256 {
            let got = manifest::file_sha256(model_file).map_err(|e| err(ModelError::Read(e)))?;
            if &got != want {
                return Err(err(ModelError::Checksum {
                    got,
                    want: want.clone(),
                    manifest: manifest.path.clone(),
                }));
            }
        }
        let env = runtime::environment()?;
        let build = || -> ort::Result<Session> {
            Session::builder(env)?
                .with_intra_threads(intra_threads.max(1))?
                .with_inter_threads(1)?
                // no busy-waiting worker threads: an edge device has other work (recording) to do
                .with_intra_op_spinning(false)?
                .commit_from_file(model_file)
        };
        let session = build().map_err(|e| err(ModelError::Load(e)))?;
        check_input(&session, manifest).map_err(err)?;
        check_outputs(&session, manifest).map_err(err)?;
        let pre = Preprocessor::new(&manifest.input);
        Ok(Detector {
            id: manifest.id.clone(),
            file: model_file.to_path_buf(),
            session,
            pre,
            dtype: manifest.input.dtype,
            output: manifest.output.clone(),
            labels: manifest.labels.clone(),
            geometry: Geometry {
                format: manifest.output.box_format(),
                in_w: manifest.input.width as f32,
                in_h: manifest.input.height as f32,
            },
            candidates: Vec::new(),
        })
    }

    pub fn model_id(&self) -> &str {
        &self.id
    }

    pub fn model_file(&self) -> &Path {
        &self.file
    }

    /// (width, height) of the model input.
    pub fn input_size(&self) -> (u32, u32) {
        (self.geometry.in_w as u32, self.geometry.in_h as u32)
    }

    /// The frame size to scale a `src_w` x `src_h` picture to before `detect`: the input size
    /// for `stretch` models; for `letterbox` models the largest size that keeps the aspect ratio
    /// and fits (detect pads it).
    pub fn frame_size_for(&self, src_w: u32, src_h: u32) -> (u32, u32) {
        let (w, h) = self.input_size();
        if !self.pre.letterbox() || src_w == 0 || src_h == 0 {
            return (w, h);
        }
        let (sw, sh) = (src_w as u64, src_h as u64);
        if sw * h as u64 >= sh * w as u64 {
            (w, ((sh * w as u64 + sw / 2) / sw).clamp(1, h as u64) as u32)
        } else {
            (((sw * h as u64 + sh / 2) / sh).clamp(1, w as u64) as u32, h)
        }
    }

    /// Runs the model on one frame (exactly the input size; see `frame_size_for` for letterbox
    /// models). Returns detections with score >= min_score after NMS, best first.
    pub fn detect(
        &mut self,
        frame: &RgbFrame,
        min_score: f32,
    ) -> Result<(Vec<Detection>, Timings), DetectError> {
        let t0 = Instant::now();
        let place = self
            .pre
            .run(frame)
            .map_err(|e| inference_err(&self.id, e.into()))?;
        let t1 = Instant::now();
        let shape = self.pre.shape();
        let input: SessionInputValue = match self.dtype {
            DType::Float32 => {
                TensorRef::from_array_view((shape, &self.pre.f32buf[..])).map(Into::into)
            }
            DType::Uint8 => {
                TensorRef::from_array_view((shape, &self.pre.u8buf[..])).map(Into::into)
            }
        }
        .map_err(|e| inference_err(&self.id, e.into()))?;
        let outputs = self
            .session
            .run(ort::inputs![input])
            .map_err(|e| inference_err(&self.id, e.into()))?;
        let t2 = Instant::now();
        self.candidates.clear();
        decode_outputs(
            &outputs,
            &self.output,
            self.labels.len(),
            self.geometry,
            min_score,
            &mut self.candidates,
        )
        .map_err(|e| inference_err(&self.id, e))?;
        drop(outputs);
        let cands = std::mem::take(&mut self.candidates);
        let kept = if self.output.nms {
            let mut c = cands;
            c.sort_by(|a, b| b.score.total_cmp(&a.score));
            c
        } else {
            nms::class_aware(cands, self.output.iou_threshold)
        };
        let dets = kept
            .iter()
            .filter_map(|c| self.to_detection(c, place))
            .collect();
        let t3 = Instant::now();
        Ok((
            dets,
            Timings {
                preprocess: t1 - t0,
                inference: t2 - t1,
                postprocess: t3 - t2,
            },
        ))
    }

    /// Maps a candidate from model-input coordinates to the frame (undoing letterbox padding),
    /// clipped to the frame; boxes left empty by clipping are dropped.
    fn to_detection(&self, c: &Candidate, p: Placement) -> Option<Detection> {
        let (iw, ih) = (self.geometry.in_w, self.geometry.in_h);
        let fx = |x: f32| ((x * iw - p.x0 as f32) / p.w as f32).clamp(0.0, 1.0);
        let fy = |y: f32| ((y * ih - p.y0 as f32) / p.h as f32).clamp(0.0, 1.0);
        let (x1, y1, x2, y2) = (fx(c.x1), fy(c.y1), fx(c.x2), fy(c.y2));
        if !(x2 > x1 && y2 > y1) {
            return None;
        }
        let label = match self.labels.get(c.class_id as usize) {
            Some(l) => l.clone(),
            None => format!("class{}", c.class_id),
        };
        Some(Detection {
            label,
            class_id: c.class_id,
            score: c.score,
            bbox: BBox {
                x: x1,
                y: y1,
                w: x2 - x1,
                h: y2 - y1,
            },
            zones: Vec::new(),
        })
    }

    /// Test hook: preprocesses `frame`, runs the session and returns every output as f32.
    #[cfg(test)]
    pub(crate) fn run_raw(&mut self, frame: &RgbFrame) -> Vec<(String, Vec<i64>, Vec<f32>)> {
        self.pre.run(frame).unwrap();
        let shape = self.pre.shape();
        let input: SessionInputValue = match self.dtype {
            DType::Float32 => TensorRef::from_array_view((shape, &self.pre.f32buf[..]))
                .unwrap()
                .into(),
            DType::Uint8 => TensorRef::from_array_view((shape, &self.pre.u8buf[..]))
                .unwrap()
                .into(),
        };
        let outputs = self.session.run(ort::inputs![input]).unwrap();
        outputs
            .iter()
            .map(|(name, v)| {
                let (shape, data) = tensor_f32(&v).unwrap();
                (name.to_string(), shape, data.into_owned())
            })
            .collect()
    }
}

fn inference_err(model: &str, source: InferenceError) -> DetectError {
    DetectError::Inference {
        model: model.to_string(),
        source,
    }
}

/// An output as f32 (class ids and counts are often int64 in exported graphs).
/// None for other element types (strings, booleans, floats other than f32).
fn tensor_f32(v: &DynValue) -> Option<Owned<'_>> {
    if let Ok((s, d)) = v.try_extract_tensor::<f32>() {
        return Some((s.to_vec(), Cow::Borrowed(d)));
    }
    if let Ok((s, d)) = v.try_extract_tensor::<i64>() {
        return Some((
            s.to_vec(),
            Cow::Owned(d.iter().map(|&x| x as f32).collect()),
        ));
    }
    if let Ok((s, d)) = v.try_extract_tensor::<i32>() {
        return Some((
            s.to_vec(),
            Cow::Owned(d.iter().map(|&x| x as f32).collect()),
        ));
    }
    if let Ok((s, d)) = v.try_extract_tensor::<u8>() {
        return Some((
            s.to_vec(),
            Cow::Owned(d.iter().map(|&x| x as f32).collect()),
        ));
    }
    None
}

type Owned<'a> = (Vec<i64>, Cow<'a, [f32]>);

fn output<'a>(outputs: &'a SessionOutputs, name: &str) -> Result<Owned<'a>, InferenceError> {
    let v = outputs
        .get(name)
        .ok_or_else(|| InferenceError::MissingOutput(name.to_string()))?;
    tensor_f32(v).ok_or_else(|| InferenceError::OutputType {
        name: name.to_string(),
        dtype: v.dtype().to_string(),
    })
}

fn view<'a>(t: &'a Owned<'_>) -> View<'a> {
    View {
        shape: &t.0,
        data: &t.1,
    }
}

fn decode_outputs(
    outputs: &SessionOutputs,
    spec: &OutputSpec,
    classes: usize,
    g: Geometry,
    min_score: f32,
    out: &mut Vec<Candidate>,
) -> Result<(), InferenceError> {
    let get = |name: &Option<String>| output(outputs, name.as_deref().unwrap_or_default());
    match spec.decoder {
        DecoderKind::YoloBoxesScores => {
            let (b, s) = (get(&spec.boxes)?, get(&spec.scores)?);
            decode::yolo_boxes_scores(view(&b), view(&s), g, min_score, out)?
        }
        DecoderKind::Yolov5 => decode::yolov5(view(&get(&spec.tensor)?), g, min_score, out)?,
        DecoderKind::Yolov8 => {
            decode::yolov8(view(&get(&spec.tensor)?), classes, g, min_score, out)?
        }
        DecoderKind::Ssd => {
            let (b, c, s) = (get(&spec.boxes)?, get(&spec.classes)?, get(&spec.scores)?);
            let n = match &spec.count {
                Some(_) => Some(get(&spec.count)?),
                None => None,
            };
            let t = SsdOutputs {
                boxes: view(&b),
                classes: view(&c),
                scores: view(&s),
                count: n.as_ref().map(view),
            };
            decode::ssd(t, spec.class_offset, g, min_score, out)?
        }
    }
    Ok(())
}

fn check_input(session: &Session, m: &ModelManifest) -> Result<(), ModelError> {
    let names: Vec<String> = session
        .inputs()
        .iter()
        .map(|i| i.name().to_string())
        .collect();
    let Some(input) = session.inputs().iter().find(|i| i.name() == m.input.name) else {
        return Err(ModelError::NoInput {
            name: m.input.name.clone(),
            inputs: names,
            manifest: m.path.clone(),
        });
    };
    if names.len() != 1 {
        return Err(ModelError::ManyInputs { inputs: names });
    }
    let (w, h) = (m.input.width as i64, m.input.height as i64);
    let want: [i64; 4] = match m.input.layout {
        Layout::Nchw => [1, 3, h, w],
        Layout::Nhwc => [1, h, w, 3],
    };
    let dtype = input.dtype();
    let shape: &[i64] = dtype.tensor_shape().map(|s| &s[..]).unwrap_or(&[]);
    let fits = shape.len() == 4 && shape.iter().zip(want).all(|(&d, w)| d < 0 || d == w);
    if !fits {
        return Err(ModelError::InputShape {
            name: m.input.name.clone(),
            have: shape.into(),
            want: want.into(),
            layout: m.input.layout,
            width: m.input.width,
            height: m.input.height,
            manifest: m.path.clone(),
        });
    }
    let want_ty = match m.input.dtype {
        DType::Float32 => TensorElementType::Float32,
        DType::Uint8 => TensorElementType::Uint8,
    };
    if dtype.tensor_type() != Some(want_ty) {
        return Err(ModelError::InputType {
            name: m.input.name.clone(),
            have: dtype.to_string(),
            want: format!("{:?}", m.input.dtype).to_lowercase(),
            manifest: m.path.clone(),
        });
    }
    Ok(())
}

fn check_outputs(session: &Session, m: &ModelManifest) -> Result<(), ModelError> {
    let o = &m.output;
    let shape_of = |key: &'static str, name: &Option<String>| {
        let name = name.as_deref().unwrap_or_default();
        let out = session
            .outputs()
            .iter()
            .find(|x| x.name() == name)
            .ok_or_else(|| ModelError::NoOutput {
                name: name.to_string(),
                key,
                outputs: session
                    .outputs()
                    .iter()
                    .map(|x| x.name().to_string())
                    .collect(),
                manifest: m.path.clone(),
            })?;
        Ok::<_, ModelError>(
            out.dtype()
                .tensor_shape()
                .map(|s| s.to_vec())
                .unwrap_or_default(),
        )
    };
    let n = m.labels.len() as i64;
    let classes_mismatch = |have: i64| ModelError::Classes {
        have,
        labels: n,
        manifest: m.path.clone(),
    };
    match o.decoder {
        DecoderKind::YoloBoxesScores => {
            shape_of("boxes", &o.boxes)?;
            let s = shape_of("scores", &o.scores)?;
            if let Some(&c) = s.last().filter(|&&c| c > 0 && c != n) {
                return Err(classes_mismatch(c));
            }
        }
        DecoderKind::Yolov5 => {
            let s = shape_of("tensor", &o.tensor)?;
            if let Some(&c) = s.last().filter(|&&c| c > 0 && c - 5 != n) {
                return Err(classes_mismatch(c - 5));
            }
        }
        DecoderKind::Yolov8 => {
            let s = shape_of("tensor", &o.tensor)?;
            if s.len() == 3 && s[1] > 0 && s[2] > 0 && s[1] - 4 != n && s[2] - 4 != n {
                return Err(classes_mismatch(s[1].min(s[2]) - 4));
            }
        }
        DecoderKind::Ssd => {
            shape_of("boxes", &o.boxes)?;
            shape_of("classes", &o.classes)?;
            shape_of("scores", &o.scores)?;
            if o.count.is_some() {
                shape_of("count", &o.count)?;
            }
        }
    }
    Ok(())
}
