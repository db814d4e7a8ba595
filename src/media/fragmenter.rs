//! Groups access units into key-frame-aligned fragments of a target duration.
//!
//! A fragment is cut only in front of a key frame, once the pending run is at least the target
//! long (within half a frame interval: a 1 s GOP often measures 0.99999 s on the media clock),
//! or when the codec configuration changes. A run always starts with a key frame: access units
//! before the first key frame, and non-key access units carrying a new codec configuration, are
//! dropped (they cannot be decoded). GOPs longer than the 10 s maximum cannot be cut without
//! breaking decodability: fragments then follow the GOP and a warning names the measured GOP and
//! the camera setting to change.

use super::CodecConfig;
use std::sync::Arc;
use std::time::Duration;

/// One encoded picture on the media clock (nanoseconds, monotonic within a session).
#[derive(Debug, Clone)]
pub struct AccessUnit {
    /// Length-prefixed NAL units (AVCC / HVCC layout).
    pub data: Vec<u8>,
    pub pts_ns: u64,
    pub dts_ns: u64,
    pub is_key: bool,
    pub config: Arc<CodecConfig>,
}

/// A completed run of access units; `durations_ns[i]` belongs to `samples[i]`.
#[derive(Debug)]
pub struct ReadyFragment {
    pub samples: Vec<AccessUnit>,
    /// DTS of the access unit after the last sample (exact end), or an estimate at session end.
    pub end_dts_ns: u64,
    pub config: Arc<CodecConfig>,
}

impl ReadyFragment {
    pub fn start_dts_ns(&self) -> u64 {
        self.samples[0].dts_ns
    }
    pub fn start_pts_ns(&self) -> u64 {
        self.samples[0].pts_ns
    }
    pub fn duration_ns(&self) -> u64 {
        self.end_dts_ns - self.start_dts_ns()
    }
}

/// Longest GOP that still fits the fragment limit; longer ones are warned about, not cut.
pub const MAX_FRAGMENT: Duration = Duration::from_secs(10);
/// Frame duration assumed when a session ends after a single frame.
const FALLBACK_FRAME_NS: u64 = 33_333_333;

#[derive(Debug)]
pub struct Fragmenter {
    /// Camera name for log lines.
    camera: String,
    target_ns: u64,
    pending: Vec<AccessUnit>,
    /// Decode-time step between the last two access units (the frame interval).
    frame_ns: u64,
    /// Decode time of the last key frame, to measure the GOP.
    last_key_dts_ns: Option<u64>,
    /// The longest GOP measured above the fragment maximum (warned once).
    long_gop_ns: Option<u64>,
}

impl Fragmenter {
    pub fn new(target: Duration, camera: &str) -> Self {
        Self {
            camera: camera.to_string(),
            target_ns: target.as_nanos() as u64,
            pending: Vec::new(),
            frame_ns: 0,
            last_key_dts_ns: None,
            long_gop_ns: None,
        }
    }

    /// The camera's GOP when it was measured longer than the 10 s fragment maximum.
    pub fn long_gop(&self) -> Option<Duration> {
        self.long_gop_ns.map(Duration::from_nanos)
    }

    fn note_key_frame(&mut self, dts_ns: u64) {
        if let Some(prev) = self.last_key_dts_ns.replace(dts_ns) {
            let gop = dts_ns.saturating_sub(prev);
            if gop > MAX_FRAGMENT.as_nanos() as u64 && self.long_gop_ns.is_none_or(|g| gop > g) {
                self.long_gop_ns = Some(gop);
                tracing::warn!(
                    camera = %self.camera,
                    gop_s = format!("{:.1}", gop as f64 / 1e9),
                    "the camera sends a key frame only every {:.1} s, longer than the 10 s fragment maximum: \
                     fragments follow the GOP (recording continues, seeking and clips get coarser); \
                     set the camera's I-frame interval (GOP, \"smart codec\" off) to at most {:.0} s",
                    gop as f64 / 1e9,
                    (self.target_ns as f64 / 1e9).max(1.0)
                );
            }
        }
    }

    /// Adds an access unit (the first of a session must be a key frame); returns the fragment
    /// it completes, if any.
    pub fn push(&mut self, au: AccessUnit) -> Option<ReadyFragment> {
        let Some(first) = self.pending.first() else {
            if au.is_key {
                self.note_key_frame(au.dts_ns);
                self.pending.push(au);
            }
            return None;
        };
        let elapsed = au.dts_ns.saturating_sub(first.dts_ns);
        let last_dts = self.pending.last().map_or(first.dts_ns, |l| l.dts_ns);
        let step = au.dts_ns.saturating_sub(last_dts);
        if step > 0 {
            self.frame_ns = step;
        }
        let config_changed = *au.config != *first.config;
        if config_changed && !au.is_key {
            // New parameters without a key frame cannot be decoded with the old init: wait.
            return None;
        }
        if au.is_key {
            self.note_key_frame(au.dts_ns);
        }
        // Half a frame of tolerance: a GOP equal to the target must not double the fragment.
        if au.is_key && (elapsed + self.frame_ns / 2 >= self.target_ns || config_changed) {
            let ready = self.take(au.dts_ns);
            self.pending.push(au);
            return ready;
        }
        self.pending.push(au);
        None
    }

