//! Camera quirks (issue 12, docs: design note §6): the real daemon records `examples/test_camera`
//! through a fault-injecting RTSP proxy (tests/support/rtsp_proxy.rs) or with a quirky camera
//! flag, next to a second camera that must stay undisturbed.
//!
//! Each quirk is a function taking the RTSP [`Backend`]; the `backends!` list at the end runs
//! them on each backend (GStreamer's rtspsrc and retina). A quirk a
//! backend cannot handle is `#[ignore]`d there with the measured reason, never skipped silently.

#[path = "support/api.rs"]
mod api_support;
mod harness;
#[path = "support/rtsp_proxy.rs"]
mod rtsp_proxy;
mod support;

use harness::*;
use rtsp_proxy::{Faults, RtspProxy, SdpEdit};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::TestCamera;
use vidgest::store::{FragmentMeta, StoreReader};

const NS: i64 = 1_000_000_000;

/// The RTSP client that records the cameras, as a `[camera.source]` TOML line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Gstreamer,
    Retina,
}

impl Backend {
    fn toml_line(self) -> &'static str {
        match self {
            // GStreamer is the only backend until `source.backend` exists (issue 12 slice B);
            // then this becomes `backend = "gstreamer"` like the line below.
            Backend::Gstreamer => "backend = \"gstreamer\"\n",
            Backend::Retina => "backend = \"retina\"\n",
        }
    }
}

/// A daemon config: 2 s fragments, 3 s stall and connect timeouts; `extra` goes into every
/// `[camera.source]` (e.g. `transport = "udp"`).
fn config(backend: Backend, cameras: &[(&str, &str)], extra: &str) -> String {
    let mut s =
        String::from("[agent]\ndata_dir = \"{data_dir}\"\n[storage]\nmin_free = \"1MiB\"\n");
    for (name, url) in cameras {
        s.push_str(&format!(
            "[[camera]]\nname = \"{name}\"\nfragment_duration = \"2s\"\nretention = \"1h\"\nstall_timeout = \"3s\"\n\
             [camera.source]\nkind = \"rtsp\"\nurl = \"{url}\"\nconnect_timeout = \"3s\"\n{}{extra}",
            backend.toml_line()
        ));
    }
    s
}

/// One camera process with two mounts: `/cam0` for the quirk (usually behind the proxy),
/// `/cam1` for the camera that must not notice.
fn two_mount_camera(extra_args: &[&str]) -> TestCamera {
    let mut args = vec![
        "--mounts", "2", "--fps", "15", "--gop", "15", "--width", "320", "--height", "240",
    ];
    args.extend_from_slice(extra_args);
    TestCamera::start(&args)
}

fn camera_addr(cam: &TestCamera) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], cam.port))
}

/// The quirk camera behind a proxy with `faults`, plus the direct camera, recorded by one
/// daemon as "quirk" and "other".
struct Setup {
    _cam: TestCamera,
    proxy: RtspProxy,
    daemon: Daemon,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// Stops the daemon (SIGTERM must exit 0). Its data dir stays while the returned guard
    /// lives, and so do the proxy's counters.
    fn stop(self) -> (PathBuf, RtspProxy, tempfile::TempDir) {
        let data_dir = self.daemon.data_dir.clone();
        assert!(self.daemon.terminate().success());
        (data_dir, self.proxy, self._dir)
    }
}

fn setup(backend: Backend, camera_args: &[&str], faults: Faults, extra: &str) -> Setup {
    let cam = two_mount_camera(camera_args);
    let proxy = RtspProxy::start(camera_addr(&cam), faults).expect("start the proxy");
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &config(
            backend,
            &[("quirk", &proxy.url("/cam0")), ("other", &cam.mount_url(1))],
            extra,
        ),
    );
    Setup {
        _cam: cam,
        proxy,
        daemon,
        _dir: dir,
    }
}

