//! MAVLink mission items for a sortie, the fence and the rally points, for
//! ArduPilot (home at seq 0) or PX4 (no home item).

use tiancha_geometry::geodesy::LatLon;
use tiancha_protocol::mission::{cmd, frame, MissionItem, MissionSet};

use crate::request::Autopilot;

/// `MAV_CMD_DO_SET_CAM_TRIGG_DIST`.
pub const DO_SET_CAM_TRIGG_DIST: u16 = 206;
/// `MAV_MOUNT_MODE_MAVLINK_TARGETING`.
const MOUNT_MODE_MAVLINK_TARGETING: f32 = 2.0;

/// What a mission waypoint is for (kept beside the items so the companion
/// and the picture know which items are lanes, transits or points).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    Transit(LatLon),
    LaneStart(LatLon),
    LaneEnd(LatLon),
    /// Visit a point of interest: fly there, dwell `dwell_s` (hover, or
    /// orbit at `orbit_radius_m` > 0) with the camera on it.
    Poi {
        at: LatLon,
        dwell_s: f64,
        orbit_radius_m: f64,
    },
}

/// How to write a mission.
#[derive(Debug, Clone, Copy)]
pub struct MissionStyle {
    pub autopilot: Autopilot,
    pub home: LatLon,
    pub home_alt_amsl_m: f64,
    pub alt_rel_m: f64,
    pub speed_mps: f64,
    pub gimbal_pitch_deg: f64,
    /// Photo trigger distance on lanes (None: no triggering).
    pub trigger_distance_m: Option<f64>,
}

/// The ArduPilot home item (seq 0).
pub fn home_item(home: LatLon, alt_amsl_m: f64) -> MissionItem {
    let mut it = MissionItem::nav(
        cmd::NAV_WAYPOINT,
        home.lat_deg,
        home.lon_deg,
        alt_amsl_m as f32,
    );
    it.frame = frame::GLOBAL;
    it
}

/// Set the gimbal pitch (ArduPilot: DO_MOUNT_CONTROL; PX4: gimbal manager).
pub fn gimbal_item(autopilot: Autopilot, pitch_deg: f64) -> MissionItem {
    match autopilot {
        Autopilot::Ardupilot => {
            let mut it =
                MissionItem::command(cmd::DO_MOUNT_CONTROL, [pitch_deg as f32, 0.0, 0.0, 0.0]);
            it.z = MOUNT_MODE_MAVLINK_TARGETING;
            it
        }
        Autopilot::Px4 => MissionItem::command(
            cmd::DO_GIMBAL_MANAGER_PITCHYAW,
            [pitch_deg as f32, 0.0, f32::NAN, f32::NAN],
        ),
    }
}

pub fn speed_item(speed_mps: f64) -> MissionItem {
    // param1 1 = ground speed; param3 -1 = no throttle change.
    MissionItem::command(cmd::DO_CHANGE_SPEED, [1.0, speed_mps as f32, -1.0, 0.0])
}

/// Items that point the camera at `target` and dwell: hover above it
/// (LOITER_TIME) or orbit it (LOITER_TURNS on ArduPilot; a ring of
/// waypoints on PX4, whose missions have no orbit item for multicopters).
pub fn dwell_items(
    autopilot: Autopilot,
    target: LatLon,
    alt_rel_m: f64,
    radius_m: f64,
    dwell_s: f64,
    speed_mps: f64,
) -> Vec<MissionItem> {
    let alt = alt_rel_m as f32;
    let mut roi = MissionItem::nav(
        cmd::DO_SET_ROI_LOCATION,
        target.lat_deg,
        target.lon_deg,
        0.0,
    );
    roi.frame = frame::GLOBAL_RELATIVE_ALT_INT;
    let mut out = vec![roi];
    if radius_m <= 0.0 {
        let mut it = MissionItem::nav(cmd::NAV_LOITER_TIME, target.lat_deg, target.lon_deg, alt);
        it.param1 = dwell_s as f32;
        out.push(it);
    } else {
        let circumference = 2.0 * std::f64::consts::PI * radius_m;
        let orbit_speed = speed_mps.clamp(1.0, 5.0);
        let turns = (dwell_s * orbit_speed / circumference).ceil().max(1.0);
        match autopilot {
            Autopilot::Ardupilot => {
                let mut it =
                    MissionItem::nav(cmd::NAV_LOITER_TURNS, target.lat_deg, target.lon_deg, alt);
                it.param1 = turns as f32;
                it.param3 = radius_m as f32;
                out.push(it);
            }
            Autopilot::Px4 => {
                let frame = tiancha_geometry::geodesy::LocalFrame::at(target);
                let per_turn = 12usize;
                for i in 0..=(turns as usize * per_turn) {
                    let a = 2.0 * std::f64::consts::PI * i as f64 / per_turn as f64;
                    let q = frame.from_en(radius_m * a.sin(), radius_m * a.cos());
                    out.push(MissionItem::nav(
                        cmd::NAV_WAYPOINT,
                        q.lat_deg,
                        q.lon_deg,
                        alt,
                    ));
                }
            }
        }
    }
    out.push(MissionItem::command(cmd::DO_SET_ROI_NONE, [0.0; 4]));
    out
}

