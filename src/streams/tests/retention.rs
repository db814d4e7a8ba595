use super::*;

const ID: &str = "shardId-000000000000";
const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn retention_removes_old_segments_and_moves_the_trim_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_with(dir.path(), opts(1024), &clock);
    store.create_stream("s", 1, 24).unwrap();
    let old: Vec<String> = (0..60)
        .map(|i| {
            store
                .put("s", rec("k", format!("old {i:03} {}", "x".repeat(80))))
                .unwrap()
                .sequence_number
        })
        .collect();
    let before = store.shard_stats("s").unwrap()[0].segments;
    assert!(before > 5);

    clock.advance(HOUR * 2);
    assert_eq!(
        store.enforce_retention().unwrap(),
        0,
        "nothing is 24 h old yet"
    );
    clock.advance(HOUR * 23);
    let fresh: Vec<String> = (0..20)
        .map(|i| {
            store
                .put("s", rec("k", format!("new {i:03} {}", "x".repeat(80))))
                .unwrap()
                .sequence_number
        })
        .collect();
    let removed = store.enforce_retention().unwrap();
    assert!(removed >= before - 2, "removed {removed} of {before}");

    let th = store.resolve("s", ID, StartPosition::TrimHorizon).unwrap();
    let stats = &store.shard_stats("s").unwrap()[0];
    assert_eq!(stats.trim_horizon, th);
    let got = read_all(&store, "s", ID, 1000);
    assert_eq!(
        got[0].sequence_number,
        sequence_number(0, th.0),
        "TRIM_HORIZON is the oldest remaining"
    );
    assert!(th.0 > 0 && th.0 <= offset_of(&fresh[0]));
    assert_eq!(got.last().unwrap().sequence_number, *fresh.last().unwrap());
    assert_eq!(segment_files(dir.path(), "s", ID).len(), stats.segments);

    // An aged-out sequence number starts at the trim horizon.
    assert_eq!(
        store
            .resolve("s", ID, StartPosition::AtSequence(old[0].clone()))
            .unwrap(),
        th
    );
    assert_eq!(
        store
            .resolve("s", ID, StartPosition::AfterSequence(old[0].clone()))
            .unwrap(),
        th
    );
    // Reading from an aged-out position jumps to the trim horizon too.
    let b = store.read("s", ID, ReadPosition(0), 1, 1 << 20).unwrap();
    assert_eq!(b.records[0].sequence_number, sequence_number(0, th.0));

    drop(store);
    let store = open_with(dir.path(), opts(1024), &clock);
    assert_eq!(
        store.resolve("s", ID, StartPosition::TrimHorizon).unwrap(),
        th,
        "survives reopen"
    );
}

#[test]
fn the_active_segment_is_kept_however_old() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_with(dir.path(), opts(1024), &clock);
    store.create_stream("s", 1, 48).unwrap();
    for i in 0..40 {
        store
            .put("s", rec("k", format!("{i:03} {}", "x".repeat(80))))
            .unwrap();
    }
    clock.advance(HOUR * 47);
    assert_eq!(store.enforce_retention().unwrap(), 0, "48 h retention");
    clock.advance(HOUR * 2);
    assert!(store.enforce_retention().unwrap() > 0);
    let stats = &store.shard_stats("s").unwrap()[0];
    assert_eq!(stats.segments, 1, "only the active segment is left");
    let got = read_all(&store, "s", ID, 100);
    assert!(!got.is_empty(), "its records stay readable");
    assert_eq!(offset_of(&got.last().unwrap().sequence_number), 39);
    assert_eq!(store.enforce_retention().unwrap(), 0);
    // Shorter retention applies at the next pass.
    store.set_retention("s", 24).unwrap();
    assert_eq!(store.describe("s").unwrap().retention_hours, 24);
}
