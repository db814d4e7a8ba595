//! GetHLSStreamingSessionURL and GetDASHStreamingSessionURL (`kinesis-video-archived-media`),
//! and the session routes a player then reads without other credentials: `/hls/v1/...` and
//! `/dash/v1/...`, each carrying the signed session token (src/playback/session.rs).

use super::{
    base_url, check_max, nanos, parse, with_reader, FragmentSelector, KvsError, StreamRef,
};
use crate::api::ApiState;
use crate::playback::session::{
    open_fragment_body, plan_window, session_init, DiscontinuityMode, FragmentRef, Origin,
    PlaybackMode, Protocol, Session, SessionError, TokenError,
};
use crate::playback::{dash, hls};
use crate::store::{StoreError, StoreReader};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

/// ON_DEMAND ranges are limited to 24 hours, as the service's.
const MAX_RANGE_NS: i64 = 24 * 3600 * 1_000_000_000;
/// LIVE needs a fragment ingested this recently (the service: 30 seconds).
const LIVE_RECENT_NS: i64 = 30 * 1_000_000_000;
const EXPIRES_MIN: i64 = 300;
const EXPIRES_MAX: i64 = 43_200;
const MAX_RESULTS: u64 = 5000;

/// The session-URL operations (behind the KVS auth like every other operation).
pub(super) fn router() -> Router<ApiState> {
    Router::new()
        .route("/getHLSStreamingSessionURL", post(get_hls_url))
        .route("/getDASHStreamingSessionURL", post(get_dash_url))
}

/// The routes players read: no API token, the session token is the credential.
pub fn session_router() -> Router<ApiState> {
    let hls_path = |p: &str| format!("/hls/v1/{p}");
    let dash_path = |p: &str| format!("/dash/v1/{p}");
    Router::new()
        .route(&hls_path(hls::MASTER_PLAYLIST), get(hls_master))
        .route(&hls_path(hls::MEDIA_PLAYLIST), get(hls_media))
        .route(&hls_path(hls::INIT_FRAGMENT), get(hls_init))
        .route(&hls_path(hls::MEDIA_FRAGMENT), get(hls_fragment))
        .route(&dash_path(dash::MANIFEST), get(dash_manifest))
        .route(&dash_path(hls::INIT_FRAGMENT), get(dash_init))
        .route(&dash_path(hls::MEDIA_FRAGMENT), get(dash_fragment))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SessionIn {
    #[serde(flatten)]
    stream: StreamRef,
    playback_mode: Option<String>,
    #[serde(rename = "HLSFragmentSelector")]
    hls_fragment_selector: Option<FragmentSelector>,
    #[serde(rename = "DASHFragmentSelector")]
    dash_fragment_selector: Option<FragmentSelector>,
    container_format: Option<String>,
    discontinuity_mode: Option<String>,
    display_fragment_timestamp: Option<String>,
    display_fragment_number: Option<String>,
    expires: Option<i64>,
    max_media_playlist_fragment_results: Option<u64>,
    max_manifest_fragment_results: Option<u64>,
}

/// One of `allowed` (or `default` when absent), else InvalidArgumentException naming `field`.
fn choice<'a>(
    field: &str,
    v: &'a Option<String>,
    allowed: &[&'a str],
    default: &'a str,
) -> Result<&'a str, KvsError> {
    match v.as_deref() {
        None => Ok(default),
        Some(s) if allowed.contains(&s) => Ok(s),
        Some(s) => Err(KvsError::invalid(
            field,
            format!("`{s}` is not one of {}", allowed.join(", ")),
        )),
    }
}

