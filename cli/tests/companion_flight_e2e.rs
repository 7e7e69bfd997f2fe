//! The companion flies a real patrol, across real processes on loopback:
//! `tiancha sim` (fast time) ← MAVLink → `tiancha companion` ← MQTT →
//! `tiancha ground-station` (embedded broker). Commands are published by an
//! independent MQTT client (mosquitto_pub), signed with the ground
//! station's command key as the station signs them; results and events are
//! read from the ground station's store.

mod support;

use std::process::Command as Shell;
use std::time::Duration;

use support::*;
use tiancha_protocol::{self as proto, Command, CommandKind, DroneId, GeoPoint, PatrolSpec};
use uuid::Uuid;

struct Rig {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    mqtt: u16,
    signer: tiancha_protocol::command_auth::CommandSigner,
    gs: Proc,
    _sim: Proc,
    companion: Proc,
}

const DRONE: &str = "sr-01";

fn start(battery_pct: f64) -> Rig {
    start_with(battery_pct, &[], "")
}

/// `sim_args` go to `tiancha sim`, `safety` into the companion's `[safety]`.
fn start_with(battery_pct: f64, sim_args: &[&str], safety: &str) -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mqtt = free_port();
    let http = free_port();
    let mav = free_port();
    let conf = ground_station_config(&dir, mqtt, http, true);
    let (key, public_key) = command_key(&dir);
    let mut gs_toml = std::fs::read_to_string(&conf).unwrap();
    gs_toml += &format!("[commands]\nsigning_key_file = \"{}\"\n", key.display());
    std::fs::write(&conf, gs_toml).unwrap();
    let gs = Proc::tiancha(
        "ground-station",
        &dir,
        &["ground-station", "--config", conf.to_str().unwrap()],
    );
    wait_port(mqtt, Duration::from_secs(20));
    let sim = Proc::tiancha(
        "sim",
        &dir,
        &[
            "sim",
            "--listen",
            &format!("udpin:127.0.0.1:{mav}"),
            "--speed",
            "8",
            "--battery",
            &battery_pct.to_string(),
        ]
        .into_iter()
        .chain(sim_args.iter().copied())
        .collect::<Vec<_>>(),
    );
    let cconf = dir.join("companion.toml");
    std::fs::write(
        &cconf,
        format!(
            "drone_id = \"{DRONE}\"\n\
             [mqtt]\nport = {mqtt}\n\
             [spool]\npath = \"{}\"\nreceipt_timeout_s = 5\n\
             [autopilot]\naddress = \"udpout:127.0.0.1:{mav}\"\n\
             [patrol]\naltitude_rel_m = 40.0\ncruise_speed_mps = 10.0\n\
             [safety]\nwiden_autopilot_fence = true\n{safety}\n\
             [telemetry]\nrate_hz = 2.0\n\
             [commands]\nground_station_public_keys = [\"{public_key}\"]\n",
            dir.join("spool.db").display()
        ),
    )
    .unwrap();
    let companion = Proc::tiancha(
        "companion",
        &dir,
        &["companion", "--config", cconf.to_str().unwrap()],
    );
    // The ground sees the drone with its autopilot link up, and (unless
    // the autopilot is held unready) telemetry with a home position, once
    // everything is connected.
    let unready = sim_args.contains(&"--ekf-delay");
    wait_for(
        "the drone at the ground station",
        Duration::from_secs(60),
        || {
            let linked = count(
            &dir,
            "SELECT count(*) FROM drones WHERE json_extract(status_json, '$.links.autopilot') = 'up'",
        ) > 0;
            let home = count(
                &dir,
                "SELECT count(*) FROM telemetry WHERE json_extract(json, '$.home') IS NOT NULL",
            ) > 0;
            (linked && (home || unready)).then_some(())
        },
    );
    Rig {
        _tmp: tmp,
        dir,
        mqtt,
        signer: command_signer(&key),
        gs,
        _sim: sim,
        companion,
    }
}

