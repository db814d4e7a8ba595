//! RTSP authentication: parsing `WWW-Authenticate` challenges and answering them with Basic or
//! Digest (RFC 2617 / RFC 7616 with MD5; `qop=auth`, `auth-int` and the older no-qop form).

use base64::Engine as _;
use md5::{Digest as _, Md5};

/// One challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Challenge {
    /// Lower case: `basic`, `digest`, ...
    pub scheme: String,
    /// Parameter names lower case, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses all challenges of a `WWW-Authenticate` value. Several headers arrive joined with `, `
/// (that is how rtsp-types merges them), so a bare token not followed by `=` starts a new challenge.
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let s = header.as_bytes();
    let mut out: Vec<Challenge> = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t') {
            *i += 1;
        }
    };
    while i < s.len() {
        skip_ws(&mut i);
        if i < s.len() && s[i] == b',' {
            i += 1;
            continue;
        }
        let start = i;
        while i < s.len() && !matches!(s[i], b' ' | b'\t' | b',' | b'=') {
            i += 1;
        }
        let token = &header[start..i];
        if token.is_empty() {
            // Stray `=` or similar: skip it rather than loop forever.
            i += 1;
            continue;
        }
        let mut j = i;
        skip_ws(&mut j);
        if j < s.len() && s[j] == b'=' {
            // `name=value` belongs to the current challenge.
            j += 1;
            skip_ws(&mut j);
            let value = if j < s.len() && s[j] == b'"' {
                j += 1;
                let mut v = Vec::new();
                while j < s.len() && s[j] != b'"' {
                    if s[j] == b'\\' && j + 1 < s.len() {
                        j += 1;
                    }
                    v.push(s[j]);
                    j += 1;
                }
                j += 1; // closing quote
                String::from_utf8_lossy(&v).into_owned()
            } else {
                let vs = j;
                while j < s.len() && s[j] != b',' {
                    j += 1;
                }
                header[vs..j].trim().to_owned()
            };
            if let Some(c) = out.last_mut() {
                c.params.push((token.to_ascii_lowercase(), value));
            }
            i = j;
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: Vec::new(),
            });
        }
    }
    out
}

/// Answers challenges for one connection; Digest keeps its nonce count across requests.
pub(crate) enum Authenticator {
    Basic {
        header: String,
    },
    Digest {
        username: String,
        password: String,
        realm: String,
        nonce: String,
        opaque: Option<String>,
        /// The `algorithm` token to echo back, if the server sent one.
        algorithm: Option<String>,
        sess: bool,
        qop: Option<Qop>,
        nc: u32,
        cnonce: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Qop {
    Auth,
    AuthInt,
}

/// Why none of the camera's WWW-Authenticate challenges can be answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UnusableChallenge {
    #[error("the camera sent no usable WWW-Authenticate challenge")]
    None,
    #[error("the camera offers only {} authentication, which probe does not support (Basic and Digest-MD5 are)", offered.join(", "))]
    Unsupported { offered: Vec<String> },
}

impl Authenticator {
    /// Picks Digest when offered (it does not send the password), else Basic.
    /// On failure returns why no offered scheme is usable.
    pub fn choose(
        challenges: &[Challenge],
        username: &str,
        password: &str,
    ) -> Result<Self, UnusableChallenge> {
        let digest = challenges.iter().find(|c| {
            c.scheme == "digest"
                && c.param("nonce").is_some()
                && matches!(
                    c.param("algorithm").map(str::to_ascii_lowercase).as_deref(),
                    None | Some("md5") | Some("md5-sess")
                )
        });
        if let Some(c) = digest {
            let qops = c.param("qop").unwrap_or("").to_ascii_lowercase();
            let qops: Vec<&str> = qops.split(',').map(str::trim).collect();
            let qop = if qops.contains(&"auth") {
                Some(Qop::Auth)
            } else if qops.contains(&"auth-int") {
                Some(Qop::AuthInt)
            } else {
                None
            };
            return Ok(Authenticator::Digest {
                username: username.to_owned(),
                password: password.to_owned(),
                realm: c.param("realm").unwrap_or("").to_owned(),
                nonce: c.param("nonce").unwrap_or("").to_owned(),
                opaque: c.param("opaque").map(str::to_owned),
                algorithm: c.param("algorithm").map(str::to_owned),
                sess: c
                    .param("algorithm")
                    .is_some_and(|a| a.eq_ignore_ascii_case("md5-sess")),
                qop,
                nc: 0,
                cnonce: format!("{:016x}", rand::random::<u64>()),
            });
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            return Ok(Authenticator::Basic {
                header: format!("Basic {token}"),
            });
        }
        let offered: Vec<String> = challenges
            .iter()
            .map(|c| match c.param("algorithm") {
                Some(a) => format!("{} ({a})", c.scheme),
                None => c.scheme.clone(),
            })
            .collect();
        Err(if offered.is_empty() {
            UnusableChallenge::None
        } else {
            UnusableChallenge::Unsupported { offered }
        })
    }

    pub fn scheme(&self) -> &'static str {
        match self {
            Authenticator::Basic { .. } => "basic",
            Authenticator::Digest { .. } => "digest",
        }
    }

