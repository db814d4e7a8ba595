//! Issue 7, A7: no output of any command ever shows a camera's credentials, whatever characters
//! they hold. A table of nasty RTSP URLs runs through `check`, `probe`, `run` (until it has
//! tried the camera once) and `cameras`; no 4-character piece of a secret may appear, plain or
//! percent-encoded.

mod harness;
mod support;

use base64::Engine;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Letters and digits that never form a word or a number in our output: every 4-char window of
/// a secret built from them is distinctive.
fn secret_run(n: usize) -> String {
    let letters = ['Q', 'X', 'Z', 'J', 'K', 'V', 'Y'];
    let digits = ['7', '8', '9'];
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                letters[(i / 2) % letters.len()]
            } else {
                digits[(i / 2) % digits.len()]
            }
        })
        .collect()
}

struct Case {
    what: &'static str,
    /// `{addr}` is replaced by the fake camera's `127.0.0.1:port`.
    url: String,
    /// User and password as the camera should receive them (None: the URL must be refused).
    credentials: Option<(String, String)>,
    secrets: Vec<String>,
}

fn cases() -> Vec<Case> {
    let user = "Uqz7k".to_string();
    let refused = |what, password: &str| Case {
        what,
        url: format!("rtsp://{user}:{password}@{{addr}}/live"),
        credentials: None,
        secrets: vec![user.clone(), password.to_string()],
    };
    let long = format!("{}/{}", secret_run(150), secret_run(150));
    let long_ok = secret_run(250);
    vec![
        refused("unencoded /", "Pq7Zx/81v"),
        refused("unencoded @", "Pq7Zx@81v"),
        refused("unencoded #", "Pq7Zx#81v"),
        refused("unencoded ?", "Pq7Zx?81v"),
        refused("% without hex", "Pq7Zx%zz81v"),
        refused("space", "Pq7Zx 81v"),
        refused("very long with /", &long),
        Case {
            what: "colon in password",
            url: format!("rtsp://{user}:Pq:Zx81v@{{addr}}/live"),
            credentials: Some((user.clone(), "Pq:Zx81v".into())),
            secrets: vec![user.clone(), "Pq:Zx81v".into()],
        },
        Case {
            what: "unicode",
            url: format!("rtsp://{user}:PqüZ€x81v@{{addr}}/live"),
            credentials: Some((user.clone(), "PqüZ€x81v".into())),
            secrets: vec![user.clone(), "PqüZ€x81v".into()],
        },
        Case {
            what: "user only",
            url: "rtsp://Wq8Vusr@{addr}/live".into(),
            credentials: Some(("Wq8Vusr".into(), String::new())),
            secrets: vec!["Wq8Vusr".into()],
        },
        Case {
            what: "percent-encoded reserved characters",
            url: format!("rtsp://{user}:Pq%2FZx%40v1%23Jk@{{addr}}/live"),
            credentials: Some((user.clone(), "Pq/Zx@v1#Jk".into())),
            secrets: vec![user.clone(), "Pq/Zx@v1#Jk".into()],
        },
        Case {
            what: "very long",
            url: format!("rtsp://{user}:{long_ok}@{{addr}}/live"),
            credentials: Some((user.clone(), long_ok.clone())),
            secrets: vec![user.clone(), long_ok],
        },
    ]
}

/// Every 4-character piece of every secret, plain and percent-encoded.
fn fragments(secrets: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for s in secrets {
        let encoded = percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
        for form in [s.clone(), encoded] {
            let chars: Vec<char> = form.chars().collect();
            for w in chars.windows(4.min(chars.len())) {
                out.push(w.iter().collect());
            }
        }
    }
    out
}

fn assert_clean(case: &Case, output: &str, source: &str) {
    for f in fragments(&case.secrets) {
        assert!(
            !output.contains(&f),
            "{}: `{f}` of a secret shows in {source}:\n{output}",
            case.what
        );
    }
}

/// An RTSP "camera" that answers every request with 401 (Basic) and records the
/// Authorization headers it receives.
struct FakeCamera {
    port: u16,
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl FakeCamera {
    fn start() -> FakeCamera {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let seen = authorizations.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || serve_401(conn, &seen));
            }
        });
        FakeCamera {
            port,
            authorizations,
        }
    }

    /// Whether a request carried Basic credentials for exactly `user`/`password`.
    fn received(&self, user: &str, password: &str) -> bool {
        let expected =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.authorizations
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.trim() == format!("Basic {expected}"))
    }
}

