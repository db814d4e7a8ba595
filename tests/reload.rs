//! SIGHUP reloads the config file: cameras added, changed and removed start, restart and stop
//! alone while another camera records without a gap; an invalid file is rejected with its TOML
//! path and the old config keeps running; API tokens swap.

#[path = "support/api.rs"]
mod api_support;
mod harness;
mod support;

use api_support::{daemon_config, http_get, wait_for_api, TestCam};
use harness::{assert_decodes, eventually, read_fragments, write_stream_file, Daemon};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use vidgest::store::FragmentMeta;

const OLD_TOKEN: &str = "old-token-0123456789";
const NEW_TOKEN: &str = "new-token-0123456789";
const WAIT: Duration = Duration::from_secs(90);

/// `GET path` with a bearer token (none when empty): (status, body).
fn get(port: u16, path: &str, token: &str) -> (u16, String) {
    let token = (!token.is_empty()).then_some(token);
    let r = http_get(&format!("http://127.0.0.1:{port}{path}"), token);
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

/// The cameras the API lists: name -> (state, fragments stored).
fn cameras(port: u16, token: &str) -> Vec<(String, String, u64)> {
    let (status, body) = get(port, "/api/v1/cameras", token);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["state"].as_str().unwrap_or("").to_string(),
                c["counters"]["fragments_stored"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Waits until the API lists `camera` streaming with a fragment stored.
fn wait_recording(daemon: &Daemon, port: u16, token: &str, camera: &str) {
    eventually(WAIT, &format!("camera {camera} to record"), || {
        daemon.assert_running();
        cameras(port, token)
            .iter()
            .any(|(n, s, f)| n == camera && s == "streaming" && *f > 0)
            .then_some(())
    });
}

fn config(port: u16, tokens: &[&str], cams: &[TestCam]) -> String {
    let tokens: Vec<(&str, &str)> = tokens.iter().map(|t| (*t, "read")).collect();
    daemon_config(port, &tokens, "", cams)
}

/// Rewrites the daemon's config file and sends SIGHUP; returns the log length before, so that
/// the caller can wait for this reload's lines.
fn reload(daemon: &Daemon, text: &str) -> usize {
    let text = text.replace("{data_dir}", &daemon.data_dir.display().to_string());
    std::fs::write(&daemon.config, text).unwrap();
    let mark = daemon.log_text().len();
    let rc = unsafe { libc::kill(daemon.pid().unwrap() as i32, libc::SIGHUP) };
    assert_eq!(rc, 0);
    mark
}

/// Waits for a log line containing `needle` written after `mark`; returns that part of the log.
fn wait_log(daemon: &Daemon, mark: usize, needle: &str) -> String {
    eventually(WAIT, &format!("`{needle}` in the log"), || {
        daemon.assert_running();
        let log = daemon.log_text();
        log[mark..]
            .contains(needle)
            .then(|| log[mark..].to_string())
    })
}

/// Fragment numbers consecutive, no discontinuity, and each fragment starting where the one
/// before ended (within one fragment duration).
fn assert_gap_free(frags: &[FragmentMeta], fragment_duration_ns: i64) {
    for w in frags.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert_eq!(
            b.fragment_number,
            a.fragment_number + 1,
            "fragment numbers jump: {a:?} -> {b:?}"
        );
        assert!(!b.discontinuity, "discontinuity at {b:?}");
        let gap = b.producer_ns - a.producer_end_ns();
        assert!(
            gap.abs() <= fragment_duration_ns,
            "a gap of {gap} ns between fragments {} and {}",
            a.fragment_number,
            b.fragment_number
        );
    }
}

/// Every init's run of fragments decodes with ffmpeg.
fn assert_playable(daemon: &Daemon, camera: &str, frags: &[FragmentMeta]) {
    let dir = tempfile::tempdir().unwrap();
    for (i, run) in frags.chunk_by(|a, b| a.init_id == b.init_id).enumerate() {
        let path = dir.path().join(format!("{camera}-{i}.mp4"));
        write_stream_file(&daemon.data_dir, run, &path);
        assert_decodes(&path);
    }
}

#[test]
fn sighup_adds_changes_and_removes_cameras_while_another_records_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let b_changed = TestCam {
        width: 96,
        height: 72,
        ..TestCam::small("b")
    };
    let daemon = Daemon::start(
        dir.path(),
        &config(port, &[OLD_TOKEN], &[TestCam::small("a")]),
    );
    wait_for_api(&daemon, port, WAIT);
    wait_recording(&daemon, port, OLD_TOKEN, "a");
    assert_eq!(get(port, "/api/v1/cameras", NEW_TOKEN).0, 401);

    // add b and a second token
    let mark = reload(
        &daemon,
        &config(
            port,
            &[OLD_TOKEN, NEW_TOKEN],
            &[TestCam::small("a"), TestCam::small("b")],
        ),
    );
    let log = wait_log(&daemon, mark, "reload: cameras");
    assert!(log.contains("reload: cameras +1 (b), -0, ~0"), "{log}");
    assert!(log.contains("tokens 2"), "{log}");
    wait_recording(&daemon, port, NEW_TOKEN, "b");
    assert!(
        !log.contains("starting camera camera=a"),
        "a was restarted: {log}"
    );

    // change b (its resolution): b restarts with a new init, a is untouched
    let b_inits = |d: &Daemon| {
        let mut ids: Vec<i64> = read_fragments(&d.data_dir, "b")
            .iter()
            .map(|f| f.init_id)
            .collect();
        ids.dedup();
        ids
    };
    assert_eq!(b_inits(&daemon).len(), 1);
    let mark = reload(
        &daemon,
        &config(
            port,
            &[OLD_TOKEN, NEW_TOKEN],
            &[TestCam::small("a"), b_changed],
        ),
    );
    let log = wait_log(&daemon, mark, "reload: cameras");
    assert!(log.contains("reload: cameras +0, -0, ~1 (b)"), "{log}");
    eventually(WAIT, "b to record at its new resolution", || {
        daemon.assert_running();
        (b_inits(&daemon).len() == 2).then_some(())
    });

    // remove b and the old token: b stops, its video stays playable; the old token is refused
    let mark = reload(&daemon, &config(port, &[NEW_TOKEN], &[TestCam::small("a")]));
    let log = wait_log(&daemon, mark, "reload: cameras");
    assert!(log.contains("reload: cameras +0, -1 (b), ~0"), "{log}");
    assert!(log.contains("tokens 1"), "{log}");
    let listed: Vec<String> = cameras(port, NEW_TOKEN).into_iter().map(|c| c.0).collect();
    assert_eq!(listed, vec!["a".to_string()]);
    assert_eq!(
        get(port, "/api/v1/cameras", OLD_TOKEN).0,
        401,
        "a removed token still works"
    );
    let b_frags = read_fragments(&daemon.data_dir, "b");
    let stopped_at = b_frags.len();
    assert!(stopped_at >= 2, "{b_frags:?}");
    assert_playable(&daemon, "b", &b_frags);

    // an invalid file: rejected with its TOML path, the running config stays
    let broken = config(port, &[NEW_TOKEN], &[TestCam::small("a")]).replace(
        "fragment_duration = \"500ms\"",
        "fragment_duration = \"soon\"",
    );
    let mark = reload(&daemon, &broken);
    let log = wait_log(&daemon, mark, "reload rejected");
    assert!(log.contains("camera[0].fragment_duration"), "{log}");
    assert_eq!(
        get(port, "/api/v1/cameras", NEW_TOKEN).0,
        200,
        "tokens kept"
    );
    let a_before = read_fragments(&daemon.data_dir, "a").len();
    eventually(WAIT, "a to keep recording", || {
        daemon.assert_running();
        (read_fragments(&daemon.data_dir, "a").len() > a_before + 2).then_some(())
    });
    assert_eq!(
        read_fragments(&daemon.data_dir, "b").len(),
        stopped_at,
        "b stays stopped"
    );

    // a recorded through all of it without a gap, and in one init
    let a_frags = read_fragments(&daemon.data_dir, "a");
    assert_gap_free(&a_frags, 500_000_000);
    assert!(a_frags.iter().all(|f| f.init_id == a_frags[0].init_id));
    assert!(daemon.terminate().success());
}

fn pipelines_config(port: u16, api_extra: &str, deliveries: &[(&str, &str)]) -> String {
    let mut extra = format!("{api_extra}[[stream]]\nname = \"events\"\nshards = 1\n");
    if deliveries.len() > 1 {
        extra += "[[stream]]\nname = \"more\"\nshards = 1\n";
    }
    for (name, prefix) in deliveries {
        extra += &format!(
            "[[delivery]]\nname = \"{name}\"\nsource = \"events\"\nbuffer_size = \"1MiB\"\n\
             buffer_interval = \"1s\"\nprefix = \"{prefix}\"\n[delivery.destination]\nkind = \"dir\"\npath = \"outbox\"\n"
        );
    }
    daemon_config(port, &[], &extra, &[])
}

/// The names `GET /api/v1/deliveries` and Firehose ListDeliveryStreams give.
fn deliveries(port: u16) -> (Vec<String>, Vec<String>) {
    let (status, body) = get(port, "/api/v1/deliveries", "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rest = v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: Firehose_20150804.ListDeliveryStreams\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {out}"));
    let firehose = v["DeliveryStreamNames"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    (rest, firehose)
}

/// New streams are created, deliveries start, restart and stop one by one (REST and Firehose
/// see the new set), and a key that needs a restart is named in a warning.
#[test]
fn sighup_creates_streams_and_restarts_only_changed_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let daemon = Daemon::start(dir.path(), &pipelines_config(port, "", &[("d1", "one/")]));
    wait_for_api(&daemon, port, WAIT);
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(deliveries(port), (names(&["d1"]), names(&["d1"])));

    let mark = reload(
        &daemon,
        &pipelines_config(port, "", &[("d1", "one/"), ("d2", "two/")]),
    );
    let log = wait_log(&daemon, mark, "reload: cameras");
    assert!(
        log.contains("streams +1 (more); deliveries/forwarders +1 (d2), -0, ~0"),
        "{log}"
    );
    assert_eq!(
        deliveries(port),
        (names(&["d1", "d2"]), names(&["d1", "d2"]))
    );
    let (_, health) = get(port, "/api/v1/health", "");
    assert!(health.contains("\"more\""), "{health}");

    let mark = reload(
        &daemon,
        &pipelines_config(
            port,
            "header_timeout = \"20s\"\n",
            &[("d1", "one-changed/"), ("d2", "two/")],
        ),
    );
    let log = wait_log(&daemon, mark, "reload: cameras");
    assert!(
        log.contains("deliveries/forwarders +0, -0, ~1 (d1)"),
        "{log}"
    );
    assert!(log.contains("needs a restart: api.header_timeout"), "{log}");

    // d2 removed; the stream `more` leaves the config but is kept
    let mark = reload(
        &daemon,
        &pipelines_config(port, "", &[("d1", "one-changed/")]),
    );
    let log = wait_log(&daemon, mark, "reload: cameras");
    assert!(
        log.contains("deliveries/forwarders +0, -1 (d2), ~0"),
        "{log}"
    );
    assert_eq!(deliveries(port), (names(&["d1"]), names(&["d1"])));
    let (_, health) = get(port, "/api/v1/health", "");
    assert!(health.contains("\"more\""), "{health}");
    assert!(daemon.terminate().success());
}
