//! RTSP URLs that may hold credentials: one place that finds the userinfo, validates it, masks it
//! for display and strips it for the wire. Config validation, capture and `vidgest probe` all go
//! through here, so they agree on where the password is.
//!
//! The userinfo is everything between `://` and the LAST `@`. URL parsers end it at the first
//! `/`, `?`, `#` or `@`, so an unencoded reserved character in a password makes them read part of
//! the password as host or port (`rtsp://admin:pa/ss@cam` -> host `admin`, port `pa`). Taking
//! the last `@` masks too much when a path or query holds an `@`; that is preferred to leaking.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::ops::Range;

/// Why an RTSP URL is refused. No variant holds any part of the userinfo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtspUrlError {
    #[error("missing scheme: write rtsp://host[:port]/path")]
    MissingScheme,
    #[error("unsupported scheme `{0}`: use rtsp://, rtsps:// or rtspt://")]
    UnsupportedScheme(String),
    #[error(
        "the user name or password holds characters that must be percent-encoded (any of / ? # @ [ ] % space, \
         e.g. / as %2F, @ as %40, % as %25; an @ in the path is written %40 too), \
         or give them separately (source.username and source.password; --username and --password for probe)"
    )]
    UnencodedUserinfo,
    #[error("missing host in `{0}`")]
    MissingHost(String),
    #[error("invalid port in `{0}` (a number 1..65535)")]
    InvalidPort(String),
    /// The URL parser's reason (its messages never quote the input).
    #[error("`{url}` is not a valid URL: {reason}")]
    Invalid { url: String, reason: String },
}

/// Byte range of the userinfo: from after `://` (or the start, without a scheme) up to the last
/// `@`. None when there is no `@`.
pub(crate) fn userinfo_range(url: &str) -> Option<Range<usize>> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let at = url[start..].rfind('@')? + start;
    Some(start..at)
}

/// Masks credentials in an RTSP (or any `scheme://`) URL:
/// `rtsp://user:pass@host/x` -> `rtsp://***:***@host/x`. Also masks password-like query
/// parameters (`?password=...`), which some cameras use instead of userinfo. Works on strings
/// that do not parse as URLs too.
pub fn redact_url(url: &str) -> String {
    match userinfo_range(url) {
        Some(r) => {
            let mask = if url[r.clone()].contains(':') {
                "***:***"
            } else {
                "***"
            };
            format!("{}{mask}{}", &url[..r.start], redact_query(&url[r.end..]))
        }
        None => redact_query(url),
    }
}

/// Masks the values of password-like query parameters.
fn redact_query(s: &str) -> String {
    let Some(q) = s.find('?') else {
        return s.to_owned();
    };
    let (before, query) = s.split_at(q + 1);
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{before}{}{fragment}", masked.join("&"))
}

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    ["password", "passwd", "pass", "pwd", "token", "secret"].contains(&k.as_str())
}

