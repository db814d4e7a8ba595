use super::*;

fn payload(i: usize) -> Vec<u8> {
    // Variable sizes so records straddle index intervals and segment ends.
    (0..(i * 37) % 700).map(|j| (i + j) as u8).collect()
}

#[test]
fn put_read_round_trip_across_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_with(dir.path(), opts(4096), &clock);
    store.create_stream("s", 2, 24).unwrap();
    let mut expect: [Vec<(String, String, Vec<u8>)>; 2] = Default::default();
    for chunk in (0..600).collect::<Vec<usize>>().chunks(50) {
        let recs: Vec<PutRecord> = chunk
            .iter()
            .map(|&i| rec(&format!("k{i}"), payload(i)))
            .collect();
        let results = store.put_many("s", recs.clone()).unwrap();
        for (r, res) in recs.into_iter().zip(results) {
            let res = res.unwrap();
            let shard = parse_shard_id(&res.shard_id).unwrap() as usize;
            expect[shard].push((res.sequence_number, r.partition_key, r.data));
        }
        clock.advance(Duration::from_millis(10));
    }
    let check = |store: &ShardStreams| {
        for (i, exp) in expect.iter().enumerate() {
            let id = shard_id(i as u32);
            for limit in [1, 7, 10_000] {
                let got = read_all(store, "s", &id, limit);
                let got: Vec<_> = got
                    .into_iter()
                    .map(|r| (r.sequence_number, r.partition_key, r.data))
                    .collect();
                assert_eq!(&got, exp, "shard {i} limit {limit}");
            }
            // offsets are dense from 0
            for (n, (seq, _, _)) in exp.iter().enumerate() {
                assert_eq!(offset_of(seq), n as u64);
            }
        }
    };
    check(&store);
    let stats = store.shard_stats("s").unwrap();
    assert!(stats.iter().all(|s| s.segments > 10), "{stats:?}");
    assert_eq!(stats[0].tip, ReadPosition(expect[0].len() as u64));
    drop(store);

    // Reopen: sealed segments come from their .idx files.
    let store = open_with(dir.path(), opts(4096), &clock);
    check(&store);
    drop(store);

    // Lost or damaged indexes are rebuilt from the segments.
    let shard_dir = dir.path().join("s").join(shard_id(0));
    let mut idx: Vec<_> = std::fs::read_dir(&shard_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    idx.sort();
    std::fs::remove_file(&idx[0]).unwrap();
    std::fs::write(&idx[1], b"garbage").unwrap();
    let store = open_with(dir.path(), opts(4096), &clock);
    check(&store);
    assert!(idx[0].exists(), "rebuilt index is persisted again");
    let r = store.put("s", rec("k0", "after")).unwrap();
    assert_eq!(
        offset_of(&r.sequence_number),
        expect[parse_shard_id(&r.shard_id).unwrap() as usize].len() as u64
    );
}

#[test]
fn max_bytes_limits_a_batch_but_returns_at_least_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), opts(1 << 20), &ManualClock::new(T0));
    store.create_stream("s", 1, 24).unwrap();
    let id = shard_id(0);
    store
        .put_many(
            "s",
            (0..10).map(|i| rec("k", vec![i as u8; 1000])).collect(),
        )
        .unwrap();
    let b = store.read("s", &id, ReadPosition(0), 100, 10).unwrap();
    assert_eq!(b.records.len(), 1);
    let b = store.read("s", &id, b.next, 100, 3003).unwrap();
    assert_eq!(b.records.len(), 3, "1001 bytes each (key + data)");
    assert_eq!(offset_of(&b.records[0].sequence_number), 1);
    let b = store.read("s", &id, b.next, 2, 1 << 20).unwrap();
    assert_eq!(b.records.len(), 2);
    assert_eq!(b.next, ReadPosition(6));
}

#[test]
fn records_larger_than_a_segment_get_their_own_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), opts(1024), &ManualClock::new(T0));
    store.create_stream("s", 1, 24).unwrap();
    let big = vec![7u8; MAX_RECORD_BYTES - 1];
    let res = store
        .put_many(
            "s",
            vec![rec("k", "small"), rec("k", big.clone()), rec("k", "tail")],
        )
        .unwrap();
    assert!(res.iter().all(|r| r.is_ok()));
    let got = read_all(&store, "s", &shard_id(0), 100);
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].data, big);
    assert_eq!(store.shard_stats("s").unwrap()[0].segments, 3);
}

#[test]
fn without_fsync_records_are_visible_once_written() {
    let dir = tempfile::tempdir().unwrap();
    let o = ShardStreamsOptions {
        fsync: false,
        segment_bytes: 2048,
    };
    let store = open_with(dir.path(), o, &ManualClock::new(T0));
    store.create_stream("s", 1, 24).unwrap();
    for i in 0..100 {
        store.put("s", rec("k", format!("r{i}"))).unwrap();
    }
    assert_eq!(read_all(&store, "s", &shard_id(0), 1000).len(), 100);
    assert_eq!(store.io_stats().fdatasyncs, 0);
    assert_eq!(store.io_stats().records_appended, 100);
}
