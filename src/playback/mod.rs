//! Playback of stored video: clip export now; HLS and the KVS-compatible media APIs build on the
//! same pieces later.

mod clip;
pub mod images;
mod range;
mod stream;

pub use clip::{plan_clip, write_clip_part, ClipError, ClipPart};
pub use range::{clip_len, parse_range, write_clip_range, ByteRange, RangeRequest};
pub use stream::{
    active_streams, bytes_streamed, clip_body, clip_range_body, streamed_body, BodyWriter,
};
