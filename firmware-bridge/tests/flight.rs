//! Must-hold: a flight in fast time. The bridge arms the simulator, takes
//! off, uploads and flies a 20-waypoint mission, sees every
//! MISSION_ITEM_REACHED in order, returns to launch and lands within 2 m of
//! home. Also: the pose history against the simulator's truth, gimbal
//! commands, and the typed refusals.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use tiancha_firmware_bridge::command::CommandError;
use tiancha_firmware_bridge::state::{GpsFix, LandedState};
use tiancha_firmware_bridge::{BridgeConfig, Event, FlightMode, GimbalPath};
use tiancha_geometry::geodesy::{distance_m, LatLon};
use tiancha_protocol::mission::MissionType;

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flies_a_20_waypoint_mission_and_lands_at_home() {
    let sim = sim(10.0, |c| c.wp_speed_mps = 10.0).await;
    let truth = sim.truth();
    let b = bridge_to(&sim, BridgeConfig::default()).await;
    let mut ev = b.events();
    let s = b
        .wait_for("GPS and EKF", Duration::from_secs(10), |s| {
            s.gps.is_some_and(|g| g.fix >= GpsFix::Fix3d) && s.ekf.is_some_and(|e| e.healthy)
        })
        .await
        .unwrap();
    assert_eq!(
        s.autopilot,
        tiancha_firmware_bridge::state::AutopilotKind::ArduPilot
    );
    assert_eq!(
        s.vehicle,
        tiancha_firmware_bridge::state::VehicleKind::Copter
    );

    b.set_mode(FlightMode::Guided).await.unwrap();
    b.arm().await.unwrap();
    b.wait_for("armed", Duration::from_secs(5), |s| s.armed)
        .await
        .unwrap();
    b.takeoff(30.0).await.unwrap();
    b.wait_for("at 30 m", Duration::from_secs(20), |s| {
        s.position.is_some_and(|p| p.alt_rel_m > 29.0)
    })
    .await
    .unwrap();

    let mission = waypoint_loop(20, 150.0);
    let rep = b.upload(MissionType::Mission, &mission).await.unwrap();
    assert_eq!(rep.items, 21);
    let home = rep.home_on_board.expect("ArduPilot home item");
    assert!((home.lat_deg() - HOME.0).abs() < 1e-6);

    b.start_mission().await.unwrap();
    let mut reached = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while reached.len() < 20 {
        let e = tokio::time::timeout_at(deadline, ev.recv())
            .await
            .expect("all 20 waypoints within 60 s real (600 s simulated)")
            .unwrap();
        if let Event::MissionItemReached { seq } = e {
            reached.push(seq);
        }
    }
    assert_eq!(
        reached,
        (1..=20).collect::<Vec<u16>>(),
        "in order, none missing"
    );

    b.rtl().await.unwrap();
    let s = b
        .wait_for("landed and disarmed", Duration::from_secs(60), |s| {
            !s.armed && s.landed == LandedState::OnGround
        })
        .await
        .unwrap();
    let t = truth.borrow().clone();
    let d = distance_m(
        LatLon::new(t.position.lat_deg, t.position.lon_deg),
        LatLon::new(HOME.0, HOME.1),
    );
    assert!(d < 2.0, "landed {d:.2} m from home");
    assert!(t.landed && !t.armed);
    let p = s.position.unwrap();
    let d_reported = distance_m(
        LatLon::new(p.lat_deg, p.lon_deg),
        LatLon::new(HOME.0, HOME.1),
    );
    assert!(d_reported < 2.0, "bridge says {d_reported:.2} m from home");
    // Nothing went wrong on the link.
    let st = b.stats();
    assert_eq!(st.link.crc_errors + st.link.bad_payloads, 0, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pose_history_matches_the_truth_in_fast_time() {
    let sim = sim(5.0, |_| {}).await;
    let truth = sim.truth();
    let b = bridge_to(&sim, BridgeConfig::default()).await;
    b.wait_for("EKF", Duration::from_secs(10), |s| {
        s.ekf.is_some_and(|e| e.healthy)
    })
    .await
    .unwrap();
    b.set_mode(FlightMode::Guided).await.unwrap();
    b.arm().await.unwrap();
    b.takeoff(20.0).await.unwrap();
    b.gimbal_pitch_yaw(-45.0, 30.0, false).await.unwrap();
    b.wait_for("climbing", Duration::from_secs(10), |s| {
        s.position.is_some_and(|p| p.alt_rel_m > 15.0)
    })
    .await
    .unwrap();
    b.goto(HOME.0 + 0.001, HOME.1 + 0.001, 25.0, 8.0)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let map = b.clock().expect("clock mapped");
    assert!((map.rate - 5.0).abs() < 0.2, "fitted rate {map:?}");
    // Compare the interpolated pose with the truth at the same wall time.
    let mut worst_m: f64 = 0.0;
    let mut worst_deg: f64 = 0.0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (t_wall, tr) = {
            let tr = truth.borrow().clone();
            (unix_ms(), tr)
        };
        // Ask for a moment ~100 ms ago so it is inside the history.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let pose = b.pose_at(t_wall).expect("pose available");
        let d = distance_m(
            LatLon::new(pose.position.lat_deg, pose.position.lon_deg),
            LatLon::new(tr.position.lat_deg, tr.position.lon_deg),
        );
        worst_m = worst_m.max(d);
        let ang = pose
            .camera_orientation
            .angle_to(&tr.camera_orientation)
            .to_degrees();
        worst_deg = worst_deg.max(ang);
    }
    println!("pose vs truth: worst {worst_m:.3} m, {worst_deg:.3}°; clock {map:?}");
    // At 5x, 8 m/s is 40 m per real second: 2.5 m ≈ 60 ms of clock error.
    assert!(worst_m < 2.5, "position error {worst_m:.2} m");
    assert!(worst_deg < 3.0, "camera orientation error {worst_deg:.2}°");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_typed_and_fallbacks_work() {
    // A vehicle at 15 % battery with only a legacy gimbal and legacy streams.
    let sim = sim(5.0, |c| {
        c.battery_pct = 15.0;
        c.gimbal_manager = false;
        c.legacy_streams_only = true;
    })
    .await;
    let b = bridge_to(&sim, BridgeConfig::default()).await;
    // Streams still arrive (REQUEST_DATA_STREAM fallback): attitude at the
    // requested 20 Hz group rate, far above the 4 Hz default.
    b.wait_for("EKF", Duration::from_secs(10), |s| {
        s.ekf.is_some_and(|e| e.healthy)
    })
    .await
    .unwrap();
    let mut ev = b.events();
    b.set_mode(FlightMode::Guided).await.unwrap();
    let e = b.arm().await.unwrap_err();
    assert_eq!(e, CommandError::Failed { command: 400 });
    let text = wait_event(&mut ev, Duration::from_secs(2), |e| match e {
        Event::StatusText { text, .. } if text.contains("Battery") => Some(text.clone()),
        _ => None,
    })
    .await;
    assert!(text.is_some(), "the autopilot said why");
    assert!(!b.snapshot().armed);
    // Takeoff while disarmed: refused, typed.
    assert_eq!(
        b.takeoff(10.0).await.unwrap_err(),
        CommandError::Failed { command: 22 }
    );
    // Bad arguments never reach the wire.
    assert!(matches!(
        b.takeoff(-3.0).await,
        Err(CommandError::Invalid(_))
    ));
    assert!(matches!(
        b.goto(91.0, 0.0, 10.0, 0.0).await,
        Err(CommandError::Invalid(_))
    ));
    assert!(matches!(
        b.set_mode(FlightMode::Offboard).await,
        Err(CommandError::Invalid(_))
    ));
    // Legacy gimbal: manager v2 unsupported, mount control used.
    assert_eq!(
        b.gimbal_pitch_yaw(-60.0, 0.0, false).await.unwrap(),
        GimbalPath::LegacyMount
    );
    b.wait_for("gimbal at -60", Duration::from_secs(5), |s| {
        s.gimbal.is_some_and(|g| (g.pitch_deg + 60.0).abs() < 1.0)
    })
    .await
    .unwrap();
    assert_eq!(
        b.gimbal_roi(HOME.0 + 0.001, HOME.1, 70.0).await.unwrap(),
        GimbalPath::LegacyMount
    );
    // The stream fallback delivered attitude fast.
    let n0 = b.stats().link.frames_rx;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let n1 = b.stats().link.frames_rx;
    assert!(n1 - n0 > 40, "only {} frames/s after the fallback", n1 - n0);
}

/// Wait (real time) until the simulator's truth satisfies `f`.
async fn until_truth(
    rx: &mut tokio::sync::watch::Receiver<tiancha_sim::Truth>,
    what: &str,
    timeout: Duration,
    f: impl Fn(&tiancha_sim::Truth) -> bool,
) -> tiancha_sim::Truth {
    tokio::time::timeout(timeout, async {
        loop {
            {
                let t = rx.borrow_and_update();
                if f(&t) {
                    eprintln!(
                        "{what}: t={:.1} {} ned {:?}",
                        t.sim_time_s, t.mode_name, t.ned_m
                    );
                    return t.clone();
                }
            }
            rx.changed().await.expect("simulator running");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within {timeout:?}; truth {:?}", rx.borrow()))
}

fn ground_speed(t: &tiancha_sim::Truth) -> f64 {
    t.velocity_ned_mps[0].hypot(t.velocity_ned_mps[1])
}

/// The rest of the command set, each seen to act on the simulated vehicle
/// (its truth, not only its COMMAND_ACK): disarm, pause/continue, set
/// current, set speed, orbit, land; mission clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_commands_act_on_the_vehicle() {
    let sim = sim(10.0, |c| c.wp_speed_mps = 10.0).await;
    let mut truth = sim.truth();
    let b = bridge_to(&sim, BridgeConfig::default()).await;
    b.wait_for("GPS and EKF", Duration::from_secs(10), |s| {
        s.gps.is_some_and(|g| g.fix >= GpsFix::Fix3d) && s.ekf.is_some_and(|e| e.healthy)
    })
    .await
    .unwrap();
    b.set_mode(FlightMode::Guided).await.unwrap();
    b.arm().await.unwrap();
    until_truth(&mut truth, "armed", Duration::from_secs(3), |t| t.armed).await;
    b.disarm(false).await.unwrap();
    until_truth(&mut truth, "disarmed", Duration::from_secs(3), |t| !t.armed).await;
    b.arm().await.unwrap();
    b.takeoff(20.0).await.unwrap();
    until_truth(&mut truth, "at 19 m", Duration::from_secs(10), |t| {
        t.ned_m[2] < -19.0
    })
    .await;

    // A wide loop so that legs are long; fly it.
    let mission = waypoint_loop(6, 400.0);
    b.upload(MissionType::Mission, &mission).await.unwrap();
    b.start_mission().await.unwrap();
    until_truth(&mut truth, "AUTO, cruising", Duration::from_secs(10), |t| {
        t.mode_name == "AUTO" && ground_speed(t) > 8.0
    })
    .await;

    // Pause: the vehicle brakes and holds; continue: it flies on.
    b.pause().await.unwrap();
    let held = until_truth(&mut truth, "stopped", Duration::from_secs(5), |t| {
        ground_speed(t) < 0.3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // 5 s simulated
    let still = truth.borrow().clone();
    let drift = (still.ned_m[0] - held.ned_m[0]).hypot(still.ned_m[1] - held.ned_m[1]);
    assert!(
        drift < 1.0,
        "paused vehicle drifted {drift:.2} m: from {held:?} to {still:?}"
    );
    assert_eq!(still.mode_name, "AUTO", "pause keeps the mode");
    b.resume().await.unwrap();
    until_truth(&mut truth, "moving again", Duration::from_secs(5), |t| {
        ground_speed(t) > 5.0
    })
    .await;

    // Set current: the autopilot and the bridge's state both go to item 4.
    b.set_current(4).await.unwrap();
    until_truth(&mut truth, "current 4", Duration::from_secs(3), |t| {
        t.mission_current == 4
    })
    .await;
    b.wait_for("bridge sees item 4", Duration::from_secs(3), |s| {
        s.mission.current_seq == Some(4)
    })
    .await
    .unwrap();

    // Set speed: cruise settles at 4 m/s and never exceeds it much.
    b.set_speed(4.0).await.unwrap();
    until_truth(&mut truth, "4 m/s", Duration::from_secs(5), |t| {
        (ground_speed(t) - 4.0).abs() < 0.3
    })
    .await;
    let mut fastest: f64 = 0.0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        fastest = fastest.max(ground_speed(&truth.borrow()));
    }
    assert!(fastest < 4.3, "flew {fastest:.2} m/s after set_speed(4)");

    // Orbit a point 100 m north of home at 50 m radius: CIRCLE, on the
    // circle, and going round.
    let (clat, clon) = (HOME.0 + 100.0 / 111_320.0, HOME.1);
    b.orbit(clat, clon, f32::NAN, 50.0, 8.0).await.unwrap();
    b.wait_for("CIRCLE", Duration::from_secs(3), |s| {
        s.mode == FlightMode::Circle
    })
    .await
    .unwrap();
    let on_circle = |t: &tiancha_sim::Truth| {
        let d = distance_m(
            LatLon::new(t.position.lat_deg, t.position.lon_deg),
            LatLon::new(clat, clon),
        );
        // A point mass chasing the moving point on the circle runs a few
        // metres inside it.
        (d - 50.0).abs() < 6.0 && ground_speed(t) > 6.0
    };
    let a = until_truth(
        &mut truth,
        "on the circle",
        Duration::from_secs(15),
        on_circle,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await; // 10 s: 80 m of arc
    let c = truth.borrow().clone();
    assert!(on_circle(&c), "left the circle: {c:?}");
    let moved = (c.ned_m[0] - a.ned_m[0]).hypot(c.ned_m[1] - a.ned_m[1]);
    assert!(moved > 30.0, "orbited only {moved:.1} m in 10 s");

    // Land where it is: on the ground, disarmed, about where it was.
    let before = truth.borrow().clone();
    b.land().await.unwrap();
    b.wait_for("landed and disarmed", Duration::from_secs(30), |s| {
        !s.armed && s.landed == LandedState::OnGround
    })
    .await
    .unwrap();
    let t = truth.borrow().clone();
    assert!(t.landed && !t.armed && t.mode_name == "LAND", "{t:?}");
    let d = distance_m(
        LatLon::new(t.position.lat_deg, t.position.lon_deg),
        LatLon::new(before.position.lat_deg, before.position.lon_deg),
    );
    assert!(d < 15.0, "landed {d:.1} m from where LAND was commanded");

    // Clear: nothing left to fly (ArduPilot keeps home at 0).
    b.clear(MissionType::Mission).await.unwrap();
    until_truth(&mut truth, "mission cleared", Duration::from_secs(3), |t| {
        t.mission_len <= 1
    })
    .await;
    assert!(b.download(MissionType::Mission).await.unwrap().len() <= 1);
}
