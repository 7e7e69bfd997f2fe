//! The simulated autopilot flies what it is given, driven by the bridge's
//! core in virtual time (seconds of CPU for many minutes of flight):
//! takeoff, waypoints, loiter-time, change-speed, ROI, land; geofence
//! breach → RTL; refusals (no GPS, no space, bad items) as typed errors.

mod common;

use std::time::Duration;

use common::*;
use tiancha_firmware_bridge::codec::dialect::MavCmd;
use tiancha_firmware_bridge::command::{Command, CommandError};
use tiancha_firmware_bridge::core::{BridgeConfig, MissionJob, MissionJobResult};
use tiancha_firmware_bridge::mission::{MissionError, MissionResult};
use tiancha_firmware_bridge::Event;
use tiancha_protocol::mission::{cmd, frame, MissionItem, MissionType};
use tiancha_sim::harness::VirtualLink;
use tiancha_sim::{AutopilotConfig, ImpairmentConfig};

fn link(cfg: AutopilotConfig) -> VirtualLink {
    let mut l = VirtualLink::new(
        BridgeConfig::default(),
        cfg,
        None,
        ImpairmentConfig::default(),
        ImpairmentConfig::default().with_seed(9),
    );
    l.run_until(Duration::from_secs(10), |l| l.core.target())
        .expect("autopilot found");
    l
}

fn command(l: &mut VirtualLink, c: MavCmd, p: [f32; 7]) -> Result<(), CommandError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let at = l.instant();
    l.core.submit_command(id, Command::long(c, p), at);
    l.run_until(Duration::from_secs(30), |l| {
        l.core.poll_command_result().map(|(rid, r)| {
            assert_eq!(rid, id);
            r.map(|_| ())
        })
    })
    .expect("an answer")
}

fn upload(l: &mut VirtualLink, ty: MissionType, items: Vec<MissionItem>) -> MissionJobResult {
    let at = l.instant();
    l.core
        .start_mission_job(MissionJob::VerifiedUpload { ty, items }, at)
        .unwrap();
    l.run_until(Duration::from_secs(600), |l| l.core.poll_mission_result())
        .expect("finished")
}

fn events(l: &mut VirtualLink) -> Vec<Event> {
    std::iter::from_fn(|| l.core.poll_event()).collect()
}

fn arm_guided(l: &mut VirtualLink) {
    l.run_for(Duration::from_secs(4)); // GPS + EKF
    command(l, MavCmd::MAV_CMD_DO_SET_MODE, [1., 4., 0., 0., 0., 0., 0.]).unwrap();
    command(
        l,
        MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
        [1., 0., 0., 0., 0., 0., 0.],
    )
    .unwrap();
}

#[test]
fn flies_takeoff_loiter_speed_roi_and_land_items() {
    let mut l = link(AutopilotConfig::default());
    let (lat, lon, alt) = HOME;
    let d = 1e-3; // ~111 m
    let mut home = MissionItem::nav(cmd::NAV_WAYPOINT, lat, lon, alt as f32);
    home.frame = frame::GLOBAL;
    let mut loiter = MissionItem::nav(cmd::NAV_LOITER_TIME, lat + d, lon + d, 25.0);
    loiter.param1 = 10.0; // seconds
    let items = vec![
        home,
        MissionItem::nav(cmd::NAV_TAKEOFF, lat, lon, 20.0), // 1
        MissionItem::command(cmd::DO_CHANGE_SPEED, [1.0, 9.0, -1.0, 0.0]), // 2
        MissionItem::nav(cmd::NAV_WAYPOINT, lat + d, lon, 25.0), // 3
        MissionItem::nav(cmd::DO_SET_ROI_LOCATION, lat, lon, 0.0), // 4
        loiter,                                             // 5
        MissionItem::nav(cmd::NAV_WAYPOINT, lat, lon + d, 25.0), // 6
        MissionItem::nav(cmd::NAV_LAND, lat, lon + d, 0.0), // 7
    ];
    assert!(matches!(
        upload(&mut l, MissionType::Mission, items),
        MissionJobResult::Verified(Ok(_))
    ));
    arm_guided(&mut l);
    let _ = events(&mut l);
    command(&mut l, MavCmd::MAV_CMD_MISSION_START, [0.; 7]).unwrap();
    let t0 = l.now;
    let mut reached = vec![];
    let mut saw_speed = 0.0f64;
    let mut gimbal_at_roi = false;
    let mut loiter_start = None;
    let mut loiter_end = None;
    l.run_until(Duration::from_secs(900), |l| {
        for e in std::iter::from_fn(|| l.core.poll_event()) {
            match e {
                Event::MissionItemReached { seq } => {
                    reached.push(seq);
                    if seq == 3 {
                        loiter_start = Some(l.now);
                    }
                    if seq == 5 {
                        loiter_end = Some(l.now);
                    }
                }
                Event::ArmedChanged { armed: false } => return Some(()),
                _ => {}
            }
        }
        let v = &l.node.autopilot.vehicle;
        saw_speed = saw_speed.max(v.vel.xy().norm());
        if v.gimbal.roi.is_some() && v.gimbal.pitch_deg < -5.0 {
            gimbal_at_roi = true;
        }
        None
    })
    .expect("lands and disarms");
    assert_eq!(reached, vec![1, 3, 5, 6, 7], "nav items in order");
    assert!(
        saw_speed > 8.5 && saw_speed < 9.5,
        "DO_CHANGE_SPEED 9 m/s: flew {saw_speed:.2}"
    );
    assert!(gimbal_at_roi, "ROI pointed the gimbal down at home");
    // Loiter: flight 3 → 5 is ~111 m at 9 m/s (~15 s with accel) + 10 s hold.
    let loiter = (loiter_end.unwrap() - loiter_start.unwrap()).as_secs_f64();
    assert!(loiter > 20.0, "loitered {loiter:.1} s");
    let v = &l.node.autopilot.vehicle;
    assert!(v.landed && !v.armed);
    let land = v
        .frame
        .to_ned(tiancha_geometry::geodesy::LatLonAlt::new(lat, lon + d, alt));
    assert!(
        (v.pos.xy() - land.xy()).norm() < 1.0,
        "landed at the LAND item"
    );
    assert!(l.now - t0 < Duration::from_secs(300));
}

