//! RGB24 frame (HWC u8, padded rows) -> model input tensor in one pass through per-channel lookup
//! tables (normalization costs one load per value), into a buffer reused between frames.

use super::detector::RgbFrame;
use super::manifest::{Color, DType, InputSpec, Layout, Normalize, Resize};

/// A frame that does not fit the model input.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("frame is {}x{}; this letterbox model needs a frame that fits {}x{} with one side equal (scale it keeping the aspect ratio)", frame.0, frame.1, input.0, input.1)]
    LetterboxSize {
        frame: (u32, u32),
        input: (u32, u32),
    },
    #[error("frame is {}x{}; the model input is {}x{} (scale the frame to the model input first)", frame.0, frame.1, input.0, input.1)]
    StretchSize {
        frame: (u32, u32),
        input: (u32, u32),
    },
    #[error("frame buffer too small: {len} bytes for {width}x{height} with stride {stride}")]
    BufferTooSmall {
        len: usize,
        width: u32,
        height: u32,
        stride: usize,
    },
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Where the frame sits inside the model input (letterbox pads around it), in input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Placement {
    pub x0: u32,
    pub y0: u32,
    pub w: u32,
    pub h: u32,
}

pub(crate) struct Preprocessor {
    w: usize,
    h: usize,
    layout: Layout,
    dtype: DType,
    bgr: bool,
    letterbox: bool,
    pad: u8,
    /// lut[c][v]: value of byte v in tensor channel c (c in tensor order, so BGR is applied here).
    lut: Box<[[f32; 256]; 3]>,
    pub f32buf: Vec<f32>,
    pub u8buf: Vec<u8>,
    /// Placement the padding was last filled for; padding is rewritten only when it changes.
    filled_for: Option<Placement>,
}

impl Preprocessor {
    pub fn new(spec: &InputSpec) -> Self {
        let bgr = spec.color == Color::Bgr;
        let mut lut = Box::new([[0f32; 256]; 3]);
        for (c, table) in lut.iter_mut().enumerate() {
            // semantic colour of tensor channel c (imagenet statistics are per RGB channel)
            let rgb = if bgr { 2 - c } else { c };
            for (v, out) in table.iter_mut().enumerate() {
                let x = v as f32;
                *out = match spec.normalize {
                    Normalize::Div255 => x / 255.0,
                    Normalize::None => x,
                    Normalize::Imagenet => (x / 255.0 - IMAGENET_MEAN[rgb]) / IMAGENET_STD[rgb],
                };
            }
        }
        let n = spec.width as usize * spec.height as usize * 3;
        Preprocessor {
            w: spec.width as usize,
            h: spec.height as usize,
            layout: spec.layout,
            dtype: spec.dtype,
            bgr,
            letterbox: spec.resize == Resize::Letterbox,
            pad: spec.letterbox_pad,
            lut,
            f32buf: if spec.dtype == DType::Float32 {
                vec![0.0; n]
            } else {
                Vec::new()
            },
            u8buf: if spec.dtype == DType::Uint8 {
                vec![0; n]
            } else {
                Vec::new()
            },
            filled_for: None,
        }
    }

    pub fn letterbox(&self) -> bool {
        self.letterbox
    }

    /// Tensor shape for the input (batch 1).
    pub fn shape(&self) -> [usize; 4] {
        match self.layout {
            Layout::Nchw => [1, 3, self.h, self.w],
            Layout::Nhwc => [1, self.h, self.w, 3],
        }
    }

    /// Where a frame of this size goes: exactly the input size for `stretch`; for `letterbox`
    /// the frame must fit (one side equal to the input's, the other not larger) and is centred.
    pub fn placement(&self, fw: u32, fh: u32) -> Result<Placement, PreprocessError> {
        let (w, h) = (self.w as u32, self.h as u32);
        if fw == w && fh == h {
            return Ok(Placement { x0: 0, y0: 0, w, h });
        }
        if self.letterbox && fw > 0 && fh > 0 && ((fw == w && fh <= h) || (fh == h && fw <= w)) {
            return Ok(Placement {
                x0: (w - fw) / 2,
                y0: (h - fh) / 2,
                w: fw,
                h: fh,
            });
        }
        let (frame, input) = ((fw, fh), (w, h));
        Err(if self.letterbox {
            PreprocessError::LetterboxSize { frame, input }
        } else {
            PreprocessError::StretchSize { frame, input }
        })
    }

