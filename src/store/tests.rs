use super::*;
use crate::clock::{Clock, ManualClock};
use crate::media::CodecConfig;

const START: i64 = 1_764_000_000_000_000_000;

fn codec() -> CodecConfig {
    crate::media::test_support::small_h264_config()
}

#[derive(Debug)]
struct FakeDisk {
    capacity: u64,
    root: PathBuf,
}

impl DiskSpace for FakeDisk {
    fn total(&self, _: &Path) -> std::io::Result<u64> {
        Ok(self.capacity)
    }

    /// Capacity minus the bytes of the segment files really on disk.
    fn available(&self, _: &Path) -> std::io::Result<u64> {
        let mut used = 0;
        for cam in std::fs::read_dir(&self.root)?.flatten() {
            if cam.path().is_dir() {
                for f in std::fs::read_dir(cam.path())?.flatten() {
                    used += f.metadata()?.len();
                }
            }
        }
        Ok(self.capacity.saturating_sub(used))
    }
}

struct Harness {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
}

impl Harness {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            clock: ManualClock::new(START),
        }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("video")
    }
    fn open(&self, opts: StoreOptions) -> Arc<Store> {
        self.open_with_disk(opts, Arc::new(Statvfs))
    }
    fn open_with_disk(&self, opts: StoreOptions, disk: Arc<dyn DiskSpace>) -> Arc<Store> {
        Store::open(&self.root(), opts, self.clock.clone(), disk).unwrap()
    }
}

fn opts() -> StoreOptions {
    StoreOptions {
        fsync: FsyncPolicy::Fragment,
        max_bytes: None,
        min_free: Some(0),
        on_full: OnFull::DeleteOldest,
        segment_duration: Duration::from_secs(60),
    }
}

fn stream_opts() -> VideoOptions {
    VideoOptions {
        retention: Duration::from_secs(3600),
        max_bytes: None,
        segment_size: 1 << 20,
    }
}

/// Appends a 2 s fragment of `size` bytes at the clock's time and advances the clock 2 s.
fn append(w: &mut VideoWriter, clock: &ManualClock, size: usize) -> AppendOutcome {
    let cfg = codec();
    let n = w.next_fragment_number();
    let data = vec![(n % 251) as u8; size];
    let out = w
        .append(&NewFragment {
            codec: &cfg,
            producer_ns: clock.now_ns(),
            duration_ns: 2_000_000_000,
            discontinuity: false,
            sample_count: 60,
            parts: &[&data],
        })
        .unwrap();
    clock.advance(Duration::from_secs(2));
    out
}

