//! Cleans up access units from real cameras before fragmenting (see the GStreamer pitfalls in
//! docs/capture.md):
//! - drops everything before the session's first key frame (joining mid-GOP);
//! - merges access units without PTS into the previous one (h264parse splitting a multi-slice
//!   IDR into two AUs, the second without PTS), and a key frame that repeats its predecessor's PTS;
//! - fills a missing DTS from the PTS (rtph264depay never sets DTS) and keeps DTS increasing;
//! - keeps media time continuous across a looping file's restart;
//! - after dropped access units, waits for the next key frame.

use super::{Counters, RawAu};
use crate::media::fragmenter::AccessUnit;

const MIN_STEP_NS: u64 = 1_000_000;

#[derive(Debug, Default)]
pub struct Normalizer {
    held: Option<AccessUnit>,
    waiting_for_key: bool,
    /// Added to incoming timestamps (loop restarts).
    offset_ns: u64,
    rebase_next: bool,
    last_dts_ns: Option<u64>,
    last_step_ns: u64,
    /// Set when a gap (drop or resync) must show as a discontinuity.
    gap_pending: bool,
    /// Offset of each loop generation, known once its first unit arrived (index = generation).
    generation_offsets: Vec<u64>,
}

/// Output of one push: access units ready for the fragmenter, and whether a gap precedes them.
#[derive(Debug, Default)]
pub struct Normalized {
    pub units: Vec<AccessUnit>,
    /// Units were lost before `units`: cut the pending fragment and flag a discontinuity.
    pub gap_before: bool,
}

impl Normalizer {
    pub fn new() -> Self {
        Self {
            waiting_for_key: true,
            generation_offsets: vec![0],
            ..Default::default()
        }
    }

    /// The next raw access unit produced by the pipeline.
    pub fn push(&mut self, au: RawAu, counters: &Counters) -> Normalized {
        let mut out = Normalized::default();
        if au.after_gap && !self.waiting_for_key {
            // Everything after the last complete unit up to the next key frame is unusable.
            out.units.extend(self.held.take());
            self.waiting_for_key = true;
            self.gap_pending = true;
        }
        let Some(pts) = au.pts_ns else {
            match &mut self.held {
                Some(prev) => {
                    prev.data.extend_from_slice(&au.data);
                    prev.is_key |= au.is_key;
                    Counters::inc(&counters.merged_no_pts);
                }
                None => Counters::inc(&counters.dropped_before_key),
            }
            return out;
        };
        if self.waiting_for_key {
            if !au.is_key {
                Counters::inc(&counters.dropped_before_key);
                return out;
            }
            self.waiting_for_key = false;
        }
        if self.rebase_next {
            self.rebase_next = false;
            let continue_at = self
                .last_dts_ns
                .map_or(0, |d| d + self.last_step_ns.max(MIN_STEP_NS));
            self.offset_ns = continue_at.saturating_sub(au.dts_ns.unwrap_or(pts));
            self.generation_offsets.push(self.offset_ns);
        }
        let pts = pts + self.offset_ns;
        let mut dts = au.dts_ns.map_or(pts, |d| d + self.offset_ns);
        if let Some(held) = &mut self.held {
            if au.is_key && held.is_key && held.pts_ns == pts {
                held.data.extend_from_slice(&au.data);
                Counters::inc(&counters.merged_no_pts);
                return out;
            }
        }
        if let Some(last) = self.last_dts_ns {
            if dts <= last {
                dts = last + MIN_STEP_NS;
            }
            self.last_step_ns = dts - last;
        }
        self.last_dts_ns = Some(dts);
        out.gap_before = std::mem::take(&mut self.gap_pending);
        let next = AccessUnit {
            data: au.data,
            pts_ns: pts.max(dts),
            dts_ns: dts,
            is_key: au.is_key,
            config: au.config,
        };
        out.units.extend(self.held.replace(next));
        out
    }

    /// A looping source starts over: continue media time where it stopped.
    pub fn loop_restart(&mut self) {
        self.rebase_next = true;
    }

    /// Media time of a raw running time taken in loop `generation`, once that loop's offset is
    /// known (frames of the detect branch share the pipeline's clock).
    pub fn media_time(&self, generation: u64, running_ns: u64) -> Option<u64> {
        self.generation_offsets
            .get(generation as usize)
            .map(|off| running_ns + off)
    }

    /// End of session: the unit still held back.
    pub fn finish(&mut self) -> Option<AccessUnit> {
        self.held.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Codec, CodecConfig};
    use std::sync::Arc;

    fn raw(pts_ms: Option<u64>, key: bool) -> RawAu {
        RawAu {
            data: vec![pts_ms.unwrap_or(999) as u8],
            pts_ns: pts_ms.map(|m| m * 1_000_000),
            dts_ns: None,
            duration_ns: None,
            is_key: key,
            config: Arc::new(CodecConfig {
                codec: Codec::H264,
                width: 2,
                height: 2,
                record: vec![],
            }),
            after_gap: false,
        }
    }

    fn run(n: &mut Normalizer, input: Vec<RawAu>, c: &Counters) -> Vec<AccessUnit> {
        let mut out = Vec::new();
        for r in input {
            out.extend(n.push(r, c).units);
        }
        out.extend(n.finish());
        out
    }

    #[test]
    fn drops_until_key_and_merges_split_key_frames() {
        let c = Counters::default();
        let mut n = Normalizer::new();
        let out = run(
            &mut n,
            vec![
                raw(Some(0), false),
                raw(Some(33), false),
                raw(Some(66), true),
                raw(None, true), // second half of the IDR, no PTS
                raw(Some(100), false),
            ],
            &c,
        );
        assert_eq!(out.len(), 2);
        assert!(out[0].is_key);
        assert_eq!(out[0].data, vec![66, 231]);
        assert_eq!(out[0].dts_ns, 66_000_000);
        assert_eq!(Counters::get(&c.dropped_before_key), 2);
        assert_eq!(Counters::get(&c.merged_no_pts), 1);
    }

    #[test]
    fn loop_restart_keeps_time_moving_forward() {
        let c = Counters::default();
        let mut n = Normalizer::new();
        let mut out = Vec::new();
        for r in [
            raw(Some(0), true),
            raw(Some(100), false),
            raw(Some(200), false),
        ] {
            out.extend(n.push(r, &c).units);
        }
        n.loop_restart();
        for r in [raw(Some(0), true), raw(Some(100), false)] {
            out.extend(n.push(r, &c).units);
        }
        out.extend(n.finish());
        let dts: Vec<u64> = out.iter().map(|a| a.dts_ns / 1_000_000).collect();
        assert_eq!(dts, vec![0, 100, 200, 300, 400]);
    }

    #[test]
    fn gap_waits_for_key_and_reports_it() {
        let c = Counters::default();
        let mut n = Normalizer::new();
        n.push(raw(Some(0), true), &c);
        let mut lost = raw(Some(500), false);
        lost.after_gap = true;
        let r = n.push(lost, &c);
        assert_eq!(r.units.len(), 1, "the held unit is flushed");
        assert!(n.push(raw(Some(600), false), &c).units.is_empty());
        let r = n.push(raw(Some(700), true), &c);
        assert!(r.gap_before);
        assert!(r.units.is_empty(), "the key frame is held");
        assert_eq!(n.finish().unwrap().dts_ns, 700_000_000);
    }
}