fn serve_401(mut sock: TcpStream, seen: &Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match sock.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let request = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let header = |name: &str| {
            request.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        if let Some(auth) = header("Authorization") {
            seen.lock().unwrap().push(auth);
        }
        let cseq = header("CSeq").unwrap_or_else(|| "0".into());
        let reply = format!(
            "RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\nWWW-Authenticate: Basic realm=\"vidgest-test\"\r\nContent-Length: 0\r\n\r\n"
        );
        if sock.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// TOML for one RTSP camera on `url` (as a TOML basic string) and a disabled camera whose
/// detection sub-stream uses the same URL.
fn config(dir: &Path, url: &str) -> std::path::PathBuf {
    let listen = format!("127.0.0.1:{}", support::free_port());
    let quoted = toml::Value::String(url.to_owned()).to_string();
    let text = format!(
        r#"[agent]
data_dir = "{data}"
[api]
listen = "{listen}"
[[camera]]
name = "door"
stall_timeout = "2s"
[camera.source]
kind = "rtsp"
url = {quoted}
connect_timeout = "2s"
[[camera]]
name = "yard"
enabled = false
[camera.source]
kind = "test"
[camera.detect]
enabled = false
source = {quoted}
"#,
        data = dir.join("data").display()
    );
    let path = dir.join("vidgest.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn output(args: &[&str]) -> (bool, String) {
    let out = Command::new(harness::vidgest_bin())
        .args(args)
        .env("VIDGEST_LOG", "debug")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `vidgest run` until it has tried the camera once (or refused the config); its whole log.
fn run_log(config: &Path, expect_start: bool) -> String {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(harness::vidgest_bin())
        .args(["run", "--config"])
        .arg(config)
        .env("VIDGEST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(log.path()).unwrap();
    if expect_start {
        // The supervisor logs the failed session before its backoff: the camera was tried.
        harness::eventually(Duration::from_secs(60), "a camera attempt", || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("vidgest run exited ({status}):\n{}", read());
            }
            read().contains("retrying in").then_some(())
        });
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    let status = harness::eventually(Duration::from_secs(60), "vidgest run to exit", || {
        child.try_wait().unwrap()
    });
    let text = read();
    assert_eq!(
        status.success(),
        expect_start,
        "run exit status {status}:\n{text}"
    );
    text
}

#[test]
fn no_output_shows_any_part_of_the_userinfo() {
    let camera = FakeCamera::start();
    let addr = format!("127.0.0.1:{}", camera.port);
    for case in cases() {
        let url = case.url.replace("{addr}", &addr);
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &url);
        let cfg_arg = cfg.to_str().unwrap();
        let accepted = case.credentials.is_some();

        let (ok, out) = output(&["check", "--config", cfg_arg]);
        assert_clean(&case, &out, "vidgest check");
        if accepted {
            assert!(out.contains("ok (2 camera(s)"), "{}: {out}", case.what);
        } else {
            assert!(!ok, "{}: check accepted an ambiguous URL: {out}", case.what);
            assert!(
                out.contains("camera[0].source.url:"),
                "{}: {out}",
                case.what
            );
            assert!(
                out.contains("camera[1].detect.source:"),
                "{}: {out}",
                case.what
            );
        }

        let (ok, out) = output(&["probe", "--timeout", "10s", &url]);
        assert!(!ok, "{}: {out}", case.what);
        assert_clean(&case, &out, "vidgest probe");
        if let Some((user, password)) = &case.credentials {
            assert!(out.contains("requires credentials"), "{}: {out}", case.what);
            assert!(
                camera.received(user, password),
                "{}: the camera never got the decoded credentials",
                case.what
            );
        } else {
            assert!(out.contains("invalid camera URL"), "{}: {out}", case.what);
        }

        for args in [
            vec!["cameras", "--config", cfg_arg],
            vec!["cameras", "--json", "--config", cfg_arg],
        ] {
            let (ok, out) = output(&args);
            assert_eq!(ok, accepted, "{}: {out}", case.what);
            assert_clean(&case, &out, "vidgest cameras");
        }

        let log = run_log(&cfg, accepted);
        assert_clean(&case, &log, "vidgest run");
        if accepted {
            assert!(log.contains("starting camera"), "{}: {log}", case.what);
        }
    }
}
