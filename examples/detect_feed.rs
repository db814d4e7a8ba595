//! CPU of the detection decode feed (`vidgest::capture::DetectFeed`) on a recorded H.264/H.265
//! file, for bench/detect-feed.sh: full decode against key frames only.
//!
//! Reads the whole file into memory first (demux + parse, not measured), then pushes its access
//! units in real time, as a camera's receive task would, and measures this process's CPU time
//! (user + system, every thread) from the first push until the feed has drained. Prints one line:
//!
//! ```text
//! mode=key gop=30 video_s=20.0 cpu_s=0.412 frames=40 dropped=0
//! ```
//!
//! ```text
//! cargo run --release --example detect_feed -- --mode key --fps 2 FILE.mp4
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use vidgest::capture::{frame_sink, sample_to_au, DetectBranchSpec, DetectFeed, RawAu};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Every access unit is decoded; videorate keeps `--fps`.
    Full,
    /// Key frames only (`detect.keyframes_only`).
    Key,
    /// The same feed and pacing loop, with nothing pushed: the fixed cost of the measurement.
    Idle,
}

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    /// Detect fps (frames handed on after the decoder).
    #[arg(long, default_value_t = 2.0)]
    fps: f64,
    /// Model input size (square), as yolov3-tiny's 416.
    #[arg(long, default_value_t = 416)]
    size: u32,
    /// Seconds of the file to push (from its start); 0 = all.
    #[arg(long, default_value_t = 0.0)]
    seconds: f64,
    file: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    gst::init()?;
    let aus = demux(&args.file, args.seconds)?;
    let Some(first) = aus.first() else {
        bail!("no access units in {}", args.file.display())
    };
    let keys: Vec<u64> = aus
        .iter()
        .filter(|a| a.is_key)
        .filter_map(|a| a.pts_ns)
        .collect();
    let gop = aus.len() / keys.len().max(1);
    let t0 = first.pts_ns.context("no PTS")?;
    let span = aus.last().and_then(|a| a.pts_ns).unwrap_or(t0) - t0;
    // The last frame lasts one frame period too.
    let video_s = span as f64 / 1e9 * aus.len() as f64 / (aus.len() - 1).max(1) as f64;

    let frames = Arc::new(AtomicU64::new(0));
    let sink = frame_sink();
    let counted = frames.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let _ = s.pull_sample();
                counted.fetch_add(1, Ordering::Relaxed);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let spec = DetectBranchSpec {
        width: args.size,
        height: args.size,
        fps: args.fps,
        keyframes_only: args.mode != Mode::Full,
        feed_dropped: Default::default(),
    };
    let cpu0 = cpu_time();
    let mut feed = DetectFeed::new(&first.config, &spec, sink)?;
    let start = Instant::now();
    for au in &aus {
        let pts = au.pts_ns.unwrap_or(t0);
        // Real time, as a camera delivers (pacing, not synchronization).
        let due = Duration::from_nanos(pts - t0);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        if args.mode != Mode::Idle {
            feed.push(&au.data, pts, au.is_key);
        }
    }
    let dropped = feed.dropped();
    if !feed.drain(Duration::from_secs(30)) {
        bail!("the feed did not drain within 30 s");
    }
    let cpu_s = cpu_time() - cpu0;
    println!(
        "mode={} gop={gop} video_s={video_s:.1} cpu_s={cpu_s:.3} frames={} dropped={dropped}",
        match args.mode {
            Mode::Full => "full",
            Mode::Key => "key",
            Mode::Idle => "idle",
        },
        frames.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Every access unit of the file's first video track, as the capture's appsink sees them.
fn demux(file: &std::path::Path, seconds: f64) -> Result<Vec<RawAu>> {
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", file.to_str().context("path is not UTF-8")?)
        .build()?;
    let parsebin = gst::ElementFactory::make("parsebin").build()?;
    let sink = gst_app::AppSink::builder()
        .caps(
            &"video/x-h264,stream-format=avc,alignment=au; video/x-h265,stream-format=hvc1,alignment=au"
                .parse::<gst::Caps>()?,
        )
        .sync(false)
        .build();
    pipeline.add_many([&src, &parsebin, sink.upcast_ref()])?;
    src.link(&parsebin)?;
    let sink_pad = sink.static_pad("sink").context("appsink pad")?;
    parsebin.connect_pad_added(move |_, pad| {
        if !sink_pad.is_linked() {
            let _ = pad.link(&sink_pad);
        }
    });
    pipeline.set_state(gst::State::Playing)?;
    let limit = (seconds > 0.0).then_some((seconds * 1e9) as u64);
    let mut cache = None;
    let mut aus = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let Some(au) = sample_to_au(&sample, &mut cache) else {
            continue;
        };
        if let (Some(limit), Some(pts)) = (limit, au.pts_ns) {
            if pts >= limit && au.is_key {
                break;
            }
        }
        aus.push(au);
    }
    pipeline.set_state(gst::State::Null)?;
    Ok(aus)
}

/// User + system CPU seconds of this process (all threads).
fn cpu_time() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}
