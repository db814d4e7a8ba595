//! One supervisor thread per camera: runs the pipeline, watches its bus, detects stalls, and
//! reconnects with backoff. It never touches other cameras.

use super::pipeline::{self, sample_to_au};
use super::policy::{self, AuSender, Next, SessionEnd, QUEUE_CAPACITY};
use super::rtsp;
use super::{
    Backoff, CameraDetect, CameraState, CameraStatus, CaptureEvent, Counters, DetectBranchSpec,
    DetectFrame, DetectionLinker, DetectionResult, FrameTime, PipelineError, Recorder, Shutdown,
};
use crate::clock::SharedClock;
use crate::config::{CameraConfig, RtspBackend, RtspUrl, SourceKind};
use crate::store::VideoWriter;
use crossbeam_channel::{Receiver, Sender};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct CameraHandle {
    pub status: Arc<CameraStatus>,
    /// Disconnects when the camera's retina task has ended (it then no longer feeds the recorder).
    task_done: Option<Receiver<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl CameraHandle {
    pub fn join(self) {
        if let Some(done) = self.task_done {
            let _ = done.recv();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Detection wiring of one camera (see `DetectionPool::register`).
pub struct DetectWiring {
    pub handle: CameraDetect,
    pub spec: DetectBranchSpec,
    pub results: Receiver<DetectionResult>,
    pub linker: DetectionLinker,
    /// Decode this RTSP URL for detection instead of the recorded stream.
    pub sub_source: Option<RtspUrl>,
}

pub fn spawn_camera(
    cam: CameraConfig,
    writer: VideoWriter,
    clock: SharedClock,
    shutdown: Shutdown,
    status: Arc<CameraStatus>,
    detect: Option<DetectWiring>,
) -> CameraHandle {
    let (tx, rx) = crossbeam_channel::bounded(QUEUE_CAPACITY);
    let mut recorder = Recorder::new(writer, status.clone(), clock, cam.fragment_duration.0);
    let mut threads = Vec::new();
    let mut inline_detect = None;
    let results = match detect {
        Some(d) => {
            recorder = recorder.with_linker(d.linker);
            match d.sub_source {
                Some(url) => threads.push(spawn_detect_source(
                    &cam,
                    url,
                    d.handle,
                    d.spec,
                    shutdown.clone(),
                )),
                None => inline_detect = Some((d.handle, d.spec)),
            }
            d.results
        }
        None => crossbeam_channel::never(),
    };
    threads.push(
        std::thread::Builder::new()
            .name(format!("rec-{}", cam.name))
            .spawn(move || recorder.run(rx, results))
            .expect("spawn recorder thread"),
    );
    if cam.source.backend() == RtspBackend::Retina {
        // The detect feed decodes with GStreamer (the only use of it for this camera); without
        // it, the camera still records.
        let inline_detect = inline_detect.filter(|_| match crate::gst_init() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(camera = %cam.name, "detection off: GStreamer cannot start: {e}");
                false
            }
        });
        let detect = inline_detect.map(|(handle, spec)| rtsp::DetectHook { handle, spec });
        let done = rtsp::spawn(cam, tx, status.clone(), shutdown, detect);
        return CameraHandle {
            status,
            task_done: Some(done),
            threads,
        };
    }
    let st = status.clone();
    threads.push(
        std::thread::Builder::new()
            .name(format!("cam-{}", cam.name))
            .spawn(move || {
                let detect = inline_detect.as_ref().map(|(h, s)| (h, s));
                supervise(&cam, &st, Some(&tx), &shutdown, detect)
            })
            .expect("spawn supervisor thread"),
    );
    CameraHandle {
        status,
        task_done: None,
        threads,
    }
}

/// A detect-only pipeline on a sub-stream, supervised on its own: its failures never touch
/// the camera's recording.
fn spawn_detect_source(
    cam: &CameraConfig,
    url: RtspUrl,
    handle: CameraDetect,
    spec: DetectBranchSpec,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    let mut sub = cam.clone();
    sub.name = format!("{}-detect", cam.name);
    // The sub-stream is an RTSP source whatever the main source is; credentials, transport and
    // timeouts carry over when the main source is RTSP too.
    sub.source.kind = crate::config::SourceKind::Rtsp;
    sub.source.url = Some(url);
    let status = Arc::new(CameraStatus::new(&sub.name));
    std::thread::Builder::new()
        .name(format!("det-{}", cam.name))
        .spawn(move || supervise(&sub, &status, None, &shutdown, Some((&handle, &spec))))
        .expect("spawn detect source thread")
}

/// Runs sessions with backoff until shutdown. `tx` is the recorder (absent on a detect-only
/// sub-stream); `detect` adds the detect branch.
fn supervise(
    cam: &CameraConfig,
    status: &Arc<CameraStatus>,
    tx: Option<&Sender<CaptureEvent>>,
    shutdown: &Shutdown,
    detect: Option<(&CameraDetect, &DetectBranchSpec)>,
) {
    let mut backoff = Backoff::default();
    let mut session = 0u64;
    let progress = &status.supervisor_progress;
    while let Some(started) = policy::begin_session(status, shutdown, &mut session) {
        if let Some(tx) = tx {
            let _ = tx.send(CaptureEvent::SessionStart { session });
        }
        let (end, streamed) = run_session(cam, status, tx, shutdown, session, detect);
        if let Some(tx) = tx {
            let _ = tx.send(CaptureEvent::SessionEnd { session });
        }
        match policy::after_session(status, &mut backoff, end, streamed, started) {
            Next::Stop => break,
            Next::RetryAfter(delay) => {
                // Waiting out the backoff is the plan, not a hang (a dead camera stays live).
                progress.idle();
                if shutdown.wait(delay) {
                    break;
                }
            }
        }
    }
    progress.idle();
    status.set(CameraState::Stopped, "stopped");
}

/// Runs one pipeline until it fails, stalls, finishes or shutdown. Returns whether media flowed.
fn run_session(
    cam: &CameraConfig,
    status: &Arc<CameraStatus>,
    tx: Option<&Sender<CaptureEvent>>,
    shutdown: &Shutdown,
    session: u64,
    detect: Option<(&CameraDetect, &DetectBranchSpec)>,
) -> (SessionEnd, bool) {
    let built = match pipeline::build(cam, tx.is_some(), detect.map(|(_, s)| s)) {
        Ok(b) => b,
        Err(e) => return (SessionEnd::Retry(e.to_string()), false),
    };
    let last_media = Arc::new(AtomicU64::new(0));
    let generation = Arc::new(AtomicU64::new(0));
    // Running time where the last recorded access unit ends (a looping file restarts there).
    let media_end = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    if let (Some(sink), Some(tx)) = (&built.appsink, tx) {
        install_sink(
            sink,
            tx.clone(),
            status.clone(),
            session,
            last_media.clone(),
            media_end.clone(),
            started,
        );
    }
    if let (Some(sink), Some((handle, _))) = (&built.detect_sink, detect) {
        // Frames of the recording pipeline share its clock; a sub-stream's are stamped on arrival.
        let clock = if tx.is_some() {
            FrameClock::Media {
                session,
                generation: generation.clone(),
            }
        } else {
            FrameClock::Wall {
                last_media: last_media.clone(),
                started,
            }
        };
        install_detect_sink(sink, handle.clone(), clock);
    }
    let pipeline = built.pipeline;
    let end = watch(
        cam,
        status,
        tx,
        shutdown,
        session,
        &pipeline,
        &last_media,
        &generation,
        &media_end,
        started,
    );
    let _ = pipeline.set_state(gst::State::Null);
    (end, last_media.load(Ordering::Relaxed) > 0)
}

pub(crate) enum FrameClock {
    Media {
        session: u64,
        generation: Arc<AtomicU64>,
    },
    Wall {
        last_media: Arc<AtomicU64>,
        started: Instant,
    },
}

/// Copies each RGB frame (latest wins) into the detector pool.
pub(crate) fn install_detect_sink(
    sink: &gst_app::AppSink,
    handle: CameraDetect,
    clock: FrameClock,
) {
    let (w, h) = (handle.width, handle.height);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let time = match &clock {
                    FrameClock::Media {
                        session,
                        generation,
                    } => {
                        let segment = sample
                            .segment()
                            .and_then(|s| s.downcast_ref::<gst::ClockTime>());
                        let Some(pts) = buffer
                            .pts()
                            .and_then(|p| segment.map_or(Some(p), |s| s.to_running_time(p)))
                        else {
                            return Ok(gst::FlowSuccess::Ok);
                        };
                        FrameTime::Media {
                            session: *session,
                            generation: generation.load(Ordering::SeqCst),
                            pts_ns: pts.nseconds(),
                        }
                    }
                    FrameClock::Wall {
                        last_media,
                        started,
                    } => {
                        last_media.store(
                            started.elapsed().as_millis().max(1) as u64,
                            Ordering::Relaxed,
                        );
                        FrameTime::Wall(crate::clock::system_time_to_ns(
                            std::time::SystemTime::now(),
                        ))
                    }
                };
                let Some((stride, data)) = crate::detect::image::rgb_plane(&sample, w, h) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                handle.submit(DetectFrame {
                    time,
                    width: w,
                    height: h,
                    stride,
                    data,
                });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

#[allow(clippy::too_many_arguments)]
fn watch(
    cam: &CameraConfig,
    status: &CameraStatus,
    tx: Option<&Sender<CaptureEvent>>,
    shutdown: &Shutdown,
    session: u64,
    pipeline: &gst::Pipeline,
    last_media: &AtomicU64,
    generation: &AtomicU64,
    media_end: &AtomicU64,
    started: Instant,
) -> SessionEnd {
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        return SessionEnd::Retry(format!("pipeline refused to start: {e}"));
    }
    let bus = pipeline.bus().expect("pipeline has a bus");
    let stall = cam.stall_timeout.0;
    // Connecting may legitimately take longer than a stall (RTSP handshake, DNS).
    let first_media_deadline = stall + cam.source.connect_timeout();
    let mut streaming = false;
    loop {
        // At least every bus poll (200 ms), streaming or not.
        status.supervisor_progress.beat();
        if shutdown.is_triggered() {
            return SessionEnd::Shutdown;
        }
        if status.take_write_failure() {
            return SessionEnd::Retry("storage write failed".into());
        }
        let last = last_media.load(Ordering::Relaxed);
        let now_ms = started.elapsed().as_millis() as u64;
        if last == 0 {
            if started.elapsed() > first_media_deadline {
                return SessionEnd::Retry(policy::no_video_text(first_media_deadline));
            }
        } else {
            if !streaming {
                streaming = true;
                status.set(CameraState::Streaming, "recording");
            }
            if now_ms.saturating_sub(last) > stall.as_millis() as u64 {
                return SessionEnd::Retry(policy::stall_text(stall));
            }
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) else {
            continue;
        };
        use gst::MessageView;
        match msg.view() {
            MessageView::Error(e) => {
                let from = e.src().map(|s| s.name().to_string()).unwrap_or_default();
                return SessionEnd::Retry(format!(
                    "{from}: {}",
                    policy::redact(&e.error().to_string())
                ));
            }
            MessageView::Warning(w) => {
                tracing::warn!(camera = %cam.name, "GStreamer warning: {}", policy::redact(&w.error().to_string()));
            }
            MessageView::Eos(_) => {
                if cam.source.kind == SourceKind::File && cam.source.loop_playback() {
                    generation.fetch_add(1, Ordering::SeqCst);
                    if let Some(tx) = tx {
                        let _ = tx.send(CaptureEvent::LoopRestart { session });
                    }
                    let loop_len = Duration::from_nanos(media_end.swap(0, Ordering::SeqCst));
                    if let Err(e) = restart_file(pipeline, loop_len) {
                        return SessionEnd::Retry(format!("cannot loop the file: {e}"));
                    }
                } else if cam.source.kind == SourceKind::File {
                    return SessionEnd::Finished;
                } else {
                    return SessionEnd::Retry("camera ended the stream".into());
                }
            }
            _ => {}
        }
    }
}

/// Starts a file over from its beginning; `loop_len` is the running time where the last loop's
/// last access unit ended.
///
/// A flushing seek restarts running time at 0, but a PLAYING pipeline only hands its elements a
/// new base time on a PAUSED -> PLAYING change. Our sinks are `async=false` (clocksync paces
/// before them), so no sink loses state on the flush and the old base time stays: every buffer
/// of the next loop then looks late to `clocksync` and the file is read as fast as the disk
/// allows (the `make demo` runaway). So the pipeline is paused around the seek and given the
/// base time of the next loop ourselves: the old one plus the loop's length. The schedule stays
/// absolute (loop N starts exactly N loop lengths after the first), so neither the last frame's
/// duration nor the time the restart takes accumulates as drift over hours of loops.
fn restart_file(pipeline: &gst::Pipeline, loop_len: Duration) -> Result<(), PipelineError> {
    pipeline
        .set_state(gst::State::Paused)
        .map_err(|source| PipelineError::State {
            action: "cannot pause",
            source,
        })?;
    pipeline
        .seek_simple(
            gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
            gst::ClockTime::ZERO,
        )
        .map_err(pipeline::gst_err("seek to the start refused"))?;
    if let Some(base) = pipeline.base_time().filter(|_| !loop_len.is_zero()) {
        // No start time: the pipeline keeps the base time we set instead of computing one.
        pipeline.set_start_time(gst::ClockTime::NONE);
        pipeline.set_base_time(base + gst::ClockTime::from_nseconds(loop_len.as_nanos() as u64));
    }
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|source| PipelineError::State {
            action: "cannot resume",
            source,
        })?;
    Ok(())
}

/// Pushes every sample to the recorder without blocking the streaming thread: when the queue is
/// full, the access unit is dropped, counted and logged, and the recorder resyncs at a key frame.
fn install_sink(
    appsink: &gst_app::AppSink,
    tx: Sender<CaptureEvent>,
    status: Arc<CameraStatus>,
    session: u64,
    last_media: Arc<AtomicU64>,
    media_end: Arc<AtomicU64>,
    started: Instant,
) {
    let mut cache = None;
    let mut prev_pts: Option<u64> = None;
    let mut sender = AuSender::new(tx, session);
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(au) = sample_to_au(&sample, &mut cache) else {
                    Counters::inc(&status.counters.dropped_before_key);
                    return Ok(gst::FlowSuccess::Ok);
                };
                last_media.store(policy::since_ms(started), Ordering::Relaxed);
                if let Some(pts) = au.pts_ns {
                    // Units without a duration last as long as the step from their predecessor.
                    let step = au
                        .duration_ns
                        .or_else(|| prev_pts.map(|p| pts.saturating_sub(p)))
                        .unwrap_or(0);
                    prev_pts = Some(pts);
                    media_end.fetch_max(pts + step, Ordering::Relaxed);
                }
                sender
                    .push(&status, au)
                    .map_err(|_| gst::FlowError::Flushing)?;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}
