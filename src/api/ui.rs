//! The web UI (docs/ui.md): three pages, the sign-in page and their script and style, embedded in
//! the binary so the daemon serves its UI with nothing installed next to it. The pages need the
//! read scope like REST `GET`s (a bearer token or the session cookie); the sign-in page and the
//! assets under `/ui/` hold no data and are open.

use super::auth::RouteAuth;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

/// Pages: read scope for GET and HEAD; a browser without credentials is sent to the sign-in
/// page, other refusals are answered as the REST family answers them.
pub const AUTH: RouteAuth = RouteAuth {
    scope: super::rest::AUTH.scope,
    refuse: super::session::refuse_page,
};

/// The pages' policy: the API's `default-src 'self'` plus `blob:` media, which the live view's
/// MediaSource object URL needs. Still no inline script or style.
const PAGE_CSP: &str = "default-src 'self'; media-src 'self' blob:; frame-ancestors 'none'";

struct Asset {
    content_type: &'static str,
    bytes: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";

const INDEX: Asset = Asset {
    content_type: HTML,
    bytes: include_bytes!("../../ui/index.html"),
};
const CAMERA: Asset = Asset {
    content_type: HTML,
    bytes: include_bytes!("../../ui/camera.html"),
};
const HEALTH: Asset = Asset {
    content_type: HTML,
    bytes: include_bytes!("../../ui/health.html"),
};
const LOGIN: Asset = Asset {
    content_type: HTML,
    bytes: include_bytes!("../../ui/login.html"),
};

/// The static files under `/ui/`, by name.
const ASSETS: &[(&str, Asset)] = &[
    (
        "app.js",
        Asset {
            content_type: "text/javascript; charset=utf-8",
            bytes: include_bytes!("../../ui/app.js"),
        },
    ),
    (
        "favicon.svg",
        Asset {
            content_type: "image/svg+xml",
            bytes: include_bytes!("../../ui/favicon.svg"),
        },
    ),
    (
        "style.css",
        Asset {
            content_type: "text/css; charset=utf-8",
            bytes: include_bytes!("../../ui/style.css"),
        },
    ),
];

/// One ETag for every file: a hash of all of them, so any change in a new build (the files
/// are embedded) makes browsers fetch everything again, and unchanged files revalidate as 304.
static ETAG: LazyLock<HeaderValue> = LazyLock::new(|| {
    let mut h = DefaultHasher::new();
    for a in [&INDEX, &CAMERA, &HEALTH, &LOGIN]
        .into_iter()
        .chain(ASSETS.iter().map(|(_, a)| a))
    {
        a.bytes.hash(&mut h);
    }
    HeaderValue::from_str(&format!("\"{:016x}\"", h.finish()))
        .unwrap_or(HeaderValue::from_static("\"ui\""))
});

/// The page routes (`/`, `/camera.html`, `/health.html`), to be guarded by [`AUTH`].
pub fn pages() -> Router<super::ApiState> {
    Router::new()
        .route(
            "/",
            get(|h: HeaderMap| async move { serve(&INDEX, &h, true) }),
        )
        .route(
            "/camera.html",
            get(|h: HeaderMap| async move { serve(&CAMERA, &h, true) }),
        )
        .route(
            "/health.html",
            get(|h: HeaderMap| async move { serve(&HEALTH, &h, true) }),
        )
}

/// The open routes: the assets (`/ui/{file}`) and the sign-in page (`/login.html`), which hold
/// no data.
pub fn assets() -> Router<super::ApiState> {
    Router::new().route("/ui/{file}", get(asset)).route(
        "/login.html",
        get(|h: HeaderMap| async move { serve(&LOGIN, &h, true) }),
    )
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|(name, _)| *name == file) {
        Some((_, a)) => serve(a, &headers, false),
        None => (StatusCode::NOT_FOUND, "no such UI file\n").into_response(),
    }
}

/// The file, or 304 when the browser's copy is current. `no-cache`: browsers revalidate every
/// time (one cheap 304), so a new build is never hidden behind a stale script.
fn serve(a: &Asset, request: &HeaderMap, page: bool) -> Response {
    let etag = ETAG.clone();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            )],
            a.bytes,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, etag);
    if page {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
    }
    response
}
