//! Playback of stored video: clip export, and Matroska chunks for the KVS-compatible media APIs;
//! HLS builds on the same pieces later.

mod clip;
pub mod mkv;
mod stream;

pub use clip::{plan_clip, write_clip_part, ClipError, ClipPart};
pub use stream::{blocking_body, clip_body, ChannelWriter};
