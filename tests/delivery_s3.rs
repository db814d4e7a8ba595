//! Deliveries into S3, end to end: the daemon writes to moto's S3 server (vendor/venv, started
//! by these tests on 127.0.0.1), objects are read back with boto3 (tests/py/delivery_tool.py).
//! Faults come from tests/py/fault_proxy.py between the daemon and moto: refused connections,
//! 403, 404 NoSuchBucket, 500 and slow answers; each test checks the state the status API
//! reports during the fault, the log line, and that every record arrives once it clears.

#[path = "support/delivery.rs"]
mod delivery_support;
mod harness;
mod support;

use delivery_support::*;
use harness::*;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Generous: a debug daemon on a busy 2-core machine.
const DEADLINE: Duration = Duration::from_secs(90);
const SECRET: &str = "s3cr3t-KEY-never-logged-0123456789";
/// The daemons' S3 request timeout (ms): short, so a slow endpoint is noticed in a test.
const REQUEST_TIMEOUT_MS: &str = "2500";

/// One moto server for every test of this file (each uses its own bucket); it exits when the
/// test process does.
fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

fn head(port: u16) -> String {
    format!(
        "[agent]\ndata_dir = \"{{data_dir}}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n\
         [[stream]]\nname = \"events\"\nshards = 4\nretention_hours = 24\n"
    )
}

/// A gzip jsonl delivery of `events` to `bucket` at `endpoint`, partitioned by camera.
fn s3_delivery(name: &str, bucket: &str, endpoint: &str, extra: &str) -> String {
    format!(
        r#"[[delivery]]
name = "{name}"
source = "events"
compression = "gzip"
buffer_size = "1MiB"
buffer_interval = "1s"
prefix = "s3/camera=!{{partitionKeyFromQuery:camera}}/"
error_prefix = "errors/"
[delivery.destination]
kind = "s3"
bucket = "{bucket}"
region = "us-east-1"
endpoint = "{endpoint}"
path_style = true
access_key_id = "AKIAVIDGESTTEST"
secret_access_key = "{SECRET}"
{extra}
"#
    )
}

fn start_daemon(dir: &Path, toml: &str) -> Daemon {
    start_daemon_env(dir, toml, &[])
}

fn start_daemon_env(dir: &Path, toml: &str, env: &[(&str, &str)]) -> Daemon {
    let data_dir = dir.join("data");
    let config = dir.join("vidgest.toml");
    std::fs::write(
        &config,
        toml.replace("{data_dir}", &data_dir.display().to_string()),
    )
    .unwrap();
    Daemon::start_with_env(
        data_dir,
        config,
        &[
            &[("VIDGEST_S3_REQUEST_TIMEOUT_MS", REQUEST_TIMEOUT_MS)],
            env,
        ]
        .concat(),
    )
}

