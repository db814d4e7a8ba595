use super::*;
use std::collections::HashSet;

const GOOD: &str = r#"
[agent]
data_dir = "/tmp/vidgest"
[api]
listen = "127.0.0.1:8080"
[storage]
max_bytes = "10GiB"
on_full = "deny_new"
[[camera]]
name = "front"
fragment_duration = "2s"
retention = "72h"
[camera.source]
kind = "rtsp"
url = "rtsp://admin:s3cret@127.0.0.1:8554/cam"
[[camera]]
name = "lab"
[camera.source]
kind = "test"
codec = "h265"
"#;

fn problems(text: &str) -> Vec<String> {
    Config::parse(text)
        .expect_err("config should be rejected")
        .problems()
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn parses_the_contract_with_defaults() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(c.cameras.len(), 2);
    assert_eq!(c.storage.on_full, OnFull::DenyNew);
    assert_eq!(c.storage.max_bytes, Some(ByteSize(10 << 30)));
    let lab = c.camera("lab").unwrap();
    assert_eq!(lab.fragment_duration.0, Duration::from_secs(2));
    assert_eq!(lab.retention.0, Duration::from_secs(72 * 3600));
    assert_eq!(lab.source.codec(), VideoCodec::H265);
    let front = c.camera("front").unwrap();
    assert_eq!(
        front.source.credentials(),
        Some(("admin".into(), "s3cret".into()))
    );
    assert_eq!(
        front.source.url_without_credentials().unwrap(),
        "rtsp://127.0.0.1:8554/cam"
    );
}

#[test]
fn unknown_key_names_its_path() {
    let text = GOOD.replace("url = ", "urll = \"x\"\nurl = ");
    let p = problems(&text);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("camera[0].source"), "{p:?}");
    assert!(p[0].contains("urll"), "{p:?}");
}

#[test]
fn bad_value_names_its_path() {
    let text = GOOD.replace("retention = \"72h\"", "retention = \"soon\"");
    let p = problems(&text);
    assert!(
        p[0].starts_with("camera[0].retention: invalid duration `soon`"),
        "{p:?}"
    );
    let text = GOOD.replace("kind = \"test\"", "kind = \"webcam\"");
    let p = problems(&text);
    assert!(p[0].starts_with("camera[1].source.kind"), "{p:?}");
}

#[test]
fn semantic_problems_are_all_reported_with_paths() {
    let text = r#"
[agent]
data_dir = "/d"
[[camera]]
name = "a"
fragment_duration = "11s"
retention = "30m"
[camera.source]
kind = "test"
[[camera]]
name = "a"
[camera.source]
kind = "rtsp"
url = "user:pw@127.0.0.1/cam"
path = "/x.mp4"
"#;
    let p = problems(text);
    assert!(
        p.contains(&"camera[0].fragment_duration: 11s is out of range: 500ms ..= 10s".to_string()),
        "{p:?}"
    );
    assert!(
        p.iter().any(|x| x.starts_with("camera[0].retention:")),
        "{p:?}"
    );
    assert!(
        p.contains(&"camera[1].name: duplicate camera name `a`".to_string()),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|x| x.starts_with("camera[1].source.url: missing scheme")),
        "{p:?}"
    );
    assert!(
        p.contains(&"camera[1].source.path: not used by kind = \"rtsp\"".to_string()),
        "{p:?}"
    );
    // The password in the bad URL is never echoed.
    assert!(!p.iter().any(|x| x.contains("pw@")), "{p:?}");
}

#[test]
fn credentials_never_show_in_debug_output() {
    let c = Config::parse(GOOD).unwrap();
    let dbg = format!("{:?}", c);
    assert!(!dbg.contains("s3cret"), "{dbg}");
    assert!(!dbg.contains("admin"), "{dbg}");
}

#[test]
fn missing_required_sections() {
    let p = problems("[[camera]]\nname = \"x\"\n[camera.source]\nkind = \"test\"\n");
    assert!(p[0].contains("agent"), "{p:?}");
    let p = problems(
        "[agent]\ndata_dir = \"/d\"\n[[camera]]\nname = \"x\"\n[camera.source]\nkind = \"rtsp\"\n",
    );
    assert_eq!(
        p,
        vec!["camera[0].source.url: required for kind = \"rtsp\"".to_string()]
    );
}

