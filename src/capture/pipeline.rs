//! GStreamer pipelines per source kind. Every pipeline ends in one appsink that receives
//! parsed, access-unit aligned H.264 (avc) or H.265 (hvc1) with the codec configuration in caps.

use super::outputs::{DetectBranchSpec, Outputs};
use super::{CaptureError, RawAu};
use crate::config::{
    CameraConfig, RtspBackend, RtspTransport, SourceConfig, SourceKind, VideoCodec,
};
use crate::media::{Codec, CodecConfig};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::Arc;

pub struct BuiltPipeline {
    pub pipeline: gst::Pipeline,
    /// Encoded access units for recording (absent on a detect-only sub-stream pipeline).
    pub appsink: Option<gst_app::AppSink>,
    /// Decoded RGB frames at the model input size (when detection is on).
    pub detect_sink: Option<gst_app::AppSink>,
}

const H264_CAPS: &str = "video/x-h264,stream-format=avc,alignment=au";
const H265_CAPS: &str = "video/x-h265,stream-format=hvc1,alignment=au";

/// A capsfilter in a launch description (bare caps cannot end a bin description).
fn caps_element(caps: &str) -> String {
    format!("capsfilter caps=\"{caps}\"")
}

/// GStreamer elements a camera needs at run time (for `vidgest check` and `doctor`): none for
/// recording on retina, the source pipeline's elements otherwise, plus the decode chain when
/// detection is on (an `appsrc` feed on retina, a branch of the GStreamer pipeline otherwise, or
/// its own rtspsrc pipeline for a `detect.source` sub-stream).
pub fn required_elements(cam: &CameraConfig) -> Vec<&'static str> {
    const RTSPSRC: [&str; 7] = [
        "rtspsrc",
        "rtph264depay",
        "rtph265depay",
        "h264parse",
        "h265parse",
        "capsfilter",
        "fakesink",
    ];
    let source = &cam.source;
    let retina = source.backend() == RtspBackend::Retina;
    let mut v = Vec::new();
    if !retina {
        v.extend(["appsink", "capsfilter", "h264parse", "h265parse"]);
        match source.kind {
            SourceKind::Rtsp => v.extend(RTSPSRC),
            SourceKind::File => {
                v.extend(["filesrc", "parsebin", "fakesink", "clocksync", "identity"])
            }
            SourceKind::V4l2 => v.extend(["v4l2src", "jpegdec", "videoconvert", "x264enc"]),
            SourceKind::Test => {
                v.extend(["videotestsrc", "videoconvert"]);
                v.push(match source.codec() {
                    VideoCodec::H264 => "x264enc",
                    VideoCodec::H265 => "x265enc",
                });
            }
        }
    }
    if let Some(detect) = cam.detection() {
        match (&detect.source, retina) {
            // A detect-only sub-stream runs its own rtspsrc pipeline (supervisor.rs).
            (Some(_), _) => v.extend(RTSPSRC.iter().chain(&["queue"])),
            (None, true) => v.push("appsrc"),
            (None, false) => v.extend(["tee", "queue"]),
        }
        let decoders: &[&'static str] = match (source.kind, detect.source.is_some()) {
            (SourceKind::Test, false) => match source.codec() {
                VideoCodec::H264 => &["avdec_h264"],
                VideoCodec::H265 => &["avdec_h265"],
            },
            (SourceKind::V4l2, false) => &["avdec_h264"],
            // The camera decides (SDP, file contents).
            _ => &["avdec_h264", "avdec_h265"],
        };
        v.extend(decoders);
        v.extend([
            "videorate",
            "capsfilter",
            "videoscale",
            "videoconvert",
            "appsink",
        ]);
    }
    let mut seen = std::collections::HashSet::new();
    v.retain(|e| seen.insert(*e));
    v
}

/// Names of elements from `names` that this GStreamer installation lacks.
pub fn check_elements(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| gst::ElementFactory::find(n).is_none())
        .map(|n| n.to_string())
        .collect()
}

/// Why a camera pipeline (or a branch added to it while running) could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("GStreamer cannot start: {0}; run scripts/bootstrap")]
    Init(gst::glib::Error),
    #[error("GStreamer element `{factory}` is missing: run scripts/bootstrap (or install the GStreamer plugin packages)")]
    MissingElement { factory: String },
    #[error("invalid pipeline `{desc}`: {source}")]
    Parse {
        desc: String,
        source: gst::glib::Error,
    },
    #[error("{action}: {source}")]
    Gst {
        action: &'static str,
        source: gst::glib::BoolError,
    },
    #[error("{action}: {source}")]
    PadLink {
        action: &'static str,
        source: gst::PadLinkError,
    },
    #[error("{action}: {source}")]
    State {
        action: &'static str,
        source: gst::StateChangeError,
    },
    #[error("{0} has no `{1}` pad")]
    NoPad(&'static str, &'static str),
    #[error("file `{0}` does not exist")]
    FileMissing(String),
    #[error("camera pipeline has no output")]
    NoOutput,
}

