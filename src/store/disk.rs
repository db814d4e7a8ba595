//! The file system that holds the store: free and total space (injectable for tests), and the
//! defaults that scale with it, so that retention can always make room on a small disk.

use std::io;
use std::path::Path;

pub trait DiskSpace: Send + Sync + std::fmt::Debug {
    /// Bytes available to an unprivileged writer on the file system holding `path`.
    fn available(&self, path: &Path) -> io::Result<u64>;
    /// Size of the file system holding `path`.
    fn total(&self, path: &Path) -> io::Result<u64>;
}

/// The real file system, via statvfs(3).
#[derive(Debug, Default, Clone, Copy)]
pub struct Statvfs;

impl DiskSpace for Statvfs {
    fn available(&self, path: &Path) -> io::Result<u64> {
        let st = rustix::fs::statvfs(path)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    fn total(&self, path: &Path) -> io::Result<u64> {
        let st = rustix::fs::statvfs(path)?;
        Ok(st.f_blocks.saturating_mul(st.f_frsize))
    }
}

/// The default `storage.min_free`: 5 % of the file system, at most 512 MiB. A fixed 512 MiB
/// reserve is nothing on a large disk and more than all of a small SD card or tmpfs, where it
/// left retention nothing it was allowed to use.
pub fn default_min_free(fs_total: u64) -> u64 {
    (fs_total / 20).min(512 << 20)
}

/// Largest segment file worth writing on a file system of `fs_total` bytes that keeps
/// `min_free` free: a sixteenth of the usable space (at least 256 KiB), so that a handful of
/// open segments never hold the space retention needs, and closed segments to delete exist
/// long before the disk is full.
pub fn segment_cap(fs_total: u64, min_free: u64) -> u64 {
    (fs_total.saturating_sub(min_free) / 16).max(256 << 10)
}

/// The nearest existing ancestor of `path` (the data dir may not exist before the first run);
/// a relative path's last ancestor is the current directory.
pub fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_scale_with_the_file_system() {
        const MIB: u64 = 1 << 20;
        // 64 MiB tmpfs: a 3.2 MiB reserve and segments under 4 MiB, not 512 MiB and 32 MiB.
        assert_eq!(default_min_free(64 * MIB), 64 * MIB / 20);
        assert!(segment_cap(64 * MIB, default_min_free(64 * MIB)) < 4 * MIB);
        // Large disks keep the 512 MiB reserve; segments are then bounded by segment_size.
        assert_eq!(default_min_free(1 << 40), 512 * MIB);
        assert!(segment_cap(1 << 40, 512 * MIB) > 32 * MIB);
        // Never zero, even when the reserve exceeds the disk.
        assert_eq!(segment_cap(MIB, 2 * MIB), 256 << 10);
    }

    #[test]
    fn statvfs_reads_this_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let total = Statvfs.total(dir.path()).unwrap();
        let free = Statvfs.available(dir.path()).unwrap();
        assert!(total > 0 && free <= total);
        assert_eq!(
            existing_ancestor(&dir.path().join("a/b/c")),
            Some(dir.path())
        );
        assert_eq!(
            existing_ancestor(Path::new("no-such-dir-here/x")),
            Some(Path::new("."))
        );
    }
}