#[test]
fn segment_size_follows_tight_budgets() {
    let c = Config::parse(GOOD).unwrap();
    let mut cam = c.cameras[0].clone();
    assert_eq!(cam.segment_size(&c.storage), 32 << 20);
    cam.max_bytes = Some(ByteSize(40 << 20));
    assert_eq!(cam.segment_size(&c.storage), 10 << 20);
}

#[test]
fn streams_and_tokens() {
    let text = r#"
[agent]
data_dir = "/d"
[api]
listen = "127.0.0.1:9000"
[[api.token]]
token = "0123456789abcdef-secret"
scope = "read"
[[stream]]
name = "detections"
shards = 2
retention_hours = 24
[[stream]]
name = "metrics"
"#;
    let c = Config::parse(text).unwrap();
    assert_eq!(c.streams.len(), 2);
    assert_eq!(c.streams[1].shards, 1);
    assert_eq!(c.streams[1].retention_hours, 24);
    assert!(!c.streams[0].enforce_limits);
    assert_eq!(c.api.tokens[0].scope, TokenScope::Read);
    assert!(!format!("{c:?}").contains("secret"));
    let bad = text
        .replace("retention_hours = 24", "retention_hours = 12")
        .replace("shards = 2", "shards = 0");
    let p = problems(&bad);
    assert!(
        p.contains(&"stream[0].shards: 0 is out of range: 1 ..= 64".to_string()),
        "{p:?}"
    );
    assert!(
        p.contains(&"stream[0].retention_hours: 12 is out of range: 24 ..= 8760".to_string()),
        "{p:?}"
    );
}

/// TLS takes both files or neither; the files themselves are checked at start (`api::TlsFiles`).
#[test]
fn tls_cert_and_key_come_together() {
    let with = |keys: &str| {
        GOOD.replace(
            "listen = \"127.0.0.1:8080\"\n",
            &format!("listen = \"127.0.0.1:8080\"\n{keys}"),
        )
    };
    let c = Config::parse(&with(
        "tls_cert = \"certs/chain.pem\"\ntls_key = \"/k.pem\"\n",
    ))
    .unwrap();
    assert_eq!(
        c.api.tls_cert.as_deref(),
        Some(Path::new("certs/chain.pem"))
    );
    assert_eq!(c.api.tls_key.as_deref(), Some(Path::new("/k.pem")));
    assert_eq!(Config::parse(GOOD).unwrap().api.tls_cert, None);
    assert_eq!(
        problems(&with("tls_cert = \"c.pem\"\n")),
        ["api.tls_key: is required with api.tls_cert (both or neither)"]
    );
    assert_eq!(
        problems(&with("tls_key = \"k.pem\"\n")),
        ["api.tls_cert: is required with api.tls_key (both or neither)"]
    );
}

#[test]
fn url_credentials_are_percent_decoded() {
    let text = GOOD.replace(
        "rtsp://admin:s3cret@127.0.0.1:8554/cam",
        "rtsp://us%C3%A9r:p%40ss%2Fé@127.0.0.1:8554/cam",
    );
    let c = Config::parse(&text).unwrap();
    let src = &c.camera("front").unwrap().source;
    assert_eq!(src.credentials(), Some(("usér".into(), "p@ss/é".into())));
    assert_eq!(
        src.url_without_credentials().unwrap(),
        "rtsp://127.0.0.1:8554/cam"
    );
}

/// The problems for `text` plus the Debug of nothing else: every rendering a user may see.
fn all_output(text: &str) -> String {
    match Config::parse(text) {
        Ok(c) => format!("{c:?}"),
        Err(e) => format!("{e}\n{e:?}"),
    }
}

