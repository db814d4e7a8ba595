//! Supervision rules shared by both RTSP backends (GStreamer's supervisor thread and retina's
//! task): how a session's end becomes a state and a backoff delay, the texts the states show
//! (tests and operators parse them), and how access units go to the recorder without blocking.

use super::{Backoff, CameraState, CameraStatus, CaptureEvent, Counters, RawAu, Shutdown};
use crossbeam_channel::{Sender, TrySendError};
use std::time::{Duration, Instant};

/// Access units buffered between the receive side and the recorder (about 10 s at 30 fps).
pub(crate) const QUEUE_CAPACITY: usize = 300;
/// A session that delivered media for this long resets the backoff.
pub(crate) const HEALTHY_SESSION: Duration = Duration::from_secs(10);

pub(crate) enum SessionEnd {
    Shutdown,
    Finished,
    Retry(String),
}

/// What the supervisor does after a session: stop, or wait this long and reconnect.
pub(crate) enum Next {
    Stop,
    RetryAfter(Duration),
}

/// The start of session `*session + 1`, unless shutdown was asked: the supervisor's beat, the
/// session counter and the `connecting` state. Returns when it started.
pub(crate) fn begin_session(
    status: &CameraStatus,
    shutdown: &Shutdown,
    session: &mut u64,
) -> Option<Instant> {
    status.supervisor_progress.beat();
    if shutdown.is_triggered() {
        return None;
    }
    *session += 1;
    Counters::inc(&status.counters.sessions);
    status.set(CameraState::Starting, "connecting");
    Some(Instant::now())
}

