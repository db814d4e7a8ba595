//! `vidgest.detection/1`: one record per inferred frame that found something (or a heartbeat),
//! linked to the stored fragment that holds the frame.

use crate::clock::UnixNanos;
use serde::{Deserialize, Serialize};

/// Schema id carried in every detection record.
pub const DETECTION_SCHEMA: &str = "vidgest.detection/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// Objects were found in the frame.
    Detection,
    /// Nothing found for `heartbeat` seconds: the camera is watched and quiet.
    Heartbeat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionRecord {
    /// Always `DETECTION_SCHEMA`.
    pub schema: String,
    #[serde(rename = "type")]
    pub kind: RecordKind,
    pub device: String,
    pub camera: String,
    /// Producer time of the frame, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    pub timestamp_ns: UnixNanos,
    /// The stored fragment that holds the frame, as a decimal string (as Kinesis Video).
    pub fragment_number: String,
    pub model: String,
    /// Inference time in ms (one decimal); absent on heartbeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_ms: Option<f64>,
    pub detections: Vec<DetectedObject>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectedObject {
    pub label: String,
    pub class_id: u32,
    /// 0..1, three decimals.
    pub score: f64,
    #[serde(rename = "box")]
    pub bbox: BoundingBox,
    /// Names of the configured zones the object's bottom centre is in.
    pub zones: Vec<String>,
}

/// Normalized to the frame (0..1, four decimals): x, y of the top-left corner, width, height.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl DetectionRecord {
    /// A record of `kind` for the frame at `t`, held by fragment `fragment`.
    pub fn new(
        kind: RecordKind,
        device: &str,
        camera: &str,
        model: &str,
        t: UnixNanos,
        fragment: u64,
    ) -> Self {
        Self {
            schema: DETECTION_SCHEMA.to_string(),
            kind,
            device: device.to_string(),
            camera: camera.to_string(),
            timestamp: crate::clock::format_rfc3339(t),
            timestamp_ns: t,
            fragment_number: fragment.to_string(),
            model: model.to_string(),
            inference_ms: None,
            detections: Vec::new(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a detection record always serializes")
    }

    /// The fragment number as a number (records carry it as a string).
    pub fn fragment(&self) -> Option<u64> {
        self.fragment_number.parse().ok()
    }
}

/// Rounds in f64 so the JSON shows `0.636`, not the f32's `0.6359999775886536`.
pub fn round(v: f32, scale: f64) -> f64 {
    (v as f64 * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_the_documented_contract() {
        let mut r = DetectionRecord::new(
            RecordKind::Detection,
            "dev",
            "front",
            "yolov3-tiny",
            1_764_000_000_123_456_789,
            42,
        );
        r.inference_ms = Some(52.3);
        r.detections.push(DetectedObject {
            label: "dog".into(),
            class_id: 16,
            score: round(0.7634, 1e3),
            bbox: BoundingBox {
                x: 0.1,
                y: 0.2,
                w: 0.3,
                h: 0.4,
            },
            zones: vec!["yard".into()],
        });
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(v["schema"], "vidgest.detection/1");
        assert_eq!(v["type"], "detection");
        assert_eq!(v["timestamp"], "2025-11-24T16:00:00.123Z");
        assert_eq!(v["fragment_number"], "42");
        assert_eq!(v["detections"][0]["box"]["w"], 0.3);
        assert_eq!(v["detections"][0]["score"], 0.763);
        // Consumers read it back typed.
        let back: DetectionRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.fragment(), Some(42));
        // Heartbeats carry no inference time.
        let hb = DetectionRecord::new(RecordKind::Heartbeat, "d", "c", "m", 0, 1);
        let v: serde_json::Value = serde_json::from_slice(&hb.to_json()).unwrap();
        assert!(v.get("inference_ms").is_none());
        assert_eq!(v["detections"], serde_json::json!([]));
    }
}
