//! Spool durable-accept rate: how many alerts per second become durable
//! (SQLite WAL, synchronous=FULL, fsync per commit), by commit batch size,
//! and through the whole channel admission path with concurrent
//! submitters (group commit). Figures in BENCHMARKS.md.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tiancha_companion::channel::{self, ChannelConfig};
use tiancha_companion::spool::store::{NewEntry, SpoolStore};
use tiancha_companion::spool::{Priority, SpoolConfig};
use tiancha_protocol::{self as proto, mqtt::Endpoint, DroneId};
use uuid::Uuid;

const PAYLOAD: usize = 4 * 1024;

fn entry(seq: u64) -> NewEntry {
    NewEntry {
        seq,
        id: Uuid::now_v7(),
        priority: Priority::High,
        topic: "tiancha/v1/drones/bench/alerts".into(),
        payload: vec![0x42; PAYLOAD],
        created_unix_ms: 0,
    }
}

fn store_batches(c: &mut Criterion) {
    let mut g = c.benchmark_group("spool_store_insert");
    g.measurement_time(Duration::from_secs(8));
    for batch in [1usize, 16, 128, 512] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            let dir = tempfile::tempdir().unwrap();
            let mut s = SpoolStore::open(&dir.path().join("spool.db")).unwrap();
            let mut seq = 0;
            b.iter(|| {
                let v: Vec<_> = (0..batch)
                    .map(|_| {
                        seq += 1;
                        entry(seq)
                    })
                    .collect();
                s.insert_batch(&v).unwrap();
            });
        });
    }
    g.finish();
}

fn alert(drone: &DroneId) -> proto::Alert {
    let now = proto::unix_ms(std::time::SystemTime::now());
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    jpeg.resize(PAYLOAD, 0x11);
    proto::Alert {
        schema: proto::SCHEMA_VERSION,
        alert_id: Uuid::now_v7(),
        drone_id: drone.clone(),
        category: proto::Category::Gathering,
        confidence: 0.9,
        t_first_unix_ms: now,
        t_unix_ms: now,
        location_status: proto::LocationStatus::Unknown,
        location: None,
        observer: None,
        person_count: Some(9),
        extent_m: None,
        tracks: vec![],
        rule: proto::RuleInfo {
            name: "bench".into(),
            detail: String::new(),
        },
        zone: None,
        mission_id: None,
        snapshot: Some(proto::Snapshot {
            width: 8,
            height: 8,
            jpeg,
        }),
    }
}

/// The companion's real admission path: 64 concurrent submitters, the
/// driver batching them into one transaction each time (no broker: the
/// entries only have to become durable).
fn channel_accept(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let drone = DroneId::new("bench").unwrap();
    let (handle, _cmds, _task) = rt.block_on(async {
        channel::start(ChannelConfig {
            drone_id: drone.clone(),
            mqtt: Endpoint {
                port: 9, // discard: never connects
                ..Endpoint::default()
            },
            spool_path: dir.path().join("spool.db"),
            spool: SpoolConfig {
                max_entries: 10_000_000,
                max_bytes: u64::MAX,
                ..SpoolConfig::default()
            },
            software_version: "bench".into(),
        })
        .unwrap()
    });
    let mut g = c.benchmark_group("channel_accept");
    g.measurement_time(Duration::from_secs(10));
    const N: usize = 512;
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("512_alerts_64_submitters", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for w in 0..64 {
                    let h = handle.clone();
                    let d = drone.clone();
                    set.spawn(async move {
                        for _ in 0..N / 64 {
                            h.submit_alert(&alert(&d)).await.unwrap();
                        }
                        w
                    });
                }
                while set.join_next().await.is_some() {}
            })
        });
    });
    g.finish();
}

criterion_group!(benches, store_batches, channel_accept);
criterion_main!(benches);
