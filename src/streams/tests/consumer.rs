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
