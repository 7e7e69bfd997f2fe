//! The store on PostgreSQL, as two ground-station instances see it: two
//! `Store`s (two connections) on one throwaway cluster (initdb on a temp
//! dir, a free port; run as the `postgres` user when the test runs as
//! root). Checks what several instances rely on: the schema migrates once,
//! a message stored by both is stored once, the outbox lease lets exactly
//! one instance send a case (and another take over when it runs out), the
//! desk lock makes instances take turns, and every alert shows up to a
//! reader by sequence in order.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tiancha_ground_station::store::{Record, Store, LOCK_DESK};
use tiancha_protocol as proto;
use uuid::Uuid;

#[path = "common/pg.rs"]
mod pg;
use pg::Postgres;

fn alert(i: u64) -> proto::Alert {
    proto::Alert {
        schema: proto::SCHEMA_VERSION,
        alert_id: Uuid::now_v7(),
        drone_id: proto::DroneId::new(format!("d-{}", i % 3)).unwrap(),
        category: proto::Category::Fire,
        confidence: 0.9,
        t_first_unix_ms: 1_000 + i as i64,
        t_unix_ms: 2_000 + i as i64,
        location_status: proto::LocationStatus::Geotagged,
        location: Some(proto::Geotag {
            lat_deg: 28.45,
            lon_deg: 117.94,
            alt_m: None,
            sigma: proto::Ellipse {
                semi_major_m: 3.0,
                semi_minor_m: 2.0,
                orientation_deg: 0.0,
            },
        }),
        observer: None,
        person_count: Some(4),
        extent_m: None,
        tracks: vec![],
        rule: proto::RuleInfo {
            name: "test".into(),
            detail: String::new(),
        },
        zone: None,
        mission_id: None,
        snapshot: Some(proto::Snapshot {
            width: 4,
            height: 4,
            jpeg: vec![0xFF, 0xD8, 0xFF, i as u8],
        }),
    }
}

