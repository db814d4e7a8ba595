//! One RTSP/1.0 connection: sends OPTIONS and DESCRIBE with rtsp-types, reads responses with a
//! per-step deadline, and answers 401 challenges through [`Authenticator`].

use std::time::Duration;

use rtsp_types::{headers, Message, Method, ParseError, Request, Response, StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::auth::{parse_challenges, Authenticator};
use super::error::printable;
use super::target::Target;
use super::ProbeError;
use crate::config::rtsp_url::strip_userinfo;

/// Larger than any sane SDP; a peer streaming endless bytes must not grow memory forever.
const MAX_RESPONSE: usize = 256 * 1024;
/// Real cameras send well under 4 KiB of headers.
const MAX_HEADER: usize = 64 * 1024;
const USER_AGENT: &str = concat!("vidgest/", env!("CARGO_PKG_VERSION"), " probe");

#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    Options,
    Describe,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Options => "OPTIONS",
            Step::Describe => "DESCRIBE",
        }
    }
    fn method(self) -> Method {
        match self {
            Step::Options => Method::Options,
            Step::Describe => Method::Describe,
        }
    }
}

/// The parts of a response the probe uses.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    pub server: Option<String>,
    pub public: Vec<String>,
    /// Without userinfo: some cameras echo the credentials here.
    pub content_base: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

pub(crate) struct Connection<'a> {
    target: &'a Target,
    stream: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
    timeout: Duration,
    auth: Option<Authenticator>,
}

impl<'a> Connection<'a> {
    pub async fn connect(target: &'a Target, timeout: Duration) -> Result<Self, ProbeError> {
        Ok(Connection {
            target,
            stream: open(target, timeout).await?,
            buf: Vec::new(),
            cseq: 0,
            timeout,
            auth: None,
        })
    }

