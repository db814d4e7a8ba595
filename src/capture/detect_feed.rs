//! Detection frames for cameras whose access units do not come out of a GStreamer pipeline (the
//! retina receive path, issue 12): an `appsrc` decode pipeline fed with length-prefixed access
//! units, ending in the same detect appsink the GStreamer capture's detect branch uses.
//!
//! ```text
//! appsrc (avc/hvc1 au, codec_data = CodecConfig.record)
//!   ! avdec_h26X ! videorate drop-only ! fps caps ! videoscale ! videoconvert ! RGB ! appsink
//! ```
//!
//! Everything after the appsrc is the detect branch's own chain (`outputs::decode_chain`), so fps
//! limiting, scaling and colour conversion are the same; the appsink's callback (the caller's,
//! normally the one the GStreamer capture installs on its detect sink) stamps frames and submits
//! them to the detector pool, whose workers run the motion gate and the model.
//!
//! The caller is the receive task: [`DetectFeed::push`] never blocks. Access units wait in a
//! bounded queue that the appsrc's streaming thread takes from when it needs data; when the queue
//! is full, everything queued (the oldest) is dropped and counted, and pushing resumes at the next
//! key frame, because a decoder fed an access-unit stream with holes outputs garbage until the
//! next IDR.

use super::outputs::{decode_chain, DetectBranchSpec};
use super::pipeline::{gst_err, make, PipelineError};
use crate::media::{Codec, CodecConfig};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Access units waiting for the decoder: 1 s at 30 fps, the same bound as the detect branch's
/// leaky queue (outputs.rs).
pub const QUEUE_CAPACITY: usize = 30;

/// Why a detect feed could not be built or reconfigured.
#[derive(Debug, thiserror::Error)]
pub enum DetectFeedError {
    #[error("detect feed: {0}")]
    Pipeline(#[from] PipelineError),
    #[error("detect feed: the codec changed from {from} to {to} within a session")]
    CodecChanged { from: Codec, to: Codec },
}

/// What travels from [`DetectFeed::push`] to the appsrc, in order.
enum Item {
    Caps(gst::Caps),
    Au(gst::Buffer),
}

/// An appsink configured as the GStreamer capture's detect sink (latest frame only, no clock
/// sync, no preroll wait); install the frame callback on it and pass it to [`DetectFeed::new`].
/// GStreamer must be initialised ([`crate::gst_init`]; `spawn_camera` does it for a camera with
/// a detect feed).
pub fn frame_sink() -> gst_app::AppSink {
    let sink = gst_app::AppSink::builder()
        .name("detect-sink")
        .max_buffers(1)
        .drop(true)
        .sync(false)
        .build();
    sink.set_property("async", false);
    sink
}

/// Caps for the appsrc: what h264parse/h265parse output in the GStreamer capture, so avdec takes
/// the access units as they are (no parser).
fn caps_for(config: &CodecConfig) -> gst::Caps {
    let (name, format) = match config.codec {
        Codec::H264 => ("video/x-h264", "avc"),
        Codec::H265 => ("video/x-h265", "hvc1"),
    };
    gst::Caps::builder(name)
        .field("stream-format", format)
        .field("alignment", "au")
        .field("codec_data", gst::Buffer::from_slice(config.record.clone()))
        .field("width", config.width as i32)
        .field("height", config.height as i32)
        .build()
}

/// The caller's side of the queue: decides what to send and drops the oldest when full.
struct Feeder {
    tx: Sender<Item>,
    /// A second receiver, used only to drop the oldest items when the queue is full.
    rx: Receiver<Item>,
    keyframes_only: bool,
    waiting_for_key: bool,
    /// The wait follows a drop: the access units skipped until the key frame count as dropped.
    after_drop: bool,
    dropped: Arc<AtomicU64>,
    /// The camera's count over all its feeds (metrics).
    camera_dropped: Arc<AtomicU64>,
}

impl Feeder {
    fn new(
        capacity: usize,
        keyframes_only: bool,
        camera_dropped: Arc<AtomicU64>,
    ) -> (Feeder, Receiver<Item>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let feeder = Feeder {
            tx,
            rx: rx.clone(),
            keyframes_only,
            waiting_for_key: true,
            after_drop: false,
            dropped: Arc::default(),
            camera_dropped,
        };
        (feeder, rx)
    }

