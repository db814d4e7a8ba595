//! systemd integration (docs/operations.md#running-under-systemd): the sd_notify protocol as a
//! service manager sees it, through a Unix datagram socket in NOTIFY_SOCKET with WATCHDOG_USEC
//! set, and the unit file rated by `systemd-analyze`.

mod harness;

use harness::{make_clip, Daemon};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A small watchdog interval: WATCHDOG=1 every second while live.
const WATCHDOG: Duration = Duration::from_secs(2);

fn file_camera(name: &str, clip: &Path) -> String {
    format!(
        "[[camera]]\nname = \"{name}\"\nfragment_duration = \"1s\"\n[camera.source]\nkind = \"file\"\npath = \"{}\"\nloop = true\nrealtime = true\n",
        clip.display()
    )
}

/// The service manager's end: a datagram socket the daemon finds in NOTIFY_SOCKET.
struct Manager {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Manager {
    fn new(dir: &Path) -> Manager {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Manager { socket, path }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NOTIFY_SOCKET", self.path.display().to_string()),
            ("WATCHDOG_USEC", WATCHDOG.as_micros().to_string()),
        ]
    }

    /// The next datagram's lines, or None when nothing came within `timeout`.
    fn recv(&self, timeout: Duration) -> Option<Vec<String>> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string)
                    .collect(),
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("notify socket: {e}"),
        }
    }

    /// Waits for a datagram with `line`; returns every line received on the way, that one last.
    fn expect(&self, line: &str, timeout: Duration, daemon: &Daemon) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Some(lines) => {
                    let found = lines.iter().any(|l| l == line);
                    seen.extend(lines);
                    if found {
                        return seen;
                    }
                }
                None => panic!(
                    "no {line} within {timeout:?}; received {seen:?}; daemon log:\n{}",
                    daemon.log_text()
                ),
            }
        }
    }
}

fn start(dir: &Path, manager: &Manager, config: &str, extra: &[(&str, &str)]) -> Daemon {
    let data_dir = dir.join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let text = format!(
        "[agent]\ndata_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n{config}",
        data_dir.display()
    );
    let config_path = dir.join("vidgest.toml");
    std::fs::write(&config_path, text).unwrap();
    let env = manager.env();
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    Daemon::start_with_env(data_dir, config_path, &all)
}

/// READY=1 with a STATUS= line, then WATCHDOG=1 every half interval for several intervals
/// while one camera records and another waits out its backoff on a dead source (idle is not
/// stuck), RELOADING=1 then READY=1 on SIGHUP, and STOPPING=1 on SIGTERM.
#[test]
fn ready_status_watchdog_reload_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip);
    let manager = Manager::new(dir.path());
    // Nothing listens there: the camera fails to connect and backs off, again and again.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let config = format!(
        "{}[[camera]]\nname = \"dead\"\n[camera.source]\nkind = \"rtsp\"\nurl = \"rtsp://127.0.0.1:{dead_port}/x\"\nconnect_timeout = \"1s\"\n",
        file_camera("live", &clip)
    );
    let daemon = start(dir.path(), &manager, &config, &[]);
    let ready = manager.expect("READY=1", Duration::from_secs(30), &daemon);
    let status = ready
        .iter()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("READY=1 comes with a STATUS= line: {ready:?}"));
    assert!(status.contains("cameras streaming"), "{status}");
    assert!(
        status.contains("stored") && status.contains("free"),
        "{status}"
    );

    // Five watchdog intervals of pings, each within an interval of the previous.
    let mut pings = 0;
    let started = Instant::now();
    let mut statuses = vec![status.to_string()];
    while started.elapsed() < 5 * WATCHDOG {
        let lines = manager.expect("WATCHDOG=1", WATCHDOG, &daemon);
        statuses.extend(
            lines
                .iter()
                .filter_map(|l| l.strip_prefix("STATUS=").map(str::to_string)),
        );
        pings += 1;
    }
    assert!(pings >= 8, "{pings} pings in {:?}", started.elapsed());
    let log = daemon.log_text();
    assert!(
        log.contains("retrying in"),
        "the dead camera went through backoff meanwhile:\n{log}"
    );
    assert!(!log.contains("liveness failed"), "{log}");
    // The status is kept current: the file camera streams.
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("1/2 cameras streaming")),
        "{statuses:?}"
    );

    // SIGHUP (systemctl reload): RELOADING=1, then READY=1 again.
    let pid = daemon.pid().unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let reload = manager.expect("READY=1", Duration::from_secs(30), &daemon);
    let reloading = reload.iter().position(|l| l == "RELOADING=1");
    assert!(
        reloading.is_some_and(|i| reload
            .iter()
            .skip(i)
            .any(|l| l.starts_with("MONOTONIC_USEC="))),
        "RELOADING=1 with MONOTONIC_USEC= before READY=1: {reload:?}"
    );

    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    manager.expect("STOPPING=1", Duration::from_secs(30), &daemon);
    assert!(daemon.terminate().success());
}

