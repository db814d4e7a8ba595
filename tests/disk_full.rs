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
[[camera]]
name = "cam"
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
