//! The recorder of one camera: consumes capture events, fragments, and stores.

use super::linker::{DetectionLinker, Mapping};
use super::{CameraStatus, CaptureEvent, Counters, DetectionResult, FrameTime, Normalizer};
use crate::clock::{SharedClock, UnixNanos};
use crate::media::fmp4::{self, Sample, TIMESCALE};
use crate::media::fragmenter::{AccessUnit, Fragmenter, ReadyFragment};
use crate::store::{AppendOutcome, NewFragment, VideoWriter};
use crossbeam_channel::Receiver;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Producer-time gap between consecutive fragments that counts as a discontinuity.
const DISCONTINUITY_NS: i64 = 50_000_000;
/// How far a fragment's producer end may run ahead of the wall clock before the media clock is
/// mapped to the wall clock anew. Fragments are stored after they end, so a healthy source is
/// never ahead; a source faster than real time (an unpaced file, a camera replaying a buffer,
/// a clock running fast) is.
const AHEAD_LIMIT_NS: i64 = 2_000_000_000;
/// How far a fragment's producer end may fall behind the wall clock before the media clock is
/// mapped anew. RTP timestamps are taken as the camera sends them (rtspsrc buffer-mode=none, so
/// B-frames keep their order), so a camera clock slower than ours falls behind by its drift
/// (50 ppm: about 4 s a day); a healthy source lags by its latency only.
const BEHIND_LIMIT_NS: i64 = 10_000_000_000;
/// Ended sessions whose time mapping is kept for detection results still in flight (a result
/// comes at most a few inference times after its frame; sessions last far longer).
const ENDED_SESSIONS: usize = 4;
/// Duration of the first live chunk of a session (90 kHz ticks: one frame at 30 fps).
const DEFAULT_LIVE_DURATION: u32 = 3000;
/// A camera's clock (RTCP sender report) is used only when it reads within this window of
/// ours when the report is handled: a little ahead (clock skew), or behind by up to the
/// transport and queue delays. Cameras without NTP are often minutes off; those are ignored.
const HINT_AHEAD_NS: i64 = 500_000_000;
const HINT_BEHIND_NS: i64 = 5_000_000_000;
/// A sender report arriving after the session's first fragment was stored re-maps the clock
/// only when it moves it more than this (the re-map costs a discontinuity).
const LATE_REMAP_MIN_NS: i64 = 100_000_000;

pub struct Recorder {
    writer: VideoWriter,
    status: Arc<CameraStatus>,
    clock: SharedClock,
    fragment_duration: Duration,
    session: Option<Session>,
    last_refusal_log: Option<Instant>,
    last_resync_log: Option<Instant>,
    linker: Option<DetectionLinker>,
    /// Time mappings of the last ended sessions, newest last.
    ended: VecDeque<SessionClock>,
}

/// What maps a session's frame times to producer time, kept after the session ends.
#[derive(Debug, Clone)]
struct SessionClock {
    id: u64,
    media_base_ns: Option<u64>,
    wall_base_ns: UnixNanos,
    generation_offsets: Vec<u64>,
}

impl SessionClock {
    fn producer_time(&self, generation: u64, pts_ns: u64) -> Option<UnixNanos> {
        let base = self.media_base_ns?;
        let media = pts_ns + self.generation_offsets.get(generation as usize)?;
        Some(wall_time(self.wall_base_ns, base, media))
    }
}

/// Per-connection state: media time to wall time mapping and fragmenting.
struct Session {
    id: u64,
    normalizer: Normalizer,
    fragmenter: Fragmenter,
    /// Wall time of media time `media_base_ns`.
    wall_base_ns: UnixNanos,
    media_base_ns: Option<u64>,
    first_fragment: bool,
    discontinuity_next: bool,
    /// Storing failed: ignore the rest of this session.
    broken: bool,
    last_config_id: Option<String>,
    /// Decode time (90 kHz) and duration of the last live chunk: a chunk goes out before the
    /// next access unit tells its exact duration, so the previous one stands in.
    live_last: Option<(u64, u32)>,
    hints: ClockHints,
}

