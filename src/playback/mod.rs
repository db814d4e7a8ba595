//! Playback of stored video: clip export now; HLS and the KVS-compatible media APIs build on the
//! same pieces later.

mod clip;
pub mod images;
mod stream;

pub use clip::{plan_clip, write_clip_part, ClipError, ClipPart};
pub use stream::clip_body;