/// `map_err` adapter for GStreamer's untyped failures, naming what we were doing.
pub(super) fn gst_err(action: &'static str) -> impl FnOnce(gst::glib::BoolError) -> PipelineError {
    move |source| PipelineError::Gst { action, source }
}

pub(super) fn make(factory: &str) -> Result<gst::Element, PipelineError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| PipelineError::MissingElement {
            factory: factory.to_string(),
        })
}

/// Builds a camera pipeline: recording (`record`), a detect branch (`detect`), or both.
pub fn build(
    cam: &CameraConfig,
    record: bool,
    detect: Option<&DetectBranchSpec>,
) -> Result<BuiltPipeline, CaptureError> {
    let err = |source: PipelineError| CaptureError::Build {
        camera: cam.name.clone(),
        source,
    };
    crate::gst_init().map_err(|e| err(PipelineError::Init(e)))?;
    let pipeline = gst::Pipeline::with_name(&format!("camera-{}", cam.name));
    let appsink = record.then(|| {
        gst_app::AppSink::builder()
            .name("sink")
            .max_buffers(200)
            .drop(false)
            // Pacing (file sources) happens before the tee, in `clocksync`.
            .sync(false)
            .build()
    });
    let detect_sink = detect.map(|_| {
        gst_app::AppSink::builder()
            .name("detect-sink")
            .max_buffers(1)
            .drop(true)
            .sync(false)
            .build()
    });
    // No preroll wait: `clocksync` (file pacing) only lets data through once PLAYING.
    for sink in appsink.iter().chain(detect_sink.iter()) {
        sink.set_property("async", false);
    }
    let outputs = Arc::new(Outputs::new(
        appsink.clone(),
        detect.cloned().zip(detect_sink.clone()),
    ));
    let src = &cam.source;
    match src.kind {
        SourceKind::Rtsp => build_rtsp(&pipeline, &outputs, src).map_err(err)?,
        SourceKind::File => build_file(&pipeline, &outputs, src).map_err(err)?,
        SourceKind::Test => {
            let codec = match src.codec() {
                VideoCodec::H264 => Codec::H264,
                VideoCodec::H265 => Codec::H265,
            };
            build_launch(&pipeline, &outputs, codec, &test_description(src)).map_err(err)?
        }
        SourceKind::V4l2 => {
            build_launch(&pipeline, &outputs, Codec::H264, &v4l2_description(src)).map_err(err)?
        }
    }
    Ok(BuiltPipeline {
        pipeline,
        appsink,
        detect_sink,
    })
}

fn encoder_description(codec: VideoCodec, gop: u32, kbps: u32) -> String {
    match codec {
        VideoCodec::H264 => format!(
            "x264enc tune=zerolatency speed-preset=ultrafast bframes=0 bitrate={kbps} key-int-max={gop} option-string=scenecut=0 ! h264parse ! {}",
            caps_element(H264_CAPS)
        ),
        VideoCodec::H265 => format!(
            "x265enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={gop} option-string=scenecut=0:bframes=0:open-gop=0 ! h265parse ! {}",
            caps_element(H265_CAPS)
        ),
    }
}

fn test_description(s: &SourceConfig) -> String {
    let pattern = s.pattern.as_deref().unwrap_or("ball");
    format!(
        "videotestsrc is-live=true pattern={pattern} ! video/x-raw,format=I420,width={},height={},framerate={}/1 ! {}",
        s.width(),
        s.height(),
        s.fps(),
        encoder_description(s.codec(), s.gop(), s.bitrate())
    )
}

/// Prefers the camera's own H.264; otherwise MJPEG or raw frames are encoded with x264enc.
fn v4l2_description(s: &SourceConfig) -> String {
    let device = s
        .device
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let mut dims = String::new();
    if let (Some(w), Some(h)) = (s.width, s.height) {
        dims.push_str(&format!(",width={w},height={h}"));
    }
    if let Some(f) = s.fps {
        dims.push_str(&format!(",framerate={f}/1"));
    }
    let offers = v4l2_formats(&device);
    let v4l2 = format!("v4l2src device=\"{device}\"");
    if offers.iter().any(|f| f == "video/x-h264") {
        format!(
            "{v4l2} ! video/x-h264{dims} ! h264parse ! {}",
            caps_element(H264_CAPS)
        )
    } else if offers.iter().any(|f| f == "image/jpeg") {
        format!(
            "{v4l2} ! image/jpeg{dims} ! jpegdec ! videoconvert ! video/x-raw,format=I420 ! {}",
            encoder_description(VideoCodec::H264, s.gop(), s.bitrate())
        )
    } else {
        format!(
            "{v4l2} ! video/x-raw{dims} ! videoconvert ! video/x-raw,format=I420 ! {}",
            encoder_description(VideoCodec::H264, s.gop(), s.bitrate())
        )
    }
}

