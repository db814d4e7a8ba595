//! HLS and DASH streaming sessions against the real daemon recording a test camera: stock boto3
//! clients get the session URLs and ffmpeg / ffprobe play them (tests/py/kvs_hls.py); expired
//! tokens, fragments deleted by retention under a playlist, and 20 concurrent viewers here.

#[path = "support/api.rs"]
mod api_support;
mod harness;
mod support;

use api_support::*;
use harness::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vidgest::api::kinesis::IteratorKey;
use vidgest::playback::session::{DiscontinuityMode, Origin, PlaybackMode, Protocol, Session};

const READER: &str = "hls-reader-token-0123456";
const CAMERA: &str = "cam";

/// A camera with `fragment` long fragments; segments roll every 10 s (the shortest allowed),
/// so a segment (what retention deletes) holds several fragments.
fn config(port: u16, fragment: &str) -> String {
    let cam = TestCam {
        fragment_duration: fragment,
        ..TestCam::small(CAMERA)
    };
    daemon_config(
        port,
        &[(READER, "read")],
        "[storage]\nsegment_duration = \"10s\"\n",
        &[cam],
    )
}

fn start(
    dir: &Path,
    fragment: &str,
    fragments: usize,
) -> (Daemon, u16, Vec<vidgest::store::FragmentMeta>) {
    let port = support::free_port();
    let daemon = start_listening(dir, port, &config(port, fragment));
    let frags = wait_for_fragments(&daemon, CAMERA, fragments);
    (daemon, port, frags)
}

/// A session token signed with the daemon's key (the data directory's), valid or not.
fn token(data_dir: &Path, session: &Session) -> String {
    let key = IteratorKey::load_or_create(data_dir).unwrap();
    session.encode(&key)
}

/// When the camera's stream was created (part of every session token).
fn created_ns(daemon: &Daemon) -> i64 {
    daemon
        .reader()
        .unwrap()
        .stream_details(CAMERA)
        .unwrap()
        .created_ns
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn boto3_gets_hls_and_dash_sessions_that_ffmpeg_plays() {
    let dir = tempfile::tempdir().unwrap();
    // 1 s fragments: ffmpeg's DASH demuxer re-finds its place in a refreshed live manifest
    // at whole-second precision, so shorter fragments make it replay one
    let (daemon, port, frags) = start(dir.path(), "1s", 8);
    let created = created_ns(&daemon);
    let expired = Session {
        protocol: Protocol::Hls,
        stream: CAMERA.into(),
        stream_created_ns: created,
        mode: PlaybackMode::Live,
        origin: Origin::Server,
        start_ns: None,
        end_ns: None,
        discontinuity: DiscontinuityMode::Always,
        display_timestamp: false,
        display_fragment_number: false,
        max_fragments: 5,
        anchor: frags[0].fragment_number,
        issued_ms: now_ms() - 400_000,
        expires_ms: now_ms() - 100_000,
    };
    let mut args = stream_client_args(port, READER, CAMERA, &frags[..8]);
    args.extend(["--expired-token".into(), token(&daemon.data_dir, &expired)]);
    run_python("kvs_hls.py", args);
    assert_survived_and_stop(daemon);
}

fn get(url: &str) -> Reply {
    http_get(url, None)
}

/// The HLS session URL of an ON_DEMAND range, from the API (with the read token).
fn on_demand_url(port: u16, start_ns: i64, end_ns: i64) -> String {
    let body = serde_json::json!({
        "StreamName": CAMERA,
        "PlaybackMode": "ON_DEMAND",
        "HLSFragmentSelector": {
            "FragmentSelectorType": "PRODUCER_TIMESTAMP",
            "TimestampRange": {
                // a millisecond of slack: f64 seconds round at sub-microsecond precision
                "StartTimestamp": start_ns as f64 / 1e9 - 0.001,
                "EndTimestamp": end_ns as f64 / 1e9 + 0.001,
            }
        },
        "DiscontinuityMode": "NEVER",
    });
    let mut r = http_agent()
        .post(format!("http://127.0.0.1:{port}/getHLSStreamingSessionURL"))
        .header("Authorization", format!("Bearer {READER}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["HLSStreamingSessionURL"].as_str().unwrap().to_string()
}

/// Absolute segment URLs of a media playlist, with their fragment numbers.
fn segment_urls(media_url: &str, playlist: &str) -> Vec<(u64, String)> {
    let base = &media_url[..media_url.rfind('/').unwrap() + 1];
    playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let n = l.rsplit_once("FragmentNumber=").unwrap().1.parse().unwrap();
            (n, format!("{base}{l}"))
        })
        .collect()
}

fn media_playlist(master_url: &str) -> (String, String) {
    let master = get(master_url);
    assert_eq!(master.status, 200);
    let master = String::from_utf8(master.body).unwrap();
    let line = master
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap();
    let url = format!(
        "{}{line}",
        &master_url[..master_url.rfind('/').unwrap() + 1]
    );
    let media = get(&url);
    assert_eq!(media.status, 200);
    (url, String::from_utf8(media.body).unwrap())
}

/// Deletes a segment as retention does (index rows first, then the file).
fn delete_segment_like_retention(data_dir: &Path, fragment_number: u64) -> Vec<u64> {
    let video = data_dir.join("video");
    let db = rusqlite::Connection::open(video.join("index.sqlite")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let segment: i64 = db
        .query_row(
            "SELECT f.segment_id FROM fragments f JOIN streams s ON s.id = f.stream_id
             WHERE s.name = ?1 AND f.fragment_number = ?2",
            rusqlite::params![CAMERA, fragment_number as i64],
            |r| r.get(0),
        )
        .unwrap();
    let mut q = db
        .prepare(
            "SELECT fragment_number FROM fragments WHERE segment_id = ?1 ORDER BY fragment_number",
        )
        .unwrap();
    let gone: Vec<u64> = q
        .query_map([segment], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|n| n.unwrap() as u64)
        .collect();
    db.execute("DELETE FROM fragments WHERE segment_id = ?1", [segment])
        .unwrap();
    db.execute("DELETE FROM segments WHERE id = ?1", [segment])
        .unwrap();
    let prefix = format!("{segment:020}.");
    let file = std::fs::read_dir(video.join(CAMERA))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .expect("the segment file");
    std::fs::remove_file(file).unwrap();
    gone
}

#[test]
fn deleted_fragments_are_404_while_the_rest_play_for_20_concurrent_viewers() {
    let dir = tempfile::tempdir().unwrap();
    // enough fragments for two segments
    let (daemon, port, frags) = start(dir.path(), "500ms", 26);
    let frags = &frags[..26];
    let url = on_demand_url(port, frags[0].producer_ns, frags[25].producer_ns);
    let (media_url, playlist) = media_playlist(&url);
    let segs = segment_urls(&media_url, &playlist);
    assert_eq!(
        segs.iter().map(|s| s.0).collect::<Vec<_>>(),
        frags.iter().map(|f| f.fragment_number).collect::<Vec<_>>()
    );
    let reader = daemon.reader().unwrap();
    let stored: Vec<Vec<u8>> = frags
        .iter()
        .map(|f| reader.read_fragment(f).unwrap())
        .collect();

    // 20 viewers fetch every segment at once; each gets the stored bytes
    let before = daemon.fragments(CAMERA).len();
    std::thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| {
                for (bytes, (_, url)) in stored.iter().zip(&segs) {
                    let r = get(url);
                    assert_eq!(r.status, 200, "{url}");
                    assert!(r.body == *bytes, "{url}: other bytes than stored");
                }
            });
        }
    });
    eventually(Duration::from_secs(30), "recording to go on", || {
        (daemon.fragments(CAMERA).len() > before).then_some(())
    });

    // retention deletes the first segment while the playlist lists it
    let gone = delete_segment_like_retention(&daemon.data_dir, frags[0].fragment_number);
    assert!(gone.contains(&frags[0].fragment_number));
    assert!(
        gone.len() < frags.len(),
        "the test needs fragments in later segments: {gone:?}"
    );
    for (n, url) in &segs {
        let r = get(url);
        if gone.contains(n) {
            assert_eq!(r.status, 404, "deleted fragment {n}");
            let e: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert!(
                e["message"].as_str().unwrap().contains("no longer stored"),
                "{e}"
            );
        } else {
            assert_eq!(r.status, 200, "fragment {n} after the deleted ones");
        }
    }
    // a player continues past the missing segments (ffmpeg without -xerror skips them)
    let out = Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-i", &url, "-c", "copy", "-f", "null", "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the playlist now starts after the deleted fragments
    let (_, playlist) = media_playlist(&url);
    let now = segment_urls(&media_url, &playlist);
    assert!(now.iter().all(|(n, _)| !gone.contains(n)), "{playlist}");
    assert!(!now.is_empty());
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}

