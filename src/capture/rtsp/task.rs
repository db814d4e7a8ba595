//! The async twin of the GStreamer supervisor: the same sessions, states, texts, counters and
//! backoff (capture/policy.rs), with retina's DESCRIBE/SETUP/PLAY and its frame stream in place
//! of a pipeline and its bus.

use super::convert::{error_text, Converter};
use super::{DetectHook, Target};
use crate::capture::policy::{self, AuBatch, AuSender, Next, SessionEnd};
use crate::capture::supervisor::{install_detect_sink, FrameClock};
use crate::capture::{
    frame_sink, Backoff, CameraState, CameraStatus, CaptureEvent, Counters, DetectFeed, RawAu,
    Shutdown,
};
use crate::config::CameraConfig;
use crossbeam_channel::Sender;
use futures::StreamExt;
use retina::client::{
    Demuxed, PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions, Stream,
    TeardownPolicy,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoParameters};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The session's check of its deadlines and liveness beat (the GStreamer one polls every 200 ms).
const BEAT: Duration = Duration::from_secs(1);
/// RTP timestamps jumping further than this (either way) end the session.
const MAX_TIMESTAMP_JUMP_SECS: f64 = 10.0;
/// How long a stop waits for the last session's TEARDOWN.
const TEARDOWN_WAIT: Duration = Duration::from_secs(2);