/// Media types the device offers (empty when it cannot be opened).
fn v4l2_formats(device: &str) -> Vec<String> {
    let Ok(src) = gst::ElementFactory::make("v4l2src")
        .property("device", device)
        .build()
    else {
        return Vec::new();
    };
    if src.set_state(gst::State::Ready).is_err() {
        let _ = src.set_state(gst::State::Null);
        return Vec::new();
    }
    let names = src
        .static_pad("src")
        .map(|p| p.query_caps(None))
        .map(|caps| caps.iter().map(|s| s.name().to_string()).collect())
        .unwrap_or_default();
    let _ = src.set_state(gst::State::Null);
    names
}

fn build_launch(
    pipeline: &gst::Pipeline,
    outputs: &Outputs,
    codec: Codec,
    desc: &str,
) -> Result<(), PipelineError> {
    let bin =
        gst::parse::bin_from_description(desc, true).map_err(|source| PipelineError::Parse {
            desc: desc.to_string(),
            source,
        })?;
    pipeline
        .add(&bin)
        .map_err(gst_err("adding the source bin"))?;
    let entry = outputs.attach(pipeline, codec)?;
    bin.link(&entry)
        .map_err(gst_err("linking the source bin to the outputs"))
}

fn build_rtsp(
    pipeline: &gst::Pipeline,
    outputs: &Arc<Outputs>,
    s: &SourceConfig,
) -> Result<(), PipelineError> {
    let location = s.url_without_credentials().unwrap_or_default();
    let src = make("rtspsrc")?;
    src.set_property("location", &location);
    src.set_property("latency", s.latency().as_millis() as u32);
    src.set_property("tcp-timeout", s.connect_timeout().as_micros() as u64);
    src.set_property("timeout", s.connect_timeout().as_micros() as u64);
    // RTP timestamps as sent: the default (slave) mode re-times pictures from their arrival and
    // scrambles the presentation order of B-frame streams. Clock drift is handled by the recorder.
    src.set_property_from_str("buffer-mode", "none");
    src.set_property_from_str(
        "protocols",
        match s.transport() {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
            RtspTransport::Auto => "tcp+udp+udp-mcast",
        },
    );
    if let Some((user, pass)) = s.credentials() {
        src.set_property("user-id", &user);
        src.set_property("user-pw", &pass);
    }
    pipeline.add(&src).map_err(gst_err("adding rtspsrc"))?;
    let pipeline_weak = pipeline.downgrade();
    let outputs = outputs.clone();
    src.connect_pad_added(move |_src, pad| {
        let Some(pipeline) = pipeline_weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let Some(st) = caps.structure(0) else { return };
        let media = st.get::<&str>("media").unwrap_or("");
        let encoding = st.get::<&str>("encoding-name").unwrap_or("").to_ascii_uppercase();
        let chain = match (media, encoding.as_str()) {
            ("video", "H264") if !outputs.is_linked() => Some(("rtph264depay", "h264parse", H264_CAPS)),
            ("video", "H265") if !outputs.is_linked() => Some(("rtph265depay", "h265parse", H265_CAPS)),
            _ => None,
        };
        let result = match chain {
            Some((depay, parse, caps)) => link_chain(&pipeline, pad, &[depay, parse], caps, &outputs),
            None => {
                if media == "video" && !outputs.is_linked() {
                    tracing::error!(pipeline = %pipeline.name(), "camera sends video as `{encoding}`: only H.264 and H.265 can be recorded");
                }
                link_fakesink(&pipeline, pad)
            }
        };
        if let Err(e) = result {
            tracing::error!(pipeline = %pipeline.name(), "cannot link RTSP stream: {e}");
        }
    });
    Ok(())
}

