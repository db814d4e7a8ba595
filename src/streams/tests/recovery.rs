use std::fs::OpenOptions;
use std::io::Write;

use super::*;

const ID: &str = "shardId-000000000000";

fn store_with(n: usize, seg: u64) -> (tempfile::TempDir, Arc<ManualClock>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_with(dir.path(), opts(seg), &clock);
    store.create_stream("s", 1, 24).unwrap();
    let seqs = (0..n)
        .map(|i| {
            store
                .put("s", rec("k", format!("record {i}")))
                .unwrap()
                .sequence_number
        })
        .collect();
    (dir, clock, seqs)
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    segment_files(dir, "s", ID).pop().unwrap()
}

fn assert_records(store: &ShardStreams, n: usize) {
    let got = read_all(store, "s", ID, 1000);
    assert_eq!(got.len(), n);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(offset_of(&r.sequence_number), i as u64);
        assert_eq!(r.data, format!("record {i}").into_bytes());
    }
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    for seg in [1 << 20, 300] {
        let (dir, clock, _) = store_with(40, seg);
        let path = last_segment(dir.path());
        let good_len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[0xAB; 77])
            .unwrap();

        let store = open_with(dir.path(), opts(seg), &clock);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            good_len,
            "garbage gone"
        );
        assert_records(&store, 40);
        let next = store.put("s", rec("k", "record 40")).unwrap();
        assert_eq!(offset_of(&next.sequence_number), 40, "sequence continues");
        assert_records(&store, 41);
    }
}

#[test]
fn zero_filled_tail_is_cut() {
    let (dir, clock, _) = store_with(10, 1 << 20);
    let path = last_segment(dir.path());
    let good_len = std::fs::metadata(&path).unwrap().len();
    // What a crash after the size update but before the data reached disk can leave.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(good_len + 4096)
        .unwrap();
    let store = open_with(dir.path(), opts(1 << 20), &clock);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    assert_records(&store, 10);
}

#[test]
fn a_record_cut_in_half_is_dropped() {
    let (dir, clock, _) = store_with(25, 1 << 20);
    let path = last_segment(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    let frame = format::frame_len("k", b"record 24") as u64;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - frame / 2)
        .unwrap();

    let store = open_with(dir.path(), opts(1 << 20), &clock);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len - frame);
    assert_records(&store, 24);
    let next = store.put("s", rec("k", "record 24")).unwrap();
    assert_eq!(offset_of(&next.sequence_number), 24);
    assert_records(&store, 25);
    drop(store);
    // and the repaired shard reopens cleanly
    assert_records(&open_with(dir.path(), opts(1 << 20), &clock), 25);
}

#[test]
fn a_crash_mid_batch_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_with(dir.path(), opts(1 << 20), &clock);
    store.create_stream("s", 1, 24).unwrap();
    let acked: Vec<PutResult> = store
        .put_many(
            "s",
            (0..30).map(|i| rec("k", format!("record {i}"))).collect(),
        )
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let path = last_segment(dir.path());
    let acked_len = std::fs::metadata(&path).unwrap().len();
    // The next batch is "in flight": only part of its bytes reach the disk before the crash.
    store
        .put_many(
            "s",
            (30..60).map(|i| rec("k", format!("record {i}"))).collect(),
        )
        .unwrap();
    drop(store);
    let full_len = std::fs::metadata(&path).unwrap().len();
    for cut in [
        acked_len,
        acked_len + 1,
        acked_len + (full_len - acked_len) / 3,
        full_len - 1,
    ] {
        let copy = tempfile::tempdir().unwrap();
        copy_tree(dir.path(), copy.path());
        let seg = last_segment(copy.path());
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let store = open_with(copy.path(), opts(1 << 20), &clock);
        let got = read_all(&store, "s", ID, 1000);
        assert!(
            got.len() >= 30 && got.len() < 60,
            "cut at {cut}: {} records",
            got.len()
        );
        for (a, g) in acked.iter().zip(&got) {
            assert_eq!(a.sequence_number, g.sequence_number);
        }
        // Whatever survived of the batch is a whole-record prefix of it.
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.data, format!("record {i}").into_bytes());
        }
        let next = store.put("s", rec("k", "more")).unwrap();
        assert_eq!(offset_of(&next.sequence_number), got.len() as u64);
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn a_new_segment_without_its_header_is_replaced() {
    let (dir, clock, _) = store_with(10, 1 << 20);
    // Crash right after creating the next segment file, before its header was written.
    let next = dir.path().join("s").join(ID).join(segment::log_name(10));
    std::fs::write(&next, b"VGS").unwrap();
    let store = open_with(dir.path(), opts(1 << 20), &clock);
    assert_records(&store, 10);
    let r = store.put("s", rec("k", "record 10")).unwrap();
    assert_eq!(offset_of(&r.sequence_number), 10);
    assert_records(&store, 11);
}

