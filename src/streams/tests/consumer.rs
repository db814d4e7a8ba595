use super::*;

#[test]
fn consumer_checkpoints_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_with(dir.path(), opts(1 << 20), &clock);
    store.create_stream("s", 2, 24).unwrap();
    store
        .put_many(
            "s",
            (0..20)
                .map(|i| rec(&format!("cam-{}", i % 4), format!("r{i}")))
                .collect(),
        )
        .unwrap();

    let mut c = store.consumer("s", "delivery").unwrap();
    let mut got = Vec::new();
    loop {
        let batch = c.poll(3).unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 3);
        got.extend(batch);
    }
    assert_eq!(got.len(), 20);
    let (s0, s1): (Vec<_>, Vec<_>) = got.iter().partition(|(s, _)| s == "shardId-000000000000");
    assert!(!s0.is_empty() && !s1.is_empty());
    c.commit(&s0[2].0, &s0[2].1.sequence_number).unwrap();
    c.commit(&s1.last().unwrap().0, &s1.last().unwrap().1.sequence_number)
        .unwrap();
    // A checkpoint never moves back.
    c.commit(&s0[0].0, &s0[0].1.sequence_number).unwrap();
    assert_eq!(
        c.checkpoint("shardId-000000000000"),
        Some(s0[2].1.sequence_number.clone())
    );
    // Bad commits.
    assert!(matches!(
        c.commit("shardId-000000000000", &s1[0].1.sequence_number),
        Err(StreamError::InvalidArgument(_))
    ));
    assert!(matches!(
        c.commit("shardId-000000000000", &sequence_number(0, 999)),
        Err(StreamError::InvalidArgument(_))
    ));
    assert!(matches!(
        c.commit("shardId-000000000009", &s0[0].1.sequence_number),
        Err(StreamError::NotFound(_))
    ));
    drop(c);
    drop(store);

    let store = open_with(dir.path(), opts(1 << 20), &clock);
    let mut c = store.consumer("s", "delivery").unwrap();
    assert_eq!(
        c.checkpoint("shardId-000000000000"),
        Some(s0[2].1.sequence_number.clone())
    );
    assert_eq!(
        c.checkpoint("shardId-000000000001"),
        Some(s1.last().unwrap().1.sequence_number.clone())
    );
    let again = c.poll(100).unwrap();
    let expect: Vec<_> = s0[3..]
        .iter()
        .map(|(_, r)| r.sequence_number.clone())
        .collect();
    assert_eq!(
        again
            .iter()
            .map(|(_, r)| r.sequence_number.clone())
            .collect::<Vec<_>>(),
        expect
    );
    // Another consumer of the same stream starts at the trim horizon.
    assert_eq!(
        store
            .consumer("s", "other")
            .unwrap()
            .poll(100)
            .unwrap()
            .len(),
        20
    );
    assert!(matches!(
        store.consumer("nope", "x"),
        Err(StreamError::NotFound(_))
    ));
    assert!(matches!(
        store.consumer("s", "a/b"),
        Err(StreamError::InvalidArgument(_))
    ));
}

/// Records that age out before a consumer read them are counted as lost (never silently
/// skipped), and the lag reports what is left and how old it is.
#[test]
fn aged_out_records_are_counted_as_lost_and_lag_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = open_with(dir.path(), opts(1024), &clock);
    store.create_stream("s", 1, 24).unwrap();
    let mut c = store.consumer("s", "slow").unwrap();
    let first = c.poll(1).unwrap();
    assert!(first.is_empty());
    for i in 0..60 {
        store
            .put("s", rec("k", format!("old {i:03} {}", "x".repeat(80))))
            .unwrap();
    }
    let lag = c.lag().unwrap();
    assert_eq!(lag.records, 60);
    assert_eq!(lag.oldest_arrival_ns, Some(T0));
    // A day later the old segments go; fresh records arrive.
    clock.advance(Duration::from_secs(25 * 3600));
    for i in 0..5 {
        store.put("s", rec("k", format!("new {i}"))).unwrap();
    }
    assert!(store.enforce_retention().unwrap() > 0);
    let mut read = 0;
    loop {
        let batch = c.poll(1000).unwrap();
        if batch.is_empty() {
            break;
        }
        read += batch.len() as u64;
    }
    let lost = c.take_lost();
    assert!(lost > 0, "aged-out records not counted");
    assert_eq!(
        read + lost,
        65,
        "every record is either read or counted lost"
    );
    assert_eq!(c.take_lost(), 0, "counted once");
}
