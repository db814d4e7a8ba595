//! The TOML configuration: schema (serde, unknown keys rejected), defaults, and validation that
//! names the TOML path of every problem (`camera[1].source.url: missing scheme`).

mod delivery;
mod listen;
pub(crate) mod rtsp_url;
mod units;
mod validate;

pub use delivery::{
    ColumnConfig, ColumnType, DeclaredSchema, DeliveryConfig, DeliveryFormat, DestinationConfig,
    DirDestination, ForwardConfig, KinesisForward, MqttForward, S3Destination, SchemaConfig,
    Secret, BUILTIN_SCHEMAS,
};
pub use listen::{bind_api_listener, ListenError};
pub use rtsp_url::{redact_url, RtspUrl, RtspUrlError};
pub use units::{format_bytes, ByteSize, DurationError, HumanDuration, SizeError, MAX_DURATION};
pub use validate::{ConfigError, ConfigProblem};

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/vidgest/vidgest.toml";
pub const DEFAULT_FRAGMENT_DURATION: Duration = Duration::from_secs(2);
pub const MAX_FRAGMENT_DURATION: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub agent: AgentConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default, rename = "camera")]
    pub cameras: Vec<CameraConfig>,
    #[serde(default, rename = "stream")]
    pub streams: Vec<StreamConfig>,
    #[serde(default)]
    pub detect: DetectGlobalConfig,
    #[serde(default, rename = "delivery")]
    pub deliveries: Vec<DeliveryConfig>,
    #[serde(default, rename = "forward")]
    pub forwards: Vec<ForwardConfig>,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `[metrics]`: device and pipeline metrics (docs/operations.md#metrics).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Off: no collector, no records, `GET /metrics` answers 503.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often metrics are collected and a record is written.
    #[serde(default = "default_metrics_interval")]
    pub interval: HumanDuration,
    /// Shard stream the `vidgest.metrics/1` records go to (created when missing).
    #[serde(default = "default_metrics_stream")]
    pub stream: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: default_metrics_interval(),
            stream: default_metrics_stream(),
        }
    }
}

fn default_metrics_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_metrics_stream() -> String {
    "metrics".into()
}

/// `[detect]`: what all cameras' detection shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectGlobalConfig {
    /// Path of libonnxruntime.so (default: searched, see docs/detection.md).
    #[serde(default)]
    pub onnxruntime: Option<PathBuf>,
    /// Model id (`models/*.toml`) or manifest path.
    #[serde(default = "default_model")]
    pub model: String,
    /// Inference worker threads (each runs one frame at a time).
    #[serde(default = "default_one")]
    pub workers: u32,
    /// ONNX Runtime intra-op threads per worker.
    #[serde(default = "default_one")]
    pub intra_threads: u32,
}

impl Default for DetectGlobalConfig {
    fn default() -> Self {
        Self {
            onnxruntime: None,
            model: default_model(),
            workers: 1,
            intra_threads: 1,
        }
    }
}

fn default_model() -> String {
    "yolov3-tiny-coco".into()
}
fn default_one() -> u32 {
    1
}