/// A validated request: the session minus what the store supplies (creation time, anchor).
fn session_from(protocol: Protocol, req: &SessionIn, now_ms: i64) -> Result<Session, KvsError> {
    let (sel_field, selector, max_field, max) = match protocol {
        Protocol::Hls => (
            "HLSFragmentSelector",
            &req.hls_fragment_selector,
            "MaxMediaPlaylistFragmentResults",
            req.max_media_playlist_fragment_results,
        ),
        Protocol::Dash => (
            "DASHFragmentSelector",
            &req.dash_fragment_selector,
            "MaxManifestFragmentResults",
            req.max_manifest_fragment_results,
        ),
    };
    let mode = match choice(
        "PlaybackMode",
        &req.playback_mode,
        &["LIVE", "LIVE_REPLAY", "ON_DEMAND"],
        "LIVE",
    )? {
        "LIVE" => PlaybackMode::Live,
        "LIVE_REPLAY" => PlaybackMode::LiveReplay,
        _ => PlaybackMode::OnDemand,
    };
    if protocol == Protocol::Hls {
        match req.container_format.as_deref() {
            None | Some("FRAGMENTED_MP4") => {}
            Some("MPEG_TS") => {
                return Err(KvsError::invalid(
                    "ContainerFormat",
                    "MPEG_TS is not supported by this server; use FRAGMENTED_MP4",
                ))
            }
            Some(other) => {
                return Err(KvsError::invalid(
                    "ContainerFormat",
                    format!("`{other}` is not one of FRAGMENTED_MP4, MPEG_TS"),
                ))
            }
        }
    }
    let field = |f: &str| format!("{sel_field}.{f}");
    let type_field = field("FragmentSelectorType");
    let selector_type = selector
        .as_ref()
        .and_then(|s| s.fragment_selector_type.clone());
    let origin = match choice(
        &type_field,
        &selector_type,
        &["PRODUCER_TIMESTAMP", "SERVER_TIMESTAMP"],
        "SERVER_TIMESTAMP",
    )? {
        "PRODUCER_TIMESTAMP" => Origin::Producer,
        _ => Origin::Server,
    };
    let range = selector.as_ref().and_then(|s| s.timestamp_range.as_ref());
    let range_field = field("TimestampRange");
    let start_field = field("TimestampRange.StartTimestamp");
    let end_field = field("TimestampRange.EndTimestamp");
    let start = range
        .and_then(|r| r.start_timestamp)
        .map(|t| nanos(&start_field, t))
        .transpose()?;
    let end = range
        .and_then(|r| r.end_timestamp)
        .map(|t| nanos(&end_field, t))
        .transpose()?;
    match mode {
        PlaybackMode::Live if range.is_some() => {
            return Err(KvsError::invalid(
                &range_field,
                "must not be set when PlaybackMode is LIVE",
            ))
        }
        PlaybackMode::Live => {}
        PlaybackMode::LiveReplay if start.is_none() => {
            return Err(KvsError::invalid(
                &start_field,
                "is required when PlaybackMode is LIVE_REPLAY",
            ))
        }
        PlaybackMode::LiveReplay => {}
        PlaybackMode::OnDemand => {
            if start.is_none() {
                return Err(KvsError::invalid(
                    &start_field,
                    "is required when PlaybackMode is ON_DEMAND",
                ));
            }
            if end.is_none() {
                return Err(KvsError::invalid(
                    &end_field,
                    "is required when PlaybackMode is ON_DEMAND",
                ));
            }
        }
    }
    if let (Some(s), Some(e)) = (start, end) {
        if e <= s {
            return Err(KvsError::invalid(
                &end_field,
                "must be after StartTimestamp",
            ));
        }
        if mode == PlaybackMode::OnDemand && e - s > MAX_RANGE_NS {
            return Err(KvsError::invalid(&range_field, "spans more than 24 hours"));
        }
    }
    let discontinuity = if protocol == Protocol::Hls {
        // the service's default: ALWAYS on server timestamps, NEVER on producer timestamps
        let default = match origin {
            Origin::Server => "ALWAYS",
            Origin::Producer => "NEVER",
        };
        match choice(
            "DiscontinuityMode",
            &req.discontinuity_mode,
            &["ALWAYS", "NEVER", "ON_DISCONTINUITY"],
            default,
        )? {
            "ALWAYS" => DiscontinuityMode::Always,
            "NEVER" => DiscontinuityMode::Never,
            _ => DiscontinuityMode::OnDiscontinuity,
        }
    } else {
        DiscontinuityMode::Never
    };
    let always = ["ALWAYS", "NEVER"];
    let display_timestamp = choice(
        "DisplayFragmentTimestamp",
        &req.display_fragment_timestamp,
        &always,
        "NEVER",
    )? == "ALWAYS";
    let display_fragment_number = protocol == Protocol::Dash
        && choice(
            "DisplayFragmentNumber",
            &req.display_fragment_number,
            &always,
            "NEVER",
        )? == "ALWAYS";
    let expires = req.expires.unwrap_or(EXPIRES_MIN);
    if !(EXPIRES_MIN..=EXPIRES_MAX).contains(&expires) {
        return Err(KvsError::invalid(
            "Expires",
            format!("{expires} is not between {EXPIRES_MIN} and {EXPIRES_MAX}"),
        ));
    }
    let default_max = match mode {
        PlaybackMode::OnDemand => 1000,
        _ => 5,
    };
    let max = match max {
        None => default_max,
        Some(_) => check_max(max_field, max, MAX_RESULTS)?,
    };
    Ok(Session {
        protocol,
        stream: String::new(),
        stream_created_ns: 0,
        mode,
        origin,
        start_ns: start,
        end_ns: end,
        discontinuity,
        display_timestamp,
        display_fragment_number,
        max_fragments: max as u32,
        anchor: 0,
        issued_ms: now_ms,
        expires_ms: now_ms.saturating_add(expires * 1000),
    })
}

