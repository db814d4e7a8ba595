//! Fills a data directory with hours of recorded video in seconds, for playback benchmarks.
//!
//! The access units of an MP4 file (demuxed once with GStreamer) are looped through the real
//! recording path (`Recorder`: normalizer, fragmenter, fMP4, store) on a manual clock that
//! follows the media time, so the store looks exactly as if a camera had recorded for
//! `--duration-s` seconds ending a minute ago.
//!
//! ```text
//! cargo run --release --example seed_store -- --config bench.toml --camera cam \
//!     --source target/bench-cache/1080p30-h264-5M-120s.mp4 --duration-s 3600
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use gstreamer::prelude::*;
use gstreamer_app::AppSink;
use vidgest::capture::{sample_to_au, CameraStatus, CaptureEvent, Recorder};
use vidgest::clock::{ManualClock, SharedClock};
use vidgest::config::Config;
use vidgest::store::{self, Statvfs, Store, StoreOptions, VideoOptions};

#[derive(Debug, Parser)]
#[command(about = "Seed a vidgest data directory with looped video (benchmarks)")]
struct Args {
    /// The daemon configuration whose data_dir and camera settings are used.
    #[arg(long)]
    config: PathBuf,
    /// A camera of that configuration.
    #[arg(long)]
    camera: String,
    /// An MP4 (H.264 or H.265) to loop.
    #[arg(long)]
    source: PathBuf,
    /// Seconds of video to store.
    #[arg(long, default_value_t = 3600)]
    duration_s: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let config = Config::load(&args.config)?;
    let cam = config
        .cameras
        .iter()
        .find(|c| c.name == args.camera)
        .with_context(|| format!("camera `{}` is not in the config", args.camera))?;
    gstreamer::init()?;
    let aus = demux(&args.source)?;
    let file_ns = aus.last().and_then(|a| a.dts_ns.or(a.pts_ns)).unwrap_or(0)
        + aus.last().and_then(|a| a.duration_ns).unwrap_or(0);
    if file_ns == 0 {
        bail!("{}: no timed access units", args.source.display());
    }

    let total_ns = args.duration_s * 1_000_000_000;
    let start = vidgest::clock::system_clock().now_ns() - total_ns as i64 - 60_000_000_000;
    let clock = ManualClock::new(start);
    let shared: SharedClock = clock.clone();
    let store = Store::open(
        &store::video_root(&config.agent.data_dir),
        StoreOptions::from_config(&config),
        shared.clone(),
        Arc::new(Statvfs),
    )?;
    let writer = store.open_video(
        &cam.name,
        VideoOptions {
            retention: cam.retention.0.max(Duration::from_nanos(total_ns) * 2),
            max_bytes: cam.max_bytes.map(|b| b.0),
            segment_size: cam.segment_size(&config.storage),
        },
    )?;
    let status = Arc::new(CameraStatus::new(&cam.name));
    let recorder = Recorder::new(writer, status.clone(), shared, cam.fragment_duration.0);

    // A small channel keeps the recorder right behind the clock the feeder advances.
    let (tx, rx) = crossbeam_channel::bounded(4);
    let (_res_tx, res_rx) = crossbeam_channel::bounded(1);
    let worker = std::thread::spawn(move || recorder.run(rx, res_rx));
    let session = 1;
    tx.send(CaptureEvent::SessionStart { session })?;
    let mut fed_ns = 0u64;
    let mut lap = 0u64;
    'outer: loop {
        if lap > 0 {
            tx.send(CaptureEvent::LoopRestart { session })?;
        }
        for au in &aus {
            let t = au.dts_ns.or(au.pts_ns).unwrap_or(0);
            if fed_ns + t >= total_ns {
                break 'outer;
            }
            clock.set(start + (fed_ns + t) as i64);
            tx.send(CaptureEvent::Au {
                session,
                au: au.clone(),
            })?;
        }
        fed_ns += file_ns;
        lap += 1;
        eprintln!("seeded {} s of {}", fed_ns / 1_000_000_000, args.duration_s);
    }
    tx.send(CaptureEvent::SessionEnd { session })?;
    drop(tx);
    worker.join().expect("recorder thread");
    let c = &status.counters;
    println!(
        "stored {} fragments, {} bytes",
        c.fragments_stored
            .load(std::sync::atomic::Ordering::Relaxed),
        c.bytes_stored.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

/// Every access unit of the file's video track, as the capture pipeline would deliver them.
fn demux(path: &std::path::Path) -> Result<Vec<vidgest::capture::RawAu>> {
    let desc = format!(
        "filesrc location=\"{}\" ! qtdemux ! parsebin ! appsink name=out sync=false",
        path.display()
    );
    let pipeline = gstreamer::parse::launch(&desc)?
        .downcast::<gstreamer::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let sink = pipeline
        .by_name("out")
        .context("no appsink")?
        .downcast::<AppSink>()
        .map_err(|_| anyhow::anyhow!("not an appsink"))?;
    sink.set_caps(Some(
        &gstreamer::Caps::builder_full()
            .structure(
                gstreamer::Structure::builder("video/x-h264")
                    .field("stream-format", "avc")
                    .field("alignment", "au")
                    .build(),
            )
            .structure(
                gstreamer::Structure::builder("video/x-h265")
                    .field("stream-format", "hvc1")
                    .field("alignment", "au")
                    .build(),
            )
            .build(),
    ));
    pipeline.set_state(gstreamer::State::Playing)?;
    let mut cache = None;
    let mut aus = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        if let Some(au) = sample_to_au(&sample, &mut cache) {
            aus.push(au);
        }
    }
    pipeline.set_state(gstreamer::State::Null)?;
    if aus.is_empty() {
        bail!("{}: no video access units", path.display());
    }
    Ok(aus)
}