fn build_file(
    pipeline: &gst::Pipeline,
    outputs: &Arc<Outputs>,
    s: &SourceConfig,
) -> Result<(), PipelineError> {
    let path = s
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if !std::path::Path::new(&path).is_file() {
        return Err(PipelineError::FileMissing(path));
    }
    let src = make("filesrc")?;
    src.set_property("location", &path);
    let parse = make("parsebin")?;
    pipeline
        .add_many([&src, &parse])
        .map_err(gst_err("adding filesrc and parsebin"))?;
    src.link(&parse)
        .map_err(gst_err("linking filesrc to parsebin"))?;
    let pipeline_weak = pipeline.downgrade();
    let outputs = outputs.clone();
    // Real-time pacing must happen before the detect tee, or the source would race ahead and
    // hand the detector the whole file in one burst; `identity` passes through otherwise.
    let pace = if s.realtime() {
        "clocksync"
    } else {
        "identity"
    };
    parse.connect_pad_added(move |_p, pad| {
        let Some(pipeline) = pipeline_weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let name = caps.structure(0).map(|s| s.name().to_string()).unwrap_or_default();
        let result = match name.as_str() {
            "video/x-h264" if !outputs.is_linked() => link_chain(&pipeline, pad, &["h264parse", pace], H264_CAPS, &outputs),
            "video/x-h265" if !outputs.is_linked() => link_chain(&pipeline, pad, &["h265parse", pace], H265_CAPS, &outputs),
            other => {
                if other.starts_with("video/") && !outputs.is_linked() {
                    tracing::error!(pipeline = %pipeline.name(), "file video is `{other}`: only H.264 and H.265 can be recorded without re-encoding");
                }
                link_fakesink(&pipeline, pad)
            }
        };
        if let Err(e) = result {
            tracing::error!(pipeline = %pipeline.name(), "cannot link file stream: {e}");
        }
    });
    Ok(())
}

/// pad ! e1 ! e2 ... ! capsfilter(caps) ! sink, added to a running pipeline.
fn link_chain(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    factories: &[&'static str],
    caps: &str,
    outputs: &Outputs,
) -> Result<(), PipelineError> {
    let codec = if caps.starts_with("video/x-h265") {
        Codec::H265
    } else {
        Codec::H264
    };
    let mut elements = factories
        .iter()
        .map(|f| make(f))
        .collect::<Result<Vec<_>, _>>()?;
    let filter = make("capsfilter")?;
    filter.set_property(
        "caps",
        caps.parse::<gst::Caps>()
            .map_err(gst_err("parsing the parser output caps"))?,
    );
    elements.push(filter);
    pipeline
        .add_many(&elements)
        .map_err(gst_err("adding the parser chain"))?;
    gst::Element::link_many(&elements).map_err(gst_err("linking the parser chain"))?;
    let sink = outputs.attach(pipeline, codec)?;
    elements
        .last()
        .expect("capsfilter")
        .link(&sink)
        .map_err(gst_err("linking the parser chain to the outputs"))?;
    for e in &elements {
        e.sync_state_with_parent()
            .map_err(gst_err("starting the parser chain"))?;
    }
    let first_sink = elements[0]
        .static_pad("sink")
        .ok_or(PipelineError::NoPad(factories[0], "sink"))?;
    pad.link(&first_sink)
        .map_err(|source| PipelineError::PadLink {
            action: "linking the source pad to the parser",
            source,
        })?;
    Ok(())
}

/// Streams we do not record (audio, a second video) still need a sink.
fn link_fakesink(pipeline: &gst::Pipeline, pad: &gst::Pad) -> Result<(), PipelineError> {
    let sink = make("fakesink")?;
    sink.set_property("sync", false);
    sink.set_property("async", false);
    pipeline.add(&sink).map_err(gst_err("adding a fakesink"))?;
    sink.sync_state_with_parent()
        .map_err(gst_err("starting a fakesink"))?;
    let sink_pad = sink
        .static_pad("sink")
        .ok_or(PipelineError::NoPad("fakesink", "sink"))?;
    pad.link(&sink_pad)
        .map_err(|source| PipelineError::PadLink {
            action: "linking an unused stream to a fakesink",
            source,
        })?;
    Ok(())
}

/// Converts one appsink sample; `cache` avoids re-reading identical caps for every frame.
pub fn sample_to_au(
    sample: &gst::Sample,
    cache: &mut Option<(gst::Caps, Arc<CodecConfig>)>,
) -> Option<RawAu> {
    let buffer = sample.buffer()?;
    let caps = sample.caps()?;
    let config = match cache {
        Some((c, cfg)) if c.as_ref() == caps => cfg.clone(),
        _ => {
            let cfg = Arc::new(codec_config(caps)?);
            *cache = Some((caps.to_owned(), cfg.clone()));
            cfg
        }
    };
    let segment = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>());
    let running = |t: Option<gst::ClockTime>| -> Option<u64> {
        let t = t?;
        match segment {
            Some(seg) => seg.to_running_time(t).map(|r| r.nseconds()),
            None => Some(t.nseconds()),
        }
    };
    let map = buffer.map_readable().ok()?;
    Some(RawAu {
        data: map.as_slice().to_vec(),
        pts_ns: running(buffer.pts()),
        dts_ns: running(buffer.dts()),
        duration_ns: buffer.duration().map(|d| d.nseconds()),
        is_key: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        config,
        after_gap: false,
    })
}