/// Whether the userinfo (if any) can only be read one way: RFC 3986 userinfo characters,
/// `%` only as `%XX`. Non-ASCII is accepted (the URL parser percent-encodes it consistently).
fn userinfo_is_unambiguous(userinfo: &str) -> bool {
    let b = userinfo.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let ok = match c {
            b'%' => {
                let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
                if !(hex(i + 1) && hex(i + 2)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => true,
            b'-' | b'.' | b'_' | b'~' => true,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' => {
                true
            }
            0x80.. => true,
            _ => false,
        };
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// Checks an RTSP URL and parses it. Errors show the URL only redacted.
pub(crate) fn parse(url: &str) -> Result<rtsp_types::Url, RtspUrlError> {
    let url = url.trim();
    let Some((scheme, _)) = url.split_once("://") else {
        // Without a scheme the userinfo cannot be told apart reliably: echo nothing.
        return Err(RtspUrlError::MissingScheme);
    };
    if !matches!(
        scheme.to_ascii_lowercase().as_str(),
        "rtsp" | "rtsps" | "rtspt"
    ) {
        // A scheme with `@` or `:` in it may be a mistyped userinfo: do not echo it.
        let shown = if scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
            scheme.to_owned()
        } else {
            "?".to_owned()
        };
        return Err(RtspUrlError::UnsupportedScheme(shown));
    }
    if let Some(r) = userinfo_range(url) {
        if !userinfo_is_unambiguous(&url[r]) {
            return Err(RtspUrlError::UnencodedUserinfo);
        }
    }
    let shown = redact_url(url);
    let parsed = rtsp_types::Url::parse(url).map_err(|e| match e {
        url::ParseError::EmptyHost => RtspUrlError::MissingHost(shown.clone()),
        url::ParseError::InvalidPort => RtspUrlError::InvalidPort(shown.clone()),
        other => RtspUrlError::Invalid {
            url: shown.clone(),
            reason: other.to_string(),
        },
    })?;
    match parsed.host() {
        None | Some(rtsp_types::Host::Domain("")) => Err(RtspUrlError::MissingHost(shown)),
        Some(_) => Ok(parsed),
    }
}

/// User and password from a URL's userinfo, percent-decoded; None without a user name.
pub(crate) fn url_credentials(url: &str) -> Option<(String, String)> {
    let parsed = parse(url).ok()?;
    let user = percent_decode(parsed.username());
    if user.is_empty() {
        return None;
    }
    Some((
        user,
        parsed.password().map(percent_decode).unwrap_or_default(),
    ))
}

/// The URL with any userinfo removed (what goes on the wire and into GStreamer's `location`).
/// When the userinfo is ambiguous, everything up to the last `@` is cut instead: the result may
/// be a wrong URL, never one holding part of a password.
pub(crate) fn strip_userinfo(url: &str) -> String {
    if let Ok(mut u) = parse(url) {
        // Ignoring the results: clearing userinfo only fails without a host, excluded by parse.
        let _ = u.set_username("");
        let _ = u.set_password(None);
        return u.to_string();
    }
    match userinfo_range(url) {
        Some(r) => format!("{}{}", &url[..r.start], &url[r.end + 1..]),
        None => url.to_owned(),
    }
}

/// Decodes `%XX` escapes (the URL parser keeps userinfo percent-encoded).
pub(crate) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A camera URL from the config. Its `Debug` and `Display` mask the credentials, so no log line
/// or error can print them by accident; [`RtspUrl::expose_secret`] gives the text as written.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspUrl(String);

impl RtspUrl {
    pub fn new(url: impl Into<String>) -> Self {
        RtspUrl(url.into())
    }
    /// The URL as written, credentials included. Not for messages.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
    pub fn validate(&self) -> Result<(), RtspUrlError> {
        parse(&self.0).map(|_| ())
    }
    /// Percent-decoded user and password from the userinfo.
    pub fn credentials(&self) -> Option<(String, String)> {
        url_credentials(&self.0)
    }
    pub fn without_credentials(&self) -> String {
        strip_userinfo(&self.0)
    }
    /// `rtsps://` (RTSP over TLS).
    pub fn is_rtsps(&self) -> bool {
        self.scheme_is("rtsps")
    }
    /// `rtspt://` (RTSP with interleaved TCP transport).
    pub fn is_rtspt(&self) -> bool {
        self.scheme_is("rtspt")
    }
    fn scheme_is(&self, scheme: &str) -> bool {
        self.0
            .trim()
            .split_once("://")
            .is_some_and(|(s, _)| s.eq_ignore_ascii_case(scheme))
    }
}

impl fmt::Debug for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RtspUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<String> for RtspUrl {
    fn from(s: String) -> Self {
        RtspUrl(s)
    }
}

impl From<&str> for RtspUrl {
    fn from(s: &str) -> Self {
        RtspUrl(s.to_owned())
    }
}

impl<'de> Deserialize<'de> for RtspUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        secret::string(d).map(RtspUrl)
    }
}

/// Deserializers for fields that may hold secrets: a value of the wrong type is reported
/// without quoting it (serde's default message would, e.g. ``invalid type: integer `123456` ``).
pub(crate) mod secret {
    use serde::de::{self, Deserializer, Visitor};
    use std::fmt;

    struct SecretString;

    const WRONG_TYPE: &str =
        "expected a string in quotes (the value is not shown: it may be a secret)";

