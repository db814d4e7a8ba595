//! REST playback: fragment listings and `clip.mp4` downloads from a recording daemon.

#[path = "support/api.rs"]
mod api_support;
mod harness;
mod support;

use api_support::{daemon_config, http_get, wait_for_api, Reply, TestCam};
use harness::{assert_decodes, eventually, ffprobe, Daemon};
use std::time::Duration;
use vidgest::timespec::parse_time;

fn get(port: u16, path: &str) -> Reply {
    http_get(&format!("http://127.0.0.1:{port}{path}"), None)
}

/// `curl -r RANGE URL`: status, headers (lower-cased) and body.
fn curl_range(url: &str, range: &str) -> (u16, String, Vec<u8>) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-S", "-D", "/dev/stderr", "-r", range, url])
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl -r {range} {url} failed");
    let headers = String::from_utf8_lossy(&out.stderr).to_lowercase();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, headers, out.stdout)
}

/// Epoch seconds with millisecond precision, as a query parameter.
fn secs(ns: i64) -> String {
    format!("{:.3}", ns as f64 / 1e9)
}

#[test]
fn fragments_and_clip_mp4_of_a_recorded_range() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = daemon_config(port, &[], "", &[TestCam::one_second("cam")]);
    let daemon = Daemon::start(dir.path(), &config);
    wait_for_api(&daemon, port, Duration::from_secs(30));

    // Fragments: poll until five are listed.
    let frags = eventually(Duration::from_secs(60), "five recorded fragments", || {
        let r = get(port, "/api/v1/cameras/cam/fragments?start=-10m&end=now");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let list = r.json()["fragments"].as_array().cloned().unwrap();
        (list.len() >= 5).then_some(list)
    });
    for f in &frags {
        assert!(f["number"].as_u64().is_some(), "{f}");
        assert!(f["size"].as_u64() > Some(0), "{f}");
        assert!(
            (900..=1100).contains(&f["duration_ms"].as_i64().unwrap()),
            "{f}"
        );
        for key in ["producer_timestamp", "server_timestamp"] {
            parse_time(f[key].as_str().unwrap(), 0).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
    }
    let at = |i: usize| parse_time(frags[i]["producer_timestamp"].as_str().unwrap(), 0).unwrap();
    let end_of = |i: usize| at(i) + frags[i]["duration_ms"].as_i64().unwrap() * 1_000_000;

    let limited = get(
        port,
        &format!(
            "/api/v1/cameras/cam/fragments?start={}&end=now&limit=2",
            frags[0]["producer_timestamp"].as_str().unwrap()
        ),
    );
    assert_eq!(limited.status, 200);
    let limited = limited.json()["fragments"].as_array().cloned().unwrap();
    assert_eq!(limited.len(), 2);
    assert_eq!(limited[0]["number"], frags[0]["number"]);

    // clip.mp4 of fragments 2..=4: a playable MP4 lasting about as long.
    let (start, end) = (at(1), end_of(3) - 1);
    let r = get(
        port,
        &format!(
            "/api/v1/cameras/cam/clip.mp4?start={}&end={}",
            secs(start),
            secs(end)
        ),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    let disposition = r.header("content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"cam-") && disposition.ends_with(".mp4\""),
        "{disposition}"
    );
    assert_eq!(r.header("x-vidgest-clip-parts"), Some("1"));
    let file = dir.path().join("clip.mp4");
    std::fs::write(&file, &r.body).unwrap();
    assert_decodes(&file);
    let probe = ffprobe(&file);
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = (end - start) as f64 / 1e9;
    assert!(
        (duration - expected).abs() < 1.1,
        "clip lasts {duration} s, the range {expected} s"
    );

    // HTTP Range, with curl: the whole file's length is known up front, and ranges are slices of it.
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    let stored: u64 = frags[1..=3]
        .iter()
        .map(|f| f["size"].as_u64().unwrap())
        .sum();
    assert!(
        r.body.len() as u64 > stored,
        "the clip is the init segment plus the stored fragments"
    );
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/cameras/cam/clip.mp4?start={}&end={}",
        secs(start),
        secs(end)
    );
    let len = r.body.len();
    // Safari's probe first
    let (status, headers, body) = curl_range(&url, "0-1");
    assert_eq!(status, 206, "{headers}");
    assert_eq!(body, &r.body[..2]);
    assert!(
        headers.contains(&format!("content-range: bytes 0-1/{len}")),
        "{headers}"
    );
    assert!(headers.contains("content-length: 2"), "{headers}");
    // three ranges cutting through fragments, reassembled into a file ffprobe and ffmpeg accept
    let cuts = [0, len / 3 + 7, 2 * len / 3 + 1, len];
    let mut joined = Vec::new();
    for w in cuts.windows(2) {
        let (status, headers, body) = curl_range(&url, &format!("{}-{}", w[0], w[1] - 1));
        assert_eq!(status, 206, "{headers}");
        assert!(
            headers.contains(&format!("content-range: bytes {}-{}/{len}", w[0], w[1] - 1)),
            "{headers}"
        );
        joined.extend_from_slice(&body);
    }
    assert!(joined == r.body, "the ranges reassemble the whole clip");
    let reassembled = dir.path().join("reassembled.mp4");
    std::fs::write(&reassembled, &joined).unwrap();
    assert_decodes(&reassembled);
    assert_eq!(
        ffprobe(&reassembled)["format"]["duration"],
        probe["format"]["duration"]
    );
    // open-ended and suffix ranges
    let (status, _, body) = curl_range(&url, &format!("{}-", len - 100));
    assert_eq!((status, body.as_slice()), (206, &r.body[len - 100..]));
    let (status, _, body) = curl_range(&url, "-64");
    assert_eq!((status, body.as_slice()), (206, &r.body[len - 64..]));
    // past the end: 416 with the length
    let (status, headers, _) = curl_range(&url, &format!("{len}-"));
    assert_eq!(status, 416, "{headers}");
    assert!(
        headers.contains(&format!("content-range: bytes */{len}")),
        "{headers}"
    );

    // Errors: JSON bodies with 404 and 400.
    let cases = [
        ("/api/v1/cameras/nope/fragments?start=-1m&end=now", 404),
        ("/api/v1/cameras/nope/clip.mp4?start=-1m&end=now", 404),
        (
            "/api/v1/cameras/cam/clip.mp4?start=2001-01-01T00:00:00Z&end=2001-01-01T00:01:00Z",
            404,
        ),
        ("/api/v1/cameras/cam/clip.mp4?start=-25h&end=now", 400),
        ("/api/v1/cameras/cam/fragments?start=-25h&end=now", 400),
        ("/api/v1/cameras/cam/clip.mp4?start=now&end=-1m", 400),
        ("/api/v1/cameras/cam/clip.mp4?start=yesterday&end=now", 400),
        ("/api/v1/cameras/cam/fragments?end=now", 400),
        (
            "/api/v1/cameras/cam/fragments?start=-1m&end=now&limit=0",
            400,
        ),
    ];
    for (path, status) in cases {
        let r = get(port, path);
        assert_eq!(
            r.status,
            status,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.json()["error"].is_string(), "{path}");
    }
    assert!(daemon.terminate().success());
}
