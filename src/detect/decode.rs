//! Output decoders per model family. Each turns raw output tensors into candidate boxes
//! (normalized x1,y1,x2,y2 on the model input) with score >= min_score, one class per box
//! (the best), before NMS. Shapes are checked here because dynamic-shape models are only known
//! at run time.

use super::manifest::BoxFormat;

/// Output tensors whose shapes do not fit the decoder (only known at run time for dynamic shapes).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("output {output} has shape {shape:?}, expected [1,N,{}]", cols.map_or("C".to_string(), |c| c.to_string()))]
    Rows {
        output: &'static str,
        shape: Vec<i64>,
        cols: Option<usize>,
    },
    #[error("{family} output has shape {shape:?}, expected {expected}")]
    Layout {
        family: &'static str,
        shape: Vec<i64>,
        expected: &'static str,
    },
    #[error("outputs boxes {boxes:?} and scores {scores:?} disagree on the number of boxes")]
    BoxesScores { boxes: Vec<i64>, scores: Vec<i64> },
    #[error("outputs boxes {boxes:?}, classes {classes:?}, scores {scores:?} disagree on the number of detections")]
    Detections {
        boxes: Vec<i64>,
        classes: Vec<i64>,
        scores: Vec<i64>,
    },
    #[error("output count has shape {shape:?}, expected [1]")]
    Count { shape: Vec<i64> },
}

/// A decoded box before NMS: corners normalized to the model input (0..1, may overshoot).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub class_id: u32,
    pub score: f32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

/// A borrowed output tensor.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub shape: &'a [i64],
    pub data: &'a [f32],
}

impl View<'_> {
    /// The shape without leading batch dims of 1, e.g. `[1,2535,4]` -> `[2535,4]`.
    fn dims(&self) -> Vec<usize> {
        let mut d: Vec<usize> = self.shape.iter().map(|&x| x.max(0) as usize).collect();
        while d.len() > 1 && d[0] == 1 {
            d.remove(0);
        }
        d
    }

    fn rows(
        &self,
        output: &'static str,
        cols: Option<usize>,
    ) -> Result<(usize, usize), DecodeError> {
        let d = self.dims();
        match (d.as_slice(), cols) {
            ([n, c], None) => Ok((*n, *c)),
            ([n, c], Some(want)) if *c == want => Ok((*n, *c)),
            _ => Err(DecodeError::Rows {
                output,
                shape: self.shape.to_vec(),
                cols,
            }),
        }
    }
}

/// Converts a raw box to normalized corners on the model input.
pub fn to_corners(fmt: BoxFormat, b: [f32; 4], in_w: f32, in_h: f32) -> [f32; 4] {
    match fmt {
        BoxFormat::CxcywhNormalized => [
            b[0] - b[2] / 2.0,
            b[1] - b[3] / 2.0,
            b[0] + b[2] / 2.0,
            b[1] + b[3] / 2.0,
        ],
        BoxFormat::CxcywhPixels => [
            (b[0] - b[2] / 2.0) / in_w,
            (b[1] - b[3] / 2.0) / in_h,
            (b[0] + b[2] / 2.0) / in_w,
            (b[1] + b[3] / 2.0) / in_h,
        ],
        BoxFormat::XyxyNormalized => b,
        BoxFormat::XyxyPixels => [b[0] / in_w, b[1] / in_h, b[2] / in_w, b[3] / in_h],
        BoxFormat::YxyxNormalized => [b[1], b[0], b[3], b[2]],
    }
}

/// Index and value of the largest element (the first one on ties, like numpy's argmax).
fn argmax(v: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &x) in v.iter().enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best
}

/// Geometry shared by all decoders.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub format: BoxFormat,
    pub in_w: f32,
    pub in_h: f32,
}

impl Geometry {
    fn push(&self, out: &mut Vec<Candidate>, class_id: u32, score: f32, b: [f32; 4]) {
        let [x1, y1, x2, y2] = to_corners(self.format, b, self.in_w, self.in_h);
        out.push(Candidate {
            class_id,
            score,
            x1,
            y1,
            x2,
            y2,
        });
    }
}

/// `yolo_boxes_scores`: boxes `[1,N,4]`, scores `[1,N,C]` (objectness already multiplied in).
pub fn yolo_boxes_scores(
    boxes: View,
    scores: View,
    g: Geometry,
    min_score: f32,
    out: &mut Vec<Candidate>,
) -> Result<(), DecodeError> {
    let (n, _) = boxes.rows("boxes", Some(4))?;
    let (ns, c) = scores.rows("scores", None)?;
    if ns != n || c == 0 {
        return Err(DecodeError::BoxesScores {
            boxes: boxes.shape.to_vec(),
            scores: scores.shape.to_vec(),
        });
    }
    for (i, row) in scores.data.chunks_exact(c).enumerate() {
        let (k, s) = argmax(row);
        if s >= min_score {
            let b = &boxes.data[i * 4..i * 4 + 4];
            g.push(out, k as u32, s, [b[0], b[1], b[2], b[3]]);
        }
    }
    Ok(())
}