/// `[camera.detect]`: object detection on this camera's frames.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraDetectConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Frames per second handed to the detector.
    #[serde(default = "default_detect_fps")]
    pub fps: f64,
    /// Shard stream receiving the records (created if missing).
    #[serde(default = "default_detect_stream")]
    pub stream: String,
    /// Keep only these labels.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// Minimum box area as a fraction of the frame (0..1).
    #[serde(default)]
    pub min_area: f32,
    /// Decode this RTSP sub-stream for detection instead of the recorded stream.
    #[serde(default)]
    pub source: Option<RtspUrl>,
    /// Decode only key frames (near-zero decode cost; detect fps is then at most the key-frame rate).
    #[serde(default)]
    pub keyframes_only: bool,
    /// Skip inference while the scene is still.
    #[serde(default = "default_true")]
    pub motion: bool,
    /// Per-pixel luma change that counts as motion (0..255).
    #[serde(default = "default_motion_delta")]
    pub motion_pixel_delta: u8,
    /// Fraction of changed pixels that counts as motion.
    #[serde(default = "default_motion_fraction")]
    pub motion_min_fraction: f32,
    /// An empty record this often when nothing is detected.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: HumanDuration,
    /// Model id or manifest path for this camera (default: `[detect] model`).
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default, rename = "zone")]
    pub zones: Vec<ZoneConfig>,
    /// Polygons (normalized 0..1) where detections are ignored.
    #[serde(default)]
    pub masks: Vec<Vec<[f32; 2]>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub name: String,
    /// Normalized (x, y) corners; a detection is in the zone when its box's bottom centre is.
    pub polygon: Vec<[f32; 2]>,
}

fn default_detect_fps() -> f64 {
    2.0
}
fn default_detect_stream() -> String {
    "detections".into()
}
fn default_min_score() -> f32 {
    0.5
}
fn default_motion_delta() -> u8 {
    25
}
fn default_motion_fraction() -> f32 {
    0.005
}
fn default_heartbeat() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// A shard stream created at start (`[[stream]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub name: String,
    #[serde(default = "default_shards")]
    pub shards: u32,
    #[serde(default = "default_stream_retention")]
    pub retention_hours: u32,
    /// Apply the real service's per-shard throughput limits.
    #[serde(default)]
    pub enforce_limits: bool,
}

fn default_shards() -> u32 {
    1
}
fn default_stream_retention() -> u32 {
    24
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub data_dir: PathBuf,
    /// Identifies this device in records and object keys; defaults to the host name.
    #[serde(default)]
    pub device_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Once any token is configured, every route but /healthz needs one (AWS-style clients pass
    /// it as their access key id).
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenConfig>,
    /// Connections served at once; further clients wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A client must send a request's headers within this; it also closes keep-alive
    /// connections left idle this long.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: HumanDuration,
    /// A client must send a request's body within this.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: HumanDuration,
    /// PEM certificate (chain, leaf first): with `tls_key`, the listener speaks only HTTPS.
    /// Relative paths are from the working directory, as every path here; reloaded on SIGHUP.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (never logged).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// With no token configured, `listen` must be a loopback address unless this is set: an
    /// open API on the network must be a choice, not an accident.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Browser origins (`https://host[:port]`) allowed to call the API cross-origin; empty
    /// (the default) sends no CORS headers, so browsers refuse cross-origin calls.
    #[serde(default)]
    pub cors_allow_origins: Vec<String>,
    /// How long a UI sign-in lasts (the session cookie's lifetime), 1 to 720 hours.
    #[serde(default = "default_session_hours")]
    pub session_hours: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tokens: Vec::new(),
            max_connections: default_max_connections(),
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            tls_cert: None,
            tls_key: None,
            allow_unauthenticated: false,
            cors_allow_origins: Vec::new(),
            session_hours: default_session_hours(),
        }
    }
}

fn default_session_hours() -> u32 {
    12
}

fn default_max_connections() -> usize {
    512
}
fn default_header_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_body_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    #[serde(deserialize_with = "rtsp_url::secret::string")]
    pub token: String,
    /// `read`, `write` (implies read) or `admin` (implies write; changes the daemon's policy:
    /// creating and deleting streams, retention).
    #[serde(default = "default_scope")]
    pub scope: TokenScope,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("token", &"***")
            .field("scope", &self.scope)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    Read,
    Write,
    Admin,
}

