//! `GET /api/v1/health`: one overall status over cameras, detection, shard streams, deliveries
//! and the video store, with the reasons when it is not "ok". 200 when ok, 503 when degraded, so
//! a load balancer or `curl -f` can use it; `/healthz` (no token) stays the bare liveness probe.

use super::ApiState;
use crate::capture::CameraState;
use crate::clock::format_rfc3339;
use crate::store::{DiskSpace, Statvfs, StoreReader};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The overall verdict and its reasons; `problems` is empty when ok.
#[derive(Debug, Default)]
struct Verdict {
    problems: Vec<String>,
}

impl Verdict {
    fn flag(&mut self, what: String) {
        self.problems.push(what);
    }
}

fn camera_problem(state: CameraState) -> bool {
    matches!(state, CameraState::Backoff | CameraState::Failed)
}

fn delivery_problem(state: &str) -> bool {
    matches!(state, "retrying" | "failing")
}

pub(super) async fn health(State(state): State<ApiState>) -> Response {
    let mut verdict = Verdict::default();
    let cameras: Vec<Value> = state
        .cameras()
        .iter()
        .map(|c| {
            let (s, detail) = c.state();
            if camera_problem(s) {
                verdict.flag(format!("camera {}: {detail}", c.name));
            }
            json!({ "name": c.name, "state": s, "detail": detail })
        })
        .collect();

    let detection = state.detection();
    if !detection.streams.is_empty() && detection.workers == 0 {
        verdict.flag(
            "detection is configured but not running (ONNX Runtime missing? see the log)".into(),
        );
    }
    let detection_json = json!({
        "workers": detection.workers,
        "cameras": detection.streams.iter().map(|(c, s)| json!({"camera": c, "stream": s})).collect::<Vec<_>>(),
    });

    // Shard streams, deliveries (with their consumer lag) and the store: file system reads.
    let now = state.clock.now_ns();
    let streams = state.streams.clone();
    let pipelines = state.deliveries();
    let video = state.video.clone();
    let blocking = tokio::task::spawn_blocking(move || {
        let shard_streams: Vec<Value> = streams
            .list_streams()
            .into_iter()
            .filter_map(|name| {
                let info = streams.describe(&name).ok()?;
                let stats = streams.shard_stats(&name).unwrap_or_default();
                Some(json!({
                    "name": name,
                    "shards": info.shards.len(),
                    "retention_hours": info.retention_hours,
                    "bytes": stats.iter().map(|s| s.bytes).sum::<u64>(),
                    "records": stats.iter().map(|s| s.tip.0 - s.trim_horizon.0).sum::<u64>(),
                }))
            })
            .collect();
        let deliveries: Vec<_> = pipelines
            .iter()
            .map(|p| p.snapshot(now, &streams))
            .collect();
        let storage = video.map(|store| storage(&store, now));
        (shard_streams, deliveries, storage)
    });
    let (shard_streams, deliveries, storage) = match blocking.await {
        Ok(v) => v,
        Err(e) => {
            verdict.flag(format!("the health check failed: {e}"));
            (Vec::new(), Vec::new(), None)
        }
    };
    for d in &deliveries {
        if delivery_problem(&d.state) {
            verdict.flag(format!(
                "delivery {}: {} ({})",
                d.name,
                d.state,
                d.last_error.as_deref().unwrap_or("no error recorded")
            ));
        }
    }
    let storage = match storage {
        None => Value::Null,
        Some((value, problems)) => {
            problems.into_iter().for_each(|p| verdict.flag(p));
            value
        }
    };

    let ok = verdict.problems.is_empty();
    let (p50, p95, samples) = crate::playback::live::live_latency_ms();
    let live_latency = json!({ "p50": p50, "p95": p95, "samples": samples });
    let live_lagged: u64 = (state.cameras().iter())
        .map(|c| c.live.lagged.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "problems": verdict.problems,
        "cameras": cameras,
        "detection": detection_json,
        "shard_streams": shard_streams,
        "deliveries": deliveries,
        "storage": storage,
        "playback": {
            "active_streams": crate::playback::active_streams(),
            "bytes_streamed": crate::playback::bytes_streamed(),
            "live_subscribers": crate::playback::live::live_subscribers(),
            "live_latency_ms": live_latency,
            "live_lagged_chunks": live_lagged,
        },
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Disk use, free space against the reserve, and per camera the retention horizon: the oldest
/// stored video and the retention in force.
fn storage(store: &crate::store::Store, now: crate::clock::UnixNanos) -> (Value, Vec<String>) {
    let mut problems = Vec::new();
    let free = Statvfs.available(store.root()).ok();
    if let Some(free) = free {
        if free < store.min_free() {
            problems.push(format!(
                "free disk space ({}) is below storage.min_free ({}): retention is deleting video",
                crate::config::format_bytes(free),
                crate::config::format_bytes(store.min_free())
            ));
        }
    }
    let mut cameras = Vec::new();
    match StoreReader::open(store.root()) {
        Ok(reader) => match reader.streams() {
            Ok(list) => {
                for s in list {
                    let retention = reader
                        .stream_details(&s.name)
                        .ok()
                        .and_then(|d| d.retention_ns);
                    cameras.push(json!({
                        "camera": s.name,
                        "bytes": s.bytes,
                        "fragments": s.fragments,
                        "oldest": s.first_producer_ns.map(format_rfc3339),
                        "newest": s.last_producer_end_ns.map(format_rfc3339),
                        "retention_hours": retention.map(|r| r as f64 / 3.6e12),
                        "horizon_seconds": s.first_producer_ns.map(|t| (now - t).max(0) / 1_000_000_000),
                    }));
                }
            }
            Err(e) => problems.push(format!("the video index cannot be read: {e}")),
        },
        Err(crate::store::StoreError::NoStore(_)) => {}
        Err(e) => problems.push(format!("the video index cannot be read: {e}")),
    }
    (
        json!({
            "video_bytes": store.total_usage(),
            "free_bytes": free,
            "min_free_bytes": store.min_free(),
            "cameras": cameras,
        }),
        problems,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_parts_degrade() {
        assert!(camera_problem(CameraState::Failed));
        assert!(camera_problem(CameraState::Backoff));
        assert!(!camera_problem(CameraState::Streaming));
        assert!(!camera_problem(CameraState::Starting));
        assert!(delivery_problem("failing"));
        assert!(!delivery_problem("healthy"));
    }
}
