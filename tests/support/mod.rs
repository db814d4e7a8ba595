//! Helpers shared by the integration tests (`mod support;`): a real RTSP camera process, free
//! ports, and a polling wait. Not every test file uses everything.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a camera may take to print READY (debug build, busy 2-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `examples/test_camera` process (gst-rtsp-server on 127.0.0.1). Killed on drop.
pub struct TestCamera {
    child: Child,
    /// Held open: the camera exits when its stdin closes, so it dies with this test process.
    _stdin: ChildStdin,
    /// `rtsp://127.0.0.1:<port>` (no mount path).
    pub url: String,
    pub port: u16,
}

impl TestCamera {
    /// Starts the camera with `args` (see `test_camera --help`: `--codec h265`, `--port N`,
    /// `--auth digest --user U --password P`, `--mounts N`, ...) and waits for it to listen.
    pub fn start(args: &[&str]) -> TestCamera {
        let bin = test_camera_path();
        let mut child = Command::new(&bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");

        // A reader thread turns the blocking pipe into a channel we can wait on with a timeout;
        // it keeps draining stdout afterwards so the camera never blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!(
                    "test_camera {args:?} did not print READY within {READY_TIMEOUT:?} \
                     (got {other:?}, exit status {status:?}); see its stderr above"
                );
            }
        };
        let url = line
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("unexpected first line from test_camera: {line:?}"))
            .trim()
            .to_owned();
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in READY line {line:?}"));
        TestCamera {
            child,
            _stdin: stdin,
            url,
            port,
        }
    }

    /// `rtsp://127.0.0.1:<port>/cam<i>`.
    pub fn mount_url(&self, i: usize) -> String {
        format!("{}/cam{i}", self.url)
    }

    /// Sends a signal (e.g. SIGSTOP / SIGCONT to freeze a camera without closing its sockets).
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// SIGKILL and reap, so the port is free again when this returns.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestCamera {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `target/<profile>/examples/test_camera`, next to this test binary's `deps/` directory.
/// `VIDGEST_TEST_CAMERA` overrides it.
fn test_camera_path() -> PathBuf {
    if let Some(p) = std::env::var_os("VIDGEST_TEST_CAMERA") {
        return PathBuf::from(p);
    }
    example_path("test_camera")
}

/// The built example `name` next to this test binary; panics with the fix when it is missing or
/// older than its source.
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("examples").join(name);
    if !bin.is_file() {
        panic!(
            "{} is missing: run `cargo build --example {name}` first \
             (a plain `cargo test` builds examples; `cargo test --test NAME` does not)",
            bin.display()
        );
    }
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(src), Some(built)) = (modified(&source), modified(&bin)) {
        if src > built {
            panic!(
                "{} is older than examples/{name}.rs: run `cargo build --example {name}`",
                bin.display()
            );
        }
    }
    bin
}

/// A TCP port on 127.0.0.1 that was free a moment ago (nothing listens on it after return).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
