//! The probed URL: where to connect, which credentials to use, and how to show it safely.

use super::ProbeError;
use crate::config::rtsp_url::{self, percent_decode, redact_url};

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
        // The config's parser: probe and `check` agree on which URLs are usable.
        let mut parsed = rtsp_url::parse(url).map_err(|e| invalid(&e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