fn default_scope() -> TokenScope {
    TokenScope::Write
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Delete the oldest segments (of any camera) to make room.
    DeleteOldest,
    /// Keep what is stored and refuse new fragments (counted and logged).
    DenyNew,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// fdatasync after every fragment, before its index row commits (default).
    Fragment,
    /// Leave flushing to the OS: faster, a power loss may lose the last seconds.
    Never,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Global byte budget for all cameras' video.
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// Free space to keep on the data dir's file system; default: 5 % of it, at most 512 MiB
    /// (`store::default_min_free`).
    #[serde(default)]
    pub min_free: Option<ByteSize>,
    #[serde(default = "default_on_full")]
    pub on_full: OnFull,
    #[serde(default = "default_fsync")]
    pub fsync: FsyncPolicy,
    /// A segment file is closed when it reaches this size ...
    #[serde(default = "default_segment_size")]
    pub segment_size: ByteSize,
    /// ... or this age; retention deletes whole segments.
    #[serde(default = "default_segment_duration")]
    pub segment_duration: HumanDuration,
    /// How often age retention runs (byte budgets are enforced on every write).
    #[serde(default = "default_retention_interval")]
    pub retention_interval: HumanDuration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            max_bytes: None,
            min_free: None,
            on_full: default_on_full(),
            fsync: default_fsync(),
            segment_size: default_segment_size(),
            segment_duration: default_segment_duration(),
            retention_interval: default_retention_interval(),
        }
    }
}

fn default_on_full() -> OnFull {
    OnFull::DeleteOldest
}
fn default_fsync() -> FsyncPolicy {
    FsyncPolicy::Fragment
}
fn default_segment_size() -> ByteSize {
    ByteSize(32 << 20)
}
fn default_segment_duration() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}
fn default_retention_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub name: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_fragment_duration")]
    pub fragment_duration: HumanDuration,
    #[serde(default = "default_retention")]
    pub retention: HumanDuration,
    /// Per-camera byte budget (on top of the global one).
    #[serde(default)]
    pub max_bytes: Option<ByteSize>,
    /// No media for this long means the camera is stalled and gets reconnected.
    #[serde(default = "default_stall_timeout")]
    pub stall_timeout: HumanDuration,
    pub source: SourceConfig,
    #[serde(default)]
    pub detect: Option<CameraDetectConfig>,
}

fn default_true() -> bool {
    true
}
fn default_fragment_duration() -> HumanDuration {
    HumanDuration(DEFAULT_FRAGMENT_DURATION)
}
fn default_retention() -> HumanDuration {
    HumanDuration(Duration::from_secs(72 * 3600))
}
fn default_stall_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Rtsp,
    V4l2,
    File,
    Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    Tcp,
    Udp,
    Auto,
}

/// Which RTSP client receives an RTSP camera (docs/capture.md#rtsp-backends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspBackend {
    /// GStreamer's rtspsrc (jitterbuffer, every transport and URL scheme).
    Gstreamer,
    /// The retina crate on a tokio task: less CPU, TCP or UDP unicast, `rtsp://` only.
    Retina,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    H264,
    H265,
}

/// One table for every source kind (so unknown keys are reported with their path); which keys
/// apply to which kind is checked in `validate`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub kind: SourceKind,
    // rtsp
    pub url: Option<RtspUrl>,
    pub transport: Option<RtspTransport>,
    #[serde(default, deserialize_with = "rtsp_url::secret::option")]
    pub username: Option<String>,
    #[serde(default, deserialize_with = "rtsp_url::secret::option")]
    pub password: Option<String>,
    pub connect_timeout: Option<HumanDuration>,
    pub latency: Option<HumanDuration>,
    pub backend: Option<RtspBackend>,
    // v4l2
    pub device: Option<PathBuf>,
    // file
    pub path: Option<PathBuf>,
    #[serde(rename = "loop")]
    pub loop_playback: Option<bool>,
    pub realtime: Option<bool>,
    // test
    pub pattern: Option<String>,
    pub codec: Option<VideoCodec>,
    // v4l2 + test
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<u32>,
    /// Key-frame interval in frames when vidgest encodes (test, raw v4l2).
    pub gop: Option<u32>,
    /// Encoder bit rate in kbit/s when vidgest encodes (test, raw v4l2).
    pub bitrate: Option<u32>,
}