    /// Fills the input buffer from `frame`.
    pub fn run(&mut self, frame: &RgbFrame) -> Result<Placement, PreprocessError> {
        let p = self.placement(frame.width, frame.height)?;
        let row = p.w as usize * 3;
        if frame.stride < row || frame.data.len() < frame.stride * (p.h as usize - 1) + row {
            return Err(PreprocessError::BufferTooSmall {
                len: frame.data.len(),
                width: frame.width,
                height: frame.height,
                stride: frame.stride,
            });
        }
        if self.letterbox && self.filled_for != Some(p) {
            self.fill_pad();
            self.filled_for = Some(p);
        }
        match (self.dtype, self.layout, self.bgr) {
            (DType::Float32, Layout::Nchw, false) => self.f32_nchw::<false>(frame, p),
            (DType::Float32, Layout::Nchw, true) => self.f32_nchw::<true>(frame, p),
            (DType::Float32, Layout::Nhwc, false) => self.f32_nhwc::<false>(frame, p),
            (DType::Float32, Layout::Nhwc, true) => self.f32_nhwc::<true>(frame, p),
            (DType::Uint8, layout, bgr) => self.u8_any(frame, p, layout, bgr),
        }
        Ok(p)
    }

    fn fill_pad(&mut self) {
        let v = self.pad as usize;
        let plane = self.w * self.h;
        match self.dtype {
            DType::Uint8 => self.u8buf.fill(self.pad),
            DType::Float32 => match self.layout {
                Layout::Nchw => {
                    for c in 0..3 {
                        self.f32buf[c * plane..(c + 1) * plane].fill(self.lut[c][v]);
                    }
                }
                Layout::Nhwc => {
                    for px in self.f32buf.chunks_exact_mut(3) {
                        px.copy_from_slice(&[self.lut[0][v], self.lut[1][v], self.lut[2][v]]);
                    }
                }
            },
        }
    }

    fn f32_nchw<const BGR: bool>(&mut self, f: &RgbFrame, p: Placement) {
        let plane = self.w * self.h;
        let (c0, rest) = self.f32buf.split_at_mut(plane);
        let (c1, c2) = rest.split_at_mut(plane);
        let [l0, l1, l2] = &*self.lut;
        let (s0, s2) = if BGR { (2, 0) } else { (0, 2) };
        let n = p.w as usize;
        for y in 0..p.h as usize {
            let src = &f.data[y * f.stride..y * f.stride + n * 3];
            let off = (p.y0 as usize + y) * self.w + p.x0 as usize;
            let dst = c0[off..off + n]
                .iter_mut()
                .zip(&mut c1[off..off + n])
                .zip(&mut c2[off..off + n]);
            for (((a, b), c), px) in dst.zip(src.chunks_exact(3)) {
                *a = l0[px[s0] as usize];
                *b = l1[px[1] as usize];
                *c = l2[px[s2] as usize];
            }
        }
    }

    fn f32_nhwc<const BGR: bool>(&mut self, f: &RgbFrame, p: Placement) {
        let [l0, l1, l2] = &*self.lut;
        let (s0, s2) = if BGR { (2, 0) } else { (0, 2) };
        let n = p.w as usize;
        for y in 0..p.h as usize {
            let src = &f.data[y * f.stride..y * f.stride + n * 3];
            let off = ((p.y0 as usize + y) * self.w + p.x0 as usize) * 3;
            let dst = &mut self.f32buf[off..off + n * 3];
            for (d, px) in dst.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
                d[0] = l0[px[s0] as usize];
                d[1] = l1[px[1] as usize];
                d[2] = l2[px[s2] as usize];
            }
        }
    }

    fn u8_any(&mut self, f: &RgbFrame, p: Placement, layout: Layout, bgr: bool) {
        let n = p.w as usize;
        let plane = self.w * self.h;
        let order = if bgr { [2, 1, 0] } else { [0, 1, 2] };
        for y in 0..p.h as usize {
            let src = &f.data[y * f.stride..y * f.stride + n * 3];
            let pix = (p.y0 as usize + y) * self.w + p.x0 as usize;
            match layout {
                Layout::Nhwc if !bgr => self.u8buf[pix * 3..pix * 3 + n * 3].copy_from_slice(src),
                Layout::Nhwc => {
                    let dst = &mut self.u8buf[pix * 3..pix * 3 + n * 3];
                    for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
                        d.copy_from_slice(&[s[2], s[1], s[0]]);
                    }
                }
                Layout::Nchw => {
                    for (c, &sc) in order.iter().enumerate() {
                        let dst = &mut self.u8buf[c * plane + pix..c * plane + pix + n];
                        for (d, s) in dst.iter_mut().zip(src.chunks_exact(3)) {
                            *d = s[sc];
                        }
                    }
                }
            }
        }
    }
}
