//! Entry points for the cargo-fuzz targets in `fuzz/` (see docs/testing.md). Not a stable API:
//! thin wrappers that reach crate-private parsers without making them public one by one.
//! Each returns what a fuzz target needs to check its invariants.

use crate::api::kinesis::{ops, request::Request};
use crate::probe::{auth, sdp, sps};
use crate::streams::{format, segment, PutRecord};

pub use crate::config::Config;
pub use crate::media::fmp4::{inspect_fragment, rewrite_fragment, FragmentInfo};
pub use crate::streams::format::{Frame, FrameError};

/// Parses an SDP body; on success looks up every format's rtpmap and fmtp as probe does.
/// Returns the number of media sections.
pub fn sdp(body: &[u8], content_type: Option<&str>) -> Option<usize> {
    let sdp = sdp::parse(body, content_type).ok()?;
    for m in &sdp.media {
        for &pt in &m.formats {
            let _ = m.rtpmap(pt);
            let _ = m.fmtp(pt, "sprop-parameter-sets");
        }
    }
    Some(sdp.media.len())
}

/// One parsed `WWW-Authenticate` challenge: lower-case scheme and (name, value) parameters.
pub type Challenge = (String, Vec<(String, String)>);

/// Parses `WWW-Authenticate` challenges.
pub fn www_authenticate(header: &str) -> Vec<Challenge> {
    auth::parse_challenges(header)
        .into_iter()
        .map(|c| (c.scheme, c.params))
        .collect()
}

/// Answers the challenges in `header` as probe would: the scheme chosen and two consecutive
/// `Authorization` values (Digest counts nonces), or None when no offered scheme is usable.
pub fn authorization(
    header: &str,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> Option<(&'static str, String, String)> {
    let challenges = auth::parse_challenges(header);
    let mut a = auth::Authenticator::choose(&challenges, username, password).ok()?;
    let first = a.authorization(method, uri);
    let second = a.authorization(method, uri);
    Some((a.scheme(), first, second))
}

/// (width, height, fps) from an H.264 SPS NAL unit.
pub fn sps_h264(nal: &[u8]) -> Option<(u32, u32, Option<f64>)> {
    sps::h264(nal).ok().map(|i| (i.width, i.height, i.fps))
}

/// (width, height) from an H.265 SPS NAL unit.
pub fn sps_h265(nal: &[u8]) -> Option<(u32, u32)> {
    sps::h265(nal).ok().map(|i| (i.width, i.height))
}

/// Reads segment-file frames (after the file header) until the end or the first bad frame.
pub fn read_frames(mut bytes: &[u8]) -> (Vec<Frame>, Option<FrameError>) {
    let mut frames = Vec::new();
    loop {
        match format::read_frame(&mut bytes) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

/// Encodes one frame as the segment writer does.
pub fn encode_frame(offset: u64, arrival_ns: i64, key: &str, data: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    format::encode_header(&mut buf, offset, arrival_ns, key, data);
    buf.extend_from_slice(data);
    buf
}

/// Decodes a sealed segment's `.idx` file; on success returns its re-encoding, which must be
/// byte-identical to the input.
pub fn decode_idx(bytes: &[u8], base: u64, log_len: u64) -> Option<Vec<u8>> {
    segment::decode_idx(bytes, base, log_len).map(|s| segment::encode_idx(&s))
}

/// The PutRecords fast path.
pub fn fast_parse_put_records(body: &[u8]) -> Option<(String, Vec<PutRecord>)> {
    ops::fast_parse_put_records(body)
}

/// The general PutRecords path on a JSON body (as the API parses it: an empty body is `{}`, the
/// top level must be an object), or None where it answers with an error.
pub fn general_parse_put_records(body: &[u8]) -> Option<(String, Vec<PutRecord>)> {
    let value: serde_json::Value = if body.is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).ok()?
    };
    if !value.is_object() {
        return None;
    }
    ops::parse_put_records(Request(&value)).ok()
}
