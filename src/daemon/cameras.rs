//! The capture and detection subsystems: the detector pool (when any camera detects) and one
//! supervised pipeline + recorder per enabled camera, wired to the store and the record streams.

use crate::capture::{
    self, CameraHandle, CameraStatus, DetectBranchSpec, DetectWiring, DetectionLinker,
    DetectionPool, RecordSink, Shutdown,
};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::lifecycle::Handle;
use crate::store::{Store, VideoOptions};
use crate::streams::ShardStreams;
use anyhow::Context;
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

/// Starts every enabled camera; disabled ones keep their retention. Returns the statuses (for
/// the API, status lines and metrics) and the handle that stops and joins them (flushing each
/// camera's fragment in progress).
pub fn start_cameras(
    config: &Config,
    clock: &SharedClock,
    store: &Arc<Store>,
    streams: &Arc<ShardStreams>,
    detection: Option<&DetectionPool>,
) -> anyhow::Result<(Vec<Arc<CameraStatus>>, Handle)> {
    // Every writer first: a camera whose video cannot be opened fails the start before any
    // camera thread runs, so there is nothing to stop.
    let writers = config
        .cameras
        .iter()
        .filter(|c| c.enabled)
        .map(|cam| {
            store
                .open_video(&cam.name, video_options(config, cam))
                .with_context(|| format!("camera {}: cannot open its video stream", cam.name))
                .map(|w| (cam, w))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let shutdown = Shutdown::new();
    let mut cameras: Vec<CameraHandle> = Vec::new();
    for (cam, writer) in writers {
        tracing::info!(camera = %cam.name, source = ?cam.source, "starting camera");
        let status = Arc::new(CameraStatus::new(&cam.name));
        let detect = detection.and_then(|pool| wire_detection(config, cam, pool, streams, &status));
        cameras.push(capture::spawn_camera(
            cam.clone(),
            writer,
            clock.clone(),
            shutdown.clone(),
            status,
            detect,
        ));
    }
    for cam in config.cameras.iter().filter(|c| !c.enabled) {
        store.set_video_options(&cam.name, video_options(config, cam));
        tracing::info!(camera = %cam.name, "camera disabled in config");
    }
    let statuses = cameras.iter().map(|c| c.status.clone()).collect();
    let stop = shutdown.clone();
    Ok((
        statuses,
        Handle::new(
            "capture",
            move || stop.trigger(),
            move || cameras.into_iter().for_each(CameraHandle::join),
        ),
    ))
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
        },
        handle,
        results: rx,
        linker,
        sub_source: d.source.clone(),
    })
}
