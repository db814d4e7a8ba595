//! Probe failures. Each message names the camera (redacted URL or `host:port`), the step, and what
//! to try next; none ever contains a password.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid camera URL `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error(
        "cannot connect to {addr}: {source} (is the camera on, reachable from here, and is the RTSP port right? the default is 554)"
    )]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "timed out after {after:?} waiting for {step} from {addr} (the camera accepted the connection but did not answer; check the port is RTSP, or raise --timeout)"
    )]
    Timeout {
        step: &'static str,
        addr: String,
        after: Duration,
    },

    #[error("{url} requires credentials: {}", unauthorized_hint(*credentials_given, detail))]
    Unauthorized {
        url: String,
        /// Whether we had credentials to offer (they were then rejected).
        credentials_given: bool,
        detail: String,
    },

    #[error("{addr} did not answer {step} with RTSP (is this an RTSP port?); received {received}")]
    BadResponse {
        step: &'static str,
        addr: String,
        /// What came back, truncated and with non-printable bytes escaped.
        received: String,
    },

    #[error(
        "{addr} sent an RTSP response header too large (over {limit_kib} KiB) to {step}; is this a camera?"
    )]
    HeaderTooLarge {
        step: &'static str,
        addr: String,
        limit_kib: usize,
    },

    #[error("{addr} sent an RTSP response too large (over {limit_kib} KiB) to {step}")]
    ResponseTooLarge {
        step: &'static str,
        addr: String,
        limit_kib: usize,
    },

    #[error("timeout {0:?} is out of range: more than 0s and at most 1h")]
    TimeoutOutOfRange(Duration),

    #[error("connection to {addr} failed during {step}: {source}")]
    Io {
        step: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{step} {url} failed: {code} {reason}{}", status_hint(*code))]
    Status {
        step: &'static str,
        url: String,
        code: u16,
        reason: String,
    },

    #[error(
        "{url} offers no video track (found: {}); vidgest records video only",
        if media.is_empty() { "nothing".to_owned() } else { media.join(", ") }
    )]
    NoVideo { url: String, media: Vec<String> },

    #[error("cannot read the camera's stream description (SDP): {0}")]
    Sdp(String),
}

fn unauthorized_hint(credentials_given: bool, detail: &str) -> String {
    let what = if credentials_given {
        "the user name or password was rejected; check them (the password may need percent-encoding in the URL, e.g. @ as %40), or pass --username/--password"
    } else {
        "none were given; put them in the URL (rtsp://USER:PASSWORD@host/path) or pass --username/--password"
    };
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what} ({detail})")
    }
}

fn status_hint(code: u16) -> &'static str {
    match code {
        404 => " (wrong path? check the camera's documentation for its RTSP stream path)",
        403 => " (the user lacks permission for this stream)",
        454 | 455 | 459 => {
            " (the camera refused the request; try rebooting it or another stream path)"
        }
        503 => " (the camera is busy or has too many clients; try again later)",
        _ => "",
    }
}

/// Printable, truncated rendering of bytes a peer sent, for `BadResponse`.
pub(crate) fn printable(bytes: &[u8]) -> String {
    const MAX: usize = 120;
    if bytes.is_empty() {
        return "nothing (the connection was closed)".to_owned();
    }
    let mut s = String::from("\"");
    for &b in bytes.iter().take(MAX) {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    if bytes.len() > MAX {
        s.push_str(&format!(" ... ({} bytes)", bytes.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_and_truncates() {
        assert_eq!(printable(b"ab\r\n\x00\xff\""), r#""ab\r\n\x00\xff\"""#);
        let long = vec![b'x'; 500];
        let p = printable(&long);
        assert!(p.ends_with("... (500 bytes)"), "{p}");
        assert!(p.len() < 160);
    }

    #[test]
    fn unauthorized_says_what_to_do() {
        let e = ProbeError::Unauthorized {
            url: "rtsp://h/x".into(),
            credentials_given: false,
            detail: String::new(),
        };
        assert!(e.to_string().contains("none were given"), "{e}");
        let e = ProbeError::Unauthorized {
            url: "rtsp://***:***@h/x".into(),
            credentials_given: true,
            detail: "digest".into(),
        };
        assert!(e.to_string().contains("rejected"), "{e}");
    }
}
