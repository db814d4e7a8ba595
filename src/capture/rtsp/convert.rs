//! Retina frames into the recorder's `RawAu`: pure functions, tested without a network.
//!
//! Frames come in `FrameFormat::MP4`: 4-byte NAL lengths and no in-band parameter sets, which is
//! exactly what GStreamer's parsers hand the recorder (`stream-format=avc|hvc1`), and retina's
//! `extra_data()` is the avcC/hvcC payload h264parse/h265parse put in `codec_data`. So the data
//! moves into the `RawAu` as is, and the normalizer, fragmenter and fMP4 code see no difference.

use crate::capture::RawAu;
use crate::media::{Codec, CodecConfig};
use retina::codec::{VideoFrame, VideoParameters, VideoParametersCodec};
use std::sync::Arc;

/// Added to every PTS. `Timestamp::elapsed()` counts from the session's first RTP timestamp and
/// goes negative for pictures shown before it (B-frames, open-GOP leading pictures); only
/// differences matter downstream, so a constant offset keeps the value unsigned.
pub(crate) const PTS_BIAS_NS: u64 = 10_000_000_000;

/// The parts of a retina `VideoFrame` the conversion uses (a `VideoFrame` cannot be built
/// outside retina, so the tests build these).
#[derive(Debug)]
pub(crate) struct FrameParts {
    pub data: Vec<u8>,
    pub timestamp: retina::Timestamp,
    pub is_key: bool,
    /// RTP packets lost right before this frame.
    pub loss: u16,
    /// The frame carried parameter sets that differ from the previous ones.
    pub new_parameters: bool,
}

impl From<VideoFrame> for FrameParts {
    fn from(f: VideoFrame) -> Self {
        FrameParts {
            timestamp: f.timestamp(),
            is_key: f.is_random_access_point(),
            loss: f.loss(),
            new_parameters: f.has_new_parameters(),
            data: f.into_data(),
        }
    }
}

/// Presentation time in ns on the session's clock (biased, see [`PTS_BIAS_NS`]); `None` for a
/// picture more than the bias before the first one.
pub(crate) fn pts_ns(ts: retina::Timestamp) -> Option<u64> {
    let ns = i128::from(ts.elapsed()) * 1_000_000_000 / i128::from(ts.clock_rate().get());
    u64::try_from(ns + i128::from(PTS_BIAS_NS)).ok()
}

/// The recorder's codec configuration from retina's parameters; `None` for a codec we do not
/// record (MJPEG).
pub(crate) fn codec_config(p: &VideoParameters) -> Option<CodecConfig> {
    let codec = match p.codec_params() {
        VideoParametersCodec::H264 { .. } => Codec::H264,
        VideoParametersCodec::H265 { .. } => Codec::H265,
        _ => return None,
    };
    let (width, height) = p.pixel_dimensions();
    Some(CodecConfig {
        codec,
        width,
        height,
        record: p.extra_data().to_vec(),
    })
}

/// Why a frame did not become an access unit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Skipped {
    /// No parameter sets yet (neither in the SDP nor in-band): nothing can decode it.
    NoParameters,
    /// Nothing left once parameter sets were taken out (an access unit of only SPS/PPS).
    Empty,
}

/// Turns frames into access units, keeping the codec configuration of the session.
#[derive(Debug, Default)]
pub(crate) struct Converter {
    config: Option<Arc<CodecConfig>>,
    /// Packets were lost before a frame that was skipped: the next access unit carries the gap.
    pending_gap: bool,
}

impl Converter {
    /// Starts from the parameters the SDP gave (`sprop-parameter-sets`), if any.
    pub(crate) fn new(initial: Option<&VideoParameters>) -> Self {
        Self {
            config: initial.and_then(codec_config).map(Arc::new),
            pending_gap: false,
        }
    }

