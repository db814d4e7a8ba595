//! Recording RTSP cameras through retina (`backend = "retina"`) against the real RTSP server
//! (gst-rtsp-server, tests/support) with the real daemon: the same stored result as GStreamer.

mod harness;
mod support;

use harness::*;
use std::time::Duration;
use support::TestCamera;
use vidgest::store::FragmentMeta;

const NS: i64 = 1_000_000_000;

/// One camera table per `(name, url, extra source keys)`, all on retina.
fn retina_config(cameras: &[(&str, &str, &str)]) -> String {
    let mut s =
        String::from("[agent]\ndata_dir = \"{data_dir}\"\n[storage]\nmin_free = \"1MiB\"\n");
    for (name, url, extra) in cameras {
        s.push_str(&format!(
            "[[camera]]\nname = \"{name}\"\nfragment_duration = \"2s\"\nretention = \"1h\"\nstall_timeout = \"3s\"\n[camera.source]\nkind = \"rtsp\"\nbackend = \"retina\"\nurl = \"{url}\"\nconnect_timeout = \"3s\"\n{extra}"
        ));
    }
    s
}

/// Stops the daemon (SIGTERM must exit 0) and checks what it stored: numbered without holes,
/// key frames first, an ffprobe-readable stream file that decodes. Returns the fragments.
fn stop_and_check(
    daemon: Daemon,
    dir: &std::path::Path,
    camera: &str,
    codec: &str,
    size: (u32, u32),
) -> Vec<FragmentMeta> {
    let data_dir = daemon.data_dir.clone();
    let log = daemon.log_text();
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
    assert!(
        logged_state(&log, camera, "Streaming", "recording"),
        "{log}"
    );
    let frags = read_fragments(&data_dir, camera);
    for (i, f) in frags.iter().enumerate() {
        assert_eq!(f.fragment_number, i as u64 + 1);
    }
    assert_key_frame_starts(&data_dir, &frags);
    let file = dir.join(format!("{camera}.mp4"));
    write_stream_file(&data_dir, &frags, &file);
    let probe = ffprobe(&file);
    assert_eq!(probe["streams"][0]["codec_name"], codec);
    assert_eq!(probe["streams"][0]["width"], size.0);
    assert_eq!(probe["streams"][0]["height"], size.1);
    let packets = probe["packets"].as_array().unwrap().len() as u32;
    assert_eq!(packets, frags.iter().map(|f| f.sample_count).sum::<u32>());
    assert_decodes(&file);
    frags
}