fn no_media(mode: PlaybackMode) -> KvsError {
    KvsError::ResourceNotFound(match mode {
        PlaybackMode::Live => {
            "No fragments have been ingested into the stream in the last 30 seconds.".into()
        }
        _ => "No fragments found in the stream for the requested time range.".into(),
    })
}

/// Validates the request, checks the stream has media for it, and answers the session URL.
async fn session_url(
    state: ApiState,
    headers: HeaderMap,
    body: Bytes,
    protocol: Protocol,
) -> Result<Json<serde_json::Value>, KvsError> {
    let req: SessionIn = parse(&body)?;
    let now_ns = state.clock.now_ns();
    let mut session = session_from(protocol, &req, now_ns.div_euclid(1_000_000))?;
    let named = req.stream.resolve()?;
    let base = base_url(state.scheme, &headers)?;
    let session = with_reader(&state, move |r| {
        let d = named.details(r)?;
        let reader = r.ok_or_else(|| named.not_found())?;
        session.stream = d.name;
        session.stream_created_ns = d.created_ns;
        let window = match plan_window(reader, &session, now_ns) {
            Ok(w) => w,
            Err(SessionError::NoMedia(_)) => return Err(no_media(session.mode)),
            Err(SessionError::Store(e)) => return Err(e.into()),
            Err(e) => return Err(KvsError::Internal(e.to_string())),
        };
        let first = &window.fragments[0];
        if session.mode == PlaybackMode::Live {
            let newest = window.fragments.last().unwrap_or(first);
            if now_ns.saturating_sub(newest.server_ns) > LIVE_RECENT_NS {
                return Err(no_media(session.mode));
            }
        }
        session.anchor = first.fragment_number;
        Ok(session)
    })
    .await?;
    let token = session.encode(&state.iterator_key);
    let (field, url) = match protocol {
        Protocol::Hls => (
            "HLSStreamingSessionURL",
            format!(
                "{base}/hls/v1/{}?SessionToken={token}",
                hls::MASTER_PLAYLIST
            ),
        ),
        Protocol::Dash => (
            "DASHStreamingSessionURL",
            format!("{base}/dash/v1/{}?SessionToken={token}", dash::MANIFEST),
        ),
    };
    Ok(Json(json!({ field: url })))
}

