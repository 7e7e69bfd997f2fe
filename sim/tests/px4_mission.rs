//! The bridge against the simulator in PX4 mode, in virtual time: the
//! bridge discovers PX4, uploads a PX4 mission (no home item, frame 2 for
//! commands without a position), the fence and frame-0 rally points, each
//! verified by read-back under PX4's rules; AUTO.MISSION by main/sub mode,
//! arming alone takes off and flies it; every item is reported reached
//! once (PX4 repeats the last).

mod common;

use std::time::Duration;

use common::*;
use tiancha_firmware_bridge::codec::dialect::MavCmd;
use tiancha_firmware_bridge::command::{Command, CommandError};
use tiancha_firmware_bridge::core::{BridgeConfig, MissionJobResult};
use tiancha_firmware_bridge::mission::{readback_rules, MissionError};
use tiancha_firmware_bridge::state::AutopilotKind;
use tiancha_firmware_bridge::{Event, FlightMode};
use tiancha_protocol::mission::{cmd, frame, MissionItem, MissionType};
use tiancha_sim::harness::VirtualLink;
use tiancha_sim::{AutopilotConfig, Flavour, ImpairmentConfig};

fn link() -> VirtualLink {
    let mut l = VirtualLink::new(
        BridgeConfig::default(),
        AutopilotConfig {
            flavour: Flavour::Px4,
            ..Default::default()
        },
        None,
        ImpairmentConfig::default(),
        ImpairmentConfig::default().with_seed(9),
    );
    l.run_until(Duration::from_secs(10), |l| l.core.target())
        .expect("autopilot found");
    l
}

