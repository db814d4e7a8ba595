//! Capture: one GStreamer pipeline per camera (or, for RTSP cameras on `backend = "retina"`, a
//! tokio task), a supervisor that reconnects with backoff, and a recorder that turns encoded
//! access units into stored fragments. Recording never decodes.

pub(crate) mod backoff;
mod detect_feed;
mod detection;
mod linker;
mod normalize;
mod outputs;
mod pipeline;
mod policy;
mod recorder;
mod rtsp;
mod status;
mod supervisor;

pub use crate::lifecycle::Shutdown;
pub use backoff::Backoff;
pub use detect_feed::{frame_sink, DetectFeed, DetectFeedError};
pub use detection::{CameraDetect, DetectFrame, DetectionPool, DetectionResult, FrameTime};
pub use linker::{DetectionLinker, RecordSink};
pub use normalize::Normalizer;
pub use outputs::DetectBranchSpec;
pub use pipeline::{check_elements, required_elements, sample_to_au, PipelineError};
pub use recorder::Recorder;
pub use status::{CameraState, CameraStatus, Counters};
pub use supervisor::{spawn_camera, CameraHandle, DetectWiring};

use crate::media::CodecConfig;
use std::sync::Arc;

/// An access unit as it leaves the pipeline, before normalization.
#[derive(Debug, Clone)]
pub struct RawAu {
    pub data: Vec<u8>,
    /// Running time in ns; `None` for split key frames and similar (pitfall 1).
    pub pts_ns: Option<u64>,
    pub dts_ns: Option<u64>,
    pub duration_ns: Option<u64>,
    pub is_key: bool,
    pub config: Arc<CodecConfig>,
    /// Access units right before this one were dropped (queue full): resync at a key frame.
    pub after_gap: bool,
}

/// What the capture side tells a camera's recorder, in order.
#[derive(Debug)]
pub enum CaptureEvent {
    /// A new pipeline session begins (first connect or reconnect).
    SessionStart {
        session: u64,
    },
    Au {
        session: u64,
        au: RawAu,
    },
    /// A looping file source restarted from its beginning: media time starts over.
    LoopRestart {
        session: u64,
    },
    /// The camera's wall clock at media time `media_ns` (an RTCP sender report, retina
    /// backend): the recorder may map the session's media clock with it (docs/capture.md).
    ClockHint {
        session: u64,
        media_ns: u64,
        wall_ns: crate::clock::UnixNanos,
    },
    /// The session ended (error, stall, EOS, shutdown): flush what is pending.
    SessionEnd {
        session: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("camera {camera}: cannot build pipeline: {source}")]
    Build {
        camera: String,
        source: PipelineError,
    },
}