    /// The scheme that got us in, once a challenge was answered.
    pub fn auth_scheme(&self) -> Option<&'static str> {
        self.auth.as_ref().map(Authenticator::scheme)
    }

    /// Sends `step`, authenticating on 401. OPTIONS failures other than 401 are tolerated (some
    /// cameras reject OPTIONS yet serve DESCRIBE); DESCRIBE must succeed.
    pub async fn request(&mut self, step: Step) -> Result<Reply, ProbeError> {
        let mut answered_challenge = false;
        loop {
            let resp = self.exchange(step).await?;
            let status = resp.status();
            if status == StatusCode::Unauthorized {
                if answered_challenge {
                    let scheme = self.auth_scheme().unwrap_or("");
                    return Err(self.unauthorized(true, format!("{scheme} authentication")));
                }
                self.answer_challenge(&resp)?;
                answered_challenge = true;
                // Some cameras close after a 401 and expect the answer on a new connection.
                let closes = resp
                    .header(&headers::CONNECTION)
                    .is_some_and(|v| v.as_str().trim().eq_ignore_ascii_case("close"));
                if closes {
                    self.stream = open(self.target, self.timeout).await?;
                    self.buf.clear();
                }
                continue;
            }
            let code = u16::from(status);
            if !(200..300).contains(&code) {
                if let Step::Options = step {
                    tracing::debug!(code, "OPTIONS not accepted, trying DESCRIBE anyway");
                    return Ok(Reply::default());
                }
                let mut reason = resp.reason_phrase().to_owned();
                if let Some(loc) = resp.header(&headers::LOCATION) {
                    reason.push_str(&format!(" (redirects to {})", strip_userinfo(loc.as_str())));
                }
                return Err(ProbeError::Status {
                    step: step.name(),
                    url: self.target.redacted.clone(),
                    code,
                    reason,
                });
            }
            let text = |name: &headers::HeaderName| {
                resp.header(name)
                    .map(|v| v.as_str().trim().to_owned())
                    .filter(|v| !v.is_empty())
            };
            return Ok(Reply {
                server: text(&headers::SERVER),
                public: text(&headers::PUBLIC)
                    .map(|p| {
                        p.split(',')
                            .map(|m| m.trim().to_owned())
                            .filter(|m| !m.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
                content_base: text(&headers::CONTENT_BASE)
                    .or_else(|| text(&headers::CONTENT_LOCATION))
                    .map(|u| strip_userinfo(&u)),
                content_type: text(&headers::CONTENT_TYPE),
                body: resp.body().clone(),
            });
        }
    }

    fn answer_challenge(&mut self, resp: &Response<Vec<u8>>) -> Result<(), ProbeError> {
        let challenges = resp
            .header(&headers::WWW_AUTHENTICATE)
            .map(|v| parse_challenges(v.as_str()))
            .unwrap_or_default();
        let Some(username) = self.target.username.as_deref() else {
            let offered: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
            let detail = if offered.is_empty() {
                String::new()
            } else {
                format!(
                    "the camera asks for {} authentication",
                    offered.join(" or ")
                )
            };
            return Err(self.unauthorized(false, detail));
        };
        let password = self.target.password.as_deref().unwrap_or("");
        let auth = Authenticator::choose(&challenges, username, password)
            .map_err(|e| self.unauthorized(true, e.to_string()))?;
        self.auth = Some(auth);
        Ok(())
    }

    fn unauthorized(&self, credentials_given: bool, detail: String) -> ProbeError {
        ProbeError::Unauthorized {
            url: self.target.redacted.clone(),
            credentials_given,
            detail,
        }
    }

    /// Writes one request and reads its response within one `timeout`.
    async fn exchange(&mut self, step: Step) -> Result<Response<Vec<u8>>, ProbeError> {
        let deadline = Instant::now() + self.timeout;
        self.cseq += 1;
        let uri = self.target.plain.as_str();
        let mut builder = Request::builder(step.method(), Version::V1_0)
            .request_uri(
                rtsp_types::Url::parse(uri).map_err(|e| ProbeError::InvalidUrl {
                    url: self.target.redacted.clone(),
                    reason: e.to_string(),
                })?,
            )
            .header(headers::CSEQ, self.cseq.to_string())
            .header(headers::USER_AGENT, USER_AGENT);
        if let Step::Describe = step {
            builder = builder.header(headers::ACCEPT, "application/sdp");
        }
        if let Some(auth) = self.auth.as_mut() {
            builder = builder.header(headers::AUTHORIZATION, auth.authorization(step.name(), uri));
        }
        let mut bytes = Vec::new();
        builder
            .empty()
            .write(&mut bytes)
            .map_err(|e| self.io_error(step, std::io::Error::other(format!("{e:?}"))))?;

        match timeout_at(deadline, self.stream.write_all(&bytes)).await {
            Err(_) => return Err(self.timeout_error(step)),
            Ok(Err(e)) => return Err(self.io_error(step, e)),
            Ok(Ok(())) => {}
        }
        self.read_response(step, deadline).await
    }

    async fn read_response(
        &mut self,
        step: Step,
        deadline: Instant,
    ) -> Result<Response<Vec<u8>>, ProbeError> {
        loop {
            // Stray line breaks between messages are harmless (some servers send them).
            let blank = self
                .buf
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            self.buf.drain(..blank);
            if !self.buf.is_empty() {
                if !looks_like_rtsp(&self.buf) {
                    return Err(self.bad_response(step));
                }
                match Message::<Vec<u8>>::parse(&self.buf) {
                    Ok((msg, consumed)) => {
                        self.buf.drain(..consumed);
                        match msg {
                            Message::Response(r) => return Ok(r),
                            // Interleaved data or a server request: not ours to answer here.
                            _ => continue,
                        }
                    }
                    Err(ParseError::Incomplete(_)) => self.check_size(step)?,
                    Err(_) => return Err(self.bad_response(step)),
                }
            }
            let read = timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await;
            match read {
                Err(_) => return Err(self.timeout_error(step)),
                Ok(Err(e)) => return Err(self.io_error(step, e)),
                Ok(Ok(0)) => return Err(self.bad_response(step)),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// An incomplete response may grow only so far: headers to MAX_HEADER, all to MAX_RESPONSE.
    fn check_size(&self, step: Step) -> Result<(), ProbeError> {
        let header_done = header_end(&self.buf).is_some();
        if !header_done && self.buf.len() > MAX_HEADER {
            return Err(ProbeError::HeaderTooLarge {
                step: step.name(),
                addr: self.target.addr(),
                limit_kib: MAX_HEADER / 1024,
            });
        }
        if self.buf.len() >= MAX_RESPONSE {
            return Err(ProbeError::ResponseTooLarge {
                step: step.name(),
                addr: self.target.addr(),
                limit_kib: MAX_RESPONSE / 1024,
            });
        }
        Ok(())
    }

    fn bad_response(&self, step: Step) -> ProbeError {
        ProbeError::BadResponse {
            step: step.name(),
            addr: self.target.addr(),
            received: printable(&self.buf),
        }
    }

    fn timeout_error(&self, step: Step) -> ProbeError {
        ProbeError::Timeout {
            step: step.name(),
            addr: self.target.addr(),
            after: self.timeout,
        }
    }

    fn io_error(&self, step: Step, source: std::io::Error) -> ProbeError {
        ProbeError::Io {
            step: step.name(),
            addr: self.target.addr(),
            source,
        }
    }
}

async fn open(target: &Target, timeout: Duration) -> Result<TcpStream, ProbeError> {
    let addr = target.addr();
    let connecting = TcpStream::connect((target.host.as_str(), target.port));
    let stream = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => {
            return Err(ProbeError::Timeout {
                step: "connect",
                addr,
                after: timeout,
            })
        }
        Ok(Err(source)) => return Err(ProbeError::Connect { addr, source }),
        Ok(Ok(s)) => s,
    };
    // Ignoring the result: without TCP_NODELAY our small requests are only delayed a little.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Where the header block ends (the blank line), if it has arrived.
fn header_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    crlf.into_iter().chain(lf).min()
}

/// A response starts with `RTSP/`; `$` starts interleaved RTP. Anything else is not RTSP, and
/// saying so at once beats waiting for a timeout on a peer that speaks something else.
fn looks_like_rtsp(buf: &[u8]) -> bool {
    const PREFIX: &[u8] = b"RTSP/";
    let n = buf.len().min(PREFIX.len());
    buf[0] == b'$' || buf[..n].eq_ignore_ascii_case(&PREFIX[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtsp_prefix_check() {
        assert!(looks_like_rtsp(b"RTS"));
        assert!(looks_like_rtsp(b"RTSP/1.0 200 OK\r\n"));
        assert!(looks_like_rtsp(b"$\x00\x01"));
        assert!(!looks_like_rtsp(b"HTTP/1.1 400 Bad Request"));
        assert!(!looks_like_rtsp(b"\x00garbage"));
    }
}
