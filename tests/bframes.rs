//! B-frame streams over RTSP: rtph264depay gives no DTS, the normalizer's reorder window must
//! restore decode times so the stored fMP4 keeps the presentation order (composition offsets).

mod harness;
mod support;

use harness::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::TestCamera;

/// 12 s of 320x240 at 15 fps, a key frame every second, two B-frames between references
/// (decode order I P B B P B B ...).
fn make_b_frame_file(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=320x240:rate=15")
        .args(["-t", "12", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .args(["-preset", "ultrafast", "-x264-params"])
        .arg("bframes=2:b-pyramid=none:b-adapt=0:scenecut=0:keyint=15:min-keyint=15")
        .arg(path)
        .output()
        .expect("ffmpeg (installed by scripts/bootstrap)");
    assert!(
        out.status.success(),
        "ffmpeg cannot make the B-frame fixture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ts(p: &serde_json::Value, key: &str) -> i64 {
    p[key].as_str().unwrap().parse::<f64>().map_or_else(
        |_| panic!("packet without {key}: {p}"),
        |s| (s * 90_000.0).round() as i64,
    )
}

#[test]
fn rtsp_b_frame_stream_keeps_presentation_order() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("bframes.mp4");
    make_b_frame_file(&source);
    let cam = TestCamera::start(&["--codec", "h264", "--file", source.to_str().unwrap()]);
    let config = format!(
        "[agent]\ndata_dir = \"{{data_dir}}\"\n[storage]\nmin_free = \"1MiB\"\n\
         [[camera]]\nname = \"bf\"\nfragment_duration = \"2s\"\nretention = \"1h\"\nstall_timeout = \"3s\"\n\
         [camera.source]\nkind = \"rtsp\"\nurl = \"{}\"\nconnect_timeout = \"3s\"\n",
        cam.mount_url(0)
    );
    let daemon = Daemon::start(dir.path(), &config);
    eventually(Duration::from_secs(60), "3 fragments", || {
        (daemon.fragments("bf").len() >= 3).then_some(())
    });
    let data_dir = daemon.data_dir.clone();
    assert!(daemon.terminate().success(), "SIGTERM exits 0");

    // The first session only: the file ends and the camera is reconnected.
    let frags: Vec<_> = read_fragments(&data_dir, "bf")
        .into_iter()
        .enumerate()
        .take_while(|(i, f)| *i == 0 || !f.discontinuity)
        .map(|(_, f)| f)
        .collect();
    assert!(
        frags.len() >= 2,
        "{} fragments in the first session",
        frags.len()
    );
    assert_key_frame_starts(&data_dir, &frags);
    let file = dir.path().join("stored.mp4");
    write_stream_file(&data_dir, &frags, &file);

    let probe = ffprobe(&file);
    let packets = probe["packets"].as_array().unwrap();
    let pts: Vec<i64> = packets.iter().map(|p| ts(p, "pts_time")).collect();
    let dts: Vec<i64> = packets.iter().map(|p| ts(p, "dts_time")).collect();
    for i in 0..packets.len() {
        assert!(
            dts[i] <= pts[i],
            "packet {i}: dts {} > pts {}",
            dts[i],
            pts[i]
        );
        if i > 0 {
            assert!(dts[i] > dts[i - 1], "packet {i}: dts not increasing");
        }
    }
    // Decode order differs from presentation order: two of every three non-key pictures show
    // before the reference decoded ahead of them.
    let reordered = pts.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(
        reordered * 3 >= packets.len() / 2,
        "only {reordered} of {} packets come back in time: presentation order was flattened",
        packets.len()
    );
    // Sorted by presentation, pictures are one frame (6000 ticks at 15 fps) apart: none was
    // moved onto another's time.
    let mut shown = pts.clone();
    shown.sort_unstable();
    for w in shown.windows(2) {
        let step = w[1] - w[0];
        assert!(
            (5_000..=7_000).contains(&step) || step >= 11_000,
            "pictures {step} ticks apart in presentation order"
        );
    }
    assert_decodes(&file);
}
