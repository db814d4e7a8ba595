//! A real RTSP camera for tests and benchmarks, built on gst-rtsp-server.
//!
//! Serves `/cam0` .. `/cam{N-1}` (and `/cam` = `/cam0`) on 127.0.0.1, prints one line
//! `READY rtsp://127.0.0.1:<port>` once listening, then runs until killed. When stdin is a pipe it
//! also exits when the pipe closes, so a test process that dies never leaks cameras.
//!
//! ```text
//! cargo run --example test_camera -- --port 8554 --codec h265 --auth digest --user u --password p
//! ```

use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use gstreamer_rtsp_server::{self as rtsp_server, glib, gst, gst_rtsp, prelude::*};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Codec {
    H264,
    H265,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AuthKind {
    Basic,
    Digest,
}

#[derive(Debug, Parser)]
#[command(about = "RTSP test camera (gst-rtsp-server) on 127.0.0.1")]
struct Args {
    /// TCP port; 0 picks a free one (printed in the READY line).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Number of mounts: /cam0 .. /cam{N-1}; /cam is an alias of /cam0.
    #[arg(long, default_value_t = 1)]
    mounts: u32,
    #[arg(long, value_enum, default_value_t = Codec::H264)]
    codec: Codec,
    #[arg(long, default_value_t = 640)]
    width: u32,
    #[arg(long, default_value_t = 480)]
    height: u32,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Key-frame interval in frames (default: fps, i.e. one second).
    #[arg(long)]
    gop: Option<u32>,
    /// Serve this pre-encoded MP4 (of --codec) instead of a synthetic source, without re-encoding.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Show this still image (JPEG/PNG) instead of the test pattern (encoded live).
    #[arg(long, conflicts_with = "file")]
    image: Option<PathBuf>,
    #[arg(long, value_enum, requires_all = ["user", "password"])]
    auth: Option<AuthKind>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    password: Option<String>,
    /// One pipeline shared by all clients of a mount (like a real camera).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    shared: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.mounts == 0 {
        bail!("--mounts must be at least 1");
    }
    if args.fps == 0 || args.width == 0 || args.height == 0 {
        bail!("--width, --height and --fps must be positive");
    }
    gst::init().context("initializing GStreamer")?;
    watch_stdin();

    let launch = launch_line(&args)?;
    let main_loop = glib::MainLoop::new(None, false);
    let server = rtsp_server::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&args.port.to_string());

    let role = args.auth.map(|kind| {
        let (user, password) = (
            args.user.as_deref().unwrap(),
            args.password.as_deref().unwrap(),
        );
        server.set_auth(Some(&make_auth(kind, user, password)));
        "user"
    });

    let mounts = server
        .mount_points()
        .context("server has no mount points")?;
    for i in 0..args.mounts {
        let factory = rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(&launch);
        factory.set_shared(args.shared);
        if args.shared {
            factory.set_media_gtype(always_on::AlwaysOnMedia::static_type());
        }
        if let Some(role) = role {
            let perms = gst::Structure::builder(role)
                .field(rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS.as_str(), true)
                .field(
                    rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT.as_str(),
                    true,
                )
                .build();
            factory.add_role_from_structure(&perms);
        }
        if i == 0 {
            mounts.add_factory("/cam", factory.clone());
        }
        mounts.add_factory(&format!("/cam{i}"), factory);
    }

    server
        .attach(None)
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let port = server.bound_port();
    if port <= 0 {
        bail!("server did not bind a port");
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY rtsp://127.0.0.1:{port}")?;
    out.flush()?;
    drop(out);

    main_loop.run();
    Ok(())
}

fn make_auth(kind: AuthKind, user: &str, password: &str) -> rtsp_server::RTSPAuth {
    let auth = rtsp_server::RTSPAuth::new();
    let token = rtsp_server::RTSPToken::builder()
        .field(rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE.as_str(), "user")
        .build();
    match kind {
        AuthKind::Basic => {
            auth.add_basic(&rtsp_server::RTSPAuth::make_basic(user, password), &token);
            auth.set_supported_methods(gst_rtsp::RTSPAuthMethod::Basic);
        }
        AuthKind::Digest => {
            auth.add_digest(user, password, &token);
            auth.set_supported_methods(gst_rtsp::RTSPAuthMethod::Digest);
        }
    }
    auth
}