/// What the session's RTCP sender reports (`CaptureEvent::ClockHint`) did to its mapping.
///
/// Policy (docs/capture.md#timestamps): the first key frame maps media time to its arrival
/// time, as without RTCP. The session's first plausible sender report then replaces that
/// mapping with the camera's clock, applied when the next fragment is stored:
/// - before the session's first fragment is stored, always (nothing was stored with the
///   arrival mapping yet);
/// - later (cameras send the first report seconds in: gst-rtsp-server after 1.3 to 5.8 s),
///   only when it moves the clock by more than `LATE_REMAP_MIN_NS`, flagged as a
///   discontinuity and counted in `clock_resyncs`; and never backwards past the end of the
///   last stored fragment (stored fragments do not overlap), so a late report that places the
///   video earlier is clamped (usually to no change).
///
/// Later reports re-map nothing: `keep_up_with_wall_clock` stays the guard against drift.
/// An implausible report (see `HINT_AHEAD_NS`) is counted and logged once per session.
#[derive(Debug, Default)]
struct ClockHints {
    /// The latest plausible report before the first key frame: (media ns, wall ns).
    early: Option<(u64, UnixNanos)>,
    /// The session's mapping came from (or was checked against) a report: later ones are
    /// not used.
    settled: bool,
    /// The wall base the next stored fragment moves to.
    remap_to: Option<UnixNanos>,
    warned: bool,
}

/// Test hook for the watchdog test (tests/systemd.rs): `VIDGEST_TEST_HANG_RECORDER=<camera>`
/// makes that camera's recorder stop working after its first stored fragment, as if stuck in a
/// call, so that liveness fails and WATCHDOG=1 stops. An environment variable rather than a
/// cargo feature or `cfg(test)`: the test drives the real `vidgest` binary, and a feature would
/// cost a second full build of it. Its name says what it does, nothing sets it by accident, it
/// is read once per camera at start and logged as an error when it matches.
fn hang_hook(camera: &str) -> bool {
    let hang = std::env::var_os("VIDGEST_TEST_HANG_RECORDER").is_some_and(|v| v == camera);
    if hang {
        tracing::error!(
            camera,
            "VIDGEST_TEST_HANG_RECORDER is set: this recorder will hang (test hook)"
        );
    }
    hang
}

/// Producer (wall) time of media time `media_ns`, given that `media_base_ns` happened at
/// `wall_base_ns`: the one mapping of a session's media clock onto the wall clock.
fn wall_time(wall_base_ns: UnixNanos, media_base_ns: u64, media_ns: u64) -> UnixNanos {
    wall_base_ns + (media_ns as i64 - media_base_ns as i64)
}

impl Session {
    /// Producer time of media time `media_ns`; before the first key frame set the base,
    /// `fallback_base` stands in for it.
    fn wall_time(&self, media_ns: u64, fallback_base: u64) -> UnixNanos {
        let base = self.media_base().unwrap_or(fallback_base);
        wall_time(self.wall_base_ns, base, media_ns)
    }

    /// Media time of the first key frame, as the normalizer outputs it.
    fn media_base(&self) -> Option<u64> {
        self.media_base_ns
            .and_then(|raw| self.normalizer.media_time(0, raw))
    }

    /// A camera's sender report: wall time `wall_ns` at media time `media_ns` (see
    /// [`ClockHints`] for the policy), handled at `now`.
    fn clock_hint(
        &mut self,
        media_ns: u64,
        wall_ns: UnixNanos,
        now: UnixNanos,
        status: &CameraStatus,
    ) {
        let offset = wall_ns - now;
        if !(-HINT_BEHIND_NS..=HINT_AHEAD_NS).contains(&offset) {
            Counters::inc(&status.counters.clock_hints_ignored);
            if !std::mem::replace(&mut self.hints.warned, true) {
                tracing::warn!(
                    camera = %status.name,
                    offset_s = format!("{:+.1}", offset as f64 / 1e9),
                    "the camera's clock (RTCP sender report) is off ours: ignored, timestamps \
                     stay arrival-based (set up NTP on the camera)"
                );
            }
            return;
        }
        if self.hints.settled {
            return;
        }
        match self.media_base_ns {
            None => self.hints.early = Some((media_ns, wall_ns)),
            Some(base) => {
                self.hints.remap_to = Some(wall_time(wall_ns, media_ns, base));
                self.hints.settled = true;
            }
        }
    }

    fn clock(&self) -> SessionClock {
        SessionClock {
            id: self.id,
            media_base_ns: self.media_base(),
            wall_base_ns: self.wall_base_ns,
            generation_offsets: self.normalizer.generation_offsets().to_vec(),
        }
    }
}

impl Recorder {
    pub fn new(
        writer: VideoWriter,
        status: Arc<CameraStatus>,
        clock: SharedClock,
        fragment_duration: Duration,
    ) -> Self {
        Self {
            writer,
            status,
            clock,
            fragment_duration,
            session: None,
            last_refusal_log: None,
            last_resync_log: None,
            linker: None,
            ended: VecDeque::new(),
        }
    }

    /// Publishes detection results of this camera, linked to its stored fragments.
    pub fn with_linker(mut self, linker: DetectionLinker) -> Self {
        self.linker = Some(linker);
        self
    }

