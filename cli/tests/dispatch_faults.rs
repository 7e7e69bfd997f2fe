//! Dispatch under faults, across real processes: the ground station (with
//! its embedded broker) auto-dispatches 24 fire cases to
//! `tiancha dispute-receiver`, which answers 500 for a while, then hangs
//! past the station's request timeout (after recording the case, the
//! nastiest kind of timeout), then recovers. The ground station is killed
//! with SIGKILL twice mid-delivery (once in each fault phase) and
//! restarted. Afterwards every case was delivered, exactly once by
//! idempotency key, and the station's outbox says so.
//!
//! Time is compressed: 500 for 12 s instead of 5 minutes, with back-off
//! settings shrunk by the same ratio (0.2 s initial, 2 s max). The
//! outbox's behaviour depends only on the sequence of outcomes and on the
//! back-off schedule, not on absolute time; the real 5-minute scenario
//! with the real (default) back-off runs on a virtual clock in
//! `ground-station/src/dispatch/outbox.rs`
//! (`five_minutes_of_500_then_timeouts_then_recovery_delivers_everything_once`).

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::*;

const N: usize = 24;
const SECRET: &str = "fault-test-secret-0123456789";

fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn fire_alert(i: usize) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    serde_json::json!({
        "schema": 1, "alert_id": uuid::Uuid::now_v7(), "drone_id": "sr-03", "category": "fire",
        "confidence": 0.95, "t_first_unix_ms": t - 5000, "t_unix_ms": t,
        "location_status": "geotagged",
        // 0.001° apart (~100 m): with merge_radius_m = 10 every alert is its own case.
        "location": {"lat_deg": 28.44 + 0.001 * i as f64, "lon_deg": 117.94,
                     "sigma": {"semi_major_m": 5.0, "semi_minor_m": 3.0, "orientation_deg": 0.0}},
        "tracks": [], "rule": {"name": "hazard", "detail": "fire in 5 of 5 frames"},
        "snapshot": {"width": 8, "height": 8, "jpeg": "/9j/4AAQSkZJRg=="}
    })
    .to_string()
}