#[test]
fn deleted_streams_and_expired_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, port, frags) = start(dir.path(), "500ms", 3);
    let created = created_ns(&daemon);
    let session = |expires_ms: i64, created_ns: i64| Session {
        protocol: Protocol::Dash,
        stream: CAMERA.into(),
        stream_created_ns: created_ns,
        mode: PlaybackMode::OnDemand,
        origin: Origin::Producer,
        start_ns: Some(frags[0].producer_ns),
        end_ns: Some(frags[2].producer_ns),
        discontinuity: DiscontinuityMode::Never,
        display_timestamp: false,
        display_fragment_number: false,
        max_fragments: 1000,
        anchor: 0,
        issued_ms: now_ms() - 1000,
        expires_ms,
    };
    let url = |s: &Session| {
        format!(
            "http://127.0.0.1:{port}/dash/v1/getDASHManifest.mpd?SessionToken={}",
            token(&daemon.data_dir, s)
        )
    };
    assert_eq!(get(&url(&session(now_ms() + 60_000, created))).status, 200);
    assert_eq!(get(&url(&session(now_ms() - 1, created))).status, 403);
    // a token of a stream deleted and re-created since is for media that is gone
    assert_eq!(
        get(&url(&session(now_ms() + 60_000, created - 1))).status,
        404
    );
    let frag = |s: &Session, n: u64| {
        format!(
            "http://127.0.0.1:{port}/dash/v1/getMP4MediaFragment.mp4?SessionToken={}&FragmentNumber={n}",
            token(&daemon.data_dir, s)
        )
    };
    let valid = session(now_ms() + 60_000, created);
    assert_eq!(get(&frag(&valid, frags[1].fragment_number)).status, 200);
    let expired = session(now_ms() - 1, created);
    assert_eq!(get(&frag(&expired, frags[1].fragment_number)).status, 403);
    assert!(daemon.terminate().success(), "SIGTERM exits 0");
}