    /// Runs until every capture sender is gone (the supervisor stopped).
    pub fn run(mut self, events: Receiver<CaptureEvent>, results: Receiver<DetectionResult>) {
        let mut results = Some(results);
        let hang = hang_hook(&self.status.name);
        let status = self.status.clone();
        let progress = &status.recorder_progress;
        loop {
            let never = crossbeam_channel::never();
            let res_rx = results.as_ref().unwrap_or(&never);
            // Waiting for video is idle (a camera in backoff sends none); stuck in `handle` is not.
            progress.idle();
            crossbeam_channel::select! {
                recv(events) -> ev => {
                    progress.beat();
                    match ev {
                        Ok(ev) => self.handle(ev),
                        Err(_) => break,
                    }
                },
                recv(res_rx) -> r => {
                    progress.beat();
                    match r {
                        Ok(r) => self.result(r),
                        Err(_) => results = None,
                    }
                },
            }
            if hang && Counters::get(&status.counters.fragments_stored) > 0 {
                tracing::error!(camera = %status.name, "test hook: the recorder hangs now");
                // Busy and never beating again, like a call that does not return; drains the
                // queue so that the camera's supervisor (and shutdown) are not held up too.
                progress.beat();
                while events.recv().is_ok() {}
                break;
            }
        }
        progress.idle();
        // Shutdown: results already delivered are linked, those of the last session included.
        let pending: Vec<_> = results.iter().flat_map(|r| r.try_iter()).collect();
        for r in pending {
            self.result(r);
        }
        self.end_session();
    }

    fn result(&mut self, r: DetectionResult) {
        let Some(linker) = self.linker.as_mut() else {
            return;
        };
        let current = self.session.as_ref().map(|s| s.id);
        let ended_session =
            matches!(r.time, FrameTime::Media { session, .. } if Some(session) != current);
        linker.push(r);
        if ended_session {
            let (session, ended) = (self.session.as_ref(), &self.ended);
            linker.resolve(|t| Self::map_frame_time(session, ended, t));
        }
    }

    /// Producer time of a detect frame, if the current session can tell.
    fn map_frame_time(
        session: Option<&Session>,
        ended: &VecDeque<SessionClock>,
        t: &FrameTime,
    ) -> Mapping {
        match *t {
            FrameTime::Wall(ns) => Mapping::At(ns),
            FrameTime::Media {
                session: id,
                generation,
                pts_ns,
            } => {
                let Some(s) = session.filter(|s| s.id == id) else {
                    return match ended.iter().find(|c| c.id == id) {
                        Some(c) => c
                            .producer_time(generation, pts_ns)
                            .map_or(Mapping::Stale, |at| Mapping::Ended { at, session: id }),
                        None => Mapping::Stale,
                    };
                };
                let (Some(base), Some(media)) =
                    (s.media_base(), s.normalizer.media_time(generation, pts_ns))
                else {
                    return Mapping::NotYet;
                };
                Mapping::At(wall_time(s.wall_base_ns, base, media))
            }
        }
    }

    pub fn handle(&mut self, ev: CaptureEvent) {
        match ev {
            CaptureEvent::SessionStart { session } => {
                self.end_session();
                self.session = Some(Session {
                    id: session,
                    normalizer: Normalizer::new(),
                    fragmenter: Fragmenter::new(self.fragment_duration, &self.status.name),
                    wall_base_ns: 0,
                    media_base_ns: None,
                    first_fragment: true,
                    discontinuity_next: false,
                    broken: false,
                    last_config_id: None,
                    live_last: None,
                    hints: ClockHints::default(),
                });
            }
            CaptureEvent::Au { session, au } => {
                let arrived = Instant::now();
                let Some(s) = self
                    .session
                    .as_mut()
                    .filter(|s| s.id == session && !s.broken)
                else {
                    return;
                };
                if let (None, true, Some(pts)) = (s.media_base_ns, au.is_key, au.pts_ns) {
                    s.media_base_ns = Some(pts);
                    s.wall_base_ns = self.clock.now_ns();
                    if let Some((media, wall)) = s.hints.early.take() {
                        s.hints.remap_to = Some(wall_time(wall, media, pts));
                        s.hints.settled = true;
                    }
                }
                let n = s.normalizer.push(au, &self.status.counters);
                // Units returned with a gap were taken before it: they close the old fragment.
                for unit in n.units {
                    let Some(s) = self.session.as_mut() else {
                        return;
                    };
                    if self.status.live.has_subscribers() {
                        Self::publish_live(s, &self.status, &unit, arrived);
                    }
                    let ready = s.fragmenter.push(unit);
                    self.store(ready);
                }
                if n.gap_before {
                    let Some(s) = self.session.as_mut() else {
                        return;
                    };
                    let ready = s.fragmenter.finish();
                    self.store(ready);
                    if let Some(s) = self.session.as_mut() {
                        s.discontinuity_next = true;
                    }
                }
            }
            CaptureEvent::ClockHint {
                session,
                media_ns,
                wall_ns,
            } => {
                let now = self.clock.now_ns();
                if let Some(s) = self.session.as_mut().filter(|s| s.id == session) {
                    s.clock_hint(media_ns, wall_ns, now, &self.status);
                }
            }
            CaptureEvent::LoopRestart { session } => {
                if let Some(s) = self.session.as_mut().filter(|s| s.id == session) {
                    s.normalizer.loop_restart();
                }
            }
            CaptureEvent::SessionEnd { session } => {
                if self.session.as_ref().is_some_and(|s| s.id == session) {
                    self.end_session();
                }
            }
        }
    }

