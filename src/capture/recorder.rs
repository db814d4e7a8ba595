//! The recorder of one camera: consumes capture events, fragments, and stores.

use super::linker::{DetectionLinker, Mapping};
use super::{CameraStatus, CaptureEvent, Counters, DetectionResult, FrameTime, Normalizer};
use crate::clock::{SharedClock, UnixNanos};
use crate::media::fmp4::{self, Sample, TIMESCALE};
use crate::media::fragmenter::{Fragmenter, ReadyFragment};
use crate::store::{AppendOutcome, NewFragment, StreamWriter};
use crossbeam_channel::Receiver;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Producer-time gap between consecutive fragments that counts as a discontinuity.
const DISCONTINUITY_NS: i64 = 50_000_000;

pub struct Recorder {
    writer: StreamWriter,
    status: Arc<CameraStatus>,
    clock: SharedClock,
    fragment_duration: Duration,
    session: Option<Session>,
    last_refusal_log: Option<Instant>,
    linker: Option<DetectionLinker>,
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
}

impl Recorder {
    pub fn new(
        writer: StreamWriter,
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
            linker: None,
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
        loop {
            let never = crossbeam_channel::never();
            let res_rx = results.as_ref().unwrap_or(&never);
            crossbeam_channel::select! {
                recv(events) -> ev => match ev {
                    Ok(ev) => self.handle(ev),
                    Err(_) => break,
                },
                recv(res_rx) -> r => match r {
                    Ok(r) => {
                        if let Some(l) = self.linker.as_mut() {
                            l.push(r);
                        }
                    }
                    Err(_) => results = None,
                },
            }
        }
        self.end_session();
    }

    /// Producer time of a detect frame, if the current session can tell.
    fn map_frame_time(session: Option<&Session>, t: &FrameTime) -> Mapping {
        match *t {
            FrameTime::Wall(ns) => Mapping::At(ns),
            FrameTime::Media {
                session: id,
                generation,
                pts_ns,
            } => {
                let Some(s) = session.filter(|s| s.id == id) else {
                    return Mapping::Stale;
                };
                let (Some(base), Some(media)) =
                    (s.media_base_ns, s.normalizer.media_time(generation, pts_ns))
                else {
                    return Mapping::NotYet;
                };
                Mapping::At(s.wall_base_ns + (media as i64 - base as i64))
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
                    fragmenter: Fragmenter::new(self.fragment_duration),
                    wall_base_ns: 0,
                    media_base_ns: None,
                    first_fragment: true,
                    discontinuity_next: false,
                    broken: false,
                    last_config_id: None,
                });
            }
            CaptureEvent::Au { session, au } => {
                let Some(s) = self
                    .session
                    .as_mut()
                    .filter(|s| s.id == session && !s.broken)
                else {
                    return;
                };
                if s.media_base_ns.is_none() && au.is_key && au.pts_ns.is_some() {
                    s.media_base_ns = au.pts_ns;
                    s.wall_base_ns = self.clock.now_ns();
                }
                let n = s.normalizer.push(au, &self.status.counters);
                // Units returned with a gap were taken before it: they close the old fragment.
                for unit in n.units {
                    let Some(s) = self.session.as_mut() else {
                        return;
                    };
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

    fn end_session(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if let Some(last) = s.normalizer.finish() {
            let ready = s.fragmenter.push(last);
            self.store(ready);
        }
        let ready = self.session.as_mut().and_then(|s| s.fragmenter.finish());
        self.store(ready);
        self.session = None;
    }

    fn store(&mut self, ready: Option<ReadyFragment>) {
        let Some(ready) = ready else { return };
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if s.broken {
            return;
        }
        let media_base = s.media_base_ns.unwrap_or(ready.start_pts_ns());
        let to_wall = |media_ns: u64| s.wall_base_ns + (media_ns as i64 - media_base as i64);
        let producer_ns = to_wall(ready.start_pts_ns());
        let duration_ns = ready.duration_ns() as i64;

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
        let data = match fmp4::fragment(number as u32, base_decode_time, &samples) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(camera = %self.status.name, error = %e, "cannot build fragment; dropped");
                return;
            }
        };
        let new = NewFragment {
            codec: &ready.config,
            producer_ns,
            duration_ns,
            discontinuity,
            sample_count: samples.len() as u32,
            data: &data,
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
                c.bytes_stored
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                if let Some(linker) = self.linker.as_mut() {
                    let session = self.session.as_ref();
                    let end = producer_ns + duration_ns;
                    linker.fragment_stored(fragment_number, producer_ns, end, |t| {
                        Self::map_frame_time(session, t)
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

fn ns_to_ticks(ns: i64) -> u64 {
    (ns.max(0) as u128 * TIMESCALE as u128 / 1_000_000_000) as u64
}
