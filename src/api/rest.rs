//! The REST family under /api/v1 (JSON). Playback (issue: playback API) adds fragments, clips,
//! snapshots and detection events here; for now it lists the cameras with state and counters.

use super::auth::{refuse_json, scope_by_method, RouteAuth};
use super::ApiState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// Read scope for GET and HEAD, write for the rest; refusals are `{"error": ...}` with 401/403.
pub const AUTH: RouteAuth = RouteAuth {
    scope: scope_by_method,
    refuse: refuse_json,
};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/cameras", get(cameras))
        .route("/deliveries", get(deliveries))
}

/// `GET /api/v1/cameras`: every running camera with its state, why, and its counters.
async fn cameras(State(state): State<ApiState>) -> Json<Value> {
    let cameras: Vec<Value> = state
        .cameras
        .iter()
        .map(|c| {
            let (s, detail) = c.state();
            json!({
                "name": c.name,
                "state": s,
                "detail": detail,
                "counters": c.counters,
            })
        })
        .collect();
    Json(json!({ "cameras": cameras }))
}

/// `GET /api/v1/deliveries`: every delivery and forwarder with its state, lag and counters.
async fn deliveries(State(state): State<ApiState>) -> Json<Value> {
    let now = state.clock.now_ns();
    let streams = state.streams.clone();
    let pipelines = state.deliveries.clone();
    // Forwarders' lag reads checkpoint files and shard tails: blocking I/O.
    let list = tokio::task::spawn_blocking(move || {
        pipelines
            .iter()
            .map(|p| p.snapshot(now, &streams))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Json(json!({ "deliveries": list }))
}
