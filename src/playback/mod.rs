//! Playback of stored video: clip export, HLS / DASH streaming sessions (`session`, `hls`,
//! `dash`); the KVS-compatible media APIs build on the same pieces.

mod clip;
pub mod dash;
pub mod hls;
pub mod session;
mod stream;

pub use clip::{plan_clip, write_clip_part, ClipError, ClipPart};
pub use stream::clip_body;
