//! Ground-station ingest ceiling: validate (classify) and store batches of
//! alerts with small snapshots into SQLite on disk, as ingest does for each
//! batch it receives. Figures in BENCHMARKS.md; the end-to-end rate through
//! a real broker is measured by `scripts/bench-channel`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tiancha_ground_station::ingest::classify;
use tiancha_ground_station::store::Store;
use tiancha_protocol::{self as proto, DroneId};
use uuid::Uuid;

fn payload(drone: &DroneId, snapshot: usize) -> Vec<u8> {
    let now = proto::unix_ms(std::time::SystemTime::now());
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    jpeg.resize(snapshot, 0x5A);
    let a = proto::Alert {
        schema: proto::SCHEMA_VERSION,
        alert_id: Uuid::now_v7(),
        drone_id: drone.clone(),
        category: proto::Category::Gathering,
        confidence: 0.9,
        t_first_unix_ms: now - 1000,
        t_unix_ms: now,
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
        person_count: Some(12),
        extent_m: Some(10.0),
        tracks: vec![],
        rule: proto::RuleInfo {
            name: "gathering".into(),
            detail: "12 people within 15 m for 60 s".into(),
        },
        zone: None,
        mission_id: None,
        snapshot: Some(proto::Snapshot {
            width: 64,
            height: 48,
            jpeg,
        }),
    };
    proto::encode(&a).unwrap()
}

fn ingest(c: &mut Criterion) {
    let drone = DroneId::new("bench").unwrap();
    let topic = "tiancha/v1/drones/bench/alerts";
    let mut g = c.benchmark_group("ground_station_ingest");
    g.measurement_time(Duration::from_secs(10));
    for snapshot in [2_048usize, 16_384] {
        const BATCH: usize = 500;
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(
            BenchmarkId::new("batch500_snapshot_bytes", snapshot),
            &snapshot,
            |b, &snapshot| {
                let dir = tempfile::tempdir().unwrap();
                let mut store = Store::open(&dir.path().join("store.db"), 1000).unwrap();
                b.iter_batched(
                    || {
                        (0..BATCH)
                            .map(|_| payload(&drone, snapshot))
                            .collect::<Vec<_>>()
                    },
                    |payloads| {
                        let records: Vec<_> = payloads.iter().map(|p| classify(topic, p)).collect();
                        store.ingest_batch(&records, 0).unwrap()
                    },
                    criterion::BatchSize::LargeInput,
                );
            },
        );
    }
    g.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
