//! RTCP sender reports: the camera's own wall clock for a session's media clock.
//!
//! A sender report pairs an RTP timestamp (retina places it on the stream's timeline) with the
//! camera's NTP time of that instant. Each one goes to the recorder as a
//! [`CaptureEvent::ClockHint`] on the same biased media clock as the access units' `pts_ns`;
//! the recorder decides whether and when to use it (recorder.rs, `Session::clock_hint`).

use super::convert::pts_ns;
use crate::capture::{CameraStatus, CaptureEvent, Counters};
use crate::clock::UnixNanos;
use crossbeam_channel::Sender;
use retina::rtcp::ReceivedCompoundPacket;
use retina::NtpTimestamp;

/// Unix time in ns of an NTP timestamp (32.32 fixed point since 1900). Taken modulo 2^32 s
/// after the Unix epoch, as retina formats them: right from 1970 to 2106, across the NTP era
/// rollover of 2036.
pub(crate) fn ntp_to_unix_ns(ntp: NtpTimestamp) -> UnixNanos {
    let since_epoch = ntp.0.wrapping_sub(retina::UNIX_EPOCH.0);
    let secs = since_epoch >> 32;
    let frac_ns = ((since_epoch & 0xffff_ffff) * 1_000_000_000) >> 32;
    // secs < 2^32, so secs * 1e9 < 4.3e18 < i64::MAX.
    (secs * 1_000_000_000 + frac_ns) as UnixNanos
}

/// The (media ns, wall ns) pair of a compound packet that begins with a sender report.
pub(crate) fn clock_pair(pkt: &ReceivedCompoundPacket) -> Option<(u64, UnixNanos)> {
    let media_ns = pts_ns(pkt.rtp_timestamp()?)?;
    let sr = pkt.pkts().next()?.as_sender_report().ok()??;
    Some((media_ns, ntp_to_unix_ns(sr.ntp_timestamp())))
}

/// One RTCP compound packet of `session`: a sender report is counted and offered to the
/// recorder (dropped when its queue is full: the next report, seconds later, does as well).
pub(super) fn received(
    pkt: &ReceivedCompoundPacket,
    session: u64,
    status: &CameraStatus,
    tx: &Sender<CaptureEvent>,
) {
    let Some((media_ns, wall_ns)) = clock_pair(pkt) else {
        return;
    };
    Counters::inc(&status.counters.rtcp_sender_reports);
    let _ = tx.try_send(CaptureEvent::ClockHint {
        session,
        media_ns,
        wall_ns,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::rtsp::convert::PTS_BIAS_NS;
    use std::num::NonZeroU32;

    #[test]
    fn ntp_converts_to_unix_ns() {
        assert_eq!(ntp_to_unix_ns(retina::UNIX_EPOCH), 0);
        // 2026-12-01T00:00:00.5Z
        let secs = 1_796_083_200u64;
        let ntp = NtpTimestamp(((secs + 2_208_988_800) << 32) | (1 << 31));
        assert_eq!(
            ntp_to_unix_ns(ntp),
            secs as i64 * 1_000_000_000 + 500_000_000
        );
        // After the NTP era rolls over (2036-02-07T06:28:16Z is NTP 0).
        let rollover = (1u64 << 32) - 2_208_988_800;
        let ntp = NtpTimestamp(10 << 32);
        assert_eq!(ntp_to_unix_ns(ntp), (rollover + 10) as i64 * 1_000_000_000);
    }

    #[test]
    fn sender_report_gives_media_and_wall_time() {
        // The sender report of retina's own docs: NTP e4362f99.cccccccc, then an SDES.
        let raw = b"\x80\xc8\x00\x06\x66\x42\x6a\xe1\
                    \xe4\x36\x2f\x99\xcc\xcc\xcc\xcc\
                    \x85\x2e\xf8\x07\x00\x2a\x43\x33\
                    \x2f\x4c\x34\x1d\
                    \x81\xca\x00\x04\x66\x42\x6a\xe1\
                    \x01\x06\x28\x6e\x6f\x6e\x65\x29\
                    \x00\x00\x00\x00";
        let rate = NonZeroU32::new(90_000).unwrap();
        // Placed 1 s after the session's first RTP timestamp.
        let ts = retina::Timestamp::new(1_090_000, rate, 1_000_000).unwrap();
        let pkt = ReceivedCompoundPacket::dummy(Some(ts), raw);
        let (media, wall) = clock_pair(&pkt).unwrap();
        assert_eq!(media, PTS_BIAS_NS + 1_000_000_000);
        let secs = 0xe436_2f99u64 - 2_208_988_800;
        let frac = (0xcccc_ccccu64 * 1_000_000_000) >> 32;
        assert_eq!(wall, (secs * 1_000_000_000 + frac) as i64);
        // A receiver report (or any packet not starting with a sender report) gives nothing.
        let rr = b"\x81\xc9\x00\x07\x66\x42\x6a\xe1\
                   \x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\
                   \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        assert_eq!(clock_pair(&ReceivedCompoundPacket::dummy(None, rr)), None);
    }
}
