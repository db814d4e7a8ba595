//! `vidgest run`: opens the store, starts every enabled camera and the retention task, and
//! stops cleanly on SIGINT/SIGTERM (pending fragments are flushed before exit).

use crate::api::{ApiState, Auth};
use crate::capture::{self, CameraHandle, CameraState, Counters, Shutdown};
use crate::clock::{system_clock, SharedClock};
use crate::config::{format_bytes, Config};
use crate::store::{self, Statvfs, Store, StoreOptions, StreamOptions};
use crate::streams::{StreamStore, StreamsOptions};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

const STATUS_LOG_INTERVAL: Duration = Duration::from_secs(60);

pub struct Daemon {
    pub store: Arc<Store>,
    pub streams: Arc<StreamStore>,
    pub api: ApiState,
    pub cameras: Vec<CameraHandle>,
    shutdown: Shutdown,
    retention: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    pub fn start(config: &Config, clock: SharedClock) -> anyhow::Result<Daemon> {
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
        );
        for s in &config.streams {
            api.enforce_limits(&s.name, s.enforce_limits);
        }
        let shutdown = Shutdown::new();
        let mut cameras = Vec::new();
        for cam in config.cameras.iter().filter(|c| c.enabled) {
            let writer = store
                .open_stream(
                    &cam.name,
                    StreamOptions {
                        retention: cam.retention.0,
                        max_bytes: cam.max_bytes.map(|b| b.0),
                        segment_size: cam.segment_size(&config.storage),
                    },
                )
                .with_context(|| format!("camera {}: cannot open its stream", cam.name))?;
            tracing::info!(camera = %cam.name, source = ?cam.source, "starting camera");
            cameras.push(capture::spawn_camera(
                cam.clone(),
                writer,
                clock.clone(),
                shutdown.clone(),
            ));
        }
        for cam in config.cameras.iter().filter(|c| !c.enabled) {
            tracing::info!(camera = %cam.name, "camera disabled in config");
        }
        let retention = spawn_retention(
            store.clone(),
            streams.clone(),
            config.storage.retention_interval.0,
            shutdown.clone(),
        );
        Ok(Daemon {
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
        if let Some(r) = self.retention.take() {
            let _ = r.join();
        }
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
    // Bind first: a taken port is a clear start-up error, not a half-running daemon.
    let listener = std::net::TcpListener::bind(&config.api.listen).with_context(|| {
        format!(
            "cannot listen on {} (api.listen): is another vidgest running?",
            config.api.listen
        )
    })?;
    listener.set_nonblocking(true)?;
    let daemon = Daemon::start(&config, system_clock())?;
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
        async move {
            let _ = api_stopped.await;
        },
    ));
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut ticker = tokio::time::interval(STATUS_LOG_INTERVAL);
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
