//! Class-aware greedy non-maximum suppression: within one class, a box is dropped when it
//! overlaps a higher-scoring kept box with IoU >= the threshold (boxes of different classes never
//! suppress each other).

use super::decode::Candidate;

/// Intersection over union of two corner boxes (0 for empty boxes).
pub fn iou(a: &Candidate, b: &Candidate) -> f32 {
    let iw = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let ih = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let inter = iw * ih;
    let area = |c: &Candidate| (c.x2 - c.x1).max(0.0) * (c.y2 - c.y1).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Keeps the best box per overlapping group and class; result sorted by score, highest first
/// (ties keep their input order).
pub fn class_aware(mut cands: Vec<Candidate>, iou_threshold: f32) -> Vec<Candidate> {
    cands.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::with_capacity(cands.len().min(64));
    for c in cands {
        if !kept
            .iter()
            .any(|k| k.class_id == c.class_id && iou(k, &c) >= iou_threshold)
        {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(class_id: u32, score: f32, x1: f32, y1: f32, x2: f32, y2: f32) -> Candidate {
        Candidate {
            class_id,
            score,
            x1,
            y1,
            x2,
            y2,
        }
    }

    #[test]
    fn iou_values() {
        let a = c(0, 1.0, 0.0, 0.0, 0.2, 0.2);
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
        let b = c(0, 1.0, 0.1, 0.0, 0.3, 0.2); // half overlap: 0.02 / 0.06
        assert!((iou(&a, &b) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&a, &c(0, 1.0, 0.5, 0.5, 0.6, 0.6)), 0.0);
        assert_eq!(iou(&c(0, 1.0, 0.1, 0.1, 0.1, 0.1), &a), 0.0);
    }

    #[test]
    fn suppresses_within_class_only() {
        let out = class_aware(
            vec![
                c(0, 0.6, 0.0, 0.0, 0.2, 0.2),  // suppressed by the 0.9 box (IoU 0.91)
                c(0, 0.9, 0.0, 0.0, 0.2, 0.22), // best of class 0
                c(1, 0.7, 0.0, 0.0, 0.2, 0.2),  // other class: kept
                c(0, 0.5, 0.5, 0.5, 0.7, 0.7),  // class 0, elsewhere: kept
                c(0, 0.4, 0.1, 0.0, 0.3, 0.22), // IoU 1/3 with the best: kept at 0.45
            ],
            0.45,
        );
        let scores: Vec<f32> = out.iter().map(|c| c.score).collect();
        assert_eq!(scores, [0.9, 0.7, 0.5, 0.4]);
        // a stricter threshold removes the 1/3-overlap box too
        let out = class_aware(
            vec![c(0, 0.9, 0.0, 0.0, 0.2, 0.2), c(0, 0.4, 0.1, 0.0, 0.3, 0.2)],
            0.3,
        );
        assert_eq!(out.len(), 1);
        assert!(class_aware(Vec::new(), 0.45).is_empty());
    }
}
