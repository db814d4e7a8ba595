//! A bare RTSP receiver on `retina`: the recording benchmark's `retina-bare` baseline
//! (bench/recording.sh, BENCHMARKS.md).
//!
//! For each URL: DESCRIBE, SETUP of the first H.264/H.265 video stream over TCP-interleaved,
//! PLAY, then demux frames (`FrameFormat::MP4`, as the recording path asks for) and count them.
//! Nothing is parsed, stored or decoded beyond that: it is the cost of receiving alone. All
//! streams run as tasks on one single-threaded tokio runtime.
//!
//! Runs until SIGTERM/SIGINT (or `--duration`), then prints one line per URL,
//! `FRAMES <url> <frames> <bytes>`, and exits 0. Any RTSP error ends the process with status 1:
//! a baseline that silently stopped receiving would look cheap.
//!
//! ```text
//! cargo run --release --example retina_recv -- rtsp://127.0.0.1:8554/cam0 rtsp://127.0.0.1:8554/cam1
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::StreamExt;
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
use retina::codec::{CodecItem, FrameFormat};

#[derive(Debug, Parser)]
#[command(about = "Receive RTSP streams with retina and only count frames")]
struct Args {
    /// rtsp:// URLs without credentials.
    #[arg(required = true)]
    urls: Vec<url::Url>,
    /// Stop after this long instead of waiting for a signal (e.g. `30s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

#[derive(Default)]
struct Count {
    frames: AtomicU64,
    bytes: AtomicU64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let counts: Vec<Arc<Count>> = args.urls.iter().map(|_| Arc::default()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (url, count) in args.urls.iter().cloned().zip(&counts) {
        let count = count.clone();
        tasks.spawn(async move {
            let shown = url.to_string();
            receive(url, &count)
                .await
                .with_context(|| format!("receiving {shown}"))
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = term.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = stop => Ok(()),
        Some(done) = tasks.join_next() => match done {
            Ok(Ok(())) => Err(anyhow::anyhow!("a stream ended")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.into()),
        },
    };
    for (url, c) in args.urls.iter().zip(&counts) {
        println!(
            "FRAMES {url} {} {}",
            c.frames.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed)
        );
    }
    // Dropping the sessions sends TEARDOWN in the background; not waited for.
    tasks.abort_all();
    outcome
}

/// Receives one stream until it ends or fails.
async fn receive(url: url::Url, count: &Count) -> Result<()> {
    let mut session = Session::describe(url, SessionOptions::default()).await?;
    let Some(i) = session
        .streams()
        .iter()
        .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"))
    else {
        bail!("no H.264/H.265 video stream in the SDP");
    };
    session
        .setup(
            i,
            SetupOptions::default()
                .transport(Transport::Tcp(Default::default()))
                .frame_format(FrameFormat::MP4),
        )
        .await?;
    let mut demuxed = session.play(PlayOptions::default()).await?.demuxed()?;
    while let Some(item) = demuxed.next().await {
        if let CodecItem::VideoFrame(frame) = item? {
            count.frames.fetch_add(1, Ordering::Relaxed);
            count
                .bytes
                .fetch_add(frame.data().len() as u64, Ordering::Relaxed);
        }
    }
    bail!("the server ended the stream")
}
