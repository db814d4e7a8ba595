//! GetMediaForFragmentList and GetMedia driven by stock boto3 clients (get_data_endpoint first,
//! then `kinesis-video-archived-media` / `kinesis-video-media` on that endpoint) against the real
//! daemon recording a test camera; the MKV is checked with mkvinfo, ffprobe and ffmpeg, GetMedia
//! read live. The client logic is tests/py/kvs_media.py.

#[path = "support/api.rs"]
mod api_support;
mod harness;
mod support;

use api_support::*;
use harness::*;
use std::time::Duration;

const READER: &str = "kvs-media-reader-token-01";
const CAMERA: &str = "cam";
/// Fragments the camera must have recorded before the client runs.
const FRAGMENTS: usize = 4;

fn config(port: u16) -> String {
    daemon_config(port, &[(READER, "read")], "", &[TestCam::small(CAMERA)])
}

/// Starts the daemon, waits for FRAGMENTS fragments and runs kvs_media.py (`only`: one group).
fn run_client(only: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = start_listening(dir.path(), port, &config(port));
    let frags = wait_for_fragments(&daemon, CAMERA, FRAGMENTS);
    let mut args = stream_client_args(port, READER, CAMERA, &frags[..FRAGMENTS]);
    args.extend(["--only".into(), only.into()]);
    run_python("kvs_media.py", args);
    assert_survived_and_stop(daemon);
}

#[test]
fn boto3_get_media_for_fragment_list_returns_tagged_mkv() {
    run_client("list");
}

#[test]
fn boto3_get_media_follows_the_stream_live_from_every_selector() {
    run_client("media");
}

/// A GetMedia following the camera live ends with the chunked-body terminator when the daemon
/// stops (not cut off when the HTTP shutdown grace runs out), and does not hold the shutdown up.
#[test]
fn a_live_get_media_ends_cleanly_at_shutdown() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = Daemon::start(dir.path(), &config(port));
    wait_for_fragments(&daemon, CAMERA, 1);
    let body =
        format!(r#"{{"StreamName": "{CAMERA}", "StartSelector": {{"StartSelectorType": "NOW"}}}}"#);
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "POST /getMedia HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {READER}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    while !String::from_utf8_lossy(&got).contains("AWS_KINESISVIDEO_CONTINUATION_TOKEN") {
        let n = tcp.read(&mut buf).expect("the first fragment arrives");
        assert!(
            n > 0,
            "the response ended early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got[..got.len().min(512)]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let stopping = std::time::Instant::now();
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
    // the HTTP shutdown grace is 10 s: a response that had to be cut would take that long
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    tcp.read_to_end(&mut got).unwrap();
    assert!(
        got.ends_with(b"\r\n0\r\n\r\n"),
        "the body did not end with the chunked terminator"
    );
}