#[test]
fn geofence_breach_returns_to_launch() {
    let mut l = link(AutopilotConfig::default());
    assert!(matches!(
        upload(&mut l, MissionType::Fence, fence()),
        MissionJobResult::Verified(Ok(_))
    ));
    arm_guided(&mut l);
    command(
        &mut l,
        MavCmd::MAV_CMD_NAV_TAKEOFF,
        [0., 0., 0., f32::NAN, f32::NAN, f32::NAN, 20.],
    )
    .unwrap();
    l.run_for(Duration::from_secs(15));
    let _ = events(&mut l);
    // Fly east into the first exclusion zone (home + 0.006° lon).
    let at = l.instant();
    l.core.submit_command(
        99,
        Command::Int {
            command: MavCmd::MAV_CMD_DO_REPOSITION,
            frame: tiancha_firmware_bridge::codec::dialect::MavFrame::MAV_FRAME_GLOBAL_RELATIVE_ALT,
            params: [-1.0, 1.0, 0.0, f32::NAN],
            x: (HOME.0 * 1e7) as i32,
            y: ((HOME.1 + 0.0065) * 1e7) as i32,
            z: 20.0,
        },
        at,
    );
    let mut texts = vec![];
    let mode = l
        .run_until(Duration::from_secs(120), |l| {
            for e in std::iter::from_fn(|| l.core.poll_event()) {
                match e {
                    Event::StatusText { text, .. } => texts.push(text),
                    Event::ModeChanged { to, .. }
                        if to == tiancha_firmware_bridge::FlightMode::Rtl =>
                    {
                        return Some(to)
                    }
                    _ => {}
                }
            }
            None
        })
        .expect("switched to RTL");
    assert_eq!(mode, tiancha_firmware_bridge::FlightMode::Rtl);
    assert!(
        texts.iter().any(|t| t.contains("Fence Breach")),
        "{texts:?}"
    );
    l.run_until(Duration::from_secs(300), |l| {
        (!l.node.autopilot.vehicle.armed).then_some(())
    })
    .expect("landed at home");
    assert!(l.node.autopilot.vehicle.pos.xy().norm() < 1.0);
}

#[test]
fn refusals_are_typed() {
    // No GPS: arming fails, the autopilot says why.
    let mut l = link(AutopilotConfig {
        gps: false,
        ..Default::default()
    });
    l.run_for(Duration::from_secs(5));
    let _ = events(&mut l);
    assert_eq!(
        command(
            &mut l,
            MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            [1., 0., 0., 0., 0., 0., 0.]
        ),
        Err(CommandError::Failed { command: 400 })
    );
    let texts: Vec<String> = events(&mut l)
        .into_iter()
        .filter_map(|e| match e {
            Event::StatusText { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    assert!(texts.iter().any(|t| t.contains("GPS")), "{texts:?}");
    // Unknown commands are UNSUPPORTED.
    assert_eq!(
        command(&mut l, MavCmd::MAV_CMD_DO_PARACHUTE, [1.; 7]),
        Err(CommandError::Unsupported { command: 208 })
    );

    // Too many items: NO_SPACE, typed, not retried.
    let mut l = link(AutopilotConfig::default());
    match upload(&mut l, MissionType::Rally, rally(65)) {
        MissionJobResult::Verified(Err(MissionError::Rejected {
            result: MissionResult::NoSpace,
            ty: MissionType::Rally,
            ..
        })) => {}
        other => panic!("{other:?}"),
    }
    // An item off the earth: INVALID_PARAM5_X.
    let mut bad = rally(3);
    bad[1].x = 950_000_000;
    match upload(&mut l, MissionType::Rally, bad) {
        MissionJobResult::Verified(Err(MissionError::Rejected {
            result: MissionResult::InvalidParam5X,
            ..
        })) => {}
        other => panic!("{other:?}"),
    }
    // A PX4-style mission (no home item) is refused before sending to
    // ArduPilot: its first item would be lost to home.
    let mut px4 = mission(5);
    px4.remove(0);
    let at = l.instant();
    assert!(matches!(
        l.core.start_mission_job(
            MissionJob::VerifiedUpload {
                ty: MissionType::Mission,
                items: px4
            },
            at
        ),
        Err(MissionError::MissingHomeItem { command: 22 })
    ));
}
