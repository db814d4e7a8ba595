//! Peers for the forwarder tests (tests/forward_*.rs, included with `#[path]`): kinesalite with
//! a data directory, a throttling proxy in front of it, Mosquitto with persistence and
//! `mosquitto_sub`. All on 127.0.0.1, killed on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls `f` every 50 ms until it returns Some (a condition check, not a sleep to synchronize).
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_listening(port: u16, what: &str) {
    eventually(Duration::from_secs(60), what, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

pub fn wait_closed(port: u16, what: &str) {
    eventually(Duration::from_secs(30), what, || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
}

pub struct Proc(pub Child);

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(
            unsafe { libc::kill(self.0.id() as i32, sig) },
            0,
            "kill({sig})"
        );
    }
    /// Waits for it to exit.
    pub fn reap(&mut self) {
        let _ = self.0.wait();
    }
    /// SIGTERM and reap.
    pub fn terminate(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// kinesalite 3.3.3 (vendor/node, installed by scripts/bootstrap) on 127.0.0.1:`port`, data in
/// `dir` (LevelDB), so a restart on the same port and dir keeps the streams and records.
pub fn start_kinesalite(port: u16, dir: &Path) -> Proc {
    let module = root().join("vendor/node/node_modules/kinesalite");
    assert!(
        module.join("package.json").is_file(),
        "{} is missing: run scripts/bootstrap (installs kinesalite@3.3.3 with npm)",
        module.display()
    );
    std::fs::create_dir_all(dir).unwrap();
    let js = format!(
        "require({:?})({{path: {:?}, createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0}})\
         .listen({port}, '127.0.0.1', () => console.log('listening'))",
        module.display().to_string(),
        dir.display().to_string()
    );
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.with_extension("log"))
        .unwrap();
    let child = Command::new("node")
        .args(["-e", &js])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("node (installed by scripts/bootstrap) starts kinesalite");
    let p = Proc(child);
    wait_listening(port, "kinesalite listening");
    p
}

/// Which entries of the n-th PutRecords request (0-based, counting requests of 2+ entries),
/// given its partition keys, the proxy fails.
pub type FailRule = dyn Fn(usize, &[String]) -> Vec<bool> + Send + Sync;

/// An HTTP proxy in front of kinesalite that fails chosen PutRecords entries with
/// ProvisionedThroughputExceededException (as the service does per entry), forwards the
/// others and merges the per-entry results in the service's format. Counts what it saw.
pub struct ThrottlingProxy {
    pub port: u16,
    pub entries_seen: Arc<AtomicUsize>,
    pub entries_failed: Arc<AtomicUsize>,
}

impl ThrottlingProxy {
    /// Serves on the current tokio runtime until the test ends.
    pub async fn start(upstream_port: u16, rule: Box<FailRule>) -> ThrottlingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let rule: Arc<FailRule> = Arc::from(rule);
        let (s, f) = (seen.clone(), failed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (s, f, requests, rule) = (s.clone(), f.clone(), requests.clone(), rule.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (s, f, requests, rule) =
                            (s.clone(), f.clone(), requests.clone(), rule.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                proxy_one(req, upstream_port, &s, &f, &requests, &*rule).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        ThrottlingProxy {
            port,
            entries_seen: seen,
            entries_failed: failed,
        }
    }
}

async fn proxy_one(
    req: hyper::Request<hyper::body::Incoming>,
    upstream_port: u16,
    seen: &AtomicUsize,
    failed: &AtomicUsize,
    requests: &AtomicUsize,
    rule: &FailRule,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "host" | "content-length"))
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    if target != "Kinesis_20131202.PutRecords" {
        let (status, out) = upstream(upstream_port, headers, body.to_vec()).await;
        return respond(status, out);
    }
    let mut req: Value = serde_json::from_slice(&body).expect("PutRecords body is JSON");
    let entries = req["Records"].as_array().cloned().unwrap_or_default();
    seen.fetch_add(entries.len(), Ordering::SeqCst);
    let keys: Vec<String> = entries
        .iter()
        .map(|e| e["PartitionKey"].as_str().unwrap_or_default().to_string())
        .collect();
    let fail = if entries.len() >= 2 {
        rule(requests.fetch_add(1, Ordering::SeqCst), &keys)
    } else {
        vec![false; entries.len()]
    };
    let n_failed = fail.iter().filter(|f| **f).count();
    failed.fetch_add(n_failed, Ordering::SeqCst);
    let forward: Vec<Value> = entries
        .iter()
        .zip(&fail)
        .filter(|(_, f)| !**f)
        .map(|(e, _)| e.clone())
        .collect();
    let mut upstream_results = Vec::new();
    if !forward.is_empty() {
        req["Records"] = Value::Array(forward);
        let (status, out) =
            upstream(upstream_port, headers, serde_json::to_vec(&req).unwrap()).await;
        if status != 200 {
            return respond(status, out);
        }
        let v: Value = serde_json::from_slice(&out).expect("kinesalite answers JSON");
        upstream_results = v["Records"].as_array().cloned().unwrap_or_default();
    }
    let mut ok = upstream_results.into_iter();
    let mut upstream_failed = 0;
    let results: Vec<Value> = fail
        .iter()
        .map(|f| {
            if *f {
                json!({
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": "Rate exceeded for shard shardId-000000000000 in stream remote under account 000000000000."
                })
            } else {
                let r = ok.next().expect("one upstream result per forwarded entry");
                if r.get("ErrorCode").is_some() {
                    upstream_failed += 1;
                }
                r
            }
        })
        .collect();
    let out = json!({"FailedRecordCount": n_failed + upstream_failed, "Records": results});
    respond(200, serde_json::to_vec(&out).unwrap())
}

fn respond(status: u16, body: Vec<u8>) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn upstream(port: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> (u16, Vec<u8>) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent.post(format!("http://127.0.0.1:{port}/"));
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        match req.send(&body[..]) {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_vec().unwrap_or_default(),
            ),
            Err(e) => (502, format!("proxy: {e}").into_bytes()),
        }
    })
    .await
    .unwrap()
}