#[test]
fn secrets_are_not_echoed_by_type_or_syntax_errors() {
    let base = "[agent]\ndata_dir = \"/d\"\n";
    let cam = "[[camera]]\nname = \"a\"\n[camera.source]\nkind = \"rtsp\"\n";
    for (text, secret, path) in [
        (
            format!("{base}{cam}url = \"rtsp://h/x\"\nusername = \"u\"\npassword = 987654321\n"),
            "987654321",
            "camera[0].source.password",
        ),
        (
            format!("{base}{cam}url = \"rtsp://h/x\"\nusername = 13579246\n"),
            "13579246",
            "camera[0].source.username",
        ),
        (
            format!("{base}{cam}url = 24680135\n"),
            "24680135",
            "camera[0].source.url",
        ),
        (
            format!("{base}[[api.token]]\ntoken = 11223344556677889\n"),
            "11223344556677889",
            "api.token[0].token",
        ),
        (
            format!("{base}{cam}url = \"rtsp://h/x\"\nusername = \"u\"\npassword = 1979-05-27\n"),
            "1979",
            "camera[0].source.password",
        ),
        (
            format!("{base}{cam}url = \"rtsp://h/x\"\nusername = \"u\"\npassword = hunter2\n"),
            "hunter2",
            "",
        ),
        (
            format!("{base}{cam}url = \"rtsp://u:Zq7Xk9@h/x\nusername = \"u\"\n"),
            "Zq7Xk9",
            "",
        ),
        (
            format!("{base}{cam}url = \"rtsp://h/x\"\nusername = \"u\"\npassword = \"Zq7Xk9\"\npassword = \"Zq7Xk9\"\n"),
            "Zq7Xk9",
            "",
        ),
    ] {
        let out = all_output(&text);
        assert!(out.contains(path), "{out}");
        assert!(!out.contains(secret), "secret echoed: {out}");
    }
}

#[test]
fn urls_with_unencoded_reserved_characters_are_refused_without_echo() {
    for (url, secret) in [
        ("rtsp://admin:s3cr3t/x@10.0.0.1/live", "s3cr3t"),
        ("rtsp://admin:pa@ss#wXrd@10.0.0.1/live", "wXrd"),
        ("rtsp://admin:pa?ssw@10.0.0.1/live", "ssw@"),
        ("rtsp://admin:p%zzword@10.0.0.1/live", "zzword"),
        ("rtsp://admin:pZss wXrd@10.0.0.1/live", "pZss"),
    ] {
        let text = GOOD.replace("rtsp://admin:s3cret@127.0.0.1:8554/cam", url);
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("camera[0].source.url: the user name or password holds characters"),
            "{p:?}"
        );
        assert!(!p[0].contains(secret), "{p:?}");
        assert!(!p[0].contains("admin"), "{p:?}");
        // The same for a detection sub-stream.
        let text = format!("{GOOD}[camera.detect]\nsource = \"{url}\"\n");
        let p = problems(&text);
        assert!(
            p[0].starts_with("camera[1].detect.source: the user name or password"),
            "{p:?}"
        );
        let out = all_output(&text);
        assert!(!out.contains(secret), "{out}");
    }
}

#[test]
fn detect_source_is_redacted_in_debug_output() {
    let text =
        format!("{GOOD}[camera.detect]\nsource = \"rtsp://viewer:Sub%2Fs3cret@10.0.0.3/sub\"\n");
    let c = Config::parse(&text).unwrap();
    let d = c.cameras[1].detect.as_ref().unwrap();
    assert_eq!(
        d.source.as_ref().unwrap().credentials(),
        Some(("viewer".into(), "Sub/s3cret".into()))
    );
    let dbg = format!("{c:?}");
    assert!(dbg.contains("rtsp://***:***@10.0.0.3/sub"), "{dbg}");
    assert!(!dbg.contains("s3cret") && !dbg.contains("viewer"), "{dbg}");
}

/// Config validation and the stream store (what `run` calls) agree on stream names.
#[test]
fn stream_names_match_the_stream_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::streams::ShardStreams::open(
        dir.path(),
        crate::streams::ShardStreamsOptions::default(),
        crate::clock::system_clock(),
    )
    .unwrap();
    let long_ok = "s".repeat(128);
    let too_long = "s".repeat(129);
    for name in [
        "detections",
        "a.b-c_d",
        ".hidden",
        "..",
        ".",
        "a/b",
        "",
        "ü",
        long_ok.as_str(),
        too_long.as_str(),
    ] {
        let text = format!("[agent]\ndata_dir = \"/d\"\n[[stream]]\nname = \"{name}\"\n");
        let config_ok = Config::parse(&text).is_ok();
        let store_ok = store.create_stream(name, 1, 24).is_ok();
        assert_eq!(config_ok, store_ok, "stream name {name:?}");
        // The same rule for a detection records stream.
        let text = format!(
            "[agent]\ndata_dir = \"/d\"\n[[camera]]\nname = \"c\"\n[camera.source]\nkind = \"test\"\n[camera.detect]\nstream = \"{name}\"\n"
        );
        assert_eq!(
            Config::parse(&text).is_ok(),
            store_ok,
            "detect stream {name:?}"
        );
    }
}

