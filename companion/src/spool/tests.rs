use super::*;
use proptest::prelude::*;
use std::collections::HashSet;

fn meta(seq: u64, p: Priority) -> EntryMeta {
    EntryMeta {
        seq,
        id: Uuid::from_u128(seq as u128),
        priority: p,
        bytes: 100,
    }
}

fn cfg() -> SpoolConfig {
    SpoolConfig {
        max_entries: 10,
        max_bytes: 10_000,
        max_inflight: 3,
        inflight_timeout: Duration::from_secs(10),
        receipt_timeout: Duration::from_secs(30),
        max_receipt_backoff: Duration::from_secs(240),
    }
}

fn drain(s: &mut Spool, now: Instant) -> Vec<u64> {
    std::iter::from_fn(|| s.poll_transmit(now).map(|m| m.seq)).collect()
}

#[test]
fn nothing_is_sent_while_disconnected_and_alerts_go_first() {
    let t0 = Instant::now();
    let mut s = Spool::new(cfg(), []);
    s.insert(meta(1, Priority::Normal));
    s.insert(meta(2, Priority::High));
    s.insert(meta(3, Priority::Normal));
    s.insert(meta(4, Priority::High));
    assert_eq!(s.poll_transmit(t0), None);
    s.on_connected();
    // Window of 3: both alerts first, then the oldest event.
    assert_eq!(drain(&mut s, t0), vec![2, 4, 1]);
    s.on_puback(2, t0);
    assert_eq!(drain(&mut s, t0), vec![3]);
    assert_eq!(s.stats().inflight, 3);
    assert_eq!(s.stats().acked, 1);
}

#[test]
fn puback_alone_does_not_delete_but_receipt_does() {
    let t0 = Instant::now();
    let mut s = Spool::new(cfg(), [meta(1, Priority::High)]);
    s.on_connected();
    assert_eq!(drain(&mut s, t0), vec![1]);
    s.on_puback(1, t0);
    assert!(s.drain_deletions().is_empty());
    assert_eq!(s.stats().depth, 1);
    s.on_receipt(&[Uuid::from_u128(1)]);
    assert_eq!(s.drain_deletions(), vec![1]);
    assert_eq!(s.stats().depth, 0);
    assert_eq!(s.stats().bytes, 0);
    // A late duplicate PUBACK or receipt changes nothing.
    s.on_puback(1, t0);
    s.on_receipt(&[Uuid::from_u128(1)]);
    assert!(s.drain_deletions().is_empty());
}

#[test]
fn lost_session_requeues_inflight_entries() {
    let t0 = Instant::now();
    let mut s = Spool::new(cfg(), (1..=3).map(|i| meta(i, Priority::High)));
    s.on_connected();
    assert_eq!(drain(&mut s, t0), vec![1, 2, 3]);
    s.on_puback(1, t0);
    s.on_disconnected();
    s.on_connected();
    // The broker forgot 2 and 3 (session not present).
    s.requeue(2);
    s.requeue(3);
    s.requeue(1); // acked: stays acked
    assert_eq!(drain(&mut s, t0), vec![2, 3]);
    assert_eq!(s.stats().acked, 1);
}

#[test]
fn inflight_timeout_only_fires_while_connected() {
    let t0 = Instant::now();
    let mut s = Spool::new(cfg(), [meta(1, Priority::High)]);
    s.on_connected();
    assert_eq!(drain(&mut s, t0), vec![1]);
    s.on_disconnected();
    let t1 = t0 + Duration::from_secs(11);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    s.handle_timeout(t1);
    assert_eq!(
        s.stats().inflight,
        1,
        "kept in flight while the link is down"
    );
    s.on_connected();
    let t2 = t1 + Duration::from_secs(11);
    s.handle_timeout(t2);
    assert_eq!(drain(&mut s, t2), vec![1]);
    assert_eq!(s.stats().republished, 1);
}

#[test]
fn missing_receipts_republish_with_backoff() {
    let t0 = Instant::now();
    let mut s = Spool::new(cfg(), [meta(1, Priority::High)]);
    s.on_connected();
    let mut now = t0;
    let mut waits = vec![];
    for _ in 0..5 {
        assert_eq!(drain(&mut s, now), vec![1]);
        s.on_puback(1, now);
        let deadline = s.poll_timeout().unwrap();
        waits.push((deadline - now).as_secs());
        now = deadline;
        s.handle_timeout(now);
    }
    assert_eq!(waits, vec![30, 60, 120, 240, 240]);
    assert_eq!(s.stats().republished, 5);
}

#[test]
fn full_spool_refuses_and_keeps_everything() {
    let t0 = Instant::now();
    let mut s = Spool::new(cfg(), (1..=10).map(|i| meta(i, Priority::High)));
    let err = s.reserve(100).unwrap_err();
    assert_eq!(err.depth, 10);
    assert!(err.to_string().contains("spool full"));
    assert_eq!(s.stats().depth, 10);
    assert_eq!(s.stats().refused, 1);
    assert!(s.drain_deletions().is_empty());
    // Once the broker holds some, the oldest acked ones make room.
    s.on_connected();
    drain(&mut s, t0);
    s.on_puback(2, t0);
    s.on_puback(1, t0);
    s.reserve(100).unwrap();
    assert_eq!(s.drain_deletions(), vec![1]);
    assert_eq!(s.stats().evicted, 1);
    s.insert(meta(11, Priority::High));
    assert_eq!(s.stats().depth, 10);
}

