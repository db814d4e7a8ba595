//! Segment-log record framing and the sealed-segment `.idx` decoder.
//! Input: one flags byte, then the bytes. Flag 1: fix up the CRCs first (else nearly every input
//! stops at the checksum); flag 2: the bytes are an `.idx` file rather than frames.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vidgest::fuzzing::{decode_idx, encode_frame, read_frames, FrameError};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if flags & 2 == 0 {
        if flags & 1 != 0 {
            fix_frame_crcs(&mut bytes);
        }
        let (frames, err) = read_frames(&bytes);
        // Every frame read re-encodes to exactly the bytes it came from.
        let mut pos = 0;
        for f in &frames {
            let enc = encode_frame(f.offset, f.arrival_ns, &f.key, &f.data);
            assert_eq!(enc.len() as u64, f.disk_len());
            assert_eq!(&bytes[pos..pos + enc.len()], &enc[..]);
            pos += enc.len();
        }
        if err.is_none() {
            assert_eq!(pos, bytes.len());
        }
        assert!(!matches!(err, Some(FrameError::Io(_))));
    } else {
        if flags & 1 != 0 && bytes.len() >= 4 {
            let n = bytes.len() - 4;
            let crc = crc32fast::hash(&bytes[..n]);
            bytes[n..].copy_from_slice(&crc.to_le_bytes());
        }
        // base and log length as the file claims them, so the check can pass.
        let field = |at: usize| {
            bytes
                .get(at..at + 8)
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
        };
        if let Some(enc) = decode_idx(&bytes, field(8), field(24)) {
            assert_eq!(enc, bytes);
        }
    }
});

/// Writes the right CRC into every frame header (len u32 LE, crc u32 LE, body).
fn fix_frame_crcs(b: &mut [u8]) {
    let mut pos = 0;
    while pos + 8 <= b.len() {
        let len = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
        let end = (pos + 8).saturating_add(len).min(b.len());
        let mut h = crc32fast::Hasher::new();
        h.update(&b[pos..pos + 4]);
        h.update(&b[pos + 8..end]);
        let crc = h.finalize();
        b[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}