fn command(l: &mut VirtualLink, id: u64, c: MavCmd, p: [f32; 7]) -> Result<(), CommandError> {
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

/// What tiancha's planner sends PX4: takeoff, a speed change and the
/// final RTL in frame 2, waypoints in frame 6; clear of the fence's
/// exclusion zones (east of home at +0.006° lon).
fn px4_mission() -> Vec<MissionItem> {
    let (lat, lon, _) = HOME;
    let d = 1e-3; // ~111 m
    let mut speed = MissionItem::command(cmd::DO_CHANGE_SPEED, [1.0, 8.0, -1.0, 0.0]);
    speed.frame = frame::MISSION;
    let mut rtl = MissionItem::command(cmd::NAV_RETURN_TO_LAUNCH, [0.0; 4]);
    rtl.frame = frame::MISSION;
    let mut wp = MissionItem::nav(cmd::NAV_WAYPOINT, lat + d, lon, 25.0);
    wp.param2 = 2.0;
    wp.param4 = f32::NAN;
    vec![
        MissionItem::nav(cmd::NAV_TAKEOFF, lat, lon, 20.0), // 0
        speed,                                              // 1
        wp,                                                 // 2
        MissionItem::nav(cmd::NAV_WAYPOINT, lat + d, lon - d, 25.0), // 3
        MissionItem::nav(cmd::NAV_WAYPOINT, lat, lon - d, 25.0), // 4
        rtl,                                                // 5
    ]
}

#[test]
fn bridge_uploads_verifies_and_flies_a_px4_mission() {
    let mut l = link();
    assert_eq!(l.core.state().autopilot, AutopilotKind::Px4);
    assert!(readback_rules(AutopilotKind::Px4, MissionType::Mission).is_empty());

    // The lists, each verified against PX4's read-back rules.
    let mission = px4_mission();
    match upload(&mut l, MissionType::Mission, mission.clone()) {
        MissionJobResult::Verified(Ok(_)) => {}
        other => panic!("mission: {other:?}"),
    }
    assert_eq!(
        first_difference(&l.node.autopilot.lists.mission, &mission),
        None,
        "stored as sent, no home item"
    );
    match upload(&mut l, MissionType::Fence, fence()) {
        MissionJobResult::Verified(Ok(_)) => {}
        other => panic!("fence: {other:?}"),
    }
    // Rally points as PX4 can use them: frame 0, altitude AMSL.
    let rally: Vec<MissionItem> = rally(3)
        .into_iter()
        .map(|mut r| {
            r.frame = frame::GLOBAL;
            r.z += HOME.2 as f32;
            r
        })
        .collect();
    match upload(&mut l, MissionType::Rally, rally) {
        MissionJobResult::Verified(Ok(_)) => {}
        other => panic!("rally: {other:?}"),
    }
    assert!(l.node.autopilot.vehicle.fence_enabled, "GF_ACTION 2");

    // PX4 refuses DO_FENCE_ENABLE; the fence needs no enabling.
    assert_eq!(
        command(
            &mut l,
            1,
            MavCmd::MAV_CMD_DO_FENCE_ENABLE,
            [1., 0., 0., 0., 0., 0., 0.]
        ),
        Err(CommandError::Unsupported { command: 207 })
    );

    // AUTO.MISSION (main 4, sub 4), then arm: it takes off and flies.
    l.run_for(Duration::from_secs(4)); // GPS + position
    command(
        &mut l,
        2,
        MavCmd::MAV_CMD_DO_SET_MODE,
        [1., 4., 4., 0., 0., 0., 0.],
    )
    .expect("AUTO.MISSION");
    l.run_until(Duration::from_secs(5), |l| {
        (l.core.state().mode == FlightMode::Auto).then_some(())
    })
    .expect("the bridge sees AUTO.MISSION");
    let _ = std::iter::from_fn(|| l.core.poll_event()).count();
    command(
        &mut l,
        3,
        MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
        [1., 0., 0., 0., 0., 0., 0.],
    )
    .expect("armed");
    let mut reached = vec![];
    let mut texts = vec![];
    l.run_until(Duration::from_secs(600), |l| {
        for e in std::iter::from_fn(|| l.core.poll_event()) {
            match e {
                Event::MissionItemReached { seq } => reached.push(seq),
                Event::StatusText { text, .. } => texts.push(text),
                Event::ArmedChanged { armed: false } => return Some(()),
                _ => {}
            }
        }
        None
    })
    .expect("flies the mission, returns, lands and disarms");
    assert_eq!(reached, vec![0, 1, 2, 3, 4, 5], "every item once, from 0");
    assert!(
        texts.iter().any(|t| t == "Armed by external command"),
        "{texts:?}"
    );
    assert!(
        !texts.iter().any(|t| t.contains("Geofence")),
        "inside the fence: {texts:?}"
    );
    // RTL (the last item) went to the nearest of home and the rally
    // points: from (lat, lon - d) rally point 1 (+0.001, -0.001) is
    // ~111 m away, home ~98 m: home.
    let t = l.node.autopilot.truth();
    assert!(t.landed && !t.armed);
    let d = tiancha_geometry::geodesy::distance_m(
        t.position.horizontal(),
        tiancha_geometry::geodesy::LatLon::new(HOME.0, HOME.1),
    );
    assert!(d < 1.0, "landed {d:.1} m from home");
}

#[test]
fn an_ardupilot_style_mission_is_not_what_px4_keeps() {
    // The bridge under PX4 rules uploads whatever it is given; the sim
    // stores item 0 as a real item (no home), so the read-back matches.
    let mut l = link();
    let m = mission(5);
    match upload(&mut l, MissionType::Mission, m.clone()) {
        MissionJobResult::Verified(Ok(_)) => {}
        MissionJobResult::Verified(Err(MissionError::VerificationFailed { .. })) => {
            panic!("PX4 keeps every item as sent")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(l.node.autopilot.lists.mission.len(), 5);
}

/// PX4 splits its 52-byte arming refusal into two STATUSTEXT chunks; the
/// bridge joins them, so the operator reads the whole reason.
#[test]
fn a_chunked_refusal_reaches_the_operator_whole() {
    let mut l = VirtualLink::new(
        BridgeConfig::default(),
        AutopilotConfig {
            flavour: Flavour::Px4,
            ekf_ready_delay_s: 600.0,
            ..Default::default()
        },
        None,
        ImpairmentConfig::default(),
        ImpairmentConfig::default().with_seed(3),
    );
    l.run_until(Duration::from_secs(10), |l| l.core.target())
        .expect("autopilot found");
    let r = command(
        &mut l,
        7,
        MavCmd::MAV_CMD_COMPONENT_ARM_DISARM,
        [1., 0., 0., 0., 0., 0., 0.],
    );
    assert!(r.is_err(), "arming before readiness is refused");
    let text = l
        .run_until(Duration::from_secs(5), |l| {
            std::iter::from_fn(|| l.core.poll_event()).find_map(|e| match e {
                Event::StatusText { text, .. } if text.starts_with("Arming denied") => Some(text),
                _ => None,
            })
        })
        .expect("the refusal text");
    assert_eq!(text, "Arming denied: Resolve system health failures first");
    assert_eq!(
        l.core.state().readiness.prearm_reason.as_deref(),
        Some("Arming denied: Resolve system health failures first")
    );
}