    fn push(&mut self, data: &[u8], pts_ns: u64, is_key: bool) {
        if self.keyframes_only && !is_key {
            return;
        }
        if self.waiting_for_key {
            if !is_key {
                // Not decodable (before the first key frame, new parameter sets, or a drop).
                if self.after_drop {
                    self.count_dropped(1);
                }
                return;
            }
            self.waiting_for_key = false;
            self.after_drop = false;
        }
        let mut buffer = gst::Buffer::from_slice(data.to_vec());
        {
            let b = buffer.get_mut().expect("a new buffer is writable");
            b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
            if !is_key {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        self.send(Item::Au(buffer), is_key);
    }

    fn set_caps(&mut self, caps: gst::Caps) {
        // New parameter sets take effect at a key frame; what follows them until then would be
        // decoded against the wrong ones.
        self.waiting_for_key = true;
        self.send(Item::Caps(caps), true);
    }

    /// Sends `item`; on a full queue drops every queued access unit (keeping the latest caps)
    /// and `item` too unless it starts a decodable run (`decodable`).
    fn send(&mut self, item: Item, decodable: bool) {
        let item = match self.tx.try_send(item) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(item)) => item,
        };
        let (caps, mut dropped) = self.clear();
        if let Some(caps) = caps {
            let _ = self.tx.try_send(Item::Caps(caps));
        }
        if decodable {
            let _ = self.tx.try_send(item);
        } else {
            dropped += 1;
            self.waiting_for_key = true;
            self.after_drop = true;
        }
        self.count_dropped(dropped);
        if dropped > 0 {
            tracing::debug!(
                dropped,
                "detect feed queue full: dropped the oldest access units"
            );
        }
    }

    fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.camera_dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Empties the queue; returns the last caps found in it and the number of access units.
    fn clear(&self) -> (Option<gst::Caps>, u64) {
        let mut caps = None;
        let mut n = 0;
        while let Ok(item) = self.rx.try_recv() {
            match item {
                Item::Caps(c) => caps = Some(c),
                Item::Au(_) => n += 1,
            }
        }
        (caps, n)
    }
}

/// A per-session decode pipeline that turns pushed access units into detection frames.
pub struct DetectFeed {
    pipeline: gst::Pipeline,
    config: CodecConfig,
    feeder: Option<Feeder>,
    dropped: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    eos: Receiver<()>,
}

impl DetectFeed {
    /// Builds and starts the pipeline for `config`. Decoded frames go to `sink` (see
    /// [`frame_sink`]) at `spec.fps`, scaled to `spec.width` x `spec.height` RGB. With
    /// `spec.keyframes_only`, only key frames are decoded.
    pub fn new(
        config: &CodecConfig,
        spec: &DetectBranchSpec,
        sink: gst_app::AppSink,
    ) -> Result<DetectFeed, DetectFeedError> {
        Self::with_capacity(config, spec, sink, QUEUE_CAPACITY)
    }

