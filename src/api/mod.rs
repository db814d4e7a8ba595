//! The one HTTP listener (axum): Kinesis and Firehose JSON 1.1 on `POST /`, the
//! KVS-compatible REST-JSON routes (`kvs`), `/healthz`; REST, metrics and UI routes join here.

mod auth;
mod body;
pub mod firehose;
pub mod kinesis;
pub mod kvs;
mod rest;
mod server;
mod session;
mod tls;
mod ui;

pub use auth::{Auth, AuthError, RouteAuth, Scope};
pub use server::{serve_with, Handshake, HttpOptions, Plain};
pub use tls::{Tls, TlsError, TlsFiles};

use crate::clock::SharedClock;
use crate::streams::ShardStreams;
use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// A value the daemon replaces on reload (SIGHUP) while handlers read it: lock-free, and a
/// request keeps the snapshot it loaded until it is done.
pub struct Swap<T>(Arc<ArcSwap<T>>);

impl<T> Swap<T> {
    pub fn new(value: T) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(value)))
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        self.0.load_full()
    }

    /// Replaces the value: requests that start from now on see it.
    pub fn set(&self, value: T) {
        self.0.store(Arc::new(value));
    }
}

impl<T> Clone for Swap<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Default> Default for Swap<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// Everything request handlers share. What a reload changes (cameras, tokens, deliveries,
/// detection streams, CORS origins) is held in a `Swap` and read through its accessor.
#[derive(Clone)]
pub struct ApiState {
    pub streams: Arc<ShardStreams>,
    auth: Swap<Auth>,
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
    cameras: Swap<Vec<Arc<crate::capture::CameraStatus>>>,
    /// The `[[delivery]]` streams the Firehose API serves.
    firehose: Swap<firehose::Deliveries>,
    /// Status of the running deliveries and forwarders (REST, UI, metrics).
    deliveries: Swap<Vec<crate::delivery::Pipeline>>,
    /// Detection as configured and started (REST events and health).
    detection: Swap<DetectionInfo>,
    /// Triggered when the server stops: long responses (GetMedia following a camera) end.
    pub shutdown: crate::lifecycle::Shutdown,
    /// `http` or `https` (`serve_tls`): the scheme of the URLs the API hands out.
    pub scheme: &'static str,
    /// The CORS layer of `[api] cors_allow_origins` (validated as origins by the config); None
    /// when no origin is configured: no CORS at all.
    cors: Swap<Option<tower_http::cors::CorsLayer>>,
    /// The web UI's session cookies (signed with `iterator_key`) and sign-in damping.
    pub sessions: Arc<session::Sessions>,
    /// The newest metrics sample (`GET /metrics`; empty while metrics are off).
    pub metrics: crate::metrics::Latest,
}

/// Per camera with detection on, the shard stream its records go to; and the inference workers
/// started (0: detection is off, or its runtime could not be loaded).
#[derive(Debug, Default, Clone)]
pub struct DetectionInfo {
    pub streams: Vec<(String, String)>,
    pub workers: usize,
}