const EXAMPLE: &str = include_str!("../../configs/example.toml");

/// configs/example.toml with its commented-out settings (`#key = ...`, `#[table]`; prose
/// comments are `# text`) switched on.
fn example_with_every_setting() -> String {
    EXAMPLE
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c != ' ' && c != '#') => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn example_config_parses_as_shipped_and_with_every_setting() {
    let c = Config::parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.cameras.len(), 4);
    assert!(c.cameras[0].detection().is_none());
    assert!(c.api.tokens.is_empty());

    let full = example_with_every_setting();
    let c = Config::parse(&full).unwrap_or_else(|e| panic!("{e}\n{full}"));
    let front = &c.cameras[0];
    assert!(front.detection().is_some());
    assert_eq!(front.detect.as_ref().unwrap().zones.len(), 1);
    assert_eq!(c.api.tokens.len(), 1);
    assert_eq!(c.streams.len(), 1);
    assert_eq!(front.source.credentials().unwrap().0, "viewer");
}

/// The keys serde accepts in one table, read from its unknown-field error: the list follows
/// the schema without being kept by hand.
fn schema_fields(text_with_unknown_key: &str) -> Vec<String> {
    let err = Config::parse(text_with_unknown_key).expect_err("unknown key accepted");
    let msg = err.problems()[0].message.clone();
    assert!(msg.contains("unknown field `zzz_unknown`"), "{msg}");
    let expected = msg.split_once("expected").expect("a list of fields").1;
    let fields: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(!fields.is_empty(), "{msg}");
    fields
}

/// Keys of every table at `path` (array elements merged).
fn keys_at(v: &toml::Value, path: &[&str]) -> HashSet<String> {
    match (v, path) {
        (toml::Value::Array(items), _) => items.iter().flat_map(|i| keys_at(i, path)).collect(),
        (toml::Value::Table(t), []) => t.keys().cloned().collect(),
        (toml::Value::Table(t), [first, rest @ ..]) => {
            t.get(*first).map(|v| keys_at(v, rest)).unwrap_or_default()
        }
        _ => HashSet::new(),
    }
}

