//! vidgest: a video-ingest agent for cameras and small edge devices.
//!
//! Module map (see docs/architecture.md):
//! - `config` parses and validates the TOML file; `datadir` holds the data directory's lock.
//! - `capture` runs one GStreamer pipeline per camera (recording and the detect branch) and a
//!   detector pool; `detect` runs ONNX models on RGB frames (manifests, decoders, NMS, filters).
//! - `media` turns access units into fMP4 fragments; `store` keeps fragments on disk with an
//!   SQLite index and retention; `playback` exports clips from it.
//! - `streams` is the embedded Kinesis-compatible shard stream (detection records and client
//!   data); `api` serves it over HTTP (Kinesis JSON/CBOR) with token auth.
//! - `probe` speaks RTSP to describe a camera; `clock` and `timespec` are the injectable clock
//!   and CLI time parsing; `daemon` wires it all together (the CLI lives in the binary).

pub mod api;
pub mod capture;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod datadir;
pub mod delivery;
pub mod detect;
#[doc(hidden)]
pub mod fuzzing;
pub mod lifecycle;
pub mod media;
pub mod metrics;
pub mod playback;
pub mod probe;
pub mod records;
pub mod store;
pub mod streams;
pub mod timespec;

/// Initialises GStreamer on its first use: capture pipelines, the detect feed of retina cameras,
/// snapshot and still-image decoding. A daemon whose cameras are all on retina without detection
/// never pays for it (plugin registry, type system: several MiB of RSS). `gstreamer::init` is
/// itself idempotent (a mutex and a flag); this keeps the outcome, so a failure is reported the
/// same way at every later use, and logs the first initialisation once.
pub fn gst_init() -> Result<(), gstreamer::glib::Error> {
    static INIT: std::sync::OnceLock<Result<(), gstreamer::glib::Error>> =
        std::sync::OnceLock::new();
    INIT.get_or_init(|| {
        let r = gstreamer::init();
        match &r {
            Ok(()) => tracing::debug!("GStreamer initialised: {}", gstreamer::version_string()),
            Err(e) => tracing::error!("GStreamer cannot start: {e}"),
        }
        r
    })
    .clone()
}
