//! `vidgest run`: opens the store, starts every enabled camera and the retention task, and
//! stops cleanly on SIGINT/SIGTERM (pending fragments are flushed before exit).

use crate::api::{ApiState, Auth};
use crate::capture::{
    self, CameraHandle, CameraState, CameraStatus, Counters, DetectBranchSpec, DetectWiring,
    DetectionLinker, DetectionPool, RecordSink, Shutdown,
};
use crate::clock::{system_clock, SharedClock};
use crate::config::{format_bytes, Config};
use crate::datadir::DataDirLock;
use crate::store::{self, Statvfs, Store, StoreOptions, StreamOptions};
use crate::streams::{StreamStore, StreamsOptions};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

/// How often each camera's status line is logged (`VIDGEST_STATUS_INTERVAL_S` overrides).
fn status_log_interval() -> Duration {
    let secs = std::env::var("VIDGEST_STATUS_INTERVAL_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs.max(1))
}

pub struct Daemon {
    /// Exclusive hold on the data dir, released last (after every store is closed).
    lock: Option<DataDirLock>,
    detection: Option<(DetectionPool, Vec<std::thread::JoinHandle<()>>)>,
    pub store: Arc<Store>,
    pub streams: Arc<StreamStore>,
    pub api: ApiState,
    pub cameras: Vec<CameraHandle>,
    shutdown: Shutdown,
    retention: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts every part on a data dir this process holds (`DataDirLock::acquire`).
    pub fn start(config: &Config, clock: SharedClock, lock: DataDirLock) -> anyhow::Result<Daemon> {
        gstreamer::init().context("cannot initialise GStreamer")?;
        let root = store::video_root(&config.agent.data_dir);
        let store = Store::open(
            &root,
            StoreOptions::from_config(config),
            clock.clone(),
            Arc::new(Statvfs),
        )
        .context("cannot open the video store")?;
        let streams = open_streams(config, clock.clone())?;
        let api = ApiState::new(
            streams.clone(),
            Auth::new(&config.api.tokens),
            clock.clone(),
            crate::api::kinesis::IteratorKey::load_or_create(&config.agent.data_dir)?,
        );
        for s in &config.streams {
            api.enforce_limits(&s.name, s.enforce_limits);
        }
        let shutdown = Shutdown::new();
        let mut cameras = Vec::new();
        let detection = start_detection(config);
        for cam in config.cameras.iter().filter(|c| c.enabled) {
            let writer = store
                .open_stream(&cam.name, stream_options(config, cam))
                .with_context(|| format!("camera {}: cannot open its stream", cam.name))?;
            tracing::info!(camera = %cam.name, source = ?cam.source, "starting camera");
            let status = Arc::new(CameraStatus::new(&cam.name));
            let detect = detection
                .as_ref()
                .and_then(|(pool, _)| wire_detection(config, cam, pool, &streams, &status));
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
            store.set_stream_options(&cam.name, stream_options(config, cam));
            tracing::info!(camera = %cam.name, "camera disabled in config");
        }
        let retention = spawn_retention(
            store.clone(),
            streams.clone(),
            config.storage.retention_interval.0,
            shutdown.clone(),
        );
        Ok(Daemon {
            lock: Some(lock),
            detection,
            store,
            streams,
            api,
            cameras,
            shutdown,
            retention: Some(retention),
        })
    }

    /// Stops cameras (flushing pending fragments) and the retention task.
    pub fn stop(mut self) {
        self.shutdown.trigger();
        for cam in self.cameras.drain(..) {
            cam.join();
        }
        if let Some((pool, workers)) = self.detection.take() {
            pool.stop();
            for w in workers {
                let _ = w.join();
            }
        }
        if let Some(r) = self.retention.take() {
            let _ = r.join();
        }
        drop(self.lock.take());
    }

    pub fn log_status(&self) {
        for cam in &self.cameras {
            let (state, detail) = cam.status.state();
            let c = &cam.status.counters;
            tracing::info!(
                camera = %cam.status.name,
                state = ?state,
                fragments = Counters::get(&c.fragments_stored),
                stored = %format_bytes(Counters::get(&c.bytes_stored)),
                dropped = Counters::get(&c.dropped_queue_full),
                refused = Counters::get(&c.fragments_refused),
                resyncs = Counters::get(&c.clock_resyncs),
                detect_frames = Counters::get(&c.detect_frames),
                inferences = Counters::get(&c.inferences),
                still = Counters::get(&c.detect_skipped_still),
                busy = Counters::get(&c.detect_skipped_busy),
                records = Counters::get(&c.detection_records),
                "status: {detail}"
            );
        }
    }

    pub fn camera_states(&self) -> Vec<(String, CameraState)> {
        self.cameras
            .iter()
            .map(|c| (c.status.name.clone(), c.status.state().0))
            .collect()
    }
}

fn stream_options(config: &Config, cam: &crate::config::CameraConfig) -> StreamOptions {
    StreamOptions {
        retention: cam.retention.0,
        max_bytes: cam.max_bytes.map(|b| b.0),
        segment_size: cam.segment_size(&config.storage),
    }
}

/// Loads ONNX Runtime and starts the inference workers when any camera wants detection. A
/// missing runtime turns detection off (logged with the fix); recording goes on.
fn start_detection(config: &Config) -> Option<(DetectionPool, Vec<std::thread::JoinHandle<()>>)> {
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
    streams: &Arc<StreamStore>,
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

/// Opens the shard streams and creates the ones the config declares.
fn open_streams(config: &Config, clock: SharedClock) -> anyhow::Result<Arc<StreamStore>> {
    let root = config.agent.data_dir.join("streams");
    let streams = StreamStore::open(&root, StreamsOptions::default(), clock)
        .with_context(|| format!("cannot open the shard streams in {}", root.display()))?;
    for s in &config.streams {
        let created = streams
            .ensure_stream(&s.name, s.shards, s.retention_hours)
            .with_context(|| format!("cannot create stream `{}`", s.name))?;
        if created {
            tracing::info!(stream = %s.name, shards = s.shards, "created shard stream");
        }
    }
    Ok(streams)
}

fn spawn_retention(
    store: Arc<Store>,
    streams: Arc<StreamStore>,
    every: Duration,
    shutdown: Shutdown,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("retention".into())
        .spawn(move || loop {
            match streams.enforce_retention() {
                Ok(0) => {}
                Ok(n) => tracing::info!(segments = n, "shard stream retention pass"),
                Err(e) => tracing::error!("shard stream retention failed: {e}"),
            }
            match store.enforce_retention() {
                Ok(r) if !r.deleted.is_empty() => {
                    tracing::info!(segments = r.deleted.len(), freed = %format_bytes(r.bytes_freed()), "retention pass")
                }
                Ok(_) => {}
                Err(e) => tracing::error!("retention failed: {e}"),
            }
            if shutdown.wait(every) {
                break;
            }
        })
        .expect("spawn retention thread")
}

/// Runs until SIGINT or SIGTERM.
pub fn run(config: Config) -> anyhow::Result<()> {
    limit_malloc_arenas();
    // Before anything touches the data dir: a second daemon there would corrupt both.
    let lock = DataDirLock::acquire(&config.agent.data_dir)?;
    // Bind first: a taken port is a clear start-up error, not a half-running daemon.
    let listener = crate::config::bind_api_listener(&config.api.listen).context("api.listen")?;
    listener.set_nonblocking(true)?;
    let daemon = Daemon::start(&config, system_clock(), lock)?;
    tracing::info!(
        cameras = daemon.cameras.len(),
        streams = config.streams.len(),
        listen = %config.api.listen,
        data_dir = %config.agent.data_dir.display(),
        "vidgest running; stop with Ctrl-C or SIGTERM"
    );
    if daemon.api.auth.enabled() {
        tracing::info!("API tokens configured: every route but /healthz needs one");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("api")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _runtime = rt.enter();
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(crate::api::serve(
        tokio::net::TcpListener::from_std(listener).context("cannot use the listener")?,
        daemon.api.clone(),
        crate::api::HttpOptions::from(&config.api),
        async move {
            let _ = api_stopped.await;
        },
    ));
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut ticker = tokio::time::interval(status_log_interval());
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = ticker.tick() => daemon.log_status(),
            }
        }
        Ok::<_, std::io::Error>(())
    })?;
    let _ = stop_api.send(());
    if let Err(e) = rt
        .block_on(server)
        .map_err(std::io::Error::other)
        .and_then(|r| r)
    {
        tracing::error!("HTTP server: {e}");
    }
    daemon.stop();
    tracing::info!("stopped cleanly");
    Ok(())
}

/// glibc gives every thread that allocates its own arena (64 MiB reserved, pages kept): with two
/// GStreamer threads plus a recorder per camera that is most of the daemon's RSS. Two arenas
/// are plenty for our allocation rate; `MALLOC_ARENA_MAX` in the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only adjusts allocator tuning; called before the camera threads start.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Other C libraries (musl, macOS) have no per-thread arenas to limit.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
