//! Web UI sign-in (docs/ui.md#sign-in): a browser trades an API token for a session cookie,
//! because it cannot send a bearer header on page loads, `<video src>`, `<img src>` or download
//! links.
//!
//! The cookie is not the token: it is a value signed with the data directory's key (the one that
//! signs shard iterators and playback session tokens, under its own domain) holding the scope,
//! the expiry and a keyed fingerprint of the token. Each request looks the fingerprint up among
//! the tokens configured now, so a token removed from the config ends its sessions, and a token
//! whose scope was lowered lowers theirs. The cookie is stateless: signing out clears it in the
//! browser, but a copy taken before stays valid until it expires or its token is removed.

use super::auth::{refuse_json, Auth, AuthError, Scope};
use super::kinesis::IteratorKey;
use super::ApiState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use subtle::ConstantTimeEq;

/// `[api] session_hours` by default.
pub const DEFAULT_HOURS: u32 = 12;
/// The cookie's name.
pub const COOKIE: &str = "vidgest_session";
/// Where the sign-in route lives (`POST` signs in, `DELETE` signs out, `GET` tells who is in).
pub const PATH: &str = "/api/v1/session";
/// Separates session cookies from the other values signed with the same key.
const DOMAIN: &[u8] = b"vidgest ui session v1\0";
/// The keyed fingerprint of a token (its first 16 bytes of HMAC-SHA256).
const FINGERPRINT_DOMAIN: &[u8] = b"vidgest ui session token fingerprint v1\0";
const FINGERPRINT_LEN: usize = 16;
/// Longer "tokens" are not looked at (config tokens are short strings).
const MAX_TOKEN_LEN: usize = 4096;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// What a session cookie holds (short names keep it small).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    /// The token's scope at sign-in (`read`, `write`, `admin`).
    #[serde(rename = "s")]
    scope: String,
    /// Expiry, Unix ms.
    #[serde(rename = "e")]
    expires_ms: i64,
    /// Keyed fingerprint of the token, base64url.
    #[serde(rename = "f")]
    fingerprint: String,
}

/// Why a session cookie does not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session cookie is not valid")]
    Forged,
    #[error("the session has expired")]
    Expired,
    #[error("the session's token is no longer configured")]
    TokenRemoved,
}

/// A verified session: the scope in force now and when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub scope: Scope,
    pub expires_ms: i64,
}

fn scope_from_name(name: &str) -> Option<Scope> {
    [Scope::Read, Scope::Write, Scope::Admin]
        .into_iter()
        .find(|s| s.name() == name)
}

/// Issues and verifies session cookies, and damps password guessing on the sign-in route.
pub struct Sessions {
    key: IteratorKey,
    ttl_ms: i64,
    throttle: Mutex<SignInThrottle>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Sessions signed with `key` lasting `hours` (`[api] session_hours`).
    pub fn new(key: IteratorKey, hours: u32) -> Self {
        Self {
            key,
            ttl_ms: i64::from(hours) * 3_600_000,
            throttle: Mutex::default(),
        }
    }

    fn fingerprint(&self, token: &str) -> [u8; FINGERPRINT_LEN] {
        let signed = self.key.sign(FINGERPRINT_DOMAIN, token.as_bytes());
        let tag = &signed[token.len()..];
        let mut out = [0; FINGERPRINT_LEN];
        out.copy_from_slice(&tag[..FINGERPRINT_LEN]);
        out
    }

    /// The scope a configured token has now, found by its fingerprint (constant-time compares).
    fn scope_of(&self, auth: &Auth, fingerprint: &[u8]) -> Option<Scope> {
        auth.tokens()
            .find(|(t, _)| bool::from(self.fingerprint(t).ct_eq(fingerprint)))
            .map(|(_, s)| s)
    }

