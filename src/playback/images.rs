//! Still images of stored video (KVS GetImages, REST snapshot.jpg): the key frame that starts the
//! stored fragment covering a time is decoded with GStreamer (init segment + that fragment through
//! an appsrc), then scaled and encoded as JPEG or PNG with the `image` crate.
//!
//! Only a fragment's first sample is guaranteed to be a key frame (the fragmenter cuts in front of
//! one), so an image for time T is the picture at the start of the fragment holding T: at most one
//! fragment duration before T. Decodes run on blocking threads, at most [`MAX_DECODES`] at once
//! ([`decode_slot`]), so a burst of image requests cannot take the CPU from recording.

use crate::clock::UnixNanos;
use crate::store::{FragmentMeta, StoreError, StoreReader, TimeOrigin};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use image::{ImageEncoder, RgbImage};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Image decodes running at once, over all requests (the machine may have 2 cores, and
/// recording must keep one).
pub const MAX_DECODES: usize = 1;
/// How far before a time the fragment holding it may start. Fragments are at most 10 s long
/// unless the camera's GOP is longer; a minute covers any sane GOP.
const LOOKBACK_NS: i64 = 60 * 1_000_000_000;
/// A decode that takes longer has hung (a fragment decodes in milliseconds).
const DECODE_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest output the KVS model allows (WidthPixels/HeightPixels maxima).
pub const MAX_WIDTH: u32 = 3840;
pub const MAX_HEIGHT: u32 = 2160;

static DECODES: Semaphore = Semaphore::const_new(MAX_DECODES);

/// Waits for a decode slot; hold the permit while decoding (on a blocking thread).
pub async fn decode_slot() -> SemaphorePermit<'static> {
    // the semaphore is never closed
    DECODES.acquire().await.expect("decode semaphore is open")
}

/// Why an image could not be made from a stored fragment.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("GStreamer: {0}")]
    Gst(#[from] gst::glib::Error),
    #[error("GStreamer element {0} is missing")]
    Element(&'static str),
    #[error("the decoder did not start")]
    Start,
    #[error("decoder: {error} ({})", debug.as_deref().unwrap_or_default())]
    Bus {
        error: gst::glib::Error,
        debug: Option<String>,
    },
    #[error("the fragment decoded to no picture")]
    NoPicture,
    #[error("no picture decoded within {}s", DECODE_TIMEOUT.as_secs())]
    Timeout,
    #[error("the decoder gave no RGB picture (caps {0})")]
    Format(String),
    #[error("cannot encode the image: {0}")]
    Encode(#[from] image::ImageError),
}

/// Output encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Quality 1..=100.
    Jpeg(u8),
    Png,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg(_) => "image/jpeg",
            Format::Png => "image/png",
        }
    }
}

/// Requested output size: both given: exactly that (stretched); one given: the other follows
/// the source's aspect ratio; none: the source size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Size {
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl Size {
    /// The output size for a `src_w` x `src_h` picture (never 0, never above the maxima).
    pub fn resolve(self, src_w: u32, src_h: u32) -> (u32, u32) {
        let scaled = |given: u32, num: u32, den: u32| {
            ((u64::from(given) * u64::from(num) + u64::from(den) / 2) / u64::from(den.max(1)))
                .max(1) as u32
        };
        let (w, h) = match (self.width, self.height) {
            (Some(w), Some(h)) => (w, h),
            (Some(w), None) => (w, scaled(w, src_h, src_w)),
            (None, Some(h)) => (scaled(h, src_w, src_h), h),
            (None, None) => (src_w, src_h),
        };
        (w.clamp(1, MAX_WIDTH), h.clamp(1, MAX_HEIGHT))
    }
}

/// Times from clients have millisecond precision (RFC 3339 `...32.618Z`, KVS epoch seconds with
/// three decimals) while fragments start on a nanosecond: a detection at a fragment's first
/// frame is reported at `...32.618Z` for a start of `...32.618412Z`.
const CLIENT_PRECISION_NS: UnixNanos = 1_000_000;

/// The fragment whose `origin` time span holds `t` (start <= t < start + duration), if any; else
/// one starting within the millisecond after `t` (see [`CLIENT_PRECISION_NS`]).
pub fn fragment_at(
    reader: &StoreReader,
    stream: &str,
    origin: TimeOrigin,
    t: UnixNanos,
) -> Result<Option<FragmentMeta>, StoreError> {
    let last_ns = t.saturating_add(CLIENT_PRECISION_NS - 1);
    let found = fragments_covering(reader, stream, origin, t, last_ns)?;
    let exact = found.iter().rev().find(|f| covers(f, origin, t));
    Ok(exact
        .or_else(|| found.iter().find(|f| covers(f, origin, last_ns)))
        .cloned())
}

