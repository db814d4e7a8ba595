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
