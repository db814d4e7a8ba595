//! Playback under bad clients: one that stops reading mid-clip holds a bounded amount of the
//! daemon's memory and gets the rest when it resumes; ones that disconnect mid-clip leave no
//! writer behind. The store is seeded (examples/seed_store, the real recording path) with a
//! noisy, high-bitrate video so a clip is far larger than the socket buffers and the body's channel.

mod harness;
mod support;

use harness::{eventually, Daemon};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Seconds of video seeded; at ~60 Mbit/s that is ~90 MB.
const SEEDED_S: u64 = 12;

struct Seeded {
    _dir: tempfile::TempDir,
    daemon: Daemon,
    port: u16,
}

fn seeded_daemon() -> Seeded {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("noise.mp4");
    let ok = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc2=size=640x360:rate=30")
        .args([
            "-vf",
            "noise=alls=40:allf=t+u",
            "-t",
            "4",
            "-c:v",
            "libx264",
        ])
        .args(["-preset", "ultrafast", "-qp", "10", "-g", "30", "-bf", "0"])
        .args(["-pix_fmt", "yuv420p"])
        .arg(&src)
        .status()
        .expect("ffmpeg");
    assert!(ok.success(), "ffmpeg could not encode the source");
    let port = support::free_port();
    let data_dir = dir.path().join("data");
    let config = dir.path().join("vidgest.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
data_dir = "{}"
[api]
listen = "127.0.0.1:{port}"
[storage]
fsync = "never"
[[camera]]
name = "cam"
enabled = false
fragment_duration = "1s"
retention = "24h"
[camera.source]
kind = "rtsp"
url = "rtsp://127.0.0.1:9/never-used"
"#,
            data_dir.display()
        ),
    )
    .unwrap();
    let seeded = Command::new(support::example_path("seed_store"))
        .args(["--camera", "cam", "--duration-s", &SEEDED_S.to_string()])
        .arg("--config")
        .arg(&config)
        .arg("--source")
        .arg(&src)
        .output()
        .expect("seed_store");
    assert!(
        seeded.status.success(),
        "seed_store failed: {}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let daemon = Daemon::start_with(data_dir, config);
    wait_listening(port, &daemon);
    Seeded {
        _dir: dir,
        daemon,
        port,
    }
}

fn wait_listening(port: u16, daemon: &Daemon) {
    eventually(Duration::from_secs(30), "the API listens", || {
        daemon.assert_running();
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

fn health(port: u16) -> serde_json::Value {
    let mut r = ureq::get(format!("http://127.0.0.1:{port}/api/v1/health"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    serde_json::from_reader(r.body_mut().as_reader()).unwrap()
}

fn playback(port: u16, key: &str) -> u64 {
    health(port)["playback"][key].as_u64().unwrap()
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends a GET for the whole stored range of `cam` and reads the response head; returns the
/// stream positioned at the body and the Content-Length.
fn start_clip(port: u16) -> (TcpStream, u64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Shrink our receive buffer: the kernel then holds little of the clip for us.
    let sock = socket2::SockRef::from(&s);
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    write!(
        s,
        "GET /api/v1/cameras/cam/clip.mp4?start=-1d&end=now HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<u64>().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no Content-Length in {head}"));
    (s, len)
}

fn read_n(s: &mut TcpStream, mut n: u64) {
    let mut buf = vec![0u8; 64 * 1024];
    while n > 0 {
        let want = buf.len().min(n as usize);
        let got = s.read(&mut buf[..want]).unwrap();
        assert!(got > 0, "the clip ended early");
        n -= got as u64;
    }
}

#[test]
fn a_client_that_stops_reading_costs_bounded_memory_and_resumes() {
    let t = seeded_daemon();
    let pid = t.daemon.pid().unwrap();
    let rss_before = vm_rss_kib(pid);
    let sent_before = playback(t.port, "bytes_streamed");

    let (mut s, len) = start_clip(t.port);
    assert!(len > 60 << 20, "the seeded clip is only {len} bytes");
    read_n(&mut s, 1 << 20);
    // The writer runs until the channel and the socket buffers are full, then waits: its count
    // of bytes handed to the connection stops moving.
    let mut last = u64::MAX;
    let stalled = eventually(
        Duration::from_secs(30),
        "the clip writer waits for the client",
        || {
            std::thread::sleep(Duration::from_millis(200));
            let now = playback(t.port, "bytes_streamed") - sent_before;
            let stalled = (now == last).then_some(now);
            last = now;
            stalled
        },
    );
    assert_eq!(playback(t.port, "active_streams"), 1);
    assert!(
        stalled < len / 4,
        "the daemon went on reading while the client did not: {stalled} of {len} bytes"
    );
    let grown_kib = vm_rss_kib(pid).saturating_sub(rss_before);
    assert!(
        grown_kib < 24 * 1024,
        "a stalled clip of {len} bytes grew the daemon by {grown_kib} KiB"
    );

    // Resuming gets every byte.
    read_n(&mut s, len - (1 << 20));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{} bytes past Content-Length", rest.len());
    eventually(Duration::from_secs(10), "the writer finished", || {
        (playback(t.port, "active_streams") == 0).then_some(())
    });
}

#[test]
fn clients_that_disconnect_mid_clip_leave_no_writer_behind() {
    let t = seeded_daemon();
    let clients: Vec<TcpStream> = (0..8)
        .map(|_| {
            let (mut s, _) = start_clip(t.port);
            read_n(&mut s, 256 * 1024);
            s
        })
        .collect();
    assert_eq!(playback(t.port, "active_streams"), clients.len() as u64);
    drop(clients);
    eventually(Duration::from_secs(10), "every clip writer ended", || {
        (playback(t.port, "active_streams") == 0).then_some(())
    });
    // The daemon still serves (nothing wedged) and still records nothing wrong.
    let (mut s, len) = start_clip(t.port);
    read_n(&mut s, len);
    t.daemon.assert_running();
    assert_no_leaked_segment_files(t.daemon.pid().unwrap(), &t.daemon.data_dir);
}

/// No descriptor of the daemon still points at a segment file once every clip has ended.
fn assert_no_leaked_segment_files(pid: u32, data_dir: &Path) {
    let video = data_dir.join("video");
    eventually(Duration::from_secs(10), "segment files closed", || {
        let open: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|p| p.starts_with(&video) && p.extension().is_some_and(|e| e != "sqlite"))
            .filter(|p| !p.to_string_lossy().contains("index.sqlite"))
            .collect();
        open.is_empty().then_some(()).or_else(|| {
            eprintln!("still open: {open:?}");
            None
        })
    });
}
