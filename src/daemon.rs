//! `vidgest run`: opens the store, starts every enabled camera and the retention task, and
//! stops cleanly on SIGINT/SIGTERM (pending fragments are flushed before exit).

use crate::capture::{self, CameraHandle, CameraState, Counters, Shutdown};
use crate::clock::{system_clock, SharedClock};
use crate::config::{format_bytes, Config};
use crate::store::{self, Statvfs, Store, StoreOptions, StreamOptions};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

const STATUS_LOG_INTERVAL: Duration = Duration::from_secs(60);

pub struct Daemon {
    pub store: Arc<Store>,
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
            config.storage.retention_interval.0,
            shutdown.clone(),
        );
        Ok(Daemon {
            store,
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

fn spawn_retention(
    store: Arc<Store>,
    every: Duration,
    shutdown: Shutdown,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("retention".into())
        .spawn(move || loop {
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
    let daemon = Daemon::start(&config, system_clock())?;
    tracing::info!(
        cameras = daemon.cameras.len(),
        data_dir = %config.agent.data_dir.display(),
        "vidgest running; stop with Ctrl-C or SIGTERM"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
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
    daemon.stop();
    tracing::info!("stopped cleanly");
    Ok(())
}
