//! systemd integration of `vidgest run` (docs/operations.md#running-under-systemd): READY=1 once
//! the listener is bound and the cameras started, a one-line STATUS= kept current, RELOADING=1
//! around SIGHUP, STOPPING=1 on shutdown, and WATCHDOG=1 at half of WATCHDOG_USEC, sent only
//! while the liveness check passes: every camera supervisor and recorder, the store's retention
//! thread and the API runtime made progress within the watchdog interval (see
//! `lifecycle::Progress`). A wedged daemon then stops pinging and systemd restarts it.
//!
//! Without NOTIFY_SOCKET (not under systemd) nothing is sent and no timer runs.

use super::Daemon;
use crate::capture::{CameraState, Counters};
use crate::config::format_bytes;
use crate::lifecycle::Progress;
use crate::store::{DiskSpace, Statvfs};
use sd_notify::NotifyState;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// STATUS= refresh period when systemd asked for no watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(10);

pub struct Notifier {
    /// NOTIFY_SOCKET is set: there is a service manager to tell.
    enabled: bool,
    /// WATCHDOG_USEC: the longest systemd waits for WATCHDOG=1.
    watchdog: Option<Duration>,
    /// Beaten by a task on the API runtime: stops when its workers are all blocked.
    api: Arc<Progress>,
    /// Components failing liveness now, with when they were first seen failing (logged once).
    failing: BTreeMap<String, Instant>,
    last_status: String,
}

impl Notifier {
    /// Reads NOTIFY_SOCKET and WATCHDOG_USEC, starts the API self-check and sends READY=1 with
    /// the first STATUS= line. Call once the daemon runs (listener bound, cameras started).
    pub fn ready(daemon: &Daemon) -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let watchdog = sd_notify::watchdog_enabled().filter(|_| enabled);
        let api = Arc::new(Progress::new());
        if let Some(interval) = watchdog {
            let api = api.clone();
            // A quarter of the interval: a late tick or two is not a hang.
            let every = (interval / 4).max(Duration::from_millis(50));
            daemon.runtime.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    api.beat();
                }
            });
            tracing::info!(
                interval = %humantime::format_duration(interval),
                "systemd watchdog on: WATCHDOG=1 only while every component makes progress"
            );
        }
        let mut n = Notifier {
            enabled,
            watchdog,
            api,
            failing: BTreeMap::new(),
            last_status: String::new(),
        };
        let status = n.status_line(daemon);
        n.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        n.last_status = status;
        n
    }

    /// How often `tick` wants to run: half the watchdog interval; None when there is no
    /// service manager.
    pub fn tick_interval(&self) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        Some(self.watchdog.map_or(STATUS_EVERY, |w| w / 2))
    }

    /// Checks liveness, sends WATCHDOG=1 when it passes, and refreshes STATUS= when it changed.
    pub fn tick(&mut self, daemon: &Daemon) {
        let live = self.check_liveness(daemon, Instant::now());
        let mut status = self.status_line(daemon);
        if !live {
            let names: Vec<&str> = self.failing.keys().map(String::as_str).collect();
            status = format!("liveness failed: {}; {status}", names.join(", "));
        }
        let mut states = Vec::with_capacity(2);
        if live && self.watchdog.is_some() {
            states.push(NotifyState::Watchdog);
        }
        if status != self.last_status {
            states.push(NotifyState::Status(&status));
        }
        if !states.is_empty() {
            self.send(&states);
        }
        self.last_status = status;
    }

    /// SIGHUP received: RELOADING=1 (then the daemon reloads, then [`Notifier::reloaded`]).
    pub fn reloading(&mut self) {
        // MONOTONIC_USEC: what Type=notify-reload (systemd 253+) requires with RELOADING=1.
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    /// The reload is over (applied or rejected): READY=1 again with a fresh STATUS=.
    pub fn reloaded(&mut self, daemon: &Daemon) {
        let status = self.status_line(daemon);
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        self.last_status = status;
    }

    /// Shutdown begins (before subsystems stop, which can take a while).
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!("cannot notify systemd (NOTIFY_SOCKET): {e}");
        }
    }

    /// True when every component made progress within the watchdog interval (always without a
    /// watchdog). Logs a component once when it starts failing and once when it recovers.
    fn check_liveness(&mut self, daemon: &Daemon, now: Instant) -> bool {
        let Some(limit) = self.watchdog else {
            return true;
        };
        let cameras = daemon.api.cameras();
        let mut components: Vec<(String, &Progress)> = Vec::new();
        for c in cameras.iter() {
            components.push((
                format!("camera {} supervisor", c.name),
                &c.supervisor_progress,
            ));
            components.push((format!("camera {} recorder", c.name), &c.recorder_progress));
        }
        components.push(("store retention".into(), &daemon.retention_progress));
        components.push(("api runtime".into(), &self.api));
        let mut stuck = BTreeMap::new();
        for (name, progress) in components {
            if let Some(d) = progress.stalled_for(now).filter(|d| *d > limit) {
                stuck.insert(name, d);
            }
        }
        for (name, d) in &stuck {
            if !self.failing.contains_key(name) {
                tracing::error!(
                    component = %name,
                    stalled_s = d.as_secs(),
                    "liveness failed: no progress within the watchdog interval; WATCHDOG=1 withheld so that systemd restarts vidgest"
                );
                self.failing.insert(name.clone(), now);
            }
        }
        self.failing.retain(|name, _| {
            let still = stuck.contains_key(name);
            if !still {
                tracing::info!(component = %name, "liveness recovered");
            }
            still
        });
        stuck.is_empty()
    }

    /// One line for `systemctl status`: cameras, records, deliveries, disk.
    fn status_line(&self, daemon: &Daemon) -> String {
        let cameras = daemon.api.cameras();
        let deliveries = daemon.api.deliveries();
        let total = cameras.len();
        let streaming = cameras
            .iter()
            .filter(|c| c.state().0 == CameraState::Streaming)
            .count();
        let records: u64 = cameras
            .iter()
            .map(|c| Counters::get(&c.counters.detection_records))
            .sum();
        let now = daemon.api.clock.now_ns();
        let lag: u64 = deliveries
            .iter()
            .map(|d| d.snapshot(now, &daemon.streams).lag_records)
            .sum();
        let stored = format_bytes(daemon.store.total_usage());
        let free = Statvfs
            .available(daemon.store.root())
            .map_or_else(|_| "?".into(), format_bytes);
        format!(
            "{streaming}/{total} cameras streaming, {records} detection records, {} deliveries (lag {lag} records), {stored} stored, {free} free",
            deliveries.len()
        )
    }
}

/// Resolves at the next tick; never without an interval (no service manager).
pub async fn next_tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}
