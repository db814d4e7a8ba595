//! One collection: reads the device (sysinfo, statvfs, /proc/self), the cameras' statuses and
//! the video store's index, the shard streams and the pipelines, and returns a `MetricsRecord`.
//! Rates and quantiles are over the time since the previous collection.

use super::histogram::HistogramSnapshot;
use crate::capture::{CameraState, CameraStatus, Counters};
use crate::clock::{SharedClock, UnixNanos};
use crate::records::*;
use crate::store::Store;
use crate::streams::ShardStreams;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The running cameras, read at each collection (hot reload may change the set).
pub type CameraList = Arc<dyn Fn() -> Vec<Arc<CameraStatus>> + Send + Sync>;
/// The running deliveries and forwarders, read at each collection (they change on reload).
pub type PipelineList = Arc<dyn Fn() -> Vec<crate::delivery::Pipeline> + Send + Sync>;

/// What the collector reads.
pub struct Sources {
    /// Device id (`agent.device_id` or the host name): the records' partition key.
    pub device: String,
    pub data_dir: PathBuf,
    pub cameras: CameraList,
    pub video: Option<Arc<Store>>,
    pub streams: Arc<ShardStreams>,
    pub pipelines: PipelineList,
    pub clock: SharedClock,
}

/// Counter values of the previous collection, for rates.
#[derive(Debug, Default)]
struct Previous {
    t_ns: UnixNanos,
    process_cpu_s: f64,
    cameras: HashMap<String, CameraPrevious>,
}

#[derive(Debug)]
struct CameraPrevious {
    /// The status object the counters came from: a restarted camera starts from zero.
    status: Arc<CameraStatus>,
    access_units: u64,
    bytes_stored: u64,
    inference: HistogramSnapshot,
}

/// Per-second rate of a counter between two readings `dt_s` apart. None without a window or
/// when the counter went backwards (its owner restarted).
pub fn rate(before: u64, now: u64, dt_s: f64) -> Option<f64> {
    (dt_s > 0.0 && now >= before).then(|| (now - before) as f64 / dt_s)
}

pub struct Collector {
    sources: Sources,
    device: Device,
    prev: Option<Previous>,
    /// Own cost so far (`Publisher` adds each collection's CPU time).
    pub(super) cost: CollectorMetrics,
}

impl Collector {
    pub fn new(sources: Sources) -> Self {
        Self {
            sources,
            device: Device::new(),
            prev: None,
            cost: CollectorMetrics::default(),
        }
    }

    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    pub fn collect(&mut self) -> MetricsRecord {
        let now = self.sources.clock.now_ns();
        let prev = self.prev.take();
        let dt_s = prev
            .as_ref()
            .map(|p| (now - p.t_ns) as f64 / 1e9)
            .filter(|dt| *dt > 0.0);
        let host = self.device.host(&self.sources.data_dir, prev.is_some());
        let mut process = self.device.process();
        if let (Some(p), Some(dt)) = (&prev, dt_s) {
            process.cpu_cores = Some(((process.cpu_seconds_total - p.process_cpu_s) / dt).max(0.0));
        }
        let mut next = Previous {
            t_ns: now,
            process_cpu_s: process.cpu_seconds_total,
            cameras: HashMap::new(),
        };
        let cameras = self.cameras(now, dt_s, prev.as_ref(), &mut next);
        let streams = self.streams();
        let pipelines = self.pipelines(now);
        self.prev = Some(next);
        MetricsRecord {
            schema: METRICS_SCHEMA.to_string(),
            device: self.sources.device.clone(),
            timestamp: crate::clock::format_rfc3339(now),
            timestamp_ns: now,
            interval_s: dt_s,
            host,
            process,
            cameras,
            streams,
            pipelines,
            collector: self.cost.clone(),
        }
    }