/// `setup` without camera flags, with the REST API on a free port (returned, for the
/// cameras' counters) and `fragment` as the quirk camera's fragment duration.
fn setup_with_api(backend: Backend, faults: Faults, fragment: &str) -> (Setup, u16) {
    let cam = two_mount_camera(&[]);
    let proxy = RtspProxy::start(camera_addr(&cam), faults).expect("start the proxy");
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cameras = [("quirk", proxy.url("/cam0")), ("other", cam.mount_url(1))];
    let cameras: Vec<(&str, &str)> = cameras.iter().map(|(n, u)| (*n, u.as_str())).collect();
    // The quirk camera comes first in the config.
    let toml = config(backend, &cameras, "").replacen(
        "fragment_duration = \"2s\"",
        &format!("fragment_duration = \"{fragment}\""),
        1,
    ) + &format!("[api]\nlisten = \"127.0.0.1:{port}\"\n");
    let daemon = api_support::start_listening(dir.path(), port, &toml);
    let setup = Setup {
        _cam: cam,
        proxy,
        daemon,
        _dir: dir,
    };
    (setup, port)
}

/// Counter `name` of `camera` from `GET /api/v1/cameras` (0 while it is not listed).
fn counter(port: u16, camera: &str, name: &str) -> u64 {
    let url = format!("http://127.0.0.1:{port}/api/v1/cameras");
    let v = api_support::http_get(&url, None).json();
    v["cameras"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == camera)
        .and_then(|c| c["counters"][name].as_u64())
        .unwrap_or(0)
}

/// Waits until counter `name` of `camera` is above 0 (sender reports come seconds apart).
fn wait_counter(s: &Setup, port: u16, camera: &str, name: &str) {
    eventually(Duration::from_secs(60), name, || {
        s.daemon.assert_running();
        (counter(port, camera, name) > 0).then_some(())
    });
}

/// Server time minus producer end of each fragment: how long after the camera's picture
/// (as the mapping says) the fragment was stored.
fn lags(frags: &[FragmentMeta]) -> Vec<i64> {
    frags
        .iter()
        .map(|f| f.server_ns - f.producer_end_ns())
        .collect()
}

fn wait_fragments(daemon: &Daemon, camera: &str, n: usize, what: &str) -> Vec<FragmentMeta> {
    eventually(Duration::from_secs(90), what, || {
        daemon.assert_running();
        Some(daemon.fragments(camera)).filter(|f| f.len() >= n)
    })
}

/// The "other" camera recorded straight through: no discontinuity, no gap between fragments.
fn assert_undisturbed(data_dir: &Path) {
    let frags = read_fragments(data_dir, "other");
    assert!(frags.len() >= 2, "other camera: {} fragments", frags.len());
    for f in &frags {
        assert!(
            !f.discontinuity,
            "other camera: fragment {} flagged",
            f.fragment_number
        );
    }
    for w in frags.windows(2) {
        let gap = w[1].producer_ns - w[0].producer_end_ns();
        assert!(gap.abs() < NS / 20, "other camera has a {gap} ns gap");
    }
    assert_key_frame_starts(data_dir, &frags);
}

/// Writes each init segment's fragments as one file; returns (init width, height, file) in
/// order of first use.
fn stream_files(
    data_dir: &Path,
    frags: &[FragmentMeta],
    out: &Path,
) -> Vec<(u32, u32, std::path::PathBuf)> {
    let r = StoreReader::open(&data_dir.join("video")).unwrap();
    let mut by_init: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    let mut order = Vec::new();
    for f in frags {
        let bytes = by_init.entry(f.init_id).or_insert_with(|| {
            order.push(f.init_id);
            r.init(f.init_id).unwrap().data
        });
        bytes.extend(r.read_fragment(f).unwrap());
    }
    order
        .iter()
        .map(|id| {
            let init = r.init(*id).unwrap();
            let path = out.join(format!("init{id}.mp4"));
            std::fs::write(&path, &by_init[id]).unwrap();
            (init.width, init.height, path)
        })
        .collect()
}