/// Fragments that may hold times in `[start, end]` (a superset: filter with [`covers`]).
pub fn fragments_covering(
    reader: &StoreReader,
    stream: &str,
    origin: TimeOrigin,
    start: UnixNanos,
    end: UnixNanos,
) -> Result<Vec<FragmentMeta>, StoreError> {
    reader.fragments_between(
        stream,
        origin,
        start.saturating_sub(LOOKBACK_NS),
        end,
        None,
        usize::MAX,
    )
}

/// Whether `f`'s span on `origin`'s clock holds `t`.
pub fn covers(f: &FragmentMeta, origin: TimeOrigin, t: UnixNanos) -> bool {
    let start = match origin {
        TimeOrigin::Producer => f.producer_ns,
        TimeOrigin::Server => f.server_ns,
    };
    start <= t && t < start + f.duration_ns.max(1)
}

/// The newest stored fragment of `stream`, if any.
pub fn latest_fragment(
    reader: &StoreReader,
    stream: &str,
) -> Result<Option<FragmentMeta>, StoreError> {
    let Some(end) = reader
        .streams()?
        .into_iter()
        .find(|s| s.name == stream)
        .and_then(|s| s.last_producer_end_ns)
    else {
        // a known camera without fragments yet; an unknown one is UnknownCamera
        reader.stream_details(stream)?;
        return Ok(None);
    };
    fragment_at(reader, stream, TimeOrigin::Producer, end - 1)
}

/// Decodes the key frame starting `f` (blocking: call on a blocking thread with a
/// [`decode_slot`] held).
pub fn decode_key_frame(reader: &StoreReader, f: &FragmentMeta) -> Result<RgbImage, FrameError> {
    let init = reader.init(f.init_id)?;
    let fragment = reader.read_fragment(f)?;
    let mut mp4 = init.data;
    mp4.extend_from_slice(&fragment);
    decode_first_picture(mp4)
}

/// Scales `picture` to `size` and encodes it.
pub fn encode(picture: &RgbImage, size: Size, format: Format) -> Result<Vec<u8>, FrameError> {
    let (w, h) = size.resolve(picture.width(), picture.height());
    let scaled;
    let picture = if (w, h) == picture.dimensions() {
        picture
    } else {
        // Triangle widens its kernel with the scale factor: every source pixel counts when
        // shrinking (no aliasing), at a fraction of CatmullRom's cost.
        scaled = image::imageops::resize(picture, w, h, image::imageops::FilterType::Triangle);
        &scaled
    };
    let mut out = Vec::new();
    match format {
        Format::Jpeg(q) => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q).encode_image(picture)?
        }
        Format::Png => image::codecs::png::PngEncoder::new(&mut out).write_image(
            picture.as_raw(),
            w,
            h,
            image::ExtendedColorType::Rgb8,
        )?,
    }
    Ok(out)
}

