//! The Kinesis-compatible API driven by real clients: stock aws-cli v1 and boto3 (vendor/venv,
//! installed by scripts/bootstrap) against the real daemon. The client logic lives in tests/py/.

mod harness;
mod support;

use harness::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// vendor/venv/bin/python with awscli + boto3; fails (never skips) when bootstrap has not run.
fn venv_python() -> PathBuf {
    let venv = root().join("vendor/venv");
    for f in ["bin/python", "bin/aws", ".pins"] {
        assert!(
            venv.join(f).exists(),
            "{} is missing: run scripts/bootstrap (installs aws-cli and boto3 into vendor/venv)",
            venv.join(f).display()
        );
    }
    venv.join("bin/python")
}

fn script(name: &str) -> PathBuf {
    root().join("tests/py").join(name)
}

/// Runs a client script to completion; its output goes to the test log; panics on failure.
fn run_py(args: &[&str]) -> String {
    let out = Command::new(venv_python())
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .expect("run vendor/venv/bin/python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- {} ---\n{stdout}{stderr}", args.join(" "));
    if !out.status.success() {
        // the full log is above; the panic names what failed
        let failed: Vec<&str> = stdout
            .lines()
            .filter(|l| !l.starts_with("kinesis: ok"))
            .collect();
        panic!(
            "{} failed ({}):\n{}\n{stderr}",
            args[0],
            out.status,
            failed.join("\n")
        );
    }
    stdout
}

fn config(port: u16) -> String {
    format!(
        "[agent]\ndata_dir = \"{{data_dir}}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n\
         [[stream]]\nname = \"detections\"\nshards = 2\nretention_hours = 24\n"
    )
}

fn wait_listening(port: u16, what: &str) {
    eventually(Duration::from_secs(60), what, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

#[test]
fn aws_cli_and_boto3_operations_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = Daemon::start(dir.path(), &config(port));
    wait_listening(port, "vidgest API listening");
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = run_py(&[
        script("cli_and_boto3.py").to_str().unwrap(),
        "--endpoint",
        &endpoint,
        "--configured-stream",
        "detections",
        "--only",
        "cli,boto3,errors",
    ]);
    assert!(out.contains("checks passed"), "{out}");
    assert!(daemon.is_running(), "daemon died during the client tests");
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}

/// `VIDGEST_ITERATOR_TTL_MS` shortens the iterator lifetime (real service: 5 minutes). The daemon
/// is started here rather than by the harness so that only this daemon gets the variable.
#[test]
fn expired_iterator_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let data_dir = dir.path().join("data");
    let cfg = dir.path().join("vidgest.toml");
    std::fs::write(
        &cfg,
        config(port).replace("{data_dir}", &data_dir.display().to_string()),
    )
    .unwrap();
    let log = dir.path().join("vidgest.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut child = KillOnDrop(
        Command::new(vidgest_bin())
            .args(["run", "--config"])
            .arg(&cfg)
            .env("VIDGEST_ITERATOR_TTL_MS", "1500")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start vidgest"),
    );
    wait_listening(port, "vidgest API listening");
    run_py(&[
        script("cli_and_boto3.py").to_str().unwrap(),
        "--endpoint",
        &format!("http://127.0.0.1:{port}"),
        "--only",
        "expired",
        "--iterator-ttl-ms",
        "1500",
    ]);
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "daemon died: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn count_lines(path: &Path, prefix: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().filter(|l| l.starts_with(prefix)).count())
        .unwrap_or(0)
}

/// SIGKILL while 4 boto3 producers keep PutRecords batches in flight, restart on the same data
/// directory, read everything back: every acknowledged record is there exactly once with the
/// shard and sequence number it was acknowledged with, no record reported failed is stored, per
/// partition key the order is the submit order, and sequence numbers keep increasing after the
/// restart (tests/py/sigkill_load.py).
#[test]
fn sigkill_under_put_records_load_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = Daemon::start(dir.path(), &config(port));
    wait_listening(port, "vidgest API listening");
    let endpoint = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("acks.log");
    let stop = dir.path().join("stop");
    let producer_out = std::fs::File::create(dir.path().join("producer.out")).unwrap();
    let mut producer = KillOnDrop(
        Command::new(venv_python())
            .arg(script("sigkill_load.py"))
            .args(["produce", "--endpoint", &endpoint, "--stream", "detections"])
            .args([
                "--api-stream",
                "made-by-api",
                "--threads",
                "4",
                "--batch",
                "100",
            ])
            .arg("--log")
            .arg(&log)
            .arg("--stop-file")
            .arg(&stop)
            .stdout(producer_out.try_clone().unwrap())
            .stderr(producer_out)
            .spawn()
            .expect("start producer"),
    );

    // Let the load run: at least 3 s and 3,000 acknowledged records (or 60 s at most).
    let t0 = Instant::now();
    loop {
        let acked = count_lines(&log, "ACK ");
        if t0.elapsed() > Duration::from_secs(3) && acked >= 3000 {
            break;
        }
        assert!(
            producer.0.try_wait().unwrap().is_none(),
            "producer exited early: {}",
            std::fs::read_to_string(dir.path().join("producer.out")).unwrap_or_default()
        );
        if t0.elapsed() > Duration::from_secs(60) {
            assert!(acked > 0, "no PutRecords acknowledged within 60 s");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let acked_before = count_lines(&log, "ACK ");
    let data_dir = daemon.data_dir.clone();
    let config_path = daemon.config.clone();
    daemon.kill9();
    eprintln!("SIGKILL after {acked_before} acknowledged records");

    // The producers see the failures; then stop them.
    eventually(
        Duration::from_secs(30),
        "producer sees the dead server",
        || (count_lines(&log, "LOST ") > 0).then_some(()),
    );
    std::fs::write(&stop, "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while producer.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "producer did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{}",
        std::fs::read_to_string(dir.path().join("producer.out")).unwrap_or_default()
    );

    let daemon = Daemon::start_with(data_dir, config_path);
    wait_listening(port, "vidgest API listening after the restart");
    let out = run_py(&[
        script("sigkill_load.py").to_str().unwrap(),
        "verify",
        "--endpoint",
        &endpoint,
        "--stream",
        "detections",
        "--api-stream",
        "made-by-api",
        "--log",
        log.to_str().unwrap(),
    ]);
    assert!(out.contains("verify: ok"), "{out}");
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}
