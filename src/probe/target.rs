//! The probed URL: where to connect, which credentials to use, and how to show it safely.

use super::ProbeError;

/// A parsed `rtsp://` URL. No `Debug`: it holds the password.
pub(crate) struct Target {
    /// Host as given (brackets stripped from IPv6 literals), for connecting and messages.
    pub host: String,
    pub port: u16,
    /// URL without userinfo: sent on the wire and written to the config snippet.
    pub plain: String,
    /// URL with credentials masked: for messages and logs.
    pub redacted: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Target {
    /// Explicit `username`/`password` win over the URL's userinfo.
    pub fn parse(
        url: &str,
        username: Option<String>,
        password: Option<String>,
    ) -> Result<Target, ProbeError> {
        let redacted = redact_url(url);
        let invalid = |reason: &str| ProbeError::InvalidUrl {
            url: redacted.clone(),
            reason: reason.to_owned(),
        };
        let mut parsed = rtsp_types::Url::parse(url.trim()).map_err(|e| invalid(&e.to_string()))?;
        match parsed.scheme() {
            "rtsp" => {}
            "rtsps" => {
                return Err(invalid(
                    "rtsps:// (RTSP over TLS) is not supported by probe",
                ))
            }
            other => {
                return Err(invalid(&format!(
                    "scheme `{other}` is not rtsp (expected rtsp://host[:port]/path)"
                )))
            }
        }
        let host = match parsed.host() {
            Some(rtsp_types::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(rtsp_types::Host::Ipv4(a)) => a.to_string(),
            Some(rtsp_types::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(invalid("no host (expected rtsp://host[:port]/path)")),
        };
        let port = parsed.port().unwrap_or(554);

        let url_user = Some(percent_decode(parsed.username())).filter(|u| !u.is_empty());
        let url_pass = parsed.password().map(percent_decode);
        let username = username.or(url_user);
        let password = password.or(url_pass);

        // Ignoring the results: clearing userinfo only fails for URLs without a host, handled above.
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        Ok(Target {
            host,
            port,
            plain: parsed.to_string(),
            redacted,
            username,
            password,
        })
    }

    /// `host:port` (IPv6 in brackets), for error messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// User and password from a URL's userinfo, percent-decoded; None without a user name.
pub(crate) fn url_credentials(url: &str) -> Option<(String, String)> {
    let parsed = rtsp_types::Url::parse(url.trim()).ok()?;
    let user = percent_decode(parsed.username());
    if user.is_empty() {
        return None;
    }
    Some((
        user,
        parsed.password().map(percent_decode).unwrap_or_default(),
    ))
}

/// The URL with any userinfo removed (for URLs a camera sends back, e.g. `Content-Base`);
/// falls back to masking when it does not parse.
pub(crate) fn strip_userinfo(url: &str) -> String {
    match rtsp_types::Url::parse(url) {
        Ok(mut u) if u.has_host() => {
            // Ignoring the results: clearing userinfo only fails without a host.
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => redact_url(url),
    }
}

/// Masks credentials in an RTSP (or any `scheme://`) URL:
/// `rtsp://user:pass@host/x` -> `rtsp://***:***@host/x`. Also masks password-like query
/// parameters (`?password=...`), which some cameras use instead of userinfo.
///
/// Works on strings that do not parse as URLs too, and prefers masking too much over leaking:
/// an unencoded `/` inside a password still gets masked.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return redact_query(url);
    };
    let (head, rest) = url.split_at(scheme_end);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = match rest[..authority_end].rfind('@') {
        Some(at) => Some(at),
        // `user:pa/ss@host`: the first `/` was inside the password. A port is all digits.
        None => {
            let authority = &rest[..authority_end];
            let looks_like_password = authority.split_once(':').is_some_and(|(_, after)| {
                after.is_empty() || !after.chars().all(|c| c.is_ascii_digit())
            });
            if looks_like_password {
                rest.rfind('@')
            } else {
                None
            }
        }
    };
    match at {
        Some(at) => {
            let userinfo = &rest[..at];
            let mask = if userinfo.contains(':') {
                "***:***"
            } else {
                "***"
            };
            format!("{head}{mask}{}", redact_query(&rest[at..]))
        }
        None => format!("{head}{}", redact_query(rest)),
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

/// Decodes `%XX` escapes (userinfo is kept percent-encoded by the URL parser).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
    }

    #[test]
    fn redact_keeps_urls_without_credentials() {
        for u in [
            "rtsp://127.0.0.1:8554/cam",
            "rtsp://host/a@b",
            "rtsp://[::1]:554/x",
            "not a url",
            "",
        ] {
            assert_eq!(redact_url(u), u);
        }
    }

    #[test]
    fn redact_masks_unencoded_slash_in_password_and_query_secrets() {
        let r = redact_url("rtsp://admin:pa/ss@host/x");
        assert_eq!(r, "rtsp://***:***@host/x");
        assert_eq!(
            redact_url("rtsp://host/live?user=admin&password=hunter2&ch=1"),
            "rtsp://host/live?user=admin&password=***&ch=1"
        );
    }

    #[test]
    fn parse_takes_credentials_from_url_or_options() {
        let t = Target::parse("rtsp://ad%20min:p%40ss@cam.local/live", None, None).unwrap();
        assert_eq!(t.host, "cam.local");
        assert_eq!(t.port, 554);
        assert_eq!(t.username.as_deref(), Some("ad min"));
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        assert_eq!(t.plain, "rtsp://cam.local/live");
        assert_eq!(t.redacted, "rtsp://***:***@cam.local/live");

        let t = Target::parse(
            "rtsp://a:b@[::1]:8554/x",
            Some("u".into()),
            Some("p".into()),
        )
        .unwrap();
        assert_eq!(t.addr(), "[::1]:8554");
        assert_eq!(t.username.as_deref(), Some("u"));
        assert_eq!(t.password.as_deref(), Some("p"));
    }

    #[test]
    fn parse_rejects_other_schemes_without_leaking() {
        let err = Target::parse("http://user:hunter2@host/", None, None)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("http"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(Target::parse("rtsp://", None, None).is_err());
    }
}