#[test]
fn two_stores_on_one_postgres_share_without_duplicates_or_double_sends() {
    let pg = Postgres::start();
    let url = pg.url();
    // Both "instances" open (and migrate) at the same time.
    let (u1, u2) = (url.clone(), url.clone());
    let t1 = std::thread::spawn(move || Store::open_postgres(&u1, 1000).unwrap());
    let t2 = std::thread::spawn(move || Store::open_postgres(&u2, 1000).unwrap());
    let mut a = t1.join().unwrap();
    let mut b = t2.join().unwrap();
    assert!(a.is_shared());

    // The same alerts reach both instances (a republish after a lost
    // receipt): each stored once, both report it stored (both receipt it).
    let alerts: Vec<proto::Alert> = (0..50).map(alert).collect();
    let recs: Vec<Record> = alerts
        .iter()
        .cloned()
        .map(|x| Record::Alert(Box::new(x)))
        .collect();
    let oa = a.ingest_batch(&recs[..30], 10).unwrap();
    let ob = b.ingest_batch(&recs[20..], 11).unwrap();
    assert_eq!(oa.new_alerts.len(), 30);
    assert_eq!(ob.new_alerts.len(), 20);
    assert_eq!(ob.duplicates, 10);
    assert_eq!(ob.stored.len(), 30, "duplicates are receipted too");
    assert_eq!(a.alert_count().unwrap(), 50);
    assert_eq!(b.alert_count().unwrap(), 50);
    // Read back byte for byte, snapshot included, from the other instance.
    let got = b.alert(alerts[3].alert_id).unwrap().unwrap();
    assert_eq!(got, alerts[3]);
    // A reader by sequence sees every alert once, in insertion order.
    let seen = a.alerts_after(0, 1000).unwrap();
    assert_eq!(seen.len(), 50);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(a.last_alert_seq().unwrap(), seen.last().unwrap().0);
    assert_eq!(b.alerts_after(seen[39].0, 1000).unwrap().len(), 10);

    // Concurrent batches from both instances: nothing lost, nothing twice.
    let more: Vec<Record> = (50..250)
        .map(|i| Record::Alert(Box::new(alert(i))))
        .collect();
    let (m1, m2) = (more.clone(), more.clone());
    let (u1, u2) = (url.clone(), url.clone());
    let h1 = std::thread::spawn(move || {
        let mut s = Store::open_postgres(&u1, 1000).unwrap();
        m1.chunks(10)
            .map(|c| s.ingest_batch(c, 20).unwrap().new_alerts.len())
            .sum::<usize>()
    });
    let h2 = std::thread::spawn(move || {
        let mut s = Store::open_postgres(&u2, 1000).unwrap();
        m2.chunks(7)
            .rev()
            .map(|c| s.ingest_batch(c, 21).unwrap().new_alerts.len())
            .sum::<usize>()
    });
    let (n1, n2) = (h1.join().unwrap(), h2.join().unwrap());
    assert_eq!(
        n1 + n2,
        200,
        "each new alert counted new by exactly one instance"
    );
    assert_eq!(a.alert_count().unwrap(), 250);

    // The outbox: one instance claims, the other cannot until the lease
    // runs out; after delivery nobody can.
    let case = Uuid::now_v7();
    a.with_tx(|tx| {
        tiancha_ground_station::store::outbox::enqueue(
            tx,
            case,
            "governance",
            "application/json",
            b"{}",
            100,
        )
    })
    .unwrap();
    assert_eq!(b.outbox_pending().unwrap().len(), 1);
    let c = a.outbox_claim(case, "gs-a", 1_000, 5_000).unwrap().unwrap();
    assert_eq!(
        (c.content_type.as_str(), c.body.as_slice(), c.revision),
        ("application/json", &b"{}"[..], 0)
    );
    assert_eq!(
        b.outbox_claim(case, "gs-b", 2_000, 5_000).unwrap(),
        None,
        "leased by gs-a"
    );
    assert!(
        a.outbox_claim(case, "gs-a", 2_000, 5_000)
            .unwrap()
            .is_some(),
        "gs-a renews its own"
    );
    // gs-a dies; its lease (until 7000) runs out and gs-b takes over.
    assert_eq!(b.outbox_claim(case, "gs-b", 6_999, 5_000).unwrap(), None);
    assert!(b
        .outbox_claim(case, "gs-b", 7_001, 5_000)
        .unwrap()
        .is_some());
    assert_eq!(
        a.outbox_claim(case, "gs-a", 7_002, 5_000).unwrap(),
        None,
        "now gs-b's"
    );
    assert!(b
        .with_tx(|tx| tiancha_ground_station::store::outbox::mark_delivered(tx, case, 0, 2, 8_000))
        .unwrap());
    assert_eq!(a.outbox_claim(case, "gs-a", 100_000, 5_000).unwrap(), None);
    assert!(a.outbox_pending().unwrap().is_empty());
    // New evidence: revision 1 is pending again; a late answer about
    // revision 0 does not mark it delivered.
    let rev = a
        .with_tx(|tx| {
            tiancha_ground_station::store::outbox::revise(
                tx,
                case,
                "application/json",
                b"{\"rev\":1}",
                9_000,
            )
        })
        .unwrap();
    assert_eq!(rev, Some(1));
    assert!(!b
        .with_tx(|tx| tiancha_ground_station::store::outbox::mark_delivered(tx, case, 0, 3, 9_001))
        .unwrap());
    let c = b.outbox_claim(case, "gs-b", 9_002, 5_000).unwrap().unwrap();
    assert_eq!((c.revision, c.body.as_slice()), (1, &b"{\"rev\":1}"[..]));
    assert!(b
        .with_tx(|tx| tiancha_ground_station::store::outbox::mark_delivered(tx, case, 1, 1, 9_003))
        .unwrap());
    assert!(a.outbox_pending().unwrap().is_empty());

    // Many racers for one entry: exactly one wins.
    let case2 = Uuid::now_v7();
    a.with_tx(|tx| {
        tiancha_ground_station::store::outbox::enqueue(
            tx,
            case2,
            "governance",
            "application/json",
            b"{}",
            100,
        )
    })
    .unwrap();
    let go = Arc::new(Barrier::new(4));
    let winners: usize = (0..4)
        .map(|i| {
            let (u, go) = (url.clone(), go.clone());
            std::thread::spawn(move || {
                let mut s = Store::open_postgres(&u, 1000).unwrap();
                go.wait();
                s.outbox_claim(case2, &format!("gs-{i}"), 1_000, 5_000)
                    .unwrap()
                    .is_some() as usize
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .sum();
    assert_eq!(winners, 1);

    // The desk lock: while one instance holds it, the other waits.
    let u = url.clone();
    let held = Arc::new(Barrier::new(2));
    let h2 = held.clone();
    let holder = std::thread::spawn(move || {
        let mut s = Store::open_postgres(&u, 1000).unwrap();
        s.serialized(LOCK_DESK, |_| {
            h2.wait();
            std::thread::sleep(Duration::from_millis(600));
            Ok::<_, tiancha_ground_station::store::StoreError>(Instant::now())
        })
        .unwrap()
    });
    held.wait();
    let got_it = b
        .serialized(LOCK_DESK, |_| {
            Ok::<_, tiancha_ground_station::store::StoreError>(Instant::now())
        })
        .unwrap();
    let released = holder.join().unwrap();
    assert!(
        got_it >= released,
        "the second instance waited for the first"
    );

    // Users and sessions are shared: a user made on one instance logs in on the other.
    a.put_user(
        "op",
        tiancha_ground_station::auth::Role::Operator,
        "$argon2id$x",
        1,
    )
    .unwrap();
    assert!(b.user_credentials("op").unwrap().is_some());
}

/// The live feed of one instance announces alerts another instance stored
/// (its own ingest never saw them): `http::live::forward` follows the
/// shared store by sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_announces_alerts_stored_by_another_instance() {
    let pg = Postgres::start();
    let url = pg.url();
    let data = tempfile::tempdir().unwrap();
    let cfg = tiancha_ground_station::Config {
        data_dir: data.path().to_path_buf(),
        ..Default::default()
    };
    let st = Store::open_postgres(&url, 1000).unwrap();
    let state = tiancha_ground_station::build_state(cfg, st, None).unwrap();
    let mut live = state.live.subscribe();
    let (_notices, rx) = tokio::sync::broadcast::channel(16);
    tokio::spawn(tiancha_ground_station::http::live::forward(
        rx,
        state.clone(),
    ));
    // Let the follower read where the store is now.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let alerts: Vec<proto::Alert> = (0..3).map(alert).collect();
    let recs: Vec<Record> = alerts
        .iter()
        .cloned()
        .map(|x| Record::Alert(Box::new(x)))
        .collect();
    let u = url.clone();
    tokio::task::spawn_blocking(move || {
        let mut other = Store::open_postgres(&u, 1000).unwrap();
        other.ingest_batch(&recs, 5).unwrap();
    })
    .await
    .unwrap();

    let mut seen = vec![];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seen.len() < alerts.len() {
        let m = tokio::time::timeout_at(deadline, live.recv())
            .await
            .expect("the live feed announced the other instance's alerts in time")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&m).unwrap();
        if v["type"] == "alert" {
            seen.push(v["data"]["alert_id"].as_str().unwrap().to_string());
            assert_eq!(
                v["data"]["snapshot_url"],
                format!(
                    "/api/alerts/{}/snapshot.jpg",
                    v["data"]["alert_id"].as_str().unwrap()
                )
            );
        }
    }
    let want: Vec<String> = alerts.iter().map(|a| a.alert_id.to_string()).collect();
    assert_eq!(seen, want, "each once, in the order they were stored");
}
