//! The simulated camera over a real autopilot: `tiancha sim --follow
//! ADDRESS` renders what a camera on a real (SITL) vehicle would see, from
//! that vehicle's own telemetry read over MAVLink with the firmware
//! bridge, so the demo can fly ArduCopter SITL and still see its
//! scenario.
//!
//! [`truth_from_state`] is the pure part: the bridge's [`VehicleState`]
//! (position, attitude, gimbal) as the [`Truth`] the camera renders from.
//! The rest of `Truth` (mission, battery …) is not the camera's business
//! and is filled from the state where it exists.

use nalgebra::UnitQuaternion;
use tiancha_firmware_bridge::pose::camera_from_frd;
use tiancha_firmware_bridge::state::{FlightMode, LandedState, YawFrame};
use tiancha_firmware_bridge::VehicleState;
use tiancha_geometry::geodesy::LatLonAlt;

use crate::truth::Truth;

/// The camera's truth from a real vehicle's state; `None` until its
/// position, attitude and home are known. Without a gimbal report the
/// camera is fixed to the body at `fixed_pitch_deg` (negative down),
/// facing forward.
pub fn truth_from_state(s: &VehicleState, fixed_pitch_deg: f64, t_unix_ms: f64) -> Option<Truth> {
    let p = s.position?;
    let a = s.attitude?;
    let home = s.home?;
    let attitude = UnitQuaternion::from_euler_angles(a.roll_rad, a.pitch_rad, a.yaw_rad);
    let (pitch_deg, yaw_rel_deg, gimbal) = match s.gimbal {
        // A stabilised gimbal: its own pitch, yaw about the vehicle's.
        Some(g) => {
            let rel = match g.yaw_frame {
                YawFrame::Vehicle => g.yaw_deg,
                YawFrame::Earth => g.yaw_deg - a.yaw_rad.to_degrees(),
            };
            let q = UnitQuaternion::from_euler_angles(
                0.0,
                g.pitch_deg.to_radians(),
                a.yaw_rad + rel.to_radians(),
            );
            (g.pitch_deg, rel, q)
        }
        // A fixed mount turns with the body (as the companion's pose
        // history assumes for a camera without a gimbal report).
        None => {
            let mount = UnitQuaternion::from_euler_angles(0.0, fixed_pitch_deg.to_radians(), 0.0);
            (fixed_pitch_deg, 0.0, attitude * mount)
        }
    };
    let frame = tiancha_geometry::geodesy::LocalFrame::new(home);
    let ned = frame.to_ned(LatLonAlt::new(p.lat_deg, p.lon_deg, p.alt_m));
    Some(Truth {
        sim_time_s: p.time_boot_ms as f64 / 1000.0,
        time_boot_ms: p.time_boot_ms as u64,
        t_unix_ms,
        position: p.lat_lon_alt(),
        ned_m: [ned.x, ned.y, ned.z],
        velocity_ned_mps: s.velocity_ned_mps.unwrap_or([0.0; 3]),
        roll_rad: a.roll_rad,
        pitch_rad: a.pitch_rad,
        yaw_rad: a.yaw_rad,
        attitude,
        gimbal_pitch_deg: pitch_deg,
        gimbal_yaw_deg: yaw_rel_deg,
        gimbal_attitude: gimbal,
        camera_orientation: gimbal * camera_from_frd(),
        home,
        armed: s.armed,
        mode: s.custom_mode,
        mode_name: if s.mode == FlightMode::Auto {
            "AUTO"
        } else {
            "OTHER"
        },
        landed: matches!(s.landed, LandedState::OnGround),
        battery_pct: s.battery.and_then(|b| b.remaining_pct).unwrap_or(f64::NAN),
        mission_current: s.mission.current_seq.unwrap_or(0),
        mission_len: s.mission.total.unwrap_or(0) as usize,
        fence_zones: 0,
        fence_enabled: s.fence_enabled.unwrap_or(false),
        rally_points: 0,
        signing: s.signing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiancha_firmware_bridge::state::{Attitude, GimbalState, Position};

    fn state() -> VehicleState {
        VehicleState {
            position: Some(Position {
                lat_deg: 28.451,
                lon_deg: 117.94,
                alt_m: 150.0,
                alt_rel_m: 50.0,
                heading_deg: Some(90.0),
                time_boot_ms: 42_000,
            }),
            attitude: Some(Attitude {
                roll_rad: 0.0,
                pitch_rad: 0.0,
                yaw_rad: 90f64.to_radians(),
                time_boot_ms: 42_000,
            }),
            home: Some(LatLonAlt::new(28.45, 117.94, 100.0)),
            ..VehicleState::default()
        }
    }

    #[test]
    fn nothing_until_position_attitude_and_home_are_known() {
        let mut s = state();
        s.home = None;
        assert!(truth_from_state(&s, -45.0, 0.0).is_none());
    }

    #[test]
    fn the_camera_sits_where_the_vehicle_is_and_looks_where_its_gimbal_does() {
        let t = truth_from_state(&state(), -45.0, 1.0).unwrap();
        assert!((t.ned_m[0] - 110.9).abs() < 0.5, "{:?}", t.ned_m); // 0.001° north
        assert!((t.ned_m[2] + 50.0).abs() < 0.01);
        assert_eq!(t.sim_time_s, 42.0);
        // Fixed camera: 45° down, facing the vehicle's heading (east).
        let look = t.camera_orientation * nalgebra::Vector3::z();
        assert!(
            (look.y - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-3
                && (look.z - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-3,
            "{look}"
        );
        // A gimbal that reports wins: straight down.
        let mut s = state();
        s.gimbal = Some(GimbalState {
            roll_deg: 0.0,
            pitch_deg: -90.0,
            yaw_deg: 0.0,
            yaw_frame: YawFrame::Vehicle,
            from_gimbal_device: true,
        });
        let t = truth_from_state(&s, -45.0, 1.0).unwrap();
        let look = t.camera_orientation * nalgebra::Vector3::z();
        assert!((look.z - 1.0).abs() < 1e-6, "{look}");
    }
}
