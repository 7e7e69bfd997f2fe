//! The simulated autopilot flies what it is given, driven by the bridge's
//! core in virtual time (seconds of CPU for many minutes of flight):
//! takeoff, waypoints, loiter-time, change-speed, ROI, land; the geofence
//! enforced only once enabled, as ArduCopter (breach → RTL); RTL to the
//! nearest rally point; readiness after the EKF delay; refusals (no GPS,
//! no space, bad items) as typed errors.

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

fn texts_of(evs: &[Event]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| match e {
            Event::StatusText { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// Send PARAM_SET over the link (no retries: the link is clean).
fn param_set(l: &mut VirtualLink, name: &str, value: f32) {
    use tiancha_firmware_bridge::codec::{dialect, Msg};
    let at = l.instant();
    l.core.send_message(
        &Msg::PARAM_SET(dialect::PARAM_SET_DATA {
            param_value: value,
            target_system: 1,
            target_component: 1,
            param_id: name.into(),
            param_type: dialect::MavParamType::MAV_PARAM_TYPE_REAL32,
        }),
        at,
    );
    l.run_for(Duration::from_millis(500));
}

/// GUIDED, armed, 20 m over home.
fn take_off(l: &mut VirtualLink) {
    arm_guided(l);
    command(
        l,
        MavCmd::MAV_CMD_NAV_TAKEOFF,
        [0., 0., 0., f32::NAN, f32::NAN, f32::NAN, 20.],
    )
    .unwrap();
    l.run_for(Duration::from_secs(15));
    let _ = events(l);
}

/// DO_REPOSITION to home + (dlat, dlon) degrees at 20 m.
fn reposition(l: &mut VirtualLink, id: u64, dlat: f64, dlon: f64) {
    let at = l.instant();
    l.core.submit_command(
        id,
        Command::Int {
            command: MavCmd::MAV_CMD_DO_REPOSITION,
            frame: tiancha_firmware_bridge::codec::dialect::MavFrame::MAV_FRAME_GLOBAL_RELATIVE_ALT,
            params: [-1.0, 1.0, 0.0, f32::NAN],
            x: ((HOME.0 + dlat) * 1e7) as i32,
            y: ((HOME.1 + dlon) * 1e7) as i32,
            z: 20.0,
        },
        at,
    );
    l.run_until(Duration::from_secs(30), |l| {
        l.core.poll_command_result().map(|(rid, r)| {
            assert_eq!(rid, id);
            r.expect("DO_REPOSITION accepted");
        })
    })
    .expect("an answer");
}

#[test]
fn geofence_is_enforced_only_once_enabled_then_breach_returns_to_launch() {
    let mut l = link(AutopilotConfig::default());
    assert!(matches!(
        upload(&mut l, MissionType::Fence, fence()),
        MissionJobResult::Verified(Ok(_))
    ));
    assert_eq!(
        l.node.autopilot.param("FENCE_TOTAL"),
        Some(fence().len() as f32)
    );
    // Only the uploaded polygons (FENCE_TYPE 4): copter.parm's 150 m
    // circle would trip long before the exclusion zones.
    param_set(&mut l, "FENCE_TYPE", 4.0);
    assert_eq!(l.node.autopilot.param("FENCE_TYPE"), Some(4.0));
    take_off(&mut l);
    // FENCE_ENABLE = 0 (ArduCopter's default): fly east into the first
    // exclusion zone (home + 0.006° lon) and stay there.
    assert!(!l.node.autopilot.truth().fence_enabled);
    reposition(&mut l, 98, 0.0, 0.0062);
    l.run_for(Duration::from_secs(150));
    let evs = events(&mut l);
    let v = &l.node.autopilot.vehicle;
    assert_eq!(
        v.mode,
        tiancha_sim::vehicle::Mode::Guided,
        "{:?}",
        texts_of(&evs)
    );
    assert!(
        v.fence_breach().is_some(),
        "inside the exclusion zone: {}",
        v.pos
    );
    assert!(!texts_of(&evs).iter().any(|t| t.contains("Fence")));
    // DO_FENCE_ENABLE 1: enforced at once (FENCE_ENABLE itself stays 0).
    command(
        &mut l,
        MavCmd::MAV_CMD_DO_FENCE_ENABLE,
        [1., 0., 0., 0., 0., 0., 0.],
    )
    .unwrap();
    assert_eq!(l.node.autopilot.param("FENCE_ENABLE"), Some(0.0));
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
fn fence_enable_parameter_enforces_copter_parms_150_m_circle() {
    let mut l = link(AutopilotConfig::default());
    take_off(&mut l);
    param_set(&mut l, "FENCE_ENABLE", 1.0);
    assert!(l.node.autopilot.truth().fence_enabled);
    // 0.003° north is ~330 m: the circle (FENCE_RADIUS 150) trips first.
    reposition(&mut l, 97, 0.003, 0.0);
    let mut d = 0.0;
    let text = l
        .run_until(Duration::from_secs(120), |l| {
            if d == 0.0 && l.node.autopilot.vehicle.mode == tiancha_sim::vehicle::Mode::Rtl {
                d = l.node.autopilot.vehicle.pos.xy().norm();
            }
            std::iter::from_fn(|| l.core.poll_event()).find_map(|e| match e {
                Event::StatusText { text, .. } if text.starts_with("Fence Breach") => Some(text),
                _ => None,
            })
        })
        .expect("a breach reported");
    assert!(text.starts_with("Fence Breach: Circle"), "{text}");
    assert!((150.0..160.0).contains(&d), "RTL from {d:.1} m");
}

#[test]
fn rtl_lands_at_the_nearest_rally_point() {
    let mut l = link(AutopilotConfig::default());
    // Rally points 0.001° apart going north-west from home (common::rally).
    let r = rally(4);
    assert!(matches!(
        upload(&mut l, MissionType::Rally, r.clone()),
        MissionJobResult::Verified(Ok(_))
    ));
    assert_eq!(l.node.autopilot.param("RALLY_TOTAL"), Some(4.0));
    take_off(&mut l);
    // Fly near rally point 3 (~440 m from home), then RTL.
    reposition(&mut l, 96, 0.0032, -0.0030);
    l.run_for(Duration::from_secs(120));
    command(&mut l, MavCmd::MAV_CMD_NAV_RETURN_TO_LAUNCH, [0.; 7]).unwrap();
    l.run_until(Duration::from_secs(300), |l| {
        (!l.node.autopilot.vehicle.armed).then_some(())
    })
    .expect("landed");
    let t = l.node.autopilot.truth();
    let want = tiancha_geometry::geodesy::LatLon::new(r[3].lat_deg(), r[3].lon_deg());
    let d = tiancha_geometry::geodesy::distance_m(t.position.horizontal(), want);
    assert!(d < 1.0, "landed {d:.1} m from rally point 3");
    assert!(t.landed);
}

#[test]
fn arming_waits_for_the_ekf_like_ardupilot() {
    let mut l = link(AutopilotConfig {
        ekf_ready_delay_s: 40.0,
        ..Default::default()
    });
    l.run_for(Duration::from_secs(5));
    command(
        &mut l,
        MavCmd::MAV_CMD_DO_SET_MODE,
        [1., 4., 0., 0., 0., 0., 0.],
    )
    .expect_err("GUIDED needs a position");
    let _ = events(&mut l);
    assert_eq!(
        command(
            &mut l,
            MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
            [1., 0., 0., 0., 0., 0., 0.]
        ),
        Err(CommandError::Failed { command: 400 })
    );
    let t = texts_of(&events(&mut l));
    assert!(
        t.contains(&"Arm: Need Position Estimate".to_string()),
        "{t:?}"
    );
    // The autopilot repeats it every 30 s while disarmed.
    l.run_until(Duration::from_secs(40), |l| {
        std::iter::from_fn(|| l.core.poll_event()).find_map(|e| match e {
            Event::StatusText { text, .. } if text == "PreArm: Need Position Estimate" => Some(()),
            _ => None,
        })
    })
    .expect("PreArm repeated");
    assert!(l.node.autopilot.now() < 40.0);
    // Ready at 40 s: arms.
    l.run_until(Duration::from_secs(20), |l| {
        l.node.autopilot.vehicle.ekf_ok.then_some(())
    })
    .expect("EKF ready");
    assert!(l.node.autopilot.now() >= 40.0);
    arm_guided(&mut l);
    assert!(l.node.autopilot.vehicle.armed);
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
