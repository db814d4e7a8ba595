//! `vidgest probe RTSP_URL`: speaks just enough RTSP (OPTIONS, DESCRIBE, Basic/Digest auth) to
//! describe a camera, and prints a ready-to-paste `[[camera]]` config snippet.
//!
//! No GStreamer here on purpose: probing must answer quickly and explain failures precisely
//! (refused, timeout, auth, garbage), which a pipeline's generic errors do not.
//!
//! Credentials never leave this module in clear text: every URL shown goes through [`redact_url`].

pub(crate) mod auth;
mod error;
mod report;
mod rtsp;
pub(crate) mod sdp;
pub(crate) mod sps;
mod target;

use std::time::Duration;

use crate::config::{DurationError, HumanDuration};

pub use crate::config::redact_url;
pub use error::ProbeError;

/// Longest per-step timeout: a camera slower than that is broken, and deadlines
/// (`Instant + timeout`) must stay far from overflowing.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum TimeoutError {
    #[error(transparent)]
    Invalid(#[from] DurationError),
    #[error("`{0}` is out of range: more than 0s and at most 1h")]
    OutOfRange(String),
}

fn timeout_in_range(d: Duration) -> bool {
    !d.is_zero() && d <= MAX_TIMEOUT
}

/// Parses `--timeout` (humantime, e.g. `5s`), refusing zero and anything over [`MAX_TIMEOUT`].
pub fn parse_timeout(s: &str) -> Result<Duration, TimeoutError> {
    let d = match HumanDuration::parse(s) {
        Ok(d) => d.0,
        Err(DurationError::TooLong(_)) => return Err(TimeoutError::OutOfRange(s.to_owned())),
        Err(e) => return Err(e.into()),
    };
    if timeout_in_range(d) {
        Ok(d)
    } else {
        Err(TimeoutError::OutOfRange(s.to_owned()))
    }
}

/// How to probe. `timeout` applies to each step (connect, OPTIONS, DESCRIBE) separately.
#[derive(Clone)]
pub struct ProbeOptions {
    /// Overrides the user from the URL's userinfo.
    pub username: Option<String>,
    /// Overrides the password from the URL's userinfo.
    pub password: Option<String>,
    pub timeout: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            username: None,
            password: None,
            timeout: Duration::from_secs(5),
        }
    }
}

// Hand-written so the password never reaches logs through `{:?}`.
impl std::fmt::Debug for ProbeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeOptions")
            .field("username", &self.username.as_ref().map(|_| "***"))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What the camera said about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// The probed URL with credentials replaced by `***`.
    pub url_redacted: String,
    /// The URL without any userinfo (what goes into the config file).
    pub url_plain: String,
    /// The user name that was accepted, if the camera asked for credentials.
    pub username: Option<String>,
    /// `Server` header of the DESCRIBE (or OPTIONS) response.
    pub server: Option<String>,
    /// Methods from the `Public` header of the OPTIONS response.
    pub methods: Vec<String>,
    pub tracks: Vec<Track>,
    /// `"basic"` or `"digest"` when the camera required credentials.
    pub auth_used: Option<String>,
}

/// One `m=` section of the SDP.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// `video`, `audio`, `application`, ...
    pub media: String,
    /// `H264`, `H265`, `MJPEG`, `AAC`, `PCMA`, ... (upper case).
    pub codec: String,
    pub payload_type: u8,
    pub clock_rate: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub framerate: Option<f64>,
    /// Absolute control URL (without credentials) for SETUP.
    pub control: Option<String>,
}

impl ProbeReport {
    /// Human-readable summary followed by a TOML snippet for the config file.
    pub fn render(&self) -> String {
        report::render(self)
    }
}

/// Connects, sends OPTIONS and DESCRIBE (authenticating if asked to) and describes the tracks.
pub async fn probe(url: &str, opts: &ProbeOptions) -> Result<ProbeReport, ProbeError> {
    if !timeout_in_range(opts.timeout) {
        return Err(ProbeError::TimeoutOutOfRange(opts.timeout));
    }
    let target = target::Target::parse(url, opts.username.clone(), opts.password.clone())?;
    tracing::debug!(url = %target.redacted, "probing camera");

    let mut conn = rtsp::Connection::connect(&target, opts.timeout).await?;
    let options = conn.request(rtsp::Step::Options).await?;
    let describe = conn.request(rtsp::Step::Describe).await?;

    let base = describe
        .content_base
        .clone()
        .unwrap_or_else(|| target.plain.clone());
    let parsed = sdp::parse(&describe.body, describe.content_type.as_deref())?;
    let tracks = report::tracks(&parsed, &base);
    if !tracks.iter().any(|t| t.media == "video") {
        return Err(ProbeError::NoVideo {
            url: target.redacted.clone(),
            media: tracks
                .iter()
                .map(|t| format!("{} {}", t.media, t.codec))
                .collect(),
        });
    }

    let auth_used = conn.auth_scheme().map(str::to_owned);
    Ok(ProbeReport {
        url_redacted: target.redacted.clone(),
        url_plain: target.plain.clone(),
        username: auth_used.as_ref().and_then(|_| target.username.clone()),
        server: describe.server.or(options.server),
        methods: options.public,
        tracks,
        auth_used,
    })
}

/// `vidgest probe`: probes on a small current-thread runtime and prints the report to stdout.
pub fn run_cli(
    url: &str,
    username: Option<String>,
    password: Option<String>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let opts = ProbeOptions {
        username,
        password,
        timeout,
    };
    let report = rt.block_on(probe(url, &opts))?;
    print!("{}", report.render());
    Ok(())
}