    fn cameras(
        &self,
        now: UnixNanos,
        dt_s: Option<f64>,
        prev: Option<&Previous>,
        next: &mut Previous,
    ) -> Vec<CameraMetrics> {
        // One index read for every camera: oldest and newest stored fragment.
        let video: HashMap<String, (Option<UnixNanos>, Option<UnixNanos>)> = self
            .sources
            .video
            .as_ref()
            .and_then(|store| crate::store::StoreReader::open(store.root()).ok())
            .and_then(|r| {
                let summaries = r.streams().ok()?;
                Some(
                    summaries
                        .into_iter()
                        .map(|s| {
                            let last = r.last_fragment(&s.name).ok().flatten().map(|f| f.server_ns);
                            (s.name, (s.first_producer_ns, last))
                        })
                        .collect(),
                )
            })
            .unwrap_or_default();
        let age = |t: Option<UnixNanos>| t.map(|t| ((now - t) as f64 / 1e9).max(0.0));
        (self.sources.cameras)()
            .into_iter()
            .map(|status| {
                let c = &status.counters;
                let get = Counters::get;
                let (state, since) = status.state_since();
                let inference = status.detect_stats.inference.snapshot();
                let before = prev
                    .and_then(|p| p.cameras.get(&status.name))
                    .filter(|p| Arc::ptr_eq(&p.status, &status));
                let access_units = get(&c.access_units);
                let bytes_stored = get(&c.bytes_stored);
                let window = match before {
                    Some(b) => inference.since(&b.inference),
                    None => inference.clone(),
                };
                let rate_of = |pick: fn(&CameraPrevious) -> u64, now_v: u64| {
                    before.and_then(|b| rate(pick(b), now_v, dt_s?))
                };
                let (oldest, newest) = video.get(&status.name).copied().unwrap_or_default();
                let m = CameraMetrics {
                    camera: status.name.clone(),
                    state: state_name(state).to_string(),
                    state_seconds: since.elapsed().as_secs_f64(),
                    fps: rate_of(|b| b.access_units, access_units),
                    bitrate_bps: rate_of(|b| b.bytes_stored, bytes_stored).map(|r| r * 8.0),
                    access_units_total: access_units,
                    fragments_stored_total: get(&c.fragments_stored),
                    bytes_stored_total: bytes_stored,
                    reconnects_total: get(&c.sessions).saturating_sub(1),
                    dropped_queue_full_total: get(&c.dropped_queue_full),
                    dropped_before_key_total: get(&c.dropped_before_key),
                    rtp_packets_lost_total: get(&c.rtp_packets_lost),
                    clock_resyncs_total: get(&c.clock_resyncs),
                    rtcp_sender_reports_total: get(&c.rtcp_sender_reports),
                    clock_hints_ignored_total: get(&c.clock_hints_ignored),
                    last_fragment_age_s: age(newest),
                    retention_horizon_s: age(oldest),
                    detect: DetectMetrics {
                        frames_total: get(&c.detect_frames),
                        inferences_total: get(&c.inferences),
                        skipped_motion_total: get(&c.detect_skipped_still),
                        skipped_busy_total: get(&c.detect_skipped_busy),
                        errors_total: get(&c.detect_errors),
                        feed_dropped_total: get(&status.detect_feed_dropped),
                        inference_p50_ms: window.quantile(0.5).map(|s| round3(s * 1000.0)),
                        inference_p95_ms: window.quantile(0.95).map(|s| round3(s * 1000.0)),
                        inference_seconds_sum: inference.sum_us as f64 / 1e6,
                        objects_total: status.detect_stats.objects(),
                    },
                };
                next.cameras.insert(
                    status.name.clone(),
                    CameraPrevious {
                        status: status.clone(),
                        access_units,
                        bytes_stored,
                        inference,
                    },
                );
                m
            })
            .collect()
    }

    fn streams(&self) -> StreamsMetrics {
        let s = &self.sources.streams;
        let io = s.io_stats();
        let streams = s
            .list_streams()
            .into_iter()
            .filter_map(|name| {
                let shards = s.shard_stats(&name).ok()?;
                Some(StreamMetrics {
                    shards: shards.len() as u32,
                    stored_bytes: shards.iter().map(|sh| sh.bytes).sum(),
                    stream: name,
                })
            })
            .collect();
        StreamsMetrics {
            records_appended_total: io.records_appended,
            bytes_appended_total: io.bytes_appended,
            streams,
        }
    }

    fn pipelines(&self, now: UnixNanos) -> Vec<PipelineMetrics> {
        (self.sources.pipelines)()
            .iter()
            .map(|p| {
                let s = p.snapshot(now, &self.sources.streams);
                PipelineMetrics {
                    pipeline: s.name,
                    kind: s.kind,
                    source: s.source,
                    state: s.state,
                    records_total: s.records,
                    objects_total: s.objects,
                    bytes_total: s.bytes,
                    error_records_total: s.error_records,
                    lost_records_total: s.lost_records,
                    lag_records: s.lag_records,
                    lag_seconds: s.lag_seconds,
                }
            })
            .collect()
    }
}

