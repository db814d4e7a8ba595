//! Fragmented MP4 (CMAF-style): one init segment (ftyp+moov) per codec configuration, then
//! self-contained moof+mdat fragments, each starting with a key frame.

use super::{Codec, CodecConfig, MediaError};
use mp4_atom::{
    Atom, Avc1, DecodeAtom, DecodeMaybe, Dinf, Dref, Encode, FourCC, Ftyp, Hdlr, Header, Hvc1,
    Mdat, Mdhd, Mfhd, Moof, Mvex, Mvhd, Stbl, Stco, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trex, Trun,
    TrunEntry, Url, Visual, Vmhd,
};

pub const TIMESCALE: u32 = 90_000;
const TRACK_ID: u32 = 1;

/// sample_depends_on = 2: the sample does not depend on others (I picture).
const FLAGS_KEY: u32 = 0x0200_0000;
/// sample_depends_on = 1 plus sample_is_non_sync_sample.
const FLAGS_NON_KEY: u32 = 0x0100_0000 | SAMPLE_IS_NON_SYNC;
const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;

/// ftyp (major "iso6"; compatible iso6, cmfc, mp41 and avc1/hvc1) + moov with one video track
/// (track id 1, timescale TIMESCALE, avc1+avcC or hvc1+hvcC sample entry carrying the record
/// unchanged, width/height, empty stts/stsc/stsz/stco, mvex/trex).
pub fn init_segment(cfg: &CodecConfig) -> Result<Vec<u8>, MediaError> {
    let bad_size = || MediaError::InvalidDimensions {
        width: cfg.width,
        height: cfg.height,
    };
    let width = u16::try_from(cfg.width).map_err(|_| bad_size())?;
    let height = u16::try_from(cfg.height).map_err(|_| bad_size())?;

    let visual = Visual {
        data_reference_index: 1,
        width,
        height,
        ..Default::default()
    };
    let entry: mp4_atom::Codec = match cfg.codec {
        Codec::H264 => Avc1 {
            visual,
            avcc: cfg.avcc()?,
            ..Default::default()
        }
        .into(),
        Codec::H265 => Hvc1 {
            visual,
            hvcc: cfg.hvcc()?,
            ..Default::default()
        }
        .into(),
    };

    let codec_brand = match cfg.codec {
        Codec::H264 => b"avc1",
        Codec::H265 => b"hvc1",
    };
    let ftyp = Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: [b"iso6", b"cmfc", b"mp41", codec_brand]
            .into_iter()
            .map(FourCC::from)
            .collect(),
    };
    let mvhd = Mvhd {
        timescale: TIMESCALE,
        rate: 1.into(),
        volume: 1.into(),
        next_track_id: TRACK_ID + 1,
        ..Default::default()
    };
    let tkhd = Tkhd {
        track_id: TRACK_ID,
        enabled: true,
        width: width.into(),
        height: height.into(),
        ..Default::default()
    };
    let mdhd = Mdhd {
        timescale: TIMESCALE,
        language: "und".into(),
        ..Default::default()
    };
    let hdlr = Hdlr {
        handler: b"vide".into(),
        name: "VideoHandler".into(),
    };
    let dinf = Dinf {
        dref: Dref {
            urls: vec![Url::default()], // empty location = media in this file
        },
    };
    let stbl = Stbl {
        stsd: Stsd {
            codecs: vec![entry],
        },
        stco: Some(Stco::default()),
        ..Default::default()
    };
    let mvex = Mvex {
        mehd: None,
        trex: vec![Trex {
            track_id: TRACK_ID,
            default_sample_description_index: 1,
            ..Default::default()
        }],
    };

    // The containers (moov/trak/mdia/minf) are assembled here rather than from mp4-atom's Moov
    // struct because mp4-atom writes children in a fixed order that is unconventional: vmhd after
    // stbl (ISO 14496-12 §6.3.4 wants media headers first) and mvex before trak. Every leaf box
    // is still encoded by mp4-atom. mp4-atom also cannot set tkhd's track_in_movie flag or
    // vmhd's mandatory flags=1, so those two are patched after encoding.
    let minf = container(
        b"minf",
        &[
            with_flags(encode(&Vmhd::default())?, 1),
            encode(&dinf)?,
            encode(&stbl)?,
        ],
    );
    let mdia = container(b"mdia", &[encode(&mdhd)?, encode(&hdlr)?, minf]);
    // track_enabled | track_in_movie
    let trak = container(b"trak", &[with_flags(encode(&tkhd)?, 0x3), mdia]);
    let moov = container(b"moov", &[encode(&mvhd)?, trak, encode(&mvex)?]);

    let mut out = encode(&ftyp)?;
    out.extend_from_slice(&moov);
    Ok(out)
}

pub struct Sample<'a> {
    /// Length-prefixed NAL units (AVCC/HVCC format), as GStreamer gives them.
    pub data: &'a [u8],
    /// In TIMESCALE ticks.
    pub duration: u32,
    pub is_key: bool,
    /// pts - dts in ticks, usually 0.
    pub composition_offset: i32,
}

