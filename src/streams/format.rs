//! Record framing inside segment files.
//!
//! A segment file is an 8-byte header (`SEGMENT_MAGIC`) followed by frames:
//!
//! ```text
//! len  u32 LE   length of the body
//! crc  u32 LE   CRC-32 (crc32fast) over the len bytes and the body
//! body:
//!   offset      u64 LE   per-shard record offset
//!   arrival_ns  i64 LE   arrival time, Unix ns (monotonic per shard)
//!   key_len     u16 LE
//!   key         key_len bytes, UTF-8 partition key
//!   data        the rest of the body
//! ```

use std::io::{self, Read};

pub const SEGMENT_MAGIC: &[u8; 8] = b"VGSTRM\x00\x01";
pub const SEGMENT_HEADER_LEN: u64 = SEGMENT_MAGIC.len() as u64;
pub const FRAME_HEADER_LEN: usize = 8;
const BODY_FIXED_LEN: usize = 8 + 8 + 2;

/// Largest record payload (partition key + data), as in Kinesis.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Partition keys are at most 256 characters, so at most 1024 bytes of UTF-8.
const MAX_KEY_BYTES: usize = 1024;
const MAX_BODY_LEN: usize = BODY_FIXED_LEN + MAX_RECORD_BYTES;

/// Bytes a record occupies on disk.
pub fn frame_len(key: &str, data: &[u8]) -> usize {
    FRAME_HEADER_LEN + BODY_FIXED_LEN + key.len() + data.len()
}

/// A whole frame (the writer sends header and data separately; see `encode_header`).
#[cfg(test)]
pub fn encode(buf: &mut Vec<u8>, offset: u64, arrival_ns: i64, key: &str, data: &[u8]) {
    encode_header(buf, offset, arrival_ns, key, data);
    buf.extend_from_slice(data);
}

/// Appends everything of a frame but the data (which the writer sends from the caller's buffer);
/// the CRC covers the data all the same.
pub fn encode_header(buf: &mut Vec<u8>, offset: u64, arrival_ns: i64, key: &str, data: &[u8]) {
    let body_len = (BODY_FIXED_LEN + key.len() + data.len()) as u32;
    let start = buf.len();
    buf.extend_from_slice(&body_len.to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&arrival_ns.to_le_bytes());
    buf.extend_from_slice(&(key.len() as u16).to_le_bytes());
    buf.extend_from_slice(key.as_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[start..start + 4]);
    h.update(&buf[start + FRAME_HEADER_LEN..]);
    h.update(data);
    let crc = h.finalize();
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(len: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(body);
    h.finalize()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub offset: u64,
    pub arrival_ns: i64,
    pub key: String,
    pub data: Vec<u8>,
}

impl Frame {
    pub fn disk_len(&self) -> u64 {
        frame_len(&self.key, &self.data) as u64
    }
}

/// Why a frame could not be read; recovery cuts the file at the frame's start.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The file ends inside the frame (torn write).
    #[error("file ends inside a record")]
    Truncated,
    /// Length out of bounds, CRC mismatch or a malformed body.
    #[error("{0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Io(io::Error),
}

/// Reads one frame; Ok(None) at a clean end of input.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>, FrameError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    match read_full(r, &mut header)? {
        0 => return Ok(None),
        n if n < FRAME_HEADER_LEN => return Err(FrameError::Truncated),
        _ => {}
    }
    let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
    if !(BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&len) {
        return Err(FrameError::Invalid("record length out of bounds"));
    }
    let mut body = vec![0u8; len];
    if read_full(r, &mut body)? < len {
        return Err(FrameError::Truncated);
    }
    if checksum(&header[0..4], &body) != crc {
        return Err(FrameError::Invalid("record CRC mismatch"));
    }
    let offset = u64::from_le_bytes(body[0..8].try_into().unwrap());
    let arrival_ns = i64::from_le_bytes(body[8..16].try_into().unwrap());
    let key_len = u16::from_le_bytes(body[16..18].try_into().unwrap()) as usize;
    if key_len > MAX_KEY_BYTES || BODY_FIXED_LEN + key_len > len {
        return Err(FrameError::Invalid("partition key length out of bounds"));
    }
    let data = body.split_off(BODY_FIXED_LEN + key_len);
    let key = String::from_utf8(body.split_off(BODY_FIXED_LEN))
        .map_err(|_| FrameError::Invalid("partition key is not UTF-8"))?;
    Ok(Some(Frame {
        offset,
        arrival_ns,
        key,
        data,
    }))
}

/// Like read_exact, but reports how much it got instead of failing at end of input.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, FrameError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_crc_detects_flips() {
        let mut buf = Vec::new();
        encode(&mut buf, 7, 42, "cam-1", b"hello");
        assert_eq!(buf.len(), frame_len("cam-1", b"hello"));
        let f = read_frame(&mut &buf[..]).unwrap().unwrap();
        assert_eq!(
            (f.offset, f.arrival_ns, &f.key[..], &f.data[..]),
            (7, 42, "cam-1", &b"hello"[..])
        );
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(
                read_frame(&mut &bad[..]).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        assert!(matches!(
            read_frame(&mut &buf[..buf.len() - 1]),
            Err(FrameError::Truncated)
        ));
        assert!(read_frame(&mut &[][..]).unwrap().is_none());
    }
}
