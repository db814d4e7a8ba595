//! Reading request bodies with a per-route size limit and a time limit, so that the route (not a
//! blanket layer) chooses both the limit and the shape of the "too large" answer.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;
use std::time::Duration;

/// An over-limit body is read and thrown away up to this many bytes before answering: a client
/// that is still sending when the server closes gets a connection reset instead of the error
/// answer (HTTP/1.1 clients such as Python's http.client send the whole body before reading).
/// Beyond it the connection is closed after the answer.
const DRAIN_MAX: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("request body not received within {0:?}")]
    Timeout(Duration),
    #[error("cannot read the request body: {0}")]
    Read(#[source] axum::Error),
}

/// The whole body, at most `limit` bytes, received within `timeout`.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let expects_continue = headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let work = async move {
        if let Some(n) = declared {
            if n > limit as u64 {
                // A client waiting for "100 Continue" has not sent the body: answer right away.
                if !expects_continue && n <= limit as u64 + DRAIN_MAX {
                    drain(body).await?;
                }
                return Err(BodyError::TooLarge { limit });
            }
        }
        let mut body = body;
        let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(BodyError::Read)?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if buf.len() + data.len() > limit {
                drain(body).await?;
                return Err(BodyError::TooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
        Ok(Bytes::from(buf))
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(BodyError::Timeout(timeout)))
}

/// Reads and discards up to DRAIN_MAX bytes.
async fn drain(mut body: Body) -> Result<(), BodyError> {
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        if let Some(data) = frame.data_ref() {
            seen += data.len() as u64;
            if seen > DRAIN_MAX {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[tokio::test]
    async fn limits_declared_and_streamed_bodies() {
        let t = Duration::from_secs(5);
        let ok = read_limited(&headers(&[]), Body::from("12345"), 5, t).await;
        assert_eq!(ok.unwrap(), Bytes::from("12345"));
        // no Content-Length (chunked): counted while reading
        let e = read_limited(&headers(&[]), Body::from("123456"), 5, t).await;
        assert!(matches!(e, Err(BodyError::TooLarge { limit: 5 })), "{e:?}");
        // declared too large
        let e = read_limited(
            &headers(&[("content-length", "6")]),
            Body::from("123456"),
            5,
            t,
        )
        .await;
        assert!(matches!(e, Err(BodyError::TooLarge { limit: 5 })), "{e:?}");
        let e = read_limited(
            &headers(&[
                ("content-length", "99999999999"),
                ("expect", "100-continue"),
            ]),
            Body::empty(),
            5,
            t,
        )
        .await;
        assert!(matches!(e, Err(BodyError::TooLarge { limit: 5 })), "{e:?}");
    }

    /// A body whose next frame never comes (a client that stopped sending).
    struct Stalled;
    impl axum::body::HttpBody for Stalled {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_body_that_never_ends_times_out() {
        let t = Duration::from_millis(50);
        let e = read_limited(&headers(&[]), Body::new(Stalled), 100, t).await;
        assert!(matches!(e, Err(BodyError::Timeout(_))), "{e:?}");
    }
}
