//! Device and pipeline metrics (docs/operations.md#metrics): a collector thread samples every
//! `[metrics] interval`, puts a `vidgest.metrics/1` record into `[metrics] stream` (deliveries
//! and forwarders ship it like detections) and keeps the sample for `GET /metrics`, which
//! renders it as Prometheus text.

mod collect;
pub mod exposition;
mod histogram;

pub use collect::{rate, thread_cpu_seconds, CameraList, Collector, PipelineList, Sources};
pub use histogram::{DetectStats, HistogramSnapshot, LatencyHistogram};

use crate::api::ApiState;
use crate::config::MetricsConfig;
use crate::lifecycle::{Handle, Shutdown};
use crate::records::MetricsRecord;
use crate::streams::{PutRecord, ShardStreams};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;
use std::sync::Arc;

/// The newest sample, shared by the collector (writer) and `GET /metrics` (readers).
#[derive(Debug, Clone, Default)]
pub struct Latest(Arc<RwLock<Option<Arc<MetricsRecord>>>>);

impl Latest {
    pub fn get(&self) -> Option<Arc<MetricsRecord>> {
        self.0.read().clone()
    }

    fn set(&self, r: MetricsRecord) {
        *self.0.write() = Some(Arc::new(r));
    }
}

/// Creates `[metrics] stream` when missing (one shard, 24 h, like detection streams); false when
/// it cannot (logged: records are off, /metrics still serves). The daemon calls it before the
/// deliveries start, as one may read the stream.
pub fn ensure_stream(config: &MetricsConfig, streams: &ShardStreams) -> bool {
    if !config.enabled || streams.describe(&config.stream).is_ok() {
        return config.enabled;
    }
    // `ensure_stream` logs the creation
    match streams.ensure_stream(&config.stream, 1, 24) {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(stream = %config.stream, "metrics records off (GET /metrics still serves): cannot create the stream: {e}");
            false
        }
    }
}

/// Starts the collector: the first sample is taken before this returns (so /metrics answers
/// as soon as the API listens), then one every `config.interval` on the `metrics` thread.
pub fn start(config: &MetricsConfig, sources: Sources, latest: Latest) -> Handle {
    if !config.enabled {
        return Handle::passive("metrics");
    }
    let stream = config.stream.clone();
    let records_on = ensure_stream(config, &sources.streams);
    let mut collector = Collector::new(sources);
    let mut publisher = Publisher {
        stream,
        records_on,
        failing: false,
    };
    publisher.publish(&mut collector, &latest);
    let shutdown = Shutdown::new();
    let every = config.interval.0;
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn({
            let shutdown = shutdown.clone();
            move || {
                while !shutdown.wait(every) {
                    publisher.publish(&mut collector, &latest);
                }
            }
        })
        .expect("spawn metrics thread");
    Handle::new(
        "metrics",
        move || shutdown.trigger(),
        move || {
            let _ = thread.join();
        },
    )
}

struct Publisher {
    stream: String,
    records_on: bool,
    /// The last put failed (logged once until it works again).
    failing: bool,
}

impl Publisher {
    fn publish(&mut self, collector: &mut Collector, latest: &Latest) {
        let cpu_start = collect::thread_cpu_seconds();
        let record = collector.collect();
        if self.records_on {
            let put = self.put(collector, &record);
            match put {
                Ok(_) if self.failing => {
                    self.failing = false;
                    tracing::info!(stream = %self.stream, "metrics records written again");
                }
                Ok(_) => {}
                Err(e) if !self.failing => {
                    self.failing = true;
                    tracing::error!(stream = %self.stream, "cannot write the metrics record: {e}");
                }
                Err(_) => {}
            }
        }
        latest.set(record);
        collector.cost.collections_total += 1;
        collector.cost.cpu_seconds_total += collect::thread_cpu_seconds() - cpu_start;
    }

    fn put(&self, collector: &Collector, record: &MetricsRecord) -> Result<(), PutError> {
        let rec = PutRecord {
            partition_key: record.device.clone(),
            explicit_hash_key: None,
            data: serde_json::to_vec(record)?,
        };
        collector.sources().streams.put(&self.stream, rec)?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum PutError {
    #[error("cannot encode it: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Stream(#[from] crate::streams::StreamError),
}

/// `GET /metrics`: the newest sample as Prometheus text (503 while metrics are off).
pub async fn serve(State(state): State<ApiState>) -> Response {
    match state.metrics.get() {
        Some(r) => (
            [(header::CONTENT_TYPE, exposition::CONTENT_TYPE)],
            exposition::render(&r),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are off ([metrics] enabled = false)\n",
        )
            .into_response(),
    }
}

/// The `/metrics` route, to be guarded with the read scope (`api::router`).
pub fn router() -> axum::Router<ApiState> {
    axum::Router::new().route("/metrics", axum::routing::get(serve))
}