#[test]
fn example_config_documents_every_key() {
    let full: toml::Value = toml::from_str(&example_with_every_setting()).unwrap();
    let agent = "[agent]\ndata_dir = \"/d\"\n";
    let cam = "[[camera]]\nname = \"c\"\n";
    let src = "[camera.source]\nkind = \"test\"\n";
    let u = "zzz_unknown = 1\n";
    let dl = "[[delivery]]\nname = \"d\"\nsource = \"s\"\n";
    let tables: Vec<(&[&str], String)> = vec![
        (&[], format!("{u}{agent}")),
        (&["agent"], format!("{agent}{u}")),
        (&["metrics"], format!("{agent}[metrics]\n{u}")),
        (&["api"], format!("{agent}[api]\n{u}")),
        (
            &["api", "token"],
            format!("{agent}[[api.token]]\ntoken = \"0123456789abcdef\"\n{u}"),
        ),
        (&["storage"], format!("{agent}[storage]\n{u}")),
        (&["stream"], format!("{agent}[[stream]]\nname = \"s\"\n{u}")),
        (&["detect"], format!("{agent}[detect]\n{u}")),
        (&["delivery"], format!("{agent}{dl}{u}")),
        (
            &["delivery", "destination"],
            format!("{agent}{dl}[delivery.destination]\nkind = \"dir\"\n{u}"),
        ),
        (
            &["delivery", "destination"],
            format!("{agent}{dl}[delivery.destination]\nkind = \"s3\"\nbucket = \"b\"\n{u}"),
        ),
        (
            &["delivery", "schema"],
            format!("{agent}{dl}[delivery.schema]\n{u}"),
        ),
        (
            &["delivery", "schema", "column"],
            format!("{agent}{dl}[[delivery.schema.column]]\nname = \"c\"\ntype = \"int\"\n{u}"),
        ),
        (
            &["forward"],
            format!("{agent}[[forward]]\nkind = \"kinesis\"\nname = \"f\"\nsource = \"s\"\nstream = \"r\"\n{u}"),
        ),
        (
            &["forward"],
            format!("{agent}[[forward]]\nkind = \"mqtt\"\nname = \"f\"\nsource = \"s\"\nurl = \"mqtt://h\"\n{u}"),
        ),
        (&["camera"], format!("{agent}{cam}{u}{src}")),
        (&["camera", "source"], format!("{agent}{cam}{src}{u}")),
        (
            &["camera", "detect"],
            format!("{agent}{cam}{src}[camera.detect]\n{u}"),
        ),
        (
            &["camera", "detect", "zone"],
            format!(
                "{agent}{cam}{src}[[camera.detect.zone]]\nname = \"z\"\npolygon = [[0, 0], [1, 0], [1, 1]]\n{u}"
            ),
        ),
    ];
    for (path, text) in tables {
        let documented = keys_at(&full, path);
        for field in schema_fields(&text) {
            assert!(
                documented.contains(&field),
                "configs/example.toml lacks `{field}` in [{}]",
                path.join(".")
            );
        }
    }
}

const DELIVERY: &str = r#"
[agent]
data_dir = "/tmp/vidgest"
[[stream]]
name = "detections"
[[delivery]]
name = "det-s3"
source = "detections"
format = "parquet"
compression = "snappy"
buffer_size = "5MiB"
buffer_interval = "60s"
prefix = "detections/camera=!{partitionKeyFromQuery:camera}/dt=!{timestamp:yyyy-MM-dd}/"
error_prefix = "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"
[delivery.destination]
kind = "s3"
bucket = "edge-archive"
region = "us-east-1"
endpoint = "http://127.0.0.1:9000"
access_key_id = "AKIAEXAMPLEKEYID0001"
secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
[[delivery]]
name = "local"
source = "detections"
[delivery.destination]
kind = "dir"
path = "/var/lib/vidgest/outbox"
[[forward]]
name = "cloud"
source = "detections"
kind = "kinesis"
stream = "edge-detections"
region = "us-east-1"
endpoint = "http://127.0.0.1:4567"
[[forward]]
name = "ha"
source = "detections"
kind = "mqtt"
url = "mqtt://127.0.0.1:1883"
password = "mqtt-secret-password"
"#;

#[test]
fn delivery_and_forward_contract_parses() {
    let c = Config::parse(DELIVERY).unwrap();
    assert_eq!(c.deliveries.len(), 2);
    let d = &c.deliveries[0];
    assert_eq!(d.format, DeliveryFormat::Parquet);
    assert_eq!(d.buffer_interval.0, Duration::from_secs(60));
    assert!(matches!(&d.destination, DestinationConfig::S3(s) if s.bucket == "edge-archive"));
    let local = &c.deliveries[1];
    assert_eq!(local.format, DeliveryFormat::Jsonl);
    assert_eq!(local.compression(), crate::delivery::Compression::None);
    assert_eq!(local.buffer_size.0, 5 << 20);
    assert_eq!(local.buffer_interval.0, Duration::from_secs(300));
    assert_eq!(c.forwards.len(), 2);
    assert!(matches!(&c.forwards[0], ForwardConfig::Kinesis(k) if k.stream == "edge-detections"));
    assert!(
        matches!(&c.forwards[1], ForwardConfig::Mqtt(m) if m.topic_prefix == "vidgest" && m.keep_alive.0 == Duration::from_secs(30))
    );
    let debug = format!("{c:?}");
    for secret in [
        "wJalrXUtnFEMI",
        "AKIAEXAMPLEKEYID0001",
        "mqtt-secret-password",
    ] {
        assert!(!debug.contains(secret), "{secret} shown in {debug}");
    }
}

