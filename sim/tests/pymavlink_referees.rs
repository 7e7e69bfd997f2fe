//! Independent referees for the simulator: pymavlink as a ground station
//! (its own waypoint/fence/rally loaders) uploading to and reading back
//! from the simulator, and pymavlink's signing against the simulator's.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tiancha_protocol::mission::{cmd, frame, MissionItem};
use tiancha_sim::{Sim, SimConfig};

async fn sim(tweak: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut cfg = SimConfig {
        listen: "udpin:127.0.0.1:0".into(),
        speed: 2.0,
        gps_fix_delay_s: 0.5,
        ..SimConfig::default()
    };
    tweak(&mut cfg);
    Sim::start(cfg).await.unwrap()
}

fn run_python(args: &[&str]) -> Value {
    let out = Command::new(python())
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output from {args:?}; stderr: {stderr}"));
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}; stderr: {stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymavlink_ground_station_uploads_and_reads_back() {
    let sim = sim(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut m = mission(80);
    // What Mission Planner puts in item 0: a placeholder the vehicle
    // replaces with its real home.
    m[0] = MissionItem::nav(cmd::NAV_WAYPOINT, 0.0, 0.0, 0.0);
    m[0].frame = frame::GLOBAL;
    let f = fence();
    let r = rally(6);
    let (mp, fp, rp) = (
        dir.path().join("m.txt"),
        dir.path().join("f.txt"),
        dir.path().join("r.txt"),
    );
    write_wpl(&mp, &m);
    write_wpl(&fp, &f);
    write_wpl(&rp, &r);
    let connect = sim.client_address();
    let home = format!("{},{}", HOME.0, HOME.1);
    let script = referee("gcs_loader.py");
    let report = tokio::task::spawn_blocking(move || {
        run_python(&[
            script.to_str().unwrap(),
            "--connect",
            &connect,
            "--mission",
            mp.to_str().unwrap(),
            "--fence",
            fp.to_str().unwrap(),
            "--rally",
            rp.to_str().unwrap(),
            "--home",
            &home,
        ])
    })
    .await
    .unwrap();
    let v = report["violations"].as_array().unwrap();
    assert!(v.is_empty(), "pymavlink referee: {v:?}");
    // ArduPilot's request message, as the design notes demand.
    let req = &report["upload"]["mission"]["requests"];
    assert!(req["MISSION_REQUEST"].as_u64().unwrap() >= 80, "{req}");
    // What came back is what went up (pymavlink's loader sends float
    // MISSION_ITEMs: half an f32 ulp at 117° is 3.8e-6°, about 0.4 m).
    for (name, sent) in [("mission", &m), ("fence", &f), ("rally", &r)] {
        let back = report["download"][name].as_array().unwrap();
        assert_eq!(back.len(), sent.len(), "{name}");
        let skip = usize::from(name == "mission");
        for (b, s) in back.iter().zip(sent.iter()).skip(skip) {
            assert_eq!(
                b["command"].as_u64().unwrap(),
                s.command as u64,
                "{name} {b}"
            );
            if s.has_position() {
                let lat = b["x"].as_i64().unwrap() as f64 / 1e7;
                let lon = b["y"].as_i64().unwrap() as f64 / 1e7;
                assert!((lat - s.lat_deg()).abs() < 4e-6, "{name} {b} vs {s:?}");
                assert!((lon - s.lon_deg()).abs() < 4e-6, "{name} {b} vs {s:?}");
                // ArduPilot hands frames back without the _INT suffix.
                let f = b["frame"].as_u64().unwrap() as u8;
                assert_eq!(
                    tiancha_firmware_bridge::mission::normalize_frame(f),
                    tiancha_firmware_bridge::mission::normalize_frame(s.frame)
                );
            }
            let p1 = b["params"][0].as_f64().unwrap_or(f64::NAN) as f32;
            assert!(
                p1 == s.param1 || (p1.is_nan() && s.param1.is_nan()),
                "{name} {b}"
            );
        }
    }
    let t = sim.truth().borrow().clone();
    assert_eq!(t.mission_len, 80);
    assert_eq!(t.fence_zones, 6, "inclusion + 5 exclusions active");
    assert_eq!(t.rally_points, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_required_ignores_unsigned_and_wrongly_signed_commands() {
    let key = "7a1c".repeat(16);
    let k2 = key.clone();
    let sim = sim(move |c| c.signing_key = Some(k2)).await;
    let truth = sim.truth();
    // Let the GPS and EKF come up so that a signed arm would succeed.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = truth.borrow().clone();
    let connect = sim.client_address();
    let script = referee("signed_commands.py");
    let phase = |p: &'static str| {
        let (c, s, k) = (connect.clone(), script.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            run_python(&[
                s.to_str().unwrap(),
                "--connect",
                &c,
                "--phase",
                p,
                "--key",
                &k,
            ])
        })
    };
    let unsigned = phase("unsigned").await.unwrap();
    assert_eq!(unsigned["acks"], serde_json::json!({}), "{unsigned}");
    let wrong = phase("wrongkey").await.unwrap();
    assert_eq!(wrong["acks"], serde_json::json!({}), "{wrong}");
    let after = truth.borrow().clone();
    assert!(!after.armed, "nothing moved: not armed");
    assert_eq!(after.mode, before.mode, "nothing moved: same mode");
    assert_eq!(after.ned_m, before.ned_m, "nothing moved: same place");
    let st = sim.stats();
    assert!(st.link.unsigned_rejected >= 3, "{:?}", st.link);
    assert!(st.link.bad_signatures >= 3, "{:?}", st.link);
    assert_eq!(st.autopilot.commands, 0, "no command reached the autopilot");

    let signed = phase("signed").await.unwrap();
    assert!(
        signed["goodsig"].as_u64().unwrap() > 0,
        "pymavlink verified the simulator's signatures: {signed}"
    );
    assert_eq!(signed["badsig"].as_u64().unwrap(), 0, "{signed}");
    for c in ["176", "400", "22"] {
        assert_eq!(
            signed["acks"][c],
            serde_json::json!([0]),
            "command {c} accepted: {signed}"
        );
    }
    let mut rx = sim.truth();
    let t = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            {
                let t = rx.borrow_and_update();
                if t.armed && t.ned_m[2] < -2.0 {
                    return t.clone();
                }
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("armed and climbing after the signed commands");
    assert_eq!(t.mode_name, "GUIDED");
}

/// A validly signed COMMAND_LONG captured on the wire and sent again
/// verbatim does nothing: its signature timestamp is not newer than the
/// last one seen on its stream (link id, system, component), so the
/// simulator (the bridge's `signing::Verifier`) drops it as stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_required_ignores_a_replayed_signed_command() {
    let key = "3b9e".repeat(16);
    let k2 = key.clone();
    let sim = sim(move |c| c.signing_key = Some(k2)).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let connect = sim.client_address();
    let script = referee("signed_commands.py");
    let run = move |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            run_python(&a)
        })
    };
    let base = |phase: &str| {
        vec![
            script.to_str().unwrap().to_string(),
            "--connect".into(),
            connect.clone(),
            "--phase".into(),
            phase.into(),
        ]
    };
    let mut capture_args = base("capture");
    capture_args.extend(["--key".into(), key.clone()]);
    let capture = run(capture_args).await.unwrap();
    // The genuine ARM was signed, accepted and executed, then disarmed.
    assert_eq!(capture["signed"], serde_json::json!(true), "{capture}");
    assert_eq!(
        capture["acks"]["400"],
        serde_json::json!([0, 0]),
        "arm and disarm accepted: {capture}"
    );
    assert_eq!(capture["acks"]["176"], serde_json::json!([0]), "{capture}");
    let t = sim.truth().borrow().clone();
    assert!(!t.armed, "disarmed after the capture");
    assert_eq!(t.mode_name, "GUIDED", "an ARM now would succeed");
    // The stats follow the simulator with a lag: wait until they show the
    // capture's three commands (mode, arm, disarm).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sim.stats().autopilot.commands < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            sim.stats().autopilot
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let commands_before = sim.stats().autopilot.commands;
    let stale_before = sim.stats().link.stale_signatures;

    let frame = capture["captured"].as_str().unwrap().to_string();
    let mut replay_args = base("replay");
    replay_args.extend(["--key".into(), key.clone(), "--frame".into(), frame]);
    let replay = run(replay_args).await.unwrap();
    assert_eq!(
        replay["acks"],
        serde_json::json!({}),
        "no answer to a replay: {replay}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let st = sim.stats();
    assert!(
        st.link.stale_signatures >= stale_before + 3,
        "each replay counted as stale: {:?}",
        st.link
    );
    assert_eq!(
        st.autopilot.commands, commands_before,
        "no replayed command reached the autopilot"
    );
    let t = sim.truth().borrow().clone();
    assert!(!t.armed, "the replayed ARM did nothing");
}
