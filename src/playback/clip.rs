//! Clips: the init segment plus a run of stored fragments, rebased so the clip starts at time 0.
//! A clip never mixes codec configurations: a range spanning an init change becomes several parts.

use crate::clock::{format_rfc3339, UnixNanos};
use crate::media::fmp4;
use crate::store::{FragmentMeta, StoreError, StoreReader};
use std::io::Write;

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
    mut progress: impl FnMut(u64),
) -> Result<u64, ClipError> {
    let init = reader.init(part.init_id)?;
    out.write_all(&init.data)?;
    let mut written = init.data.len() as u64;
    let mut base: Option<u64> = None;
    for (i, f) in part.fragments.iter().enumerate() {
        let bytes = reader.read_fragment(f)?;
        let media = |source| ClipError::Media {
            number: f.fragment_number,
            source,
        };
        let info = fmp4::inspect_fragment(&bytes).map_err(media)?;
        let first = *base.get_or_insert(info.base_decode_time);
        let rebased = fmp4::rewrite_fragment(
            &bytes,
            i as u32 + 1,
            info.base_decode_time.saturating_sub(first),
        )
        .map_err(media)?;
        out.write_all(&rebased)?;
        written += rebased.len() as u64;
        progress(written);
    }
    out.flush()?;
    Ok(written)
}
