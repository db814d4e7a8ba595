//! The REST family under /api/v1 (JSON): cameras with state and counters, deliveries, health,
//! playback (fragment listings and `clip.mp4` downloads) and detection events
//! (docs/http-api.md#rest-api).

mod events;
mod health;

use super::auth::{refuse_json, scope_by_method, RouteAuth};
use super::ApiState;
use crate::clock::{format_rfc3339, UnixNanos};
use crate::playback::images::{self, FrameError};
use crate::playback::{
    clip_len, clip_range_body, parse_range, plan_clip, ByteRange, ClipError, RangeRequest,
};
use crate::store::{StoreError, StoreReader, TimeOrigin};
use crate::timespec::parse_time;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
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
        .route("/cameras/{name}/fragments", get(fragments))
        .route("/cameras/{name}/clip.mp4", get(clip))
        .route("/cameras/{name}/events", get(events::events))
        .route("/health", get(health::health))
        .route("/cameras/{name}/snapshot.jpg", get(snapshot))
        .route("/cameras/{name}/live.mp4", get(live))
}

/// `GET /api/v1/cameras/{name}/live.mp4`: the low-latency live feed, a never-ending fragmented
/// MP4 (init segment, then one moof+mdat per access unit from the next key frame;
/// playback/live.rs). 503 while the camera is not streaming.
async fn live(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, RestError> {
    let cam = state
        .cameras()
        .iter()
        .find(|c| c.name == name)
        .cloned()
        .ok_or_else(|| RestError::UnknownCamera(name.clone()))?;
    let (s, detail) = cam.state();
    if s != crate::capture::CameraState::Streaming {
        return Err(RestError::Unavailable(format!(
            "camera `{name}` is not streaming ({}{}{detail})",
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            if detail.is_empty() { "" } else { ": " },
        )));
    }
    let body = cam.live.body(state.shutdown.clone());
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("video/mp4")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::HeaderName::from_static("x-vidgest-live"),
                HeaderValue::from_static("1"),
            ),
        ],
        body,
    )
        .into_response())
}

/// `GET /api/v1/cameras`: every running camera with its state, why, its counters, and the shard
/// stream of its detection records (null: no detection).
async fn cameras(State(state): State<ApiState>) -> Json<Value> {
    let detection_streams = state.detection();
    let cameras: Vec<Value> = state
        .cameras()
        .iter()
        .map(|c| {
            let (s, detail) = c.state();
            let detection = detection_streams
                .streams
                .iter()
                .find(|(name, _)| *name == c.name)
                .map(|(_, stream)| stream);
            json!({
                "name": c.name,
                "state": s,
                "detail": detail,
                "counters": c.counters,
                "detection_stream": detection,
            })
        })
        .collect();
    Json(json!({ "cameras": cameras }))
}

/// `GET /api/v1/deliveries`: every delivery and forwarder with its state, lag and counters.
async fn deliveries(State(state): State<ApiState>) -> Json<Value> {
    let now = state.clock.now_ns();
    let streams = state.streams.clone();
    let pipelines = state.deliveries();
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

/// The longest range one playback request may cover.
const MAX_RANGE_NS: i64 = 24 * 3600 * 1_000_000_000;
/// Fragments per listing when the request names no `limit`, and the most it may ask for.
const DEFAULT_LIMIT: usize = 1000;
const MAX_LIMIT: usize = 10_000;

#[derive(Debug, thiserror::Error)]
enum RestError {
    #[error("{0}")]
    BadRequest(String),
    #[error("unknown camera `{0}`")]
    UnknownCamera(String),
    #[error(transparent)]
    NoMedia(ClipError),
    #[error("{0}")]
    NoPicture(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let status = match &self {
            RestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RestError::UnknownCamera(_) | RestError::NoMedia(_) | RestError::NoPicture(_) => {
                StatusCode::NOT_FOUND
            }
            RestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!("REST playback: {self}");
        }
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

impl From<StoreError> for RestError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownCamera(name) => RestError::UnknownCamera(name),
            e => RestError::Internal(e.to_string()),
        }
    }
}