    /// `params`: the stream's current parameters; read only when the frame changed them or no
    /// configuration is known yet. A frame after lost packets is flagged `after_gap`, so that
    /// the recorder waits for a key frame and marks the discontinuity.
    pub(crate) fn convert(
        &mut self,
        frame: FrameParts,
        params: Option<&VideoParameters>,
    ) -> Result<RawAu, Skipped> {
        if frame.new_parameters || self.config.is_none() {
            if let Some(c) = params.and_then(codec_config) {
                if self.config.as_deref() != Some(&c) {
                    self.config = Some(Arc::new(c));
                }
            }
        }
        self.pending_gap |= frame.loss > 0;
        let config = self.config.clone().ok_or(Skipped::NoParameters)?;
        if frame.data.is_empty() {
            return Err(Skipped::Empty);
        }
        let after_gap = std::mem::take(&mut self.pending_gap);
        let is_key = frame.is_key || (config.codec == Codec::H265 && h265_irap(&frame.data));
        Ok(RawAu {
            pts_ns: pts_ns(frame.timestamp),
            dts_ns: None,
            duration_ns: None,
            is_key,
            config,
            after_gap,
            data: frame.data,
        })
    }
}

/// Whether an H.265 access unit (4-byte lengths) is an IRAP picture: every VCL NAL unit a
/// BLA, IDR or CRA (types 16..=23). Retina 0.4 calls only IDR pictures random access points,
/// GStreamer's h265parse (the other backend) every IRAP; cameras with open GOPs send CRA key
/// frames, and without this none after the first would start a fragment.
pub(crate) fn h265_irap(data: &[u8]) -> bool {
    let mut rest = data;
    let mut vcl = false;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        let Some(nal) = tail.get(..len) else {
            return false;
        };
        if let Some(&h) = nal.first() {
            let kind = (h >> 1) & 0x3f;
            if kind < 32 {
                if !(16..=23).contains(&kind) {
                    return false;
                }
                vcl = true;
            }
        }
        rest = &tail[len..];
    }
    vcl
}

