//! Motion gate: skips inference while the scene is still. Each frame is reduced to a small
//! grayscale grid (cell means, so sensor noise averages out) and compared with the last frame
//! that passed the gate;
//! inference runs when enough cells changed by more than `pixel_delta`.

use super::detector::RgbFrame;

const GRID_W: usize = 64;
const GRID_H: usize = 48;

pub struct MotionGate {
    pixel_delta: u8,
    min_changed_fraction: f32,
    prev: Vec<u8>,
    cur: Vec<u8>,
    /// Per source column: its grid column (rebuilt when the frame size changes).
    col_cell: Vec<u16>,
    sums: Vec<u32>,
    counts: Vec<u32>,
    size: Option<(u32, u32)>,
    last_fraction: f32,
}

impl Default for MotionGate {
    fn default() -> Self {
        MotionGate::new(25, 0.005)
    }
}

impl MotionGate {
    /// `pixel_delta`: change of a cell's mean luma (0..255) that counts as changed (default 25);
    /// `min_changed_fraction`: share of the 64x48 cells that must change (default 0.005).
    pub fn new(pixel_delta: u8, min_changed_fraction: f32) -> Self {
        MotionGate {
            pixel_delta,
            min_changed_fraction,
            prev: Vec::new(),
            cur: vec![0; GRID_W * GRID_H],
            col_cell: Vec::new(),
            sums: vec![0; GRID_W * GRID_H],
            counts: vec![0; GRID_W * GRID_H],
            size: None,
            last_fraction: 1.0,
        }
    }

    /// true = run inference. The first frame (and the first after a size change) is true.
    pub fn check(&mut self, frame: &RgbFrame) -> bool {
        let (w, h) = (frame.width as usize, frame.height as usize);
        if w == 0
            || h == 0
            || frame.stride < w * 3
            || frame.data.len() < frame.stride * (h - 1) + w * 3
        {
            return true; // not ours to judge; let the detector report the bad frame
        }
        if self.size != Some((frame.width, frame.height)) {
            self.size = Some((frame.width, frame.height));
            self.col_cell = (0..w).map(|x| (x * GRID_W / w) as u16).collect();
            self.prev.clear();
        }
        self.reduce(frame);
        if self.prev.is_empty() {
            std::mem::swap(&mut self.prev, &mut self.cur);
            self.cur = vec![0; GRID_W * GRID_H];
            self.last_fraction = 1.0;
            return true;
        }
        let d = self.pixel_delta;
        let changed = self
            .prev
            .iter()
            .zip(&self.cur)
            .filter(|(a, b)| a.abs_diff(**b) > d)
            .count();
        self.last_fraction = changed as f32 / (GRID_W * GRID_H) as f32;
        let moving = self.last_fraction >= self.min_changed_fraction;
        // The reference is the last frame that passed: slow changes (a pan, a creeping zoom)
        // accumulate until they count, instead of hiding below the per-frame threshold.
        if moving {
            std::mem::swap(&mut self.prev, &mut self.cur);
        }
        moving
    }

    /// Fraction of cells that changed at the last `check` (1.0 on warm-up).
    pub fn last_changed_fraction(&self) -> f32 {
        self.last_fraction
    }

    /// Cell means of BT.601 luma (integer weights 77/150/29 of 256).
    fn reduce(&mut self, f: &RgbFrame) {
        let (w, h) = (f.width as usize, f.height as usize);
        self.sums.fill(0);
        self.counts.fill(0);
        for y in 0..h {
            let base = (y * GRID_H / h) * GRID_W;
            let sums = &mut self.sums[base..base + GRID_W];
            let counts = &mut self.counts[base..base + GRID_W];
            let row = &f.data[y * f.stride..y * f.stride + w * 3];
            for (px, &c) in row.chunks_exact(3).zip(&self.col_cell) {
                let luma = 77 * px[0] as u32 + 150 * px[1] as u32 + 29 * px[2] as u32;
                sums[c as usize] += luma;
                counts[c as usize] += 1;
            }
        }
        for ((o, &s), &n) in self.cur.iter_mut().zip(&self.sums).zip(&self.counts) {
            // frames smaller than the grid leave some cells empty: they stay 0 and never change
            *o = s.checked_div(n).map_or(0, |m| (m >> 8) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_with_square(
        w: usize,
        h: usize,
        stride: usize,
        sq: Option<(usize, usize, usize)>,
    ) -> Vec<u8> {
        let mut data = vec![0u8; stride * h];
        for y in 0..h {
            for x in 0..w {
                // textured grey background, so the test is not trivially flat
                let v = 90 + ((x / 8 + y / 8) % 2) as u8 * 20;
                data[y * stride + x * 3..y * stride + x * 3 + 3].copy_from_slice(&[v, v, v]);
            }
        }
        if let Some((sx, sy, s)) = sq {
            for y in sy..sy + s {
                for x in sx..sx + s {
                    data[y * stride + x * 3..y * stride + x * 3 + 3]
                        .copy_from_slice(&[255, 255, 255]);
                }
            }
        }
        data
    }

    fn rgb(w: usize, h: usize, stride: usize, data: &[u8]) -> RgbFrame<'_> {
        RgbFrame {
            width: w as u32,
            height: h as u32,
            stride,
            data,
        }
    }

    #[test]
    fn still_then_moved_square() {
        let (w, h, stride) = (416, 416, 1248 + 4); // padded rows
        let a = frame_with_square(w, h, stride, Some((100, 100, 60)));
        let b = frame_with_square(w, h, stride, Some((140, 100, 60)));
        let mut g = MotionGate::default();
        assert!(
            g.check(&rgb(w, h, stride, &a)),
            "warm-up frame runs inference"
        );
        assert!(!g.check(&rgb(w, h, stride, &a)), "identical frame");
        assert!(!g.check(&rgb(w, h, stride, &a)));
        assert_eq!(g.last_changed_fraction(), 0.0);
        assert!(g.check(&rgb(w, h, stride, &b)), "square moved 40 px");
        assert!(g.last_changed_fraction() > 0.005);
        assert!(!g.check(&rgb(w, h, stride, &b)), "still again");
    }

    #[test]
    fn noise_and_small_changes_do_not_trigger() {
        let (w, h) = (320, 240);
        let a = frame_with_square(w, h, w * 3, None);
        let mut noisy = a.clone();
        for (i, v) in noisy.iter_mut().enumerate() {
            *v = v.wrapping_add((i * 31 % 7) as u8); // +0..6 per byte
        }
        let mut g = MotionGate::default();
        assert!(g.check(&rgb(w, h, w * 3, &a)));
        assert!(!g.check(&rgb(w, h, w * 3, &noisy)));
        // a 4x4 px change touches at most 4 of 3072 cells: below 0.5 %
        let tiny = frame_with_square(w, h, w * 3, Some((10, 10, 4)));
        assert!(!g.check(&rgb(w, h, w * 3, &tiny)));
        // a new frame size warms up again
        let small = frame_with_square(32, 24, 96, None);
        assert!(g.check(&rgb(32, 24, 96, &small)));
        assert!(!g.check(&rgb(32, 24, 96, &small)));
    }
}
