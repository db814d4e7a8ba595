//! Full disks, for real: the daemon records into a small tmpfs (needs root, as in CI).

mod harness;

use harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs of `size` mounted for the test's lifetime.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }
    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
    fn free(&self) -> u64 {
        use vidgest::store::DiskSpace;
        vidgest::store::Statvfs.available(self.dir.path()).unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn config(min_free: &str, on_full: &str) -> String {
    format!(
        r#"[agent]
data_dir = "{{data_dir}}"
[storage]
min_free = "{min_free}"
on_full = "{on_full}"
segment_size = "1MiB"
{}"#,
        camera("cam")
    )
}

/// A synthetic camera of about 500 KB/s (incompressible snow at 4 Mbit/s).
fn camera(name: &str) -> String {
    format!(
        r#"[[camera]]
name = "{name}"
fragment_duration = "1s"
[camera.source]
kind = "test"
pattern = "snow"
width = 320
height = 240
fps = 15
gop = 15
bitrate = 4000
"#
    )
}

fn first_and_last(data_dir: &Path) -> Option<(u64, u64)> {
    let f = read_fragments(data_dir, "cam");
    Some((f.first()?.fragment_number, f.last()?.fragment_number))
}

#[test]
fn minimum_free_disk_is_kept_by_deleting_oldest_segments() {
    let fs = Tmpfs::mount("12m");
    let daemon = Daemon::start(&fs.path(), &config("6MiB", "delete_oldest"));
    // ~500 KB/s: the 6 MiB the reserve leaves fill in seconds; recording must go on after that.
    eventually(Duration::from_secs(90), "retention to make room", || {
        first_and_last(&daemon.data_dir).filter(|(first, last)| *first > 1 && *last > first + 6)
    });
    assert!(daemon.is_running());
    assert!(
        daemon.log_text().contains("minimum free disk"),
        "deletions name their reason"
    );
    // Headroom: the reserve may be dipped into by at most the segment being written.
    assert!(
        fs.free() + (1 << 20) + (512 << 10) >= 6 << 20,
        "free {}",
        fs.free()
    );
    let data_dir = daemon.data_dir.clone();
    assert!(daemon.terminate().success());
    let frags = read_fragments(&data_dir, "cam");
    assert_key_frame_starts(&data_dir, &frags);
}

#[test]
fn a_failing_write_marks_the_camera_failed_and_it_recovers() {
    let fs = Tmpfs::mount("16m");
    let daemon = Daemon::start(&fs.path(), &config("0", "delete_oldest"));
    eventually(Duration::from_secs(60), "a first fragment", || {
        first_and_last(&daemon.data_dir)
    });
    // Fill the disk behind the daemon's back; it has no closed segment to delete yet.
    let filler = fs.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output();
    assert!(fs.free() < 64 << 10);
    eventually(
        Duration::from_secs(30),
        "the camera to fail with a clear log line",
        || {
            let log = daemon.log_text();
            // ENOSPC surfaces from the segment write or from SQLite's commit, whichever hits first.
            let full = log.contains("No space left") || log.contains("disk is full");
            (log.contains("storing fragment failed") && full).then_some(())
        },
    );
    assert!(
        daemon.is_running(),
        "a write error never takes the daemon down"
    );
    let (_, last_before) = first_and_last(&daemon.data_dir).unwrap();
    std::fs::remove_file(&filler).unwrap();
    let resumed = eventually(Duration::from_secs(120), "recording to resume", || {
        read_fragments(&daemon.data_dir, "cam")
            .into_iter()
            .find(|f| f.fragment_number > last_before)
    });
    assert!(resumed.discontinuity, "the gap is flagged");
    let data_dir = daemon.data_dir.clone();
    assert!(daemon.terminate().success());
    // What was stored before and after the failure is intact.
    let frags = read_fragments(&data_dir, "cam");
    assert_key_frame_starts(&data_dir, &frags);
    let file = data_dir.join("all.mp4");
    write_stream_file(&data_dir, &frags, &file);
    assert_decodes(&file);
}

/// Default `[storage]` (nothing set) on a 64 MiB disk: the reserve and segment size scale with
/// the file system, so retention keeps making room and both cameras record for minutes,
/// writing several times the disk's size without one failed write.
#[test]
fn default_settings_record_continuously_on_a_64_mib_disk() {
    let fs = Tmpfs::mount("64m");
    let config = format!(
        "[agent]\ndata_dir = \"{{data_dir}}\"\n{}{}",
        camera("a"),
        camera("b")
    );
    let daemon = Daemon::start(&fs.path(), &config);
    let cams = ["a", "b"];
    let bytes_stored = |cam: &str| -> u64 {
        // Every fragment ever stored: the newest number times the mean size of those left.
        let f = read_fragments(&daemon.data_dir, cam);
        let mean = f.iter().map(|f| f.size).sum::<u64>() / f.len().max(1) as u64;
        f.last().map_or(0, |l| l.fragment_number * mean)
    };
    // ~1 MB/s together: the disk fills within about a minute; go on until two disks' worth
    // of video went through it, failing fast on any write error.
    let started = std::time::Instant::now();
    loop {
        let log = daemon.log_text();
        for bad in ["storing fragment failed", "No space left", "disk is full"] {
            assert!(
                !log.contains(bad),
                "`{bad}` after {:?}:\n{log}",
                started.elapsed()
            );
        }
        daemon.assert_running();
        let total: u64 = cams.iter().map(|c| bytes_stored(c)).sum();
        if total > 2 * (64 << 20) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(420),
            "only {total} bytes recorded in {:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let log = daemon.log_text();
    assert!(log.contains("retention: deleted segment"), "{log}");
    // Recording was continuous through the last 30 s of wrapping the disk.
    let now = vidgest::clock::system_time_to_ns(std::time::SystemTime::now());
    for cam in cams {
        let frags = read_fragments(&daemon.data_dir, cam);
        assert!(frags[0].fragment_number > 1, "{cam}: nothing was deleted");
        let recent: Vec<_> = frags
            .iter()
            .filter(|f| f.server_ns > now - 30_000_000_000)
            .collect();
        let covered: i64 = recent.iter().map(|f| f.duration_ns).sum();
        assert!(
            covered > 25_000_000_000,
            "{cam}: only {:.1} s of the last 30 s recorded",
            covered as f64 / 1e9
        );
        assert!(
            recent.iter().all(|f| !f.discontinuity),
            "{cam}: a gap in the last 30 s"
        );
    }
    let data_dir = daemon.data_dir.clone();
    assert!(daemon.terminate().success());
    for cam in cams {
        let frags = read_fragments(&data_dir, cam);
        assert_key_frame_starts(&data_dir, &frags);
    }
}