/// Applies a session's end to the camera's state and the backoff. `streamed`: media flowed;
/// `started`: when the session began.
pub(crate) fn after_session(
    status: &CameraStatus,
    backoff: &mut Backoff,
    end: SessionEnd,
    streamed: bool,
    started: Instant,
) -> Next {
    match end {
        SessionEnd::Shutdown => Next::Stop,
        SessionEnd::Finished => {
            status.set(CameraState::Stopped, "source finished (end of file)");
            Next::Stop
        }
        SessionEnd::Retry(reason) => {
            if streamed && started.elapsed() >= HEALTHY_SESSION {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            let (state, _) = status.state();
            let next = if state == CameraState::Failed {
                CameraState::Failed
            } else {
                CameraState::Backoff
            };
            status.set(next, retry_detail(&reason, delay));
            Next::RetryAfter(delay)
        }
    }
}

/// The backoff state's detail (tests/recording.rs parses the delay back out of it).
pub(crate) fn retry_detail(reason: &str, delay: Duration) -> String {
    format!("{reason}; retrying in {:.1} s", delay.as_secs_f64())
}

/// Why a session ended when no video came after connecting.
pub(crate) fn no_video_text(deadline: Duration) -> String {
    format!(
        "no video within {:.0} s of connecting",
        deadline.as_secs_f64()
    )
}

/// Why a session ended when video stopped coming.
pub(crate) fn stall_text(stall: Duration) -> String {
    format!(
        "stalled: no video for {}",
        humantime::format_duration(stall)
    )
}

/// Error texts (GStreamer's, retina's) can carry the RTSP URL; strip userinfo from anything
/// URL-like.
pub(crate) fn redact(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            if w.contains("://") {
                crate::probe::redact_url(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Milliseconds since `started`, at least 1 (0 means "no media yet").
pub(crate) fn since_ms(started: Instant) -> u64 {
    started.elapsed().as_millis().max(1) as u64
}

/// The recorder queue seen from the receive side: never blocks; when the queue is full the
/// access unit is dropped, counted and logged (rate-limited), and the next one is flagged
/// `after_gap` so that the recorder resyncs at a key frame.
pub(crate) struct AuSender {
    tx: Sender<CaptureEvent>,
    session: u64,
    gap: bool,
    last_drop_log: Option<Instant>,
}

/// The recorder is gone (it only exits when capture stops).
#[derive(Debug)]
pub(crate) struct RecorderGone;

impl AuSender {
    pub(crate) fn new(tx: Sender<CaptureEvent>, session: u64) -> Self {
        Self {
            tx,
            session,
            gap: false,
            last_drop_log: None,
        }
    }

    /// Counts the access unit and queues it; `au.after_gap` set by the caller (e.g. RTP loss)
    /// is kept.
    pub(crate) fn push(
        &mut self,
        status: &CameraStatus,
        mut au: RawAu,
    ) -> Result<(), RecorderGone> {
        Counters::inc(&status.counters.access_units);
        au.after_gap |= self.gap;
        let session = self.session;
        match self.tx.try_send(CaptureEvent::Au { session, au }) {
            Ok(()) => self.gap = false,
            Err(TrySendError::Full(_)) => {
                self.gap = true;
                Counters::inc(&status.counters.dropped_queue_full);
                if self
                    .last_drop_log
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
                {
                    self.last_drop_log = Some(Instant::now());
                    tracing::error!(
                        camera = %status.name,
                        dropped = Counters::get(&status.counters.dropped_queue_full),
                        "storage is falling behind: dropping video until the next key frame"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => return Err(RecorderGone),
        }
        Ok(())
    }
}

/// Access units held back on the receive side before they wake the recorder thread.
/// Waking a thread per frame (30 a second per camera) cost more CPU than recording itself
/// (BENCHMARKS.md, "Recording on retina"). Units still go one by one around each key frame:
/// the key frame at once (the session's first one maps media time to its arrival) and the
/// few after it, which the normalizer waits for before it releases the key frame (its reorder
/// window), so a fragment is closed as soon as without batching.
pub(crate) struct AuBatch {
    sender: AuSender,
    pending: Vec<RawAu>,
    /// When the oldest pending unit was received.
    oldest: Option<Instant>,
    /// Units since the last key frame (0: the key frame itself).
    since_key: usize,
}

impl AuBatch {
    /// Units a batch holds at most (long GOPs): about a second at 30 fps.
    pub(crate) const MAX_UNITS: usize = 32;
    /// How long the oldest unit waits at most.
    pub(crate) const MAX_AGE: Duration = Duration::from_millis(500);
    /// Units after a key frame that still go one by one: the normalizer's window for streams
    /// with B-frames up to a pyramid of 2 (normalize.rs); deeper ones wait for the batch.
    pub(crate) const AFTER_KEY: usize = 3;

    pub(crate) fn new(sender: AuSender) -> Self {
        Self {
            sender,
            pending: Vec::with_capacity(Self::MAX_UNITS),
            oldest: None,
            since_key: usize::MAX,
        }
    }

    /// Queues `au`, and sends the batch when it ends: at a key frame and the few units after
    /// it, when full or old, and on every unit while someone watches the live feed (its latency
    /// is per frame).
    pub(crate) fn push(&mut self, status: &CameraStatus, au: RawAu) -> Result<(), RecorderGone> {
        self.since_key = if au.is_key {
            0
        } else {
            self.since_key.saturating_add(1)
        };
        let ends = self.since_key <= Self::AFTER_KEY || status.live.has_subscribers();
        let now = Instant::now();
        let oldest = *self.oldest.get_or_insert(now);
        self.pending.push(au);
        if ends || self.pending.len() >= Self::MAX_UNITS || now - oldest >= Self::MAX_AGE {
            self.flush(status)?;
        }
        Ok(())
    }

    /// Sends what is pending (a stalled camera's last frames, the end of a session).
    pub(crate) fn flush(&mut self, status: &CameraStatus) -> Result<(), RecorderGone> {
        self.oldest = None;
        for au in self.pending.drain(..) {
            self.sender.push(status, au)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::test_support::small_h264_config;
    use std::sync::Arc;

    fn au(after_gap: bool) -> RawAu {
        RawAu {
            data: vec![0, 0, 0, 1, 0x65],
            pts_ns: Some(1),
            dts_ns: None,
            duration_ns: None,
            is_key: false,
            config: Arc::new(small_h264_config()),
            after_gap,
        }
    }

    #[test]
    fn full_queue_drops_counts_and_flags_the_next_unit() {
        let status = CameraStatus::new("c");
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut s = AuSender::new(tx, 7);
        s.push(&status, au(false)).unwrap();
        s.push(&status, au(false)).unwrap(); // full: dropped
        assert_eq!(Counters::get(&status.counters.dropped_queue_full), 1);
        assert_eq!(Counters::get(&status.counters.access_units), 2);
        let CaptureEvent::Au {
            session: 7,
            au: first,
        } = rx.recv().unwrap()
        else {
            panic!("expected an access unit of session 7");
        };
        assert!(!first.after_gap);
        s.push(&status, au(false)).unwrap();
        let CaptureEvent::Au { au: next, .. } = rx.recv().unwrap() else {
            panic!("expected an access unit");
        };
        assert!(next.after_gap, "the unit after a drop resyncs");
        // A caller's own gap (RTP loss) is kept.
        s.push(&status, au(true)).unwrap();
        let CaptureEvent::Au { au: lost, .. } = rx.recv().unwrap() else {
            panic!("expected an access unit");
        };
        assert!(lost.after_gap);
        drop(rx);
        assert!(s.push(&status, au(false)).is_err());
    }

    #[test]
    fn batches_end_around_key_frames_when_full_and_on_flush() {
        let status = CameraStatus::new("c");
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_CAPACITY);
        let mut b = AuBatch::new(AuSender::new(tx, 1));
        let key = || RawAu {
            is_key: true,
            ..au(false)
        };
        let after_key = AuBatch::AFTER_KEY;
        b.push(&status, au(false)).unwrap();
        assert_eq!(rx.len(), 0, "before any key frame, units wait");
        b.push(&status, key()).unwrap();
        assert_eq!(
            rx.len(),
            2,
            "a key frame goes out at once, with what waited"
        );
        for _ in 0..after_key {
            b.push(&status, au(false)).unwrap();
        }
        assert_eq!(rx.len(), 2 + after_key, "so do the units right after it");
        for _ in 0..3 {
            b.push(&status, au(false)).unwrap();
        }
        assert_eq!(
            rx.len(),
            2 + after_key,
            "later ones wait for the batch to end"
        );
        b.push(&status, key()).unwrap();
        let keys: Vec<bool> = rx
            .try_iter()
            .map(|e| match e {
                CaptureEvent::Au { au, .. } => au.is_key,
                _ => panic!("expected access units"),
            })
            .collect();
        let mut expected = vec![false; 2 + after_key + 4];
        expected[1] = true;
        expected[1 + after_key + 4] = true;
        assert_eq!(
            keys, expected,
            "the next key frame ends the batch, in order"
        );
        for _ in 0..after_key {
            b.push(&status, au(false)).unwrap();
        }
        let _ = rx.try_iter().count();
        for _ in 0..AuBatch::MAX_UNITS {
            b.push(&status, au(false)).unwrap();
        }
        assert_eq!(rx.len(), AuBatch::MAX_UNITS, "a full batch goes out");
        let _ = rx.try_iter().count();
        b.push(&status, au(false)).unwrap();
        assert!(rx.is_empty());
        b.flush(&status).unwrap();
        assert_eq!(rx.len(), 1, "flush sends what is pending");
        assert_eq!(
            Counters::get(&status.counters.access_units),
            (7 + 2 * after_key + AuBatch::MAX_UNITS) as u64
        );
    }

    #[tokio::test]
    async fn batches_go_out_per_unit_while_the_live_feed_is_watched() {
        let status = CameraStatus::new("c");
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_CAPACITY);
        let mut b = AuBatch::new(AuSender::new(tx, 1));
        b.push(&status, au(false)).unwrap();
        assert!(rx.is_empty());
        let viewer = status.live.body(Shutdown::new());
        b.push(&status, au(false)).unwrap();
        assert_eq!(rx.len(), 2, "a viewer gets every frame as it comes");
        drop(viewer);
    }

    #[test]
    fn retry_keeps_failed_and_texts_stay_as_tests_parse_them() {
        let status = CameraStatus::new("c");
        let mut b = Backoff::default();
        let Next::RetryAfter(d) = after_session(
            &status,
            &mut b,
            SessionEnd::Retry("x".into()),
            false,
            Instant::now(),
        ) else {
            panic!("a retry waits");
        };
        let (state, detail) = status.state();
        assert_eq!(state, CameraState::Backoff);
        assert_eq!(detail, format!("x; retrying in {:.1} s", d.as_secs_f64()));
        status.set(CameraState::Failed, "bad");
        after_session(
            &status,
            &mut b,
            SessionEnd::Retry("y".into()),
            false,
            Instant::now(),
        );
        assert_eq!(status.state().0, CameraState::Failed);
        assert_eq!(
            stall_text(Duration::from_secs(3)),
            "stalled: no video for 3s"
        );
        assert_eq!(
            no_video_text(Duration::from_secs(13)),
            "no video within 13 s of connecting"
        );
    }
}