/// Runs sessions with backoff until shutdown.
pub(super) async fn supervise(
    cam: CameraConfig,
    status: Arc<CameraStatus>,
    tx: Sender<CaptureEvent>,
    shutdown: Shutdown,
    detect: Option<DetectHook>,
) {
    // Per camera, so that retina can track this camera's sessions that are still being torn down.
    let group = Arc::new(SessionGroup::default().named(cam.name.clone()));
    let mut backoff = Backoff::default();
    let mut session = 0u64;
    let progress = &status.supervisor_progress;
    while let Some(started) = policy::begin_session(&status, &shutdown, &mut session) {
        send_control(&tx, CaptureEvent::SessionStart { session });
        let mut feed = detect.as_ref().map(|d| DetectSession::new(d, session));
        let (end, streamed) = run_session(
            &cam, &status, &tx, &shutdown, &group, session, started, &mut feed,
        )
        .await;
        if let Some(feed) = feed {
            feed.finish();
        }
        send_control(&tx, CaptureEvent::SessionEnd { session });
        match policy::after_session(&status, &mut backoff, end, streamed, started) {
            Next::Stop => break,
            Next::RetryAfter(delay) => {
                // Waiting out the backoff is the plan, not a hang (a dead camera stays live).
                progress.idle();
                tokio::select! {
                    _ = shutdown.triggered() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    progress.idle();
    // The last session's TEARDOWN runs in the background (spawned when it was dropped).
    if let Ok(Err(e)) = tokio::time::timeout(TEARDOWN_WAIT, group.await_teardown()).await {
        tracing::debug!(camera = %cam.name, "TEARDOWN failed: {}", error_text(&e));
    }
    status.set(CameraState::Stopped, "stopped");
}

/// Session start and end must reach the recorder (it flushes on the end). They are rare, so a
/// full queue is waited out, off the runtime's worker so that other cameras keep receiving.
fn send_control(tx: &Sender<CaptureEvent>, event: CaptureEvent) {
    if let Err(crossbeam_channel::TrySendError::Full(event)) = tx.try_send(event) {
        let _ = tokio::task::block_in_place(|| tx.send(event));
    }
}

/// One step of the RTSP handshake, bounded by `limit` (retina has no timeouts of its own).
async fn step<T>(
    shutdown: &Shutdown,
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, retina::Error>>,
) -> Result<T, SessionEnd> {
    tokio::select! {
        _ = shutdown.triggered() => Err(SessionEnd::Shutdown),
        r = tokio::time::timeout(limit, fut) => match r {
            Err(_) => Err(SessionEnd::Retry(format!(
                "{what}: no answer within {:.0} s",
                limit.as_secs_f64()
            ))),
            Ok(Err(e)) => Err(SessionEnd::Retry(error_text(&e))),
            Ok(Ok(v)) => Ok(v),
        },
    }
}

/// The stream to record: the first H.264 or H.265 video stream. Only that one is set up.
fn pick_stream(streams: &[Stream]) -> Result<usize, String> {
    let video = |s: &&Stream| s.media() == "video";
    if let Some(i) = streams
        .iter()
        .position(|s| video(&s) && matches!(s.encoding_name(), "h264" | "h265"))
    {
        return Ok(i);
    }
    Err(match streams.iter().find(video) {
        Some(s) => format!(
            "camera sends video as `{}`: only H.264 and H.265 can be recorded",
            s.encoding_name().to_ascii_uppercase()
        ),
        None => "camera offers no video stream".into(),
    })
}

fn video_parameters(stream: &Stream) -> Option<&VideoParameters> {
    match stream.parameters() {
        Some(ParametersRef::Video(v)) => Some(v),
        _ => None,
    }
}

/// DESCRIBE, SETUP of the stream to record, PLAY: the playing session and that stream's index.
async fn connect(
    cam: &CameraConfig,
    status: &CameraStatus,
    shutdown: &Shutdown,
    group: &Arc<SessionGroup>,
) -> Result<(Demuxed, usize), SessionEnd> {
    let target = Target::new(&cam.source).map_err(|e| SessionEnd::Retry(e.to_string()))?;
    let limit = cam.source.connect_timeout();
    let options = SessionOptions::default()
        .creds(target.creds)
        .user_agent(format!("vidgest/{}", env!("CARGO_PKG_VERSION")))
        .session_group(group.clone())
        .teardown(TeardownPolicy::Auto);
    let progress = &status.supervisor_progress;
    progress.beat();
    let describe = Session::describe(target.url, options);
    let mut described = step(shutdown, limit, "DESCRIBE", describe).await?;
    let stream_i = pick_stream(described.streams()).map_err(SessionEnd::Retry)?;
    progress.beat();
    let setup = SetupOptions::default()
        .transport(target.transport)
        .frame_format(FrameFormat::MP4);
    step(shutdown, limit, "SETUP", described.setup(stream_i, setup)).await?;
    progress.beat();
    // Not retina's `enforce_timestamps_with_max_jump_secs`: it allows forward jumps only, and
    // B-frames go back in RTP time (tests/bframes.rs). `run_session` checks jumps both ways.
    let play = PlayOptions::default();
    let playing = step(shutdown, limit, "PLAY", described.play(play)).await?;
    let demuxed = playing
        .demuxed()
        .map_err(|e| SessionEnd::Retry(error_text(&e)))?;
    Ok((demuxed, stream_i))
}

/// Runs one RTSP session until it fails, stalls or shutdown. Returns whether media flowed.
/// Returning drops the session, which sends TEARDOWN from a background task.
#[allow(clippy::too_many_arguments)]
async fn run_session(
    cam: &CameraConfig,
    status: &CameraStatus,
    tx: &Sender<CaptureEvent>,
    shutdown: &Shutdown,
    group: &Arc<SessionGroup>,
    session: u64,
    started: Instant,
    detect: &mut Option<DetectSession<'_>>,
) -> (SessionEnd, bool) {
    let (mut demuxed, stream_i) = match connect(cam, status, shutdown, group).await {
        Ok(playing) => playing,
        Err(end) => return (end, false),
    };
    // Parameters from the SDP (`sprop-parameter-sets`) when it has them; else from the stream.
    let mut converter = Converter::new(video_parameters(&demuxed.streams()[stream_i]));
    let mut batch = AuBatch::new(AuSender::new(tx.clone(), session));
    let stall = cam.stall_timeout.0;
    // Connecting may legitimately take longer than a stall (RTSP handshake, DNS).
    let first_media_deadline = stall + cam.source.connect_timeout();
    let mut last_media: Option<Instant> = None;
    let mut last_ts_secs: Option<f64> = None;
    let progress = &status.supervisor_progress;
    // Deadlines, the write-failure flag and the liveness beat are checked once a tick rather
    // than per frame: one timer for the session instead of one per frame (stalls are noticed
    // within a beat of their deadline).
    let mut beat = tokio::time::interval_at((Instant::now() + BEAT).into(), BEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = shutdown.triggered();
    tokio::pin!(stop);
    // Every way out breaks with the session's end; what the batch still holds is sent after.
    let end = loop {
        let item = tokio::select! {
            biased;
            _ = &mut stop => break (SessionEnd::Shutdown, last_media.is_some()),
            item = demuxed.next() => item,
            _ = beat.tick() => {
                progress.beat();
                if let Some(end) = check_session(status, started, last_media, first_media_deadline, stall) {
                    break (end, last_media.is_some());
                }
                // A camera that paused mid-batch: what it sent is recorded now.
                if batch.flush(status).is_err() {
                    break (SessionEnd::Shutdown, last_media.is_some());
                }
                continue;
            }
        };
        let streamed = last_media.is_some();
        let frame = match item {
            None => {
                let reason = "camera closed the connection".into();
                break (SessionEnd::Retry(reason), streamed);
            }
            Some(Err(e)) => break (SessionEnd::Retry(error_text(&e)), streamed),
            Some(Ok(CodecItem::VideoFrame(f))) => f,
            Some(Ok(CodecItem::Rtcp(pkt))) => {
                super::rtcp::received(&pkt, session, status, tx);
                continue;
            }
            Some(Ok(_)) => continue, // nothing else is set up
        };
        // A camera whose RTP clock jumps (a restarted encoder, a 2^31 jump) gets a new session,
        // which maps time afresh; B-frames step back a fraction of a second, never this far.
        let secs = frame.timestamp().elapsed_secs();
        if let Some(prev) = last_ts_secs.replace(secs) {
            if (secs - prev).abs() > MAX_TIMESTAMP_JUMP_SECS {
                let reason = format!("RTP timestamp jumped by {:.1} s", secs - prev);
                break (SessionEnd::Retry(reason), streamed);
            }
        }
        if frame.loss() > 0 {
            status
                .counters
                .rtp_packets_lost
                .fetch_add(u64::from(frame.loss()), Ordering::Relaxed);
        }
        let params = video_parameters(&demuxed.streams()[stream_i]);
        match converter.convert(frame.into(), params) {
            Ok(au) => {
                if !streamed {
                    status.set(CameraState::Streaming, "recording");
                }
                last_media = Some(Instant::now());
                if let Some(d) = detect.as_mut() {
                    d.push(&cam.name, &au);
                }
                if batch.push(status, au).is_err() {
                    // The recorder only exits when capture stops.
                    break (SessionEnd::Shutdown, true);
                }
            }
            Err(_) => Counters::inc(&status.counters.dropped_before_key),
        }
    };
    let _ = batch.flush(status);
    end
}

/// The session's end if a deadline passed or storage failed: no video since connecting, video
/// stopped for `stall`, or the recorder could not write.
fn check_session(
    status: &CameraStatus,
    started: Instant,
    last_media: Option<Instant>,
    first_media_deadline: Duration,
    stall: Duration,
) -> Option<SessionEnd> {
    if status.take_write_failure() {
        return Some(SessionEnd::Retry("storage write failed".into()));
    }
    let reason = match last_media {
        None if started.elapsed() >= first_media_deadline => {
            policy::no_video_text(first_media_deadline)
        }
        Some(t) if t.elapsed() >= stall => policy::stall_text(stall),
        _ => return None,
    };
    Some(SessionEnd::Retry(reason))
}

/// Detection on this backend: the session's access units go to an appsrc decode pipeline
/// (`DetectFeed`, built at the first one, when the codec is known) whose frames reach the
/// detector pool as the GStreamer backend's detect branch delivers them, stamped with the same
/// media time as the recorder's access units. Decoding stays off this task: `push` only queues.
pub(super) struct DetectSession<'a> {
    hook: &'a DetectHook,
    session: u64,
    feed: Option<DetectFeed>,
    /// A feed that could not be built is not retried within the session (logged once).
    broken: bool,
}

impl<'a> DetectSession<'a> {
    fn new(hook: &'a DetectHook, session: u64) -> Self {
        Self {
            hook,
            session,
            feed: None,
            broken: false,
        }
    }

    fn push(&mut self, camera: &str, au: &RawAu) {
        let Some(pts_ns) = au.pts_ns else {
            return;
        };
        if let Some(feed) = &mut self.feed {
            if feed.failed() || feed.set_config(&au.config).is_err() {
                // a decoder error, or the camera switched codec: a fresh pipeline
                if let Some(old) = self.feed.take() {
                    tokio::task::block_in_place(|| old.finish());
                }
            }
        }
        if self.feed.is_none() && !self.broken {
            let sink = frame_sink();
            install_detect_sink(
                &sink,
                self.hook.handle.clone(),
                FrameClock::Media {
                    session: self.session,
                    // no file loops on RTSP: one media timeline per session
                    generation: Arc::new(AtomicU64::new(0)),
                },
            );
            // Starting a GStreamer pipeline blocks briefly: off the runtime's worker.
            match tokio::task::block_in_place(|| DetectFeed::new(&au.config, &self.hook.spec, sink))
            {
                Ok(feed) => self.feed = Some(feed),
                Err(e) => {
                    self.broken = true;
                    tracing::error!(camera = %camera, "detection off for this session: cannot start its decoder: {e}");
                }
            }
        }
        if let Some(feed) = &mut self.feed {
            feed.push(&au.data, pts_ns, au.is_key);
        }
    }

    fn finish(self) {
        if let Some(feed) = self.feed {
            tokio::task::block_in_place(|| feed.finish());
        }
    }
}
