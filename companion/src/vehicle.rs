//! From the bridge's vehicle state to what the ground sees, and the safety
//! judgements the companion makes about it. Pure functions.

use tiancha_firmware_bridge::state::LandedState;
use tiancha_firmware_bridge::{FlightMode, VehicleState};
use tiancha_protocol::{
    self as proto, Attitude, Battery, DroneId, GimbalAttitude, GpsInfo, MissionProgress, Position,
    Telemetry,
};

use crate::config::SafetySection;

/// A short, stable name of a flight mode for the wire.
pub fn mode_name(m: FlightMode) -> String {
    format!("{m:?}").to_uppercase()
}

pub fn battery_pct(s: &VehicleState) -> Option<f64> {
    s.battery.as_ref().and_then(|b| b.remaining_pct)
}

pub fn in_air(s: &VehicleState) -> bool {
    matches!(
        s.landed,
        LandedState::InAir | LandedState::Takeoff | LandedState::Landing
    ) || (s.armed && s.position.is_some_and(|p| p.alt_rel_m > 1.0))
}

/// The telemetry sample for this state, if the position is known.
pub fn telemetry(drone: &DroneId, s: &VehicleState, t_unix_ms: i64) -> Option<Telemetry> {
    let p = s.position?;
    let att = s.attitude.map_or(
        Attitude {
            roll_deg: 0.0,
            pitch_deg: 0.0,
            yaw_deg: p.heading_deg.unwrap_or(0.0),
        },
        |a| Attitude {
            roll_deg: wrap180(a.roll_rad.to_degrees()),
            pitch_deg: a.pitch_rad.to_degrees().clamp(-90.0, 90.0),
            yaw_deg: a.yaw_rad.to_degrees().rem_euclid(360.0),
        },
    );
    Some(Telemetry {
        schema: proto::SCHEMA_VERSION,
        drone_id: drone.clone(),
        t_unix_ms,
        position: Position {
            lat_deg: p.lat_deg,
            lon_deg: p.lon_deg,
            alt_m: p.alt_m,
            alt_rel_m: Some(p.alt_rel_m),
        },
        velocity_ned_mps: s.velocity_ned_mps.unwrap_or([0.0; 3]),
        attitude: att,
        gimbal: s.gimbal.map(|g| GimbalAttitude {
            pitch_deg: g.pitch_deg,
            yaw_deg: wrap180(g.yaw_deg),
        }),
        battery: s
            .battery
            .as_ref()
            .and_then(|b| b.remaining_pct.map(|pct| (b, pct)))
            .map(|(b, pct)| Battery {
                remaining_pct: pct.clamp(0.0, 100.0),
                voltage_v: b.voltage_v,
                current_a: b.current_a,
            }),
        gps: s.gps.map(|g| GpsInfo {
            fix_type: g.fix as u8,
            satellites: g.satellites.unwrap_or(0),
            hdop: g.hdop,
        }),
        mode: mode_name(s.mode),
        armed: s.armed,
        in_air: in_air(s),
        mission: s.mission.current_seq.map(|c| MissionProgress {
            mission_id: None,
            current_seq: c as u32,
            total: s.mission.total.unwrap_or(c).max(c) as u32,
        }),
        home: s.home.map(|h| Position {
            lat_deg: h.lat_deg,
            lon_deg: h.lon_deg,
            alt_m: h.alt_m,
            alt_rel_m: Some(0.0),
        }),
    })
    .filter(|t| proto::Validate::validate(t).is_ok())
}

fn wrap180(deg: f64) -> f64 {
    let d = (deg + 180.0).rem_euclid(360.0) - 180.0;
    if d.is_finite() {
        d
    } else {
        0.0
    }
}

/// Why the vehicle may not launch at all now (waiting would not help);
/// known only while the autopilot link is up.
pub fn launch_refusal(s: &VehicleState, cfg: &SafetySection) -> Option<String> {
    if !s.link_up {
        return None; // a link may come up: `not_ready`
    }
    if in_air(s) || s.armed {
        return Some("the drone is already armed or flying".into());
    }
    match battery_pct(s) {
        Some(b) if b < cfg.min_launch_battery_pct => Some(format!(
            "battery at {b:.0} % is below the {:.0} % needed to launch",
            cfg.min_launch_battery_pct
        )),
        _ => None,
    }
}

/// Why the autopilot is not ready to launch yet (GPS, EKF, its own
/// pre-arm checks, home): something a launch may wait for. The
/// autopilot's own words come first when it gave them.
pub fn not_ready(s: &VehicleState, cfg: &SafetySection) -> Option<String> {
    if !s.link_up {
        return Some("no link to the autopilot".into());
    }
    if battery_pct(s).is_none() {
        return Some("battery level not reported yet".into());
    }
    let own = s.readiness.prearm_reason.as_deref();
    let say = |ours: String| match own {
        Some(t) => format!("{ours} (autopilot: {t})"),
        None => ours,
    };
    match s.gps {
        None => return Some(say("no GPS".into())),
        Some(g) if (g.fix as u8) < cfg.require_gps_fix => {
            return Some(say(format!(
                "GPS fix {:?} is below the required {} (3 = 3D)",
                g.fix, cfg.require_gps_fix
            )))
        }
        _ => {}
    }
    if let Some(e) = s.ekf {
        if !e.healthy {
            return Some(say(format!("EKF not ready (flags {:#06x})", e.flags)));
        }
    }
    if s.readiness.prearm_ok == Some(false) {
        return Some(say("pre-arm checks failing".into()));
    }
    if s.position.is_none() || s.home.is_none() {
        return Some(say("position or home not known yet".into()));
    }
    None
}

/// The readiness the ground sees.
pub fn readiness(s: &VehicleState, cfg: &SafetySection) -> proto::Readiness {
    let why = launch_refusal(s, cfg)
        .filter(|_| !s.armed)
        .or_else(|| not_ready(s, cfg));
    proto::Readiness {
        ready: why.is_none(),
        reason: why,
    }
}