fn wait_listening(daemon: &Daemon, port: u16) {
    eventually(DEADLINE, "vidgest API listening", || {
        daemon.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

/// Reads the bucket back; every id in `ids` must be there, duplicates at most `max_dup_batches`
/// objects' worth. Returns head_object's view of the objects.
fn assert_bucket_holds(
    bucket: &str,
    name: &str,
    ids: std::ops::Range<u64>,
    max_dup_batches: u64,
) -> Vec<serde_json::Value> {
    let out = tempfile::tempdir().unwrap();
    let heads = moto().dump(bucket, out.path());
    let d = read_objects(out.path(), name, ".jsonl.gz", "s3/", "errors/", true);
    let missing: Vec<u64> = ids.clone().filter(|i| !d.ids.contains_key(i)).collect();
    assert!(
        missing.is_empty(),
        "{} records are in no object of {bucket}: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(
        d.ids.len() as u64,
        ids.end - ids.start,
        "records that were never put"
    );
    let largest = d.objects.values().copied().max().unwrap_or(0) as u64;
    assert!(
        d.duplicates() <= max_dup_batches * largest,
        "{} duplicates (objects of <= {largest} records)",
        d.duplicates()
    );
    heads
}

#[test]
fn objects_arrive_with_sse_and_storage_class_and_the_secret_stays_hidden() {
    let moto = moto();
    let bucket = "vidgest-basic";
    moto.create_bucket(bucket);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let toml = head(port)
        + &s3_delivery(
            "arch",
            bucket,
            &moto.endpoint(),
            "sse = \"AES256\"\nstorage_class = \"STANDARD_IA\"",
        );
    // Debug level: not even the HTTP client's own lines may show the secret.
    let daemon = start_daemon_env(dir.path(), &toml, &[("VIDGEST_LOG", "debug")]);
    wait_listening(&daemon, port);
    let endpoint = format!("http://127.0.0.1:{port}");
    put(&endpoint, "events", 0, 900, &[]);
    let s = wait_status(
        &daemon.config,
        "arch",
        DEADLINE,
        "900 records, lag 0",
        |s| s["records"] == 900 && s["lag_records"] == 0,
    );
    assert_eq!(s["state"], "healthy", "{s}");
    assert_eq!(s["target"], format!("s3://{bucket}"), "{s}");
    let heads = assert_bucket_holds(bucket, "arch", 0..900, 0);
    assert_eq!(
        heads.len() as u64,
        s["objects"].as_u64().unwrap(),
        "{heads:?}"
    );
    for h in &heads {
        assert_eq!(h["sse"], "AES256", "{h}");
        assert_eq!(h["storage_class"], "STANDARD_IA", "{h}");
    }
    // The secret key is in neither `vidgest check`'s output nor the daemon's log.
    let check = std::process::Command::new(vidgest_bin())
        .args(["check", "--config"])
        .arg(&daemon.config)
        .output()
        .unwrap();
    let check_out = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!check_out.contains(SECRET), "{check_out}");
    let log = daemon.log_text();
    assert!(daemon.terminate().success());
    assert!(!log.contains(SECRET), "the secret key is in the log");
}

/// A fault between the daemon and S3 from the start: records put before and during it are
/// all delivered once it clears. With `backlog`, the fault lasts until the status shows the
/// undelivered records as lag. Returns the daemon's log.
fn fault_then_recover(tag: &str, fault: &str, state: &str, backlog: bool) -> String {
    let moto = moto();
    let bucket = format!("vidgest-fault-{tag}");
    moto.create_bucket(&bucket);
    let mut proxy = FaultProxy::start(moto.port);
    proxy.set(fault);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = start_daemon(
        dir.path(),
        &(head(port) + &s3_delivery("s3", &bucket, &proxy.endpoint(), "")),
    );
    wait_listening(&daemon, port);
    let endpoint = format!("http://127.0.0.1:{port}");
    put(&endpoint, "events", 0, 300, &[]);
    let s = wait_status(&daemon.config, "s3", DEADLINE, state, |s| {
        s["state"] == state
    });
    assert_eq!(s["records"], 0, "{s}");
    let error = s["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains(&bucket),
        "last_error does not name the bucket: {s}"
    );
    // More records while the destination is down: the source stream is the spool.
    put(&endpoint, "events", 300, 300, &[]);
    if backlog {
        let s = wait_status(&daemon.config, "s3", DEADLINE, "lag of 600", |s| {
            s["lag_records"] == 600
        });
        assert_eq!(s["state"], state, "{s}");
    }
    proxy.set("pass");
    let s = wait_status(&daemon.config, "s3", DEADLINE, "600 records, lag 0", |s| {
        s["records"].as_u64() >= Some(600) && s["lag_records"] == 0
    });
    assert_eq!(s["state"], "healthy", "{s}");
    assert_bucket_holds(&bucket, "s3", 0..600, 1);
    let log = daemon.log_text();
    assert!(daemon.terminate().success());
    log
}

#[test]
fn unreachable_destination_retries_then_drains_the_backlog() {
    let log = fault_then_recover("refused", "refuse", "retrying", true);
    assert!(log.contains("recovered"), "no recovery line in the log");
}

#[test]
fn s3_403_is_failing_with_a_line_naming_bucket_and_fix() {
    let log = fault_then_recover("denied", "403", "failing", false);
    let line = log
        .lines()
        .find(|l| l.contains("denied writing s3://vidgest-fault-denied/"))
        .unwrap_or_else(|| panic!("no line naming the bucket:\n{log}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("credentials") && line.contains("s3:PutObject"),
        "{line}"
    );
    assert!(line.contains("403 Forbidden: AccessDenied"), "{line}");
    assert_logged_once_per_change(&log, "denied writing");
}

/// A failure is logged when it changes, not on every retry of the same object.
fn assert_logged_once_per_change(log: &str, what: &str) {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(what))
        // without the timestamp
        .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest))
        .collect();
    assert!(!lines.is_empty());
    let distinct: std::collections::BTreeSet<&str> = lines.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        lines.len(),
        "the same failure logged again:\n{lines:#?}"
    );
}

