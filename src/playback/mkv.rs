//! Matroska (MKV) chunks for the Kinesis-Video-compatible media APIs (GetMedia,
//! GetMediaForFragmentList). Like the real service, every stored fragment becomes one chunk of
//! its own: an EBML header, a Segment of unknown size with Info and Tracks (from the fragment's
//! init segment), Tags with the fragment's metadata, one Cluster with the fragment's samples as
//! SimpleBlocks, and optionally Tags after the Cluster (GetMedia's continuation token). The
//! Kinesis Video Streams parser library reads the fragment tags before the Cluster and the
//! continuation tags after it; a chunk is complete on its own, so a stream of them can be cut
//! between any two fragments.
//!
//! The EBML writer is hand-written on purpose: the chunks need about twenty element kinds, an
//! unknown-size Segment and a Cluster streamed straight from the stored fragment's bytes. The
//! Rust Matroska crates found (mkv-element 0.4, oxideav-mkv 0.0.x, ebml-webm 0.2: young 0.x
//! crates; `webm`: bindings to C++ libwebm for VP8/VP9) would each be a larger dependency than
//! this writer, and build whole elements in memory.

use crate::media::{fmp4, MediaError};
use crate::store::{FragmentMeta, InitMeta, StoreError, StoreReader};
use std::collections::HashMap;
use std::io::Write;

/// Matroska element IDs (RFC 9559), with their length marker bits.
mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMESTAMP: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const TAGS: u32 = 0x1254_C367;
    pub const TAG: u32 = 0x7373;
    pub const TARGETS: u32 = 0x63C0;
    pub const SIMPLE_TAG: u32 = 0x67C8;
    pub const TAG_NAME: u32 = 0x45A3;
    pub const TAG_STRING: u32 = 0x4487;
}

/// Block timestamps are in milliseconds (the Matroska default scale, as the service sends).
const TIMESTAMP_SCALE_NS: u64 = 1_000_000;
const TRACK: u64 = 1;
/// An element size of all ones: "unknown" (the Segment, which ends where the next chunk starts).
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