/// The mission of one sortie.
pub fn sortie_mission(style: &MissionStyle, steps: &[Step]) -> Vec<MissionItem> {
    let alt = style.alt_rel_m as f32;
    let mut m = Vec::new();
    if style.autopilot == Autopilot::Ardupilot {
        m.push(home_item(style.home, style.home_alt_amsl_m));
    }
    m.push(MissionItem::nav(
        cmd::NAV_TAKEOFF,
        style.home.lat_deg,
        style.home.lon_deg,
        alt,
    ));
    m.push(speed_item(style.speed_mps));
    m.push(gimbal_item(style.autopilot, style.gimbal_pitch_deg));
    for s in steps {
        match *s {
            Step::Transit(q) => m.push(MissionItem::nav(
                cmd::NAV_WAYPOINT,
                q.lat_deg,
                q.lon_deg,
                alt,
            )),
            Step::LaneStart(q) => {
                m.push(MissionItem::nav(
                    cmd::NAV_WAYPOINT,
                    q.lat_deg,
                    q.lon_deg,
                    alt,
                ));
                if let Some(d) = style.trigger_distance_m {
                    m.push(MissionItem::command(
                        DO_SET_CAM_TRIGG_DIST,
                        [d as f32, 0.0, 1.0, 0.0],
                    ));
                }
            }
            Step::LaneEnd(q) => {
                m.push(MissionItem::nav(
                    cmd::NAV_WAYPOINT,
                    q.lat_deg,
                    q.lon_deg,
                    alt,
                ));
                if style.trigger_distance_m.is_some() {
                    m.push(MissionItem::command(
                        DO_SET_CAM_TRIGG_DIST,
                        [0.0, 0.0, 0.0, 0.0],
                    ));
                }
            }
            Step::Poi {
                at,
                dwell_s,
                orbit_radius_m,
            } => {
                let approach = if orbit_radius_m > 0.0 {
                    let f = tiancha_geometry::geodesy::LocalFrame::at(at);
                    f.from_en(0.0, orbit_radius_m)
                } else {
                    at
                };
                m.push(MissionItem::nav(
                    cmd::NAV_WAYPOINT,
                    approach.lat_deg,
                    approach.lon_deg,
                    alt,
                ));
                if dwell_s > 0.0 {
                    m.extend(dwell_items(
                        style.autopilot,
                        at,
                        style.alt_rel_m,
                        orbit_radius_m,
                        dwell_s,
                        style.speed_mps,
                    ));
                    m.push(gimbal_item(style.autopilot, style.gimbal_pitch_deg));
                }
            }
        }
    }
    m.push(MissionItem::command(cmd::NAV_RETURN_TO_LAUNCH, [0.0; 4]));
    m
}

/// Fence items: one inclusion polygon, exclusion polygons and circles.
pub fn fence_items(
    inclusion: &[LatLon],
    exclusion_polygons: &[Vec<LatLon>],
    exclusion_circles: &[(LatLon, f64)],
) -> Vec<MissionItem> {
    let mut out = Vec::new();
    let vertex = |command: u16, q: &LatLon, count: usize| {
        let mut it = MissionItem::nav(command, q.lat_deg, q.lon_deg, 0.0);
        it.frame = frame::GLOBAL_INT;
        it.param1 = count as f32;
        it
    };
    for q in inclusion {
        out.push(vertex(
            cmd::NAV_FENCE_POLYGON_VERTEX_INCLUSION,
            q,
            inclusion.len(),
        ));
    }
    for poly in exclusion_polygons {
        for q in poly {
            out.push(vertex(
                cmd::NAV_FENCE_POLYGON_VERTEX_EXCLUSION,
                q,
                poly.len(),
            ));
        }
    }
    for (c, r) in exclusion_circles {
        let mut it = MissionItem::nav(cmd::NAV_FENCE_CIRCLE_EXCLUSION, c.lat_deg, c.lon_deg, 0.0);
        it.frame = frame::GLOBAL_INT;
        it.param1 = *r as f32;
        out.push(it);
    }
    out
}

/// Rally point items. ArduPilot: altitude relative to home
/// (`GLOBAL_RELATIVE_ALT_INT`). PX4 1.15's RTL takes only frame 0
/// (`GLOBAL`, above sea level): with any other frame it says "RTL:
/// unsupported MAV_FRAME" and flies to an altitude of -2147483648 m
/// (recorded from PX4 SITL, `firmware-bridge/tests/data/firmware-replies`).
pub fn rally_items(
    autopilot: Autopilot,
    points: &[LatLon],
    alt_rel_m: f64,
    home_alt_amsl_m: f64,
) -> Vec<MissionItem> {
    points
        .iter()
        .map(|q| match autopilot {
            Autopilot::Ardupilot => {
                MissionItem::nav(cmd::NAV_RALLY_POINT, q.lat_deg, q.lon_deg, alt_rel_m as f32)
            }
            Autopilot::Px4 => {
                let mut it = MissionItem::nav(
                    cmd::NAV_RALLY_POINT,
                    q.lat_deg,
                    q.lon_deg,
                    (home_alt_amsl_m + alt_rel_m) as f32,
                );
                it.frame = frame::GLOBAL;
                it
            }
        })
        .collect()
}

/// Assemble a mission set.
pub fn mission_set(
    mission: Vec<MissionItem>,
    fence: Vec<MissionItem>,
    rally: Vec<MissionItem>,
) -> MissionSet {
    MissionSet {
        mission,
        fence,
        rally,
    }
}