/// The operation an AWS JSON request names in `X-Amz-Target` (`<prefix><Operation>`), if the
/// target has `prefix` (each AWS-style service routes on its own).
pub(crate) fn amz_operation<'a>(
    headers: &'a axum::http::HeaderMap,
    prefix: &str,
) -> Option<&'a str> {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(prefix))
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
            auth: Swap::new(auth),
            sessions: Arc::new(session::Sessions::new(
                iterator_key.clone(),
                session::DEFAULT_HOURS,
            )),
            iterator_key: Arc::new(iterator_key),
            limits: Arc::new(kinesis::Limits::new(clock.clone())),
            clock,
            limited_streams: Arc::default(),
            body_timeout: HttpOptions::default().body_timeout,
            video: None,
            cameras: Swap::default(),
            firehose: Swap::default(),
            deliveries: Swap::default(),
            detection: Swap::default(),
            shutdown: crate::lifecycle::Shutdown::new(),
            scheme: "http",
            cors: Swap::default(),
            metrics: Default::default(),
        }
    }

    /// Gives `GET /metrics` the collector's samples.
    pub fn with_metrics(mut self, latest: crate::metrics::Latest) -> Self {
        self.metrics = latest;
        self
    }

    /// The API tokens now in force.
    pub fn auth(&self) -> Arc<Auth> {
        self.auth.get()
    }

    /// Swaps the API tokens (reload): the next request is checked against `auth`.
    pub fn set_auth(&self, auth: Auth) {
        self.auth.set(auth);
    }

    /// The running cameras' states and counters.
    pub fn cameras(&self) -> Arc<Vec<Arc<crate::capture::CameraStatus>>> {
        self.cameras.get()
    }

    pub fn set_cameras(&self, cameras: Vec<Arc<crate::capture::CameraStatus>>) {
        self.cameras.set(cameras);
    }

    /// The `[[delivery]]` streams the Firehose API serves.
    pub fn firehose(&self) -> Arc<firehose::Deliveries> {
        self.firehose.get()
    }

    pub fn set_firehose(&self, deliveries: firehose::Deliveries) {
        self.firehose.set(deliveries);
    }

    /// The running deliveries and forwarders.
    pub fn deliveries(&self) -> Arc<Vec<crate::delivery::Pipeline>> {
        self.deliveries.get()
    }

    pub fn set_deliveries(&self, statuses: Vec<crate::delivery::Pipeline>) {
        self.deliveries.set(statuses);
    }

    /// Detection streams per camera and the worker count.
    pub fn detection(&self) -> Arc<DetectionInfo> {
        self.detection.get()
    }

    pub fn set_detection(&self, detection: DetectionInfo) {
        self.detection.set(detection);
    }

    /// Swaps the browser origins allowed cross-origin (an origin that is no valid header value
    /// is skipped: the config check refuses such origins first).
    pub fn set_cors_allow_origins(&self, origins: &[String]) {
        let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
        self.cors.set(cors(&origins));
    }

    /// Lets browsers on these origins call the API (`[api] cors_allow_origins`). An origin that
    /// is no valid header value is skipped: the config check refuses such origins first.
    pub fn with_cors_allow_origins(self, origins: &[String]) -> Self {
        self.set_cors_allow_origins(origins);
        self
    }

    /// How long a UI sign-in lasts (`[api] session_hours`).
    pub fn with_session_hours(mut self, hours: u32) -> Self {
        self.sessions = Arc::new(session::Sessions::new((*self.iterator_key).clone(), hours));
        self
    }

    /// Gives the REST API the cameras' detection streams and the worker count.
    pub fn with_detection(self, detection: DetectionInfo) -> Self {
        self.set_detection(detection);
        self
    }

    /// Gives the Firehose API its delivery streams (`daemon::http::firehose_deliveries`).
    pub fn with_firehose(self, deliveries: firehose::Deliveries) -> Self {
        self.set_firehose(deliveries);
        self
    }

    /// Gives the REST API the deliveries and forwarders.
    pub fn with_deliveries(self, statuses: Vec<crate::delivery::Pipeline>) -> Self {
        self.set_deliveries(statuses);
        self
    }

    /// Gives the handlers the video store and the cameras' statuses.
    pub fn with_cameras(
        mut self,
        video: Arc<crate::store::Store>,
        cameras: Vec<Arc<crate::capture::CameraStatus>>,
    ) -> Self {
        self.video = Some(video);
        self.set_cameras(cameras);
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

/// Kinesis and Firehose share `POST /` (both AWS JSON 1.1); X-Amz-Target tells them apart, and
/// Kinesis answers any target that is not Firehose's.
async fn aws_json(state: State<ApiState>, headers: HeaderMap, body: Body) -> Response {
    if firehose::targets(&headers) {
        firehose::handle(state, headers, body).await
    } else {
        kinesis::handle(state, headers, body).await
    }
}

/// The auth of `POST /`: the scope and refusal of the service the target names.
const AWS_JSON_AUTH: RouteAuth = RouteAuth {
    scope: |parts| {
        if firehose::targets(&parts.headers) {
            (firehose::AUTH.scope)(parts)
        } else {
            (kinesis::AUTH.scope)(parts)
        }
    },
    refuse: |e, parts| {
        if firehose::targets(&parts.headers) {
            (firehose::AUTH.refuse)(e, parts)
        } else {
            (kinesis::AUTH.refuse)(e, parts)
        }
    },
};

/// `GET /metrics`: the read scope; refusals as the REST family's.
const METRICS_AUTH: RouteAuth = RouteAuth {
    scope: |_| Scope::Read,
    refuse: rest::AUTH.refuse,
};

/// Route families, each behind the one auth middleware with its own `RouteAuth` (only
/// /healthz is open). Body size limits are per route: the Kinesis and Firehose route reads its
/// body itself with a limit per operation (`kinesis::body_limit`, `firehose::body_limit`); other
/// routes get a small default.
pub fn router(state: ApiState) -> Router {
    let guard = |route: RouteAuth| {
        // the tokens in force are read per request (`ApiState::auth`: they swap on reload)
        axum::middleware::from_fn_with_state((state.clone(), route), auth::require)
    };
    let aws = Router::new()
        .route("/", post(aws_json).layer(DefaultBodyLimit::disable()))
        .route_layer(guard(AWS_JSON_AUTH));
    let router = Router::new()
        .merge(aws)
        .merge(kvs::router().route_layer(guard(kvs::AUTH)))
        // HLS / DASH session routes: the signed session token is the credential
        .merge(kvs::session_router())
        .nest("/api/v1", rest::router().route_layer(guard(rest::AUTH)))
        // sign-in: open, it is where credentials come in (docs/ui.md#sign-in)
        .merge(session::router())
        .merge(crate::metrics::router().route_layer(guard(METRICS_AUTH)))
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(ui::pages().route_layer(guard(ui::AUTH)).merge(ui::assets()))
        .layer(DefaultBodyLimit::max(kinesis::OTHER_BODY_LIMIT))
        .layer(axum::middleware::map_response(add_request_id));
    // Outside the auth guards: browsers send preflights without credentials. Outermost of all
    // is the security-header layer, so every answer (refusals, 404s, preflights) carries them.
    router
        .layer(axum::middleware::from_fn_with_state(
            state.cors.clone(),
            current_cors,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// The CORS layer of the origins in force (they swap on reload); none configured: the request
/// passes untouched, so no CORS headers at all.
async fn current_cors(
    State(cors): State<Swap<Option<tower_http::cors::CorsLayer>>>,
    request: Request,
    next: Next,
) -> Response {
    use tower::{Layer, ServiceExt};
    match cors.get().as_ref() {
        None => next.run(request).await,
        Some(layer) => match layer.clone().layer(next).oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
    }
}

/// tower-http's CORS for the configured origins only (none configured: no layer, so no CORS
/// headers and browsers keep cross-origin scripts out). No credentials mode: tokens travel in
/// `Authorization`, which the allow-list names.
fn cors(origins: &[HeaderValue]) -> Option<tower_http::cors::CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let amz = |name: &'static str| HeaderName::from_static(name);
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins.to_vec())
            .allow_methods([Method::GET, Method::HEAD, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::RANGE,
                amz("x-amz-target"),
                amz("x-amz-date"),
                amz("x-amz-content-sha256"),
                amz("x-amz-security-token"),
                amz("x-amz-user-agent"),
                amz("amz-sdk-invocation-id"),
                amz("amz-sdk-request"),
            ])
            .expose_headers([amz("x-amzn-requestid"), amz("x-amzn-errortype")])
            .max_age(Duration::from_secs(600)),
    )
}

/// Security headers on every answer: no MIME sniffing, no framing (clickjacking), same-origin
/// resources only, no Referer leaking session-token URLs. A handler that sets its own value
/// (a future UI page with a stricter CSP) keeps it.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
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
    state.scheme = "http";
    serve_with(listener, Plain, router(state), opts, shutdown).await
}

