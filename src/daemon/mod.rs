//! `vidgest run`: takes the data dir, starts the subsystems (video store and shard streams,
//! detection, capture, retention, HTTP API; see `lifecycle`) and stops them in reverse order on
//! SIGINT/SIGTERM (pending fragments are flushed before exit).

mod cameras;
mod deliveries;
mod http;
mod retention;

use crate::api::{ApiState, Auth};
use crate::capture::{CameraState, CameraStatus, Counters};
use crate::clock::{system_clock, SharedClock};
use crate::config::{format_bytes, Config};
use crate::datadir::DataDirLock;
use crate::lifecycle::Started;
use crate::store::{self, Statvfs, Store, StoreOptions};
use crate::streams::{ShardStreams, ShardStreamsOptions};
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

/// The running daemon: subsystems in start order (stopped in reverse), and what the API,
/// status lines and later metrics read.
pub struct Daemon {
    /// Declared (so dropped) before the runtime its API handle joins on.
    started: Started,
    /// Built first: the API and any async subsystem run on it.
    runtime: tokio::runtime::Runtime,
    pub store: Arc<Store>,
    pub streams: Arc<ShardStreams>,
    pub api: ApiState,
    pub cameras: Vec<Arc<CameraStatus>>,
    pub deliveries: Vec<crate::delivery::Pipeline>,
    /// The listener's TLS (its certificate reloads on SIGHUP); None: plain HTTP.
    pub tls: Option<crate::api::Tls>,
    /// Exclusive hold on the data dir, released last (after every store is closed).
    lock: Option<DataDirLock>,
}

impl Daemon {
    /// Starts every subsystem on a data dir this process holds (`DataDirLock::acquire`), in
    /// dependency order: video store and shard streams, detection, capture, retention, and the
    /// HTTP API on `listener`. A failure stops what already started before it returns.
    pub fn start(
        config: &Config,
        clock: SharedClock,
        lock: DataDirLock,
        listener: std::net::TcpListener,
    ) -> anyhow::Result<Daemon> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("api")
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        // Before anything starts: a certificate problem is a config error, not a half-run daemon.
        let tls = http::tls(config)?;
        gstreamer::init().context("cannot initialise GStreamer")?;
        let store = Store::open(
            &store::video_root(&config.agent.data_dir),
            StoreOptions::from_config(config),
            clock.clone(),
            Arc::new(Statvfs),
        )
        .context("cannot open the video store")?;
        let streams = open_streams(config, clock.clone())?;
        // Before the deliveries start: one may read the metrics stream.
        crate::metrics::ensure_stream(&config.metrics, &streams);
        let iterator_key =
            crate::api::kinesis::IteratorKey::load_or_create(&config.agent.data_dir)?;
        let mut started = Started::default();
        let (pool, detection) = cameras::start_detection(config);
        started.push(detection);
        // On error, `started` drops and stops the detector pool.
        let (statuses, capture) =
            cameras::start_cameras(config, &clock, &store, &streams, pool.as_ref())?;
        started.push(capture);
        let (mut delivery_statuses, delivery_handle) = deliveries::start(config, &streams, &clock);
        started.push(delivery_handle);
        let (forward_statuses, forward_handle) =
            deliveries::start_forwarders(config, &streams, &runtime);
        started.push(forward_handle);
        delivery_statuses.extend(forward_statuses);
        let api = ApiState::new(
            streams.clone(),
            Auth::new(&config.api.tokens),
            clock.clone(),
            iterator_key,
        )
        .with_cors_allow_origins(&config.api.cors_allow_origins)
        .with_cameras(store.clone(), statuses.clone())
        .with_firehose(http::firehose_deliveries(config, &clock))
        .with_deliveries(delivery_statuses.clone())
        .with_detection(crate::api::DetectionInfo {
            streams: config
                .cameras
                .iter()
                .filter(|c| c.enabled)
                .filter_map(|c| Some((c.name.clone(), c.detection()?.stream.clone())))
                .collect(),
            workers: pool
                .as_ref()
                .map_or(0, |_| config.detect.workers.max(1) as usize),
        });
        for s in &config.streams {
            api.enforce_limits(&s.name, s.enforce_limits);
        }
        let api = api.with_metrics(crate::metrics::Latest::default());
        let sources = metrics_sources(config, &api, &store, &delivery_statuses);
        started.push(crate::metrics::start(
            &config.metrics,
            sources,
            api.metrics.clone(),
        ));

