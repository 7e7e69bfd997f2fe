//! Must-hold: the bridge uploads to an independent, strict pymavlink
//! autopilot — ArduPilot flavour (MISSION_REQUEST, home at item 0) and PX4
//! flavour (MISSION_REQUEST_INT, no home item, in-order downloads) — with
//! the referee dropping every 7th message; and MAVLink 2 signing checked
//! against pymavlink's implementation both ways.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tiancha_firmware_bridge::codec::dialect::MavCmd;
use tiancha_firmware_bridge::command::Command as Cmd;
use tiancha_firmware_bridge::core::SigningConfig;
use tiancha_firmware_bridge::signing::SigningKey;
use tiancha_firmware_bridge::state::AutopilotKind;
use tiancha_firmware_bridge::{Bridge, BridgeConfig, Event, GimbalPath};
use tiancha_protocol::mission::{cmd, MissionItem, MissionSet, MissionType};

struct Referee {
    child: Child,
    report: std::path::PathBuf,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Referee {
    fn start(flavour: &str, extra: &[&str]) -> Referee {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("report.json");
        let port = free_udp_port();
        let child = Command::new(python())
            .arg(referee("strict_autopilot.py"))
            .args(["--listen", &format!("udpin:127.0.0.1:{port}")])
            .args(["--flavour", flavour])
            .args(["--report", report.to_str().unwrap()])
            .args(["--drop-every", "7"])
            .args(["--rerequest", if flavour == "px4" { "0.5" } else { "1.0" }])
            .args(["--duration", "150"])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("referee starts");
        Referee {
            child,
            report,
            _dir: dir,
            port,
        }
    }

    fn address(&self) -> String {
        format!("udpout:127.0.0.1:{}", self.port)
    }

    fn stop(mut self) -> Value {
        // SIGTERM: the referee writes its final report and exits.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.report).expect("referee report");
        serde_json::from_str(&text).unwrap()
    }
}

fn item_json_eq(v: &Value, it: &MissionItem) -> Result<(), String> {
    let f = |x: &Value| x.as_f64().map(|f| f as f32).unwrap_or(f32::NAN);
    let p = v["params"].as_array().unwrap();
    let ok = v["command"].as_u64() == Some(it.command as u64)
        && v["frame"].as_u64() == Some(it.frame as u64)
        && v["x"].as_i64() == Some(it.x as i64)
        && v["y"].as_i64() == Some(it.y as i64)
        && (v["autocontinue"].as_u64() == Some(it.autocontinue as u64))
        && [it.param1, it.param2, it.param3, it.param4]
            .iter()
            .zip(p)
            .all(|(a, b)| a.to_bits() == f(b).to_bits() || (a.is_nan() && f(b).is_nan()))
        && f(&v["z"]).to_bits() == it.z.to_bits();
    if ok {
        Ok(())
    } else {
        Err(format!("referee has {v} for {it:?}"))
    }
}

fn plan(ardupilot: bool) -> MissionSet {
    let mut mission = waypoint_loop(30, 200.0);
    // A takeoff, a speed change and an ROI among the waypoints.
    mission.insert(1, MissionItem::nav(cmd::NAV_TAKEOFF, HOME.0, HOME.1, 30.0));
    mission.insert(
        5,
        MissionItem::command(cmd::DO_CHANGE_SPEED, [1.0, 7.5, -1.0, 0.0]),
    );
    mission.insert(
        9,
        MissionItem::nav(cmd::DO_SET_ROI_LOCATION, HOME.0, HOME.1, 0.0),
    );
    if !ardupilot {
        mission.remove(0); // PX4 plans have no home item
    }
    let mut fence = Vec::new();
    for k in 0..6 {
        let a = k as f64 / 6.0 * std::f64::consts::TAU;
        let mut v = MissionItem::nav(
            cmd::NAV_FENCE_POLYGON_VERTEX_INCLUSION,
            HOME.0 + 0.01 * a.sin(),
            HOME.1 + 0.01 * a.cos(),
            0.0,
        );
        v.param1 = 6.0;
        fence.push(v);
    }
    let rally = (0..4)
        .map(|k| MissionItem::nav(cmd::NAV_RALLY_POINT, HOME.0 + 1e-3 * k as f64, HOME.1, 20.0))
        .collect();
    MissionSet {
        mission,
        fence,
        rally,
    }
}

fn check_lists(report: &Value, set: &MissionSet, ardupilot: bool) {
    let lists = &report["lists"];
    for (name, items) in [
        ("mission", &set.mission),
        ("fence", &set.fence),
        ("rally", &set.rally),
    ] {
        let got = lists[name].as_array().unwrap();
        assert_eq!(got.len(), items.len(), "{name} length on the referee");
        let skip = usize::from(ardupilot && name == "mission");
        for (g, it) in got.iter().zip(items).skip(skip) {
            item_json_eq(g, it).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

async fn run_flavour(flavour: &str) {
    let ardupilot = flavour == "ardupilot";
    let r = Referee::start(flavour, &[]);
    let b = Bridge::connect(&r.address(), BridgeConfig::default())
        .await
        .unwrap();
    let s = b.wait_for_autopilot(Duration::from_secs(15)).await.unwrap();
    assert_eq!(
        s.autopilot,
        if ardupilot {
            AutopilotKind::ArduPilot
        } else {
            AutopilotKind::Px4
        }
    );
    let set = plan(ardupilot);
    let reports = b.upload_set(&set).await.expect("upload + read-back");
    assert_eq!(reports.len(), 3);
    // Downloads too (the read-backs already did, once more for good measure).
    let back = b.download_set().await.unwrap();
    assert_eq!(back.fence.len(), set.fence.len());

    // IN_PROGRESS: three progress reports, then success.
    let mut ev = b.events();
    let ok = b
        .command(Cmd::long(
            MavCmd::MAV_CMD_DO_SET_SERVO,
            [9.0, 1500.0, 0., 0., 0., 0., 0.],
        ))
        .await
        .unwrap();
    let _ = ok;
    let mut progress = vec![];
    while let Some(p) = wait_event(&mut ev, Duration::from_millis(200), |e| match e {
        Event::CommandProgress {
            command: 183,
            progress,
        } => Some(*progress),
        _ => None,
    })
    .await
    {
        progress.push(p);
    }
    assert!(!progress.is_empty(), "IN_PROGRESS reported");
    // A legacy gimbal: v2 unsupported → mount control.
    assert_eq!(
        b.gimbal_pitch_yaw(-30.0, 0.0, false).await.unwrap(),
        GimbalPath::LegacyMount
    );

    let report = r.stop();
    let violations = report["violations"].as_array().unwrap();
    assert!(
        violations.is_empty(),
        "{flavour} referee saw violations: {violations:?}"
    );
    check_lists(&report, &set, ardupilot);
    let st = &report["stats"];
    // Identity and liveness as pymavlink sees it: companion heartbeats
    // (type and component checked by the referee's violations) at 1 Hz.
    let hbs = st["heartbeats"].as_u64().unwrap();
    let span = st["heartbeat_last"].as_f64().unwrap() - st["heartbeat_first"].as_f64().unwrap();
    assert!(span > 3.0, "heartbeats over only {span:.1} s: {st}");
    let rate = (hbs - 1) as f64 / span;
    assert!(
        (0.8..=1.25).contains(&rate),
        "{hbs} heartbeats over {span:.1} s = {rate:.2} Hz, not 1 Hz"
    );
    assert!(
        st["dropped_in"].as_u64().unwrap() > 5,
        "the referee dropped messages: {st}"
    );
    let req = &st["requests_sent"];
    if ardupilot {
        assert!(req["MISSION_REQUEST"].as_u64().unwrap() > 30, "{req}");
        assert!(req.get("MISSION_REQUEST_INT").is_none(), "{req}");
    } else {
        assert!(req["MISSION_REQUEST_INT"].as_u64().unwrap() > 30, "{req}");
        assert!(req.get("MISSION_REQUEST").is_none(), "{req}");
    }
    assert!(
        st["commands"]["205"].as_u64().unwrap() >= 1,
        "DO_MOUNT_CONTROL sent"
    );
    // Six downloads (three read-backs, one download_set); the referee drops
    // some closing MISSION_ACKs on purpose, the rest must arrive.
    assert!(
        st["downloads"].as_u64().unwrap() >= 3,
        "downloads closed with MISSION_ACK: {st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_to_a_strict_ardupilot_referee() {
    run_flavour("ardupilot").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_to_a_strict_px4_referee_without_home_item() {
    run_flavour("px4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_interoperates_with_pymavlink() {
    let key = SigningKey::from_passphrase("tiancha referee");
    let r = Referee::start("ardupilot", &["--signing-key", &key.to_hex()]);
    let cfg = BridgeConfig {
        signing: Some(SigningConfig {
            key: key.clone(),
            link_id: 3,
            require: true,
        }),
        ..Default::default()
    };
    let b = Bridge::connect(&r.address(), cfg).await.unwrap();
    b.wait_for_autopilot(Duration::from_secs(15)).await.unwrap();
    let set = plan(true);
    b.upload(MissionType::Mission, &set.mission).await.unwrap();
    let st = b.stats();
    assert!(st.link.frames_rx > 20);
    assert_eq!(
        st.link.bad_signatures, 0,
        "pymavlink's signatures verify here"
    );
    assert_eq!(st.link.unsigned_rejected, 0);
    let report = r.stop();
    let s = &report["stats"];
    assert!(
        s["goodsig"].as_u64().unwrap() > 20,
        "ours verify in pymavlink: {s}"
    );
    assert_eq!(s["badsig"].as_u64().unwrap(), 0, "{s}");
    assert_eq!(s["unsigned_rx"].as_u64().unwrap(), 0, "{s}");
    assert!(report["violations"].as_array().unwrap().is_empty());

    // A bridge with the wrong key hears nothing it accepts.
    let r = Referee::start("ardupilot", &["--signing-key", &key.to_hex()]);
    let wrong = BridgeConfig {
        signing: Some(SigningConfig {
            key: SigningKey::from_passphrase("not the key"),
            link_id: 3,
            require: true,
        }),
        ..Default::default()
    };
    let b = Bridge::connect(&r.address(), wrong).await.unwrap();
    assert!(b.wait_for_autopilot(Duration::from_secs(3)).await.is_err());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(b.stats().link.bad_signatures > 0);
    let report = r.stop();
    assert_eq!(report["stats"]["goodsig"].as_u64().unwrap(), 0);
}

/// Typed failures from an independent autopilot: a MAV_MISSION_NO_SPACE
/// refusal, and a vehicle that acknowledges a mission but stores one item
/// differently — caught only by the read-back, named by item and field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_silent_corruption_are_typed_errors() {
    use tiancha_firmware_bridge::mission::{MissionError, MissionResult};
    let r = Referee::start("ardupilot", &["--max-items", "20", "--corrupt-seq", "3"]);
    let b = Bridge::connect(&r.address(), BridgeConfig::default())
        .await
        .unwrap();
    b.wait_for_autopilot(Duration::from_secs(15)).await.unwrap();

    let long = waypoint_loop(30, 200.0);
    match b.upload(MissionType::Mission, &long).await {
        Err(MissionError::Rejected {
            result: MissionResult::NoSpace,
            ty: MissionType::Mission,
            ..
        }) => {}
        other => panic!("expected NO_SPACE, got {other:?}"),
    }

    let short = waypoint_loop(8, 200.0);
    match b.upload(MissionType::Mission, &short).await {
        Err(MissionError::VerificationFailed {
            ty: MissionType::Mission,
            sent,
            on_board,
            diffs,
        }) => {
            assert_eq!((sent, on_board), (9, 9));
            assert_eq!(diffs.len(), 1, "{diffs:?}");
            assert_eq!((diffs[0].seq, diffs[0].field), (3, "z"), "{diffs:?}");
        }
        other => panic!("expected a verification failure, got {other:?}"),
    }
    // Unverified, the same upload "succeeds": the read-back is what caught it.
    b.upload_unverified(MissionType::Mission, &short)
        .await
        .expect("ACCEPTED without read-back");

    let report = r.stop();
    let v = report["violations"].as_array().unwrap();
    assert!(v.is_empty(), "{v:?}");
    let on_board = report["lists"]["mission"].as_array().unwrap();
    assert_eq!(
        on_board[3]["z"].as_f64().unwrap() as f32,
        short[3].z + 1.0,
        "the referee really stored it 1 m off"
    );
}
