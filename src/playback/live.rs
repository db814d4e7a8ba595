//! The low-latency live feed (`GET /api/v1/cameras/{name}/live.mp4`, docs/http-api.md#live-feed):
//! the recorder publishes one CMAF chunk (moof+mdat, one sample) per access unit on a per-camera
//! broadcast as it receives it; each viewer gets the init segment, then chunks from the next key
//! frame. A viewer that falls behind the broadcast's ring lags: it skips to the next key frame
//! and is counted; recording never waits for a viewer.

use crate::lifecycle::Shutdown;
use crate::media::fmp4::{self, Sample};
use crate::media::{CodecConfig, MediaError};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

/// Chunks one camera's ring holds: about 4 s at 30 fps. A viewer further behind lags.
const RING: usize = 128;
/// Chunks queued between a viewer's task and its connection: beyond that the task stops
/// reading the ring, so a stalled client ends up lagging, never holding more memory.
const IN_FLIGHT: usize = 8;
/// Latency samples kept for the quantiles in /api/v1/health.
const LATENCY_SAMPLES: usize = 4096;

/// One codec configuration's init segment (ftyp+moov).
#[derive(Debug)]
pub struct LiveInit {
    pub id: String,
    pub bytes: Bytes,
}

/// One access unit as a CMAF chunk.
#[derive(Debug, Clone)]
pub struct LiveChunk {
    pub init: Arc<LiveInit>,
    /// moof+mdat with one sample.
    pub bytes: Bytes,
    pub is_key: bool,
    /// When the recorder received the access unit.
    pub arrived: Instant,
}

/// Per-camera broadcast of live chunks, shared by the recorder (publisher) and the API.
#[derive(Debug)]
pub struct LiveFeed {
    tx: broadcast::Sender<LiveChunk>,
    /// The init segment of the last published chunk (sent to a viewer as it connects).
    current_init: Mutex<Option<Arc<LiveInit>>>,
    /// mfhd sequence numbers: one running counter per camera.
    sequence: AtomicU64,
    /// Chunks viewers skipped because they fell behind the ring.
    pub lagged: AtomicU64,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(RING).0,
            current_init: Mutex::new(None),
            sequence: AtomicU64::new(1),
            lagged: AtomicU64::new(0),
        }
    }
}

/// Live viewers connected right now, all cameras (health: `playback.live_subscribers`).
static SUBSCRIBERS: AtomicUsize = AtomicUsize::new(0);
/// Recent arrival-to-body latencies in microseconds.
static LATENCIES: Mutex<VecDeque<u32>> = Mutex::new(VecDeque::new());

/// Live viewers connected right now, all cameras.
pub fn live_subscribers() -> usize {
    SUBSCRIBERS.load(Ordering::Relaxed)
}

/// Quantiles (p50, p95) in milliseconds and the count of the recent latencies from an access
/// unit's arrival in the recorder to its chunk being handed to the connection.
pub fn live_latency_ms() -> (f64, f64, usize) {
    let mut v: Vec<u32> = LATENCIES.lock().iter().copied().collect();
    if v.is_empty() {
        return (0.0, 0.0, 0);
    }
    v.sort_unstable();
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    (q(0.5), q(0.95), v.len())
}

fn record_latency(d: Duration) {
    let us = d.as_micros().min(u32::MAX as u128) as u32;
    let mut l = LATENCIES.lock();
    if l.len() >= LATENCY_SAMPLES {
        l.pop_front();
    }
    l.push_back(us);
}