    /// The cookie value and its grant for a correct `token`; None for a wrong one.
    pub fn issue(&self, auth: &Auth, token: &str, now_ms: i64) -> Option<(String, Grant)> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let scope = auth.scope_of_token(token)?;
        let grant = Grant {
            scope,
            expires_ms: now_ms.saturating_add(self.ttl_ms),
        };
        let claims = Claims {
            scope: scope.name().to_string(),
            expires_ms: grant.expires_ms,
            fingerprint: b64().encode(self.fingerprint(token)),
        };
        let json = serde_json::to_vec(&claims).expect("claims serialize");
        Some((b64().encode(self.key.sign(DOMAIN, &json)), grant))
    }

    /// The grant of a cookie value at `now_ms`, checked against the tokens configured now: the
    /// lower of the scope signed in with and the token's scope today.
    pub fn verify(&self, auth: &Auth, value: &str, now_ms: i64) -> Result<Grant, SessionError> {
        let bytes = b64().decode(value).map_err(|_| SessionError::Forged)?;
        let json = self
            .key
            .verify(DOMAIN, &bytes)
            .ok_or(SessionError::Forged)?;
        let claims: Claims = serde_json::from_slice(json).map_err(|_| SessionError::Forged)?;
        let signed_scope = scope_from_name(&claims.scope).ok_or(SessionError::Forged)?;
        if now_ms > claims.expires_ms {
            return Err(SessionError::Expired);
        }
        let fingerprint = b64()
            .decode(&claims.fingerprint)
            .map_err(|_| SessionError::Forged)?;
        let current = self
            .scope_of(auth, &fingerprint)
            .ok_or(SessionError::TokenRemoved)?;
        Ok(Grant {
            scope: signed_scope.min(current),
            expires_ms: claims.expires_ms,
        })
    }
}

/// How many wrong tokens an address may send before it has to wait.
const FREE_FAILURES: u32 = 5;
/// The longest wait between attempts (the wait doubles from 1 s per further failure).
const MAX_WAIT_MS: i64 = 60_000;
/// An address quiet this long starts afresh.
const FORGET_AFTER_MS: i64 = 15 * 60_000;
/// Addresses tracked at most (beyond it the oldest quiet ones are dropped first).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_ms: i64,
}

/// Brute-force damping for the sign-in route: per client address, a few wrong tokens are free,
/// then each further attempt must wait 1 s, 2 s, 4 s ... (at most a minute) after the last
/// failure, or is refused with 429 before the token is even looked at.
#[derive(Debug, Default)]
pub struct SignInThrottle {
    failures: HashMap<IpAddr, Failures>,
}

/// Too many wrong tokens from this address: try again in this many milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub i64);

impl SignInThrottle {
    fn wait_ms(count: u32) -> i64 {
        match count.checked_sub(FREE_FAILURES) {
            None => 0,
            Some(over) => 1_000i64
                .checked_shl(over.min(30))
                .unwrap_or(MAX_WAIT_MS)
                .min(MAX_WAIT_MS),
        }
    }

    /// Whether `ip` may try a token at `now_ms`.
    pub fn check(&mut self, ip: IpAddr, now_ms: i64) -> Result<(), RetryAfter> {
        let Some(f) = self.failures.get(&ip).copied() else {
            return Ok(());
        };
        if now_ms - f.last_ms >= FORGET_AFTER_MS {
            self.failures.remove(&ip);
            return Ok(());
        }
        let ready = f.last_ms.saturating_add(Self::wait_ms(f.count));
        if now_ms < ready {
            Err(RetryAfter(ready - now_ms))
        } else {
            Ok(())
        }
    }

    /// `ip` sent a wrong token at `now_ms`.
    pub fn failed(&mut self, ip: IpAddr, now_ms: i64) {
        if self.failures.len() >= MAX_TRACKED && !self.failures.contains_key(&ip) {
            self.failures
                .retain(|_, f| now_ms - f.last_ms < FORGET_AFTER_MS);
            if self.failures.len() >= MAX_TRACKED {
                // still full of recent failures: forget the quietest half
                let mut lasts: Vec<i64> = self.failures.values().map(|f| f.last_ms).collect();
                lasts.sort_unstable();
                let cut = lasts[lasts.len() / 2];
                self.failures.retain(|_, f| f.last_ms > cut);
            }
        }
        let f = self.failures.entry(ip).or_insert(Failures {
            count: 0,
            last_ms: now_ms,
        });
        f.count = f.count.saturating_add(1);
        f.last_ms = now_ms;
    }

    /// `ip` signed in: its failures are forgotten.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.failures.remove(&ip);
    }
}

/// The damping bucket of a client address: IPv4 addresses alone, IPv6 by their /64 (one host
/// commonly holds a whole /64 and could otherwise rotate through it).
pub fn client_bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// The session cookie's value in a request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