// Hand-written so credentials never reach logs through `{:?}`.
impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("SourceConfig");
        d.field("kind", &self.kind);
        if let Some(url) = &self.url {
            d.field("url", url);
        }
        if self.username.is_some() {
            d.field("username", &"***");
        }
        if self.password.is_some() {
            d.field("password", &"***");
        }
        d.field("path", &self.path)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl SourceConfig {
    pub fn transport(&self) -> RtspTransport {
        self.transport.unwrap_or(RtspTransport::Tcp)
    }
    /// Which receive path the camera records through. RTSP: as configured, else retina, except
    /// for `rtsps://` (RTSP over TLS), which only GStreamer's rtspsrc speaks. Every other source
    /// (file, v4l2, test) is a GStreamer pipeline.
    pub fn backend(&self) -> RtspBackend {
        if self.kind != SourceKind::Rtsp {
            return RtspBackend::Gstreamer;
        }
        self.backend.unwrap_or_else(|| match &self.url {
            Some(url) if url.is_rtsps() => RtspBackend::Gstreamer,
            _ => RtspBackend::Retina,
        })
    }
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(10))
    }
    pub fn latency(&self) -> Duration {
        self.latency
            .map(|d| d.0)
            .unwrap_or(Duration::from_millis(200))
    }
    pub fn codec(&self) -> VideoCodec {
        self.codec.unwrap_or(VideoCodec::H264)
    }
    pub fn width(&self) -> u32 {
        self.width.unwrap_or(640)
    }
    pub fn height(&self) -> u32 {
        self.height.unwrap_or(480)
    }
    pub fn fps(&self) -> u32 {
        self.fps.unwrap_or(15)
    }
    pub fn gop(&self) -> u32 {
        self.gop.unwrap_or_else(|| self.fps())
    }
    pub fn bitrate(&self) -> u32 {
        self.bitrate.unwrap_or(2048)
    }
    pub fn loop_playback(&self) -> bool {
        self.loop_playback.unwrap_or(true)
    }
    pub fn realtime(&self) -> bool {
        self.realtime.unwrap_or(true)
    }
    /// Credentials from the separate fields, else from the URL's userinfo.
    pub fn credentials(&self) -> Option<(String, String)> {
        if let Some(user) = &self.username {
            return Some((user.clone(), self.password.clone().unwrap_or_default()));
        }
        self.url.as_ref()?.credentials()
    }
    /// The URL without userinfo (what GStreamer gets as `location`).
    pub fn url_without_credentials(&self) -> Option<String> {
        Some(self.url.as_ref()?.without_credentials())
    }
}

impl CameraConfig {
    /// The detection settings when detection is on for this camera.
    pub fn detection(&self) -> Option<&CameraDetectConfig> {
        self.detect.as_ref().filter(|d| d.enabled)
    }

    /// Effective segment roll size: a quarter of the tightest budget, so retention always has
    /// closed segments to delete before a budget is exceeded.
    pub fn segment_size(&self, storage: &StorageConfig) -> u64 {
        let mut size = storage.segment_size.0;
        for budget in [self.max_bytes, storage.max_bytes].into_iter().flatten() {
            size = size.min(budget.0 / 4);
        }
        size.max(64 << 10)
    }
}

impl Config {
    /// Reads, parses and validates a config file. Every problem carries its TOML path.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::parse(&text).map_err(|e| e.with_file(path))
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = validate::deserialize(text)?;
        let problems = validate::validate(&config);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                file: None,
                problems,
            })
        }
    }

    pub fn device_id(&self) -> String {
        self.agent.device_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_string())
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "vidgest".into())
        })
    }

    pub fn camera(&self, name: &str) -> Option<&CameraConfig> {
        self.cameras.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests;