/// The first picture of a fragmented MP4 (init + one fragment) as RGB. The fragment starts with
/// a key frame, so the first decoded picture is that key frame.
fn decode_first_picture(mp4: Vec<u8>) -> Result<RgbImage, FrameError> {
    crate::gst_init()?;
    let pipeline = gst::parse::launch(
        "appsrc name=src format=bytes caps=video/quicktime ! qtdemux ! decodebin \
         ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false max-buffers=1",
    )?
    .downcast::<gst::Pipeline>()
    .map_err(|_| FrameError::Element("pipeline"))?;
    let result = run(&pipeline, mp4);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn run(pipeline: &gst::Pipeline, mp4: Vec<u8>) -> Result<RgbImage, FrameError> {
    let by_name = |n: &'static str| pipeline.by_name(n).ok_or(FrameError::Element(n));
    let src = by_name("src")?
        .downcast::<gst_app::AppSrc>()
        .map_err(|_| FrameError::Element("appsrc"))?;
    let sink = by_name("sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| FrameError::Element("appsink"))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| bus_error(pipeline).unwrap_or(FrameError::Start))?;
    // the whole file in one buffer, then EOS so the decoder drains what it holds
    src.push_buffer(gst::Buffer::from_mut_slice(mp4))
        .map_err(|_| bus_error(pipeline).unwrap_or(FrameError::Start))?;
    let _ = src.end_of_stream();
    let deadline = Instant::now() + DECODE_TIMEOUT;
    let sample = loop {
        if let Some(s) = sink.try_pull_sample(gst::ClockTime::from_mseconds(50)) {
            break s;
        }
        if let Some(e) = bus_error(pipeline) {
            return Err(e);
        }
        if sink.is_eos() {
            return Err(FrameError::NoPicture);
        }
        if Instant::now() > deadline {
            return Err(FrameError::Timeout);
        }
    };
    let caps = || {
        sample
            .caps()
            .map_or_else(|| "none".into(), |c| c.to_string())
    };
    let info = sample
        .caps()
        .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
        .ok_or_else(|| FrameError::Format(caps()))?;
    let (width, height) = (info.width(), info.height());
    let (stride, data) = crate::detect::image::rgb_plane(&sample, width, height)
        .ok_or_else(|| FrameError::Format(caps()))?;
    let row = width as usize * 3;
    let mut pixels = Vec::with_capacity(row * height as usize);
    for r in data.chunks(stride).take(height as usize) {
        pixels.extend_from_slice(&r[..row]);
    }
    RgbImage::from_raw(width, height, pixels).ok_or_else(|| FrameError::Format(caps()))
}

fn bus_error(pipeline: &gst::Pipeline) -> Option<FrameError> {
    let bus = pipeline.bus()?;
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(FrameError::Bus {
                error: e.error(),
                debug: e.debug().map(|d| d.to_string()),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{fmp4, test_support, Codec};

    #[test]
    fn sizes_keep_the_aspect_ratio_when_one_side_is_given() {
        let s = |width, height| Size { width, height };
        assert_eq!(s(None, None).resolve(640, 480), (640, 480));
        assert_eq!(s(Some(320), None).resolve(640, 480), (320, 240));
        assert_eq!(s(None, Some(120)).resolve(640, 480), (160, 120));
        assert_eq!(s(Some(100), Some(100)).resolve(640, 480), (100, 100));
        assert_eq!(s(Some(1), None).resolve(640, 480), (1, 1));
        assert_eq!(s(Some(3840), None).resolve(64, 4800), (3840, 2160));
    }

    /// A stored-fragment stand-in: init + the first GOP of real video from the test encoder.
    fn fragment(codec: Codec) -> Vec<u8> {
        let stream = test_support::stream(codec);
        let mut mp4 = fmp4::init_segment(&stream.config).unwrap();
        let samples: Vec<fmp4::Sample> = stream.aus[..test_support::GOP]
            .iter()
            .map(|au| fmp4::Sample {
                data: au,
                duration: test_support::FRAME_TICKS,
                is_key: test_support::is_key(&stream.config, au),
                composition_offset: 0,
            })
            .collect();
        mp4.extend(fmp4::fragment(1, 0, &samples).unwrap());
        mp4
    }

    #[test]
    fn fragments_decode_to_their_first_picture_and_encode() {
        for codec in [Codec::H264, Codec::H265] {
            let mp4 = fragment(codec);
            let started = Instant::now();
            let picture = decode_first_picture(mp4).unwrap();
            eprintln!("{codec} decode: {:?}", started.elapsed());
            assert_eq!(
                picture.dimensions(),
                (test_support::WIDTH, test_support::HEIGHT)
            );
            let jpeg = encode(
                &picture,
                Size {
                    width: Some(32),
                    height: None,
                },
                Format::Jpeg(80),
            )
            .unwrap();
            let back =
                image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
            assert_eq!((back.width(), back.height()), (32, 24));
            let png = encode(&picture, Size::default(), Format::Png).unwrap();
            let back = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
            assert_eq!(back.to_rgb8(), picture);
        }
    }

    #[test]
    fn a_fragment_covers_its_own_span_only() {
        let f = FragmentMeta {
            stream: "cam".into(),
            fragment_number: 7,
            producer_ns: 10_000,
            server_ns: 50_000,
            duration_ns: 1_000,
            size: 1,
            init_id: 1,
            discontinuity: false,
            sample_count: 1,
            segment_id: 1,
            offset: 0,
        };
        let p = TimeOrigin::Producer;
        assert!(!covers(&f, p, 9_999));
        assert!(covers(&f, p, 10_000) && covers(&f, p, 10_999));
        assert!(
            !covers(&f, p, 11_000),
            "the end belongs to the next fragment"
        );
        assert!(covers(&f, TimeOrigin::Server, 50_500) && !covers(&f, TimeOrigin::Server, 10_500));
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_hang() {
        let e = decode_first_picture(b"not an mp4 at all".to_vec()).unwrap_err();
        assert!(
            matches!(e, FrameError::Bus { .. } | FrameError::NoPicture),
            "{e:?}"
        );
    }
}
