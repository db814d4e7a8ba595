//! Picture size from sequence parameter sets: H.264 through h264-reader; H.265 through a small
//! parser of the SPS head (up to the conformance window) on h264-reader's RBSP bit reader, since
//! no maintained crate in our dependency set parses HEVC.

use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitRead, BitReader, BitReaderError, ByteReader};
use std::num::NonZeroUsize;

/// Display size (cropping applied) and, for H.264, the VUI frame rate if signalled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SpsInfo {
    pub width: u32,
    pub height: u32,
    pub fps: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SpsError {
    #[error("empty NAL unit")]
    Empty,
    #[error("NAL type {got} is not an SPS ({want})")]
    NotSps { got: u8, want: u8 },
    #[error("SPS ends early at {field} (truncated or malformed)")]
    Truncated { field: &'static str },
    #[error("unreadable SPS at {field}: {source}")]
    Read {
        field: &'static str,
        source: std::io::Error,
    },
    #[error("invalid Exp-Golomb code in SPS field {field}")]
    ExpGolomb { field: &'static str },
    // h264-reader's error type implements Debug only
    #[error("invalid H.264 SPS: {0:?}")]
    H264(h264_reader::nal::sps::SpsError),
    #[error("conformance window larger than the {width}x{height} picture")]
    Window { width: u32, height: u32 },
    #[error("implausible picture size {width}x{height}")]
    Implausible { width: u32, height: u32 },
}

impl From<BitReaderError> for SpsError {
    fn from(e: BitReaderError) -> Self {
        match e {
            BitReaderError::ReaderErrorFor(field, e)
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                SpsError::Truncated { field }
            }
            BitReaderError::ReaderErrorFor(field, source) => SpsError::Read { field, source },
            BitReaderError::ExpGolombTooLarge(field) => SpsError::ExpGolomb { field },
            other => SpsError::H264(other.into()),
        }
    }
}

/// `nal` is one H.264 SPS NAL unit including its header byte (as in sprop-parameter-sets).
pub(crate) fn h264(nal: &[u8]) -> Result<SpsInfo, SpsError> {
    match nal.first() {
        Some(h) if h & 0x1f == 7 => {}
        Some(h) => {
            return Err(SpsError::NotSps {
                got: h & 0x1f,
                want: 7,
            })
        }
        None => return Err(SpsError::Empty),
    }
    let rbsp = decode_nal(nal).map_err(|source| SpsError::Read {
        field: "rbsp",
        source,
    })?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).map_err(SpsError::H264)?;
    let (width, height) = sps.pixel_dimensions().map_err(SpsError::H264)?;
    plausible(width, height)?;
    Ok(SpsInfo {
        width,
        height,
        fps: sps.fps().filter(|f| f.is_finite() && *f > 0.0),
    })
}

/// `nal` is one H.265 SPS NAL unit including its two header bytes (as in sprop-sps).
pub(crate) fn h265(nal: &[u8]) -> Result<SpsInfo, SpsError> {
    if nal.len() < 3 {
        return Err(SpsError::Truncated {
            field: "nal_unit_header",
        });
    }
    let nal_type = (nal[0] >> 1) & 0x3f;
    if nal_type != 33 {
        return Err(SpsError::NotSps {
            got: nal_type,
            want: 33,
        });
    }
    // H.265 has the same emulation prevention as H.264 but a two-byte NAL header.
    const HEADER: NonZeroUsize = NonZeroUsize::new(2).unwrap();
    let mut r = BitReader::new(ByteReader::skipping_bytes(nal, HEADER));

    r.skip(4, "sps_video_parameter_set_id")?;
    let max_sub_layers_minus1: u8 = r.read(3, "sps_max_sub_layers_minus1")?;
    r.skip(1, "sps_temporal_id_nesting_flag")?;
    skip_profile_tier_level(&mut r, usize::from(max_sub_layers_minus1))?;
    r.read_ue("sps_seq_parameter_set_id")?;
    let chroma_format_idc = r.read_ue("chroma_format_idc")?;
    let separate_colour_plane =
        chroma_format_idc == 3 && r.read_bool("separate_colour_plane_flag")?;
    let mut width = r.read_ue("pic_width_in_luma_samples")?;
    let mut height = r.read_ue("pic_height_in_luma_samples")?;
    if r.read_bool("conformance_window_flag")? {
        // Conformance window offsets are in chroma units (H.265 table 6-1); they are ue(v) up to
        // 2^32 - 2, so the crop is computed in u64 (u32 overflowed, found by fuzzing).
        let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
            (1, false) => (2u64, 2u64),
            (2, false) => (2, 1),
            _ => (1, 1),
        };
        let left = r.read_ue("conf_win_left_offset")?;
        let right = r.read_ue("conf_win_right_offset")?;
        let top = r.read_ue("conf_win_top_offset")?;
        let bottom = r.read_ue("conf_win_bottom_offset")?;
        let crop = |size: u32, sub: u64, a: u32, b: u32| {
            u64::from(size)
                .checked_sub(sub * (u64::from(a) + u64::from(b)))
                .map(|v| v as u32)
        };
        match (
            crop(width, sub_w, left, right),
            crop(height, sub_h, top, bottom),
        ) {
            (Some(w), Some(h)) => (width, height) = (w, h),
            _ => return Err(SpsError::Window { width, height }),
        }
    }
    plausible(width, height)?;
    Ok(SpsInfo {
        width,
        height,
        fps: None,
    })
}

