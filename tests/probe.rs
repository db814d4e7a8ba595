//! `vidgest probe` against real peers: gst-rtsp-server cameras (examples/test_camera) with and
//! without auth, and raw TCP listeners that refuse, babble, or stay silent.

mod support;

use std::time::Duration;

use support::{free_port, TestCamera};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use vidgest::probe::{probe, ProbeError, ProbeOptions, ProbeReport};

/// Generous: DESCRIBE makes the camera start its encoder, on a busy 2-core machine.
const CAMERA_TIMEOUT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "Pa55:w@rd/x";
/// PASSWORD percent-encoded for URL userinfo.
const PASSWORD_IN_URL: &str = "Pa55%3Aw%40rd%2Fx";

fn opts() -> ProbeOptions {
    ProbeOptions {
        timeout: CAMERA_TIMEOUT,
        ..ProbeOptions::default()
    }
}

fn with_credentials(user: &str, password: &str) -> ProbeOptions {
    ProbeOptions {
        username: Some(user.into()),
        password: Some(password.into()),
        ..opts()
    }
}

/// `rtsp://USER:PASS@127.0.0.1:port/cam` from `rtsp://127.0.0.1:port`.
fn url_with_userinfo(cam: &TestCamera, userinfo: &str) -> String {
    format!("rtsp://{userinfo}@127.0.0.1:{}/cam", cam.port)
}

fn video(report: &ProbeReport) -> &vidgest::probe::Track {
    report
        .tracks
        .iter()
        .find(|t| t.media == "video")
        .expect("a video track")
}

/// The snippet must parse as TOML and point at the camera without credentials.
fn assert_snippet(report: &ProbeReport, url: &str) -> toml::Value {
    let snippet = report.config_snippet();
    assert!(report.render().contains(&snippet));
    let v: toml::Value =
        toml::from_str(&snippet).unwrap_or_else(|e| panic!("snippet is not TOML: {e}\n{snippet}"));
    let cam = &v["camera"][0];
    let name = cam["name"].as_str().unwrap();
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'),
        "{name}"
    );
    assert_eq!(cam["fragment_duration"].as_str(), Some("2s"));
    assert_eq!(cam["retention"].as_str(), Some("72h"));
    assert_eq!(cam["source"]["kind"].as_str(), Some("rtsp"));
    assert_eq!(cam["source"]["url"].as_str(), Some(url));
    assert_eq!(cam["source"]["transport"].as_str(), Some("tcp"));
    v
}

fn assert_no_password(texts: &[String]) {
    for t in texts {
        assert!(!t.contains(PASSWORD), "password leaked: {t}");
        assert!(!t.contains(PASSWORD_IN_URL), "password leaked: {t}");
    }
}

#[tokio::test]
async fn h264_camera() {
    let cam = TestCamera::start(&["--codec", "h264"]);
    let url = format!("{}/cam", cam.url);
    let report = probe(&url, &opts()).await.expect("probe");

    let v = video(&report);
    assert_eq!(v.codec, "H264");
    assert_eq!((v.width, v.height), (Some(640), Some(480)));
    assert_eq!(v.payload_type, 96);
    assert_eq!(v.clock_rate, Some(90000));
    let control = v.control.as_deref().expect("control URL");
    assert!(control.starts_with(&url), "{control}");
    assert!(report.server.as_deref().unwrap_or("").contains("GStreamer"));
    assert!(
        report.methods.iter().any(|m| m == "DESCRIBE"),
        "{:?}",
        report.methods
    );
    assert_eq!(report.auth_used, None);
    assert_eq!(report.url_redacted, url);

    let text = report.render();
    eprintln!("{text}");
    assert!(text.contains("H264 640x480"), "{text}");
    let toml = assert_snippet(&report, &url);
    assert!(toml["camera"][0]["source"].get("username").is_none());
}

#[tokio::test]
async fn h265_camera() {
    let cam = TestCamera::start(&["--codec", "h265"]);
    let url = format!("{}/cam0", cam.url);
    let report = probe(&url, &opts()).await.expect("probe");
    let v = video(&report);
    assert_eq!(v.codec, "H265");
    assert_eq!((v.width, v.height), (Some(640), Some(480)));
    assert_snippet(&report, &url);
}