/// The camera's state lines ("...; retrying in N s") from the log.
fn retry_lines(log: &str, camera: &str) -> Vec<String> {
    let tag = format!("camera={camera} ");
    log.lines()
        .filter(|l| l.contains(&tag) && l.contains("; retrying in "))
        .map(str::to_owned)
        .collect()
}

// ---- quirks ----

/// No RTCP sender reports reach the client: recording is continuous and the wall-clock mapping
/// (arrival based) keeps producer time close to server time.
fn no_rtcp(backend: Backend) {
    let faults = Faults {
        drop_rtcp: true,
        ..Faults::default()
    };
    let (s, port) = setup_with_api(backend, faults, "2s");
    wait_fragments(&s.daemon, "quirk", 5, "5 fragments without RTCP");
    wait_fragments(&s.daemon, "other", 2, "2 fragments of the other camera");
    assert_eq!(counter(port, "quirk", "rtcp_sender_reports"), 0);
    let (data_dir, proxy, _dir) = s.stop();
    assert!(
        proxy
            .stats()
            .rtcp_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the camera sent no RTCP to drop: the test proves nothing"
    );
    let frags = read_fragments(&data_dir, "quirk");
    for f in &frags {
        assert!(!f.discontinuity, "fragment {} flagged", f.fragment_number);
        let lag = f.server_ns - f.producer_end_ns();
        assert!(
            (-NS / 2..5 * NS).contains(&lag),
            "server time {lag} ns after producer end"
        );
    }
    for w in frags.windows(2) {
        let gap = w[1].producer_ns - w[0].producer_end_ns();
        assert!(gap.abs() < NS / 20, "{gap} ns gap");
    }
    assert_key_frame_starts(&data_dir, &frags);
    assert_undisturbed(&data_dir);
}

/// The camera's clock says its pictures are 400 ms older than their arrival (RTCP sender
/// reports moved back 400 ms by the proxy): producer timestamps follow it, about 400 ms further
/// from the storing time than the other camera's. 10 s fragments, so that the first report
/// (1.3 to 5.8 s after PLAY from test_camera, measured) comes before the first fragment is
/// stored; a later one could not move stored video back (docs/capture.md#timestamps).
fn rtcp_camera_clock(backend: Backend) {
    let faults = Faults {
        sr_ntp_shift_ms: -400,
        ..Faults::default()
    };
    let (s, port) = setup_with_api(backend, faults, "10s");
    wait_counter(&s, port, "quirk", "rtcp_sender_reports");
    wait_fragments(&s.daemon, "quirk", 2, "2 fragments of the camera");
    wait_fragments(&s.daemon, "other", 3, "3 fragments of the other camera");
    assert_eq!(counter(port, "quirk", "clock_hints_ignored"), 0);
    assert_eq!(
        counter(port, "quirk", "clock_resyncs"),
        0,
        "the first report came late"
    );
    let (data_dir, _proxy, _dir) = s.stop();
    let frags = read_fragments(&data_dir, "quirk");
    let mut other = lags(&read_fragments(&data_dir, "other"));
    other.sort_unstable();
    let reference = other[other.len() / 2];
    for (f, lag) in frags.iter().zip(lags(&frags)) {
        assert!(!f.discontinuity, "fragment {} flagged", f.fragment_number);
        // Arrival based (no RTCP mapping), this would be about 0.
        let earlier = lag - reference;
        assert!(
            (NS / 4..NS * 7 / 10).contains(&earlier),
            "fragment {}: producer time {} ms earlier than the other camera's",
            f.fragment_number,
            earlier / 1_000_000
        );
    }
    assert_key_frame_starts(&data_dir, &frags);
    assert_undisturbed(&data_dir);
}

