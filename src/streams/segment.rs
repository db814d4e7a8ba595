//! One segment file of a shard: its in-memory summary with a sparse index, scanning (recovery,
//! index rebuild), the persisted `.idx` of sealed segments, and reading frames from a position.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::{self, Frame, FrameError, SEGMENT_HEADER_LEN, SEGMENT_MAGIC};

/// A sparse index entry is kept at least every this many bytes, so a lookup reads at most about
/// this much before it reaches the record it wants.
pub const INDEX_INTERVAL_BYTES: u64 = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub offset: u64,
    /// Byte position of the record's frame in the file.
    pub pos: u64,
    pub arrival_ns: i64,
}

/// Summary of one segment: records `base..next`, valid bytes `..len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub base: u64,
    pub next: u64,
    pub len: u64,
    pub first_arrival_ns: i64,
    pub last_arrival_ns: i64,
    pub index: Vec<IndexEntry>,
}

pub fn log_name(base: u64) -> String {
    format!("{base:020}.log")
}

pub fn idx_name(base: u64) -> String {
    format!("{base:020}.idx")
}

/// Base offset from a `<20 digits>.log` / `.idx` file name.
pub fn parse_name(name: &str) -> Option<(u64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

impl Segment {
    pub fn empty(base: u64) -> Self {
        Segment {
            base,
            next: base,
            len: SEGMENT_HEADER_LEN,
            first_arrival_ns: 0,
            last_arrival_ns: 0,
            index: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.next == self.base
    }

    /// Accounts for a record just appended at byte `pos`.
    pub fn push(&mut self, offset: u64, pos: u64, disk_len: u64, arrival_ns: i64) {
        debug_assert_eq!(offset, self.next);
        if self.is_empty() {
            self.first_arrival_ns = arrival_ns;
        }
        let due = self
            .index
            .last()
            .is_none_or(|e| pos - e.pos >= INDEX_INTERVAL_BYTES);
        if due {
            self.index.push(IndexEntry {
                offset,
                pos,
                arrival_ns,
            });
        }
        self.next = offset + 1;
        self.len = pos + disk_len;
        self.last_arrival_ns = arrival_ns;
    }

    /// Index entry to start scanning from to reach `offset` (which must be in base..next).
    pub fn seek_offset(&self, offset: u64) -> IndexEntry {
        let i = self.index.partition_point(|e| e.offset <= offset);
        self.index[i.saturating_sub(1)]
    }

    /// Index entry to start scanning from to reach the first record arriving at or after `ts`:
    /// the last entry before `ts` (arrival times are non-decreasing within a shard).
    pub fn seek_time(&self, ts: i64) -> IndexEntry {
        let i = self.index.partition_point(|e| e.arrival_ns < ts);
        self.index[i.saturating_sub(1)]
    }
}

/// Outcome of scanning a segment file from its start.
pub struct Scan {
    pub segment: Segment,
    /// Size of the file; bytes past `segment.len` are not valid records.
    pub file_len: u64,
    /// Why the scan stopped before the end of the file.
    pub stopped: Option<String>,
}

/// Reads every frame of a segment, checking CRCs and that offsets run base, base+1, ...
/// Stops at the first invalid frame. Errors only on I/O failure or a bad file header.
pub fn scan(path: &Path, base: u64) -> io::Result<Scan> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; SEGMENT_MAGIC.len()];
    r.read_exact(&mut magic)?;
    if &magic != SEGMENT_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a vidgest stream segment (bad magic)",
        ));
    }
    let mut seg = Segment::empty(base);
    let mut stopped = None;
    loop {
        let pos = seg.len;
        match format::read_frame(&mut r) {
            Ok(None) => break,
            Ok(Some(f)) if f.offset != seg.next => {
                stopped = Some(format!(
                    "record at byte {pos} has offset {} where {} was expected",
                    f.offset, seg.next
                ));
                break;
            }
            Ok(Some(f)) => seg.push(f.offset, pos, f.disk_len(), f.arrival_ns),
            Err(FrameError::Io(e)) => return Err(e),
            Err(e) => {
                stopped = Some(format!("{e} at byte {pos}"));
                break;
            }
        }
    }
    Ok(Scan {
        segment: seg,
        file_len,
        stopped,
    })
}

// ---- persisted sparse index of a sealed segment ----
//
// magic "VGSIDX01" | base u64 | next u64 | len u64 | first_arrival i64 | last_arrival i64 |
// count u32 | count x (offset u64, pos u64, arrival i64) | crc32 u32 over all of the above.

const IDX_MAGIC: &[u8; 8] = b"VGSIDX01";

