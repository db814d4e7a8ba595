//! Streaming HTTP bodies written on a blocking thread into a bounded channel that the response
//! body drains: clips (REST clip.mp4, KVS GetClip) and every other media answer built from the
//! segment files. Memory per response is bounded by the channel, whatever the client's speed; a
//! client that goes away closes the channel, which fails the writer's next write and ends the work.

use super::{write_clip_part, write_clip_range, ByteRange, ClipPart};
use crate::store::StoreReader;
use bytes::Bytes;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Bytes gathered before a chunk goes to the client.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the writing thread and the connection (bounds memory per response).
const CHUNKS_IN_FLIGHT: usize = 4;

type Chunk = Result<Bytes, std::io::Error>;

/// Streamed responses being written right now (health shows it: a writer that never ends after
/// its client left would keep it above zero) and bytes handed to connections since start.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static BYTES_SENT: AtomicU64 = AtomicU64::new(0);

/// Streamed media responses whose writer is still running.
pub fn active_streams() -> usize {
    ACTIVE.load(Ordering::Relaxed)
}

/// Bytes of streamed media responses handed to connections since the daemon started.
pub fn bytes_streamed() -> u64 {
    BYTES_SENT.load(Ordering::Relaxed)
}

/// Holds one count of a gauge (running writers, live viewers) for as long as it lives.
pub(super) struct Counted(&'static AtomicUsize);

impl Counted {
    pub(super) fn new(gauge: &'static AtomicUsize) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Counted(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A body written by `work` on a blocking thread as the client reads it. An error from `work`
/// aborts the response (the client sees a truncated body) and is logged with `what`, unless the
/// client already left. Must be called inside a Tokio runtime.
pub fn streamed_body<E: std::fmt::Display>(
    what: String,
    work: impl FnOnce(&mut BodyWriter) -> Result<(), E> + Send + 'static,
) -> axum::body::Body {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let active = Counted::new(&ACTIVE);
    tokio::task::spawn_blocking(move || {
        let _active = active;
        let mut w = BodyWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = work(&mut w);
        let result = match result {
            Ok(()) => std::io::Write::flush(&mut w).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            if !tx.is_closed() {
                tracing::warn!("{what}: {e}");
                let _ = tx.blocking_send(Err(std::io::Error::other(e)));
            }
        }
    });
    axum::body::Body::new(ChannelBody(rx))
}

/// Bytes read from a file per blocking read by `file_body`.
const FILE_READ: usize = 64 * 1024;
/// Reads in flight between `file_body`'s reads and the connection.
const FILE_READS_IN_FLIGHT: usize = 2;

/// `len` bytes of `file` from `offset`, unchanged, read in FILE_READ pieces on blocking threads
/// as the client takes them: unlike `streamed_body`, no thread waits while the client is slow,
/// which suits many viewers of stored fragments (HLS / DASH segments). Memory per response is
/// FILE_READS_IN_FLIGHT reads. Must be called inside a Tokio runtime.
pub fn file_body(file: std::fs::File, offset: u64, len: u64) -> axum::body::Body {
    let (tx, rx) = mpsc::channel::<Chunk>(FILE_READS_IN_FLIGHT);
    let active = Counted::new(&ACTIVE);
    let file = std::sync::Arc::new(file);
    tokio::spawn(async move {
        let _active = active;
        let mut pos = 0u64;
        while pos < len {
            let n = (len - pos).min(FILE_READ as u64) as usize;
            let file = file.clone();
            let at = offset + pos;
            let read = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0; n];
                file.read_exact_at(&mut buf, at).map(|()| Bytes::from(buf))
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            let failed = read.is_err();
            if let Ok(b) = &read {
                BYTES_SENT.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
            // a closed channel: the client went away
            if tx.send(read).await.is_err() || failed {
                return;
            }
            pos += n as u64;
        }
    });
    axum::body::Body::new(ChannelBody(rx))
}

/// The part as a fragmented MP4 body, written on a blocking thread as the client reads it.
/// Must be called inside a Tokio runtime.
pub fn clip_body(reader: StoreReader, part: ClipPart) -> axum::body::Body {
    let what = format!("clip of `{}`", part.fragments[0].stream);
    streamed_body(what, move |w| {
        write_clip_part(&reader, &part, w, |_| {}).map(|_| ())
    })
}

/// Bytes `range` of the part's file (`range::write_clip_range`), streamed the same way.
pub fn clip_range_body(reader: StoreReader, part: ClipPart, range: ByteRange) -> axum::body::Body {
    let what = format!("clip of `{}`", part.fragments[0].stream);
    streamed_body(what, move |w| {
        write_clip_range(&reader, &part, w, range).map(|_| ())
    })
}

/// The writing end of a streamed body: buffers up to a chunk, then waits for room in the channel.
pub struct BodyWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
}

impl BodyWriter {
    /// True once the response body is gone (the client disconnected).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        BYTES_SENT.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl std::io::Write for BodyWriter {
    /// Takes at most what fills the current chunk, so chunks stay CHUNK bytes whatever the
    /// callers write at once (a whole fragment would otherwise become one chunk).
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
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
        let body = streamed_body("test".into(), move |w| {
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
        let mut w = BodyWriter {
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
