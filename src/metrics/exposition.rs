//! Prometheus text exposition (format 0.0.4) of a `MetricsRecord`, served at `GET /metrics`.
//!
//! Written here rather than with `prometheus-client`: that crate only emits OpenMetrics, whose
//! counters (`# TYPE x counter` over samples `x_total`) `promtool check metrics` of the
//! Prometheus that Debian 12 ships rejects ("no help text"), and the format is a few lines.

use crate::records::MetricsRecord;
use std::fmt::Write;

/// `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Summary,
}

/// A sample's value: integers print exactly, floats in Go's ParseFloat syntax.
#[derive(Debug, Clone, Copy)]
enum Num {
    U(u64),
    F(f64),
}

impl From<u64> for Num {
    fn from(v: u64) -> Self {
        Num::U(v)
    }
}
impl From<u32> for Num {
    fn from(v: u32) -> Self {
        Num::U(v.into())
    }
}
impl From<f64> for Num {
    fn from(v: f64) -> Self {
        Num::F(v)
    }
}

struct Writer {
    out: String,
    family: &'static str,
}

impl Writer {
    /// Starts a metric family: its HELP and TYPE lines. Samples follow with `sample`.
    fn family(&mut self, name: &'static str, kind: Kind, help: &str) {
        debug_assert!(name.starts_with("vidgest_"));
        debug_assert_eq!(kind == Kind::Counter, name.ends_with("_total"), "{name}");
        self.family = name;
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
        };
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, labels: &[(&str, &str)], v: impl Into<Num>) {
        self.sample_suffixed("", labels, v);
    }

    /// A sample of the current family; `suffix` for a summary's `_sum` and `_count`.
    fn sample_suffixed(&mut self, suffix: &str, labels: &[(&str, &str)], v: impl Into<Num>) {
        self.out.push_str(self.family);
        self.out.push_str(suffix);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = match v.into() {
            Num::U(n) => writeln!(self.out, " {n}"),
            Num::F(f) if f.is_nan() => writeln!(self.out, " NaN"),
            Num::F(f) if f.is_infinite() => {
                writeln!(self.out, " {}Inf", if f > 0.0 { '+' } else { '-' })
            }
            Num::F(f) => writeln!(self.out, " {f}"),
        };
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

const CAMERA_STATES: [&str; 5] = ["starting", "streaming", "backoff", "failed", "stopped"];
const PIPELINE_STATES: [&str; 4] = ["starting", "healthy", "retrying", "failing"];

/// The record as Prometheus text. Figures absent from the record (not measurable here, or no
/// rate yet) are left out rather than reported as 0.
pub fn render(r: &MetricsRecord) -> String {
    let mut w = Writer {
        out: String::with_capacity(8192),
        family: "",
    };
    host(&mut w, r);
    process(&mut w, r);
    cameras(&mut w, r);
    detection(&mut w, r);
    streams(&mut w, r);
    pipelines(&mut w, r);
    w.family(
        "vidgest_metrics_collections_total",
        Kind::Counter,
        "Metrics collections finished since the daemon started.",
    );
    w.sample(&[], r.collector.collections_total);
    w.family(
        "vidgest_metrics_collector_cpu_seconds_total",
        Kind::Counter,
        "CPU time those collections took (collect, encode, write the record).",
    );
    w.sample(&[], r.collector.cpu_seconds_total);
    w.out
}

fn host(w: &mut Writer, r: &MetricsRecord) {
    let h = &r.host;
    if let Some(v) = h.cpu_usage_ratio {
        w.family(
            "vidgest_host_cpu_usage_ratio",
            Kind::Gauge,
            "Busy share of all CPUs over the last collection interval (0..1).",
        );
        w.sample(&[], v);
    }
    w.family("vidgest_host_cpus", Kind::Gauge, "Logical CPUs.");
    w.sample(&[], h.cpus);
    w.family(
        "vidgest_host_load_average",
        Kind::Gauge,
        "System load average over 1, 5 and 15 minutes.",
    );
    w.sample(&[("window", "1m")], h.load1);
    w.sample(&[("window", "5m")], h.load5);
    w.sample(&[("window", "15m")], h.load15);
    for (name, help, v) in [
        (
            "vidgest_host_memory_total_bytes",
            "Physical memory.",
            h.memory_total_bytes,
        ),
        (
            "vidgest_host_memory_used_bytes",
            "Physical memory in use.",
            h.memory_used_bytes,
        ),
        (
            "vidgest_host_memory_available_bytes",
            "Physical memory available to new allocations without swapping.",
            h.memory_available_bytes,
        ),
        (
            "vidgest_host_swap_total_bytes",
            "Swap space.",
            h.swap_total_bytes,
        ),
        (
            "vidgest_host_swap_used_bytes",
            "Swap space in use.",
            h.swap_used_bytes,
        ),
    ] {
        w.family(name, Kind::Gauge, help);
        w.sample(&[], v);
    }
    if let Some(d) = &h.data_disk {
        let l = [("path", d.path.as_str())];
        for (name, help, v) in [
            (
                "vidgest_host_disk_total_bytes",
                "Size of the file system holding the data dir.",
                d.total_bytes,
            ),
            (
                "vidgest_host_disk_free_bytes",
                "Space available to the daemon on the data dir's file system.",
                d.free_bytes,
            ),
            (
                "vidgest_host_disk_used_bytes",
                "Space in use on the data dir's file system.",
                d.used_bytes,
            ),
        ] {
            w.family(name, Kind::Gauge, help);
            w.sample(&l, v);
        }
    }
    if !h.temperatures.is_empty() {
        w.family(
            "vidgest_host_temperature_celsius",
            Kind::Gauge,
            "Temperature of each sensor the kernel exposes.",
        );
        for t in &h.temperatures {
            w.sample(&[("sensor", &t.sensor)], t.celsius);
        }
    }
    if !h.network.is_empty() {
        w.family(
            "vidgest_host_network_received_bytes_total",
            Kind::Counter,
            "Bytes received per network interface since boot.",
        );
        for n in &h.network {
            w.sample(&[("interface", &n.interface)], n.received_bytes_total);
        }
        w.family(
            "vidgest_host_network_transmitted_bytes_total",
            Kind::Counter,
            "Bytes sent per network interface since boot.",
        );
        for n in &h.network {
            w.sample(&[("interface", &n.interface)], n.transmitted_bytes_total);
        }
    }
    w.family(
        "vidgest_host_uptime_seconds",
        Kind::Gauge,
        "Time since the host booted.",
    );
    w.sample(&[], h.uptime_s);
}

fn process(w: &mut Writer, r: &MetricsRecord) {
    let p = &r.process;
    w.family(
        "vidgest_process_resident_memory_bytes",
        Kind::Gauge,
        "Resident set size of the daemon.",
    );
    w.sample(&[], p.rss_bytes);
    w.family(
        "vidgest_process_cpu_seconds_total",
        Kind::Counter,
        "CPU time (user and system) the daemon used since it started.",
    );
    w.sample(&[], p.cpu_seconds_total);
    if let Some(n) = p.threads {
        w.family(
            "vidgest_process_threads",
            Kind::Gauge,
            "Threads of the daemon.",
        );
        w.sample(&[], n);
    }
    if let Some(n) = p.open_fds {
        w.family(
            "vidgest_process_open_fds",
            Kind::Gauge,
            "Open file descriptors of the daemon.",
        );
        w.sample(&[], n);
    }
}

fn cameras(w: &mut Writer, r: &MetricsRecord) {
    if r.cameras.is_empty() {
        return;
    }
    let cams = &r.cameras;
    w.family(
        "vidgest_camera_state",
        Kind::Gauge,
        "1 for the state the camera is in, 0 for the others.",
    );
    for c in cams {
        for s in CAMERA_STATES {
            w.sample(
                &[("camera", &c.camera), ("state", s)],
                u64::from(c.state == s),
            );
        }
    }
    w.family(
        "vidgest_camera_state_seconds",
        Kind::Gauge,
        "Time the camera has been in its current state.",
    );
    for c in cams {
        w.sample(&[("camera", &c.camera)], c.state_seconds);
    }
    let gauge =
        |w: &mut Writer, name, help, f: &dyn Fn(&crate::records::CameraMetrics) -> Option<f64>| {
            if cams.iter().any(|c| f(c).is_some()) {
                w.family(name, Kind::Gauge, help);
                for c in cams {
                    if let Some(v) = f(c) {
                        w.sample(&[("camera", &c.camera)], v);
                    }
                }
            }
        };
    gauge(
        w,
        "vidgest_camera_received_frames_per_second",
        "Pictures received per second over the last collection interval.",
        &|c| c.fps,
    );
    // Bytes, not bits: Prometheus' base unit (promtool's lint insists).
    gauge(
        w,
        "vidgest_camera_stored_bytes_per_second",
        "Byte rate of the video stored over the last collection interval.",
        &|c| c.bitrate_bps.map(|b| b / 8.0),
    );
    gauge(
        w,
        "vidgest_camera_last_fragment_age_seconds",
        "Time since the newest stored fragment was committed.",
        &|c| c.last_fragment_age_s,
    );
    gauge(
        w,
        "vidgest_camera_retention_horizon_seconds",
        "Age of the oldest stored fragment (how far back the video reaches).",
        &|c| c.retention_horizon_s,
    );
    let counter =
        |w: &mut Writer, name, help, f: &dyn Fn(&crate::records::CameraMetrics) -> u64| {
            w.family(name, Kind::Counter, help);
            for c in cams {
                w.sample(&[("camera", &c.camera)], f(c));
            }
        };
    counter(
        w,
        "vidgest_camera_received_frames_total",
        "Pictures (access units) received.",
        &|c| c.access_units_total,
    );
    counter(
        w,
        "vidgest_camera_stored_fragments_total",
        "Fragments stored.",
        &|c| c.fragments_stored_total,
    );
    counter(
        w,
        "vidgest_camera_stored_bytes_total",
        "Bytes of video stored.",
        &|c| c.bytes_stored_total,
    );
    counter(
        w,
        "vidgest_camera_reconnects_total",
        "Sessions started after the first one.",
        &|c| c.reconnects_total,
    );
    counter(
        w,
        "vidgest_camera_rtp_packets_lost_total",
        "RTP packets missing from the sequence (retina backend): the damaged picture is dropped and recording resumes at the next key frame.",
        &|c| c.rtp_packets_lost_total,
    );
    counter(
        w,
        "vidgest_camera_clock_resyncs_total",
        "Times the media clock was re-mapped to the wall clock.",
        &|c| c.clock_resyncs_total,
    );
    counter(
        w,
        "vidgest_camera_rtcp_sender_reports_total",
        "RTCP sender reports received (retina backend).",
        &|c| c.rtcp_sender_reports_total,
    );
    counter(
        w,
        "vidgest_camera_clock_hints_ignored_total",
        "RTCP sender reports ignored: the camera's clock is too far off ours.",
        &|c| c.clock_hints_ignored_total,
    );
    w.family(
        "vidgest_camera_dropped_frames_total",
        Kind::Counter,
        "Pictures not stored: queue_full (the recorder fell behind: lost video) or before_key_frame (joined mid-GOP: expected).",
    );
    for c in cams {
        w.sample(
            &[("camera", &c.camera), ("reason", "queue_full")],
            c.dropped_queue_full_total,
        );
        w.sample(
            &[("camera", &c.camera), ("reason", "before_key_frame")],
            c.dropped_before_key_total,
        );
    }
}

fn detection(w: &mut Writer, r: &MetricsRecord) {
    let cams = &r.cameras;
    if cams.is_empty() {
        return;
    }
    for (name, help, f) in [
        (
            "vidgest_detect_frames_total",
            "Decoded frames handed to detection.",
            (|c| c.frames_total) as fn(&crate::records::DetectMetrics) -> u64,
        ),
        ("vidgest_detect_inferences_total", "Frames inferred.", |c| {
            c.inferences_total
        }),
        (
            "vidgest_detect_errors_total",
            "Frames whose inference failed.",
            |c| c.errors_total,
        ),
        (
            "vidgest_detect_feed_dropped_frames_total",
            "Access units the detect decoder of a retina camera fell behind on (dropped, then skipped to the next key frame).",
            |c| c.feed_dropped_total,
        ),
    ] {
        w.family(name, Kind::Counter, help);
        for c in cams {
            w.sample(&[("camera", &c.camera)], f(&c.detect));
        }
    }
    w.family(
        "vidgest_detect_skipped_frames_total",
        Kind::Counter,
        "Frames not inferred: motion (still scene) or busy (replaced by a newer frame).",
    );
    for c in cams {
        w.sample(
            &[("camera", &c.camera), ("reason", "motion")],
            c.detect.skipped_motion_total,
        );
        w.sample(
            &[("camera", &c.camera), ("reason", "busy")],
            c.detect.skipped_busy_total,
        );
    }
    w.family(
        "vidgest_detect_inference_seconds",
        Kind::Summary,
        "Inference time; quantiles over the last collection interval.",
    );
    for c in cams {
        let d = &c.detect;
        for (q, v) in [("0.5", d.inference_p50_ms), ("0.95", d.inference_p95_ms)] {
            if let Some(ms) = v {
                w.sample(&[("camera", &c.camera), ("quantile", q)], ms / 1000.0);
            }
        }
        w.sample_suffixed("_sum", &[("camera", &c.camera)], d.inference_seconds_sum);
        w.sample_suffixed("_count", &[("camera", &c.camera)], d.inferences_total);
    }
    if cams.iter().any(|c| !c.detect.objects_total.is_empty()) {
        w.family(
            "vidgest_detect_objects_total",
            Kind::Counter,
            "Objects detected per label (after the camera's filters).",
        );
        for c in cams {
            for (label, n) in &c.detect.objects_total {
                w.sample(&[("camera", &c.camera), ("label", label)], *n);
            }
        }
    }
}

fn streams(w: &mut Writer, r: &MetricsRecord) {
    let s = &r.streams;
    w.family(
        "vidgest_streams_appended_records_total",
        Kind::Counter,
        "Records appended to the shard streams since the daemon started.",
    );
    w.sample(&[], s.records_appended_total);
    w.family(
        "vidgest_streams_appended_bytes_total",
        Kind::Counter,
        "Record bytes appended to the shard streams since the daemon started.",
    );
    w.sample(&[], s.bytes_appended_total);
    if s.streams.is_empty() {
        return;
    }
    w.family(
        "vidgest_stream_stored_bytes",
        Kind::Gauge,
        "Bytes a shard stream holds on disk.",
    );
    for st in &s.streams {
        w.sample(&[("stream", &st.stream)], st.stored_bytes);
    }
    w.family(
        "vidgest_stream_shards",
        Kind::Gauge,
        "Shards of a shard stream.",
    );
    for st in &s.streams {
        w.sample(&[("stream", &st.stream)], st.shards);
    }
}

fn pipelines(w: &mut Writer, r: &MetricsRecord) {
    let ps = &r.pipelines;
    if ps.is_empty() {
        return;
    }
    let labels = |p: &'_ crate::records::PipelineMetrics| -> [(&'static str, String); 3] {
        [
            ("pipeline", p.pipeline.clone()),
            ("kind", p.kind.clone()),
            ("source", p.source.clone()),
        ]
    };
    w.family(
        "vidgest_pipeline_state",
        Kind::Gauge,
        "1 for the state the delivery or forwarder is in, 0 for the others.",
    );
    for p in ps {
        let [a, b, c] = labels(p);
        for s in PIPELINE_STATES {
            w.sample(
                &[(a.0, &a.1), (b.0, &b.1), (c.0, &c.1), ("state", s)],
                u64::from(p.state == s),
            );
        }
    }
    type Field = fn(&crate::records::PipelineMetrics) -> Num;
    let fields: [(&'static str, Kind, &str, Field); 7] = [
        (
            "vidgest_pipeline_records_total",
            Kind::Counter,
            "Records delivered (in a written object, or acknowledged by the remote).",
            |p| p.records_total.into(),
        ),
        (
            "vidgest_pipeline_objects_total",
            Kind::Counter,
            "Objects written by a delivery.",
            |p| p.objects_total.into(),
        ),
        (
            "vidgest_pipeline_bytes_total",
            Kind::Counter,
            "Bytes written by a delivery (compressed object bytes).",
            |p| p.bytes_total.into(),
        ),
        (
            "vidgest_pipeline_error_records_total",
            Kind::Counter,
            "Records written to the error prefix (could not be partitioned or converted).",
            |p| p.error_records_total.into(),
        ),
        (
            "vidgest_pipeline_lost_records_total",
            Kind::Counter,
            "Records that aged out of the source stream before they were delivered.",
            |p| p.lost_records_total.into(),
        ),
        (
            "vidgest_pipeline_lag_records",
            Kind::Gauge,
            "Records of the source stream not yet delivered (the consumer's lag).",
            |p| p.lag_records.into(),
        ),
        (
            "vidgest_pipeline_lag_seconds",
            Kind::Gauge,
            "Age of the oldest record not yet delivered.",
            |p| p.lag_seconds.into(),
        ),
    ];
    for (name, kind, help, f) in fields {
        w.family(name, kind, help);
        for p in ps {
            let [a, b, c] = labels(p);
            w.sample(&[(a.0, &a.1), (b.0, &b.1), (c.0, &c.1)], f(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::*;

    pub(crate) fn sample_record() -> MetricsRecord {
        MetricsRecord {
            schema: METRICS_SCHEMA.into(),
            device: "dev1".into(),
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            timestamp_ns: 0,
            interval_s: Some(60.0),
            host: HostMetrics {
                cpu_usage_ratio: Some(0.25),
                cpus: 2,
                memory_total_bytes: 1 << 30,
                data_disk: Some(DiskMetrics {
                    path: "/var/lib/vidgest".into(),
                    total_bytes: 100,
                    free_bytes: 40,
                    used_bytes: 60,
                }),
                network: vec![NetworkInterface {
                    interface: "eth0".into(),
                    received_bytes_total: 5,
                    transmitted_bytes_total: 6,
                }],
                ..Default::default()
            },
            process: ProcessMetrics {
                rss_bytes: 1000,
                cpu_seconds_total: 1.5,
                cpu_cores: Some(0.01),
                threads: Some(12),
                open_fds: Some(30),
            },
            cameras: vec![CameraMetrics {
                camera: "front \"door\"".into(),
                state: "streaming".into(),
                state_seconds: 12.5,
                fps: Some(15.0),
                bitrate_bps: None,
                access_units_total: 900,
                fragments_stored_total: 30,
                bytes_stored_total: 123_456,
                reconnects_total: 1,
                dropped_queue_full_total: 0,
                dropped_before_key_total: 3,
                rtp_packets_lost_total: 2,
                clock_resyncs_total: 0,
                rtcp_sender_reports_total: 5,
                clock_hints_ignored_total: 1,
                last_fragment_age_s: Some(1.2),
                retention_horizon_s: Some(3600.0),
                detect: DetectMetrics {
                    inferences_total: 10,
                    inference_p50_ms: Some(30.0),
                    inference_p95_ms: Some(55.0),
                    inference_seconds_sum: 0.4,
                    objects_total: [("person".to_string(), 4)].into(),
                    feed_dropped_total: 6,
                    ..Default::default()
                },
            }],
            streams: StreamsMetrics {
                records_appended_total: 7,
                bytes_appended_total: 700,
                streams: vec![StreamMetrics {
                    stream: "metrics".into(),
                    shards: 1,
                    stored_bytes: 4096,
                }],
            },
            pipelines: vec![PipelineMetrics {
                pipeline: "archive".into(),
                kind: "delivery".into(),
                source: "metrics".into(),
                state: "healthy".into(),
                records_total: 5,
                objects_total: 1,
                bytes_total: 321,
                error_records_total: 0,
                lost_records_total: 0,
                lag_records: 2,
                lag_seconds: 0.5,
            }],
            collector: CollectorMetrics {
                collections_total: 3,
                cpu_seconds_total: 0.004,
            },
        }
    }

    #[test]
    fn names_types_and_labels() {
        let text = render(&sample_record());
        for line in [
            "# TYPE vidgest_camera_stored_bytes_total counter",
            "vidgest_camera_stored_bytes_total{camera=\"front \\\"door\\\"\"} 123456",
            "vidgest_camera_state{camera=\"front \\\"door\\\"\",state=\"streaming\"} 1",
            "vidgest_camera_state{camera=\"front \\\"door\\\"\",state=\"failed\"} 0",
            "vidgest_camera_received_frames_per_second{camera=\"front \\\"door\\\"\"} 15",
            "# TYPE vidgest_camera_rtcp_sender_reports_total counter",
            "vidgest_camera_rtcp_sender_reports_total{camera=\"front \\\"door\\\"\"} 5",
            "vidgest_camera_clock_hints_ignored_total{camera=\"front \\\"door\\\"\"} 1",
            "# TYPE vidgest_detect_inference_seconds summary",
            "vidgest_detect_inference_seconds{camera=\"front \\\"door\\\"\",quantile=\"0.95\"} 0.055",
            "vidgest_detect_inference_seconds_count{camera=\"front \\\"door\\\"\"} 10",
            "vidgest_detect_objects_total{camera=\"front \\\"door\\\"\",label=\"person\"} 4",
            "# TYPE vidgest_camera_rtp_packets_lost_total counter",
            "vidgest_camera_rtp_packets_lost_total{camera=\"front \\\"door\\\"\"} 2",
            "vidgest_detect_feed_dropped_frames_total{camera=\"front \\\"door\\\"\"} 6",
            "vidgest_host_disk_free_bytes{path=\"/var/lib/vidgest\"} 40",
            "vidgest_process_cpu_seconds_total 1.5",
            "vidgest_pipeline_lag_records{pipeline=\"archive\",kind=\"delivery\",source=\"metrics\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // No rate measured yet: left out, not reported as 0.
        assert!(!text.contains("vidgest_camera_stored_bytes_per_second"));
        // Every sample belongs to the family announced last, which has HELP and TYPE.
        let mut family = String::new();
        let mut seen = std::collections::HashSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# HELP ") {
                family = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(family.clone()), "family {family} twice");
                assert!(family.starts_with("vidgest_"));
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                let base = name
                    .strip_suffix("_sum")
                    .or_else(|| name.strip_suffix("_count"))
                    .filter(|b| *b == family)
                    .unwrap_or(name);
                assert_eq!(base, family, "{l}");
            }
        }
    }

    #[test]
    fn counters_end_in_total_and_only_counters() {
        let text = render(&sample_record());
        for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = l.split(' ').skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert_eq!(kind == "counter", name.ends_with("_total"), "{l}");
        }
    }

    #[test]
    fn special_floats() {
        let mut w = Writer {
            out: String::new(),
            family: "vidgest_x",
        };
        w.sample(&[], f64::NAN);
        w.sample(&[], f64::INFINITY);
        w.sample(&[("a", "x\\y\nz")], 0.5);
        assert_eq!(
            w.out,
            "vidgest_x NaN\nvidgest_x +Inf\nvidgest_x{a=\"x\\\\y\\nz\"} 0.5\n"
        );
    }
}
