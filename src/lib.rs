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
