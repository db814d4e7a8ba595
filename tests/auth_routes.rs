//! The one auth middleware across every route family, against the real daemon with a read, a
//! write and an admin token: no token is 401, a read token on a write is 403, a write token on
//! a policy change (admin) is 403; HLS player routes take their session token instead of a
//! bearer token; /healthz is open. Every answer carries the security headers; CORS answers
//! preflights for the configured origins only, and is off without the setting. A network
//! listener without tokens is refused by `run` and `check`.

mod harness;
mod support;

use harness::*;
use std::time::Duration;

const READER: &str = "authz-reader-token-0123456";
const WRITER: &str = "authz-writer-token-0123456";
const ADMIN: &str = "authz-admin-token-01234567";
const CAMERA: &str = "cam";
const ORIGIN: &str = "https://nvr.example:8443";

const KINESIS: &str = "Kinesis_20131202.";
const FIREHOSE: &str = "Firehose_20150804.";
const AMZ_JSON: &str = "application/x-amz-json-1.1";

struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Which credential a request presents.
#[derive(Clone, Copy)]
enum Cred<'a> {
    None,
    Bearer(&'a str),
    /// As AWS SDKs send it: the token is the SigV4 access key id.
    SigV4(&'a str),
}

struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    fn new(port: u16) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}"),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into(),
        }
    }

    fn authorization(cred: Cred) -> Option<String> {
        match cred {
            Cred::None => None,
            Cred::Bearer(t) => Some(format!("Bearer {t}")),
            Cred::SigV4(t) => Some(format!(
                "AWS4-HMAC-SHA256 Credential={t}/20261201/us-east-1/kinesis/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=0123abcd"
            )),
        }
    }

    /// Every answer, whatever its status, carries the security headers.
    fn checked(mut r: ureq::http::Response<ureq::Body>, what: &str) -> Reply {
        let reply = Reply {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.body_mut().read_to_string().unwrap_or_default(),
        };
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            (
                "content-security-policy",
                "default-src 'self'; frame-ancestors 'none'",
            ),
            ("referrer-policy", "no-referrer"),
        ] {
            assert_eq!(
                reply.header(name),
                Some(value),
                "{what} ({}): {name} missing",
                reply.status
            );
        }
        reply
    }

    fn get(&self, path: &str, cred: Cred) -> Reply {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(a) = Self::authorization(cred) {
            req = req.header("Authorization", a);
        }
        let r = req.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        Self::checked(r, path)
    }

    fn post(&self, path: &str, target: Option<&str>, cred: Cred, body: serde_json::Value) -> Reply {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(a) = Self::authorization(cred) {
            req = req.header("Authorization", a);
        }
        req = match target {
            Some(t) => req
                .header("X-Amz-Target", t)
                .header("Content-Type", AMZ_JSON),
            None => req.header("Content-Type", "application/json"),
        };
        let what = format!("{path} {}", target.unwrap_or(""));
        let r = req
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("POST {what}: {e}"));
        Self::checked(r, &what)
    }

    /// `POST /` for a Kinesis or Firehose operation (`target` with its prefix).
    fn aws(&self, target: &str, cred: Cred, body: serde_json::Value) -> Reply {
        self.post("/", Some(target), cred, body)
    }

    fn preflight(&self, path: &str, origin: &str) -> Reply {
        let r = self
            .agent
            .options(format!("{}{path}", self.base))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,x-amz-target",
            )
            .call()
            .unwrap();
        Self::checked(r, "preflight")
    }
}

fn assert_status(r: &Reply, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
}

/// An AWS family's refusal: the status and the service's error type.
fn assert_aws_refusal(r: &Reply, status: u16, kind: &str, what: &str) {
    assert_status(r, status, what);
    assert_eq!(r.header("x-amzn-ErrorType"), Some(kind), "{what}");
    // the body was left unread: the server closes the connection and says so, so clients do
    // not reuse it (they did, and failed with "peer disconnected")
    assert_eq!(r.header("connection"), Some("close"), "{what}");
}

fn config(port: u16) -> String {
    format!(
        r#"[agent]
data_dir = "{{data_dir}}"
[api]
listen = "127.0.0.1:{port}"
cors_allow_origins = ["{ORIGIN}"]
[[api.token]]
token = "{READER}"
scope = "read"
[[api.token]]
token = "{WRITER}"
scope = "write"
[[api.token]]
token = "{ADMIN}"
scope = "admin"
[[stream]]
name = "records"
[[camera]]
name = "{CAMERA}"
fragment_duration = "500ms"
[camera.source]
kind = "test"
width = 64
height = 48
fps = 10
gop = 5
"#
    )
}

