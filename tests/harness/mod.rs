//! Runs the real `vidgest` binary as a process and inspects its store (shared by integration tests).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vidgest::media::fmp4;
use vidgest::store::{FragmentMeta, StoreError, StoreReader};

pub fn vidgest_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vidgest")
}

/// A `vidgest run` process with its stderr captured for assertions.
pub struct Daemon {
    child: Mutex<Option<Child>>,
    pub log: Arc<Mutex<String>>,
    pub data_dir: PathBuf,
    pub config: PathBuf,
}

impl Daemon {
    /// Writes `config_toml` (with `{data_dir}` substituted) into `dir` and starts the daemon.
    pub fn start(dir: &Path, config_toml: &str) -> Daemon {
        let data_dir = dir.join("data");
        let config = dir.join("vidgest.toml");
        let mut text = config_toml.replace("{data_dir}", &data_dir.display().to_string());
        // Tests run in parallel: never the default 127.0.0.1:8080.
        if !text.contains("[api]") {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            text.push_str(&format!("\n[api]\nlisten = \"127.0.0.1:{port}\"\n"));
        }
        std::fs::write(&config, text).unwrap();
        Self::start_with(data_dir, config)
    }

    pub fn start_with(data_dir: PathBuf, config: PathBuf) -> Daemon {
        Self::start_with_env(data_dir, config, &[])
    }

    /// `start_with` with extra environment variables for this daemon only.
    pub fn start_with_env(data_dir: PathBuf, config: PathBuf, env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(vidgest_bin())
            .args(["run", "--config"])
            .arg(&config)
            .env("VIDGEST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vidgest");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[vidgest] {line}");
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Daemon {
            child: Mutex::new(Some(child)),
            log,
            data_dir,
            config,
        }
    }

    /// The process id (None once terminated or killed through this handle).
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(|c| c.id())
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap();
        child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Panics with the daemon's log when it has exited (so waits fail fast, with the reason).
    pub fn assert_running(&self) {
        if !self.is_running() {
            panic!("vidgest exited unexpectedly; its log:\n{}", self.log_text());
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(self) -> ExitStatus {
        let mut child = self.child.lock().unwrap().take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        wait_timeout(&mut child, Duration::from_secs(30))
    }

    /// SIGKILL (no chance to flush) and wait.
    pub fn kill9(self) {
        let mut child = self.child.lock().unwrap().take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn reader(&self) -> Option<StoreReader> {
        StoreReader::open(&self.data_dir.join("video")).ok()
    }

    /// All fragments of `camera` (empty when nothing is stored yet).
    pub fn fragments(&self, camera: &str) -> Vec<FragmentMeta> {
        self.assert_running();
        read_fragments(&self.data_dir, camera)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let child = self.child.get_mut().map(|c| c.take()).unwrap_or(None);
        if let Some(mut c) = child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// All fragments of `camera`: empty only while nothing is stored yet (no index, the index being
/// created, or the camera not registered yet). Any other store error panics, so that an
/// `is_empty()` or length check can never pass because the store could not be read.
pub fn read_fragments(data_dir: &Path, camera: &str) -> Vec<FragmentMeta> {
    match try_read_fragments(data_dir, camera) {
        Ok(f) => f,
        Err(e) if not_stored_yet(&e) => Vec::new(),
        Err(e) => panic!(
            "reading the fragments of `{camera}` under {}: {e}",
            data_dir.display()
        ),
    }
}

pub fn try_read_fragments(data_dir: &Path, camera: &str) -> Result<Vec<FragmentMeta>, StoreError> {
    StoreReader::open(&data_dir.join("video"))?.fragments(camera, None, None, 1_000_000)
}

/// The store errors a reader legitimately sees before the daemon has stored anything.
pub fn not_stored_yet(e: &StoreError) -> bool {
    match e {
        StoreError::NoStore(_) | StoreError::UnknownCamera(_) => true,
        // The daemon creates index.sqlite, then its tables in one transaction: a reader in
        // between finds the file without the tables.
        StoreError::Index { source, .. } => source.to_string().contains("no such table"),
        _ => false,
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("vidgest did not exit within {timeout:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` every 100 ms until it returns Some, panicking with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes init + the given fragments of one init to `path` (as stored, timestamps untouched).
pub fn write_stream_file(data_dir: &Path, frags: &[FragmentMeta], path: &Path) {
    let r = StoreReader::open(&data_dir.join("video")).unwrap();
    let mut bytes = r.init(frags[0].init_id).unwrap().data;
    for f in frags {
        assert_eq!(f.init_id, frags[0].init_id);
        bytes.extend(r.read_fragment(f).unwrap());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Asserts every fragment starts with a key frame.
pub fn assert_key_frame_starts(data_dir: &Path, frags: &[FragmentMeta]) {
    let r = StoreReader::open(&data_dir.join("video")).unwrap();
    for f in frags {
        let info = fmp4::inspect_fragment(&r.read_fragment(f).unwrap()).unwrap();
        assert!(
            info.first_is_key,
            "fragment {} does not start with a key frame",
            f.fragment_number
        );
        assert_eq!(info.sample_count, f.sample_count);
    }
}

/// `ffmpeg -v error -xerror -i F -f null -` must succeed silently.
pub fn assert_decodes(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg (installed by scripts/bootstrap)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "ffmpeg rejects {}: {err}",
        path.display()
    );
}

/// ffprobe's JSON for streams + packets; panics on any complaint.
pub fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_packets",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe (installed by scripts/bootstrap)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "ffprobe rejects {}: {err}",
        path.display()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs the vidgest CLI and returns (success, stdout, stderr).
pub fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(vidgest_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A 2 s H.264 clip, 15 fps, a key frame every second, no B-frames (file-source tests loop it).
pub fn make_clip(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x240:rate=15:duration=2")
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "0",
            "-g",
            "15",
            "-keyint_min",
            "15",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(path)
        .output()
        .expect("ffmpeg (installed by scripts/bootstrap)");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether a state change of `camera` to `state` with a detail containing `text` was logged.
pub fn logged_state(log: &str, camera: &str, state: &str, text: &str) -> bool {
    let (cam, st) = (format!("camera={camera} "), format!("state={state}"));
    log.lines()
        .any(|l| l.contains(&cam) && l.contains(&st) && l.contains(text))
}
