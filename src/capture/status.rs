//! Per-camera state and counters, shared between capture threads and (later) the HTTP API.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    Starting,
    Streaming,
    Backoff,
    Failed,
    Stopped,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Counters {
    pub sessions: AtomicU64,
    pub access_units: AtomicU64,
    /// Dropped because the recorder fell behind (queue full): never silent, always logged.
    pub dropped_queue_full: AtomicU64,
    /// P-frames before the first key frame of a session (joining mid-GOP).
    pub dropped_before_key: AtomicU64,
    /// Access units without PTS merged into the previous one (split key frames).
    pub merged_no_pts: AtomicU64,
    /// RTP packets missing from the sequence (backend = "retina"; the damaged picture is
    /// dropped and recording resumes at the next key frame).
    pub rtp_packets_lost: AtomicU64,
    pub fragments_stored: AtomicU64,
    pub fragments_refused: AtomicU64,
    pub bytes_stored: AtomicU64,
    pub write_errors: AtomicU64,
    /// Times the media clock was re-mapped to the wall clock: it ran ahead or fell far behind,
    /// or a late RTCP sender report moved it.
    pub clock_resyncs: AtomicU64,
    /// RTCP sender reports received (backend = "retina"): the camera's clock for the mapping.
    pub rtcp_sender_reports: AtomicU64,
    /// Sender reports ignored because the camera's clock is too far off ours.
    pub clock_hints_ignored: AtomicU64,
    /// Fragments dropped because their media time stayed ahead of the wall clock.
    pub fragments_dropped_ahead: AtomicU64,
    /// Decoded frames handed to the detector.
    pub detect_frames: AtomicU64,
    /// Frames replaced by a newer one before a worker got to them (detector busy).
    pub detect_skipped_busy: AtomicU64,
    /// Frames skipped by the motion gate (still scene).
    pub detect_skipped_still: AtomicU64,
    pub inferences: AtomicU64,
    pub detect_errors: AtomicU64,
    pub detection_records: AtomicU64,
}

impl Counters {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct CameraStatus {
    pub name: String,
    state: Mutex<(CameraState, Instant, String)>,
    pub counters: Counters,
    /// Set by the recorder when storing failed; the supervisor then restarts the session.
    write_failed: AtomicBool,
    /// The low-latency live feed the recorder publishes to (playback/live.rs).
    pub live: std::sync::Arc<crate::playback::live::LiveFeed>,
    /// Liveness beats of the supervisor and recorder threads (daemon/notify.rs watchdog).
    pub supervisor_progress: crate::lifecycle::Progress,
    pub recorder_progress: crate::lifecycle::Progress,
    /// Inference times and objects per label (the detection workers record, metrics read).
    pub detect_stats: crate::metrics::DetectStats,
    /// Access units the detect feed (retina cameras) dropped because the decoder fell behind,
    /// over every session (`DetectBranchSpec::feed_dropped` shares it with each feed).
    pub detect_feed_dropped: std::sync::Arc<AtomicU64>,
}

impl CameraStatus {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            state: Mutex::new((CameraState::Starting, Instant::now(), String::new())),
            counters: Counters::default(),
            write_failed: AtomicBool::new(false),
            live: Default::default(),
            supervisor_progress: Default::default(),
            recorder_progress: Default::default(),
            detect_stats: Default::default(),
            detect_feed_dropped: Default::default(),
        }
    }

    pub fn state(&self) -> (CameraState, String) {
        let s = self.state.lock();
        (s.0, s.2.clone())
    }

    /// The current state and when it was entered.
    pub fn state_since(&self) -> (CameraState, Instant) {
        let s = self.state.lock();
        (s.0, s.1)
    }

    /// Changes state, logging transitions (not repeats).
    pub fn set(&self, state: CameraState, detail: impl Into<String>) {
        let detail = detail.into();
        let mut s = self.state.lock();
        if s.0 != state || s.2 != detail {
            match state {
                CameraState::Failed => {
                    tracing::error!(camera = %self.name, state = ?state, "{detail}")
                }
                CameraState::Backoff => {
                    tracing::warn!(camera = %self.name, state = ?state, "{detail}")
                }
                _ => tracing::info!(camera = %self.name, state = ?state, "{detail}"),
            }
            *s = (state, Instant::now(), detail);
        }
    }

    pub fn flag_write_failure(&self) {
        self.write_failed.store(true, Ordering::SeqCst);
    }

    pub fn take_write_failure(&self) -> bool {
        self.write_failed.swap(false, Ordering::SeqCst)
    }
}