fn start(dir: &std::path::Path, config: &str, port: u16) -> Daemon {
    let daemon = Daemon::start(dir, config);
    eventually(Duration::from_secs(60), "the API to listen", || {
        daemon.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    daemon
}

#[test]
fn every_route_family_needs_its_scope_and_every_answer_has_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = start(dir.path(), &config(port), port);
    let api = Api::new(port);
    let put_record =
        || serde_json::json!({"StreamName": "records", "Data": "eA==", "PartitionKey": "k"});

    // /healthz is open; an unknown path is a 404 (with the headers, like every answer)
    assert_status(&api.get("/healthz", Cred::None), 200, "healthz");
    assert_status(&api.get("/no-such-route", Cred::None), 404, "unknown path");

    // Kinesis: POST / PutRecord
    let target = format!("{KINESIS}PutRecord");
    for cred in [Cred::None, Cred::Bearer("forged-token-0123456789")] {
        let r = api.aws(&target, cred, put_record());
        assert_aws_refusal(
            &r,
            401,
            "UnrecognizedClientException",
            "PutRecord, no token",
        );
    }
    let r = api.aws(&target, Cred::SigV4(READER), put_record());
    assert_aws_refusal(&r, 403, "AccessDeniedException", "PutRecord, read token");
    assert!(r.body.contains("needs scope write"), "{}", r.body);
    assert_status(
        &api.aws(&target, Cred::SigV4(WRITER), put_record()),
        200,
        "PutRecord, write token",
    );
    let list = format!("{KINESIS}ListStreams");
    let r = api.aws(&list, Cred::None, serde_json::json!({}));
    assert_aws_refusal(
        &r,
        401,
        "UnrecognizedClientException",
        "ListStreams, no token",
    );
    assert_status(
        &api.aws(&list, Cred::SigV4(READER), serde_json::json!({})),
        200,
        "ListStreams, read token",
    );
    // creating a stream changes policy: admin
    let create = format!("{KINESIS}CreateStream");
    let new_stream = serde_json::json!({"StreamName": "made-by-admin", "ShardCount": 1});
    for (cred, what) in [(READER, "read"), (WRITER, "write")] {
        let r = api.aws(&create, Cred::SigV4(cred), new_stream.clone());
        assert_aws_refusal(
            &r,
            403,
            "AccessDeniedException",
            &format!("CreateStream, {what}"),
        );
        assert!(r.body.contains("needs scope admin"), "{}", r.body);
    }
    assert_status(
        &api.aws(&create, Cred::SigV4(ADMIN), new_stream),
        200,
        "CreateStream, admin token",
    );
    let retention = format!("{KINESIS}IncreaseStreamRetentionPeriod");
    let longer = serde_json::json!({"StreamName": "records", "RetentionPeriodHours": 48});
    let r = api.aws(&retention, Cred::SigV4(WRITER), longer.clone());
    assert_aws_refusal(&r, 403, "AccessDeniedException", "retention, write token");
    assert_status(
        &api.aws(&retention, Cred::SigV4(ADMIN), longer),
        200,
        "retention, admin token",
    );

    // Firehose: POST / PutRecordBatch
    let batch = format!("{FIREHOSE}PutRecordBatch");
    let records = serde_json::json!({"DeliveryStreamName": "d", "Records": [{"Data": "eA=="}]});
    let r = api.aws(&batch, Cred::None, records.clone());
    assert_aws_refusal(
        &r,
        401,
        "UnrecognizedClientException",
        "PutRecordBatch, no token",
    );
    let r = api.aws(&batch, Cred::SigV4(READER), records);
    assert_aws_refusal(
        &r,
        403,
        "AccessDeniedException",
        "PutRecordBatch, read token",
    );
    assert_status(
        &api.aws(
            &format!("{FIREHOSE}ListDeliveryStreams"),
            Cred::SigV4(READER),
            serde_json::json!({}),
        ),
        200,
        "ListDeliveryStreams, read token",
    );

    // KVS-compatible control plane
    let kvs = |path: &str, cred, body| api.post(path, None, cred, body);
    let r = kvs("/listStreams", Cred::None, serde_json::json!({}));
    assert_status(&r, 401, "listStreams, no token");
    assert_eq!(r.header("x-amzn-ErrorType"), Some("NotAuthorizedException"));
    assert_status(
        &kvs("/listStreams", Cred::Bearer(READER), serde_json::json!({})),
        200,
        "listStreams, read token",
    );
    let update = serde_json::json!({
        "StreamName": CAMERA,
        "CurrentVersion": "1",
        "Operation": "INCREASE_DATA_RETENTION",
        "DataRetentionChangeInHours": 1,
    });
    for (cred, what) in [(READER, "read"), (WRITER, "write")] {
        let r = kvs("/updateDataRetention", Cred::SigV4(cred), update.clone());
        assert_status(&r, 403, &format!("updateDataRetention, {what} token"));
        assert_eq!(r.header("x-amzn-ErrorType"), Some("NotAuthorizedException"));
    }
    assert_status(
        &kvs("/updateDataRetention", Cred::SigV4(ADMIN), update),
        200,
        "updateDataRetention, admin token",
    );
    let tags = serde_json::json!({"StreamName": CAMERA, "Tags": {"site": "lab"}});
    assert_status(
        &kvs("/tagStream", Cred::SigV4(READER), tags.clone()),
        403,
        "tagStream, read token",
    );
    assert_status(
        &kvs("/tagStream", Cred::SigV4(WRITER), tags),
        200,
        "tagStream, write token",
    );

    // HLS: the session URL needs read; its player routes take the session token alone
    eventually(Duration::from_secs(90), "fragments to be recorded", || {
        daemon.assert_running();
        let f = try_read_fragments(&daemon.data_dir, CAMERA).ok()?;
        (f.len() >= 2).then_some(())
    });
    let live = serde_json::json!({"StreamName": CAMERA, "PlaybackMode": "LIVE"});
    let r = kvs("/getHLSStreamingSessionURL", Cred::None, live.clone());
    assert_status(&r, 401, "getHLSStreamingSessionURL, no token");
    let r = kvs("/getHLSStreamingSessionURL", Cred::Bearer(READER), live);
    assert_status(&r, 200, "getHLSStreamingSessionURL, read token");
    let url: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let url = url["HLSStreamingSessionURL"].as_str().unwrap();
    let path = url.strip_prefix(&api.base).expect(url);
    let master = api.get(path, Cred::None);
    assert_status(&master, 200, "master playlist with its session token");
    assert!(master.body.starts_with("#EXTM3U"), "{}", master.body);
    // one character of the token changed: forged
    let (head, token) = path.split_once("SessionToken=").unwrap();
    let mut forged: Vec<char> = token.chars().collect();
    let i = forged.len() / 2;
    forged[i] = if forged[i] == 'A' { 'B' } else { 'A' };
    let forged = format!(
        "{head}SessionToken={}",
        forged.into_iter().collect::<String>()
    );
    assert_status(&api.get(&forged, Cred::None), 403, "forged session token");
    // an API token does not stand in for the session token
    let bare = head.trim_end_matches(['?', '&']);
    assert_status(&api.get(bare, Cred::Bearer(ADMIN)), 403, "no session token");

    // REST
    assert_status(
        &api.get("/api/v1/cameras", Cred::None),
        401,
        "cameras, no token",
    );
    let r = api.get("/api/v1/cameras", Cred::Bearer("forged-token-0123456789"));
    assert_status(&r, 401, "cameras, unknown token");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_status(
        &api.get("/api/v1/cameras", Cred::Bearer(READER)),
        200,
        "cameras, read token",
    );

    // CORS: a preflight from the allowed origin is answered for it, another origin's is not
    let ok = api.preflight("/", ORIGIN);
    assert_status(&ok, 200, "preflight, allowed origin");
    assert_eq!(ok.header("access-control-allow-origin"), Some(ORIGIN));
    let allowed = ok
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in ["authorization", "x-amz-target", "content-type"] {
        assert!(allowed.contains(h), "{h} in {allowed}");
    }
    let other = api.preflight("/", "https://evil.example");
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert!(daemon.is_running());
}

#[test]
fn cors_is_off_without_origins_and_a_network_listener_needs_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let plain =
        format!("[agent]\ndata_dir = \"{{data_dir}}\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n");
    let daemon = start(dir.path(), &plain, port);
    let api = Api::new(port);
    let r = api.preflight("/", ORIGIN);
    assert_eq!(r.header("access-control-allow-origin"), None, "CORS is off");
    // no tokens on loopback: open
    assert_status(
        &api.get("/api/v1/cameras", Cred::None),
        200,
        "open on loopback",
    );
    assert!(daemon.terminate().success());

    // no tokens on every interface: `check` and `run` refuse, naming api.listen and the fixes
    let open = dir.path().join("open.toml");
    let data = dir.path().join("data-open");
    let text = format!(
        "[agent]\ndata_dir = \"{}\"\n[api]\nlisten = \"0.0.0.0:{port}\"\n",
        data.display()
    );
    std::fs::write(&open, &text).unwrap();
    let open = open.to_str().unwrap();
    for cmd in ["check", "run"] {
        let (ok, _, stderr) = cli(&[cmd, "--config", open]);
        assert!(!ok, "{cmd} accepted an open network listener");
        assert!(stderr.contains("api.listen"), "{cmd}: {stderr}");
        assert!(
            stderr.contains("allow_unauthenticated = true"),
            "{cmd}: {stderr}"
        );
    }
    assert!(!data.exists(), "run refused before touching the data dir");
    // the explicit opt-in passes the config check
    std::fs::write(
        dir.path().join("open.toml"),
        text.replace("[api]\n", "[api]\nallow_unauthenticated = true\n"),
    )
    .unwrap();
    // (`check` may still report the machine's environment; not this problem)
    let (_, _, stderr) = cli(&["check", "--config", open]);
    assert!(!stderr.contains("allow_unauthenticated"), "{stderr}");
}