#[test]
fn every_case_delivered_exactly_once_through_500s_timeouts_and_two_kills() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (mqtt, http, rport) = (free_port(), free_port(), free_port());
    let mut receiver = Proc::tiancha(
        "receiver",
        dir,
        &[
            "dispute-receiver",
            "--listen",
            &format!("127.0.0.1:{rport}"),
            "--data-dir",
            dir.join("receiver").to_str().unwrap(),
            "--route",
            &format!("governance={SECRET}"),
            "--fault",
            "500:12s",
            "--fault",
            "hang:8s",
        ],
    );
    wait_port(rport, Duration::from_secs(20));
    let conf = dir.join("gs.toml");
    std::fs::write(
        &conf,
        format!(
            "data_dir = \"{}\"\ninstance = \"faults\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             [mqtt]\nport = {mqtt}\n[broker]\nembedded = true\nlisten = \"127.0.0.1:{mqtt}\"\n\
             [cases]\nmerge_radius_m = 10\n[[cases.auto_dispatch]]\ncategories = [\"fire\"]\n\
             [[dispatch.routes]]\nname = \"governance\"\nurl = \"http://127.0.0.1:{rport}/governance/cases\"\n\
             secret = \"{SECRET}\"\ndefault = true\n\
             [dispatch]\nrequest_timeout_ms = 1000\n[dispatch.retry]\ninitial_backoff_ms = 200\nmax_backoff_ms = 2000\nmax_in_flight = 4\n",
            dir.join("gs-data").display()
        ),
    )
    .unwrap();
    let args = ["ground-station", "--config", conf.to_str().unwrap()];
    let start_gs = || {
        let p = Proc::tiancha("ground-station", dir, &args);
        wait_port(http, Duration::from_secs(20));
        wait_port(mqtt, Duration::from_secs(20));
        p
    };
    let mut gs = start_gs();
    wait_for("ingest connected", Duration::from_secs(10), || {
        std::fs::read_to_string(&gs.log)
            .ok()
            .filter(|l| l.contains("ingest connected"))
    });
    for i in 0..N {
        let f = dir.join("a.json");
        std::fs::write(&f, fire_alert(i)).unwrap();
        let ok = std::process::Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &mqtt.to_string(),
                "-q",
                "1",
                "-t",
                "tiancha/v1/drones/sr-03/alerts",
                "-f",
                f.to_str().unwrap(),
            ])
            .status()
            .expect("mosquitto_pub (mosquitto-clients) is needed");
        assert!(ok.success());
    }
    wait_for(
        "24 cases raised by auto-dispatch",
        Duration::from_secs(30),
        || (count(dir, "SELECT count(*) FROM cases") == N as i64).then_some(()),
    );
    // Phase 1 (500s): the clock starts at the receiver's first request.
    let first = Instant::now();
    wait_for(
        "the first delivery attempt",
        Duration::from_secs(20),
        || get_json(rport, "/requests").filter(|v| !v.as_array().unwrap().is_empty()),
    );
    std::thread::sleep(Duration::from_secs(4));
    let pending_at_kill1 = count(dir, "SELECT count(*) FROM outbox WHERE state = 'pending'");
    gs.kill();
    std::thread::sleep(Duration::from_millis(500));
    gs = start_gs();
    // Phase 2 (hang after recording): kill again while requests hang.
    while first.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let hung_before_kill2 = get_json(rport, "/requests")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"].as_str().unwrap().starts_with("hang_after_"))
        .count();
    let pending_at_kill2 = count(dir, "SELECT count(*) FROM outbox WHERE state = 'pending'");
    gs.kill();
    std::thread::sleep(Duration::from_millis(500));
    gs = start_gs();
    // Phase 3: recovered. Everything arrives.
    wait_for("every case delivered", Duration::from_secs(90), || {
        (count(dir, "SELECT count(*) FROM outbox WHERE state = 'delivered'") == N as i64)
            .then_some(())
    });
    assert_eq!(
        count(dir, "SELECT count(*) FROM outbox WHERE state = 'dead'"),
        0
    );
    assert_eq!(
        count(
            dir,
            "SELECT count(*) FROM cases WHERE status = 'dispatched'"
        ),
        N as i64
    );
    let cases = get_json(rport, "/cases").unwrap();
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), N, "the receiver recorded each case once");
    let requests = get_json(rport, "/requests").unwrap();
    let requests = requests.as_array().unwrap();
    let mut by_outcome: HashMap<String, usize> = HashMap::new();
    for r in requests {
        *by_outcome
            .entry(r["outcome"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    println!("receiver saw {} requests: {by_outcome:?}", requests.len());
    println!("pending at kill 1: {pending_at_kill1}, at kill 2: {pending_at_kill2}; hung before kill 2: {hung_before_kill2}");
    // Each case id was accepted (created) exactly once; repeats were duplicates.
    let mut created: HashMap<String, usize> = HashMap::new();
    for r in requests.iter().filter(|r| {
        let o = r["outcome"].as_str().unwrap();
        o == "created" || o == "hang_after_created"
    }) {
        *created
            .entry(r["idempotency_key"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let hang_created: usize = requests
        .iter()
        .filter(|r| r["outcome"] == "hang_after_created")
        .count();
    assert_eq!(created.len(), N);
    assert!(
        created.values().all(|n| *n == 1),
        "no case was accepted twice: {created:?}"
    );
    for c in cases {
        let key = c["idempotency_key"].as_str().unwrap();
        assert!(created.contains_key(key));
        assert_eq!(
            c["case"]["case_id"].as_str().unwrap(),
            key,
            "Idempotency-Key is the case id"
        );
    }
    assert!(
        by_outcome.get("fault_status").copied().unwrap_or(0) >= N,
        "the 500 phase was exercised"
    );
    assert!(
        hang_created > 0 || by_outcome.contains_key("hang_after_duplicate"),
        "the hang phase was exercised"
    );
    assert!(
        by_outcome.get("duplicate").copied().unwrap_or(0) > 0,
        "some case was resent after a timeout and recognised"
    );
    assert!(
        pending_at_kill1 > 0 && pending_at_kill2 > 0,
        "both kills happened mid-delivery"
    );
    assert!(gs.is_running() && receiver.is_running());
    receiver.kill();
}