    /// One access unit to the live feed, on the 90 kHz wall-clock timeline of the stored
    /// fragments (before the first key frame set the media base, nothing is published).
    fn publish_live(s: &mut Session, status: &CameraStatus, unit: &AccessUnit, arrived: Instant) {
        let Some(base) = s.media_base() else {
            return;
        };
        let ticks = |media_ns: u64| ns_to_ticks(wall_time(s.wall_base_ns, base, media_ns));
        let decode_time = ticks(unit.dts_ns);
        let duration = match s.live_last {
            Some((prev, _)) if decode_time > prev => {
                (decode_time - prev).min(u32::MAX as u64) as u32
            }
            Some((_, prev_duration)) => prev_duration,
            None => DEFAULT_LIVE_DURATION,
        };
        s.live_last = Some((decode_time, duration));
        let sample = Sample {
            data: &unit.data,
            duration,
            is_key: unit.is_key,
            composition_offset: (ticks(unit.pts_ns) as i64 - decode_time as i64) as i32,
        };
        if let Err(e) = status
            .live
            .publish(&unit.config, decode_time, &sample, arrived)
        {
            tracing::warn!(camera = %status.name, error = %e, "live chunk dropped");
        }
    }

    fn end_session(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        for unit in s.normalizer.finish() {
            let Some(s) = self.session.as_mut() else {
                return;
            };
            let ready = s.fragmenter.push(unit);
            self.store(ready);
        }
        let ready = self.session.as_mut().and_then(|s| s.fragmenter.finish());
        self.store(ready);
        let Some(s) = self.session.take() else {
            return;
        };
        if self.ended.len() >= ENDED_SESSIONS {
            self.ended.pop_front();
        }
        self.ended.push_back(s.clock());
        if let Some(linker) = self.linker.as_mut() {
            let ended = &self.ended;
            linker.resolve(|t| Self::map_frame_time(None, ended, t));
        }
    }