    fn with_capacity(
        config: &CodecConfig,
        spec: &DetectBranchSpec,
        sink: gst_app::AppSink,
        capacity: usize,
    ) -> Result<DetectFeed, DetectFeedError> {
        crate::gst_init().map_err(PipelineError::Init)?;
        let pipeline = gst::Pipeline::with_name("detect-feed");
        let src = make("appsrc")?
            .downcast::<gst_app::AppSrc>()
            .expect("appsrc is an AppSrc");
        src.set_caps(Some(&caps_for(config)));
        src.set_format(gst::Format::Time);
        src.set_is_live(true);
        src.set_do_timestamp(false);
        src.set_stream_type(gst_app::AppStreamType::Stream);
        // At most one buffer waits inside the appsrc: the bounded queue is ours (drop-oldest).
        src.set_max_buffers(1);
        let desc = decode_chain(config.codec, spec);
        let bin = gst::parse::bin_from_description(&desc, true)
            .map_err(|source| PipelineError::Parse { desc, source })?;
        pipeline
            .add_many([
                src.upcast_ref::<gst::Element>(),
                bin.upcast_ref(),
                sink.upcast_ref(),
            ])
            .map_err(gst_err("adding the detect feed elements"))?;
        gst::Element::link_many([
            src.upcast_ref::<gst::Element>(),
            bin.upcast_ref(),
            sink.upcast_ref(),
        ])
        .map_err(gst_err("linking the detect feed"))?;

        let (feeder, rx) = Feeder::new(capacity, spec.keyframes_only, spec.feed_dropped.clone());
        // Runs on the appsrc's streaming thread whenever its (one-buffer) queue is empty. It waits
        // for the next access unit; `stop` ends the wait by disconnecting the channel.
        src.set_callbacks(
            gst_app::AppSrcCallbacks::builder()
                .need_data(move |src, _| loop {
                    match rx.recv() {
                        Ok(Item::Caps(caps)) => src.set_caps(Some(&caps)),
                        Ok(Item::Au(buffer)) => {
                            let _ = src.push_buffer(buffer);
                            return;
                        }
                        Err(_) => {
                            let _ = src.end_of_stream();
                            return;
                        }
                    }
                })
                .build(),
        );

        // Nobody iterates this bus: handle messages as they are posted and keep none queued.
        let (eos_tx, eos) = crossbeam_channel::bounded(1);
        let failed = Arc::new(AtomicBool::new(false));
        let failed_flag = failed.clone();
        let bus = pipeline.bus().expect("a pipeline has a bus");
        bus.set_sync_handler(move |_, msg| {
            match msg.view() {
                gst::MessageView::Eos(_) => {
                    let _ = eos_tx.try_send(());
                }
                gst::MessageView::Error(e) => {
                    failed_flag.store(true, Ordering::Relaxed);
                    tracing::warn!("detect feed stopped: {} ({:?})", e.error(), e.debug());
                    let _ = eos_tx.try_send(());
                }
                gst::MessageView::Warning(w) => {
                    tracing::debug!("detect feed: {}", w.error());
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
        if let Err(source) = pipeline.set_state(gst::State::Playing) {
            drop(feeder); // wakes the streaming thread if it already waits
            let _ = pipeline.set_state(gst::State::Null);
            return Err(PipelineError::State {
                action: "starting the detect feed",
                source,
            }
            .into());
        }
        let dropped = feeder.dropped.clone();
        Ok(DetectFeed {
            pipeline,
            config: config.clone(),
            feeder: Some(feeder),
            dropped,
            failed,
            eos,
        })
    }

    /// Switches to new parameter sets (new resolution, profile...); takes effect from the next
    /// key frame pushed. The codec cannot change.
    pub fn set_config(&mut self, config: &CodecConfig) -> Result<(), DetectFeedError> {
        if config.codec != self.config.codec {
            return Err(DetectFeedError::CodecChanged {
                from: self.config.codec,
                to: config.codec,
            });
        }
        if *config == self.config {
            return Ok(());
        }
        self.config = config.clone();
        if let Some(f) = &mut self.feeder {
            f.set_caps(caps_for(config));
        }
        Ok(())
    }

    /// Queues one access unit (length-prefixed NAL units, as in `RawAu.data`) with its running
    /// time `pts_ns`. Never blocks. Nothing is pushed before the first key frame, and with
    /// `keyframes_only` nothing but key frames (not even copied).
    pub fn push(&mut self, data: &[u8], pts_ns: u64, is_key: bool) {
        if let Some(f) = &mut self.feeder {
            f.push(data, pts_ns, is_key);
        }
    }

    /// Access units dropped because the decoder fell behind: those queued when the queue was full,
    /// and those that could not be decoded after that until the next key frame.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether the pipeline stopped on an error (logged): frames no longer come, pushes are
    /// dropped. The caller may build a new feed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Stops now, dropping what is queued; returns once the pipeline is down.
    pub fn finish(mut self) {
        self.stop(true);
    }

    /// Decodes everything queued, then stops. Returns whether the end of the stream reached the
    /// sink within `timeout` (for tests and benchmarks; a live session uses [`Self::finish`]).
    pub fn drain(mut self, timeout: Duration) -> bool {
        self.feeder = None; // the streaming thread ends the stream once the queue is empty
        let done = self.eos.recv_timeout(timeout).is_ok();
        self.stop(false);
        done
    }

    fn stop(&mut self, discard: bool) {
        if let Some(f) = self.feeder.take() {
            if discard {
                f.clear();
            }
            // Dropping the only sender wakes the streaming thread's wait (end of stream).
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Drop for DetectFeed {
    fn drop(&mut self) {
        self.stop(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::sample_to_au;
    use std::time::Instant;

    const BASE: u64 = 1_000_000_000; // a biased start, as the receive path produces
    const FRAME: u64 = 33_333_333;

    struct Encoded {
        config: CodecConfig,
        aus: Vec<(Vec<u8>, bool)>,
    }

    /// `frames` frames of 30 fps test pattern at `w`x`h`, a key frame every `gop`, as h26Xparse
    /// outputs them (what `RawAu.data` holds).
    fn encode(codec: Codec, w: u32, h: u32, frames: usize, gop: usize) -> Encoded {
        gst::init().unwrap();
        let enc = match codec {
            Codec::H264 => format!(
                "x264enc bframes=0 key-int-max={gop} option-string=scenecut=0 ! h264parse \
                 ! video/x-h264,stream-format=avc,alignment=au"
            ),
            Codec::H265 => format!(
                "x265enc key-int-max={gop} option-string=bframes=0:scenecut=0:open-gop=0 \
                 ! h265parse ! video/x-h265,stream-format=hvc1,alignment=au"
            ),
        };
        let desc = format!(
            "videotestsrc num-buffers={frames} pattern=ball \
             ! video/x-raw,format=I420,width={w},height={h},framerate=30/1 ! {enc} \
             ! appsink name=out sync=false"
        );
        let pipeline = gst::parse::launch(&desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let out = pipeline
            .by_name("out")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let mut cache = None;
        let mut aus = Vec::new();
        let mut config = None;
        while let Ok(sample) = out.pull_sample() {
            let au = sample_to_au(&sample, &mut cache).unwrap();
            config = Some(au.config.as_ref().clone());
            aus.push((au.data, au.is_key));
        }
        pipeline.set_state(gst::State::Null).unwrap();
        assert_eq!(aus.len(), frames);
        Encoded {
            config: config.unwrap(),
            aus,
        }
    }

    fn spec(fps: f64, keyframes_only: bool) -> DetectBranchSpec {
        DetectBranchSpec {
            width: 64,
            height: 48,
            fps,
            keyframes_only,
            feed_dropped: Default::default(),
        }
    }

    /// A sink that reports each frame's PTS and byte size.
    fn collecting_sink() -> (gst_app::AppSink, Receiver<(u64, usize)>) {
        let sink = frame_sink();
        // Latest-only would make the count depend on scheduling; tests want every frame.
        sink.set_max_buffers(0);
        sink.set_drop(false);
        let (tx, rx) = crossbeam_channel::unbounded();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let b = sample.buffer().unwrap();
                    let _ = tx.send((b.pts().unwrap().nseconds(), b.size()));
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        (sink, rx)
    }

    fn feed(f: &mut DetectFeed, aus: &[(Vec<u8>, bool)], first: u64) {
        for (i, (data, key)) in aus.iter().enumerate() {
            f.push(data, BASE + (first + i as u64) * FRAME, *key);
        }
    }

    fn full_decode(codec: Codec) {
        let s = encode(codec, 320, 240, 90, 30);
        let (sink, frames) = collecting_sink();
        let mut f = DetectFeed::with_capacity(&s.config, &spec(5.0, false), sink, 128).unwrap();
        feed(&mut f, &s.aus, 0);
        assert_eq!(f.dropped(), 0);
        assert!(f.drain(Duration::from_secs(20)), "no end of stream");
        let frames: Vec<_> = frames.try_iter().collect();
        // 3 s at 5 fps.
        assert!((14..=16).contains(&frames.len()), "{frames:?}");
        assert!(frames.iter().all(|(_, size)| *size == 64 * 48 * 3));
        // The first frame, then the first at or after each 200 ms step, with its own timestamp.
        assert_eq!(frames[0].0, BASE, "{frames:?}");
        assert!(
            frames.iter().all(|(p, _)| (p - BASE).is_multiple_of(FRAME)),
            "{frames:?}"
        );
        for w in frames.windows(2) {
            let step = w[1].0 - w[0].0;
            assert!(step.abs_diff(200_000_000) <= FRAME, "{frames:?}");
        }
        assert!(frames.last().unwrap().0 < BASE + 90 * FRAME);
    }

    #[test]
    fn full_decode_h264_delivers_frames_at_the_detect_fps() {
        full_decode(Codec::H264);
    }

    #[test]
    fn full_decode_h265_delivers_frames_at_the_detect_fps() {
        full_decode(Codec::H265);
    }

    #[test]
    fn keyframes_only_yields_one_frame_per_gop() {
        let s = encode(Codec::H264, 320, 240, 90, 30);
        let (sink, frames) = collecting_sink();
        let mut f = DetectFeed::with_capacity(&s.config, &spec(5.0, true), sink, 128).unwrap();
        feed(&mut f, &s.aus, 0);
        assert!(f.drain(Duration::from_secs(20)), "no end of stream");
        let pts: Vec<u64> = frames.try_iter().map(|(p, _)| p).collect();
        assert_eq!(pts, [BASE, BASE + 30 * FRAME, BASE + 60 * FRAME]);
    }

    #[test]
    fn new_parameters_mid_stream_keep_frames_coming_at_the_new_size() {
        let a = encode(Codec::H264, 320, 240, 30, 15);
        let b = encode(Codec::H264, 160, 120, 30, 15);
        assert_ne!(a.config.record, b.config.record);
        let (sink, frames) = collecting_sink();
        let mut f = DetectFeed::with_capacity(&a.config, &spec(10.0, false), sink, 128).unwrap();
        // The decoder's output sizes, from its caps events.
        let (tx, sizes) = crossbeam_channel::unbounded();
        let pad = f.pipeline.by_name("detect-decoder").unwrap();
        pad.static_pad("src").unwrap().add_probe(
            gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                if let Some(gst::EventView::Caps(c)) = info.event().map(|e| e.view()) {
                    let s = c.caps().structure(0).unwrap();
                    let _ = tx.send((
                        s.get::<i32>("width").unwrap(),
                        s.get::<i32>("height").unwrap(),
                    ));
                }
                gst::PadProbeReturn::Ok
            },
        );
        feed(&mut f, &a.aus, 0);
        f.set_config(&b.config).unwrap();
        feed(&mut f, &b.aus, 30);
        assert!(f.drain(Duration::from_secs(20)), "no end of stream");
        let pts: Vec<u64> = frames.try_iter().map(|(p, _)| p).collect();
        let after = pts.iter().filter(|p| **p >= BASE + 30 * FRAME).count();
        // 1 s at 10 fps on each side of the switch.
        assert!((9..=11).contains(&after), "{pts:?}");
        assert!(pts.len() >= 18, "{pts:?}");
        assert_eq!(sizes.try_iter().last(), Some((160, 120)));
    }

    #[test]
    fn a_codec_change_is_refused() {
        let a = encode(Codec::H264, 160, 120, 1, 1);
        let (sink, _frames) = collecting_sink();
        let mut f = DetectFeed::new(&a.config, &spec(5.0, false), sink).unwrap();
        let mut h265 = a.config.clone();
        h265.codec = Codec::H265;
        assert!(matches!(
            f.set_config(&h265),
            Err(DetectFeedError::CodecChanged { .. })
        ));
        f.finish();
    }

    #[test]
    fn finish_returns_promptly() {
        let s = encode(Codec::H264, 320, 240, 60, 30);
        // Idle: the streaming thread is waiting for data.
        let (sink, _frames) = collecting_sink();
        let f = DetectFeed::new(&s.config, &spec(5.0, false), sink).unwrap();
        let t = Instant::now();
        f.finish();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // Busy: a full queue of access units waiting to be decoded.
        let (sink, _frames) = collecting_sink();
        let mut f = DetectFeed::new(&s.config, &spec(5.0, false), sink).unwrap();
        feed(&mut f, &s.aus, 0);
        let t = Instant::now();
        f.finish();
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_resumes_at_a_key_frame() {
        gst::init().unwrap();
        // Nobody takes from this queue: it fills deterministically.
        let camera = Arc::new(AtomicU64::new(7)); // earlier sessions' drops
        let (mut q, rx) = Feeder::new(4, false, camera.clone());
        q.push(b"d", 0, false); // before the first key frame: skipped, not a drop
        assert_eq!((rx.len(), q.dropped.load(Ordering::Relaxed)), (0, 0));
        q.push(b"k", 1, true);
        q.set_caps(gst::Caps::new_empty_simple("video/x-h264"));
        q.push(b"k", 2, true);
        q.push(b"d", 3, false);
        assert_eq!(rx.len(), 4);
        // Full: the 4 queued items go (3 access units, caps kept), this delta too.
        q.push(b"d", 4, false);
        assert_eq!(q.dropped.load(Ordering::Relaxed), 3 + 1);
        assert!(matches!(rx.try_recv(), Ok(Item::Caps(_))));
        assert!(rx.is_empty());
        q.push(b"d", 5, false); // not decodable until the next key frame
        assert_eq!(q.dropped.load(Ordering::Relaxed), 5);
        q.push(b"k", 6, true);
        q.push(b"d", 7, false);
        let pts: Vec<u64> = rx
            .try_iter()
            .map(|i| match i {
                Item::Au(b) => b.pts().unwrap().nseconds(),
                Item::Caps(_) => panic!("caps"),
            })
            .collect();
        assert_eq!(pts, [6, 7]);
        // New parameter sets: deltas wait for a key frame too, but nothing was lost.
        q.set_caps(gst::Caps::new_empty_simple("video/x-h264"));
        q.push(b"d", 8, false);
        assert_eq!(rx.len(), 1);
        assert_eq!(q.dropped.load(Ordering::Relaxed), 5);
        // The camera's count (metrics) adds this feed's drops.
        assert_eq!(camera.load(Ordering::Relaxed), 7 + 5);
    }

    #[test]
    fn keyframes_only_drops_nothing_but_deltas_are_never_queued() {
        gst::init().unwrap();
        let (mut q, rx) = Feeder::new(4, true, Arc::default());
        for i in 0..10 {
            q.push(b"x", i, i % 5 == 0);
        }
        assert_eq!(rx.len(), 2);
        assert_eq!(q.dropped.load(Ordering::Relaxed), 0);
    }
}
