//! The live-feed benchmark: 50 drones at 2 Hz telemetry plus 100 alerts/s
//! (3 KB snapshots) through the embedded broker into the ground station,
//! with live UI clients connected (headless Chromium pages running the real
//! web UI, `tests/ui/bench-live.mjs`). Measures, per page and alert, the
//! time from the publisher stamping the alert (just before publishing) to
//! the page having rendered it on the feed and the map, and counts alerts
//! that never arrived. Figures: `docs/benchmarks/ground-station.md`.
//!
//! ```text
//! cargo bench -p tiancha-ground-station --bench live            # 60 s, 3 pages
//! BENCH_SECONDS=20 BENCH_PAGES=1 cargo bench -p tiancha-ground-station --bench live
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, MqttOptions, QoS};
use tiancha_ground_station::auth::{hash_password, Role};
use tiancha_ground_station::Config;
use uuid::Uuid;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now_ms() -> i64 {
    tiancha_protocol::unix_ms(std::time::SystemTime::now())
}

fn env_or(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / nextest discovery
    }
    let seconds = env_or("BENCH_SECONDS", 60);
    let pages = env_or("BENCH_PAGES", 3);
    let drones = env_or("BENCH_DRONES", 50);
    let alert_rate = env_or("BENCH_ALERTS_PER_S", 100);
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (free_port(), free_port());
    let text = format!(
        "data_dir = \"{}\"\ninstance = \"bench\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
         [mqtt]\nport = {mqtt}\n[broker]\nembedded = true\nlisten = \"127.0.0.1:{mqtt}\"\n\
         [map]\nlayers = [\"{ex}/layers.geojson\"]\ngrid = \"{ex}/grid.geojson\"\n",
        dir.path().join("data").display(),
        ex = ws.join("examples/ground-station").display()
    );
    let cfg = Config::parse(&text, Path::new("bench.toml")).unwrap();
    let pw = "bench password 1";
    let mut st = tiancha_ground_station::open_store(&cfg).unwrap();
    st.put_user("op1", Role::Operator, &hash_password(pw).unwrap(), now_ms())
        .unwrap();
    drop(st);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.spawn(async move {
        if let Err(e) = tiancha_ground_station::run(cfg).await {
            eprintln!("ground station stopped: {e}");
        }
    });
    // Wait for HTTP.
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", http)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "ground station did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut node = Command::new("node")
        .arg(ws.join("tests/ui/bench-live.mjs"))
        .current_dir(ws.join("tests/ui"))
        .env("GS_URL", format!("http://localhost:{http}"))
        .env("GS_USER", "op1")
        .env("GS_PASSWORD", pw)
        .env("PAGES", pages.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (and tests/ui/node_modules) are needed");
    let mut out = BufReader::new(node.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY", "bench page did not start: {line}");
    eprintln!(
        "load: {drones} drones × 2 Hz telemetry + {alert_rate} alerts/s for {seconds} s, {pages} live UI page(s)"
    );
    // The load, on the same runtime.
    let sent: HashMap<Uuid, i64> = rt.block_on(async move {
        let mut tasks = vec![];
        for d in 0..drones {
            let id = format!("bench-{d:02}");
            let mut o = MqttOptions::new(format!("load-{id}"), "127.0.0.1", mqtt);
            o.set_keep_alive(Duration::from_secs(10)).set_max_packet_size(1 << 20, 1 << 20).set_inflight(200);
            let (c, mut ev) = AsyncClient::new(o, 1000);
            tokio::spawn(async move {
                loop {
                    if ev.poll().await.is_err() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            });
            tasks.push((id, c));
        }
        let end = Instant::now() + Duration::from_secs(seconds);
        // Telemetry: each drone every 500 ms, phases spread.
        for (i, (id, c)) in tasks.iter().enumerate() {
            let (id, c) = (id.clone(), c.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i as u64 * 10)).await;
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                let mut k = 0.0f64;
                while Instant::now() < end {
                    tick.tick().await;
                    let t = serde_json::json!({"schema": 1, "drone_id": id, "t_unix_ms": now_ms(),
                        "position": {"lat_deg": 28.44 + 0.0002 * i as f64, "lon_deg": 117.93 + 0.0001 * k, "alt_m": 130.0},
                        "attitude": {"roll_deg": 0.0, "pitch_deg": 0.0, "yaw_deg": 90.0},
                        "battery": {"remaining_pct": 80.0}, "mode": "AUTO", "armed": true, "in_air": true});
                    let _ = c.publish(format!("tiancha/v1/drones/{id}/telemetry"), QoS::AtMostOnce, false, t.to_string()).await;
                    k += 1.0;
                }
            });
        }
        // Alerts: alert_rate per second, round-robin over the drones.
        let mut jpeg = vec![0xFFu8, 0xD8, 0xFF, 0xE0];
        jpeg.resize(3000, 0x5A);
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &jpeg);
        let mut sent = HashMap::new();
        let period = Duration::from_micros(1_000_000 / alert_rate);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut n = 0usize;
        while Instant::now() < end {
            tick.tick().await;
            let (id, c) = &tasks[n % tasks.len()];
            let alert_id = Uuid::now_v7();
            let t = now_ms();
            let a = serde_json::json!({"schema": 1, "alert_id": alert_id, "drone_id": id, "category": "gathering",
                "confidence": 0.9, "t_first_unix_ms": t - 1000, "t_unix_ms": t, "location_status": "geotagged",
                "location": {"lat_deg": 28.445 + 0.00001 * (n % 500) as f64, "lon_deg": 117.942,
                             "sigma": {"semi_major_m": 4.0, "semi_minor_m": 2.0, "orientation_deg": 0.0}},
                "person_count": 9, "tracks": [], "rule": {"name": "gathering", "detail": "bench"},
                "snapshot": {"width": 64, "height": 48, "jpeg": b64}});
            sent.insert(alert_id, t);
            c.publish(format!("tiancha/v1/drones/{id}/alerts"), QoS::AtLeastOnce, false, a.to_string())
                .await
                .unwrap();
            n += 1;
        }
        tokio::time::sleep(Duration::from_secs(5)).await; // drain
        sent
    });
    node.stdin.as_mut().unwrap().write_all(b"DONE\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let pages_seen: Vec<Vec<(String, i64)>> =
        serde_json::from_str(line.trim()).expect("page results");
    let _ = node.wait();
    println!("alerts published: {}", sent.len());
    let mut all = vec![];
    for (i, seen) in pages_seen.iter().enumerate() {
        let seen: HashMap<Uuid, i64> = seen
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, *v)))
            .collect();
        let mut lat: Vec<i64> = sent
            .iter()
            .filter_map(|(id, t)| seen.get(id).map(|s| s - t))
            .collect();
        lat.sort();
        let missing = sent.len() - lat.len();
        println!(
            "page {i}: received {} / {} (missing {missing}); latency ms p50 {} p95 {} p99 {} max {}",
            lat.len(),
            sent.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.95),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(-1)
        );
        all.extend(lat);
    }
    all.sort();
    println!(
        "all pages: p50 {} ms, p95 {} ms, p99 {} ms, max {} ms over {} deliveries",
        pct(&all, 0.5),
        pct(&all, 0.95),
        pct(&all, 0.99),
        all.last().copied().unwrap_or(-1),
        all.len()
    );
    rt.shutdown_timeout(Duration::from_secs(1));
}
