//! Media formats: codec configuration records and fragmented MP4 (CMAF-style) boxes.
//!
//! `codec` understands the decoder configuration records GStreamer hands us, `fmp4` writes the
//! init segment and moof+mdat fragments (with the `mp4-atom` crate) and inspects/rebases stored
//! fragments, `fragmenter` groups access units into key-frame-aligned runs.

pub mod codec;
pub mod fmp4;
pub mod fragmenter;

pub use codec::{Codec, CodecConfig};

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("invalid {codec} decoder configuration record: {reason}")]
    InvalidRecord { codec: Codec, reason: String },
    #[error("video size {width}x{height} does not fit an MP4 sample entry (at most 65535x65535)")]
    InvalidDimensions { width: u32, height: u32 },
    #[error("cannot write an MP4 fragment without samples")]
    EmptyFragment,
    #[error("sample {index} is {len} bytes, too large for an MP4 fragment")]
    SampleTooLarge { index: usize, len: usize },
    #[error("invalid MP4 fragment: {0}")]
    InvalidFragment(String),
    #[error("MP4 box encoding/decoding failed: {0}")]
    Mp4(#[from] mp4_atom::Error),
}

/// Real H.264/H.265 streams produced by GStreamer, shared by the media tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{Codec, CodecConfig};
    use std::path::Path;
    use std::process::Command;
    use std::sync::OnceLock;

    pub const WIDTH: u32 = 320;
    pub const HEIGHT: u32 = 240;
    pub const FRAMES: usize = 90;
    pub const GOP: usize = 30;
    /// One frame at 30 fps in 90 kHz ticks.
    pub const FRAME_TICKS: u32 = 3000;

    /// A real avcC from x264 (64x64, High profile), for tests that need a valid init segment
    /// but no frames.
    pub fn small_h264_config() -> CodecConfig {
        CodecConfig {
            codec: Codec::H264,
            width: 64,
            height: 64,
            record: hex::decode(
                "01640014ffe1001b67640014acd94426c05a8303035280000003008000001e478a14cb01000568ebecb22c",
            )
            .expect("valid hex"),
        }
    }

    pub struct Stream {
        pub config: CodecConfig,
        /// Access units exactly as GStreamer outputs them (length-prefixed NAL units).
        pub aus: Vec<Vec<u8>>,
    }

    /// Encodes (once per test binary) 3 s of 30 fps test pattern with a 1 s GOP.
    pub fn stream(codec: Codec) -> &'static Stream {
        static H264: OnceLock<Stream> = OnceLock::new();
        static H265: OnceLock<Stream> = OnceLock::new();
        match codec {
            Codec::H264 => H264.get_or_init(|| encode(codec)),
            Codec::H265 => H265.get_or_init(|| encode(codec)),
        }
    }

    fn encode(codec: Codec) -> Stream {
        let dir = tempfile::tempdir().unwrap();
        // open-gop=0: x265 key frames are IDR, so every fragment decodes on its own.
        let encoder = match codec {
            Codec::H264 => {
                "x264enc bframes=0 key-int-max=30 option-string=scenecut=0 \
                ! h264parse ! video/x-h264,stream-format=avc,alignment=au"
            }
            Codec::H265 => {
                "x265enc key-int-max=30 option-string=bframes=0:scenecut=0:open-gop=0 \
                ! h265parse ! video/x-h265,stream-format=hvc1,alignment=au"
            }
        };
        let pipeline = format!(
            "videotestsrc num-buffers={FRAMES} pattern=ball \
             ! video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate=30/1 \
             ! {encoder} ! multifilesink location={}/au-%05d.bin",
            dir.path().display()
        );
        // -v prints the negotiated caps, which carry codec_data (the decoder config record).
        let out = Command::new("gst-launch-1.0")
            .arg("-v")
            .args(pipeline.split_whitespace())
            .output()
            .expect("cannot run gst-launch-1.0 (installed by scripts/bootstrap)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "gst-launch-1.0 failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hex = stdout
            .split("codec_data=(buffer)")
            .nth(1)
            .expect("no codec_data in gst-launch caps output");
        let hex: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
        let record = ::hex::decode(&hex).unwrap();
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let aus: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
        assert_eq!(aus.len(), FRAMES, "expected one file per access unit");
        let config = CodecConfig {
            codec,
            width: WIDTH,
            height: HEIGHT,
            record,
        };
        Stream { config, aus }
    }

    /// Whether the access unit holds an IDR (H.264) / IRAP (H.265) picture.
    pub fn is_key(config: &CodecConfig, mut au: &[u8]) -> bool {
        let len_size = config.nal_length_size().unwrap() as usize;
        while au.len() > len_size {
            let len = au[..len_size]
                .iter()
                .fold(0usize, |n, b| n << 8 | *b as usize);
            let nal = &au[len_size..len_size + len];
            let key = match config.codec {
                Codec::H264 => nal[0] & 0x1f == 5,
                Codec::H265 => (16..=23).contains(&(nal[0] >> 1 & 0x3f)),
            };
            if key {
                return true;
            }
            au = &au[len_size + len..];
        }
        false
    }

    /// `ffprobe -show_streams -show_packets` as JSON; panics on any ffprobe complaint.
    pub fn ffprobe(path: &Path) -> serde_json::Value {
        let out = Command::new("ffprobe")
            .args("-v error -show_streams -show_packets -of json".split(' '))
            .arg(path)
            .output()
            .expect("cannot run ffprobe (installed by scripts/bootstrap)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "ffprobe: {stderr}"
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Fully decodes the file with ffmpeg, failing on any error message.
    pub fn ffmpeg_decodes(path: &Path) {
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-xerror", "-i"])
            .arg(path)
            .args(["-f", "null", "-"])
            .output()
            .expect("cannot run ffmpeg (installed by scripts/bootstrap)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "ffmpeg decode: {stderr}"
        );
    }
}
