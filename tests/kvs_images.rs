//! Still images of recorded video from a real daemon: KVS GetImages through stock boto3 (the
//! client logic and the image checks are tests/py/kvs_images.py) and the REST snapshot.jpg.

#[path = "support/api.rs"]
mod api_support;
mod harness;
mod support;

use api_support::*;
use harness::*;
use std::time::{Duration, Instant};

const READER: &str = "kvs-images-token-0123456";
const WIDTH: u32 = 160;
const HEIGHT: u32 = 120;
/// Fragments recorded before the checks run.
const FRAGMENTS: usize = 5;

fn config(port: u16) -> String {
    let cam = TestCam {
        width: WIDTH,
        height: HEIGHT,
        gop: 5,
        ..TestCam::one_second("cam")
    };
    daemon_config(port, &[(READER, "read")], "", &[cam])
}

/// A daemon recording `cam`, once FRAGMENTS fragments are stored.
fn recording(dir: &std::path::Path) -> (Daemon, u16, Vec<vidgest::store::FragmentMeta>) {
    let port = support::free_port();
    let daemon = start_listening(dir, port, &config(port));
    let frags = wait_for_fragments(&daemon, "cam", FRAGMENTS);
    (daemon, port, frags[..FRAGMENTS].to_vec())
}

#[test]
fn boto3_get_images_decodes_samples_scales_and_reports_no_media() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, port, frags) = recording(dir.path());
    let mut args = stream_client_args(port, READER, "cam", &frags);
    args.extend([
        "--width".into(),
        WIDTH.to_string(),
        "--height".into(),
        HEIGHT.to_string(),
    ]);
    run_python("kvs_images.py", args);
    assert_survived_and_stop(daemon);
}

fn get(port: u16, path: &str) -> Reply {
    http_get(&format!("http://127.0.0.1:{port}{path}"), Some(READER))
}

/// (codec, width, height) of an image file by ffprobe, which must also decode it cleanly.
fn probe_image(dir: &std::path::Path, bytes: &[u8]) -> (String, u64, u64) {
    let path = dir.join("snapshot.jpg");
    std::fs::write(&path, bytes).unwrap();
    assert_decodes(&path);
    let p = ffprobe(&path);
    let s = &p["streams"][0];
    (
        s["codec_name"].as_str().unwrap().to_string(),
        s["width"].as_u64().unwrap(),
        s["height"].as_u64().unwrap(),
    )
}

#[test]
fn snapshot_jpg_latest_at_a_time_scaled_and_404_in_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, port, frags) = recording(dir.path());

    let started = Instant::now();
    let r = get(port, "/api/v1/cameras/cam/snapshot.jpg");
    eprintln!("latest snapshot: {:?}", started.elapsed());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(
        probe_image(dir.path(), &r.body),
        ("mjpeg".into(), WIDTH.into(), HEIGHT.into())
    );

    // ?at= inside the third fragment (epoch seconds and RFC 3339), scaled keeping the aspect ratio
    let at = frags[2].producer_ns + frags[2].duration_ns / 2;
    let secs = format!("{:.3}", at as f64 / 1e9);
    let r = get(
        port,
        &format!("/api/v1/cameras/cam/snapshot.jpg?at={secs}&width=80"),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(probe_image(dir.path(), &r.body), ("mjpeg".into(), 80, 60));
    let rfc = vidgest::clock::format_rfc3339(at);
    let same = get(
        port,
        &format!("/api/v1/cameras/cam/snapshot.jpg?at={rfc}&width=80"),
    );
    assert_eq!(same.status, 200);
    assert_eq!(same.body, r.body, "the same key frame by RFC 3339 time");
    let other = get(
        port,
        &format!(
            "/api/v1/cameras/cam/snapshot.jpg?at={:.3}&width=80",
            (frags[3].producer_ns + 1_000_000) as f64 / 1e9
        ),
    );
    assert_eq!(other.status, 200);
    assert_ne!(other.body, r.body, "another fragment, another key frame");

    // A burst of concurrent requests: all answered (decodes queue for their slot), and the
    // camera keeps recording meanwhile.
    let burst = Instant::now();
    let stored = try_read_fragments(&daemon.data_dir, "cam").unwrap().len();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|i| {
                let f = &frags[i % FRAGMENTS];
                s.spawn(move || {
                    (0..4)
                        .map(|_| {
                            let at = format!("{:.3}", (f.producer_ns + 1_000_000) as f64 / 1e9);
                            get(port, &format!("/api/v1/cameras/cam/snapshot.jpg?at={at}")).status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for w in workers {
            assert_eq!(w.join().unwrap(), [200; 4]);
        }
    });
    let took = burst.elapsed();
    eprintln!("32 snapshots, 8 at a time: {took:?}");
    eventually(Duration::from_secs(10), "recording to go on", || {
        let now = try_read_fragments(&daemon.data_dir, "cam").ok()?.len();
        (now > stored + 1).then_some(())
    });

    // No video: before the recording began (a gap), long ago, an unknown camera; bad input.
    let before = format!("{:.3}", (frags[0].producer_ns - 2_000_000_000) as f64 / 1e9);
    // later than anything stored, but close enough that the newest fragment is a candidate
    let future = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 5;
    for (path, status) in [
        (format!("/api/v1/cameras/cam/snapshot.jpg?at={before}"), 404),
        (
            "/api/v1/cameras/cam/snapshot.jpg?at=2001-01-01T00:00:00Z".into(),
            404,
        ),
        (format!("/api/v1/cameras/cam/snapshot.jpg?at={future}"), 404),
        ("/api/v1/cameras/nope/snapshot.jpg".into(), 404),
        ("/api/v1/cameras/cam/snapshot.jpg?at=yesterday".into(), 400),
        ("/api/v1/cameras/cam/snapshot.jpg?width=0".into(), 400),
    ] {
        let r = get(port, &path);
        assert_eq!(
            r.status,
            status,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    assert!(daemon.terminate().success());
}
