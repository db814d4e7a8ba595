//! Recording against a real RTSP server (gst-rtsp-server, tests/support) with the real daemon.

mod harness;
mod support;

use harness::*;
use std::time::Duration;
use support::TestCamera;

fn rtsp_config(cameras: &[(&str, &str)]) -> String {
    let mut s =
        String::from("[agent]\ndata_dir = \"{data_dir}\"\n[storage]\nmin_free = \"1MiB\"\n");
    for (name, url) in cameras {
        s.push_str(&format!(
            "[[camera]]\nname = \"{name}\"\nfragment_duration = \"2s\"\nretention = \"1h\"\nstall_timeout = \"3s\"\n[camera.source]\nkind = \"rtsp\"\nurl = \"{url}\"\nconnect_timeout = \"3s\"\n"
        ));
    }
    s
}

const NS: i64 = 1_000_000_000;

#[test]
fn records_rtsp_h264_into_key_frame_aligned_fragments() {
    let cam = TestCamera::start(&[
        "--codec", "h264", "--fps", "15", "--gop", "15", "--width", "320", "--height", "240",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &rtsp_config(&[("front", &cam.mount_url(0))]));
    // At least 10 s of video: six 2 s fragments.
    eventually(Duration::from_secs(60), "6 fragments", || {
        (daemon.fragments("front").len() >= 6).then_some(())
    });
    let data_dir = daemon.data_dir.clone();
    let config = daemon.config.clone();
    assert!(daemon.terminate().success(), "SIGTERM exits 0");

    let frags = read_fragments(&data_dir, "front");
    assert!(frags.len() >= 6);
    // Numbers strictly increase without holes; the last one was flushed at shutdown.
    for (i, f) in frags.iter().enumerate() {
        assert_eq!(f.fragment_number, i as u64 + 1);
        assert!(
            !f.discontinuity,
            "fragment {} flagged discontinuous",
            f.fragment_number
        );
    }
    // Cuts happen at the first key frame at or after the 2 s target: with a 1 s GOP that is 2 s,
    // or later only if the camera lagged (a loaded machine drops source frames). The exact rule
    // is checked on the packets below.
    for f in &frags[..frags.len() - 1] {
        let ms = f.duration_ns / 1_000_000;
        assert!(
            (1900..=4100).contains(&ms),
            "fragment {} lasts {ms} ms",
            f.fragment_number
        );
        let fps = f.sample_count as f64 * 1000.0 / ms as f64;
        assert!(
            (8.0..=16.0).contains(&fps),
            "fragment {} has {fps:.1} fps",
            f.fragment_number
        );
    }
    // Producer timestamps are contiguous; server timestamps follow them and increase.
    for w in frags.windows(2) {
        let gap = w[1].producer_ns - w[0].producer_end_ns();
        assert!(
            gap.abs() < NS / 20,
            "gap {gap} ns between {} and {}",
            w[0].fragment_number,
            w[1].fragment_number
        );
        assert!(w[1].server_ns > w[0].server_ns);
    }
    for f in &frags {
        let lag = f.server_ns - f.producer_end_ns();
        assert!(
            (-NS / 2..5 * NS).contains(&lag),
            "server timestamp {lag} ns after producer end"
        );
    }
    assert_key_frame_starts(&data_dir, &frags);

    // The stored stream as one file: ffprobe sees H.264 640x480 with a key frame every 30 packets.
    let file = dir.path().join("stream.mp4");
    write_stream_file(&data_dir, &frags, &file);
    let probe = ffprobe(&file);
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "h264");
    assert_eq!(stream["width"], 320);
    assert_eq!(stream["height"], 240);
    let packets = probe["packets"].as_array().unwrap();
    let total: u32 = frags.iter().map(|f| f.sample_count).sum();
    assert_eq!(packets.len() as u32, total);
    let pts = |p: &serde_json::Value| p["pts_time"].as_str().unwrap().parse::<f64>().unwrap();
    let mut index = 0usize;
    for (k, f) in frags.iter().enumerate() {
        let own = &packets[index..index + f.sample_count as usize];
        let flags = own[0]["flags"].as_str().unwrap();
        assert!(
            flags.starts_with('K'),
            "first packet of fragment {} is not a key frame",
            f.fragment_number
        );
        // No key frame at or after the target inside a fragment: there it must have been cut.
        if k + 1 < frags.len() {
            for p in &own[1..] {
                if p["flags"].as_str().unwrap().starts_with('K') {
                    // The fragmenter cuts at elapsed >= 2 s in nanoseconds; a key frame just
                    // before that may read as 2.000 s once rounded to 90 kHz ticks.
                    let offset = pts(p) - pts(&own[0]);
                    assert!(
                        offset < 2.0 + 1.0 / 90_000.0,
                        "fragment {} has a key frame {offset:.6} s in",
                        f.fragment_number
                    );
                }
            }
        }
        index += f.sample_count as usize;
    }
    assert_decodes(&file);

    // JSON listing contract.
    let (ok, out, err) = cli(&[
        "fragments",
        "front",
        "--config",
        config.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["fragment_number"], "1");
    for key in [
        "producer_timestamp",
        "server_timestamp",
        "duration_ms",
        "size_bytes",
    ] {
        assert!(first.get(key).is_some(), "missing {key}: {first}");
    }
    assert!(first["producer_timestamp"].as_str().unwrap().ends_with('Z'));

    // A clip from the middle of the recording: starts at 0, plays, about the right length.
    let start = frags[1].producer_ns as f64 / 1e9 + 0.5;
    let end = frags[3].producer_ns as f64 / 1e9 + 0.5;
    let clip = dir.path().join("clip.mp4");
    let (ok, _, err) = cli(&[
        "clip",
        "front",
        "--config",
        config.to_str().unwrap(),
        "--start",
        &format!("{start:.3}"),
        "--end",
        &format!("{end:.3}"),
        "-o",
        clip.to_str().unwrap(),
    ]);
    assert!(ok, "clip failed: {err}");
    let probe = ffprobe(&clip);
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The clip holds fragments 2..=4 (the range starts and ends inside them).
    let expected = (frags[3].producer_end_ns() - frags[1].producer_ns) as f64 / 1e9;
    assert!(
        (duration - expected).abs() < 0.2,
        "clip lasts {duration} s, fragments 2..=4 last {expected} s"
    );
    let first_pts: f64 = probe["packets"][0]["pts_time"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(first_pts.abs() < 0.001, "clip starts at {first_pts}");
    assert_decodes(&clip);
}

#[test]
fn records_rtsp_h265() {
    let cam = TestCamera::start(&[
        "--codec", "h265", "--fps", "15", "--gop", "15", "--width", "320", "--height", "240",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &rtsp_config(&[("hevc", &cam.mount_url(0))]));
    eventually(Duration::from_secs(60), "3 fragments", || {
        (daemon.fragments("hevc").len() >= 3).then_some(())
    });
    let data_dir = daemon.data_dir.clone();
    assert!(daemon.terminate().success());
    let frags = read_fragments(&data_dir, "hevc");
    assert_key_frame_starts(&data_dir, &frags);
    let file = dir.path().join("hevc.mp4");
    write_stream_file(&data_dir, &frags, &file);
    let probe = ffprobe(&file);
    assert_eq!(probe["streams"][0]["codec_name"], "hevc");
    assert_eq!(probe["streams"][0]["codec_tag_string"], "hvc1");
    assert_eq!(probe["streams"][0]["width"], 320);
    assert_decodes(&file);
}

#[test]
fn camera_reconnects_after_server_restart_without_disturbing_others() {
    let port = support::free_port();
    let port_s = port.to_string();
    let mut flaky = TestCamera::start(&["--port", &port_s, "--gop", "15", "--fps", "15"]);
    let steady = TestCamera::start(&["--gop", "15", "--fps", "15"]);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &rtsp_config(&[
            ("flaky", &flaky.mount_url(0)),
            ("steady", &steady.mount_url(0)),
        ]),
    );
    eventually(Duration::from_secs(90), "both cameras recording", || {
        (daemon.fragments("flaky").len() >= 2 && daemon.fragments("steady").len() >= 2)
            .then_some(())
    });
    flaky.kill();
    let before = daemon.fragments("flaky").len();
    // Down long enough for the daemon to notice and back off.
    eventually(
        Duration::from_secs(30),
        "the flaky camera to be noticed as down",
        || {
            let log = daemon.log_text();
            (log.contains("flaky") && log.contains("retrying in")).then_some(())
        },
    );
    let _flaky = TestCamera::start(&["--port", &port_s, "--gop", "15", "--fps", "15"]);
    let resumed = eventually(
        Duration::from_secs(90),
        "recording to resume after the restart",
        || {
            let frags = daemon.fragments("flaky");
            frags.iter().skip(before).find(|f| f.discontinuity).cloned()
        },
    );
    // Keep the steady camera running a little longer, then stop.
    let steady_count = daemon.fragments("steady").len();
    eventually(Duration::from_secs(30), "more steady fragments", || {
        (daemon.fragments("steady").len() >= steady_count + 2).then_some(())
    });
    let data_dir = daemon.data_dir.clone();
    assert!(daemon.terminate().success());

    let flaky_frags = read_fragments(&data_dir, "flaky");
    let idx = flaky_frags
        .iter()
        .position(|f| f.fragment_number == resumed.fragment_number)
        .unwrap();
    assert!(
        resumed.producer_ns > flaky_frags[idx - 1].producer_end_ns(),
        "time moves forward across the gap"
    );
    assert!(
        flaky_frags[..idx].iter().all(|f| !f.discontinuity),
        "no discontinuity before the outage"
    );
    for w in flaky_frags.windows(2) {
        assert!(w[1].fragment_number > w[0].fragment_number);
    }
    // The other camera recorded straight through: no flags, no gaps.
    let steady_frags = read_fragments(&data_dir, "steady");
    assert!(steady_frags.iter().all(|f| !f.discontinuity));
    for w in steady_frags.windows(2) {
        let gap = w[1].producer_ns - w[0].producer_end_ns();
        assert!(gap.abs() < NS / 20, "steady camera has a {gap} ns gap");
    }
    assert_key_frame_starts(&data_dir, &flaky_frags);
}

/// For each "retrying in D s" line of `camera`: the announced D and the time until the next
/// "connecting" line (the wait actually done), in seconds, from the log's own timestamps.
fn retry_waits(log: &str, camera: &str) -> Vec<(f64, f64)> {
    let tag = format!("camera={camera} ");
    let mut waits = Vec::new();
    let mut pending: Option<(i64, f64)> = None;
    for line in log.lines().filter(|l| l.contains(&tag)) {
        let Some(ts) = line
            .split_whitespace()
            .next()
            .and_then(|t| vidgest::timespec::parse_time(t, 0).ok())
        else {
            continue;
        };
        if let Some(rest) = line.split("; retrying in ").nth(1) {
            let announced: f64 = rest.split(' ').next().unwrap().parse().unwrap();
            pending = Some((ts, announced));
        } else if line.contains(" connecting ") {
            if let Some((at, announced)) = pending.take() {
                waits.push((announced, (ts - at) as f64 / 1e9));
            }
        }
    }
    waits
}

#[test]
fn unreachable_camera_backs_off_until_it_appears() {
    let port = support::free_port();
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &rtsp_config(&[("late", &url)]));
    // Three waits (1 s, 2 s, 4 s, each +-20 %): enough to see the delay grow.
    let waits = eventually(
        Duration::from_secs(60),
        "three connection failures with backoff",
        || {
            daemon.assert_running();
            Some(retry_waits(&daemon.log_text(), "late")).filter(|w| w.len() >= 3)
        },
    );
    eprintln!("(announced, waited) seconds: {waits:?}");
    for (announced, waited) in &waits {
        // The announced delay is printed to 0.1 s; the wake-up may be late on a busy machine.
        assert!(
            *waited >= announced - 0.06 && *waited <= announced + 0.5,
            "announced {announced} s but waited {waited:.3} s: {waits:?}"
        );
    }
    for w in waits.windows(2) {
        assert!(
            w[1].0 > w[0].0 && w[1].1 > w[0].1,
            "the delay does not grow: {waits:?}"
        );
    }
    assert!((0.95..=1.25).contains(&waits[0].0), "first delay {waits:?}");
    assert!(daemon.fragments("late").is_empty());
    let _cam = TestCamera::start(&["--port", &port.to_string(), "--gop", "15", "--fps", "15"]);
    eventually(
        Duration::from_secs(90),
        "recording once the camera is up",
        || (!daemon.fragments("late").is_empty()).then_some(()),
    );
    assert!(daemon.terminate().success());
}

#[test]
fn kill9_mid_recording_loses_at_most_the_fragment_in_progress() {
    let cam = TestCamera::start(&["--gop", "15", "--fps", "15"]);
    let dir = tempfile::tempdir().unwrap();
    let config = rtsp_config(&[("front", &cam.mount_url(0))]);
    let daemon = Daemon::start(dir.path(), &config);
    // Listed while the daemon runs: what a reader was shown before the kill.
    let before = eventually(Duration::from_secs(60), "3 fragments", || {
        Some(daemon.fragments("front")).filter(|f| f.len() >= 3)
    });
    let (data_dir, config_path) = (daemon.data_dir.clone(), daemon.config.clone());
    daemon.kill9();
    // Fragments may have been stored between the listing and the kill; none may have vanished.
    let at_kill = read_fragments(&data_dir, "front");
    assert_prefix(
        &before,
        &at_kill,
        "listed before the kill",
        "stored after it",
    );

    let daemon = Daemon::start_with(data_dir.clone(), config_path);
    eventually(
        Duration::from_secs(60),
        "3 more fragments after restart",
        || (daemon.fragments("front").len() >= at_kill.len() + 3).then_some(()),
    );
    assert!(daemon.terminate().success());
    let after = read_fragments(&data_dir, "front");
    // Everything listed before the kill is still there after recovery, unchanged.
    assert_prefix(
        &at_kill,
        &after,
        "stored at the kill",
        "stored after the restart",
    );
    let before = at_kill;
    // Numbering continues without reuse; the restart is flagged.
    for w in after.windows(2) {
        assert!(w[1].fragment_number > w[0].fragment_number);
    }
    assert!(after[before.len()].discontinuity);
    assert!(after[before.len()].fragment_number > before.last().unwrap().fragment_number);
    // Every listed fragment decodes.
    assert_key_frame_starts(&data_dir, &after);
    let file = dir.path().join("all.mp4");
    write_stream_file(&data_dir, &after, &file);
    assert_decodes(&file);
}

/// `shorter` (fragments listed at one time) is `longer`'s start, unchanged.
fn assert_prefix(
    shorter: &[vidgest::store::FragmentMeta],
    longer: &[vidgest::store::FragmentMeta],
    a: &str,
    b: &str,
) {
    let numbers = |f: &[vidgest::store::FragmentMeta]| {
        f.iter().map(|f| f.fragment_number).collect::<Vec<_>>()
    };
    assert!(
        longer.len() >= shorter.len() && longer[..shorter.len()] == *shorter,
        "fragments {a} {:?} are not all in those {b} {:?}",
        numbers(shorter),
        numbers(longer)
    );
}

#[test]
fn stalled_camera_is_detected_and_reconnected() {
    let cam = TestCamera::start(&["--gop", "15", "--fps", "15"]);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &rtsp_config(&[("frozen", &cam.mount_url(0))]));
    eventually(Duration::from_secs(60), "2 fragments", || {
        (daemon.fragments("frozen").len() >= 2).then_some(())
    });
    // The camera freezes with its TCP connection open: only the stall detector can notice.
    cam.signal(libc::SIGSTOP);
    eventually(Duration::from_secs(30), "the stall to be detected", || {
        logged_state(
            &daemon.log_text(),
            "frozen",
            "Backoff",
            "stalled: no video for 3s; retrying in",
        )
        .then_some(())
    });
    let before = daemon.fragments("frozen").len();
    cam.signal(libc::SIGCONT);
    let resumed = eventually(Duration::from_secs(90), "recording to resume", || {
        daemon
            .fragments("frozen")
            .into_iter()
            .skip(before)
            .find(|f| f.discontinuity)
    });
    assert!(resumed.fragment_number as usize > before);
    assert!(daemon.terminate().success());
}