#[tokio::test]
async fn sizes_that_need_cropping() {
    // Neither size is a multiple of the coding block: the SPS carries a crop/conformance window.
    for codec in ["h264", "h265"] {
        let cam = TestCamera::start(&["--codec", codec, "--width", "322", "--height", "242"]);
        let report = probe(&format!("{}/cam", cam.url), &opts())
            .await
            .expect("probe");
        let v = video(&report);
        assert_eq!((v.width, v.height), (Some(322), Some(242)), "{codec}");
    }
}

#[tokio::test]
async fn basic_auth() {
    let cam = TestCamera::start(&["--auth", "basic", "--user", "admin", "--password", PASSWORD]);
    check_auth(&cam, "basic").await;
}

#[tokio::test]
async fn digest_auth() {
    let cam = TestCamera::start(&[
        "--auth",
        "digest",
        "--user",
        "admin",
        "--password",
        PASSWORD,
    ]);
    check_auth(&cam, "digest").await;
}

async fn check_auth(cam: &TestCamera, scheme: &str) {
    let plain = format!("{}/cam", cam.url);
    let mut shown = Vec::new();

    // Credentials in the URL (percent-encoded) ...
    let url = url_with_userinfo(cam, &format!("admin:{PASSWORD_IN_URL}"));
    let report = probe(&url, &opts())
        .await
        .expect("probe with URL credentials");
    assert_eq!(report.auth_used.as_deref(), Some(scheme));
    assert_eq!(video(&report).codec, "H264");
    assert_eq!(report.url_redacted, url_with_userinfo(cam, "***:***"));
    let toml = assert_snippet(&report, &plain);
    assert_eq!(
        toml["camera"][0]["source"]["username"].as_str(),
        Some("admin")
    );
    assert_eq!(
        toml["camera"][0]["source"]["password"].as_str(),
        Some("<fill in>")
    );
    shown.extend([report.render(), format!("{report:?}")]);

    // ... or as options.
    let report = probe(&plain, &with_credentials("admin", PASSWORD))
        .await
        .expect("probe with explicit credentials");
    assert_eq!(report.auth_used.as_deref(), Some(scheme));
    shown.extend([report.render(), format!("{report:?}")]);

    // No credentials.
    let err = probe(&plain, &opts()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ProbeError::Unauthorized {
                credentials_given: false,
                ..
            }
        ),
        "{err:?}"
    );
    eprintln!("{err}");
    assert!(err.to_string().contains("--username"), "{err}");

    // Wrong password, in the URL and as an option.
    for (url, o) in [
        (url_with_userinfo(cam, "admin:wrong"), opts()),
        (plain.clone(), with_credentials("admin", "wrong")),
        (plain.clone(), with_credentials("nobody", PASSWORD)),
    ] {
        let err = probe(&url, &o).await.unwrap_err();
        assert!(
            matches!(
                err,
                ProbeError::Unauthorized {
                    credentials_given: true,
                    ..
                }
            ),
            "{err:?}"
        );
        eprintln!("{err}");
        assert!(err.to_string().contains("rejected"), "{err}");
        assert!(!err.to_string().contains("wrong"), "{err}");
        shown.extend([err.to_string(), format!("{err:?}")]);
    }
    assert_no_password(&shown);
}

#[tokio::test]
async fn refused_connection_names_the_address() {
    let port = free_port();
    let err = probe(&format!("rtsp://127.0.0.1:{port}/cam"), &opts())
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(matches!(err, ProbeError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_answer_is_a_bad_response() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = sock.read(&mut buf).await;
        sock.write_all(b"HTTP/1.1 400 Bad Request\r\n\x00\xff garbage")
            .await
            .unwrap();
        // Stay connected until the client gives up: the probe must not wait for a timeout.
        while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let o = ProbeOptions {
        timeout: Duration::from_secs(20),
        ..ProbeOptions::default()
    };
    let started = std::time::Instant::now();
    let err = probe(
        &format!("rtsp://u:{PASSWORD_IN_URL}@127.0.0.1:{port}/cam"),
        &o,
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, ProbeError::BadResponse { .. }), "{err:?}");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("HTTP/1.1 400"), "{msg}");
    assert!(msg.contains("\\x00\\xff"), "{msg}");
    assert_no_password(&[msg]);
    server.await.unwrap();
}