/// A retina error as a one-line state detail, credentials masked.
pub(crate) fn error_text(e: &retina::Error) -> String {
    if e.status_code() == Some(401) {
        return "camera refused the credentials (401)".into();
    }
    // Retina appends connection and message context on further lines.
    let text = e.to_string();
    crate::capture::policy::redact(text.lines().next().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::test_support::small_h264_config;
    use retina::codec::h26x::Framing;
    use std::num::NonZeroU32;

    fn ts(elapsed: i64) -> retina::Timestamp {
        let start = 1_000_000u32;
        retina::Timestamp::new(
            i64::from(start) + elapsed,
            NonZeroU32::new(90_000).unwrap(),
            start,
        )
        .unwrap()
    }

    /// SPS and PPS out of an avcC record with one of each (h264parse's layout).
    fn sps_pps(record: &[u8]) -> (&[u8], &[u8]) {
        let sps_len = usize::from(u16::from_be_bytes([record[6], record[7]]));
        let sps = &record[8..8 + sps_len];
        let p = 8 + sps_len;
        assert_eq!(record[p], 1, "one PPS");
        let pps_len = usize::from(u16::from_be_bytes([record[p + 1], record[p + 2]]));
        (sps, &record[p + 3..p + 3 + pps_len])
    }

    fn params() -> VideoParameters {
        let gst = small_h264_config();
        let (sps, pps) = sps_pps(&gst.record);
        retina::codec::h264::parameters_from_sps_and_pps(sps, pps, Framing::FourByteLength).unwrap()
    }

    fn frame(data: Vec<u8>, elapsed: i64, is_key: bool) -> FrameParts {
        FrameParts {
            data,
            timestamp: ts(elapsed),
            is_key,
            loss: 0,
            new_parameters: false,
        }
    }

    #[test]
    fn h264_config_equals_what_h264parse_writes() {
        // Same record, size and codec: the same config id, so switching a camera between
        // backends does not start a new init segment.
        let gst = small_h264_config();
        let retina = codec_config(&params()).unwrap();
        assert_eq!(retina, gst);
        assert_eq!(retina.id(), gst.id());
        assert_eq!(retina.nal_length_size().unwrap(), 4);
    }

    #[test]
    fn h265_cra_idr_and_bla_pictures_are_key_frames() {
        let nal = |kind: u8, len: u8| {
            let mut v = vec![0, 0, 0, len, kind << 1, 1];
            v.resize(4 + usize::from(len), 0xaa);
            v
        };
        let au = |nals: &[Vec<u8>]| nals.concat();
        let (sei, cra, idr, bla, trail) = (39, 21, 19, 16, 1);
        assert!(h265_irap(&au(&[nal(sei, 5), nal(cra, 9)])));
        assert!(h265_irap(&au(&[nal(idr, 9), nal(idr, 9)])));
        assert!(h265_irap(&au(&[nal(bla, 3)])));
        assert!(!h265_irap(&au(&[nal(sei, 5), nal(trail, 9)])));
        assert!(!h265_irap(&au(&[nal(cra, 9), nal(trail, 9)])));
        assert!(!h265_irap(&au(&[nal(sei, 5)])), "no picture");
        let mut cut = nal(cra, 9);
        cut.truncate(8);
        assert!(!h265_irap(&cut), "a truncated unit is not trusted");
        assert!(!h265_irap(&[]));
    }

    #[test]
    fn pts_is_biased_ns_and_never_negative() {
        assert_eq!(pts_ns(ts(0)), Some(PTS_BIAS_NS));
        assert_eq!(pts_ns(ts(90_000)), Some(PTS_BIAS_NS + 1_000_000_000));
        assert_eq!(pts_ns(ts(3_000)), Some(PTS_BIAS_NS + 33_333_333));
        // A B-frame shown before the first picture.
        assert_eq!(pts_ns(ts(-3_000)), Some(PTS_BIAS_NS - 33_333_333));
        assert_eq!(pts_ns(ts(-90_000 * 11)), None);
    }

    #[test]
    fn data_moves_as_is_with_the_config_and_loss_flags_a_gap() {
        let p = params();
        let mut c = Converter::new(Some(&p));
        let data = vec![0, 0, 0, 2, 0x65, 0x88];
        let au = c
            .convert(frame(data.clone(), 3_000, true), Some(&p))
            .unwrap();
        assert_eq!(au.data, data, "length-prefixed data is not rewritten");
        assert_eq!(au.pts_ns, Some(PTS_BIAS_NS + 33_333_333));
        assert_eq!((au.dts_ns, au.duration_ns), (None, None));
        assert!(au.is_key && !au.after_gap);
        assert_eq!(*au.config, small_h264_config());
        let mut lost = frame(vec![0, 0, 0, 1, 0x41], 6_000, false);
        lost.loss = 3;
        let au2 = c.convert(lost, Some(&p)).unwrap();
        assert!(au2.after_gap && !au2.is_key);
        assert!(
            Arc::ptr_eq(&au.config, &au2.config),
            "config reused, not rebuilt"
        );
        assert!(
            !c.convert(frame(vec![0, 0, 0, 1, 0x41], 9_000, false), Some(&p))
                .unwrap()
                .after_gap
        );
        // Loss before a frame that is skipped moves on to the next access unit.
        let mut empty = frame(Vec::new(), 12_000, false);
        empty.loss = 1;
        assert_eq!(c.convert(empty, Some(&p)).unwrap_err(), Skipped::Empty);
        assert!(
            c.convert(frame(vec![0, 0, 0, 1, 0x41], 15_000, false), Some(&p))
                .unwrap()
                .after_gap
        );
    }

    #[test]
    fn frames_wait_for_parameters_and_follow_their_changes() {
        let mut c = Converter::new(None);
        assert_eq!(
            c.convert(frame(vec![0, 0, 0, 1, 0x41], 0, false), None)
                .unwrap_err(),
            Skipped::NoParameters
        );
        // In-band parameters arrive with a frame.
        let p = params();
        let mut f = frame(vec![0, 0, 0, 1, 0x65], 3_000, true);
        f.new_parameters = true;
        let first = c.convert(f, Some(&p)).unwrap().config;
        assert_eq!(*first, small_h264_config());
        // The same parameters again: the same Arc.
        let mut f = frame(vec![0, 0, 0, 1, 0x65], 6_000, true);
        f.new_parameters = true;
        let same = c.convert(f, Some(&p.clone())).unwrap().config;
        assert!(Arc::ptr_eq(&first, &same));
        // Other parameters (another PPS): a new config, so a new init segment.
        let changed = retina::codec::h264::parameters_from_sps_and_pps(
            sps_pps(&small_h264_config().record).0,
            &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0],
            Framing::FourByteLength,
        )
        .unwrap();
        let mut f = frame(vec![0, 0, 0, 1, 0x65], 9_000, true);
        f.new_parameters = true;
        let next = c.convert(f, Some(&changed)).unwrap().config;
        assert_ne!(*next, *first);
        assert_ne!(next.id(), first.id());
    }
}
