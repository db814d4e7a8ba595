//! Cleans up access units from real cameras before fragmenting (see the GStreamer pitfalls in
//! docs/capture.md):
//! - drops everything before the session's first key frame (joining mid-GOP);
//! - merges access units without PTS into the previous one (h264parse splitting a multi-slice
//!   IDR into two AUs, the second without PTS), and a key frame that repeats its predecessor's PTS;
//! - derives a missing DTS (rtph26xdepay never sets one) from a small reorder window, so B-frame
//!   streams keep their presentation order, and keeps DTS strictly increasing;
//! - keeps media time continuous across a looping file's restart;
//! - after dropped access units, waits for the next key frame.
//!
//! The reorder window: the DTS of the i-th unit in decode order is the i-th smallest PTS, minus
//! a constant delay so that DTS <= PTS. The i-th smallest PTS is known once `depth` more units
//! have arrived, `depth` being how far a picture can come after later-shown ones (0 without
//! B-frames, 1 for IBBP, 2 with a B-pyramid). Depth and delay are measured on the first
//! `PROBE_UNITS` units of a session and grow if the stream later reorders deeper.

use super::{Counters, RawAu};
use crate::media::fragmenter::AccessUnit;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

const MIN_STEP_NS: u64 = 1_000_000;
/// Units held at the start of a session to measure the reorder depth (about 0.27 s at 30 fps).
const PROBE_UNITS: usize = 8;
/// Deepest reordering followed (H.264 allows 16; cameras use 0 to 3).
const MAX_DEPTH: usize = 16;
/// Frame interval assumed before one is measured.
const FALLBACK_FRAME_NS: u64 = 33_333_333;

