//! The web UI in headless Chromium (Playwright on the system `chromium`, tests/py/ui_check.py):
//! a daemon with API tokens and two test cameras, one with detection records put through the
//! Kinesis API (as the detection linker publishes them: no model needed). The browser signs in
//! with a token and then runs on the session cookie alone. Screenshots go to
//! `<target>/ui-screenshots/`.

#[path = "support/api.rs"]
mod api_support;
mod harness;
mod support;

use api_support::{daemon_config, http_get, root, run_python, wait_for_api, TestCam};
use harness::{assert_decodes, eventually, ffprobe, Daemon};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

const READER: &str = "ui-reader-token-0123456789";
const WRITER: &str = "ui-writer-token-0123456789";

/// Puts one detection record into the shard stream `stream` through the Kinesis API.
fn put_detection(port: u16, stream: &str, camera: &str, ns: i64, labels: &[&str]) {
    use base64::Engine;
    let record = api_support::detection_record(camera, ns, "detection", labels);
    let body = serde_json::json!({
        "StreamName": stream,
        "PartitionKey": camera,
        "Data": base64::engine::general_purpose::STANDARD.encode(record.to_string()),
    })
    .to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {WRITER}\r\n\
         X-Amz-Target: Kinesis_20131202.PutRecord\r\nContent-Type: application/x-amz-json-1.1\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// `<target dir>/ui-screenshots`, kept after the test for review.
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Pages need the read scope, assets are open; both are embedded with their content types and
/// the pages carry a CSP without inline code.
fn check_pages_and_assets(port: u16) {
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    for page in ["/", "/camera.html?name=front", "/health.html"] {
        assert_eq!(
            http_get(&url(page), None).status,
            401,
            "{page} needs a token"
        );
        let r = http_get(&url(page), Some(READER));
        assert_eq!(r.status, 200, "{page}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(String::from_utf8_lossy(&r.body).contains("/ui/app.js"));
    }
    for (asset, ty) in [
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
    ] {
        let r = http_get(&url(asset), None);
        assert_eq!(r.status, 200, "{asset} is open");
        assert_eq!(r.header("content-type"), Some(ty), "{asset}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{asset}");
        let etag = r.header("etag").unwrap().to_string();
        let again = http_agent_get_if_none_match(&url(asset), &etag);
        assert_eq!(again, 304, "{asset} revalidates");
    }
    assert_eq!(http_get(&url("/ui/nope.js"), None).status, 404);

    // a browser loading a page without credentials is sent to the (open) sign-in page
    let no_redirects: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let r = no_redirects
        .get(url("/health.html"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .call()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login.html?next=%2Fhealth.html");
    let r = http_get(&url("/login.html"), None);
    assert_eq!(r.status, 200, "the sign-in page is open");
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .starts_with("default-src 'self'"));
}

/// Wrong tokens from one address are damped on the real listener: after a few, 429 with
/// `Retry-After`, even for the right token.
fn check_sign_in_damping(port: u16) {
    let attempt = |token: &str| {
        let mut r = api_support::http_agent()
            .post(format!("http://127.0.0.1:{port}/api/v1/session"))
            .header("content-type", "application/json")
            .send(serde_json::json!({ "token": token }).to_string())
            .unwrap();
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let _ = r.body_mut().read_to_string();
        (r.status().as_u16(), retry)
    };
    let mut refused = 0;
    let throttled = loop {
        match attempt("wrong-token-0123456789") {
            (401, None) => refused += 1,
            (429, Some(retry)) => break retry,
            other => panic!("{other:?}"),
        }
        assert!(refused <= 10, "no damping after {refused} wrong tokens");
    };
    assert!(refused >= 3, "damped after only {refused}");
    assert!(throttled.parse::<u32>().unwrap() >= 1, "{throttled}");
    assert_eq!(attempt(READER).0, 429, "the right token waits too");
}

fn http_agent_get_if_none_match(url: &str, etag: &str) -> u16 {
    api_support::http_agent()
        .get(url)
        .header("if-none-match", etag)
        .call()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn ui_pages_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let detect = "[detect]\nonnxruntime = \"/nonexistent/libonnxruntime.so\"\n\
                  [[stream]]\nname = \"dets\"\nshards = 1\n";
    let config = daemon_config(
        port,
        &[(READER, "read"), (WRITER, "write")],
        detect,
        &[TestCam::one_second("yard"), TestCam::one_second("front")],
    ) + "[camera.detect]\nstream = \"dets\"\n";
    let daemon = Daemon::start(dir.path(), &config);
    wait_for_api(&daemon, port, Duration::from_secs(60));
    check_pages_and_assets(port);

    // a dozen seconds of video, then two detections far enough apart to click each marker
    let frags = eventually(Duration::from_secs(90), "recorded fragments", || {
        daemon.assert_running();
        let f = daemon.fragments("front");
        (f.len() >= 14).then_some(f)
    });
    let (person, dog) = (frags[2].producer_ns + 300_000_000, frags[12].producer_ns);
    put_detection(port, "dets", "front", person, &["person"]);
    put_detection(port, "dets", "front", dog, &["dog", "person"]);

    let download = dir.path().join("range.mp4");
    run_python(
        "ui_check.py",
        [
            "--base".to_string(),
            format!("http://127.0.0.1:{port}"),
            "--token".into(),
            READER.into(),
            "--width".into(),
            "160".into(),
            "--cameras".into(),
            "yard,front".into(),
            "--detection-camera".into(),
            "front".into(),
            "--events".into(),
            format!("{},{}", person / 1_000_000, dog / 1_000_000),
            "--screenshots".into(),
            screenshot_dir().display().to_string(),
            "--download".into(),
            download.display().to_string(),
        ],
    );

    // the range download link served a playable MP4 of several fragments
    let probe = ffprobe(&download);
    assert_eq!(probe["streams"][0]["codec_type"], "video", "{probe}");
    assert_eq!(probe["streams"][0]["width"], 160, "{probe}");
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    assert!(duration >= 3.0, "range clip of {duration} s");
    assert_decodes(&download);
    check_sign_in_damping(port);
    assert!(daemon.terminate().success());
}