/// CPU time of the calling thread, seconds (0 where the clock is missing).
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc == 0 {
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    } else {
        0.0
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn state_name(s: CameraState) -> &'static str {
    match s {
        CameraState::Starting => "starting",
        CameraState::Streaming => "streaming",
        CameraState::Backoff => "backoff",
        CameraState::Failed => "failed",
        CameraState::Stopped => "stopped",
    }
}

/// Device and process figures through sysinfo (kept between collections: CPU use is a
/// difference of two readings), statvfs and /proc/self.
struct Device {
    sys: Option<sysinfo::System>,
    networks: Option<sysinfo::Networks>,
    components: Option<sysinfo::Components>,
    pid: Option<sysinfo::Pid>,
}

impl Device {
    fn new() -> Self {
        let sys = sysinfo::System::new()
            .inspect_err(|e| tracing::warn!("metrics: no CPU or memory figures: {e}"))
            .ok();
        Self {
            sys,
            networks: sysinfo::Networks::new_with_refreshed_list().ok(),
            components: sysinfo::Components::new_with_refreshed_list().ok(),
            pid: sysinfo::get_current_pid().ok(),
        }
    }

    fn host(&mut self, data_dir: &std::path::Path, has_previous: bool) -> HostMetrics {
        let mut h = HostMetrics::default();
        if let Some(sys) = &mut self.sys {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            // The first reading has no earlier one to measure CPU use against.
            if has_previous {
                h.cpu_usage_ratio = Some(round3(f64::from(sys.global_cpu_usage()) / 100.0));
            }
            h.cpus = sys.cpus().len() as u32;
            h.memory_total_bytes = sys.total_memory();
            h.memory_used_bytes = sys.used_memory();
            h.memory_available_bytes = sys.available_memory();
            h.swap_total_bytes = sys.total_swap();
            h.swap_used_bytes = sys.used_swap();
        }
        if let Ok(l) = sysinfo::System::load_average() {
            (h.load1, h.load5, h.load15) = (l.one, l.five, l.fifteen);
        }
        h.uptime_s = sysinfo::System::uptime().unwrap_or(0);
        h.data_disk = rustix::fs::statvfs(data_dir).ok().map(|st| {
            let total = st.f_blocks.saturating_mul(st.f_frsize);
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            let used = st
                .f_blocks
                .saturating_sub(st.f_bfree)
                .saturating_mul(st.f_frsize);
            DiskMetrics {
                path: data_dir.display().to_string(),
                total_bytes: total,
                free_bytes: free,
                used_bytes: used,
            }
        });
        if let Some(c) = &mut self.components {
            c.refresh(false);
            h.temperatures = c
                .iter()
                .filter_map(|c| {
                    let t = c.temperature()?;
                    t.is_finite().then(|| Temperature {
                        sensor: c.label().to_string(),
                        celsius: f64::from(t),
                    })
                })
                .collect();
        }
        if let Some(n) = &mut self.networks {
            n.refresh(true);
            let mut list: Vec<NetworkInterface> = n
                .iter()
                .filter(|(name, _)| name.as_os_str() != "lo")
                .map(|(name, d)| NetworkInterface {
                    interface: name.to_string_lossy().into_owned(),
                    received_bytes_total: d.total_received(),
                    transmitted_bytes_total: d.total_transmitted(),
                })
                .collect();
            list.sort_by(|a, b| a.interface.cmp(&b.interface));
            h.network = list;
        }
        h
    }

