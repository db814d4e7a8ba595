//! A real RTSP camera for tests and benchmarks, built on gst-rtsp-server.
//!
//! Serves `/cam0` .. `/cam{N-1}` (and `/cam` = `/cam0`) on 127.0.0.1, prints one line
//! `READY rtsp://127.0.0.1:<port>` once listening, then runs until killed. When stdin is a pipe it
//! also exits when the pipe closes, so a test process that dies never leaks cameras.
//!
//! ```text
//! cargo run --example test_camera -- --port 8554 --codec h265 --auth digest --user u --password p
//! ```
//!
//! Camera quirks for tests/rtsp_quirks.rs: `--inband-params false` sends H.264 parameter sets
//! only in the SDP (`sprop-parameter-sets`), never in the stream; `--resize-after SECS` changes
//! the resolution (to `--resize-to`, default half size) once, mid-stream, so the encoder sends a
//! new SPS.

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
    /// With `false`, H.264 parameter sets go only into the SDP, not into the stream (synthetic
    /// H.264 source only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    inband_params: bool,
    /// Changes the resolution once, this many seconds after a mount's pipeline started
    /// (synthetic source only).
    #[arg(long, value_name = "SECS")]
    resize_after: Option<u32>,
    /// The resolution after `--resize-after`, `WIDTHxHEIGHT` (default: half of each side).
    #[arg(long, value_name = "WxH", requires = "resize_after", value_parser = parse_size)]
    resize_to: Option<(u32, u32)>,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let parsed = s
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
    match parsed {
        Some((w, h)) if w >= 16 && h >= 16 && w % 2 == 0 && h % 2 == 0 => Ok((w, h)),
        _ => Err(format!(
            "{s:?} is not WIDTHxHEIGHT with even sides of at least 16"
        )),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.mounts == 0 {
        bail!("--mounts must be at least 1");
    }
    if args.fps == 0 || args.width == 0 || args.height == 0 {
        bail!("--width, --height and --fps must be positive");
    }
    if !args.inband_params && (args.codec != Codec::H264 || args.file.is_some()) {
        bail!("--inband-params false needs the synthetic H.264 source (no --file, --codec h264)");
    }
    if args.resize_after.is_some() && args.file.is_some() {
        bail!("--resize-after needs a live-encoded source (no --file)");
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
        if let Some(secs) = args.resize_after {
            let size = args
                .resize_to
                .unwrap_or(((args.width / 4) * 2, (args.height / 4) * 2));
            factory.connect_media_configure(move |_, media| resize_later(media, secs, size));
        }
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

/// Name of the raw-video capsfilter that sets the encoded size (`--resize-after` edits it).
const SIZE_FILTER: &str = "size";

/// After `secs`, sets the size capsfilter of `media`'s pipeline to `(width, height)`: the source
/// renegotiates and the encoder restarts with a new SPS/PPS at a key frame.
fn resize_later(media: &rtsp_server::RTSPMedia, secs: u32, (width, height): (u32, u32)) {
    let Some(filter) = media
        .element()
        .downcast::<gst::Bin>()
        .ok()
        .and_then(|bin| bin.by_name(SIZE_FILTER))
    else {
        eprintln!("test_camera: no {SIZE_FILTER} capsfilter to resize");
        return;
    };
    glib::timeout_add_seconds_once(secs, move || {
        let caps: gst::Caps = filter.property("caps");
        let mut caps = caps.copy();
        if let Some(s) = caps.make_mut().structure_mut(0) {
            s.set("width", width as i32);
            s.set("height", height as i32);
        }
        filter.set_property("caps", &caps);
        eprintln!("test_camera: resized to {width}x{height}");
    });
}

fn launch_line(args: &Args) -> Result<String> {
    let (parse, pay) = match args.codec {
        Codec::H264 => ("h264parse", "rtph264pay"),
        Codec::H265 => ("h265parse", "rtph265pay"),
    };
    // config-interval=-1: parameter sets with every key frame, so late joiners can decode;
    // 0 with --inband-params false, where the SDP is the only place they are sent.
    let interval = if args.inband_params { -1 } else { 0 };
    let payloader = format!("{pay} name=pay0 pt=96 config-interval={interval}");
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
                 ! videoconvert ! videoscale ! capsfilter name={SIZE_FILTER} caps=\"video/x-raw,format=I420,width={},height={},framerate={}/1\"",
                path.replace('"', "\\\""),
                args.width,
                args.height,
                args.fps
            )
        }
        None => format!(
            "videotestsrc is-live=true pattern=ball ! capsfilter name={SIZE_FILTER} caps=\"video/x-raw,format=I420,width={},height={},framerate={}/1\"",
            args.width, args.height, args.fps
        ),
    };
    let encoder = match args.codec {
        // repeat-headers=0 keeps x264 from writing SPS/PPS before each IDR; avc output puts them
        // in codec_data, from which the payloader fills sprop-parameter-sets.
        Codec::H264 if !args.inband_params => format!(
            "x264enc tune=zerolatency speed-preset=ultrafast bframes=0 key-int-max={gop} \
             option-string=scenecut=0:repeat-headers=0 ! video/x-h264,stream-format=avc,alignment=au"
        ),
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
