//! vidgest: a video-ingest agent for cameras and small edge devices.
//!
//! Module map (see docs/architecture.md): `config` parses and validates the TOML file, `capture`
//! runs one GStreamer pipeline per camera, `media` turns access units into fMP4 fragments, `store`
//! keeps fragments on disk with an SQLite index and retention, `probe` speaks RTSP to describe a
//! camera, `daemon` wires it all together.

pub mod api;
pub mod capture;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod datadir;
pub mod detect;
#[doc(hidden)]
pub mod fuzzing;
pub mod media;
pub mod playback;
pub mod probe;
pub mod store;
pub mod streams;
pub mod timespec;
