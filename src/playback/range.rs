//! Byte ranges of a clip part (HTTP Range on `clip.mp4`).
//!
//! A part's file is the init segment followed by its fragments in order, each rewritten by
//! `fmp4::rewrite_fragment`, which keeps the size of the fragments vidgest stored (only the
//! values of mfhd and tfdt change). So the layout is known from the index alone: the
//! length is `init + sum(fragment sizes)` and any range maps to whole fragments skipped plus the
//! two edge ones sliced. A fragment that re-encodes to another size (a foreign one) fails the
//! write instead of serving wrong bytes under a Content-Length already sent.

use super::{ClipError, ClipPart};
use crate::store::StoreReader;
use std::io::Write;

/// An inclusive byte range `first..=last` of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    /// Bytes in the range (never 0).
    pub fn bytes(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable single range (absent, not `bytes=`, several ranges, malformed): serve it all.
    Full,
    Partial(ByteRange),
    /// A well-formed range that lies past the end: 416.
    Unsatisfiable,
}

/// Parses one `Range: bytes=...` value (RFC 9110 14.1.2) against a file of `len` bytes. Several
/// ranges are answered with the whole file, which the RFC allows.
pub fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), num(a), num(b)) {
        // suffix: the last n bytes
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Partial(ByteRange {
                    first: len.saturating_sub(n),
                    last: len - 1,
                })
            }
        }
        (false, Some(first), last) if b.trim().is_empty() || last.is_some() => {
            if first >= len {
                return RangeRequest::Unsatisfiable;
            }
            match last {
                Some(l) if l < first => RangeRequest::Full,
                Some(l) => RangeRequest::Partial(ByteRange {
                    first,
                    last: l.min(len - 1),
                }),
                None => RangeRequest::Partial(ByteRange {
                    first,
                    last: len - 1,
                }),
            }
        }
        _ => RangeRequest::Full,
    }
}

/// The part's file length and its init segment's length.
pub fn clip_len(reader: &StoreReader, part: &ClipPart) -> Result<(u64, u64), ClipError> {
    let init = reader.init(part.init_id)?.data.len() as u64;
    Ok((init + part.bytes(), init))
}

/// Writes the part of `bytes` (found at file offset `at`) that lies inside `range`.
pub(super) fn slice_into(
    out: &mut impl Write,
    bytes: &[u8],
    at: u64,
    range: ByteRange,
) -> std::io::Result<u64> {
    let end = at + bytes.len() as u64;
    if end <= range.first || at > range.last {
        return Ok(0);
    }
    let from = range.first.saturating_sub(at) as usize;
    let to = range.last.saturating_add(1).min(end) - at;
    out.write_all(&bytes[from..to as usize])?;
    Ok(to - from as u64)
}