/// h264-reader accepts cropping that leaves nothing (found by fuzzing: `12x0`).
fn plausible(width: u32, height: u32) -> Result<(), SpsError> {
    if width == 0 || height == 0 || width > 16384 || height > 16384 {
        return Err(SpsError::Implausible { width, height });
    }
    Ok(())
}

/// H.265 7.3.3 profile_tier_level(1, maxNumSubLayersMinus1): fixed-size fields we skip over.
fn skip_profile_tier_level(
    r: &mut impl BitRead,
    max_sub_layers_minus1: usize,
) -> Result<(), SpsError> {
    // general_profile_space..general_level_idc: 2+1+5+32+4+43+1 bits, then 8 for the level.
    r.skip(88 + 8, "general_profile_tier_level")?;
    let mut profile_present = [false; 8];
    let mut level_present = [false; 8];
    for i in 0..max_sub_layers_minus1 {
        profile_present[i] = r.read_bool("sub_layer_profile_present_flag")?;
        level_present[i] = r.read_bool("sub_layer_level_present_flag")?;
    }
    if max_sub_layers_minus1 > 0 {
        let reserved = 2 * (8 - max_sub_layers_minus1 as u32);
        r.skip(reserved, "reserved_zero_2bits")?;
    }
    for i in 0..max_sub_layers_minus1 {
        if profile_present[i] {
            r.skip(88, "sub_layer_profile")?;
        }
        if level_present[i] {
            r.skip(8, "sub_layer_level_idc")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    // Parameter sets produced on this machine by GStreamer 1.22 encoders; sizes confirmed with
    // ffprobe (which reported the coded size too).

    #[test]
    fn h264_1080p_is_cropped_from_1088() {
        // x264enc, 1920x1080 (coded 1920x1088, frame_cropping bottom 8).
        let sps = hex("67640028acd940780227e5c05a808080a0000003002000000791e30632c0");
        let info = h264(&sps).unwrap();
        assert_eq!((info.width, info.height), (1920, 1080));
    }

    #[test]
    fn h265_640x480() {
        // x265enc, 640x480.
        let sps = hex(
            "42010101600000030090000003000003005aa0050201e165959a4932bffc00040005a830303020000003002000000303c1",
        );
        let info = h265(&sps).unwrap();
        assert_eq!((info.width, info.height), (640, 480));
    }

    #[test]
    fn h265_conformance_window() {
        // x265enc, 322x242: coded 328x248 with a conformance window.
        let sps = hex(
            "42010101600000030090000003000003003fa00a480f9c9265959a4932bffc00040005a830303020000003002000000303c1",
        );
        let info = h265(&sps).unwrap();
        assert_eq!((info.width, info.height), (322, 242));
    }

    #[test]
    fn rejects_wrong_nal_types_and_truncation() {
        assert!(h264(&[0x68, 0xeb])
            .unwrap_err()
            .to_string()
            .contains("not an SPS"));
        assert!(h265(&[0x40, 0x01, 0x0c])
            .unwrap_err()
            .to_string()
            .contains("not an SPS"));
        let sps = hex("42010101600000030090000003");
        let e = h265(&sps).unwrap_err().to_string();
        assert!(
            e.contains("ends early") && e.contains("general_profile_tier_level"),
            "{e}"
        );
        assert!(matches!(h264(&[]), Err(SpsError::Empty)));
    }

    // Found by fuzzing (fuzz/ target sps): conformance window offsets near 2^32 overflowed u32.
    #[test]
    fn h265_huge_conformance_window_is_an_error() {
        let sps = hex("4201feffff67b4b4b4b46400ceacca402452c1feffffffffff20f18319606c69a00000030020000791c0c0a00000030020000791c0c0");
        let e = h265(&sps).unwrap_err();
        assert!(e.to_string().contains("conformance window"), "{e}");
    }

    // Found by fuzzing: h264-reader crops this SPS to 12x0.
    #[test]
    fn h264_empty_picture_is_an_error() {
        let sps = hex("67009d0064a5ded9f2cdcdcd8ccdcdcdcdcd");
        let e = h264(&sps).unwrap_err();
        assert!(
            matches!(
                e,
                SpsError::Implausible {
                    width: 12,
                    height: 0
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("implausible picture size 12x0"),
            "{e}"
        );
    }
}