    fn process(&mut self) -> ProcessMetrics {
        let mut p = ProcessMetrics::default();
        if let (Some(sys), Some(pid)) = (&mut self.sys, self.pid) {
            sys.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[pid]),
                false,
                sysinfo::ProcessRefreshKind::nothing()
                    .with_memory()
                    .with_cpu(),
            );
            if let Some(me) = sys.process(pid) {
                p.rss_bytes = me.memory();
                p.cpu_seconds_total = me.accumulated_cpu_time() as f64 / 1000.0;
            }
        }
        // Counted from /proc (Linux); absent elsewhere. read_dir's own descriptor is in the
        // fd listing: not counted.
        let count = |dir: &str| std::fs::read_dir(dir).ok().map(|d| d.count() as u64);
        p.threads = count("/proc/self/task");
        p.open_fds = count("/proc/self/fd").map(|n| n.saturating_sub(1));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::streams::ShardStreamsOptions;
    use parking_lot::Mutex;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    type Cameras = Arc<Mutex<Vec<Arc<CameraStatus>>>>;

    /// A collector over real shard streams, a manual clock and a camera list the test swaps.
    fn collector(dir: &std::path::Path) -> (Collector, Arc<ManualClock>, Cameras) {
        let clock = ManualClock::new(1_800_000_000_000_000_000);
        let streams =
            ShardStreams::open(dir, ShardStreamsOptions::default(), clock.clone()).unwrap();
        let cams: Cameras = Arc::default();
        let list = cams.clone();
        let c = Collector::new(Sources {
            device: "dev".into(),
            data_dir: dir.to_path_buf(),
            cameras: Arc::new(move || list.lock().clone()),
            video: None,
            streams,
            pipelines: Arc::new(Vec::new),
            clock: clock.clone(),
        });
        (c, clock, cams)
    }

    #[test]
    fn rates_between_samples() {
        assert_eq!(rate(100, 400, 10.0), Some(30.0));
        assert_eq!(rate(100, 100, 10.0), Some(0.0));
        // A counter that went backwards (its camera restarted): no rate rather than a wrong one.
        assert_eq!(rate(500, 100, 10.0), None);
        // No window (first sample, or a clock that did not move).
        assert_eq!(rate(0, 100, 0.0), None);
    }

    #[test]
    fn camera_rates_and_inference_quantiles_are_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, clock, cams) = collector(dir.path());
        let cam = Arc::new(CameraStatus::new("cam"));
        cams.lock().push(cam.clone());
        cam.counters.access_units.store(100, Ordering::Relaxed);
        cam.counters.bytes_stored.store(1_000, Ordering::Relaxed);
        cam.detect_stats
            .inference
            .record(Duration::from_millis(900));
        let first = c.collect();
        assert_eq!(first.interval_s, None);
        assert_eq!(first.cameras[0].fps, None, "no rate without a window");
        assert!(first.host.cpu_usage_ratio.is_none());

        clock.advance(Duration::from_secs(10));
        cam.counters.access_units.store(250, Ordering::Relaxed);
        cam.counters.bytes_stored.store(11_000, Ordering::Relaxed);
        for _ in 0..10 {
            cam.detect_stats.inference.record(Duration::from_millis(40));
        }
        let second = c.collect();
        assert_eq!(second.interval_s, Some(10.0));
        let m = &second.cameras[0];
        assert_eq!(m.fps, Some(15.0));
        assert_eq!(m.bitrate_bps, Some(8_000.0));
        // Only this interval's inferences (the 900 ms one was before it).
        let p95 = m.detect.inference_p95_ms.unwrap();
        assert!((30.0..=50.0).contains(&p95), "p95 {p95}");
        assert!(second.host.cpu_usage_ratio.is_some());
        assert!(second.host.cpus > 0 && second.host.memory_total_bytes > 0);
        assert!(second.process.cpu_cores.is_some());
        assert!(second.process.rss_bytes > 0);

        // The camera restarted (a new status object, counters from 0): no bogus rate.
        let restarted = Arc::new(CameraStatus::new("cam"));
        restarted.counters.access_units.store(5, Ordering::Relaxed);
        *cams.lock() = vec![restarted];
        clock.advance(Duration::from_secs(10));
        let third = c.collect();
        assert_eq!(third.cameras[0].fps, None);
        assert_eq!(third.cameras[0].access_units_total, 5);
    }

    #[test]
    fn retina_losses_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _clock, cams) = collector(dir.path());
        let cam = Arc::new(CameraStatus::new("cam"));
        cams.lock().push(cam.clone());
        cam.counters.rtp_packets_lost.store(4, Ordering::Relaxed);
        cam.detect_feed_dropped.store(9, Ordering::Relaxed);
        let m = &c.collect().cameras[0];
        assert_eq!(
            (m.rtp_packets_lost_total, m.detect.feed_dropped_total),
            (4, 9)
        );
    }
}