/// `POST /getHLSStreamingSessionURL`.
async fn get_hls_url(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, KvsError> {
    session_url(state, headers, body, Protocol::Hls).await
}

/// `POST /getDASHStreamingSessionURL`.
async fn get_dash_url(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, KvsError> {
    session_url(state, headers, body, Protocol::Dash).await
}

/// Why a session route refuses: 403 for a bad token, 404 for media that is not (or no
/// longer) there, the KVS error otherwise.
#[derive(Debug, thiserror::Error)]
enum StreamingError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Kvs(#[from] KvsError),
    #[error("{0}")]
    BadQuery(String),
}

impl From<StoreError> for StreamingError {
    fn from(e: StoreError) -> Self {
        Self::Session(e.into())
    }
}

impl IntoResponse for StreamingError {
    fn into_response(self) -> Response {
        let not_found = |m: String| KvsError::ResourceNotFound(m).into_response();
        match self {
            Self::Token(e) | Self::Session(SessionError::Token(e)) => {
                let mut r = KvsError::NotAuthorized(e.to_string()).into_response();
                *r.status_mut() = StatusCode::FORBIDDEN;
                r
            }
            Self::Session(SessionError::Store(e @ StoreError::FragmentGone { .. })) => {
                not_found(e.to_string())
            }
            Self::Session(SessionError::Store(e)) => KvsError::from(e).into_response(),
            Self::Session(e) => not_found(e.to_string()),
            Self::Kvs(e) => e.into_response(),
            Self::BadQuery(m) => KvsError::InvalidArgument(m).into_response(),
        }
    }
}

/// The query parameters of a session route.
struct SessionQuery {
    session: Session,
    token: String,
    fragment: Option<FragmentRef>,
    init_id: Option<i64>,
}

fn session_query(
    state: &ApiState,
    query: Option<String>,
    protocol: Protocol,
) -> Result<SessionQuery, StreamingError> {
    let (mut token, mut fragment, mut init_id) = (None, None, None);
    let number = |k: &str, v: &str| {
        v.parse()
            .map_err(|_| StreamingError::BadQuery(format!("{k}: `{v}` is not a number")))
    };
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "SessionToken" => token = Some(v.into_owned()),
            "FragmentNumber" => fragment = Some(FragmentRef::Number(number(&k, &v)?)),
            "Time" => fragment = Some(FragmentRef::TimeMs(number(&k, &v)? as i64)),
            "InitId" => init_id = Some(number(&k, &v)? as i64),
            _ => {}
        }
    }
    let token = token.ok_or(TokenError::Forged)?;
    let now_ms = state.clock.now_ns().div_euclid(1_000_000);
    let session = Session::decode(&token, &state.iterator_key, now_ms)?;
    if session.protocol != protocol {
        return Err(TokenError::Forged.into());
    }
    Ok(SessionQuery {
        session,
        token,
        fragment,
        init_id,
    })
}

/// Runs `f` on a blocking thread with a store reader, once the session's stream is known to be
/// the one the token was issued for (not deleted and re-created since).
async fn with_session<T: Send + 'static>(
    state: &ApiState,
    session: Session,
    f: impl FnOnce(&StoreReader, Session) -> Result<T, StreamingError> + Send + 'static,
) -> Result<T, StreamingError> {
    let root = state.video.as_ref().map(|s| s.root().to_path_buf());
    tokio::task::spawn_blocking(move || {
        let gone = || KvsError::stream_not_found(&session.stream);
        let reader = match root.map(|r| StoreReader::open(&r)) {
            None | Some(Err(StoreError::NoStore(_))) => return Err(gone().into()),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(r)) => r,
        };
        if reader.stream_details(&session.stream)?.created_ns != session.stream_created_ns {
            return Err(gone().into());
        }
        f(&reader, session)
    })
    .await
    .map_err(|e| KvsError::Internal(format!("the read task failed: {e}")))?
}