fn command(rig: &Rig, kind: CommandKind) -> Uuid {
    let now = proto::unix_ms(std::time::SystemTime::now());
    let mut c = Command {
        schema: proto::SCHEMA_VERSION,
        command_id: Uuid::now_v7(),
        drone_id: DroneId::new(DRONE).unwrap(),
        issued_by: "test-operator".into(),
        t_unix_ms: now,
        expires_unix_ms: now + 120_000,
        kind,
        auth: None,
    };
    rig.signer.sign(&mut c, &rand_nonce());
    let file = rig.dir.join(format!("{}.json", c.command_id));
    std::fs::write(&file, proto::encode(&c).unwrap()).unwrap();
    let st = Shell::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &rig.mqtt.to_string(),
            "-q",
            "1",
            "-t",
            &format!("tiancha/v1/drones/{DRONE}/commands"),
            "-f",
            file.to_str().unwrap(),
        ])
        .status()
        .expect("mosquitto_pub (mosquitto-clients) is needed");
    assert!(st.success());
    c.command_id
}

fn rand_nonce() -> [u8; 16] {
    *Uuid::new_v4().as_bytes()
}

/// The final result of a command: (status, reason).
fn final_result(rig: &Rig, id: Uuid, timeout: Duration) -> (String, String) {
    final_command_result(&rig.dir, id, timeout)
}

fn patrol() -> PatrolSpec {
    // A 200 m × 150 m field just north-east of home (Shangrao).
    field_patrol("clinic helipad", (120.0, 400.0), 20.0, 40.0)
}

