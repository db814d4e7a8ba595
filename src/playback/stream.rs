//! A clip part as a streaming HTTP body: written on a blocking thread into a bounded channel
//! that the response body drains (shared by the REST clip.mp4 and the KVS GetClip routes).

use super::{write_clip_part, ClipPart};
use crate::store::StoreReader;
use bytes::Bytes;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Bytes gathered before a clip chunk goes to the client.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the reading thread and the connection (bounds clip memory).
const CHUNKS_IN_FLIGHT: usize = 4;

type Chunk = Result<Bytes, std::io::Error>;

/// The part as a fragmented MP4 body, written on a blocking thread as the client reads it.
/// Must be called inside a Tokio runtime.
pub fn clip_body(reader: StoreReader, part: ClipPart) -> axum::body::Body {
    let what = format!("clip of `{}`", part.fragments[0].stream);
    blocking_body(what, move |w| {
        write_clip_part(&reader, &part, w, |_| {}).map(|_| ())
    })
}

/// Runs `write` on a blocking thread into a bounded channel that the returned body drains (the
/// client's pace bounds the memory). A closed channel (the client went away) fails the next
/// write, which ends the work. An error mid-stream reaches the body and aborts the response.
/// Must be called inside a Tokio runtime.
pub fn blocking_body<E: std::fmt::Display>(
    what: String,
    write: impl FnOnce(&mut ChannelWriter) -> Result<(), E> + Send + 'static,
) -> axum::body::Body {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = write(&mut w)
            .map_err(|e| e.to_string())
            .and_then(|()| std::io::Write::flush(&mut w).map_err(|e| e.to_string()));
        let Err(e) = result else { return };
        if !tx.is_closed() {
            tracing::warn!("{what}: {e}");
            let _ = tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    axum::body::Body::new(ChannelBody(rx))
}

/// Buffers writes into chunks for the response body; `flush` sends what is buffered.
pub struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    /// True once the response body is gone (the client disconnected).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A response body fed by a channel; dropping it (the connection closed) closes the channel.
struct ChannelBody(mpsc::Receiver<Chunk>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|c| c.map(|c| c.map(hyper::body::Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// What a live GetMedia relies on while it waits for new fragments: dropping the body (the
    /// client went away) shows in `is_closed`, so the writing thread ends.
    #[tokio::test]
    async fn a_dropped_body_ends_a_waiting_writer() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let body = blocking_body("test".into(), move |w| {
            w.write_all(b"first")?;
            w.flush()?;
            while !w.is_closed() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            done_tx.send(()).unwrap();
            Ok::<(), std::io::Error>(())
        });
        use http_body_util::BodyExt;
        let mut body = body;
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"first");
        drop(body);
        tokio::task::spawn_blocking(move || {
            done_rx.recv_timeout(std::time::Duration::from_secs(10))
        })
        .await
        .unwrap()
        .expect("the writer saw the closed body and returned");
    }

    #[test]
    fn a_closed_body_stops_the_clip_writer() {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let mut w = ChannelWriter {
            tx,
            buf: Vec::new(),
        };
        w.write_all(b"ftyp").unwrap();
        w.flush().unwrap();
        let body = ChannelBody(rx);
        drop(body); // the client went away
        let e = w.write_all(&vec![0; CHUNK]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    }
}