/// A unit accepted but not yet given a DTS.
#[derive(Debug)]
struct Queued {
    au: AccessUnit,
    /// DTS from the source (offset applied), used as is.
    source_dts: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Normalizer {
    /// Accepted units in decode order; the newest one stays here so a following piece without
    /// PTS can be merged into it.
    queue: VecDeque<Queued>,
    /// PTS of the queued units, smallest first.
    pts_heap: BinaryHeap<Reverse<u64>>,
    /// Reorder depth; `None` while the first units are probed.
    depth: Option<usize>,
    /// Subtracted from the sorted PTS to get the DTS.
    delay_ns: u64,
    /// Warned once per session that the stream reorders deeper than measured.
    deeper_warned: bool,
    max_pts_ns: Option<u64>,
    last_source_dts_ns: Option<u64>,
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
            self.flush(&mut out.units);
            self.waiting_for_key = true;
            self.gap_pending = true;
        }
        let Some(pts) = au.pts_ns else {
            match self.queue.back_mut() {
                Some(prev) => {
                    prev.au.data.extend_from_slice(&au.data);
                    prev.au.is_key |= au.is_key;
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
            let step = self.frame_ns().max(MIN_STEP_NS);
            // Continue after everything seen so far: the largest PTS, or the source's DTS.
            let continue_at = match au.dts_ns {
                Some(_) => self.last_source_dts_ns.or(self.last_dts_ns),
                None => self.max_pts_ns,
            }
            .map_or(0, |t| t + step);
            self.offset_ns = continue_at.saturating_sub(au.dts_ns.unwrap_or(pts));
            self.generation_offsets.push(self.offset_ns);
        }
        let pts = pts + self.offset_ns;
        let source_dts = au.dts_ns.map(|d| d + self.offset_ns);
        if let Some(prev) = self.queue.back_mut() {
            if au.is_key && prev.au.is_key && prev.au.pts_ns == pts {
                prev.au.data.extend_from_slice(&au.data);
                Counters::inc(&counters.merged_no_pts);
                return out;
            }
        }
        out.gap_before = std::mem::take(&mut self.gap_pending);
        self.max_pts_ns = Some(self.max_pts_ns.map_or(pts, |m| m.max(pts)));
        if source_dts.is_some() {
            self.last_source_dts_ns = source_dts;
        }
        self.pts_heap.push(Reverse(pts));
        self.queue.push_back(Queued {
            au: AccessUnit {
                data: au.data,
                pts_ns: pts,
                dts_ns: 0,
                is_key: au.is_key,
                config: au.config,
            },
            source_dts,
        });
        let depth = match self.depth {
            Some(d) => d,
            None if self.queue.len() >= PROBE_UNITS => self.measure(),
            None => return out,
        };
        // Keep `depth` units to know the next sorted PTS, and at least one to merge into.
        while self.queue.len() > depth.max(1) {
            out.units.push(self.emit());
        }
        out
    }

    /// Measures reorder depth and delay on the probed units.
    fn measure(&mut self) -> usize {
        let pts: Vec<u64> = self.queue.iter().map(|q| q.au.pts_ns).collect();
        let (depth, delay) = reorder_of(&pts);
        self.depth = Some(depth);
        self.delay_ns = delay;
        // DTS cannot go below zero: a session whose media time starts near zero (RTP timestamps
        // start at 0) moves to start at the delay instead, before anything was emitted.
        let first = self.pts_heap.peek().map_or(0, |r| r.0);
        if self.last_dts_ns.is_none() && first < delay {
            self.shift(delay - first);
        }
        if depth > 0 {
            tracing::debug!(
                depth,
                delay_ms = delay / 1_000_000,
                "stream reorders pictures (B-frames): decode times derived from a reorder window"
            );
        }
        depth
    }

    /// Moves media time of everything seen so far (and to come) `by` later.
    fn shift(&mut self, by: u64) {
        for q in &mut self.queue {
            q.au.pts_ns += by;
            if let Some(d) = &mut q.source_dts {
                *d += by;
            }
        }
        self.pts_heap = self
            .pts_heap
            .drain()
            .map(|Reverse(p)| Reverse(p + by))
            .collect();
        self.max_pts_ns = self.max_pts_ns.map(|m| m + by);
        self.last_source_dts_ns = self.last_source_dts_ns.map(|d| d + by);
        self.offset_ns += by;
        for off in &mut self.generation_offsets {
            *off += by;
        }
    }

    /// Gives the oldest queued unit its DTS.
    fn emit(&mut self) -> AccessUnit {
        let Queued { mut au, source_dts } = self.queue.pop_front().expect("queue not empty");
        let Reverse(sorted_pts) = self.pts_heap.pop().expect("one PTS per queued unit");
        let mut dts = source_dts.unwrap_or(sorted_pts.saturating_sub(self.delay_ns));
        if let Some(last) = self.last_dts_ns {
            if dts <= last {
                dts = last + MIN_STEP_NS;
            }
            self.last_step_ns = dts - last;
        }
        self.last_dts_ns = Some(dts);
        if au.pts_ns < dts {
            // Reordered deeper than measured: this picture shows a little late; later ones do not.
            if source_dts.is_none() {
                self.grow();
            }
            au.pts_ns = dts;
        }
        au.dts_ns = dts;
        au
    }

    fn grow(&mut self) {
        let depth = self.depth.unwrap_or(0);
        if depth < MAX_DEPTH {
            self.depth = Some(depth + 1);
            self.delay_ns += self.frame_ns();
        }
        if !std::mem::replace(&mut self.deeper_warned, true) {
            tracing::warn!(
                depth = self.depth,
                "the stream reorders pictures deeper than measured at its start: reorder window grown"
            );
        }
    }

    /// The frame interval: the median PTS step of the queued units, else the last DTS step.
    fn frame_ns(&self) -> u64 {
        let mut pts: Vec<u64> = self.queue.iter().map(|q| q.au.pts_ns).collect();
        pts.sort_unstable();
        let mut steps: Vec<u64> = pts
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|&d| d > 0)
            .collect();
        steps.sort_unstable();
        match steps.get(steps.len() / 2) {
            Some(&s) => s,
            None if self.last_step_ns > 0 => self.last_step_ns,
            None => FALLBACK_FRAME_NS,
        }
    }

