//! Record schemas: what vidgest writes into its shard streams, as typed serde structs shared by
//! producers (the detection linker; metrics and camera events later) and consumers (delivery,
//! the API). The JSON shape is the contract in docs/records.md: fields are only ever added.

mod detection;
mod metrics;

pub use detection::{
    round, BoundingBox, DetectedObject, DetectionRecord, RecordKind, DETECTION_SCHEMA,
};
pub use metrics::{
    CameraMetrics, CollectorMetrics, DetectMetrics, DiskMetrics, HostMetrics, MetricsRecord,
    NetworkInterface, PipelineMetrics, ProcessMetrics, StreamMetrics, StreamsMetrics, Temperature,
    METRICS_SCHEMA,
};
