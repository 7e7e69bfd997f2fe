//! The drone→ground channel end to end, across real processes on loopback:
//! a companion channel (`tiancha loadgen`) publishes 1,000 alerts while the
//! broker is restarted once and the ground station is killed with SIGKILL
//! once; afterwards the store holds exactly the accepted alerts, each once,
//! with byte-identical snapshots. Run against the embedded broker (rumqttd)
//! and a real mosquitto.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

const N: u64 = 1_000;

fn sent(dir: &std::path::Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(dir.join("sent.jsonl")).unwrap_or_default();
    // Only complete lines: loadgen may be writing the last one right now.
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["alert_id"].as_str().unwrap().to_string(),
                v["snapshot_sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn run(kind: BrokerKind) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mqtt = free_port();
    let http = free_port();
    let mut broker = Broker::start(kind, dir, mqtt);
    let gs_conf = ground_station_config(dir, mqtt, http, false);
    let gs_args = ["ground-station", "--config", gs_conf.to_str().unwrap()];
    let mut gs = Proc::tiancha("ground-station", dir, &gs_args);
    wait_port(http, Duration::from_secs(20));

    let spool = dir.join("spool.db");
    let out = dir.join("sent.jsonl");
    let mut companion = Proc::tiancha(
        "loadgen",
        dir,
        &[
            "loadgen",
            "--drone-id",
            "sr-07",
            "--mqtt-port",
            &mqtt.to_string(),
            "--spool",
            spool.to_str().unwrap(),
            "--alerts",
            &N.to_string(),
            "--rate",
            "150",
            "--snapshot-bytes",
            "3000",
            "--telemetry-hz",
            "5",
            "--out",
            out.to_str().unwrap(),
            "--receipt-timeout-s",
            "3",
            "--timeout-s",
            "240",
        ],
    );

    // Fault 1: restart the broker once a fifth of the alerts are out.
    wait_for("200 alerts accepted", Duration::from_secs(60), || {
        (sent(dir).len() >= 200).then_some(())
    });
    broker.restart();

    // Fault 2: SIGKILL the ground station mid-ingest, then restart it.
    wait_for("500 alerts accepted", Duration::from_secs(60), || {
        (sent(dir).len() >= 500).then_some(())
    });
    let stored_before_kill = count(dir, "SELECT count(*) FROM alerts");
    gs.kill();
    std::thread::sleep(Duration::from_secs(1));
    gs = Proc::tiancha("ground-station", dir, &gs_args);

    let status = companion.wait(Duration::from_secs(300));
    assert!(
        status.success(),
        "loadgen failed; its log:\n{}\nground station log:\n{}",
        companion.log_tail(30),
        gs.log_tail(30)
    );
    assert!(gs.is_running(), "ground station died:\n{}", gs.log_tail(30));
    // The companion saw the broker go away and come back.
    let log = std::fs::read_to_string(&companion.log).unwrap();
    let connects: u64 = log
        .split(" connects")
        .next()
        .and_then(|s| s.rsplit([' ', '(']).next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("loadgen summary missing:\n{log}"));
    assert!(
        connects >= 2,
        "companion reconnected after the broker restart:\n{log}"
    );

    let expected = sent(dir);
    assert_eq!(expected.len() as u64, N, "every alert was accepted");
    let db = open_store(dir).unwrap();
    let mut st = db
        .prepare("SELECT a.alert_id, s.sha256, length(s.jpeg) FROM alerts a JOIN snapshots s USING (alert_id)")
        .unwrap();
    let stored: HashMap<String, (String, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let total: i64 = db
        .query_row("SELECT count(*) FROM alerts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(total as u64, N, "exactly N alerts stored");
    assert_eq!(stored.len() as u64, N, "each with its snapshot");
    for (id, sha) in &expected {
        let (got, len) = stored
            .get(id)
            .unwrap_or_else(|| panic!("alert {id} was accepted on the drone but never stored"));
        assert_eq!(got, sha, "snapshot of {id} differs");
        assert_eq!(*len, 3000);
    }
    // The faults really happened mid-stream.
    assert!(
        stored_before_kill > 0 && (stored_before_kill as u64) < N,
        "ground station was killed mid-ingest (had {stored_before_kill})"
    );
    let quarantined: i64 = db
        .query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))
        .unwrap();
    assert_eq!(quarantined, 0);
    let telemetry: i64 = db
        .query_row("SELECT count(*) FROM telemetry", [], |r| r.get(0))
        .unwrap();
    assert!(telemetry > 0, "telemetry flowed too (down-sampled)");
}

#[test]
fn thousand_alerts_survive_broker_restart_and_ground_station_kill_embedded_broker() {
    run(BrokerKind::Embedded);
}

#[test]
fn thousand_alerts_survive_broker_restart_and_ground_station_kill_mosquitto() {
    run(BrokerKind::Mosquitto);
}
