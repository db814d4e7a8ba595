//! The Kinesis-compatible API driven by real clients: stock aws-cli v1 and boto3 (vendor/venv,
//! installed by scripts/bootstrap) against the real daemon. The client logic lives in tests/py/.

mod harness;
mod support;

use harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
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
    config_with(port, "")
}

/// The test config with extra `[api]` keys.
fn config_with(port: u16, api: &str) -> String {
    format!(
        "[agent]\ndata_dir = \"{{data_dir}}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n{api}\
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
        "cli,boto3,errors,sizes",
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

    // Let the load run: at least 3 s and 3,000 acknowledged records. A kill under a trickle
    // proves little, so a load that cannot reach that within 60 s fails the test.
    const MIN_ACKED: usize = 3000;
    let t0 = Instant::now();
    loop {
        let acked = count_lines(&log, "ACK ");
        if t0.elapsed() > Duration::from_secs(3) && acked >= MIN_ACKED {
            break;
        }
        assert!(
            producer.0.try_wait().unwrap().is_none(),
            "producer exited early: {}",
            std::fs::read_to_string(dir.path().join("producer.out")).unwrap_or_default()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "only {acked} of {MIN_ACKED} records acknowledged within 60 s: {}",
            std::fs::read_to_string(dir.path().join("producer.out")).unwrap_or_default()
        );
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

/// Requests built as the Java SDK / KCL / KPL build them (CBOR, byte-string blobs, tag-1
/// millisecond timestamps): tests/py/cbor_client.py with cbor2.
#[test]
fn cbor_protocol_as_the_java_sdk_sends_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = Daemon::start(dir.path(), &config(port));
    wait_listening(port, "vidgest API listening");
    let out = run_py(&[
        script("cbor_client.py").to_str().unwrap(),
        "--endpoint",
        &format!("http://127.0.0.1:{port}"),
        "--stream",
        "detections",
    ]);
    assert!(out.contains("checks passed"), "{out}");
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}

/// One `POST /` Kinesis call on a fresh connection; (HTTP status, body) or the I/O error.
fn raw_call(port: u16, op: &str, body: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: Kinesis_20131202.{op}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
    Ok((status, text))
}

/// Raises this process's open-file soft limit to `n` (children inherit it).
fn raise_nofile(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert!(
        lim.rlim_max >= n,
        "the hard open-file limit {} is below the {n} this test needs",
        lim.rlim_max
    );
    if lim.rlim_cur < n {
        lim.rlim_cur = n;
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    }
}

/// `vidgest run` with the open-file limit systemd gives a service by default (soft 1024): the
/// limit under which 1,100 idle connections used to starve the API.
fn start_daemon_with_nofile_1024(dir: &Path, config_text: &str) -> KillOnDrop {
    let data_dir = dir.join("data");
    let cfg = dir.join("vidgest.toml");
    std::fs::write(
        &cfg,
        config_text.replace("{data_dir}", &data_dir.display().to_string()),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("vidgest.log")).unwrap();
    let mut cmd = Command::new(vidgest_bin());
    cmd.args(["run", "--config"])
        .arg(&cfg)
        .env("VIDGEST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 1024,
                rlim_max: 1024,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    KillOnDrop(cmd.spawn().expect("start vidgest"))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A slow client: the request line and a header started, then nothing.
fn slow_client(port: u16) -> Option<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// True once the server has closed `s` (EOF or reset), without blocking.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        // EOF (0 bytes), or an error answer before the close
        Ok(_n) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Slowloris: 1,100 connections trickle header bytes (one byte per connection every 500 ms) and
/// are reopened as soon as the server closes them, so the attack keeps its size. Meanwhile
/// ordinary API calls must still be answered within a bound, and every slow connection must be
/// closed by the header timeout. The daemon runs with systemd's default soft limit of 1,024 open
/// files; the default connection cap (512) keeps it under that limit.
#[test]
fn api_answers_during_a_slowloris_of_1100_connections() {
    const SLOW: usize = 1100;
    const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
    raise_nofile(4096);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let mut daemon =
        start_daemon_with_nofile_1024(dir.path(), &config_with(port, "header_timeout = \"2s\"\n"));
    let pid = daemon.0.id();
    wait_listening(port, "vidgest API listening");
    let (st, _) = raw_call(port, "ListStreams", "{}", Duration::from_secs(10)).unwrap();
    assert_eq!(st, 200);
    let rss_before = rss_kib(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicUsize::new(0));
    let first_closed = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let attack = {
        let (stop, closed, first_closed, opened) = (
            stop.clone(),
            closed.clone(),
            first_closed.clone(),
            opened.clone(),
        );
        std::thread::spawn(move || {
            // (connection, is one of the first SLOW)
            let mut conns: Vec<(Option<TcpStream>, bool)> = Vec::with_capacity(SLOW);
            for _ in 0..SLOW {
                conns.push((slow_client(port), true));
                opened.fetch_add(1, Ordering::SeqCst);
            }
            let mut peak_rss = 0;
            while !stop.load(Ordering::SeqCst) {
                for (c, first) in conns.iter_mut() {
                    let gone = match c {
                        Some(s) => closed_by_server(s) || s.write_all(b"a").is_err(),
                        None => true,
                    };
                    if gone {
                        if c.is_some() {
                            closed.fetch_add(1, Ordering::SeqCst);
                            if *first {
                                first_closed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        *c = slow_client(port);
                        *first = false;
                        opened.fetch_add(1, Ordering::SeqCst);
                    }
                }
                peak_rss = peak_rss.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(500)); // the trickle rate, not a sync
            }
            peak_rss
        })
    };
    eventually(
        Duration::from_secs(30),
        "1,100 slow connections open",
        || (opened.load(Ordering::SeqCst) >= SLOW).then_some(()),
    );

    // Ordinary calls while the attack runs: 3 rounds of 4 concurrent clients.
    let bound = HEADER_TIMEOUT * 6;
    let mut latencies = Vec::new();
    for _round in 0..3 {
        let calls: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    let t = Instant::now();
                    let (op, body) = if i % 2 == 0 {
                        ("ListStreams", "{}".to_string())
                    } else {
                        (
                            "PutRecord",
                            r#"{"StreamName":"detections","PartitionKey":"k","Data":"aGk="}"#
                                .to_string(),
                        )
                    };
                    let r = raw_call(port, op, &body, bound);
                    (r, t.elapsed())
                })
            })
            .collect();
        for c in calls {
            let (r, took) = c.join().unwrap();
            let (status, text) = r.unwrap_or_else(|e| {
                panic!("an API call failed during the slowloris after {took:?}: {e}")
            });
            assert_eq!(status, 200, "{text}");
            latencies.push(took);
        }
    }
    // Every one of the first 1,100 slow connections is closed by the header timeout (those
    // waiting in the backlog are taken after the earlier ones time out).
    eventually(
        HEADER_TIMEOUT * 10,
        "the header timeout closes all 1,100 first slow connections",
        || (first_closed.load(Ordering::SeqCst) >= SLOW).then_some(()),
    );
    stop.store(true, Ordering::SeqCst);
    let peak_rss = attack.join().unwrap();
    latencies.sort();
    eprintln!(
        "slowloris of {SLOW} (header timeout {HEADER_TIMEOUT:?}, cap 512): API latency min {:?} median {:?} max {:?} over {} calls; {} slow connections closed by the server; daemon RSS {} KiB before, peak {} KiB",
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len(),
        closed.load(Ordering::SeqCst),
        rss_before,
        peak_rss
    );
    assert!(
        latencies.iter().all(|l| *l < bound),
        "API calls slower than {bound:?}: {latencies:?}"
    );
    // After the attack the API answers at once again.
    let t = Instant::now();
    let (st, _) = raw_call(port, "ListStreams", "{}", Duration::from_secs(10)).unwrap();
    assert_eq!(st, 200);
    assert!(
        t.elapsed() < HEADER_TIMEOUT,
        "{:?} after the attack",
        t.elapsed()
    );
    assert!(daemon.0.try_wait().unwrap().is_none(), "daemon died");
}

/// At most `max_connections` connections are served; the next client waits (in the backlog)
/// until one closes, then gets its answer.
#[test]
fn connection_cap_queues_clients_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = Daemon::start(
        dir.path(),
        &config_with(port, "max_connections = 4\nheader_timeout = \"60s\"\n"),
    );
    wait_listening(port, "vidgest API listening");
    // wait_listening's probe connection must be gone before the count starts
    eventually(Duration::from_secs(10), "API answers", || {
        raw_call(port, "ListStreams", "{}", Duration::from_secs(2)).ok()
    });
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let (tx, answered) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = raw_call(port, "ListStreams", "{}", Duration::from_secs(30));
        let _ = tx.send((r, t.elapsed()));
    });
    // Held back while the 4 idle connections occupy the cap (a 1 s window to be served in)...
    eventually(Duration::from_secs(10), "the cap is logged", || {
        daemon
            .log_text()
            .contains("HTTP connection limit reached")
            .then_some(())
    });
    if let Ok((r, took)) = answered.recv_timeout(Duration::from_secs(1)) {
        panic!("a 5th connection was served beside 4 held ones after {took:?}: {r:?}");
    }
    // ... and served once one of them closes.
    let freed = Instant::now();
    drop(idle.pop());
    let (r, took) = answered
        .recv_timeout(Duration::from_secs(10))
        .expect("the queued client is answered within 10 s of a slot freeing");
    let (status, text) = r.expect("the queued client is answered");
    assert_eq!(status, 200, "{text}");
    eprintln!(
        "queued client answered {:?} after a slot freed",
        freed.elapsed()
    );
    eprintln!("queued client waited {took:?} in all");
    drop(idle);
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}