impl LiveFeed {
    /// True when someone watches: the recorder builds chunks only then.
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publishes one access unit (`sample`, decode time `decode_time` in 90 kHz ticks) of
    /// configuration `config`. Call only when `has_subscribers`.
    pub fn publish(
        &self,
        config: &CodecConfig,
        decode_time: u64,
        sample: &Sample,
        arrived: Instant,
    ) -> Result<(), MediaError> {
        let init = {
            let mut cur = self.current_init.lock();
            let id = config.id();
            match cur.as_ref().filter(|i| i.id == id) {
                Some(i) => i.clone(),
                None => {
                    let i = Arc::new(LiveInit {
                        id,
                        bytes: fmp4::init_segment(config)?.into(),
                    });
                    *cur = Some(i.clone());
                    i
                }
            }
        };
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed) as u32;
        let bytes = fmp4::fragment(seq, decode_time, std::slice::from_ref(sample))?;
        // No receiver left: nothing to do.
        let _ = self.tx.send(LiveChunk {
            init,
            bytes: bytes.into(),
            is_key: sample.is_key,
            arrived,
        });
        Ok(())
    }

    /// A streaming body for one viewer: the current init segment, then chunks from the next
    /// key frame, a new init segment before the key frame of a new configuration. Ends when the
    /// client goes away or at `shutdown`. Must be called inside a Tokio runtime.
    pub fn body(self: &Arc<Self>, shutdown: Shutdown) -> axum::body::Body {
        let mut rx = self.tx.subscribe();
        let viewer = super::stream::Counted::new(&SUBSCRIBERS);
        let initial = self.current_init.lock().clone();
        let (out_tx, out_rx) = mpsc::channel::<Out>(IN_FLIGHT);
        let feed = self.clone();
        tokio::spawn(async move {
            let _viewer = viewer;
            let mut sent_init: Option<String> = None;
            if let Some(init) = initial {
                if out_tx.send((init.bytes.clone(), None)).await.is_err() {
                    return;
                }
                sent_init = Some(init.id.clone());
            }
            let mut want_key = true;
            loop {
                let chunk = tokio::select! {
                    r = rx.recv() => r,
                    _ = shutdown.triggered() => return,
                    _ = out_tx.closed() => return,
                };
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        feed.lagged.fetch_add(n, Ordering::Relaxed);
                        want_key = true;
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if want_key && !chunk.is_key {
                    continue;
                }
                want_key = false;
                if sent_init.as_deref() != Some(chunk.init.id.as_str()) {
                    if !chunk.is_key {
                        // a new configuration starts at its key frame
                        want_key = true;
                        continue;
                    }
                    if out_tx.send((chunk.init.bytes.clone(), None)).await.is_err() {
                        return;
                    }
                    sent_init = Some(chunk.init.id.clone());
                }
                if out_tx
                    .send((chunk.bytes, Some(chunk.arrived)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        axum::body::Body::new(LiveBody(out_rx))
    }
}

/// Bytes for the connection, with the arrival instant of a chunk's access unit.
type Out = (Bytes, Option<Instant>);

/// The response body: hands chunks to the connection and records each chunk's latency as it
/// does (hyper writes a frame to the socket as soon as it polls it).
struct LiveBody(mpsc::Receiver<Out>);

impl hyper::body::Body for LiveBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| {
            o.map(|(bytes, arrived)| {
                if let Some(at) = arrived {
                    record_latency(at.elapsed());
                }
                Ok(hyper::body::Frame::data(bytes))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn sample(data: &[u8], is_key: bool) -> Sample<'_> {
        Sample {
            data,
            duration: 3000,
            is_key,
            composition_offset: 0,
        }
    }

    #[tokio::test]
    async fn a_viewer_gets_init_then_chunks_from_a_key_frame_and_leaves() {
        let cfg = crate::media::test_support::small_h264_config();
        let feed = Arc::new(LiveFeed::default());
        assert!(!feed.has_subscribers());
        let mut body = feed.body(Shutdown::new());
        assert!(feed.has_subscribers());
        let data = [0u8, 0, 0, 2, 0x41, 1];
        let now = Instant::now();
        feed.publish(&cfg, 0, &sample(&data, false), now).unwrap();
        feed.publish(&cfg, 3000, &sample(&data, true), now).unwrap();
        feed.publish(&cfg, 6000, &sample(&data, false), now)
            .unwrap();
        let mut next = async || body.frame().await.unwrap().unwrap().into_data().unwrap();
        let init = next().await;
        assert_eq!(&init[4..8], b"ftyp");
        let first = next().await;
        assert_eq!(&first[4..8], b"moof");
        assert_eq!(fmp4::base_decode_time(&first).unwrap(), 3000);
        let second = next().await;
        assert_eq!(fmp4::base_decode_time(&second).unwrap(), 6000);
        drop(body);
        // the viewer's task sees the closed body at its next chunk at the latest
        feed.publish(&cfg, 9000, &sample(&data, false), now)
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while feed.has_subscribers() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the subscription ends with the client");
    }

    #[tokio::test]
    async fn a_codec_change_sends_the_new_init_before_its_key_frame() {
        let a = crate::media::test_support::small_h264_config();
        let mut b = a.clone();
        b.width *= 2;
        let feed = Arc::new(LiveFeed::default());
        let data = [0u8, 0, 0, 2, 0x65, 1];
        let now = Instant::now();
        feed.publish(&a, 0, &sample(&data, true), now).unwrap();
        let mut body = feed.body(Shutdown::new());
        feed.publish(&a, 3000, &sample(&data, true), now).unwrap();
        // a frame of the new configuration that is no key frame is skipped
        feed.publish(&b, 6000, &sample(&data, false), now).unwrap();
        feed.publish(&b, 9000, &sample(&data, true), now).unwrap();
        let mut next = async || body.frame().await.unwrap().unwrap().into_data().unwrap();
        let init_a = next().await;
        assert_eq!(
            init_a,
            fmp4::init_segment(&a).unwrap(),
            "the current init at once"
        );
        assert_eq!(fmp4::base_decode_time(&next().await).unwrap(), 3000);
        let init_b = next().await;
        assert_eq!(init_b, fmp4::init_segment(&b).unwrap());
        let chunk = next().await;
        assert_eq!(fmp4::base_decode_time(&chunk).unwrap(), 9000);
        assert!(fmp4::inspect_fragment(&chunk).unwrap().first_is_key);
    }

    #[tokio::test]
    async fn a_slow_viewer_lags_and_resumes_at_a_key_frame() {
        let cfg = crate::media::test_support::small_h264_config();
        let feed = Arc::new(LiveFeed::default());
        let mut body = feed.body(Shutdown::new());
        let data = [0u8, 0, 0, 2, 0x65, 1];
        let now = Instant::now();
        // far more than the ring and the viewer's queue hold while the client reads nothing
        let total = (RING + IN_FLIGHT) as u64 * 4;
        for n in 0..total {
            feed.publish(&cfg, n * 3000, &sample(&data, n % 30 == 0), now)
                .unwrap();
            tokio::task::yield_now().await;
        }
        let mut next = async || body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&next().await[4..8], b"ftyp");
        let mut last = None;
        let mut resumed = false;
        while let Ok(Some(Ok(f))) =
            tokio::time::timeout(Duration::from_millis(200), body.frame()).await
        {
            let chunk = f.into_data().unwrap();
            let info = fmp4::inspect_fragment(&chunk).unwrap();
            if let Some(prev) = last {
                if info.base_decode_time != prev + 3000 {
                    // after a gap the viewer starts again at a key frame
                    assert!(info.first_is_key, "resumed at {}", info.base_decode_time);
                    resumed = true;
                }
            }
            last = Some(info.base_decode_time);
        }
        assert!(resumed, "the viewer lagged");
        assert!(feed.lagged.load(Ordering::Relaxed) > 0);
    }
}