fn with_type(body: impl Into<axum::body::Body>, content_type: &'static str) -> Response {
    let mut r = Response::new(body.into());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Playlists and manifests change as fragments arrive: never cached.
fn uncached(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn hls_master(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, StreamingError> {
    let SessionQuery { session, token, .. } = session_query(&state, q, Protocol::Hls)?;
    let now = state.clock.now_ns();
    let text = with_session(&state, session, move |reader, session| {
        let window = plan_window(reader, &session, now)?;
        let init = session_init(reader, &session, window.fragments[0].init_id)?;
        Ok(hls::master_playlist(&token, &init, &window))
    })
    .await?;
    Ok(uncached(with_type(text, hls::CONTENT_TYPE)))
}

async fn hls_media(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, StreamingError> {
    let SessionQuery { session, token, .. } = session_query(&state, q, Protocol::Hls)?;
    let now = state.clock.now_ns();
    let text = with_session(&state, session, move |reader, session| {
        let window = plan_window(reader, &session, now)?;
        Ok(hls::media_playlist(&session, &token, &window))
    })
    .await?;
    Ok(uncached(with_type(text, hls::CONTENT_TYPE)))
}

async fn dash_manifest(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, StreamingError> {
    let SessionQuery { session, token, .. } = session_query(&state, q, Protocol::Dash)?;
    let now = state.clock.now_ns();
    let text = with_session(&state, session, move |reader, session| {
        let window = plan_window(reader, &session, now)?;
        let mut inits = std::collections::HashMap::new();
        for f in &window.fragments {
            if let std::collections::hash_map::Entry::Vacant(e) = inits.entry(f.init_id) {
                e.insert(reader.stream_init(&session.stream, f.init_id)?);
            }
        }
        Ok(dash::manifest(
            &session,
            &token,
            &window,
            |id| inits.get(&id).cloned().flatten(),
            now,
        ))
    })
    .await?;
    Ok(uncached(with_type(text, dash::CONTENT_TYPE)))
}

async fn init(
    state: ApiState,
    q: Option<String>,
    protocol: Protocol,
) -> Result<Response, StreamingError> {
    let SessionQuery {
        session, init_id, ..
    } = session_query(&state, q, protocol)?;
    let id = init_id.ok_or_else(|| StreamingError::BadQuery("InitId is required".into()))?;
    let data = with_session(&state, session, move |reader, session| {
        Ok(session_init(reader, &session, id)?.data)
    })
    .await?;
    Ok(with_type(data, "video/mp4"))
}

async fn fragment(
    state: ApiState,
    q: Option<String>,
    protocol: Protocol,
) -> Result<Response, StreamingError> {
    let SessionQuery {
        session, fragment, ..
    } = session_query(&state, q, protocol)?;
    let n =
        fragment.ok_or_else(|| StreamingError::BadQuery("FragmentNumber is required".into()))?;
    let (body, size) = with_session(&state, session, move |reader, session| {
        Ok(open_fragment_body(reader, &session, n)?)
    })
    .await?;
    let mut r = with_type(body.into_body(), "video/mp4");
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(r)
}

async fn hls_init(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, StreamingError> {
    init(state, q, Protocol::Hls).await
}

async fn dash_init(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, StreamingError> {
    init(state, q, Protocol::Dash).await
}

async fn hls_fragment(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, StreamingError> {
    fragment(state, q, Protocol::Hls).await
}

async fn dash_fragment(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Response, StreamingError> {
    fragment(state, q, Protocol::Dash).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str) -> SessionIn {
        parse(body.as_bytes()).unwrap()
    }

    fn err(protocol: Protocol, body: &str) -> String {
        match session_from(protocol, &req(body), 1_764_000_000_000) {
            Err(KvsError::InvalidArgument(m)) => m,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_the_service() {
        let s = session_from(Protocol::Hls, &req(r#"{"StreamName": "cam"}"#), 1000).unwrap();
        assert_eq!(s.mode, PlaybackMode::Live);
        assert_eq!(s.origin, Origin::Server);
        assert_eq!(s.discontinuity, DiscontinuityMode::Always);
        assert!(!s.display_timestamp);
        assert_eq!(s.max_fragments, 5);
        assert_eq!(s.expires_ms, 1000 + 300_000);
        let s = session_from(
            Protocol::Hls,
            &req(r#"{"StreamName": "cam", "PlaybackMode": "ON_DEMAND",
                "HLSFragmentSelector": {"FragmentSelectorType": "PRODUCER_TIMESTAMP",
                  "TimestampRange": {"StartTimestamp": 10, "EndTimestamp": 20}},
                "DisplayFragmentTimestamp": "ALWAYS", "Expires": 43200}"#),
            0,
        )
        .unwrap();
        assert_eq!(s.origin, Origin::Producer);
        assert_eq!(s.discontinuity, DiscontinuityMode::Never);
        assert_eq!(s.max_fragments, 1000);
        assert_eq!(
            (s.start_ns, s.end_ns),
            (Some(10_000_000_000), Some(20_000_000_000))
        );
        assert!(s.display_timestamp);
        assert_eq!(s.expires_ms, 43_200_000);
    }

    #[test]
    fn bad_requests_name_their_field() {
        let h = Protocol::Hls;
        let range = r#""TimestampRange": {"StartTimestamp": 10, "EndTimestamp": 20}"#;
        for (body, field) in [
            (r#"{"PlaybackMode": "NOPE"}"#.to_string(), "PlaybackMode"),
            (r#"{"ContainerFormat": "MPEG_TS"}"#.into(), "ContainerFormat: MPEG_TS is not supported"),
            (r#"{"ContainerFormat": "MKV"}"#.into(), "ContainerFormat"),
            (r#"{"DiscontinuityMode": "SOMETIMES"}"#.into(), "DiscontinuityMode"),
            (r#"{"DisplayFragmentTimestamp": "YES"}"#.into(), "DisplayFragmentTimestamp"),
            (r#"{"Expires": 299}"#.into(), "Expires"),
            (r#"{"Expires": 43201}"#.into(), "Expires"),
            (r#"{"MaxMediaPlaylistFragmentResults": 0}"#.into(), "MaxMediaPlaylistFragmentResults"),
            (r#"{"MaxMediaPlaylistFragmentResults": 5001}"#.into(), "MaxMediaPlaylistFragmentResults"),
            (format!(r#"{{"HLSFragmentSelector": {{{range}}}}}"#), "HLSFragmentSelector.TimestampRange: must not be set"),
            (r#"{"PlaybackMode": "ON_DEMAND"}"#.into(), "HLSFragmentSelector.TimestampRange.StartTimestamp"),
            (r#"{"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": {"TimestampRange": {"StartTimestamp": 10}}}"#.into(), "HLSFragmentSelector.TimestampRange.EndTimestamp: is required"),
            (r#"{"PlaybackMode": "LIVE_REPLAY"}"#.into(), "HLSFragmentSelector.TimestampRange.StartTimestamp"),
            (r#"{"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": {"TimestampRange": {"StartTimestamp": 20, "EndTimestamp": 10}}}"#.into(), "HLSFragmentSelector.TimestampRange.EndTimestamp: must be after"),
            (r#"{"PlaybackMode": "ON_DEMAND", "HLSFragmentSelector": {"TimestampRange": {"StartTimestamp": 0, "EndTimestamp": 86401}}}"#.into(), "HLSFragmentSelector.TimestampRange: spans more than 24 hours"),
            (r#"{"HLSFragmentSelector": {"FragmentSelectorType": "NOW"}}"#.into(), "HLSFragmentSelector.FragmentSelectorType"),
        ] {
            let m = err(h, &body);
            assert!(m.starts_with(field), "{body}: {m}");
        }
        let m = err(Protocol::Dash, r#"{"MaxManifestFragmentResults": 0}"#);
        assert!(m.starts_with("MaxManifestFragmentResults"), "{m}");
        let m = err(Protocol::Dash, r#"{"PlaybackMode": "ON_DEMAND"}"#);
        assert!(m.starts_with("DASHFragmentSelector."), "{m}");
        // LIVE_REPLAY may leave the end open
        let s = session_from(
            h,
            &req(r#"{"PlaybackMode": "LIVE_REPLAY", "HLSFragmentSelector": {"TimestampRange": {"StartTimestamp": 10}}}"#),
            0,
        )
        .unwrap();
        assert_eq!(
            (s.start_ns, s.end_ns, s.max_fragments),
            (Some(10_000_000_000), None, 5)
        );
    }

    #[tokio::test]
    async fn token_refusals_are_403() {
        for e in [TokenError::Forged, TokenError::Expired] {
            let r = StreamingError::from(e).into_response();
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
        }
        let gone = StreamingError::from(StoreError::FragmentGone {
            stream: "cam".into(),
            number: 3,
        })
        .into_response();
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    }
}