#[test]
fn launch_patrol_rtl_land_with_every_command_answered() {
    let rig = start(100.0);
    let launch = command(&rig, CommandKind::LaunchPatrol { patrol: patrol() });
    let (status, reason) = final_result(&rig, launch, Duration::from_secs(120));
    assert_eq!(
        status,
        "succeeded",
        "launch: {reason}\ncompanion:\n{}",
        rig.companion.log_tail(30)
    );
    assert!(reason.starts_with("patrol started"), "{reason}");

    // The patrol flies: waypoints are reached in order.
    let progress = wait_for("mission progress", Duration::from_secs(120), || {
        let p = events(&rig.dir, "mission_progress");
        (p.len() >= 3).then_some(p)
    });
    let reached: Vec<u64> = progress
        .iter()
        .filter_map(|e| e["reached_seq"].as_u64())
        .collect();
    assert!(
        reached.windows(2).all(|w| w[0] < w[1]),
        "in order: {reached:?}"
    );

    // Investigating a point inside the no-fly zone is refused by name, and
    // the patrol goes on unchanged.
    let inv = command(
        &rig,
        CommandKind::Investigate {
            target: offset(120.0, 400.0),
            orbit_radius_m: 20.0,
            duration_s: 30.0,
            alert_id: None,
        },
    );
    let (status, reason) = final_result(&rig, inv, Duration::from_secs(60));
    assert_eq!(status, "refused", "{reason}");
    assert!(reason.contains("clinic helipad"), "{reason}");
    assert!(!events(&rig.dir, "mission_state")
        .iter()
        .any(|e| e["state"] == "investigating"));

    // Pause and resume, then bring it home.
    let pause = command(&rig, CommandKind::Pause);
    assert_eq!(
        final_result(&rig, pause, Duration::from_secs(30)).0,
        "succeeded"
    );
    let resume = command(&rig, CommandKind::Resume);
    assert_eq!(
        final_result(&rig, resume, Duration::from_secs(30)).0,
        "succeeded"
    );
    let rtl = command(&rig, CommandKind::ReturnToLaunch);
    assert_eq!(
        final_result(&rig, rtl, Duration::from_secs(30)).0,
        "succeeded"
    );
    wait_for("landed", Duration::from_secs(180), || {
        events(&rig.dir, "mission_state")
            .iter()
            .any(|e| e["state"] == "landed")
            .then_some(())
    });
    let states: Vec<String> = events(&rig.dir, "mission_state")
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_string())
        .collect();
    for s in ["planned", "uploaded", "started", "returning", "landed"] {
        assert!(
            states.iter().any(|x| x == s),
            "mission state {s} in {states:?}"
        );
    }
    // Every command has exactly one final result.
    let db = open_store(&rig.dir).unwrap();
    for id in [launch, inv, pause, resume, rtl] {
        let finals: i64 = db
            .query_row(
                "SELECT count(*) FROM command_results WHERE command_id = ?1 AND status NOT IN ('accepted','in_progress')",
                [id.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(finals, 1, "command {id}");
    }
    drop(db);
    let mut rig = rig;
    assert!(rig.gs.is_running(), "ground station alive");
    assert!(rig.companion.is_running(), "companion alive");
}

#[test]
fn unsafe_commands_are_refused_with_reasons_and_nothing_moves() {
    let rig = start(15.0);
    let launch = command(&rig, CommandKind::LaunchPatrol { patrol: patrol() });
    let (status, reason) = final_result(&rig, launch, Duration::from_secs(60));
    assert_eq!(status, "refused");
    assert!(reason.contains("battery at 15 %"), "{reason}");
    // Investigating needs a running patrol: refused, with the reason.
    let inv = command(
        &rig,
        CommandKind::Investigate {
            target: GeoPoint::new(28.451, 117.941),
            orbit_radius_m: 20.0,
            duration_s: 30.0,
            alert_id: None,
        },
    );
    let (status, reason) = final_result(&rig, inv, Duration::from_secs(60));
    assert_eq!(status, "refused", "{reason}");
    assert!(reason.contains("no patrol"), "{reason}");
    std::thread::sleep(Duration::from_secs(2));
    let db = open_store(&rig.dir).unwrap();
    let armed: i64 = db
        .query_row(
            "SELECT count(*) FROM telemetry WHERE json LIKE '%\"armed\":true%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(armed, 0, "the drone never armed");
}

/// An autopilot that never becomes ready: the launch waits
/// `readiness_timeout_s`, then refuses with the autopilot's own words, and
/// nothing moves.
#[test]
fn a_launch_on_an_autopilot_that_is_not_ready_waits_then_refuses_with_its_reason() {
    let rig = start_with(
        100.0,
        &["--ekf-delay", "100000"],
        "readiness_timeout_s = 10",
    );
    let launch = command(&rig, CommandKind::LaunchPatrol { patrol: patrol() });
    let (status, reason) = final_result(&rig, launch, Duration::from_secs(60));
    assert_eq!(status, "refused", "{reason}");
    assert!(
        reason.contains("did not become ready within 10 s"),
        "{reason}"
    );
    assert!(
        reason.contains("Need Position Estimate"),
        "the autopilot's words: {reason}"
    );
    let db = open_store(&rig.dir).unwrap();
    let steps: Vec<String> = db
        .prepare(
            "SELECT json FROM command_results WHERE command_id = ?1 AND status = 'in_progress'",
        )
        .unwrap()
        .query_map([launch.to_string()], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|j| {
            serde_json::from_str::<serde_json::Value>(&j.unwrap()).unwrap()["reason"].to_string()
        })
        .collect();
    assert!(
        steps
            .iter()
            .any(|s| s.contains("waiting for the autopilot")),
        "the operator saw it wait: {steps:?}"
    );
    let armed: i64 = db
        .query_row(
            "SELECT count(*) FROM telemetry WHERE json LIKE '%\"armed\":true%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(armed, 0, "the drone never armed");
    // The status shows why it is not ready.
    let status: String = db
        .query_row("SELECT status_json FROM drones", [], |r| r.get(0))
        .unwrap();
    assert!(status.contains("\"ready\":false"), "{status}");
}
