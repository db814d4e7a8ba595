//! The REST family and the one auth middleware: /api/v1 needs a token once tokens exist
//! (/healthz never does), and it shows the running cameras' state and counters.

#[path = "support/api.rs"]
mod api_support;
mod harness;
mod support;

use api_support::{daemon_config, wait_for_api, TestCam};
use harness::{eventually, Daemon};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One HTTP/1.1 request on a fresh connection: (status, headers + body as text).
fn request(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let out = String::from_utf8_lossy(&out).to_string();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    request(port, "GET", path, token)
}

fn body_json(response: &str) -> serde_json::Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

#[test]
fn rest_routes_need_a_token_and_show_camera_state() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = daemon_config(
        port,
        &[("reader-token-0123456789", "read")],
        "",
        &[TestCam::one_second("cam")],
    );
    let daemon = Daemon::start(dir.path(), &config);
    wait_for_api(&daemon, port, Duration::from_secs(30));
    assert_eq!(get(port, "/healthz", None).0, 200, "health needs no token");

    let (status, text) = get(port, "/api/v1/cameras", None);
    assert_eq!(status, 401, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{text}"
    );
    assert!(body_json(&text)["error"].is_string());
    let (status, text) = get(port, "/api/v1/cameras", Some("not-a-token-at-all"));
    assert_eq!(status, 401, "{text}");

    let cam = eventually(Duration::from_secs(60), "the camera to record", || {
        let (status, text) = get(port, "/api/v1/cameras", Some("reader-token-0123456789"));
        assert_eq!(status, 200, "{text}");
        let v = body_json(&text);
        let cam = v["cameras"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "cam"))
            .cloned()
            .unwrap_or_else(|| panic!("no camera `cam` in {v}"));
        (cam["state"] == "streaming" && cam["counters"]["fragments_stored"].as_u64() > Some(0))
            .then_some(cam)
    });
    assert!(cam["counters"]["access_units"].as_u64() > Some(0), "{cam}");
    assert!(cam["detection_stream"].is_null(), "{cam}");

    // health: everything runs, so ok and 200; the store's use and retention horizon are shown
    let (status, text) = get(port, "/api/v1/health", Some("reader-token-0123456789"));
    assert_eq!(status, 200, "{text}");
    let health = body_json(&text);
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["problems"], serde_json::json!([]), "{health}");
    assert_eq!(health["cameras"][0]["state"], "streaming", "{health}");
    let stored = &health["storage"]["cameras"][0];
    assert_eq!(stored["camera"], "cam", "{health}");
    assert!(
        stored["oldest"].is_string() && stored["retention_hours"].as_f64() > Some(0.0),
        "{health}"
    );
    assert!(
        health["storage"]["video_bytes"].as_u64() > Some(0),
        "{health}"
    );
    assert_eq!(
        get(port, "/api/v1/health", None).0,
        401,
        "health needs a token"
    );
    assert!(daemon.terminate().success());
}

/// A HEAD request: (status, headers).
fn head(port: u16, path: &str) -> (u16, String) {
    request(port, "HEAD", path, None)
}

