//! Picture size from sequence parameter sets: H.264 through h264-reader, H.265 through a small
//! reader of the SPS head (up to the conformance window), since no maintained crate in our
//! dependency set parses HEVC.

use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitReader};

/// Display size (cropping applied) and, for H.264, the VUI frame rate if signalled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SpsInfo {
    pub width: u32,
    pub height: u32,
    pub fps: Option<f64>,
}

/// `nal` is one H.264 SPS NAL unit including its header byte (as in sprop-parameter-sets).
pub(crate) fn h264(nal: &[u8]) -> Result<SpsInfo, String> {
    match nal.first() {
        Some(h) if h & 0x1f == 7 => {}
        Some(h) => return Err(format!("NAL type {} is not an SPS (7)", h & 0x1f)),
        None => return Err("empty NAL unit".into()),
    }
    let rbsp = decode_nal(nal).map_err(|e| e.to_string())?;
    let sps =
        SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).map_err(|e| format!("{e:?}"))?;
    let (width, height) = sps.pixel_dimensions().map_err(|e| format!("{e:?}"))?;
    plausible(width, height)?;
    Ok(SpsInfo {
        width,
        height,
        fps: sps.fps().filter(|f| f.is_finite() && *f > 0.0),
    })
}

/// `nal` is one H.265 SPS NAL unit including its two header bytes (as in sprop-sps).
pub(crate) fn h265(nal: &[u8]) -> Result<SpsInfo, String> {
    if nal.len() < 3 {
        return Err("SPS too short".into());
    }
    let nal_type = (nal[0] >> 1) & 0x3f;
    if nal_type != 33 {
        return Err(format!("NAL type {nal_type} is not an SPS (33)"));
    }
    let rbsp = unescape(&nal[2..]);
    let mut r = Bits::new(&rbsp);

    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.read(3)? as usize;
    r.skip(1)?; // sps_temporal_id_nesting_flag
    skip_profile_tier_level(&mut r, max_sub_layers_minus1)?;
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format_idc = r.ue()?;
    let separate_colour_plane = chroma_format_idc == 3 && r.read(1)? == 1;
    let mut width = r.ue()?;
    let mut height = r.ue()?;
    if r.read(1)? == 1 {
        // Conformance window offsets are in chroma units (H.265 table 6-1).
        let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
            (1, false) => (2, 2),
            (2, false) => (2, 1),
            _ => (1, 1),
        };
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        // Offsets are ue(v) up to 2^32 - 2: the sums and products overflow u32 (found by fuzzing).
        let crop = |a: u32, b: u32, sub: u32| a.checked_add(b).and_then(|n| n.checked_mul(sub));
        width = crop(left, right, sub_w)
            .and_then(|c| width.checked_sub(c))
            .ok_or("conformance window wider than the picture")?;
        height = crop(top, bottom, sub_h)
            .and_then(|c| height.checked_sub(c))
            .ok_or("conformance window taller than the picture")?;
    }
    plausible(width, height)?;
    Ok(SpsInfo {
        width,
        height,
        fps: None,
    })
}

/// h264-reader accepts cropping that leaves nothing (found by fuzzing: `12x0`).
fn plausible(width: u32, height: u32) -> Result<(), String> {
    if width == 0 || height == 0 || width > 16384 || height > 16384 {
        return Err(format!("implausible picture size {width}x{height}"));
    }
    Ok(())
}

/// H.265 7.3.3 profile_tier_level(1, maxNumSubLayersMinus1): fixed-size fields we skip over.
fn skip_profile_tier_level(r: &mut Bits, max_sub_layers_minus1: usize) -> Result<(), String> {
    // general_profile_space..general_level_idc: 2+1+5+32+4+43+1 bits, then 8 for the level.
    r.skip(88 + 8)?;
    let mut profile_present = [false; 8];
    let mut level_present = [false; 8];
    for i in 0..max_sub_layers_minus1 {
        profile_present[i] = r.read(1)? == 1;
        level_present[i] = r.read(1)? == 1;
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(2 * (8 - max_sub_layers_minus1))?; // reserved_zero_2bits
    }
    for i in 0..max_sub_layers_minus1 {
        if profile_present[i] {
            r.skip(88)?;
        }
        if level_present[i] {
            r.skip(8)?;
        }
    }
    Ok(())
}

/// Removes emulation-prevention bytes (`00 00 03` -> `00 00`).
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// MSB-first bit reader with Exp-Golomb codes.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }

    fn read(&mut self, n: u32) -> Result<u32, String> {
        debug_assert!(n <= 32);
        let mut v: u64 = 0;
        for _ in 0..n {
            let byte = self
                .data
                .get(self.pos / 8)
                .ok_or("SPS ends early (truncated or malformed)")?;
            v = (v << 1) | u64::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Ok(v as u32)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if self.pos + n > self.data.len() * 8 {
            return Err("SPS ends early (truncated or malformed)".into());
        }
        self.pos += n;
        Ok(())
    }

    /// Unsigned Exp-Golomb `ue(v)`.
    fn ue(&mut self) -> Result<u32, String> {
        let mut zeros = 0;
        while self.read(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err("invalid Exp-Golomb code in SPS".into());
            }
        }
        let rest = self.read(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
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
        assert!(h264(&[0x68, 0xeb]).unwrap_err().contains("not an SPS"));
        assert!(h265(&[0x40, 0x01, 0x0c])
            .unwrap_err()
            .contains("not an SPS"));
        let sps = hex("42010101600000030090000003");
        assert!(h265(&sps).unwrap_err().contains("ends early"));
        assert!(h264(&[]).is_err());
    }

    // Found by fuzzing (fuzz/ target sps): conformance window offsets near 2^32 overflowed u32.
    #[test]
    fn h265_huge_conformance_window_is_an_error() {
        let sps = hex("4201feffff67b4b4b4b46400ceacca402452c1feffffffffff20f18319606c69a00000030020000791c0c0a00000030020000791c0c0");
        assert!(h265(&sps).unwrap_err().contains("conformance window"));
    }

    // Found by fuzzing: h264-reader crops this SPS to 12x0.
    #[test]
    fn h264_empty_picture_is_an_error() {
        let sps = hex("67009d0064a5ded9f2cdcdcd8ccdcdcdcdcd");
        assert!(h264(&sps)
            .unwrap_err()
            .contains("implausible picture size 12x0"));
    }

    #[test]
    fn unescape_and_exp_golomb() {
        assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
        // 1 -> 0; 010 -> 1; 011 -> 2; 00100 -> 3
        let data = [0b1010_0110, 0b0100_0000];
        let mut r = Bits::new(&data);
        assert_eq!(
            [
                r.ue().unwrap(),
                r.ue().unwrap(),
                r.ue().unwrap(),
                r.ue().unwrap()
            ],
            [0, 1, 2, 3]
        );
    }
}
