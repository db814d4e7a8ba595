//! `vidgest run`: takes the data dir, starts the subsystems (video store and shard streams,
//! detection, capture, retention, HTTP API; see `lifecycle`) and stops them in reverse order on
//! SIGINT/SIGTERM (pending fragments are flushed before exit); SIGHUP reloads the config file
//! (`Daemon::reload`).

mod cameras;
mod deliveries;
mod http;
mod notify;
mod reload;
mod retention;

pub use cameras::CameraChanges;
pub use reload::{ConfigFile, ReloadError, ReloadSummary};

use crate::api::{ApiState, Auth};
use crate::capture::{CameraState, Counters};
use crate::clock::{system_clock, SharedClock};
use crate::config::{format_bytes, Config};
use crate::datadir::DataDirLock;
use crate::lifecycle::Started;
use crate::store::{self, Statvfs, Store, StoreOptions};
use crate::streams::{ShardStreams, ShardStreamsOptions};
use anyhow::Context;
use cameras::Cameras;
use deliveries::Pipelines;
use parking_lot::Mutex;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// What handlers read; its cameras, deliveries and tokens swap on reload.
    pub api: ApiState,
    /// The running cameras, each started and stopped on its own (reload).
    cameras: Arc<Mutex<Cameras>>,
    /// The running deliveries and forwarders, each restarted on its own (reload).
    pipelines: Arc<Mutex<Pipelines>>,
    /// The listener's TLS (its certificate reloads on SIGHUP); None: plain HTTP.
    pub tls: Option<crate::api::Tls>,
    /// The config in force: the last one loaded successfully.
    config: ConfigFile,
    /// Reloads rejected (invalid config file).
    reload_failures: AtomicU64,
    /// Listened to from the first moment of start: a SIGHUP or SIGTERM that arrives while the
    /// daemon starts waits for `run` instead of killing it (the default action).
    signals: Option<Signals>,
    /// Exclusive hold on the data dir, released last (after every store is closed).
    lock: Option<DataDirLock>,
    /// Beats of the retention thread, for the watchdog's liveness check (notify.rs).
    retention_progress: Arc<crate::lifecycle::Progress>,
}

impl Daemon {
    /// Starts every subsystem on a data dir this process holds (`DataDirLock::acquire`), in
    /// dependency order: video store and shard streams, detection, capture, retention, and the
    /// HTTP API on `listener`. A failure stops what already started before it returns.
    pub fn start(
        file: ConfigFile,
        clock: SharedClock,
        lock: DataDirLock,
        listener: std::net::TcpListener,
    ) -> anyhow::Result<Daemon> {
        let config = &file.config;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("api")
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let signals = Signals::new(&runtime).context("cannot listen for signals")?;
        // Before anything starts: a certificate problem is a config error, not a half-run daemon.
        let tls = http::tls(config)?;
        // GStreamer starts on its first use (`crate::gst_init`): retina cameras need it only
        // for detection.
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
        let cameras = Arc::new(Mutex::new(Cameras::new(
            clock.clone(),
            store.clone(),
            streams.clone(),
            pool,
            config.detect.workers,
        )));
        // On error, `started` drops and stops the detector pool.
        cameras.lock().start_all(&file)?;
        started.push(cameras::capture_handle(&cameras));
        let pipelines = Arc::new(Mutex::new(Pipelines::new(&streams, &clock, &runtime)));
        pipelines.lock().start_all(&file);
        started.push(deliveries::handle(&pipelines));
        // Read once: the registry's lock must not be held across the builder chain.
        let (camera_statuses, detection_info) = {
            let cameras = cameras.lock();
            (
                cameras.statuses(),
                cameras::detection_info(config, &cameras),
            )
        };
        let pipeline_statuses = pipelines.lock().statuses();
        let api = ApiState::new(
            streams.clone(),
            Auth::new(&config.api.tokens),
            clock.clone(),
            iterator_key,
        )
        .with_cors_allow_origins(&config.api.cors_allow_origins)
        .with_session_hours(config.api.session_hours)
        .with_cameras(store.clone(), camera_statuses)
        .with_firehose(http::firehose_deliveries(config, &clock))
        .with_deliveries(pipeline_statuses)
        .with_detection(detection_info);
        for s in &config.streams {
            api.enforce_limits(&s.name, s.enforce_limits);
        }
        let api = api.with_metrics(crate::metrics::Latest::default());
        let sources = metrics_sources(config, &api, &store);
        started.push(crate::metrics::start(
            &config.metrics,
            sources,
            api.metrics.clone(),
        ));

        let retention_progress = Arc::new(crate::lifecycle::Progress::new());
        started.push(retention::start(
            store.clone(),
            streams.clone(),
            config.storage.retention_interval.0,
            retention_progress.clone(),
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
            cameras,
            pipelines,
            tls,
            config: file,
            reload_failures: AtomicU64::new(0),
            signals: Some(signals),
            lock: Some(lock),
            retention_progress,
        })
    }