#[test]
fn s3_404_no_such_bucket_is_failing_with_a_line_naming_bucket_and_fix() {
    let log = fault_then_recover("nobucket", "404", "failing", false);
    let line = log
        .lines()
        .find(|l| l.contains("s3://vidgest-fault-nobucket does not exist"))
        .unwrap_or_else(|| panic!("no line naming the bucket:\n{log}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.to_lowercase()
            .contains("create the bucket or fix destination.bucket"),
        "{line}"
    );
    assert!(line.contains("NoSuchBucket"), "{line}");
    assert_logged_once_per_change(&log, "does not exist");
}

#[test]
fn s3_500_is_retrying_then_recovers() {
    fault_then_recover("internal", "500", "retrying", false);
}

#[test]
fn slow_s3_is_retrying_then_recovers() {
    // Each request is held longer than the daemon's request timeout.
    let slow = format!(
        "slow {}",
        REQUEST_TIMEOUT_MS.parse::<u64>().unwrap() * 2 / 1000
    );
    fault_then_recover("slow", &slow, "retrying", false);
}

#[test]
fn a_failing_destination_does_not_hold_up_another_delivery() {
    let moto = moto();
    let bucket = "vidgest-blocked";
    moto.create_bucket(bucket);
    let mut proxy = FaultProxy::start(moto.port);
    proxy.set("403");
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let local = r#"[[delivery]]
name = "local"
source = "events"
buffer_size = "1MiB"
buffer_interval = "1s"
prefix = "local/camera=!{partitionKeyFromQuery:camera}/"
[delivery.destination]
kind = "dir"
path = "outbox"
"#;
    let toml = head(port) + &s3_delivery("blocked", bucket, &proxy.endpoint(), "") + local;
    let daemon = start_daemon(dir.path(), &toml);
    wait_listening(&daemon, port);
    let endpoint = format!("http://127.0.0.1:{port}");
    wait_status(&daemon.config, "local", DEADLINE, "started", |_| true);
    let started = Instant::now();
    put(&endpoint, "events", 0, 500, &[]);
    let s = wait_status(
        &daemon.config,
        "local",
        DEADLINE,
        "all records, lag 0",
        |s| s["records"] == 500 && s["lag_records"] == 0,
    );
    let took = started.elapsed();
    assert_eq!(s["state"], "healthy", "{s}");
    let blocked = wait_status(&daemon.config, "blocked", DEADLINE, "failing", |s| {
        s["state"] == "failing"
    });
    assert_eq!(blocked["records"], 0, "{blocked}");
    // 1 s buffers plus the 5 s lag measurement: far less than the failing one's backoff.
    assert!(
        took < Duration::from_secs(30),
        "the dir delivery took {took:?}"
    );
    let d = read_objects(
        &daemon.data_dir.join("outbox"),
        "local",
        ".jsonl",
        "local/",
        "local-errors/",
        true,
    );
    assert_eq!(d.ids.len(), 500);
    assert_eq!(d.duplicates(), 0);
    proxy.set("pass");
    wait_status(&daemon.config, "blocked", DEADLINE, "caught up", |s| {
        s["records"] == 500 && s["state"] == "healthy"
    });
    assert!(daemon.terminate().success());
}

#[test]
fn sigterm_while_failing_stops_in_bounded_time_without_hammering_and_delivers_after_restart() {
    let moto = moto();
    let bucket = "vidgest-stop";
    moto.create_bucket(bucket);
    let mut proxy = FaultProxy::start(moto.port);
    proxy.set("403");
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let toml = head(port) + &s3_delivery("s3", bucket, &proxy.endpoint(), "");
    let daemon = start_daemon(dir.path(), &toml);
    wait_listening(&daemon, port);
    let endpoint = format!("http://127.0.0.1:{port}");
    put(&endpoint, "events", 0, 300, &[]);
    wait_status(&daemon.config, "s3", DEADLINE, "failing", |s| {
        s["state"] == "failing"
    });
    let (data_dir, config) = (daemon.data_dir.clone(), daemon.config.clone());
    let before = proxy.errors_sent();
    let stopping = Instant::now();
    assert!(daemon.terminate().success());
    let took = stopping.elapsed();
    let during_stop = proxy.errors_sent() - before;
    // The open buffers get 10 s to be written at shutdown, with the same backoff as ever
    // (0.5 s, 1 s, 2 s, ...: a handful of attempts), not a tight loop of requests.
    assert!(took < Duration::from_secs(25), "stopping took {took:?}");
    assert!(
        during_stop <= 12,
        "{during_stop} requests to a failing destination while stopping"
    );
    // Nothing was confirmed: after a restart against a working destination all records arrive.
    proxy.set("pass");
    let daemon = Daemon::start_with_env(data_dir, config, &[]);
    wait_listening(&daemon, port);
    wait_status(&daemon.config, "s3", DEADLINE, "300 records, lag 0", |s| {
        s["records"] == 300 && s["lag_records"] == 0
    });
    assert_bucket_holds(bucket, "s3", 0..300, 0);
    assert!(daemon.terminate().success());
}

#[test]
fn sigterm_with_full_buffers_and_a_failing_destination_backs_off_until_the_flush_bound() {
    let moto = moto();
    let bucket = "vidgest-held";
    moto.create_bucket(bucket);
    let mut proxy = FaultProxy::start(moto.port);
    proxy.set("403");
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    // `held` only writes when it stops (900 s buffers); `probe`, on the same stream, tells
    // when the records have been read.
    let toml = head(port)
        + &s3_delivery("held", bucket, &proxy.endpoint(), "").replace("\"1s\"", "\"900s\"")
        + r#"[[delivery]]
name = "probe"
source = "events"
buffer_interval = "1s"
[delivery.destination]
kind = "dir"
path = "outbox"
"#;
    let daemon = start_daemon(dir.path(), &toml);
    wait_listening(&daemon, port);
    let endpoint = format!("http://127.0.0.1:{port}");
    put(&endpoint, "events", 0, 300, &[]);
    wait_status(&daemon.config, "probe", DEADLINE, "300 records", |s| {
        s["records"] == 300
    });
    let (data_dir, config) = (daemon.data_dir.clone(), daemon.config.clone());
    let before = proxy.errors_sent();
    let stopping = Instant::now();
    let log = daemon.log.clone();
    assert!(daemon.terminate().success());
    let took = stopping.elapsed();
    let during_stop = proxy.errors_sent() - before;
    assert!(took < Duration::from_secs(25), "stopping took {took:?}");
    // 10 s of backoff from 0.5 s: a handful of attempts, not a tight loop.
    assert!(
        (1..=12).contains(&during_stop),
        "{during_stop} requests to a failing destination while stopping"
    );
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains("stopped before every buffer was written"),
        "{log}"
    );
    proxy.set("pass");
    // Nothing was confirmed: restarted (with 1 s buffers now), all records arrive.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"900s\"", "\"1s\"")).unwrap();
    let daemon = Daemon::start_with_env(data_dir, config, &[]);
    wait_listening(&daemon, port);
    wait_status(
        &daemon.config,
        "held",
        DEADLINE,
        "300 records, lag 0",
        |s| s["records"] == 300 && s["lag_records"] == 0,
    );
    assert!(daemon.terminate().success());
    assert_bucket_holds(bucket, "held", 0..300, 0);
}