    /// Flushes the pending run at the end of a session.
    pub fn finish(&mut self) -> Option<ReadyFragment> {
        let n = self.pending.len();
        let last = self.pending.last()?;
        let frame = if n >= 2 {
            (last.dts_ns - self.pending[0].dts_ns) / (n as u64 - 1)
        } else {
            FALLBACK_FRAME_NS
        };
        let end = last.dts_ns + frame.max(1);
        self.take(end)
    }

    fn take(&mut self, end_dts_ns: u64) -> Option<ReadyFragment> {
        if self.pending.is_empty() {
            return None;
        }
        let samples = std::mem::take(&mut self.pending);
        Some(ReadyFragment {
            config: samples[0].config.clone(),
            samples,
            end_dts_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Codec;

    fn cfg(tag: u8) -> Arc<CodecConfig> {
        Arc::new(CodecConfig {
            codec: Codec::H264,
            width: 64,
            height: 64,
            record: vec![1, 0x42, 0, 0x1e, 0xff, 0xe0, 0, tag],
        })
    }

    fn au(ms: u64, key: bool, c: &Arc<CodecConfig>) -> AccessUnit {
        AccessUnit {
            data: vec![0, 0, 0, 1, 0x65],
            pts_ns: ms * 1_000_000,
            dts_ns: ms * 1_000_000,
            is_key: key,
            config: c.clone(),
        }
    }

    #[test]
    fn cuts_at_first_key_frame_after_target() {
        let c = cfg(0);
        let mut f = Fragmenter::new(Duration::from_secs(2), "t");
        let mut out = Vec::new();
        // 10 fps, key frame every 1.5 s, for 7 s.
        for i in 0..70u64 {
            if let Some(r) = f.push(au(i * 100, i % 15 == 0, &c)) {
                out.push(r);
            }
        }
        out.extend(f.finish());
        let durs: Vec<u64> = out.iter().map(|r| r.duration_ns() / 1_000_000).collect();
        // keys at 0, 1.5, 3.0, 4.5, 6.0 s: cuts at 3.0 and 6.0.
        assert_eq!(durs, vec![3000, 3000, 1000]);
        assert!(out.iter().all(|r| r.samples[0].is_key));
        assert_eq!(out.iter().map(|r| r.samples.len()).sum::<usize>(), 70);
    }

    #[test]
    fn drops_leading_non_key_frames() {
        let c = cfg(0);
        let mut f = Fragmenter::new(Duration::from_secs(1), "t");
        assert!(f.push(au(0, false, &c)).is_none());
        assert!(f.push(au(100, true, &c)).is_none());
        let r = f.finish().unwrap();
        assert_eq!(r.samples.len(), 1);
        assert_eq!(r.start_dts_ns(), 100_000_000);
    }

    #[test]
    fn codec_change_cuts_early_at_the_next_key_frame() {
        let (a, b) = (cfg(0), cfg(1));
        let mut f = Fragmenter::new(Duration::from_secs(2), "t");
        assert!(f.push(au(0, true, &a)).is_none());
        assert!(f.push(au(100, false, &a)).is_none());
        // Non-key frame with new parameters is held back (not decodable with the old init).
        assert!(f.push(au(200, false, &b)).is_none());
        let r = f.push(au(300, true, &b)).expect("config change cuts");
        assert_eq!(r.samples.len(), 2);
        assert_eq!(r.end_dts_ns, 300_000_000);
        assert_eq!(*r.config, *a);
        assert_eq!(*f.finish().unwrap().config, *b);
    }

    #[test]
    fn gop_equal_to_target_cuts_every_gop_despite_rounding() {
        // 30 fps stamped in whole microseconds: a 1 s GOP of 30 frames measures 0.99999 s.
        let c = cfg(0);
        let mut f = Fragmenter::new(Duration::from_secs(1), "t");
        let mut out = Vec::new();
        for i in 0..300u64 {
            let ns = i * 33_333_000;
            let mut a = au(0, i % 30 == 0, &c);
            a.dts_ns = ns;
            a.pts_ns = ns;
            out.extend(f.push(a));
        }
        assert_eq!(out.len(), 9, "one fragment per GOP, not per two GOPs");
        assert!(out.iter().all(|r| r.samples.len() == 30));
        assert!(f.long_gop().is_none());
    }

    #[test]
    fn gop_longer_than_maximum_is_followed_and_measured() {
        let c = cfg(0);
        let mut f = Fragmenter::new(Duration::from_secs(2), "t");
        let mut out = Vec::new();
        // 10 fps, a key frame every 20 s, for 60 s.
        for i in 0..600u64 {
            out.extend(f.push(au(i * 100, i % 200 == 0, &c)));
        }
        out.extend(f.finish());
        let durs: Vec<u64> = out.iter().map(|r| r.duration_ns() / 1_000_000).collect();
        assert_eq!(durs, vec![20_000, 20_000, 20_000]);
        assert_eq!(f.long_gop(), Some(Duration::from_secs(20)));
    }
}