    /// Stops every subsystem, newest first: the API stops taking requests, cameras flush their
    /// fragments in progress, then detection and retention; the data dir is released last.
    pub fn stop(mut self) {
        self.started.stop_all();
        drop(self.lock.take());
    }

    /// SIGHUP: re-reads the config file and applies what differs. Cameras added, removed or
    /// changed start, stop (flushing) or restart alone, the others keep recording; new
    /// `[[stream]]`s are created (none is ever deleted here) and `enforce_limits` re-applied;
    /// changed deliveries and forwarders restart; API tokens, CORS origins and the TLS files
    /// are re-read. Keys that need a restart are logged and left as they run. An invalid file
    /// is rejected with every problem logged (TOML paths) and the running config stays.
    pub fn reload(&mut self) -> Result<ReloadSummary, ReloadError> {
        let new = match ConfigFile::load(&self.config.path) {
            Ok(c) => c,
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "reload rejected, the running config stays: {}",
                    self.config.path.display()
                );
                match e.problems() {
                    [] => tracing::error!("reload: {e}"),
                    problems => problems
                        .iter()
                        .for_each(|p| tracing::error!("reload: invalid config: {p}")),
                }
                return Err(e.into());
            }
        };
        let mut summary = ReloadSummary {
            needs_restart: new.restart_keys(&self.config),
            ..Default::default()
        };
        if !summary.needs_restart.is_empty() {
            tracing::warn!(
                "reload: these keys changed but only take effect on a restart (they keep their running values): {}",
                summary.needs_restart.join(", ")
            );
        }
        let config = &new.config;
        summary.streams_created = self.ensure_streams(config);

        let changes = self.cameras.lock().apply(&new);
        summary.cameras_added = changes.added;
        summary.cameras_removed = changes.removed;
        summary.cameras_restarted = changes.restarted;
        summary.cameras_failed = changes.failed;
        {
            let cameras = self.cameras.lock();
            self.api.set_cameras(cameras.statuses());
            self.api
                .set_detection(cameras::detection_info(config, &cameras));
        }

        let changes = self.pipelines.lock().apply(&new);
        summary.pipelines_started = changes.started;
        summary.pipelines_stopped = changes.stopped;
        summary.pipelines_restarted = changes.restarted;
        self.api.set_deliveries(self.pipelines.lock().statuses());
        self.api
            .set_firehose(self.api.firehose().reloaded(&config.deliveries));

        self.api.set_auth(Auth::new(&config.api.tokens));
        summary.tokens = config.api.tokens.len();
        self.api
            .set_cors_allow_origins(&config.api.cors_allow_origins);
        summary.tls_reloaded = self.tls.as_ref().map(http::reload_tls);

        self.config = new;
        tracing::info!("{summary}");
        Ok(summary)
    }

    /// Reloads rejected so far because the config file was invalid.
    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Ordering::Relaxed)
    }

    /// Creates the `[[stream]]`s that are new and applies `enforce_limits` to all; a stream no
    /// longer in the config is kept (a reload never deletes records). Returns the created ones.
    fn ensure_streams(&self, config: &Config) -> Vec<String> {
        let mut created = Vec::new();
        for s in &config.streams {
            match self
                .streams
                .ensure_stream(&s.name, s.shards, s.retention_hours)
            {
                // `ensure_stream` logs the creation
                Ok(true) => created.push(s.name.clone()),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(stream = %s.name, "reload: cannot create the stream: {e}")
                }
            }
            self.api.enforce_limits(&s.name, s.enforce_limits);
        }
        for old in &self.config.config.streams {
            if !config.streams.iter().any(|s| s.name == old.name) {
                tracing::info!(stream = %old.name, "reload: the stream is no longer in the config; it is kept with its records (delete it through the API)");
                self.api.enforce_limits(&old.name, false);
            }
        }
        created
    }

    /// Runs `f` on the daemon's runtime (signal handling, status ticks).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    pub fn log_status(&self) {
        for status in self.api.cameras().iter() {
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
        for d in self.api.deliveries().iter() {
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
        self.api
            .cameras()
            .iter()
            .map(|c| (c.name.clone(), c.state().0))
            .collect()
    }
}