#[derive(Debug, thiserror::Error)]
pub enum MkvError {
    #[error("codec `{0}` has no Matroska mapping")]
    Codec(String),
    #[error("init segment {id}: {source}")]
    Init { id: i64, source: MediaError },
    #[error("fragment {number}: {source}")]
    Media { number: u64, source: MediaError },
    #[error("fragment {number}: a sample {ms} ms from its start does not fit a SimpleBlock")]
    Timestamp { number: u64, ms: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write MKV: {0}")]
    Write(#[from] std::io::Error),
}

/// The video track of one init segment, as a Matroska TrackEntry needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    codec_id: &'static str,
    codec_private: Vec<u8>,
    width: u32,
    height: u32,
}

impl Track {
    pub fn from_init(init: &InitMeta) -> Result<Self, MkvError> {
        let codec_id = match init.codec.as_str() {
            "h264" => "V_MPEG4/ISO/AVC",
            "h265" => "V_MPEGH/ISO/HEVC",
            other => return Err(MkvError::Codec(other.to_string())),
        };
        // avcC / hvcC payloads are exactly what these codec IDs take as CodecPrivate.
        let codec_private = fmp4::decoder_record(&init.data).map_err(|source| MkvError::Init {
            id: init.id,
            source,
        })?;
        Ok(Self {
            codec_id,
            codec_private,
            width: init.width,
            height: init.height,
        })
    }
}

/// An EBML variable-size integer holding `n` in the fewest bytes (all-ones values are reserved).
fn vint(n: u64) -> Vec<u8> {
    let len = (1..=8u32)
        .find(|&k| n < (1u64 << (7 * k)) - 1)
        .expect("element sizes stay below 2^56 - 1");
    let marked = n | (1u64 << (7 * len));
    marked.to_be_bytes()[8 - len as usize..].to_vec()
}

fn id_bytes(id: u32) -> Vec<u8> {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    bytes[skip..].to_vec()
}

fn header(id: u32, size: u64) -> Vec<u8> {
    let mut out = id_bytes(id);
    out.extend(vint(size));
    out
}

fn element(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = header(id, body.len() as u64);
    out.extend_from_slice(body);
    out
}

fn master(id: u32, children: &[Vec<u8>]) -> Vec<u8> {
    element(id, &children.concat())
}

fn uint(id: u32, v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    element(id, &bytes[skip..])
}

fn string(id: u32, s: &str) -> Vec<u8> {
    element(id, s.as_bytes())
}

/// EBML header, the start of an unknown-size Segment, and Info.
pub fn segment_open() -> Vec<u8> {
    let mut out = master(
        id::EBML,
        &[
            uint(id::EBML_VERSION, 1),
            uint(id::EBML_READ_VERSION, 1),
            uint(id::EBML_MAX_ID_LENGTH, 4),
            uint(id::EBML_MAX_SIZE_LENGTH, 8),
            string(id::DOC_TYPE, "matroska"),
            uint(id::DOC_TYPE_VERSION, 4),
            // SimpleBlock needs a version 2 reader
            uint(id::DOC_TYPE_READ_VERSION, 2),
        ],
    );
    out.extend(id_bytes(id::SEGMENT));
    out.extend(UNKNOWN_SIZE);
    out.extend(master(
        id::INFO,
        &[
            uint(id::TIMESTAMP_SCALE, TIMESTAMP_SCALE_NS),
            string(id::MUXING_APP, "vidgest"),
            string(id::WRITING_APP, "vidgest"),
        ],
    ));
    out
}

/// [`segment_open`] and Tracks with the one video track.
pub fn segment_start(track: &Track) -> Vec<u8> {
    let mut out = segment_open();
    out.extend(master(
        id::TRACKS,
        &[master(
            id::TRACK_ENTRY,
            &[
                uint(id::TRACK_NUMBER, TRACK),
                uint(id::TRACK_UID, TRACK),
                uint(id::TRACK_TYPE, 1), // video
                string(id::CODEC_ID, track.codec_id),
                element(id::CODEC_PRIVATE, &track.codec_private),
                master(
                    id::VIDEO,
                    &[
                        uint(id::PIXEL_WIDTH, track.width.into()),
                        uint(id::PIXEL_HEIGHT, track.height.into()),
                    ],
                ),
            ],
        )],
    ));
    out
}

/// A Tags element with one Tag (for the whole segment) holding `tags` as SimpleTags.
pub fn tags(tags: &[(&str, String)]) -> Vec<u8> {
    let mut children = vec![master(id::TARGETS, &[])];
    children.extend(tags.iter().map(|(name, value)| {
        master(
            id::SIMPLE_TAG,
            &[string(id::TAG_NAME, name), string(id::TAG_STRING, value)],
        )
    }));
    master(id::TAGS, &[master(id::TAG, &children)])
}

/// Epoch seconds with millisecond precision, as the service writes timestamps in tags.
pub fn tag_seconds(ns: i64) -> String {
    format!("{:.3}", ns.div_euclid(1_000_000) as f64 / 1000.0)
}

/// One Cluster at the fragment's producer time holding its samples as SimpleBlocks, written
/// straight from the fragment's bytes (its size is known from the sample table up front).
pub fn write_cluster(
    out: &mut impl Write,
    fragment: &FragmentMeta,
    bytes: &[u8],
) -> Result<(), MkvError> {
    let number = fragment.fragment_number;
    let samples = fmp4::samples(bytes).map_err(|source| MkvError::Media { number, source })?;
    let cluster_ms = fragment.producer_ns.div_euclid(1_000_000);
    let timestamp = uint(id::TIMESTAMP, cluster_ms.max(0) as u64);
    // SimpleBlock body: track number, 16-bit timestamp relative to the cluster, flags, data.
    let block_prefix = vint(TRACK).len() + 3;
    let mut blocks = Vec::with_capacity(samples.len());
    let mut size = timestamp.len() as u64;
    for s in &samples {
        let ticks = s.decode_offset as i64 + i64::from(s.composition_offset);
        let ms = (ticks * 1000).div_euclid(i64::from(fmp4::TIMESCALE));
        let relative = i16::try_from(ms).map_err(|_| MkvError::Timestamp { number, ms })?;
        let body_len = (block_prefix + s.range.len()) as u64;
        let head = header(id::SIMPLE_BLOCK, body_len);
        size += head.len() as u64 + body_len;
        blocks.push((head, relative, s));
    }
    out.write_all(&header(id::CLUSTER, size))?;
    out.write_all(&timestamp)?;
    for (head, relative, s) in blocks {
        out.write_all(&head)?;
        out.write_all(&vint(TRACK))?;
        out.write_all(&relative.to_be_bytes())?;
        out.write_all(&[if s.is_key { 0x80 } else { 0x00 }])?;
        out.write_all(&bytes[s.range.clone()])?;
    }
    Ok(())
}

/// Tracks by init segment, read once per request.
#[derive(Default)]
pub struct Tracks(HashMap<i64, Track>);

impl Tracks {
    pub fn get(&mut self, reader: &StoreReader, init_id: i64) -> Result<&Track, MkvError> {
        match self.0.entry(init_id) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                Ok(e.insert(Track::from_init(&reader.init(init_id)?)?))
            }
        }
    }
}