/// A camera clock an hour ahead (sender reports moved by the proxy) is not believed: the
/// reports are counted as ignored, logged once, and the mapping stays arrival-based.
fn rtcp_camera_clock_far_off(backend: Backend) {
    let faults = Faults {
        sr_ntp_shift_ms: 3_600_000,
        ..Faults::default()
    };
    let (s, port) = setup_with_api(backend, faults, "2s");
    wait_counter(&s, port, "quirk", "clock_hints_ignored");
    wait_fragments(&s.daemon, "quirk", 4, "4 fragments of the camera");
    assert!(counter(port, "quirk", "rtcp_sender_reports") > 0);
    assert_eq!(counter(port, "other", "clock_hints_ignored"), 0);
    let log = s.daemon.log_text();
    let (data_dir, _proxy, _dir) = s.stop();
    let warned = log
        .lines()
        .filter(|l| l.contains("camera=quirk") && l.contains("RTCP sender report) is off ours"))
        .count();
    assert_eq!(warned, 1, "logged once per session:\n{log}");
    assert!(
        log.contains("offset_s=\"+3600."),
        "the offset is logged:\n{log}"
    );
    let frags = read_fragments(&data_dir, "quirk");
    for (f, lag) in frags.iter().zip(lags(&frags)) {
        assert!(!f.discontinuity, "fragment {} flagged", f.fragment_number);
        assert!(
            (-NS / 2..5 * NS).contains(&lag),
            "server time {lag} ns after producer end"
        );
    }
    assert_undisturbed(&data_dir);
}

/// Records, one init segment, every fragment a key-frame start, and the whole stream decodes.
fn assert_clean_recording(data_dir: &Path, camera: &str, width: u32, height: u32) {
    let frags = read_fragments(data_dir, camera);
    assert_key_frame_starts(data_dir, &frags);
    let out = tempfile::tempdir().unwrap();
    let files = stream_files(data_dir, &frags, out.path());
    assert_eq!(
        files.len(),
        1,
        "one init segment: {:?}",
        files.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>()
    );
    assert_eq!((files[0].0, files[0].1), (width, height));
    assert_decodes(&files[0].2);
}

/// A camera whose SDP the proxy edits with `edit`: records 3 fragments, stops, and checks the
/// recording is clean at the stream's size. Returns the stopped setup's data dir and proxy.
fn sdp_quirk(
    backend: Backend,
    edit: SdpEdit,
    what: &str,
) -> (PathBuf, RtspProxy, tempfile::TempDir) {
    let faults = Faults {
        sdp: vec![edit],
        ..Faults::default()
    };
    let s = setup(backend, &[], faults, "");
    wait_fragments(&s.daemon, "quirk", 3, &format!("3 fragments {what}"));
    let stopped = s.stop();
    assert_clean_recording(&stopped.0, "quirk", 320, 240);
    stopped
}