/// One moof + mdat. sequence_number goes in mfhd; base_decode_time in tfdt (version 1, 64-bit).
/// trun carries per-sample size/duration/flags (and composition offsets when any is non-zero,
/// trun version 1), data_offset pointing into the mdat.
pub fn fragment(
    sequence_number: u32,
    base_decode_time: u64,
    samples: &[Sample],
) -> Result<Vec<u8>, MediaError> {
    let mut out = fragment_head(sequence_number, base_decode_time, samples)?;
    out.reserve(samples.iter().map(|s| s.data.len()).sum());
    for s in samples {
        out.extend_from_slice(s.data);
    }
    Ok(out)
}

/// The bytes of [`fragment`] before the first sample: the moof and the mdat's header. Followed
/// by every sample's data in order, they are the fragment; the recorder writes them that way
/// (one vectored write) instead of copying a fragment's worth of video into one buffer.
pub fn fragment_head(
    sequence_number: u32,
    base_decode_time: u64,
    samples: &[Sample],
) -> Result<Vec<u8>, MediaError> {
    if samples.is_empty() {
        return Err(MediaError::EmptyFragment);
    }
    let any_cts = samples.iter().any(|s| s.composition_offset != 0);
    let entries = samples
        .iter()
        .enumerate()
        .map(|(index, s)| {
            let size = u32::try_from(s.data.len()).map_err(|_| MediaError::SampleTooLarge {
                index,
                len: s.data.len(),
            })?;
            Ok(TrunEntry {
                duration: Some(s.duration),
                size: Some(size),
                flags: Some(if s.is_key { FLAGS_KEY } else { FLAGS_NON_KEY }),
                cts: any_cts.then_some(s.composition_offset),
            })
        })
        .collect::<Result<Vec<_>, MediaError>>()?;

    let mut moof = Moof {
        mfhd: Mfhd { sequence_number },
        traf: vec![Traf {
            tfhd: Tfhd {
                track_id: TRACK_ID,
                default_base_is_moof: true,
                ..Default::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time: base_decode_time,
            }),
            trun: vec![Trun {
                data_offset: Some(0),
                entries,
            }],
            ..Default::default()
        }],
    };
    // With default-base-is-moof the offset counts from the moof's first byte; the samples start
    // right after the moof and the 8-byte mdat header. The offset field has a fixed size, so
    // measuring with a placeholder is exact.
    let moof_len = encode(&moof)?.len();
    moof.traf[0].trun[0].data_offset = Some(to_i32(moof_len as i64 + 8)?);

    // The mdat header is written by hand: mp4-atom's Mdat would need the payload assembled in a
    // buffer of its own.
    let payload_len: usize = samples.iter().map(|s| s.data.len()).sum();
    let mdat_len = u32::try_from(payload_len + 8)
        .map_err(|_| MediaError::InvalidFragment(format!("{payload_len} bytes of samples")))?;
    let mut out = Vec::with_capacity(moof_len + 8);
    moof.encode(&mut out)?;
    out.extend_from_slice(&mdat_len.to_be_bytes());
    out.extend_from_slice(b"mdat");
    Ok(out)
}

/// Parsed facts about one stored fragment (moof+mdat bytes as written by [`fragment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentInfo {
    pub sequence_number: u32,
    pub base_decode_time: u64,
    pub sample_count: u32,
    /// Sum of the sample durations, in TIMESCALE ticks.
    pub duration: u64,
    pub first_is_key: bool,
}

/// Reads and checks a fragment: one moof with one traf, followed by an mdat holding all samples.
pub fn inspect_fragment(bytes: &[u8]) -> Result<FragmentInfo, MediaError> {
    let (moof, _) = read_moof(bytes)?;
    let traf = single_traf(&moof)?;
    let tfdt = traf
        .tfdt
        .as_ref()
        .ok_or_else(|| invalid("traf has no tfdt"))?;
    let tfhd = &traf.tfhd;
    let entries = || traf.trun.iter().flat_map(|t| &t.entries);

    let mut duration = 0u64;
    let mut data_len = 0u64;
    for e in entries() {
        let d = e.duration.or(tfhd.default_sample_duration);
        duration += u64::from(d.ok_or_else(|| invalid("sample without duration"))?);
        let s = e.size.or(tfhd.default_sample_size);
        data_len += u64::from(s.ok_or_else(|| invalid("sample without size"))?);
    }
    let first = entries().next().ok_or_else(|| invalid("no samples"))?;
    let first_flags = first.flags.or(tfhd.default_sample_flags);
    let sample_count = entries().count();

    // The sample data must lie inside the mdat that follows the moof.
    let data_start = traf.trun[0]
        .data_offset
        .ok_or_else(|| invalid("trun without data offset"))?;
    let data_start = u64::try_from(data_start).unwrap_or(0);
    let data_end = data_start + data_len;
    let mdat = mdat_body_range(bytes)?;
    if data_start < mdat.start as u64 || data_end > mdat.end as u64 {
        return Err(invalid(format!(
            "sample data {data_start}..{data_end} is outside the mdat body {mdat:?}"
        )));
    }

    Ok(FragmentInfo {
        sequence_number: moof.mfhd.sequence_number,
        base_decode_time: tfdt.base_media_decode_time,
        sample_count: sample_count as u32,
        duration,
        first_is_key: first_flags.is_some_and(|f| f & SAMPLE_IS_NON_SYNC == 0),
    })
}

