//! The REST family and the one auth middleware: /api/v1 needs a token once tokens exist
//! (/healthz never does), and it shows the running cameras' state and counters.

mod harness;
mod support;

use harness::{eventually, Daemon};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One HTTP/1.1 request on a fresh connection: (status, headers + body as text).
fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

fn body_json(response: &str) -> serde_json::Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

#[test]
fn rest_routes_need_a_token_and_show_camera_state() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = format!(
        r#"
[agent]
data_dir = "{{data_dir}}"
[api]
listen = "127.0.0.1:{port}"
[[api.token]]
token = "reader-token-0123456789"
scope = "read"
[[camera]]
name = "cam"
fragment_duration = "1s"
[camera.source]
kind = "test"
width = 160
height = 120
fps = 10
gop = 10
"#
    );
    let daemon = Daemon::start(dir.path(), &config);
    eventually(Duration::from_secs(30), "the API to listen", || {
        daemon.assert_running();
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
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
    assert!(daemon.terminate().success());
}