/// A peer that sends `head` and then `fill` bytes of `filler` without ever finishing the message.
async fn endless_answer(
    head: &'static [u8],
    filler: u8,
    fill: usize,
) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = sock.read(&mut buf).await;
        let _ = sock.write_all(head).await;
        let chunk = vec![filler; 64 * 1024];
        let mut sent = 0;
        // Write errors are expected: the client hangs up once it has read enough.
        while sent < fill && sock.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
        }
        while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    (port, server)
}

#[tokio::test]
async fn huge_header_is_reported_as_too_large() {
    // 10 MB inside one header line: an RTSP server, but a broken or hostile one.
    let (port, server) =
        endless_answer(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nX-Junk: ", b'a', 10 << 20).await;
    let err = probe(&format!("rtsp://127.0.0.1:{port}/cam"), &opts())
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(err, ProbeError::HeaderTooLarge { limit_kib: 64, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("RTSP response header too large (over 64 KiB)"),
        "{msg}"
    );
    assert!(!msg.contains("is this an RTSP port"), "{msg}");
    server.await.unwrap();
}

#[tokio::test]
async fn huge_body_is_reported_as_too_large() {
    let (port, server) = endless_answer(
        b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 999999999\r\n\r\n",
        b'v',
        10 << 20,
    )
    .await;
    let err = probe(&format!("rtsp://127.0.0.1:{port}/cam"), &opts())
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(
        matches!(err, ProbeError::ResponseTooLarge { limit_kib: 256, .. }),
        "{err:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn out_of_range_timeouts_are_refused_before_connecting() {
    for timeout in [Duration::ZERO, Duration::from_secs(3601), Duration::MAX] {
        let o = ProbeOptions {
            timeout,
            ..ProbeOptions::default()
        };
        let err = probe("rtsp://127.0.0.1:1/cam", &o).await.unwrap_err();
        assert!(
            matches!(err, ProbeError::TimeoutOutOfRange(t) if t == timeout),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let o = ProbeOptions {
        timeout: Duration::from_millis(500),
        ..ProbeOptions::default()
    };
    let err = probe(&format!("rtsp://127.0.0.1:{port}/cam"), &o)
        .await
        .unwrap_err();
    match &err {
        ProbeError::Timeout { step, after, .. } => {
            assert_eq!(*step, "OPTIONS");
            assert_eq!(*after, Duration::from_millis(500));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    eprintln!("{err}");
    assert!(err.to_string().contains("OPTIONS"), "{err}");
    server.await.unwrap();
}

#[tokio::test]
async fn unknown_path_is_a_status_error() {
    let cam = TestCamera::start(&[]);
    let err = probe(&format!("{}/nope", cam.url), &opts())
        .await
        .unwrap_err();
    eprintln!("{err}");
    match &err {
        ProbeError::Status { code, step, .. } => {
            assert_eq!(*code, 404);
            assert_eq!(*step, "DESCRIBE");
        }
        other => panic!("expected Status, got {other:?}"),
    }
}

#[tokio::test]
async fn mounts_and_restart_on_the_same_port() {
    let port = free_port().to_string();
    let mut cam = TestCamera::start(&["--port", &port, "--mounts", "2"]);
    assert_eq!(cam.port.to_string(), port);
    for url in [cam.mount_url(1), format!("{}/cam", cam.url)] {
        let report = probe(&url, &opts()).await.expect("probe");
        assert_eq!(video(&report).codec, "H264");
    }
    // A camera that comes back on the same port right after being killed.
    cam.kill();
    let cam = TestCamera::start(&["--port", &port]);
    let report = probe(&cam.mount_url(0), &opts())
        .await
        .expect("probe after restart");
    assert_eq!(video(&report).width, Some(640));
}

/// Reads one request head (up to the blank line) from `sock`; `None` when the peer closed.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match sock.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn md5_hex(s: &str) -> String {
    use md5::Digest;
    md5::Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `name="value"` or `name=value` from an Authorization header.
fn auth_param(header: &str, name: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let part = part.trim().trim_start_matches("Digest ").trim();
        let (k, v) = part.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"').to_owned())
    })
}

const SCRIPTED_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=framerate:25\r\n\
a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z2QAKKzZQHgCJ+XAWoCAgKAAAAMAIAAAB5HjBjLA,aOvjyyLA\r\n\
a=control:track1\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/16000/1\r\n\
a=fmtp:97 streamtype=5;mode=AAC-hbr;config=1408\r\na=control:track2\r\n";

const SCRIPTED_CHALLENGE: &str = "WWW-Authenticate: Basic realm=\"cam\"\r\n\
WWW-Authenticate: Digest realm=\"cam\", qop=\"auth,auth-int\", nonce=\"abc123\", opaque=\"xyz\", algorithm=MD5\r\n\
Connection: close\r\n";

/// The scripted camera's reply to one request head, and whether it accepted a digest.
/// It checks the response digest independently of the probe's code.
fn scripted_reply(req: &str, port: u16) -> (String, bool) {
    let header = |name: &str| {
        req.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let mut request_line = req.lines().next().unwrap_or("").split(' ');
    let (method, uri) = (
        request_line.next().unwrap_or(""),
        request_line.next().unwrap_or(""),
    );
    let cseq = header("CSeq").unwrap_or_default();
    let head = |status: &str| format!("RTSP/1.0 {status}\r\nCSeq: {cseq}\r\n");
    if method == "OPTIONS" {
        let public = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n";
        return (format!("{}{public}\r\n", head("200 OK")), false);
    }
    let Some(auth) = header("Authorization").filter(|a| a.starts_with("Digest ")) else {
        let challenge = head("401 Unauthorized") + SCRIPTED_CHALLENGE + "\r\n";
        return (challenge, false);
    };
    let p = |n: &str| auth_param(&auth, n).unwrap_or_default();
    let ha1 = md5_hex(&format!("admin:cam:{PASSWORD}"));
    let ha2 = md5_hex(&format!("DESCRIBE:{uri}"));
    let expected = md5_hex(&format!(
        "{ha1}:abc123:{}:{}:auth:{ha2}",
        p("nc"),
        p("cnonce")
    ));
    let accepted = p("qop") == "auth"
        && p("uri") == uri
        && p("opaque") == "xyz"
        && p("nc") == "00000001"
        && p("response") == expected;
    if !accepted {
        return (head("401 Unauthorized") + "\r\n", false);
    }
    let reply = format!(
        "{}Server: Scripted Cam/1.0\r\n\
         Content-Base: rtsp://admin:{PASSWORD_IN_URL}@127.0.0.1:{port}/live/\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SCRIPTED_SDP}",
        head("200 OK"),
        SCRIPTED_SDP.len()
    );
    (reply, true)
}

/// A scripted camera for what gst-rtsp-server does not do: Digest with `qop=auth` and `opaque`
/// offered next to Basic (two WWW-Authenticate headers), `Connection: close` after the challenge
/// (the answer must come on a new connection), credentials echoed in Content-Base, and audio.
#[tokio::test]
async fn digest_qop_auth_against_scripted_camera() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (mut sock, _) = listener.accept().await.unwrap();
            while let Some(req) = read_request(&mut sock).await {
                let (reply, accepted) = scripted_reply(&req, port);
                sock.write_all(reply.as_bytes()).await.unwrap();
                if accepted {
                    return true;
                }
                if reply.contains("Connection: close") {
                    break;
                }
            }
        }
        false
    });

    let url = format!("rtsp://admin:{PASSWORD_IN_URL}@127.0.0.1:{port}/live");
    let report = probe(&url, &opts()).await.expect("probe");
    assert!(
        server.await.unwrap(),
        "the camera did not accept the digest"
    );
    assert_eq!(report.auth_used.as_deref(), Some("digest"));
    assert_eq!(report.server.as_deref(), Some("Scripted Cam/1.0"));
    assert_eq!(report.tracks.len(), 2);
    let v = &report.tracks[0];
    assert_eq!(
        (v.codec.as_str(), v.width, v.height),
        ("H264", Some(1920), Some(1080))
    );
    assert_eq!(v.framerate, Some(25.0));
    let base = format!("rtsp://127.0.0.1:{port}/live/");
    assert_eq!(v.control.as_deref(), Some(format!("{base}track1").as_str()));
    let a = &report.tracks[1];
    assert_eq!((a.media.as_str(), a.codec.as_str()), ("audio", "AAC"));
    assert_eq!((a.payload_type, a.clock_rate), (97, Some(16000)));
    assert_eq!(a.control.as_deref(), Some(format!("{base}track2").as_str()));
    assert_snippet(&report, &format!("rtsp://127.0.0.1:{port}/live"));
    assert_no_password(&[report.render(), format!("{report:?}")]);
}