#[test]
fn retina_records_h264_over_tcp_like_gstreamer() {
    let cam = TestCamera::start(&[
        "--codec", "h264", "--fps", "15", "--gop", "15", "--width", "320", "--height", "240",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let url = cam.mount_url(0);
    let daemon = Daemon::start(dir.path(), &retina_config(&[("front", &url, "")]));
    eventually(Duration::from_secs(60), "4 fragments", || {
        (daemon.fragments("front").len() >= 4).then_some(())
    });
    let frags = stop_and_check(daemon, dir.path(), "front", "h264", (320, 240));
    // One session, continuous time: no discontinuity, producer timestamps without gaps, about
    // 15 fps, and fragments cut at the 2 s key frames.
    assert!(frags.iter().all(|f| !f.discontinuity), "{frags:?}");
    for w in frags.windows(2) {
        let gap = w[1].producer_ns - w[0].producer_end_ns();
        assert!(gap.abs() < NS / 20, "gap {gap} ns");
    }
    for f in &frags[..frags.len() - 1] {
        let ms = f.duration_ns / 1_000_000;
        assert!((1900..=4100).contains(&ms), "fragment lasts {ms} ms");
        let fps = f.sample_count as f64 * 1000.0 / ms as f64;
        assert!((8.0..=16.0).contains(&fps), "{fps:.1} fps");
    }
    for f in &frags {
        let lag = f.server_ns - f.producer_end_ns();
        assert!(
            (-NS / 2..5 * NS).contains(&lag),
            "server {lag} ns after producer end"
        );
    }
}

#[test]
fn retina_records_h265_over_udp() {
    let cam = TestCamera::start(&[
        "--codec", "h265", "--fps", "15", "--gop", "15", "--width", "320", "--height", "240",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let url = cam.mount_url(0);
    let daemon = Daemon::start(
        dir.path(),
        &retina_config(&[("hevc", &url, "transport = \"udp\"\n")]),
    );
    eventually(Duration::from_secs(60), "3 fragments", || {
        (daemon.fragments("hevc").len() >= 3).then_some(())
    });
    stop_and_check(daemon, dir.path(), "hevc", "hevc", (320, 240));
}

/// Issue 12: GStreamer starts on first need only. A daemon recording a retina camera without
/// detection never initialises it; observed through `GST_REGISTRY`, the plugin registry file that
/// `gst_init` reads, or scans the plugins into and writes when it is missing.
#[test]
fn retina_without_detection_never_starts_gstreamer() {
    let cam = TestCamera::start(&[
        "--fps", "15", "--gop", "15", "--width", "320", "--height", "240",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("vidgest.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let text = retina_config(&[("front", &cam.mount_url(0), "")])
        .replace("{data_dir}", &data_dir.display().to_string())
        + &format!("[api]\nlisten = \"127.0.0.1:{port}\"\n");
    std::fs::write(&config, text).unwrap();
    let registry = dir.path().join("registry.bin");
    let daemon = Daemon::start_with_env(
        data_dir,
        config,
        &[("GST_REGISTRY", registry.to_str().unwrap())],
    );
    eventually(Duration::from_secs(60), "2 fragments", || {
        (daemon.fragments("front").len() >= 2).then_some(())
    });
    daemon.assert_running();
    assert!(
        !registry.exists(),
        "GStreamer was initialised (registry written) for a retina camera without detection"
    );
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}

#[test]
fn retina_answers_digest_auth_and_reports_wrong_credentials() {
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
        "digest",
        "--user",
        "viewer",
        "--password",
        "s3cr:t",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let good = cam.mount_url(0).replace("rtsp://", "rtsp://viewer:s3cr:t@");
    let bad = cam.mount_url(0).replace("rtsp://", "rtsp://viewer:nope@");
    let daemon = Daemon::start(
        dir.path(),
        &retina_config(&[("good", &good, ""), ("bad", &bad, "")]),
    );
    eventually(
        Duration::from_secs(60),
        "2 fragments with credentials",
        || (daemon.fragments("good").len() >= 2).then_some(()),
    );
    eventually(Duration::from_secs(30), "the refusal in the log", || {
        let log = daemon.log_text();
        logged_state(
            &log,
            "bad",
            "Backoff",
            "camera refused the credentials (401); retrying in",
        )
        .then_some(())
    });
    let log = daemon.log_text();
    assert!(!log.contains("s3cr:t") && !log.contains("nope"), "{log}");
    stop_and_check(daemon, dir.path(), "good", "h264", (320, 240));
}

#[test]
fn retina_camera_reconnects_after_restart_without_disturbing_others() {
    let port = support::free_port();
    let port_s = port.to_string();
    let mut flaky = TestCamera::start(&["--port", &port_s, "--gop", "15", "--fps", "15"]);
    let steady = TestCamera::start(&["--gop", "15", "--fps", "15"]);
    let dir = tempfile::tempdir().unwrap();
    let (flaky_url, steady_url) = (flaky.mount_url(0), steady.mount_url(0));
    let daemon = Daemon::start(
        dir.path(),
        &retina_config(&[("flaky", &flaky_url, ""), ("steady", &steady_url, "")]),
    );
    eventually(Duration::from_secs(90), "both cameras recording", || {
        (daemon.fragments("flaky").len() >= 2 && daemon.fragments("steady").len() >= 2)
            .then_some(())
    });
    flaky.kill();
    let before = daemon.fragments("flaky").len();
    eventually(
        Duration::from_secs(30),
        "the flaky camera noticed as down",
        || {
            let log = daemon.log_text();
            logged_state(&log, "flaky", "Backoff", "; retrying in").then_some(())
        },
    );
    let _flaky = TestCamera::start(&["--port", &port_s, "--gop", "15", "--fps", "15"]);
    let resumed = eventually(Duration::from_secs(90), "recording to resume", || {
        let frags = daemon.fragments("flaky");
        frags.iter().skip(before).find(|f| f.discontinuity).cloned()
    });
    let steady_count = daemon.fragments("steady").len();
    eventually(Duration::from_secs(30), "more steady fragments", || {
        (daemon.fragments("steady").len() >= steady_count + 2).then_some(())
    });
    let data_dir = daemon.data_dir.clone();
    let log = daemon.log_text();
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
    assert!(
        logged_state(&log, "flaky", "Starting", "connecting"),
        "{log}"
    );

    let flaky_frags = read_fragments(&data_dir, "flaky");
    let idx = flaky_frags
        .iter()
        .position(|f| f.fragment_number == resumed.fragment_number)
        .unwrap();
    assert!(resumed.producer_ns > flaky_frags[idx - 1].producer_end_ns());
    assert!(flaky_frags[..idx].iter().all(|f| !f.discontinuity));
    assert_key_frame_starts(&data_dir, &flaky_frags);
    let steady_frags = read_fragments(&data_dir, "steady");
    assert!(steady_frags.iter().all(|f| !f.discontinuity));
    for w in steady_frags.windows(2) {
        let gap = w[1].producer_ns - w[0].producer_end_ns();
        assert!(gap.abs() < NS / 20, "steady camera has a {gap} ns gap");
    }
    assert_key_frame_starts(&data_dir, &steady_frags);
}

#[test]
fn retina_unreachable_camera_backs_off_with_a_one_line_reason() {
    let port = support::free_port();
    let url = format!("rtsp://admin:hunter2@127.0.0.1:{port}/cam");
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &retina_config(&[("late", &url, "")]));
    let log = eventually(Duration::from_secs(30), "two connection failures", || {
        daemon.assert_running();
        let log = daemon.log_text();
        let failures = log
            .lines()
            .filter(|l| l.contains("camera=late ") && l.contains("; retrying in "))
            .count();
        (failures >= 2).then_some(log)
    });
    assert!(!log.contains("hunter2"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("camera=late ") && l.contains("; retrying in "))
        .unwrap();
    assert!(line.contains("state=Backoff"), "{line}");
    // Retina's error without its multi-line context.
    assert!(!line.contains("conn:"), "{line}");
    assert!(daemon.terminate().success());
}