#[test]
fn fragments_round_trip_with_increasing_numbers() {
    let h = Harness::new();
    let store = h.open(opts());
    let mut w = store.open_video("front", stream_opts()).unwrap();
    for i in 0..5 {
        let out = append(&mut w, &h.clock, 1000 + i);
        assert!(
            matches!(out, AppendOutcome::Stored { fragment_number, .. } if fragment_number == i as u64 + 1)
        );
    }
    let r = StoreReader::open(&h.root()).unwrap();
    let frags = r.fragments("front", None, None, 100).unwrap();
    assert_eq!(frags.len(), 5);
    for (i, f) in frags.iter().enumerate() {
        assert_eq!(f.size, 1000 + i as u64);
        assert_eq!(f.producer_ns, START + i as i64 * 2_000_000_000);
        let data = r.read_fragment(f).unwrap();
        assert_eq!(data, vec![(f.fragment_number % 251) as u8; f.size as usize]);
    }
    let init = r.init(frags[0].init_id).unwrap();
    assert_eq!(&init.data[4..8], b"ftyp");
    // Range query by producer time: start inclusive, end inclusive.
    let some = r
        .fragments(
            "front",
            Some(START + 2_000_000_000),
            Some(START + 6_000_000_000),
            100,
        )
        .unwrap();
    assert_eq!(
        some.iter().map(|f| f.fragment_number).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert!(matches!(
        r.fragments("nope", None, None, 1),
        Err(StoreError::UnknownCamera(_))
    ));
}

#[test]
fn crash_recovery_truncates_uncommitted_bytes_and_never_reuses_numbers() {
    let h = Harness::new();
    {
        let store = h.open(opts());
        let mut w = store.open_video("front", stream_opts()).unwrap();
        for _ in 0..3 {
            append(&mut w, &h.clock, 500);
        }
        // A torn write: bytes reached the file but the index row never committed.
        let seg = std::fs::read_dir(h.root().join("front"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        std::io::Write::write_all(&mut f, &[0xAB; 777]).unwrap();
        // Simulate kill -9: the writer never closes its segment.
        std::mem::forget(w);
    }
    let store = h.open(opts());
    let seg = std::fs::read_dir(h.root().join("front"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        1500,
        "torn bytes truncated"
    );
    let mut w = store.open_video("front", stream_opts()).unwrap();
    assert_eq!(w.next_fragment_number(), 4);
    append(&mut w, &h.clock, 500);
    let r = StoreReader::open(&h.root()).unwrap();
    let frags = r.fragments("front", None, None, 100).unwrap();
    assert_eq!(
        frags.iter().map(|f| f.fragment_number).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    for f in &frags {
        assert_eq!(r.read_fragment(f).unwrap().len(), 500);
    }
}

#[test]
fn orphan_segment_files_are_removed_on_open() {
    let h = Harness::new();
    {
        let store = h.open(opts());
        let mut w = store.open_video("front", stream_opts()).unwrap();
        append(&mut w, &h.clock, 100);
    }
    let orphan = h.root().join("front").join(format!("{:020}.m4s", 999));
    std::fs::write(&orphan, b"left behind by a crash during retention").unwrap();
    let _store = h.open(opts());
    assert!(!orphan.exists());
}

#[test]
fn age_retention_runs_hours_in_milliseconds() {
    let h = Harness::new();
    let store = h.open(opts());
    let mut w = store.open_video("front", stream_opts()).unwrap();
    // Three hours of 2 s fragments: 5400 fragments, segments roll every 60 s.
    for _ in 0..5400 {
        append(&mut w, &h.clock, 100);
    }
    let report = store.enforce_retention().unwrap();
    assert!(!report.deleted.is_empty());
    assert!(report
        .deleted
        .iter()
        .all(|d| d.reason == "older than retention"));
    let r = StoreReader::open(&h.root()).unwrap();
    let frags = r.fragments("front", None, None, 100_000).unwrap();
    let now = h.clock.now_ns();
    let oldest = frags[0].server_ns;
    // Nothing older than retention (1 h) plus one segment (60 s) survives; the last hour does.
    assert!(
        now - oldest <= 3_660_000_000_000,
        "oldest kept is {} s old",
        (now - oldest) / 1_000_000_000
    );
    assert!(frags.len() >= 1790, "kept {}", frags.len());
    assert_eq!(frags.last().unwrap().fragment_number, 5400);
    // Files of deleted segments are gone from disk.
    let files = std::fs::read_dir(h.root().join("front")).unwrap().count();
    let segments: std::collections::HashSet<_> = frags.iter().map(|f| f.segment_id).collect();
    assert_eq!(files, segments.len());
}

#[test]
fn camera_and_global_budgets_hold_with_delete_oldest() {
    let h = Harness::new();
    let mut o = opts();
    o.max_bytes = Some(300_000);
    let store = h.open(o);
    let mut so = stream_opts();
    so.max_bytes = Some(100_000);
    so.segment_size = 25_000;
    let mut a = store.open_video("a", so).unwrap();
    let mut bo = stream_opts();
    bo.segment_size = 50_000;
    let mut b = store.open_video("b", bo).unwrap();
    for _ in 0..200 {
        append(&mut a, &h.clock, 5_000);
        append(&mut b, &h.clock, 5_000);
        assert!(
            store.usage("a") <= 100_000,
            "camera budget: {}",
            store.usage("a")
        );
        assert!(
            store.total_usage() <= 300_000,
            "global budget: {}",
            store.total_usage()
        );
    }
    // Both cameras keep recent video.
    let r = StoreReader::open(&h.root()).unwrap();
    assert_eq!(
        r.fragments("a", None, None, 1000)
            .unwrap()
            .last()
            .unwrap()
            .fragment_number,
        200
    );
    assert_eq!(
        r.fragments("b", None, None, 1000)
            .unwrap()
            .last()
            .unwrap()
            .fragment_number,
        200
    );
    assert!(store.usage("b") > 100_000, "b uses the room a may not");
}

#[test]
fn deny_new_refuses_instead_of_deleting() {
    let h = Harness::new();
    let mut o = opts();
    o.on_full = OnFull::DenyNew;
    o.max_bytes = Some(50_000);
    let store = h.open(o);
    let mut so = stream_opts();
    so.segment_size = 10_000;
    let mut w = store.open_video("a", so).unwrap();
    let mut stored = 0;
    let mut refused = Vec::new();
    for _ in 0..20 {
        match append(&mut w, &h.clock, 5_000) {
            AppendOutcome::Stored { .. } => stored += 1,
            AppendOutcome::Refused { reason } => refused.push(reason),
        }
    }
    assert_eq!(stored, 10);
    assert_eq!(refused.len(), 10);
    assert!(
        refused[0].contains("global byte budget full"),
        "{}",
        refused[0]
    );
    let r = StoreReader::open(&h.root()).unwrap();
    let frags = r.fragments("a", None, None, 100).unwrap();
    assert_eq!(frags.first().unwrap().fragment_number, 1, "nothing deleted");
    assert_eq!(frags.len(), 10);
}

#[test]
fn low_disk_triggers_retention_before_writes_fail() {
    let h = Harness::new();
    let mut o = opts();
    o.min_free = Some(100_000);
    std::fs::create_dir_all(h.root()).unwrap();
    let disk = Arc::new(FakeDisk {
        capacity: 400_000,
        root: h.root(),
    });
    let store = h.open_with_disk(o, disk.clone());
    let mut so = stream_opts();
    so.segment_size = 40_000;
    let mut w = store.open_video("a", so).unwrap();
    for _ in 0..300 {
        assert!(matches!(
            append(&mut w, &h.clock, 8_000),
            AppendOutcome::Stored { .. }
        ));
        let free = disk.available(&h.root()).unwrap();
        // The fragment just written may dip into the reserve by at most its own size.
        assert!(free + 8_000 >= 100_000, "free {free}");
    }
}

#[test]
fn a_camera_removed_from_the_config_keeps_its_age_retention() {
    let h = Harness::new();
    {
        let store = h.open(opts());
        let mut w = store.open_video("gone", stream_opts()).unwrap();
        // 10 minutes of 2 s fragments (segments roll every 60 s).
        for _ in 0..300 {
            append(&mut w, &h.clock, 100);
        }
    }
    // Restart without that camera (no writer, no set_video_options), two hours later.
    h.clock.advance(Duration::from_secs(7200));
    let store = h.open(opts());
    let report = store.enforce_retention().unwrap();
    assert!(
        report.deleted.iter().any(|d| d.stream == "gone"),
        "the 1 h retention persisted in the index applies"
    );
    let left = StoreReader::open(&h.root())
        .unwrap()
        .fragments("gone", None, None, 10_000)
        .unwrap();
    assert!(
        left.is_empty(),
        "{} fragments older than retention",
        left.len()
    );
}

#[test]
fn a_segment_file_that_cannot_be_unlinked_fails_no_write() {
    let h = Harness::new();
    let mut o = opts();
    o.max_bytes = Some(200_000);
    let store = h.open(o);
    let mut so = stream_opts();
    so.segment_size = 20_000;
    let mut a = store.open_video("a", so.clone()).unwrap();
    let mut b = store.open_video("b", so).unwrap();
    for _ in 0..10 {
        append(&mut a, &h.clock, 10_000);
    }
    // Make camera a's closed segment files undeletable: replace each with a non-empty
    // directory (unlink(2) fails with EISDIR) while their rows stay in the index.
    let dir = h.root().join("a");
    let mut blocked = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "m4s") && blocked < 5 {
            std::fs::remove_file(&p).unwrap();
            std::fs::create_dir_all(p.join("keep")).unwrap();
            blocked += 1;
        }
    }
    // Camera b's writes push the global budget over: retention deletes a's oldest segments,
    // whose files cannot go. b's writes must still succeed.
    for _ in 0..20 {
        assert!(matches!(
            append(&mut b, &h.clock, 10_000),
            AppendOutcome::Stored { .. }
        ));
    }
    assert!(store.total_usage() <= 200_000 + 20_000);
}

#[test]
fn an_api_retention_override_persists_until_the_configs_value_changes() {
    let h = Harness::new();
    let details = || {
        StoreReader::open(&h.root())
            .unwrap()
            .stream_details("cam")
            .unwrap()
    };
    {
        let store = h.open(opts());
        let mut w = store.open_video("cam", stream_opts()).unwrap();
        assert_eq!(details().version, 1);
        let up = store
            .update_retention("cam", "1", RetentionChange::Increase(2))
            .unwrap();
        assert_eq!((up.version, up.retention_ns), (2, 3 * 3_600_000_000_000));
        assert!(matches!(
            store.update_retention("cam", "1", RetentionChange::Increase(1)),
            Err(ControlError::VersionMismatch { current: 2, .. })
        ));
        assert!(matches!(
            store.update_retention("cam", "2", RetentionChange::Decrease(3)),
            Err(ControlError::RetentionOutOfRange { .. })
        ));
        assert!(matches!(
            store.update_retention("cam", "2", RetentionChange::Increase(MAX_RETENTION_HOURS)),
            Err(ControlError::RetentionOutOfRange { .. })
        ));
        assert!(matches!(
            store.update_retention("nope", "1", RetentionChange::Increase(1)),
            Err(ControlError::Store(StoreError::UnknownCamera(_)))
        ));
        // 10 minutes of 2 s fragments (segments roll every 60 s)
        for _ in 0..300 {
            append(&mut w, &h.clock, 100);
        }
        // 2 h later the configured 1 h would delete them; the 3 h override keeps them
        h.clock.advance(Duration::from_secs(7200));
        let report = store.enforce_retention().unwrap();
        assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    }
    // a restart with the same config keeps the override
    let store = h.open(opts());
    drop(store.open_video("cam", stream_opts()).unwrap());
    let d = details();
    assert_eq!(d.retention_ns, Some(3 * 3_600_000_000_000));
    assert!(d.retention_overridden);
    assert_eq!(d.version, 2);
    assert!(store.enforce_retention().unwrap().deleted.is_empty());
    drop(store);
    // the config's value changes: it wins, the override is gone
    let store = h.open(opts());
    let mut two = stream_opts();
    two.retention = Duration::from_secs(2 * 3600);
    drop(store.open_video("cam", two).unwrap());
    let d = details();
    assert_eq!(d.retention_ns, Some(2 * 3_600_000_000_000));
    assert!(!d.retention_overridden);
    assert_eq!(d.version, 3);
    let report = store.enforce_retention().unwrap();
    assert!(report.deleted.iter().any(|d| d.stream == "cam"));
}

#[test]
fn tags_are_limited_per_stream_and_persist() {
    let h = Harness::new();
    {
        let store = h.open(opts());
        drop(store.open_video("cam", stream_opts()).unwrap());
        let tags: Vec<(String, String)> = (0..MAX_TAGS)
            .map(|i| (format!("k{i:02}"), format!("v{i}")))
            .collect();
        store.tag_stream("cam", &tags).unwrap();
        // replacing a value adds no tag
        store
            .tag_stream("cam", &[("k00".into(), "new".into())])
            .unwrap();
        assert!(matches!(
            store.tag_stream(
                "cam",
                &[("k00".into(), "x".into()), ("extra".into(), "".into())]
            ),
            Err(ControlError::TooManyTags(51))
        ));
        store
            .untag_stream("cam", &["k01".into(), "unknown".into()])
            .unwrap();
        assert!(matches!(
            store.tag_stream("nope", &tags[..1]),
            Err(ControlError::Store(StoreError::UnknownCamera(_)))
        ));
    }
    let store = h.open(opts());
    drop(store);
    let got = StoreReader::open(&h.root())
        .unwrap()
        .stream_tags("cam")
        .unwrap();
    assert_eq!(got.len(), MAX_TAGS - 1);
    assert_eq!(
        got[0],
        ("k00".to_string(), "new".to_string()),
        "the refused change left nothing"
    );
    assert!(!got.iter().any(|(k, _)| k == "k01" || k == "extra"));
}