/// The tfdt base media decode time of a fragment (or of its moof alone).
pub fn base_decode_time(bytes: &[u8]) -> Result<u64, MediaError> {
    let (moof, _) = read_moof(bytes)?;
    single_traf(&moof)?
        .tfdt
        .as_ref()
        .map(|t| t.base_media_decode_time)
        .ok_or_else(|| invalid("traf has no tfdt"))
}

/// The decoder configuration record (avcC / hvcC payload, byte for byte) of an init segment's
/// first track, for containers that carry it as is (Matroska's CodecPrivate).
pub fn decoder_record(init: &[u8]) -> Result<Vec<u8>, MediaError> {
    let missing = |what: &str| invalid(format!("init segment without {what}"));
    let child = |body: &[u8], kind: &[u8; 4]| -> Result<Vec<u8>, MediaError> {
        child_boxes(body)?
            .into_iter()
            .find(|(k, _)| k == kind)
            .map(|(_, b)| b.to_vec())
            .ok_or_else(|| missing(&String::from_utf8_lossy(kind)))
    };
    let mut body = child(init, b"moov")?;
    for kind in [b"trak", b"mdia", b"minf", b"stbl", b"stsd"] {
        body = child(&body, kind)?;
    }
    // stsd: version/flags and entry count, then the sample entries; a visual sample entry has
    // 78 bytes of fields before its child boxes.
    let entries = body.get(8..).ok_or_else(|| missing("sample entry"))?;
    let (kind, entry) = child_boxes(entries)?
        .into_iter()
        .next()
        .ok_or_else(|| missing("sample entry"))?;
    let record_kind = match &kind {
        b"avc1" | b"avc3" => b"avcC",
        b"hvc1" | b"hev1" => b"hvcC",
        k => {
            return Err(invalid(format!(
                "unsupported sample entry '{}'",
                String::from_utf8_lossy(k)
            )))
        }
    };
    child(
        entry
            .get(78..)
            .ok_or_else(|| missing("visual sample entry"))?,
        record_kind,
    )
}

/// One sample of a stored fragment, located in the fragment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRef {
    /// Byte range of the sample data in the fragment (moof + mdat) bytes.
    pub range: std::ops::Range<usize>,
    /// Decode time relative to the fragment's base decode time, in TIMESCALE ticks.
    pub decode_offset: u64,
    /// Presentation minus decode time, in ticks.
    pub composition_offset: i32,
    pub is_key: bool,
}

/// The sample table of a fragment (one traf, as [`inspect_fragment`] checks), for remuxing the
/// samples into another container (Matroska for GetMedia) without copying the fragment.
pub fn samples(bytes: &[u8]) -> Result<Vec<SampleRef>, MediaError> {
    let (moof, _) = read_moof(bytes)?;
    let traf = single_traf(&moof)?;
    let tfhd = &traf.tfhd;
    let mdat = mdat_body_range(bytes)?;
    let mut out = Vec::new();
    let mut decode_offset = 0u64;
    for trun in &traf.trun {
        // moof-relative offsets (default-base-is-moof, as every fragment here is written)
        let offset = trun
            .data_offset
            .ok_or_else(|| invalid("trun without data offset"))?;
        let mut pos = usize::try_from(offset).map_err(|_| invalid("negative data offset"))?;
        for e in &trun.entries {
            let size = e
                .size
                .or(tfhd.default_sample_size)
                .ok_or_else(|| invalid("sample without size"))? as usize;
            let duration = e
                .duration
                .or(tfhd.default_sample_duration)
                .ok_or_else(|| invalid("sample without duration"))?;
            let flags = e.flags.or(tfhd.default_sample_flags).unwrap_or(0);
            let end = pos
                .checked_add(size)
                .filter(|&end| pos >= mdat.start && end <= mdat.end);
            let end = end.ok_or_else(|| {
                invalid(format!("sample at {pos} is outside the mdat body {mdat:?}"))
            })?;
            out.push(SampleRef {
                range: pos..end,
                decode_offset,
                composition_offset: e.cts.unwrap_or(0),
                is_key: flags & SAMPLE_IS_NON_SYNC == 0,
            });
            decode_offset += u64::from(duration);
            pos = end;
        }
    }
    if out.is_empty() {
        return Err(invalid("no samples"));
    }
    Ok(out)
}

/// Copy of the fragment with tfdt replaced by `base_decode_time` and mfhd sequence by
/// `sequence_number` (used when exporting clips: timestamps are rebased to start at 0).
/// The mdat is copied verbatim; trun data offsets are shifted if the moof changes size. Given
/// the moof alone, returns the rewritten moof alone (playback streams the mdat from the file).
pub fn rewrite_fragment(
    bytes: &[u8],
    sequence_number: u32,
    base_decode_time: u64,
) -> Result<Vec<u8>, MediaError> {
    let (mut moof, old_len) = read_moof(bytes)?;
    single_traf(&moof)?;
    moof.mfhd.sequence_number = sequence_number;
    let traf = &mut moof.traf[0];
    traf.tfdt = Some(Tfdt {
        base_media_decode_time: base_decode_time,
    });

    // Our own fragments re-encode to the same size; a foreign one (tfdt v0, other trun layout)
    // may not, and its moof-relative data offsets must follow the mdat.
    let new_len = encode(&moof)?.len();
    if new_len != old_len {
        let traf = &mut moof.traf[0];
        if traf.tfhd.base_data_offset.is_some() {
            return Err(invalid(
                "cannot relocate a fragment with an absolute base data offset",
            ));
        }
        let delta = new_len as i64 - old_len as i64;
        for trun in &mut traf.trun {
            let off = trun
                .data_offset
                .ok_or_else(|| invalid("cannot relocate a trun without data offset"))?;
            trun.data_offset = Some(to_i32(i64::from(off) + delta)?);
        }
    }

    let mut out = Vec::with_capacity(new_len + bytes.len() - old_len);
    moof.encode(&mut out)?;
    out.extend_from_slice(&bytes[old_len..]);
    Ok(out)
}