fn sdp_edits(proxy: &RtspProxy) -> u64 {
    proxy
        .stats()
        .sdp_edits
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// No `sprop-parameter-sets` in the SDP: the parameter sets come in-band only.
fn inband_params_only(backend: Backend) {
    let (data_dir, proxy, _dir) =
        sdp_quirk(backend, SdpEdit::StripSpropParameterSets, "without sprop");
    assert!(sdp_edits(&proxy) > 0);
    assert_undisturbed(&data_dir);
}

/// Parameter sets only in the SDP, never in the stream (`test_camera --inband-params false`).
fn out_of_band_params_only(backend: Backend) {
    let s = setup(
        backend,
        &["--inband-params", "false"],
        Faults::default(),
        "",
    );
    wait_fragments(&s.daemon, "quirk", 3, "3 fragments with sprop only");
    let (data_dir, _, _dir) = s.stop();
    assert_clean_recording(&data_dir, "quirk", 320, 240);
    assert_undisturbed(&data_dir);
}

/// `sprop-parameter-sets` that do not parse: the in-band parameter sets win.
fn corrupt_sprop(backend: Backend) {
    let (data_dir, _, _dir) = sdp_quirk(
        backend,
        SdpEdit::CorruptSpropParameterSets,
        "with a corrupt sprop",
    );
    assert_undisturbed(&data_dir);
}

/// The SPS/PPS of x264 at 640x480 (gst-launch `x264enc ! rtph264pay`), for a camera whose SDP
/// announces another resolution than it sends.
const SPROP_640X480: &str = "Z0LAFtoCgPbAWoMDA1KAAAADAIAAAA9HixdQ,aM48gA==";

/// `sprop-parameter-sets` of another resolution than the stream's in-band SPS: the in-band
/// parameter sets win, so no stored fragment uses the SDP's size.
fn sprop_differs_from_inband(backend: Backend) {
    let (data_dir, _, _dir) = sdp_quirk(
        backend,
        SdpEdit::ReplaceSpropParameterSets(SPROP_640X480.into()),
        "with a different sprop",
    );
    assert_undisturbed(&data_dir);
}

/// A short session timeout (4 s): the client keeps the session alive with requests at least
/// that often, and the session lasts well beyond it.
fn session_timeout_keepalive(backend: Backend) {
    let faults = Faults {
        session_timeout_s: Some(4),
        ..Faults::default()
    };
    let s = setup(backend, &[], faults, "");
    // 6 fragments of 2 s: 12 s of one session, three timeouts long.
    wait_fragments(&s.daemon, "quirk", 6, "6 fragments with timeout=4");
    let stats = s.proxy.stats();
    let keepalives = ["OPTIONS", "GET_PARAMETER", "SET_PARAMETER"]
        .iter()
        .map(|m| stats.requests(m))
        .sum::<u64>();
    let describes = stats.requests("DESCRIBE");
    let (data_dir, _, _dir) = s.stop();
    assert_eq!(describes, 1, "the session was never restarted");
    assert!(keepalives >= 3, "{keepalives} keepalive requests in 12 s");
    let frags = read_fragments(&data_dir, "quirk");
    assert!(frags.iter().all(|f| !f.discontinuity));
}

/// The camera's RTP clock jumps by 2^31 ticks (about 6.6 hours at 90 kHz) mid-stream: the
/// recording must not jump with it. It goes on (after a reconnect or a flagged discontinuity),
/// and producer time stays within the bounds of the wall clock.
fn rtp_timestamp_jump(backend: Backend) {
    let faults = Faults {
        // About 3 s of 320x240 video at 15 fps (a few packets per frame).
        rtp_timestamp_jump_after: Some(150),
        ..Faults::default()
    };
    let s = setup(backend, &[], faults, "");
    let jumped = eventually(
        Duration::from_secs(90),
        "3 fragments after the jump",
        || {
            s.daemon.assert_running();
            let frags = s.daemon.fragments("quirk");
            (frags
                .iter()
                .filter(|f| f.producer_ns > frags[0].producer_ns + 4 * NS)
                .count()
                >= 3)
                .then_some(frags)
        },
    );
    let (data_dir, _, _dir) = s.stop();
    assert!(!jumped.is_empty());
    let frags = read_fragments(&data_dir, "quirk");
    for f in &frags {
        let lag = f.server_ns - f.producer_end_ns();
        assert!(
            (-NS / 2..5 * NS).contains(&lag),
            "fragment {}: server time {lag} ns after producer end",
            f.fragment_number
        );
    }
    for w in frags.windows(2) {
        assert!(
            w[1].producer_ns >= w[0].producer_end_ns() - NS / 20,
            "time goes back"
        );
    }
    assert_key_frame_starts(&data_dir, &frags);
    assert_undisturbed(&data_dir);
}

/// No `a=range` (live streams often omit it): nothing changes.
fn missing_range(backend: Backend) {
    sdp_quirk(backend, SdpEdit::StripRange, "without a=range");
}

/// No `a=control` at all: a client falls back to the aggregate (base) URL for SETUP, which
/// gst-rtsp-server accepts for a single-stream media, as many cameras do.
fn missing_control(backend: Backend) {
    let (data_dir, proxy, _dir) = sdp_quirk(backend, SdpEdit::StripControl, "without a=control");
    assert!(sdp_edits(&proxy) > 0);
    assert!(proxy.stats().requests("SETUP") >= 1);
    assert_undisturbed(&data_dir);
}

/// No `a=rtpmap` for the dynamic payload type 96: the encoding is unknown.
fn missing_rtpmap(backend: Backend) {
    let faults = Faults {
        sdp: vec![SdpEdit::StripLinesStartingWith("a=rtpmap:".into())],
        ..Faults::default()
    };
    let s = setup(backend, &[], faults, "");
    let lines = eventually(Duration::from_secs(60), "two failed sessions", || {
        s.daemon.assert_running();
        Some(retry_lines(&s.daemon.log_text(), "quirk")).filter(|l| l.len() >= 2)
    });
    wait_fragments(&s.daemon, "other", 3, "3 fragments of the other camera");
    let (data_dir, _, _dir) = s.stop();
    eprintln!("quirk camera state: {}", lines[0]);
    assert_clear_reason(&lines[0]);
    assert!(read_fragments(&data_dir, "quirk").is_empty());
    assert_undisturbed(&data_dir);
}

/// A state detail a person can act on: a reason before "; retrying in", not a debug dump. Log
/// lines read `<time>  WARN <reason>; retrying in N s camera=NAME state=Backoff`.
fn assert_clear_reason(line: &str) {
    let detail = line.split("; retrying in ").next().unwrap();
    let reason = detail.split(" WARN ").nth(1).unwrap_or(detail).trim();
    assert!(reason.len() >= 10, "no reason in {line:?}");
    for noise in ["panicked", "Error {", "../", "0x"] {
        assert!(!reason.contains(noise), "unclear reason {reason:?}");
    }
}

/// The camera closes the TCP connection mid-stream: reconnect with backoff, the first fragment
/// after it is flagged, the other camera does not notice.
fn server_closes_connection(backend: Backend) {
    let s = setup(backend, &[], Faults::default(), "");
    let before = wait_fragments(&s.daemon, "quirk", 2, "2 fragments before the close").len();
    assert!(s.proxy.close_connections() > 0, "no connection to close");
    let resumed = eventually(Duration::from_secs(90), "a discontinuous fragment", || {
        s.daemon.assert_running();
        s.daemon
            .fragments("quirk")
            .into_iter()
            .skip(before)
            .find(|f| f.discontinuity)
    });
    let steady = s.daemon.fragments("other").len();
    wait_fragments(&s.daemon, "other", steady + 1, "the other camera to go on");
    let log = s.daemon.log_text();
    let (data_dir, proxy, _dir) = s.stop();
    assert!(!retry_lines(&log, "quirk").is_empty(), "no backoff logged");
    assert!(proxy.stats().requests("DESCRIBE") >= 2);
    let frags = read_fragments(&data_dir, "quirk");
    let idx = frags
        .iter()
        .position(|f| f.fragment_number == resumed.fragment_number)
        .unwrap();
    assert!(resumed.producer_ns > frags[idx - 1].producer_end_ns());
    assert_key_frame_starts(&data_dir, &frags);
    assert_undisturbed(&data_dir);
}

/// The camera stops sending media with the connection open: stall detection, reconnect once
/// it sends again.
fn stall(backend: Backend) {
    let s = setup(backend, &[], Faults::default(), "");
    wait_fragments(&s.daemon, "quirk", 2, "2 fragments before the stall");
    s.proxy.stall();
    eventually(Duration::from_secs(30), "the stall to be detected", || {
        retry_lines(&s.daemon.log_text(), "quirk")
            .iter()
            .any(|l| l.contains("stalled: no video for 3s"))
            .then_some(())
    });
    let before = s.daemon.fragments("quirk").len();
    s.proxy.resume();
    eventually(Duration::from_secs(90), "recording to resume", || {
        s.daemon
            .fragments("quirk")
            .into_iter()
            .skip(before)
            .find(|f| f.discontinuity)
    });
    let (data_dir, _, _dir) = s.stop();
    assert_undisturbed(&data_dir);
}

/// The resolution changes mid-stream (new SPS at a key frame): a second init segment with the
/// new size, the switch flagged, both parts decode.
fn params_change_mid_stream(backend: Backend) {
    let s = setup(
        backend,
        &["--resize-after", "5", "--resize-to", "160x120"],
        Faults::default(),
        "",
    );
    let data_dir = s.daemon.data_dir.clone();
    eventually(
        Duration::from_secs(90),
        "2 fragments after the resize",
        || {
            s.daemon.assert_running();
            let frags = s.daemon.fragments("quirk");
            let first = frags.first()?.init_id;
            (frags.iter().filter(|f| f.init_id != first).count() >= 2).then_some(())
        },
    );
    assert!(s.daemon.terminate().success());
    let frags = read_fragments(&data_dir, "quirk");
    assert_key_frame_starts(&data_dir, &frags);
    let out = tempfile::tempdir().unwrap();
    let files = stream_files(&data_dir, &frags, out.path());
    let sizes: Vec<(u32, u32)> = files.iter().map(|f| (f.0, f.1)).collect();
    // The other mount shares no pipeline with /cam0 (one media per mount), so it resizes too;
    // only the quirk camera's segments are checked here.
    assert_eq!(sizes, [(320, 240), (160, 120)], "init segments in order");
    let switch = frags
        .iter()
        .position(|f| f.init_id != frags[0].init_id)
        .unwrap();
    assert!(frags[switch].discontinuity, "the switch is flagged");
    for (_, _, file) in &files {
        assert_decodes(file);
    }
}

/// Loss inside the TCP stream (servers that drop packets internally; UDP loss takes the same
/// path): 1 RTP packet in 200 dropped. Recording goes on, every fragment starts with a key frame,
/// the other camera does not notice; with `must_decode`, every stored frame also decodes (damaged
/// access units dropped, the gap flagged).
fn rtp_loss(backend: Backend, must_decode: bool) {
    let faults = Faults {
        drop_rtp_one_in: Some(200),
        ..Faults::default()
    };
    let s = setup(backend, &[], faults, "");
    wait_fragments(&s.daemon, "quirk", 5, "5 fragments with loss");
    let (data_dir, proxy, _dir) = s.stop();
    assert!(
        proxy
            .stats()
            .rtp_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    let frags = read_fragments(&data_dir, "quirk");
    assert_key_frame_starts(&data_dir, &frags);
    assert_undisturbed(&data_dir);
    if must_decode {
        let out = tempfile::tempdir().unwrap();
        for (_, _, file) in stream_files(&data_dir, &frags, out.path()) {
            assert_decodes(&file);
        }
    }
}

fn rtp_loss_keeps_recording(backend: Backend) {
    rtp_loss(backend, false)
}

fn rtp_loss_stores_only_decodable_frames(backend: Backend) {
    rtp_loss(backend, true)
}

/// RTP over UDP (no proxy: test_camera directly).
fn udp_transport(backend: Backend) {
    let cam = two_mount_camera(&[]);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &config(
            backend,
            &[("quirk", &cam.mount_url(0))],
            "transport = \"udp\"\n",
        ),
    );
    wait_fragments(&daemon, "quirk", 3, "3 fragments over UDP");
    let data_dir = daemon.data_dir.clone();
    assert!(daemon.terminate().success());
    let frags = read_fragments(&data_dir, "quirk");
    assert_key_frame_starts(&data_dir, &frags);
}

/// Stopping the daemon ends the camera's session with TEARDOWN.
fn teardown_on_stop(backend: Backend) {
    let s = setup(backend, &[], Faults::default(), "");
    wait_fragments(&s.daemon, "quirk", 2, "2 fragments");
    assert_eq!(s.proxy.stats().requests("TEARDOWN"), 0);
    assert!(s.daemon.terminate().success());
    // terminate() waited for the daemon to exit; the proxy forwards a request before its
    // connection closes, so the count is final here.
    eventually(Duration::from_secs(5), "TEARDOWN at the camera", || {
        (s.proxy.stats().requests("TEARDOWN") >= 1).then_some(())
    });
}

/// Basic and Digest authentication (test_camera --auth), credentials in the config.
fn auth(backend: Backend, kind: &str) {
    let cam = TestCamera::start(&[
        "--fps",
        "15",
        "--gop",
        "15",
        "--width",
        "320",
        "--height",
        "240",
        "--auth",
        kind,
        "--user",
        "viewer",
        "--password",
        "s3cret",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &config(
            backend,
            &[("quirk", &cam.mount_url(0))],
            "username = \"viewer\"\npassword = \"s3cret\"\n",
        ),
    );
    wait_fragments(&daemon, "quirk", 2, "2 fragments with auth");
    let data_dir = daemon.data_dir.clone();
    assert!(daemon.terminate().success());
    assert_key_frame_starts(&data_dir, &read_fragments(&data_dir, "quirk"));
}

fn auth_basic(backend: Backend) {
    auth(backend, "basic")
}

fn auth_digest(backend: Backend) {
    auth(backend, "digest")
}

/// One `#[test]` per quirk in a module per backend: `gstreamer::no_rtcp`, ...
macro_rules! backends {
    ($module:ident, $backend:expr, [$($(#[$meta:meta])* $quirk:ident),* $(,)?]) => {
        mod $module {
            $(
                $(#[$meta])*
                #[test]
                fn $quirk() {
                    super::$quirk($backend)
                }
            )*
        }
    };
}

backends!(
    gstreamer,
    super::Backend::Gstreamer,
    [
        no_rtcp,
        inband_params_only,
        out_of_band_params_only,
        corrupt_sprop,
        sprop_differs_from_inband,
        // Measured: over TCP, rtspsrc sent no request after PLAY in 12 s with `timeout=4` (only
        // its first OPTIONS): it counts on the media flow, so a camera that enforces the
        // timeout drops it.
        #[ignore = "gstreamer backend sends no RTSP keepalive over TCP while media flows"]
        session_timeout_keepalive,
        rtp_timestamp_jump,
        missing_range,
        missing_control,
        missing_rtpmap,
        server_closes_connection,
        stall,
        params_change_mid_stream,
        rtp_loss_keeps_recording,
        // Measured: rtph264depay passes on access units damaged by the lost packet and nothing
        // flags the gap, so ffmpeg reports "corrupt decoded frame" in the stored stream.
        #[ignore = "gstreamer backend stores frames damaged by RTP loss; retina drops them (issue 12)"]
        rtp_loss_stores_only_decodable_frames,
        udp_transport,
        teardown_on_stop,
        auth_basic,
        auth_digest,
        #[ignore = "gstreamer backend maps timestamps by arrival only (no RTCP sender reports)"]
        rtcp_camera_clock,
        #[ignore = "gstreamer backend maps timestamps by arrival only (no RTCP sender reports)"]
        rtcp_camera_clock_far_off,
    ]
);

backends!(
    retina,
    super::Backend::Retina,
    [
        no_rtcp,
        inband_params_only,
        out_of_band_params_only,
        corrupt_sprop,
        sprop_differs_from_inband,
        session_timeout_keepalive,
        rtp_timestamp_jump,
        missing_range,
        missing_control,
        missing_rtpmap,
        server_closes_connection,
        stall,
        params_change_mid_stream,
        rtp_loss_keeps_recording,
        rtp_loss_stores_only_decodable_frames,
        udp_transport,
        teardown_on_stop,
        auth_basic,
        auth_digest,
        rtcp_camera_clock,
        rtcp_camera_clock_far_off,
    ]
);
