//! Playback of stored video: clip export (`clip`, `range`), HLS / DASH streaming sessions
//! (`session`, `hls`, `dash`), Matroska chunks for GetMedia (`mkv`) and still images (`images`),
//! all read from the segment files and streamed with bounded memory (`stream`).

mod clip;
pub mod dash;
pub mod hls;
pub mod images;
pub mod live;
pub mod mkv;
mod range;
pub mod session;
mod stream;

pub use clip::{plan_clip, write_clip_part, ClipError, ClipPart};
pub use range::{clip_len, parse_range, write_clip_range, ByteRange, RangeRequest};
pub use stream::{
    active_streams, bytes_streamed, clip_body, clip_range_body, file_body, streamed_body,
    BodyWriter,
};