/// `serve` over TLS only: every connection starts with a handshake (within the header
/// timeout) and the URLs the API hands out are `https://`.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    mut state: ApiState,
    tls: Tls,
    opts: HttpOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.body_timeout = opts.body_timeout;
    state.scheme = "https";
    serve_with(listener, tls, router(state), opts, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(target: &str, content_type: &str) -> axum::http::request::Parts {
        let (parts, ()) = axum::http::Request::post("/")
            .header("x-amz-target", target)
            .header("content-type", content_type)
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    /// `POST /` takes each service's scope and answers refusals in that service's format.
    #[test]
    fn aws_json_auth_follows_the_target() {
        let json = kinesis::CONTENT_TYPE;
        for (target, scope) in [
            ("Firehose_20150804.ListDeliveryStreams", Scope::Read),
            ("Firehose_20150804.DescribeDeliveryStream", Scope::Read),
            ("Firehose_20150804.PutRecord", Scope::Write),
            ("Firehose_20150804.PutRecordBatch", Scope::Write),
            // a Kinesis read operation under Firehose's target is no Firehose read
            ("Firehose_20150804.ListStreams", Scope::Write),
            ("Kinesis_20131202.ListStreams", Scope::Read),
            ("Kinesis_20131202.GetRecords", Scope::Read),
            ("Kinesis_20131202.PutRecords", Scope::Write),
            ("Kinesis_20131202.CreateStream", Scope::Admin),
            ("Kinesis_20131202.DeleteStream", Scope::Admin),
            (
                "Kinesis_20131202.IncreaseStreamRetentionPeriod",
                Scope::Admin,
            ),
            (
                "Kinesis_20131202.DecreaseStreamRetentionPeriod",
                Scope::Admin,
            ),
            ("Nope.ListStreams", Scope::Write),
        ] {
            assert_eq!(
                (AWS_JSON_AUTH.scope)(&parts(target, json)),
                scope,
                "{target}"
            );
        }
        let denied = (AWS_JSON_AUTH.refuse)(
            AuthError::Denied,
            &parts("Firehose_20150804.PutRecordBatch", json),
        );
        assert_eq!(
            denied.headers()["x-amzn-ErrorType"],
            "AccessDeniedException"
        );
        assert_eq!(denied.headers()["content-type"], json);
        let cbor = (AWS_JSON_AUTH.refuse)(
            AuthError::Unrecognized,
            &parts("Kinesis_20131202.GetRecords", kinesis::CBOR_CONTENT_TYPE),
        );
        assert_eq!(
            cbor.headers()["x-amzn-ErrorType"],
            "UnrecognizedClientException"
        );
        assert_eq!(cbor.headers()["content-type"], kinesis::CBOR_CONTENT_TYPE);
    }

    /// Reload swaps tokens and CORS origins under a router built once (as the server's is).
    #[tokio::test]
    async fn tokens_and_cors_origins_swap_under_a_running_router() {
        use tower::ServiceExt;
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::clock::system_clock();
        let streams = ShardStreams::open(
            dir.path(),
            crate::streams::ShardStreamsOptions::default(),
            clock.clone(),
        )
        .unwrap();
        let state = ApiState::new(
            streams,
            Auth::default(),
            clock,
            kinesis::IteratorKey::random(),
        );
        let router = router(state.clone());
        let call = |token: Option<&str>| {
            let mut r = axum::http::Request::get("/api/v1/deliveries")
                .header("origin", "https://ui.example");
            if let Some(t) = token {
                r = r.header("authorization", format!("Bearer {t}"));
            }
            router.clone().oneshot(r.body(Body::empty()).unwrap())
        };
        let r = call(None).await.unwrap();
        assert_eq!(r.status(), 200, "no tokens: open");
        assert!(r.headers().get("access-control-allow-origin").is_none());

        let token = |t: &str| crate::config::TokenConfig {
            token: t.into(),
            scope: crate::config::TokenScope::Read,
        };
        state.set_auth(Auth::new(&[token("first-token-0123456")]));
        state.set_cors_allow_origins(&["https://ui.example".to_string()]);
        assert_eq!(call(None).await.unwrap().status(), 401);
        let r = call(Some("first-token-0123456")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "https://ui.example"
        );

        state.set_auth(Auth::new(&[token("second-token-012345")]));
        state.set_cors_allow_origins(&[]);
        assert_eq!(
            call(Some("first-token-0123456")).await.unwrap().status(),
            401
        );
        let r = call(Some("second-token-012345")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }

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
