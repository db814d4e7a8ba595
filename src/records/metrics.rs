//! `vidgest.metrics/1`: one record per `[metrics] interval` with the device's, the process's
//! and the pipeline's figures (docs/records.md#metrics). Counters are totals since the daemon
//! started (`*_total`); rates are over the time since the previous record (`interval_s`) and
//! absent on the first record. A figure the platform does not expose is absent, never invented.

use crate::clock::UnixNanos;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Schema id carried in every metrics record.
pub const METRICS_SCHEMA: &str = "vidgest.metrics/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRecord {
    /// Always `METRICS_SCHEMA`.
    pub schema: String,
    pub device: String,
    /// Collection time, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    pub timestamp_ns: UnixNanos,
    /// Seconds since the previous record: the window of every rate (absent on the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<f64>,
    pub host: HostMetrics,
    pub process: ProcessMetrics,
    pub cameras: Vec<CameraMetrics>,
    pub streams: StreamsMetrics,
    pub pipelines: Vec<PipelineMetrics>,
    /// The collector's own cost, up to the previous collection.
    pub collector: CollectorMetrics,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectorMetrics {
    /// Collections finished before this one.
    pub collections_total: u64,
    /// CPU time they took (collect, encode, put), seconds.
    pub cpu_seconds_total: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostMetrics {
    /// Busy share of all CPUs over the interval, 0..1 (absent on the first record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_usage_ratio: Option<f64>,
    pub cpus: u32,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub memory_available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
    /// The file system that holds the data dir (absent if statvfs failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_disk: Option<DiskMetrics>,
    /// Sensors the kernel exposes (hwmon, thermal zones); empty on machines without them.
    pub temperatures: Vec<Temperature>,
    /// Per interface (loopback left out), bytes since boot.
    pub network: Vec<NetworkInterface>,
    pub uptime_s: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskMetrics {
    pub path: String,
    pub total_bytes: u64,
    /// Available to the daemon (statvfs f_bavail: without the root reserve).
    pub free_bytes: u64,
    pub used_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    pub sensor: String,
    pub celsius: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub interface: String,
    pub received_bytes_total: u64,
    pub transmitted_bytes_total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessMetrics {
    pub rss_bytes: u64,
    pub cpu_seconds_total: f64,
    /// CPU used over the interval in cores (1.0 = one core busy; absent on the first record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_fds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraMetrics {
    pub camera: String,
    /// `starting`, `streaming`, `backoff`, `failed`, `stopped`.
    pub state: String,
    pub state_seconds: f64,
    /// Access units (pictures) received per second over the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// Bits per second of video stored over the interval (fMP4 fragments, the received
    /// stream plus a little container overhead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate_bps: Option<f64>,
    pub access_units_total: u64,
    pub fragments_stored_total: u64,
    pub bytes_stored_total: u64,
    /// Sessions started after the first (reconnects after a failure or stall).
    pub reconnects_total: u64,
    /// Access units lost because the recorder fell behind.
    pub dropped_queue_full_total: u64,
    /// Access units before the first key frame of a session (joining mid-GOP; expected).
    pub dropped_before_key_total: u64,
    /// RTP packets missing from the sequence (backend = "retina").
    #[serde(default)]
    pub rtp_packets_lost_total: u64,
    /// Times the media clock was re-mapped to the wall clock (drift, or a late RTCP report).
    #[serde(default)]
    pub clock_resyncs_total: u64,
    /// RTCP sender reports received (backend = "retina").
    #[serde(default)]
    pub rtcp_sender_reports_total: u64,
    /// Sender reports ignored because the camera's clock is too far off ours.
    #[serde(default)]
    pub clock_hints_ignored_total: u64,
    /// Seconds since the newest stored fragment was committed (absent: none stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fragment_age_s: Option<f64>,
    /// Age of the oldest stored fragment: how far back the video reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_horizon_s: Option<f64>,
    pub detect: DetectMetrics,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DetectMetrics {
    /// Decoded frames handed to detection.
    pub frames_total: u64,
    pub inferences_total: u64,
    /// Skipped by the motion gate (still scene).
    pub skipped_motion_total: u64,
    /// Replaced by a newer frame before a worker was free.
    pub skipped_busy_total: u64,
    pub errors_total: u64,
    /// Access units the detect feed of a retina camera dropped because the decoder fell behind
    /// (absent in older records).
    #[serde(default)]
    pub feed_dropped_total: u64,
    /// Inference time quantiles over the interval, ms (absent: no inference in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_p95_ms: Option<f64>,
    pub inference_seconds_sum: f64,
    /// Objects reported per label (after score, zone and label filters).
    pub objects_total: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamsMetrics {
    /// Records appended to any shard stream since the daemon started.
    pub records_appended_total: u64,
    pub bytes_appended_total: u64,
    pub streams: Vec<StreamMetrics>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamMetrics {
    pub stream: String,
    pub shards: u32,
    pub stored_bytes: u64,
}

/// A delivery or forwarder, and its consumer's lag on its source stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineMetrics {
    pub pipeline: String,
    /// `delivery`, `forward-kinesis`, `forward-mqtt`.
    pub kind: String,
    pub source: String,
    /// `starting`, `healthy`, `retrying`, `failing`.
    pub state: String,
    pub records_total: u64,
    pub objects_total: u64,
    pub bytes_total: u64,
    pub error_records_total: u64,
    pub lost_records_total: u64,
    pub lag_records: u64,
    pub lag_seconds: f64,
}
