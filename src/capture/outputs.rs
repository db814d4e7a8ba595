//! Where a camera's parsed video goes: the recording appsink, the detect branch, or both (tee).
//!
//! The detect branch decodes (the only place vidgest decodes): a leaky queue so a slow decoder
//! can never hold up recording, optionally only key frames, the decoder, videorate down to the
//! detect fps, then videoscale + videoconvert to the model input as RGB, into an appsink that
//! keeps only the latest frame.

use super::pipeline::{gst_err, make, PipelineError};
use crate::media::Codec;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct DetectBranchSpec {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub keyframes_only: bool,
    /// Where a retina camera's detect feeds count the access units they drop, across sessions
    /// (`CameraStatus::detect_feed_dropped`, shown in metrics); unused by GStreamer pipelines.
    pub feed_dropped: Arc<AtomicU64>,
}

pub struct Outputs {
    pub record: Option<gst_app::AppSink>,
    pub detect: Option<(DetectBranchSpec, gst_app::AppSink)>,
    linked: Arc<AtomicBool>,
}

impl Outputs {
    pub fn new(
        record: Option<gst_app::AppSink>,
        detect: Option<(DetectBranchSpec, gst_app::AppSink)>,
    ) -> Self {
        Self {
            record,
            detect,
            linked: Arc::default(),
        }
    }

    /// Whether a video stream was already attached (cameras may offer several; we take the first).
    pub fn is_linked(&self) -> bool {
        self.linked.load(Ordering::SeqCst)
    }

    /// Adds the sinks (and tee / detect chain) for a parsed `codec` stream to `pipeline` and
    /// returns the element to link the parser's output into.
    pub fn attach(
        &self,
        pipeline: &gst::Pipeline,
        codec: Codec,
    ) -> Result<gst::Element, PipelineError> {
        self.linked.store(true, Ordering::SeqCst);
        let detect_entry = match &self.detect {
            Some((spec, sink)) => Some(detect_chain(pipeline, codec, spec, sink)?),
            None => None,
        };
        match (&self.record, detect_entry) {
            (Some(rec), None) => {
                add_if_missing(pipeline, rec.upcast_ref())?;
                Ok(rec.clone().upcast())
            }
            (None, Some(det)) => Ok(det),
            (Some(rec), Some(det)) => {
                let tee = make("tee")?;
                // The recording side gets its own queue so the tee never waits on the detector.
                let q = make("queue")?;
                q.set_property("max-size-buffers", 0u32);
                q.set_property("max-size-bytes", 64u32 << 20);
                q.set_property("max-size-time", 0u64);
                add_if_missing(pipeline, rec.upcast_ref())?;
                pipeline
                    .add_many([&tee, &q])
                    .map_err(gst_err("adding the recording tee"))?;
                gst::Element::link_many([&tee, &q, rec.upcast_ref()])
                    .map_err(gst_err("linking the recording tee"))?;
                tee.link(&det)
                    .map_err(gst_err("linking the tee to the detect branch"))?;
                for e in [&tee, &q] {
                    e.sync_state_with_parent()
                        .map_err(gst_err("starting the recording tee"))?;
                }
                Ok(tee)
            }
            (None, None) => Err(PipelineError::NoOutput),
        }
    }
}

fn add_if_missing(pipeline: &gst::Pipeline, e: &gst::Element) -> Result<(), PipelineError> {
    if e.parent().is_none() {
        pipeline.add(e).map_err(gst_err("adding a sink"))?;
    }
    e.sync_state_with_parent()
        .map_err(gst_err("starting a sink"))
}

fn decoder_name(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "avdec_h264",
        Codec::H265 => "avdec_h265",
    }
}

/// `decoder ! videorate (drop to fps) ! scale chain ! RGB capsfilter` as launch text: the part of
/// the detect branch after its input queue, shared with the appsrc feed (`detect_feed`).
/// `skip-to-first`: videorate's first output slot is the first frame, not the segment start; without
/// it, a stream whose first frame comes late in its segment (a connect delay, a biased PTS) gets
/// a burst of frames at the input rate while videorate catches up.
pub(super) fn decode_chain(codec: Codec, spec: &DetectBranchSpec) -> String {
    let decoder = decoder_name(codec);
    let fps_milli = (spec.fps * 1000.0).round().max(1.0) as i32;
    format!(
        "{decoder} name=detect-decoder \
         ! videorate drop-only=true skip-to-first=true ! capsfilter caps=\"video/x-raw,framerate={fps_milli}/1000\" \
         ! {}",
        crate::detect::scale_chain(spec.width, spec.height).replace(
            &format!(
                "video/x-raw,format=RGB,width={},height={}",
                spec.width, spec.height
            ),
            &format!(
                "capsfilter caps=\"video/x-raw,format=RGB,width={},height={}\"",
                spec.width, spec.height
            ),
        )
    )
}

/// queue (leaky) ! [key frames only] ! decoder ! videorate ! videoscale ! videoconvert ! RGB ! appsink
fn detect_chain(
    pipeline: &gst::Pipeline,
    codec: Codec,
    spec: &DetectBranchSpec,
    sink: &gst_app::AppSink,
) -> Result<gst::Element, PipelineError> {
    let decoder = decoder_name(codec);
    let desc = format!(
        "queue name=detect-queue leaky=downstream max-size-buffers=30 max-size-bytes=0 max-size-time=0 \
         ! {}",
        decode_chain(codec, spec)
    );
    let bin = gst::parse::bin_from_description(&desc, true)
        .map_err(|source| PipelineError::Parse { desc, source })?;
    if spec.keyframes_only {
        let pad = bin
            .by_name("detect-decoder")
            .and_then(|dec| dec.static_pad("sink"))
            .ok_or(PipelineError::NoPad(decoder, "sink"))?;
        pad.add_probe(gst::PadProbeType::BUFFER, |_, info| {
            let delta = info
                .buffer()
                .is_some_and(|b| b.flags().contains(gst::BufferFlags::DELTA_UNIT));
            if delta {
                gst::PadProbeReturn::Drop
            } else {
                gst::PadProbeReturn::Ok
            }
        });
    }
    pipeline
        .add(&bin)
        .map_err(gst_err("adding the detect branch"))?;
    add_if_missing(pipeline, sink.upcast_ref())?;
    bin.link(sink)
        .map_err(gst_err("linking the detect branch to its sink"))?;
    bin.sync_state_with_parent()
        .map_err(gst_err("starting the detect branch"))?;
    Ok(bin.upcast())
}
