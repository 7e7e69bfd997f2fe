//! Re-plan on demand: insert an "investigate this point" detour into a
//! running patrol. The drone leaves the patrol where it is, flies to the
//! target by a path that stays in the free space, orbits it with the
//! camera's region of interest on it, flies back to where it left and
//! resumes the patrol at the item it was heading to.

use tiancha_geometry::geodesy::LatLon;
use tiancha_protocol::mission::{cmd, MissionItem};

use crate::airspace::Airspace;
use crate::error::PlanError;
use crate::geom::{dist, p, P};
use crate::mission::{dwell_items, home_item};
use crate::request::Autopilot;

/// What the companion knows when an alert asks for a look.
#[derive(Debug, Clone, PartialEq)]
pub struct InvestigateRequest {
    /// The mission on the autopilot now (as uploaded; for ArduPilot with
    /// home at seq 0).
    pub mission: Vec<MissionItem>,
    /// `MISSION_CURRENT.seq`: the item the drone is flying to.
    pub current_seq: u16,
    /// Where the drone is.
    pub position: LatLon,
    /// Its altitude above home, used for the detour.
    pub alt_rel_m: f64,
    pub target: LatLon,
    pub orbit_radius_m: f64,
    pub duration_s: f64,
    pub autopilot: Autopilot,
    pub speed_mps: f64,
}

/// The new mission and what it adds.
#[derive(Debug, Clone, PartialEq)]
pub struct Investigation {
    pub mission: Vec<MissionItem>,
    /// Set the autopilot's current item to this after upload.
    pub start_seq: u16,
    /// Index in the new mission of the original item the drone was flying
    /// to: the patrol resumes there.
    pub resume_seq: u16,
    /// The way there, the orbit's entry point last.
    pub path_to_target: Vec<LatLon>,
    /// The way back to where the drone left the patrol.
    pub path_back: Vec<LatLon>,
    pub detour_length_m: f64,
    pub detour_time_s: f64,
}

