//! Clips: the init segment plus a run of stored fragments, rebased so the clip starts at time 0.
//! A clip never mixes codec configurations: a range spanning an init change becomes several parts.

use super::range::slice_into;
use super::ByteRange;
use crate::clock::{format_rfc3339, UnixNanos};
use crate::media::fmp4;
use crate::store::{FragmentMeta, StoreError, StoreReader};
use std::io::{Read, Seek, Write};

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("camera `{stream}` has no video between {} and {}", format_rfc3339(*start), format_rfc3339(*end))]
    Empty {
        stream: String,
        start: UnixNanos,
        end: UnixNanos,
    },
    #[error("end time is before start time")]
    BadRange,
    #[error("fragment {number}: {source}")]
    Media {
        number: u64,
        source: crate::media::MediaError,
    },
    #[error("fragment {number} would change size when rebased: the clip's layout is not what its length promised")]
    Layout { number: u64 },
    #[error("fragment {number} is shorter in its segment file than the index says")]
    Truncated { number: u64 },
    #[error("cannot write clip: {0}")]
    Write(#[from] std::io::Error),
}

/// Fragments sharing one init segment.
#[derive(Debug, Clone)]
pub struct ClipPart {
    pub init_id: i64,
    pub fragments: Vec<FragmentMeta>,
}

impl ClipPart {
    pub fn bytes(&self) -> u64 {
        self.fragments.iter().map(|f| f.size).sum()
    }
    pub fn start_ns(&self) -> UnixNanos {
        self.fragments[0].producer_ns
    }
    pub fn end_ns(&self) -> UnixNanos {
        self.fragments.last().map_or(0, |f| f.producer_end_ns())
    }
}

/// Fragments overlapping `[start, end]`, split wherever the codec configuration changes.
pub fn plan_clip(
    reader: &StoreReader,
    stream: &str,
    start: UnixNanos,
    end: UnixNanos,
) -> Result<Vec<ClipPart>, ClipError> {
    if end < start {
        return Err(ClipError::BadRange);
    }
    let fragments = reader.fragments_overlapping(stream, start, end)?;
    if fragments.is_empty() {
        return Err(ClipError::Empty {
            stream: stream.to_string(),
            start,
            end,
        });
    }
    let mut parts: Vec<ClipPart> = Vec::new();
    for f in fragments {
        match parts.last_mut() {
            Some(p) if p.init_id == f.init_id => p.fragments.push(f),
            _ => parts.push(ClipPart {
                init_id: f.init_id,
                fragments: vec![f],
            }),
        }
    }
    Ok(parts)
}

/// Writes one part as a fragmented MP4; `progress` gets the bytes written so far.
pub fn write_clip_part(
    reader: &StoreReader,
    part: &ClipPart,
    out: &mut impl Write,
    progress: impl FnMut(u64),
) -> Result<u64, ClipError> {
    write_clip(reader, part, out, None, progress)
}

/// Writes the part's file, or only bytes `range` of it, streaming each fragment from its segment
/// file: the moof is rebased (sequence numbers from 1, decode times from 0) and the mdat copied
/// through a small buffer, so memory does not grow with the fragment or the clip. Fragments the
/// range does not touch are not read. The file's layout is the init segment and then each
/// fragment at its stored size (`range::clip_len`); a fragment whose moof would change size fails
/// the write rather than break a Content-Length already sent.
pub fn write_clip(
    reader: &StoreReader,
    part: &ClipPart,
    out: &mut impl Write,
    range: Option<ByteRange>,
    mut progress: impl FnMut(u64),
) -> Result<u64, ClipError> {
    let range = range.unwrap_or(ByteRange {
        first: 0,
        last: u64::MAX,
    });
    let init = reader.init(part.init_id)?;
    let mut written = slice_into(out, &init.data, 0, range)?;
    let mut at = init.data.len() as u64;
    let mut first_base: Option<u64> = None;
    for (i, f) in part.fragments.iter().enumerate() {
        if at > range.last {
            break;
        }
        let end = at + f.size;
        if end > range.first {
            let first = match first_base {
                Some(b) => b,
                None => {
                    let head = open_fragment(reader, &part.fragments[0])?;
                    *first_base.insert(head.base)
                }
            };
            let mut frag = open_fragment(reader, f)?;
            let moof =
                fmp4::rewrite_fragment(&frag.moof, i as u32 + 1, frag.base.saturating_sub(first))
                    .map_err(|source| ClipError::Media {
                    number: f.fragment_number,
                    source,
                })?;
            if moof.len() != frag.moof.len() {
                return Err(ClipError::Layout {
                    number: f.fragment_number,
                });
            }
            written += slice_into(out, &moof, at, range)?;
            // The mdat: skip to where the range starts, copy up to where it ends.
            let body_at = at + moof.len() as u64;
            let from = range.first.saturating_sub(body_at);
            let to = range
                .last
                .saturating_add(1)
                .min(end)
                .saturating_sub(body_at);
            if from < to {
                if from > 0 {
                    frag.rest
                        .get_mut()
                        .seek(std::io::SeekFrom::Current(from as i64))?;
                    frag.rest.set_limit(frag.rest.limit().saturating_sub(from));
                }
                let copied = std::io::copy(&mut (&mut frag.rest).take(to - from), out)?;
                if copied != to - from {
                    return Err(ClipError::Truncated {
                        number: f.fragment_number,
                    });
                }
                written += copied;
            }
            progress(written);
        }
        at = end;
    }
    out.flush()?;
    Ok(written)
}

/// A stored fragment opened for streaming: its moof bytes and tfdt, and a reader of the rest.
struct OpenFragment {
    moof: Vec<u8>,
    base: u64,
    rest: std::io::Take<std::fs::File>,
}

/// Largest moof accepted (ours are a few KiB: 16 bytes per sample).
const MAX_MOOF: u64 = 16 << 20;

fn open_fragment(reader: &StoreReader, f: &FragmentMeta) -> Result<OpenFragment, ClipError> {
    let media = |reason: &str| ClipError::Media {
        number: f.fragment_number,
        source: crate::media::MediaError::InvalidFragment(reason.to_string()),
    };
    let mut rest = reader.open_fragment(f)?;
    let mut moof = vec![0u8; 8];
    rest.read_exact(&mut moof)
        .map_err(|_| media("shorter than a box header"))?;
    if &moof[4..8] != b"moof" {
        return Err(media("does not start with a moof"));
    }
    let size = match u32::from_be_bytes(moof[0..4].try_into().expect("4 bytes")) {
        1 => {
            let mut large = [0u8; 8];
            rest.read_exact(&mut large)
                .map_err(|_| media("truncated moof header"))?;
            moof.extend_from_slice(&large);
            u64::from_be_bytes(large)
        }
        n => u64::from(n),
    };
    if size < moof.len() as u64 || size > f.size.min(MAX_MOOF) {
        return Err(media("moof size does not fit the fragment"));
    }
    let header = moof.len();
    moof.resize(size as usize, 0);
    rest.read_exact(&mut moof[header..])
        .map_err(|_| media("truncated moof"))?;
    let base = fmp4::base_decode_time(&moof).map_err(|source| ClipError::Media {
        number: f.fragment_number,
        source,
    })?;
    Ok(OpenFragment { moof, base, rest })
}