/// Mosquitto on 127.0.0.1:`port` with persistence in `dir` (Debian package, installed by
/// scripts/bootstrap).
pub fn start_mosquitto(port: u16, dir: &Path) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            // `user root`: as root, mosquitto would switch to its own user, who cannot write
            // the tempdir (ignored when not root).
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {}/\nlog_dest file {}/mosquitto.log\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
            dir.display(),
            dir.display()
        ),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Its log goes to mosquitto.log in `dir`; stderr only warns about running as root.
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto (Debian package, installed by scripts/bootstrap)");
    let p = Proc(child);
    wait_listening(port, "mosquitto listening");
    p
}

/// `mosquitto_sub -v` (one "topic payload" line per message) with a persistent QoS 1 session
/// (`-c -i`), so messages published while it reconnects are queued for it; appends to `out`.
pub fn start_subscriber(port: u16, topic: &str, client_id: &str, out: &Path) -> Proc {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .unwrap();
    let child = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-c"])
        .args(["-i", client_id, "-v", "-t", topic])
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub (Debian package mosquitto-clients)");
    Proc(child)
}

/// The retained message of `topic` right now (None if there is none).
pub fn retained(port: u16, topic: &str) -> Option<String> {
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
        .args(["-C", "1", "-W", "2", "--retained-only"])
        .output()
        .expect("mosquitto_sub");
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Runs a forwarder (consumer `forward-<name>` of stream `src`) as a task.
pub fn spawn_forwarder(
    cfg: vidgest::config::ForwardConfig,
    name: &str,
    streams: &Arc<vidgest::streams::ShardStreams>,
) -> (
    Arc<vidgest::delivery::forward::ForwardStatus>,
    vidgest::lifecycle::Shutdown,
    tokio::task::JoinHandle<Result<(), vidgest::delivery::forward::ForwardError>>,
) {
    let status = vidgest::delivery::forward::ForwardStatus::new(name);
    let shutdown = vidgest::lifecycle::Shutdown::new();
    let consumer = streams.consumer("src", &format!("forward-{name}")).unwrap();
    let task = tokio::spawn(vidgest::delivery::forward::run(
        cfg,
        "dev1".into(),
        consumer,
        Arc::clone(&status),
        shutdown.clone(),
    ));
    (status, shutdown, task)
}

/// Polls the forwarder's status until `f` holds (90 s at most).
pub async fn wait_status(
    status: &vidgest::delivery::forward::ForwardStatus,
    what: &str,
    f: impl Fn(&vidgest::delivery::forward::ForwardSnapshot) -> bool,
) -> vidgest::delivery::forward::ForwardSnapshot {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let s = status.snapshot();
        if f(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; status {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