#[test]
fn half_created_and_half_deleted_streams_stay_invisible() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_with(dir.path(), opts(1 << 20), &clock);
    store.create_stream("keep", 1, 24).unwrap();
    store.create_stream("gone", 2, 24).unwrap();
    store.put("gone", rec("k", "x")).unwrap();
    store.delete_stream("gone").unwrap();
    assert!(!dir.path().join("gone").exists());
    assert!(matches!(
        store.put("gone", rec("k", "x")),
        Err(StreamError::NotFound(_))
    ));
    drop(store);
    // Leftovers of an interrupted create or delete live in the staging area only.
    std::fs::create_dir_all(
        dir.path()
            .join("+staging")
            .join("half.1")
            .join("shardId-000000000000"),
    )
    .unwrap();
    let store = open_with(dir.path(), opts(1 << 20), &clock);
    assert_eq!(store.list_streams(), vec!["keep".to_string()]);
    assert_eq!(
        std::fs::read_dir(dir.path().join("+staging"))
            .unwrap()
            .count(),
        0
    );
    // A recreated stream starts empty.
    store.create_stream("gone", 1, 24).unwrap();
    assert!(read_all(&store, "gone", ID, 10).is_empty());
}

#[test]
fn a_damaged_sealed_segment_is_cut_and_reads_skip_the_gap() {
    let (dir, clock, _) = store_with(60, 300);
    let files = segment_files(dir.path(), "s", ID);
    assert!(files.len() > 4);
    // Flip a byte in the middle of the second segment and drop its index so it is rescanned.
    let victim = &files[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(victim, &bytes).unwrap();
    std::fs::remove_file(victim.with_extension("idx")).unwrap();

    let store = open_with(dir.path(), opts(300), &clock);
    let got = read_all(&store, "s", ID, 7);
    let offsets: Vec<u64> = got.iter().map(|r| offset_of(&r.sequence_number)).collect();
    assert!(
        offsets.len() < 60 && offsets.len() > 50,
        "only the damaged tail of one segment is lost: {offsets:?}"
    );
    assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(*offsets.last().unwrap(), 59);
    for r in &got {
        assert_eq!(
            r.data,
            format!("record {}", offset_of(&r.sequence_number)).into_bytes()
        );
    }
    let r = store.put("s", rec("k", "record 60")).unwrap();
    assert_eq!(offset_of(&r.sequence_number), 60);
}

#[test]
fn readers_never_see_records_before_they_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), opts(1 << 20), &ManualClock::new(T0));
    store.create_stream("s", 1, 24).unwrap();
    store.put("s", rec("k", "durable")).unwrap();
    let stream = store.stream("s").unwrap();
    let shard = &stream.shards[0];
    let r = rec("k", "written, not yet synced");
    let (offsets, end) = shard.append(&[&r], T0).unwrap();
    assert_eq!((offsets, end), (vec![1], 2));
    assert_eq!(read_all(&store, "s", ID, 10).len(), 1);
    assert_eq!(
        store.resolve("s", ID, StartPosition::Latest).unwrap(),
        ReadPosition(1)
    );
    assert!(!store
        .wait_for("s", ID, ReadPosition(1), Duration::from_millis(1))
        .unwrap());
    shard.sync_until(end).unwrap();
    assert_eq!(read_all(&store, "s", ID, 10).len(), 2);
    assert!(store
        .wait_for("s", ID, ReadPosition(1), Duration::ZERO)
        .unwrap());
}