    /// The `Authorization` header value for one request.
    pub fn authorization(&mut self, method: &str, uri: &str) -> String {
        match self {
            Authenticator::Basic { header } => header.clone(),
            Authenticator::Digest {
                username,
                password,
                realm,
                nonce,
                opaque,
                algorithm,
                sess,
                qop,
                nc,
                cnonce,
            } => {
                *nc += 1;
                let nc_hex = format!("{:08x}", *nc);
                let mut ha1 = md5_hex(&format!("{username}:{realm}:{password}"));
                if *sess {
                    ha1 = md5_hex(&format!("{ha1}:{nonce}:{cnonce}"));
                }
                let qop_args = qop.map(|q| (q, nc_hex.as_str(), cnonce.as_str()));
                let response = digest_response(&ha1, nonce, method, uri, qop_args);
                let mut h = format!(
                    "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\"",
                    quote(username),
                    quote(realm),
                    quote(nonce),
                    quote(uri),
                    response
                );
                if let Some(a) = algorithm {
                    h.push_str(&format!(", algorithm={a}"));
                }
                if let Some(o) = opaque {
                    h.push_str(&format!(", opaque=\"{}\"", quote(o)));
                }
                if let Some(q) = qop {
                    h.push_str(&format!(
                        ", qop={}, nc={nc_hex}, cnonce=\"{cnonce}\"",
                        q.token()
                    ));
                }
                h
            }
        }
    }
}

impl Qop {
    fn token(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }
}

/// RFC 2617 section 3.2.2.1 `request-digest` from HA1. `qop` carries (qop, nc, cnonce).
/// Requests probe sends have no body, so `auth-int` hashes the empty entity.
pub(crate) fn digest_response(
    ha1: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    qop: Option<(Qop, &str, &str)>,
) -> String {
    match qop {
        None => {
            let ha2 = md5_hex(&format!("{method}:{uri}"));
            md5_hex(&format!("{ha1}:{nonce}:{ha2}"))
        }
        Some((q, nc, cnonce)) => {
            let ha2 = match q {
                Qop::Auth => md5_hex(&format!("{method}:{uri}")),
                Qop::AuthInt => md5_hex(&format!("{method}:{uri}:{}", md5_hex(""))),
            };
            md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{}:{ha2}", q.token()))
        }
    }
}

pub(crate) fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 2617 section 3.5.
    #[test]
    fn rfc2617_digest_vector() {
        let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
        let r = digest_response(
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "GET",
            "/dir/index.html",
            Some((Qop::Auth, "00000001", "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn authenticator_builds_rfc2617_header() {
        let ch = parse_challenges(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        );
        let mut a = Authenticator::choose(&ch, "Mufasa", "Circle Of Life").unwrap();
        if let Authenticator::Digest { cnonce, .. } = &mut a {
            *cnonce = "0a4f113b".into();
        }
        let h = a.authorization("GET", "/dir/index.html");
        assert!(
            h.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{h}"
        );
        assert!(h.contains("qop=auth, nc=00000001"), "{h}");
        assert!(
            h.contains(r#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#),
            "{h}"
        );
        assert!(!h.contains("Circle Of Life"));
        // The nonce count goes up per request on the same nonce.
        assert!(a.authorization("GET", "/x").contains("nc=00000002"));
    }

    #[test]
    fn digest_without_qop() {
        // response = MD5(HA1:nonce:HA2), RFC 2069 style as gst-rtsp-server and many cameras use.
        let ha1 = md5_hex("admin:GStreamer RTSP Server:pw");
        let ha2 = md5_hex("DESCRIBE:rtsp://127.0.0.1:8554/cam");
        let expected = md5_hex(&format!("{ha1}:abc:{ha2}"));
        assert_eq!(
            digest_response(&ha1, "abc", "DESCRIBE", "rtsp://127.0.0.1:8554/cam", None),
            expected
        );
        let ch = parse_challenges(r#"Digest realm="GStreamer RTSP Server", nonce="abc""#);
        let mut a = Authenticator::choose(&ch, "admin", "pw").unwrap();
        let h = a.authorization("DESCRIBE", "rtsp://127.0.0.1:8554/cam");
        assert!(h.contains(&format!("response=\"{expected}\"")), "{h}");
        assert!(!h.contains("qop"), "{h}");
    }

    #[test]
    fn parses_joined_challenges_and_prefers_digest() {
        let ch = parse_challenges(
            r#"Basic realm="cam, inc", Digest realm="cam", nonce="n1", algorithm=MD5, stale=FALSE"#,
        );
        assert_eq!(ch.len(), 2);
        assert_eq!(ch[0].scheme, "basic");
        assert_eq!(ch[0].param("realm"), Some("cam, inc"));
        assert_eq!(ch[1].param("nonce"), Some("n1"));
        assert_eq!(ch[1].param("algorithm"), Some("MD5"));
        assert_eq!(ch[1].param("stale"), Some("FALSE"));
        let a = Authenticator::choose(&ch, "u", "p").unwrap();
        assert_eq!(a.scheme(), "digest");
    }

    #[test]
    fn basic_and_unsupported() {
        let ch = parse_challenges(r#"Basic realm="x""#);
        let mut a = Authenticator::choose(&ch, "Aladdin", "open sesame").unwrap();
        assert_eq!(
            a.authorization("DESCRIBE", "rtsp://h/"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        let ch = parse_challenges(r#"Digest realm="x", nonce="n", algorithm=SHA-256"#);
        let err = Authenticator::choose(&ch, "u", "p").err().unwrap();
        assert!(
            matches!(&err, UnusableChallenge::Unsupported { offered } if offered == &["digest (SHA-256)"]),
            "{err:?}"
        );
        assert!(err.to_string().contains("SHA-256"), "{err}");
        assert!(matches!(
            Authenticator::choose(&[], "u", "p").err().unwrap(),
            UnusableChallenge::None
        ));
    }
}