    fn store(&mut self, ready: Option<ReadyFragment>) {
        let Some(ready) = ready else { return };
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if s.broken {
            return;
        }
        let duration_ns = ready.duration_ns() as i64;
        self.apply_clock_hint(&ready);
        if !self.keep_up_with_wall_clock(&ready, duration_ns) {
            return;
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        // Base looked up once: `to_wall` runs for every sample.
        let base = s.media_base().unwrap_or(ready.start_pts_ns());
        let to_wall = |media_ns: u64| wall_time(s.wall_base_ns, base, media_ns);
        let producer_ns = to_wall(ready.start_pts_ns());

        // Decode times on the 90 kHz clock, from absolute wall-mapped times so consecutive
        // fragments line up exactly and rounding never accumulates.
        let ticks = |media_ns: u64| ns_to_ticks(to_wall(media_ns));
        let base_decode_time = ticks(ready.start_dts_ns());
        let mut samples = Vec::with_capacity(ready.samples.len());
        for (i, au) in ready.samples.iter().enumerate() {
            let next = ready
                .samples
                .get(i + 1)
                .map_or(ready.end_dts_ns, |n| n.dts_ns);
            let duration = ticks(next).saturating_sub(ticks(au.dts_ns)).max(1);
            samples.push(Sample {
                data: &au.data,
                duration: duration.min(u32::MAX as u64) as u32,
                is_key: au.is_key,
                composition_offset: (ticks(au.pts_ns) as i64 - ticks(au.dts_ns) as i64) as i32,
            });
        }

        let config_id = ready.config.id();
        let config_changed = s
            .last_config_id
            .as_ref()
            .is_some_and(|prev| *prev != config_id);
        let gap = self
            .writer
            .last_fragment_end()
            .is_some_and(|end| (producer_ns - end).abs() > DISCONTINUITY_NS);
        let has_previous = self.writer.last_fragment_end().is_some();
        let discontinuity =
            has_previous && (s.first_fragment || s.discontinuity_next || config_changed || gap);

        let number = self.writer.next_fragment_number();
        let head = match fmp4::fragment_head(number as u32, base_decode_time, &samples) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(camera = %self.status.name, error = %e, "cannot build fragment; dropped");
                return;
            }
        };
        let parts: Vec<&[u8]> = std::iter::once(&head[..])
            .chain(samples.iter().map(|s| s.data))
            .collect();
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let new = NewFragment {
            codec: &ready.config,
            producer_ns,
            duration_ns,
            discontinuity,
            sample_count: samples.len() as u32,
            parts: &parts,
        };
        match self.writer.append(&new) {
            Ok(AppendOutcome::Stored {
                fragment_number, ..
            }) => {
                s.first_fragment = false;
                s.discontinuity_next = false;
                s.last_config_id = Some(config_id);
                let c = &self.status.counters;
                Counters::inc(&c.fragments_stored);
                c.bytes_stored.fetch_add(len as u64, Ordering::Relaxed);
                if let Some(linker) = self.linker.as_mut() {
                    let (session, ended) = (self.session.as_ref(), &self.ended);
                    let id = session.map_or(0, |s| s.id);
                    let span = (producer_ns, producer_ns + duration_ns);
                    linker.fragment_stored(fragment_number, id, span, |t| {
                        Self::map_frame_time(session, ended, t)
                    });
                }
            }
            Ok(AppendOutcome::Refused { reason }) => {
                Counters::inc(&self.status.counters.fragments_refused);
                // The next stored fragment follows a hole.
                s.discontinuity_next = true;
                let due = self
                    .last_refusal_log
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(30));
                if due {
                    self.last_refusal_log = Some(Instant::now());
                    tracing::warn!(
                        camera = %self.status.name,
                        refused = Counters::get(&self.status.counters.fragments_refused),
                        "storage full (on_full = \"deny_new\"): not recording new fragments: {reason}"
                    );
                }
            }
            Err(e) => {
                s.broken = true;
                Counters::inc(&self.status.counters.write_errors);
                self.status.set(
                    super::CameraState::Failed,
                    format!("storing fragment failed: {e}; the camera restarts after a backoff"),
                );
                self.status.flag_write_failure();
            }
        }
    }
}

impl Recorder {
    /// Moves the session's mapping to the wall base a sender report gave, from `ready` on
    /// (policy: [`ClockHints`]).
    fn apply_clock_hint(&mut self, ready: &ReadyFragment) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(to) = s.hints.remap_to.take() else {
            return;
        };
        let mut shift = to - s.wall_base_ns;
        if let Some(end) = self.writer.last_fragment_end() {
            // Never back over stored video (nor forward because of it).
            let start = s.wall_time(ready.start_pts_ns(), ready.start_pts_ns());
            shift = shift.max((end - start).min(0));
        }
        let late = !s.first_fragment;
        if late && shift.abs() <= LATE_REMAP_MIN_NS {
            return;
        }
        s.wall_base_ns += shift;
        if late {
            s.discontinuity_next = true;
            Counters::inc(&self.status.counters.clock_resyncs);
        }
        tracing::info!(
            camera = %self.status.name,
            shift_ms = shift / 1_000_000,
            "timestamps follow the camera's clock (RTCP sender report){}",
            if late { " from this fragment on" } else { "" }
        );
    }

    /// The guard against sources faster than real time: when `ready` would end more than
    /// `AHEAD_LIMIT_NS` after now, the media clock is re-mapped so that it ends now (never
    /// before the last stored fragment ends), counted and logged. Returns false when even that
    /// cannot place it (the source keeps running ahead): the fragment is dropped and counted,
    /// so a runaway source cannot fill the disk with video from the future.
    fn keep_up_with_wall_clock(&mut self, ready: &ReadyFragment, duration_ns: i64) -> bool {
        let Some(s) = self.session.as_mut() else {
            return false;
        };
        let start = s.wall_time(ready.start_pts_ns(), ready.start_pts_ns());
        let now = self.clock.now_ns();
        let ahead = start + duration_ns - now;
        if ahead < -BEHIND_LIMIT_NS {
            // Later is always free: the fragment now ends at the wall clock.
            s.wall_base_ns -= ahead;
            s.discontinuity_next = true;
            Counters::inc(&self.status.counters.clock_resyncs);
            tracing::warn!(
                camera = %self.status.name,
                behind_s = format!("{:.1}", -ahead as f64 / 1e9),
                "media time falls behind the wall clock (camera clock slow?): timestamps resynced"
            );
            return true;
        }
        if ahead <= AHEAD_LIMIT_NS {
            return true;
        }
        let earliest = self.writer.last_fragment_end().unwrap_or(i64::MIN);
        let shift = ahead.min(start - earliest).max(0);
        s.wall_base_ns -= shift;
        s.discontinuity_next = true;
        let c = &self.status.counters;
        Counters::inc(&c.clock_resyncs);
        let still_ahead = ahead - shift;
        let keep = still_ahead <= AHEAD_LIMIT_NS;
        if !keep {
            Counters::inc(&c.fragments_dropped_ahead);
        }
        if self
            .last_resync_log
            .is_none_or(|t| t.elapsed() > Duration::from_secs(30))
        {
            self.last_resync_log = Some(Instant::now());
            tracing::warn!(
                camera = %self.status.name,
                ahead_s = format!("{:.1}", ahead as f64 / 1e9),
                resyncs = Counters::get(&c.clock_resyncs),
                dropped = Counters::get(&c.fragments_dropped_ahead),
                "media time runs ahead of the wall clock (source faster than real time?): \
                 timestamps resynced{}",
                if keep { "" } else { "; fragments from the future are dropped" }
            );
        }
        keep
    }
}