pub fn encode_idx(seg: &Segment) -> Vec<u8> {
    let mut b = Vec::with_capacity(52 + seg.index.len() * 24 + 4);
    b.extend_from_slice(IDX_MAGIC);
    for v in [seg.base, seg.next, seg.len] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&seg.first_arrival_ns.to_le_bytes());
    b.extend_from_slice(&seg.last_arrival_ns.to_le_bytes());
    b.extend_from_slice(&(seg.index.len() as u32).to_le_bytes());
    for e in &seg.index {
        b.extend_from_slice(&e.offset.to_le_bytes());
        b.extend_from_slice(&e.pos.to_le_bytes());
        b.extend_from_slice(&e.arrival_ns.to_le_bytes());
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// The segment summary from an `.idx` file, None if it is damaged or does not match.
pub fn decode_idx(b: &[u8], base: u64, log_len: u64) -> Option<Segment> {
    let (body, crc) = b.split_at_checked(b.len().checked_sub(4)?)?;
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?)
        || !body.starts_with(IDX_MAGIC)
    {
        return None;
    }
    let mut fields = body[8..].chunks_exact(8);
    let mut next_u64 =
        || -> Option<u64> { Some(u64::from_le_bytes(fields.next()?.try_into().ok()?)) };
    let seg_base = next_u64()?;
    let next = next_u64()?;
    let len = next_u64()?;
    let first_arrival_ns = next_u64()? as i64;
    let last_arrival_ns = next_u64()? as i64;
    let rest = &body[48..];
    let count = u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?) as usize;
    let entries = &rest[4..];
    if seg_base != base || len != log_len || next <= base || entries.len() != count * 24 {
        return None;
    }
    let index = entries
        .chunks_exact(24)
        .map(|c| IndexEntry {
            offset: u64::from_le_bytes(c[0..8].try_into().unwrap()),
            pos: u64::from_le_bytes(c[8..16].try_into().unwrap()),
            arrival_ns: i64::from_le_bytes(c[16..24].try_into().unwrap()),
        })
        .collect::<Vec<_>>();
    if index.first().map(|e| (e.offset, e.pos)) != Some((base, SEGMENT_HEADER_LEN)) {
        return None;
    }
    Some(Segment {
        base,
        next,
        len,
        first_arrival_ns,
        last_arrival_ns,
        index,
    })
}

/// Sequential frame reader over a segment file opened by the caller (so a concurrent retention
/// unlink cannot pull the file away mid-read).
pub struct Cursor {
    reader: BufReader<File>,
    path: PathBuf,
    pos: u64,
}

impl Cursor {
    pub fn new(file: File, path: PathBuf, pos: u64) -> io::Result<Self> {
        let mut reader = BufReader::with_capacity(128 * 1024, file);
        reader.seek(SeekFrom::Start(pos))?;
        Ok(Cursor { reader, path, pos })
    }

    /// The next frame; its offset must be `expect` (anything else means the file was damaged
    /// after it was indexed).
    pub fn next_frame(&mut self, expect: u64) -> Result<Frame, CursorError> {
        let at = self.pos;
        let frame = match format::read_frame(&mut self.reader) {
            Ok(Some(f)) => f,
            Ok(None) => return Err(self.frame_err(at, FrameError::Truncated)),
            Err(e) => return Err(self.frame_err(at, e)),
        };
        if frame.offset != expect {
            return Err(CursorError::Offset {
                path: self.path.clone(),
                at,
                got: frame.offset,
                expect,
            });
        }
        self.pos += frame.disk_len();
        Ok(frame)
    }

    fn frame_err(&self, at: u64, source: FrameError) -> CursorError {
        CursorError::Frame {
            path: self.path.clone(),
            at,
            source,
        }
    }
}

/// A record that cannot be read back from a segment file that indexed it (damaged since).
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("{}: {source} at byte {at}", path.display())]
    Frame {
        path: PathBuf,
        at: u64,
        source: FrameError,
    },
    #[error("{}: record at byte {at} has offset {got}, expected {expect}", path.display())]
    Offset {
        path: PathBuf,
        at: u64,
        got: u64,
        expect: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_round_trip_and_rejects_damage() {
        let mut seg = Segment::empty(100);
        let mut pos = SEGMENT_HEADER_LEN;
        for i in 0..1000u64 {
            seg.push(100 + i, pos, 1000, 5 + i as i64);
            pos += 1000;
        }
        assert!(seg.index.len() > 10 && seg.index.len() < 1000);
        let b = encode_idx(&seg);
        assert_eq!(decode_idx(&b, 100, seg.len), Some(seg.clone()));
        assert_eq!(decode_idx(&b, 101, seg.len), None);
        assert_eq!(decode_idx(&b, 100, seg.len + 1), None);
        let mut bad = b.clone();
        bad[30] ^= 1;
        assert_eq!(decode_idx(&bad, 100, seg.len), None);
        assert_eq!(decode_idx(&b[..b.len() - 1], 100, seg.len), None);
        // lookups land on an entry at or before the target
        let e = seg.seek_offset(600);
        assert!(e.offset <= 600 && 600 - e.offset < 40);
        let e = seg.seek_time(5 + 600);
        assert!(e.arrival_ns < 605 && 605 - e.arrival_ns <= 40);
        assert_eq!(seg.seek_time(0).offset, 100);
    }

    #[test]
    fn names() {
        assert_eq!(log_name(42), "00000000000000000042.log");
        assert_eq!(parse_name("00000000000000000042.idx"), Some((42, "idx")));
        assert_eq!(parse_name("42.log"), None);
    }

    #[test]
    fn cursor_names_file_and_byte_of_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut buf = Vec::new();
        format::encode(&mut buf, 7, 1, "k", b"one");
        format::encode(&mut buf, 8, 2, "k", b"two");
        let second = buf.len() as u64 / 2;
        std::fs::write(&path, &buf[..buf.len() - 1]).unwrap();
        let open = || Cursor::new(File::open(&path).unwrap(), path.clone(), 0).unwrap();

        let mut c = open();
        assert_eq!(c.next_frame(7).unwrap().data, b"one");
        let e = c.next_frame(8).unwrap_err();
        assert!(
            matches!(&e, CursorError::Frame { at, source: FrameError::Truncated, .. } if *at == second),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with(&path.display().to_string()),
            "{e}"
        );

        let e = open().next_frame(6).unwrap_err();
        assert!(
            matches!(
                e,
                CursorError::Offset {
                    at: 0,
                    got: 7,
                    expect: 6,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = crate::streams::StreamError::from(e);
        assert!(e.to_string().starts_with("corrupt stream data: "), "{e}");
    }
}
