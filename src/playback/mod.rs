//! Playback of stored video: clip export, HLS / DASH streaming sessions (`session`, `hls`,
//! `dash`); the KVS-compatible media APIs build on the same pieces.

mod clip;
pub mod dash;
pub mod hls;
pub mod images;
mod range;
pub mod session;
mod stream;

pub use clip::{plan_clip, write_clip_part, ClipError, ClipPart};
pub use range::{clip_len, parse_range, write_clip_range, ByteRange, RangeRequest};
pub use stream::{
    active_streams, bytes_streamed, clip_body, clip_range_body, file_body, streamed_body,
    BodyWriter,
};