fn ns_to_ticks(ns: i64) -> u64 {
    (ns.max(0) as u128 * TIMESCALE as u128 / 1_000_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{DetectionLinker, RawAu, RecordSink};
    use crate::clock::{Clock, ManualClock};
    use crate::config::{FsyncPolicy, OnFull};
    use crate::media::CodecConfig;
    use crate::store::{Statvfs, Store, StoreOptions, StoreReader, VideoOptions};

    const START: i64 = 1_764_000_000_000_000_000;

    fn codec() -> Arc<CodecConfig> {
        Arc::new(crate::media::test_support::small_h264_config())
    }

    fn au(n: u64, cfg: &Arc<CodecConfig>) -> CaptureEvent {
        au_in(1, n, cfg)
    }

    fn au_in(session: u64, n: u64, cfg: &Arc<CodecConfig>) -> CaptureEvent {
        CaptureEvent::Au {
            session,
            au: RawAu {
                data: vec![0, 0, 0, 2, 0x65, n as u8],
                pts_ns: Some(n * 100_000_000),
                dts_ns: None,
                duration_ns: None,
                is_key: n.is_multiple_of(10),
                config: cfg.clone(),
                after_gap: false,
            },
        }
    }

    /// A recorder of camera `cam` storing under `dir`, 1 s fragments.
    fn recorder(dir: &std::path::Path, clock: &Arc<ManualClock>) -> (Recorder, Arc<CameraStatus>) {
        let store = Store::open(
            &dir.join("video"),
            StoreOptions {
                fsync: FsyncPolicy::Never,
                max_bytes: None,
                min_free: Some(0),
                on_full: OnFull::DeleteOldest,
                segment_duration: Duration::from_secs(600),
            },
            clock.clone(),
            Arc::new(Statvfs),
        )
        .unwrap();
        let writer = store
            .open_video(
                "cam",
                VideoOptions {
                    retention: Duration::from_secs(3600),
                    max_bytes: None,
                    segment_size: 1 << 20,
                },
            )
            .unwrap();
        let status = Arc::new(CameraStatus::new("cam"));
        let rec = Recorder::new(
            writer,
            status.clone(),
            clock.clone(),
            Duration::from_secs(1),
        );
        (rec, status)
    }

    /// 10 fps, a key frame every second, 1 s fragments; the clock moves `wall_per_frame_ms`
    /// per frame.
    fn record(
        frames: std::ops::Range<u64>,
        wall_per_frame_ms: u64,
    ) -> (Arc<CameraStatus>, Vec<crate::store::FragmentMeta>, i64) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START);
        let (mut rec, status) = recorder(dir.path(), &clock);
        let cfg = codec();
        rec.handle(CaptureEvent::SessionStart { session: 1 });
        for n in frames {
            rec.handle(au(n, &cfg));
            clock.advance(Duration::from_millis(wall_per_frame_ms));
        }
        drop(rec);
        let frags = StoreReader::open(&dir.path().join("video"))
            .unwrap()
            .fragments("cam", None, None, 10_000)
            .unwrap();
        (status, frags, clock.now_ns())
    }

    #[test]
    fn real_time_source_is_never_resynced() {
        let (status, frags, _) = record(0..300, 100);
        assert_eq!(Counters::get(&status.counters.clock_resyncs), 0);
        assert_eq!(frags.len(), 29);
        assert!(frags.iter().skip(1).all(|f| !f.discontinuity));
    }

    #[test]
    fn source_slower_than_real_time_is_resynced_when_far_behind() {
        // Media runs at 90 % of the wall clock: 30 s of media over 33.3 s; 10 s behind after
        // 100 s, so a 150 s run resyncs once or twice, never more.
        let (status, frags, _) = record(0..1500, 111);
        let resyncs = Counters::get(&status.counters.clock_resyncs);
        assert!((1..=2).contains(&resyncs), "{resyncs} resyncs");
        for f in &frags {
            let behind = f.server_ns - (f.producer_ns + f.duration_ns);
            assert!(
                behind <= BEHIND_LIMIT_NS + 2_000_000_000,
                "{behind} ns behind"
            );
        }
        for w in frags.windows(2) {
            assert!(w[1].producer_ns >= w[0].producer_ns + w[0].duration_ns);
        }
    }

    #[test]
    fn source_faster_than_real_time_is_resynced_and_bounded() {
        // Media runs 10x faster than the wall clock: 30 s of media in 3 s.
        let (status, frags, now) = record(0..300, 10);
        let c = &status.counters;
        assert!(Counters::get(&c.clock_resyncs) > 0);
        assert!(Counters::get(&c.fragments_dropped_ahead) > 0);
        for f in &frags {
            assert!(
                f.producer_ns + f.duration_ns <= f.server_ns + AHEAD_LIMIT_NS,
                "fragment {} ends {} ms after it was stored",
                f.fragment_number,
                (f.producer_ns + f.duration_ns - f.server_ns) / 1_000_000
            );
        }
        // Stored fragments never overlap, and the video stored cannot exceed the wall time.
        for w in frags.windows(2) {
            assert!(w[1].producer_ns >= w[0].producer_ns + w[0].duration_ns);
        }
        let stored: i64 = frags.iter().map(|f| f.duration_ns).sum();
        assert!(stored <= now - START + AHEAD_LIMIT_NS, "{stored} ns stored");
    }

    /// Frames 0..30 of session 1 (10 fps, 1 s fragments), the clock moving 100 ms a frame;
    /// before frame `n`, `hint(n, now)` may send a sender report (session, media ns, wall ns).
    fn record_hinted(
        hint: impl Fn(u64, i64) -> Option<(u64, u64, i64)>,
    ) -> (Arc<CameraStatus>, Vec<crate::store::FragmentMeta>) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START);
        let (mut rec, status) = recorder(dir.path(), &clock);
        let cfg = codec();
        rec.handle(CaptureEvent::SessionStart { session: 1 });
        for n in 0..30 {
            if let Some((session, media_ns, wall_ns)) = hint(n, clock.now_ns()) {
                rec.handle(CaptureEvent::ClockHint {
                    session,
                    media_ns,
                    wall_ns,
                });
            }
            rec.handle(au(n, &cfg));
            clock.advance(Duration::from_millis(100));
        }
        drop(rec);
        let frags = StoreReader::open(&dir.path().join("video"))
            .unwrap()
            .fragments("cam", None, None, 10_000)
            .unwrap();
        (status, frags)
    }

    const MS: i64 = 1_000_000;

    fn starts(frags: &[crate::store::FragmentMeta]) -> Vec<i64> {
        frags.iter().map(|f| (f.producer_ns - START) / MS).collect()
    }

    #[test]
    fn sender_report_before_the_first_fragment_sets_the_mapping() {
        // The camera says frame 3 (300 ms) was captured 400 ms before it arrived; a later
        // report (another 250 ms off) is not used.
        let (status, frags) = record_hinted(|n, now| match n {
            3 => Some((1, 300_000_000, now - 400 * MS)),
            25 => Some((1, 2_500_000_000, now - 650 * MS)),
            _ => None,
        });
        assert_eq!(starts(&frags), [-400, 600]);
        assert!(frags.iter().all(|f| !f.discontinuity));
        assert_eq!(Counters::get(&status.counters.clock_resyncs), 0);
        assert_eq!(Counters::get(&status.counters.clock_hints_ignored), 0);
        // Before the first key frame, too; another session's report is not.
        let (_, frags) = record_hinted(|n, now| match n {
            0 => Some((1, 0, now + 200 * MS)),
            1 => Some((7, 100_000_000, now - 3_000 * MS)),
            _ => None,
        });
        assert_eq!(starts(&frags), [200, 1200]);
    }

    #[test]
    fn late_sender_report_remaps_once_forward_with_a_discontinuity() {
        // Fragment 0 is stored when frame 10 arrives; the report comes at frame 15.
        let (status, frags) =
            record_hinted(|n, now| (n == 15).then_some((1, 1_500_000_000, now + 300 * MS)));
        assert_eq!(starts(&frags), [0, 1300]);
        assert!(frags[1].discontinuity);
        assert_eq!(Counters::get(&status.counters.clock_resyncs), 1);
        // Within the threshold: kept.
        let (status, frags) =
            record_hinted(|n, now| (n == 15).then_some((1, 1_500_000_000, now + 80 * MS)));
        assert_eq!(starts(&frags), [0, 1000]);
        assert!(!frags[1].discontinuity);
        assert_eq!(Counters::get(&status.counters.clock_resyncs), 0);
        // Backwards over stored video: clamped, so nothing changes.
        let (status, frags) =
            record_hinted(|n, now| (n == 15).then_some((1, 1_500_000_000, now - 400 * MS)));
        assert_eq!(starts(&frags), [0, 1000]);
        assert!(!frags[1].discontinuity);
        assert_eq!(Counters::get(&status.counters.clock_resyncs), 0);
    }

    #[test]
    fn implausible_sender_reports_are_ignored_and_counted() {
        // An hour ahead, a minute behind, and just outside +0.5 s / -5 s.
        for off_ms in [3_600_000, -60_000, 501, -5_001] {
            let (status, frags) =
                record_hinted(|n, now| (n < 20).then_some((1, n * 100_000_000, now + off_ms * MS)));
            assert_eq!(starts(&frags), [0, 1000], "{off_ms} ms off");
            assert_eq!(Counters::get(&status.counters.clock_hints_ignored), 20);
            assert_eq!(Counters::get(&status.counters.clock_resyncs), 0);
        }
        // At the edges of the window: used.
        for off_ms in [500, -5_000] {
            let (status, frags) =
                record_hinted(|n, now| (n == 2).then_some((1, 200_000_000, now + off_ms * MS)));
            assert_eq!(starts(&frags)[0], off_ms, "{off_ms} ms off");
            assert_eq!(Counters::get(&status.counters.clock_hints_ignored), 0);
        }
    }

    fn detection_at(session: u64, pts_ms: u64) -> DetectionResult {
        DetectionResult {
            time: FrameTime::Media {
                session,
                generation: 0,
                pts_ns: pts_ms * 1_000_000,
            },
            detections: vec![crate::detect::Detection {
                label: "person".into(),
                class_id: 0,
                score: 0.9,
                bbox: crate::detect::BBox {
                    x: 0.1,
                    y: 0.1,
                    w: 0.2,
                    h: 0.2,
                },
                zones: vec![],
            }],
            inference_ms: 5.0,
            model: "m".into(),
        }
    }

    #[test]
    fn detection_finishing_after_its_session_ended_is_linked() {
        use crate::streams::{ShardStreams, ShardStreamsOptions};
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START);
        let (rec, status) = recorder(dir.path(), &clock);
        let opts = ShardStreamsOptions {
            fsync: false,
            ..Default::default()
        };
        let streams = ShardStreams::open(&dir.path().join("streams"), opts, clock.clone()).unwrap();
        streams.create_stream("det", 1, 24).unwrap();
        let sink = RecordSink {
            streams: streams.clone(),
            stream: "det".into(),
            device: "dev".into(),
            heartbeat: Duration::from_secs(3600),
        };
        let linker = DetectionLinker::new(sink, status.clone(), "m".into());
        let mut rec = rec.with_linker(linker);
        let linked = || Counters::get(&status.counters.detection_records);
        let cfg = codec();

        rec.handle(CaptureEvent::SessionStart { session: 1 });
        for n in 0..25 {
            rec.handle(au_in(1, n, &cfg));
            clock.advance(Duration::from_millis(100));
        }
        // Reconnect: session 1 ends (its last fragment, 2.0 to 2.5 s, is stored at the end)
        // while the detector still works on its frame at 2.3 s.
        rec.handle(CaptureEvent::SessionEnd { session: 1 });
        rec.result(detection_at(1, 2_300));
        assert_eq!(linked(), 1, "linked to the ended session's last fragment");

        rec.handle(CaptureEvent::SessionStart { session: 2 });
        rec.handle(au_in(2, 0, &cfg));
        rec.result(detection_at(1, 1_500));
        assert_eq!(linked(), 2, "linked while the next session records");
        // After the last stored frame of its session: no fragment holds it.
        rec.result(detection_at(1, 2_600));
        assert_eq!(linked(), 2);

        // Shutdown with a result waiting in the channel for the last session.
        for n in 1..15 {
            rec.handle(au_in(2, n, &cfg));
            clock.advance(Duration::from_millis(100));
        }
        let (events_tx, events_rx) = crossbeam_channel::unbounded();
        let (results_tx, results_rx) = crossbeam_channel::unbounded();
        results_tx.send(detection_at(2, 1_200)).unwrap();
        drop(events_tx);
        rec.run(events_rx, results_rx);
        assert_eq!(linked(), 3, "linked to the fragment stored at shutdown");
    }
}