/// `yolov5`: one tensor `[1,N,5+C]`: box, objectness, class probabilities; score = obj * class.
pub fn yolov5(
    t: View,
    g: Geometry,
    min_score: f32,
    out: &mut Vec<Candidate>,
) -> Result<(), DecodeError> {
    let (_, w) = t.rows("tensor", None)?;
    if w < 6 {
        return Err(DecodeError::Layout {
            family: "yolov5",
            shape: t.shape.to_vec(),
            expected: "[1,N,5+C]",
        });
    }
    for row in t.data.chunks_exact(w) {
        let obj = row[4];
        // class probabilities are <= 1, so a low objectness can never reach min_score
        if obj < min_score {
            continue;
        }
        let (k, p) = argmax(&row[5..]);
        let s = obj * p;
        if s >= min_score {
            g.push(out, k as u32, s, [row[0], row[1], row[2], row[3]]);
        }
    }
    Ok(())
}

/// `yolov8`: one tensor `[1,4+C,N]` (channels first), or `[1,N,4+C]`; no objectness.
/// `classes` (the label count) tells the two layouts apart; otherwise the longer side is N.
pub fn yolov8(
    t: View,
    classes: usize,
    g: Geometry,
    min_score: f32,
    out: &mut Vec<Candidate>,
) -> Result<(), DecodeError> {
    let (a, b) = t.rows("tensor", None)?;
    let channels_first = if a == 4 + classes {
        true
    } else if b == 4 + classes {
        false
    } else {
        a < b
    };
    let (n, ch) = if channels_first { (b, a) } else { (a, b) };
    if ch < 5 {
        return Err(DecodeError::Layout {
            family: "yolov8",
            shape: t.shape.to_vec(),
            expected: "[1,4+C,N]",
        });
    }
    if !channels_first {
        for row in t.data.chunks_exact(ch) {
            let (k, s) = argmax(&row[4..]);
            if s >= min_score {
                g.push(out, k as u32, s, [row[0], row[1], row[2], row[3]]);
            }
        }
        return Ok(());
    }
    // Channels first: walk class rows contiguously (cache-friendly) keeping the best per box.
    let mut best = vec![(f32::NEG_INFINITY, 0u32); n];
    for (k, row) in t.data[4 * n..].chunks_exact(n).enumerate() {
        for (bst, &s) in best.iter_mut().zip(row) {
            if s > bst.0 {
                *bst = (s, k as u32);
            }
        }
    }
    for (i, &(s, k)) in best.iter().enumerate() {
        if s >= min_score {
            let v = |c: usize| t.data[c * n + i];
            g.push(out, k, s, [v(0), v(1), v(2), v(3)]);
        }
    }
    Ok(())
}

/// The outputs of an `ssd` model (class ids and count converted to f32).
#[derive(Debug, Clone, Copy)]
pub struct SsdOutputs<'a> {
    pub boxes: View<'a>,
    pub classes: View<'a>,
    pub scores: View<'a>,
    pub count: Option<View<'a>>,
}

/// `ssd` (TF Object Detection API): boxes `[1,N,4]`, classes `[1,N]`, scores `[1,N]`, optional count
/// `[1]`. Class ids are shifted by `class_offset`; ids that end up negative (background) are dropped.
pub fn ssd(
    t: SsdOutputs,
    class_offset: i64,
    g: Geometry,
    min_score: f32,
    out: &mut Vec<Candidate>,
) -> Result<(), DecodeError> {
    let SsdOutputs {
        boxes,
        classes,
        scores,
        count,
    } = t;
    let (n, _) = boxes.rows("boxes", Some(4))?;
    if classes.data.len() != n || scores.data.len() != n {
        return Err(DecodeError::Detections {
            boxes: boxes.shape.to_vec(),
            classes: classes.shape.to_vec(),
            scores: scores.shape.to_vec(),
        });
    }
    let n = match count {
        Some(c) => match c.data.first() {
            Some(&v) if v >= 0.0 => (v as usize).min(n),
            _ => {
                return Err(DecodeError::Count {
                    shape: c.shape.to_vec(),
                })
            }
        },
        None => n,
    };
    for i in 0..n {
        let s = scores.data[i];
        let k = classes.data[i].round() as i64 - class_offset;
        if s >= min_score && k >= 0 {
            let b = &boxes.data[i * 4..i * 4 + 4];
            g.push(out, k as u32, s, [b[0], b[1], b[2], b[3]]);
        }
    }
    Ok(())
}
