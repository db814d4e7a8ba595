//! The capture and detection subsystems: the detector pool (when any camera detects) and one
//! supervised pipeline + recorder per enabled camera, wired to the store and the record streams;
//! `Cameras` holds them per camera so that a reload restarts only what changed.

use super::reload::ConfigFile;
use crate::capture::{
    self, CameraHandle, CameraStatus, DetectBranchSpec, DetectWiring, DetectionLinker,
    DetectionPool, RecordSink, Shutdown,
};
use crate::clock::SharedClock;
use crate::config::{CameraConfig, Config};
use crate::lifecycle::Handle;
use crate::store::{Store, VideoOptions};
use crate::streams::ShardStreams;
use anyhow::Context;
use parking_lot::Mutex;
use std::sync::Arc;

/// Starts the detector pool when an enabled camera wants detection and the runtime loads.
pub fn start_detection(config: &Config) -> (Option<DetectionPool>, Handle) {
    match load_detection(config) {
        Some((pool, workers)) => {
            let stop = pool.clone();
            (
                Some(pool),
                Handle::new(
                    "detection",
                    move || stop.stop(),
                    move || {
                        for w in workers {
                            let _ = w.join();
                        }
                    },
                ),
            )
        }
        None => (None, Handle::passive("detection")),
    }
}

/// The running cameras, one supervisor + recorder each with its own stop signal, so that a
/// reload can start, stop or restart one camera without touching the others. Used both at
/// start (`start_all`) and on reload (`apply`).
pub struct Cameras {
    clock: SharedClock,
    store: Arc<Store>,
    streams: Arc<ShardStreams>,
    detection: Option<DetectionPool>,
    /// Inference workers running (0: no detector pool).
    workers: usize,
    /// In config order (the API lists them so).
    running: Vec<Running>,
}

struct Running {
    name: String,
    /// The camera's `[[camera]]` table as written: any difference restarts it.
    table: Option<toml::Value>,
    shutdown: Shutdown,
    handle: CameraHandle,
}

impl Running {
    /// Waits for a camera whose shutdown was triggered (its fragment in progress is flushed).
    fn join(self) {
        self.shutdown.trigger();
        self.handle.join();
    }
}

/// What `Cameras::apply` did, by camera name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CameraChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
    /// Cameras that should run but could not start (their video could not be opened).
    pub failed: Vec<String>,
}

impl Cameras {
    pub fn new(
        clock: SharedClock,
        store: Arc<Store>,
        streams: Arc<ShardStreams>,
        detection: Option<DetectionPool>,
        workers: u32,
    ) -> Self {
        Self {
            clock,
            store,
            streams,
            workers: detection.as_ref().map_or(0, |_| workers.max(1) as usize),
            detection,
            running: Vec::new(),
        }
    }