/// Decodes the leading moof; returns it with its encoded length.
fn read_moof(bytes: &[u8]) -> Result<(Moof, usize), MediaError> {
    let mut buf = bytes;
    let header = Header::decode_maybe(&mut buf)?.ok_or_else(|| invalid("truncated box header"))?;
    // decode_atom checks the box kind (plain `Moof::decode` would not).
    if header.kind != Moof::KIND {
        return Err(invalid(format!(
            "starts with '{}', not 'moof'",
            header.kind
        )));
    }
    let body_start = bytes.len() - buf.len();
    let body_end = match header.size {
        None => bytes.len(),
        Some(size) => body_start.saturating_add(size),
    };
    let body = bytes
        .get(body_start..body_end)
        .ok_or_else(|| invalid("truncated moof"))?;
    let filtered = filtered_moof(body)?;
    let mut buf = &filtered[..];
    let header = Header::decode_maybe(&mut buf)?.ok_or_else(|| invalid("truncated moof"))?;
    let moof = Moof::decode_atom(&header, &mut buf).map_err(|e| match e {
        mp4_atom::Error::OutOfBounds => invalid("truncated moof"),
        e => e.into(),
    })?;
    Ok((moof, body_end))
}

/// The moof rebuilt from the boxes we read: mfhd, and tfhd, tfdt and trun in each traf.
/// mp4-atom decodes every box kind it knows wherever it appears, and some of its decoders fail
/// badly on malformed input (found by fuzzing, mp4-atom 0.11: `iref` overflows its length
/// arithmetic, `sgpd` with a huge entry count allocates gigabytes). Other boxes (sample groups,
/// encryption info, metadata) are dropped, as mp4-atom already drops the kinds it does not know:
/// a rewritten fragment does not carry them.
fn filtered_moof(moof_body: &[u8]) -> Result<Vec<u8>, MediaError> {
    let raw = |kind: &[u8; 4], body: &[u8]| container(kind, &[body.to_vec()]);
    let mut children = Vec::new();
    for (kind, body) in child_boxes(moof_body)? {
        match &kind {
            b"mfhd" => children.push(raw(&kind, body)),
            b"traf" => {
                let kept: Vec<Vec<u8>> = child_boxes(body)?
                    .into_iter()
                    .filter(|(k, _)| matches!(k, b"tfhd" | b"tfdt" | b"trun"))
                    .map(|(k, b)| raw(&k, b))
                    .collect();
                children.push(container(b"traf", &kept));
            }
            _ => {}
        }
    }
    Ok(container(b"moof", &children))
}

type ChildBox<'a> = ([u8; 4], &'a [u8]);

/// The (kind, body) of each box in a container body; errors on a size that does not fit.
fn child_boxes(mut body: &[u8]) -> Result<Vec<ChildBox<'_>>, MediaError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let truncated = || invalid("truncated box in moof");
        let field = |r: std::ops::Range<usize>| body.get(r).ok_or_else(truncated);
        let size32 = u32::from_be_bytes(field(0..4)?.try_into().expect("4 bytes"));
        let kind: [u8; 4] = field(4..8)?.try_into().expect("4 bytes");
        let (header_len, size) = match size32 {
            0 => (8, body.len() as u64),
            1 => (
                16,
                u64::from_be_bytes(field(8..16)?.try_into().expect("8 bytes")),
            ),
            n => (8, u64::from(n)),
        };
        let size = usize::try_from(size).map_err(|_| truncated())?;
        if size < header_len || size > body.len() {
            return Err(truncated());
        }
        out.push((kind, &body[header_len..size]));
        body = &body[size..];
    }
    Ok(out)
}

/// Byte range of the mdat payload that directly follows the moof.
fn mdat_body_range(bytes: &[u8]) -> Result<std::ops::Range<usize>, MediaError> {
    let (_, moof_len) = read_moof(bytes)?;
    let mut buf = &bytes[moof_len..];
    let header = Header::decode_maybe(&mut buf)?.ok_or_else(|| invalid("no mdat after moof"))?;
    if header.kind != Mdat::KIND {
        return Err(invalid(format!("'{}' after moof, not 'mdat'", header.kind)));
    }
    let start = bytes.len() - buf.len();
    // A 64-bit box size can be anything up to 2^64 - 1 (found by fuzzing: `start + size` overflowed).
    let end = header
        .size
        .map_or(bytes.len() as u128, |size| start as u128 + size as u128);
    if end > bytes.len() as u128 {
        return Err(invalid(format!(
            "mdat ends at byte {end} but the fragment has {} bytes",
            bytes.len()
        )));
    }
    Ok(start..end as usize)
}