#[test]
fn delivery_problems_name_their_paths() {
    let bad = DELIVERY
        .replacen(
            "source = \"detections\"\nformat",
            "source = \"nope\"\nformat",
            1,
        )
        .replace("buffer_size = \"5MiB\"", "buffer_size = \"200MiB\"")
        .replace("buffer_interval = \"60s\"", "buffer_interval = \"20m\"")
        .replace("!{partitionKeyFromQuery:camera}", "!{partitionKey:camera}")
        .replace("/var/lib/vidgest/outbox", "../outbox")
        .replace("mqtt://127.0.0.1:1883", "http://127.0.0.1:1883");
    let p = problems(&bad);
    let has = |path: &str, text: &str| p.iter().any(|l| l.starts_with(path) && l.contains(text));
    assert!(has("delivery[0].source", "unknown stream `nope`"), "{p:?}");
    assert!(has("delivery[0].buffer_size", "1MiB ..= 128MiB"), "{p:?}");
    assert!(has("delivery[0].buffer_interval", "1s ..= 900s"), "{p:?}");
    assert!(has("delivery[0].prefix", "unknown expression"), "{p:?}");
    assert!(has("delivery[1].destination.path", "without `..`"), "{p:?}");
    assert!(has("forward[1].url", "mqtt://"), "{p:?}");
    assert_eq!(p.len(), 6, "{p:?}");
    // Secrets never appear in errors either.
    assert!(!p.iter().any(|l| l.contains("wJalrXUtnFEMI")));

    let dup = DELIVERY.replace("name = \"ha\"", "name = \"cloud\"");
    assert!(problems(&dup)
        .iter()
        .any(|l| l.starts_with("forward[1].name") && l.contains("duplicate")));
    let kind = DELIVERY.replace("kind = \"dir\"", "kind = \"ftp\"");
    let p = problems(&kind);
    assert!(p[0].starts_with("delivery"), "{p:?}");
    assert!(p[0].contains("ftp"), "{p:?}");
}

fn api_config(api: &str) -> String {
    format!("[agent]\ndata_dir = \"/d\"\n[api]\n{api}\n")
}

#[test]
fn network_listen_without_tokens_needs_an_explicit_opt_in() {
    for open in ["0.0.0.0:8080", "[::]:8080", "192.168.1.10:8080"] {
        let p = problems(&api_config(&format!("listen = \"{open}\"")));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("api.listen: "), "{p:?}");
        for fix in ["[[api.token]]", "127.0.0.1", "allow_unauthenticated = true"] {
            assert!(p[0].contains(fix), "the fix `{fix}` is named: {p:?}");
        }
        let opted_in = format!("listen = \"{open}\"\nallow_unauthenticated = true");
        Config::parse(&api_config(&opted_in)).unwrap();
        let with_token =
            format!("listen = \"{open}\"\n[[api.token]]\ntoken = \"0123456789abcdef-secret\"");
        Config::parse(&api_config(&with_token)).unwrap();
    }
    for loopback in [
        "127.0.0.1:8080",
        "127.3.2.1:8080",
        "[::1]:8080",
        "[::ffff:127.0.0.1]:8080",
    ] {
        Config::parse(&api_config(&format!("listen = \"{loopback}\""))).unwrap();
    }
    // the default listener is loopback
    Config::parse("[agent]\ndata_dir = \"/d\"\n").unwrap();
}

#[test]
fn admin_scope_and_cors_origins() {
    let c = Config::parse(&api_config(
        "cors_allow_origins = [\"https://nvr.example:8443\", \"http://127.0.0.1:3000\"]\n\
         [[api.token]]\ntoken = \"0123456789abcdef-admin\"\nscope = \"admin\"",
    ))
    .unwrap();
    assert_eq!(c.api.tokens[0].scope, TokenScope::Admin);
    assert!(TokenScope::Admin > TokenScope::Write);
    assert_eq!(c.api.cors_allow_origins.len(), 2);
    for bad in [
        "*",
        "nvr.example",
        "https://nvr.example/",
        "https://nvr.example/ui",
        "https://nvr.example:443",
        "ftp://nvr.example",
    ] {
        let p = problems(&api_config(&format!("cors_allow_origins = [\"{bad}\"]")));
        assert_eq!(p.len(), 1, "{bad}: {p:?}");
        assert!(
            p[0].starts_with("api.cors_allow_origins[0]: "),
            "{bad}: {p:?}"
        );
    }
}