/// Plan the detour. Refuses with a typed error naming the zone if the
/// target or its orbit is inside a buffered no-fly zone or outside the
/// fence.
pub fn plan_investigation(
    air: &Airspace,
    req: &InvestigateRequest,
) -> Result<Investigation, PlanError> {
    let n = req.mission.len();
    if n == 0 {
        return Err(PlanError::BadMission("the mission is empty".into()));
    }
    if req.current_seq as usize >= n {
        return Err(PlanError::BadMission(format!(
            "current item {} is beyond the mission's {n} items",
            req.current_seq
        )));
    }
    for (field, v, lo, hi) in [
        ("orbit_radius_m", req.orbit_radius_m, 1.0, 1000.0),
        ("duration_s", req.duration_s, 1.0, 3600.0),
        ("alt_rel_m", req.alt_rel_m, 2.0, 1000.0),
        ("speed_mps", req.speed_mps, 0.5, 50.0),
    ] {
        if !v.is_finite() || v < lo || v > hi {
            return Err(PlanError::param(
                field,
                format!("must be between {lo} and {hi}, got {v}"),
            ));
        }
    }
    air.check_point("investigation target", req.target)?;
    let t = air.to_local(req.target);
    air.check_circle("investigation target", t, req.orbit_radius_m)?;
    if !req.position.is_valid() {
        return Err(PlanError::InvalidCoordinate {
            what: "drone position".into(),
            index: 0,
            lat: req.position.lat_deg,
            lon: req.position.lon_deg,
        });
    }
    let raw_pos = air.to_local(req.position);
    let pos = snap_inside(air, raw_pos).ok_or_else(|| PlanError::OutsideFence {
        what: "the drone".into(),
        at: req.position.into(),
        reason: "it is more than 5 m outside the free space; bring it back before investigating"
            .into(),
    })?;
    // Orbit entry: the point of the circle nearest to the drone.
    let d = dist(pos, t);
    let entry = if d > 1e-6 {
        p(
            t.x + (pos.x - t.x) / d * req.orbit_radius_m,
            t.y + (pos.y - t.y) / d * req.orbit_radius_m,
        )
    } else {
        p(t.x, t.y + req.orbit_radius_m)
    };
    let there = air
        .shortest_path(pos, entry)
        .ok_or_else(|| PlanError::Unreachable {
            what: "investigation target".into(),
            from: req.position.into(),
            to: req.target.into(),
        })?;
    let back = air
        .shortest_path(entry, pos)
        .ok_or_else(|| PlanError::Unreachable {
            what: "the way back to the patrol".into(),
            from: req.target.into(),
            to: req.position.into(),
        })?;

    let alt = req.alt_rel_m as f32;
    let cur = req.current_seq as usize;
    let mut m: Vec<MissionItem> = Vec::new();
    if req.autopilot == Autopilot::Ardupilot {
        // Keep the autopilot's home item.
        m.push(if req.mission[0].command == cmd::NAV_WAYPOINT {
            req.mission[0]
        } else {
            home_item(air.home, 0.0)
        });
    }
    let start_seq = m.len() as u16;
    let wp = |q: P| {
        let ll = air.to_latlon(q);
        MissionItem::nav(cmd::NAV_WAYPOINT, ll.lat_deg, ll.lon_deg, alt)
    };
    for q in &there[1..] {
        m.push(wp(*q));
    }
    m.extend(dwell_items(
        req.autopilot,
        req.target,
        req.alt_rel_m,
        req.orbit_radius_m,
        req.duration_s,
        req.speed_mps,
    ));
    // Restore the state the patrol had set before the current item.
    let first_kept = if req.autopilot == Autopilot::Ardupilot {
        1
    } else {
        0
    };
    for c in [
        cmd::DO_CHANGE_SPEED,
        cmd::DO_MOUNT_CONTROL,
        cmd::DO_GIMBAL_MANAGER_PITCHYAW,
    ] {
        if let Some(it) = req.mission[first_kept.min(cur)..cur]
            .iter()
            .rev()
            .find(|it| it.command == c)
        {
            m.push(*it);
        }
    }
    for q in &back[1..] {
        m.push(wp(*q));
    }
    let resume_seq = m.len();
    let shift = resume_seq as i64 - cur as i64;
    for it in &req.mission[cur..] {
        let mut it = *it;
        if it.command == cmd::DO_JUMP {
            let target = (it.param1 as i64).max(cur as i64);
            it.param1 = (target + shift) as f32;
        }
        m.push(it);
    }
    if m.len() > u16::MAX as usize {
        return Err(PlanError::BadMission(
            "the new mission would exceed 65535 items".into(),
        ));
    }
    let len = |v: &[P]| v.windows(2).map(|w| dist(w[0], w[1])).sum::<f64>();
    let circumference = 2.0 * std::f64::consts::PI * req.orbit_radius_m;
    let orbit_speed = req.speed_mps.clamp(1.0, 5.0);
    let turns = (req.duration_s * orbit_speed / circumference)
        .ceil()
        .max(1.0);
    let orbit_len = turns * circumference;
    let detour_length_m = len(&there) + orbit_len + len(&back);
    let detour_time_s =
        (len(&there) + len(&back)) / req.speed_mps + (orbit_len / orbit_speed).max(req.duration_s);
    Ok(Investigation {
        mission: m,
        start_seq,
        resume_seq: resume_seq as u16,
        path_to_target: there.iter().map(|q| air.to_latlon(*q)).collect(),
        path_back: back.iter().map(|q| air.to_latlon(*q)).collect(),
        detour_length_m,
        detour_time_s,
    })
}

/// The drone's position, moved into the free space if GPS noise put it
/// just outside (≤ 5 m).
fn snap_inside(air: &Airspace, q: P) -> Option<P> {
    if air.free.contains_closed(q, 1e-6) {
        return Some(q);
    }
    let mut best: Option<(f64, P)> = None;
    for &(a, b) in air.free.edges() {
        let (dx, dy) = (b.x - a.x, b.y - a.y);
        let l2 = dx * dx + dy * dy;
        if l2 == 0.0 {
            continue;
        }
        let tt = (((q.x - a.x) * dx + (q.y - a.y) * dy) / l2).clamp(0.0, 1.0);
        let c = p(a.x + tt * dx, a.y + tt * dy);
        let d = dist(q, c);
        if best.is_none_or(|b| d < b.0) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    if d > 5.0 {
        return None;
    }
    // Step a little further in along the same line.
    let dir = if d > 1e-9 {
        p((c.x - q.x) / d, (c.y - q.y) / d)
    } else {
        p(0.0, 0.0)
    };
    for step in [0.05, 0.2, 0.5] {
        let r = p(c.x + dir.x * step, c.y + dir.y * step);
        if air.free.contains(r) {
            return Some(r);
        }
    }
    Some(c)
}