fn single_traf(moof: &Moof) -> Result<&Traf, MediaError> {
    match moof.traf.as_slice() {
        [traf] if !traf.trun.is_empty() => Ok(traf),
        [_] => Err(invalid("traf has no trun")),
        trafs => Err(invalid(format!("{} trafs, expected 1", trafs.len()))),
    }
}

fn encode(atom: &impl Encode) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::new();
    atom.encode(&mut out)?;
    Ok(out)
}

/// A plain container box around already-encoded children.
fn container(kind: &[u8; 4], children: &[Vec<u8>]) -> Vec<u8> {
    let size = 8 + children.iter().map(Vec::len).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(size as u32).to_be_bytes());
    out.extend_from_slice(kind);
    for child in children {
        out.extend_from_slice(child);
    }
    out
}

/// Sets the 24-bit flags of an encoded full box (bytes 9..12: after size, type and version).
fn with_flags(mut full_box: Vec<u8>, flags: u32) -> Vec<u8> {
    full_box[9..12].copy_from_slice(&flags.to_be_bytes()[1..]);
    full_box
}

fn to_i32(n: i64) -> Result<i32, MediaError> {
    i32::try_from(n).map_err(|_| invalid(format!("data offset {n} out of range")))
}

fn invalid(msg: impl Into<String>) -> MediaError {
    MediaError::InvalidFragment(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::test_support::{
        ffmpeg_decodes, ffprobe, is_key, stream, Stream, FRAMES, FRAME_TICKS, GOP, HEIGHT, WIDTH,
    };
    use mp4_atom::Decode;
    use std::path::Path;

    #[test]
    fn decoder_records_come_back_unchanged() {
        for codec in [Codec::H264, Codec::H265] {
            let cfg = &stream(codec).config;
            let init = init_segment(cfg).unwrap();
            assert_eq!(decoder_record(&init).unwrap(), cfg.record, "{codec:?}");
        }
        assert!(decoder_record(b"").is_err());
    }

    #[test]
    fn sample_table_locates_every_sample() {
        let s = stream(Codec::H264);
        let samples: Vec<Sample> = s.aus[..GOP]
            .iter()
            .enumerate()
            .map(|(i, au)| Sample {
                data: au,
                duration: FRAME_TICKS,
                is_key: i == 0,
                composition_offset: 0,
            })
            .collect();
        let bytes = fragment(1, 9000, &samples).unwrap();
        let table = super::samples(&bytes).unwrap();
        assert_eq!(table.len(), GOP);
        for (i, (t, au)) in table.iter().zip(&s.aus[..GOP]).enumerate() {
            assert_eq!(&bytes[t.range.clone()], au.as_slice(), "sample {i}");
            assert_eq!(t.decode_offset, i as u64 * u64::from(FRAME_TICKS));
            assert_eq!(t.is_key, i == 0);
        }
        let mut truncated = bytes.clone();
        truncated.truncate(bytes.len() - 1);
        assert!(super::samples(&truncated).is_err());
    }

    /// Children of a box body as (type, body) pairs.
    fn boxes(mut body: &[u8]) -> Vec<(String, &[u8])> {
        let mut out = Vec::new();
        while !body.is_empty() {
            let size = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
            let kind = String::from_utf8_lossy(&body[4..8]).into_owned();
            out.push((kind, &body[8..size]));
            body = &body[size..];
        }
        out
    }

    fn kinds(body: &[u8]) -> Vec<String> {
        boxes(body).into_iter().map(|(k, _)| k).collect()
    }

    fn child<'a>(body: &'a [u8], kind: &str) -> &'a [u8] {
        let found = boxes(body).into_iter().find(|(k, _)| k == kind);
        found.unwrap_or_else(|| panic!("no {kind} box")).1
    }

    /// One fragment per GOP, numbered from 1, decode times continuing from 0.
    fn gop_fragments(s: &Stream, composition_offset: i32) -> Vec<Vec<u8>> {
        let keys: Vec<usize> = (0..s.aus.len())
            .filter(|&i| is_key(&s.config, &s.aus[i]))
            .collect();
        let expected: Vec<usize> = (0..FRAMES).step_by(GOP).collect();
        assert_eq!(keys, expected, "encoder key frames");
        s.aus
            .chunks(GOP)
            .enumerate()
            .map(|(n, gop)| {
                let samples: Vec<Sample> = gop
                    .iter()
                    .enumerate()
                    .map(|(i, au)| Sample {
                        data: au,
                        duration: FRAME_TICKS,
                        is_key: i == 0,
                        composition_offset,
                    })
                    .collect();
                let base = (n * GOP) as u64 * u64::from(FRAME_TICKS);
                fragment(n as u32 + 1, base, &samples).unwrap()
            })
            .collect()
    }

    fn write_file(
        dir: &Path,
        name: &str,
        init: &[u8],
        fragments: &[Vec<u8>],
    ) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, [init.to_vec(), fragments.concat()].concat()).unwrap();
        path
    }

    /// Checks ffprobe's view: codec, size, and one packet per frame at the expected times, key
    /// flags exactly on the first packet of each fragment; then a full ffmpeg decode.
    fn assert_plays(path: &Path, codec: Codec, frames: usize, first_dts: i64, cts: i64) {
        let probe = ffprobe(path);
        let st = &probe["streams"][0];
        let name = match codec {
            Codec::H264 => "h264",
            Codec::H265 => "hevc",
        };
        assert_eq!(st["codec_name"], name, "{st}");
        assert_eq!(
            (st["width"].as_u64(), st["height"].as_u64()),
            (Some(WIDTH.into()), Some(HEIGHT.into()))
        );
        let packets = probe["packets"].as_array().unwrap();
        assert_eq!(packets.len(), frames);
        for (i, p) in packets.iter().enumerate() {
            let dts = first_dts + i as i64 * i64::from(FRAME_TICKS);
            assert_eq!(p["dts"].as_i64(), Some(dts), "packet {i}: {p}");
            assert_eq!(p["pts"].as_i64(), Some(dts + cts), "packet {i}: {p}");
            assert_eq!(
                p["duration"].as_i64(),
                Some(FRAME_TICKS.into()),
                "packet {i}"
            );
            let key = p["flags"].as_str().unwrap().starts_with('K');
            assert_eq!(key, i % GOP == 0, "key flag of packet {i}: {p}");
        }
        ffmpeg_decodes(path);
    }

    fn fragments_play(codec: Codec) {
        let s = stream(codec);
        let dir = tempfile::tempdir().unwrap();
        let init = init_segment(&s.config).unwrap();
        let frags = gop_fragments(s, 0);
        assert_eq!(frags.len(), 3);
        for (n, f) in frags.iter().enumerate() {
            let info = inspect_fragment(f).unwrap();
            let expected = FragmentInfo {
                sequence_number: n as u32 + 1,
                base_decode_time: (n * GOP) as u64 * 3000,
                sample_count: GOP as u32,
                duration: GOP as u64 * 3000,
                first_is_key: true,
            };
            assert_eq!(info, expected);
        }
        assert_plays(
            &write_file(dir.path(), "all.mp4", &init, &frags),
            codec,
            FRAMES,
            0,
            0,
        );

        // Export the last two fragments as a clip starting at 0.
        let clip: Vec<Vec<u8>> = frags[1..]
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let base = inspect_fragment(f).unwrap().base_decode_time - (GOP as u64 * 3000);
                rewrite_fragment(f, i as u32 + 1, base).unwrap()
            })
            .collect();
        for (i, (new, old)) in clip.iter().zip(&frags[1..]).enumerate() {
            let info = inspect_fragment(new).unwrap();
            assert_eq!(info.sequence_number, i as u32 + 1);
            assert_eq!(info.base_decode_time, (i * GOP) as u64 * 3000);
            // Same layout: only the two numbers changed, the mdat is untouched.
            assert_eq!(new.len(), old.len());
            let moof_len = read_moof(old).unwrap().1;
            assert_eq!(new[moof_len..], old[moof_len..]);
        }
        let path = write_file(dir.path(), "clip.mp4", &init, &clip);
        assert_plays(&path, codec, 2 * GOP, 0, 0);
    }

    #[test]
    fn h264_fragments_play_and_rebase() {
        fragments_play(Codec::H264);
    }

    #[test]
    fn h265_fragments_play_and_rebase() {
        fragments_play(Codec::H265);
    }

    #[test]
    fn composition_offsets_shift_pts() {
        let s = stream(Codec::H264);
        let dir = tempfile::tempdir().unwrap();
        let frags = gop_fragments(s, 6000);
        let (moof, _) = read_moof(&frags[0]).unwrap();
        let entries = &moof.traf[0].trun[0].entries;
        assert!(entries.iter().all(|e| e.cts == Some(6000)));
        let path = write_file(
            dir.path(),
            "cts.mp4",
            &init_segment(&s.config).unwrap(),
            &frags,
        );
        assert_plays(&path, Codec::H264, FRAMES, 0, 6000);
    }

    #[test]
    fn rewrite_relocates_samples_when_the_moof_grows() {
        let s = stream(Codec::H265);
        let dir = tempfile::tempdir().unwrap();
        let frag = &gop_fragments(s, 0)[0];
        // A foreign-style fragment without tfdt: rewriting adds one, growing the moof.
        let (mut moof, moof_len) = read_moof(frag).unwrap();
        moof.traf[0].tfdt = None;
        let shrunk_len = encode(&moof).unwrap().len();
        moof.traf[0].trun[0].data_offset = Some(shrunk_len as i32 + 8);
        let foreign = [encode(&moof).unwrap(), frag[moof_len..].to_vec()].concat();
        assert!(inspect_fragment(&foreign)
            .unwrap_err()
            .to_string()
            .contains("no tfdt"));

        let fixed = rewrite_fragment(&foreign, 1, 0).unwrap();
        assert_eq!(fixed, *frag, "rewriting restores the original layout");
        let path = write_file(
            dir.path(),
            "fixed.mp4",
            &init_segment(&s.config).unwrap(),
            &[fixed],
        );
        assert_plays(&path, Codec::H265, GOP, 0, 0);
    }

    #[test]
    fn init_segment_layout() {
        for codec in [Codec::H264, Codec::H265] {
            let cfg = &stream(codec).config;
            let init = init_segment(cfg).unwrap();
            assert_eq!(kinds(&init), ["ftyp", "moov"]);
            let ftyp = Ftyp::decode(&mut init.as_slice()).unwrap();
            let brands: Vec<String> = ftyp
                .compatible_brands
                .iter()
                .map(|b| b.to_string())
                .collect();
            assert_eq!(ftyp.major_brand, b"iso6".into());
            assert_eq!(brands, ["iso6", "cmfc", "mp41", codec.sample_entry()]);

            let moov = child(&init, "moov");
            assert_eq!(kinds(moov), ["mvhd", "trak", "mvex"]);
            let trak = child(moov, "trak");
            assert_eq!(kinds(trak), ["tkhd", "mdia"]);
            assert_eq!(
                child(trak, "tkhd")[..4],
                [1, 0, 0, 3],
                "tkhd v1, enabled+in movie"
            );
            let mdia = child(trak, "mdia");
            assert_eq!(kinds(mdia), ["mdhd", "hdlr", "minf"]);
            let minf = child(mdia, "minf");
            assert_eq!(kinds(minf), ["vmhd", "dinf", "stbl"]);
            assert_eq!(child(minf, "vmhd")[..4], [0, 0, 0, 1], "vmhd flags = 1");
            let stbl = child(minf, "stbl");
            assert_eq!(kinds(stbl), ["stsd", "stts", "stsc", "stsz", "stco"]);
            // stsd: version/flags + entry count, then the sample entry (78-byte visual header).
            let (entry, body) = boxes(&child(stbl, "stsd")[8..]).remove(0);
            assert_eq!(entry, codec.sample_entry());
            let record_box = if codec == Codec::H264 { "avcC" } else { "hvcC" };
            assert_eq!(
                child(&body[78..], record_box),
                cfg.record,
                "record copied verbatim"
            );

            // mp4-atom reads the whole thing back.
            let m = mp4_atom::Moov::decode(&mut &init[init.len() - moov.len() - 8..]).unwrap();
            assert_eq!(m.mvhd.timescale, TIMESCALE);
            assert_eq!(m.trak[0].mdia.mdhd.timescale, TIMESCALE);
            assert_eq!(m.trak[0].tkhd.width, (WIDTH as u16).into());
            assert_eq!(m.mvex.unwrap().trex[0].track_id, 1);
        }
    }

    #[test]
    fn init_segment_rejects_bad_configs() {
        let mut cfg = stream(Codec::H264).config.clone();
        cfg.width = 70_000;
        let err = init_segment(&cfg).unwrap_err();
        assert!(matches!(err, MediaError::InvalidDimensions { .. }), "{err}");
        let mut cfg = stream(Codec::H264).config.clone();
        cfg.record.truncate(3);
        let err = init_segment(&cfg).unwrap_err();
        assert!(matches!(err, MediaError::InvalidRecord { .. }), "{err}");
    }

    #[test]
    fn trun_layout() {
        let data = [
            [0u8, 0, 0, 2, 0x65, 1],
            [0, 0, 0, 2, 0x41, 2],
            [0, 0, 0, 2, 0x41, 3],
        ];
        let samples: Vec<Sample> = data
            .iter()
            .enumerate()
            .map(|(i, d)| Sample {
                data: d,
                duration: 3000 + i as u32,
                is_key: i == 0,
                composition_offset: 0,
            })
            .collect();
        let bytes = fragment(7, 1 << 40, &samples).unwrap();
        assert_eq!(kinds(&bytes), ["moof", "mdat"]);
        let (moof, moof_len) = read_moof(&bytes).unwrap();
        assert_eq!(kinds(child(&bytes, "moof")), ["mfhd", "traf"]);
        assert_eq!(
            kinds(child(child(&bytes, "moof"), "traf")),
            ["tfhd", "tfdt", "trun"]
        );
        let traf = &moof.traf[0];
        assert!(traf.tfhd.default_base_is_moof);
        assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, 1 << 40);
        let trun = &traf.trun[0];
        assert_eq!(trun.data_offset, Some(moof_len as i32 + 8));
        let flags: Vec<_> = trun.entries.iter().map(|e| e.flags.unwrap()).collect();
        assert_eq!(flags, [0x0200_0000, 0x0101_0000, 0x0101_0000]);
        assert!(
            trun.entries.iter().all(|e| e.cts.is_none()),
            "no cts when all are 0"
        );
        assert_eq!(trun.entries[2].duration, Some(3002));
        assert_eq!(child(&bytes, "mdat"), data.concat());
        let info = inspect_fragment(&bytes).unwrap();
        assert_eq!(
            (info.sequence_number, info.sample_count, info.duration),
            (7, 3, 9003)
        );

        let err = fragment(1, 0, &[]).unwrap_err();
        assert!(matches!(err, MediaError::EmptyFragment), "{err}");
    }

    #[test]
    fn inspect_rejects_damaged_fragments() {
        let s = stream(Codec::H264);
        let frag = &gop_fragments(s, 0)[0];
        let err = |bytes: &[u8]| inspect_fragment(bytes).unwrap_err().to_string();
        assert!(err(&frag[..frag.len() - 1]).contains("mdat ends at byte"));
        assert!(err(&frag[..100]).contains("truncated moof"));
        assert!(err(&[]).contains("truncated box header"));
        assert!(err(&init_segment(&s.config).unwrap()).contains("not 'moof'"));
        let (moof, moof_len) = read_moof(frag).unwrap();
        assert!(err(&frag[..moof_len]).contains("no mdat after moof"));
        // A trun pointing past the mdat.
        let mut bad = moof.clone();
        bad.traf[0].trun[0].data_offset = Some(moof_len as i32 + 9);
        let bad = [encode(&bad).unwrap(), frag[moof_len..].to_vec()].concat();
        assert!(err(&bad).contains("outside the mdat body"));
        assert!(rewrite_fragment(&frag[..100], 1, 0).is_err());
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn small_fragment() -> Vec<u8> {
        let samples = [Sample {
            data: &[0, 0, 0, 2, 0x65, 1],
            duration: 3000,
            is_key: true,
            composition_offset: 0,
        }];
        fragment(1, 0, &samples).unwrap()
    }

    /// `frag` with `child` appended at the end of its moof, inside the traf (its last box) or not;
    /// the trun's data offset follows the samples.
    fn with_child(frag: &[u8], in_traf: bool, child: &[u8]) -> Vec<u8> {
        let u32_at = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
        let moof_len = u32_at(frag, 0) as usize;
        let traf_at = frag.windows(4).position(|w| w == b"traf").unwrap() - 4;
        assert_eq!(traf_at + u32_at(frag, traf_at) as usize, moof_len);
        let mut out = frag.to_vec();
        out.splice(moof_len..moof_len, child.iter().copied());
        let trun_offset = frag.windows(4).position(|w| w == b"trun").unwrap() + 12;
        let grown = if in_traf {
            vec![0, traf_at, trun_offset]
        } else {
            vec![0, trun_offset]
        };
        for at in grown {
            let n = u32_at(&out, at) + child.len() as u32;
            out[at..at + 4].copy_from_slice(&n.to_be_bytes());
        }
        out
    }

    // Found by fuzzing (fuzz/ target fmp4): mp4-atom 0.11 decodes every box kind it knows
    // wherever it appears; an `iref` overflows its length arithmetic (a panic in debug builds)
    // and an `sgpd` with a huge entry count allocated gigabytes. Only mfhd and traf (tfhd, tfdt,
    // trun) reach it now.
    #[test]
    fn inspect_skips_boxes_it_does_not_read() {
        let iref_crash = hex(
            "000000906d6f6f66000000106d66680e010000000000000200000078697265660000001c74666864000200380000000000000000000000000000000000000000000000e85d86d6b24987b1949f2dd30030a02e6b9b177ec7347bfffd18ddab21c144fae2d75bf8087ed92d3f000031009066000000106d66686400000000006864000200380000004f0000000000000078",
        );
        let sgpd_oom = hex(
            "000000906d6f6f66000000106d666864000000200000000200000078747261660000001c7466686400020038000000010000040000000210010100000000000073677064010100000000145d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d74666474010000000000026e0101000000001474666455740100000000000002007e00000000000500000005000000000000000002000000fb0000000000107300",
        );
        for bytes in [iref_crash, sgpd_oom] {
            assert!(inspect_fragment(&bytes).is_err());
            assert!(rewrite_fragment(&bytes, 1, 0).is_err());
        }

        let frag = small_fragment();
        let info = inspect_fragment(&frag).unwrap();
        let iref = [
            0, 0, 0, 16, b'i', b'r', b'e', b'f', 0, 0, 0, 0, 0, 0, 0, 255,
        ];
        let mut sgpd = vec![0, 0, 0, 20, b's', b'g', b'p', b'd', 0, 0, 0, 0];
        sgpd.extend_from_slice(b"roll");
        sgpd.extend_from_slice(&u32::MAX.to_be_bytes());
        for (in_traf, child) in [(true, &iref[..]), (false, &iref[..]), (true, &sgpd[..])] {
            let bytes = with_child(&frag, in_traf, child);
            assert_eq!(inspect_fragment(&bytes).unwrap(), info);
            // Rewriting drops the box and moves the data offset back.
            let out = rewrite_fragment(&bytes, 9, 1 << 33).unwrap();
            let moved = inspect_fragment(&out).unwrap();
            assert_eq!((moved.sequence_number, moved.sample_count), (9, 1));
            assert_eq!(
                out.len() + child.len(),
                bytes.len(),
                "the box is gone (our tfdt is always version 1)"
            );
        }
    }

    // Found by fuzzing: a 64-bit mdat size near 2^64 overflowed `start + size`.
    #[test]
    fn inspect_rejects_huge_mdat_size() {
        let frag = small_fragment();
        let moof_len = u32::from_be_bytes(frag[..4].try_into().unwrap()) as usize;
        let mut bad = frag[..moof_len].to_vec();
        bad.extend_from_slice(&1u32.to_be_bytes());
        bad.extend_from_slice(b"mdat");
        bad.extend_from_slice(&u64::MAX.to_be_bytes());
        bad.extend_from_slice(&frag[moof_len + 8..]);
        let e = inspect_fragment(&bad).unwrap_err().to_string();
        assert!(e.contains("mdat ends at byte"), "{e}");
    }
}
