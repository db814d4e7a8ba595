use super::*;

/// Puts 20 records in one shard, 1 s apart: record i arrives at T0 + i s.
fn setup() -> (
    tempfile::TempDir,
    Arc<ManualClock>,
    Arc<ShardStreams>,
    Vec<String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_with(dir.path(), opts(512), &clock);
    store.create_stream("s", 1, 24).unwrap();
    let mut seqs = Vec::new();
    for i in 0..20 {
        seqs.push(
            store
                .put("s", rec("k", format!("rec-{i:02}-{}", "x".repeat(60))))
                .unwrap()
                .sequence_number,
        );
        clock.advance(Duration::from_secs(1));
    }
    (dir, clock, store, seqs)
}

fn first(store: &ShardStreams, pos: ReadPosition) -> Option<u64> {
    let b = store
        .read("s", "shardId-000000000000", pos, 1, 1 << 20)
        .unwrap();
    b.records.first().map(|r| offset_of(&r.sequence_number))
}

#[test]
fn every_start_position() {
    let (_dir, clock, store, seqs) = setup();
    let id = "shardId-000000000000";
    let at = |p| store.resolve("s", id, p).unwrap();
    assert!(store.shard_stats("s").unwrap()[0].segments > 3);

    assert_eq!(at(StartPosition::TrimHorizon), ReadPosition(0));
    assert_eq!(first(&store, at(StartPosition::TrimHorizon)), Some(0));
    assert_eq!(
        at(StartPosition::AtSequence(seqs[7].clone())),
        ReadPosition(7)
    );
    assert_eq!(
        first(&store, at(StartPosition::AtSequence(seqs[7].clone()))),
        Some(7)
    );
    assert_eq!(
        first(&store, at(StartPosition::AfterSequence(seqs[7].clone()))),
        Some(8)
    );
    assert_eq!(
        at(StartPosition::AfterSequence(seqs[19].clone())),
        ReadPosition(20)
    );

    let latest = at(StartPosition::Latest);
    assert_eq!(latest, ReadPosition(20));
    assert_eq!(first(&store, latest), None);
    store.put("s", rec("k", "new")).unwrap();
    let b = store.read("s", id, latest, 10, 1 << 20).unwrap();
    assert_eq!(b.records.len(), 1);
    assert_eq!(b.records[0].data, b"new");

    // AT_TIMESTAMP: the first record that arrived at or after the time.
    let ts =
        |secs: i64, ms: i64| StartPosition::AtTimestamp(T0 + secs * 1_000_000_000 + ms * 1_000_000);
    assert_eq!(at(ts(-100, 0)), ReadPosition(0));
    assert_eq!(at(ts(0, 0)), ReadPosition(0));
    assert_eq!(at(ts(0, 1)), ReadPosition(1));
    assert_eq!(at(ts(12, 0)), ReadPosition(12));
    assert_eq!(at(ts(12, 500)), ReadPosition(13));
    assert_eq!(at(ts(19, 0)), ReadPosition(19));
    assert_eq!(
        at(ts(20, 0)),
        ReadPosition(20),
        "the extra record arrived at T0+20s"
    );
    assert_eq!(at(ts(21, 0)), ReadPosition(21), "after everything: the tip");
    clock.advance(Duration::from_secs(100));
    assert_eq!(
        at(StartPosition::AtTimestamp(clock.now_ns())),
        ReadPosition(21)
    );
}

#[test]
fn arrival_times_never_go_back_even_if_the_clock_does() {
    let (_dir, clock, store, _) = setup();
    let last = read_all(&store, "s", "shardId-000000000000", 100)
        .pop()
        .unwrap()
        .arrival_ns;
    clock.set(T0 - 3_600_000_000_000);
    store.put("s", rec("k", "late")).unwrap();
    let r = read_all(&store, "s", "shardId-000000000000", 100)
        .pop()
        .unwrap();
    assert_eq!(r.arrival_ns, last);
}

#[test]
fn bad_sequence_numbers_are_invalid_arguments() {
    let (dir, clock, store, seqs) = setup();
    let id = "shardId-000000000000";
    let other_shard = sequence_number(1, 3);
    let beyond = sequence_number(0, 21);
    for (start, why) in [
        (StartPosition::AtSequence("12x".into()), "malformed"),
        (
            StartPosition::AtSequence(
                "49590338271490256608559692538361571095921575989136588898".into(),
            ),
            "not ours",
        ),
        (
            StartPosition::AtSequence(other_shard.clone()),
            "another shard",
        ),
        (StartPosition::AfterSequence(other_shard), "another shard"),
        (StartPosition::AtSequence(beyond.clone()), "beyond the tip"),
        (
            StartPosition::AfterSequence(seqs[19].replace("00019", "00020")),
            "the tip itself",
        ),
    ] {
        assert!(
            matches!(
                store.resolve("s", id, start),
                Err(StreamError::InvalidArgument(_))
            ),
            "{why}"
        );
    }
    // Another stream's shard 1 sequence number routes to a shard this stream lacks.
    assert!(matches!(
        store.resolve("s", "shardId-000000000001", StartPosition::Latest),
        Err(StreamError::NotFound(_))
    ));
    drop((dir, clock));
}

#[test]
fn millis_behind_latest() {
    let (_dir, clock, store, _) = setup();
    let id = "shardId-000000000000";
    clock.advance(Duration::from_secs(5)); // now = T0 + 25 s
    let b = store.read("s", id, ReadPosition(0), 1, 1 << 20).unwrap();
    assert_eq!(b.millis_behind_latest, 25_000);
    let b = store.read("s", id, ReadPosition(10), 100, 1 << 20).unwrap();
    assert_eq!(b.records.len(), 10);
    assert_eq!(b.millis_behind_latest, 0, "caught up");
}
