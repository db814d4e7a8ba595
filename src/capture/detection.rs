//! The detector pool: frames from every camera's detect branch go into one latest-wins slot per
//! camera; a fixed set of worker threads (`[detect] workers`) run the motion gate and the model
//! and hand results to the camera's recorder, which links them to stored fragments.
//! When the workers cannot keep up, frames are replaced (counted), never queued without bound.

use super::{CameraStatus, Counters};
use crate::config::{CameraConfig, CameraDetectConfig, DetectGlobalConfig};
use crate::detect::{
    find_manifest, DetectError, Detection, Detector, Filter, ModelManifest, MotionGate, RgbFrame,
    Zone,
};
use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// When a frame was taken, on the clock the recorder can map to producer time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameTime {
    /// Running time of the recording pipeline itself (same clock as the access units).
    Media {
        session: u64,
        generation: u64,
        pts_ns: u64,
    },
    /// Wall clock at arrival (a separate detect sub-stream has its own clock).
    Wall(i64),
}

pub struct DetectFrame {
    pub time: FrameTime,
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub data: Vec<u8>,
}

/// One inferred frame's outcome, on its way to the recorder.
#[derive(Debug, Clone)]
pub struct DetectionResult {
    pub time: FrameTime,
    pub detections: Vec<Detection>,
    pub inference_ms: f64,
    pub model: String,
}

struct CameraCtx {
    status: Arc<CameraStatus>,
    model_key: PathBuf,
    model_id: String,
    min_score: f32,
    filter: Filter,
    gate: Option<Mutex<MotionGate>>,
    results: Sender<DetectionResult>,
}

struct Slot {
    ctx: Arc<CameraCtx>,
    frame: Option<DetectFrame>,
}

struct Shared {
    slots: Mutex<(Vec<Slot>, usize, bool)>, // slots, round-robin cursor, shutdown
    ready: Condvar,
    /// Idle detector instances per model file (at most one per worker in use at a time).
    detectors: Mutex<HashMap<PathBuf, Vec<Detector>>>,
    manifests: Mutex<HashMap<PathBuf, (ModelManifest, PathBuf)>>,
    intra_threads: usize,
}

#[derive(Clone)]
pub struct DetectionPool {
    shared: Arc<Shared>,
}

/// What a camera needs to feed the pool.
#[derive(Clone)]
pub struct CameraDetect {
    pub slot: usize,
    pub width: u32,
    pub height: u32,
    pub model_id: String,
    pool: DetectionPool,
}

impl CameraDetect {
    /// Latest wins: a frame still waiting is replaced (and counted).
    pub fn submit(&self, frame: DetectFrame) {
        let mut g = self.pool.shared.slots.lock();
        let slot = &mut g.0[self.slot];
        Counters::inc(&slot.ctx.status.counters.detect_frames);
        if slot.frame.replace(frame).is_some() {
            Counters::inc(&slot.ctx.status.counters.detect_skipped_busy);
        }
        drop(g);
        self.pool.shared.ready.notify_one();
    }
}

impl DetectionPool {
    pub fn start(global: &DetectGlobalConfig) -> (DetectionPool, Vec<std::thread::JoinHandle<()>>) {
        let shared = Arc::new(Shared {
            slots: Mutex::new((Vec::new(), 0, false)),
            ready: Condvar::new(),
            detectors: Mutex::default(),
            manifests: Mutex::default(),
            intra_threads: global.intra_threads.max(1) as usize,
        });
        let pool = DetectionPool { shared };
        let threads = (0..global.workers.max(1))
            .map(|i| {
                let p = pool.clone();
                std::thread::Builder::new()
                    .name(format!("detect-{i}"))
                    .spawn(move || p.work())
                    .expect("spawn detect worker")
            })
            .collect();
        (pool, threads)
    }

    pub fn stop(&self) {
        self.shared.slots.lock().2 = true;
        self.shared.ready.notify_all();
    }

