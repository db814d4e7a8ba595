//! A looping, real-time paced file source (the `make demo` camera) records at real time over
//! many loops: recorded duration and producer-time span follow the wall clock, nothing is dropped.

mod harness;

use harness::{eventually, make_clip, Daemon};
use std::time::{Duration, Instant};

#[test]
fn looping_file_records_at_real_time_over_many_loops() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip);
    let config = format!(
        r#"
[agent]
data_dir = "{{data_dir}}"
[[camera]]
name = "loop"
fragment_duration = "1s"
[camera.source]
kind = "file"
path = "{}"
loop = true
realtime = true
"#,
        clip.display()
    );
    let daemon = Daemon::start(dir.path(), &config);
    // Wall time of the first stored fragment; from then on, count.
    let first = eventually(Duration::from_secs(30), "the first fragment", || {
        daemon.fragments("loop").first().cloned()
    });
    let started = Instant::now();
    // 20 loops of the 2 s clip. Each iteration waits on the store, not on a fixed sleep.
    let wall = Duration::from_secs(40);
    let frags = eventually(wall + Duration::from_secs(30), "40 s of wall time", || {
        let f = daemon.fragments("loop");
        // A runaway source writes far more than real time: stop early, the assertions say why.
        let recorded: i64 = f.iter().map(|f| f.duration_ns).sum();
        (started.elapsed() >= wall || recorded > 3 * wall.as_nanos() as i64).then_some(f)
    });
    let elapsed = started.elapsed().as_secs_f64() + first.duration_ns as f64 / 1e9;
    let log = daemon.log_text();
    assert!(daemon.terminate().success());

    let recorded: f64 = frags.iter().map(|f| f.duration_ns as f64 / 1e9).sum();
    let last = frags.last().unwrap();
    let span = (last.producer_ns + last.duration_ns - first.producer_ns) as f64 / 1e9;
    // The last fragment in progress is not stored yet: allow a fragment plus 5 %.
    let close = |v: f64| (v - elapsed).abs() <= 1.5 + 0.05 * elapsed;
    assert!(
        close(recorded),
        "recorded {recorded:.1} s of video in {elapsed:.1} s of wall time"
    );
    assert!(
        close(span),
        "producer timestamps span {span:.1} s in {elapsed:.1} s of wall time"
    );
    // Producer time never runs ahead of the wall clock (server time) by more than a fragment.
    let ahead: Vec<String> = frags
        .iter()
        .map(|f| {
            format!(
                "{:.2}",
                (f.producer_ns + f.duration_ns - f.server_ns) as f64 / 1e9
            )
        })
        .collect();
    eprintln!("seconds ahead of the server clock per fragment: {ahead:?}");
    // No drift across loops: the lead (negative: lag) stays within a band, whatever the loop.
    let leads: Vec<i64> = frags
        .iter()
        .map(|f| f.producer_ns + f.duration_ns - f.server_ns)
        .collect();
    let band = leads.iter().max().unwrap() - leads.iter().min().unwrap();
    assert!(
        band < 750_000_000,
        "producer time drifts against the wall clock: {ahead:?}"
    );
    for f in &frags {
        assert!(
            f.producer_ns + f.duration_ns <= f.server_ns + 1_000_000_000,
            "fragment {} ends after it was stored; seconds ahead per fragment: {ahead:?}",
            f.fragment_number,
        );
    }
    // Loops are seamless: no gaps flagged after the first fragment, no drops, no resyncs.
    assert!(
        frags.iter().skip(1).all(|f| !f.discontinuity),
        "discontinuity at {:?}",
        frags
            .iter()
            .skip(1)
            .filter(|f| f.discontinuity)
            .map(|f| f.fragment_number)
            .collect::<Vec<_>>()
    );
    for bad in [
        "falling behind",
        "dropping video",
        "runs ahead of the wall clock",
    ] {
        assert!(!log.contains(bad), "log says `{bad}`:\n{log}");
    }
    assert!(frags.len() >= 30, "{} fragments", frags.len());
}