impl From<ClipError> for RestError {
    fn from(e: ClipError) -> Self {
        match e {
            ClipError::Store(e) => e.into(),
            ClipError::BadRange => RestError::BadRequest(e.to_string()),
            e @ ClipError::Empty { .. } => RestError::NoMedia(e),
            e => RestError::Internal(e.to_string()),
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct RangeQuery {
    start: Option<String>,
    end: Option<String>,
    // Parsed by hand so that a bad value gets the JSON error body too.
    limit: Option<String>,
}

impl RangeQuery {
    /// `[start, end]` in nanoseconds, times as the CLI accepts them, at most `MAX_RANGE_NS` long.
    fn range(&self, now: UnixNanos) -> Result<(UnixNanos, UnixNanos), RestError> {
        let time = |name: &str, v: &Option<String>| {
            let v = v.as_deref().ok_or_else(|| {
                RestError::BadRequest(format!("the `{name}` parameter is required"))
            })?;
            parse_time(v, now).map_err(|e| RestError::BadRequest(e.to_string()))
        };
        let (start, end) = (time("start", &self.start)?, time("end", &self.end)?);
        if end < start {
            return Err(RestError::BadRequest(
                "end time is before start time".into(),
            ));
        }
        if end - start > MAX_RANGE_NS {
            return Err(RestError::BadRequest(
                "the range is longer than 24 hours".into(),
            ));
        }
        Ok((start, end))
    }
}

/// Runs `f` with a store reader on a blocking thread (SQLite and file I/O). `None` when the
/// store does not know the camera (or nothing has been recorded at all).
async fn with_reader<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(StoreReader) -> Result<T, RestError> + Send + 'static,
) -> Result<Option<T>, RestError> {
    let root = state.video.as_ref().map(|s| s.root().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let reader = match root.map(|r| StoreReader::open(&r)) {
            Some(Ok(r)) => r,
            Some(Err(StoreError::NoStore(_))) | None => return Ok(None),
            Some(Err(e)) => return Err(e.into()),
        };
        match f(reader) {
            Ok(v) => Ok(Some(v)),
            Err(RestError::UnknownCamera(_)) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(|e| RestError::Internal(format!("the read task failed: {e}")))?
}

fn configured(state: &ApiState, camera: &str) -> bool {
    state.cameras().iter().any(|c| c.name == camera)
}

/// A `limit` query parameter: `default` when absent, else 1..=`max`.
fn parse_limit(limit: Option<&str>, default: usize, max: usize) -> Result<usize, RestError> {
    let limit = match limit {
        None => default,
        Some(l) => l.trim().parse().unwrap_or(0),
    };
    if limit == 0 || limit > max {
        return Err(RestError::BadRequest(format!(
            "`limit` must be between 1 and {max}"
        )));
    }
    Ok(limit)
}

/// `GET /api/v1/cameras/{name}/fragments?start=T&end=T[&limit=N]`: fragments whose producer
/// start time is in the range, oldest first.
async fn fragments(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<Value>, RestError> {
    let (start, end) = q.range(state.clock.now_ns())?;
    let limit = parse_limit(q.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let camera = name.clone();
    let list = with_reader(&state, move |r| {
        Ok(r.fragments(&camera, Some(start), Some(end), limit)?)
    })
    .await?;
    let list = match list {
        Some(l) => l,
        None if configured(&state, &name) => Vec::new(),
        None => return Err(RestError::UnknownCamera(name)),
    };
    let fragments: Vec<Value> = list
        .iter()
        .map(|f| {
            json!({
                "number": f.fragment_number,
                "producer_timestamp": format_rfc3339(f.producer_ns),
                "server_timestamp": format_rfc3339(f.server_ns),
                "duration_ms": f.duration_ns / 1_000_000,
                "size": f.size,
            })
        })
        .collect();
    Ok(Json(json!({ "camera": name, "fragments": fragments })))
}

/// `GET /api/v1/cameras/{name}/clip.mp4?start=T&end=T`: the range as one fragmented MP4,
/// streamed fragment by fragment from the segment files. When the codec configuration changes
/// inside the range only the first part is served (`X-Vidgest-Clip-Parts` says how many there
/// are, `X-Vidgest-Clip-End` where the served one ends). The file's layout is known from the
/// index (playback/range.rs), so it has a Content-Length and answers single `Range` requests
/// (206, or 416 past the end) by reading only the fragments the range touches.
async fn clip(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<RangeQuery>,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    let (start, end) = q.range(state.clock.now_ns())?;
    let camera = name.clone();
    let planned = with_reader(&state, move |r| {
        let mut parts = plan_clip(&r, &camera, start, end)?;
        let count = parts.len();
        let part = parts.swap_remove(0);
        let (len, _) = clip_len(&r, &part)?;
        Ok((r, part, count, len))
    })
    .await?;
    let Some((reader, part, count, len)) = planned else {
        if configured(&state, &name) {
            return Err(ClipError::Empty {
                stream: name,
                start,
                end,
            }
            .into());
        }
        return Err(RestError::UnknownCamera(name));
    };
    let part_end = part.end_ns();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, range) = match parse_range(range, len) {
        RangeRequest::Full => (
            StatusCode::OK,
            ByteRange {
                first: 0,
                last: len - 1,
            },
        ),
        RangeRequest::Partial(r) => (StatusCode::PARTIAL_CONTENT, r),
        RangeRequest::Unsatisfiable => {
            let mut r = (
                StatusCode::RANGE_NOT_SATISFIABLE,
                Json(json!({ "error": format!("the range is outside the clip's {len} bytes") })),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };

    let filename = format!("{name}-{}.mp4", format_rfc3339(start));
    let mut response = Response::new(clip_range_body(reader, part, range));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(range.bytes()));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{len}", range.first, range.last))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert("x-vidgest-clip-parts", HeaderValue::from(count));
    // Rounded up to the millisecond: as the next request's `start` it must not reach back into
    // the served part's last fragment.
    let part_end = part_end.div_euclid(1_000_000) * 1_000_000
        + if part_end.rem_euclid(1_000_000) > 0 {
            1_000_000
        } else {
            0
        };
    if let Ok(v) = HeaderValue::from_str(&format_rfc3339(part_end)) {
        h.insert("x-vidgest-clip-end", v);
    }
    Ok(response)
}

#[derive(Debug, serde::Deserialize)]
struct SnapshotQuery {
    at: Option<String>,
    // Parsed by hand so that a bad value gets the JSON error body too.
    width: Option<String>,
}

/// JPEG quality of snapshots (the KVS GetImages default is 80; a single still may cost more).
const SNAPSHOT_QUALITY: u8 = 85;

/// `GET /api/v1/cameras/{name}/snapshot.jpg[?at=T][&width=N]`: the key frame starting the newest
/// stored fragment, or the one holding `at` (so at most one fragment before it), as a JPEG,
/// scaled to `width` keeping the aspect ratio. 404 when there is no video at that time.
/// `X-Vidgest-Frame-Time` is the picture's producer time.
async fn snapshot(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Query<SnapshotQuery>,
) -> Result<Response, RestError> {
    let now = state.clock.now_ns();
    let at = match q.at.as_deref() {
        None => None,
        Some(v) => Some(parse_time(v, now).map_err(|e| RestError::BadRequest(e.to_string()))?),
    };
    let width = match q.width.as_deref() {
        None => None,
        Some(w) => Some(
            w.trim()
                .parse::<u32>()
                .ok()
                .filter(|w| (1..=images::MAX_WIDTH).contains(w))
                .ok_or_else(|| {
                    RestError::BadRequest(format!(
                        "`width` must be between 1 and {}",
                        images::MAX_WIDTH
                    ))
                })?,
        ),
    };
    let no_picture = move |name: &str| {
        RestError::NoPicture(match at {
            Some(t) => format!("camera `{name}` has no video at {}", format_rfc3339(t)),
            None => format!("camera `{name}` has no video yet"),
        })
    };
    let slot = images::decode_slot().await;
    let camera = name.clone();
    let shot = with_reader(&state, move |r| {
        let _slot = slot;
        let f = match at {
            None => images::latest_fragment(&r, &camera)?,
            Some(t) => images::fragment_at(&r, &camera, TimeOrigin::Producer, t)?,
        };
        let Some(f) = f else {
            return Ok(None);
        };
        let size = images::Size {
            width,
            height: None,
        };
        let jpeg = images::decode_key_frame(&r, &f)
            .and_then(|p| images::encode(&p, size, images::Format::Jpeg(SNAPSHOT_QUALITY)))
            .map_err(|e| match e {
                FrameError::Store(StoreError::FragmentGone { .. }) => no_picture(&camera),
                FrameError::Store(e) => e.into(),
                e => RestError::Internal(format!("fragment {}: {e}", f.fragment_number)),
            })?;
        Ok(Some((jpeg, f.producer_ns)))
    })
    .await?;
    let (jpeg, time) = match shot {
        Some(Some(s)) => s,
        Some(None) => return Err(no_picture(&name)),
        None if configured(&state, &name) => return Err(no_picture(&name)),
        None => return Err(RestError::UnknownCamera(name)),
    };
    let mut response = Response::new(axum::body::Body::from(jpeg));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    if at.is_none() {
        // "the latest" changes with every fragment
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Ok(v) = HeaderValue::from_str(&format_rfc3339(time)) {
        h.insert("x-vidgest-frame-time", v);
    }
    Ok(response)
}
