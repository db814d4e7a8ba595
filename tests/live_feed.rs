//! The low-latency live feed (`GET /api/v1/cameras/{name}/live.mp4`) of a recording daemon, read
//! with a raw TCP client: init segment, then one-sample CMAF chunks from a key frame on the
//! stored fragments' timeline, decodable by ffmpeg; viewers that leave or stall.

#[path = "support/api.rs"]
mod api_support;
mod harness;
mod support;

use api_support::{daemon_config, http_get, wait_for_api, TestCam};
use harness::{assert_decodes, eventually, ffprobe, Daemon};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vidgest::media::fmp4;

/// A live response read as it arrives: status, headers, then de-chunked body bytes.
struct LiveClient {
    reader: BufReader<TcpStream>,
    status: u16,
    headers: String,
    /// Body bytes received and not yet taken as boxes.
    pending: Vec<u8>,
}

impl LiveClient {
    /// Sends the request; reads the status line and headers.
    fn connect(port: u16, path: &str) -> LiveClient {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut headers = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            headers += &line.to_lowercase();
        }
        let status = headers
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        LiveClient {
            reader,
            status,
            headers,
            pending: Vec::new(),
        }
    }

    /// The next chunk of the chunked body.
    fn read_chunk(&mut self) {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let len = usize::from_str_radix(line.trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        assert!(len > 0, "the live body ended");
        let mut buf = vec![0; len + 2];
        self.reader.read_exact(&mut buf).unwrap();
        self.pending.extend_from_slice(&buf[..len]);
    }

    /// The next top-level box: (type, bytes).
    fn next_box(&mut self) -> (String, Vec<u8>) {
        loop {
            if self.pending.len() >= 8 {
                let size = u32::from_be_bytes(self.pending[..4].try_into().unwrap()) as usize;
                assert!(size >= 8, "box size {size}");
                if self.pending.len() >= size {
                    let b: Vec<u8> = self.pending.drain(..size).collect();
                    return (String::from_utf8_lossy(&b[4..8]).into_owned(), b);
                }
            }
            self.read_chunk();
        }
    }
}

fn health(port: u16) -> serde_json::Value {
    http_get(&format!("http://127.0.0.1:{port}/api/v1/health"), None).json()
}

fn unix_now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn live_feed_streams_decodable_chunks_and_frees_viewers() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = daemon_config(port, &[], "", &[TestCam::one_second("cam")]);
    let daemon = Daemon::start(dir.path(), &config);
    wait_for_api(&daemon, port, Duration::from_secs(30));

    let unknown = LiveClient::connect(port, "/api/v1/cameras/nope/live.mp4");
    assert_eq!(unknown.status, 404, "{}", unknown.headers);
    assert!(unknown.headers.contains("application/json"));

    let mut live = eventually(Duration::from_secs(60), "the camera to stream", || {
        let c = LiveClient::connect(port, "/api/v1/cameras/cam/live.mp4");
        match c.status {
            200 => Some(c),
            503 => None,
            s => panic!("live.mp4 answered {s}: {}", c.headers),
        }
    });
    assert!(
        live.headers.contains("content-type: video/mp4"),
        "{}",
        live.headers
    );
    assert!(
        live.headers.contains("x-vidgest-live: 1"),
        "{}",
        live.headers
    );
    assert!(live.headers.contains("transfer-encoding: chunked"));

    // A viewer that never reads: recording must not wait for it.
    let stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    (&stalled)
        .write_all(b"GET /api/v1/cameras/cam/live.mp4 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let stored_before = daemon.fragments("cam").len();

    let mut file = Vec::new();
    let (ftyp, b) = live.next_box();
    assert_eq!(ftyp, "ftyp");
    file.extend(b);
    let (moov, b) = live.next_box();
    assert_eq!(moov, "moov");
    file.extend(b);
    // 3 s at 10 fps
    let mut last_tfdt = None;
    for i in 0..30 {
        let (moof, mut b) = live.next_box();
        assert_eq!(moof, "moof", "chunk {i}");
        let (mdat, m) = live.next_box();
        assert_eq!(mdat, "mdat", "chunk {i}");
        b.extend(m);
        let info = fmp4::inspect_fragment(&b).unwrap_or_else(|e| panic!("chunk {i}: {e}"));
        assert_eq!(info.sample_count, 1, "one sample per chunk");
        if i == 0 {
            assert!(info.first_is_key, "the first chunk is a key frame");
        }
        if let Some(prev) = last_tfdt {
            assert!(info.base_decode_time > prev, "tfdt increases");
        }
        last_tfdt = Some(info.base_decode_time);
        // on the stored fragments' wall-clock timeline (90 kHz since the Unix epoch)
        let at = info.base_decode_time as f64 / fmp4::TIMESCALE as f64;
        assert!((unix_now_s() - at).abs() < 5.0, "tfdt {at} s vs now");
        file.extend(b);
    }
    let path = dir.path().join("live.mp4");
    std::fs::write(&path, &file).unwrap();
    assert_decodes(&path);
    let probe = ffprobe(&path);
    assert_eq!(probe["streams"][0]["width"], 160, "{probe}");
    assert_eq!(probe["packets"].as_array().map(Vec::len), Some(30));

    let h = health(port);
    assert_eq!(h["playback"]["live_subscribers"], 2, "{h}");
    assert!(
        h["playback"]["live_latency_ms"]["samples"].as_u64() > Some(0),
        "{h}"
    );
    // The stalled viewer did not hold recording up.
    eventually(
        Duration::from_secs(30),
        "fragments stored meanwhile",
        || (daemon.fragments("cam").len() >= stored_before + 3).then_some(()),
    );

    drop(live);
    drop(stalled);
    eventually(Duration::from_secs(30), "viewers to be freed", || {
        (health(port)["playback"]["live_subscribers"] == 0).then_some(())
    });
    daemon.assert_running();

    // Shutdown ends a live body: the daemon stops in time and the client sees the end.
    let mut last = LiveClient::connect(port, "/api/v1/cameras/cam/live.mp4");
    assert_eq!(last.status, 200);
    assert_eq!(last.next_box().0, "ftyp");
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
    let mut rest = Vec::new();
    last.reader
        .read_to_end(&mut rest)
        .expect("the live body ends at shutdown");
}