    /// Starts every enabled camera; disabled ones keep their retention. Every writer is opened
    /// first: a camera whose video cannot be opened fails the start before any camera runs.
    pub fn start_all(&mut self, file: &ConfigFile) -> anyhow::Result<()> {
        let config = &file.config;
        let writers = config
            .cameras
            .iter()
            .filter(|c| c.enabled)
            .map(|cam| self.open_writer(config, cam).map(|w| (cam, w)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (cam, writer) in writers {
            let running = self.spawn(file, cam, writer);
            self.running.push(running);
        }
        self.keep_disabled_retention(config);
        Ok(())
    }

    /// Makes the running set match `file`: removed (or disabled) cameras stop after flushing
    /// their fragment in progress, changed ones restart, new ones start; the others are not
    /// touched and keep recording.
    pub fn apply(&mut self, file: &ConfigFile) -> CameraChanges {
        let config = &file.config;
        let mut changes = CameraChanges::default();
        let wanted: Vec<&CameraConfig> = config.cameras.iter().filter(|c| c.enabled).collect();
        let (mut kept, stopping): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|r| {
                wanted
                    .iter()
                    .any(|c| c.name == r.name && file.camera_table(&c.name) == r.table)
            });
        // All signalled before any is joined, so that their flushes overlap.
        stopping.iter().for_each(|r| r.shutdown.trigger());
        for r in stopping {
            tracing::info!(camera = %r.name, "reload: stopping camera");
            if wanted.iter().any(|c| c.name == r.name) {
                changes.restarted.push(r.name.clone());
            } else {
                changes.removed.push(r.name.clone());
            }
            r.join();
        }
        for cam in wanted {
            if let Some(i) = kept.iter().position(|r| r.name == cam.name) {
                self.running.push(kept.remove(i));
                continue;
            }
            match self.open_writer(config, cam) {
                Ok(writer) => {
                    let running = self.spawn(file, cam, writer);
                    self.running.push(running);
                    if !changes.restarted.contains(&cam.name) {
                        changes.added.push(cam.name.clone());
                    }
                }
                Err(e) => {
                    tracing::error!("reload: {e:#}; the camera is not running");
                    changes.restarted.retain(|n| *n != cam.name);
                    changes.failed.push(cam.name.clone());
                }
            }
        }
        self.keep_disabled_retention(config);
        changes
    }

    /// The running cameras' statuses, in config order.
    pub fn statuses(&self) -> Vec<Arc<CameraStatus>> {
        self.running
            .iter()
            .map(|r| r.handle.status.clone())
            .collect()
    }

    /// Asks every camera to stop (non-blocking).
    pub fn trigger_all(&self) {
        self.running.iter().for_each(|r| r.shutdown.trigger());
    }

    /// Stops every camera and waits until each has flushed its fragment in progress.
    pub fn stop_all(&mut self) {
        self.trigger_all();
        std::mem::take(&mut self.running)
            .into_iter()
            .for_each(Running::join);
    }

    fn open_writer(
        &self,
        config: &Config,
        cam: &CameraConfig,
    ) -> anyhow::Result<crate::store::VideoWriter> {
        self.store
            .open_video(&cam.name, video_options(config, cam))
            .with_context(|| format!("camera {}: cannot open its video stream", cam.name))
    }

    fn spawn(
        &self,
        file: &ConfigFile,
        cam: &CameraConfig,
        writer: crate::store::VideoWriter,
    ) -> Running {
        let config = &file.config;
        tracing::info!(camera = %cam.name, source = ?cam.source, "starting camera");
        let status = Arc::new(CameraStatus::new(&cam.name));
        let detect = match (&self.detection, cam.detection()) {
            (Some(pool), Some(_)) => wire_detection(config, cam, pool, &self.streams, &status),
            (None, Some(_)) => {
                tracing::warn!(camera = %cam.name, "detection is not running in this daemon (it starts with the daemon when a camera wants it): restart vidgest to detect on this camera; recording goes on");
                None
            }
            _ => None,
        };
        let shutdown = Shutdown::new();
        let handle = capture::spawn_camera(
            cam.clone(),
            writer,
            self.clock.clone(),
            shutdown.clone(),
            status,
            detect,
        );
        Running {
            name: cam.name.clone(),
            table: file.camera_table(&cam.name),
            shutdown,
            handle,
        }
    }

    fn keep_disabled_retention(&self, config: &Config) {
        for cam in config.cameras.iter().filter(|c| !c.enabled) {
            self.store
                .set_video_options(&cam.name, video_options(config, cam));
            tracing::info!(camera = %cam.name, "camera disabled in config");
        }
    }
}

/// The capture subsystem's lifecycle handle: stopping it stops every camera the registry holds
/// at that moment (cameras started by a reload included).
pub fn capture_handle(cameras: &Arc<Mutex<Cameras>>) -> Handle {
    let stop = cameras.clone();
    let join = cameras.clone();
    Handle::new(
        "capture",
        move || stop.lock().trigger_all(),
        move || join.lock().stop_all(),
    )
}

/// Per camera with detection on, its records stream; and the workers running.
pub fn detection_info(config: &Config, cameras: &Cameras) -> crate::api::DetectionInfo {
    crate::api::DetectionInfo {
        streams: config
            .cameras
            .iter()
            .filter(|c| c.enabled)
            .filter_map(|c| Some((c.name.clone(), c.detection()?.stream.clone())))
            .collect(),
        workers: cameras.workers,
    }
}

fn video_options(config: &Config, cam: &crate::config::CameraConfig) -> VideoOptions {
    VideoOptions {
        retention: cam.retention.0,
        max_bytes: cam.max_bytes.map(|b| b.0),
        segment_size: cam.segment_size(&config.storage),
    }
}

/// Loads ONNX Runtime and starts the inference workers when any camera wants detection. A
/// missing runtime turns detection off (logged with the fix); recording goes on.
fn load_detection(config: &Config) -> Option<(DetectionPool, Vec<std::thread::JoinHandle<()>>)> {
    if !config
        .cameras
        .iter()
        .any(|c| c.enabled && c.detection().is_some())
    {
        return None;
    }
    match crate::detect::runtime::init(config.detect.onnxruntime.as_deref()) {
        Ok(_) => Some(DetectionPool::start(&config.detect)),
        Err(e) => {
            tracing::error!("detection is off for every camera: {e}");
            None
        }
    }
}

/// Registers a camera with the detector pool; on a model problem, logs it (naming camera and
/// model) and records without detection.
fn wire_detection(
    config: &Config,
    cam: &crate::config::CameraConfig,
    pool: &DetectionPool,
    streams: &Arc<ShardStreams>,
    status: &Arc<CameraStatus>,
) -> Option<DetectWiring> {
    let d = cam.detection()?;
    let (tx, rx) = crossbeam_channel::bounded(256);
    let handle = match pool.register(cam, d, &config.detect, status.clone(), tx) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(camera = %cam.name, "detection off for this camera (recording continues): {e}");
            return None;
        }
    };
    // Streams declared in [[stream]] exist already; others get one shard and 24 h.
    let exists = streams.describe(&d.stream).is_ok();
    if let Err(e) = (!exists)
        .then(|| streams.ensure_stream(&d.stream, 1, 24))
        .transpose()
    {
        tracing::error!(camera = %cam.name, stream = %d.stream, "detection off: cannot create the records stream: {e}");
        return None;
    }
    let linker = DetectionLinker::new(
        RecordSink {
            streams: streams.clone(),
            stream: d.stream.clone(),
            device: config.device_id(),
            heartbeat: d.heartbeat.0,
        },
        status.clone(),
        handle.model_id.clone(),
    );
    Some(DetectWiring {
        spec: DetectBranchSpec {
            width: handle.width,
            height: handle.height,
            fps: d.fps,
            keyframes_only: d.keyframes_only,
            feed_dropped: status.detect_feed_dropped.clone(),
        },
        handle,
        results: rx,
        linker,
        sub_source: d.source.clone(),
    })
}