    impl<'de> Visitor<'de> for SecretString {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<String, E> {
            Err(E::custom(WRONG_TYPE))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<String, E> {
            Err(E::custom(WRONG_TYPE))
        }
        fn visit_i128<E: de::Error>(self, _: i128) -> Result<String, E> {
            Err(E::custom(WRONG_TYPE))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<String, E> {
            Err(E::custom(WRONG_TYPE))
        }
        fn visit_u128<E: de::Error>(self, _: u128) -> Result<String, E> {
            Err(E::custom(WRONG_TYPE))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
            Err(E::custom(WRONG_TYPE))
        }
        fn visit_char<E: de::Error>(self, _: char) -> Result<String, E> {
            Err(E::custom(WRONG_TYPE))
        }
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<String, E> {
            Err(E::custom(WRONG_TYPE))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
            // TOML dates arrive as maps.
            Err(de::Error::custom(WRONG_TYPE))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
            Err(de::Error::custom(WRONG_TYPE))
        }
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_string(SecretString)
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        string(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo() {
        assert_eq!(
            redact_url("rtsp://user:pass@host/x"),
            "rtsp://***:***@host/x"
        );
        assert_eq!(
            redact_url("rtsp://admin:s3cr3t@10.0.0.2:554/Streaming/101?a=1"),
            "rtsp://***:***@10.0.0.2:554/Streaming/101?a=1"
        );
        assert_eq!(redact_url("rtsp://user@host"), "rtsp://***@host");
        assert_eq!(redact_url("rtsp://u:p%40ss@host/"), "rtsp://***:***@host/");
        // No scheme: still masked up to the last `@`.
        assert_eq!(redact_url("admin:pw@10.0.0.1/x"), "***:***@10.0.0.1/x");
    }

    #[test]
    fn redact_keeps_urls_without_credentials() {
        for u in [
            "rtsp://127.0.0.1:8554/cam",
            "rtsp://[::1]:554/x",
            "not a url",
            "",
        ] {
            assert_eq!(redact_url(u), u);
        }
        // An `@` in the path over-masks rather than risk reading a password as a path.
        assert_eq!(redact_url("rtsp://host/a@b"), "rtsp://***@b");
    }

    #[test]
    fn redact_masks_reserved_characters_in_passwords_and_query_secrets() {
        for (url, shown) in [
            ("rtsp://admin:pa/ss@host/x", "rtsp://***:***@host/x"),
            ("rtsp://admin:pa@ss#word@host/x", "rtsp://***:***@host/x"),
            ("rtsp://admin:pa?ss@host/x", "rtsp://***:***@host/x"),
            ("rtsp://admin:pa ss@host/x", "rtsp://***:***@host/x"),
            (
                "rtsp://admin:1234/5678@host:554/x",
                "rtsp://***:***@host:554/x",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        assert_eq!(
            redact_url("rtsp://host/live?user=admin&password=hunter2&ch=1"),
            "rtsp://host/live?user=admin&password=***&ch=1"
        );
    }

    #[test]
    fn parse_refuses_ambiguous_userinfo_without_echoing_it() {
        for url in [
            "rtsp://admin:s3cr3t/x@10.0.0.1/live",
            "rtsp://admin:pa@ss#word@10.0.0.1/live",
            "rtsp://admin:pa?ss@10.0.0.1/live",
            "rtsp://admin:p%zzword@10.0.0.1/live",
            "rtsp://admin:pass word@10.0.0.1/live",
            "rtsp://admin:pa[ss]@10.0.0.1/live",
            "rtsp://host/a@b",
        ] {
            let e = parse(url).unwrap_err();
            assert_eq!(e, RtspUrlError::UnencodedUserinfo, "{url}");
        }
        for url in [
            "rtsp://admin:pa:ss@10.0.0.1/live",
            "rtsp://admin:p%2Fss%40x@10.0.0.1:8554/live",
            "rtsp://us%C3%A9r:pässwörd@[::1]:554/x",
            "rtsp://viewer@cam.local/x",
            "rtsps://cam/x",
            "rtspt://cam/x",
        ] {
            assert!(parse(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn parse_errors_name_the_problem() {
        assert_eq!(parse("cam/x"), Err(RtspUrlError::MissingScheme));
        assert_eq!(
            parse("http://cam/x"),
            Err(RtspUrlError::UnsupportedScheme("http".into()))
        );
        assert_eq!(
            parse("rtsp://u:secret@:554/x"),
            Err(RtspUrlError::MissingHost("rtsp://***:***@:554/x".into()))
        );
        assert_eq!(
            parse("rtsp://u:secret@cam:99999/x"),
            Err(RtspUrlError::InvalidPort(
                "rtsp://***:***@cam:99999/x".into()
            ))
        );
    }

    #[test]
    fn credentials_and_stripping() {
        let u = RtspUrl::new("rtsp://us%C3%A9r:p%40ss%2F%C3%A9:x@127.0.0.1:8554/cam");
        assert_eq!(u.credentials(), Some(("usér".into(), "p@ss/é:x".into())));
        assert_eq!(u.without_credentials(), "rtsp://127.0.0.1:8554/cam");
        assert_eq!(format!("{u}"), "rtsp://***:***@127.0.0.1:8554/cam");
        assert_eq!(
            format!("{u:?}"),
            "RtspUrl(\"rtsp://***:***@127.0.0.1:8554/cam\")"
        );
        // Ambiguous: cut up to the last `@` rather than keep a piece of the password.
        assert_eq!(
            strip_userinfo("rtsp://admin:pa@ss#word@10.0.0.1/live"),
            "rtsp://10.0.0.1/live"
        );
        assert_eq!(RtspUrl::new("rtsp://cam/x").credentials(), None);
    }
}