/// Puts one record into the daemon's shard stream `stream` through its Kinesis API.
fn put_record(port: u16, stream: &str, key: &str, data: &serde_json::Value) {
    use base64::Engine;
    let body = serde_json::json!({
        "StreamName": stream,
        "PartitionKey": key,
        "Data": base64::engine::general_purpose::STANDARD.encode(data.to_string()),
    });
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: Kinesis_20131202.PutRecord\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// Detection events from the records in the camera's shard stream (put through the Kinesis API,
/// as the detection linker would publish them: no model needed), paged with a cursor; and a
/// health check that is degraded (503) because detection is configured but cannot run.
#[test]
fn events_from_detection_records_and_a_degraded_health() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let detect = "[detect]\nonnxruntime = \"/nonexistent/libonnxruntime.so\"\n\
                  [[stream]]\nname = \"dets\"\nshards = 2\n";
    let config = daemon_config(port, &[], detect, &[TestCam::one_second("cam")])
        + "[camera.detect]\nstream = \"dets\"\n";
    let daemon = Daemon::start(dir.path(), &config);
    wait_for_api(&daemon, port, Duration::from_secs(30));
    let (status, text) = get(port, "/api/v1/health", None);
    assert_eq!(status, 503, "{text}");
    let health = body_json(&text);
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["problems"].to_string().contains("detection"),
        "{health}"
    );
    assert_eq!(health["detection"]["workers"], 0, "{health}");
    assert!(
        health["shard_streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "dets" && s["shards"] == 2),
        "{health}"
    );
    let (_, text) = get(port, "/api/v1/cameras", None);
    assert_eq!(body_json(&text)["cameras"][0]["detection_stream"], "dets");

    // wait for video, so the playback links have something to play
    eventually(Duration::from_secs(60), "recorded fragments", || {
        daemon.assert_running();
        (daemon.fragments("cam").len() >= 3).then_some(())
    });
    let t0 = daemon.fragments("cam")[1].producer_ns;
    put_record(
        port,
        "dets",
        "cam",
        &api_support::detection_record("cam", t0, "detection", &["person"]),
    );
    put_record(
        port,
        "dets",
        "other",
        &api_support::detection_record("other", t0, "detection", &["person"]),
    );
    put_record(
        port,
        "dets",
        "cam",
        &api_support::detection_record("cam", t0 + 100_000_000, "heartbeat", &[]),
    );
    put_record(
        port,
        "dets",
        "cam",
        &api_support::detection_record("cam", t0 + 200_000_000, "detection", &["car", "person"]),
    );
    put_record(
        port,
        "dets",
        "cam",
        &api_support::detection_record("cam", t0 + 300_000_000, "detection", &["car"]),
    );
    // outside the range asked for below
    put_record(
        port,
        "dets",
        "cam",
        &api_support::detection_record("cam", t0 - 60_000_000_000, "detection", &["car"]),
    );

    let secs = |ns: i64| format!("{:.3}", ns as f64 / 1e9);
    let path = |extra: &str| {
        format!(
            "/api/v1/cameras/cam/events?start={}&end={}{extra}",
            secs(t0 - 1_000_000_000),
            secs(t0 + 1_000_000_000)
        )
    };
    let (status, text) = get(port, &path(""), None);
    assert_eq!(status, 200, "{text}");
    let v = body_json(&text);
    let events = v["events"].as_array().unwrap();
    let times: Vec<i64> = events
        .iter()
        .map(|e| e["timestamp_ns"].as_i64().unwrap())
        .collect();
    assert_eq!(times, [t0, t0 + 200_000_000, t0 + 300_000_000], "{v}");
    assert!(v.get("cursor").is_none(), "{v}");
    assert_eq!(events[0]["fragment_number"], "7");
    let link = events[0]["playback"].as_str().unwrap();
    assert!(
        link.starts_with("/api/v1/cameras/cam/clip.mp4?start="),
        "{link}"
    );
    let (status, head) = head(port, link);
    assert_eq!(status, 200, "{link}: {head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: video/mp4"),
        "{head}"
    );

    // by label: only the matching detections of each event
    let (_, text) = get(port, &path("&label=person"), None);
    let v = body_json(&text);
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{v}");
    assert_eq!(events[1]["detections"].as_array().unwrap().len(), 1, "{v}");

    // one at a time with the cursor
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..5 {
        let (status, text) = get(port, &path(&format!("&limit=1&cursor={cursor}")), None);
        assert_eq!(status, 200, "{text}");
        let v = body_json(&text);
        seen.extend(
            v["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["timestamp_ns"].as_i64().unwrap()),
        );
        match v["cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, [t0, t0 + 200_000_000, t0 + 300_000_000]);

    for (path, status) in [
        (
            "/api/v1/cameras/nope/events?start=-1m&end=now".to_string(),
            404,
        ),
        (path("&cursor=!!"), 400),
        (path("&limit=0"), 400),
        (
            "/api/v1/cameras/cam/events?start=-25h&end=now".to_string(),
            400,
        ),
    ] {
        assert_eq!(get(port, &path, None).0, status, "{path}");
    }
    assert!(daemon.terminate().success());
}