    /// Emits every queued unit (a gap or the end of the session).
    fn flush(&mut self, units: &mut Vec<AccessUnit>) {
        if self.depth.is_none() && !self.queue.is_empty() {
            self.measure();
        }
        while !self.queue.is_empty() {
            units.push(self.emit());
        }
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

    /// Offsets of the loop generations started so far (see `media_time`).
    pub fn generation_offsets(&self) -> &[u64] {
        &self.generation_offsets
    }

    /// End of session: the units still held back, in decode order.
    pub fn finish(&mut self) -> Vec<AccessUnit> {
        let mut units = Vec::new();
        self.flush(&mut units);
        units
    }
}

/// Reorder depth and delay of a run of PTS in decode order: depth is how many places a picture
/// comes after its rank in presentation order; delay is the largest amount by which the rank's
/// PTS exceeds the picture's own, over the pictures whose rank is settled within the run.
fn reorder_of(pts: &[u64]) -> (usize, u64) {
    let mut order: Vec<usize> = (0..pts.len()).collect();
    order.sort_by_key(|&i| pts[i]);
    let depth = order
        .iter()
        .enumerate()
        .map(|(rank, &idx)| idx.saturating_sub(rank))
        .max()
        .unwrap_or(0);
    let settled = pts.len().saturating_sub(depth);
    let delay = (0..settled)
        .map(|i| pts[order[i]].saturating_sub(pts[i]))
        .max()
        .unwrap_or(0);
    (depth, delay)
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
        assert_eq!(n.finish()[0].dts_ns, 700_000_000);
    }

    /// PTS in ms, decode order, key frame every `gop` units.
    fn stream(pts_ms: &[u64], gop: usize) -> Vec<RawAu> {
        pts_ms
            .iter()
            .enumerate()
            .map(|(i, &p)| raw(Some(p), i % gop == 0))
            .collect()
    }

    fn check_order(out: &[AccessUnit], pts_ms: &[u64]) {
        let pts: Vec<u64> = out.iter().map(|a| a.pts_ns / 1_000_000).collect();
        assert_eq!(pts, pts_ms, "PTS untouched, decode order kept");
        for w in out.windows(2) {
            assert!(w[1].dts_ns > w[0].dts_ns, "DTS strictly increasing");
        }
        for a in out {
            assert!(a.dts_ns <= a.pts_ns, "DTS {} > PTS {}", a.dts_ns, a.pts_ns);
        }
    }

    #[test]
    fn ibbp_gets_decode_times_from_a_reorder_window() {
        // 10 ms frames; decode order I0 P3 B1 B2 P6 B4 B5 ... (two B-frames, no pyramid).
        // Starts at 100 ms: running time is rarely 0, and DTS cannot go below it.
        let mut pts = vec![100];
        for g in 0..10u64 {
            let p = 100 + 30 * g + 30;
            pts.extend([p, p - 20, p - 10]);
        }
        let c = Counters::default();
        let mut n = Normalizer::new();
        let out = run(&mut n, stream(&pts, 3), &c);
        check_order(&out, &pts);
        // DTS = the i-th smallest PTS minus one frame.
        let dts: Vec<u64> = out.iter().map(|a| a.dts_ns / 1_000_000).collect();
        assert_eq!(dts[..6], [90, 100, 110, 120, 130, 140]);
        // Composition offsets: I one frame (the delay), P three frames, B none.
        let cts: Vec<u64> = out
            .iter()
            .map(|a| (a.pts_ns - a.dts_ns) / 1_000_000)
            .collect();
        assert_eq!(cts[..7], [10, 30, 0, 0, 30, 0, 0]);
    }