#[test]
fn byte_limit_is_enforced() {
    let mut c = cfg();
    c.max_bytes = 250;
    let mut s = Spool::new(c, [meta(1, Priority::High), meta(2, Priority::High)]);
    assert!(s.reserve(50).is_ok());
    assert!(s.reserve(51).is_err());
}

#[test]
fn recovery_continues_sequence_and_ignores_duplicate_ids() {
    let mut s = Spool::new(cfg(), [meta(7, Priority::High), meta(3, Priority::Normal)]);
    assert_eq!(s.next_seq(), 8);
    assert!(s.contains(&Uuid::from_u128(7)));
    s.insert(EntryMeta {
        seq: 8,
        id: Uuid::from_u128(7),
        priority: Priority::High,
        bytes: 1,
    });
    assert_eq!(s.stats().depth, 2);
}

/// What can happen on the wire, for the randomised run below.
#[derive(Debug, Clone)]
enum Step {
    Produce(bool),
    Transmit,
    /// The broker acks the n-th oldest in-flight publish.
    Ack(usize),
    /// The ground receipts the n-th stored id.
    Receipt(usize),
    /// Drop the connection; `true` if the broker kept the session.
    Reconnect(bool),
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<bool>().prop_map(Step::Produce),
        3 => Just(Step::Transmit),
        3 => (0usize..8).prop_map(Step::Ack),
        2 => (0usize..8).prop_map(Step::Receipt),
        1 => any::<bool>().prop_map(Step::Reconnect),
        1 => (1u64..120).prop_map(Step::Advance),
    ]
}

proptest! {
    /// Under any interleaving of produce / transmit / ack / receipt /
    /// reconnect / time, an entry leaves the spool only after PUBACK or
    /// receipt, nothing is lost, and once the link is healthy everything is
    /// delivered.
    #[test]
    fn nothing_is_lost_under_any_interleaving(steps in proptest::collection::vec(step(), 1..200)) {
        let mut c = cfg();
        c.max_entries = 1_000;
        c.max_bytes = u64::MAX;
        let mut s = Spool::new(c, []);
        let mut now = Instant::now();
        let mut inflight: Vec<u64> = vec![];  // what the "broker" has not acked yet
        let mut acked: HashSet<u64> = HashSet::new();
        let mut stored: Vec<u64> = vec![];    // what the "ground" has
        let mut produced: HashSet<u64> = HashSet::new();
        let mut receipted: HashSet<u64> = HashSet::new();
        s.on_connected();
        for st in steps {
            match st {
                Step::Produce(high) => {
                    let seq = s.next_seq();
                    s.reserve(100).unwrap();
                    s.insert(meta(seq, if high { Priority::High } else { Priority::Normal }));
                    produced.insert(seq);
                }
                Step::Transmit => {
                    while let Some(m) = s.poll_transmit(now) { inflight.push(m.seq); }
                }
                Step::Ack(i) if !inflight.is_empty() => {
                    let seq = inflight.remove(i % inflight.len());
                    acked.insert(seq);
                    if !stored.contains(&seq) { stored.push(seq); }
                    s.on_puback(seq, now);
                }
                Step::Receipt(i) if !stored.is_empty() => {
                    let seq = stored[i % stored.len()];
                    receipted.insert(seq);
                    s.on_receipt(&[Uuid::from_u128(seq as u128)]);
                }
                Step::Reconnect(kept) => {
                    s.on_disconnected();
                    s.on_connected();
                    if !kept {
                        for seq in inflight.drain(..) { s.requeue(seq); }
                    }
                }
                Step::Advance(secs) => {
                    now += Duration::from_secs(secs);
                    s.handle_timeout(now);
                }
                _ => {}
            }
            for seq in s.drain_deletions() {
                prop_assert!(acked.contains(&seq) || receipted.contains(&seq),
                    "seq {} deleted before PUBACK or receipt", seq);
            }
        }
        // Heal the link: ack everything, receipt everything.
        for _ in 0..100 {
            while let Some(m) = s.poll_transmit(now) { inflight.push(m.seq); }
            for seq in inflight.drain(..) {
                s.on_puback(seq, now);
                s.on_receipt(&[Uuid::from_u128(seq as u128)]);
                stored.push(seq);
            }
            now += Duration::from_secs(1_000);
            s.handle_timeout(now);
            s.drain_deletions();
            if s.stats().depth == 0 { break; }
        }
        prop_assert_eq!(s.stats().depth, 0);
        let got: HashSet<u64> = stored.into_iter().collect();
        prop_assert!(produced.is_subset(&got), "lost: {:?}", produced.difference(&got).collect::<Vec<_>>());
    }
}

#[test]
fn disk_full_is_one_episode_counted_per_entry() {
    let mut s = Spool::new(cfg(), []);
    assert!(
        s.on_write_failed(3, true),
        "the first failure starts the episode"
    );
    assert!(!s.on_write_failed(2, true), "later ones do not");
    assert!(
        !s.on_write_failed(1, false),
        "other write errors are not disk-full"
    );
    let st = s.stats();
    assert!(st.disk_full);
    assert_eq!(st.disk_full_refused, 5);
    assert!(s.on_write_ok(), "a good write ends the episode");
    assert!(!s.on_write_ok());
    assert!(!s.stats().disk_full);
}