/// One fragment as a complete chunk: segment start, `before` tags, the cluster, `after` tags
/// (none: no second Tags element).
pub fn write_chunk(
    out: &mut impl Write,
    track: &Track,
    fragment: &FragmentMeta,
    bytes: &[u8],
    before: &[(&str, String)],
    after: &[(&str, String)],
) -> Result<(), MkvError> {
    out.write_all(&segment_start(track))?;
    out.write_all(&tags(before))?;
    write_cluster(out, fragment, bytes)?;
    if !after.is_empty() {
        out.write_all(&tags(after))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::test_support::{is_key, stream, FRAMES, FRAME_TICKS, GOP};
    use crate::media::Codec;
    use std::path::Path;
    use std::process::Command;

    /// What ffmpeg says about each chunk after the first: a Segment of unknown size where the
    /// previous one has not ended (the service's chunk format; ffmpeg reads on).
    const CHAINED_SEGMENT: &str = "Found unknown-length element with ID 0x18538067";

    /// Decodes the chunks with `ffmpeg -xerror` (nothing but the chained-segment notice may be
    /// logged) and returns the packets ffprobe counts.
    fn chained_packets(path: &Path) -> usize {
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-xerror", "-i"])
            .arg(path)
            .args(["-f", "null", "-"])
            .output()
            .expect("cannot run ffmpeg (installed by scripts/bootstrap)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "ffmpeg: {stderr}");
        assert!(
            stderr.lines().all(|l| l.contains(CHAINED_SEGMENT)),
            "ffmpeg: {stderr}"
        );
        let out = Command::new("ffprobe")
            .args(["-v", "quiet", "-count_packets", "-show_entries"])
            .args(["stream=nb_read_packets,codec_type", "-of", "json"])
            .arg(path)
            .output()
            .expect("cannot run ffprobe");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["streams"][0]["nb_read_packets"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Real fragments (one per GOP) written as chunks, the way GetMedia sends them.
    fn chunks_play(codec: Codec) {
        let s = stream(codec);
        let init = InitMeta {
            id: 1,
            codec: codec.as_str().to_string(),
            codec_string: s.config.rfc6381(),
            width: s.config.width,
            height: s.config.height,
            data: fmp4::init_segment(&s.config).unwrap(),
        };
        let track = Track::from_init(&init).unwrap();
        let mut out = Vec::new();
        for (i, gop) in s.aus.chunks(GOP).enumerate() {
            let samples: Vec<fmp4::Sample> = gop
                .iter()
                .map(|au| fmp4::Sample {
                    data: au,
                    duration: FRAME_TICKS,
                    is_key: is_key(&s.config, au),
                    composition_offset: 0,
                })
                .collect();
            let bytes = fmp4::fragment(
                i as u32 + 1,
                (i * GOP) as u64 * u64::from(FRAME_TICKS),
                &samples,
            )
            .unwrap();
            let meta = FragmentMeta {
                stream: "cam".into(),
                fragment_number: 100 + i as u64,
                producer_ns: 1_764_543_600_000_000_000 + i as i64 * 1_000_000_000,
                server_ns: 1_764_543_600_500_000_000 + i as i64 * 1_000_000_000,
                duration_ns: 1_000_000_000,
                size: bytes.len() as u64,
                init_id: 1,
                discontinuity: false,
                sample_count: gop.len() as u32,
                segment_id: 1,
                offset: 0,
            };
            let before = [(
                "AWS_KINESISVIDEO_FRAGMENT_NUMBER",
                meta.fragment_number.to_string(),
            )];
            let after = [(
                "AWS_KINESISVIDEO_CONTINUATION_TOKEN",
                meta.fragment_number.to_string(),
            )];
            write_chunk(&mut out, &track, &meta, &bytes, &before, &after).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.mkv");
        std::fs::write(&path, &out).unwrap();
        assert_eq!(chained_packets(&path), FRAMES, "{codec:?}");
        // -v: mkvinfo stops at the first Cluster otherwise
        let info = Command::new("mkvinfo")
            .arg("-v")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&info.stdout);
        // exit code 1: warnings (it resyncs at each chained Segment)
        assert!(matches!(info.status.code(), Some(0 | 1)), "{text}");
        for n in [100, 101, 102] {
            assert!(text.contains(&format!("String: {n}")), "{text}");
        }
    }

    #[test]
    fn h264_chunks_play_and_carry_their_tags() {
        chunks_play(Codec::H264);
    }

    #[test]
    fn h265_chunks_play() {
        chunks_play(Codec::H265);
    }

    #[test]
    fn vints_use_the_fewest_bytes_and_avoid_the_reserved_values() {
        assert_eq!(vint(0), [0x80]);
        assert_eq!(vint(126), [0xFE]);
        // 127 would be all ones in one byte ("unknown")
        assert_eq!(vint(127), [0x40, 0x7F]);
        assert_eq!(vint(0x3FFE), [0x7F, 0xFE]);
        assert_eq!(vint(0x3FFF), [0x20, 0x3F, 0xFF]);
        assert_eq!(vint(1 << 40).len(), 6);
    }

    #[test]
    fn elements_encode_id_size_and_body() {
        assert_eq!(uint(id::TRACK_NUMBER, 1), [0xD7, 0x81, 0x01]);
        assert_eq!(uint(id::TIMESTAMP, 0), [0xE7, 0x81, 0x00]);
        assert_eq!(
            uint(id::TIMESTAMP_SCALE, 1_000_000),
            [0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40]
        );
        assert_eq!(string(id::TAG_NAME, "A"), [0x45, 0xA3, 0x81, b'A']);
        assert_eq!(
            &segment_start(&Track {
                codec_id: "V_MPEG4/ISO/AVC",
                codec_private: vec![1],
                width: 1,
                height: 1,
            })[..4],
            [0x1A, 0x45, 0xDF, 0xA3]
        );
    }

    #[test]
    fn tag_timestamps_are_seconds_with_milliseconds() {
        assert_eq!(tag_seconds(1_764_543_600_123_456_789), "1764543600.123");
        assert_eq!(tag_seconds(5_000_000), "0.005");
        assert_eq!(tag_seconds(-1_000_000), "-0.001");
    }
}
