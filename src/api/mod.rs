//! The one HTTP listener (axum): Kinesis JSON 1.1 on `POST /`, `/healthz`; the KVS-compatible,
//! REST, metrics and UI routes join here in later issues.

mod auth;
pub mod kinesis;

pub use auth::{Auth, Scope};

use crate::clock::SharedClock;
use crate::streams::StreamStore;
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Everything request handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub streams: Arc<StreamStore>,
    pub auth: Arc<Auth>,
    pub clock: SharedClock,
    pub limits: Arc<kinesis::Limits>,
    /// Signs shard iterators (one secret per data directory).
    pub iterator_key: Arc<kinesis::IteratorKey>,
    /// Streams that apply the real service's per-shard throughput limits.
    pub limited_streams: Arc<Mutex<HashSet<String>>>,
}

impl ApiState {
    pub fn new(
        streams: Arc<StreamStore>,
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
        }
    }

    pub fn enforce_limits(&self, stream: &str, on: bool) {
        let mut set = self
            .limited_streams
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if on {
            set.insert(stream.to_string());
        } else {
            set.remove(stream);
        }
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", post(kinesis::handle))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(axum::middleware::map_response(add_request_id))
        .with_state(state)
}

/// Every answer carries a request id, as AWS services do (SDKs surface it in errors and logs).
async fn add_request_id(mut response: axum::response::Response) -> axum::response::Response {
    let id: u128 = rand::random();
    let hex = format!("{id:032x}");
    let value = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    if let Ok(v) = value.parse() {
        response.headers_mut().insert("x-amzn-RequestId", v);
    }
    response
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
