//! Bearer-token auth. With no token configured everything is open (the listener is loopback by
//! default); once tokens exist every route but /healthz needs one. AWS-style clients pass the
//! token as their access key id (SigV4 signatures themselves are not verified). Browsers
//! present a session cookie instead (src/api/session.rs, docs/ui.md#sign-in).

use crate::config::{TokenConfig, TokenScope};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// Each scope implies the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Lists, descriptions, records and video out; playback session URLs.
    Read,
    /// Records in (PutRecord(s), Firehose puts) and stream tags.
    Write,
    /// What changes the daemon's policy: creating and deleting streams, retention.
    Admin,
}

impl Scope {
    /// As `[[api.token]] scope` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

#[derive(Default)]
pub struct Auth {
    tokens: Vec<(String, Scope)>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No or unknown token.
    Unrecognized,
    /// Token lacks the scope.
    Denied,
}

impl Auth {
    pub fn new(tokens: &[TokenConfig]) -> Self {
        Self {
            tokens: tokens
                .iter()
                .map(|t| {
                    let scope = match t.scope {
                        TokenScope::Read => Scope::Read,
                        TokenScope::Write => Scope::Write,
                        TokenScope::Admin => Scope::Admin,
                    };
                    (t.token.clone(), scope)
                })
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    pub fn check(&self, headers: &HeaderMap, needed: Scope) -> Result<(), AuthError> {
        if !self.enabled() {
            return Ok(());
        }
        if self.scope_of_request(headers)? >= needed {
            Ok(())
        } else {
            Err(AuthError::Denied)
        }
    }

    /// The scope of the token in a request's `Authorization` header.
    pub fn scope_of_request(&self, headers: &HeaderMap) -> Result<Scope, AuthError> {
        let presented = presented_token(headers).ok_or(AuthError::Unrecognized)?;
        self.scope_of_token(&presented)
            .ok_or(AuthError::Unrecognized)
    }

    /// The scope of a configured token.
    pub fn scope_of_token(&self, presented: &str) -> Option<Scope> {
        self.tokens
            .iter()
            // constant-time per token so response timing does not reveal matching prefixes
            .find(|(t, _)| bool::from(t.as_bytes().ct_eq(presented.as_bytes())))
            .map(|(_, s)| *s)
    }

    /// The configured tokens (session cookies find theirs by a keyed fingerprint).
    pub(super) fn tokens(&self) -> impl Iterator<Item = (&str, Scope)> {
        self.tokens.iter().map(|(t, s)| (t.as_str(), *s))
    }
}

/// `Authorization: Bearer T`, or the access key id of a SigV4 header
/// (`AWS4-HMAC-SHA256 Credential=T/20261125/us-east-1/kinesis/aws4_request, ...`).
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    if let Some(t) = value.strip_prefix("Bearer ") {
        return Some(t.trim().to_string());
    }
    let cred = value.split("Credential=").nth(1)?;
    Some(cred.split('/').next()?.trim().to_string())
}

/// How one route family authorizes: the scope a request needs, and how a refusal looks in
/// that family's wire format (AWS error JSON/CBOR for Kinesis, plain JSON for REST).
#[derive(Clone, Copy)]
pub struct RouteAuth {
    pub scope: fn(&Parts) -> Scope,
    pub refuse: fn(AuthError, &Parts) -> Response,
}

/// The one auth middleware: every route family but /healthz is layered with it (see
/// `api::router`). It runs before the handler reads the body, so an unauthenticated client
/// cannot make the daemon buffer megabytes. A request authenticates with its `Authorization`
/// header or, from the web UI, with the session cookie (`session::identify`). The cookie is
/// `SameSite=Strict`, which is the CSRF defence (browsers send it only on requests this site's
/// own pages start); `identify` also refuses cookie-authenticated writes from another `Origin`.
pub async fn require(
    State((state, route)): State<(super::ApiState, RouteAuth)>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let needed = (route.scope)(&parts);
    let allowed = match super::session::identify(&state, &parts.headers, &parts.method) {
        Ok(super::session::Identity::Open) => Ok(()),
        Ok(super::session::Identity::Token(scope)) if scope >= needed => Ok(()),
        Ok(super::session::Identity::Cookie(grant)) if grant.scope >= needed => Ok(()),
        Ok(_) => Err(AuthError::Denied),
        Err(e) => Err(e),
    };
    match allowed {
        Ok(()) => next.run(Request::from_parts(parts, body)).await,
        Err(e) => {
            let mut refusal = (route.refuse)(e, &parts);
            // The unread body is left on the connection, so hyper closes it after this answer;
            // saying so keeps clients from sending their next request into that closing
            // connection (seen as "peer disconnected" on reuse).
            refusal
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            refusal
        }
    }
}

/// Read for GET and HEAD, write for everything else (the REST family).
pub fn scope_by_method(parts: &Parts) -> Scope {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        Scope::Read
    } else {
        Scope::Write
    }
}

/// `{"error": ...}` with 401 (no or unknown token) or 403 (token lacks the scope).
pub fn refuse_json(e: AuthError, _: &Parts) -> Response {
    let (status, message) = match e {
        AuthError::Unrecognized => (StatusCode::UNAUTHORIZED, "a valid API token is required"),
        AuthError::Denied => (
            StatusCode::FORBIDDEN,
            "the API token lacks the scope for this request",
        ),
    };
    let mut r = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", v.parse().unwrap());
        h
    }

    #[test]
    fn tokens_and_scopes() {
        let auth = Auth::new(&[
            TokenConfig {
                token: "reader-token-0123456".into(),
                scope: TokenScope::Read,
            },
            TokenConfig {
                token: "writer-token-0123456".into(),
                scope: TokenScope::Write,
            },
            TokenConfig {
                token: "admin-token-01234567".into(),
                scope: TokenScope::Admin,
            },
        ]);
        let sigv4 = "AWS4-HMAC-SHA256 Credential=writer-token-0123456/20261125/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=abc";
        assert_eq!(auth.check(&headers(sigv4), Scope::Write), Ok(()));
        assert_eq!(
            auth.check(&headers("Bearer reader-token-0123456"), Scope::Read),
            Ok(())
        );
        assert_eq!(
            auth.check(&headers("Bearer reader-token-0123456"), Scope::Write),
            Err(AuthError::Denied)
        );
        assert_eq!(
            auth.check(&headers(sigv4), Scope::Admin),
            Err(AuthError::Denied)
        );
        assert_eq!(
            auth.check(&headers("Bearer admin-token-01234567"), Scope::Admin),
            Ok(())
        );
        assert_eq!(
            auth.check(&headers("Bearer admin-token-01234567"), Scope::Read),
            Ok(())
        );
        assert_eq!(
            auth.check(&headers("Bearer nope"), Scope::Read),
            Err(AuthError::Unrecognized)
        );
        // a prefix or an extension of a real token is not that token
        for near in ["reader-token-012345", "reader-token-01234567", ""] {
            assert_eq!(
                auth.check(&headers(&format!("Bearer {near}")), Scope::Read),
                Err(AuthError::Unrecognized),
                "{near:?}"
            );
        }
        assert_eq!(
            auth.check(&HeaderMap::new(), Scope::Read),
            Err(AuthError::Unrecognized)
        );
        assert_eq!(
            Auth::default().check(&HeaderMap::new(), Scope::Write),
            Ok(())
        );
    }
}