    #[test]
    fn b_pyramid_needs_a_deeper_window() {
        // Decode order I0 P4 B2 b1 b3 P8 B6 b5 b7 ... (x264 bframes=3 b-pyramid).
        let mut pts = vec![100];
        for g in 0..6u64 {
            let p = 100 + 40 * g + 40;
            pts.extend([p, p - 20, p - 30, p - 10]);
        }
        let c = Counters::default();
        let mut n = Normalizer::new();
        let out = run(&mut n, stream(&pts, 4), &c);
        check_order(&out, &pts);
        assert_eq!(n.depth, Some(2));
        assert_eq!(n.delay_ns, 20_000_000);
    }

    #[test]
    fn stream_without_b_frames_keeps_dts_equal_to_pts() {
        let pts: Vec<u64> = (0..40).map(|i| i * 33).collect();
        let c = Counters::default();
        let mut n = Normalizer::new();
        let out = run(&mut n, stream(&pts, 10), &c);
        check_order(&out, &pts);
        assert!(out.iter().all(|a| a.dts_ns == a.pts_ns));
    }

    #[test]
    fn deeper_reordering_later_grows_the_window() {
        // Starts without B-frames, then switches to IBBP: one picture shows late, the rest of
        // the stream keeps its order.
        let mut pts: Vec<u64> = (0..10).map(|i| i * 10).collect();
        for g in 0..10u64 {
            let p = 100 + 30 * g + 20;
            pts.extend([p, p - 20, p - 10]);
        }
        let c = Counters::default();
        let mut n = Normalizer::new();
        let out = run(&mut n, stream(&pts, 1000), &c);
        assert!(n.depth.unwrap() >= 1);
        for w in out.windows(2) {
            assert!(w[1].dts_ns > w[0].dts_ns);
        }
        let changed = out
            .iter()
            .zip(&pts)
            .filter(|(a, &p)| a.pts_ns != p * 1_000_000)
            .count();
        assert!(changed <= 2, "{changed} pictures moved");
        assert!(out.iter().all(|a| a.dts_ns <= a.pts_ns));
    }

    #[test]
    fn loop_restart_continues_after_the_largest_pts() {
        let pts = [0, 30, 10, 20, 60, 40, 50];
        let c = Counters::default();
        let mut n = Normalizer::new();
        let mut out = Vec::new();
        for r in stream(&pts, 100) {
            out.extend(n.push(r, &c).units);
        }
        n.loop_restart();
        for r in stream(&pts, 3) {
            out.extend(n.push(r, &c).units);
        }
        out.extend(n.finish());
        let got: Vec<u64> = out.iter().map(|a| a.pts_ns / 1_000_000).collect();
        // Media time starts at the 10 ms delay (see the test below); the second loop starts one
        // frame after the largest PTS of the first.
        let want: Vec<u64> = pts
            .iter()
            .map(|p| p + 10)
            .chain(pts.iter().map(|p| p + 80))
            .collect();
        assert_eq!(got, want);
        for w in out.windows(2) {
            assert!(w[1].dts_ns > w[0].dts_ns);
        }
        assert_eq!(n.media_time(1, 0), Some(80_000_000));
    }

    #[test]
    fn b_frames_from_time_zero_shift_media_time_by_the_delay() {
        // RTP timestamps start at 0 (rtspsrc buffer-mode=none): DTS would have to be negative.
        let mut pts = vec![0];
        for g in 0..5u64 {
            let p = 30 * g + 30;
            pts.extend([p, p - 20, p - 10]);
        }
        let c = Counters::default();
        let mut n = Normalizer::new();
        let out = run(&mut n, stream(&pts, 3), &c);
        let shifted: Vec<u64> = pts.iter().map(|p| p + 10).collect();
        check_order(&out, &shifted);
        assert_eq!(out[0].dts_ns, 0);
        assert_eq!(out[1].dts_ns, 10_000_000, "one frame, not a 1 ms step");
        assert_eq!(n.media_time(0, 0), Some(10_000_000));
    }
}
