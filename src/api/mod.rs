//! The one HTTP listener (axum): Kinesis JSON 1.1 on `POST /`, `/healthz`; the KVS-compatible,
//! REST, metrics and UI routes join here in later issues.

mod auth;
mod body;
pub mod kinesis;
mod rest;
mod server;

pub use auth::{Auth, AuthError, RouteAuth, Scope};
pub use server::{serve_with, Handshake, HttpOptions, Plain};

use crate::clock::SharedClock;
use crate::streams::ShardStreams;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Everything request handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub streams: Arc<ShardStreams>,
    pub auth: Arc<Auth>,
    pub clock: SharedClock,
    pub limits: Arc<kinesis::Limits>,
    /// Signs shard iterators (one secret per data directory).
    pub iterator_key: Arc<kinesis::IteratorKey>,
    /// Streams that apply the real service's per-shard throughput limits.
    pub limited_streams: Arc<Mutex<HashSet<String>>>,
    /// How long a client may take to send a request body (`serve` sets it from its options).
    pub body_timeout: Duration,
    /// The video store (playback reads it through `StoreReader`s on blocking threads).
    pub video: Option<Arc<crate::store::Store>>,
    /// State and counters of the running cameras (REST, UI and metrics read them).
    pub cameras: Arc<[Arc<crate::capture::CameraStatus>]>,
}

impl ApiState {
    pub fn new(
        streams: Arc<ShardStreams>,
        auth: Auth,
        clock: SharedClock,
        iterator_key: kinesis::IteratorKey,
    ) -> Self {
        Self {
            streams,
            auth: Arc::new(auth),
            iterator_key: Arc::new(iterator_key),
            limits: Arc::new(kinesis::Limits::new(clock.clone())),
            clock,
            limited_streams: Arc::default(),
            body_timeout: HttpOptions::default().body_timeout,
            video: None,
            cameras: Arc::new([]),
        }
    }

    /// Gives the handlers the video store and the cameras' statuses.
    pub fn with_cameras(
        mut self,
        video: Arc<crate::store::Store>,
        cameras: Vec<Arc<crate::capture::CameraStatus>>,
    ) -> Self {
        self.video = Some(video);
        self.cameras = cameras.into();
        self
    }

    pub fn enforce_limits(&self, stream: &str, on: bool) {
        let mut set = self.limited_streams.lock();
        if on {
            set.insert(stream.to_string());
        } else {
            set.remove(stream);
        }
    }
}

/// Route families, each behind the one auth middleware with its own `RouteAuth` (only
/// /healthz is open). Body size limits are per route: the Kinesis route reads its body itself
/// with a limit per operation (`kinesis::body_limit`); other routes get a small default.
pub fn router(state: ApiState) -> Router {
    let guard = |route: RouteAuth| {
        axum::middleware::from_fn_with_state((state.auth.clone(), route), auth::require)
    };
    let kinesis = Router::new()
        .route(
            "/",
            post(kinesis::handle).layer(DefaultBodyLimit::disable()),
        )
        .route_layer(guard(kinesis::AUTH));
    Router::new()
        .merge(kinesis)
        .nest("/api/v1", rest::router().route_layer(guard(rest::AUTH)))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(kinesis::OTHER_BODY_LIMIT))
        .layer(axum::middleware::map_response(add_request_id))
        .with_state(state)
}

/// Every answer carries a request id, as AWS services do (SDKs surface it in errors and logs).
async fn add_request_id(mut response: axum::response::Response) -> axum::response::Response {
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    if let Ok(v) = id.parse() {
        response.headers_mut().insert("x-amzn-RequestId", v);
    }
    response
}

/// Serves plain HTTP until `shutdown` resolves (limits and timeouts from `opts`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut state: ApiState,
    opts: HttpOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.body_timeout = opts.body_timeout;
    serve_with(listener, Plain, router(state), opts, shutdown).await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn request_ids_are_fresh_v4_uuids() {
        let id = || async {
            let r = super::add_request_id(axum::response::Response::default()).await;
            let v = r.headers()["x-amzn-RequestId"]
                .to_str()
                .unwrap()
                .to_string();
            let u = uuid::Uuid::parse_str(&v).unwrap();
            assert_eq!(u.get_version_num(), 4, "{v}");
            assert_eq!(v.len(), 36, "{v}");
            v
        };
        assert_ne!(id().await, id().await);
    }
}