/// Writes bytes `range` of the part's file (as `write_clip_part` would write it whole),
/// reading only the fragments the range touches (and the first one's moof, for the time base).
pub fn write_clip_range(
    reader: &StoreReader,
    part: &ClipPart,
    out: &mut impl Write,
    range: ByteRange,
) -> Result<u64, ClipError> {
    super::clip::write_clip(reader, part, out, Some(range), |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::fmp4;

    fn r(first: u64, last: u64) -> RangeRequest {
        RangeRequest::Partial(ByteRange { first, last })
    }

    #[test]
    fn range_headers_as_browsers_and_curl_send_them() {
        assert_eq!(parse_range(None, 100), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=0-1"), 100), r(0, 1));
        assert_eq!(parse_range(Some("bytes=10-"), 100), r(10, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), r(90, 99));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), r(0, 99));
        assert_eq!(parse_range(Some("bytes=90-1000"), 100), r(90, 99));
        assert_eq!(parse_range(Some("bytes=99-99"), 100), r(99, 99));
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=-0"), 100),
            RangeRequest::Unsatisfiable
        );
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-2",
            "bytes=x-1",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(
                parse_range(Some(ignored), 100),
                RangeRequest::Full,
                "{ignored}"
            );
        }
    }

    #[test]
    fn slices_cut_at_the_range_edges() {
        let mut out = Vec::new();
        let range = ByteRange { first: 3, last: 6 };
        assert_eq!(slice_into(&mut out, b"abcd", 0, range).unwrap(), 1);
        assert_eq!(slice_into(&mut out, b"efgh", 4, range).unwrap(), 3);
        assert_eq!(slice_into(&mut out, b"ijkl", 8, range).unwrap(), 0);
        assert_eq!(out, b"defg");
        assert_eq!(range.bytes(), 4);
    }

    /// A recorded part whose fragments start late in the stream (large tfdt values, rebased to
    /// small ones): the layout from the index must be the bytes written, and every range a
    /// slice of the whole file. Fails if `rewrite_fragment` ever changes a fragment's size.
    #[test]
    fn ranges_are_slices_of_the_whole_clip_and_its_length_is_known_from_the_index() {
        use crate::clock::{Clock, ManualClock};
        use crate::config::{FsyncPolicy, OnFull};
        use crate::store::{NewFragment, Statvfs, Store, StoreOptions, VideoOptions};
        use std::time::Duration;

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("video");
        let clock = ManualClock::new(1_764_000_000_000_000_000);
        let opts = StoreOptions {
            fsync: FsyncPolicy::Never,
            max_bytes: None,
            min_free: Some(0),
            on_full: OnFull::DeleteOldest,
            segment_duration: Duration::from_secs(60),
        };
        let store = Store::open(&root, opts, clock.clone(), std::sync::Arc::new(Statvfs)).unwrap();
        let video = VideoOptions {
            retention: Duration::from_secs(3600),
            max_bytes: None,
            segment_size: 1 << 20,
        };
        let mut w = store.open_video("cam", video).unwrap();
        let cfg = crate::media::test_support::small_h264_config();
        for i in 0..6u64 {
            let payload: Vec<Vec<u8>> = (0..10)
                .map(|j| vec![(i * 10 + j) as u8; 500 + (j as usize) * 37])
                .collect();
            let samples: Vec<fmp4::Sample> = payload
                .iter()
                .enumerate()
                .map(|(j, d)| fmp4::Sample {
                    data: d,
                    duration: 9000,
                    is_key: j == 0,
                    composition_offset: 0,
                })
                .collect();
            let n = w.next_fragment_number();
            let data = fmp4::fragment(n as u32, (1 << 40) + i * 90_000, &samples).unwrap();
            w.append(&NewFragment {
                codec: &cfg,
                producer_ns: clock.now_ns(),
                duration_ns: 1_000_000_000,
                discontinuity: false,
                sample_count: 10,
                parts: &[&data],
            })
            .unwrap();
            clock.advance(Duration::from_secs(1));
        }
        drop(w);
        let reader = StoreReader::open(&root).unwrap();
        let fragments = reader.fragments("cam", None, None, 100).unwrap();
        assert_eq!(fragments.len(), 6);
        let part = ClipPart {
            init_id: fragments[0].init_id,
            fragments,
        };
        let mut whole = Vec::new();
        super::super::write_clip_part(&reader, &part, &mut whole, |_| {}).unwrap();
        let (len, init) = clip_len(&reader, &part).unwrap();
        assert_eq!(
            whole.len() as u64,
            len,
            "the clip's length is init + stored sizes"
        );
        let f1 = init + part.fragments[0].size;
        for (first, last) in [
            (0, 1),
            (0, len - 1),
            (init - 1, init),
            (f1 - 3, f1 + 3),
            (f1, f1 + part.fragments[1].size - 1),
            (len - 1, len - 1),
            (init + 10, len - 10),
        ] {
            let mut got = Vec::new();
            let range = ByteRange { first, last };
            let n = write_clip_range(&reader, &part, &mut got, range).unwrap();
            assert_eq!(n, range.bytes());
            assert_eq!(
                got,
                &whole[first as usize..=last as usize],
                "{first}-{last}"
            );
        }
    }
}