        started.push(retention::start(
            store.clone(),
            streams.clone(),
            config.storage.retention_interval.0,
        ));
        started.push(http::start(
            &runtime,
            listener,
            api.clone(),
            tls.clone(),
            crate::api::HttpOptions::from(&config.api),
        )?);
        Ok(Daemon {
            runtime,
            started,
            store,
            streams,
            api,
            cameras: statuses,
            deliveries: delivery_statuses,
            tls,
            lock: Some(lock),
        })
    }

    /// Stops every subsystem, newest first: the API stops taking requests, cameras flush their
    /// fragments in progress, then detection and retention; the data dir is released last.
    pub fn stop(mut self) {
        self.started.stop_all();
        drop(self.lock.take());
    }

    /// SIGHUP: reloads what can change without a restart (today the TLS certificate).
    pub fn reload(&self) {
        match &self.tls {
            Some(tls) => http::reload_tls(tls),
            None => tracing::info!("SIGHUP: nothing to reload (no api.tls_cert)"),
        }
    }

    /// Runs `f` on the daemon's runtime (signal handling, status ticks).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    pub fn log_status(&self) {
        for status in &self.cameras {
            let (state, detail) = status.state();
            let c = &status.counters;
            tracing::info!(
                camera = %status.name,
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
        self.log_delivery_status();
    }

    fn log_delivery_status(&self) {
        let now = self.api.clock.now_ns();
        for d in &self.deliveries {
            let s = d.snapshot(now, &self.streams);
            tracing::info!(
                pipeline = %s.name,
                state = %s.state,
                records = s.records,
                objects = s.objects,
                bytes = %format_bytes(s.bytes),
                lag_records = s.lag_records,
                lag_s = s.lag_seconds.round() as u64,
                errors = s.error_records,
                lost = s.lost_records,
                "{} status",
                s.kind
            );
        }
    }

    pub fn camera_states(&self) -> Vec<(String, CameraState)> {
        self.cameras
            .iter()
            .map(|c| (c.name.clone(), c.state().0))
            .collect()
    }
}

/// The cameras running now, as the API sees them (metrics read them at each collection).
fn camera_statuses(api: &ApiState) -> Vec<Arc<CameraStatus>> {
    api.cameras.to_vec()
}

fn metrics_sources(
    config: &Config,
    api: &ApiState,
    store: &Arc<Store>,
    pipelines: &[crate::delivery::Pipeline],
) -> crate::metrics::Sources {
    let cameras_api = api.clone();
    crate::metrics::Sources {
        device: config.device_id(),
        data_dir: config.agent.data_dir.clone(),
        cameras: Arc::new(move || camera_statuses(&cameras_api)),
        video: Some(store.clone()),
        streams: api.streams.clone(),
        pipelines: pipelines.to_vec(),
        clock: api.clock.clone(),
    }
}

/// Opens the shard streams and creates the ones the config declares.
fn open_streams(config: &Config, clock: SharedClock) -> anyhow::Result<Arc<ShardStreams>> {
    let root = config.agent.data_dir.join("streams");
    let streams = ShardStreams::open(&root, ShardStreamsOptions::default(), clock)
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

/// Runs until SIGINT or SIGTERM; SIGHUP reloads the TLS certificate (`Daemon::reload`).
pub fn run(config: Config) -> anyhow::Result<()> {
    limit_malloc_arenas();
    // Before anything touches the data dir: a second daemon there would corrupt both.
    let lock = DataDirLock::acquire(&config.agent.data_dir)?;
    // Bind first: a taken port is a clear start-up error, not a half-running daemon.
    let listener = crate::config::bind_api_listener(&config.api.listen).context("api.listen")?;
    listener.set_nonblocking(true)?;
    let daemon = Daemon::start(&config, system_clock(), lock, listener)?;
    tracing::info!(
        cameras = daemon.cameras.len(),
        streams = config.streams.len(),
        listen = %config.api.listen,
        https = daemon.tls.is_some(),
        data_dir = %config.agent.data_dir.display(),
        "vidgest running; stop with Ctrl-C or SIGTERM"
    );
    if daemon.api.auth.enabled() {
        tracing::info!("API tokens configured: every route but /healthz needs one");
    }
    daemon.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut ticker = tokio::time::interval(status_log_interval());
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break; }
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = hup.recv() => daemon.reload(),
                _ = ticker.tick() => daemon.log_status(),
            }
        }
        Ok::<_, std::io::Error>(())
    })?;
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