/// Codec, size and decoder configuration record from parser caps.
fn codec_config(caps: &gst::CapsRef) -> Option<CodecConfig> {
    let s = caps.structure(0)?;
    let codec = match s.name().as_str() {
        "video/x-h264" => Codec::H264,
        "video/x-h265" => Codec::H265,
        _ => return None,
    };
    let record = s.get::<gst::Buffer>("codec_data").ok()?;
    let record = record.map_readable().ok()?.as_slice().to_vec();
    Some(CodecConfig {
        codec,
        width: s.get::<i32>("width").ok()? as u32,
        height: s.get::<i32>("height").ok()? as u32,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_descriptions_parse() {
        gst::init().unwrap();
        let cfg: crate::config::Config = crate::config::Config::parse(
            "[agent]\ndata_dir = \"/tmp/x\"\n[[camera]]\nname = \"t\"\n[camera.source]\nkind = \"test\"\n[[camera]]\nname = \"w\"\n[camera.source]\nkind = \"v4l2\"\ndevice = \"/dev/video-none\"\nwidth = 640\nheight = 480\n",
        )
        .unwrap();
        for cam in &cfg.cameras {
            let built = build(cam, true, None).unwrap_or_else(|e| panic!("{e}"));
            assert!(built.appsink.is_some() && built.detect_sink.is_none());
        }
    }

    #[test]
    fn retina_cameras_need_gstreamer_only_for_detection() {
        let cfg = crate::config::Config::parse(
            "[agent]\ndata_dir = \"/tmp/x\"\n\
             [[camera]]\nname = \"r\"\n[camera.source]\nkind = \"rtsp\"\nurl = \"rtsp://h/a\"\n\
             [[camera]]\nname = \"rd\"\n[camera.source]\nkind = \"rtsp\"\nurl = \"rtsp://h/b\"\n[camera.detect]\nfps = 2\n\
             [[camera]]\nname = \"rs\"\n[camera.source]\nkind = \"rtsp\"\nurl = \"rtsp://h/c\"\n[camera.detect]\nsource = \"rtsp://h/sub\"\n\
             [[camera]]\nname = \"g\"\n[camera.source]\nkind = \"rtsp\"\nbackend = \"gstreamer\"\nurl = \"rtsp://h/d\"\n",
        )
        .unwrap();
        let need = |name: &str| required_elements(cfg.camera(name).unwrap());
        assert_eq!(need("r"), Vec::<&str>::new());
        assert_eq!(
            need("rd"),
            [
                "appsrc",
                "avdec_h264",
                "avdec_h265",
                "videorate",
                "capsfilter",
                "videoscale",
                "videoconvert",
                "appsink"
            ]
        );
        // The detect sub-stream is received by rtspsrc whatever the recording backend.
        assert!(need("rs").contains(&"rtspsrc") && need("rs").contains(&"avdec_h264"));
        assert!(need("g").contains(&"rtspsrc") && !need("g").contains(&"avdec_h264"));
        // Whatever is listed exists in the bootstrap's GStreamer (the decode chain is real).
        gst::init().unwrap();
        for cam in &cfg.cameras {
            assert_eq!(
                check_elements(&required_elements(cam)),
                Vec::<String>::new()
            );
        }
    }

    #[test]
    fn build_errors_name_camera_and_cause() {
        gst::init().unwrap();
        let cfg = crate::config::Config::parse(
            "[agent]\ndata_dir = \"/tmp/x\"\n[[camera]]\nname = \"door\"\n[camera.source]\nkind = \"file\"\npath = \"/nonexistent/clip.mp4\"\n",
        )
        .unwrap();
        let e = build(&cfg.cameras[0], true, None)
            .err()
            .expect("missing file");
        assert!(
            matches!(&e, CaptureError::Build { camera, source: PipelineError::FileMissing(p) }
                if camera == "door" && p == "/nonexistent/clip.mp4"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "camera door: cannot build pipeline: file `/nonexistent/clip.mp4` does not exist"
        );
        let missing = make("no-such-element").unwrap_err().to_string();
        assert!(
            missing.contains("`no-such-element` is missing: run scripts/bootstrap"),
            "{missing}"
        );
    }
}