fn metrics_sources(config: &Config, api: &ApiState, store: &Arc<Store>) -> crate::metrics::Sources {
    // read at each collection: both change on reload
    let (cameras_api, pipelines_api) = (api.clone(), api.clone());
    crate::metrics::Sources {
        device: config.device_id(),
        data_dir: config.agent.data_dir.clone(),
        cameras: Arc::new(move || cameras_api.cameras().to_vec()),
        video: Some(store.clone()),
        streams: api.streams.clone(),
        pipelines: Arc::new(move || pipelines_api.deliveries().to_vec()),
        clock: api.clock.clone(),
    }
}

/// Opens the shard streams and creates the ones the config declares.
fn open_streams(config: &Config, clock: SharedClock) -> anyhow::Result<Arc<ShardStreams>> {
    let root = config.agent.data_dir.join("streams");
    let streams = ShardStreams::open(&root, ShardStreamsOptions::default(), clock)
        .with_context(|| format!("cannot open the shard streams in {}", root.display()))?;
    for s in &config.streams {
        // logs "created stream" when it was missing
        streams
            .ensure_stream(&s.name, s.shards, s.retention_hours)
            .with_context(|| format!("cannot create stream `{}`", s.name))?;
    }
    Ok(streams)
}

/// Runs the config file at `path` until SIGINT or SIGTERM; SIGHUP reloads it
/// (`Daemon::reload`). Under systemd it reports readiness, status, reloads and stopping, and
/// pings the watchdog while every component is live (notify.rs).
pub fn run(path: &Path) -> anyhow::Result<()> {
    let file = ConfigFile::load(path)?;
    let config = file.config.clone();
    limit_malloc_arenas();
    // Before anything touches the data dir: a second daemon there would corrupt both.
    let lock = DataDirLock::acquire(&config.agent.data_dir)?;
    // Bind first: a taken port is a clear start-up error, not a half-running daemon.
    let listener = crate::config::bind_api_listener(&config.api.listen).context("api.listen")?;
    listener.set_nonblocking(true)?;
    let mut daemon = Daemon::start(file, system_clock(), lock, listener)?;
    tracing::info!(
        cameras = daemon.api.cameras().len(),
        streams = config.streams.len(),
        listen = %config.api.listen,
        https = daemon.tls.is_some(),
        data_dir = %config.agent.data_dir.display(),
        "vidgest running; stop with Ctrl-C or SIGTERM, reload the config with SIGHUP"
    );
    if daemon.api.auth().enabled() {
        tracing::info!("API tokens configured: every route but /healthz needs one");
    }
    let mut notifier = notify::Notifier::ready(&daemon);
    let mut signals = daemon.signals.take().expect("signals are taken once");
    signals.systemd_every(notifier.tick_interval(), &daemon.runtime);
    loop {
        match daemon.block_on(signals.next()) {
            Signal::Stop(name) => {
                tracing::info!("{name}: shutting down");
                break;
            }
            // Outside the runtime: a reload blocks while stopped cameras flush.
            Signal::Reload => {
                notifier.reloading();
                let _ = daemon.reload();
                notifier.reloaded(&daemon);
            }
            Signal::StatusTick => daemon.log_status(),
            Signal::SystemdTick => notifier.tick(&daemon),
        }
    }
    notifier.stopping();
    daemon.stop();
    tracing::info!("stopped cleanly");
    Ok(())
}

/// What the main loop waits for.
enum Signal {
    Stop(&'static str),
    Reload,
    StatusTick,
    /// STATUS= and the watchdog (under systemd only).
    SystemdTick,
}

/// The daemon's signals and its status-log ticker (created on its runtime).
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    ticker: tokio::time::Interval,
    /// systemd's STATUS= and watchdog ticks (notify.rs); None: not under systemd.
    systemd: Option<tokio::time::Interval>,
}

impl Signals {
    fn new(runtime: &tokio::runtime::Runtime) -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let _entered = runtime.enter();
        let mut ticker = tokio::time::interval(status_log_interval());
        ticker.reset(); // the first tick one interval from now, not at once
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            ticker,
            systemd: None,
        })
    }

    /// Adds systemd's tick (`Notifier::tick_interval`).
    fn systemd_every(&mut self, every: Option<Duration>, runtime: &tokio::runtime::Runtime) {
        let _entered = runtime.enter();
        self.systemd = every.map(tokio::time::interval);
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::Stop("SIGINT"),
            _ = self.term.recv() => Signal::Stop("SIGTERM"),
            _ = self.hup.recv() => Signal::Reload,
            _ = self.ticker.tick() => Signal::StatusTick,
            _ = notify::next_tick(&mut self.systemd) => Signal::SystemdTick,
        }
    }
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