fn launch_line(args: &Args) -> Result<String> {
    let (parse, pay) = match args.codec {
        Codec::H264 => ("h264parse", "rtph264pay"),
        Codec::H265 => ("h265parse", "rtph265pay"),
    };
    // config-interval=-1: parameter sets with every key frame, so late joiners can decode.
    let payloader = format!("{pay} name=pay0 pt=96 config-interval=-1");
    if let Some(file) = &args.file {
        if !file.is_file() {
            bail!("--file {}: no such file", file.display());
        }
        let path = file.to_str().context("--file path is not UTF-8")?;
        let quoted = path.replace('\\', "\\\\").replace('"', "\\\"");
        return Ok(format!(
            "( filesrc location=\"{quoted}\" ! qtdemux ! {parse} ! {payloader} )"
        ));
    }
    let gop = args.gop.unwrap_or(args.fps).max(1);
    // I420 caps: without them x264enc picks High 4:4:4, which most decoders reject.
    let source = match &args.image {
        Some(image) => {
            let path = image.to_str().context("--image path is not UTF-8")?;
            format!(
                "filesrc location=\"{}\" ! decodebin ! videoconvert ! videoscale ! imagefreeze is-live=true \
                 ! videoconvert ! video/x-raw,format=I420,width={},height={},framerate={}/1",
                path.replace('"', "\\\""),
                args.width,
                args.height,
                args.fps
            )
        }
        None => format!(
            "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width={},height={},framerate={}/1",
            args.width, args.height, args.fps
        ),
    };
    let encoder = match args.codec {
        Codec::H264 => format!(
            "x264enc tune=zerolatency speed-preset=ultrafast bframes=0 key-int-max={gop} option-string=scenecut=0"
        ),
        Codec::H265 => format!(
            "x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} option-string=keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"
        ),
    };
    Ok(format!("( {source} ! {encoder} ! {payloader} )"))
}

/// Exits when stdin (a pipe from the parent test) reaches EOF. A terminal or /dev/null is not
/// watched: a camera started by hand or in the background must keep running.
fn watch_stdin() {
    let is_pipe = std::fs::metadata("/dev/stdin")
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false);
    if !is_pipe {
        return;
    }
    std::thread::spawn(|| {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

/// A shared media that stays prepared once a client asked for it, like a real camera's encoder.
///
/// Why: gst-rtsp-server 1.22 unprepares a shared media when its last client leaves, and a
/// DESCRIBE arriving during that (asynchronous) unprepare gets `503 Service Unavailable`, because
/// the factory still hands out the unpreparing media. Quick reconnects (probe twice, capture
/// restarts) hit that window reliably; a camera that never unprepares has no such window.
mod always_on {
    use gstreamer_rtsp_server::{glib, gst, subclass::prelude::*, RTSPMedia};

    mod imp {
        use super::*;

        #[derive(Default)]
        pub struct AlwaysOnMedia;

        #[glib::object_subclass]
        impl ObjectSubclass for AlwaysOnMedia {
            const NAME: &'static str = "VidgestTestCameraAlwaysOnMedia";
            type Type = super::AlwaysOnMedia;
            type ParentType = RTSPMedia;
        }

        impl ObjectImpl for AlwaysOnMedia {}

        impl RTSPMediaImpl for AlwaysOnMedia {
            // Called once the last user released the media: keep the pipeline running instead.
            fn unprepare(&self) -> Result<(), gst::LoggableError> {
                Ok(())
            }
        }
    }

    glib::wrapper! {
        pub struct AlwaysOnMedia(ObjectSubclass<imp::AlwaysOnMedia>) @extends RTSPMedia;
    }
}