/// Whether a request's `Origin` (when it has one) names this host: its `host[:port]` is the
/// request's `Host`. Browsers send `Origin` on cross-origin requests and on same-origin non-GET
/// fetches; `null` (sandboxed frames, some redirects) is not this host. The scheme is not
/// compared: behind a TLS-terminating proxy the browser's `https` origin reaches a plain-HTTP
/// listener (the proxy must pass `Host` on).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .is_some_and(|(scheme, authority)| {
            matches!(scheme, "http" | "https") && authority.eq_ignore_ascii_case(host)
        })
}

/// Who a request is, as the one auth middleware sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// No tokens configured: everyone may do everything.
    Open,
    /// `Authorization` (bearer or SigV4 access key id).
    Token(Scope),
    /// The session cookie.
    Cookie(Grant),
}

/// Authenticates a request: the `Authorization` header when present, else the session cookie.
/// SameSite=Strict is the CSRF defence: browsers send the cookie only on requests started from
/// this site's own pages. On top, a cookie-authenticated request that can change something
/// (not GET or HEAD) is refused when its `Origin` is another site's.
pub fn identify(
    state: &ApiState,
    headers: &HeaderMap,
    method: &Method,
) -> Result<Identity, AuthError> {
    let auth = state.auth();
    if !auth.enabled() {
        return Ok(Identity::Open);
    }
    if headers.contains_key(header::AUTHORIZATION) {
        return auth.scope_of_request(headers).map(Identity::Token);
    }
    let value = cookie_value(headers).ok_or(AuthError::Unrecognized)?;
    let grant = state
        .sessions
        .verify(&auth, &value, now_ms(state))
        .map_err(|_| AuthError::Unrecognized)?;
    if method != Method::GET && method != Method::HEAD && !same_origin(headers) {
        return Err(AuthError::Denied);
    }
    Ok(Identity::Cookie(grant))
}

fn now_ms(state: &ApiState) -> i64 {
    state.clock.now_ns() / 1_000_000
}

/// `POST` / `DELETE` / `GET` on [`PATH`]; open (it is where credentials come in).
pub fn router() -> Router<ApiState> {
    Router::new().route(PATH, get(who).post(sign_in).delete(sign_out))
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn set_cookie(response: &mut Response, cookie: cookie::Cookie<'_>) {
    if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The cookie with its attributes: HttpOnly (no script reads it), Secure (never sent over plain
/// HTTP, except to loopback, which browsers treat as a secure context), SameSite=Strict.
fn session_cookie(value: String, max_age_s: i64) -> cookie::Cookie<'static> {
    cookie::Cookie::build((COOKIE, value))
        .http_only(true)
        .secure(true)
        .same_site(cookie::SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age_s))
        .build()
}

fn rfc3339_ms(ms: i64) -> String {
    crate::clock::format_rfc3339(ms.saturating_mul(1_000_000))
}

/// Signs in: the token as JSON `{"token": ...}` or a form field `token`; answers the scope and
/// expiry with the cookie, 401 for a wrong token, 429 while the client address must wait.
async fn sign_in(
    State(state): State<ApiState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.auth().enabled() {
        return error(
            StatusCode::NOT_FOUND,
            "no API tokens are configured: the UI needs no sign-in",
        );
    }
    if !same_origin(&headers) {
        return error(StatusCode::FORBIDDEN, "sign-in from another site");
    }
    // no address (an in-process test router): one shared bucket
    let ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |e| {
        client_bucket(e.0 .0.ip())
    });
    let now = now_ms(&state);
    if let Err(RetryAfter(ms)) = state.sessions.throttle.lock().check(ip, now) {
        let secs = (ms + 999) / 1000;
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("too many wrong tokens: try again in {secs} s"),
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parsed: Option<SignIn> = if content_type.starts_with("application/json") {
        serde_json::from_slice(&body).ok()
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes(&body).ok()
    } else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the token as JSON {\"token\": ...} or a form field `token`",
        );
    };
    let Some(SignIn { token }) = parsed else {
        return error(StatusCode::BAD_REQUEST, "no `token` in the request body");
    };
    match state.sessions.issue(&state.auth(), &token, now) {
        None => {
            state.sessions.throttle.lock().failed(ip, now);
            tracing::warn!(peer = %ip, "UI sign-in refused: wrong token");
            error(StatusCode::UNAUTHORIZED, "wrong token")
        }
        Some((value, grant)) => {
            state.sessions.throttle.lock().succeeded(ip);
            tracing::info!(peer = %ip, scope = grant.scope.name(), "UI sign-in");
            let mut r = axum::Json(serde_json::json!({
                "scope": grant.scope.name(),
                "expires": rfc3339_ms(grant.expires_ms),
            }))
            .into_response();
            set_cookie(&mut r, session_cookie(value, state.sessions.ttl_ms / 1000));
            r
        }
    }
}

