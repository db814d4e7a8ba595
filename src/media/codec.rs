//! Video codecs and their decoder configuration records (avcC / hvcC payloads).

use super::MediaError;
use md5::{Digest, Md5};
use mp4_atom::{Atom, Avcc, Hvcc};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    H264,
    H265,
}

impl Codec {
    /// Lowercase name, as in config files and the serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        }
    }

    /// Sample entry four-character code, also the RFC 6381 codec prefix.
    pub fn sample_entry(self) -> &'static str {
        match self {
            Codec::H264 => "avc1",
            Codec::H265 => "hvc1",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecConfig {
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    /// The decoder configuration record exactly as GStreamer's h264parse (stream-format=avc) /
    /// h265parse (stream-format=hvc1) put it in caps `codec_data`: an AVCDecoderConfigurationRecord
    /// (avcC payload) or HEVCDecoderConfigurationRecord (hvcC payload).
    pub record: Vec<u8>,
}

impl CodecConfig {
    /// RFC 6381 codec string, e.g. "avc1.64001f" / "hvc1.1.6.L93.B0" (for HLS later).
    /// Falls back to the bare sample entry name ("avc1"/"hvc1") if the record is unreadable.
    pub fn rfc6381(&self) -> String {
        let prefix = self.codec.sample_entry();
        match self.codec {
            Codec::H264 => match self.avcc() {
                Ok(c) => format!(
                    "{prefix}.{:02x}{:02x}{:02x}",
                    c.avc_profile_indication, c.profile_compatibility, c.avc_level_indication
                ),
                Err(_) => prefix.to_string(),
            },
            Codec::H265 => match self.hvcc() {
                Ok(c) => hevc_codec_string(&c),
                Err(_) => prefix.to_string(),
            },
        }
    }

    /// Stable short id of this configuration: 16 hex digits of an MD5 over everything the init
    /// segment is built from (codec, size, record), used to dedupe init segments. MD5 rather than
    /// `DefaultHasher` because ids are persisted and must not change between Rust releases.
    pub fn id(&self) -> String {
        let mut h = Md5::new();
        h.update(self.codec.as_str());
        h.update(self.width.to_be_bytes());
        h.update(self.height.to_be_bytes());
        h.update(&self.record);
        hex::encode(&h.finalize()[..8])
    }

    /// NAL length size in bytes from the record (usually 4).
    pub fn nal_length_size(&self) -> Result<u8, MediaError> {
        Ok(match self.codec {
            Codec::H264 => self.avcc()?.length_size,
            Codec::H265 => self.hvcc()?.length_size_minus_one + 1,
        })
    }

    /// The record parsed as an avcC payload, with at least one SPS and PPS.
    pub(crate) fn avcc(&self) -> Result<Avcc, MediaError> {
        self.expect_codec(Codec::H264)?;
        let avcc = self.decode::<Avcc>()?;
        if avcc.sequence_parameter_sets.is_empty() || avcc.picture_parameter_sets.is_empty() {
            return Err(self.invalid("no SPS or no PPS".into()));
        }
        Ok(avcc)
    }

    /// The record parsed as an hvcC payload, with VPS, SPS and PPS arrays (required for `hvc1`).
    pub(crate) fn hvcc(&self) -> Result<Hvcc, MediaError> {
        self.expect_codec(Codec::H265)?;
        let hvcc = self.decode::<Hvcc>()?;
        if hvcc.configuration_version != 1 {
            let v = hvcc.configuration_version;
            return Err(self.invalid(format!("configuration version {v}, expected 1")));
        }
        for (kind, name) in [(32, "VPS"), (33, "SPS"), (34, "PPS")] {
            let present = hvcc
                .arrays
                .iter()
                .any(|a| a.nal_unit_type == kind && !a.nalus.is_empty());
            if !present {
                return Err(self.invalid(format!("no {name}")));
            }
        }
        Ok(hvcc)
    }

    fn expect_codec(&self, codec: Codec) -> Result<(), MediaError> {
        if self.codec == codec {
            Ok(())
        } else {
            Err(self.invalid(format!("expected a {codec} record")))
        }
    }

    /// Decodes the record as the body of box `T` (the record is exactly the box payload).
    fn decode<T: Atom>(&self) -> Result<T, MediaError> {
        let mut buf = self.record.as_slice();
        let parsed = T::decode_body(&mut buf).map_err(|e| self.invalid(e.to_string()))?;
        if !buf.is_empty() {
            return Err(self.invalid(format!("{} unexpected trailing bytes", buf.len())));
        }
        Ok(parsed)
    }

    fn invalid(&self, reason: String) -> MediaError {
        MediaError::InvalidRecord {
            codec: self.codec,
            reason,
        }
    }
}

/// ISO/IEC 14496-15 Annex E: hvc1.[space letter]profile.compat(bit-reversed hex).Ttier+level
/// then the constraint bytes in hex, trailing zero bytes omitted.
fn hevc_codec_string(c: &Hvcc) -> String {
    let space = ["", "A", "B", "C"][usize::from(c.general_profile_space & 3)];
    let compat = u32::from_be_bytes(c.general_profile_compatibility_flags).reverse_bits();
    let tier = if c.general_tier_flag { 'H' } else { 'L' };
    let mut s = format!(
        "hvc1.{space}{}.{compat:X}.{tier}{}",
        c.general_profile_idc, c.general_level_idc
    );
    let flags = &c.general_constraint_indicator_flags;
    let used = flags.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    for b in &flags[..used] {
        s.push_str(&format!(".{b:X}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::test_support::stream;
    use mp4_atom::HvcCArray;

    #[test]
    fn real_records_parse() {
        for codec in [Codec::H264, Codec::H265] {
            let cfg = &stream(codec).config;
            assert_eq!(cfg.nal_length_size().unwrap(), 4, "{codec}");
            assert_eq!(cfg.id().len(), 16);
            assert_eq!(cfg.id(), cfg.clone().id(), "id is deterministic");
        }
    }

    #[test]
    fn rfc6381_of_real_records() {
        // x264 picks High profile (0x64), no compatibility flags, level 2.0 for 320x240@30.
        assert_eq!(stream(Codec::H264).config.rfc6381(), "avc1.640014");
        // x265: Main (1), compatible with Main+Main10 (bits 1,2 -> reversed 0x6), level 2.1
        // (63), progressive_source + frame_only_constraint flags (0x90).
        assert_eq!(stream(Codec::H265).config.rfc6381(), "hvc1.1.6.L63.90");
    }

    fn hevc_record(edit: impl FnOnce(&mut Hvcc)) -> CodecConfig {
        let mut hvcc = Hvcc {
            general_profile_idc: 2,
            general_profile_compatibility_flags: [0x20, 0, 0, 0],
            general_constraint_indicator_flags: [0xb0, 0, 0, 0, 0, 0],
            general_level_idc: 123,
            chroma_format_idc: 1,
            length_size_minus_one: 1,
            arrays: (32..=34)
                .map(|t| HvcCArray {
                    completeness: true,
                    nal_unit_type: t,
                    nalus: vec![vec![t << 1, 1, 0xaa]],
                })
                .collect(),
            ..Hvcc::new()
        };
        edit(&mut hvcc);
        let mut record = Vec::new();
        hvcc.encode_body(&mut record).unwrap();
        CodecConfig {
            codec: Codec::H265,
            width: 3840,
            height: 2160,
            record,
        }
    }

    #[test]
    fn rfc6381_hevc_fields() {
        // Apple's HLS authoring example for Main 10.
        assert_eq!(hevc_record(|_| {}).rfc6381(), "hvc1.2.4.L123.B0");
        assert_eq!(hevc_record(|_| {}).nal_length_size().unwrap(), 2);
        let high = hevc_record(|c| {
            c.general_tier_flag = true;
            c.general_profile_space = 1;
            c.general_level_idc = 150;
            c.general_constraint_indicator_flags = [0, 0, 0, 0, 0, 0];
        });
        assert_eq!(high.rfc6381(), "hvc1.A2.4.H150");
        let mid_zero =
            hevc_record(|c| c.general_constraint_indicator_flags = [0x90, 0, 1, 0, 0, 0]);
        assert_eq!(mid_zero.rfc6381(), "hvc1.2.4.L123.90.0.1");
    }

    #[test]
    fn bad_records_are_rejected() {
        let h264 = |record: Vec<u8>| CodecConfig {
            codec: Codec::H264,
            width: 64,
            height: 64,
            record,
        };
        let err = h264(vec![1, 0x64, 0, 0x1f]).nal_length_size().unwrap_err();
        assert!(matches!(err, MediaError::InvalidRecord { .. }), "{err}");
        // Header only, no parameter sets.
        let err = h264(vec![1, 0x64, 0, 0x1f, 0xff, 0xe0, 0])
            .avcc()
            .unwrap_err();
        assert!(err.to_string().contains("no SPS or no PPS"), "{err}");
        assert_eq!(h264(vec![]).rfc6381(), "avc1");
        // An H.264 record labelled H.265.
        let mut wrong = stream(Codec::H264).config.clone();
        wrong.codec = Codec::H265;
        assert!(wrong.nal_length_size().is_err());
        let no_pps = hevc_record(|c| c.arrays.truncate(2));
        assert!(no_pps.hvcc().unwrap_err().to_string().contains("no PPS"));
    }

    #[test]
    fn id_covers_codec_size_and_record() {
        let base = stream(Codec::H264).config.clone();
        let mut other = base.clone();
        other.width += 16;
        assert_ne!(base.id(), other.id());
        let mut other = base.clone();
        *other.record.last_mut().unwrap() ^= 1;
        assert_ne!(base.id(), other.id());
    }

    #[test]
    fn codec_serde_is_lowercase() {
        assert_eq!(serde_json::to_string(&Codec::H265).unwrap(), "\"h265\"");
        let c: Codec = serde_json::from_str("\"h264\"").unwrap();
        assert_eq!(c, Codec::H264);
    }
}