/// A recorder stuck in a call (the test hook) fails liveness: WATCHDOG=1 stops within two
/// intervals, the log names the component once, STATUS= says so; the other camera is fine.
#[test]
fn watchdog_stops_when_a_recorder_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip);
    let manager = Manager::new(dir.path());
    let config = format!(
        "{}{}",
        file_camera("ok", &clip),
        file_camera("stuck", &clip)
    );
    let daemon = start(
        dir.path(),
        &manager,
        &config,
        &[("VIDGEST_TEST_HANG_RECORDER", "stuck")],
    );
    manager.expect("READY=1", Duration::from_secs(30), &daemon);
    manager.expect("WATCHDOG=1", WATCHDOG, &daemon);

    // The hook hangs the recorder after its first fragment (a second or two in). From then on
    // pings must cease within two intervals; a silence of three intervals proves they did.
    let hang_by = Instant::now() + Duration::from_secs(30);
    let mut statuses: Vec<String> = Vec::new();
    let mut last_ping = Instant::now();
    while last_ping.elapsed() < 3 * WATCHDOG {
        assert!(
            Instant::now() < hang_by,
            "WATCHDOG=1 still sent; log:\n{}",
            daemon.log_text()
        );
        let Some(lines) = manager.recv(3 * WATCHDOG - last_ping.elapsed()) else {
            continue;
        };
        if lines.iter().any(|l| l == "WATCHDOG=1") {
            assert!(
                !statuses.iter().any(|s| s.starts_with("liveness failed")),
                "a ping after the status said liveness failed: {lines:?}"
            );
            last_ping = Instant::now();
        }
        statuses.extend(
            lines
                .iter()
                .filter_map(|l| l.strip_prefix("STATUS=").map(str::to_string)),
        );
    }
    let log = daemon.log_text();
    let hung_at = log
        .find("test hook: the recorder hangs now")
        .unwrap_or_else(|| panic!("the hook fired:\n{log}"));
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("liveness failed"))
        .collect();
    assert_eq!(failed.len(), 1, "logged once: {failed:?}");
    assert!(failed[0].contains("camera stuck recorder"), "{failed:?}");
    assert!(log.find("liveness failed").unwrap() > hung_at);
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("liveness failed: camera stuck recorder")),
        "{statuses:?}"
    );
    // The healthy camera kept recording while the other one hung.
    let before = daemon.fragments("ok").len();
    harness::eventually(Duration::from_secs(20), "more fragments of `ok`", || {
        (daemon.fragments("ok").len() > before).then_some(())
    });
    assert!(
        daemon.terminate().success(),
        "stops cleanly despite the hang"
    );
}

/// Where `systemd-analyze` is; None (with the reason printed) when systemd is not installed.
fn systemd_analyze() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("systemd-analyze"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("SKIPPED: systemd-analyze is not installed (Debian package `systemd`)");
    }
    found
}

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/vidgest.service")
}

/// The figure of "Overall exposure level for vidgest.service: 1.6 OK".
fn exposure(output: &str) -> f64 {
    let line = output
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure figure in:\n{output}"));
    let after = line.rsplit_once(": ").map_or("", |(_, r)| r);
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the exposure in {line:?}"))
}

#[test]
fn unit_exposure_is_at_most_2() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    let out = Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let figure = exposure(&text);
    eprintln!("systemd-analyze security: exposure {figure}");
    assert!(figure <= 2.0, "exposure {figure} > 2.0:\n{text}");
}

#[test]
fn unit_verifies_clean() {
    let Some(analyze) = systemd_analyze() else {
        return;
    };
    // `verify` checks that ExecStart's binary exists: a copy of the unit that runs this build's
    // binary instead of the packaged /usr/bin/vidgest; nothing else changes.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/vidgest run"), "{unit}");
    let copy = dir.path().join("vidgest.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/bin/vidgest", harness::vidgest_bin()),
    )
    .unwrap();
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "verify: {stderr}"
    );
}

#[test]
fn exposure_figure_parses() {
    assert_eq!(
        exposure("...\n→ Overall exposure level for vidgest.service: 1.6 OK 🙂\n"),
        1.6
    );
}