/// Signs out: clears the cookie (a stateless cookie cannot be revoked server-side; see the
/// module docs).
async fn sign_out() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut r, session_cookie(String::new(), 0));
    r
}

/// Who the request is: `{"auth": false}` without tokens; else whether it is signed in, how
/// (`cookie` or `token`), its scope and (cookie) expiry. Always 200, so the pages can ask
/// without the browser logging an error.
async fn who(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let body = match identify(&state, &headers, &Method::GET) {
        Ok(Identity::Open) => serde_json::json!({ "auth": false }),
        Ok(Identity::Token(scope)) => serde_json::json!({
            "auth": true, "signed_in": true, "via": "token", "scope": scope.name(),
        }),
        Ok(Identity::Cookie(g)) => serde_json::json!({
            "auth": true, "signed_in": true, "via": "cookie", "scope": g.scope.name(),
            "expires": rfc3339_ms(g.expires_ms),
        }),
        Err(_) => serde_json::json!({ "auth": true, "signed_in": false }),
    };
    axum::Json(body).into_response()
}

/// A refusal for a page route: a browser loading a page (it accepts `text/html`) without
/// credentials is sent to the sign-in page (303), which returns it here afterwards; API clients
/// get the JSON refusal.
pub fn refuse_page(e: AuthError, parts: &axum::http::request::Parts) -> Response {
    let wants_html = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if e != AuthError::Unrecognized || !wants_html {
        return refuse_json(e, parts);
    }
    let next = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/login.html?{query}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TokenConfig, TokenScope};

    const READ: &str = "session-reader-token-0123";
    const WRITE: &str = "session-writer-token-0123";
    const HOUR_MS: i64 = 3_600_000;

    fn auth(tokens: &[(&str, TokenScope)]) -> Auth {
        Auth::new(
            &tokens
                .iter()
                .map(|(t, s)| TokenConfig {
                    token: t.to_string(),
                    scope: *s,
                })
                .collect::<Vec<_>>(),
        )
    }

    fn both() -> Auth {
        auth(&[(READ, TokenScope::Read), (WRITE, TokenScope::Write)])
    }

    #[test]
    fn a_cookie_grants_its_tokens_scope_until_it_expires() {
        let sessions = Sessions::new(IteratorKey::random(), 12);
        let now = 1_800_000_000_000;
        assert_eq!(sessions.issue(&both(), "wrong-token-0123456789", now), None);
        let (value, grant) = sessions.issue(&both(), WRITE, now).unwrap();
        assert_eq!(grant.scope, Scope::Write);
        assert_eq!(grant.expires_ms, now + 12 * HOUR_MS);
        // the cookie is not the token and does not contain it
        assert!(!value.contains(WRITE));
        assert!(!String::from_utf8_lossy(&b64().decode(&value).unwrap()).contains(WRITE));
        assert_eq!(sessions.verify(&both(), &value, now + HOUR_MS), Ok(grant));
        assert_eq!(
            sessions.verify(&both(), &value, now + 12 * HOUR_MS),
            Ok(grant)
        );
        assert_eq!(
            sessions.verify(&both(), &value, now + 12 * HOUR_MS + 1),
            Err(SessionError::Expired)
        );
        let (read, _) = sessions.issue(&both(), READ, now).unwrap();
        assert_eq!(
            sessions.verify(&both(), &read, now).map(|g| g.scope),
            Ok(Scope::Read)
        );
    }

    #[test]
    fn forged_or_altered_cookies_are_refused() {
        let sessions = Sessions::new(IteratorKey::random(), 12);
        let now = 1_800_000_000_000;
        let (value, _) = sessions.issue(&both(), READ, now).unwrap();
        // another data directory's key
        let other = Sessions::new(IteratorKey::random(), 12);
        assert_eq!(
            other.verify(&both(), &value, now),
            Err(SessionError::Forged)
        );
        // altered claims: a later expiry and a higher scope, re-encoded without the key
        let bytes = b64().decode(&value).unwrap();
        let (json, tag) = bytes.split_at(bytes.len() - 32);
        let mut claims: Claims = serde_json::from_slice(json).unwrap();
        claims.scope = "admin".into();
        claims.expires_ms += 1000 * HOUR_MS;
        let mut forged = serde_json::to_vec(&claims).unwrap();
        forged.extend_from_slice(tag);
        assert_eq!(
            sessions.verify(&both(), &b64().encode(&forged), now),
            Err(SessionError::Forged)
        );
        // a signed value of another kind (a playback session token's domain) is no cookie
        let playback = b64().encode(IteratorKey::random().sign(b"", json));
        assert_eq!(
            sessions.verify(&both(), &playback, now),
            Err(SessionError::Forged)
        );
        for garbage in ["", "x", "not base64 !", &value[..value.len() - 2]] {
            assert_eq!(
                sessions.verify(&both(), garbage, now),
                Err(SessionError::Forged),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn removing_a_token_ends_its_sessions_and_lowering_its_scope_lowers_theirs() {
        let sessions = Sessions::new(IteratorKey::random(), 12);
        let now = 1_800_000_000_000;
        let (writer, _) = sessions.issue(&both(), WRITE, now).unwrap();
        let (reader, _) = sessions.issue(&both(), READ, now).unwrap();
        // the config reloaded without the writer's token
        let reloaded = auth(&[(READ, TokenScope::Read)]);
        assert_eq!(
            sessions.verify(&reloaded, &writer, now),
            Err(SessionError::TokenRemoved)
        );
        assert!(sessions.verify(&reloaded, &reader, now).is_ok());
        // the writer's token now configured as read only: its session reads only
        let lowered = auth(&[(WRITE, TokenScope::Read)]);
        assert_eq!(
            sessions.verify(&lowered, &writer, now).map(|g| g.scope),
            Ok(Scope::Read)
        );
        // ... and raising it does not raise a session beyond the scope signed in with
        let raised = auth(&[(READ, TokenScope::Admin)]);
        assert_eq!(
            sessions.verify(&raised, &reader, now).map(|g| g.scope),
            Ok(Scope::Read)
        );
    }

    #[test]
    fn wrong_tokens_are_damped_per_address() {
        let mut t = SignInThrottle::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut now = 1_000_000;
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.check(a, now), Ok(()));
            t.failed(a, now);
            now += 10;
        }
        // the sixth try right away waits a second, then two after the next failure, ...
        assert_eq!(t.check(a, now), Err(RetryAfter(990)));
        assert_eq!(t.check(b, now), Ok(()), "another address is not affected");
        now += 990;
        assert_eq!(t.check(a, now), Ok(()));
        t.failed(a, now);
        assert_eq!(t.check(a, now + 1), Err(RetryAfter(1_999)));
        for _ in 0..20 {
            now += MAX_WAIT_MS;
            assert_eq!(t.check(a, now), Ok(()));
            t.failed(a, now);
        }
        assert_eq!(t.check(a, now), Err(RetryAfter(MAX_WAIT_MS)), "capped");
        // quiet long enough: forgotten
        assert_eq!(t.check(a, now + FORGET_AFTER_MS), Ok(()));
        t.failed(a, now + FORGET_AFTER_MS);
        assert_eq!(t.check(a, now + FORGET_AFTER_MS), Ok(()));
        // a sign-in forgets the failures at once
        for _ in 0..10 {
            t.failed(b, now);
        }
        assert!(t.check(b, now).is_err());
        t.succeeded(b);
        assert_eq!(t.check(b, now), Ok(()));
    }

    #[test]
    fn ipv6_clients_are_damped_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_bucket(a), client_bucket(b));
        assert_ne!(client_bucket(a), client_bucket(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            client_bucket(mapped),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_throttle_stays_bounded() {
        let mut t = SignInThrottle::default();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            t.failed(IpAddr::V4(Ipv4Addr::from(i)), i64::from(i));
        }
        assert!(t.failures.len() <= MAX_TRACKED, "{}", t.failures.len());
    }

    #[test]
    fn cookies_and_origins_in_headers() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; vidgest_session=abc.def; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h).as_deref(), Some("abc.def"));
        assert_eq!(cookie_value(&HeaderMap::new()), None);
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&h), "no Origin: not cross-site");
        for (origin, same) in [
            ("http://127.0.0.1:8080", true),
            ("https://127.0.0.1:8080", true),
            ("http://127.0.0.1", false),
            ("ftp://127.0.0.1:8080", false),
            ("http://127.0.0.1:8081", false),
            ("http://evil.example", false),
            ("null", false),
        ] {
            h.insert(header::ORIGIN, origin.parse().unwrap());
            assert_eq!(same_origin(&h), same, "{origin}");
        }
    }

    /// The whole router, in process: sign-in, the cookie on every family, page redirects.
    mod routes {
        use super::*;
        use crate::streams::{ShardStreams, ShardStreamsOptions};
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;

        const HOST: &str = "127.0.0.1:8080";

        struct Reply {
            status: u16,
            headers: HeaderMap,
            body: serde_json::Value,
        }

        fn state(dir: &std::path::Path, tokens: &[(&str, TokenScope)]) -> ApiState {
            let clock = crate::clock::system_clock();
            let streams =
                ShardStreams::open(dir, ShardStreamsOptions::default(), clock.clone()).unwrap();
            streams.create_stream("dets", 1, 24).unwrap();
            ApiState::new(streams, auth(tokens), clock, IteratorKey::random())
        }

        async fn send(state: &ApiState, request: Request<Body>) -> Reply {
            let r = crate::api::router(state.clone())
                .oneshot(request)
                .await
                .unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
            Reply {
                status,
                headers,
                body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            }
        }

        fn req(method: &str, uri: &str) -> axum::http::request::Builder {
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::HOST, HOST)
        }

        fn sign_in_json(token: &str) -> Request<Body> {
            req("POST", PATH)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ORIGIN, format!("http://{HOST}"))
                .body(Body::from(
                    serde_json::json!({ "token": token }).to_string(),
                ))
                .unwrap()
        }

        fn list_streams(cookie: &str, origin: Option<&str>) -> Request<Body> {
            let mut r = req("POST", "/")
                .header("x-amz-target", "Kinesis_20131202.ListStreams")
                .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
                .header(header::COOKIE, cookie);
            if let Some(o) = origin {
                r = r.header(header::ORIGIN, o);
            }
            r.body(Body::from("{}")).unwrap()
        }

        #[tokio::test]
        async fn sign_in_then_the_cookie_authenticates_every_family() {
            let dir = tempfile::tempdir().unwrap();
            let state = state(
                dir.path(),
                &[(READ, TokenScope::Read), (WRITE, TokenScope::Write)],
            );

            // a page load without credentials goes to the sign-in page and back; API calls 401
            let page = req("GET", "/camera.html?name=front")
                .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
                .body(Body::empty())
                .unwrap();
            let r = send(&state, page).await;
            assert_eq!(r.status, 303);
            assert_eq!(
                r.headers[header::LOCATION],
                "/login.html?next=%2Fcamera.html%3Fname%3Dfront"
            );
            let r = send(&state, req("GET", "/").body(Body::empty()).unwrap()).await;
            assert_eq!(r.status, 401, "no text/html: the JSON refusal");
            let r = send(
                &state,
                req("GET", "/login.html").body(Body::empty()).unwrap(),
            )
            .await;
            assert_eq!(r.status, 200, "the sign-in page is open");
            let r = send(&state, req("GET", PATH).body(Body::empty()).unwrap()).await;
            assert_eq!(
                r.body,
                serde_json::json!({ "auth": true, "signed_in": false })
            );

            // a wrong token: 401, no cookie
            let r = send(&state, sign_in_json("wrong-token-0123456789")).await;
            assert_eq!(r.status, 401);
            assert_eq!(r.body["error"], "wrong token");
            assert!(r.headers.get(header::SET_COOKIE).is_none());

            // the read token: the cookie with its attributes
            let r = send(&state, sign_in_json(READ)).await;
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.body["scope"], "read");
            let set = r.headers[header::SET_COOKIE].to_str().unwrap().to_string();
            for attr in [
                "HttpOnly",
                "Secure",
                "SameSite=Strict",
                "Path=/",
                "Max-Age=43200",
            ] {
                assert!(set.split("; ").any(|a| a == attr), "{attr} in {set}");
            }
            assert!(!set.contains(READ), "the cookie is not the token");
            let cookie = set.split(';').next().unwrap().to_string();

            // pages, REST, Kinesis (POST, same origin or no Origin), the session itself
            let with = |uri: &str| {
                req("GET", uri)
                    .header(header::COOKIE, &cookie)
                    .header(header::ACCEPT, "text/html")
                    .body(Body::empty())
                    .unwrap()
            };
            assert_eq!(send(&state, with("/")).await.status, 200);
            assert_eq!(send(&state, with("/api/v1/cameras")).await.status, 200);
            let origin = format!("http://{HOST}");
            assert_eq!(
                send(&state, list_streams(&cookie, Some(&origin)))
                    .await
                    .status,
                200
            );
            assert_eq!(send(&state, list_streams(&cookie, None)).await.status, 200);
            let who = send(&state, with(PATH)).await.body;
            assert_eq!(who["via"], "cookie");
            assert_eq!(who["scope"], "read");
            // another site's page cannot use the cookie to change anything
            let r = send(&state, list_streams(&cookie, Some("http://evil.example"))).await;
            assert_eq!(r.status, 403);
            // the read scope stays read: a put is refused
            let put = req("POST", "/")
                .header("x-amz-target", "Kinesis_20131202.PutRecord")
                .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
                .header(header::COOKIE, &cookie)
                .body(Body::from(
                    r#"{"StreamName":"dets","PartitionKey":"k","Data":"AA=="}"#,
                ))
                .unwrap();
            assert_eq!(send(&state, put).await.status, 403);
            // a forged cookie is no credential
            let forged = format!("{COOKIE}=x{}", &cookie[COOKIE.len() + 2..]);
            let r = send(
                &state,
                req("GET", "/api/v1/cameras")
                    .header(header::COOKIE, forged)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            assert_eq!(r.status, 401);

            // a form post signs in too
            let form = req("POST", PATH)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("token={WRITE}")))
                .unwrap();
            let r = send(&state, form).await;
            assert_eq!(r.body["scope"], "write");

            // sign-out clears the cookie
            let r = send(&state, req("DELETE", PATH).body(Body::empty()).unwrap()).await;
            assert_eq!(r.status, 204);
            let set = r.headers[header::SET_COOKIE].to_str().unwrap();
            assert!(set.starts_with(&format!("{COOKIE}=;")), "{set}");
            assert!(set.contains("Max-Age=0"), "{set}");

            // sign-in from another site is refused before the token is looked at
            let mut cross = sign_in_json(READ);
            cross
                .headers_mut()
                .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
            assert_eq!(send(&state, cross).await.status, 403);
        }

        #[tokio::test]
        async fn repeated_wrong_tokens_get_429_with_retry_after() {
            let dir = tempfile::tempdir().unwrap();
            let state = state(dir.path(), &[(READ, TokenScope::Read)]);
            for _ in 0..FREE_FAILURES {
                assert_eq!(
                    send(&state, sign_in_json("wrong-token-0123456789"))
                        .await
                        .status,
                    401
                );
            }
            // now even the right token waits (the address is throttled, not the token)
            let r = send(&state, sign_in_json(READ)).await;
            assert_eq!(r.status, 429);
            assert_eq!(r.headers[header::RETRY_AFTER], "1");
            assert!(r.headers.get(header::SET_COOKIE).is_none());
        }

        #[tokio::test]
        async fn without_tokens_there_is_no_sign_in() {
            let dir = tempfile::tempdir().unwrap();
            let state = state(dir.path(), &[]);
            let page = req("GET", "/")
                .header(header::ACCEPT, "text/html")
                .body(Body::empty())
                .unwrap();
            assert_eq!(send(&state, page).await.status, 200);
            let r = send(&state, sign_in_json(READ)).await;
            assert_eq!(r.status, 404);
            assert!(r.headers.get(header::SET_COOKIE).is_none());
            let r = send(&state, req("GET", PATH).body(Body::empty()).unwrap()).await;
            assert_eq!(r.body, serde_json::json!({ "auth": false }));
        }
    }
}