    /// Loads (once per model) and checks the camera's model, and registers the camera.
    /// An error names the camera and model; the caller records without detection.
    pub fn register(
        &self,
        cam: &CameraConfig,
        d: &CameraDetectConfig,
        global: &DetectGlobalConfig,
        status: Arc<CameraStatus>,
        results: Sender<DetectionResult>,
    ) -> Result<CameraDetect, DetectError> {
        let model_ref = d.model.as_deref().unwrap_or(&global.model);
        let manifest_path = find_manifest(model_ref)?;
        let (manifest, model_file) = {
            let mut cache = self.shared.manifests.lock();
            match cache.get(&manifest_path) {
                Some(m) => m.clone(),
                None => {
                    let m = ModelManifest::load(&manifest_path)?;
                    let file = m.resolve_model(m.dir())?;
                    cache.insert(manifest_path.clone(), (m.clone(), file.clone()));
                    (m, file)
                }
            }
        };
        // Load one instance now so a bad model fails at start, clearly, not in a worker.
        let mut idle = self.shared.detectors.lock();
        let entry = idle.entry(model_file.clone()).or_default();
        let (width, height) = match entry.first() {
            Some(det) => det.input_size(),
            None => {
                let det = Detector::load(&manifest, &model_file, self.shared.intra_threads)?;
                let size = det.input_size();
                entry.push(det);
                // Loading parses a 35 MB model through temporary buffers; hand them back to the OS.
                release_free_heap();
                size
            }
        };
        drop(idle);
        let filter = Filter {
            labels: d.labels.clone(),
            min_score: d.min_score,
            min_area: d.min_area,
            zones: d
                .zones
                .iter()
                .map(|z| Zone {
                    name: z.name.clone(),
                    polygon: z.polygon.iter().map(|p| (p[0], p[1])).collect(),
                })
                .collect(),
            masks: d
                .masks
                .iter()
                .map(|m| m.iter().map(|p| (p[0], p[1])).collect())
                .collect(),
        };
        let ctx = Arc::new(CameraCtx {
            status,
            model_key: model_file,
            model_id: manifest.id.clone(),
            min_score: d.min_score,
            filter,
            gate: d
                .motion
                .then(|| Mutex::new(MotionGate::new(d.motion_pixel_delta, d.motion_min_fraction))),
            results,
        });
        let mut g = self.shared.slots.lock();
        g.0.push(Slot { ctx, frame: None });
        let slot = g.0.len() - 1;
        tracing::info!(camera = %cam.name, model = %manifest.id, input = %format!("{width}x{height}"), fps = d.fps, "detection on");
        Ok(CameraDetect {
            slot,
            width,
            height,
            model_id: manifest.id.clone(),
            pool: self.clone(),
        })
    }

    fn next_job(&self) -> Option<(Arc<CameraCtx>, DetectFrame)> {
        let mut g = self.shared.slots.lock();
        loop {
            if g.2 {
                return None;
            }
            let n = g.0.len();
            let start = g.1;
            for k in 0..n {
                let i = (start + k) % n;
                if let Some(frame) = g.0[i].frame.take() {
                    g.1 = i + 1;
                    return Some((g.0[i].ctx.clone(), frame));
                }
            }
            self.shared.ready.wait(&mut g);
        }
    }

    fn work(&self) {
        while let Some((ctx, frame)) = self.next_job() {
            let rgb = RgbFrame {
                width: frame.width,
                height: frame.height,
                stride: frame.stride,
                data: &frame.data,
            };
            if let Some(gate) = &ctx.gate {
                let moving = gate.lock().check(&rgb);
                if !moving {
                    Counters::inc(&ctx.status.counters.detect_skipped_still);
                    continue;
                }
            }
            let mut det = match self.take_detector(&ctx) {
                Ok(d) => d,
                Err(e) => {
                    Counters::inc(&ctx.status.counters.detect_errors);
                    tracing::error!(camera = %ctx.status.name, "detector unavailable: {e}");
                    continue;
                }
            };
            let started = Instant::now();
            let outcome = det.detect(&rgb, ctx.min_score);
            let elapsed = started.elapsed();
            self.return_detector(&ctx, det);
            match outcome {
                Ok((dets, timings)) => {
                    Counters::inc(&ctx.status.counters.inferences);
                    let result = DetectionResult {
                        time: frame.time,
                        detections: ctx.filter.apply(dets),
                        inference_ms: timings.inference.as_secs_f64() * 1000.0,
                        model: ctx.model_id.clone(),
                    };
                    let stats = &ctx.status.detect_stats;
                    stats.inference.record(timings.inference);
                    stats.count_objects(result.detections.iter().map(|d| d.label.as_str()));
                    tracing::trace!(camera = %ctx.status.name, ms = elapsed.as_millis() as u64, n = result.detections.len(), "inferred");
                    // The recorder drains results continuously; a full queue means it is gone.
                    let _ = ctx.results.try_send(result);
                }
                Err(e) => {
                    Counters::inc(&ctx.status.counters.detect_errors);
                    tracing::warn!(camera = %ctx.status.name, "inference failed: {e}");
                }
            }
        }
    }

    fn take_detector(&self, ctx: &CameraCtx) -> Result<Detector, DetectError> {
        if let Some(d) = self
            .shared
            .detectors
            .lock()
            .get_mut(&ctx.model_key)
            .and_then(|v| v.pop())
        {
            return Ok(d);
        }
        let (manifest, file) = self
            .shared
            .manifests
            .lock()
            .values()
            .find(|(_, f)| *f == ctx.model_key)
            .cloned()
            .expect("registered model");
        Detector::load(&manifest, &file, self.shared.intra_threads)
    }

    fn return_detector(&self, ctx: &CameraCtx, det: Detector) {
        self.shared
            .detectors
            .lock()
            .entry(ctx.model_key.clone())
            .or_default()
            .push(det);
    }
}

/// Returns free heap pages to the OS (glibc keeps them otherwise).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_heap() {
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}
