//! The data-dir lock with real processes: a second `vidgest run` on a data dir in use is refused
//! at once, naming the holder, and changes nothing; CLI readers do not need the lock; the kernel
//! releases it when the holder stops, however it stops.

mod harness;
mod support;

use harness::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::free_port;
use vidgest::store::FragmentMeta;

/// How long a refused daemon may take to exit (debug build, busy machine).
const REFUSAL_BOUND: Duration = Duration::from_secs(20);

fn config(port: u16) -> String {
    format!(
        r#"[agent]
data_dir = "{{data_dir}}"
[api]
listen = "127.0.0.1:{port}"
[storage]
min_free = "1MiB"
[[camera]]
name = "cam"
fragment_duration = "1s"
[camera.source]
kind = "test"
width = 160
height = 120
fps = 10
"#
    )
}

/// `vidgest run --config <config>` to completion, or a panic after `bound`.
fn run_to_exit(config: &Path, bound: Duration) -> Output {
    let child = Command::new(vidgest_bin())
        .args(["run", "--config"])
        .arg(config)
        .env("VIDGEST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vidgest");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(bound) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child, still unreaped (its waiter thread is blocked).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("a second vidgest on a data dir in use still runs after {bound:?}");
        }
    }
}

fn wait_for_fragments(daemon: &Daemon, more_than: usize) -> Vec<FragmentMeta> {
    eventually(
        Duration::from_secs(60),
        &format!("more than {more_than} fragments"),
        || Some(daemon.fragments("cam")).filter(|f| f.len() > more_than),
    )
}

fn assert_prefix(shorter: &[FragmentMeta], longer: &[FragmentMeta]) {
    assert!(
        longer.len() >= shorter.len() && longer[..shorter.len()] == *shorter,
        "stored fragments changed: {:?} then {:?}",
        shorter
            .iter()
            .map(|f| f.fragment_number)
            .collect::<Vec<_>>(),
        longer.iter().map(|f| f.fragment_number).collect::<Vec<_>>()
    );
}

/// Starts a daemon on `data_dir`/`config` and checks it records fragments numbered after `after`.
fn restarts_and_records(data_dir: &Path, config: &Path, after: &[FragmentMeta]) -> Daemon {
    let daemon = Daemon::start_with(data_dir.to_path_buf(), config.to_path_buf());
    let frags = wait_for_fragments(&daemon, after.len());
    assert_prefix(after, &frags);
    assert!(
        frags[after.len()].fragment_number > after.last().unwrap().fragment_number,
        "numbering continues"
    );
    assert!(
        !daemon.log_text().contains("in use by another vidgest"),
        "{}",
        daemon.log_text()
    );
    daemon
}

#[test]
fn a_second_daemon_is_refused_and_the_lock_dies_with_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = Daemon::start(dir.path(), &config(free_port()));
    let before = wait_for_fragments(&first, 1);
    let pid = first.pid().unwrap();

    // Same data dir, another API port: refused before it binds or records anything.
    let second_port = free_port();
    let second_config = dir.path().join("second.toml");
    std::fs::write(
        &second_config,
        config(second_port).replace("{data_dir}", &first.data_dir.display().to_string()),
    )
    .unwrap();
    let out = run_to_exit(&second_config, REFUSAL_BOUND);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second daemon exits non-zero");
    assert!(
        stderr.contains("in use by another vidgest") && stderr.contains(&format!("pid {pid}")),
        "the refusal names the first daemon (pid {pid}):\n{stderr}"
    );
    assert!(
        !stderr.contains("starting camera"),
        "the second daemon started a camera:\n{stderr}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", second_port)).is_err(),
        "the refused daemon left its API port bound"
    );

    // The first keeps recording; what it stored is untouched.
    first.assert_running();
    let during = wait_for_fragments(&first, before.len() + 1);
    assert_prefix(&before, &during);
    assert!(during.iter().skip(1).all(|f| !f.discontinuity));

    // Readers need no lock: `fragments` and `cameras` work while the daemon runs.
    let config = first.config.clone();
    let config_s = config.to_str().unwrap();
    let (ok, out, err) = cli(&["fragments", "cam", "--config", config_s, "--json"]);
    assert!(ok, "vidgest fragments while the daemon runs: {err}");
    let listed: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(listed.len() >= during.len(), "{out}");
    assert_eq!(listed[0]["fragment_number"], "1");
    let (ok, out, err) = cli(&["cameras", "--config", config_s, "--json"]);
    assert!(ok, "vidgest cameras while the daemon runs: {err}");
    let cam: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(cam["name"], "cam");
    assert!(
        cam["fragments"].as_u64().unwrap() >= during.len() as u64,
        "{out}"
    );

    // SIGTERM releases the lock: a new daemon starts on the same data dir.
    let data_dir = first.data_dir.clone();
    assert!(first.terminate().success());
    let stopped = read_fragments(&data_dir, "cam");
    let after_term = restarts_and_records(&data_dir, &config, &stopped);

    // So does kill -9 (the kernel drops a dead process's flock).
    let listed = after_term.fragments("cam");
    after_term.kill9();
    let killed = read_fragments(&data_dir, "cam");
    assert_prefix(&listed, &killed);
    let after_kill = restarts_and_records(&data_dir, &config, &killed);
    assert!(after_kill.terminate().success());
}