#[test]
fn session_hours_default_and_range() {
    let c = Config::parse(&api_config("")).unwrap();
    assert_eq!(c.api.session_hours, 12);
    let c = Config::parse(&api_config("session_hours = 720")).unwrap();
    assert_eq!(c.api.session_hours, 720);
    for bad in [0, 721] {
        let p = problems(&api_config(&format!("session_hours = {bad}")));
        assert_eq!(p.len(), 1, "{bad}: {p:?}");
        assert!(p[0].starts_with("api.session_hours: "), "{bad}: {p:?}");
    }
}

#[test]
fn metrics_defaults_and_problems() {
    let c = Config::parse("[agent]\ndata_dir = \"/d\"\n").unwrap();
    assert!(c.metrics.enabled);
    assert_eq!(c.metrics.interval.0, Duration::from_secs(60));
    assert_eq!(c.metrics.stream, "metrics");
    let text = "[agent]\ndata_dir = \"/d\"\n[metrics]\ninterval = \"10ms\"\nstream = \"a/b\"\n";
    let err = Config::parse(text).unwrap_err().to_string();
    assert!(err.contains("metrics.interval"), "{err}");
    assert!(err.contains("metrics.stream"), "{err}");
    // A delivery may read the metrics stream without declaring it.
    let text = "[agent]\ndata_dir = \"/d\"\n[[delivery]]\nname = \"m\"\nsource = \"metrics\"\n";
    Config::parse(text).unwrap();
    let off = format!("{text}[metrics]\nenabled = false\n");
    let err = Config::parse(&off).unwrap_err().to_string();
    assert!(err.contains("unknown stream `metrics`"), "{err}");
}

#[test]
fn rtsp_backend_defaults_to_retina_but_gstreamer_for_rtsps() {
    let c = Config::parse(GOOD).unwrap();
    assert_eq!(
        c.camera("front").unwrap().source.backend(),
        RtspBackend::Retina
    );
    // Sources other than RTSP are GStreamer pipelines.
    assert_eq!(
        c.camera("lab").unwrap().source.backend(),
        RtspBackend::Gstreamer
    );
    let text = GOOD.replace("url = ", "backend = \"gstreamer\"\nurl = ");
    let c = Config::parse(&text).unwrap();
    assert_eq!(
        c.camera("front").unwrap().source.backend(),
        RtspBackend::Gstreamer
    );
    let text = GOOD.replace("rtsp://", "rtsps://");
    assert!(text.contains("rtsps://"), "GOOD has an rtsp:// camera");
    let c = Config::parse(&text).unwrap();
    assert_eq!(
        c.camera("front").unwrap().source.backend(),
        RtspBackend::Gstreamer
    );
    // rtspt:// is TCP, which retina does; rtsps:// is not.
    let c = Config::parse(&GOOD.replace("rtsp://admin", "rtspt://admin")).unwrap();
    assert!(c
        .camera("front")
        .unwrap()
        .source
        .url
        .as_ref()
        .unwrap()
        .is_rtspt());
}

#[test]
fn rtsp_backend_problems_name_their_paths() {
    let p = problems(&GOOD.replace("url = ", "backend = \"live555\"\nurl = "));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("camera[0].source.backend"), "{p:?}");
    let retina = GOOD.replace("url = ", "backend = \"retina\"\nurl = ");
    let p = problems(&retina.replace("rtsp://admin", "rtsps://admin"));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("camera[0].source.url"), "{p:?}");
    assert!(p[0].contains("backend = \"gstreamer\""), "{p:?}");
    // The GStreamer backend keeps rtsps://.
    Config::parse(&GOOD.replace("rtsp://admin", "rtsps://admin")).unwrap();
    let p = problems(&GOOD.replace("codec = \"h265\"", "codec = \"h265\"\nbackend = \"retina\""));
    assert_eq!(p, ["camera[1].source.backend: not used by kind = \"test\""]);
}
