//! Per-camera filtering of detections: labels, minimum score, minimum box area, masks and zones.
//! Masks and zones test one point per box, its bottom centre (where an object touches the ground),
//! as Frigate does; polygons are in normalized frame coordinates (0..1).

use super::detector::Detection;

#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub name: String,
    pub polygon: Vec<(f32, f32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Keep only these labels (None: all).
    pub labels: Option<Vec<String>>,
    pub min_score: f32,
    /// Minimum box area as a fraction of the frame (0..1).
    pub min_area: f32,
    pub zones: Vec<Zone>,
    /// Detections whose bottom centre lies inside a mask are dropped.
    pub masks: Vec<Vec<(f32, f32)>>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            labels: None,
            min_score: 0.0,
            min_area: 0.0,
            zones: Vec::new(),
            masks: Vec::new(),
        }
    }
}

impl Filter {
    /// Keeps detections passing labels/score/area, drops those whose box bottom-centre is inside a
    /// mask, fills `zones` with the zones containing the bottom-centre. Detections outside every
    /// zone are kept (with empty `zones`): whether to require a zone is the caller's policy.
    pub fn apply(&self, dets: Vec<Detection>) -> Vec<Detection> {
        dets.into_iter()
            .filter_map(|mut d| {
                if d.score < self.min_score || d.bbox.w * d.bbox.h < self.min_area {
                    return None;
                }
                if let Some(l) = &self.labels {
                    if !l.contains(&d.label) {
                        return None;
                    }
                }
                let p = (d.bbox.x + d.bbox.w / 2.0, d.bbox.y + d.bbox.h);
                if self.masks.iter().any(|m| point_in_polygon(p, m)) {
                    return None;
                }
                d.zones = self
                    .zones
                    .iter()
                    .filter(|z| point_in_polygon(p, &z.polygon))
                    .map(|z| z.name.clone())
                    .collect();
                Some(d)
            })
            .collect()
    }
}

/// Even-odd ray casting (works for concave polygons; a point exactly on an edge may fall either way).
pub fn point_in_polygon((px, py): (f32, f32), poly: &[(f32, f32)]) -> bool {
    if poly.len() < 3 {
        return false;
    }
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let (xi, yi) = poly[i];
        let (xj, yj) = poly[j];
        if (yi > py) != (yj > py) && px < (xj - xi) * (py - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::detector::BBox;

    fn det(label: &str, score: f32, x: f32, y: f32, w: f32, h: f32) -> Detection {
        Detection {
            label: label.into(),
            class_id: 0,
            score,
            bbox: BBox { x, y, w, h },
            zones: Vec::new(),
        }
    }

    fn rect(x1: f32, y1: f32, x2: f32, y2: f32) -> Vec<(f32, f32)> {
        vec![(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    }

    #[test]
    fn polygon_rule() {
        let tri = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)];
        assert!(point_in_polygon((0.2, 0.2), &tri));
        assert!(!point_in_polygon((0.6, 0.6), &tri));
        assert!(!point_in_polygon((0.5, 0.5), &[(0.0, 0.0), (1.0, 1.0)]));
        // concave "U": the notch is outside
        let u = [
            (0.0, 0.0),
            (0.3, 0.0),
            (0.3, 0.6),
            (0.6, 0.6),
            (0.6, 0.0),
            (0.9, 0.0),
            (0.9, 1.0),
            (0.0, 1.0),
        ];
        assert!(!point_in_polygon((0.45, 0.3), &u));
        assert!(point_in_polygon((0.45, 0.8), &u));
        assert!(point_in_polygon((0.1, 0.3), &u));
    }

    #[test]
    fn labels_score_area() {
        let f = Filter {
            labels: Some(vec!["person".into(), "car".into()]),
            min_score: 0.5,
            min_area: 0.01,
            ..Filter::default()
        };
        let out = f.apply(vec![
            det("person", 0.9, 0.1, 0.1, 0.2, 0.2), // kept
            det("dog", 0.9, 0.1, 0.1, 0.2, 0.2),    // label
            det("car", 0.4, 0.1, 0.1, 0.2, 0.2),    // score
            det("car", 0.5, 0.1, 0.1, 0.05, 0.1),   // area 0.005
            det("car", 0.5, 0.1, 0.1, 0.1, 0.1),    // area 0.01: kept (>=)
        ]);
        let kept: Vec<(&str, f32)> = out.iter().map(|d| (d.label.as_str(), d.score)).collect();
        assert_eq!(kept, [("person", 0.9), ("car", 0.5)]);
        assert_eq!(
            Filter::default()
                .apply(vec![det("x", 0.0, 0.0, 0.0, 0.0, 0.0)])
                .len(),
            1
        );
    }

    #[test]
    fn zones_use_bottom_centre() {
        let f = Filter {
            zones: vec![
                Zone {
                    name: "driveway".into(),
                    polygon: rect(0.0, 0.5, 0.5, 1.0),
                },
                Zone {
                    name: "left".into(),
                    polygon: rect(0.0, 0.0, 0.5, 1.0),
                },
                Zone {
                    name: "top".into(),
                    polygon: rect(0.0, 0.0, 1.0, 0.3),
                },
            ],
            ..Filter::default()
        };
        // box spans the top zone, but its bottom centre (0.25, 0.8) is in driveway + left only
        let out = f.apply(vec![det("car", 0.9, 0.1, 0.1, 0.3, 0.7)]);
        assert_eq!(out[0].zones, ["driveway", "left"]);
        // bottom centre (0.75, 0.8): in no zone, still kept
        let out = f.apply(vec![det("car", 0.9, 0.6, 0.1, 0.3, 0.7)]);
        assert_eq!(out.len(), 1);
        assert!(out[0].zones.is_empty());
        // a box overlapping driveway with its bottom centre outside it is not in driveway
        let out = f.apply(vec![det("car", 0.9, 0.35, 0.6, 0.4, 0.2)]); // bottom centre (0.55, 0.8)
        assert!(!out[0].zones.contains(&"driveway".to_string()));
    }

    #[test]
    fn masks_drop_by_bottom_centre() {
        let f = Filter {
            masks: vec![rect(0.0, 0.0, 1.0, 0.2)], // e.g. a timestamp overlay or the sky
            zones: vec![Zone {
                name: "all".into(),
                polygon: rect(0.0, 0.0, 1.0, 1.0),
            }],
            ..Filter::default()
        };
        let out = f.apply(vec![
            det("bird", 0.9, 0.4, 0.0, 0.1, 0.15), // bottom centre y 0.15: masked
            det("person", 0.9, 0.4, 0.1, 0.1, 0.5), // top inside the mask, bottom 0.6: kept
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].label, "person");
        assert_eq!(out[0].zones, ["all"]);
    }
}
