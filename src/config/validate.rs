//! Parsing with TOML paths in errors, and the semantic checks serde cannot express.

use super::{Config, SourceKind, MAX_FRAGMENT_DURATION};
use crate::streams::{MAX_RETENTION_HOURS, MAX_SHARDS, MIN_RETENTION_HOURS};
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One problem in a config file, at a TOML path like `camera[1].source.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{}", file_prefix(file), problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid {
        file: Option<PathBuf>,
        problems: Vec<ConfigProblem>,
    },
}

fn file_prefix(file: &Option<PathBuf>) -> String {
    match file {
        Some(f) => format!("invalid config {}:\n", f.display()),
        None => String::new(),
    }
}

impl ConfigError {
    pub fn with_file(self, path: &Path) -> Self {
        match self {
            ConfigError::Invalid { problems, .. } => ConfigError::Invalid {
                file: Some(path.to_path_buf()),
                problems,
            },
            other => other,
        }
    }
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// serde + toml with the path of the failing key (serde_path_to_error), plus the line number.
pub(super) fn deserialize(text: &str) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let mut message = inner.message().trim().to_string();
        if let Some(line) = line {
            message.push_str(&format!(" (line {line})"));
        }
        let path = if path == "." || path.is_empty() {
            "(top level)".into()
        } else {
            path
        };
        ConfigError::Invalid {
            file: None,
            problems: vec![ConfigProblem { path, message }],
        }
    })
}

pub(super) fn validate(config: &Config) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let mut add = |path: String, message: String| problems.push(ConfigProblem { path, message });

    if config.agent.data_dir.as_os_str().is_empty() {
        add("agent.data_dir".into(), "must not be empty".into());
    }
    if let Some(id) = &config.agent.device_id {
        if !is_name(id) {
            add(
                "agent.device_id".into(),
                format!("`{id}` may only contain letters, digits, `-`, `_` and `.` (1..64)"),
            );
        }
    }
    if config.api.listen.parse::<std::net::SocketAddr>().is_err() {
        add(
            "api.listen".into(),
            format!(
                "`{}` is not an address like 127.0.0.1:8080",
                config.api.listen
            ),
        );
    }
    if let Ok(addr) = config.api.listen.parse::<std::net::SocketAddr>() {
        if config.api.tokens.is_empty()
            && !config.api.allow_unauthenticated
            && !addr.ip().to_canonical().is_loopback()
        {
            add(
                "api.listen".into(),
                format!(
                    "`{}` is reachable from the network but no [[api.token]] is configured: \
                     add a token (docs/http-api.md#authentication), listen on 127.0.0.1, or set \
                     `allow_unauthenticated = true` in [api] to serve everyone on purpose",
                    config.api.listen
                ),
            );
        }
    }
    if !(1..=720).contains(&config.api.session_hours) {
        add(
            "api.session_hours".into(),
            format!("{} is not between 1 and 720", config.api.session_hours),
        );
    }
    for (i, origin) in config.api.cors_allow_origins.iter().enumerate() {
        if let Err(why) = check_origin(origin) {
            add(
                format!("api.cors_allow_origins[{i}]"),
                format!("`{origin}` {why}"),
            );
        }
    }
    for (i, t) in config.api.tokens.iter().enumerate() {
        if t.token.len() < 16 {
            add(
                format!("api.token[{i}].token"),
                "must be at least 16 characters".into(),
            );
        }
    }
    // TLS needs both files; one alone is a mistake, not "TLS off".
    match (&config.api.tls_cert, &config.api.tls_key) {
        (Some(_), None) => add(
            "api.tls_key".into(),
            "is required with api.tls_cert (both or neither)".into(),
        ),
        (None, Some(_)) => add(
            "api.tls_cert".into(),
            "is required with api.tls_key (both or neither)".into(),
        ),
        _ => {}
    }
    let mut stream_names = HashSet::new();
    for (i, s) in config.streams.iter().enumerate() {
        let at = |field: &str| format!("stream[{i}].{field}");
        if let Err(e) = check_stream_name(&s.name) {
            add(at("name"), e.to_string());
        } else if !stream_names.insert(s.name.clone()) {
            add(at("name"), format!("duplicate stream name `{}`", s.name));
        }
        if !(1..=MAX_SHARDS).contains(&s.shards) {
            add(
                at("shards"),
                format!("{} is out of range: 1 ..= {MAX_SHARDS}", s.shards),
            );
        }
        if !(MIN_RETENTION_HOURS..=MAX_RETENTION_HOURS).contains(&s.retention_hours) {
            add(
                at("retention_hours"),
                format!(
                    "{} is out of range: {MIN_RETENTION_HOURS} ..= {MAX_RETENTION_HOURS}",
                    s.retention_hours
                ),
            );
        }
    }
    let st = &config.storage;
    if let Some(b) = st.max_bytes {
        if b.0 < MIN_GLOBAL_BUDGET {
            add(
                "storage.max_bytes".into(),
                format!(
                    "{b} is too small: at least {} (segments are a quarter of the budget and must each hold a few fragments)",
                    super::format_bytes(MIN_GLOBAL_BUDGET)
                ),
            );
        }
    }
    if st.segment_size.0 < (1 << 20) {
        add(
            "storage.segment_size".into(),
            "must be at least 1MiB".into(),
        );
    }
    if st.segment_duration.0 < Duration::from_secs(10) {
        add(
            "storage.segment_duration".into(),
            "must be at least 10s".into(),
        );
    }
    if st.retention_interval.0 < Duration::from_millis(100) {
        add(
            "storage.retention_interval".into(),
            "must be at least 100ms".into(),
        );
    }

    let mut names = HashSet::new();
    for (i, cam) in config.cameras.iter().enumerate() {
        let at = |field: &str| format!("camera[{i}].{field}");
        if !is_name(&cam.name) {
            add(
                at("name"),
                format!(
                    "`{}` may only contain letters, digits, `-`, `_` and `.` (1..64 characters)",
                    cam.name
                ),
            );
        } else if !names.insert(cam.name.clone()) {
            add(at("name"), format!("duplicate camera name `{}`", cam.name));
        }
        let fd = cam.fragment_duration.0;
        if fd < Duration::from_millis(500) || fd > MAX_FRAGMENT_DURATION {
            add(
                at("fragment_duration"),
                format!("{} is out of range: 500ms ..= 10s", cam.fragment_duration),
            );
        }
        let r = cam.retention.0;
        if r < Duration::from_secs(3600) || r > Duration::from_secs(10 * 366 * 86400) {
            add(
                at("retention"),
                format!("{} is out of range: 1h ..= 10 years", cam.retention),
            );
        }
        if let Some(b) = cam.max_bytes {
            if b.0 < MIN_CAMERA_BUDGET {
                add(
                    at("max_bytes"),
                    format!(
                        "{b} is too small: at least {}",
                        super::format_bytes(MIN_CAMERA_BUDGET)
                    ),
                );
            }
        }
        if cam.stall_timeout.0 < Duration::from_secs(1) {
            add(at("stall_timeout"), "must be at least 1s".into());
        }
        validate_source(&cam.source, &|f| at(&format!("source.{f}")), &mut add);
        if let Some(d) = &cam.detect {
            validate_detect(d, &|f| at(&format!("detect.{f}")), &mut add);
        }
    }
    let m = &config.metrics;
    if m.interval.0 < Duration::from_millis(100) {
        add("metrics.interval".into(), "must be at least 100ms".into());
    }
    if let Err(e) = check_stream_name(&m.stream) {
        add("metrics.stream".into(), e.to_string());
    }
    let sources: std::collections::BTreeSet<String> = config
        .streams
        .iter()
        .map(|s| s.name.clone())
        .chain(
            config
                .cameras
                .iter()
                .filter_map(|c| c.detect.as_ref().map(|d| d.stream.clone())),
        )
        .chain(m.enabled.then(|| m.stream.clone()))
        .collect();
    super::delivery::validate(&config.deliveries, &config.forwards, &sources, &mut add);
    problems
}

fn validate_detect(
    d: &super::CameraDetectConfig,
    at: &dyn Fn(&str) -> String,
    add: &mut impl FnMut(String, String),
) {
    if !(d.fps > 0.0 && d.fps <= 30.0) {
        add(
            at("fps"),
            format!("{} is out of range: 0 < fps <= 30", d.fps),
        );
    }
    if !(0.0..=1.0).contains(&d.min_score) {
        add(
            at("min_score"),
            format!("{} is out of range: 0 ..= 1", d.min_score),
        );
    }
    if !(0.0..=1.0).contains(&d.min_area) {
        add(
            at("min_area"),
            format!("{} is out of range: 0 ..= 1", d.min_area),
        );
    }
    if !(0.0..=1.0).contains(&d.motion_min_fraction) {
        add(
            at("motion_min_fraction"),
            format!("{} is out of range: 0 ..= 1", d.motion_min_fraction),
        );
    }
    if let Err(e) = check_stream_name(&d.stream) {
        add(at("stream"), e.to_string());
    }
    if d.heartbeat.0 < Duration::from_secs(1) {
        add(at("heartbeat"), "must be at least 1s".into());
    }
    if let Some(url) = &d.source {
        if let Err(e) = url.validate() {
            add(at("source"), e.to_string());
        }
    }
    let point_ok = |p: &[f32; 2]| (0.0..=1.0).contains(&p[0]) && (0.0..=1.0).contains(&p[1]);
    for (i, z) in d.zones.iter().enumerate() {
        if z.polygon.len() < 3 || !z.polygon.iter().all(point_ok) {
            add(
                at(&format!("zone[{i}].polygon")),
                "needs at least 3 points with x and y in 0..1".into(),
            );
        }
    }
    for (i, m) in d.masks.iter().enumerate() {
        if m.len() < 3 || !m.iter().all(point_ok) {
            add(
                at(&format!("masks[{i}]")),
                "needs at least 3 points with x and y in 0..1".into(),
            );
        }
    }
}

fn validate_source(
    s: &super::SourceConfig,
    at: &dyn Fn(&str) -> String,
    add: &mut impl FnMut(String, String),
) {
    let kind = format!("{:?}", s.kind).to_lowercase();
    let mut not_for = |field: &str, present: bool| {
        if present {
            add(at(field), format!("not used by kind = \"{kind}\""));
        }
    };
    let rtsp = s.kind == SourceKind::Rtsp;
    let file = s.kind == SourceKind::File;
    let v4l2 = s.kind == SourceKind::V4l2;
    let test = s.kind == SourceKind::Test;
    not_for("url", !rtsp && s.url.is_some());
    not_for("transport", !rtsp && s.transport.is_some());
    not_for("username", !rtsp && s.username.is_some());
    not_for("password", !rtsp && s.password.is_some());
    not_for("connect_timeout", !rtsp && s.connect_timeout.is_some());
    not_for("latency", !rtsp && s.latency.is_some());
    not_for("backend", !rtsp && s.backend.is_some());
    not_for("device", !v4l2 && s.device.is_some());
    not_for("path", !file && s.path.is_some());
    not_for("loop", !file && s.loop_playback.is_some());
    not_for("realtime", !file && s.realtime.is_some());
    not_for("pattern", !test && s.pattern.is_some());
    not_for("codec", !test && s.codec.is_some());
    not_for("width", !(test || v4l2) && s.width.is_some());
    not_for("height", !(test || v4l2) && s.height.is_some());
    not_for("fps", !(test || v4l2) && s.fps.is_some());
    not_for("gop", !(test || v4l2) && s.gop.is_some());
    not_for("bitrate", !(test || v4l2) && s.bitrate.is_some());

    match s.kind {
        SourceKind::Rtsp => match &s.url {
            None => add(at("url"), "required for kind = \"rtsp\"".into()),
            Some(url) => {
                if let Err(e) = url.validate() {
                    add(at("url"), e.to_string());
                } else if s.backend() == super::RtspBackend::Retina && url.is_rtsps() {
                    add(
                        at("url"),
                        "rtsps:// (RTSP over TLS) is not supported by backend = \"retina\": \
                         use backend = \"gstreamer\""
                            .into(),
                    );
                }
            }
        },
        SourceKind::File => {
            if s.path.is_none() {
                add(at("path"), "required for kind = \"file\"".into());
            }
        }
        SourceKind::V4l2 => {
            if s.device.is_none() {
                add(
                    at("device"),
                    "required for kind = \"v4l2\" (e.g. \"/dev/video0\")".into(),
                );
            }
        }
        SourceKind::Test => {}
    }
    if s.password.is_some() && s.username.is_none() {
        add(at("password"), "given without username".into());
    }
    for (field, value, lo, hi) in [
        ("width", s.width, 16, 7680),
        ("height", s.height, 16, 4320),
        ("fps", s.fps, 1, 120),
        ("gop", s.gop, 1, 1200),
        ("bitrate", s.bitrate, 64, 100_000),
    ] {
        if let Some(v) = value {
            if v < lo || v > hi {
                add(at(field), format!("{v} is out of range: {lo} ..= {hi}"));
            }
        }
    }
}

/// A per-camera budget holds four segments of at least 1 MiB (see `CameraConfig::segment_size`).
const MIN_CAMERA_BUDGET: u64 = 4 << 20;
/// The global budget is shared by every camera: 16 MiB keeps its quarter-size segments at 4 MiB,
/// a few 2 s fragments of a 4 Mbit/s camera, so retention has closed segments to delete.
const MIN_GLOBAL_BUDGET: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub(super) enum StreamNameError {
    #[error("`{0}` may only contain letters, digits, `-`, `_` and `.` (1..128)")]
    Characters(String),
    #[error("`{0}` is not a usable stream name (it names a directory)")]
    Directory(String),
}

/// Shard stream names follow the Kinesis rule, and name directories on disk, so `.` and `..`
/// are refused too (the stream store refuses them at start: refuse them here first).
/// A browser origin exactly as the `Origin` header carries it: `http(s)://host[:port]`, no path
/// and no default port (the url crate's origin serialization is the reference).
fn check_origin(origin: &str) -> Result<(), &'static str> {
    let url = url::Url::parse(origin).map_err(|_| "is not a URL like https://nvr.example:8443")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// origin (`*` is not accepted: list them)");
    }
    if url.origin().ascii_serialization() != origin {
        return Err("must be scheme://host[:port] only: no path, no trailing `/`, no default port");
    }
    Ok(())
}

pub(super) fn check_stream_name(name: &str) -> Result<(), StreamNameError> {
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || name.len() > 128 || !chars_ok {
        Err(StreamNameError::Characters(name.to_string()))
    } else if name == "." || name == ".." {
        Err(StreamNameError::Directory(name.to_string()))
    } else {
        Ok(())
    }
}

pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !s.starts_with('.')
}
